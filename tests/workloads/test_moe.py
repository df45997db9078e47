"""Mixture-of-experts models (issue 22, item 3): the uniform routing policy, decode reading only the
active experts' weights at batch 1 and more at large batches, memory taking the total parameters,
and tensor parallelism splitting the experts."""

import pytest

from models.errors import SimError
from sim.config import CONFIGS_DIR
from sim.run import execute, prepare
from workloads import api, zoo
from workloads.tracer import expert_loads


def test_expert_loads_by_hand():
    assert expert_loads(1, 2, 8) == [1, 1, 0, 0, 0, 0, 0, 0]  # a batch-1 decode step: two experts
    assert expert_loads(16, 2, 8) == [4] * 8
    assert expert_loads(5, 2, 8) == [2, 2, 1, 1, 1, 1, 1, 1]  # 10 assignments as evenly as 8 allow
    assert sum(expert_loads(64, 8, 128)) == 512 and max(expert_loads(64, 8, 128)) == 4
    assert expert_loads(0, 2, 8) == [0] * 8


@pytest.mark.parametrize("name,active", [("Mixtral-8x7B", 2), ("Qwen3-30B-A3B", 8)])
def test_decode_reads_the_active_experts_only_at_batch_one(name, active):
    spec = zoo.get(name)
    c = spec.config
    experts = c.get("num_local_experts") or c["num_experts"]
    ff = c.get("moe_intermediate_size") or c["intermediate_size"]
    one_expert = 3 * spec.hidden * ff * 2  # gate, up and down at fp16
    d1 = api.trace(name, "decode", 1, 1, 64)
    e1 = d1[d1.role.isin(["expert_gate_up", "expert_down"]) & (d1.kind == "gemm")]
    assert e1.weight_bytes.sum() == spec.layers * active * one_expert
    assert (e1.gemm_m == 1).all()
    # at batch 64 every expert has tokens: the whole MoE weight is read
    d64 = api.trace(name, "decode", 64, 1, 64)
    e64 = d64[d64.role.isin(["expert_gate_up", "expert_down"]) & (d64.kind == "gemm")]
    assert e64.weight_bytes.sum() == spec.layers * experts * one_expert
    assert e64.gemm_m.sum() == spec.layers * 2 * 64 * active  # every token-expert pair, up and down


def test_memory_takes_the_total_parameters_and_tp_splits_the_experts():
    raw = {"workload": {"model": "Mixtral-8x7B", "batch": 1, "prompt": 32, "decode_tokens": 4, "dtype": "fp16"},
           "hardware": {"file": "targets/gpu_h100_sxm.yaml"}, "run": {"fidelity": "analytic"}}
    with pytest.raises(SimError, match=r"weights 93\.4.*would fit: 2 devices sharing it"):
        prepare(raw, CONFIGS_DIR / "x.yaml")
    r = execute(prepare({**raw, "parallel": {"tp": 2}}, CONFIGS_DIR / "x.yaml"))
    dec = r.ops[r.ops.phase == "decode"]
    up = dec[(dec.role == "expert_gate_up") & (dec.kind == "gemm")]
    assert (up.gemm_n == 2 * 14336 // 2).all()  # each device half of every expert's gate/up columns
    assert r.summary["memory"]["weights"] == zoo.get("Mixtral-8x7B").published_params


def test_layers_with_experts_follow_the_configs_exceptions():
    """Expert parameters count only the layers that have experts: Qwen-MoE's decoder_sparse_step
    and mlp_only_layers, DeepSeek's first_k_dense_replace and moe_layer_freq."""
    import dataclasses

    spec = zoo.get("Qwen3-30B-A3B")
    per_layer = spec.expert_params // spec.layers
    assert spec.moe_layers == spec.layers == 48
    for extra, layers in (({"decoder_sparse_step": 2}, 24), ({"mlp_only_layers": [0, 1, 2]}, 45),
                          ({"first_k_dense_replace": 1}, 47), ({"first_k_dense_replace": 1, "moe_layer_freq": 2}, 23)):
        s = dataclasses.replace(spec, config={**spec.config, **extra})
        assert s.moe_layers == layers and s.expert_params == per_layer * layers, extra
