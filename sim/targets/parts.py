"""Parts that targets share, described in one unit style whatever their parameters' style.

:class:`Memory` is a target's off-chip memory (DRAM, HBM, DDR).  The target families give it in their
own units (the accelerator template: ``dram_bits_per_cycle``; the FPGA: ``ddr_bits_per_cycle`` per core
capped by the board's ``ddr_bytes_per_s``; the GPU: ``hbm_bytes`` and ``hbm_bytes_per_s`` with an
``hbm_efficiency``; ET-SoC and the host CPU: ``dram_bytes_per_s``), and each target's ``memory`` property
states it as bytes, bytes per second and seconds.  The parameters stay as they are (configs, sweeps and
tests name them); the part is how the memory is read across targets.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def param_source(target, *names: str) -> str:
    """``name: source`` of each named parameter of ``target`` (the target file's ``sources``, attached by
    :func:`sim.targets.build`; a parameter with none is named alone), joined by ``; ``."""
    sources = getattr(target, "sources", None) or {}
    return "; ".join(f"{n}: {sources[n]}" if sources.get(n) else n for n in names)
