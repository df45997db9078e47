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


def random_groups(n: int, rng, formats=("fp4", "fp3", "int6", "int8")):
    """Random groups for the PE: FP16 activation bit patterns (finite; normals, subnormals, zeros,
    both signs, +-65504, the smallest subnormal), 8-bit weight codes, a format and a selector each."""
    from models.bitmod import PE_FORMATS

    acts = rng.integers(0, 1 << 16, (n, 128), dtype=np.int64)
    acts[(acts >> 10 & 31) == 31] &= ~(1 << 14)  # inf/NaN -> finite
    k = max(1, n // 10)
    acts[:k, ::3] &= 0x83FF  # subnormals and zeros
    acts[k:2 * k, ::5] = 0x7BFF  # 65504, the largest
    acts[2 * k:3 * k, ::7] = 0xFBFF  # -65504
    acts[3 * k:4 * k] = 0x0001  # the smallest subnormal everywhere
    codes = rng.integers(0, 256, (n, 128), dtype=np.int64)
    codes[4 * k:5 * k] = 8  # FP4 special value (negative zero) everywhere
    codes[5 * k:6 * k] = 0  # zero weights
    codes[6 * k:7 * k] = 0x80  # INT8 -128 (or FP4 +0 / FP3 +0 / INT6 0)
    modes = np.array([PE_FORMATS.index(f) for f in rng.choice(list(formats), n)])
    sels = rng.integers(0, 4, n)
    return acts, codes, modes, sels


def drive_pe(acts, codes, modes, sels, vcd: str | Path | None = None):
    """Stream groups through BitModPE, one step every cycles-per-step cycles (the PE's rate).
    Returns (group sums in order, the cycle at which each group's sum appeared)."""
    from amaranth.sim import Simulator

    from hw.bitmod_pe import BitModPE
    from models.bitmod import PE_CYCLES_PER_STEP, PE_FORMATS

    dut = BitModPE()
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sums, at = [], []
    acts = [[int(x) for x in row] for row in acts]
    codes = [[int(x) for x in row] for row in codes]

    async def tb(ctx):
        cycle, wait_for = 0, 1  # the first step is taken at the first edge (the PE is idle)
        for g in range(len(acts)):
            ctx.set(dut.mode, int(modes[g]))
            ctx.set(dut.sel, int(sels[g]))
            step_cycles = PE_CYCLES_PER_STEP[PE_FORMATS[int(modes[g])]]
            for s in range(32):
                for i in range(4):
                    ctx.set(dut.act[i], acts[g][4 * s + i])
                    ctx.set(dut.code[i], codes[g][4 * s + i])
                ctx.set(dut.last, s == 31)
                ctx.set(dut.in_valid, 1)
                await ctx.tick().repeat(wait_for)
                cycle += wait_for
                wait_for = step_cycles
                if ctx.get(dut.sum_valid):
                    sums.append(ctx.get(dut.sum))
                    at.append(cycle)
        ctx.set(dut.in_valid, 0)
        for _ in range(wait_for + 1):
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.sum_valid):
                sums.append(ctx.get(dut.sum))
                at.append(cycle)

    sim.add_testbench(tb)
    if vcd:
        with sim.write_vcd(str(vcd)):
            sim.run()
    else:
        sim.run()
    return sums, at


def reference_sums(acts, codes, modes, sels) -> list[int]:
    from models.bitmod import PE_FORMATS, pe_group_sum

    return [pe_group_sum(acts[g], codes[g], PE_FORMATS[int(modes[g])], int(sels[g])) for g in range(len(acts))]


def simulate_pe(groups: int, seed: int = 0, vcd: str | Path | None = None) -> dict:
    """Run ``groups`` random groups (all four weight formats) through the BitMoD PE and check
    them against the reference, optionally writing a waveform."""
    from models.bitmod import PE_CYCLES_PER_STEP, PE_FORMATS

    acts, codes, modes, sels = random_groups(groups, np.random.default_rng(seed))
    sums, at = drive_pe(acts, codes, modes, sels, vcd)
    ref = reference_sums(acts, codes, modes, sels)
    per_group = {f: 32 * PE_CYCLES_PER_STEP[f] for f in PE_FORMATS}
    gaps = np.diff([0] + at)
    observed = {PE_FORMATS[int(mo)]: int(gp) for mo, gp in zip(modes[1:], gaps[1:])}
    return {"groups": groups, "bit_exact": sums == ref, "mismatches": sum(a != b for a, b in zip(sums, ref)),
            "cycles_per_group": observed, "expected_cycles": per_group}
