"""Design-space sweeps: `sim sweep SWEEP.yaml`.

A sweep file names a base run config and the axes to vary, by dotted config keys::

    name: baseline-decode
    base: ../quickstart.yaml          # relative to this file, or to configs/
    set:                              # applied to every point
      workload.prompt: 128
    mode: grid                        # grid | points | random
    axes:
      hardware.params.dram_bits_per_cycle: [128, 256, 512]
      buffers:                        # a named axis whose values set several keys together
        - {hardware.params.weight_buffer_bytes: 262144, hardware.params.act_buffer_bytes: 262144}
        - {hardware.params.weight_buffer_bytes: 524288, hardware.params.act_buffer_bytes: 524288}
    # mode: points  ->  points: [{key: value, ...}, ...]
    # mode: random  ->  samples: 100, seed: 0, and each axis a list to choose from or
    #                   {min: .., max: .., log: false, integer: true}
    fidelity: analytic                # default for sweeps
    out: results/sweeps/baseline-decode
    workers: 2                        # local worker processes (default: all cores)
    scheduler: tcp://host:8786        # optional: run on an existing Dask cluster instead
    batch_size: 16                    # points per task (default: sized to the sweep)

Every point is a full run, validated before any point runs: a bad sweep file or a point that fails
validation is one error line and nothing runs.  A point that fails at run time is stored with its
error and the sweep goes on.

The store is SQLite (``sweep.sqlite`` in the output folder), chosen over a Parquet dataset because
each completed batch is one transaction: a sweep killed at any moment (kill -9 included) leaves the
file consistent with every committed point, and the primary key (a hash of the point's resolved
config) makes a point impossible to store twice.  Only the coordinating process writes; workers
return results.  Restarting a sweep runs only the points without a result (missing, or stored with an error).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import signal
import sqlite3
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.errors import SimError
from sim.config import load_yaml, located, resolve_path, validated

METRICS = ["latency_s", "cycles", "energy_j", "energy_per_token_j", "tokens_per_s", "tokens_per_j",
           "average_power_w", "prefill_latency_s", "time_per_token_s", "mac_utilization", "dram_bytes"]


class RandomAxis(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    min: float
    max: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _order(self):
        if not self.max > self.min:
            raise ValueError("max must be greater than min")
        if self.log and self.min <= 0:
            raise ValueError("a log axis needs min > 0")
        return self


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    base: str
    set: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["grid", "points", "random"] = "grid"
    axes: dict[str, list[Any] | RandomAxis] = Field(default_factory=dict)
    points: list[dict[str, Any]] = Field(default_factory=list)
    samples: int | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    fidelity: Literal["simpy", "analytic"] = "analytic"
    out: str | None = None
    workers: int | None = Field(None, ge=0)
    scheduler: str | None = None
    batch_size: int | None = Field(None, gt=0)


@dataclass
class Point:
    idx: int
    params: dict[str, Any]  # the swept keys and their values
    config: dict  # the resolved config mapping
    key: str


@dataclass
class Sweep:
    path: Path
    spec: SweepFile
    base_path: Path
    points: list[Point]
    out: Path

    @property
    def name(self) -> str:
        return self.spec.name or self.path.stem


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def _set_dotted(d: dict, key: str, value) -> dict:
    parts = key.split(".")
    out = dict(d)
    cur = out
    for p in parts[:-1]:
        nxt = cur.get(p)
        nxt = dict(nxt) if isinstance(nxt, dict) else {}
        cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value
    return out


def _expand(assign: dict) -> dict:
    """An axis value that is a mapping of dotted keys sets them all (a named, linked axis)."""
    flat = {}
    for k, v in assign.items():
        if isinstance(v, dict) and v and all("." in str(kk) for kk in v):
            flat.update(v)
        else:
            flat[k] = v
    return flat


def point_key(config: dict, fidelity: str) -> str:
    """Hash of a point: its config with the target parameters and energy table it resolves to
    (so editing a target or energy file makes its points new), the fidelity and the version."""
    from sim import __version__

    blob = json.dumps({"config": config, "fidelity": fidelity, "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _assignments(sw: SweepFile, path: Path, lines: dict) -> list[dict]:
    def err(key: tuple, msg: str) -> SimError:
        return SimError(f"{located(path, key, lines)}: {msg}")

    if sw.mode == "points":
        if not sw.points:
            raise err(("points",), "mode 'points' needs a non-empty list of points")
        if sw.axes:
            raise err(("axes",), "mode 'points' takes `points`, not `axes`")
        return [dict(p) for p in sw.points]
    if not sw.axes:
        raise err(("axes",), f"mode {sw.mode!r} needs at least one axis")
    if sw.points:
        raise err(("points",), f"mode {sw.mode!r} takes `axes`, not `points`")
    for name, values in sw.axes.items():
        if isinstance(values, list) and not values:
            raise err(("axes", name), "empty axis")
        if isinstance(values, RandomAxis) and sw.mode == "grid":
            raise err(("axes", name), "a {min, max} axis needs mode 'random' (a grid needs a list of values)")
    if sw.mode == "grid":
        names = list(sw.axes)
        return [dict(zip(names, combo)) for combo in itertools.product(*(sw.axes[n] for n in names))]
    if not sw.samples:
        raise err(("samples",), "mode 'random' needs samples (a positive integer)")
    rng = np.random.default_rng(sw.seed)
    out = []
    for _ in range(sw.samples):
        a = {}
        for name, ax in sw.axes.items():
            if isinstance(ax, list):
                a[name] = ax[int(rng.integers(len(ax)))]
            else:
                u = rng.random()
                v = math.exp(math.log(ax.min) + u * (math.log(ax.max) - math.log(ax.min))) if ax.log \
                    else ax.min + u * (ax.max - ax.min)
                a[name] = int(round(v)) if ax.integer else float(v)
        out.append(a)
    return out


def load_sweep(path: str | Path, out: str | Path | None = None) -> Sweep:
    """Read, expand and validate a sweep: every point is prepared (checked) before any runs."""
    from sim.run import prepare

    path = Path(path)
    data, lines = load_yaml(path)
    sw = validated(SweepFile, data, path, lines)
    base_path = resolve_path(sw.base, path.parent)
    if not base_path.exists():
        raise SimError(f"{located(path, 'base', lines)}: no such file {sw.base!r}")
    base, _ = load_yaml(base_path)
    base = dict(base)
    for k, v in sw.set.items():
        base = _set_dotted(base, k, v)
    base = _set_dotted(base, "run.fidelity", sw.fidelity)
    points = []
    seen = set()
    cache: dict = {}
    for i, assign in enumerate(_assignments(sw, path, lines)):
        cfg = base
        for k, v in _expand(assign).items():
            cfg = _set_dotted(cfg, k, v)
        cfg = _set_dotted(cfg, "run.out", None)
        shown = ", ".join(f"{k}={v}" for k, v in _expand(assign).items())
        try:
            prep = _prepare_cached(prepare, cfg, base_path, cache)
        except SimError as e:
            msg = str(e)
            if msg.startswith(f"{base_path}: "):
                msg = msg[len(f"{base_path}: "):]
            raise SimError(f"{path}: point {i} ({shown}): {msg}") from None
        key = point_key({"config": cfg, "hardware": prep.hardware, "energy": prep.energy.model_dump()},
                        sw.fidelity)
        if key in seen:
            continue  # the same resolved config twice (e.g. random samples that coincide)
        seen.add(key)
        points.append(Point(i, _expand(assign), cfg, key))
    out_dir = Path(out or sw.out or Path("results") / "sweeps" / (sw.name or path.stem))
    return Sweep(path, sw, base_path, points, out_dir)


def _prepare_cached(prepare, cfg: dict, base_path: Path, cache: dict):
    """prepare() for validation, without re-reading the same target and energy files per point."""
    k = json.dumps(cfg, sort_keys=True, default=str)
    if k not in cache:  # memory is checked when the point runs: one that does not fit is a result
        cache[k] = prepare(cfg, base_path, check_memory=False)
    return cache[k]


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class Store:
    """SQLite store of a sweep's points (see the module docstring for why SQLite)."""

    SCHEMA = """CREATE TABLE IF NOT EXISTS points (
        key TEXT PRIMARY KEY, idx INTEGER NOT NULL, params TEXT NOT NULL, status TEXT NOT NULL,
        error TEXT, metrics TEXT, summary TEXT)"""

    #: the statuses that are a point's result (a design that runs, or one refused as infeasible: the
    #: same config is refused again); a point stored with any other (an error) is run again
    RESULTS = "('ok', 'infeasible')"

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(self.SCHEMA)
        self.db.commit()

    def done_keys(self) -> set[str]:
        """Points stored with a result (:attr:`RESULTS`)."""
        return {k for (k,) in self.db.execute(f"SELECT key FROM points WHERE status IN {self.RESULTS}")}

    def add(self, rows: list[tuple]) -> None:
        """One transaction per batch: all of it is stored, or none of it.  A new result replaces a
        stored error; a stored result (:attr:`RESULTS`) is never replaced."""
        with self.db:
            self.db.executemany(
                "INSERT INTO points VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "idx = excluded.idx, params = excluded.params, status = excluded.status, error = excluded.error, "
                f"metrics = excluded.metrics, summary = excluded.summary WHERE points.status NOT IN {self.RESULTS}", rows)

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM points").fetchone()[0]

    def close(self) -> None:
        self.db.close()


def load_results(out: str | Path):
    """The stored points of a sweep as a DataFrame: idx, key, status, error, params..., metrics..."""
    import pandas as pd

    path = Path(out) / "sweep.sqlite"
    if not path.exists():
        raise SimError(f"{out}: no sweep results here (no sweep.sqlite)")
    try:
        db = sqlite3.connect(str(path))
        try:
            rows = db.execute("SELECT key, idx, params, status, error, metrics FROM points ORDER BY idx").fetchall()
        finally:
            db.close()
    except sqlite3.Error as e:
        raise SimError(f"{path}: not a sweep store ({e})") from None
    if not rows:
        raise SimError(f"{path}: no points stored yet")
    recs = []
    for key, idx, params, status, error, metrics in rows:
        r = {"idx": idx, "key": key, "status": status, "error": error or ""}
        r.update({f"param:{k}": v for k, v in json.loads(params).items()})
        r.update(json.loads(metrics) if metrics else {})
        recs.append(r)
    df = pd.DataFrame.from_records(recs)
    for c in df.columns:  # an axis of numbers and words (cores: [1, 16, fit]) reads as words throughout
        if c.startswith("param:") and df[c].dtype == object:
            kinds = {type(v) for v in df[c] if v is not None}
            if len(kinds) > 1 and str in kinds:
                df[c] = df[c].map(lambda v: v if v is None else str(v))
    return df


# --------------------------------------------------------------------------------------------
# Running points (in worker processes: local or Dask)
# --------------------------------------------------------------------------------------------


def _metrics(s: dict) -> dict:
    return {
        "latency_s": s["latency_s"], "cycles": s["cycles"], "energy_j": s["energy_j"],
        "energy_per_token_j": s["energy_per_token_j"], "tokens_per_s": s["tokens_per_s"],
        "tokens_per_j": s["tokens_per_j"], "average_power_w": s["average_power_w"],
        "prefill_latency_s": s["prefill"]["latency_s"],
        "time_per_token_s": s["decode"]["time_per_token_s"] if "decode" in s else float("nan"),
        "mac_utilization": s["utilization"]["mac"],
        "dram_bytes": s["prefill"]["dram_bytes"] + (s["decode"]["dram_bytes"] if "decode" in s else 0),
    }


_TUNED = False


def _tune_malloc() -> None:
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc return
    memory to the OS on almost every free: this numpy/pandas-heavy work then runs ~30% slower
    (measured: benchmarks/sweep_speed.py).  Raise the threshold again in this process (glibc only;
    elsewhere nothing happens)."""
    global _TUNED
    if _TUNED:
        return
    _TUNED = True
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") is None:
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD = -1
    except (OSError, AttributeError):
        pass


def run_batch(items: list[tuple[str, dict, str]]) -> list[tuple[str, str, str, str, str]]:
    """Run points: (key, config, base path) -> (key, status, error, metrics JSON, summary JSON).

    A point that fails is returned with its error; the batch goes on.
    """
    from sim.memory import Infeasible
    from sim.run import execute, prepare

    _tune_malloc()

    out = []
    for key, cfg, base in items:
        try:
            r = execute(prepare(cfg, Path(base)))
            s = dict(r.summary)
            s.pop("config", None)
            out.append((key, "ok", "", json.dumps(_metrics(r.summary), sort_keys=True),
                        json.dumps(s, sort_keys=True, default=str)))
        except Infeasible as e:  # a design that cannot hold the workload: a result, with its reason
            out.append((key, "infeasible", str(e), "", ""))
        except Exception as e:  # recorded, not raised: one bad point must not stop a sweep
            out.append((key, "error", f"{type(e).__name__}: {e}", "", ""))
    return out


def _exit_with_parent(parent: int) -> None:
    """Initializer of a local worker: the worker ends when the sweep process that started it dies,
    even by kill -9 (which runs none of the parent's clean-up, so nothing else would stop a worker
    that is busy with, or blocked waiting for, a batch).

    On Linux the kernel sends the worker SIGKILL when its parent dies (PR_SET_PDEATHSIG).  That
    signal comes when the parent *thread* that started the worker ends; the pool's workers are
    started in ``submit`` by the thread that runs ``run_sweep``, which lives as long as the pool.
    Everywhere (and in case prctl is unavailable) a daemon thread also checks twice a second whether
    the worker was re-parented, i.e. its parent is gone.  Never raises: a failing initializer would
    break the pool."""
    try:
        if sys.platform.startswith("linux"):
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the death signal was armed
            os._exit(1)
        threading.Thread(target=_watch_parent, args=(parent,), name="sweep-parent-watch", daemon=True).start()
    except Exception:  # best effort: the worker still works without it
        pass


def _watch_parent(parent: int, interval_s: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(1)


class _LocalExecutor:
    """Worker processes on this machine; a pool whose worker died is replaced and its work resubmitted.
    The workers exit when this process dies (see ``_exit_with_parent``)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = self._new()

    def _new(self):
        import multiprocessing as mp

        return ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                   initializer=_exit_with_parent, initargs=(os.getpid(),))

    def slots(self) -> int:
        return self.workers

    def run(self, batches: list[list], on_done):
        """Run the batches; when the pool breaks (a worker died), the unfinished batches go to a
        new pool.  A batch that was running when workers died twice is split into single points,
        and a single point that dies twice is recorded as failed: the sweep goes on."""
        work = [list(b) for b in batches]
        deaths = [0] * len(work)
        pending = {self.pool.submit(run_batch, b): i for i, b in enumerate(work)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            failed = []
            for f in done:
                i = pending.pop(f)
                try:
                    on_done(f.result())
                except BrokenProcessPool:
                    failed.append(i)
            if not failed:
                continue
            failed += list(pending.values())  # a broken pool fails every unfinished batch
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new()
            pending = {}
            for i in failed:
                deaths[i] += 1
                if deaths[i] < 2:
                    pending[self.pool.submit(run_batch, work[i])] = i
                elif len(work[i]) == 1:
                    on_done([(work[i][0][0], "error", "worker process died running this point (twice)", "", "")])
                else:  # split: single points find the one that kills its worker
                    for item in work[i]:
                        work.append([item])
                        deaths.append(0)
                        pending[self.pool.submit(run_batch, [item])] = len(work) - 1

    def close(self):
        self.pool.shutdown(wait=True)


class _DaskExecutor:
    """An existing Dask distributed cluster: tasks of a dead worker are rescheduled by Dask (up to
    its allowed failures); a task Dask gives up on is recorded as failed points."""

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise SimError("--scheduler needs the 'distributed' package") from None
        try:
            self.client = Client(address, timeout="10s")
        except (OSError, ValueError, TypeError) as e:
            raise SimError(f"cannot reach the Dask scheduler at {address!r}: {e}") from None

    def slots(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def run(self, batches: list[list], on_done):
        from distributed import as_completed

        # retries: a task that fails outside run_batch (a lost connection, a worker gone while the
        # result was in flight) runs again; run_batch itself never raises
        futs = {self.client.submit(run_batch, b, pure=False, retries=2): (b, 0) for b in batches}
        done = as_completed(list(futs))
        for f in done:
            batch, resubmitted = futs.pop(f)
            try:
                on_done(f.result())
            except Exception as e:
                if resubmitted < 2:  # transient (a worker lost with the result in flight): again
                    g = self.client.submit(run_batch, batch, pure=False, retries=2)
                    futs[g] = (batch, resubmitted + 1)
                    done.add(g)
                else:  # e.g. KilledWorker: the scheduler gave up on this task's points
                    on_done([(item[0], "error", f"{type(e).__name__}: {e}", "", "") for item in batch])

    def close(self):
        self.client.close()


def _prewarm(points: list[Point]) -> None:
    """Trace each distinct workload once here, so workers read traces from the disk cache
    instead of all tracing the same model at once."""
    from workloads import api as wl

    seen = set()
    for p in points:
        w = p.config["workload"]
        lora = wl.LoraSpec.of(w.get("lora"))
        k = (w["model"], w.get("batch", 1), w["prompt"], w.get("dtype", "fp16"), bool(w.get("decode_tokens")), lora)
        if k in seen:
            continue
        seen.add(k)
        wl.trace(w["model"], "prefill", k[1], k[2], 0, k[3], lora=lora)
        if k[4]:
            wl.decode_template(w["model"], k[1], 1, k[3], lora=lora)


def run_sweep(sweep: Sweep, workers: int | None = None, scheduler: str | None = None,
              batch_size: int | None = None, progress=None, on_result=None) -> dict:
    """Run the points of ``sweep`` not yet in its store.  Returns counts."""
    try:
        store = Store(sweep.out / "sweep.sqlite")
        (sweep.out / "sweep.yaml").write_text(sweep.path.read_text())
    except (OSError, sqlite3.Error) as e:
        raise SimError(f"cannot write the sweep's results to {sweep.out}: {getattr(e, 'strerror', None) or e}") from None
    done = store.done_keys()
    todo = [p for p in sweep.points if p.key not in done]
    scheduler = scheduler or sweep.spec.scheduler
    workers = workers if workers is not None else sweep.spec.workers
    if workers is None:
        workers = os.cpu_count() or 1
    ex = None
    if todo and not (workers == 0 and not scheduler):
        ex = _DaskExecutor(scheduler) if scheduler else _LocalExecutor(workers)
    # batches: about four per worker, so scheduling costs little next to the work and the last
    # batches still spread over the workers
    slots = ex.slots() if ex else 1
    bs = batch_size or sweep.spec.batch_size or max(1, min(256, math.ceil(len(todo) / max(1, slots * 4))))
    batches = [[(p.key, p.config, str(sweep.base_path)) for p in todo[i:i + bs]] for i in range(0, len(todo), bs)]
    by_key = {p.key: p for p in sweep.points}
    counts = {"points": len(sweep.points), "already": len(sweep.points) - len(todo), "ok": 0, "error": 0,
              "infeasible": 0}
    if progress:
        progress(0, len(todo))
    t0 = time.perf_counter()

    def on_done(results):
        rows = []
        for key, status, error, metrics, summary in results:
            p = by_key[key]
            rows.append((key, p.idx, json.dumps(p.params, sort_keys=True, default=str), status, error,
                         metrics, summary))
            counts[status] += 1
        store.add(rows)
        if progress:
            progress(counts["ok"] + counts["error"] + counts["infeasible"], len(todo))
        if on_result:
            on_result(results)

    try:
        if todo:
            _prewarm(todo)
            if ex is None:
                for b in batches:  # in this process (debugging, tests)
                    on_done(run_batch(b))
            else:
                ex.run(batches, on_done)
    finally:
        if ex is not None:
            ex.close()
        store.close()
    counts["wall_s"] = time.perf_counter() - t0
    counts["batch_size"] = bs
    return counts
