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

import numpy as np


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


@dataclass(frozen=True)
class Host:
    """The host side of a target as its costs charge it: the fixed cost of dispatching one op or
    kernel (a GPU launch, a call through torch into a CPU library, ET-SoC-1's dispatch and barrier;
    0 where the device's own controller issues the ops), and where the figure comes from.  Each
    family states it from its own parameter (:attr:`Target.host`); the host's own work around a run
    (tokenizing, sampling, Python) is not modelled here yet."""

    dispatch_s: float = 0.0
    source: str = "not modelled: the device issues its own ops"


def param_source(target, *names: str) -> str:
    """``name: source`` of each named parameter of ``target`` (the target file's ``sources``, attached by
    :func:`sim.targets.build`; a parameter with none is named alone), joined by ``; ``."""
    sources = getattr(target, "sources", None) or {}
    return "; ".join(f"{n}: {sources[n]}" if sources.get(n) else n for n in names)
