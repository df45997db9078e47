"""Verilog export and random-vector simulation of the RTL units (`sim hdl`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.errors import SimError


def get_unit(name: str):
    from hw import units

    table = units()
    if name not in table:
        raise SimError(f"unknown HDL unit {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def export(name: str, out: str | Path) -> Path:
    """Write ``<name>.v`` (Verilog, through Amaranth's Yosys back end) into ``out``."""
    from amaranth.back import verilog

    unit = get_unit(name)()
    text = verilog.convert(unit, name=name)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.v"
        path.write_text(text)
    except OSError as e:
        raise SimError(f"cannot write {out}: {e.strerror or e}") from None
    return path


def simulate_pe(groups: int, seed: int = 0, vcd: str | Path | None = None) -> dict:
    """Run ``groups`` random groups through the BitMoD PE, check them against the reference,
    optionally writing a waveform.  Returns counts and the cycles per group."""
    from amaranth.sim import Simulator

    from hw.bitmod_pe import BitModPE
    from models import bitmod as bm

    rng = np.random.default_rng(seed)
    acts = rng.integers(0, 1 << 16, (groups, 128), dtype=np.int64)
    acts[(acts >> 10 & 31) == 31] &= ~(1 << 14)
    codes = rng.integers(0, 16, (groups, 128), dtype=np.int64)
    fp3 = rng.integers(0, 2, groups)
    sel = rng.integers(0, 4, groups)
    dut = BitModPE()
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sums, cycles = [], []

    async def tb(ctx):
        cycle = 0
        for g in range(groups):
            for s in range(32):
                for i in range(4):
                    ctx.set(dut.act[i], int(acts[g, 4 * s + i]))
                    ctx.set(dut.code[i], int(codes[g, 4 * s + i]))
                ctx.set(dut.last, s == 31)
                ctx.set(dut.fp3, int(fp3[g]))
                ctx.set(dut.sel, int(sel[g]))
                ctx.set(dut.in_valid, 1)
                while True:
                    ready = ctx.get(dut.in_ready)
                    await ctx.tick()
                    cycle += 1
                    if ctx.get(dut.sum_valid):
                        sums.append(ctx.get(dut.sum))
                        cycles.append(cycle)
                    if ready:
                        break
        ctx.set(dut.in_valid, 0)
        for _ in range(4):
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.sum_valid):
                sums.append(ctx.get(dut.sum))
                cycles.append(cycle)

    sim.add_testbench(tb)
    if vcd:
        with sim.write_vcd(str(vcd)):
            sim.run()
    else:
        sim.run()
    ref = [bm.pe_group_sum(acts[g], codes[g] & (7 if fp3[g] else 15), 3 if fp3[g] else 4, int(sel[g]))
           for g in range(groups)]
    gaps = np.diff(cycles)
    return {"groups": groups, "bit_exact": sums == ref, "mismatches": sum(a != b for a, b in zip(sums, ref)),
            "cycles_per_group": int(gaps[0]) if len(gaps) else 64}
