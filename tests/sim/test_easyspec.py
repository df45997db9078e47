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
    cfg["eager_gpu"] = str(ROOT / "configs" / "targets" / "gpu_h100_sxm_eager.yaml")
    for a in (cfg["acceptance"], *cfg.get("acceptance_also", {}).values()):
        if a.get("measured"):
            a["measured"] = str(ROOT / "configs" / "easyspec" / a["measured"])
    cfg.update(pairs=[{"base": "Llama-2-13B", "draft": "Llama-2-7B"}], gpus=2, context=64,
               sweep={"gpus": [2], "gamma": [2, 4], "group": [1, 2], "alpha": [0.6, 0.9]})
    p = d / "r.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(p), "--out", str(d / "out")]) == 0
    return d / "out"


@pytest.mark.slow
def test_outputs(small):
    runs = pd.read_csv(small / "runs.csv", keep_default_na=False)
    assert list(runs.decoder) == ["vanilla"] + ["speculative", "easyspec"] * 2 + ["vanilla"] + ["speculative", "easyspec"] * 2
    assert list(runs.runtime) == ["file"] * 5 + ["eager"] * 5
    assert list(runs.acceptance_set) == (["", "primary", "primary", "tiny_pair", "tiny_pair"]) * 2
    assert (runs.loc[runs.decoder == "vanilla", "speedup_vs_vanilla"] == 1.0).all()
    # the eager runtime's host makes every decoder slower than the file's
    t = runs.set_index(["runtime", "acceptance_set", "decoder"]).time_per_token_s
    assert (t["eager"] > t["file"]).all()
    # the cited pair's acceptance (0.88) beats the tiny pair's (about 0.5): more tokens, more speedup
    sp = runs.set_index(["runtime", "acceptance_set", "decoder"]).speedup_vs_vanilla
    assert sp["file", "primary", "easyspec"] > sp["file", "tiny_pair", "easyspec"]
    m = pd.read_csv(small / "paper_vs_sim.csv")
    assert set(m.metric) == {"peak_speedup_vs_vanilla", "drafting_speedup", "acceptance_drop_tiny_pair",
                             "peak_speedup_vs_vanilla_eager", "drafting_speedup_eager",
                             "peak_speedup_vs_vanilla_tiny_pair", "peak_speedup_vs_vanilla_eager_tiny_pair"}
    assert m.simulated.notna().all()
    used = pd.read_csv(small / "acceptance_used.csv")
    primary = used[used.acceptance_set == "primary"].set_index("drafting").alpha
    assert primary["exact"] == 0.88 and primary.iloc[1] == pytest.approx(0.88 * 0.93)
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


def test_frontier_is_leviathans_expectation_at_the_best_gamma():
    """What a speedup requires: E[tokens](alpha, gamma) / (gamma c + 1), maximized over gamma."""
    from sim.studies.easyspec import FrontierSpec, frontier

    f = frontier(FrontierSpec(alpha=[0.8, 0.9], cost_ratio=[0.1, 1.0], gamma_max=8)).set_index(["alpha", "cost_ratio"])
    # alpha 0.8, c 0.1: gamma 6 gives (1 - 0.8^7) / 0.2 / 1.6 = 2.4696, more than gamma 5 or 7
    assert f.loc[(0.8, 0.1), "best_gamma"] == 6
    assert f.loc[(0.8, 0.1), "speedup"] == pytest.approx((1 - 0.8**7) / 0.2 / 1.6)
    # a draft as costly as the base never pays: the best is gamma 1, (1 + alpha) / 2 < 1
    assert f.loc[(0.9, 1.0), "best_gamma"] == 1 and f.loc[(0.9, 1.0), "speedup"] == pytest.approx(1.9 / 2)


@pytest.mark.slow
def test_each_speculative_decoder_takes_its_best_draft_tp(small):
    """draft_tp: best runs each speculative decoder at every draft TP degree that divides the GPUs and
    keeps the fastest: no fixed degree beats it."""
    from sim.config import Hardware
    from sim.multigpu import run_decoder
    from sim.targets import build
    from sim.targets.parts import Link

    runs = pd.read_csv(small / "runs.csv")
    runs = runs[(runs.runtime == "file") & (runs.acceptance_set.fillna("") != "tiny_pair")].set_index("decoder")
    cfg = yaml.safe_load((ROOT / "configs" / "easyspec" / "reproduce.yaml").read_text())
    gpu, _, _ = build(Hardware(file=str(ROOT / "configs" / "targets" / "gpu_h100_sxm.yaml")), ROOT / "x.yaml")
    link = Link(cfg["link"]["bytes_per_s"], cfg["link"]["latency_s"])
    tokens = runs.loc["speculative", "tokens_per_iter"]
    for d in (1, 2):
        r = run_decoder("speculative", base="Llama-2-13B", draft="Llama-2-7B", gpu=gpu, link=link, n=2, context=64,
                        gamma=cfg["gamma"], tokens_per_iter=tokens, draft_tp=d)
        assert runs.loc["speculative", "time_per_token_s"] <= r["time_per_token_s"] * (1 + 1e-12)
    assert runs.loc["speculative", "draft_tp"] in (1, 2) and runs.loc["vanilla", "draft_tp"] == 0
    assert (small / "frontier.csv").is_file()


def test_acceptance_forms_and_errors(tmp_path):
    from models.errors import SimError
    from sim.studies.easyspec import Acceptance, _acceptance

    a = _acceptance(Acceptance(exact=0.9, layer_parallel_drop=0.1, source="s"), tmp_path, 4, 4)
    assert a["alpha_parallel"] == pytest.approx(0.81) and a["all_accepted"] is None
    for bad in (dict(exact=0.9), dict(exact=0.9, layer_parallel=0.8, layer_parallel_drop=0.1),
                dict(exact=0.9, layer_parallel=0.8, measured="x.csv")):
        with pytest.raises(SimError, match="give"):
            _acceptance(Acceptance(source="s", **bad), tmp_path, 4, 4)
    # a measured file: the layer-parallel rows of the calibration policy asked for
    csv = ROOT / "results" / "easyspec" / "acceptance.csv"
    ev = _acceptance(Acceptance(measured=str(csv), source="s"), tmp_path, 4, 4, "every_iteration")
    om = _acceptance(Acceptance(measured=str(csv), source="s"), tmp_path, 4, 4, "on_mismatch")
    t = pd.read_csv(csv)
    row = t[(t["mode"] == "all") & (t.gamma == 4) & (t.refill == "on_mismatch")].iloc[0]
    assert om["alpha_parallel"] == row.alpha and om["all_accepted"] == row.all_accepted
    assert ev["alpha_exact"] == om["alpha_exact"]


def test_a_bad_acceptance_is_named_by_file_key_and_line(tmp_path, capsys):
    cfg = yaml.safe_load((ROOT / "configs" / "easyspec" / "reproduce.yaml").read_text())
    for k in ("gpu", "eager_gpu"):
        cfg[k] = str(ROOT / "configs" / "easyspec" / cfg[k])
    cfg["acceptance"] = {"exact": 0.9, "source": "s"}
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["run", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{p}: acceptance (line" in err and "give exact and one of layer_parallel or layer_parallel_drop" in err
