"""The GPU target: tiling, wave quantization, split-K and the memory-bound path on hand-worked cases,
its precision paths, and Llama-2-7B on H100 end to end."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from models.errors import SimError
from sim.config import CONFIGS_DIR, Hardware
from sim.run import run
from sim.targets import build
from sim.targets.gpu import GPU, GPUParams, gemm_plan, mma_dtype
from sim.targets.parts import Precision
from workloads import trace

ROOT = Path(__file__).resolve().parents[2]


def toy(**kw) -> GPUParams:
    """A small GPU with round numbers: 4 SMs of 1 TFLOPS each (mma_efficiency 1), 1 TB/s HBM."""
    base = dict(sms=4, freq_hz=1e9, tensor_tflops={"fp16": 4.0}, mma_shapes={"fp16": [16, 8, 16]},
                vector_tflops=1.0, smem_per_sm_bytes=1 << 20,
                regs_per_sm_bytes=1 << 24,
                max_ctas_per_sm=1, l2_bytes=1 << 30, l2_bytes_per_s=1e15, hbm_bytes=1 << 34, hbm_bytes_per_s=1e12,
                hbm_efficiency=1.0, mma_efficiency=1.0, mem_latency_s=0.0, kernel_overhead_s=0.0,
                tiles=[[128, 128, 32, 2]], split_k=[1], node_nm=4)
    base.update(kw)
    return GPUParams(**base)


def plan(p, M, N, K, batch=1, **kw):
    return gemm_plan(p, [M], [N], [K], [batch], 2, 2, 2, p.tensor_tflops["fp16"], **kw)


def test_wave_quantization_by_hand():
    p = toy()
    # 2 x 5 = 10 CTAs on 4 SMs: 3 waves, each 2*128*128*K flops per SM at 1 TFLOPS
    K = 4096
    a = plan(p, 256, 640, K)
    assert a["ctas"][0] == 10 and a["waves"][0] == 3
    assert a["compute_s"][0] == pytest.approx(3 * 2 * 128 * 128 * K / 1e12)
    # 8 CTAs: 2 waves.  25% more work costs 50% more time (the third wave is half empty)
    b = plan(p, 256, 512, K)
    assert b["waves"][0] == 2
    assert a["time_s"][0] / b["time_s"][0] == pytest.approx(1.5)


def test_a_part_filled_wave_spreads_its_ctas_over_the_sms():
    """Two CTAs fit an SM at once, but a wave with fewer CTAs than SMs runs one per SM: its time is
    one CTA's work, not two (the block scheduler fills SMs breadth-first)."""
    p = toy(max_ctas_per_sm=2)
    K = 4096
    one = 2 * 128 * 128 * K / 1e12
    r = plan(p, 128, 512, K)  # 4 CTAs on 4 SMs
    assert r["waves"][0] == 1 and r["compute_s"][0] == pytest.approx(one)
    r = plan(p, 128, 768, K)  # 6 CTAs: two SMs take two
    assert r["waves"][0] == 1 and r["compute_s"][0] == pytest.approx(2 * one)
    r = plan(p, 128, 1280, K)  # 10 CTAs: one full wave of 8 (two per SM), then 2 spread
    assert r["waves"][0] == 2 and r["compute_s"][0] == pytest.approx(3 * one)


def test_clusters_read_the_shared_operand_once():
    """A 2-CTA cluster along M reads its common B slice once (TMA multicast): the L2 traffic of an
    L2-bound GEMM drops by B's share, and the search takes the cluster only where it pays."""
    slow_l2 = {"l2_bytes_per_s": 1e10, "tiles": [[128, 128, 32, 2]]}
    M, N, K = 512, 128, 4096  # 4 x 1 tiles: B's slice is common to all four
    plain = plan(toy(**slow_l2), M, N, K)
    clus = plan(toy(cluster=2, **slow_l2), M, N, K)
    ctas, kit = 4, K // 32
    assert plain["l2_bytes"][0] == pytest.approx(ctas * kit * 32 * (128 * 2 + 128 * 2) + M * N * 2)
    assert clus["l2_bytes"][0] == pytest.approx(ctas * kit * 32 * (128 * 2 + 128 * 2 / 2) + M * N * 2)
    assert clus["cluster"][0] == 2 and clus["time_s"][0] < plain["time_s"][0]
    # one tile along each dimension: no cluster fits, the plan is the plain one
    single = plan(toy(cluster=2, **slow_l2), 128, 128, K)
    assert single["cluster"][0] == 1
    assert single["time_s"][0] == pytest.approx(plan(toy(**slow_l2), 128, 128, K)["time_s"][0])


def test_a_long_list_of_gemms_is_planned_in_chunks_with_the_same_result(monkeypatch):
    """The candidate search holds GEMMs x candidates arrays: past PLAN_CHUNK GEMMs it plans in chunks
    (a long decode's attention matmuls), with exactly the result of one pass."""
    import sim.targets.gpu as g

    rng = np.random.default_rng(0)
    n = 1000
    M, N, K = (rng.integers(1, 4096, n) for _ in range(3))
    B = rng.integers(1, 4, n)
    res = rng.random(n) < 0.5
    p = toy(tiles=[[128, 128, 32, 2], [64, 64, 32, 2]], split_k=[1, 2], cluster=2, max_ctas_per_sm=2)
    whole = g.gemm_plan(p, M, N, K, B, 2, 2, 2, 4.0, b_resident=res)
    monkeypatch.setattr(g, "PLAN_CHUNK", 97)
    chunked = g.gemm_plan(p, M, N, K, B, 2, 2, 2, 4.0, b_resident=res)
    assert set(whole) == set(chunked)
    for k in whole:
        np.testing.assert_array_equal(whole[k], chunked[k], err_msg=k)


def test_padding_is_charged_and_the_least_padded_tile_wins():
    p = toy(tiles=[[128, 128, 32, 2], [64, 64, 32, 2]])
    # a 64 x 64 output: one 128-tile (4x the work) or one 64-tile; the 64-tile is 4x faster
    r = plan(p, 64, 64, 8192)
    assert (r["bm"][0], r["bn"][0]) == (64, 64)
    assert r["padded_macs"][0] == 64 * 64 * 8192
    only_big = plan(toy(), 64, 64, 8192)
    assert only_big["padded_macs"][0] == 128 * 128 * 8192
    assert only_big["compute_s"][0] == pytest.approx(4 * r["compute_s"][0])


def test_big_tiles_win_when_l2_bandwidth_binds():
    # both tiles divide the GEMM (no padding, same waves' worth of flops); the small tile re-reads A and B
    # from L2 twice as often, so with a slow L2 the big tile wins
    p = toy(sms=64, tiles=[[64, 64, 32, 2], [128, 128, 32, 2]], l2_bytes_per_s=2e10)
    r = plan(p, 1024, 1024, 1024)
    assert (r["bm"][0], r["bn"][0]) == (128, 128)
    small = plan(toy(sms=64, tiles=[[64, 64, 32, 2]], l2_bytes_per_s=2e10), 1024, 1024, 1024)
    assert small["l2_bytes"][0] > 1.9 * (r["l2_bytes"][0] - 1024 * 1024 * 2)


def test_split_k_fills_the_sms_of_a_flat_gemm():
    p = toy(sms=8, split_k=[1, 2, 4, 8])
    r = plan(p, 64, 128, 16384)  # one output tile: without split-K seven SMs idle
    assert r["split"][0] == 8 and r["ctas"][0] == 8 and r["waves"][0] == 1
    one = plan(toy(sms=8), 64, 128, 16384)
    assert one["compute_s"][0] == pytest.approx(8 * r["compute_s"][0])
    # partial sums of the slices go through L2
    assert r["l2_bytes"][0] > one["l2_bytes"][0]


def test_a_split_leaves_each_cta_two_k_steps():
    p = toy(sms=8, split_k=[1, 8])
    r = plan(p, 64, 128, 256)  # K / 8 = 32 < 2 * BK: no split
    assert r["split"][0] == 1


def test_shared_memory_limits_occupancy_and_tiles():
    # 2 stages x (128 + 128) x 32 x 2 bytes = 32 KB per CTA: 64 KB of smem holds 2, 40 KB holds 1
    two = plan(toy(smem_per_sm_bytes=64 * 1024, max_ctas_per_sm=4), 128 * 16, 128, 4096)
    one = plan(toy(smem_per_sm_bytes=40 * 1024, max_ctas_per_sm=4), 128 * 16, 128, 4096)
    assert two["waves"][0] == 2 and one["waves"][0] == 4
    assert two["compute_s"][0] == pytest.approx(one["compute_s"][0])  # same SM throughput either way
    with pytest.raises(SimError, match="shared memory"):
        plan(toy(smem_per_sm_bytes=16 * 1024), 128, 128, 128)
    # registers: 2 x 128 x 128 x 4 bytes = 128 KB per CTA; a 256 KB register file holds 2
    regs = plan(toy(smem_per_sm_bytes=1 << 20, max_ctas_per_sm=4, regs_per_sm_bytes=256 * 1024), 128 * 16, 128, 4096)
    assert regs["waves"][0] == 2


def test_decode_gemm_is_memory_bound_at_weight_bytes_over_bandwidth():
    target, _, _ = build(Hardware(file="targets/gpu_h100_sxm.yaml"), CONFIGS_DIR / "t.yaml")
    p = target.params
    r = gemm_plan(p, [1], [4096], [4096], [1], 2, 2, 2, target.rate("fp16"))
    weight_s = 4096 * 4096 * 2 / (p.hbm_bytes_per_s * p.hbm_efficiency)
    assert r["hbm_s"][0] == pytest.approx(weight_s, rel=1e-3)  # the activation and output stay in L2
    assert r["time_s"][0] == pytest.approx(weight_s + r["waves"][0] * p.mem_latency_s + p.kernel_overhead_s,
                                           rel=1e-6)
    assert r["compute_s"][0] < r["hbm_s"][0] / 5
    assert r["bm"][0] == min(t[0] for t in p.tiles)  # padded only to the narrowest token tile


def test_precision_paths():
    assert mma_dtype(16, 16) == "fp16" and mma_dtype(16, 16, "bf16") == "bf16"
    assert mma_dtype(4, 16) == "fp16"  # weight-only quantization runs the fp16 MMA
    assert mma_dtype(8, 8) == "int8" and mma_dtype(8, 8, prefer_fp8=True) == "fp8"
    assert mma_dtype(4, 4) == "int4" and mma_dtype(1, 1) == "b1"
    h100, _, _ = build(Hardware(file="targets/gpu_h100_sxm.yaml"), CONFIGS_DIR / "t.yaml")
    a100, _, _ = build(Hardware(file="targets/gpu_a100_sxm_80gb.yaml"), CONFIGS_DIR / "t.yaml")
    with pytest.raises(SimError, match="no int4 tensor-core path"):
        h100.peak_macs_per_cycle(4, 4)
    assert a100.peak_macs_per_cycle(4, 4) == pytest.approx(4 * a100.peak_macs_per_cycle(16, 16))
    assert h100.peak_macs_per_cycle(8, 8) == pytest.approx(2 * h100.peak_macs_per_cycle(16, 16), rel=1e-3)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown MMA dtype"):
        toy(tensor_tflops={"fp12": 1.0})
    with pytest.raises(ValueError, match="BM, BN, BK, stages"):
        toy(tiles=[[128, 128, 32]])
    with pytest.raises(ValueError, match="include 1"):
        toy(split_k=[2, 4])
    with pytest.raises(ValueError, match="no MMA shape for 'int8'"):
        toy(tensor_tflops={"fp16": 4.0, "int8": 8.0})
    with pytest.raises(ValueError, match="multiple of the MMA's k"):
        toy(tiles=[[128, 128, 40, 2]])


def test_fused_vector_ops_pay_no_launch():
    df = trace("Llama-2-7B", "decode", 1, 1, 64)
    eager = GPU(toy(kernel_overhead_s=3e-6)).cost(df, Precision(16, 16))
    fused = GPU(toy(kernel_overhead_s=3e-6, fuse_vector_ops=True)).cost(df, Precision(16, 16))
    vec = ~df.kind.isin(["gemm", "attn_matmul", "view"]).to_numpy()
    gap = (eager.compute_cycles[vec] - fused.compute_cycles[vec]).sum()
    assert gap == pytest.approx(vec.sum() * 3e-6 * 1e9, rel=1e-3)


@pytest.fixture(scope="module")
def llama_h100():
    return run(ROOT / "configs" / "gpu" / "llama2-7b-h100.yaml")


def test_llama2_7b_h100_decode_against_weight_bytes_over_bandwidth(llama_h100):
    """Decode per token is the weights (and KV) streamed at the achievable HBM bandwidth plus each
    GEMM kernel's launch and pipeline fill: between bytes / peak bandwidth and that sum."""
    r = llama_h100
    p = r.target.params
    s = r.summary["decode"]
    tok = s["time_per_token_s"]
    weights = trace("Llama-2-7B", "decode", 1, 1, 256).weight_bytes.sum()
    bound = weights / p.hbm_bytes_per_s
    assert bound < tok < 1.25 * bound
    dec = r.ops[r.ops.phase == "decode"]
    gemms = dec.kind.isin(["gemm", "attn_matmul"]).sum()
    ceiling = (dec.dram_read_bytes.sum() + dec.dram_write_bytes.sum()) / 64 / (p.hbm_bytes_per_s * p.hbm_efficiency) \
        + gemms * (p.kernel_overhead_s + 2 * p.mem_latency_s)
    assert tok <= ceiling * 1.01
    assert dec.loc[dec.bound == "memory", "time_s"].sum() > 0.95 * dec.time_s.sum()


def test_llama2_7b_h100_prefill_is_compute_bound(llama_h100):
    r = llama_h100
    pre = r.ops[r.ops.phase == "prefill"]
    assert pre.loc[pre.bound == "compute", "time_s"].sum() > 0.8 * pre.time_s.sum()
    # no faster than the tensor-core peak allows, and not absurdly slower
    p = r.target.params
    floor = pre.macs.sum() * 2 / (p.tensor_tflops["fp16"] * 1e12)
    assert floor < r.summary["prefill"]["latency_s"] < 4 * floor


def test_gpu_target_files_load_and_decode_scales_with_bandwidth(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "gpu" / "llama2-7b-h100.yaml").read_text())
    cfg["workload"]["decode_tokens"] = 2
    out = {}
    for name in ("gpu_h100_sxm", "gpu_h200", "gpu_a100_sxm_80gb"):
        cfg["hardware"]["file"] = str(ROOT / "configs" / "targets" / f"{name}_cudagraph.yaml")
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        out[name] = run(path).summary["decode"]["time_per_token_s"]
    assert out["gpu_h200"] < out["gpu_h100_sxm"] < out["gpu_a100_sxm_80gb"]
    # memory-bound: the per-token time follows the HBM bandwidth (4.8 vs 3.35 TB/s) up to fixed costs
    assert out["gpu_h100_sxm"] / out["gpu_h200"] == pytest.approx(4.8 / 3.35, rel=0.12)
    assert np.isfinite(list(out.values())).all()


def test_apmm_is_one_stacked_binary_gemm():
    from sim.targets.gpu import apmm_plan

    b1 = [[128, 128, 512, 2]]
    p = toy(tensor_tflops={"fp16": 4.0, "b1": 64.0}, mma_shapes={"fp16": [16, 8, 16], "b1": [16, 8, 256]},
            tiles_by_dtype={"b1": b1}, sms=16)
    r = apmm_plan(p, [128], [256], [4096], [1], 2, 4, 64.0, tiles=b1)
    # W2A4: the 4 activation planes stacked along M, the 2 weight planes along N, one binary GEMM
    g = gemm_plan(p, [4 * 128], [2 * 256], [4096], [1], 1 / 8, 1 / 8, 2 / 8, 64.0, tiles=b1)
    planes = 128 * 4096 * (2 + 4 / 8)
    assert r["time_s"][0] == pytest.approx(g["time_s"][0] + planes / p.l2_bytes_per_s)
    assert r["padded_macs"][0] == 4 * 128 * 2 * 256 * 4096


def test_apmm_against_native_integer_paths_on_a100():
    a100, _, _ = build(Hardware(file="targets/gpu_a100_sxm_80gb.yaml", params={"arbitrary_precision": True}),
                       CONFIGS_DIR / "t.yaml")
    native, _, _ = build(Hardware(file="targets/gpu_a100_sxm_80gb.yaml"), CONFIGS_DIR / "t.yaml")
    df = trace("Llama-2-7B", "prefill", 1, 1024)
    g = df[(df.kind == "gemm") & (df.role != "lm_head")]
    t = lambda tgt, w, a: tgt.cost(g, Precision(w, a)).compute_cycles.sum()  # noqa: E731
    # compute-bound: W1A4 is 4 binary GEMMs at 4992 TOPS = INT4's 1248 TOPS; W2A4 twice the work
    assert t(a100, 1, 4) / t(native, 4, 4) == pytest.approx(1.0, rel=0.1)
    assert t(a100, 2, 4) / t(a100, 1, 4) == pytest.approx(2.0, rel=0.1)
    # memory-bound decode: W1 weights are a quarter of INT4's bytes
    d = trace("Llama-2-7B", "decode", 1, 1, 128)
    d = d[(d.kind == "gemm") & (d.role != "lm_head")]
    assert a100.cost(d, Precision(1, 4)).dram_read_bytes.sum() < 0.3 * native.cost(d, Precision(4, 4)).dram_read_bytes.sum()
    assert a100.peak_macs_per_cycle(2, 4) == pytest.approx(native.peak_macs_per_cycle(4, 4) / 2)
    h100, _, _ = build(Hardware(file="targets/gpu_h100_sxm.yaml", params={"arbitrary_precision": True}),
                       CONFIGS_DIR / "t.yaml")
    with pytest.raises(SimError, match="no b1 tensor-core path"):
        h100.cost(d, Precision(2, 4))
