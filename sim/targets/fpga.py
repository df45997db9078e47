"""An FPGA accelerator for MatMul-free LMs: cores of ternary accumulate units and a row-wise unit.

The units are the RTL of ``hw/matmulfree.py`` and charge what ``models/ternary.py`` says they take
(the testbenches check the RTL against those formulas).  A core holds ``ternary_units`` ternary
units of ``ternary_lanes`` lanes each and one row-wise operation unit of ``row_lanes`` lanes, and
reads ``ddr_bits_per_cycle`` from DDR; the board's DDR caps all cores together at
``ddr_bytes_per_s``.  Per traced op (one tile each, the whole op as one compute span):

- **ternary GEMM** (a BitLinear, M tokens x N outputs x K): the M*N dot products are spread over
  all ``cores * ternary_units`` units; each takes ``ceil(K / lanes)`` beats, back to back, plus the
  unit's pipeline latency (``ternary_gemm_cycles``).  Its weights, ``N K`` codes of
  ``weight_code_bits`` each, stream from DDR once per op (tokens reuse them from a buffer), or from
  on-chip memory when ``weights_on_chip``.  Weight delivery and compute overlap (double-buffered):
  the op takes the larger of the two.
- **row ops** (elementwise, reductions, norms, the MLGRU recurrence, activations): the op's
  elements are spread over the cores' row units, ``ceil(n / (cores * row_lanes))`` beats plus the
  row latency: one pass per op.  The trace decomposes RMSNorm into its passes (squares, mean,
  rsqrt, scale), each charged as a pass; the row unit's 40 cycles of divide and inverse square root
  per row (``RMS_COMPUTE_CYCLES``) are not added (they are small against a d-wide row's passes at a
  few lanes).  Parameters (norm gains, lower bounds) stream from DDR unless on chip; activations
  stay on chip.
- **embedding**: the gathered rows come from DDR (the table, 32000 x d at 16 bits, is off chip).
- an ordinary GEMM (not in a MatMul-free LM) would need multipliers: ``dsp_macs_per_cycle`` DSP MACs.

**DDR requests** (optional: ``ddr_request_bytes`` and ``ddr_latency_s``; without them a core's port
is a perfect stream): a core's reader asks for ``ddr_request_bytes`` at a time and keeps at most
``ddr_outstanding`` requests in flight, each answered ``ddr_latency_s`` after it is issued and then
delivered at the port's ``ddr_bits_per_cycle``; by Little's law a core reads
``min(port, outstanding x request / (latency + request / port))`` bytes per cycle.

**Resources** (optional: ``device_alms``, ``device_m20k``, ``device_dsp`` and the shell's share,
``shell_*``): a core takes what the units' RTL synthesizes to (``hw/synth.py``: ALMs, M20K and DSP
blocks of ``ternary_units`` ternary units and a row unit at their lane counts), and ``cores: fit``
gives the most cores the device holds beside the shell; a design with more cores than fit is
refused, with the resource that binds.

Time is in cycles of ``freq_hz``.  Actions for energy: ``ternary.lane_op`` (lane-beats of the
ternary units: add, subtract or skip of one activation), ``row.lane_op`` (row-unit element-ops),
``dsp.mac``, ``ddr.read``/``ddr.write`` (bytes), ``onchip.read`` (bytes of on-chip weights).  Static
power (:attr:`FPGA.static_scale`) on one of two bases, ``static_basis``: ``estimator``, the energy
table's ``device`` static figures plus its ``logic`` power scaled to the design's clocked ALMs (the
shell's and the cores'); or ``telemetry``, the table's ``shell_idle`` (the board's FPGA rails read
with the shell loaded and idle, which holds the device's static power and the shell's clocking) plus
the cores' clocked logic.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models import ternary
from models.errors import SimError
from sim.targets import register
from sim.targets.base import Costs, OpArrays, Target
from sim.targets.base import cdiv as _cdiv
from sim.targets.parts import Memory, Precision, param_source


class FPGAParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    cores: Annotated[int, Field(gt=0)] | Literal["fit"] = Field(
        description="cores, or fit: as many as the device holds (device_*)")
    freq_hz: float = Field(gt=0)
    ternary_units: int = Field(gt=0, description="ternary accumulate units per core")
    ternary_lanes: int = Field(gt=0, description="lanes (weights per cycle) of a ternary unit")
    row_lanes: int = Field(gt=0, description="lanes of a core's row-wise operation unit")
    ddr_bits_per_cycle: int = Field(gt=0, description="DDR read width of one core, bits per cycle")
    ddr_bytes_per_s: float = Field(gt=0, description="the board's DDR peak bandwidth (all cores)")
    weight_code_bits: float = Field(2.0, gt=0, description="bits stored per ternary weight")
    weights_on_chip: bool = False
    onchip_bytes: int = Field(gt=0, description="on-chip memory (block RAM)")
    dsp_macs_per_cycle: int = Field(gt=0, description="multiplier MACs per cycle (non-ternary GEMMs)")
    node_nm: int = Field(gt=0)
    # a core's DDR reader (all three, or none for a perfect stream at ddr_bits_per_cycle)
    ddr_request_bytes: int | None = Field(None, gt=0, description="bytes a core's reader asks for per request")
    ddr_outstanding: int = Field(1, gt=0, description="read requests a core keeps in flight")
    ddr_latency_s: float | None = Field(None, gt=0, description="a read's round trip, request to first data")
    # the device's resources and the shell's share of them (the resource model; none: unchecked)
    device_alms: int | None = Field(None, gt=0)
    device_m20k: int | None = Field(None, gt=0)
    device_dsp: int | None = Field(None, gt=0)
    shell_alms: int = Field(0, ge=0)
    shell_m20k: int = Field(0, ge=0)
    shell_dsp: int = Field(0, ge=0)
    shell_freq_hz: float = Field(0.0, ge=0, description="the shell's logic clock (its always-on logic power)")
    static_basis: Literal["estimator", "telemetry"] = Field(
        "estimator", description="static power from the power estimator's figures, or from the board's idle telemetry")

    @model_validator(mode="after")
    def _together(self):
        if (self.ddr_request_bytes is None) != (self.ddr_latency_s is None):
            raise ValueError("ddr_request_bytes and ddr_latency_s go together (or neither: a perfect stream)")
        dev = (self.device_alms, self.device_m20k, self.device_dsp)
        if any(d is None for d in dev) and any(d is not None for d in dev):
            raise ValueError("device_alms, device_m20k and device_dsp go together")
        if self.cores == "fit" and self.device_alms is None:
            raise ValueError("cores: fit needs the device's resources (device_alms, device_m20k, device_dsp)")
        return self


RESOURCES = ("alms", "m20k", "dsp")


def fit(p: FPGAParams, core: dict[str, float]) -> dict | None:
    """With what one core takes (``core``, from ``hw/synth.py``): what the device leaves beside the
    shell and how many cores fit, with the binding resource; None without the device's resources."""
    if p.device_alms is None:
        return None
    free = {r: getattr(p, f"device_{r}") - getattr(p, f"shell_{r}") for r in RESOURCES}
    if any(v <= 0 for v in free.values()):
        raise SimError(f"the shell takes all of the device ({free})")
    n = {r: int(free[r] // core[r]) if core[r] > 0 else 1 << 40 for r in RESOURCES}
    bind = min(n, key=n.get)
    return {"core": core, "free": free, "cores": n[bind], "binding": bind}


def _res(r: dict) -> str:
    return f"{r['alms']:,.0f} ALMs, {r['m20k']:,.0f} M20K, {r['dsp']:,.0f} DSP blocks"


@register
class FPGA(Target):
    name = "fpga"
    Params = FPGAParams

    def __init__(self, params: FPGAParams):
        from hw.synth import core_resources

        # what one core takes (hw/synth.py's table; a missing table fails here, not in the power model)
        self.core = core_resources(params.ternary_units, params.ternary_lanes, params.row_lanes)
        self.resources = fit(params, self.core)
        self.misfit = ""  # why the design does not fit the device (check_fits raises it)
        if self.resources:
            r = self.resources
            if r["cores"] < 1:
                self.misfit = (f"one core ({_res(r['core'])}) does not fit the device beside the shell "
                               f"({_res(r['free'])} left)")
            elif params.cores != "fit" and params.cores > r["cores"]:
                self.misfit = (f"{params.cores} cores do not fit the device: a core takes {_res(r['core'])} "
                               f"(hw/synth.py), the device leaves {_res(r['free'])} beside the shell, room for "
                               f"{r['cores']} cores ({r['binding']} bind)")
            if params.cores == "fit":
                params = params.model_copy(update={"cores": max(1, r["cores"])})
        super().__init__(params)

    def check_fits(self) -> None:
        """Raise :class:`sim.memory.Infeasible` when the design's cores do not fit the device."""
        if self.misfit:
            from sim.memory import Infeasible

            raise Infeasible(self.misfit)

    def peak_macs_per_cycle(self, wbits: int, abits: int) -> float:
        p = self.params
        return float(p.cores * p.ternary_units * p.ternary_lanes)

    @property
    def static_scale(self) -> dict[str, float]:
        """The energy table's ``logic`` power (100,000 ALMs clocked at 100 MHz) scaled to this design's
        clocked logic: the cores' ALMs (``hw/synth.py``) at ``freq_hz``, and on the estimator's basis
        the shell's ALMs at ``shell_freq_hz`` with the ``device``'s static figures; on the telemetry
        basis ``shell_idle`` stands for those two."""
        p = self.params
        cores = p.cores * self.core["alms"] * p.freq_hz
        if p.static_basis == "telemetry":
            return {"logic": cores / (1e5 * 1e8), "device": 0.0, "shell_idle": 1.0}
        return {"logic": (p.shell_alms * p.shell_freq_hz + cores) / (1e5 * 1e8), "shell_idle": 0.0}

    def core_read_rate(self) -> float:
        """Bytes per cycle one core reads from DDR: its port, or what its requests deliver (Little's law)."""
        p = self.params
        port = p.ddr_bits_per_cycle / 8
        if p.ddr_request_bytes is None:
            return port
        latency = p.ddr_latency_s * p.freq_hz  # cycles
        return min(port, p.ddr_outstanding * p.ddr_request_bytes / (latency + p.ddr_request_bytes / port))

    def ddr_rate(self) -> float:
        """Bytes per cycle all cores together read from DDR."""
        p = self.params
        return min(p.cores * self.core_read_rate(), p.ddr_bytes_per_s / p.freq_hz)

    @property
    def memory(self) -> Memory:
        """The board's DDR as the cores reach it: ``ddr_rate`` (per cycle) at ``freq_hz`` (its capacity is not
        modelled); with ``weights_on_chip`` the capacity is the on-chip memory left beside the shell and the
        cores (what must be resident — weights and state — must fit there)."""
        p = self.params
        keys = ("ddr_bits_per_cycle", "cores", "ddr_bytes_per_s", "freq_hz")
        if p.ddr_request_bytes is not None:
            keys += ("ddr_request_bytes", "ddr_outstanding", "ddr_latency_s")
        if not p.weights_on_chip:
            return Memory(bytes_per_s=self.ddr_rate() * p.freq_hz, source=param_source(self, *keys))
        # weights on chip: what must be resident lives in the block RAM the shell and the cores leave
        cap = p.onchip_bytes
        if self.resources:
            left = self.resources["free"]["m20k"] - p.cores * self.resources["core"]["m20k"]
            cap = int(p.onchip_bytes * max(0.0, left) / p.device_m20k)
        return Memory(bytes_per_s=self.ddr_rate() * p.freq_hz, capacity_bytes=cap,
                      source=param_source(self, *keys, "onchip_bytes"))

    def dram_bytes_per_cycle(self) -> float:
        return self.ddr_rate()

    def cost(self, ops: OpArrays | pd.DataFrame, precision: Precision) -> Costs:
        ops = OpArrays.of(ops)
        p = self.params
        n = len(ops)
        kind = ops.kind
        units = p.cores * p.ternary_units
        rate = self.ddr_rate()
        compute = np.zeros(n)
        ddr_rd = np.zeros(n)
        ddr_wr = np.zeros(n)
        onchip = np.zeros(n)
        tern = np.zeros(n)
        row = np.zeros(n)
        dsp = np.zeros(n)
        macs = np.zeros(n, np.int64)

        i = np.flatnonzero(kind == "ternary_gemm")
        if len(i):
            m, nn, k = ops.gemm_m[i], ops.gemm_n[i], ops.gemm_k[i]
            beats = _cdiv(ops.gemm_batch[i] * m * nn, units) * _cdiv(k, p.ternary_lanes)
            compute[i] = beats + ternary.TERNARY_LATENCY
            wbytes = (nn * k).astype(np.float64) * p.weight_code_bits / 8
            if p.weights_on_chip:
                onchip[i] = wbytes
            else:
                ddr_rd[i] = wbytes
            tern[i] = ops.gemm_batch[i] * m * nn * _cdiv(k, p.ternary_lanes) * p.ternary_lanes
            macs[i] = ops.gemm_batch[i] * m * nn * k

        g = np.flatnonzero((kind == "gemm") | (kind == "attn_matmul"))
        if len(g):
            macs[g] = ops.gemm_batch[g] * ops.gemm_m[g] * ops.gemm_n[g] * ops.gemm_k[g]
            compute[g] = _cdiv(macs[g], p.dsp_macs_per_cycle)
            dsp[g] = macs[g]
            # a weight at its storage precision (not the activations'); K/V at the cache's
            w = (ops.weight_bytes[g] * (precision.weight_storage_bits / 8) / ops.storage_bytes[g]
                 + ops.kv_bytes_read[g] * (precision.kv_bits / 8) / ops.storage_bytes[g])
            (onchip if p.weights_on_chip else ddr_rd)[g] = w

        e = np.flatnonzero(kind == "embedding")
        if len(e):
            ddr_rd[e] = ops.weight_bytes[e]
            compute[e] = 1

        r = np.flatnonzero(np.isin(kind, ["elementwise", "reduction", "norm", "softmax", "copy", "other"]))
        if len(r):
            elems = np.where(kind[r] == "copy", ops.bytes_written[r] / ops.storage_bytes[r],
                             np.where(kind[r] == "norm", ops.flops[r] / 5, ops.flops[r]))
            elems = np.maximum(np.asarray(elems, dtype=np.float64), 1.0)
            compute[r] = _cdiv(np.ceil(elems).astype(np.int64), p.cores * p.row_lanes) + ternary.ROW_LATENCY
            row[r] = elems
            (onchip if p.weights_on_chip else ddr_rd)[r] += ops.weight_bytes[r]

        mem = np.ceil((ddr_rd + ddr_wr) / rate)
        total = np.maximum(compute, mem)
        busy = total > 0
        z = np.zeros(n, np.int64)
        return Costs(
            n_tiles=busy.astype(np.int64), load_cycles=z, compute_cycles=total.astype(np.int64), store_cycles=z.copy(),
            tile_bytes=z.copy(), prefetch=np.ones(n, bool), dram_read_bytes=np.rint(ddr_rd).astype(np.int64),
            dram_write_bytes=np.rint(ddr_wr).astype(np.int64), macs=macs,
            actions={"ternary.lane_op": tern, "row.lane_op": row, "dsp.mac": dsp, "ddr.read": ddr_rd,
                     "ddr.write": ddr_wr, "onchip.read": onchip},
            buffer_bytes=0, mem_cycles=mem.astype(np.int64), math_cycles=compute.astype(np.int64))
