"""The worked deployment examples (configs/deploy/, README and docs/parallelism.md): each config
runs (or is refused as the README says), and the figures the docs quote are what the runs give."""

import re
from pathlib import Path

import pytest

from sim.config import CONFIGS_DIR
from sim.memory import Infeasible
from sim.run import run

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = sorted((CONFIGS_DIR / "deploy").glob("*.yaml"))
DOC = (ROOT / "docs" / "parallelism.md").read_text()
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "J": 1.0, "GB": 1e9}


def _rows() -> dict[str, list[str]]:
    """docs/parallelism.md's example tables: config file -> its row's cells."""
    out = {}
    for line in DOC.splitlines():
        m = re.match(r"\| `(\w+\.yaml)`", line)
        if m:
            out[m.group(1)] = [c.strip() for c in line.strip().strip("|").split("|")]
    return out


def _value(cell: str) -> float:
    m = re.search(r"([\d.]+) (s|ms|us|J|GB)\b", cell)
    return float(m.group(1)) * UNITS[m.group(2)]


def test_every_example_is_documented():
    rows = _rows()
    assert {p.name for p in DEPLOY} - {"gpt3_175b.yaml"} == set(rows)
    readme = (ROOT / "README.md").read_text()
    for name in ("llama70b_h100.yaml", "llama70b_h100_tp8.yaml", "mixtral_h100_ep2.yaml", "gpt3_175b.yaml"):
        assert f"configs/deploy/{name}" in readme


def test_70b_on_one_h100_is_refused_as_the_readme_says():
    with pytest.raises(Infeasible) as e:
        run(CONFIGS_DIR / "deploy" / "llama70b_h100.yaml")
    msg = str(e.value)
    quoted = "does not fit: needs 144.0 GB (weights 138.0, KV cache 6.0 GB) against 80.0 GB of device memory; " \
             "would fit: 2 devices sharing it"
    assert quoted in msg
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert quoted in readme


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in _rows() if n != "llama70b_h100.yaml"])
def test_documented_figures(name):
    """Each figure in the example's row (prefill, per token, collectives per step, energy per
    token; memory per device where given) as the run gives it, to the digits shown."""
    s = run(CONFIGS_DIR / "deploy" / name).summary
    cells = _rows()[name]
    got = [s["prefill"]["latency_s"], s["decode"]["time_per_token_s"], s["parallel"]["decode_step_s"],
           s["energy_per_token_j"]]
    want = [_value(c) for c in cells[-4:]]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=0.006), (name, got, want)
    if "GB each" in cells[2]:
        assert s["memory"]["total"] == pytest.approx(_value(cells[2]), rel=0.002)
