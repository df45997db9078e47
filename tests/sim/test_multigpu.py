"""The multi-GPU timing model on hand-worked two-GPU cases: collectives, the SimPy timeline,
tensor-parallel sharding, and the three decoders' iterations."""

import json

import pytest

from sim.config import CONFIGS_DIR, Hardware
from sim.multigpu import (Link, StepTimes, Timeline, expected_tokens, run_decoder, shard,
                          speculative_iteration, vanilla_iteration)
from sim.targets import build
from workloads import trace

LINK = Link(bytes_per_s=100e9, latency_s=10e-6)


def test_ring_collectives_by_hand():
    # 2 GPUs, 1 MB: all-reduce moves 2 (n-1)/n = 1x the bytes, all-gather (n-1)/n = 0.5x
    assert LINK.all_reduce(1e6, 2) == pytest.approx(10e-6 + 1e6 / 100e9)
    assert LINK.all_gather(1e6, 2) == pytest.approx(10e-6 + 0.5e6 / 100e9)
    assert LINK.all_reduce(1e6, 8) == pytest.approx(10e-6 + 1.75e6 / 100e9)
    assert LINK.all_reduce(1e6, 1) == 0.0


def test_timeline_runs_independent_gpus_in_parallel():
    tl = Timeline()
    a = tl.add("a", (0,), 1.0)
    b = tl.add("b", (1,), 2.0)
    tl.add("c", (0, 1), 0.5, (a, b))
    tl.add("d", (0,), 1.0)  # no dependency: runs on GPU 0 when it is free
    assert tl.run() == pytest.approx(2.5)
    assert tl.start["c"] == pytest.approx(2.0)


def step(attn, mlp, layers=2, other=0.0, allreduce=0.0):
    return StepTimes(layer_attn=attn, layer_mlp=mlp, layer_allreduce=allreduce, other=other, layers=layers,
                     hidden_bytes=1e6)


def test_vanilla_iteration_is_the_sum_of_layers_and_collectives():
    base = step(1.0, 2.0, layers=3, other=0.5, allreduce=LINK.all_reduce(1e6, 2) * 2)
    t = vanilla_iteration(base, 2, LINK).run()
    assert t == pytest.approx(3 * (1.0 + 2.0 + 2 * LINK.all_reduce(1e6, 2)) + 0.5)


def test_easyspec_runs_a_groups_attentions_on_different_gpus():
    """Two GPUs, a 2-layer draft in one group of 2, gamma 2: the first draft step is the exact
    calibration forward (2 x (3 + 1) s); in the second the two attentions (unsharded, 4 s each) overlap,
    an all-gather joins them, then the two MLPs (1 s each) run in order; then verify (10 s)."""
    draft = step(3.0, 1.0, layers=2)
    par = step(4.0, 1.0, layers=2)
    verify = step(0.0, 0.0, layers=1, other=10.0)
    tl = speculative_iteration(draft, verify, gamma=2, n=2, draft_tp=1, link=LINK, draft_parallel=par, group=2)
    gather = LINK.all_gather(2e6, 2)
    assert tl.run() == pytest.approx(2 * 4.0 + 4.0 + gather + 2 * 1.0 + 10.0)
    assert tl.start["draft1 L0 attn"] == tl.start["draft1 L1 attn"] == pytest.approx(8.0)
    # exact drafting takes the layers in sequence: 2 steps x 2 x (3 + 1), then verify
    seq = speculative_iteration(draft, verify, gamma=2, n=2, draft_tp=1, link=LINK)
    assert seq.run() == pytest.approx(2 * 2 * 4.0 + 10.0)


def test_easyspec_keeps_the_drafts_first_and_last_layers_exact():
    """A 4-layer draft in groups of 2 with exact ends: layers 0 and 3 run as exact layers on the
    draft's group (3 + 1 s each), layers 1 and 2 as one group (parallel attentions, 4 s, all-gather,
    two MLPs); without exact ends, two groups of two."""
    draft = step(3.0, 1.0, layers=4)
    par = step(4.0, 1.0, layers=4)
    verify = step(0.0, 0.0, layers=1, other=10.0)
    gather = LINK.all_gather(2e6, 2)
    tl = speculative_iteration(draft, verify, gamma=2, n=2, draft_tp=1, link=LINK, draft_parallel=par, group=2)
    assert tl.run() == pytest.approx(4 * 4.0 + 4.0 + (4.0 + gather + 2 * 1.0) + 4.0 + 10.0)
    assert "draft1 L0 mlp" in tl.start and "draft1 G1 allgather" in tl.start and "draft1 G0 allgather" not in tl.start
    both = speculative_iteration(draft, verify, gamma=2, n=2, draft_tp=1, link=LINK, draft_parallel=par, group=2,
                                 exact_ends=False)
    assert both.run() == pytest.approx(4 * 4.0 + 2 * (4.0 + gather + 2 * 1.0) + 10.0)


def test_easyspec_groups_mlps_whole_on_the_attention_gpus_or_sharded():
    """A group's MLPs, in the authors' step, run whole (the unsharded time, 2.5 s here) on each GPU
    that ran one of its attentions, with no collective; ``group_mlps="draft_tp"`` runs them on the
    draft's 2-GPU tensor-parallel group (1 s each) with an all-reduce after each."""
    draft = step(3.0, 1.0, layers=2, allreduce=0.4)
    par = step(4.0, 2.5, layers=2)
    verify = step(0.0, 0.0, layers=1, other=10.0)
    gather = LINK.all_gather(2e6, 2)
    kw = {"gamma": 2, "n": 2, "draft_tp": 2, "link": LINK, "draft_parallel": par, "group": 2}
    whole = speculative_iteration(draft, verify, **kw)
    cal = 2 * (3.0 + 0.2 + 1.0 + 0.2)  # the calibrating exact step on the 2-GPU group
    assert whole.run() == pytest.approx(cal + 4.0 + gather + 2 * 2.5 + 10.0)
    assert not any("allreduce" in t.name for t in whole.tasks if t.name.startswith("draft1"))
    assert {t.resources for t in whole.tasks if t.name.startswith("draft1 L")} >= {("GPU 0", "GPU 1")}
    tp = speculative_iteration(draft, verify, **kw, group_mlps="draft_tp")
    assert tp.run() == pytest.approx(cal + 4.0 + gather + 2 * (1.0 + 0.2) + 10.0)


def test_expected_tokens_per_iteration():
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)


def test_tensor_parallel_shard_splits_weights_and_heads():
    df = trace("Llama-2-7B", "decode", 1, 1, 64)
    sh = shard(df, 2, 32)
    q = df[df.role == "q_proj"].iloc[0]
    q2 = sh[sh.role == "q_proj"].iloc[0]
    assert q2.gemm_n == q.gemm_n // 2 and q2.weight_bytes == q.weight_bytes // 2
    o, o2 = df[df.role == "o_proj"].iloc[0], sh[sh.role == "o_proj"].iloc[0]
    assert o2.gemm_k == o.gemm_k // 2 and o2.gemm_n == o.gemm_n
    s, s2 = df[df.role == "attn_score"].iloc[0], sh[sh.role == "attn_score"].iloc[0]
    assert s2.gemm_batch == s.gemm_batch // 2 and s2.kv_bytes_read == s.kv_bytes_read // 2
    assert sh.weight_bytes.sum() < 0.55 * df.weight_bytes.sum()
    # the elementwise work between the projections on each GPU's slice; norms and residuals replicated
    for role in ("activation", "mlp_other", "attn_other"):
        a, b = df[df.role == role], sh[sh.role == role]
        assert len(a) and b.bytes_written.sum() == pytest.approx(a.bytes_written.sum() / 2, rel=1e-3), role
        assert b.bytes_read.sum() == pytest.approx(a.bytes_read.sum() / 2, rel=1e-3), role
    for role in ("norm", "residual"):
        assert sh[sh.role == role].bytes_read.sum() == df[df.role == role].bytes_read.sum()
    # a mixture of experts' whole experts (expert parallelism) keep their activations whole
    moe = trace("Mixtral-8x7B", "decode", 1, 1, 64)
    act = moe.role == "expert_act"
    assert shard(moe, 2, 8, whole_experts=True)[act].bytes_read.sum() == moe[act].bytes_read.sum()
    assert shard(moe, 2, 8)[act].bytes_read.sum() == pytest.approx(moe[act].bytes_read.sum() / 2, rel=1e-2)


def test_decoders_end_to_end_on_two_h100s(tmp_path):
    gpu, _, _ = build(Hardware(file="targets/gpu_h100_sxm.yaml", params={"fuse_vector_ops": True}),
                      CONFIGS_DIR / "t.yaml")
    kw = dict(base="Llama-2-13B", gpu=gpu, link=LINK, n=2, context=64)
    v = run_decoder("vanilla", draft=None, **kw)
    s = run_decoder("speculative", draft="Llama-2-7B", gamma=3, alpha=0.8, **kw)
    e = run_decoder("easyspec", draft="Llama-2-7B", gamma=3, alpha=0.8, group=2, trace_to=tmp_path / "t.json", **kw)
    sharded = run_decoder("easyspec", draft="Llama-2-7B", gamma=3, alpha=0.8, group=2, group_mlps="draft_tp", **kw)
    assert s["tokens_per_iter"] == pytest.approx(expected_tokens(0.8, 3))
    # with the groups' MLPs on the draft's 2-GPU group, layer-parallel drafting is shorter; whole on
    # each GPU (the authors'), a 7B draft's MLPs take twice as long and the parallel attentions do not
    # make up for it (no host stream here: only the kernels overlap)
    assert sharded["drafting_s"] < s["drafting_s"] < e["drafting_s"]
    assert v["time_per_token_s"] > 0 and s["iteration_s"] > v["iteration_s"]
    ev = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    from tests.helpers import check_trace_event_format

    check_trace_event_format(ev)
    assert {x["args"]["name"] for x in ev if x["name"] == "thread_name"} == {"GPU 0", "GPU 1"}
    with pytest.raises(Exception, match="needs a draft"):
        run_decoder("speculative", draft=None, **kw)


def test_calibration_on_mismatch_weights_the_two_kinds_of_iteration():
    """on_mismatch: an iteration after a full acceptance drafts all gamma tokens layer-parallel; the
    decoder's time is the two iterations' times weighted by how often each occurs (alpha^gamma)."""
    d = StepTimes(layers=6, layer_attn=3.0, layer_mlp=5.0, layer_allreduce=0.0, other=1.0, hidden_bytes=1000)
    cal = StepTimes(layers=6, layer_attn=4.0, layer_mlp=6.0, layer_allreduce=0.0, other=1.0, hidden_bytes=1000)
    v = StepTimes(layers=2, layer_attn=2.0, layer_mlp=2.0, layer_allreduce=0.0, other=1.0, hidden_bytes=1000)
    link = Link(bytes_per_s=1e30, latency_s=0.0)
    full = speculative_iteration(d, v, 3, 2, 1, link, d, 2, cal, exact_ends=True)
    quick = speculative_iteration(d, v, 3, 2, 1, link, d, 2, cal, exact_ends=True, calibrate_first=False)
    # the calibrating step: 6 x (4 + 6) + 1 = 61; a layer-parallel one: exact ends 2 x 8, two groups of
    # 2 layers (attention 3 in parallel, then both MLPs whole, 10) = 16 + 26 + 1 = 43
    assert full.run() == pytest.approx(61 + 2 * 43 + 2 * 4 + 1)
    assert quick.run() == pytest.approx(3 * 43 + 2 * 4 + 1)
    gpu, _, _ = build(Hardware(file="targets/gpu_h100_sxm.yaml"), CONFIGS_DIR / "t.yaml")
    kw = dict(base="Llama-2-13B", draft="Llama-2-7B", gpu=gpu, link=LINK, n=2, context=64, gamma=3, group=2)
    every = run_decoder("easyspec", alpha=0.8, **kw)
    mism = run_decoder("easyspec", alpha=0.8, calibration="on_mismatch", **kw)
    never = run_decoder("easyspec", alpha=0.8, calibration="on_mismatch", all_accepted=1.0, **kw)
    none_full = run_decoder("easyspec", alpha=0.8, calibration="on_mismatch", all_accepted=0.0, **kw)
    assert mism["calibrated_share"] == pytest.approx(1 - 0.8**3) and every["calibrated_share"] == 1.0
    assert none_full["iteration_s"] == every["iteration_s"]  # every iteration calibrates either way
    # calibrating only after a mismatch, the calibrating step covers E[tokens] / (1 - p) tokens: the
    # mismatching iteration's and those of the full acceptances before it
    w = 0.8**3
    k = round(expected_tokens(0.8, 3) / (1 - w))  # 2.952 / 0.488 = 6.05: 6 tokens
    assert k == 6
    cal = run_decoder("easyspec", tokens_per_iter=k, **kw)  # an iteration whose calibration covers k tokens
    assert mism["iteration_s"] == pytest.approx((1 - w) * cal["iteration_s"] + w * never["iteration_s"])
    assert never["iteration_s"] < every["iteration_s"] < cal["iteration_s"]
    with pytest.raises(Exception, match="calibration"):
        run_decoder("easyspec", alpha=0.8, calibration="sometimes", **kw)


def test_an_eager_hosts_dispatch_is_in_each_part_of_a_step():
    """With a runtime's host (gpu_h100_sxm_eager.yaml), each part of a step takes what the host's
    dispatch and the GPU take together: at least the host's ops x dispatch, at least the same GPU's
    kernels without a host."""
    from sim.config import CONFIGS_DIR, Hardware
    from sim.multigpu import step_times
    from sim.targets import build
    from workloads import trace

    eager, _, _ = build(Hardware(file="targets/gpu_h100_sxm_eager.yaml"), CONFIGS_DIR / "x.yaml")
    bare, _, _ = build(Hardware(file="targets/gpu_h100_sxm_eager.yaml", params={"host": None}), CONFIGS_DIR / "x.yaml")
    assert eager.host.modelled and not bare.host.modelled
    e = step_times("Llama-2-7B", "decode", 1, 64, 1, eager, LINK)
    d = step_times("Llama-2-7B", "decode", 1, 64, 1, bare, LINK)
    df = trace("Llama-2-7B", "decode", 1, 1, 64)
    one = df[df.layer == 1]
    per_op = eager.params.host.dispatch_s["default"]
    assert e.layer_attn + e.layer_mlp >= len(one) * per_op * (1 - 1e-9)
    assert e.layer_attn >= d.layer_attn and e.layer_mlp >= d.layer_mlp and e.other >= d.other
    # at batch 1 a 7B layer's kernels are shorter than their dispatch: the host sets the pace
    assert e.layer_attn + e.layer_mlp > 1.5 * (d.layer_attn + d.layer_mlp)
