"""Reproduce files: validation, the paper's metric method, outputs."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from models.errors import SimError
from sim.studies import reproduce

ROOT = Path(__file__).resolve().parents[2]
BITMOD = ROOT / "configs" / "bitmod" / "reproduce.yaml"


def test_bitmod_matrix_is_valid_and_resolves_precisions():
    rf, runs = reproduce.load(BITMOD)
    assert len(runs) == 2 * 6 * 5
    by = {(t, m, a): cfg for t, m, a, cfg in runs}
    ant_yi = by[("generative", "Yi-6B", "ant")]
    assert ant_yi["workload"]["weight_storage_bits"] == 5.25 and ant_yi["workload"]["weight_bits"] == 8
    assert ant_yi["hardware"]["params"] == {"pe_rows": 64, "pe_cols": 16}
    bm = by[("discriminative", "Llama-3-8B", "bitmod")]
    assert bm["workload"]["weight_storage_bits"] == 4.0625 and bm["workload"]["kv_bits"] == 8
    assert bm["workload"]["decode_tokens"] == 0 and by[("generative", "Phi-2", "fp16")]["workload"]["decode_tokens"] == 20
    assert all(m.source for m in rf.metrics)


def test_metric_method_is_the_ratio_of_mean_speedups():
    """Per task: arithmetic mean over models of the speedup over the reference, then the ratio of
    those means (not a geometric mean, not a mean of per-model ratios); 'all' averages the tasks."""
    rf, _ = reproduce.load(BITMOD)
    data = {  # latency (= energy here) per model A, B, per task
        "discriminative": {"fp16": [4.0, 8.0], "ant": [2.0, 1.0], "olive": [2.0, 2.0], "bitmod": [1.0, 2.0],
                           "bitmod_lossless": [2.0, 4.0]},
        "generative": {"fp16": [4.0, 8.0], "ant": [4.0, 8.0], "olive": [2.0, 4.0], "bitmod": [1.0, 1.0],
                       "bitmod_lossless": [1.0, 8.0]},
    }
    rows = [{"task": t, "model": model, "accelerator": acc, "latency_s": v[i], "energy_j": 2 * v[i]}
            for t, accs in data.items() for acc, v in accs.items() for i, model in enumerate(["A", "B"])]
    m = reproduce.compute_metrics(rf, pd.DataFrame(rows)).set_index("metric")
    # discriminative: bitmod speedups (4, 4) -> 4; ant (2, 8) -> 5: 0.8 (a geometric mean gives 1.0,
    # a mean of per-model ratios 1.25); generative: bitmod (4, 8) -> 6, ant (1, 1) -> 1: 6
    assert m.loc["speedup_bitmod_vs_ant_discriminative", "simulated"] == pytest.approx(0.8)
    assert m.loc["speedup_bitmod_vs_ant_generative", "simulated"] == pytest.approx(6.0)
    assert m.loc["speedup_bitmod_vs_ant", "simulated"] == pytest.approx((0.8 + 6.0) / 2)
    assert m.loc["energy_efficiency_bitmod_vs_ant", "simulated"] == pytest.approx((0.8 + 6.0) / 2)
    # lossless over fp16: discriminative (2, 2) -> 2 over 1; generative (4, 1) -> 2.5
    assert m.loc["speedup_lossless_vs_fp16_generative", "simulated"] == pytest.approx(2.5)
    assert m.loc["speedup_bitmod_vs_ant", "rel_error"] == pytest.approx((3.4 - 1.69) / 1.69)
    assert list(m.columns) == ["paper", "simulated", "rel_error", "source"]


def test_bad_reproduce_file(tmp_path):
    d = yaml.safe_load(BITMOD.read_text())
    d["metrics"][0]["acc"] = "tpu"
    p = tmp_path / "r.yaml"
    d["accelerators"] = {k: {**v, "file": str((BITMOD.parent / v["file"]).resolve())} for k, v in d["accelerators"].items()}
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(SimError, match="unknown accelerator 'tpu'"):
        reproduce.load(p)
    d["metrics"][0]["acc"] = "bitmod"
    models = list(d["models"])
    d["models"] = models + ["GPT-9"]
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(SimError, match="unknown model 'GPT-9'"):
        reproduce.load(p)
    d["models"] = models + ["OPT-1.3B"]
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(SimError, match="listed twice"):
        reproduce.load(p)
    d["models"] = models
    d["accelerators"]["ant"]["precision"]["generatve"] = d["accelerators"]["ant"]["precision"].pop("generative")
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(SimError, match="unknown task 'generatve'"):
        reproduce.load(p)
    d["accelerators"]["ant"]["precision"]["generative"] = d["accelerators"]["ant"]["precision"].pop("generatve")
    d["models"] = [m for m in models if m != "Yi-6B"]
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(SimError, match="unknown model 'Yi-6B'"):  # a per-model entry for a model not run
        reproduce.load(p)


def test_outputs(tmp_path):
    rf, _ = reproduce.load(BITMOD)
    runs = pd.DataFrame([{"task": t, "model": m, "accelerator": a, "latency_s": 1.0 + i, "energy_j": 2.0}
                         for t in rf.tasks for m in rf.models for i, a in enumerate(rf.accelerators)])
    out = reproduce.write(tmp_path, runs, reproduce.compute_metrics(rf, runs), rf)
    csv = pd.read_csv(out / "paper_vs_sim.csv")
    assert list(csv.columns) == ["metric", "paper", "simulated", "rel_error", "source"] and len(csv) == 11
    page = (out / "report.html").read_text()
    assert "data:image/png" in page and "Where and why they differ" in page
