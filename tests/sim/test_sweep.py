"""Sweeps: expansion, validation before any run, the store, resume after kill -9, Dask."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sim.sweep import load_results, load_sweep, run_sweep
from sim.sweep_report import pareto_front, write_sweep_report

ROOT = Path(__file__).resolve().parents[2]
SIM = str(Path(sys.executable).parent / "sim")
TARGET = ROOT / "configs" / "targets" / "bitmod_fp16_baseline.yaml"


@pytest.fixture
def base(tmp_path):
    cfg = {"workload": {"model": "OPT-1.3B", "batch": 1, "prompt": 32, "decode_tokens": 4},
           "hardware": {"file": str(TARGET)}, "run": {"fidelity": "analytic"}}
    p = tmp_path / "base.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def sweep_file(tmp_path, base, **kw):
    d = {"name": "t", "base": str(base), "mode": "grid",
         "axes": {"hardware.params.dram_bits_per_cycle": [128, 256, 512],
                  "buffers": [{"hardware.params.weight_buffer_bytes": 262144},
                              {"hardware.params.weight_buffer_bytes": 524288}]}}
    d.update(kw)
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


def test_grid_expands_with_linked_axes(tmp_path, base):
    sw = load_sweep(sweep_file(tmp_path, base), tmp_path / "out")
    assert len(sw.points) == 6
    assert sw.points[1].params == {"hardware.params.dram_bits_per_cycle": 128,
                                   "hardware.params.weight_buffer_bytes": 524288}
    assert len({p.key for p in sw.points}) == 6
    assert sw.points[0].config["hardware"]["params"]["weight_buffer_bytes"] == 262144


def test_points_and_random_modes(tmp_path, base):
    sw = load_sweep(sweep_file(tmp_path, base, axes={}, mode="points",
                               points=[{"workload.prompt": 16}, {"workload.prompt": 64}]), tmp_path / "o")
    assert [p.config["workload"]["prompt"] for p in sw.points] == [16, 64]
    rnd = dict(mode="random", samples=20, seed=3,
               axes={"hardware.params.dram_bits_per_cycle": {"min": 64, "max": 1024, "log": True, "integer": True},
                     "hardware.params.pe_rows": [16, 32]})
    a = load_sweep(sweep_file(tmp_path, base, **rnd), tmp_path / "o")
    b = load_sweep(sweep_file(tmp_path, base, **rnd), tmp_path / "o")
    assert [p.params for p in a.points] == [p.params for p in b.points]  # seeded
    assert all(64 <= p.params["hardware.params.dram_bits_per_cycle"] <= 1024 for p in a.points)


def test_dry_run_runs_nothing(tmp_path, base):
    p = sweep_file(tmp_path, base)
    r = subprocess.run([SIM, "sweep", str(p), "--dry-run", "--out", str(tmp_path / "o")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "6 points" in r.stdout
    assert not (tmp_path / "o").exists()


BAD = [
    ("unknown key", {"axes_": {}}, "axes_ (line"),
    ("empty axis", {"axes": {"hardware.params.pe_rows": []}}, "axes.hardware.params.pe_rows (line 5): empty axis"),
    ("wrong type", {"samples": "many"}, "samples (line"),
    ("bad point", {"axes": {"hardware.params.pe_rows": [16, 0]}},
     "point 1 (hardware.params.pe_rows=0): hardware.params.pe_rows: input should be greater than 0"),
    ("unknown config key", {"axes": {"hardware.params.pe_rowz": [16]}}, "hardware.params.pe_rowz: unknown key"),
    ("bad model", {"axes": {"workload.model": ["OPT-1.3B", "GPT-9"]}}, "point 1 (workload.model=GPT-9)"),
    ("negative seed", {"seed": -1}, "seed (line"),
    ("infinite range", {"mode": "random", "samples": 3,
                        "axes": {"hardware.params.pe_rows": {"min": 1, "max": float("inf"), "integer": True}}},
     "axes.hardware.params.pe_rows"),
]


@pytest.mark.parametrize("name,change,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_sweep_is_rejected_before_any_point_runs(tmp_path, base, name, change, needle):
    p = sweep_file(tmp_path, base, **change)
    r = subprocess.run([SIM, "sweep", str(p), "--out", str(tmp_path / "o")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sim: error: {p}: ") and needle in lines[0], lines
    assert not (tmp_path / "o").exists()


def fail_points(monkeypatch, dram_bits: int, message: str):
    """Make the points with this DRAM width fail at run time (in this process); returns the real
    execute, to put back."""
    import sim.run

    real = sim.run.execute

    def flaky(prep, progress=None):
        if prep.config.hardware.params.get("dram_bits_per_cycle") == dram_bits:
            raise RuntimeError(message)
        return real(prep, progress)

    monkeypatch.setattr(sim.run, "execute", flaky)
    return real


def test_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, base, monkeypatch):
    fail_points(monkeypatch, 256, "injected failure")
    sw = load_sweep(sweep_file(tmp_path, base), tmp_path / "out")
    counts = run_sweep(sw, workers=0)
    assert counts["ok"] == 4 and counts["error"] == 2
    df = load_results(tmp_path / "out")
    bad = df[df.status == "error"]
    assert len(bad) == 2 and (bad["error"] == "RuntimeError: injected failure").all()
    report = write_sweep_report(tmp_path / "out")
    assert "Failed points" in report.read_text()
    assert len(pd.read_csv(tmp_path / "out" / "points.csv")) == 6


def test_restart_runs_only_missing_points(tmp_path, base):
    sw = load_sweep(sweep_file(tmp_path, base), tmp_path / "out")
    assert run_sweep(sw, workers=0)["ok"] == 6
    again = run_sweep(load_sweep(sweep_file(tmp_path, base), tmp_path / "out"), workers=0)
    assert again["already"] == 6 and again["ok"] == 0


def _keys(db: Path):
    con = sqlite3.connect(str(db))
    try:
        return con.execute("SELECT key FROM points").fetchall()
    finally:
        con.close()


def test_resume_after_kill_9(tmp_path, base):
    """Kill the sweeping process group mid-run, start again: every point once, same results."""
    axes = {"hardware.params.dram_bits_per_cycle": [64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536],
            "hardware.params.pe_rows": [8, 16, 32, 64, 128, 256]}
    p = sweep_file(tmp_path, base, axes=axes)
    out = tmp_path / "killed"
    db = out / "sweep.sqlite"
    cmd = [SIM, "sweep", str(p), "--out", str(out), "--workers", "1", "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline:
        if db.exists():
            try:
                n = len(_keys(db))
            except sqlite3.OperationalError:
                n = 0
            if n >= 5:
                break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 5 <= n < 60, n  # killed mid-sweep
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    keys = [k for (k,) in _keys(db)]
    assert len(keys) == len(set(keys)) == 60
    ref_out = tmp_path / "ref"
    run_sweep(load_sweep(p, ref_out), workers=0)
    a = load_results(out).set_index("key").sort_index()
    b = load_results(ref_out).set_index("key").sort_index()
    pd.testing.assert_frame_equal(a, b)


def test_pareto_front():
    import numpy as np

    x = np.array([1.0, 2.0, 3.0, 1.5, 4.0])
    y = np.array([5.0, 2.0, 1.0, 6.0, 1.0])
    assert pareto_front(x, y).tolist() == [True, True, True, False, False]


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as c, Client(c) as client:
        yield c, client


def test_dask_cluster_runs_a_sweep(tmp_path, base, cluster):
    c, _ = cluster
    p = sweep_file(tmp_path, base)
    counts = run_sweep(load_sweep(p, tmp_path / "dask"), scheduler=c.scheduler_address, batch_size=1)
    assert counts["ok"] == 6
    run_sweep(load_sweep(p, tmp_path / "local"), workers=0)
    a = load_results(tmp_path / "dask").set_index("key").sort_index()
    b = load_results(tmp_path / "local").set_index("key").sort_index()
    pd.testing.assert_frame_equal(a, b)


def test_dask_worker_killed_mid_sweep(tmp_path, base, cluster):
    c, client = cluster
    axes = {"hardware.params.dram_bits_per_cycle": [64, 128, 256, 512, 1024],
            "hardware.params.pe_rows": [8, 16, 32, 64]}
    p = sweep_file(tmp_path, base, axes=axes)
    pids = list(client.run(os.getpid).values())
    killed = []

    def kill_one(_results):
        if not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    counts = run_sweep(load_sweep(p, tmp_path / "dk"), scheduler=c.scheduler_address, batch_size=1,
                       on_result=kill_one)
    errors = load_results(tmp_path / "dk").query("status != 'ok'")["error"].tolist()
    assert killed and counts["ok"] == 20, errors
    keys = [k for (k,) in _keys(tmp_path / "dk" / "sweep.sqlite")]
    assert len(keys) == len(set(keys)) == 20
    s = json.loads(sqlite3.connect(str(tmp_path / "dk" / "sweep.sqlite")).execute(
        "SELECT summary FROM points LIMIT 1").fetchone()[0])
    assert s["model"] == "OPT-1.3B"


def test_failed_points_run_again_and_edited_targets_make_new_points(tmp_path, base, monkeypatch):
    import sim.run

    real = fail_points(monkeypatch, 512, "transient")
    p = sweep_file(tmp_path, base)
    assert run_sweep(load_sweep(p, tmp_path / "o"), workers=0)["error"] == 2
    monkeypatch.setattr(sim.run, "execute", real)
    again = run_sweep(load_sweep(p, tmp_path / "o"), workers=0)
    assert again["already"] == 4 and again["ok"] == 2  # only the failed points ran again
    assert (load_results(tmp_path / "o").status == "ok").all()
    # a target file edited in place: same config, new hardware -> new points
    t = tmp_path / "target.yaml"
    t.write_text(TARGET.read_text())
    cfg = yaml.safe_load(base.read_text())
    cfg["hardware"]["file"] = str(t)
    base.write_text(yaml.safe_dump(cfg))
    first = {pt.key for pt in load_sweep(p, tmp_path / "o2").points}
    t.write_text(TARGET.read_text().replace("vector_lanes: 64", "vector_lanes: 32"))
    assert not first & {pt.key for pt in load_sweep(p, tmp_path / "o2").points}


def test_report_of_an_empty_or_broken_store(tmp_path):
    (tmp_path / "sweep.sqlite").write_bytes(b"not a database" * 100)
    r = subprocess.run([SIM, "report", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a sweep store" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("extra,needle", [(["--scheduler", "foo"], "cannot reach the Dask scheduler"),
                                          (["--out", "/proc/nope/x"], "cannot write the sweep's results")])
def test_bad_sweep_options(tmp_path, base, extra, needle):
    p = sweep_file(tmp_path, base)
    args = [SIM, "sweep", str(p), "--workers", "0", *extra]
    if "--out" not in extra:
        args += ["--out", str(tmp_path / "o")]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and needle in r.stderr, r.stderr


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs" / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_shipped_sweep_validates(path, tmp_path):
    """Every sweep file in configs/sweeps/ expands and validates point by point (nothing runs)."""
    sw = load_sweep(path, out=tmp_path / "out")
    assert len(sw.points) > 1
