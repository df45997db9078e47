"""`sim run` on an EasySpec reproduce file (reduced): runs, paper comparison, heatmap, traces."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sim.cli import main
from tests.helpers import check_trace_event_format

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("easyspec")
    cfg = yaml.safe_load((ROOT / "configs" / "easyspec" / "reproduce.yaml").read_text())
    cfg["gpu"] = str(ROOT / "configs" / "targets" / "gpu_h100_sxm.yaml")
    if cfg["acceptance"].get("measured"):
        cfg["acceptance"]["measured"] = str(ROOT / "configs" / "easyspec" / cfg["acceptance"]["measured"])
    cfg.update(pairs=[{"base": "Llama-2-13B", "draft": "Llama-2-7B"}], gpus=2, context=64,
               sweep={"gpus": [2], "gamma": [2, 4], "group": [1, 2], "alpha": [0.6, 0.9]})
    p = d / "r.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(p), "--out", str(d / "out")]) == 0
    return d / "out"


@pytest.mark.slow
def test_outputs(small):
    runs = pd.read_csv(small / "runs.csv")
    assert list(runs.decoder) == ["vanilla", "speculative", "easyspec"]
    assert runs.loc[runs.decoder == "vanilla", "speedup_vs_vanilla"].item() == 1.0
    m = pd.read_csv(small / "paper_vs_sim.csv")
    assert set(m.metric) == {"peak_speedup_vs_vanilla", "drafting_speedup", "acceptance_drop"}
    assert m.simulated.notna().all()
    sweep = pd.read_csv(small / "sweep.csv")
    assert len(sweep) == 8
    # more acceptance, more speedup, all else equal
    hi = sweep[sweep.alpha == 0.9].set_index(["gamma", "group"]).speedup
    lo = sweep[sweep.alpha == 0.6].set_index(["gamma", "group"]).speedup
    assert (hi > lo).all()
    html = (small / "report.html").read_text()
    assert "Speedup heatmap" in html and "data:image/png;base64," in html
    for kind in ("vanilla", "spec", "easyspec"):
        ev = json.loads(next(small.glob(f"trace_*_{kind}.json")).read_text())["traceEvents"]
        assert any(e["ph"] == "X" for e in ev)
        check_trace_event_format(ev)
