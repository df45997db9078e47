"""Events per second of the detailed vs the fast (Lamarr) simulation on this machine.

    .venv/bin/python benchmarks/lamarr_speed.py [--events 2000] [--threads 1,2] [--dtype fp32|bf16|both]

Both simulations run on the same generated events; the generator's time is not counted (it is
shared).  "Detector step": the detailed simulation (propagation, hits, fit, RICH, muon, global PID)
against the whole fast pipeline (every stage of models/lamarr/nets.py with its feature building,
sampling and quantile map).  Each is timed after a warm-up (numba compilation, torch's first calls).
Prints events/s, microseconds per particle and the ratio (Lamarr's claim: two orders of magnitude),
for the networks in fp32 and in bf16 (every layer, on inputs standardized in fp32 --
tests/sim/test_lamarr.py bounds what bf16 changes per network).

Timing on a shared VM: the two sides are timed over the same stretches of time.  Each of
``--repeats`` rounds runs the detailed simulation once (about 15 s for 2,000 events), then each fast
configuration repeatedly for the same total time split between them, and takes the ratio of the
detailed time to the fast configuration's mean time in that round; the figures printed are the
median over the rounds and the range.  (Best-of-n of a 0.15 s fast run against best-of-n of a 15 s
detailed run would let the fast side pick the machine's quiet moments: on this 2-core VM the
runs spread by +-20%.)

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
    ap.add_argument("--repeats", type=int, default=3, help="rounds (each: one detailed run, then the fast ones)")
    ap.add_argument("--dtype", default="both", choices=("fp32", "bf16", "both"),
                    help="the fast simulation's arithmetic (default: both)")
    a = ap.parse_args(argv)
    import numpy as np
    import torch

    from models.lamarr import detector, fastsim, generator

    threads = [int(t) for t in str(a.threads).split(",")]
    truth = generator.generate(a.events, seed=a.seed)
    pipe = fastsim.load()
    dtypes = ("fp32", "bf16") if a.dtype == "both" else (a.dtype,)
    detector.simulate(truth.iloc[:200], seed=a.seed + 1)  # numba compilation
    configs = [(nt, d) for nt in threads for d in dtypes]
    for nt, d in configs:  # warm at every thread count
        torch.set_num_threads(nt)
        fastsim.simulate(truth.iloc[:2000], seed=a.seed + 2, pipeline=pipe, dtype=d)
    n = len(truth)
    t_det, t_fast = [], {c: [] for c in configs}
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        detector.simulate(truth, seed=a.seed + 1)
        t_det.append(time.perf_counter() - t0)
        budget = t_det[-1] / len(configs)  # the fast configurations share the same stretch of time
        for c in configs:
            torch.set_num_threads(c[0])
            runs, t0 = 0, time.perf_counter()
            while runs == 0 or time.perf_counter() - t0 < budget:
                fastsim.simulate(truth, seed=a.seed + 2, pipeline=pipe, dtype=c[1])
                runs += 1
            t_fast[c].append((time.perf_counter() - t0) / runs)
    td = float(np.median(t_det))
    print(f"{a.events} events, {n} particles ({n / a.events:.1f} per event); median of {a.repeats} rounds")
    print(f"detailed (1 core)   : {a.events / td:10.1f} events/s  {1e6 * td / n:9.2f} us/particle")
    for c in configs:
        tf = np.array(t_fast[c])
        ratio = np.array(t_det) / tf
        print(f"fast ({c[1]}, {c[0]} thr.) : {a.events / np.median(tf):10.1f} events/s  {1e6 * np.median(tf) / n:9.2f} "
              f"us/particle  -> {np.median(ratio):.0f}x (rounds {ratio.min():.0f}-{ratio.max():.0f}x; Lamarr: ~100x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
