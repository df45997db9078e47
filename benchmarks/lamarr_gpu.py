"""Time the Lamarr pipeline's networks on a CUDA GPU (the measured side of the GPU target's prediction).

    python benchmarks/lamarr_gpu.py --out results/lamarr/gpu/<gpu>/measured.csv

Per stage of ``models.lamarr.nets`` (random weights: the time does not depend on their values), per
batch of particles and dtype: the median of 7 samples, each the mean over enough back-to-back calls to
last >= 2 ms, timed with CUDA events after a warm-up (eager PyTorch, one stream).  Also the whole
pipeline (every stage over the same batch) eager and replayed from a CUDA graph, and the host->device
copy of the batch's inputs.  Each stage's and the pipeline's parameter count goes with its rows
(``params``: ``sim.studies.lamarr.hardware.gpu_check`` compares a row only with the networks it timed).  Needs only
torch (and numpy); writes one CSV with the machine in its columns.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from models.lamarr import nets  # noqa: E402

BATCHES = (256, 4096, 65536, 1048576)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def timed(fn, min_s: float = 2e-3, samples: int = 7) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    reps = 1
    while True:  # calls per sample so that a sample lasts >= min_s
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        if start.elapsed_time(end) * 1e-3 >= min_s or reps >= 1 << 16:
            break
        reps *= 2
    out = []
    for _ in range(samples):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) * 1e-3 / reps)
    return sorted(out)[len(out) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    name = torch.cuda.get_device_name(0)
    rows = []
    with torch.no_grad():
        for dname, dt in DTYPES.items():
            pipe = nets.new_pipeline(dt, "cuda")
            for b in BATCHES:
                inputs = {}
                for s in nets.STAGES:
                    c = torch.randn((b, nets.n_features(s)), device=dev, dtype=dt)
                    z = torch.randn((b, s.latent), device=dev, dtype=dt) if s.kind == "gan" else None
                    inputs[s.name] = (c, z)
                    net = pipe.nets[s.name]
                    fn = (lambda net=net, c=c: net(c)) if z is None else (lambda net=net, c=c, z=z: net(c, z))
                    rows.append({"what": "stage", "stage": s.name, "dtype": dname, "batch": b, "seconds": timed(fn),
                                 "params": sum(p.numel() for p in net.parameters())})

                def whole():
                    for s in nets.STAGES:
                        c, z = inputs[s.name]
                        pipe.nets[s.name](c) if z is None else pipe.nets[s.name](c, z)

                every = sum(p.numel() for p in pipe.nets.parameters())
                rows.append({"what": "pipeline_eager", "stage": "all", "dtype": dname, "batch": b,
                             "seconds": timed(whole), "params": every})
                g = torch.cuda.CUDAGraph()
                s_ = torch.cuda.Stream()
                s_.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s_):
                    whole()
                torch.cuda.current_stream().wait_stream(s_)
                with torch.cuda.graph(g):
                    whole()
                rows.append({"what": "pipeline_graph", "stage": "all", "dtype": dname, "batch": b,
                             "seconds": timed(g.replay), "params": every})
                host = torch.randn((b, 32), dtype=dt).pin_memory()
                rows.append({"what": "h2d_copy_32_features", "stage": "-", "dtype": dname, "batch": b,
                             "seconds": timed(lambda host=host: host.to(dev, non_blocking=True))})
                print(f"{dname} batch {b}: pipeline eager {rows[-3]['seconds'] * 1e6:.1f} us, graph "
                      f"{rows[-2]['seconds'] * 1e6:.1f} us", flush=True)
                del g
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["device", "torch", "what", "stage", "dtype", "batch", "seconds", "params"])
        w.writeheader()
        for r in rows:
            w.writerow({"device": name, "torch": torch.__version__, **r})
    print(f"wrote {out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
