"""How fast is a big tensor-parallel run?  Target (issue 22): a 175B-class dense model given as a
user config.json, on 8 GPUs with tensor parallelism, a 2,048-token prefill and 256 decoded tokens,
simulated in under 10 s on 2 cores (LLMCompass reports 16 minutes for GPT-3 175B on 4 A100s).

The model is ``configs/deploy/gpt3_175b/config.json``: GPT-3 175B's shape (96 layers, d = 12,288,
96 heads, 4 x d MLP, a 50,257-token vocabulary: Brown et al. 2020, Table 2.1) written as a
Llama-architecture config.json (transformers' LlamaConfig; its gated MLP at 4 d / 3 x 2 keeps the
parameter count at about 175B), on ``gpu_h100_sxm.yaml`` with ``parallel: {tp: 8}``, and again as ``{tp: 4, pp: 2}`` (two pipeline
stages, 2 micro-batches of a batch of 2).  Each case is a whole ``sim run`` in a fresh
Python process (start-up, tracing on the meta device, costing, scheduling, the written files); the
first warms the trace cache, the second is timed.  Prints wall seconds and the ratio target /
measured (> 1 meets it); it never passes or fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "configs" / "targets" / "gpu_h100_sxm.yaml"
MODEL = ROOT / "configs" / "deploy" / "gpt3_175b" / "config.json"
WALL_S = 10.0


LAYOUTS = [({"tp": 8}, 1), ({"tp": 4, "pp": 2, "micro_batches": 2}, 2)]


def main() -> None:
    import yaml

    sys.path.insert(0, str(ROOT))
    from benchmarks.long_decode import _cpu

    print(f"GPT-3-175B-shaped config.json on {TARGET.name}, prompt 2048 + 256 tokens; {_cpu()}, {os.cpu_count()} CPUs")
    for par, batch in LAYOUTS:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            cfg = {"name": "tp-175b", "workload": {"model": str(MODEL), "batch": batch, "prompt": 2048,
                                                   "decode_tokens": 256, "dtype": "fp16"},
                   "hardware": {"file": str(TARGET)}, "parallel": par, "run": {"fidelity": "simpy"}}
            path = tmp / "run.yaml"
            path.write_text(yaml.safe_dump(cfg))
            sim = [sys.executable, "-m", "sim", "run", str(path), "--out", str(tmp / "out")]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            first = subprocess.run(sim, capture_output=True, text=True, env=env, check=False, cwd=ROOT)
            if first.returncode:
                raise SystemExit(f"sim run failed:\n{first.stdout[-2000:]}\n{first.stderr[-2000:]}")
            t = time.perf_counter()
            subprocess.run(sim, capture_output=True, text=True, env=env, check=True, cwd=ROOT)
            wall = time.perf_counter() - t
            s = json.loads((tmp / "out" / "summary.json").read_text())
        per_dev = s["memory"]["total"] / 1e9
        print(f"parallel {par}, batch {batch}: wall {wall:.2f} s (target {WALL_S:g} s, ratio {WALL_S / wall:.2f}x); "
              f"simulated: prefill {s['prefill']['latency_s'] * 1e3:.1f} ms, "
              f"{s['decode']['time_per_token_s'] * 1e3:.2f} ms per token, collectives "
              f"{s['parallel']['decode_step_s'] * 1e3:.2f} ms per step, {per_dev:.1f} GB per device")


if __name__ == "__main__":
    main()
