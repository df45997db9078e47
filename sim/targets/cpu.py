"""The host CPU as a target: an empirical roofline whose every figure is measured on the host.

Nothing here is a datasheet number.  :func:`measure` runs micro-benchmarks with torch on the local
CPU (all of torch's threads) and returns the parameters; ``sim validate --device cpu`` runs it
first, and a config can carry its output (``hardware.params``) to simulate on the machine it was
measured on.

The micro-benchmarks (shapes chosen apart from the validation set, which they must not overlap):

- ``peak_flops_per_s``: a large square GEMM (``peak_n``^3) per dtype: the rate the BLAS library
  sustains when blocking, threads and vector units are all well fed;
- ``eff_m``/``eff_n``/``eff_k``: the same GEMM with one dimension swept from 1 upwards and the other
  two at ``sweep_n`` (a size whose operands fit in the last-level cache, so the sweep sees the
  compute side of the shape effects: register blocking of a narrow M, packing costs of a narrow N
  or K, the threads a small dimension leaves idle), each normalized to its plateau (its best point);
- ``stream_rows``: flat GEMMs (M from 1 to 32) whose B is several times the last-level cache, held
  as ``nn.Linear`` holds a weight ([N, K] row-major, used transposed: the library's kernel choice
  depends on it), at four row lengths K (``STREAM_K``): per M, the fixed seconds per row of B (one
  output column's reduction and bookkeeping) and the bytes/s at which the kernel streams B, a least-
  squares line through the four (two points, as before, let one slow sample on a shared machine set
  the slope; a GEMV-like kernel on a few cores is bound by its own instruction rate, well below a
  plain reduction's bandwidth, and pays per row: so a short-K weight streams slower per byte);
- ``small_gemm``: single cubes of ``SMALL_CUBES`` sizes: seconds vs flops, a floor under any single
  GEMM of no more flops (a small GEMM costs the library's threading, packing and dispatch);
- ``batched_entry``: batched GEMMs (``BATCH`` cubes of ``BATCH_CUBES`` sizes): time per entry vs
  flops per entry, the cost of attention's many small matmuls (threads take whole entries, and a
  tiny entry costs its dispatch, not its flops); ``batched_flat``: the same for entries of one row
  (``BATCH_FLAT``: a decode step's attention, head by head), which run a GEMV-like kernel whose
  per-entry cost a cube's curve does not show;
- ``dram_bytes_per_s``: a reduction over a buffer several times the last-level cache;
  ``cache_bytes_per_s``: the same over a buffer that fits it (``llc_bytes``, read from the OS);
- ``overhead_s``: a 1 x 1 x 1 matmul: the fixed cost of a call through torch into the library.

A GEMM (``batch`` independent M x N x K products, C = A B) then takes

    overhead + max(flops / (peak * eff_m(M) * eff_n(N) * eff_k(K)),  bytes / bandwidth)

with each efficiency interpolated in log2 of the size (clamped to 1 past the sweep; a batched GEMM
takes ``batch`` times the measured per-entry time at its flops instead of the efficiencies), bytes the
compulsory traffic of A, B and C, and the memory time the cache's when B is resident and otherwise
B streamed cold (``stream_rows`` at that M, per row and per byte; past its last M, its last values)
with A and C from the cache.  B is resident in a GEMM validation when the operands a timed loop
cycles through fit the last-level cache; in a model (``cost``) a weight or K/V operand is read once
per step and streams, unless the weights costed together fit the cache (small networks called again
and again).  A batched GEMM pays the overhead once and ``batch`` products.  Non-GEMM ops are
streams: overhead + bytes / bandwidth.

Time is counted in nanoseconds (``freq_hz`` = 1e9 is the time base, not the core clock).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.errors import SimError
from sim.targets import register
from sim.targets.base import Costs, OpArrays, Target
from sim.targets.parts import Host, HostParams, Memory, Precision, param_source

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


class HostCPUParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    description: str = ""
    threads: int = Field(gt=0)
    peak_flops_per_s: dict[str, float] = Field(description="large-square GEMM rate per dtype")
    eff_m: dict[str, list[tuple[int, float]]] = Field(description="efficiency vs M per dtype: (M, fraction)")
    eff_n: dict[str, list[tuple[int, float]]]
    eff_k: dict[str, list[tuple[int, float]]]
    stream_rows: dict[str, list[tuple[int, float, float]]] = Field(
        description="a GEMM streaming a cold B (weights as nn.Linear holds them, [N, K] row-major): per M, the "
                    "fixed seconds per output column (row of the weight) and the bytes/s of B, per dtype")
    batched_entry: dict[str, list[tuple[float, float]]] = Field(
        description="batched GEMMs: seconds per batch entry vs flops per entry, per dtype")
    batched_flat: dict[str, list[tuple[float, float]]] = Field(
        default_factory=dict, description="batched GEMMs of one row per entry (decode attention): seconds per "
        "entry vs flops per entry, per dtype; none measured: the cubes' curve")
    small_gemm: dict[str, list[tuple[float, float]]] = Field(
        description="single small GEMMs (cubes): seconds vs flops, per dtype; a floor for small shapes")
    dram_bytes_per_s: float = Field(gt=0)
    cache_bytes_per_s: float = Field(gt=0)
    llc_bytes: int = Field(gt=0)
    overhead_s: float = Field(ge=0)
    freq_hz: float = Field(1e9, gt=0, description="time base (ns)")
    fuse_vector_ops: bool = Field(False, description="non-GEMM ops fused into compiled kernels (a compiled "
                                  "runtime): each costs its memory traffic, no call of its own")
    host: HostParams | None = Field(None, description="the eager runtime's host (Python, dispatch, module calls, "
                                    "the generate loop), measured by the calibration; none: overhead_s per op only")


def _interp(table: list[tuple[int, float]], x: np.ndarray, clamp_one: bool = True) -> np.ndarray:
    """A measured curve at ``x``, linear in log2 of the size, held at its end points (efficiency
    curves are 1 past their last point, the plateau they were normalized to)."""
    sizes = np.log2(np.array([s for s, _ in table], dtype=np.float64))
    vals = np.array([e for _, e in table], dtype=np.float64)
    return np.interp(np.log2(np.maximum(np.asarray(x, dtype=np.float64), 1.0)), sizes, vals,
                     left=vals[0], right=1.0 if clamp_one else vals[-1])


def stream_time(p: HostCPUParams, M, N, K, batch, dtype: str) -> np.ndarray:
    """Seconds to stream a cold B of ``batch`` x N rows of K elements (a weight as nn.Linear holds it,
    or a K/V cache) through the library's kernel at M rows of A: per row of B a fixed cost (the
    kernel's reduction and bookkeeping per output column) plus its bytes at the kernel's streaming
    rate, both measured at M (log-interpolated; past the last M, its values)."""
    tbl = p.stream_rows[dtype]
    ms = np.log2([m for m, _, _ in tbl])
    row_s = np.interp(np.log2(np.maximum(M, 1.0)), ms, [r for _, r, _ in tbl])
    bw = np.interp(np.log2(np.maximum(M, 1.0)), ms, [b for _, _, b in tbl])
    return batch * N * (row_s + K * DTYPE_BYTES[dtype] / bw)


def gemm_time(p: HostCPUParams, M, N, K, batch, dtype: str, b_resident=None) -> dict[str, np.ndarray]:
    """Predicted seconds of ``batch`` GEMMs C[M,N] = A[M,K] B[K,N] in ``dtype`` (arrays).

    ``b_resident``: whether B is found in the cache (per GEMM); by default, when A, B and C together
    fit the last-level cache (a repeated call finds them there).  A cold B streams
    (:func:`stream_time`); A and C come from the cache."""
    if dtype not in p.peak_flops_per_s:
        raise SimError(f"the host CPU was not measured at {dtype!r} (measured: {', '.join(p.peak_flops_per_s)})")
    M, N, K, batch = (np.asarray(x, dtype=np.float64) for x in (M, N, K, batch))
    el = DTYPE_BYTES[dtype]
    eff = _interp(p.eff_m[dtype], M) * _interp(p.eff_n[dtype], N) * _interp(p.eff_k[dtype], K)
    eff = np.clip(eff, 1e-4, 1.0)
    compute = batch * 2 * M * N * K / (p.peak_flops_per_s[dtype] * eff)
    nbytes = batch * (M * K + K * N + M * N) * el
    resident = nbytes <= p.llc_bytes if b_resident is None else np.broadcast_to(np.asarray(b_resident, bool), M.shape)
    cold = stream_time(p, M, N, K, batch, dtype) + batch * (M * K + M * N) * el / p.cache_bytes_per_s
    mem = np.where(resident, nbytes / p.cache_bytes_per_s, cold)
    # a batch of small GEMMs: the threads take whole entries; each entry costs what the measured
    # batched curve says for its flops (log-log interpolation), at least its share of the peak
    fl = 2 * M * N * K

    def entry_time(tbl):
        e = np.exp(np.interp(np.log(np.maximum(fl, 1.0)), np.log([f for f, _ in tbl]), np.log([t for _, t in tbl])))
        return np.where(fl > tbl[-1][0], tbl[-1][1] * fl / tbl[-1][0], e)

    per_entry = entry_time(p.batched_entry[dtype])
    if p.batched_flat.get(dtype):
        # an entry of one row (a decode step's attention, head by head) runs a GEMV-like kernel with
        # its own per-entry cost, not a small cube's
        per_entry = np.where(M <= 1, entry_time(p.batched_flat[dtype]), per_entry)
    compute = np.where(batch > 1, batch * np.maximum(per_entry, fl / p.peak_flops_per_s[dtype]), compute)
    # a single small GEMM takes at least what a measured cube of the same flops takes (the library's
    # fixed costs: threading, packing, dispatch), up to the largest measured cube
    sm = p.small_gemm[dtype]
    floor = np.exp(np.interp(np.log(np.maximum(fl, 1.0)), np.log([f for f, _ in sm]), np.log([t for _, t in sm])))
    floor = np.where((batch == 1) & (fl <= sm[-1][0]), floor, 0.0)
    t = np.maximum(p.overhead_s + np.maximum(compute, mem), floor)
    return {"time_s": t, "compute_s": compute, "mem_s": mem, "eff": eff}


@register
class HostCPU(Target):
    name = "host_cpu"
    Params = HostCPUParams

    def _dtype(self, abits: int) -> str:
        return "fp32" if abits > 16 else ("bf16" if "bf16" in self.params.peak_flops_per_s else "fp32")

    def peak_macs_per_cycle(self, wbits: int, abits: int) -> float:
        return self.params.peak_flops_per_s[self._dtype(abits)] / 2 / self.freq_hz

    @property
    def host(self) -> Host:
        """Per dispatched op: ``overhead_s`` (a call through torch into the library), and with the
        calibration's ``host`` figures the host as its own stream (run back to back with the kernels:
        the CPU's threads do both)."""
        return Host.stated(self, "overhead_s")

    @property
    def memory(self) -> Memory:
        """The DRAM: ``dram_bytes_per_s`` (a reduction's measured bandwidth; capacity not modelled)."""
        return Memory(bytes_per_s=self.params.dram_bytes_per_s, source=param_source(self, "dram_bytes_per_s"))

    def dram_bytes_per_cycle(self) -> float:
        return self.memory.bytes_per_cycle(self.freq_hz)

    def cost(self, ops: OpArrays | pd.DataFrame, precision: Precision) -> Costs:
        ops = OpArrays.of(ops)
        p = self.params
        n = len(ops)
        dt = self._dtype(precision.act_bits)
        is_mm = (ops.kind == "gemm") | (ops.kind == "attn_matmul") | (ops.kind == "ternary_gemm")
        t = np.zeros(n)
        mem = np.zeros(n)
        i = np.flatnonzero(is_mm)
        if len(i):
            # B read once per step (weights, the K/V cache) streams from DRAM unless the weights of the
            # ops costed together are known and fit the last-level cache (a small network called again
            # and again); ops costed without their weights (a decode step's attention) stream
            total_w = float(ops.weight_bytes.sum())
            weights_fit = 0 < total_w <= p.llc_bytes
            resident = ~((ops.weight_bytes[i] > 0) | (ops.kv_bytes_read[i] > 0)) | weights_fit
            g = gemm_time(p, ops.gemm_m[i], ops.gemm_n[i], ops.gemm_k[i], ops.gemm_batch[i], dt, b_resident=resident)
            t[i], mem[i] = g["time_s"], g["mem_s"]
        j = np.flatnonzero(~is_mm & (ops.kind != "view"))
        if len(j):
            nbytes = (ops.bytes_read[j] + ops.bytes_written[j]).astype(np.float64)
            bw = np.where(nbytes <= p.llc_bytes, p.cache_bytes_per_s, p.dram_bytes_per_s)
            mem[j] = nbytes / bw
            t[j] = mem[j] + (0.0 if p.fuse_vector_ops else p.overhead_s)
        cyc = np.ceil(t * p.freq_hz).astype(np.int64)
        z = np.zeros(n, np.int64)
        dram = (ops.bytes_read + ops.bytes_written).astype(np.int64)
        return Costs(n_tiles=(t > 0).astype(np.int64), load_cycles=z, compute_cycles=cyc, store_cycles=z.copy(),
                     tile_bytes=z.copy(), prefetch=np.ones(n, bool), dram_read_bytes=ops.bytes_read.astype(np.int64),
                     dram_write_bytes=ops.bytes_written.astype(np.int64),
                     macs=np.where(is_mm, ops.gemm_batch * ops.gemm_m * ops.gemm_n * ops.gemm_k, 0),
                     actions={"cpu.byte": dram.astype(np.float64)}, buffer_bytes=0,
                     mem_cycles=np.ceil(mem * p.freq_hz).astype(np.int64))


# ---------------------------------------------------------------- micro-benchmarks

def _llc_bytes() -> int:
    """Size of the largest CPU cache, as the OS reports it (sysfs)."""
    best = 0
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        s = f.read_text().strip()
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(s[-1], 1)
        best = max(best, int(s.rstrip("KMG")) * mult)
    return best or 32 * 1024**2


def time_call(fn, min_sample_s: float = 2e-3, samples: int = 7, warmup: int = 2) -> float:
    """Median seconds of one call: warm-up calls, then ``samples`` samples, each of enough calls
    back to back to last ``min_sample_s`` (so microsecond calls are timed above the timer's noise)."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    reps = max(1, int(min_sample_s / once))
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        out.append((time.perf_counter() - t0) / reps)
    return statistics.median(out)


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def gemm_runner(M: int, N: int, K: int, batch: int, dtype: str, device: str = "cpu", seed: int = 0,
                copies: int = 1, b_layout: str = "nt"):
    """A zero-argument function running the GEMM with torch (A[M,K] @ B[K,N]; batched with bmm).

    ``b_layout``: "nt", B the transpose of a row-major [N, K] tensor, as ``nn.Linear`` holds its
    weight and attention its keys (the layout models run; the library picks its kernels by it), or
    "nn", a row-major [K, N].  With ``copies`` > 1 it cycles through that many independent copies of
    the operands, so that each call finds its operands cold in the caches (as a weight streamed once
    per token is)."""
    import itertools

    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    dt = _torch_dtype(dtype)
    if b_layout not in ("nt", "nn"):
        raise SimError(f"b_layout: expected nt or nn, got {b_layout!r}")
    shape_a = (batch, M, K) if batch > 1 else (M, K)
    shape_b = ((batch, N, K) if batch > 1 else (N, K)) if b_layout == "nt" else ((batch, K, N) if batch > 1 else (K, N))

    def make_b():
        b = torch.randn(*shape_b, generator=g).to(device=device, dtype=dt)
        return b.transpose(-1, -2) if b_layout == "nt" else b

    pairs = [(torch.randn(*shape_a, generator=g).to(device=device, dtype=dt), make_b()) for _ in range(max(1, copies))]
    op = torch.bmm if batch > 1 else torch.mm
    if len(pairs) == 1:
        a, b = pairs[0]
        return lambda: op(a, b)
    cycle = itertools.cycle(pairs)

    def call():
        a, b = next(cycle)
        return op(a, b)

    return call


SWEEP = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
STREAM_M = [1, 2, 4, 8, 16, 32]
BATCH, BATCH_CUBES = 24, [1, 8, 24, 48, 96, 192]
#: one-row batched entries (N, K), ordered by flops: a decode step's attention per head, a score
#: row (N = context, K = head size) or a context row (N = head size, K = context)
BATCH_FLAT = [(32, 32), (128, 64), (128, 128), (512, 128), (2048, 128), (8192, 128)]
SMALL_CUBES = [16, 48, 96, 192, 320]


def measure(dtypes: tuple[str, ...] = ("bf16", "fp32"), quick: bool = False, progress=None) -> HostCPUParams:
    """Measure the host: peak GEMM rate and shape efficiencies per dtype, bandwidths, overhead.

    Every micro-benchmark runs in ``passes`` passes (3; 1 with ``quick``) and keeps the median of
    their medians: the machine's typical speed, as the validations it is compared with take medians
    too.  (It kept the fastest pass until issue 20: on a shared VM whose streaming rate moves between
    13 and 20 GB/s from minute to minute, that priced every run at the machine's best moment.)"""
    import platform

    import torch

    step = progress or (lambda msg: None)
    peak_n = 768 if quick else 1536
    sweep_n = 512 if quick else 1024
    sweep = [s for s in SWEEP if s <= sweep_n]
    samples = 3 if quick else 7
    passes = 1 if quick else 3
    llc = _llc_bytes()

    def typical(fn) -> float:
        return statistics.median(time_call(fn, samples=samples) for _ in range(passes))

    peak, em, en, ek, sm, bt, bf, st = {}, {}, {}, {}, {}, {}, {}, {}
    for dt in dtypes:
        step(f"measuring {dt} GEMM peak ({peak_n}^3)")
        peak[dt] = 2 * peak_n**3 / typical(gemm_runner(peak_n, peak_n, peak_n, 1, dt))
        for name, table in (("M", em), ("N", en), ("K", ek)):
            step(f"measuring {dt} efficiency vs {name}")
            rows = []
            for s in sweep:
                dims = {"M": sweep_n, "N": sweep_n, "K": sweep_n, name: s}
                t = typical(gemm_runner(dims["M"], dims["N"], dims["K"], 1, dt))
                rows.append((s, 2 * dims["M"] * dims["N"] * dims["K"] / t))
            top = max(r for _, r in rows)
            table[dt] = [(s, r / top) for s, r in rows]
        step(f"measuring {dt} small and batched GEMMs")
        bt[dt] = [(2.0 * c**3, typical(gemm_runner(c, c, c, BATCH, dt)) / BATCH) for c in BATCH_CUBES]
        # cold, as a decode step's K/V cache is read: as many operand copies as exceed twice the
        # cache, at most 256 (the validation's rule)
        bf[dt] = [(2.0 * n * k, typical(gemm_runner(1, n, k, BATCH, dt, copies=max(1, min(
            256, -(-2 * llc // ((n * k + k) * BATCH * DTYPE_BYTES[dt])))))) / BATCH) for n, k in BATCH_FLAT]
        st[dt] = [(2.0 * c**3, typical(gemm_runner(c, c, c, 1, dt))) for c in SMALL_CUBES]
        step(f"measuring {dt} flat-GEMM streaming")
        sm[dt] = [_stream_row(m, dt, (2 if quick else 3) * llc, typical) for m in STREAM_M]
    step("measuring memory bandwidth")
    big = torch.ones((4 * llc if not quick else 2 * llc) // 4, dtype=torch.float32)
    dram = big.numel() * 4 / typical(lambda: big.sum())
    small = torch.ones(llc // 4 // 4, dtype=torch.float32)
    cache = small.numel() * 4 / typical(lambda: small.sum())
    a = torch.ones(1, 1)
    overhead = typical(lambda: torch.mm(a, a))
    desc = f"{platform.processor() or platform.machine()}; {_cpu_model()}; torch {torch.__version__}; " \
           f"{torch.get_num_threads()} threads"
    return HostCPUParams(description=desc, threads=torch.get_num_threads(), peak_flops_per_s=peak, eff_m=em,
                         eff_n=en, eff_k=ek, stream_rows=sm, batched_entry=bt, batched_flat=bf, small_gemm=st, dram_bytes_per_s=dram,
                         cache_bytes_per_s=cache, llc_bytes=llc, overhead_s=overhead)


STREAM_K = (1024, 2048, 4096, 8192)


def _stream_row(m: int, dtype: str, b_bytes: float, typical) -> tuple[int, float, float]:
    """(M, seconds per row of B, bytes/s): flat GEMMs at M rows streaming a B of ``b_bytes`` (several
    times the cache, so every call finds it cold) in the models' layout, at the row lengths
    ``STREAM_K``; the per-row time is linear in K (``row_s + K * bytes / bw``), a least-squares line
    through them (a negative intercept, noise, is dropped: bytes/s alone then, through the origin)."""
    el = DTYPE_BYTES[dtype]
    kb = np.array(STREAM_K, dtype=np.float64) * el
    per_row = []
    for k in STREAM_K:
        n = max(64, int(b_bytes / (k * el)) // 64 * 64)
        per_row.append(typical(gemm_runner(m, n, k, 1, dtype)) / n)
    return (m, *stream_line(kb, np.array(per_row)))


def stream_line(row_bytes: np.ndarray, per_row_s: np.ndarray) -> tuple[float, float]:
    """(seconds per row, bytes/s) of a least-squares line ``per_row = row_s + row_bytes / bw`` with
    ``row_s >= 0`` and a positive slope (else the bytes/s of the longest row, through the origin)."""
    x, y = np.asarray(row_bytes, dtype=np.float64), np.asarray(per_row_s, dtype=np.float64)
    slope, row = np.polyfit(x, y, 1) if len(x) > 1 else (0.0, 0.0)
    if slope * np.ptp(x) <= 1e-9 * y.max():  # noise: no per-byte trend measurable
        return 0.0, float(x[-1] / y[-1])
    if row < 0:
        return 0.0, float((x @ x) / (x @ y))  # least squares through the origin
    return float(row), float(1.0 / slope)


def probe(dtype: str = "bf16", llc: int | None = None, samples: int = 5) -> dict[str, float]:
    """The machine's speed now, in two short readings (about 0.2 s): ``stream``, the bytes/s of a
    cold flat GEMM (M = 1, K = 4096, B three times the last-level cache, as a decode step streams its
    weights) and ``flops``, a 1024^3 GEMM's rate.  Taken beside a calibration and beside a timed run,
    their range says how far a shared machine's speed moves while it is measured."""
    el = DTYPE_BYTES[dtype]
    n = max(64, int(3 * (llc or _llc_bytes()) / (4096 * el)) // 64 * 64)
    stream = n * 4096 * el / time_call(gemm_runner(1, n, 4096, 1, dtype), samples=samples)
    flops = 2 * 1024**3 / time_call(gemm_runner(1024, 1024, 1024, 1, dtype), samples=samples)
    return {"stream": float(stream), "flops": float(flops)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


# ---------------------------------------------------------------- the host (eager runtime)

def _host_probes():
    """Tiny-tensor calls, one set per traced op kind: what an eager step's host pays per op
    (Python, the dispatcher, the library's fixed cost), the tensors too small for the work to count."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(1, 1, 64).bfloat16()
    y = torch.randn(1, 1, 64).bfloat16()
    w = torch.randn(64, 64).bfloat16()
    b = torch.randn(64).bfloat16()
    q = torch.randn(1, 2, 1, 32).bfloat16()
    ids = torch.zeros(1, 1, dtype=torch.long)
    table = torch.randn(16, 64).bfloat16()
    return {
        "view": [lambda: x.view(1, 64), lambda: x.transpose(1, 2), lambda: x[..., :32], lambda: x.unsqueeze(0)],
        "elementwise": [lambda: x + y, lambda: x * y, lambda: F.silu(x), lambda: torch.rsqrt(x)],
        "copy": [lambda: x.to(torch.float32), lambda: x.transpose(1, 2).contiguous(), lambda: torch.cat([x, y], -1)],
        "reduction": [lambda: x.mean(-1, keepdim=True)],
        "softmax": [lambda: torch.softmax(x, -1)],
        "norm": [lambda: F.layer_norm(x, (64,), b, b)],
        "gemm": [lambda: F.linear(x, w), lambda: F.linear(x, w, b)],
        "attn_matmul": [lambda: q @ q.transpose(-1, -2)],
        "embedding": [lambda: F.embedding(ids, table)],
        "creation": [lambda: torch.arange(8), lambda: torch.full((1, 8), 0.0)],
    }


def measure_host(vocab: int = 32000, samples: int = 7, passes: int = 2) -> HostParams:
    """The eager runtime's host on this CPU, by timers: per traced op kind, the median seconds of
    tiny-tensor calls of that kind less ``overhead_s``'s 1 x 1 matmul (which the device costs already
    charge per op; views are charged whole); one ``nn.Module`` call (an identity module's call less
    the bare function's); a generate loop's per-token work (the arg-max of a ``vocab`` logits row,
    the next position as a tensor).  The framework's step (``step_s``) is the model's own and is
    measured by the end-to-end validation on the model it runs (:mod:`sim.validate_e2e`)."""
    import torch

    def typical(fn) -> float:
        return statistics.median(time_call(fn, min_sample_s=1e-3, samples=samples) for _ in range(passes))

    with torch.inference_mode():
        a = torch.ones(1, 1)
        base = typical(lambda: torch.mm(a, a))
        dispatch = {}
        for kind, fns in _host_probes().items():
            t = statistics.median(typical(f) for f in fns)
            dispatch[kind] = t if kind == "view" else max(0.0, t - base)
        dispatch["default"] = dispatch["elementwise"]

        class Identity(torch.nn.Module):
            def forward(self, v):
                return v

        mod, fn = Identity(), (lambda v: v)
        module_s = max(0.0, typical(lambda: mod(a)) - typical(lambda: fn(a)))
        logits = torch.randn(1, 1, vocab).bfloat16()
        pos = [0]

        def token():
            pos[0] += 1
            return logits[:, -1:].argmax(-1), torch.tensor([pos[0]])

        token_s = typical(token)
    return HostParams(runtime="eager", dispatch_s=dispatch, module_s=module_s, token_s=token_s, overlap=False)
