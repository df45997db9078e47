"""Sweeps: expansion, validation before any run, the store, resume after kill -9, Dask."""

import json
import os
from html.parser import HTMLParser
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
from sim.sweep_report import (_eng, _num, _param_groups, _sensitivity_figure, _short_names, pareto_front,
                              write_sweep_report)

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


@pytest.mark.slow
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


def _start_60_point_sweep(tmp_path, base, out, workers: int):
    """`sim sweep` of 60 points, one per batch, in its own session: (the file, the process, its store)."""
    axes = {"hardware.params.dram_bits_per_cycle": [64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536],
            "hardware.params.pe_rows": [8, 16, 32, 64, 128, 256]}
    p = sweep_file(tmp_path, base, axes=axes)
    cmd = [SIM, "sweep", str(p), "--out", str(out), "--workers", str(workers), "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return p, proc, out / "sweep.sqlite"


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path, base):
    """Kill the sweeping process group mid-run, start again: every point once, same results."""
    out = tmp_path / "killed"
    p, proc, db = _start_60_point_sweep(tmp_path, base, out, workers=1)
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
    r = subprocess.run(proc.args, capture_output=True, text=True, timeout=300)  # the same command again
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


@pytest.mark.slow
def test_dask_cluster_runs_a_sweep(tmp_path, base, cluster):
    c, _ = cluster
    p = sweep_file(tmp_path, base)
    counts = run_sweep(load_sweep(p, tmp_path / "dask"), scheduler=c.scheduler_address, batch_size=1)
    assert counts["ok"] == 6
    run_sweep(load_sweep(p, tmp_path / "local"), workers=0)
    a = load_results(tmp_path / "dask").set_index("key").sort_index()
    b = load_results(tmp_path / "local").set_index("key").sort_index()
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
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


@pytest.mark.slow
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


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (scanning /proc: works without CONFIG_PROC_CHILDREN)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by whoever adopted it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_local_workers_exit_when_the_sweep_is_killed(tmp_path, base):
    """kill -9 of `sim sweep --workers 2` must not leave its worker processes running."""
    _, proc, db = _start_60_point_sweep(tmp_path, base, tmp_path / "o", workers=2)
    workers: list[int] = []
    try:
        deadline = time.time() + 60
        n = 0
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    n = len(_keys(db))
                except sqlite3.OperationalError:
                    n = 0
            workers = [c for c in _children(proc.pid)
                       if "spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]
            if n >= 2 and len(workers) == 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None and len(workers) == 2 and n < 60, (proc.returncode, workers, n)
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, not its process group
        proc.wait()
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.05)
        left = [w for w in workers if _alive(w)]
        assert not left, f"worker processes {left} still running 5 s after their sweep was killed"
    finally:
        for pid in [proc.pid, *workers]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        proc.wait()


class _Tables(HTMLParser):
    """The tables of a report page by the heading (h2/h3) above them: rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.heading, self.text, self.row, self.cell = "", None, None, None

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "h3"):
            self.text = ""
        elif tag == "table":
            self.tables[self.heading] = []
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("h2", "h3"):
            self.heading, self.text = self.text.strip(), None
        elif tag == "tr":
            self.tables[self.heading].append(self.row)
        elif tag in ("td", "th"):
            self.row.append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.text is not None:
            self.text += data
        if self.cell is not None:
            self.cell += data


def test_best_design_table_is_one_compact_row_per_objective(tmp_path, base):
    """One row per objective, every cell filled (no NaN), parameters by short name, a named axis that
    sets two keys as one column, the objectives' metrics of that point with units."""
    buffers = [{"hardware.params.weight_buffer_bytes": b, "hardware.params.act_buffer_bytes": b}
               for b in (262144, 524288)]
    p = sweep_file(tmp_path, base, axes={"hardware.params.dram_bits_per_cycle": [128, 512], "buffers": buffers,
                                         "workload.batch": [1, 4]})
    run_sweep(load_sweep(p, tmp_path / "o"), workers=0)
    page = write_sweep_report(tmp_path / "o").read_text()
    parser = _Tables()
    parser.feed(page)
    header, *rows = parser.tables["Best design per objective"]
    assert header == ["objective", "best", "point", "dram_bits_per_cycle", "weight_buffer_bytes / act_buffer_bytes",
                      "workload.batch", "latency", "energy", "tokens/J", "tokens/s"]
    assert [r[0] for r in rows] == ["lowest latency", "lowest energy", "most tokens per joule (tokens/s per W)",
                                    "most tokens per second"]
    assert all(len(r) == len(header) for r in rows)
    cells = [c for r in rows for c in r]
    assert all(c.strip() for c in cells) and not [c for c in cells if "nan" in c.lower()], rows
    df = load_results(tmp_path / "o")
    best = df.loc[df.latency_s.idxmin()]
    lat = rows[0]
    assert lat[2] == str(best.idx) and lat[1] == lat[6] == _eng(best.latency_s, "s")
    assert lat[3] == str(best["param:hardware.params.dram_bits_per_cycle"])
    assert lat[4] == f"{best['param:hardware.params.weight_buffer_bytes']:,}"  # the two keys are equal: one value
    assert rows[3][1] == f"{_num(df.tokens_per_s.max())} tokens/s"
    section = page[page.index("Best design per objective"):]
    assert "NaN" not in section[:section.index("</table>")]
    # the Pareto table is as compact: no NaN, the same columns for the parameters
    front_header, *front = parser.tables["Pareto-optimal designs"]
    assert front_header[1:4] == header[3:6] and front
    assert not [c for r in front for c in r if "nan" in c.lower() or not c.strip()]


def test_number_formatting():
    assert _eng(1.135e-4, "s") == "113.5 µs" and _eng(46.72, "J") == "46.72 J" and _eng(0.99996, "s") == "1 s"
    assert _num(8e8) == "8e8" and _num(262144) == "262,144" and _num(1024) == "1024" and _num(0.25) == "0.25"
    assert _num(17318.4) == "17,318" and _num(True) == "true" and _num(float("nan")) == "base"


def test_sensitivity_plots_are_readable_at_page_width():
    """A five-axis sweep (one of them linked, one with long names): three panels a row, labels at a
    readable size when the image is shown 1100 px wide, no two labels overlapping."""
    import itertools

    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = itertools.product([1, 16, 64, 256, 1024], [6e7, 2e8, 3e8], [4, 16, 64], [False, True],
                             ["OPT-1.3B", "Llama-2-7B", "Phi-3-mini-4k-instruct"])
    rng = np.random.default_rng(0)
    ok = pd.DataFrame([{"idx": i, "param:hardware.params.cores": c, "param:hardware.params.freq_hz": f,
                        "param:hardware.params.ternary_lanes": ln, "param:hardware.params.row_lanes": ln,
                        "param:hardware.params.weights_on_chip": w, "param:workload.model": m,
                        "latency_s": rng.uniform(1e-4, 10), "energy_j": rng.uniform(0.05, 0.06),
                        "tokens_per_j": rng.uniform(1.847, 1.851)} for i, (c, f, ln, w, m) in enumerate(grid)])
    params = [c for c in ok.columns if c.startswith("param:")]
    groups = _param_groups(ok, params)
    assert ["param:hardware.params.ternary_lanes", "param:hardware.params.row_lanes"] in groups
    fig = _sensitivity_figure(ok, groups, _short_names(params))
    if os.environ.get("SWEEP_FIGURE"):  # to look at it
        fig.savefig(os.environ["SWEEP_FIGURE"], dpi=110, bbox_inches="tight")
    try:
        assert len(fig.axes) == 3 * len(groups) == 15
        dpi = 110  # sim.report._png
        scale = min(1.0, 1100 / (fig.get_figwidth() * dpi))
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        def drawn(ax):  # the tick labels inside the view, the axis labels and the title
            (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
            xs = [t for v, t in zip(ax.get_xticks(), ax.get_xticklabels()) if x0 <= v <= x1]
            ys = [t for v, t in zip(ax.get_yticks(), ax.get_yticklabels()) if y0 <= v <= y1]
            return [t for t in [*xs, *ys, ax.xaxis.label, ax.yaxis.label, ax.title] if t.get_visible() and t.get_text()]

        texts = [t for ax in fig.axes for t in drawn(ax)]
        smallest = min(t.get_fontsize() for t in texts) * dpi / 72 * scale
        assert smallest >= 11, f"labels {smallest:.1f} px high at page width"
        boxes = [t.get_window_extent(renderer).expanded(0.98, 0.98) for t in texts]
        clashes = [(texts[i].get_text(), texts[j].get_text()) for i in range(len(boxes))
                   for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
        assert not clashes, clashes[:5]
        # tick labels distinguish their ticks (no "1.85, 1.85, 1.85")
        for ax in fig.axes:
            shown = [t.get_text() for t in drawn(ax) if t in ax.get_yticklabels()]
            assert len(shown) == len(set(shown)), shown
    finally:
        plt.close(fig)


def test_a_group_shows_one_value_only_where_every_row_agrees():
    """Grouped axes (set together in a sweep file) show one value where all of them are equal in
    every row (two buffers of one size); where some rows differ, every row shows them all, so a
    point with tp = pp = micro_batches = 2 reads "2 / 2 / 2", never "2" beside "2 / base / base"."""
    import pandas as pd

    from sim.sweep_report import _collapsible, _group_value

    bufs = pd.DataFrame({"param:a": [1, 2], "param:b": [1, 2]})
    lay = pd.DataFrame({"param:tp": [2, 2], "param:pp": [2, "base"], "param:mb": [2, "base"]})
    g1, g2 = ["param:a", "param:b"], ["param:tp", "param:pp", "param:mb"]
    assert _collapsible(bufs, g1) and [_group_value(r, g1, True) for _, r in bufs.iterrows()] == ["1", "2"]
    assert not _collapsible(lay, g2)
    assert [_group_value(r, g2, _collapsible(lay, g2)) for _, r in lay.iterrows()] == ["2 / 2 / 2", "2 / base / base"]


def test_the_store_keeps_results_and_infeasible_points_and_reruns_errors(tmp_path):
    """Restarting runs what has no result: an error is run again and replaced; a stored result or
    infeasible point (the same config is refused again) is neither rerun nor replaced."""
    from sim.sweep import Store

    st = Store(tmp_path / "sweep.sqlite")
    st.add([("a", 0, "{}", "ok", "", "{}", "{}"), ("b", 1, "{}", "infeasible", "does not fit", "", ""),
            ("c", 2, "{}", "error", "boom", "", "")])
    assert st.done_keys() == {"a", "b"}
    st.add([("a", 0, "{}", "error", "late", "", ""), ("b", 1, "{}", "ok", "", "{}", "{}"),
            ("c", 2, "{}", "ok", "", "{}", "{}")])
    rows = dict(st.db.execute("SELECT key, status FROM points").fetchall())
    assert rows == {"a": "ok", "b": "infeasible", "c": "ok"} and st.done_keys() == {"a", "b", "c"}
    st.close()
