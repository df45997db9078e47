"""Helpers shared by the tests: `sim` in this process, and the trace format's checker."""

import contextlib
import io
from types import SimpleNamespace

from sim.cli import main


def sim(*args):
    """`sim ARGS` in this process (the console script is `main` plus sys.exit): status and output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def check_trace_event_format(events: list[dict]) -> None:
    """What Perfetto's and chrome://tracing's JSON importers need: named processes and threads,
    complete events with numeric ts/dur >= 0, and on each thread spans that nest or are disjoint."""
    meta = [e for e in events if e["ph"] == "M"]
    spans = [e for e in events if e["ph"] == "X"]
    assert spans and meta
    named = {(e["pid"], e.get("tid")) for e in meta}
    for e in spans:
        assert isinstance(e["name"], str) and isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert e["ts"] >= 0 and e["dur"] >= 0
        assert (e["pid"], None) in named and (e["pid"], e["tid"]) in named
    by = {}
    for e in spans:
        by.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for iv in by.values():
        iv.sort()
        stack = []
        for a, b in iv:
            while stack and stack[-1] <= a + 1e-6:
                stack.pop()
            assert not stack or b <= stack[-1] + 1e-6, "a span overlaps another partially"
            stack.append(b)
