"""The study registry and interface: `sim run` dispatches on `study:`; adding a system touches no
CLI code (the README's recipe, followed here with a tiny study registered from the test); the
trace export of a plain run."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from models.errors import SimError
from sim import studies
from sim.cli import main
from sim.config import load_yaml, validated
from sim.studies.base import Options, Study, StudyResult, no_progress, paper_vs_sim
from tests.helpers import check_trace_event_format

ROOT = Path(__file__).resolve().parents[2]


# ---- the README's recipe: a schema, a Study with run() and write(), one register() call ----------

class CoinFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    study: str
    flips: int
    paper_heads: float
    out: str | None = None


class CoinStudy(Study):
    kind = "coin"
    schema = CoinFile

    def run(self, path: Path, options: Options, progress=no_progress) -> StudyResult:
        data, lines = load_yaml(path)
        f = validated(CoinFile, data, path, lines)
        for k in range(f.flips):
            progress("flipping", k, f.flips)
        heads = f.flips // 2
        table = pd.DataFrame({"flip": range(f.flips), "heads": [k % 2 == 0 for k in range(f.flips)]})
        pvs = paper_vs_sim([{"metric": "heads", "paper": f.paper_heads, "simulated": float(heads),
                             "source": "a fair coin (test)"}])
        return StudyResult(tables={"flips": table}, paper_vs_sim=pvs, summary={"heads": heads},
                           out=Path(options.out or f.out or "results/coin"), title="coin: paper vs simulation")


@pytest.fixture
def coin():
    studies.register("coin", CoinStudy)
    yield
    studies.unregister("coin")


def test_a_new_study_runs_through_sim_run_without_cli_changes(coin, tmp_path, capsys):
    cfg = tmp_path / "coin.yaml"
    cfg.write_text("study: coin\nflips: 10\npaper_heads: 5\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "coin: paper vs simulation" in out and "wrote " in out
    pvs = pd.read_csv(tmp_path / "out" / "paper_vs_sim.csv")
    assert list(pvs.columns) == studies.PAPER_VS_SIM_COLUMNS
    assert pvs.simulated.item() == 5.0 and pvs.rel_error.item() == 0.0
    assert len(pd.read_csv(tmp_path / "out" / "flips.csv")) == 10
    cfg.write_text("study: coin\nflips: many\npaper_heads: 5\n")
    assert main(["run", str(cfg)]) == 2  # its schema's errors are one line, as every study's
    assert "flips (line 2)" in capsys.readouterr().err


def test_unknown_study_names_the_valid_kinds(tmp_path):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("study: coin\nflips: 1\n")
    with pytest.raises(SimError, match=r"study \(line 1\): unknown study 'coin'; valid kinds: run, reproduce"):
        studies.kind_of(yaml.safe_load(cfg.read_text()), cfg, load_yaml(cfg)[1])


def test_every_shipped_config_names_a_registered_study():
    for p in sorted((ROOT / "configs").glob("*/reproduce.yaml")) + [ROOT / "configs" / "lamarr" / "hardware.yaml"]:
        kind = studies.kind_of(yaml.safe_load(p.read_text()), p)
        assert kind != "run" and studies.get(kind).schema is not None, p
    assert studies.kind_of(yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text()), ROOT) == "run"


def test_paper_vs_sim_is_one_builder():
    df = paper_vs_sim([{"metric": "m", "paper": 2.0, "simulated": 3.0, "source": "s"}])
    assert df.to_dict("records") == [{"metric": "m", "paper": 2.0, "simulated": 3.0, "rel_error": 0.5, "source": "s"}]
    assert list(paper_vs_sim([]).columns) == studies.PAPER_VS_SIM_COLUMNS


def test_trace_of_a_study_without_a_timeline_is_refused(tmp_path, capsys):
    assert main(["run", str(ROOT / "configs" / "bitmod" / "reproduce.yaml"), "--trace", "--out", str(tmp_path)]) == 2
    assert "has no timeline" in capsys.readouterr().err


# ---- trace export ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_quickstart_trace(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["workload"].update(prompt=32, decode_tokens=4)
    cfg["hardware"]["file"] = str(ROOT / "configs" / "targets" / "bitmod_fp16_baseline.yaml")
    p = tmp_path / "q.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(p), "--out", str(tmp_path / "o"), "--trace"]) == 0
    events = json.loads((tmp_path / "o" / "trace.json").read_text())["traceEvents"]
    check_trace_event_format(events)
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    tracks = {e["args"]["name"]: e["tid"] for e in events if e["name"] == "thread_name"}
    steps = [e for e in events if e["ph"] == "X" and e["tid"] == tracks["decode: steps"]]
    assert len(steps) == 4
    assert sum(e["dur"] for e in steps) == pytest.approx(s["decode"]["latency_s"] * 1e6)
    ops = [e for e in events if e["ph"] == "X" and e["tid"] == tracks["prefill: ops"]]
    assert sum(e["dur"] for e in ops) == pytest.approx(s["prefill"]["latency_s"] * 1e6)
    assert steps[0]["ts"] == pytest.approx(s["prefill"]["latency_s"] * 1e6)
