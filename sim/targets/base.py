"""The target interface: hardware parameters plus the cost of each traced op on them.

A target turns a trace (a pandas frame, one row per op) into :class:`Costs`: numpy arrays with
one entry per op, computed vectorized over the whole trace.  The engine schedules those costs;
the energy table prices the action counts.  Targets never see the engine or each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel


@dataclass
class Costs:
    """Per-op costs (arrays of length n_ops) of a trace on a target.

    An op moves through the target as ``n_tiles`` tiles: each tile is loaded from DRAM into the
    staging buffer (``tile_bytes`` of it, held until the tile is computed), computed, and its
    outputs stored to DRAM.  Totals per op are split evenly over its tiles (remainders to the
    first tiles).  Ops with no tiles cost nothing (views).
    """

    n_tiles: np.ndarray
    load_cycles: np.ndarray  # DRAM reads, total per op (latency included)
    compute_cycles: np.ndarray  # on the op's compute unit, total per op
    store_cycles: np.ndarray  # DRAM writes, total per op
    tile_bytes: np.ndarray  # staging-buffer bytes one tile holds from load start to compute end
    prefetch: np.ndarray  # bool: the op's loads do not depend on the previous op's outputs
    dram_read_bytes: np.ndarray
    dram_write_bytes: np.ndarray
    macs: np.ndarray  # useful multiply-accumulates
    actions: dict[str, np.ndarray] = field(default_factory=dict)  # "component.action" -> counts
    buffer_bytes: int = 0  # staging-buffer capacity

    def __len__(self) -> int:
        return len(self.n_tiles)

    def take(self, idx: np.ndarray) -> "Costs":
        """The costs of a subset of ops (in the given order)."""
        sel = {k: getattr(self, k)[idx] for k in ("n_tiles", "load_cycles", "compute_cycles", "store_cycles",
                                                  "tile_bytes", "prefetch", "dram_read_bytes",
                                                  "dram_write_bytes", "macs")}
        return Costs(**sel, actions={k: v[idx] for k, v in self.actions.items()}, buffer_bytes=self.buffer_bytes)

    def signature(self) -> np.ndarray:
        """Per-op timing-relevant numbers (to check that repeated layers cost the same)."""
        return np.stack([self.n_tiles, self.load_cycles, self.compute_cycles, self.store_cycles,
                         self.tile_bytes, self.prefetch.astype(np.int64)], axis=1)


class Target:
    """Base class of targets.  Subclasses set ``name`` and ``Params`` and implement ``cost``."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __init__(self, params: BaseModel):
        self.params = params

    @property
    def freq_hz(self) -> float:
        return float(self.params.freq_hz)

    def peak_macs_per_cycle(self, wbits: int, abits: int) -> float:
        raise NotImplementedError

    def dram_bytes_per_cycle(self) -> float:
        raise NotImplementedError

    def cost(self, trace: pd.DataFrame, wbits: int, abits: int) -> Costs:
        raise NotImplementedError
