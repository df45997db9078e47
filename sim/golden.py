"""Golden numbers: every reproduction's ``paper_vs_sim.csv`` and the quickstart's ``summary.json``,
as committed under ``results/golden/<system>/`` and compared by ``tests/test_golden.py``.

``make golden`` (``python -m sim.golden``) reruns every ``configs/*/reproduce.yaml`` and the
quickstart through ``sim run`` and rewrites the golden files; a commit that moves a number carries
that diff and says why.  Measured-live figures (Lamarr's speed ratio, timed on this machine) are
stored but compared only for presence and sign: they are measurements, not model outputs.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "results" / "golden"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"

# metrics timed live on the machine that runs the reproduction (not model outputs)
LIVE = {"lamarr": {"speedup_detector_step"}}
# relative tolerance of a golden comparison: the model's arithmetic is deterministic (1e-9 leaves
# room for summation order across numpy builds); Lamarr's figures come from the fast simulation's
# bf16 networks, whose last bits depend on the CPU's matmul kernels (AMX vs AVX-512), hence wider
RTOL = {"default": 1e-9, "lamarr": 2e-2}
# the quickstart summary keys that are identity or provenance, not numbers
_SKIP = {"config", "version", "energy_table", "name", "model", "target", "fidelity"}


def systems() -> dict[str, Path]:
    """Every reproduction (the folder name under configs/) and the quickstart."""
    found = {p.parent.name: p for p in sorted((ROOT / "configs").glob("*/reproduce.yaml"))}
    return {"quickstart": QUICKSTART, **found}


def produce(system: str, out: Path) -> dict[str, Path]:
    """Run one system through ``sim run`` into ``out``; the files its golden copy holds."""
    from sim.cli import main

    cfg = systems()[system]
    rc = main(["run", str(cfg), "--out", str(out)])
    if rc != 0:
        raise RuntimeError(f"sim run {cfg} exited {rc}")
    name = "summary.json" if system == "quickstart" else "paper_vs_sim.csv"
    files = {name: out / name}
    if system == "lamarr":  # the validation's headline figures beside the paper row
        files["summary.json"] = out / "summary.json"
    return files


def _leaves(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            if prefix == "" and k in _SKIP:
                continue
            yield from _leaves(v, f"{prefix}{k}.")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _leaves(v, f"{prefix}{i}.")
    else:
        yield prefix.rstrip("."), d


def _close(a, b, rtol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=rtol, abs_tol=rtol * 1e-6)
    return a == b


def compare(system: str, name: str, got: Path, golden: Path) -> list[str]:
    """Differences between a fresh output file and its golden copy (empty: equal)."""
    rtol = RTOL.get(system, RTOL["default"])
    live = LIVE.get(system, set())
    diffs = []
    if name.endswith(".json"):
        a = dict(_leaves(json.loads(got.read_text())))
        b = dict(_leaves(json.loads(golden.read_text())))
        for k in live:  # measured live, not model outputs
            a.pop(k, None), b.pop(k, None)
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                diffs.append(f"{name}: {k} only in {'golden' if k in b else 'output'}")
            elif not _close(a[k], b[k], rtol):
                diffs.append(f"{name}: {k} = {a[k]!r}, golden {b[k]!r}")
        return diffs
    a = pd.read_csv(got)
    b = pd.read_csv(golden)
    if list(a.columns) != list(b.columns):
        return [f"{name}: columns {list(a.columns)}, golden {list(b.columns)}"]
    if list(a.metric) != list(b.metric):
        return [f"{name}: metrics {list(a.metric)}, golden {list(b.metric)}"]
    for (_, ra), (_, rb) in zip(a.iterrows(), b.iterrows()):
        m = ra.metric
        if m in live:
            if not (ra.simulated > 0):
                diffs.append(f"{name}: {m} (measured live) = {ra.simulated!r}, expected > 0")
            continue
        for col in ("paper", "simulated", "rel_error"):
            if not _close(float(ra[col]), float(rb[col]), rtol):
                diffs.append(f"{name}: {m}.{col} = {ra[col]!r}, golden {rb[col]!r}")
        if ra.source != rb.source:
            diffs.append(f"{name}: {m}.source changed")
    return diffs


def regenerate(names: list[str] | None = None) -> None:
    for system in names or list(systems()):
        with tempfile.TemporaryDirectory() as tmp:
            files = produce(system, Path(tmp))
            dest = GOLDEN / system
            dest.mkdir(parents=True, exist_ok=True)
            for name, path in files.items():
                old = dest / name
                if old.exists() and not compare(system, name, path, old):
                    # equal but for what is measured live (a timing): keep the file, so that a
                    # regeneration moves no number by the machine's mood
                    print(f"unchanged {old}")
                    continue
                shutil.copyfile(path, old)
                print(f"wrote {old}")


if __name__ == "__main__":
    regenerate(sys.argv[1:] or None)
