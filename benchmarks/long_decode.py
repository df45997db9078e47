"""How far does a generation scale?  Target (issue: decode at scale):

- a 32k-token generation of a 7B model on the H100 target (``configs/targets/gpu_h100_sxm.yaml``)
  after a 1,024-token prompt runs in under 10 s wall and under 2 GB of RAM (the process's peak RSS).

The model is Qwen2-7B (131,072 positions: the only 7B-8B zoo model that holds 33k; Llama-3-8B has
8,192, Llama-2-7B 4,096).  Each case is a whole ``sim run`` (as the plain study runs it: :func:`sim.run.run`,
then :func:`sim.report.write` and the printed summary) in a fresh Python process (start-up, tracing
from the on-disk cache, costing, scheduling, energy and the written ops.parquet, summary.json and
report.html included): the parent times it, the child reports its own peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``; on Linux that includes the RSS of the parent at the
fork, which is small here, so the address space's own peak, ``VmHWM``, is printed beside it).  The
first case warms the trace cache.

Prints wall seconds, peak MB and the ratios target / measured (> 1 meets the target); it never
passes or fails.  ``--tokens 512 3000 32768`` runs several lengths; ``--model`` another model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "configs" / "targets" / "gpu_h100_sxm.yaml"
WALL_S, RSS_MB = 10.0, 2000.0


def _child(config: str, out: str) -> None:
    """What ``sim run config --out out`` does for a plain run (run, write the three files, print the
    summary), in this process; then print its peak RSS and the decode figures."""
    from rich.console import Console

    from sim.report import print_summary, write
    from sim.run import run

    r = run(config)
    write(r, out)
    with open(os.devnull, "w") as null:
        print_summary(r.summary, Console(file=null))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    try:  # the address space's own peak: getrusage's also counts the parent's RSS at the fork (small here)
        status = Path("/proc/self/status").read_text()
        hwm_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        hwm_mb = None
    s = json.loads((Path(out) / "summary.json").read_text())
    print("RESULT " + json.dumps({"rss_mb": rss_mb, "hwm_mb": hwm_mb, "decode_s": s["decode"]["latency_s"],
                                  "steps": len(s["decode"]["step_cycles"]),
                                  "sampled": len(r.decode["sampled_steps"]),
                                  "checked_error": r.decode["checked_error"]}))


def _case(model: str, prompt: int, tokens: int, tmp: Path) -> dict:
    import yaml

    cfg = {"name": f"long-decode-{model}-{tokens}",
           "workload": {"model": model, "batch": 1, "prompt": prompt, "decode_tokens": tokens, "dtype": "fp16"},
           "hardware": {"file": str(TARGET)}, "run": {"fidelity": "simpy"}}
    path = tmp / f"{model}-{tokens}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, "--child", str(path), str(tmp / f"out-{tokens}")],
                       capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)
    wall = time.perf_counter() - t
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not lines:
        raise SystemExit(f"sim run failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return {"wall_s": wall, **json.loads(lines[-1][len("RESULT "):])}


def _cpu() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="Qwen2-7B")
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--tokens", type=int, nargs="+", default=[32768])
    args = ap.parse_args()
    print(f"{args.model}, {args.prompt}-token prompt, on {TARGET.name}; {_cpu()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        _case(args.model, args.prompt, 2, Path(tmp))  # warms the trace cache (prefill and decode traces)
        for n in args.tokens:
            r = _case(args.model, args.prompt, n, Path(tmp))
            hwm = f" [VmHWM {r['hwm_mb']:.0f} MB]" if r.get("hwm_mb") else ""
            sampled = f", {r['sampled']} steps simulated (largest checked error {r['checked_error']:.2%})"
            print(f"{n:>6} tokens: wall {r['wall_s']:6.2f} s (target {WALL_S:g} s, ratio {WALL_S / r['wall_s']:.2f}x)"
                  f"   peak RSS {r['rss_mb']:5.0f} MB (target {RSS_MB:g} MB, ratio {RSS_MB / r['rss_mb']:.2f}x)"
                  f"{hwm}   simulated decode {r['decode_s']:.4g} s{sampled}")


if __name__ == "__main__":
    main()
