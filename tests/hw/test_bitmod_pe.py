"""The bit-serial BitMoD PE and dequantizer: bit-exact against models.bitmod on random groups and
edge cases; the cycles per group are the cycles the BitMoD target charges."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.bitmod_pe import BitModPE, Dequant
from models import bitmod as bm

GROUP = 128
STEPS = GROUP // 4


def random_groups(n, rng):
    """Activations as FP16 bit patterns (finite; normals, subnormals, zeros, both signs, the
    largest and smallest exponents) and 4-bit weight codes of every kind."""
    acts = rng.integers(0, 1 << 16, (n, GROUP), dtype=np.int64)
    acts[(acts >> 10 & 31) == 31] &= ~(1 << 14)  # inf/NaN -> finite
    k = n // 8
    acts[:k, ::3] &= 0x83FF  # subnormals and zeros
    acts[k:2 * k, ::5] = 0x7BFF  # 65504, the largest
    acts[2 * k:3 * k, ::7] = 0xFBFF  # -65504
    acts[3 * k:4 * k] = 0x0001  # the smallest subnormal everywhere
    codes = rng.integers(0, 16, (n, GROUP), dtype=np.int64)
    codes[4 * k:5 * k] = 8  # all special values (FP4 negative zero)
    codes[5 * k:6 * k] = 0  # all zero weights
    fp3 = rng.integers(0, 2, n)
    sel = rng.integers(0, 4, n)
    return acts, codes, fp3, sel


def run_pe(acts, codes, fp3, sel):
    dut = BitModPE()
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    out = {"sums": [], "cycles": []}

    async def tb(ctx):
        cycle = 0
        for g in range(len(acts)):
            for s in range(STEPS):
                for i in range(4):
                    ctx.set(dut.act[i], int(acts[g, 4 * s + i]))
                    ctx.set(dut.code[i], int(codes[g, 4 * s + i]))
                ctx.set(dut.last, s == STEPS - 1)
                ctx.set(dut.fp3, int(fp3[g]))
                ctx.set(dut.sel, int(sel[g]))
                ctx.set(dut.in_valid, 1)
                while not ctx.get(dut.in_ready):
                    await ctx.tick()
                    cycle += 1
                    if ctx.get(dut.sum_valid):
                        out["sums"].append(ctx.get(dut.sum))
                        out["cycles"].append(cycle)
                await ctx.tick()
                cycle += 1
                if ctx.get(dut.sum_valid):
                    out["sums"].append(ctx.get(dut.sum))
                    out["cycles"].append(cycle)
        ctx.set(dut.in_valid, 0)
        for _ in range(4):
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.sum_valid):
                out["sums"].append(ctx.get(dut.sum))
                out["cycles"].append(cycle)

    sim.add_testbench(tb)
    sim.run()
    return out


def reference(acts, codes, fp3, sel):
    return [bm.pe_group_sum(acts[g], codes[g] & (7 if fp3[g] else 15), 3 if fp3[g] else 4, int(sel[g]))
            for g in range(len(acts))]


@pytest.fixture(scope="module")
def random_run():
    rng = np.random.default_rng(2025)
    data = random_groups(int(__import__("os").environ.get("BITMOD_PE_GROUPS", "10000")), rng)
    return data, run_pe(*data)


def test_pe_is_bit_exact_on_random_groups(random_run):
    data, out = random_run
    assert out["sums"] == reference(*data)


def test_pe_takes_64_cycles_per_group_as_the_target_charges(random_run):
    _, out = random_run
    gaps = np.diff(out["cycles"])
    assert (gaps == 64).all()
    # the BitMoD target: ceil(128 / dp) steps of pe_latency['w4a16'] cycles for one output
    import pandas as pd
    import yaml

    from sim.targets.accelerator import Accelerator, AcceleratorParams
    from tests.sim.test_engine import gemm_row

    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    params = yaml.safe_load((root / "configs" / "targets" / "bitmod.yaml").read_text())["params"]
    t = Accelerator(AcceleratorParams(**{**params, "pe_rows": 1, "pe_cols": 1}))
    for bits in (4, 3):
        c = t.cost(pd.DataFrame([gemm_row(1, 1, GROUP)]), bits, 16)
        assert c.compute_cycles.tolist() == [64]


def test_edge_cases():
    acts = np.array([
        [0x7BFF] * GROUP,  # +65504 everywhere, largest special weight: the largest magnitude
        [0xFBFF] * GROUP,  # -65504
        [0x0001] * GROUP,  # smallest subnormal
        [0x0400] * GROUP,  # smallest normal
        [0x8000] * GROUP,  # -0
        [0x3C00, 0xBC00] * (GROUP // 2),  # +1, -1 alternating: sign changes
    ], dtype=np.int64)
    codes = np.array([[8] * GROUP, [8] * GROUP, [7] * GROUP, [15] * GROUP, [5] * GROUP,
                      [1, 9] * (GROUP // 2)], dtype=np.int64)
    fp3 = np.zeros(len(acts), dtype=np.int64)
    sel = np.array([2, 3, 0, 1, 0, 0])
    out = run_pe(acts, codes, fp3, sel)
    ref = reference(acts, codes, fp3, sel)
    assert out["sums"] == ref
    assert ref[0] == 65504 * 8 * GROUP * 2**26  # value x 2^26: +EA special (+8) everywhere
    assert ref[1] == ref[0] and ref[4] == 0  # (-65504) x (-8): the -EA special
    assert ref[5] == 64 * 2**26  # 64 pairs of (+1)(+0.5) + (-1)(-0.5)


def test_dequant_is_exact():
    rng = np.random.default_rng(3)
    sums = [int(x) for x in rng.integers(-(1 << 59), 1 << 59, 300, dtype=np.int64)] + [0, (1 << 59) - 1, -(1 << 59)]
    scales = [int(x) for x in rng.integers(0, 256, len(sums))]
    scales[-3:] = [255, 255, 255]
    dut = Dequant()
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    got = []

    async def tb(ctx):
        for s, c in zip(sums, scales):
            ctx.set(dut.sum, s)
            ctx.set(dut.scale, c)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            n = 0
            while not ctx.get(dut.valid):
                await ctx.tick()
                n += 1
            got.append((ctx.get(dut.result), n))

    sim.add_testbench(tb)
    sim.run()
    assert [g for g, _ in got] == [bm.pe_dequant(s, c) for s, c in zip(sums, scales)]
    assert {n for _, n in got} == {8}  # one scale bit per cycle, within a group's 64 cycles
