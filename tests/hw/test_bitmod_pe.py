"""The bit-serial BitMoD PE and dequantizer: bit-exact against models.bitmod on random groups and
edge cases; the cycles per group are the cycles the BitMoD target charges."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.sim import Simulator

from hw.bitmod_pe import BitModPE, Dequant
from hw.tools import random_groups, reference_sums
from models import bitmod as bm
from sim.targets.parts import Precision

ROOT = Path(__file__).resolve().parents[2]
GROUP = 128
STEPS = GROUP // 4  # 4 weights per step


class Harness(Elaboratable):
    """The PE with its inputs packed into one stimulus word (one ``ctx.set`` per step) and three
    counters the testbench reads only when something happens: cycles, accepted steps (a toggle:
    it changes at every edge where ``in_valid & in_ready``), and cycles with ``sum_valid`` high."""

    def __init__(self):
        self.pe = BitModPE()
        self.inputs = Cat(*self.pe.act, *self.pe.code, self.pe.last, self.pe.mode, self.pe.sel, self.pe.in_valid)
        self.stim = Signal(len(self.inputs))
        self.cycle = Signal(32)
        self.took = Signal()
        self.valid_cycles = Signal(32)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pe = pe = self.pe
        m.d.comb += self.inputs.eq(self.stim)
        m.d.sync += self.cycle.eq(self.cycle + 1)
        with m.If(pe.in_valid & pe.in_ready):
            m.d.sync += self.took.eq(~self.took)
        with m.If(pe.sum_valid):
            m.d.sync += self.valid_cycles.eq(self.valid_cycles + 1)
        return m


def step_words(acts, codes, modes, sels) -> list[int]:
    """Every step's inputs as one integer in the bit order of ``Harness.inputs`` (vectorized)."""
    n = len(acts)
    a = np.asarray(acts, dtype=np.uint64).reshape(n, STEPS, 4)
    c = np.asarray(codes, dtype=np.uint64).reshape(n, STEPS, 4)
    lo = a[..., 0] | a[..., 1] << 16 | a[..., 2] << 32 | a[..., 3] << 48  # act[0..3]: bits 0-63
    hi = c[..., 0] | c[..., 1] << 8 | c[..., 2] << 16 | c[..., 3] << 24  # code[0..3]: bits 64-95
    hi[:, -1] |= 1 << 32  # last
    hi |= (np.asarray(modes, dtype=np.uint64) << 33 | np.asarray(sels, dtype=np.uint64) << 35)[:, None]
    hi |= 1 << 37  # in_valid
    return [x | y << 64 for x, y in zip(lo.ravel().tolist(), hi.ravel().tolist())]


def stream(acts, codes, modes, sels):
    """Stream groups through the PE back to back: each step is presented until the PE accepts it
    (a handshake), the next one right after.  Returns (sums in order, the cycle each appeared at,
    cycles with sum_valid high).  The testbenches wake only on events, not on every cycle."""
    h = Harness()
    assert len(h.inputs) == 102  # the layout step_words packs
    sim = Simulator(h)
    sim.add_clock(1e-9)
    words = step_words(acts, codes, modes, sels) + [0]  # then in_valid low
    sums, at, valid_cycles, n = [], [], [], len(acts)

    async def driver(ctx):
        ctx.set(h.stim, words[0])
        for word in words[1:]:
            await ctx.changed(h.took)  # the PE accepted the step on this edge
            ctx.set(h.stim, word)

    async def monitor(ctx):
        while len(sums) < n:
            await ctx.posedge(h.pe.sum_valid)
            sums.append(ctx.get(h.pe.sum))
            at.append(ctx.get(h.cycle))
        await ctx.tick().repeat(2 * GROUP)  # no sum after the last group's
        valid_cycles.append(ctx.get(h.valid_cycles))

    async def watchdog(ctx):
        await ctx.delay(1e-9 * (2 * GROUP * n + 100))  # twice the slowest format's cycles
        raise AssertionError(f"the PE stalled: {len(sums)} of {n} group sums")

    sim.add_testbench(driver)
    sim.add_testbench(monitor)
    sim.add_testbench(watchdog, background=True)
    sim.run()
    return sums, at, valid_cycles[0]


@pytest.fixture(scope="module")
def random_run():
    n = int(os.environ.get("BITMOD_PE_GROUPS", "10000"))
    data = random_groups(n, np.random.default_rng(2025))
    return data, stream(*data)


@pytest.mark.slow
def test_pe_is_bit_exact_on_random_groups(random_run):
    data, (sums, _, valid_cycles) = random_run
    assert len(sums) == len(data[0]) == valid_cycles  # one sum_valid cycle per group, each seen
    assert sums == reference_sums(*data)
    assert set(data[2]) == {0, 1, 2, 3}  # every weight format


@pytest.mark.slow
def test_pe_cycles_per_group_are_what_the_target_charges(random_run):
    data, (_, at, _) = random_run
    modes = data[2]
    gaps = np.diff(at)
    from sim.targets.accelerator import Accelerator, AcceleratorParams
    from tests.sim.test_engine import gemm_row

    params = yaml.safe_load((ROOT / "configs" / "targets" / "bitmod.yaml").read_text())["params"]
    target = Accelerator(AcceleratorParams(**{**params, "pe_rows": 1, "pe_cols": 1}))
    for mode, fmt in enumerate(bm.PE_FORMATS):
        observed = set(gaps[modes[1:] == mode].tolist())
        bits = {"fp4": 4, "fp3": 3, "int6": 6, "int8": 8}[fmt]
        charged = target.cost(pd.DataFrame([gemm_row(1, 1, GROUP)]), Precision(bits, 16)).compute_cycles[0]
        assert observed == {charged} == {32 * bm.PE_CYCLES_PER_STEP[fmt]}, fmt


def test_edge_cases():
    acts = np.array([
        [0x7BFF] * GROUP,  # +65504 everywhere
        [0xFBFF] * GROUP,  # -65504
        [0x0001] * GROUP,  # smallest subnormal
        [0x0400] * GROUP,  # smallest normal
        [0x8000] * GROUP,  # -0
        [0x3C00, 0xBC00] * (GROUP // 2),  # +1, -1 alternating: sign changes
        [0x7BFF] * GROUP,  # INT8 -128: the largest INT magnitude
        [0x3C00] * GROUP,  # INT6 -32 and 31
    ], dtype=np.int64)
    codes = np.array([[8] * GROUP, [8] * GROUP, [7] * GROUP, [15] * GROUP, [5] * GROUP, [1, 9] * (GROUP // 2),
                      [0x80] * GROUP, [0x20, 0x1F] * (GROUP // 2)], dtype=np.int64)
    modes = np.array([0, 0, 0, 0, 0, 0, 3, 2])
    sels = np.array([2, 3, 0, 1, 0, 0, 0, 0])
    sums, _, valid_cycles = stream(acts, codes, modes, sels)
    ref = reference_sums(acts, codes, modes, sels)
    assert sums == ref and valid_cycles == len(ref)
    assert ref[0] == 65504 * 8 * GROUP * 2**26  # value x 2^26: the +EA special (+8) everywhere
    assert ref[1] == ref[0] and ref[4] == 0  # (-65504) x (-8)
    assert ref[5] == 64 * 2**26  # 64 pairs of (+1)(+0.5) + (-1)(-0.5)
    assert ref[6] == -65504 * 128 * GROUP * 2**26
    assert ref[7] == (-32 + 31) * 64 * 2**26


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
