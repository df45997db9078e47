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
    # the weights and their per-group metadata as the numerics count them (scale and datatype selector)
    from models.bitmod import GROUP, METADATA_BITS

    assert bm["workload"]["weight_storage_bits"] == 4 + METADATA_BITS["bitmod"] / GROUP == 4.078125
    assert by[("generative", "Phi-2", "bitmod")]["workload"]["weight_storage_bits"] == 3 + METADATA_BITS["bitmod"] / GROUP
    assert bm["workload"]["kv_bits"] == 8
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


def test_rated_and_modelled_decode_efficiency():
    """ET-SoC-1's rows: the paper's convention (decode tokens/s over rated watts) and the modelled one
    (decode tokens per joule), acc's over `over`'s, per model."""
    rf, _ = reproduce.load(ROOT / "configs" / "etsoc" / "reproduce.yaml")
    rows = []
    for task in rf.tasks:
        for model, (a_tps, e_tps) in {"Llama-3-8B": (40.0, 5.0), "Phi-3-mini": (50.0, 10.0)}.items():
            for acc, tps, tpj in (("a100_fp16", a_tps, a_tps / 150.0), ("etsoc_fp16", e_tps, e_tps / 40.0),
                                  ("etsoc_int8", 2 * e_tps, 2 * e_tps / 40.0)):
                rows.append({"task": task, "model": model, "accelerator": acc, "latency_s": 1.0, "energy_j": 1.0,
                             "decode_tokens_per_s": tps, "decode_tokens_per_j": tpj, "decode_power_w": 1.0,
                             "decode_s_per_token": 1 / tps, "average_power_w": 1.0, "tokens_per_s_per_w": 1.0})
    m = reproduce.compute_metrics(rf, pd.DataFrame(rows)).set_index("metric")
    assert m.loc["phi3_tokens_per_s_per_w_etsoc_over_a100", "simulated"] == pytest.approx((10 / 25) / (50 / 300))
    assert m.loc["llama3_tokens_per_s_per_w_etsoc_over_a100", "simulated"] == pytest.approx((5 / 25) / (40 / 300))
    assert m.loc["phi3_tokens_per_s_per_w_etsoc_over_a100_modelled", "simulated"] == pytest.approx(
        (10 / 40) / (50 / 150))
    assert "ratings:" in m.loc["phi3_tokens_per_s_per_w_etsoc_over_a100", "source"]
    with pytest.raises(ValueError, match="needs over, rated_w"):
        reproduce.Metric(metric="x", kind="decode_efficiency_rated", acc="a", over="b", task="t", paper=1.0,
                         source="s", rated_w=25.0)
    with pytest.raises(ValueError, match="belong to decode_efficiency_rated"):
        reproduce.Metric(metric="x", kind="decode_efficiency", acc="a", over="b", task="t", paper=1.0, source="s",
                         rated_w=25.0)


def test_a100_baseline_runtime_is_the_measured_generate_loop():
    """The A100 PCIe target is the SXM4's GA100 at the PCIe card's bandwidth, and its Hugging Face +
    LoRA runtime takes the per-op host time the committed measurement gives (the mean over models)."""
    import csv

    from sim.config import CONFIGS_DIR, Hardware
    from sim.targets import build

    sxm, _, _ = build(Hardware(file="targets/gpu_a100_sxm_80gb.yaml"), CONFIGS_DIR / "t.yaml")
    pcie, _, _ = build(Hardware(file="targets/gpu_a100_pcie_80gb.yaml"), CONFIGS_DIR / "t.yaml")
    hf, _, _ = build(Hardware(file="targets/gpu_a100_pcie_80gb_hf_lora.yaml"), CONFIGS_DIR / "t.yaml")
    assert pcie.params.hbm_bytes_per_s == 1.935e12 and pcie.params.sms == sxm.params.sms
    with (ROOT / "results" / "etsoc" / "hf_generate_host.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    lora = [float(r["per_op_s"]) for r in rows if r["lora"] == "1"]
    assert {r["model"] for r in rows} == {"Llama-3-8B", "Phi-3-mini"} and len(lora) == 2
    assert hf.params.host.dispatch_s["default"] == pytest.approx(sum(lora) / 2, abs=5e-9)
    assert hf.params.host.overlap and hf.params.hbm_bytes_per_s == 1.935e12


def test_spread_over_divides_a_one_core_time_by_another_accelerators_cores():
    import pandas as pd

    from models.errors import SimError
    from sim.studies.reproduce import ReproduceFile, compute_metrics

    def rf(acc):
        return ReproduceFile(study="reproduce", name="x", tasks={"t": {}}, models=["m"], reference="one",
                             accelerators={"one": {"file": "f"}, "many": {"file": "f"}},
                             metrics=[{"metric": "p", "kind": "ms_per_token", "acc": acc, "spread_over": "many",
                                       "model": "m", "task": "t", "paper": 10.0, "source": "s"}])
    runs = pd.DataFrame([{"task": "t", "model": "m", "accelerator": "one", "cores": 1, "decode_s_per_token": 2.0},
                         {"task": "t", "model": "m", "accelerator": "many", "cores": 40, "decode_s_per_token": 0.1}])
    m = compute_metrics(rf("one"), runs).set_index("metric")
    assert m.loc["p", "simulated"] == 2000.0 / 40 and "spread over 40 cores of many" in m.loc["p", "source"]
    with pytest.raises(SimError, match="one-core time"):
        compute_metrics(rf("many"), runs)
