"""How fast is tracing?  Targets (issue: foundation and workload traces):

- tracing Llama-2-70B prefill at 2048 tokens takes under 5 s on this machine;
- a cached repeat takes under 0.5 s.

Each measurement runs in a fresh Python process on an empty trace cache, and is reported two
ways: the trace call alone (imports already done) and the process's whole wall time (interpreter
start, imports of torch/transformers/pandas, the call).  Prints ratios: target / measured (> 1
meets the target).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

MODEL, PHASE, BATCH, SEQ = "Llama-2-70B", "prefill", 1, 2048
TRACE_TARGET_S, CACHED_TARGET_S = 5.0, 0.5

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from workloads import trace
if sys.argv[1] == "cold":
    import torch, transformers  # what a cache miss needs; imported before the clock for the call
t1 = time.perf_counter()
df = trace(%r, %r, %d, %d)
t2 = time.perf_counter()
df = trace(%r, %r, %d, %d)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "call_s": t2 - t1, "repeat_in_process_s": t3 - t2, "ops": len(df)}))
""" % (MODEL, PHASE, BATCH, SEQ, MODEL, PHASE, BATCH, SEQ)


def child(mode: str, cache: str) -> dict:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, "MLHW_CACHE_DIR": cache})
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t
    return res


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold = child("cold", cache)
        warm = child("cached", cache)
    print(f"{MODEL} {PHASE} batch {BATCH} seq {SEQ}: {cold['ops']} ops")
    print(f"  uncached trace call      {cold['call_s']:7.3f} s   target {TRACE_TARGET_S} s   "
          f"ratio {TRACE_TARGET_S / cold['call_s']:.2f}x")
    print(f"  uncached, whole process  {cold['wall_s']:7.3f} s   (imports {cold['import_s']:.2f} s)   "
          f"ratio {TRACE_TARGET_S / cold['wall_s']:.2f}x")
    print(f"  cached call, new process {warm['call_s']:7.3f} s   target {CACHED_TARGET_S} s   "
          f"ratio {CACHED_TARGET_S / warm['call_s']:.2f}x")
    print(f"  cached, whole process    {warm['wall_s']:7.3f} s   (imports {warm['import_s']:.2f} s)   "
          f"ratio {CACHED_TARGET_S / warm['wall_s']:.2f}x")
    print(f"  cached call, same process{warm['repeat_in_process_s']:7.3f} s   "
          f"ratio {CACHED_TARGET_S / warm['repeat_in_process_s']:.2f}x")


if __name__ == "__main__":
    main()
