"""A GPU with tensor cores, modelled kernel by kernel: every traced op is one kernel.

GEMMs (and attention matmuls, batched) are tiled the way CUTLASS/cuBLAS kernels are: the output
C[M,N] is cut into CTA tiles of ``BM x BN`` from a candidate set (``tiles``: BM, BN, BK, stages);
each CTA walks K in steps of BK through a ``stages``-deep shared-memory pipeline.  For every
candidate tile and split-K factor the model prices the kernel and keeps the fastest (a search
over the candidates, as a tuned heuristic would):

- **waves**: ``ctas = batch * ceil(M/BM) * ceil(N/BN) * split``; an SM holds ``occ`` CTAs at once
  (as many as its shared memory fits, ``stages * (BM + BN) * BK`` operand bytes each, and its
  register file, ``2 * BM * BN * 4`` bytes each: fp32 accumulators and as much again for operand
  fragments, an assumption; at most ``max_ctas_per_sm``), so the kernel runs
  ``waves = ceil(ctas / (sms * occ))`` waves and the last
  one may be part-empty (wave quantization).
- **compute**: each full wave takes ``occ * 2 * BM * BN * BK * ceil(K / split / BK)`` flops per SM at the
  SM's tensor-core rate; the last wave's ``r`` CTAs are spread over the SMs first (the block
  scheduler fills SMs breadth-first), so it takes ``ceil(r / sms)`` CTAs' flops, not ``occ`` (``tensor_tflops`` of the MMA dtype / ``sms``) times ``mma_efficiency``
  (the fraction of peak a well-fed mainloop sustains).  Padding of M, N and K to whole tiles is
  computed, not skipped: a decode GEMM with M = 1 pays a full BM-row tile (FlashDecoding++'s
  flat-GEMM padding) but is memory-bound anyway.
- **memory**: weights (and the KV cache) come from HBM; an activation operand or output that fits
  half the L2 stays in L2 (produced and consumed through it), otherwise it goes to HBM.  An operand
  larger than half the L2 is re-read from HBM once per wave-block of the other operand's tiles
  (tiles rasterized in square-ish blocks of ``sms * occ`` CTAs).  Every CTA reads its A and B
  slices from L2 (``l2_bytes_per_s``), except that with thread-block clusters (``cluster`` > 1, Hopper)
  the CTAs of a cluster along M read their common B slice once and broadcast it by TMA multicast (or
  along N, their common A slice); the search tries no cluster, and one along each.  Split-K is serial (CUTLASS GemmUniversal's split-K slices,
  reduced in the kernel's epilogue): the slices write and re-read fp32 partial sums through L2, in
  one launch.
- **time**: ``max(compute, HBM bytes / (hbm_bytes_per_s * hbm_efficiency), L2 bytes / L2 bandwidth)``
  plus a pipeline fill of ``mem_latency_s`` per wave, plus ``kernel_overhead_s`` per kernel.

Every other op (elementwise, norms, softmax, copies, gathers) is a memory-bound kernel on the CUDA
cores: ``max(bytes / bandwidth, flops / vector rate)`` with the same L2/HBM residency rule, plus
the kernel overhead; with ``fuse_vector_ops`` they are fused into their neighbours' kernels (as
CUDA-graph or compiled runtimes do) and pay no launch of their own.  Views cost nothing.

Precision: a GEMM runs on the tensor-core path named by its precisions (``mma_dtype``; a ternary GEMM,
a BitLinear's, runs on the INT8 path at 8-bit activations with 2-bit weights): w16a16 is
``fp16`` (``bf16`` for bf16 traces), w8a8 ``int8`` (``fp8`` where ``int8`` is missing and
``prefer_fp8``), w4a4 ``int4``, w1a1 ``b1``; weight-only quantization (w<16, a16) runs the fp16 MMA
with the narrow weights streamed from HBM.  A path the GPU lacks (Hopper has no INT4 tensor cores)
is an error naming it.  Bytes follow the precisions as in the accelerator template.  With
``arbitrary_precision``, weight GEMMs whose operands are both 8 bits or narrower run as bipolar-INT
binary MMAs instead (:func:`apmm_plan`): a W``p``A``q`` GEMM costs one binary GEMM p*q times the size.
``tiles_by_dtype`` gives the tile candidates of MMA dtypes whose K step differs (CUTLASS's INT8, INT4
and binary kernels step K by 64, 128 and 512).

Costs: one tile per kernel whose ``compute_cycles`` is the whole kernel at ``freq_hz`` (kernels run
back to back on the GPU's stream); ``mem_cycles`` is the time its HBM traffic alone would take, so
reports can say which kernels are memory-bound.  Actions for energy: ``tensor.mac`` (MACs, padding
included, in fp16-MAC equivalents: scaled by the operands' bits, w x a / (16 x 16), a first-order
multiplier-energy assumption), ``vector.flop``, ``l2.byte``, ``hbm.read``, ``hbm.write`` (bytes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.errors import SimError
from sim.targets import register
from sim.targets.base import Costs, OpArrays, Target
from sim.targets.base import cdiv as _cdiv
from sim.targets.parts import Host, HostParams, Link, Memory, Precision, param_source

MMA_DTYPES = ("fp16", "bf16", "tf32", "fp8", "int8", "int4", "b1")


class GPUParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    sms: int = Field(gt=0, description="streaming multiprocessors")
    freq_hz: float = Field(gt=0, description="SM clock the peak figures are quoted at")
    tensor_tflops: dict[str, float] = Field(description="dense tensor-core peak by MMA dtype (TFLOPS or TOPS)")
    mma_shapes: dict[str, list[int]] = Field(description="MMA instruction shape [m, n, k] per MMA dtype")
    vector_tflops: float = Field(gt=0, description="non-tensor FP32 peak (CUDA cores)")
    smem_per_sm_bytes: int = Field(gt=0, description="shared memory a CTA can use per SM")
    regs_per_sm_bytes: int = Field(gt=0, description="register file per SM")
    max_ctas_per_sm: int = Field(2, gt=0, description="GEMM CTAs resident per SM at most")
    l2_bytes: int = Field(gt=0)
    l2_bytes_per_s: float = Field(gt=0)
    hbm_bytes: int = Field(gt=0, description="HBM capacity")
    hbm_bytes_per_s: float = Field(gt=0, description="HBM peak bandwidth")
    hbm_efficiency: float = Field(gt=0, le=1, description="fraction of peak HBM bandwidth streaming kernels reach")
    mma_efficiency: float = Field(gt=0, le=1, description="fraction of tensor peak a GEMM mainloop sustains")
    mem_latency_s: float = Field(ge=0, description="HBM load latency: the pipeline fill of each wave")
    kernel_overhead_s: float = Field(ge=0, description="launch and prologue/epilogue per kernel")
    fuse_vector_ops: bool = Field(False, description="fuse non-GEMM ops into neighbouring kernels")
    prefer_fp8: bool = Field(False, description="run w8a8 on FP8 tensor cores")
    tiles: list[list[int]] = Field(description="CTA tile candidates: BM, BN, BK, stages")
    tiles_by_dtype: dict[str, list[list[int]]] = Field(
        default_factory=dict, description="tile candidates of an MMA dtype whose K step differs (int8, int4, b1)")
    arbitrary_precision: bool = Field(
        False, description="run GEMMs whose operands are both 8 bits or narrower as bipolar-INT binary MMAs (APMM)")
    split_k: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16], description="split-K candidates")
    cluster: int = Field(1, ge=1, le=16, description="CTAs per thread-block cluster that share one operand's tile "
                         "by TMA multicast (1: no clusters); searched along M and along N")
    node_nm: int = Field(gt=0)
    host: HostParams | None = Field(None, description="the runtime's host (dispatch per op, module calls, the "
                                    "generate loop) as its own stream; none: only kernel_overhead_s per kernel")
    link_bytes_per_s: float | None = Field(None, gt=0, description="GPU-to-GPU bandwidth per direction (NVLink), "
                                           "for tensor-parallel collectives; none: no multi-GPU runs")
    link_efficiency: float = Field(1.0, gt=0, le=1, description="fraction of link_bytes_per_s that collectives and "
                                   "sends reach (the collective library's protocol overhead)")
    collective_latency_s: float = Field(0.0, ge=0, description="each collective's fixed cost (a small all-reduce)")
    p2p_latency_s: float | None = Field(None, ge=0, description="a point-to-point send's fixed cost inside a node "
                                        "(pipeline stages); none: collective_latency_s")
    gpus_per_node: int = Field(8, ge=1, le=1024, description="GPUs sharing one node's link")
    network_bytes_per_s: float | None = Field(None, gt=0, description="bandwidth between nodes per GPU and "
                                              "direction (its network card); none: runs stay in one node")
    network_latency_s: float = Field(0.0, ge=0, description="a transfer's fixed cost between nodes")

    @field_validator("tensor_tflops")
    @classmethod
    def _known_dtypes(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(set(v) - set(MMA_DTYPES))
        if bad:
            raise ValueError(f"unknown MMA dtype {bad[0]!r} (known: {', '.join(MMA_DTYPES)})")
        if any(x <= 0 for x in v.values()):
            raise ValueError("rates must be positive")
        return v

    @model_validator(mode="after")
    def _shapes(self):
        missing = sorted(set(self.tensor_tflops) - set(self.mma_shapes))
        if missing:
            raise ValueError(f"mma_shapes: no MMA shape for {missing[0]!r}")
        for key, shape in self.mma_shapes.items():
            if len(shape) != 3 or min(shape) <= 0:
                raise ValueError(f"mma_shapes: {key!r} must be [m, n, k] of positive sizes")
            if key not in self.tensor_tflops:
                continue
            for t in self.tiles_by_dtype.get(key, self.tiles):
                if t[2] % shape[2]:
                    raise ValueError(f"tile {t} of {key!r}: BK must be a multiple of the MMA's k ({shape[2]})")
        return self

    @field_validator("tiles")
    @classmethod
    def _tiles(cls, v):
        if not v or any(len(t) != 4 or min(t) <= 0 for t in v):
            raise ValueError("at least one tile, each [BM, BN, BK, stages] of positive sizes")
        return v

    @field_validator("tiles_by_dtype")
    @classmethod
    def _tiles_by(cls, v):
        for key, tiles in v.items():
            if key not in MMA_DTYPES:
                raise ValueError(f"unknown MMA dtype {key!r} (known: {', '.join(MMA_DTYPES)})")
            cls._tiles(tiles)
        return v

    @field_validator("split_k")
    @classmethod
    def _split(cls, v):
        if not v or min(v) < 1 or 1 not in v:
            raise ValueError("split-K candidates must include 1 and be positive")
        return v



def apmm_plan(p: GPUParams, M, N, K, batch, wbits: int, abits: int, tops_b1: float, out_bytes: float = 2.0,
              a_resident=None, b_resident=None, c_resident=None, tiles=None) -> dict[str, np.ndarray]:
    """Price ``wbits`` x ``abits`` GEMMs run as bipolar-INT binary MMAs (APMM, arXiv 2409.17870;
    numerics in :mod:`models.bipolar`): the ``abits`` bit-planes of A stacked along M and the ``wbits``
    planes of B along N make one binary GEMM of (abits*M) x (wbits*N) x K at the b1 tensor-core rate;
    the p*q partial products are recombined with shifts in the epilogue, which writes the M x N output
    at ``out_bytes`` per element.  A is turned into bit-planes by one more kernel that reads it in fp16
    and writes its planes, priced as a stream through L2 plus a launch (none with ``fuse_vector_ops``).
    """
    M, N, K, batch = (np.atleast_1d(np.asarray(x, dtype=np.int64)) for x in (M, N, K, batch))
    r = gemm_plan(p, abits * M, wbits * N, K, batch, 1 / 8, 1 / 8, out_bytes / (abits * wbits), tops_b1,
                  a_resident, b_resident, c_resident, tiles)
    planes = batch * M * K * (2.0 + abits / 8)  # read fp16 activations, write their bit-planes
    launch = 0.0 if p.fuse_vector_ops else p.kernel_overhead_s  # fused into the op before, like other vector ops
    r["time_s"] = r["time_s"] + planes / p.l2_bytes_per_s + launch
    r["l2_bytes"] = r["l2_bytes"] + planes
    return r


def mma_dtype(wbits: int, abits: int, trace_dtype: str = "f16", prefer_fp8: bool = False,
              have: dict | None = None) -> str:
    """The tensor-core path a GEMM at these precisions runs on (see the module docstring)."""
    if abits >= 16:
        key = "bf16" if trace_dtype == "bf16" else "fp16"
        if wbits > 16:
            key = "tf32"
    elif wbits == 1 and abits == 1:
        key = "b1"
    elif max(wbits, abits) <= 4:
        key = "int4"
    elif max(wbits, abits) <= 8:
        key = "fp8" if prefer_fp8 or (have is not None and "int8" not in have and "fp8" in have) else "int8"
    else:
        key = "fp16"
    return key


#: GEMMs planned at once (the candidate search's arrays are GEMMs x candidates)
PLAN_CHUNK = 4096


def gemm_plan(p: GPUParams, M, N, K, batch, a_bytes, b_bytes, c_bytes, tflops: float,
              a_resident=None, b_resident=None, c_resident=None, tiles=None) -> dict[str, np.ndarray]:
    """Price GEMMs C[M,N] = A[M,K] B[K,N] (``batch`` of them) on the GPU, choosing each one's tile
    and split-K by search; arrays in, arrays out (one entry per GEMM).

    ``a_bytes``/``b_bytes``/``c_bytes``: bytes per element; ``tflops``: the MMA dtype's dense peak;
    ``*_resident``: operand may stay in L2 when it fits half of it (default: A and C may, B may not:
    B is weights).  The chosen candidate is the fastest, ties (within 0.1%) going to the least
    padded work.  Returns time_s, the chosen tile (bm, bn, bk, stages), split, waves, ctas,
    compute_s, hbm_s, l2_s, hbm_read, hbm_write, l2_bytes and padded MACs.
    """
    M, N, K, batch = (np.atleast_1d(np.asarray(x, dtype=np.int64)) for x in (M, N, K, batch))
    n = len(M)
    if n > PLAN_CHUNK:  # the search holds a row per GEMM and candidate: bounded memory for long decodes
        parts = []
        for lo in range(0, n, PLAN_CHUNK):
            sl = slice(lo, lo + PLAN_CHUNK)
            pick = lambda x: None if x is None else np.broadcast_to(np.asarray(x), (n,))[sl]  # noqa: E731
            parts.append(gemm_plan(p, M[sl], N[sl], K[sl], batch[sl], pick(a_bytes), pick(b_bytes), pick(c_bytes),
                                   tflops, pick(a_resident), pick(b_resident), pick(c_resident), tiles))
        return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}
    ab = np.broadcast_to(np.asarray(a_bytes, dtype=np.float64), (n,))
    bb = np.broadcast_to(np.asarray(b_bytes, dtype=np.float64), (n,))
    cb = np.broadcast_to(np.asarray(c_bytes, dtype=np.float64), (n,))
    half_l2 = p.l2_bytes / 2
    a_res = np.ones(n, bool) if a_resident is None else np.broadcast_to(a_resident, (n,))
    b_res = np.zeros(n, bool) if b_resident is None else np.broadcast_to(b_resident, (n,))
    c_res = np.ones(n, bool) if c_resident is None else np.broadcast_to(c_resident, (n,))

    A = (batch * M * K * ab).astype(np.float64)
    B = (batch * K * N * bb).astype(np.float64)
    C = (batch * M * N * cb).astype(np.float64)
    a_in_l2 = a_res & (A <= half_l2)
    b_in_l2 = b_res & (B <= half_l2)
    c_in_l2 = c_res & (C <= half_l2)

    sm_flops = tflops * 1e12 / p.sms * p.mma_efficiency
    hbm_bw = p.hbm_bytes_per_s * p.hbm_efficiency
    shapes = [(1, 1)] + ([(p.cluster, 1), (1, p.cluster)] if p.cluster > 1 else [])
    cands = [(t, s, c) for t in (tiles or p.tiles) for s in p.split_k for c in shapes]
    T = np.full((n, len(cands)), np.inf)
    out_cols = {}
    for ci, ((bm, bn, bk, st), s, (cm, cn)) in enumerate(cands):
        tm, tn = _cdiv(M, bm), _cdiv(N, bn)
        k_per = _cdiv(K, s)
        ok = (s == 1) | (k_per >= 2 * bk)  # a split must leave each CTA a pipeline's worth of K
        ok &= (tm >= cm) & (tn >= cn)  # a cluster spans tiles that exist
        kit = _cdiv(k_per, bk)
        ctas = batch * tm * tn * s
        smem = st * (bm + bn) * bk * np.maximum(ab, bb)
        regs = 2 * bm * bn * 4  # fp32 accumulators, and as much again for operand fragments and addressing
        occ = np.minimum.reduce([np.full(len(M), p.max_ctas_per_sm), np.floor(p.smem_per_sm_bytes / smem),
                                 np.full(len(M), p.regs_per_sm_bytes // regs)]).astype(np.int64)
        ok &= occ >= 1
        occ = np.maximum(occ, 1)
        conc = p.sms * occ
        waves = _cdiv(ctas, conc)
        # full waves hold occ CTAs per SM; the block scheduler spreads the last wave's CTAs over the
        # SMs first, so an SM there runs ceil(rest / sms) of them, not occ
        rest = ctas - (waves - 1) * conc
        per_sm = (waves - 1) * occ + _cdiv(rest, p.sms)
        compute = per_sm * 2.0 * bm * bn * bk * kit / sm_flops
        # HBM: compulsory traffic, plus re-reads of an operand too large for L2, once per wave-block
        # of the other operand's tiles (waves rasterized as square-ish blocks of tiles)
        side = np.maximum(1.0, np.sqrt(conc / s))
        wm = np.minimum(tm, np.maximum(1, np.floor(side))).astype(np.int64)
        wn = np.minimum(tn, np.maximum(1, _cdiv(conc // s, wm)))
        a_reads = np.where(A + B <= half_l2, 1, np.where(A > half_l2, _cdiv(tn, wn), 1))
        b_reads = np.where(A + B <= half_l2, 1, np.where(B > half_l2, _cdiv(tm, wm), 1))
        hbm_r = np.where(a_in_l2, 0.0, A * a_reads) + np.where(b_in_l2, 0.0, B * b_reads)
        hbm_w = np.where(c_in_l2, 0.0, C)
        # every CTA reads its A and B slices from L2, except that a cluster of cm CTAs along M reads
        # their common B slice once (TMA multicast), and one of cn along N their common A slice
        l2 = (ctas * kit * bk * (bm * ab / cn + bn * bb / cm) + C
              + np.where(s > 1, 2.0 * s * batch * M * N * 4, 0.0))
        t = (np.maximum.reduce([compute, (hbm_r + hbm_w) / hbm_bw, l2 / p.l2_bytes_per_s])
             + waves * p.mem_latency_s + p.kernel_overhead_s)
        T[:, ci] = np.where(ok, t, np.inf)
        out_cols[ci] = (waves, ctas, compute, hbm_r, hbm_w, l2, batch * tm * bm * tn * bn * kit * bk)
    rows = np.arange(n)
    if not np.isfinite(T.min(axis=1)).all():
        raise SimError("no GEMM tile candidate fits the GPU's shared memory; check tiles and smem_per_sm_bytes")
    stacked = [np.stack([np.broadcast_to(np.asarray(out_cols[c][j], dtype=np.float64), (n,))
                         for c in range(len(cands))]) for j in range(7)]
    # the fastest candidate; among those within 0.1% of it, the one with the least padded work (a
    # memory-bound flat GEMM takes the narrowest tile rather than the first listed)
    near = T <= T.min(axis=1, keepdims=True) * (1 + 1e-3)
    best = np.argmin(np.where(near, stacked[6].T, np.inf), axis=1)
    pick = lambda j: stacked[j][best, rows]  # noqa: E731
    tiles = np.array([list(t) for t, _, _ in cands], dtype=np.int64)[best]
    hbm_r, hbm_w, l2 = pick(3), pick(4), pick(5)
    return {
        "time_s": T[rows, best], "bm": tiles[:, 0], "bn": tiles[:, 1], "bk": tiles[:, 2], "stages": tiles[:, 3],
        "split": np.array([s for _, s, _ in cands], dtype=np.int64)[best],
        "cluster": np.array([max(c) for _, _, c in cands], dtype=np.int64)[best],
        "waves": pick(0).astype(np.int64), "ctas": pick(1).astype(np.int64), "compute_s": pick(2),
        "hbm_s": (hbm_r + hbm_w) / hbm_bw, "l2_s": l2 / p.l2_bytes_per_s,
        "hbm_read": hbm_r, "hbm_write": hbm_w, "l2_bytes": l2, "padded_macs": pick(6),
    }


@register
class GPU(Target):
    name = "gpu"
    Params = GPUParams

    def rate(self, key: str) -> float:
        try:
            return float(self.params.tensor_tflops[key])
        except KeyError:
            have = ", ".join(sorted(self.params.tensor_tflops))
            raise SimError(f"this GPU has no {key} tensor-core path (it has {have})") from None

    def tiles_for(self, key: str) -> list[list[int]]:
        return self.params.tiles_by_dtype.get(key, self.params.tiles)

    def mma_key(self, wbits: int, abits: int, trace_dtype: str = "f16") -> str:
        return mma_dtype(wbits, abits, trace_dtype, self.params.prefer_fp8, self.params.tensor_tflops)

    def peak_macs_per_cycle(self, wbits: int, abits: int) -> float:
        if self.params.arbitrary_precision and max(wbits, abits) <= 8:
            return self.rate("b1") * 1e12 / 2 / self.freq_hz / (wbits * abits)
        return self.rate(self.mma_key(wbits, abits)) * 1e12 / 2 / self.freq_hz

    @property
    def host(self) -> Host:
        """Per dispatched op: ``kernel_overhead_s`` (the device-side gap per kernel), and with a runtime's
        ``host`` figures the host as its own stream (queued ahead of the GPU: ``overlap``)."""
        return Host.stated(self, "kernel_overhead_s")

    @property
    def memory(self) -> Memory:
        """The HBM: ``hbm_bytes`` at ``hbm_bytes_per_s`` peak, ``hbm_efficiency`` of it streamed."""
        p = self.params
        return Memory(bytes_per_s=p.hbm_bytes_per_s, capacity_bytes=p.hbm_bytes, efficiency=p.hbm_efficiency,
                      latency_s=p.mem_latency_s,
                      source=param_source(self, "hbm_bytes", "hbm_bytes_per_s", "hbm_efficiency", "mem_latency_s"))

    @property
    def link(self) -> Link | None:
        """The GPU-to-GPU link of tensor-parallel collectives (``link_bytes_per_s`` per direction at
        ``link_efficiency``, each collective ``collective_latency_s``), or None where the file gives none."""
        p = self.params
        if p.link_bytes_per_s is None:
            return None
        return Link(p.link_bytes_per_s * p.link_efficiency, p.collective_latency_s,
                    source=param_source(self, "link_bytes_per_s", "link_efficiency", "collective_latency_s"))

    @property
    def p2p_latency_s(self) -> float:
        p = self.params
        return p.collective_latency_s if p.p2p_latency_s is None else p.p2p_latency_s

    @property
    def gpus_per_node(self) -> int:
        return self.params.gpus_per_node

    @property
    def network(self) -> Link | None:
        """The link between nodes, per GPU (``network_bytes_per_s``, ``network_latency_s``), or None."""
        p = self.params
        if p.network_bytes_per_s is None:
            return None
        return Link(p.network_bytes_per_s, p.network_latency_s,
                    source=param_source(self, "network_bytes_per_s", "network_latency_s"))

    def dram_bytes_per_cycle(self) -> float:
        return self.memory.bytes_per_cycle(self.freq_hz)

    def cost(self, ops: OpArrays | pd.DataFrame, precision: Precision) -> Costs:
        trace_dtype = "f16"
        if isinstance(ops, pd.DataFrame):
            trace_dtype = str(ops.attrs.get("dtype", "fp16")).replace("fp16", "f16")
            ops = OpArrays.from_frame(ops)
        p = self.params
        wbits, abits, kvb, wsb = (precision.weight_bits, precision.act_bits, precision.kv_bits,
                                  precision.weight_storage_bits)
        n = len(ops)
        kind = ops.kind
        rd, wr = ops.bytes_read.astype(np.float64), ops.bytes_written.astype(np.float64)
        wt, kvr = ops.weight_bytes.astype(np.float64), ops.kv_bytes_read.astype(np.float64)
        kvw = ops.kv_bytes_written.astype(np.float64)
        storage = ops.storage_bytes
        wscale, ascale, kvscale = precision.scales(storage)

        time_s = np.zeros(n)
        math_s = np.zeros(n)
        hbm_r = np.zeros(n)
        hbm_w = np.zeros(n)
        l2b = np.zeros(n)
        macs = np.zeros(n, np.int64)
        tensor_macs = np.zeros(n)
        vec_flops = np.zeros(n)
        half_l2 = p.l2_bytes / 2

        is_mm = (kind == "gemm") | (kind == "attn_matmul") | (kind == "ternary_gemm")
        i = np.flatnonzero(is_mm)
        if len(i):
            m, nn, k, b = ops.gemm_m[i], ops.gemm_n[i], ops.gemm_k[i], ops.gemm_batch[i]
            macs[i] = b * m * nn * k
            for group in ("gemm", "ternary_gemm", "attn_matmul"):
                sel = np.flatnonzero(kind[i] == group)
                if not len(sel):
                    continue
                is_g = group != "attn_matmul"
                # weight GEMMs at the run's precision; a ternary GEMM (a BitLinear) at 8-bit activations on
                # the INT8 path, its weights streamed at 2 bits; attention at the KV precision
                wb, ab, w_store = {"gemm": (wbits, abits, wsb), "ternary_gemm": (2, 8, 2),
                                   "attn_matmul": (kvb, abits, kvb)}[group]
                key = self.mma_key(8 if group == "ternary_gemm" else wb, ab, trace_dtype)
                apmm = bool(is_g and p.arbitrary_precision and max(wb, ab) <= 8)
                idx = i[sel]
                a_el = ops.a_elems[idx]
                # B per batch entry: weights (shared by the batch: one copy), or K/V / activations
                b_trace = (wt[idx] * w_store / (8 * storage[idx]) if is_g
                           else (rd[idx] - a_el * storage[idx]) * kvscale[idx])
                # bytes per B element: the weight width, or (attention) what the trace reads of K/V per
                # element of every batch entry's B (GQA: heads sharing a KV head read it once)
                b_el = (np.full(len(sel), w_store / 8) if is_g
                        else np.maximum(b_trace, 0.0) / np.maximum(1, b[sel] * k[sel] * nn[sel]))
                b_is_act = np.zeros(len(sel), bool) if is_g else kvr[idx] == 0  # a fresh K/V in prefill
                if apmm:
                    plan = apmm_plan(p, m[sel], nn[sel], k[sel], b[sel], wb, ab, self.rate("b1"),
                                     tiles=self.tiles_for("b1"))
                    # energy: a binary MAC priced as the fp16 MAC scaled by operand bits, (1 x 1) / (16 x 16)
                    mac_scale = 1 / 256
                else:
                    plan = gemm_plan(p, m[sel], nn[sel], k[sel], b[sel], ab / 8, b_el, ab / 8, self.rate(key),
                                     b_resident=b_is_act, tiles=self.tiles_for(key))
                    mac_scale = min(wb, 16) * min(ab, 16) / 256
                time_s[idx] = plan["time_s"]
                math_s[idx] = plan["compute_s"]
                hbm_r[idx] = plan["hbm_read"]
                hbm_w[idx] = plan["hbm_write"]
                l2b[idx] = plan["l2_bytes"]
                tensor_macs[idx] = plan["padded_macs"] * mac_scale

        j = np.flatnonzero(~is_mm & (kind != "view"))
        if len(j):
            act = (rd[j] - wt[j] - kvr[j]) * ascale[j] + (wr[j] - kvw[j]) * ascale[j]
            dram_fixed = wt[j] * wscale[j] + kvr[j] * kvscale[j] + kvw[j] * kvscale[j]
            act_in_l2 = act <= half_l2
            hbm = dram_fixed + np.where(act_in_l2, 0.0, act)
            hbm_r[j] = wt[j] * wscale[j] + kvr[j] * kvscale[j] + np.where(act_in_l2, 0.0, (rd[j] - wt[j] - kvr[j])
                                                                        * ascale[j])
            hbm_w[j] = hbm - hbm_r[j]
            l2b[j] = act + dram_fixed
            vec_flops[j] = ops.flops[j]
            t = np.maximum.reduce([hbm / (p.hbm_bytes_per_s * p.hbm_efficiency), l2b[j] / p.l2_bytes_per_s,
                                   vec_flops[j] / (p.vector_tflops * 1e12)])
            time_s[j] = t + (0.0 if p.fuse_vector_ops else p.kernel_overhead_s)
            math_s[j] = vec_flops[j] / (p.vector_tflops * 1e12)

        busy = time_s > 0
        cycles = np.ceil(time_s * p.freq_hz).astype(np.int64)
        mem = np.ceil((hbm_r + hbm_w) / (p.hbm_bytes_per_s * p.hbm_efficiency) * p.freq_hz).astype(np.int64)
        zeros = np.zeros(n, np.int64)
        return Costs(
            n_tiles=busy.astype(np.int64), load_cycles=zeros, compute_cycles=cycles, store_cycles=zeros.copy(),
            tile_bytes=zeros.copy(), prefetch=np.ones(n, bool), dram_read_bytes=np.rint(hbm_r).astype(np.int64),
            dram_write_bytes=np.rint(hbm_w).astype(np.int64), macs=macs,
            actions={"tensor.mac": tensor_macs, "vector.flop": vec_flops.astype(np.float64), "l2.byte": l2b,
                     "hbm.read": hbm_r, "hbm.write": hbm_w},
            buffer_bytes=0, mem_cycles=mem, math_cycles=np.ceil(math_s * p.freq_hz).astype(np.int64))
