"""How fast are sweeps?  Targets (issue: energy/latency sweeps):

- at least 2,000 analytic-fidelity design points per minute per core on the baseline accelerator,
  with a cached trace;
- the Dask executor within 1.5x of the local executor's wall time on the same sweep.

The rate is measured in this process (one core, `workers=0`) after a warm-up point, over a
random sweep of the baseline's parameters on Llama-2-7B (256-token prompt, 20 decode tokens).
The executors are compared on the same sweep with two workers each: local worker processes vs a
Dask LocalCluster of two worker processes on loopback (cluster start-up not counted; worker
start-up counted for both).  Prints ratios (> 1 meets the target).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_sweep(folder: Path, samples: int, seed: int) -> Path:
    d = {"name": "bench", "base": str(ROOT / "configs" / "quickstart.yaml"), "mode": "random",
         "samples": samples, "seed": seed, "fidelity": "analytic",
         "axes": {"hardware.params.pe_rows": [16, 32, 64, 128],
                  "hardware.params.pe_cols": [8, 12, 16, 24],
                  "hardware.params.weight_buffer_bytes": {"min": 131072, "max": 4194304, "log": True, "integer": True},
                  "hardware.params.act_buffer_bytes": {"min": 131072, "max": 4194304, "log": True, "integer": True},
                  "hardware.params.dram_bits_per_cycle": [64, 128, 256, 512, 1024]}}
    p = folder / f"sweep{seed}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def main() -> None:
    from sim.sweep import load_sweep, run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_sweep(load_sweep(make_sweep(tmp, 2, 99), tmp / "warm"), workers=0)  # traces cached, warm caches
        sw = load_sweep(make_sweep(tmp, 600, 1), tmp / "serial")
        c = run_sweep(sw, workers=0)
        rate = c["ok"] / c["wall_s"] * 60
        print(f"analytic points, one core: {c['ok']} in {c['wall_s']:.2f} s = {rate:,.0f} points/min   "
              f"target 2,000   ratio {rate / 2000:.2f}x")

        from distributed import LocalCluster

        sw = make_sweep(tmp, 2000, 2)
        local = run_sweep(load_sweep(sw, tmp / "local"), workers=2)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=":0") as cluster:
            dask = run_sweep(load_sweep(sw, tmp / "dask"), scheduler=cluster.scheduler_address)
        ratio = dask["wall_s"] / local["wall_s"]
        print(f"{local['ok']} points, 2 workers: local {local['wall_s']:.2f} s, Dask {dask['wall_s']:.2f} s "
              f"(batches of {dask['batch_size']}): Dask/local = {ratio:.2f}   target <= 1.5   "
              f"ratio {1.5 / ratio:.2f}x")


if __name__ == "__main__":
    main()
