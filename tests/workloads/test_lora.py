"""LoRA adapters as a workload option: trace shapes and bytes, merged = base, cache keys, layer
replication, config errors through `sim run`, and an end-to-end run that costs a little more."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from models.errors import SimError
from workloads import api, trace, zoo

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "configs" / "targets" / "bitmod_fp16_baseline.yaml"


def _dims(spec: zoo.ModelSpec) -> dict[str, tuple[int, int]]:
    """(K, N) of the projections of a Llama- or Phi-3-style layer."""
    d, hd, h, kv = spec.hidden, spec.head_dim, spec.heads, spec.kv_heads
    ff = spec.config["intermediate_size"]
    return {"q_proj": (d, h * hd), "k_proj": (d, kv * hd), "v_proj": (d, kv * hd), "o_proj": (h * hd, d),
            "qkv_proj": (d, (h + 2 * kv) * hd), "gate_proj": (d, ff), "up_proj": (d, ff),
            "gate_up_proj": (d, 2 * ff), "down_proj": (ff, d)}


def _without_lora(df: pd.DataFrame) -> pd.DataFrame:
    out = df[df.role != "lora"].drop(columns="idx").reset_index(drop=True)
    out.attrs = {}
    return out


@pytest.mark.parametrize("name,phase,targets", [
    ("Llama-3-8B", "decode", ("q_proj", "v_proj", "down_proj")),
    ("Phi-3-mini", "prefill", ("qkv_proj", "gate_up_proj", "o_proj")),
])
def test_separate_adds_two_matmuls_per_target_per_layer(name, phase, targets):
    spec = zoo.get(name)
    r, b = 16, 2
    seq, ctx = (1, 20) if phase == "decode" else (7, 0)
    lora = api.LoraSpec(r, targets)
    base = trace(name, phase, b, seq, ctx)
    df = trace(name, phase, b, seq, ctx, lora=lora)
    m = b * seq
    dims = _dims(spec)
    mm = df[(df.role == "lora") & (df.kind == "gemm")]
    assert len(mm) == 2 * len(targets) * spec.layers
    for layer in (0, 1, spec.layers - 1):
        rows = mm[mm.layer == layer]
        got = sorted(zip(rows.module.str.rsplit(".", n=2).str[1], rows.gemm_m, rows.gemm_n, rows.gemm_k,
                         rows.weight_bytes, rows.gemm_batch))
        want = []
        for t in targets:
            k, n = dims[t]
            want += [(t, m, r, k, r * k * 2, 1), (t, m, n, r, n * r * 2, 1)]  # x A^T, then (.) B^T
        assert got == sorted(want)
    # the adapters' weights are weights: r (K + N) elements per adapter and layer
    per_layer = sum(r * sum(dims[t]) * 2 for t in targets)
    assert df.weight_bytes.sum() - base.weight_bytes.sum() == per_layer * spec.layers
    # the scaling and the add are the rest of the adapter; everything else is the base model's
    rest = df[(df.role == "lora") & (df.kind != "gemm") & (df.kind != "view")]
    assert sorted(rest.op.unique()) == ["add", "mul"] and len(rest) == 2 * len(targets) * spec.layers
    pd.testing.assert_frame_equal(_without_lora(df), _without_lora(base))
    assert df.attrs["lora"] == {"rank": r, "targets": sorted(targets), "mode": "separate", "alpha": None}


def test_merged_equals_the_base_trace(monkeypatch):
    spec = zoo.get("OPT-1.3B")
    lora = {"rank": 32, "targets": ["q_proj", "v_proj", "fc1"], "mode": "merged", "alpha": 64}
    # traced anew: the adapters folded into W leave no op of their own
    fresh = api._trace_uncached(spec, "decode", 1, 1, 12, "fp16", lora=api.LoraSpec.of(lora))
    base = trace("OPT-1.3B", "decode", 1, 1, 12)
    pd.testing.assert_frame_equal(fresh, _plain(base))
    # through the API: the base model's cached trace
    monkeypatch.setattr(api, "_trace_uncached", lambda *a, **k: pytest.fail("merged adapters traced anew"))
    merged = trace("OPT-1.3B", "decode", 1, 1, 12, lora=lora)
    pd.testing.assert_frame_equal(merged, base)
    assert merged.attrs["lora"]["mode"] == "merged" and "lora" not in base.attrs


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out.attrs = {}
    return out


def test_cache_key_covers_rank_targets_and_mode():
    spec = zoo.get("Llama-2-7B")
    key = lambda lora: api.trace_key(spec, "decode", 1, 1, 16, "fp16", api.LoraSpec.of(lora))  # noqa: E731
    variants = [
        {"rank": 8, "targets": ["q_proj", "v_proj"]},
        {"rank": 16, "targets": ["q_proj", "v_proj"]},
        {"rank": 16, "targets": ["q_proj"]},
        {"rank": 16, "targets": ["q_proj", "k_proj", "v_proj"]},
        None,
    ]
    keys = [key(v) for v in variants]
    assert len(set(keys)) == len(variants)
    # merged adapters trace as the base model: its key; alpha and target order change nothing traced
    assert key({"rank": 16, "targets": ["q_proj"], "mode": "merged"}) == key(None)
    assert key({"rank": 16, "targets": ["v_proj", "q_proj"], "alpha": 32}) == keys[1]
    # the template memo key holds the spec itself (hashable)
    assert hash(api.LoraSpec(16, ("v_proj", "q_proj"))) == hash(api.LoraSpec(16, ("q_proj", "v_proj")))


def test_traces_with_lora_are_cached_on_disk(monkeypatch):
    lora = api.LoraSpec(4, ("k_proj",))
    a = trace("OPT-1.3B", "prefill", 1, 6, lora=lora)
    api._MEMO.clear()  # as in a new process
    monkeypatch.setattr(api, "_trace_uncached", lambda *a, **k: pytest.fail("disk cache not used"))
    pd.testing.assert_frame_equal(trace("OPT-1.3B", "prefill", 1, 6, lora=lora), a)


@pytest.mark.parametrize("name,phase,targets", [
    ("Llama-3-8B", "decode", ("q_proj", "v_proj", "gate_proj")),
    ("Phi-3-mini", "prefill", ("qkv_proj", "gate_up_proj", "down_proj")),
    ("OPT-1.3B", "decode", ("out_proj", "fc2")),
    ("all-MiniLM-L6-v2", "prefill", ("query", "value", "dense")),
])
def test_two_layer_expansion_stays_exact_with_lora(name, phase, targets):
    spec = zoo.get(name)
    lora = api.LoraSpec(8, targets)
    args = (spec, phase, 2, 5 if phase == "prefill" else 1, 0 if phase == "prefill" else 7, "fp16")
    full = api._trace_uncached(*args, replicate=False, lora=lora)
    fast = api._trace_uncached(*args, lora=lora)
    pd.testing.assert_frame_equal(fast, full)
    assert (full.role == "lora").any()


def test_decode_template_with_lora_matches_direct_traces():
    lora = api.LoraSpec(16, ("q_proj", "o_proj"))
    tpl = api.decode_template("Llama-2-7B", 1, 1, lora=lora)
    assert (tpl.base.role == "lora").any()
    for ctx in (5, 100):
        pd.testing.assert_frame_equal(tpl.at(ctx), trace("Llama-2-7B", "decode", 1, 1, ctx, lora=lora))
    assert tpl is not api.decode_template("Llama-2-7B", 1, 1)  # the base model's is another template


def test_valid_targets_are_the_models_projections():
    assert api.lora_targets("Phi-3-mini") == ("down_proj", "gate_up_proj", "o_proj", "qkv_proj")
    assert api.lora_targets("Llama-3-8B") == ("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj",
                                              "up_proj", "v_proj")
    assert api.lora_targets("OPT-1.3B") == ("fc1", "fc2", "k_proj", "out_proj", "q_proj", "v_proj")
    with pytest.raises(SimError, match="unknown LoRA target 'q_proj' for Phi-3-mini; valid targets: "
                       "down_proj, gate_up_proj, o_proj, qkv_proj"):
        trace("Phi-3-mini", "decode", 1, 1, 8, lora={"rank": 8, "targets": ["q_proj"]})
    with pytest.raises(SimError, match="lm_head"):  # outside the layers: not a target
        trace("Llama-2-7B", "decode", 1, 1, 8, lora={"rank": 8, "targets": ["lm_head"]})
    with pytest.raises(SimError, match="no nn.Linear projections"):
        trace("MMfreeLM-370M", "decode", 1, 1, 8, lora={"rank": 8, "targets": ["o_proj"]})


@pytest.mark.parametrize("lora,needle", [
    ({"rank": 0, "targets": ["q_proj"]}, "lora rank must be a positive integer"),
    ({"rank": 4, "targets": []}, "non-empty list"),
    ({"rank": 4, "targets": "q_proj"}, "non-empty list"),
    ({"rank": 4, "targets": ["q_proj"], "mode": "fused"}, "lora mode must be one of separate, merged"),
    ({"rank": 4, "targets": ["q_proj"], "alpha": -1}, "lora alpha must be a positive number"),
    ({"rank": 4, "targets": ["q_proj"], "dropout": 0.1}, "unknown lora key(s): dropout"),
    ({"targets": ["q_proj"]}, "lora needs `rank` and `targets`"),
])
def test_bad_lora_specs_are_sim_errors(lora, needle):
    with pytest.raises(SimError) as e:
        api.LoraSpec.of(lora)
    assert needle in str(e.value)


# ---- through `sim run` -----------------------------------------------------------------------

GOOD = f"""\
workload:
  model: Llama-2-7B
  batch: 1
  prompt: 16
  decode_tokens: 2
  lora:
    rank: 16
    targets: [q_proj, v_proj]
hardware:
  file: {TARGET}
run:
  fidelity: analytic
"""

BAD = [
    ("rank 0", GOOD.replace("rank: 16", "rank: 0"), "workload.lora.rank (line 7): input should be greater than 0"),
    ("unknown target", GOOD.replace("[q_proj, v_proj]", "[q_proj, qkv_proj]"),
     "workload.lora.targets.1 (line 8): unknown LoRA target 'qkv_proj' for Llama-2-7B; valid targets: "
     "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj"),
    ("no targets", GOOD.replace("[q_proj, v_proj]", "[]"), "workload.lora.targets (line 8): list should have at least 1"),
    ("missing targets", GOOD.replace("    targets: [q_proj, v_proj]\n", ""),
     "workload.lora.targets (line 6): missing required key"),
    ("bad mode", GOOD.replace("rank: 16", "rank: 16\n    mode: fused"), "workload.lora.mode (line 8)"),
    ("unknown key", GOOD.replace("rank: 16", "rank: 16\n    dropout: 0.1"), "workload.lora.dropout (line 8): unknown key"),
]


@pytest.mark.parametrize("text,needle", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_lora_config_is_one_line_exit_2(tmp_path, text, needle):
    from tests.helpers import sim

    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    r = sim("run", p, "--out", tmp_path / "out")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"sim: error: {p}: ") and needle in lines[0], lines[0]


@pytest.mark.parametrize("fidelity", ["simpy", "analytic"])
def test_sim_run_with_lora_costs_slightly_more(tmp_path, fidelity):
    from sim.run import run

    cfg = yaml.safe_load(GOOD)
    cfg["run"]["fidelity"] = fidelity
    results = {}
    for mode in ("none", "separate", "merged"):
        c = dict(cfg, workload=dict(cfg["workload"]))
        if mode == "none":
            del c["workload"]["lora"]
        else:
            c["workload"]["lora"] = {**c["workload"]["lora"], "mode": mode}
        p = tmp_path / f"{mode}.yaml"
        p.write_text(yaml.safe_dump(c))
        results[mode] = run(p)
    base, sep, merged = (results[m] for m in ("none", "separate", "merged"))
    for phase in ("prefill", "decode"):
        b, s = base.summary[phase], sep.summary[phase]
        assert b["cycles"] < s["cycles"] < 1.02 * b["cycles"], (phase, b["cycles"], s["cycles"])
        assert b["energy_j"] < s["energy_j"] < 1.02 * b["energy_j"]
        assert (sep.ops[sep.ops.phase == phase].role == "lora").any()
    assert merged.summary["cycles"] == base.summary["cycles"]
    assert merged.summary["energy_j"] == pytest.approx(base.summary["energy_j"], rel=1e-12)


def test_sweep_over_lora_rank(tmp_path):
    from sim.sweep import load_results, load_sweep, run_sweep

    base = tmp_path / "base.yaml"
    base.write_text(GOOD)
    sw = tmp_path / "sweep.yaml"
    sw.write_text(yaml.safe_dump({"name": "lora", "base": str(base), "mode": "grid",
                                  "axes": {"workload.lora.rank": [4, 16, 64]}}))
    s = load_sweep(sw, tmp_path / "out")
    assert [p.config["workload"]["lora"]["rank"] for p in s.points] == [4, 16, 64]
    assert len({p.key for p in s.points}) == 3
    counts = run_sweep(s, workers=0)
    assert counts["ok"] == 3, counts
    res = load_results(tmp_path / "out").sort_values("idx")
    assert res.cycles.is_monotonic_increasing and res.cycles.nunique() == 3
