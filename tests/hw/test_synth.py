"""The resource model of the MatMul-free units (hw/synth.py): ALM packing by hand, the committed
synthesis table, lane interpolation, and (slow) a fresh synthesis against the table."""

import pandas as pd
import pytest

from hw import synth


def test_packing_by_hand():
    # 2 six-input LUTs (2 ALMs) + 5 adder bits (3 ALMs) + small LUTs 5,5,4,4,3,2 paired within 8 inputs:
    # 5+3, 5+2, 4+4 (3 ALMs) = 8 ALMs; 4 registers need 1 ALM, fewer than the logic's
    cells = {"MISTRAL_ALUT6": 2, "MISTRAL_ALUT_ARITH": 5, "MISTRAL_ALUT5": 2, "MISTRAL_ALUT4": 2,
             "MISTRAL_ALUT3": 1, "MISTRAL_ALUT2": 1, "MISTRAL_FF": 4, "MISTRAL_MUL18X18": 3, "MISTRAL_M10K": 2}
    r = synth.pack(cells)
    assert r["alms"] == 8 and r["dsp"] == 2 and r["m20k"] == 2 and r["luts"] == 8 and r["registers"] == 4
    # registers bind when there are more than four per ALM of logic; a lone 5-LUT cannot pair with a 4-LUT
    assert synth.pack({"MISTRAL_ALUT2": 1, "MISTRAL_FF": 40})["alms"] == 10
    assert synth.pack({"MISTRAL_ALUT5": 1, "MISTRAL_ALUT4": 1})["alms"] == 2
    assert synth.pack({"MISTRAL_MUL27X27": 1, "MISTRAL_MUL18X18": 1})["dsp"] == 2


def test_table_covers_both_units_and_grows_with_lanes():
    t = synth.table()
    assert list(t.columns) == list(synth.COLUMNS)
    for unit, lanes in synth.LANES.items():
        rows = t[t.unit == unit].sort_values("lanes")
        assert tuple(rows.lanes) == lanes
        assert rows.alms.is_monotonic_increasing and (rows.alms.diff().dropna() > 0).all()
    # the row unit's RMSNorm and multiplies take DSP blocks; the ternary unit takes none (no multiplier)
    assert (t[t.unit == "ternary"].dsp == 0).all() and (t[t.unit == "row"].dsp > 0).all()


def test_lanes_between_and_past_the_synthesized_counts_are_linear():
    t = synth.table().set_index(["unit", "lanes"])
    assert synth.unit_resources("ternary", 4)["alms"] == t.loc[("ternary", 4), "alms"]
    mid = synth.unit_resources("ternary", 3)["alms"]
    assert mid == pytest.approx((t.loc[("ternary", 2), "alms"] + t.loc[("ternary", 4), "alms"]) / 2)
    a, b = t.loc[("row", 16), "alms"], t.loc[("row", 32), "alms"]
    assert synth.unit_resources("row", 64)["alms"] == pytest.approx(b + 2 * (b - a))
    core = synth.core_resources(2, 4, 4)
    assert core["alms"] == 2 * t.loc[("ternary", 4), "alms"] + t.loc[("row", 4), "alms"]


@pytest.mark.slow
def test_a_fresh_synthesis_matches_the_committed_table():
    t = synth.table().set_index(["unit", "lanes"])
    for unit, lanes in (("ternary", 1), ("ternary", 4)):
        got = synth.synthesize(unit, lanes)
        want = t.loc[(unit, lanes)]
        assert {k: got[k] for k in want.index} == pytest.approx(want.to_dict()), (unit, lanes)
