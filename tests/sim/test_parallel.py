"""Devices sharing a run (`parallel:` in `sim run`, issue 22): tensor parallelism (one device's
share of every op, the collectives by hand, memory per device, energy of all devices, the decode
rates against gpt-fast's published table), pipeline stages and micro-batches (the closed forms
against the engine's task graph), expert parallelism and skewed routing, data-parallel replicas,
the two-level topology, bad layouts, and the collective model against published NCCL times."""

import numpy as np
import pytest

from models.errors import SimError
from sim.config import CONFIGS_DIR
from sim.run import execute, prepare
from workloads import zoo

A100 = "targets/gpu_a100_sxm_80gb_compiled.yaml"

# gpt-fast README (pytorch-labs/gpt-fast, "Tensor Parallelism"): tokens/s at batch 1 on 8 x A100-80GB
# "power limited to 330W", bf16, torch.compile, a prompt of about 5 tokens; the README adds that the
# cards' peak bandwidth "empirically ... is about 1700 GB/s"
GPT_FAST = {("Llama-2-70B", 2): 21.32, ("Llama-2-70B", 4): 38.01, ("Llama-2-70B", 8): 62.50,
            ("Llama-2-7B", 1): 104.9, ("Llama-2-7B", 2): 168.84, ("Llama-2-7B", 4): 254.02,
            ("Llama-2-7B", 8): 328.43}


def _run(model="Llama-2-7B", tp=1, params=None, gpu=A100, **w):
    raw = {"workload": {"model": model, "batch": 1, "prompt": 8, "decode_tokens": 8, "dtype": "bf16", **w},
           "hardware": {"file": gpu, "params": params or {}}, "parallel": {"tp": tp},
           "run": {"fidelity": "analytic"}}
    return execute(prepare(raw, CONFIGS_DIR / "x.yaml"))


def test_one_devices_share_and_the_collectives_by_hand():
    one, four = _run(tp=1), _run(tp=4)
    spec = zoo.get("Llama-2-7B")
    dec1, dec4 = (r.ops[r.ops.phase == "decode"] for r in (one, four))
    g1, g4 = (d[d.kind == "gemm"] for d in (dec1, dec4))
    # every projection's weights split four ways (column- or row-parallel), the head's too: a
    # device reads a quarter of the weight bytes and does a quarter of the MACs
    assert g4.dram_read_bytes.sum() == pytest.approx(g1.dram_read_bytes.sum() / 4, rel=1e-3)
    assert g4.macs.sum() == pytest.approx(g1.macs.sum() / 4, rel=1e-6)
    # collectives: per layer two all-reduces of one token's hidden state, and the logits' all-gather
    link = four.target.link
    hidden = 1 * 1 * spec.hidden * 2
    want = 2 * spec.layers * link.all_reduce(hidden, 4) + link.all_gather(spec.vocab * 2, 4)
    assert four.summary["parallel"]["decode_step_s"] == pytest.approx(want)
    assert link.all_reduce(hidden, 4) == pytest.approx(link.latency_s + 2 * 3 / 4 * hidden / link.bytes_per_s)
    # memory per device: a quarter of the weights and of the KV cache (32 KV heads over 4 devices)
    m1, m4 = one.summary["memory"], four.summary["memory"]
    assert m4["weights"] == m1["weights"] // 4 and m4["kv_cache"] == m1["kv_cache"] // 4 and m4["per_device"]
    # energy is the four devices' together: about the one device's, no less
    assert four.summary["energy_j"] > 0.8 * one.summary["energy_j"]


def test_kv_heads_fewer_than_devices_are_replicated():
    spec = zoo.get("Llama-2-70B")  # 8 KV heads
    r = _run("Llama-2-70B", tp=8, decode_tokens=4)
    per_token = spec.layers * 2 * spec.kv_heads * spec.head_dim * 2
    assert r.summary["memory"]["kv_cache"] == per_token // 8 * (8 + 4)


@pytest.mark.parametrize("change,needle", [
    ({"tp": 3}, "must divide Llama-2-7B's 32 attention heads"),
    ({"tp": 2, "gpu": "targets/bitmod_fp16_baseline.yaml"}, "need a GPU target with a GPU-to-GPU link"),
])
def test_bad_parallelism_is_a_one_line_error(change, needle):
    with pytest.raises(SimError, match=needle):
        _run(**change)


def test_70b_refused_on_one_gpu_fits_on_two():
    with pytest.raises(SimError, match="would fit: 2 devices sharing it"):
        _run("Llama-2-70B", tp=1, prompt=16, decode_tokens=2)
    assert _run("Llama-2-70B", tp=2, prompt=16, decode_tokens=2).summary["memory"]["total"] < 80e9


def test_decode_rates_against_gpt_fast():
    """Llama-2-7B and -70B under tensor parallelism on A100s against gpt-fast's table (goal: 15%).
    Physically modelled (HBM at the file's 93.6% of 2,039 GB/s) the 70B rows are 12-14% fast and
    7B on one GPU 29% fast; under gpt-fast's own stated condition (power-limited cards, about
    1,700 GB/s) every row but 7B on one GPU (+16%) is within 4%."""
    def rate(model, tp, params=None):
        s = _run(model, tp, params, decode_tokens=32).summary
        return 1 / s["decode"]["time_per_token_s"]

    for (model, tp), ref in GPT_FAST.items():
        phys = (rate(model, tp) - ref) / ref
        cond = (rate(model, tp, {"hbm_efficiency": 1700 / 2039}) - ref) / ref
        if model == "Llama-2-70B":
            assert abs(phys) <= 0.15 and abs(cond) <= 0.05, (model, tp, phys, cond)
        elif tp > 1:
            assert abs(phys) <= 0.10 and abs(cond) <= 0.05, (model, tp, phys, cond)
        else:
            assert 0 < cond <= 0.20, (model, tp, cond)  # one GPU, batch 1: the bound the model misses most


def test_an_eager_hosts_tp_run_keeps_its_collectives():
    """With a runtime's host and tensor parallelism both, the step is the host stream's plus the
    collectives (the host stream prices a step from its ops; the collectives come on top), and the
    idle static energy is every device's."""
    eager = "targets/gpu_h100_sxm_eager.yaml"
    r = _run(tp=2, gpu=eager, prompt=64, decode_tokens=4)
    s = r.summary
    par, host = s["parallel"], s["host"]
    pre = host["prefill"]
    assert par["prefill_s"] > 0 and pre["device_idle_s"] > 0
    assert s["prefill"]["latency_s"] == pytest.approx(pre["device_s"] + pre["device_idle_s"] + par["prefill_s"],
                                                      rel=1e-6, abs=2e-9)
    busy = par["busy_device_s"]["prefill"]
    assert busy == pytest.approx(2 * r.ops[r.ops.phase == "prefill"].time_s.sum())
    idle = 2 * s["prefill"]["latency_s"] - busy
    assert idle > 2 * (pre["device_idle_s"] + par["prefill_s"]) * 0.99
    assert par["idle_static_j"]["prefill"] == pytest.approx(r.energy.static_w * idle, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Pipeline, expert and data parallelism; topology (sim.parallel)
# ---------------------------------------------------------------------------------------------

H100 = "targets/gpu_h100_sxm_compiled.yaml"


def _prun(model, par, gpu=H100, **w):
    raw = {"workload": {"model": model, "batch": 1, "prompt": 64, "decode_tokens": 8, "dtype": "bf16", **w},
           "hardware": {"file": gpu}, "parallel": par, "run": {"fidelity": "analytic"}}
    return execute(prepare(raw, CONFIGS_DIR / "x.yaml"))


def test_stages_take_contiguous_layers_and_the_ends():
    from sim.parallel import owners, stage_layers

    assert stage_layers(10, 4).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    layer = np.array([-1, -1, 0, 0, 1, 2, 3, 3, -1, -1])
    expert = np.array([-1, -1, -1, 0, 1, -1, 2, 3, -1, -1])
    stage, rank = owners(layer, expert, 4, 2, 2)
    assert stage.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert rank.tolist() == [-1, -1, -1, 0, 1, -1, 0, 1, -1, -1]
    assert owners(layer, expert, 4, 1, 1)[1].tolist() == [-1] * 10  # no expert parallelism: every rank runs all


@pytest.mark.parametrize("seed", range(6))
def test_pipeline_formulas_match_the_task_graph(seed):
    """The schedules (prefill: a flow shop of identical micro-batches; decode: FIFO queues step by
    step) against the engine's task graph on random stage times, and the decode's steady state
    against its closed form (each step the busiest stage or the round trip)."""
    from sim.parallel import decode_ends, decode_period, prefill_makespan, timeline

    rng = np.random.default_rng(seed)
    pp, m, steps = int(rng.integers(2, 6)), int(rng.integers(1, 7)), int(rng.integers(1, 5))
    st, hops = rng.uniform(1, 5, pp), rng.uniform(0, 1, pp - 1)
    dst, dh, back = rng.uniform(0.5, 2, pp), rng.uniform(0, 0.2, pp - 1), float(rng.uniform(0, 0.2))
    g = timeline(st, hops, m)
    assert g.run() == pytest.approx(prefill_makespan(st, hops, m))
    pre = prefill_makespan(st, hops, m)
    g = timeline(st, hops, m, steps, dst, dh, back)
    assert g.run() - pre == pytest.approx(decode_ends(np.tile(dst, (steps, 1)), dh, back, m)[-1], rel=1e-12)
    long = np.diff(decode_ends(np.tile(dst, (400, 1)), dh, back, m))
    assert long[-100:].mean() == pytest.approx(decode_period(dst, dh, back, m), rel=1e-9)


def test_pipeline_bubbles_and_micro_batches():
    """With one micro-batch a pipeline's stages take turns: Llama-2-70B on tp 2 x pp 4 decodes at
    about tp 2's pace (no faster), and its idle devices still draw; micro-batches fill the prefill's
    pipeline where the prefill is compute-bound (with short prompts each micro-batch reads the
    weights again, and splitting gains little)."""
    tp2 = _prun("Llama-2-70B", {"tp": 2, "pp": 2}).summary
    pp4 = _prun("Llama-2-70B", {"tp": 2, "pp": 4}).summary
    ratio = pp4["decode"]["time_per_token_s"] / tp2["decode"]["time_per_token_s"]
    assert 1.0 <= ratio < 1.01  # one more hop per token, nothing else
    assert pp4["energy_j"] > 1.2 * tp2["energy_j"]  # twice the devices, the extra ones mostly idle
    one = _prun("Llama-2-70B", {"tp": 2, "pp": 4}, batch=8, prompt=512).summary
    four = _prun("Llama-2-70B", {"tp": 2, "pp": 4, "micro_batches": 4}, batch=8, prompt=512).summary
    p = four["parallel"]
    assert p["micro_batch"] == 2 and p["devices"] == 8 and len(p["prefill_stage_s"]) == 4
    assert four["prefill"]["latency_s"] < 0.6 * one["prefill"]["latency_s"]
    # the flow shop by hand from the reported stage and hop times
    st, hops = np.array(p["prefill_stage_s"]), np.array(p["prefill_hop_s"])
    assert four["prefill"]["latency_s"] == pytest.approx(st.sum() + hops.sum() + 3 * max(st.max(), hops.max()),
                                                         rel=1e-6)


def test_pipeline_memory_is_the_largest_stage():
    spec = zoo.get("Llama-2-70B")
    r = _prun("Llama-2-70B", {"tp": 1, "pp": 2}, decode_tokens=2)
    m = r.summary["memory"]
    emb = spec.vocab * spec.hidden
    per_layer = (spec.published_params - 2 * emb) / spec.layers
    assert m["weights"] == int((per_layer * 40 + emb) * 2)
    assert m["weights"] < 0.52 * spec.published_params * 2
    with pytest.raises(SimError, match="would fit: 2 devices"):
        _prun("Llama-2-70B", {"tp": 1}, decode_tokens=2)


def test_stages_across_nodes_use_the_network():
    """tp 8 x pp 2 on H100s: the second stage is in a second node, its activations cross the network
    (46 GB/s per GPU, 17 us) instead of NVLink."""
    r = _prun("Llama-2-70B", {"tp": 8, "pp": 2}, prompt=512, decode_tokens=2)
    p = r.summary["parallel"]
    t = r.target
    nbytes = 512 * zoo.get("Llama-2-70B").hidden * 2
    assert p["prefill_hop_s"] == [pytest.approx(t.network.transfer_s(nbytes))]
    r2 = _prun("Llama-2-70B", {"tp": 4, "pp": 2}, prompt=512, decode_tokens=2)
    assert r2.summary["parallel"]["prefill_hop_s"] == [pytest.approx(t.p2p_latency_s + nbytes / t.link.bytes_per_s)]


def test_two_level_all_reduce_and_all_to_all():
    from sim.parallel import Topology
    from sim.targets.parts import Link

    nv, net = Link(400e9, 20e-6), Link(50e9, 15e-6)
    topo = Topology(nv, net, 8)
    assert topo.all_reduce(1e6, 8) == pytest.approx(nv.all_reduce(1e6, 8))
    assert topo.all_reduce(1e6, 16) == pytest.approx(nv.all_reduce(1e6, 8) + net.all_reduce(1e6 / 8, 2))
    # all-to-all: 1/n stays, (local - 1)/n over NVLink, the rest over the network, at once
    assert topo.all_to_all(8e6, 8) == pytest.approx(20e-6 + 8e6 * 7 / 8 / 400e9)
    assert topo.all_to_all(16e6, 16) == pytest.approx(max(20e-6 + 16e6 * 7 / 16 / 400e9, 15e-6 + 16e6 * 8 / 16 / 50e9))
    with pytest.raises(SimError, match="no network between nodes"):
        Topology(nv, None, 8).all_reduce(1e6, 16)


def test_expert_parallelism_places_whole_experts():
    """Mixtral on 2 H100s: under tp each expert is split in half on both GPUs; under ep each GPU
    holds 4 whole experts (expert e on GPU e mod 2), and a MoE layer's MLP all-reduce becomes a
    dispatch and a combine all-to-all."""
    spec = zoo.get("Mixtral-8x7B")
    tp, ep = _prun("Mixtral-8x7B", {"tp": 2}, batch=16), _prun("Mixtral-8x7B", {"tp": 2, "ep": 2}, batch=16)
    ex_tp = tp.ops[(tp.ops.phase == "prefill") & (tp.ops.role == "expert_gate_up") & (tp.ops.kind == "gemm")]
    ex_ep = ep.ops[(ep.ops.phase == "prefill") & (ep.ops.role == "expert_gate_up") & (ep.ops.kind == "gemm")]
    assert (ex_tp.gemm_n == 2 * spec.config["intermediate_size"] // 2).all()
    assert (ex_ep.gemm_n == 2 * spec.config["intermediate_size"]).all()
    assert set(ex_ep.ep_rank) == {0, 1} and (ex_ep.ep_rank == ex_ep.expert % 2).all()
    # energy: every expert once, whole; every other op on both GPUs: the same MACs as tp's halves twice
    macs = lambda r: float((r.ops.macs * np.where(r.ops.ep_rank >= 0, 1, 2)).sum())
    assert macs(ep) == pytest.approx(macs(tp), rel=1e-3)
    t = ep.target
    link = t.link
    k, h = spec.experts_per_token, spec.hidden
    a2a = link.latency_s + 16 / 2 * k * h * 2 * (1 / 2) / link.bytes_per_s
    want = spec.layers * (link.all_reduce(16 * h * 2, 2) + 2 * a2a) + link.all_gather(16 * spec.vocab * 2, 2)
    assert ep.summary["parallel"]["decode_step_s"] == pytest.approx(want)


def test_skewed_routing_loads_one_expert_rank():
    """Zipf-skewed routing (workload.routing_skew) puts more tokens on the low-numbered experts:
    under expert parallelism the rank holding them sets the pace; split experts (tp) barely notice."""
    from workloads.tracer import expert_loads

    assert expert_loads(1, 2, 8) == [1, 1, 0, 0, 0, 0, 0, 0]
    assert expert_loads(100, 2, 8) == [25] * 8
    skewed = expert_loads(100, 2, 8, 1.0)
    assert sum(skewed) == 200 and max(skewed) <= 100 and skewed == sorted(skewed, reverse=True)
    steep = expert_loads(100, 2, 8, 8.0)
    assert steep[0] == 100 and sum(steep) == 200 and steep[1] > 90  # each token's two experts are distinct
    kw = {"batch": 32, "prompt": 128, "decode_tokens": 2}
    pre = lambda r: r.summary["prefill"]["latency_s"]
    ep0, ep1 = _prun("Mixtral-8x7B", {"tp": 2, "ep": 2}, **kw), _prun("Mixtral-8x7B", {"tp": 2, "ep": 2},
                                                                        routing_skew=1.0, **kw)
    tp0, tp1 = _prun("Mixtral-8x7B", {"tp": 2}, **kw), _prun("Mixtral-8x7B", {"tp": 2}, routing_skew=1.0, **kw)
    assert pre(ep1) > 1.1 * pre(ep0)
    assert abs(pre(tp1) / pre(tp0) - 1) < 0.05
    with pytest.raises(SimError, match="has no experts to route"):
        _prun("Llama-2-7B", {"tp": 1}, routing_skew=1.0)


def test_data_parallel_replicas():
    one = _prun("Llama-2-7B", {"tp": 2}, batch=4).summary
    two = _prun("Llama-2-7B", {"tp": 2, "dp": 2}, batch=8).summary
    assert two["decode"]["time_per_token_s"] == pytest.approx(one["decode"]["time_per_token_s"], rel=1e-9)
    assert two["tokens_per_s"] == pytest.approx(2 * one["tokens_per_s"], rel=1e-9)
    assert two["energy_j"] == pytest.approx(2 * one["energy_j"], rel=1e-9)
    assert two["memory"]["kv_cache"] == one["memory"]["kv_cache"]


@pytest.mark.parametrize("par,w,needle", [
    ({"tp": 2, "ep": 2}, {"model": "Llama-2-7B"}, "has no experts"),
    ({"tp": 4, "ep": 2}, {"model": "Mixtral-8x7B"}, "ep 2 must equal tp"),
    ({"tp": 2, "dp": 2}, {"batch": 3}, "must split evenly"),
    ({"tp": 2, "micro_batches": 2}, {"batch": 2}, "needs pipeline stages"),
    ({"pp": 64}, {"model": "Llama-2-7B"}, "more stages than"),
])
def test_bad_parallel_layouts_are_one_line_errors(par, w, needle):
    with pytest.raises(SimError, match=needle):
        _prun(w.pop("model", "Llama-2-7B"), par, **w)


def test_collectives_against_published_measurements():
    """The collective model (latency + bytes over the link at the collective library's measured
    efficiency, two levels across nodes) against measured NCCL times (Vidur's profiles; Azure's
    nccl-tests bus bandwidths), results/validation/collectives/published.csv.  Found: inside a
    node, messages of 64 MB and more are within 30% (NVLink SHARP's in-switch all-reduce beats the
    ring at gigabytes: +30% at 8 GB); at 8 MB, inside NCCL's pipelining ramp, the model is up to
    42% fast; small all-reduces are latency-bound and the targets' latencies (20.7 us on H100,
    from another measurement) sit below Vidur's medians of three (35-40 us), so the model is
    about 45% fast there.  Vidur's cross-node rows come from a cluster whose network carried about
    6 GB/s per GPU, not a DGX's InfiniBand: shown, not checked."""
    import pandas as pd

    from sim import targets as T
    from sim.config import Hardware
    from sim.parallel import predict_collectives

    tg = {k: T.build(Hardware(file=f), CONFIGS_DIR / "x.yaml", {})[0] for k, f in
          (("h100_sxm", "targets/gpu_h100_sxm.yaml"), ("a100_sxm", "targets/gpu_a100_sxm_80gb.yaml"),
           ("a100_pcie", "targets/gpu_a100_pcie_80gb.yaml"))}
    df = pd.read_csv(CONFIGS_DIR.parent / "results/validation/collectives/published.csv", keep_default_na=False)
    assert len(df) == 95 and df.source.str.len().min() > 20
    p = predict_collectives(df, tg)
    inside = ~p.note.str.startswith("across")
    big = inside & (p.size_bytes >= 8e6)
    err = p.rel_error.abs()
    print(p[inside].groupby(["system", p.size_bytes >= 8e6]).rel_error.describe().round(3).to_string())
    huge = inside & (p.size_bytes >= 64e6)
    assert err[huge].max() <= 0.30, p[huge].sort_values("rel_error")
    assert err[big].max() <= 0.45, p[big].sort_values("rel_error")
    assert err[big & (p.system == "h100_sxm")].median() <= 0.16
    # latency-bound rows: the model is fast, by about the gap between the two sources' latencies
    small = inside & (p.size_bytes <= 300_000) & (p.system == "h100_sxm") & (p.collective == "all_reduce")
    assert -0.55 < p.rel_error[small].median() < -0.3
    assert err[inside & (p.system == "a100_pcie")].max() <= 0.15


def test_lora_memory_counts_the_adapters_under_any_layout():
    """LoRA's memory is the traced adapters (role lora), spread over the stages: not the other
    stages' weights or the whole experts that one rank's frame also holds."""
    lora = {"rank": 8, "targets": ["q_proj", "v_proj"], "mode": "separate"}
    spec = zoo.get("Llama-2-7B")
    want = spec.layers * 2 * 8 * (spec.hidden + spec.hidden) * 2  # A (d x 8) and B (8 x d), q and v, fp16
    one = _prun("Llama-2-7B", {"tp": 1}, lora=lora, decode_tokens=2).summary["memory"]["lora"]
    two = _prun("Llama-2-7B", {"tp": 1, "pp": 2}, lora=lora, decode_tokens=2).summary["memory"]["lora"]
    assert one == want and two == want // 2
    ep = _prun("Mixtral-8x7B", {"tp": 2, "ep": 2}, lora=lora, batch=4, decode_tokens=2).summary["memory"]
    assert ep["lora"] < 0.01e9 and ep["total"] < 50e9


def test_data_parallel_replicas_need_no_link():
    """dp alone runs on any target (replicas exchange nothing): BitMoD's FP16 baseline twice."""
    raw = {"workload": {"model": "Llama-2-7B", "batch": 2, "prompt": 32, "decode_tokens": 2},
           "hardware": {"file": "targets/bitmod_fp16_baseline.yaml"}, "run": {"fidelity": "analytic"}}
    one = execute(prepare({**raw, "workload": {**raw["workload"], "batch": 1}}, CONFIGS_DIR / "x.yaml")).summary
    two = execute(prepare({**raw, "parallel": {"dp": 2}}, CONFIGS_DIR / "x.yaml")).summary
    assert two["latency_s"] == pytest.approx(one["latency_s"], rel=1e-9)
    assert two["energy_j"] == pytest.approx(2 * one["energy_j"], rel=1e-9)
    assert two["parallel"]["link"] is None


def test_hops_cross_nodes_in_any_replica():
    """tp 2 x pp 3 x dp 2 on 8-GPU nodes: replica 1 holds GPUs 6-11, so its first hop (6 -> 8)
    crosses nodes though replica 0's do not; the slowest replica sets the pace."""
    from sim.config import Parallel
    from sim.parallel import crossings

    assert crossings(Parallel(tp=2, pp=3, dp=2), 8).tolist() == [True, False, True]
    assert crossings(Parallel(tp=2, pp=3), 8).tolist() == [False, False, False]
    assert crossings(Parallel(tp=8, pp=2), 8).tolist() == [True, True]


@pytest.mark.parametrize("par,gpu,needle", [
    ({"tp": 4, "pp": 2}, "targets/gpu_a100_pcie_80gb.yaml", "span nodes of 4 GPUs"),
    ({"tp": 5}, H100, "must divide the target's 8 GPUs a node"),
])
def test_layouts_the_topology_cannot_hold_are_refused_before_tracing(par, gpu, needle):
    with pytest.raises(SimError, match=needle) as e:
        prepare({"workload": {"model": "Llama-2-13B", "batch": 1, "prompt": 8}, "hardware": {"file": gpu},
                 "parallel": par}, CONFIGS_DIR / "x.yaml")
    assert "parallel" in str(e.value)


def test_skewed_routing_loads_the_all_to_all():
    """Under ep the hot rank receives more than its share of tokens: a prefill's all-to-alls (large
    enough to be bandwidth-bound) grow with the skew; tensor parallelism's all-reduces do not."""
    kw = {"batch": 8, "prompt": 512, "decode_tokens": 0}
    coll = lambda par, skew: _prun("Mixtral-8x7B", par, routing_skew=skew, **kw).summary["parallel"]["prefill_s"]
    assert coll({"tp": 2, "ep": 2}, 1.0) > 1.05 * coll({"tp": 2, "ep": 2}, 0.0)
    assert coll({"tp": 2}, 1.0) == pytest.approx(coll({"tp": 2}, 0.0))


def test_the_trace_has_a_row_per_gpu_and_link(tmp_path):
    """`sim run --trace` of a tp 2 x pp 2 run: the pipeline's schedule on one row per GPU (each
    stage's task on both of its GPUs) and per link, beside the run's own rows."""
    import json

    import yaml

    from sim.cli import main
    from tests.helpers import check_trace_event_format

    cfg = {"workload": {"model": "Llama-2-7B", "batch": 4, "prompt": 32, "decode_tokens": 3, "dtype": "bf16"},
           "hardware": {"file": str(CONFIGS_DIR / H100)}, "parallel": {"tp": 2, "pp": 2, "micro_batches": 2},
           "run": {"fidelity": "analytic"}}
    path = tmp_path / "pp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--trace", "--out", str(tmp_path / "o")]) == 0
    ev = json.loads((tmp_path / "o" / "trace.json").read_text())["traceEvents"]
    check_trace_event_format(ev)
    rows = {e["args"]["name"] for e in ev if e["name"] == "thread_name"}
    assert {"GPU 0 (stage 0)", "GPU 1 (stage 0)", "GPU 2 (stage 1)", "GPU 3 (stage 1)", "link 0->1"} <= rows
    spans = [e for e in ev if e.get("ph") == "X" and e["name"].startswith(("prefill mb", "step"))]
    assert {e["name"] for e in spans} >= {"prefill mb1 stage1", "step1 mb0 stage0", "step0 mb1 token back"}
    report = (tmp_path / "o" / "report.html").read_text()
    assert "Devices share this run" in report and "8 = tp" not in report and "4 = tp 2 x pp 2 x dp 1" in report


def test_splice_puts_the_shared_experts_where_the_replicas_were():
    """ep = tp x dp: a replica's trace keeps its own attention and dense ops and takes each layer's
    expert ops from the trace of every sharing replica's tokens, in the same place."""
    from sim.parallel import splice_experts
    from workloads import trace

    small = trace("Mixtral-8x7B", "decode", 1, 1, 16, "bf16")
    big = trace("Mixtral-8x7B", "decode", 4, 1, 16, "bf16")
    out = splice_experts(small, big)
    assert (out[out.expert < 0].drop(columns="idx").reset_index(drop=True)
            .equals(small[small.expert < 0].drop(columns="idx").reset_index(drop=True)))
    ex = lambda df, layer: df[(df.expert >= 0) & (df.layer == layer)]
    for layer in (0, 5, 31):
        assert ex(out, layer).drop(columns="idx").reset_index(drop=True).equals(
            ex(big, layer).drop(columns="idx").reset_index(drop=True))
        # the experts sit between the layer's router and its residual add, as in both traces
        pos = out.index[(out.layer == layer)]
        roles = out.loc[pos, "role"].tolist()
        first, last = roles.index("expert_gate_up"), len(roles) - 1 - roles[::-1].index("expert_down")
        assert roles.index("moe_router") < first and last < len(roles) - 1 - roles[::-1].index("residual")
    assert (out.idx.to_numpy() == np.arange(len(out))).all()
    g = lambda df: df[(df.role == "expert_gate_up") & (df.kind == "gemm")].gemm_m.sum()
    assert g(out) == g(big) == 4 * g(small)


def test_expert_parallelism_across_replicas():
    """Qwen3-30B-A3B as 8 data-parallel replicas sharing their 128 experts (ep = 8 = tp x dp, the
    DeepSeek/vLLM layout): each GPU holds the dense part and 16 experts; the experts see all 8
    replicas' tokens; the system does the same MACs as 8 independent replicas."""
    spec = zoo.get("Qwen3-30B-A3B")
    kw = {"batch": 8, "prompt": 64, "decode_tokens": 2}
    alone = _prun("Qwen3-30B-A3B", {"dp": 8}, **kw)
    shared = _prun("Qwen3-30B-A3B", {"dp": 8, "ep": 8}, **kw)
    m = shared.summary["memory"]
    dense = spec.published_params - spec.expert_params
    assert m["weights"] == dense * 2 + spec.expert_params * 2 // 8
    pre = lambda r: r.ops[r.ops.phase == "prefill"]
    system_macs = lambda r, mult: float((pre(r).macs * mult(pre(r))).sum())
    assert system_macs(shared, lambda d: np.where(d.ep_rank >= 0, 1, 8)) == pytest.approx(
        system_macs(alone, lambda d: 8), rel=1e-6)
    ex = pre(shared)[(pre(shared).role == "expert_gate_up") & (pre(shared).kind == "gemm")]
    assert ex.gemm_m.sum() == 8 * 64 * spec.experts_per_token * spec.layers
    assert set(ex.ep_rank) == set(range(8))
    assert shared.summary["prefill"]["latency_s"] < 0.5 * alone.summary["prefill"]["latency_s"]


# TensorRT-LLM's published first-token latencies (NVIDIA/TensorRT-LLM docs/source/performance.md,
# "Low Latency", data from v0.5): LLaMA 70B, batch 1, TP 4, A100 GPUs, FP16; input length -> ms
TRT_LLM_TTFT_A100_TP4 = {128: 47, 2048: 377}


def test_prefill_latency_against_tensorrt_llm():
    """Llama-2-70B's prefill on 4 A100s (tensor parallel, fp16, the CUDA-graph runtime as a
    TensorRT engine runs) against TensorRT-LLM's published first-token latencies.  Found: the
    2,048-token prefill (compute-bound) is 10% slow, 415.4 ms against 377: its GEMMs run at 240
    TFLOPS (0.77 of peak), but its norms, attention masks and softmax, residuals and copies still
    take about 72 ms of device time as separate memory-bound ops, which TensorRT-LLM fuses into its
    GEMMs and its fused attention;
    the 128-token prefill (weight-bound) is 39% fast, 28.5 ms against 47 (the published latency
    is the benchmark's whole first token: engine enqueue, sampling and host time, which the
    CUDA-graph target does not price)."""
    got = {p: _run("Llama-2-70B", 4, None, gpu=A100, prompt=p, decode_tokens=0, dtype="fp16")
           .summary["prefill"]["latency_s"] * 1e3 for p in TRT_LLM_TTFT_A100_TP4}
    err = {p: (got[p] - ref) / ref for p, ref in TRT_LLM_TTFT_A100_TP4.items()}
    print({p: f"{got[p]:.1f} ms ({e:+.1%})" for p, e in err.items()})
    assert 0.05 < err[2048] < 0.2 and -0.45 < err[128] < -0.3
