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

from sim.targets.parts import Host, Precision

_DTYPE_BYTES = {"f16": 2, "bf16": 2, "f32": 4, "f64": 8, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "u8": 1, "b8": 1}
_NUMERIC = ("flops", "bytes_read", "bytes_written", "weight_bytes", "kv_bytes_read", "kv_bytes_written",
            "gemm_m", "gemm_n", "gemm_k", "gemm_batch")


def cdiv(a, b) -> np.ndarray:
    """Ceiling division of integer arrays (tiles, beats, waves)."""
    return -(-np.asarray(a, dtype=np.int64) // np.asarray(b, dtype=np.int64))


@dataclass
class OpArrays:
    """What a target costs of a trace, as numpy arrays with one entry per op (trace column names).

    Built from a trace frame, or from a decode template for many decode steps at once (the steps'
    ops one after another), so a whole generation is costed in one vectorized call.
    """

    kind: np.ndarray
    storage_bytes: np.ndarray  # bytes per element of the op's output dtype in the trace
    flops: np.ndarray
    bytes_read: np.ndarray
    bytes_written: np.ndarray
    weight_bytes: np.ndarray
    kv_bytes_read: np.ndarray
    kv_bytes_written: np.ndarray
    gemm_m: np.ndarray
    gemm_n: np.ndarray
    gemm_k: np.ndarray
    gemm_batch: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def a_elems(self) -> np.ndarray:
        """Elements of a matmul's A operand (C = A B, per batch entry M x K): batch x M x K, from the
        trace's numbers (0 for ops that are not matmuls; a tensor-parallel shard's share of A)."""
        return self.gemm_batch * self.gemm_m * self.gemm_k

    @classmethod
    def of(cls, ops: OpArrays | pd.DataFrame) -> OpArrays:
        """``ops`` as arrays (a trace frame is converted; arrays pass through)."""
        return cls.from_frame(ops) if isinstance(ops, pd.DataFrame) else ops

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> OpArrays:
        storage = np.array([_DTYPE_BYTES.get(d, 2) for d in df["dtype"]], dtype=np.float64)
        return cls(kind=df["kind"].to_numpy(dtype=object), storage_bytes=storage,
                   **{c: df[c].to_numpy(np.int64) for c in _NUMERIC})

    @classmethod
    def from_template(cls, tpl, contexts, rows=None) -> OpArrays:
        """Decode steps at ``contexts``, stacked: step k's ops are rows k*n .. k*n + n - 1.

        ``rows`` (op positions in the template) keeps only those ops of every step (then n is
        ``len(rows)``): a generation's context-dependent ops without the others."""
        cols = tpl.stacked(contexts, rows)
        steps = len(contexts)
        sel = slice(None) if rows is None else np.asarray(rows, dtype=np.int64)
        kind = tpl.base["kind"].to_numpy(dtype=object)[sel]
        storage = np.array([_DTYPE_BYTES.get(d, 2) for d in tpl.base["dtype"].to_numpy()[sel]], dtype=np.float64)
        return cls(kind=np.tile(kind, steps), storage_bytes=np.tile(storage, steps),
                   **{c: cols[c].ravel() for c in _NUMERIC})


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
    # cycles the op's memory traffic takes where that is already inside compute_cycles (a GPU kernel's
    # whole duration is one compute span): reported for the op's bound, never scheduled again
    mem_cycles: np.ndarray | None = None
    # and the cycles its arithmetic alone would take (default compute_cycles): with mem_cycles, what
    # says whether the op is memory- or compute-bound
    math_cycles: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.n_tiles)

    def take(self, idx: np.ndarray) -> Costs:
        """The costs of a subset of ops (in the given order)."""
        sel = {k: getattr(self, k)[idx] for k in self.ARRAYS}
        return Costs(**sel, actions={k: v[idx] for k, v in self.actions.items()}, buffer_bytes=self.buffer_bytes,
                     mem_cycles=None if self.mem_cycles is None else self.mem_cycles[idx],
                     math_cycles=None if self.math_cycles is None else self.math_cycles[idx])

    #: the per-op arrays (besides ``actions``, ``mem_cycles`` and ``math_cycles``)
    ARRAYS: ClassVar[tuple[str, ...]] = ("n_tiles", "load_cycles", "compute_cycles", "store_cycles", "tile_bytes",
                                         "prefetch", "dram_read_bytes", "dram_write_bytes", "macs")
    #: the per-op numbers that add up over ops and steps (see :meth:`sums`)
    SUMMED: ClassVar[tuple[str, ...]] = ("load_cycles", "compute_cycles", "store_cycles", "dram_read_bytes",
                                         "dram_write_bytes", "macs")

    @classmethod
    def assemble(cls, n: int, parts) -> Costs:
        """The costs of ``n`` ops put together from ``parts``: (positions, Costs of that many ops)
        pairs covering the ops (costs of the same target and precision, so the same actions)."""
        parts = [(np.asarray(i, dtype=np.int64), c) for i, c in parts if len(i)]
        first = parts[0][1]

        def put(get):
            vals = [get(c) for _, c in parts]
            if any(v is None for v in vals):
                return None
            out = np.zeros(n, dtype=np.result_type(*vals))
            for (i, _), v in zip(parts, vals):
                out[i] = v
            return out

        return Costs(**{k: put(lambda c, k=k: getattr(c, k)) for k in cls.ARRAYS},
                     actions={a: put(lambda c, a=a: c.actions[a]) for a in first.actions},
                     buffer_bytes=first.buffer_bytes, mem_cycles=put(lambda c: c.mem_cycles),
                     math_cycles=put(lambda c: c.math_cycles))

    def sums(self, steps: int = 1) -> dict[str, np.ndarray]:
        """Per-op totals of costs stacked ``steps`` times (step k's ops follow step k-1's): the
        :attr:`SUMMED` numbers, ``mem_cycles`` (:meth:`memory_cycles`), ``math_cycles``
        (:meth:`arithmetic_cycles`) and every action as ``action:<name>``."""
        fold = lambda a: np.asarray(a).reshape(steps, -1).sum(axis=0)
        out = {k: fold(getattr(self, k)) for k in self.SUMMED}
        out["mem_cycles"] = fold(self.memory_cycles())
        out["math_cycles"] = fold(self.arithmetic_cycles())
        for a, v in self.actions.items():
            out["action:" + a] = fold(v)
        return out

    def serial_cycles(self) -> np.ndarray:
        """Per op, the cycles it takes with its loads and stores overlapped with its compute, ops run
        back to back (0 for ops without tiles): the closed form's per-op time, without the pipeline
        fill (:func:`sim.engine.analytic`)."""
        return np.where(self.n_tiles > 0, np.maximum(self.load_cycles + self.store_cycles, self.compute_cycles), 0)

    def memory_cycles(self) -> np.ndarray:
        """Cycles each op spends on DRAM traffic (its loads and stores, or ``mem_cycles``)."""
        return self.load_cycles + self.store_cycles if self.mem_cycles is None else self.mem_cycles

    def arithmetic_cycles(self) -> np.ndarray:
        """Cycles each op's arithmetic takes (``math_cycles``, or its compute cycles)."""
        return self.compute_cycles if self.math_cycles is None else self.math_cycles

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

    def check_fits(self) -> None:
        """Raise :class:`sim.memory.Infeasible` when the design cannot be built as given (an FPGA's cores
        beyond its device); nothing by default."""

    @property
    def host(self) -> Host:
        """The host's fixed cost per dispatched op as this target charges it (none by default)."""
        return Host()

    def dram_bytes_per_cycle(self) -> float:
        raise NotImplementedError

    def cost(self, ops: OpArrays | pd.DataFrame, precision: Precision) -> Costs:
        """Costs of every op (a trace frame or :class:`OpArrays`), vectorized, at ``precision``
        (:class:`sim.targets.parts.Precision`)."""
        raise NotImplementedError
