"""Schedule shortcuts: a step's ops through the tiles engine with identical layers replicated, and a
generation's decode steps costed by class and chunk, sampled and interpolated within a stated bound.

Costing a generation never builds its n_steps x n_ops table.  The decode template is affine in the
context, so most ops (the projections, norms, MLPs: everything but attention over the KV cache and
its writes) are the same in every step: they are costed once and their costs multiplied by the
step count.  The context-dependent ops come in classes of ops whose numbers are equal at every
context (the same op in every layer); one op of each class is costed per step, for every step, in
chunks of steps whose sums are accumulated.  So every step's costs, hence its energy and bytes, are
exact; memory does not grow with the generation beyond a few numbers per step.

Scheduling at SimPy fidelity simulates what is distinct and replicates what repeats, both checked:

- Layers: when every layer's ops cost the same as layer 1's (checked op by op on the target's
  costs), the ops before the layers, layers 0 and 1 and the ops after are simulated, and layer 1's
  time stands for layers 2..L-1 (its ops' times are copied).  The pipeline state at a layer
  boundary repeats, so this is the full simulation's answer; a test checks it against one.
- Decode steps: the first and last steps are simulated and the steps between are a segment whose
  ops' times are interpolated linearly in the step index, if the segment passes two checks:
  (a) its middle step, simulated, is within ``STEP_RTOL`` (0.5%) of the interpolated cycles, and
  (b) every step's closed-form cycles (each op's loads and stores overlapped with its compute, ops
  back to back: :meth:`Costs.serial_cycles`, known exactly for every step from its costs) are within
  0.5% of their own line through the segment's ends, so a kink between the checked steps (a tile or
  wave count changing with the context, a buffer starting to spill) is not missed.  A segment that
  fails is halved at its middle step and each half checked again, down to segments with no step
  between their ends.  Simulated steps are exact; the others' cycles are within 0.5% at every step
  where the SimPy schedule follows the costs' closed form as it does at the checked steps (on
  targets whose ops are one kernel each, the GPU's, the schedule is the closed form and the bound
  holds at every step).  ``execute(..., every_step=True)`` simulates every step instead (the
  reference the tests compare with).  Energy is always summed over every step's exact costs.

The analytic fidelity evaluates every op of every step in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.engine.tiles import analytic, simulate
from sim.targets.base import Costs, OpArrays, Target
from sim.targets.parts import Precision


@dataclass
class Schedule:
    op_cycles: np.ndarray  # critical-path cycles attributed to each op
    cycles: int  # makespan
    events: int


def _layer_blocks(layers: np.ndarray):
    """(pre, [rows of layer 0..L-1], post) if the layers' rows are contiguous, else None."""
    inside = np.flatnonzero(layers >= 0)
    if not len(inside):
        return None
    first, last = inside[0], inside[-1]
    if not (layers[first:last + 1] >= 0).all() or not (np.diff(layers[first:last + 1]) >= 0).all():
        return None
    n_layers = int(layers.max()) + 1
    blocks = [np.flatnonzero(layers == k) for k in range(n_layers)]
    return np.arange(first), blocks, np.arange(last + 1, len(layers))


def _uniform(c: Costs, blocks) -> bool:
    if len(blocks) < 3:
        return False
    sig = c.signature()
    ref = sig[blocks[1]]
    return all(len(b) == len(blocks[1]) and np.array_equal(sig[b], ref) for b in blocks[2:])


def _per_op(op_end: np.ndarray, makespan: int) -> np.ndarray:
    cyc = np.diff(op_end, prepend=0)
    if len(cyc):
        cyc[-1] += makespan - op_end[-1]  # trailing stores
    return cyc


def schedule(c: Costs, layers: np.ndarray, fidelity: str) -> Schedule:
    """Cycles of one step (a prefill or one decode step) of a trace's costs."""
    if fidelity == "analytic":
        tl = analytic(c)
        return Schedule(_per_op(tl.op_end, tl.makespan), tl.makespan, 0)
    split = _layer_blocks(layers)
    if split is None or not _uniform(c, split[1]):
        tl = simulate(c)
        return Schedule(_per_op(tl.op_end, tl.makespan), tl.makespan, tl.events)
    pre, blocks, post = split
    idx = np.concatenate([pre, blocks[0], blocks[1], post])
    tl = simulate(c.take(idx))
    sub = _per_op(tl.op_end, tl.makespan)
    op_cycles = np.zeros(len(c), dtype=np.int64)
    op_cycles[idx] = sub
    for b in blocks[2:]:
        op_cycles[b] = op_cycles[blocks[1]]
    return Schedule(op_cycles, int(op_cycles.sum()), tl.events)


# --------------------------------------------------------------------------------------------
# Decode: a generation's costs by class and chunk, its steps sampled and interpolated
# --------------------------------------------------------------------------------------------

#: an interpolated decode step may be this far (a fraction of its cycles) off the checked steps
STEP_RTOL = 0.005
#: op rows per cost call when a generation's context-dependent ops are costed chunk by chunk
_CHUNK_ROWS = 1 << 15


@dataclass
class DecodeOps:
    """A decode template's ops split for costing (op positions in the template): ``const``, the
    same in every step; ``var``, changing with the context, in classes of ops whose numbers are
    equal at every context (``cls``: each var op's class; ``reps``: an op of each class;
    ``counts``: ops per class)."""

    const: np.ndarray
    var: np.ndarray
    reps: np.ndarray
    cls: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, tpl) -> DecodeOps:
        from sim.targets.base import _NUMERIC

        vary = tpl.varying()
        var = np.flatnonzero(vary)
        nums = tpl.affine()
        cols = [nums[c] for c in _NUMERIC]  # what a target costs, with the kind and dtype
        kind, dtype = tpl.base["kind"].to_numpy(object), tpl.base["dtype"].to_numpy(object)
        index: dict = {}
        reps, of = [], np.zeros(len(var), dtype=np.int64)
        for j, i in enumerate(var):
            key = (kind[i], dtype[i], *(int(x[i]) for b_s in cols for x in b_s))
            if key not in index:
                index[key] = len(reps)
                reps.append(i)
            of[j] = index[key]
        return cls(np.flatnonzero(~vary), var, np.asarray(reps, dtype=np.int64), of,
                   np.bincount(of, minlength=len(reps)).astype(np.int64))


class Generation:
    """The costs of ``len(contexts)`` decode steps of a template on a target, without their
    n_steps x n_ops table: the context-independent ops costed once, one op of each class of the
    context-dependent ones per step (a target's costs are per op: an op's costs depend only on its
    own numbers)."""

    def __init__(self, tpl, ops: DecodeOps, contexts, target: Target, precision: Precision):
        self.tpl, self.ops, self.target, self.precision = tpl, ops, target, precision
        self.contexts = np.asarray(contexts, dtype=np.int64)
        self.n_ops = len(tpl.base)
        self.const = target.cost(OpArrays.from_template(tpl, self.contexts[:1], ops.const), precision) \
            if len(ops.const) else None

    def __len__(self) -> int:
        return len(self.contexts)

    def classes(self, k0: int, k1: int) -> Costs | None:
        """Costs of one op of each class at steps k0 .. k1-1, stacked (step by step)."""
        if not len(self.ops.reps):
            return None
        return self.target.cost(OpArrays.from_template(self.tpl, self.contexts[k0:k1], self.ops.reps),
                                self.precision)

    def chunks(self):
        """(k0, k1, :meth:`classes` of steps k0 .. k1-1) over the whole generation, in chunks."""
        per = max(1, _CHUNK_ROWS // max(1, len(self.ops.reps)))
        for k0 in range(0, len(self), per):
            k1 = min(len(self), k0 + per)
            yield k0, k1, self.classes(k0, k1)

    def step(self, classes: Costs | None, j: int = 0) -> Costs:
        """Every op's costs in one step: step ``j`` of stacked class costs."""
        parts = [(self.ops.const, self.const)] if self.const is not None else []
        if classes is not None:
            n = len(self.ops.reps)
            parts.append((self.ops.var, classes.take(j * n + self.ops.cls)))
        return Costs.assemble(self.n_ops, parts)

    def refill(self, costs: Costs, classes: Costs | None, j: int) -> Costs:
        """``costs`` (a :meth:`step` of this generation) made step ``j`` of ``classes``, in place:
        only the context-dependent ops' entries are written (stepping through a chunk)."""
        if classes is None:
            return costs
        idx = j * len(self.ops.reps) + self.ops.cls
        var = self.ops.var
        for k in Costs.ARRAYS:
            getattr(costs, k)[var] = getattr(classes, k)[idx]
        for a, v in classes.actions.items():
            costs.actions[a][var] = v[idx]
        for k in ("mem_cycles", "math_cycles"):
            if getattr(costs, k) is not None:
                getattr(costs, k)[var] = getattr(classes, k)[idx]
        return costs

    def at(self, k: int) -> Costs:
        return self.step(self.classes(k, k + 1))


@dataclass
class DecodeSchedule:
    sums: dict[str, np.ndarray]  # per-op cost totals over the steps (Costs.sums)
    op_cycles: np.ndarray  # per-op critical-path cycles, summed over the steps
    step_cycles: np.ndarray  # cycles of each step
    events: int
    sampled: list[int]  # the steps scheduled (the others interpolated)
    checked_error: float  # the largest relative error found at a checked step of an accepted segment


def schedule_decode(gen: Generation, layers: np.ndarray, fidelity: str, every_step: bool = False) -> DecodeSchedule:
    """Cost every step of a generation (chunk by chunk) and schedule it: every step at analytic
    fidelity, with ``every_step``, or with 3 steps or fewer; otherwise sampled steps, the others
    interpolated (see the module docstring for the checks and the bound)."""
    n, ops = len(gen), gen.ops
    n_cls = len(ops.reps)
    exact = every_step or fidelity == "analytic" or n <= 3
    op_cycles = np.zeros(gen.n_ops, dtype=np.int64)
    step_cycles = np.zeros(n, dtype=np.int64)
    serial = np.zeros(n, dtype=np.int64)  # each step's closed-form cycles (the interpolation's check)
    const_serial = int(gen.const.serial_cycles().sum()) if gen.const is not None else 0
    cls_sums: dict | None = None
    events = 0
    for k0, k1, cc in gen.chunks():
        m = k1 - k0
        serial[k0:k1] = const_serial
        if cc is not None:
            part = cc.sums(m)
            cls_sums = part if cls_sums is None else {k: cls_sums[k] + v for k, v in part.items()}
            serial[k0:k1] += cc.serial_cycles().reshape(m, n_cls) @ ops.counts
        if exact:
            buf = gen.step(cc, 0)
            for j in range(m):
                sch = schedule(gen.refill(buf, cc, j), layers, fidelity)
                op_cycles += sch.op_cycles
                step_cycles[k0 + j] = sch.op_cycles.sum()
                events += sch.events
    sums = _generation_sums(gen, cls_sums)
    if exact:
        return DecodeSchedule(sums, op_cycles, step_cycles, events, list(range(n)), 0.0)

    sampled: dict[int, Schedule] = {}

    def sim(k: int) -> np.ndarray:
        if k not in sampled:
            sampled[k] = schedule(gen.at(k), layers, fidelity)
        return sampled[k].op_cycles

    accepted, worst = [], 0.0
    todo = [(0, n - 1)]
    while todo:
        lo, hi = todo.pop()
        sim(lo), sim(hi)
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        a, m, b = (sim(k).astype(np.float64) for k in (lo, mid, hi))
        # (a) the middle step, simulated, against the line through the segment's ends
        line_mid = a + (b - a) * ((mid - lo) / (hi - lo))
        err = abs(m.sum() - line_mid.sum())
        ok = err <= STEP_RTOL * m.sum()
        # (b) every step's closed-form cycles against their own line
        ks = np.arange(lo + 1, hi)
        line = serial[lo] + (serial[hi] - serial[lo]) * ((ks - lo) / (hi - lo))
        ok = ok and bool((np.abs(serial[ks] - line) <= STEP_RTOL * serial[ks]).all())
        if ok:
            accepted.append((lo, hi, mid))
            worst = max(worst, err / m.sum() if m.sum() else 0.0)
        else:
            todo += [(mid, hi), (lo, mid)]

    for k, sch in sampled.items():
        op_cycles += sch.op_cycles
        step_cycles[k] = sch.op_cycles.sum()
        events += sch.events
    for lo, hi, mid in accepted:
        _interpolate(sampled[lo].op_cycles, sampled[hi].op_cycles, lo, hi, mid, op_cycles, step_cycles)
    return DecodeSchedule(sums, op_cycles, step_cycles, events, sorted(sampled), worst)


def _interpolate(a: np.ndarray, b: np.ndarray, lo: int, hi: int, mid: int, op_cycles: np.ndarray,
                 step_cycles: np.ndarray) -> None:
    """Add the steps strictly between ``lo`` and ``hi`` (but ``mid``, simulated), each op's cycles on
    the line from ``a`` (step lo) to ``b`` (step hi) rounded to whole cycles, to the per-op and
    per-step totals; only the ops whose ends differ are evaluated step by step, chunk by chunk."""
    ks = np.arange(lo + 1, hi)
    ks = ks[ks != mid]
    op_cycles += a * len(ks)
    step_cycles[ks] = int(a.sum())
    d = np.flatnonzero(a != b)
    if not len(d) or not len(ks):
        return
    af, bf = a.astype(np.float64), b.astype(np.float64)
    ad, slope = af[d], (bf - af)[d]
    per = max(1, _CHUNK_ROWS // len(d))
    for i in range(0, len(ks), per):
        kc = ks[i:i + per]
        frac = (kc - lo).astype(np.float64)[:, None] / (hi - lo)
        v = np.rint(ad[None, :] + slope[None, :] * frac).astype(np.int64) - a[d][None, :]
        op_cycles[d] += v.sum(axis=0)
        step_cycles[kc] += v.sum(axis=1)


def _generation_sums(gen: Generation, cls_sums: dict | None) -> dict[str, np.ndarray]:
    """Per-op totals over the generation: the constant ops' one step times the step count, each
    context-dependent op its class's sum over the steps."""
    const = gen.const.sums() if gen.const is not None else None
    keys = (const or cls_sums).keys()
    out = {}
    for k in keys:
        vals = [v[k] for v in (const, cls_sums) if v is not None]
        col = np.zeros(gen.n_ops, dtype=np.result_type(*vals))
        if const is not None:
            col[gen.ops.const] = const[k] * len(gen)
        if cls_sums is not None:
            col[gen.ops.var] = cls_sums[k][gen.ops.cls]
        out[k] = col
    return out
