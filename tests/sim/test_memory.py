"""Memory that must fit (issue 22, item 1): what a run needs against the device's memory, the
one-line refusal with what would fit, sizes no device holds refused before tracing, the summary's
breakdown, and a sweep that stores an infeasible point and goes on."""

from pathlib import Path

import pytest
import yaml

from sim import memory
from sim.cli import main
from sim.config import CONFIGS_DIR
from sim.run import execute, prepare
from sim.sweep import load_results, load_sweep, run_sweep
from sim.sweep_report import write_sweep_report
from workloads import zoo

ROOT = Path(__file__).resolve().parents[2]
H100 = str(ROOT / "configs" / "targets" / "gpu_h100_sxm.yaml")


def _cfg(tmp_path, name="c", **workload):
    w = {"model": "Llama-2-7B", "batch": 1, "prompt": 64, "decode_tokens": 4, "dtype": "fp16", **workload}
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"workload": w, "hardware": {"file": H100}, "run": {"fidelity": "analytic"}}))
    return p


def test_need_by_hand():
    """Llama-2-70B: 80 layers x 2 (K, V) x 8 KV heads x 128 x 2 bytes = 327,680 bytes per position;
    weights its published parameters at 2 bytes (fp16) or 0.5 (4 bits)."""
    spec = zoo.get("Llama-2-70B")
    raw = {"workload": {"model": "Llama-2-70B", "batch": 8, "prompt": 2048, "decode_tokens": 256, "dtype": "fp16"},
           "hardware": {"file": "targets/bitmod_fp16_baseline.yaml"}}
    w = prepare(raw, CONFIGS_DIR / "x.yaml").config.workload  # capacity not modelled there: no refusal
    n = memory.need(spec, w)
    assert n.kv_per_token == 80 * 2 * 8 * 128 * 2
    assert n.kv_cache == n.kv_per_token * 8 * (2048 + 256)
    assert n.weights == spec.published_params * 2
    w4 = w.model_copy(update={"weight_bits": 4})
    assert memory.need(spec, w4).weights == spec.published_params // 2


def test_70b_on_one_h100_is_refused_with_the_numbers(tmp_path, capsys):
    p = _cfg(tmp_path, model="Llama-2-70B", batch=8, prompt=2048, decode_tokens=256)
    assert main(["run", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not fit" in err
    assert "needs 144.0 GB (weights 138.0, KV cache 6.0 GB) against 80.0 GB" in err
    assert "2 devices" in err and "weights at 8 bits" in err
    assert not (tmp_path / "o").exists()


def test_a_context_that_does_not_fit_says_how_much_would(tmp_path):
    """Llama-2-7B's 13.5 GB of weights fit; 64 sequences of 4,096 positions (137 GB of KV) do not:
    the refusal says how many positions, and how many sequences, would."""
    p = _cfg(tmp_path, batch=64, prompt=4000, decode_tokens=96)
    raw = yaml.safe_load(p.read_text())
    with pytest.raises(memory.Infeasible) as e:
        prepare(raw, p)
    msg = str(e.value)
    per_token = 32 * 2 * 32 * 128 * 2
    room = 80e9 - zoo.get("Llama-2-7B").published_params * 2
    assert f"at most {int(room // (per_token * 64)):,} tokens of prompt + decode at batch 64" in msg
    assert f"batch {int(room // (per_token * 4096))} at this length" in msg


@pytest.mark.parametrize("batch", [10**30, 2**63, 10**12])
def test_sizes_no_device_holds_are_refused_before_tracing(tmp_path, capsys, batch, monkeypatch):
    import workloads.api as api

    def boom(*a, **k):
        raise AssertionError("traced")

    monkeypatch.setattr(api, "trace", boom)
    p = _cfg(tmp_path, batch=batch)
    assert main(["run", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("no device holds that" in err or "does not fit" in err)


def test_the_summary_carries_the_memory_breakdown(tmp_path):
    p = _cfg(tmp_path, prompt=128, decode_tokens=8)
    r = execute(prepare(yaml.safe_load(p.read_text()), p))
    m = r.summary["memory"]
    spec = zoo.get("Llama-2-7B")
    assert m["weights"] == spec.published_params * 2 and m["capacity"] == 80_000_000_000
    assert m["kv_cache"] == 32 * 2 * 32 * 128 * 2 * (128 + 8)
    # the traced activations: at least the prefill's widest GEMM output (128 x 11008 x 2 bytes)
    assert 128 * 11008 * 2 <= m["activations"] < 1e9
    assert m["total"] == m["weights"] + m["kv_cache"] + m["activations"] + m["lora"]


def test_a_sweep_stores_an_infeasible_point_and_goes_on(tmp_path):
    base = _cfg(tmp_path, "base", model="Llama-2-13B", prompt=64, decode_tokens=2)
    sw = tmp_path / "sweep.yaml"
    sw.write_text(yaml.safe_dump({"name": "fit", "base": str(base), "mode": "grid",
                                  "axes": {"workload.batch": [1, 4096]}}))
    counts = run_sweep(load_sweep(sw, tmp_path / "out"), workers=0)
    assert counts["ok"] == 1 and counts["infeasible"] == 1 and counts["error"] == 0
    df = load_results(tmp_path / "out")
    bad = df[df.status == "infeasible"]
    assert len(bad) == 1 and "does not fit" in bad["error"].item()
    html = write_sweep_report(tmp_path / "out").read_text()
    assert "Infeasible points" in html
