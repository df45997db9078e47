"""Chrome / Perfetto trace export for every timeline the engine makes.

A trace is a list of :class:`Span` (a named interval on a track of a process); :func:`write`
turns it into the Trace Event Format's complete events (``ph: X``, microseconds) with process and
thread names as metadata events, which chrome://tracing and ui.perfetto.dev open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Span:
    name: str
    start_s: float
    dur_s: float
    track: str  # a thread row: a resource (device, link, GPU 3) or a phase
    process: str = "run"
    cat: str = ""
    args: dict = field(default_factory=dict)


def events(spans: list[Span]) -> list[dict]:
    """Trace events: process and thread names (metadata), then one complete event per span."""
    pids: dict[str, int] = {}
    tids: dict[tuple[str, str], int] = {}
    meta, out = [], []
    for s in spans:
        if s.process not in pids:
            pids[s.process] = len(pids) + 1
            meta.append({"name": "process_name", "ph": "M", "pid": pids[s.process], "args": {"name": s.process}})
        pid = pids[s.process]
        key = (s.process, s.track)
        if key not in tids:
            tids[key] = len(tids) + 1
            meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tids[key], "args": {"name": s.track}})
        ev = {"name": s.name, "ph": "X", "pid": pid, "tid": tids[key], "ts": s.start_s * 1e6, "dur": s.dur_s * 1e6}
        if s.cat:
            ev["cat"] = s.cat
        if s.args:
            ev["args"] = s.args
        out.append(ev)
    return meta + out


def write(spans: list[Span], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"traceEvents": events(spans), "displayTimeUnit": "ms"}))
    return path


def run_spans(ops, summary: dict) -> list[Span]:
    """The spans of a run (:class:`sim.run.Result`'s ``ops`` and ``summary``).

    Prefill: every op on the device in program order at its critical-path time (the engine's
    per-op attribution; ops that take no time are left out).  Decode: one span per step at its
    simulated (or interpolated) cycles; and, on a track of its own, the decode ops laid back to
    back at their mean time per step, which is what one average step spends where."""
    freq = float(summary["freq_hz"])
    proc = f"{summary['model']} on {summary['target']}"
    spans: list[Span] = []

    def lay(rows, track: str, t0: float, scale: float = 1.0) -> float:
        t = t0
        for r in rows.itertuples(index=False):
            dur = float(r.time_s) * scale
            if dur > 0:
                spans.append(Span(str(r.op), t, dur, track, proc, str(r.role),
                                  {"layer": int(r.layer), "module": str(r.module), "bound": str(r.bound)}))
            t += dur
        return t

    lay(ops[ops.phase == "prefill"], "prefill: ops", 0.0)
    spans.append(Span("prefill", 0.0, summary["prefill"]["latency_s"], "phases", proc, "phase"))
    dec = summary.get("decode")
    if dec:
        start = summary["prefill"]["latency_s"]
        spans.append(Span("decode", start, dec["latency_s"], "phases", proc, "phase"))
        t = start
        prompt = int(summary["prefill"]["tokens"]) // max(1, int(summary["config"]["workload"].get("batch", 1)))
        for k, cyc in enumerate(dec["step_cycles"]):
            spans.append(Span(f"decode step {k}", t, cyc / freq, "decode: steps", proc, "step",
                              {"context": prompt + k}))
            t += cyc / freq
        steps = max(1, len(dec["step_cycles"]))
        lay(ops[ops.phase == "decode"], "decode: ops of a mean step", start, 1.0 / steps)
    return spans
