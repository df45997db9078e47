"""The MatMul-free LM's FPGA units: bit-exact against models.ternary on 10,000 random vectors each and on
edge cases; observed cycles equal the formulas the FPGA target charges; Verilog export."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.matmulfree import RowUnit, TernaryUnit
from hw.tools import export
from models import ternary as tm
from models.errors import SimError

SIM = str(Path(sys.executable).parent / "sim")


def pack(vals, bits: int) -> list[int]:
    """Rows of lane values -> one int per row, lane 0 in the low bits (an ArrayLayout's packing)."""
    v = (np.asarray(vals, dtype=np.int64) & ((1 << bits) - 1)).astype(object)
    return list((v << np.array([bits * i for i in range(v.shape[-1])], dtype=object)).sum(axis=-1))


def unpack(word: int, lanes: int, bits: int = 16) -> list[int]:
    vals = [(word >> (bits * i)) & ((1 << bits) - 1) for i in range(lanes)]
    return [x - (1 << bits) if x >> (bits - 1) else x for x in vals]


# ------------------------------------------------------------------------------------ ternary unit


def drive_ternary(dut: TernaryUnit, vectors, bubbles=None, restarts=()):
    """Stream dot products (acts, codes) through the unit, a beat a cycle, back to back.

    ``bubbles[i]``: idle cycles (in_valid low) before beat i of the whole stream.  ``restarts``:
    indices of vectors preceded by an aborted partial dot product (one beat of junk without
    ``last``; the vector's ``first`` must discard it).  Returns (sums, the edge each sum appeared
    after, the edge each vector's first beat was taken at)."""
    lanes = dut.lanes
    beats = []  # (act word, code word, first, last, vector index or None)
    for vi, (a, c) in enumerate(vectors):
        if vi in restarts:
            beats.append((pack([[-128] * lanes], 8)[0], pack([[1] * lanes], 2)[0], 1, 0, None))
        n = -(-len(a) // lanes)
        pa = np.zeros(n * lanes, np.int64)
        pa[:len(a)] = a
        pa[len(a):] = np.random.default_rng(vi).integers(-128, 128, n * lanes - len(a))  # junk under code 0
        pc = np.zeros(n * lanes, np.int64)
        pc[:len(c)] = c
        aw, cw = pack(pa.reshape(n, lanes), 8), pack(pc.reshape(n, lanes), 2)
        for i in range(n):
            beats.append((aw[i], cw[i], int(i == 0), int(i == n - 1), vi if i == 0 else None))
    sums, at, starts = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-9)

    async def tb(ctx):
        edge, first, last = 0, None, None

        async def tick(k=1):
            nonlocal edge
            for _ in range(k):
                await ctx.tick()
                edge += 1
                if ctx.get(dut.sum_valid):
                    sums.append(ctx.get(dut.sum))
                    at.append(edge)

        for i, (aw, cw, f, la, vi) in enumerate(beats):
            if bubbles is not None and bubbles[i]:
                ctx.set(dut.in_valid, 0)
                await tick(int(bubbles[i]))
            ctx.set(dut.act.as_value(), aw)
            ctx.set(dut.code.as_value(), cw)
            if f != first:
                ctx.set(dut.first, f)
                first = f
            if la != last:
                ctx.set(dut.last, la)
                last = la
            ctx.set(dut.in_valid, 1)
            await tick()
            if vi is not None:
                starts.append(edge)
        ctx.set(dut.in_valid, 0)
        await tick(3)

    sim.add_testbench(tb)
    sim.run()
    return sums, at, starts


def random_vectors(n: int, kmax: int, rng):
    """Random (int8 activations, 2-bit codes incl. the reserved 0b10) with edge-case rows mixed in."""
    out = []
    for i in range(n):
        k = int(rng.integers(1, kmax + 1))
        a = rng.integers(-128, 128, k)
        c = rng.integers(0, 4, k)
        kind = i % 20
        if kind == 0:
            a[:] = -128
        elif kind == 1:
            a[:] = 127
        elif kind == 2:
            c[:] = tm.CODE_POS
        elif kind == 3:
            c[:] = tm.CODE_NEG
        elif kind == 4:
            c[:] = rng.choice([tm.CODE_ZERO, tm.CODE_RESERVED], k)
        elif kind == 5:
            a[:] = 0
        elif kind in (6, 7):  # the largest sums: -128 x +1 and -128 x -1 at the longest length
            a, c = np.full(kmax, -128), np.full(kmax, tm.CODE_POS if kind == 6 else tm.CODE_NEG)
        out.append((a, c))
    return out


@pytest.fixture(scope="module")
def ternary_run():
    rng = np.random.default_rng(2406)
    vectors = random_vectors(10_000, 40, rng)
    dut = TernaryUnit(lanes=8, acc_width=24)
    return vectors, dut, drive_ternary(dut, vectors)


@pytest.mark.slow
def test_ternary_unit_is_bit_exact_on_10000_random_vectors(ternary_run):
    vectors, _, (sums, _, _) = ternary_run
    assert len(sums) == len(vectors) == 10_000
    ref = [tm.ternary_dot_ref(a, c) for a, c in vectors]
    assert sums == ref
    assert min(ref) == -128 * 40 and max(ref) == 128 * 40  # the extremes of k = 40 occurred
    assert any(len(a) % 8 for a, _ in vectors) and any(len(a) % 8 == 0 for a, _ in vectors)


@pytest.mark.slow
def test_ternary_unit_cycles_are_the_formula(ternary_run):
    vectors, dut, (_, at, starts) = ternary_run
    observed = [t - s + 1 for t, s in zip(at, starts)]
    assert observed == [tm.ternary_unit_cycles(len(a), dut.lanes) for a, _ in vectors]
    # back to back: the whole stream is one GEMM-like run of sum(ceil(k / lanes)) beats plus the latency
    assert at[-1] == sum(-(-len(a) // dut.lanes) for a, _ in vectors) + tm.TERNARY_LATENCY


def test_ternary_gemm_cycles_and_values():
    rng = np.random.default_rng(5)
    m, n, k, lanes = 3, 5, 37, 8
    acts = rng.integers(-128, 128, (m, k))
    codes = tm.encode_ternary(rng.integers(-1, 2, (n, k)))
    vectors = [(acts[i], codes[j]) for i in range(m) for j in range(n)]
    sums, at, _ = drive_ternary(TernaryUnit(lanes=lanes), vectors)
    assert np.array_equal(np.array(sums).reshape(m, n), tm.ternary_matmul_ref(acts, codes))
    assert at[-1] == tm.ternary_gemm_cycles(m, n, k, lanes) == m * n * 5 + 1


@pytest.mark.parametrize("lanes,kmax,count", [(1, 6, 150), (3, 20, 200), (16, 70, 150)])
def test_ternary_unit_other_lane_counts(lanes, kmax, count):
    vectors = random_vectors(count, kmax, np.random.default_rng(lanes))
    dut = TernaryUnit(lanes=lanes, acc_width=tm.acc_bits(kmax))
    sums, at, starts = drive_ternary(dut, vectors)
    assert sums == [tm.ternary_dot_ref(a, c) for a, c in vectors]
    assert [t - s + 1 for t, s in zip(at, starts)] == [tm.ternary_unit_cycles(len(a), lanes) for a, _ in vectors]


def test_ternary_max_accumulator_and_wrap():
    k = 1001  # 125 full beats of 8 and one of 1
    w = tm.acc_bits(k)
    assert w == 18 and tm.max_length(w) >= k
    vectors = [(np.full(k, -128), np.full(k, tm.CODE_POS)), (np.full(k, -128), np.full(k, tm.CODE_NEG)),
               (np.full(k, 127), np.full(k, tm.CODE_POS)), (np.full(k, 127), np.full(k, tm.CODE_NEG)),
               (np.zeros(k, np.int64), np.full(k, tm.CODE_POS)), (np.full(k, 127), np.zeros(k, np.int64))]
    ref = [tm.ternary_dot_ref(a, c) for a, c in vectors]
    assert ref == [-128 * k, 128 * k, 127 * k, -127 * k, 0, 0]
    sums, at, starts = drive_ternary(TernaryUnit(lanes=8, acc_width=w), vectors)
    assert sums == ref
    assert {t - s + 1 for t, s in zip(at, starts)} == {tm.ternary_unit_cycles(k, 8)} == {127}
    # one bit narrower, the extremes wrap modulo 2^(w-1) (two's complement), the rest still fit
    sums, _, _ = drive_ternary(TernaryUnit(lanes=8, acc_width=w - 1), vectors)
    wrap = [((r + (1 << (w - 2))) % (1 << (w - 1))) - (1 << (w - 2)) for r in ref]
    assert sums == wrap and all(x != r for x, r in zip(wrap[:4], ref)) and wrap[4:] == ref[4:]


def test_ternary_bubbles_and_restarts():
    rng = np.random.default_rng(11)
    vectors = random_vectors(200, 30, rng)
    nbeats = sum(-(-len(a) // 4) for a, _ in vectors) + 20
    bubbles = rng.integers(0, 3, nbeats) * (rng.random(nbeats) < 0.3)
    sums, _, _ = drive_ternary(TernaryUnit(lanes=4, acc_width=16), vectors, bubbles=bubbles,
                               restarts=set(range(0, 200, 10)))
    assert sums == [tm.ternary_dot_ref(a, c) for a, c in vectors]


def test_ternary_unit_rejects_bad_parameters():
    with pytest.raises(SimError, match="lanes"):
        TernaryUnit(lanes=0)
    with pytest.raises(SimError, match="acc_width"):
        TernaryUnit(lanes=16, acc_width=12)  # one beat of 16 needs 13 bits


# ------------------------------------------------------------------------------------ row unit


def drive_rows(dut: RowUnit, rows):
    """Stream rows (op name, a, b, c; b and c may be None) back to back, rmsnorm rows twice.

    Lanes past a row's end carry random junk.  Returns (the edge each beat was taken at, per row a
    list of them; outputs as (edge, packed word); the edges in_ready was low)."""
    lanes = dut.lanes
    rng = np.random.default_rng(99)
    plan = []
    for op, a, b, c in rows:
        n = len(a)
        nb = -(-n // lanes)
        words = []
        for v in (a, b, c)[:tm.ROW_OPERANDS.get(op, 1)]:
            p = rng.integers(tm.Q_MIN, tm.Q_MAX + 1, nb * lanes)
            p[:n] = v
            words.append(pack(p.reshape(nb, lanes), 16))
        beats = list(zip(*words)) * (2 if op == "rmsnorm" else 1)
        plan.append((tm.ROW_OP_CODE.get(op, 7), n, beats))
    takes, outs, stalls = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    ports = (dut.a.as_value(), dut.b.as_value(), dut.c.as_value())

    async def tb(ctx):
        edge = 0
        ctx.set(dut.in_valid, 1)
        for op, n, beats in plan:
            ctx.set(dut.op, op)
            ctx.set(dut.length, n)
            row = []
            for words in beats:
                for port, w in zip(ports, words):
                    ctx.set(port, w)
                while True:
                    ready = ctx.get(dut.in_ready)
                    await ctx.tick()
                    edge += 1
                    if ctx.get(dut.out_valid):
                        outs.append((edge, ctx.get(dut.out.as_value())))
                    if ready:
                        row.append(edge)
                        break
                    stalls.append(edge)
            takes.append(row)
        ctx.set(dut.in_valid, 0)
        for _ in range(3):
            await ctx.tick()
            edge += 1
            if ctx.get(dut.out_valid):
                outs.append((edge, ctx.get(dut.out.as_value())))

    sim.add_testbench(tb)
    sim.run()
    return takes, outs, stalls


def expected_words(rows, lanes):
    """Per row, the packed output words of its output beats (zeros past the row's end; the reserved op
    code yields zeros)."""
    out = []
    for op, a, b, c in rows:
        y = np.zeros(len(a), np.int64) if op == "reserved" else tm.rowwise_ref(op, a, b, c)
        nb = -(-len(a) // lanes)
        p = np.zeros(nb * lanes, np.int64)
        p[:len(a)] = y
        out.append(pack(p.reshape(nb, lanes), 16))
    return out


def random_rows(count: int, lanes: int, rng, maxlen: int):
    ops = list(tm.ROW_OPS)
    weights = np.array([1, 1, 2, 2, 2, 2, 0.6])
    kinds = rng.choice(len(ops), count, p=weights / weights.sum())
    rows = []
    for i, kind in enumerate(kinds):
        op = ops[kind]
        n = int(rng.integers(1, maxlen + 1))

        def operand():
            v = rng.integers(tm.Q_MIN, tm.Q_MAX + 1, n)
            return v >> int(rng.choice([0, 2, 4, 6, 9]))  # full range down to |x| < 0.25

        a, b, c = operand(), operand(), operand()
        if op == "gru" and i % 3:
            a = rng.integers(0, tm.ONE + 1, n)  # f, a sigmoid output, in [0, 1]
        if op in ("sigmoid", "silu") and i % 2:
            a = rng.integers(-20 * tm.ONE, 20 * tm.ONE, n)  # the LUT's range and past it
        rows.append((op, a, b, c))
    return rows


def edge_rows(lanes: int):
    big, small = tm.Q_MAX, tm.Q_MIN
    full = lambda v, n=lanes: np.full(n, v)  # noqa: E731
    lim = tm.SIG_LIMIT
    ext = np.array([small, small + 1, -lim - 1, -lim, -lim + 1, -1, 0, 1, lim - 1, lim, lim + 1, big])
    return [
        ("add", full(big), full(big), None), ("add", full(small), full(small), None),  # saturation
        ("sub", full(small), full(big), None), ("sub", full(big), full(small), None),
        ("mul", full(small), full(small), None), ("mul", full(big), full(small), None),  # +-2^22 -> clamp
        ("mul", np.array([1, -1, 128, -128, 383]), np.array([128, 128, 1, 1, 128]), None),  # ties round up
        ("gru", full(0), full(big), full(small)), ("gru", full(tm.ONE), full(big), full(small)),
        ("gru", full(small), full(big), full(small)), ("gru", full(big), full(small), full(big)),  # f out of range
        ("sigmoid", ext, None, None), ("silu", ext, None, None),
        ("sigmoid", full(0), None, None), ("silu", full(small), None, None),
        ("rmsnorm", full(0), None, None), ("rmsnorm", full(small), None, None), ("rmsnorm", full(big), None, None),
        ("rmsnorm", np.array([1]), None, None), ("rmsnorm", np.array([small]), None, None),
        ("rmsnorm", np.r_[np.full(lanes * 3 + 1, 1), [big]], None, None),  # one outlier among tiny values
        ("rmsnorm", np.r_[np.zeros(300, np.int64), [256]], None, None),  # y = sqrt(301) > 16
        ("rmsnorm", np.zeros(lanes + 1, np.int64), None, None),
        ("add", np.array([5]), np.array([7]), None), ("sub", np.arange(lanes + 1), np.ones(lanes + 1), None),
        ("reserved", np.arange(1, lanes + 2), None, None),  # op code 7: zeros
    ]


def check_rows(dut, rows):
    """Drive rows and check every output word and every cycle against models.ternary."""
    lanes = dut.lanes
    takes, outs, stalls = drive_rows(dut, rows)
    exp = []
    for (op, *_), words, row_takes in zip(rows, expected_words(rows, lanes), takes):
        out_takes = row_takes[len(words):] if op == "rmsnorm" else row_takes  # pass 2's beats
        exp += [(t + tm.ROW_LATENCY, w) for t, w in zip(out_takes, words)]
    assert len(outs) == len(exp)
    bad = [i for i, (o, e) in enumerate(zip(outs, exp)) if o != e]
    if bad:
        i = bad[0]
        pytest.fail(f"{len(bad)} mismatching beats; first at edge {outs[i][0]}: got {unpack(outs[i][1], lanes)}, "
                    f"expected {unpack(exp[i][1], lanes)} at edge {exp[i][0]}")
    # rows back to back: row r's first beat is taken right after the previous rows' occupancy
    start = 1
    for (op, a, *_), row_takes in zip(rows, takes):
        op = op if op != "reserved" else "add"
        assert row_takes[0] == start
        start += tm.row_occupancy(op, len(a), lanes)
    assert len(stalls) == tm.RMS_COMPUTE_CYCLES * sum(r[0] == "rmsnorm" for r in rows)
    return outs


@pytest.fixture(scope="module")
def row_run():
    rng = np.random.default_rng(2528)
    dut = RowUnit(lanes=4)
    rows = random_rows(10_000, 4, rng, maxlen=10)
    return rows, check_rows(dut, rows)


@pytest.mark.slow
def test_row_unit_is_bit_exact_on_10000_random_rows(row_run):
    rows, outs = row_run
    assert len(rows) == 10_000 and {r[0] for r in rows} == set(tm.ROW_OPS)
    assert sum(r[0] == "rmsnorm" for r in rows) >= 400
    assert len(outs) == sum(-(-len(r[1]) // 4) for r in rows)


def test_row_unit_edge_cases():
    check_rows(RowUnit(lanes=4), edge_rows(4))
    y = tm.rowwise_ref
    big, small = tm.Q_MAX, tm.Q_MIN
    assert y("add", [big], [big])[0] == big and y("sub", [small], [big])[0] == small
    assert y("mul", [small], [small])[0] == big and y("mul", [big], [small])[0] == small
    assert y("mul", [1, -1, 383], [128, 128, 128]).tolist() == [1, 0, 192]  # 0.5 -> 1, -0.5 -> 0, 191.5 -> 192
    assert y("sigmoid", [small, 0, big]).tolist() == [0, 128, 256]
    assert y("silu", [small, 0, big]).tolist() == [0, 0, big]
    assert abs(y("rmsnorm", np.r_[np.zeros(300, np.int64), [256]])[-1] - np.sqrt(301) * 256) <= 1


@pytest.mark.parametrize("lanes", [1, 3, 8])
def test_row_unit_other_lane_counts(lanes):
    rng = np.random.default_rng(lanes)
    check_rows(RowUnit(lanes=lanes), random_rows(150, lanes, rng, maxlen=3 * lanes) + edge_rows(lanes))


@pytest.mark.slow
def test_row_unit_longest_and_saturating_rmsnorm_rows():
    """65535 elements of -128: the sum of squares' largest value (65535 x 2^30), 2 x 2048 beats + 40
    cycles; then 20000 elements with one nonzero: y = sqrt(20000) > 128 saturates."""
    n, lanes = tm.MAX_ROW, 32
    spike = np.zeros(20000, np.int64)
    spike[123] = -10 * tm.ONE
    rows = [("rmsnorm", np.full(n, tm.Q_MIN), None, None), ("rmsnorm", spike, None, None)]
    outs = check_rows(RowUnit(lanes=lanes), rows)
    assert tm.fx_rmsnorm(rows[0][1])[0] == -256 and tm.fx_rmsnorm(spike)[123] == tm.Q_MIN  # -1.0; saturated
    first = tm.rowwise_cycles("rmsnorm", n, lanes)
    assert first == 2 * 2048 + 40 + 1 and outs[2047][0] == first
    assert outs[-1][0] == first - tm.ROW_LATENCY + tm.rowwise_cycles("rmsnorm", len(spike), lanes)


def test_rowwise_cycles_of_uniform_rows():
    rng = np.random.default_rng(3)
    for op, n, count in (("silu", 10, 7), ("gru", 4, 5), ("rmsnorm", 10, 4), ("rmsnorm", 1, 3)):
        rows = [(op, rng.integers(0, 256, n), rng.integers(-999, 999, n), rng.integers(-999, 999, n))
                for _ in range(count)]
        outs = check_rows(RowUnit(lanes=4), rows)
        assert outs[-1][0] == tm.rowwise_cycles(op, n, 4, rows=count)


def test_row_unit_rejects_bad_parameters():
    with pytest.raises(SimError, match="lanes"):
        RowUnit(lanes=0)


# ------------------------------------------------------------------------------------ Verilog


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["matmulfree_ternary", "matmulfree_row"])
def test_verilog_export(tmp_path, unit):
    text = export(unit, tmp_path).read_text()
    assert f"module {unit}(" in text.replace(" (", "(") and "endmodule" in text
    r = subprocess.run([SIM, "hdl", "export", unit, "--out", str(tmp_path / "cli")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cli" / f"{unit}.v").read_text() == text
