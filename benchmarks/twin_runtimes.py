"""The host's time per traced op of a decode step in the eager and the compiled runtime, measured on
a model's shallow twin (``sim.validate_e2e.measure_twin``: toy width, so the step is the framework's
time), and their ratio.  A measurement of the machine it runs on, not a property the tests assert:
on a loaded 2-core VM the two can come within a few per cent of each other.

    .venv/bin/python benchmarks/twin_runtimes.py [--model Llama-2-7B] [--layers 2] [--steps 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="Llama-2-7B")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--passes", type=int, default=3)
    a = ap.parse_args(argv)

    from sim import validate_e2e
    from workloads import zoo

    spec = zoo.get(a.model)
    rows = {rt: validate_e2e.measure_twin(spec, steps=a.steps, passes=a.passes, runtime=rt, layers=a.layers)
            for rt in ("eager", "compiled")}
    print("runtime,twin_layers,layer_ops,per_op_us,step_us")
    for rt, r in rows.items():
        print(f"{rt},{r['twin_layers']},{r['layer_ops']},{r['per_op_s'] * 1e6:.3f},{r['step_s'] * 1e6:.1f}")
    print(f"compiled/eager per op: {rows['compiled']['per_op_s'] / rows['eager']['per_op_s']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
