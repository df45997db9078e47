"""Engine and accelerator template on hand-derivable micro-cases."""

import numpy as np
import pandas as pd
import pytest

from sim.engine import analytic, simulate
from sim.targets.accelerator import Accelerator, AcceleratorParams
from sim.targets.base import Costs
from sim.targets.parts import Precision


def costs(n_tiles, load, compute, store, tile_bytes, buffer_bytes, prefetch=None):
    n = len(n_tiles)
    a = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return Costs(n_tiles=a(n_tiles), load_cycles=a(load), compute_cycles=a(compute), store_cycles=a(store),
                 tile_bytes=a(tile_bytes), prefetch=np.ones(n, bool) if prefetch is None else np.asarray(prefetch),
                 dram_read_bytes=a([0] * n), dram_write_bytes=a([0] * n), macs=a([0] * n), buffer_bytes=buffer_bytes)


def test_one_tile_is_load_then_compute_then_store():
    c = costs([1], [100], [40], [30], [64], 1024)
    tl = simulate(c)
    assert tl.op_end.tolist() == [140] and tl.makespan == 170


def test_double_buffering_overlaps_loads_and_compute():
    # 3 tiles of 10 load + 20 compute cycles; two fit in the buffer: 10 + 3 * 20
    c = costs([3], [30], [60], [0], [400], 1000)
    assert simulate(c).makespan == 70
    assert analytic(c).makespan == 70


def test_full_buffer_stalls_the_loads():
    # the same tiles, but only one fits (600 of 1000 bytes): no overlap, 3 * (10 + 20)
    c = costs([3], [30], [60], [0], [600], 1000)
    assert simulate(c).makespan == 90


def test_stores_share_the_dram_channel_with_loads():
    # tile 0: load 10, compute 10, store 10; tile 1's load (10..20) then its compute (20..30);
    # tile 0's store waits for tile 1's load and runs 20..30; tile 1's store 30..40
    c = costs([2], [20], [20], [20], [100], 1000)
    tl = simulate(c)
    assert tl.op_end.tolist() == [30] and tl.makespan == 40


def test_dependent_op_waits_for_the_previous_op():
    # op 1 reads op 0's output from DRAM (no prefetch): its load starts when op 0 is done
    c = costs([1, 1], [10, 10], [50, 5], [0, 0], [10, 10], 1000, prefetch=[True, False])
    assert simulate(c).op_end.tolist() == [60, 75]
    c = costs([1, 1], [10, 10], [50, 5], [0, 0], [10, 10], 1000, prefetch=[True, True])
    assert simulate(c).op_end.tolist() == [60, 65]


def test_remainders_go_to_the_first_tiles():
    from sim.engine.tiles import _split

    assert [_split(10, 3, t) for t in range(3)] == [4, 3, 3]
    # loads 4 + 3 + 3, computes 10 each: the first compute starts at 4 (3 if the remainder went last)
    c = costs([3], [10], [30], [0], [0], 1000)
    assert simulate(c).makespan == 4 + 30


def gemm_row(m, n, k, batch=1, weight=True, kind="gemm", dtype="f16", kv=0):
    el = 2
    a, b, out = m * k * el * batch, k * n * el * (1 if weight else batch), m * n * el * batch
    return dict(idx=0, op="mm", kind=kind, role="q_proj", module="x", layer=0,
                in_shapes=f"{m}x{k};{k}x{n}", in_dtypes="f16;f16", out_shapes=f"{m}x{n}", dtype=dtype,
                flops=2 * m * n * k * batch, bytes_read=a + b, bytes_written=out,
                weight_bytes=b if weight else 0, kv_bytes_read=kv, kv_bytes_written=0,
                gemm_m=m, gemm_n=n, gemm_k=k, gemm_batch=batch)


def small(**kw):
    p = dict(pe_rows=4, pe_cols=4, dp=1, pe_latency={"w16a16": 1, "w4a16": 2}, weight_buffer_bytes=1024,
             act_buffer_bytes=1024, dram_bits_per_cycle=64, dram_latency_cycles=0, vector_lanes=4,
             freq_hz=1e9, node_nm=28)
    p.update(kw)
    return Accelerator(AcceleratorParams(**p))


def test_gemm_on_a_4x4_array():
    # C[8,8] = A[8,16] B[16,8] fp16: 2 token blocks x 2 channel blocks x 16 steps = 64 cycles.
    # B = 256 bytes from DRAM at 8 B/cycle = 32 cycles, in 2 tiles (4 x 16 x 2 = 128 bytes each);
    # A (256 B) and C (128 B) fit half the activation buffer: no DRAM.
    t = small()
    c = t.cost(pd.DataFrame([gemm_row(8, 8, 16)]), Precision(16, 16))
    assert c.compute_cycles.tolist() == [64] and c.n_tiles.tolist() == [2]
    assert c.load_cycles.tolist() == [32] and c.store_cycles.tolist() == [0]
    assert c.dram_read_bytes.tolist() == [256] and c.macs.tolist() == [8 * 8 * 16]
    # weight buffer: each step reads 4 channels x 1 product x 2 bytes, 64 steps
    assert c.actions["weight_buffer.read"].tolist() == [64 * 4 * 2]
    assert c.actions["pe_array.pe_cycle"].tolist() == [64 * 16]
    # tile 0 loads 0..16, computes 16..48; tile 1 loads 16..32, computes 48..80
    assert simulate(c).makespan == 80 == analytic(c).makespan


def test_bit_serial_latency_and_weight_precision():
    t = small()
    c = t.cost(pd.DataFrame([gemm_row(8, 8, 16)]), Precision(4, 16))
    assert c.compute_cycles.tolist() == [128]  # 2 cycles per step at w4a16
    assert c.dram_read_bytes.tolist() == [64]  # 4-bit weights: a quarter of the bytes


def test_dram_bound_gemv():
    # y[1,64] = x[1,64] W[64,64]: 16 channel blocks x 64 steps = 1024 cycles of compute;
    # W = 8 KiB at 2 B/cycle = 4096 cycles: 16 tiles of 256 load + 64 compute cycles.
    t = small(dram_bits_per_cycle=16)
    c = t.cost(pd.DataFrame([gemm_row(1, 64, 64)]), Precision(16, 16))
    assert c.compute_cycles.tolist() == [1024] and c.load_cycles.tolist() == [4096]
    assert c.n_tiles.tolist() == [16]
    assert simulate(c).makespan == 4096 + 64 == analytic(c).makespan


def test_block_larger_than_half_the_buffer_is_split_along_k():
    # a 4 x 128 x 2 = 1024-byte block does not fit half (512) of the weight buffer.  Loop order (a)
    # splits it into 2 K-parts and reads A (2 KiB) once per 4-channel block: B + 2 A = 6 KiB.
    # Order (b) moves less: the whole 8 x 8 fp32 output (256 B) stays in half the activation
    # buffer while K streams in slices of 16 (A 8 x 16 x 2 = 256 B, a quarter of the buffer;
    # B 16 x 8 x 2 = 256 B): A and B read once, 8 slices
    t = small()
    c = t.cost(pd.DataFrame([gemm_row(8, 8, 128)]), Precision(16, 16))
    assert c.n_tiles.tolist() == [8]
    assert c.dram_read_bytes.tolist() == [128 * 8 * 2 + 8 * 128 * 2]
    assert c.actions["act_buffer.write"][0] > 8 * 128 * 2  # the partial sums go back and forth on chip
    # with a tiny activation buffer the partial sums do not fit: each K-part is fetched per token block
    t = small(act_buffer_bytes=64)
    c = t.cost(pd.DataFrame([gemm_row(8, 8, 128)]), Precision(16, 16))
    b = 128 * 8 * 2
    a = 8 * 128 * 2
    out = 8 * 8 * 2
    assert c.dram_read_bytes.tolist() == [b * 2 + a * 2]
    assert c.dram_write_bytes.tolist() == [out]


def test_views_cost_nothing_and_vector_ops_use_the_lanes():
    t = small()
    rows = [dict(gemm_row(1, 1, 1), kind="view", op="view", flops=0, bytes_read=0, bytes_written=0, weight_bytes=0,
                 gemm_m=0, gemm_n=0, gemm_k=0, gemm_batch=0),
            dict(gemm_row(1, 1, 1), kind="elementwise", op="add", flops=100, bytes_read=300, bytes_written=200,
                 weight_bytes=0, gemm_m=0, gemm_n=0, gemm_k=0, gemm_batch=0)]
    c = t.cost(pd.DataFrame(rows), Precision(16, 16))
    assert c.n_tiles.tolist() == [0, 1]
    assert c.compute_cycles.tolist() == [0, 25]  # 100 element-ops on 4 lanes
    assert c.load_cycles.tolist() == [0, 0]  # 500 bytes fit half the activation buffer
    rows[1]["bytes_read"] = 400  # 600 bytes do not: read from and written to DRAM at 8 B/cycle
    c = t.cost(pd.DataFrame(rows), Precision(16, 16))
    assert c.load_cycles.tolist() == [0, 50] and c.store_cycles.tolist() == [0, 25]
    assert not c.prefetch[1]


def test_unsupported_precision_is_a_user_error():
    from models.errors import SimError

    with pytest.raises(SimError, match="no PE latency for w3a16"):
        small().cost(pd.DataFrame([gemm_row(8, 8, 16)]), Precision(3, 16))


def test_addmm_charges_a_not_the_bias():
    # addmm(bias[64], A[256,64], W[64,64]): A = 32 KiB does not fit half of a 1 KiB activation buffer
    row = gemm_row(256, 64, 64)
    row.update(op="addmm", in_shapes="64;256x64;64x64", bytes_read=row["bytes_read"] + 128,
               weight_bytes=row["weight_bytes"] + 128)
    c = small().cost(pd.DataFrame([row]), Precision(16, 16))
    a_bytes = 256 * 64 * 2
    w_bytes = 64 * 64 * 2
    # the cheapest order: output tiles of 8 tokens x 16 channels (512 B of fp32 partial sums): A read
    # 4 times, W once per 8-token chunk (32 times), the bias once (order (a): W + 16 A, 532,608 B)
    assert c.dram_read_bytes.tolist() == [a_bytes * 4 + w_bytes * 32 + 128]
    assert not c.prefetch[0]


def test_k_split_refetch_keeps_tiles_within_half_the_buffer():
    # W[256, 64] (32 KiB) in 4-channel blocks of 4 x 256 x 2 = 2 KiB.  Order (a): 4 K-parts of 512 B,
    # W once, A (16 KiB) once per channel block: 288 KiB.  Order (b) moves less: output tiles of
    # 8 tokens x 16 channels (512 B of fp32 partial sums), K in slices of 16 (A 8 x 16 x 2 = 256 B,
    # W 16 x 16 x 2 = 512 B, half the weight buffer): A read 4 times, W once per 8-token chunk (4):
    # 4 x 4 tiles x 16 slices, each 512 B
    t = small()
    a, w = 32 * 256 * 2, 256 * 64 * 2
    c = t.cost(pd.DataFrame([gemm_row(32, 64, 256)]), Precision(16, 16))
    assert c.n_tiles.tolist() == [4 * 4 * 16]
    assert c.tile_bytes.tolist() == [512]
    assert c.dram_read_bytes.tolist() == [4 * a + 4 * w]
    # 40 tokens: 5 chunks of 8, W fetched 5 times, A 4 times; tiles still 512 B
    a = 40 * 256 * 2
    c = t.cost(pd.DataFrame([gemm_row(40, 64, 256)]), Precision(16, 16))
    assert c.n_tiles.tolist() == [5 * 4 * 16] and c.tile_bytes.tolist() == [512]
    assert c.dram_read_bytes.tolist() == [4 * a + 5 * w]
    # latency grows smoothly with the tokens (no cliff) and SimPy agrees with the closed form
    ms = (24, 32, 40, 64, 200)
    times = []
    for m in ms:
        c = t.cost(pd.DataFrame([gemm_row(m, 64, 256)]), Precision(16, 16))
        s, a = simulate(c).makespan, analytic(c).makespan
        assert a == pytest.approx(s, rel=0.02)
        times.append(s)
    for (m0, t0), (m1, t1) in zip(zip(ms, times), zip(ms[1:], times[1:])):
        assert t1 / t0 < 4 * m1 / m0


def attn_row(b, h, hkv, s, kv_len, d, kv_read=True):
    """An attention score matmul: q [b, h, s, d] x k [b, hkv, kv_len, d] from the KV cache."""
    q = b * h * s * d * 2
    k = b * hkv * kv_len * d * 2
    return dict(idx=0, op="mlhw.attn_score", kind="attn_matmul", role="attn_score", module="x", layer=0,
                in_shapes=f"{b}x{h}x{s}x{d};{b}x{hkv}x{kv_len}x{d}", in_dtypes="f16;f16",
                out_shapes=f"{b}x{h}x{s}x{kv_len}", dtype="f16", flops=2 * b * h * s * kv_len * d,
                bytes_read=q + k, bytes_written=b * h * s * kv_len * 2, weight_bytes=0,
                kv_bytes_read=k if kv_read else 0, kv_bytes_written=0,
                gemm_m=s, gemm_n=kv_len, gemm_k=d, gemm_batch=b * h)


def test_kv_and_weight_storage_precision():
    t = small(pe_latency={"w16a16": 1, "w8a16": 4, "w4a16": 2})
    row = attn_row(1, 8, 2, 1, 64, 16)
    c16 = t.cost(pd.DataFrame([row]), Precision(16, 16))
    c8 = t.cost(pd.DataFrame([row]), Precision(4, 16, kv_bits=8))
    kv = 2 * 64 * 16 * 2  # GQA: two KV heads read once each
    assert c16.dram_read_bytes.tolist() == [kv] and c8.dram_read_bytes.tolist() == [kv // 2]
    # attention steps at the KV precision's latency (4 cycles at w8), not the weights' (2 at w4)
    assert c8.compute_cycles.tolist() == [4 * c16.compute_cycles[0]]
    # weights stored with metadata: 4 + 8/128 bits per weight
    g = t.cost(pd.DataFrame([gemm_row(1, 64, 128)]), Precision(4, 16, weight_storage_bits=4.0625))
    assert g.dram_read_bytes.tolist() == [int(np.ceil(64 * 128 * 4.0625 / 8))]


def test_narrow_weights_widen_the_activation_reuse_block():
    # A [64 x 64] fp16 (8 KiB) does not fit half of a 1 KiB activation buffer; W [64 x 64].  Order (a):
    # fp16 rows of 128 B -> 4 channels fit half the weight buffer (one array-row block): A read 16x
    # (136 KiB), beaten by order (b) (8-token x 16-channel output tiles: A 4x, W 8x, 96 KiB);
    # 4-bit rows of 32 B -> 16 channels: A read 4x, W once (34 KiB), the cheapest of the three
    t = small()
    a_bytes = 64 * 64 * 2
    c16 = t.cost(pd.DataFrame([gemm_row(64, 64, 64)]), Precision(16, 16))
    c4 = t.cost(pd.DataFrame([gemm_row(64, 64, 64)]), Precision(4, 16))
    assert c16.dram_read_bytes.tolist() == [64 * 64 * 2 * 8 + a_bytes * 4]
    assert c4.dram_read_bytes.tolist() == [64 * 64 // 2 + a_bytes * 4]


def test_the_schedule_never_moves_more_than_the_weight_block_order():
    # on random GEMMs and small machines the chosen schedule's DRAM bytes are at most those of order
    # (a) alone (weights once, A once per weight block), computed here by hand; compute is unchanged
    rng = np.random.default_rng(0)
    fewer = 0
    for _ in range(200):
        pe_r, pe_c = (int(x) for x in rng.choice([2, 4, 8], 2))
        wb, ab = (int(x) for x in rng.choice([256, 1024, 4096], 2))
        t = small(pe_rows=pe_r, pe_cols=pe_c, weight_buffer_bytes=wb, act_buffer_bytes=ab)
        m, n, k = (int(x) for x in rng.integers(1, 200, 3))
        c = t.cost(pd.DataFrame([gemm_row(m, n, k)]), Precision(16, 16))
        a_bytes, w_bytes = m * k * 2, k * n * 2
        rows = min(n, pe_r)
        k_parts = max(1, -(-rows * k * 2 // (wb // 2)))
        if k_parts > 1:
            m_chunk = max(pe_c, (ab // 2 // (rows * 4)) // pe_c * pe_c)
            nt, w_once = pe_r, w_bytes * -(-m // m_chunk)
        else:
            nt, w_once = max(pe_r, (wb // 2) // (k * 2)), w_bytes
        order_a = w_once + (a_bytes * -(-n // nt) if a_bytes > ab // 2 else 0)
        assert c.dram_read_bytes[0] <= order_a
        assert c.compute_cycles[0] == -(-m // pe_c) * -(-n // pe_r) * k
        fewer += c.dram_read_bytes[0] < order_a
    assert fewer > 20  # the other orders do win, often


def test_task_graph_refuses_a_duplicate_name_after_many_tasks():
    """Task names are unique (checked in constant time per task: EasySpec's sweep adds hundreds of
    thousands)."""
    from models.errors import SimError
    from sim.engine.graph import TaskGraph

    g = TaskGraph()
    for i in range(2000):
        g.add(f"t{i}", ("r",), 1.0, (f"t{i - 1}",) if i else ())
    with pytest.raises(SimError, match="duplicate task 't7'"):
        g.add("t7", ("r",), 1.0)
    assert g.run() == 2000.0 and len(g.tasks) == 2000
