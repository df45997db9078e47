"""An ET-SoC-1-class many-core chip: shires of RISC-V minions with tensor units, shire SRAM, a mesh,
LPDDR4x; each op simulated with SimPy at shire granularity.

Work distribution (one op at a time, all shires together, a chip-wide barrier between ops):

- **GEMMs** (weights or K/V in DRAM): the N output columns are split evenly over the shires; each
  shire streams its slice of B from DRAM into its scratchpad in chunks of half the scratchpad
  (double-buffered: the next chunk loads while the minions compute on this one), reads the A operand
  (activations, from the L3 slices) once, and its 32 minions compute at the tensor unit's rate for
  the dtype times the measured matmul efficiency.  A chunk's load holds one DRAM channel (of
  ``dram_channels``, each ``dram_bytes_per_s / dram_channels``) and the shire's mesh link
  (``noc_bytes_per_s``) for its transfer, after ``hops`` x ``hop_latency_s``: when shires outnumber
  channels they queue, so contention on DRAM and the mesh shows in the op's time (SimPy).
- **Everything else** (elementwise, norms, softmax, copies) runs on all minions' vector units from
  the L2/L3 (activations) at ``vector_ops_per_cycle`` per minion; parameters come from DRAM.
- every op pays ``op_overhead_s`` (dispatch and the barrier).

Precision: a GEMM runs int8 when both weights and activations are 8 bits or fewer, else fp16 (fp32
at 32 bits).  Voltage and frequency: ``freq_hz`` picks the minion rail's voltage from ``dvfs``
(linear between points, extrapolated at the ends, never below ``v_min``; above ``v_max`` is an
error).  Only what the minion rail feeds follows it: the minions' dynamic energies (tensor and
vector units, their L1), measured at ``v_ref``, scale with (V / v_ref)^2, and the static power of
the energy table's ``minion_rail`` component with (V / v_ref)^``static_exponent`` (the target
reports that factor per component as :attr:`ETSoC.static_scale`; :func:`sim.targets.build` scales
the table by it).  The shire SRAM (L2, L3), the mesh and the LPDDR4x have rails and clocks of their
own that DVFS leaves alone (the cards' telemetry meters the minion, SRAM and mesh rails
separately; DDR and NoC clocks are fixed), so their energies and the ``board`` static power do not
scale.

Energy of a DRAM byte: the table's ``dram.byte`` was measured as board power over bytes of tensor
loads from DRAM, so it covers the whole path (PHY, controller, mesh, L3/L2 fills, the issuing
minions).  Bytes read from DRAM pay it alone; the mesh, L2 and L1 actions count activations only.

Time is in cycles of ``freq_hz``.  Actions (in energy at ``v_ref``, scaled as above): ``compute.mac_int8``,
``compute.mac_fp16``, ``compute.mac_fp32``, ``compute.vector_op``, ``l1.byte``, ``l3.byte``,
``dram.byte``, ``network.byte_hop``; and ``minion_rail.second`` / ``board.second``, not actions but
the seconds of each op (as simulated, before rounding to cycles) over which the table prices those
components' static power (:mod:`sim.energy`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import simpy
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.errors import SimError
from sim.targets import register
from sim.targets.base import Costs, OpArrays, Target
from sim.targets.parts import Host, Memory, Precision, param_source


class ETSoCParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    shires: int = Field(gt=0, description="compute shires")
    minions_per_shire: int = Field(gt=0)
    freq_hz: float = Field(gt=0)
    dvfs: list[list[float]] = Field(description="[frequency Hz, minion-rail volts] points")
    v_ref: float = Field(gt=0, description="voltage the energy table was measured at")
    v_min: float = Field(gt=0, description="lowest rail voltage: lower frequencies keep it")
    v_max: float = Field(gt=0, description="highest rail voltage: a frequency that needs more is refused")
    static_exponent: float = Field(ge=0, description="the minion rail's static power ~ V^exponent")
    tensor_ops_per_cycle: dict[str, float] = Field(description="per minion: int8, fp16, fp32 (2 per MAC)")
    mm_efficiency: dict[str, float] = Field(description="measured fraction of the tensor peak per dtype")
    vector_ops_per_cycle: float = Field(gt=0, description="per minion, element-ops of the vector unit")
    l1_bytes: int = Field(gt=0, description="L1 data cache per minion")
    scratchpad_bytes: int = Field(gt=0, description="scratchpad per shire")
    l3_bytes: int = Field(gt=0, description="L3 on chip (all shires)")
    dram_bytes_per_s: float = Field(gt=0)
    dram_channels: int = Field(gt=0)
    noc_bytes_per_s: float = Field(gt=0, description="one shire's mesh link")
    hop_latency_s: float = Field(ge=0)
    mesh_columns: int = Field(gt=0, description="shire columns between the memory edges (hops to memory)")
    op_overhead_s: float = Field(ge=0)
    node_nm: int = Field(gt=0)

    @field_validator("dvfs")
    @classmethod
    def _dvfs(cls, v):
        if not v or any(len(p) != 2 or p[0] <= 0 or p[1] <= 0 for p in v):
            raise ValueError("dvfs: a list of [frequency Hz, volts] points")
        return sorted(v)

    @field_validator("tensor_ops_per_cycle", "mm_efficiency")
    @classmethod
    def _dtypes(cls, v):
        if set(v) != {"int8", "fp16", "fp32"} or any(x <= 0 for x in v.values()):
            raise ValueError("give int8, fp16 and fp32, each positive")
        return v

    @property
    def voltage(self) -> float:
        """The rail voltage at ``freq_hz``: the V/f points, linear between them and extrapolated beyond,
        held at ``v_min`` below it; a frequency that needs more than ``v_max`` is an error."""
        f = np.array([p[0] for p in self.dvfs])
        v = np.array([p[1] for p in self.dvfs])
        if len(f) == 1:
            out = float(v[0])
        elif self.freq_hz <= f[0]:
            out = float(v[0] + (self.freq_hz - f[0]) * (v[1] - v[0]) / (f[1] - f[0]))
        elif self.freq_hz >= f[-1]:
            out = float(v[-1] + (self.freq_hz - f[-1]) * (v[-1] - v[-2]) / (f[-1] - f[-2]))
        else:
            out = float(np.interp(self.freq_hz, f, v))
        if out > self.v_max + 1e-9:
            raise SimError(f"{self.freq_hz / 1e6:.0f} MHz needs {out:.3f} V, above the rail's {self.v_max} V limit")
        return max(out, self.v_min)



def shire_hops(p: ETSoCParams) -> np.ndarray:
    """Mesh hops from each shire to the nearer memory edge: shires fill ``mesh_columns`` columns
    between memory controllers on the left and right edges."""
    col = np.arange(p.shires) % p.mesh_columns
    return np.minimum(col + 1, p.mesh_columns - col).astype(np.int64)


_SIM_CACHE: dict = {}


def simulate_gemm(p: ETSoCParams, b_bytes_per_shire: float, macs_per_shire: float, rate: float,
                  params_key: str | None = None) -> float:
    """:func:`_simulate_gemm`, memoized (a trace repeats the same GEMMs layer after layer); callers in a
    loop pass ``params_key`` (``p.model_dump_json()``) once instead of serializing ``p`` per GEMM."""
    key = (params_key or p.model_dump_json(), round(b_bytes_per_shire, 3), round(macs_per_shire, 3), rate)
    hit = _SIM_CACHE.get(key)
    if hit is None:
        if len(_SIM_CACHE) > 20000:
            _SIM_CACHE.clear()
        hit = _SIM_CACHE[key] = _simulate_gemm(p, b_bytes_per_shire, macs_per_shire, rate)
    return hit


def _simulate_gemm(p: ETSoCParams, b_bytes_per_shire: float, macs_per_shire: float, rate: float) -> float:
    """Seconds for every shire to stream its slice of B (``b_bytes_per_shire``) and compute
    ``macs_per_shire`` MACs at ``rate`` MACs/s per shire, sharing the DRAM channels (SimPy)."""
    env = simpy.Environment()
    channels = simpy.Resource(env, capacity=p.dram_channels)
    chan_bw = p.dram_bytes_per_s / p.dram_channels
    bw = min(chan_bw, p.noc_bytes_per_s)
    chunk = max(1.0, p.scratchpad_bytes / 2)
    n_chunks = max(1, int(np.ceil(b_bytes_per_shire / chunk)))
    per_chunk = b_bytes_per_shire / n_chunks
    compute_chunk = macs_per_shire / n_chunks / rate
    hops = shire_hops(p)
    ends = []

    def shire(h):
        loaded = simpy.Store(env, capacity=1)  # double buffering: one chunk ahead

        def loader():
            for _ in range(n_chunks):
                with channels.request() as req:
                    yield req
                    yield env.timeout(h * p.hop_latency_s + per_chunk / bw)
                yield loaded.put(1)

        env.process(loader())
        for _ in range(n_chunks):
            yield loaded.get()
            yield env.timeout(compute_chunk)
        ends.append(env.now)

    for h in hops:
        env.process(shire(int(h)))
    env.run()
    return float(max(ends)) if ends else 0.0


@register
class ETSoC(Target):
    name = "etsoc"
    Params = ETSoCParams

    def _dtype(self, wbits: int, abits: int) -> str:
        if max(wbits, abits) <= 8:
            return "int8"
        return "fp32" if max(wbits, abits) > 16 else "fp16"

    def shire_mac_rate(self, dtype: str) -> float:
        p = self.params
        return p.minions_per_shire * p.tensor_ops_per_cycle[dtype] / 2 * p.mm_efficiency[dtype] * p.freq_hz

    def peak_macs_per_cycle(self, wbits: int, abits: int) -> float:
        p = self.params
        return p.shires * p.minions_per_shire * p.tensor_ops_per_cycle[self._dtype(wbits, abits)] / 2

    @property
    def host(self) -> Host:
        """Per dispatched op: ``op_overhead_s`` (an op's dispatch and the chip-wide barrier)."""
        return Host(dispatch_s=self.params.op_overhead_s, source=param_source(self, "op_overhead_s"))

    @property
    def memory(self) -> Memory:
        """The LPDDR: ``dram_bytes_per_s`` over ``dram_channels`` (capacity not modelled)."""
        p = self.params
        return Memory(bytes_per_s=p.dram_bytes_per_s, channels=p.dram_channels,
                      source=param_source(self, "dram_bytes_per_s", "dram_channels"))

    def dram_bytes_per_cycle(self) -> float:
        return self.memory.bytes_per_cycle(self.params.freq_hz)

    @property
    def static_scale(self) -> dict[str, float]:
        """Static power at ``freq_hz`` over the energy table's (measured at ``v_ref``), per component: the
        minion rail's (V / v_ref)^exponent; the rest of the board keeps its own."""
        p = self.params
        return {"minion_rail": (p.voltage / p.v_ref) ** p.static_exponent}

    def cost(self, ops: OpArrays | pd.DataFrame, precision: Precision) -> Costs:
        ops = OpArrays.of(ops)
        p = self.params
        wbits, abits, kvb, wsb = (precision.weight_bits, precision.act_bits, precision.kv_bits,
                                  precision.weight_storage_bits)
        n = len(ops)
        kind = np.where(ops.kind == "ternary_gemm", "gemm", ops.kind)
        storage = ops.storage_bytes
        seconds = np.zeros(n)
        mem_s = np.zeros(n)
        math_s = np.zeros(n)
        dram = np.zeros(n)
        l1 = np.zeros(n)
        l3 = np.zeros(n)
        hop_bytes = np.zeros(n)
        vec = np.zeros(n)
        mac = {d: np.zeros(n) for d in ("int8", "fp16", "fp32")}
        mean_hops = float(shire_hops(p).mean())
        params_key = p.model_dump_json()
        total_dram_bw = p.dram_bytes_per_s

        i = np.flatnonzero((kind == "gemm") | (kind == "attn_matmul"))
        for idx in i:
            is_g = kind[idx] == "gemm"
            wb = wbits if is_g else kvb
            dt = self._dtype(wb, abits)
            m, nn, k, b = (int(x[idx]) for x in (ops.gemm_m, ops.gemm_n, ops.gemm_k, ops.gemm_batch))
            macs = b * m * nn * k
            a_bytes = ops.a_elems[idx] * abits / 8
            if is_g:
                b_bytes = ops.weight_bytes[idx] * wsb / (8 * storage[idx])
            else:
                b_bytes = max(0.0, (ops.bytes_read[idx] - ops.a_elems[idx] * storage[idx])) * kvb / (8 * storage[idx])
            shares = min(p.shires, max(1, b * nn))  # at most one shire per output column
            t = simulate_gemm(p, float(b_bytes) / shares, float(macs) / shares, self.shire_mac_rate(dt), params_key)
            seconds[idx] = t
            mem_s[idx] = b_bytes / total_dram_bw
            math_s[idx] = macs / shares / self.shire_mac_rate(dt)
            mac[dt][idx] = macs
            dram[idx] = b_bytes
            # B comes from DRAM: its dram.byte energy covers the path to the minions (mesh, L3/L2
            # fills, the loads); A (activations) crosses the mesh from the L3 slices to every shire
            hop_bytes[idx] = a_bytes * shares * mean_hops
            l3[idx] = a_bytes * shares + ops.bytes_written[idx] * abits / (8 * storage[idx])  # A to every shire, C back
            l1[idx] = a_bytes * shares  # the minions' reads of A

        j = np.flatnonzero(~np.isin(kind, ["gemm", "attn_matmul", "view"]))
        if len(j):
            elems = np.maximum(ops.flops[j], ops.bytes_written[j] / storage[j])
            act = (ops.bytes_read[j] + ops.bytes_written[j] - ops.weight_bytes[j] - ops.kv_bytes_read[j]
                   - ops.kv_bytes_written[j]) * abits / (8 * storage[j])
            dram_j = ops.weight_bytes[j] + (ops.kv_bytes_read[j] + ops.kv_bytes_written[j]) * kvb / (8 * storage[j])
            minions = p.shires * p.minions_per_shire
            math_s[j] = elems / (minions * p.vector_ops_per_cycle * p.freq_hz)
            mem_s[j] = dram_j / total_dram_bw
            l3_s = act / (p.noc_bytes_per_s * p.shires)
            seconds[j] = np.maximum.reduce([math_s[j], mem_s[j], l3_s])
            vec[j] = elems
            dram[j] = dram_j
            l3[j] = act
            l1[j] = act
            hop_bytes[j] = act * mean_hops  # parameters from DRAM: their dram.byte covers their path
        work = seconds > 0
        seconds = np.where(work, seconds + p.op_overhead_s, 0.0)

        dyn = (p.voltage / p.v_ref) ** 2  # the minion rail's dynamic energy; SRAM, mesh and DRAM rails stay
        cyc = lambda s: np.ceil(np.asarray(s) * p.freq_hz).astype(np.int64)  # noqa: E731
        z = np.zeros(n, np.int64)
        actions = {"compute.mac_int8": mac["int8"] * dyn, "compute.mac_fp16": mac["fp16"] * dyn,
                   "compute.mac_fp32": mac["fp32"] * dyn, "compute.vector_op": vec * dyn, "l1.byte": l1 * dyn,
                   "l3.byte": l3, "dram.byte": dram, "network.byte_hop": hop_bytes,
                   "minion_rail.second": seconds, "board.second": seconds}
        macs_all = np.where(np.isin(kind, ["gemm", "attn_matmul"]),
                            ops.gemm_batch * ops.gemm_m * ops.gemm_n * ops.gemm_k, 0)
        return Costs(n_tiles=work.astype(np.int64), load_cycles=z, compute_cycles=cyc(seconds), store_cycles=z.copy(),
                     tile_bytes=z.copy(), prefetch=np.ones(n, bool), dram_read_bytes=np.rint(dram).astype(np.int64),
                     dram_write_bytes=z.copy(), macs=macs_all.astype(np.int64), actions=actions, buffer_bytes=0,
                     mem_cycles=cyc(mem_s), math_cycles=cyc(math_s))

