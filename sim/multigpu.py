"""Multi-GPU decoding timelines: tensor-parallel vanilla decoding, speculative decoding and EasySpec's
layer-parallel drafting (arXiv 2502.02493), on N GPUs of the GPU target, scheduled with SimPy.

Per-kernel times come from the GPU target (``sim/targets/gpu.py``) on the models' traces (with a
runtime's host, as ``gpu_*_eager.yaml`` gives one, each part of a step takes what the host's
dispatch and the GPU take together, :mod:`sim.engine.host`), sharded
for tensor parallelism over ``tp`` GPUs (:func:`shard`): column-parallel projections (q, k, v, gate,
up, the LM head) split their outputs, row-parallel ones (o, down) their inputs, attention its heads
(KV heads too, down to one per GPU), and the elementwise work between them its slice (:data:`SPLIT`:
the MLP's activation and product, the attention block's rotary and reshapes); norms and residuals
are replicated.  A row-parallel projection
is followed by an all-reduce of the activations: the ring cost 2 (n - 1) / n x bytes / bandwidth plus
a small-message floor (:class:`Link`).

Decoders, one iteration each (a :class:`Timeline` of tasks on GPUs; SimPy runs the tasks when their
GPUs are free and their inputs are ready):

- **vanilla**: one base decode step on all N GPUs (TP = N), one token.
- **speculative**: ``gamma`` draft decode steps (the draft on its own TP group of ``draft_tp`` GPUs),
  then one base forward over the gamma + 1 positions (TP = N) to verify; accepted tokens per
  iteration from the measured acceptance (or Leviathan et al.'s expectation).
- **easyspec**: as speculative, but each draft step runs the draft's layers in groups of
  ``group`` (its first and last layers exact, outside any group, unless ``exact_ends`` is off):
  the attentions of a group's layers run at once on different GPUs (each GPU one layer,
  unsharded) from the group's input, an all-gather brings their outputs to those GPUs, then each of
  them runs the group's MLPs whole, in order, with no collective (as the authors' code does;
  ``group_mlps="draft_tp"`` runs them on the draft's TP group instead, with its all-reduces).  The
  draft's KV cache is calibrated by one exact
  forward over the previous iteration's accepted and bonus tokens, which is also the iteration's
  first draft step (it drafts the first token), so gamma - 1 steps are layer-parallel; with
  ``calibration="on_mismatch"`` (the authors' code's default) only after an iteration that rejected a
  draft, over every token since the last calibration (E[tokens] / (1 - p) on average, p the share of
  iterations that accept every draft); an iteration after a full acceptance drafts all gamma steps
  layer-parallel (its first over the last draft and the bonus token, costed as a one-token step:
  decode at batch 1 is bound by the weights, not the tokens).

:func:`run_decoder` returns time per iteration, tokens per iteration and time per token;
:func:`chrome_trace` writes the timeline for chrome://tracing or Perfetto.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.errors import SimError
from sim.engine.graph import TaskGraph
from sim.targets.parts import Link, Precision

COLUMN = {"q_proj", "k_proj", "v_proj", "qkv_proj", "mlp_gate", "mlp_up", "mlp_gate_up", "lm_head", "expert_gate_up"}
ROW = {"o_proj", "mlp_down", "expert_down"}  # a mixture of experts' experts split as an MLP is (the router is replicated)
ATTN = {"attn_score", "attn_context", "attn_softmax", "attn_mask", "kv_write"}
#: elementwise work between a column- and a row-parallel projection, on each GPU's slice: the MLP's
#: activation and gate x up product (an expert's too) on its share of the intermediate width, and the
#: attention block's own ops (rotary embedding, head reshapes) on its share of the heads (the query
#: heads': where there are fewer KV heads than GPUs, their slice of this is replicated, not counted)
SPLIT = {"activation", "mlp_other", "expert_act", "attn_other"}


def shard(df: pd.DataFrame, tp: int, kv_heads: int, whole_experts: bool = False) -> pd.DataFrame:
    """A trace as one of ``tp`` tensor-parallel GPUs runs it (see the module docstring).  With
    ``whole_experts`` (expert parallelism) a mixture of experts' experts are left whole: each runs
    on one GPU of the group (:mod:`sim.parallel` places them)."""
    if tp == 1:
        return df
    d = df.copy()
    role = d["role"].to_numpy()
    keep = (d["expert"].to_numpy() >= 0) if whole_experts and "expert" in d else np.zeros(len(d), dtype=bool)
    col = np.isin(role, list(COLUMN)) & (d.kind == "gemm").to_numpy() & ~keep
    row = np.isin(role, list(ROW)) & (d.kind == "gemm").to_numpy() & ~keep
    att = np.isin(role, list(ATTN)) | (d.kind == "attn_matmul").to_numpy()
    split = np.isin(role, list(SPLIT)) & ~keep & ~att
    kv_split = min(tp, max(1, kv_heads))
    for mask, cols in ((col, ("gemm_n", "weight_bytes", "flops", "bytes_written")),
                       (row, ("gemm_k", "weight_bytes", "flops"))):
        for c in cols:
            d.loc[mask, c] = np.ceil(d.loc[mask, c] / tp).astype(np.int64)
    d.loc[row, "bytes_read"] = np.ceil((d.loc[row, "bytes_read"] - df.loc[row, "weight_bytes"]) / tp
                                       + d.loc[row, "weight_bytes"]).astype(np.int64)
    d.loc[col, "bytes_read"] = np.ceil(d.loc[col, "bytes_read"] - df.loc[col, "weight_bytes"]
                                       + d.loc[col, "weight_bytes"]).astype(np.int64)
    for c in ("gemm_batch", "flops", "bytes_read", "bytes_written"):
        d.loc[att, c] = np.ceil(d.loc[att, c] / tp).astype(np.int64)
    for c in ("flops", "bytes_read", "bytes_written"):
        d.loc[split, c] = np.ceil(d.loc[split, c] / tp).astype(np.int64)
    for c in ("kv_bytes_read", "kv_bytes_written"):
        d.loc[att, c] = np.ceil(d.loc[att, c] / kv_split).astype(np.int64)
    return d


@dataclass(frozen=True)
class StepTimes:
    """Seconds of one forward step of a model on its TP group, by part."""

    layer_attn: float  # one layer's attention block (norm, q/k/v, attention, o) on one GPU of the group
    layer_mlp: float  # one layer's MLP block
    layer_allreduce: float  # the layer's two all-reduces (after o and down)
    other: float  # embedding, final norm, LM head
    layers: int
    hidden_bytes: float  # one layer's output activations (batch x seq x d)

    @property
    def total(self) -> float:
        return self.layers * (self.layer_attn + self.layer_mlp + self.layer_allreduce) + self.other


_STEPS: dict = {}


def step_times(model: str, phase: str, seq: int, context: int, tp: int, gpu, link: Link, batch: int = 1,
               dtype: str = "fp16", precision: Precision = Precision(16, 16)) -> StepTimes:
    """Per-part times of one step of ``model`` on a TP group of ``tp`` GPUs of target ``gpu`` (memoized:
    sweeps ask for the same steps many times)."""
    key = (model, phase, seq, context, tp, gpu.params.model_dump_json(), link, batch, dtype, precision)
    hit = _STEPS.get(key)
    if hit is None:
        if len(_STEPS) > 4096:
            _STEPS.clear()
        hit = _STEPS[key] = _step_times(model, phase, seq, context, tp, gpu, link, batch, dtype, precision)
    return hit


def _step_times(model, phase, seq, context, tp, gpu, link, batch, dtype, precision) -> StepTimes:
    from workloads import trace, zoo

    spec = zoo.get(model)
    df = trace(model, phase, batch, seq, context, dtype)
    sh = shard(df, tp, spec.kv_heads)
    c = gpu.cost(sh, precision)
    t = c.compute_cycles / gpu.freq_hz
    layer = sh["layer"].to_numpy()
    one = layer == 1
    mlp = one & np.char.startswith(sh["role"].to_numpy().astype(str), "mlp")
    mlp |= one & (sh["role"].to_numpy() == "activation")
    hidden = batch * seq * spec.hidden * 2.0
    host = gpu.host
    if host.modelled:
        # a runtime with a host (eager PyTorch): each part takes what the host stream and the GPU
        # take together (sim.engine.host), every GPU of the group dispatched by its own host process
        from sim.engine.host import host_device

        hs = host.op_seconds(sh["kind"].to_numpy())

        def part(mask, fixed=0.0) -> float:
            return host_device(hs[mask], t[mask], fixed, host.params.overlap).seconds if mask.any() else fixed

        m = sh["module"].astype(str)
        fixed = host.fixed_seconds(int(m[m != ""].nunique()), decode=phase == "decode")
    else:
        def part(mask, fixed=0.0) -> float:
            return float(t[mask].sum())

        fixed = 0.0
    return StepTimes(layer_attn=part(one & ~mlp), layer_mlp=part(mlp),
                     layer_allreduce=2 * link.all_reduce(hidden, tp), other=part(layer < 0, fixed),
                     layers=spec.layers, hidden_bytes=hidden)


class Timeline(TaskGraph):
    """A decoding iteration's task graph: each GPU a resource (``GPU 0`` .. ``GPU n-1``)."""

    def add(self, name, gpus, seconds, after=(), cat="compute") -> str:
        return super().add(name, [f"GPU {g}" for g in gpus], float(seconds), after, cat)


def chrome_trace(tl: Timeline, path: str | Path, label: str = "") -> Path:
    """The timeline as a Chrome/Perfetto trace (one row per GPU; :mod:`sim.engine.trace`)."""
    from sim.engine.trace import write

    return write(tl.spans(label or "iteration"), path)


CALIBRATION = ("every_iteration", "on_mismatch")


def expected_tokens(alpha: float, gamma: int) -> float:
    """Leviathan et al. (ICML 2023): expected tokens per iteration with per-token acceptance alpha."""
    if alpha >= 1.0:
        return gamma + 1.0
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def _tp_layer(tl: Timeline, prefix: str, i: int, st: StepTimes, gpus: tuple[int, ...], after: str) -> str:
    """Add layer ``i`` of a TP forward step (attention, MLP, each followed by its all-reduce on more
    than one GPU) to the timeline; returns its last task."""
    last = tl.add(f"{prefix} L{i} attn", gpus, st.layer_attn, (after,))
    if len(gpus) > 1:
        last = tl.add(f"{prefix} L{i} allreduce1", gpus, st.layer_allreduce / 2, (last,), "comm")
    last = tl.add(f"{prefix} L{i} mlp", gpus, st.layer_mlp, (last,))
    if len(gpus) > 1:
        last = tl.add(f"{prefix} L{i} allreduce2", gpus, st.layer_allreduce / 2, (last,), "comm")
    return last


def _model_step(tl: Timeline, prefix: str, st: StepTimes, gpus: tuple[int, ...], link: Link, after: str,
                layered: int | None = None) -> str:
    """Add one TP forward step (layer by layer) to the timeline; returns its last task."""
    last = after
    for i in range(st.layers if layered is None else layered):
        last = _tp_layer(tl, prefix, i, st, gpus, last)
    return tl.add(f"{prefix} head", gpus, st.other, (last,))


def vanilla_iteration(base: StepTimes, n: int, link: Link) -> Timeline:
    tl = Timeline()
    _model_step(tl, "base", base, tuple(range(n)), link, "")
    return tl


def speculative_iteration(draft: StepTimes, verify: StepTimes, gamma: int, n: int, draft_tp: int, link: Link,
                          draft_parallel: StepTimes | None = None, group: int = 1,
                          calibrate: StepTimes | None = None, exact_ends: bool = True,
                          group_mlps: str = "unsharded", calibrate_first: bool = True) -> Timeline:
    """One draft-then-verify iteration.  With ``draft_parallel`` (unsharded per-layer times) and
    ``group`` > 1, EasySpec: the iteration's first draft step is the exact forward that calibrates the
    draft's KV cache over the previous iteration's accepted and bonus tokens (``calibrate``, which also
    drafts the first token), and the other gamma - 1 steps are layer-parallel (the layers grouped
    as :func:`models.easyspec.layer_groups` does: with ``exact_ends`` the first and the last layer
    run exactly on the draft's TP group).  Without ``calibrate_first`` (the previous iteration accepted
    every draft and the policy calibrates only after a mismatch) the first step is layer-parallel too."""
    from models.easyspec import layer_groups

    tl = Timeline()
    dg = tuple(range(draft_tp))
    last = ""
    easy = draft_parallel is not None and group > 1
    for s in range(gamma):
        if not easy:
            last = _model_step(tl, f"draft{s}", draft, dg, link, last)
            continue
        if s == 0 and calibrate_first:
            last = _model_step(tl, "draft0 calibrate", calibrate or draft, dg, link, last)
            continue
        for members in layer_groups(draft.layers, group, exact_ends):
            g0 = members[0]
            if len(members) == 1:  # an exact layer (the first and the last with exact_ends)
                last = _tp_layer(tl, f"draft{s}", g0, draft, dg, last)
                continue
            gg = tuple(range(min(n, len(members))))  # the GPUs that ran the group's attentions
            attn = [tl.add(f"draft{s} L{i} attn", ((i - g0) % n,), draft_parallel.layer_attn, (last,))
                    for i in members]
            last = tl.add(f"draft{s} G{g0} allgather", gg,
                          link.all_gather(draft_parallel.hidden_bytes * len(members), len(gg)), tuple(attn), "comm")
            for i in members:
                if group_mlps == "unsharded":  # each of those GPUs runs the MLPs whole, in order: no collective
                    last = tl.add(f"draft{s} L{i} mlp", gg, draft_parallel.layer_mlp, (last,))
                    continue
                last = tl.add(f"draft{s} L{i} mlp", dg, draft.layer_mlp, (last,))  # on the draft's TP group
                if draft_tp > 1:
                    last = tl.add(f"draft{s} L{i} allreduce", dg, draft.layer_allreduce / 2, (last,), "comm")
        last = tl.add(f"draft{s} head", dg, draft.other, (last,))
    _model_step(tl, "verify", verify, tuple(range(n)), link, last)
    return tl


_ITERATIONS: dict = {}


def _timed(build, key, keep: bool = False) -> tuple[float, float, "Timeline | None"]:
    """(iteration seconds, end of drafting, the timeline when ``keep``) of the iteration ``build()``
    makes; the times memoized by ``key`` (the step times and shape that determine them: sweeps
    rebuild the same iterations)."""
    hit = _ITERATIONS.get(key)
    if hit is not None and not keep:
        return (*hit, None)
    if len(_ITERATIONS) > 8192:
        _ITERATIONS.clear()
    tl = build()
    t = tl.run()
    draft_end = max((tl.end[x.name] for x in tl.tasks if x.name.startswith("draft")), default=0.0)
    _ITERATIONS[key] = (t, draft_end)
    return t, draft_end, tl


def run_decoder(kind: str, *, base: str, draft: str | None, gpu, link: Link, n: int, context: int, gamma: int = 4,
                alpha: float | None = None, tokens_per_iter: float | None = None, draft_tp: int | None = None,
                group: int = 1, batch: int = 1, trace_to: str | Path | None = None, exact_ends: bool = True,
                group_mlps: str = "unsharded", calibration: str = "every_iteration",
                all_accepted: float | None = None) -> dict:
    """Time per iteration and per token of one decoder (see the module docstring).

    EasySpec's ``calibration``: ``every_iteration`` (the paper's abstract: the first draft step of
    every iteration is the exact calibrating forward) or ``on_mismatch`` (the authors' code's default:
    an iteration that follows one whose drafts were all accepted starts with a layer-parallel step;
    ``all_accepted``, the fraction of such iterations, defaults to ``alpha ** gamma``).  The
    iteration time is then the mean of the two kinds, weighted by how often each occurs; the trace
    shows the calibrating kind."""
    if kind not in ("vanilla", "speculative", "easyspec"):
        raise SimError(f"unknown decoder {kind!r} (vanilla, speculative, easyspec)")
    if calibration not in CALIBRATION:
        raise SimError(f"calibration {calibration!r}: {' or '.join(CALIBRATION)}")
    if n < 1 or gamma < 1 or group < 1:
        raise SimError("GPUs, gamma and group size must be at least 1")
    if group_mlps not in ("unsharded", "draft_tp"):
        raise SimError(f"group_mlps {group_mlps!r}: unsharded or draft_tp")
    bstep = step_times(base, "decode", 1, context, n, gpu, link, batch)
    p_full = 0.0
    keep = bool(trace_to)  # a trace needs the timeline itself
    if kind == "vanilla":
        t, draft_end, tl = _timed(lambda: vanilla_iteration(bstep, n, link), ("vanilla", bstep, n, link), keep)
        tokens = 1.0
    else:
        if draft is None:
            raise SimError(f"the {kind} decoder needs a draft model")
        dtp = draft_tp or n
        dstep = step_times(draft, "decode", 1, context, dtp, gpu, link, batch)
        verify = step_times(base, "decode", gamma + 1, context, n, gpu, link, batch)
        if tokens_per_iter is None:
            if alpha is None:
                raise SimError("give the acceptance rate (alpha) or the measured tokens per iteration")
            tokens_per_iter = expected_tokens(alpha, gamma)
        shape = (dstep, verify, gamma, n, dtp, link)
        if kind == "easyspec":
            if calibration == "on_mismatch" and group > 1:
                if all_accepted is None:
                    if alpha is None:
                        raise SimError("calibration on_mismatch needs alpha or the fraction of all-accepted iterations")
                    all_accepted = alpha ** gamma
                if not 0 <= all_accepted <= 1:
                    raise SimError(f"all_accepted {all_accepted}: a fraction in [0, 1]")
                p_full = float(all_accepted)
            par = step_times(draft, "decode", 1, context, 1, gpu, link, batch)
            # the calibrating forward covers every token since the cache's exact prefix: the iteration's
            # own (accepted and bonus) and, calibrating only on a mismatch, those of the full acceptances
            # before it (on average p / (1 - p) iterations of gamma + 1): E[tokens] / (1 - p) in all
            accepted = max(1, int(round(tokens_per_iter / (1 - p_full)))) if p_full < 1 else 1
            cal = step_times(draft, "decode", accepted, context, dtp, gpu, link, batch)
            easy = (par, group, cal, exact_ends, group_mlps)
            t, draft_end, tl = _timed(lambda: speculative_iteration(*shape, *easy), ("easyspec", shape, easy), keep)
            if p_full > 0:  # the iterations that follow a full acceptance skip the calibrating step
                tq, dq, _ = _timed(lambda: speculative_iteration(*shape, *easy, calibrate_first=False),
                                   ("easyspec quick", shape, easy))
                t, draft_end = (1 - p_full) * t + p_full * tq, (1 - p_full) * draft_end + p_full * dq
        else:
            t, draft_end, tl = _timed(lambda: speculative_iteration(*shape), ("speculative", shape), keep)
        tokens = float(tokens_per_iter)
    if trace_to:
        chrome_trace(tl, trace_to, f"{kind} n={n}")
    return {"decoder": kind, "gpus": n, "gamma": gamma, "group": group, "iteration_s": t, "tokens_per_iter": tokens,
            "time_per_token_s": t / tokens, "drafting_s": draft_end, "calibrated_share": 1 - p_full}
