"""Events per second of the detailed vs the fast (Lamarr) simulation on this machine.

    .venv/bin/python benchmarks/lamarr_speed.py [--events 2000] [--threads 1,2] [--dtype fp32|bf16|both]

Both simulations run on the same generated events; the generator's time is not counted (it is
shared).  "Detector step": the detailed simulation (propagation, hits, fit, RICH, muon, global PID)
against the whole fast pipeline (every stage of models/lamarr/nets.py with its feature building,
sampling and quantile map).  Each is timed after a warm-up (numba compilation, torch's first calls), best of
``--repeats``.  Prints events/s, microseconds per particle and the ratio (Lamarr's claim: two
orders of magnitude), for the networks in fp32 and in bf16 (every layer, on inputs standardized
in fp32 -- tests/sim/test_lamarr.py bounds what bf16 changes per network).  Run it on an
otherwise idle machine: on 2 cores any other load distorts both figures.

The detailed simulation runs on one core (numba, particle after particle); the fast one with each
``--threads`` count: the 1-thread ratio is the like-for-like (per-core) one, the 2-thread ratio
what this machine gives when the networks use both cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", default="1,2", help="torch thread counts for the fast simulation (default 1,2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="both", choices=("fp32", "bf16", "both"),
                    help="the fast simulation's arithmetic (default: both)")
    a = ap.parse_args(argv)
    import torch

    from models.lamarr import detector, fastsim, generator

    threads = [int(t) for t in str(a.threads).split(",")]
    truth = generator.generate(a.events, seed=a.seed)
    pipe = fastsim.load()
    dtypes = ("fp32", "bf16") if a.dtype == "both" else (a.dtype,)
    detector.simulate(truth.iloc[:200], seed=a.seed + 1)
    for d in dtypes:
        fastsim.simulate(truth.iloc[:2000], seed=a.seed + 2, pipeline=pipe, dtype=d)

    def best(f):
        ts = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    t_det = best(lambda: detector.simulate(truth, seed=a.seed + 1))
    n = len(truth)
    print(f"{a.events} events, {n} particles ({n / a.events:.1f} per event)")
    print(f"detailed (1 core)   : {a.events / t_det:10.1f} events/s  {1e6 * t_det / n:9.2f} us/particle")
    for nt in threads:
        torch.set_num_threads(nt)
        for d in dtypes:
            fastsim.simulate(truth.iloc[:2000], seed=a.seed + 2, pipeline=pipe, dtype=d)  # warm at this count
            t_fast = best(lambda: fastsim.simulate(truth, seed=a.seed + 2, pipeline=pipe, dtype=d))
            print(f"fast ({d}, {nt} thr.) : {a.events / t_fast:10.1f} events/s  {1e6 * t_fast / n:9.2f} us/particle"
                  f"  -> {t_det / t_fast:.0f}x  (Lamarr: ~100x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
