"""Golden numbers: every reproduction and the quickstart, run through `sim run`, equal their
committed golden files (results/golden/<system>/); `make golden` rewrites them on purpose."""

import pytest

from sim import golden

SYSTEMS = list(golden.systems())


def test_every_reproduction_has_a_golden_copy():
    have = {p.name for p in golden.GOLDEN.iterdir() if p.is_dir()}
    assert set(SYSTEMS) <= have, set(SYSTEMS) - have
    assert {"bitmod", "apmm", "etsoc", "matmulfree", "easyspec", "lamarr", "quickstart"} <= set(SYSTEMS)


@pytest.mark.slow
@pytest.mark.parametrize("system", SYSTEMS)
def test_reproduction_equals_golden(system, tmp_path):
    files = golden.produce(system, tmp_path)
    diffs = []
    for name, path in files.items():
        gold = golden.GOLDEN / system / name
        assert gold.exists(), f"no golden {gold}: run `make golden`"
        diffs += golden.compare(system, name, path, gold)
    assert not diffs, "\n".join(diffs[:20])


def test_compare_catches_a_moved_number(tmp_path):
    """The comparison fails on a number moved beyond the tolerance, and only then."""
    gold = golden.GOLDEN / "bitmod" / "paper_vs_sim.csv"
    import pandas as pd

    df = pd.read_csv(gold)
    df.loc[0, "simulated"] *= 1 + 1e-6
    moved = tmp_path / "moved.csv"
    df.to_csv(moved, index=False)
    assert golden.compare("bitmod", "paper_vs_sim.csv", moved, gold)
    assert golden.compare("bitmod", "paper_vs_sim.csv", gold, gold) == []
    df = pd.read_csv(golden.GOLDEN / "lamarr" / "paper_vs_sim.csv")
    df.loc[df.metric == "speedup_detector_step", "simulated"] *= 3  # measured live: not compared
    live = tmp_path / "live.csv"
    df.to_csv(live, index=False)
    assert golden.compare("lamarr", "paper_vs_sim.csv", live, golden.GOLDEN / "lamarr" / "paper_vs_sim.csv") == []


def test_regenerating_keeps_a_file_that_moved_only_live(tmp_path, monkeypatch):
    """`make golden` leaves a golden file alone when the fresh output differs only in what is timed
    live (Lamarr's speed ratio), and rewrites it when a model number moved."""
    import shutil

    import pandas as pd

    dest = tmp_path / "golden"
    for system in ("lamarr", "bitmod"):
        shutil.copytree(golden.GOLDEN / system, dest / system)
    before = {s: (dest / s / "paper_vs_sim.csv").read_text() for s in ("lamarr", "bitmod")}

    def fake_produce(system, out):
        df = pd.read_csv(golden.GOLDEN / system / "paper_vs_sim.csv")
        live = df.metric.isin(golden.LIVE.get(system, set()))
        df.loc[live, "simulated"] *= 3.0  # the machine's mood
        df.loc[~live, "simulated"] *= 1.5  # a model number moved
        df.to_csv(out / "paper_vs_sim.csv", index=False)
        return {"paper_vs_sim.csv": out / "paper_vs_sim.csv"}

    monkeypatch.setattr(golden, "GOLDEN", dest)
    monkeypatch.setattr(golden, "produce", fake_produce)
    golden.regenerate(["lamarr", "bitmod"])
    assert (dest / "lamarr" / "paper_vs_sim.csv").read_text() == before["lamarr"]
    assert (dest / "bitmod" / "paper_vs_sim.csv").read_text() != before["bitmod"]
