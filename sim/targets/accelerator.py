"""The generic accelerator template: a PE array, weight and activation buffers, DRAM, a clock.

Mapping (output-stationary, as the BitMoD simulator maps GEMMs; see
``configs/targets/bitmod_fp16_baseline.yaml`` for sources): a GEMM C[M,N] += A[M,K] B[K,N]
(B: the weights, or K/V for attention) runs on a ``pe_rows`` x ``pe_cols`` array whose rows hold
output channels (N), columns hold tokens (M), and each PE reduces ``dp`` products along K per step.
A step takes ``pe_latency[w<bits>a<bits>]`` cycles (1 for bit-parallel PEs; bit-serial PEs take
more per weight precision; see precision below).  So

    compute_cycles = batch * ceil(M / pe_cols) * ceil(N / pe_rows) * ceil(K / dp) * latency

Data movement, per GEMM: the schedule that moves the fewest DRAM bytes among three standard loop
orders (a compiler's choice, per GEMM; on a tie the first, then the one with less partial-sum
traffic).  B (weights or K/V) that is not a weight and not KV cache (a fresh K in prefill) is on
chip when it fits half the activation buffer; A (activations) that fits half the activation buffer
is already on chip, written there by the op before; C is written to DRAM when it does not fit
half the activation buffer, otherwise kept on chip.

(a) weight blocks outside, tokens inside: B is streamed from DRAM once.  A block of ``pe_rows`` x
    K elements is one tile; if it does not fit half the weight buffer (double buffering) it is
    split along K into tiles that do.  A that does not fit is read from DRAM once per block of
    output channels whose weights fit half the weight buffer together (at least one array-row
    block: narrow weights make wider blocks and fewer re-reads).  Partial sums stay in the PEs
    (output-stationary) while a block's K is in one tile.  A block split along K processes the
    tokens in chunks whose fp32 partial sums fit half the activation buffer (a whole number of
    token blocks, at least one), streaming all K-parts per chunk: B is fetched once per chunk
    (once, when all tokens fit), and the partial sums are written and read back between K-parts.
(b) output tiles outside, K inside: an output tile of Tm tokens x Tn channels (whole token and
    array-row blocks) keeps its fp32 partial sums in one half of the activation buffer while K
    streams by in slices: A slices (Tm x kt) double-buffered in the other half, B slices
    (kt x Tn) in half the weight buffer.  A is read once per Tn-wide block of channels, B once per
    Tm-token chunk; the partial sums are written and read back between K-slices.  Tm, Tn: the
    fewest DRAM bytes; kt: the largest the buffers allow.
(c) token chunks outside: a chunk of Tm tokens x K of A (a whole number of token blocks) stays in
    half the activation buffer while all of B streams by (as in (a)): A is read once, B once per
    chunk.  A chunk of more than one token block needs a ``pe_rows`` block of B to fit half the
    weight buffer (its partial sums stay in the PEs).

Every other op (elementwise, norms, softmax, copies, embedding gathers) runs on a vector unit of
``vector_lanes`` lanes, one element-op per lane per cycle, with the same residency rule for its
activations; the KV cache and the weights it reads (norm scales, embedding rows) are in DRAM.
Views cost nothing.

DRAM moves ``dram_bits_per_cycle``; each tile's load pays ``dram_latency_cycles`` once (a burst
of outstanding requests).  Precision: the trace's bytes are at its storage dtype; weights are
scaled to ``weight_storage_bits`` (the weight precision plus its per-group metadata, e.g. 4.078 for BitMoD),
activations to ``act_bits`` and the KV cache to ``kv_bits``.  A GEMM steps at the latency of its
weight precision (``pe_latency['w<weight_bits>a<act_bits>']``), an attention matmul at that of
the KV precision (``'w<kv_bits>a<act_bits>'``): bit-serial PEs take more steps for wider K/V.

Action counts for energy: ``pe_array.pe_cycle`` (all PEs, every compute cycle of the array),
``weight_buffer.read/write`` and ``act_buffer.read/write`` (bytes; the array re-reads each weight
once per token block and each activation once per output-channel block), ``dram.read/write``
(bytes), ``vector.op`` (element-ops).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from models.errors import SimError
from sim.targets import register
from sim.targets.base import Costs, OpArrays, Target
from sim.targets.base import cdiv as _ceil
from sim.targets.parts import Memory, Precision, param_source


class AcceleratorParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    pe_rows: int = Field(gt=0, description="array rows: output channels (N) in parallel")
    pe_cols: int = Field(gt=0, description="array columns: tokens (M) in parallel")
    dp: int = Field(1, gt=0, description="products each PE reduces per step (along K)")
    pe_latency: dict[str, PositiveInt] = Field(default_factory=lambda: {"w16a16": 1},
                                       description="cycles per step, by precision 'w<bits>a<bits>'")
    weight_buffer_bytes: int = Field(gt=0)
    act_buffer_bytes: int = Field(gt=0)
    dram_bits_per_cycle: int = Field(gt=0)
    dram_latency_cycles: int = Field(0, ge=0)
    vector_lanes: int = Field(gt=0, description="element-ops per cycle of the vector unit")
    freq_hz: float = Field(gt=0)
    node_nm: int = Field(gt=0)

    @property
    def pes(self) -> int:
        return self.pe_rows * self.pe_cols



@register
class Accelerator(Target):
    name = "accelerator"
    Params = AcceleratorParams

    def latency(self, wbits: int, abits: int) -> int:
        key = f"w{wbits}a{abits}"
        try:
            return int(self.params.pe_latency[key])
        except KeyError:
            have = ", ".join(sorted(self.params.pe_latency))
            raise SimError(f"target {self.name!r} has no PE latency for {key} (it has {have})") from None

    def peak_macs_per_cycle(self, wbits: int, abits: int) -> float:
        return self.params.pes * self.params.dp / self.latency(wbits, abits)

    @property
    def memory(self) -> Memory:
        """The DRAM: ``dram_bits_per_cycle`` at ``freq_hz``, ``dram_latency_cycles`` per tile load (capacity
        not modelled)."""
        p = self.params
        return Memory(bytes_per_s=p.dram_bits_per_cycle / 8 * p.freq_hz, latency_s=p.dram_latency_cycles / p.freq_hz,
                      source=param_source(self, "dram_bits_per_cycle", "freq_hz", "dram_latency_cycles"))

    def dram_bytes_per_cycle(self) -> float:
        return self.params.dram_bits_per_cycle / 8  # per cycle natively (memory.bytes_per_cycle may round)

    def cost(self, ops: OpArrays | pd.DataFrame, precision: Precision) -> Costs:
        ops = OpArrays.of(ops)
        p = self.params
        wbits, abits, kvb, wsb = (precision.weight_bits, precision.act_bits, precision.kv_bits,
                                  precision.weight_storage_bits)
        n = len(ops)
        kind = np.where(ops.kind == "ternary_gemm", "gemm", ops.kind)  # ternary: a GEMM at the run's precision
        # trace bytes at storage width -> hardware width (weights with their metadata)
        storage = ops.storage_bytes
        wscale, ascale, kvscale = precision.scales(storage)

        rd = ops.bytes_read.astype(np.float64)
        wr = ops.bytes_written.astype(np.float64)
        wt = ops.weight_bytes.astype(np.float64)
        kvr = ops.kv_bytes_read.astype(np.float64)
        kvw = ops.kv_bytes_written.astype(np.float64)
        M, N, K, B = ops.gemm_m, ops.gemm_n, ops.gemm_k, ops.gemm_batch

        is_mm = (kind == "gemm") | (kind == "attn_matmul")
        is_vec = ~is_mm & (kind != "view")
        half_w = p.weight_buffer_bytes // 2
        half_a = p.act_buffer_bytes // 2

        n_tiles = np.zeros(n, np.int64)
        compute = np.zeros(n, np.int64)
        load_b = np.zeros(n, np.float64)
        store_b = np.zeros(n, np.float64)
        tile_bytes = np.zeros(n, np.int64)
        prefetch = np.ones(n, bool)
        macs = np.zeros(n, np.int64)
        wbuf_rd = np.zeros(n, np.float64)
        wbuf_wr = np.zeros(n, np.float64)
        abuf_rd = np.zeros(n, np.float64)
        abuf_wr = np.zeros(n, np.float64)
        vec_ops = np.zeros(n, np.float64)
        pe_cycles = np.zeros(n, np.float64)

        # ---- GEMMs and attention matmuls on the array ----
        i = np.flatnonzero(is_mm)
        if len(i):
            m, nn, k, b = M[i], N[i], K[i], B[i]
            gemm = kind[i] == "gemm"
            el_w = np.where(gemm, wsb / 8, kvb / 8)  # bytes per B element: weights, or K/V
            el_a = abits / 8
            # B operand bytes: weights, else the attention operand (unique elements: GQA shares K/V)
            a_elems = ops.a_elems[i]
            a_bytes = a_elems * el_a
            b_trace = np.where(gemm, wt[i] * wscale[i], (rd[i] - a_elems * storage[i]) * kvscale[i])
            b_in_dram = (kind[i] == "gemm") | (kvr[i] > 0) | (b_trace > half_a)
            m_blocks = _ceil(m, p.pe_cols)
            n_blocks = _ceil(nn, p.pe_rows)
            k_steps = _ceil(k, p.dp)
            steps = b * m_blocks * n_blocks * k_steps
            # weights step at the weight precision, K/V (attention) at the KV precision
            lat = np.where(gemm, self.latency(wbits, abits),
                           self.latency(kvb, abits) if (~gemm).any() else 1)
            compute[i] = steps * lat
            macs[i] = b * m * nn * k
            pe_cycles[i] = compute[i] * p.pes
            # tiles: a block of pe_rows output channels x K, split along K to fit half the buffer
            rows = np.minimum(nn, p.pe_rows)
            block = rows * k * el_w
            k_parts = np.maximum(1, _ceil(np.ceil(block).astype(np.int64), half_w))
            # a block split along K keeps the fp32 partial sums of a chunk of tokens in the activation
            # buffer while its K-parts stream by: chunks as large as half the buffer holds (a whole
            # number of token blocks, at least one); B is fetched once per chunk
            m_chunk = np.maximum(p.pe_cols, (half_a // (rows * 4)) // p.pe_cols * p.pe_cols)
            chunks = np.where(k_parts > 1, _ceil(m, m_chunk), 1)
            psum_traffic = np.where(k_parts > 1, 2 * rows * m * 4.0 * (k_parts - 1) * n_blocks * b, 0.0)
            # a bias (addmm) is read once, into the accumulators: not part of the streamed tiles
            bias = np.where(kind[i] == "gemm", np.maximum(0.0, b_trace - b * k * nn * el_w), 0.0)
            b_dram = np.where(b_in_dram, (b_trace - bias) * chunks + bias, 0.0)
            # A that does not fit is re-read once per block of output channels whose weights fit half
            # the weight buffer together: several array-row blocks when the weights are narrow
            nt = np.where(k_parts > 1, p.pe_rows,
                          np.maximum(p.pe_rows, half_w // np.maximum(1, np.ceil(k * el_w).astype(np.int64))))
            spill = a_bytes > half_a
            a_dram = np.where(spill, a_bytes * _ceil(nn, nt), 0.0)
            # the schedule with the fewest DRAM bytes: (a) above, (b) output tiles over K, (c) token chunks
            b_stream = np.where(b_in_dram, b_trace - bias, 0.0)
            b_fix = np.where(b_in_dram, bias, 0.0)
            dram = b_dram + a_dram
            tiles = b * n_blocks * k_parts * chunks
            # (b): Tm x Tn fp32 partial sums in half the activation buffer, K streamed in slices of kt
            ew = np.asarray(el_w, np.float64)
            jmax = int(min(m_blocks.max(), max(1, half_a // (4 * p.pe_rows * p.pe_cols))))
            for jj in range(1, jmax + 1):
                tm = np.minimum(jj * p.pe_cols, m)
                tn = np.minimum(n_blocks * p.pe_rows, (half_a // (4 * tm)) // p.pe_rows * p.pe_rows)
                tn_e = np.minimum(tn, nn)
                kt = np.minimum(np.minimum(k, (half_a // 2) // np.ceil(tm * el_a).astype(np.int64)),
                                np.floor(half_w / np.maximum(tn_e * ew, 1e-9)).astype(np.int64))
                kt = np.where(kt < k, kt // p.dp * p.dp, kt)
                ok = (tn >= p.pe_rows) & (kt >= 1)
                kt = np.maximum(kt, 1)
                s_k = _ceil(k, kt)
                d_b = np.where(spill, a_bytes * _ceil(nn, np.maximum(tn, 1)), 0.0) + b_stream * _ceil(m, tm) + b_fix
                ps_b = 2 * b * m * nn * 4.0 * (s_k - 1)
                take = ok & ((d_b < dram * (1 - 1e-12)) | ((d_b <= dram) & (ps_b < psum_traffic)))
                dram = np.where(take, d_b, dram)
                psum_traffic = np.where(take, ps_b, psum_traffic)
                tiles = np.where(take, b * _ceil(m, tm) * _ceil(nn, np.maximum(tn, 1)) * s_k, tiles)
                b_dram = np.where(take, b_stream * _ceil(m, tm) + b_fix, b_dram)
                a_dram = np.where(take, dram - b_dram, a_dram)
            # (c): a chunk of Tm tokens x K of A resident in half the activation buffer, B streamed per chunk
            tm = (half_a // np.ceil(k * el_a).astype(np.int64)) // p.pe_cols * p.pe_cols
            tm = np.where((k_parts > 1) & (tm >= p.pe_cols), p.pe_cols, tm)
            ok = tm >= p.pe_cols
            tm = np.minimum(np.maximum(tm, 1), m)
            d_c = np.where(spill, a_bytes, 0.0) + b_stream * _ceil(m, tm) + b_fix
            take = ok & ((d_c < dram * (1 - 1e-12)) | ((d_c <= dram) & (psum_traffic > 0)))
            dram = np.where(take, d_c, dram)
            psum_traffic = np.where(take, 0.0, psum_traffic)
            tiles = np.where(take, b * _ceil(m, tm) * n_blocks * k_parts, tiles)
            b_dram = np.where(take, b_stream * _ceil(m, tm) + b_fix, b_dram)
            a_dram = np.where(take, np.where(spill, a_bytes, 0.0), a_dram)
            n_tiles[i] = tiles
            out_bytes = wr[i] * ascale[i]
            c_dram = np.where(out_bytes > half_a, out_bytes, 0.0)
            load_b[i] = b_dram + a_dram
            store_b[i] = c_dram
            tile_bytes[i] = np.minimum(np.ceil(np.maximum(b_dram - bias, 0) / n_tiles[i]),
                                       p.weight_buffer_bytes).astype(np.int64)
            prefetch[i] = a_dram == 0
            wbuf_wr[i] = b_dram
            wbuf_rd[i] = steps * np.minimum(nn, p.pe_rows) * np.minimum(k, p.dp) * el_w
            abuf_rd[i] = steps * np.minimum(m, p.pe_cols) * np.minimum(k, p.dp) * el_a
            abuf_rd[i] += psum_traffic / 2
            abuf_wr[i] = np.where(c_dram > 0, 0.0, out_bytes) + a_dram + psum_traffic / 2

        # ---- everything else on the vector unit ----
        j = np.flatnonzero(is_vec)
        if len(j):
            flops = ops.flops[j]
            out_el = (wr[j] / storage[j]).astype(np.int64)
            elems = np.maximum(flops, out_el)
            compute[j] = _ceil(elems, p.vector_lanes)
            vec_ops[j] = elems
            act_in = (rd[j] - wt[j] - kvr[j]) * ascale[j]
            act_out = (wr[j] - kvw[j]) * ascale[j]
            spill = (act_in + act_out) > half_a
            ld = wt[j] * wscale[j] + kvr[j] * kvscale[j] + np.where(spill, act_in, 0.0)
            st = kvw[j] * kvscale[j] + np.where(spill, act_out, 0.0)
            load_b[j] = ld
            store_b[j] = st
            n_tiles[j] = np.maximum(1, _ceil(np.ceil(np.maximum(ld, st)).astype(np.int64), half_a))
            tile_bytes[j] = np.minimum(np.ceil(ld / n_tiles[j]), p.weight_buffer_bytes).astype(np.int64)
            prefetch[j] = ~spill
            abuf_rd[j] = act_in
            abuf_wr[j] = act_out

        bpc = p.dram_bits_per_cycle / 8
        load_cycles = np.where(load_b > 0, np.ceil(load_b / bpc) + n_tiles * p.dram_latency_cycles, 0).astype(np.int64)
        store_cycles = np.ceil(store_b / bpc).astype(np.int64)
        return Costs(
            n_tiles=n_tiles, load_cycles=load_cycles, compute_cycles=compute, store_cycles=store_cycles,
            tile_bytes=tile_bytes, prefetch=prefetch, dram_read_bytes=np.ceil(load_b).astype(np.int64),
            dram_write_bytes=np.ceil(store_b).astype(np.int64), macs=macs,
            actions={
                "pe_array.pe_cycle": pe_cycles,
                "weight_buffer.read": wbuf_rd, "weight_buffer.write": wbuf_wr,
                "act_buffer.read": abuf_rd, "act_buffer.write": abuf_wr,
                "dram.read": load_b, "dram.write": store_b,
                "vector.op": vec_ops,
            },
            buffer_bytes=p.weight_buffer_bytes,
        )
