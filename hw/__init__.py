"""Amaranth RTL of the processing elements the targets charge for, one unit a file.

``UNITS`` maps the names `sim hdl` takes to the components.
"""


def units() -> dict:
    from hw.bitmod_pe import BitModPE, Dequant
    from hw.matmulfree import RowUnit, TernaryUnit

    return {"bitmod_pe": BitModPE, "bitmod_dequant": Dequant, "matmulfree_ternary": TernaryUnit,
            "matmulfree_row": RowUnit}
