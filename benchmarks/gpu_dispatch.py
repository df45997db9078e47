"""The host's cost per op in eager PyTorch: tiny ops back to back, timed and profiled.

    python benchmarks/gpu_dispatch.py --out results/dispatch/<gpu>/measured.csv [--device cuda|cpu] [--quick]

Every op runs on tensors of a few hundred elements (the argmax on a 32,000-entry vector, Llama-2's
vocabulary), under ``torch.no_grad``, so its time is the host's: Python, the dispatcher, and on cuda
the kernel launch.  ``per_call_s``: the median over samples of ``perf_counter`` around ``calls``
calls back to back, divided by ``calls``; on cuda one ``torch.cuda.synchronize`` ends each sample, so
this is the rate the host issues work at (as long as the GPU keeps up, which kernels this small do).
``profiler_self_s``: ``torch.profiler`` (CPU activity only) over ``PROFILED`` calls after the timing,
the self CPU time of every aten op it records (on cuda that includes the kernel launches the ops
make) summed and divided by the calls; empty where it records no op (a module call that runs none).  ``aten_ops``:
the same per event (name=seconds per call), largest first.  The profiler adds its own overhead to
each op, so the two columns differ.

Rows (``op_kind``): view (``view``, ``reshape``, ``transpose``), elementwise (``add``, ``mul``), copy
(``contiguous`` of a transposed tensor), reduction (``sum``, ``mean``), softmax, gemm (``mm``,
``F.linear``), embedding (one token), index (``index_copy_`` of one position into a static KV cache,
as Hugging Face's ``StaticCache`` updates it), sampling (``argmax`` over 32,000 logits; with
``.item()``, which on cuda waits for the GPU each call), module (an ``nn.Module`` whose forward
returns its input; a bare ``nn.Linear``), module_hook (the empty module with a forward hook that
returns nothing), adapter (the ``nn.Linear`` inside a module that calls it and adds a small
residual: the ``nn.Linear`` row is the one to compare it with).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 32000  # Llama-2's vocabulary (config.json of meta-llama/Llama-2-7b-hf: "vocab_size": 32000)
PROFILED = 10
COLUMNS = ["what", "op_kind", "device", "per_call_s", "profiler_self_s", "calls", "aten_ops", "device_name", "torch"]


class Passthrough(nn.Module):
    def forward(self, x):
        return x


class Adapter(nn.Module):
    """A wrapper that calls the inner layer and adds a small residual of its input."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) + 0.5 * x


def cases(dev: torch.device) -> list[tuple[str, str, object]]:
    """(what, op_kind, zero-argument call) for every row (see the module docstring)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    rnd = lambda *shape: torch.randn(shape, generator=g).to(dev)
    x, y = rnd(4, 64), rnd(4, 64)
    xt = rnd(64, 4).t()
    w, b = rnd(64, 64), rnd(64)
    table = rnd(1000, 64)
    ids = torch.tensor([[7]], device=dev)
    cache, new, pos = rnd(1, 4, 64, 16), rnd(1, 4, 1, 16), torch.tensor([5], device=dev)
    logits = rnd(VOCAB)
    empty, hooked, linear = Passthrough().to(dev), Passthrough().to(dev), nn.Linear(64, 64).to(dev)
    hooked.register_forward_hook(lambda mod, args, out: None)
    adapter = Adapter(linear)
    return [
        ("view", "view", lambda: x.view(64, 4)),
        ("reshape", "view", lambda: x.reshape(2, 128)),
        ("transpose", "view", lambda: x.transpose(0, 1)),
        ("add", "elementwise", lambda: x + y),
        ("mul", "elementwise", lambda: x * y),
        ("contiguous", "copy", lambda: xt.contiguous()),
        ("sum", "reduction", lambda: x.sum(-1)),
        ("mean", "reduction", lambda: x.mean(-1)),
        ("softmax", "softmax", lambda: torch.softmax(x, dim=-1)),
        ("mm 4x64x64", "gemm", lambda: x @ w),
        ("F.linear 4x64x64", "gemm", lambda: F.linear(x, w, b)),
        ("embedding 1 token", "embedding", lambda: F.embedding(ids, table)),
        ("index_copy_ kv cache", "index", lambda: cache.index_copy_(2, pos, new)),
        ("argmax 32000", "sampling", lambda: logits.argmax(-1)),
        ("argmax 32000 .item()", "sampling", lambda: logits.argmax(-1).item()),
        ("nn.Module passthrough", "module", lambda: empty(x)),
        ("nn.Module passthrough + hook", "module_hook", lambda: hooked(x)),
        ("nn.Linear 64x64", "module", lambda: linear(x)),
        ("adapter(nn.Linear 64x64)", "adapter", lambda: adapter(x)),
    ]


def host_rate(fn, calls: int, samples: int, sync) -> float:
    """Median seconds per call of ``calls`` calls back to back (``sync`` once at the end of each sample)."""
    for _ in range(max(10, calls // 10)):
        fn()
    sync()
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        out.append((time.perf_counter() - t0) / calls)
    return statistics.median(out)


def profiled(fn, calls: int) -> tuple[float | str, str]:
    """Self CPU seconds per call of every event torch.profiler records over ``calls`` calls: the sum,
    and 'name=seconds' per event, largest first ('' and '' when it records none)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    per = {e.key: e.self_cpu_time_total * 1e-6 / calls for e in prof.key_averages()}
    if not per:
        return "", ""
    ranked = sorted(per.items(), key=lambda kv: -kv[1])
    return sum(per.values()), ";".join(f"{k}={v:.3g}" for k, v in ranked)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="200 calls x 5 samples per op (else 2000 x 9)")
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    from sim.validate import machine

    dev = torch.device(a.device)
    name = machine(a.device)["name"]
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    calls, samples = (200, 5) if a.quick else (2000, 9)
    rows = []
    with torch.no_grad():
        for what, kind, fn in cases(dev):
            t = host_rate(fn, calls, samples, sync)
            prof_s, per_op = profiled(fn, PROFILED)
            sync()
            rows.append({"what": what, "op_kind": kind, "device": a.device, "per_call_s": t,
                         "profiler_self_s": prof_s, "calls": calls, "aten_ops": per_op, "device_name": name,
                         "torch": torch.__version__})
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print(f"{'what':30} {'op_kind':12} {'per call us':>12} {'profiler us':>12}  ({name}, {a.device})")
    for r in rows:
        p = r["profiler_self_s"]
        prof_us = f"{p * 1e6:12.2f}" if p != "" else f"{'-':>12}"
        print(f"{r['what']:30} {r['op_kind']:12} {r['per_call_s'] * 1e6:12.2f} {prof_us}")
    print(f"wrote {out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
