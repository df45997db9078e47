"""Your own model (issue 22, item 4): a Hugging Face config.json as workload.model, traced, checked
and refused as the zoo's models are; and any nn.Module traced from example inputs."""

import json

import pytest
import torch
import yaml

from models.errors import SimError
from sim.cli import main
from sim.run import execute, prepare
from sim.targets.base import OpArrays
from sim.targets.parts import Precision
from workloads import api, zoo

SMALL = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 512, "intermediate_size": 1376,
         "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 8000,
         "max_position_embeddings": 2048, "torch_dtype": "bfloat16", "transformers_version": "4.44.0"}


def _write(tmp_path, data, name="config.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_a_config_json_is_a_zoo_entry(tmp_path):
    p = _write(tmp_path, SMALL)
    spec = zoo.get(str(p))
    assert spec.kind == "decoder" and spec.model_class == "LlamaForCausalLM" and spec.config_class == "LlamaConfig"
    assert (spec.layers, spec.hidden, spec.kv_heads, spec.head_dim) == (4, 512, 4, 64)
    # parameters counted on the meta device: embeddings, head, and per layer q, k, v, o, MLP, norms
    d, f, kv = 512, 1376, 4 * 64
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * f + 2 * d
    assert spec.published_params == 8000 * d * 2 + 4 * per_layer + d
    assert spec.uniform_layers and zoo.get(str(tmp_path)) is zoo.get(str(p))  # a folder works too
    df = api.trace(str(p), "prefill", 1, 16)
    assert (df.kind == "gemm").sum() >= 4 * 7 and df.layer.max() == 3


def test_a_user_model_runs_and_is_checked_like_the_zoo(tmp_path):
    p = _write(tmp_path, SMALL)
    cfg = {"workload": {"model": str(p), "batch": 2, "prompt": 64, "decode_tokens": 4, "dtype": "fp16"},
           "hardware": {"file": "targets/gpu_h100_sxm.yaml"}, "run": {"fidelity": "analytic"}}
    from sim.config import CONFIGS_DIR

    r = execute(prepare(cfg, CONFIGS_DIR / "x.yaml"))
    assert r.summary["model"] == str(p) and r.summary["decode"]["tokens"] == 8
    assert r.summary["memory"]["weights"] == zoo.get(str(p)).published_params * 2
    # the zoo's checks: a context past its positions, and memory that does not fit
    cfg["workload"]["prompt"] = 4096
    with pytest.raises(SimError, match="exceeds the 2048 positions"):
        prepare(cfg, CONFIGS_DIR / "x.yaml")
    huge = _write(tmp_path, {**SMALL, "hidden_size": 16384, "intermediate_size": 53248, "num_hidden_layers": 96,
                             "num_attention_heads": 128, "num_key_value_heads": 8}, "huge.json")
    cfg["workload"].update(model=str(huge), prompt=64)
    with pytest.raises(SimError, match="does not fit"):
        prepare(cfg, CONFIGS_DIR / "x.yaml")


@pytest.mark.parametrize("data,needle", [
    ({"hidden_size": 4}, "needs model_type"),
    ({"model_type": "no-such-arch"}, "not an architecture transformers"),
    ({**SMALL, "num_attention_heads": 7}, "cannot build"),
])
def test_bad_configs_are_one_line_errors(tmp_path, capsys, data, needle):
    p = _write(tmp_path, data)
    run = tmp_path / "r.yaml"
    run.write_text(yaml.safe_dump({"workload": {"model": str(p), "prompt": 16, "decode_tokens": 2},
                                   "hardware": {"file": "targets/gpu_h100_sxm.yaml"}}))
    assert main(["run", str(run), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    with pytest.raises(SimError, match="no such config.json"):
        zoo.get(str(tmp_path / "missing.json"))


def test_a_user_moe_config_traces_and_one_that_cannot_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """A mixture-of-experts config (Mixtral's shape, scaled down) traces with the routing policy; an
    architecture whose forward fails on the meta device is a one-line error naming why, not a
    traceback."""
    moe = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 256,
           "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_local_experts": 4, "num_experts_per_tok": 2, "vocab_size": 1000, "max_position_embeddings": 512}
    p = _write(tmp_path, moe)
    df = api.trace(str(p), "decode", 1, 1, 16)
    assert ((df.role == "expert_gate_up") & (df.kind == "gemm")).sum() == 2 * 2  # 2 layers x top-2 experts
    import workloads.build as build

    def broken(*a, **k):
        raise RuntimeError("a data-dependent shape")

    monkeypatch.setattr(build, "run_decoder", broken)
    run = tmp_path / "r.yaml"
    run.write_text(yaml.safe_dump({"workload": {"model": str(p), "prompt": 24, "decode_tokens": 2},
                                   "hardware": {"file": "targets/gpu_h100_sxm.yaml"}}))
    assert main(["run", str(run), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not trace on the meta device" in err and "data-dependent" in err


def test_any_module_traces_from_example_inputs():
    m = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 32)).half().to("meta")
    df = api.trace_module(m, torch.zeros(8, 64, dtype=torch.float16, device="meta"))
    g = df[df.kind == "gemm"]
    assert list(zip(g.gemm_m, g.gemm_n, g.gemm_k)) == [(8, 256, 64), (8, 32, 256)]
    assert list(g.weight_bytes) == [(64 * 256 + 256) * 2, (256 * 32 + 32) * 2]
    from sim.config import CONFIGS_DIR, Hardware
    from sim.targets import build

    t, _, _ = build(Hardware(file="targets/gpu_h100_sxm.yaml"), CONFIGS_DIR / "x.yaml")
    c = t.cost(OpArrays.from_frame(df), Precision(16, 16))
    assert (c.compute_cycles[(df.kind == "gemm").to_numpy()] > 0).all()
    with pytest.raises(SimError, match="expected an nn.Module"):
        api.trace_module(lambda x: x, torch.zeros(1))
    with pytest.raises(SimError, match="give example inputs"):
        api.trace_module(m)


def test_a_moe_config_that_leaves_its_experts_to_the_class_defaults_is_one_for_the_spec_too(tmp_path):
    """The trace builds the config class, defaults included; the spec (memory, expert parallelism)
    must read the same experts: Mixtral's class defaults are 8 experts, 2 a token."""
    import transformers

    moe = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 256,
           "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 1000, "max_position_embeddings": 512}
    spec = zoo.get(str(_write(tmp_path, moe)))
    d = transformers.MixtralConfig()
    assert spec.experts == d.num_local_experts == 8 and spec.experts_per_token == d.num_experts_per_tok == 2
    assert spec.moe_layers == 2
    df = api.trace(str(tmp_path / "config.json"), "decode", 1, 1, 16)
    assert ((df.role == "expert_gate_up") & (df.kind == "gemm")).sum() == 2 * 2
    # a dense config gains no expert keys, even where its class defaults a number of experts (Doge's
    # 16,384 belong to its mixture-of-experts variant)
    dense = zoo.get(str(_write(tmp_path, SMALL, "dense.json")))
    assert dense.experts == 0 and not any(k in dense.config for k in ("num_experts", "num_local_experts"))
    assert transformers.DogeConfig().num_experts == 16384
    doge = {"architectures": ["DogeForCausalLM"], "model_type": "doge", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}
    assert zoo.get(str(_write(tmp_path, doge, "doge.json"))).experts == 0
