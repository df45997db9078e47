"""How fast is the spine?  Targets (issue: the simulation spine):

- the quickstart run (`sim run configs/quickstart.yaml`) takes under 5 s wall on this machine,
  start-up included;
- the SimPy engine handles at least 200,000 scheduled events per second.

The quickstart is timed as a whole `sim` process, twice on one trace cache: first on an empty
cache (the run traces Llama-2-7B, which imports torch and transformers) and then warm (the usual
case: traces are cached on disk).  The engine is timed on a synthetic stream of tiles.  Prints
ratios: target / measured for times, measured / target for rates (> 1 meets the target).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIM = str(Path(sys.executable).parent / "sim")


def quickstart(cache: str, out: str) -> float:
    t = time.perf_counter()
    subprocess.run([SIM, "run", str(ROOT / "configs" / "quickstart.yaml"), "--out", out], check=True,
                   capture_output=True, env={**os.environ, "MLHW_CACHE_DIR": cache})
    return time.perf_counter() - t


def engine_rate(n_ops: int = 2000, tiles: int = 20) -> tuple[int, float]:
    from sim.engine import simulate
    from sim.targets.base import Costs

    rng = np.random.default_rng(0)
    a = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    c = Costs(n_tiles=a(np.full(n_ops, tiles)), load_cycles=a(rng.integers(100, 2000, n_ops)),
              compute_cycles=a(rng.integers(100, 2000, n_ops)), store_cycles=a(rng.integers(0, 200, n_ops)),
              tile_bytes=a(np.full(n_ops, 1 << 17)), prefetch=rng.random(n_ops) < 0.8,
              dram_read_bytes=a(np.zeros(n_ops)), dram_write_bytes=a(np.zeros(n_ops)), macs=a(np.zeros(n_ops)),
              buffer_bytes=1 << 19)
    t = time.perf_counter()
    tl = simulate(c)
    return tl.events, time.perf_counter() - t


def main() -> None:
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        cold = quickstart(cache, out)
        warm = min(quickstart(cache, out) for _ in range(3))
    events, dt = engine_rate()
    rate = events / dt
    print(f"quickstart, empty trace cache   {cold:6.2f} s   target 5 s   ratio {5 / cold:.2f}x")
    print(f"quickstart, cached traces       {warm:6.2f} s   target 5 s   ratio {5 / warm:.2f}x")
    print(f"SimPy engine: {events:,} events in {dt:.2f} s = {rate:,.0f} events/s   target 200,000   "
          f"ratio {rate / 200_000:.2f}x")


if __name__ == "__main__":
    main()
