"""Parts that targets share, described in one unit style whatever their parameters' style.

:class:`Precision` is the bits a run computes and stores at, made once from the workload and passed
to every target's ``cost`` as one value.

:class:`Memory` is a target's off-chip memory (DRAM, HBM, DDR).  The target families give it in their
own units (the accelerator template: ``dram_bits_per_cycle``; the FPGA: ``ddr_bits_per_cycle`` per core
capped by the board's ``ddr_bytes_per_s``; the GPU: ``hbm_bytes`` and ``hbm_bytes_per_s`` with an
``hbm_efficiency``; ET-SoC and the host CPU: ``dram_bytes_per_s``), and each target's ``memory`` property
states it as bytes, bytes per second and seconds.  The parameters stay as they are (configs, sweeps and
tests name them); the part is how the memory is read across targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator


@dataclass(frozen=True)
class Precision:
    """Weights compute at ``weight_bits`` and are stored at ``weight_storage_bits`` (per-group
    metadata included; default ``weight_bits``), activations at ``act_bits``, the KV cache at
    ``kv_bits`` (default ``act_bits``)."""

    weight_bits: int
    act_bits: int
    kv_bits: int | None = None
    weight_storage_bits: float | None = None

    def __post_init__(self):
        if self.kv_bits is None:
            object.__setattr__(self, "kv_bits", self.act_bits)
        if self.weight_storage_bits is None:
            object.__setattr__(self, "weight_storage_bits", self.weight_bits)

    def scales(self, storage_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Factors from a trace's bytes (at ``storage_bytes`` per element) to the hardware's:
        (weights with metadata, activations, KV cache)."""
        width = 8 * np.asarray(storage_bytes)
        return self.weight_storage_bits / width, self.act_bits / width, self.kv_bits / width



@dataclass(frozen=True)
class Memory:
    """Off-chip memory: capacity, peak bandwidth and where the figures come from."""

    bytes_per_s: float  # peak bandwidth, all channels together
    capacity_bytes: int | None = None  # None: the target does not model its capacity
    efficiency: float = 1.0  # fraction of the peak that streaming reaches (as the target models it)
    channels: int = 1
    latency_s: float = 0.0  # per access burst / pipeline fill, as the target charges it
    source: str = ""  # the target parameters it is read from (and their sources, where the file gave them)

    def bytes_per_cycle(self, freq_hz: float) -> float:
        """Peak bytes per cycle of a ``freq_hz`` clock."""
        return self.bytes_per_s / freq_hz


@dataclass(frozen=True)
class Link:
    """A link between two places (PCIe host to device, NVLink between GPUs): bytes per second per
    direction, a fixed cost per transfer or collective (DMA set-up and driver call; a collective's
    latency floor), energy per byte, and where the figures come from."""

    bytes_per_s: float
    latency_s: float = 0.0
    pj_per_byte: float = 0.0
    source: str = ""

    def transfer_s(self, nbytes: float) -> float:
        """One transfer of ``nbytes`` in one direction."""
        return self.latency_s + nbytes / self.bytes_per_s

    def all_reduce(self, nbytes: float, n: int) -> float:
        """A ring all-reduce of ``nbytes`` over ``n`` endpoints (2 (n - 1) / n of it over each link)."""
        return 0.0 if n <= 1 else self.latency_s + 2 * (n - 1) / n * nbytes / self.bytes_per_s

    def all_gather(self, nbytes: float, n: int) -> float:
        """``nbytes`` in total, each endpoint contributing 1/n (ring: (n - 1) / n of it over each link)."""
        return 0.0 if n <= 1 else self.latency_s + (n - 1) / n * nbytes / self.bytes_per_s


class HostParams(BaseModel):
    """A runtime's host figures, as a target file's ``params.host`` gives them (seconds).

    ``dispatch_s``: what the host spends on one traced op (Python, the dispatcher, a kernel launch
    or a call into a CPU library), by op kind (``default`` for kinds not named; ``view``, ``gemm``,
    ... as the trace's ``kind`` column); ``module_s``: one ``nn.Module`` call (each distinct module
    of a step's trace is called once); ``step_s``: the rest of a model step that is no traced op
    (the framework's Python around the layers: masks, cache positions, output objects);
    ``token_s``: a generate loop's work per decoded token (logits processing, sampling over the
    vocabulary, stopping checks, cache bookkeeping); ``overlap``: the device runs asynchronously
    (a GPU: the host queues kernels ahead of it) or not (a CPU: the host's threads do the work).
    ``runtime``: eager, cuda_graph or compiled (a label; the figures are what differ)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    runtime: Literal["eager", "cuda_graph", "compiled"] = "eager"
    dispatch_s: dict[str, float] = Field(default_factory=lambda: {"default": 0.0})
    module_s: float = Field(0.0, ge=0)
    step_s: float = Field(0.0, ge=0)
    token_s: float = Field(0.0, ge=0)
    overlap: bool = False

    @field_validator("dispatch_s")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, x in v.items() if x < 0]
        if bad:
            raise ValueError(f"negative dispatch time for {', '.join(bad)}")
        return v


@dataclass(frozen=True)
class Host:
    """The host side of a target.  Without a runtime (``params`` None) it is the fixed cost per
    dispatched op that the target's costs already charge (a GPU launch, a call through torch into a
    CPU library, ET-SoC-1's dispatch and barrier; 0 where the device's own controller issues the
    ops), stated for reading.  With one (a target file's ``params.host``), the host is its own
    stream: :meth:`op_seconds` per traced op and :meth:`fixed_seconds` per step, run against the
    device by :func:`sim.engine.host.host_device`."""

    dispatch_s: float = 0.0
    source: str = "not modelled: the device issues its own ops"
    params: HostParams | None = None

    @classmethod
    def stated(cls, target, param: str) -> Host:
        """A target's host: its runtime's figures (``params.host``) when it carries them, else the
        dispatch cost its costs charge per op, read from its parameter ``param``."""
        p = target.params
        runtime = getattr(p, "host", None)
        if runtime is not None:
            return cls(dispatch_s=runtime.dispatch_s.get("default", 0.0), source=param_source(target, "host"),
                       params=runtime)
        return cls(dispatch_s=getattr(p, param), source=param_source(target, param))

    @property
    def modelled(self) -> bool:
        return self.params is not None

    def op_seconds(self, kinds) -> np.ndarray:
        """Host seconds of each op of a step (its kind's dispatch cost)."""
        kinds = np.asarray(kinds, dtype=object)
        if self.params is None:
            return np.zeros(len(kinds))
        d = self.params.dispatch_s
        default = d.get("default", 0.0)
        return np.array([d.get(k, default) for k in kinds], dtype=np.float64)

    def fixed_seconds(self, modules: int, decode: bool) -> float:
        """Host seconds of a step that belong to no op: module calls, the framework's step, and on a
        decode step the generate loop's per-token work."""
        if self.params is None:
            return 0.0
        p = self.params
        return modules * p.module_s + p.step_s + (p.token_s if decode else 0.0)


def param_source(target, *names: str) -> str:
    """``name: source`` of each named parameter of ``target`` (the target file's ``sources``, attached by
    :func:`sim.targets.build`; a parameter with none is named alone), joined by ``; ``."""
    sources = getattr(target, "sources", None) or {}
    return "; ".join(f"{n}: {sources[n]}" if sources.get(n) else n for n in names)
