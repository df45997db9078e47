"""Time attention kernels with torch (fused SDPA backends and the unfused math path) against the GPU target.

    python benchmarks/gpu_attention.py --out results/attention/<gpu>/measured.csv [--device cuda|cpu] [--quick]

Llama-2-7B-like heads (32 heads of 128, batch 1; fp16 on cuda, bf16 on cpu).  Prefill: q len = kv len
in PREFILL, causal.  Decode: one query over kv len in DECODE.  Each shape is run by

- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` with the backend torch picks;
- ``sdpa_flash``, ``sdpa_efficient``, ``sdpa_cudnn``, ``sdpa_math``: the same call restricted to one
  backend with ``torch.nn.attention.sdpa_kernel``; a backend that refuses the shape or device is left
  out (listed at the end);
- ``unfused``: the ops the simulator's trace has (``workloads/tracer.py``, ``mlhw_attention``): the
  score matmul with the scale (one ``baddbmm``), in prefill the causal mask built and added (``full``,
  ``triu``, ``add``), ``softmax``, the context matmul (``bmm``), each its own kernel.

``kernel`` is the aten op the call ran, read from ``torch.profiler`` (for ``sdpa``: the backend torch
picked).  ``max_abs_err``: the largest difference of the output from an fp32 unfused reference on
the same inputs.

Timing.  cuda: ``sim.validate._time_cuda`` (CUDA events, warm-up, median of 7 samples of calls back to
back): eager calls, so a small shape's time includes the host's launches; ``measured_graph_s`` is the
same calls replayed from a CUDA graph (``sim.validate._time_cuda_graph``), the device's time alone
(left empty where capture fails, or with ``--no-graph``).  In decode every call reads its own copy of
K and V, cycling through enough copies to exceed twice the L2, so the cache comes from HBM as in the
target's model; prefill reuses one copy (Q, K, V are fresh activations, which the model keeps in L2).
cpu: ``sim.targets.cpu.time_call`` (median of ``perf_counter`` samples, all of torch's threads).

``predicted_s`` (cuda only): the GPU target matching the device (``sim.validate.gpu_target_for``)
costing the unfused op table of :func:`attention_ops`, summed over its kernels.  The target has
no fused-attention model, so every backend's row at a shape carries that same number.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import math
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
import torch
import torch.nn.functional as F

BATCH, HEADS, HEAD_DIM = 1, 32, 128  # Llama-2-7B: 32 attention heads of 128 (no grouped KV heads)
PREFILL = (128, 512, 2048, 4096)
DECODE = (128, 512, 2048, 8192, 32768)
QUICK_PREFILL, QUICK_DECODE = (64, 128), (128, 512)
SDPA_BACKENDS = {"sdpa": None, "sdpa_flash": "FLASH_ATTENTION", "sdpa_efficient": "EFFICIENT_ATTENTION",
                 "sdpa_cudnn": "CUDNN_ATTENTION", "sdpa_math": "MATH"}
COLUMNS = ["phase", "backend", "kernel", "batch", "heads", "head_dim", "q_len", "kv_len", "dtype", "measured_s",
           "measured_graph_s", "predicted_s", "max_abs_err", "device", "device_name", "torch"]


def attention_ops(batch: int, heads: int, head_dim: int, q_len: int, kv_len: int, decode: bool,
                  el_bytes: int = 2, dtype: str = "f16") -> pd.DataFrame:
    """One layer's attention as the tracer writes it (trace columns): the score matmul, the causal
    mask when ``q_len > 1`` (``full``, ``triu``, ``add``), softmax, the context matmul.  In decode K and
    V come from the KV cache (``kv_bytes_read``); in prefill they are fresh activations."""
    bh, s, L, d = batch * heads, q_len, kv_len, head_dim
    scores = bh * s * L * el_bytes
    kv = bh * L * d * el_bytes  # K (or V): as many KV heads as query heads
    zero = {"weight_bytes": 0, "kv_bytes_read": 0, "kv_bytes_written": 0, "gemm_m": 0, "gemm_n": 0, "gemm_k": 0,
            "gemm_batch": 0}
    rows = [dict(zero, role="attn_score", kind="attn_matmul", flops=2 * bh * s * L * d,
                 bytes_read=bh * s * d * el_bytes + kv, bytes_written=scores, kv_bytes_read=kv if decode else 0,
                 gemm_m=s, gemm_n=L, gemm_k=d, gemm_batch=bh)]
    if s > 1:
        mask = s * L * el_bytes
        rows += [dict(zero, role="attn_mask", kind="creation", flops=0, bytes_read=0, bytes_written=mask),
                 dict(zero, role="attn_mask", kind="other", flops=0, bytes_read=mask, bytes_written=mask),
                 dict(zero, role="attn_mask", kind="elementwise", flops=bh * s * L, bytes_read=scores + mask,
                      bytes_written=scores)]
    rows += [dict(zero, role="attn_softmax", kind="softmax", flops=5 * bh * s * L, bytes_read=scores,
                  bytes_written=scores),
             dict(zero, role="attn_context", kind="attn_matmul", flops=2 * bh * s * L * d, bytes_read=scores + kv,
                  bytes_written=bh * s * d * el_bytes, kv_bytes_read=kv if decode else 0,
                  gemm_m=s, gemm_n=d, gemm_k=L, gemm_batch=bh)]
    df = pd.DataFrame(rows)
    df["dtype"] = dtype
    return df


def predicted_seconds(target, ops: pd.DataFrame) -> float:
    """Seconds the target charges for the ops, kernel after kernel (w16a16)."""
    from sim.targets.parts import Precision

    costs = target.cost(ops, Precision(weight_bits=16, act_bits=16))
    return float(costs.compute_cycles.sum() / target.freq_hz)


def unfused(q, k, v, causal: bool):
    """softmax(scale q k^T + mask) v as separate kernels, mirroring the trace (see the module docstring)."""
    b, h, s, d = q.shape
    L = k.shape[2]
    q3, k3, v3 = q.reshape(b * h, s, d), k.reshape(b * h, L, d), v.reshape(b * h, L, d)
    scores = torch.baddbmm(q3.new_empty(()), q3, k3.transpose(1, 2), beta=0.0, alpha=d**-0.5)
    if causal and s > 1:
        mask = torch.full((s, L), torch.finfo(q.dtype).min, dtype=q.dtype, device=q.device).triu(L - s + 1)
        scores = scores + mask
    return torch.bmm(torch.softmax(scores, dim=-1), v3).view(b, h, s, d)


def ran_kernel(fn) -> str:
    """The aten op an SDPA call dispatched to (``_scaled_dot_product_*``), from one profiled call."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = [e.key.removeprefix("aten::") for e in prof.key_averages()]
    picked = [n for n in names if n.startswith("_scaled_dot_product") or n.endswith("attention_forward")]
    return picked[0] if picked else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help=f"prefill {QUICK_PREFILL}, decode {QUICK_DECODE}, fewer samples")
    ap.add_argument("--no-graph", action="store_true", help="cuda: skip the CUDA-graph timing")
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from sim.validate import machine

    dev = torch.device(a.device)
    cuda = a.device == "cuda"
    dt, dname = (torch.float16, "fp16") if cuda else (torch.bfloat16, "bf16")
    info = machine(a.device)
    target, l2_bytes = None, 0
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        from sim.validate import _time_cuda, _time_cuda_graph

        l2_bytes = int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2**20))
        try:
            from sim.validate import gpu_target_for

            target = gpu_target_for(info["name"])
        except Exception as e:  # noqa: BLE001 - a missing package or target file leaves predicted_s empty
            print(f"no prediction: {e}", file=sys.stderr)
    else:
        from sim.targets.cpu import time_call

    samples = 3 if a.quick else 7

    def measure(fn) -> float:
        if cuda:
            return _time_cuda(fn, samples, warmup=3)
        return time_call(fn, min_sample_s=1e-3 if a.quick else 2e-3, samples=samples, warmup=1 if a.quick else 2)

    shapes = [("prefill", s, s) for s in (QUICK_PREFILL if a.quick else PREFILL)]
    shapes += [("decode", 1, L) for L in (QUICK_DECODE if a.quick else DECODE)]
    gen = torch.Generator(device=dev).manual_seed(0)
    rows, refused = [], set()
    for phase, s, L in shapes:
        decode = phase == "decode"
        el = torch.tensor([], dtype=dt).element_size()
        q = torch.randn((BATCH, HEADS, s, HEAD_DIM), generator=gen, device=dev).to(dt)
        kv_bytes = 2 * BATCH * HEADS * L * HEAD_DIM * el
        copies = int(min(64, max(1, math.ceil(2 * l2_bytes / kv_bytes)))) if cuda and decode else 1
        kvs = [tuple(torch.randn((BATCH, HEADS, L, HEAD_DIM), generator=gen, device=dev).to(dt) for _ in "kv")
               for _ in range(copies)]
        ref = unfused(q.float(), kvs[0][0].float(), kvs[0][1].float(), causal=not decode)
        pred = ""
        if target is not None:
            pred = predicted_seconds(target, attention_ops(BATCH, HEADS, HEAD_DIM, s, L, decode, el))
        for backend in [*SDPA_BACKENDS, "unfused"]:
            cycle = itertools.cycle(kvs)
            if backend == "unfused":
                call = lambda k, v, q=q, causal=not decode: unfused(q, k, v, causal)
            else:
                call = lambda k, v, q=q, causal=not decode: F.scaled_dot_product_attention(q, k, v, is_causal=causal)

            def fn(call=call, cycle=cycle):
                k, v = next(cycle)
                return call(k, v)

            choice = SDPA_BACKENDS.get(backend)
            ctx = sdpa_kernel([getattr(SDPBackend, choice)]) if choice else contextlib.nullcontext()
            with torch.no_grad(), ctx:
                try:
                    with warnings.catch_warnings():  # a refused backend warns, then raises
                        warnings.simplefilter("ignore")
                        res = call(*kvs[0])
                except RuntimeError:
                    refused.add(backend)
                    continue
                err = float((res.float() - ref).abs().max())
                kernel = "baddbmm,softmax,bmm" if backend == "unfused" else ran_kernel(fn)
                t = measure(fn)
                graph_t = ""
                if cuda and not a.no_graph:
                    try:
                        graph_t = _time_cuda_graph(fn, max(copies, 4), samples)
                    except RuntimeError as e:
                        print(f"{phase} {L} {backend}: no CUDA graph ({str(e).splitlines()[0]})", file=sys.stderr)
            rows.append({"phase": phase, "backend": backend, "kernel": kernel, "batch": BATCH, "heads": HEADS,
                         "head_dim": HEAD_DIM, "q_len": s, "kv_len": L, "dtype": dname, "measured_s": t,
                         "measured_graph_s": graph_t, "predicted_s": pred, "max_abs_err": err, "device": a.device,
                         "device_name": info["name"], "torch": torch.__version__})
            print(f"{phase} q {s} kv {L} {backend} ({kernel}): {t * 1e6:.1f} us", flush=True)
        del kvs, q, ref, res, call, fn
        if cuda:
            torch.cuda.empty_cache()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    fmt = lambda x: f"{x * 1e6:12.1f}" if isinstance(x, float) else f"{'-':>12}"
    print(f"\n{'phase':8} {'q':>5} {'kv':>6} {'backend':15} {'kernel':45} {'measured us':>12} {'graph us':>12} "
          f"{'predicted us':>12}")
    for r in rows:
        print(f"{r['phase']:8} {r['q_len']:5d} {r['kv_len']:6d} {r['backend']:15} {r['kernel']:45} "
              f"{fmt(r['measured_s'])} {fmt(r['measured_graph_s'])} {fmt(r['predicted_s'])}")
    if refused:
        print(f"backends refused on {info['name']} (some or all shapes): {', '.join(sorted(refused))}")
    print(f"wrote {out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
