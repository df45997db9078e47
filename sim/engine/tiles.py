"""Tiles on one device: the engine that schedules costed ops on a target's resources.

SimPy path (:func:`simulate`)
    A DMA process loads tiles in program order into the staging buffer (a
    :class:`simpy.Container` of the target's buffer capacity: a load waits while the buffer is
    full) over the DRAM channel (a :class:`simpy.Resource`, shared with the stores); a compute
    process takes the loaded tiles in order, computes them, frees their buffer space and hands
    their outputs to a store process on the same DRAM channel.  Loads run ahead of compute as far
    as the buffer allows (double buffering when a tile is half the buffer), except that an op
    whose inputs come from DRAM (spilled activations) waits for the op before it to finish.
    Overlap of loads and compute, stalls on a full buffer and contention of loads and stores on
    DRAM are simulated.  Time is an integer count of the target's clock cycles.

Analytic path (:func:`analytic`)
    Closed form for sweeps: each op takes max(DRAM cycles, compute cycles) (its loads, compute and
    stores overlap perfectly), ops run back to back, plus the fill of the first op's pipeline.
    Tests check the two agree within 2%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from sim.targets.base import Costs


@dataclass
class Timeline:
    op_end: np.ndarray  # cycle at which each op's last tile finished computing
    makespan: int  # cycle at which all compute and stores had finished
    events: int  # SimPy events processed (0 for the analytic path)


def _split(total: int, n: int, t: int) -> int:
    """Cycles of tile t when ``total`` is split over ``n`` tiles (remainder to the first tiles)."""
    q, r = divmod(int(total), int(n))
    return q + (1 if t < r else 0)


class _CountingEnv(simpy.Environment):
    def __init__(self):
        super().__init__()
        self.n_events = 0

    def step(self):
        self.n_events += 1
        super().step()


def simulate(c: Costs) -> Timeline:
    """Discrete-event simulation of the ops of ``c`` in order (see the module docstring)."""
    n_ops = len(c)
    env = _CountingEnv()
    cap = max(int(c.buffer_bytes), 1)
    buf = simpy.Container(env, capacity=cap)
    dram = simpy.Resource(env, capacity=1)
    ready = simpy.Store(env)
    op_end = np.zeros(n_ops, dtype=np.int64)
    work = [o for o in range(n_ops) if c.n_tiles[o] > 0]
    done = {o: env.event() for o in work}
    prev = {}
    last = None
    for o in work:
        prev[o] = last
        last = o
    stores_end = [0]

    n_tiles = c.n_tiles.tolist()
    loads = c.load_cycles.tolist()
    comps = c.compute_cycles.tolist()
    stores = c.store_cycles.tolist()
    tbytes = [min(int(b), cap) for b in c.tile_bytes.tolist()]
    prefetch = c.prefetch.tolist()

    def loader():
        for o in work:
            if not prefetch[o] and prev[o] is not None and not done[prev[o]].triggered:
                yield done[prev[o]]
            nt, b = n_tiles[o], tbytes[o]
            for t in range(nt):
                if b:
                    yield buf.put(b)
                cyc = _split(loads[o], nt, t)
                if cyc:
                    with dram.request() as req:
                        yield req
                        yield env.timeout(cyc)
                yield ready.put((o, t, b))

    def writer(cyc):
        with dram.request() as req:
            yield req
            yield env.timeout(cyc)
        stores_end[0] = max(stores_end[0], env.now)

    def computer():
        for o in work:
            nt = n_tiles[o]
            for t in range(nt):
                _, _, b = yield ready.get()
                cyc = _split(comps[o], nt, t)
                if cyc:
                    yield env.timeout(cyc)
                if b:
                    yield buf.get(b)
                s = _split(stores[o], nt, t)
                if s:
                    env.process(writer(s))
            op_end[o] = env.now
            done[o].succeed()

    env.process(loader())
    comp = env.process(computer())
    env.run()
    assert comp.triggered, "engine deadlock"
    # ops without work end when the op before them did
    for o in range(1, n_ops):
        if c.n_tiles[o] == 0:
            op_end[o] = op_end[o - 1]
    makespan = int(max(env.now, stores_end[0]))
    return Timeline(op_end=op_end, makespan=makespan, events=env.n_events)


def analytic(c: Costs) -> Timeline:
    """Closed-form timeline: per op max(loads + stores, compute), back to back, plus the pipeline's
    fill: the smaller of the first tile's load and compute (a two-stage pipeline of n equal tiles
    takes n * max(l, c) + min(l, c))."""
    per_op = np.maximum(c.load_cycles + c.store_cycles, c.compute_cycles)
    per_op = np.where(c.n_tiles > 0, per_op, 0)
    work = np.flatnonzero(c.n_tiles > 0)
    fill = 0
    if len(work):
        o = work[0]
        n = c.n_tiles[o]
        fill = min(_split(c.load_cycles[o], n, 0), _split(c.compute_cycles[o], n, 0))
    op_end = fill + np.cumsum(per_op)
    return Timeline(op_end=op_end.astype(np.int64), makespan=int(op_end[-1]) if len(op_end) else 0, events=0)
