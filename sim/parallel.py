"""Devices sharing one run (``parallel: {tp, pp, ep, dp, micro_batches}``): where one device's work
goes, what moves between devices, and what it costs.

:mod:`sim.run` traces and costs the work once: one micro-batch (``batch / (dp x micro_batches)``
sequences) through every layer, as one tensor-parallel rank runs it (:func:`sim.multigpu.shard`);
under expert parallelism the experts stay whole, every expert once.  This module places that work:

- **placement** (:func:`owners`): the layers split into ``pp`` contiguous stages (the first stages
  take one more layer where ``pp`` does not divide them; the embedding goes with the first stage,
  the final norm and the head with the last); an expert ``e`` lives on rank ``e mod ep`` of its
  stage's expert-parallel group: the tensor-parallel group (``ep = tp``: the experts spread whole
  over it instead of each being split) or every replica's group (``ep = tp x dp``: each replica
  keeps its attention, the experts see all the replicas' tokens, :func:`splice_experts`).  Devices are numbered tensor-parallel rank innermost, then stage,
  then replica: a tensor-parallel group of up to ``gpus_per_node`` sits in one node.
- **stage time** (:func:`stage_fractions`): a stage's share of a step is its busiest rank's share of
  the costed cycles (under ``ep``, the rank whose experts carry the most work; the others wait at
  the all-to-all), plus its collectives.
- **collectives** (:class:`Topology`): all-reduce, all-gather, all-to-all and point-to-point sends,
  each a fixed latency plus bytes over the bandwidth of the link it crosses: the node's GPU link
  (NVLink/NVSwitch, or PCIe) inside a node; across nodes, two levels (inside each node, then
  between the nodes over the network, per GPU).  Per layer: tensor parallelism's two all-reduces
  (after the attention's and the MLP's row-parallel projections); under ``ep`` a mixture of
  experts' layer replaces the MLP's all-reduce by two all-to-alls (dispatch each token's hidden
  state to the ranks of its experts, combine the results back), Megatron-Core's all-to-all token
  dispatcher with sequence parallelism (the attention's all-reduce then splits into a
  reduce-scatter and an all-gather, the same bytes).  The head's logits are all-gathered.
- **pipeline** (:func:`prefill_makespan`, :func:`decode_time`): prefill is a flow shop of
  ``micro_batches`` identical jobs over the stages and the links between them (makespan: the sum
  of the stage and link times plus ``micro_batches - 1`` times the slowest); decoding is a cycle
  (a micro-batch's next token needs its previous one through every stage and back), computed step
  by step as first-come-first-served queues (:func:`decode_ends`).  In steady state a step takes
  the longer of the busiest stage serving every micro-batch and one micro-batch's round trip
  (:func:`decode_period`, ``max(m x t_max, sum t + hops)``): with fewer micro-batches than stages
  the pipeline idles (the bubble).  :func:`timeline` lays the same schedule on the engine's task
  graph, one row per stage and link, for the trace.
- **data parallelism**: ``dp`` replicas run side by side on their share of the batch: no traffic
  between them at inference; latency is a replica's, tokens and energy all of them.

Energy: each op's dynamic energy as often as it runs (every tensor-parallel rank of every replica
and micro-batch; a whole expert once per replica and micro-batch), and every device's static
power over the whole run (busy, waiting at a collective or idle in a bubble).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import SimError
from sim.targets.parts import Link

# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def check(spec, target, par, w) -> None:
    """Every way ``par`` cannot run ``spec`` on ``target`` with workload ``w``, as one-line errors
    (before any tracing: the layout, the model's shape, the topology)."""
    tp, pp, ep, dp, m = par.tp, par.pp, par.ep, par.dp, par.micro_batches
    split = tp > 1 or pp > 1 or ep > 1  # the model itself divided between devices (dp alone copies it)
    if split and getattr(target, "link", None) is None:
        raise SimError(f"{tp * pp} devices a replica (tp x pp), or experts over {ep}, need a GPU target with a "
                       f"GPU-to-GPU link (link_bytes_per_s); {target.name} has none (data-parallel replicas alone "
                       "need none)")
    if split and (not spec.config_class or "num_attention_heads" not in spec.config):
        raise SimError(f"{spec.name} is not a transformers model with layers and heads to split")
    if tp > 1:
        kv = spec.kv_heads
        if spec.heads % tp or (kv % tp and tp % kv):
            raise SimError(f"tp {tp} must divide {spec.name}'s {spec.heads} attention heads and its {kv} KV heads "
                           "(or be a multiple of them)")
    if ep > 1:
        if not spec.experts:
            raise SimError(f"ep {ep}: {spec.name} has no experts (expert parallelism is for mixtures of experts)")
        if ep not in (tp, tp * dp):
            raise SimError(f"ep {ep} must equal tp ({tp}), the experts spread whole over the tensor-parallel group, "
                           f"or tp x dp ({tp * dp}), over every replica's group of a stage (data-parallel attention)")
        if spec.experts % ep:
            raise SimError(f"ep {ep} must divide {spec.name}'s {spec.experts} experts")
        if not spec.experts_per_token:
            raise SimError(f"ep {ep}: {spec.name}'s config gives no experts per token (num_experts_per_tok)")
    if pp > spec.layers:
        raise SimError(f"pp {pp} is more stages than {spec.name}'s {spec.layers} layers")
    if w.batch % (dp * m):
        raise SimError(f"batch {w.batch} must split evenly into dp x micro_batches = {dp} x {m} = {dp * m} "
                       "micro-batches")
    if m > 1 and pp == 1:
        raise SimError("micro_batches > 1 needs pipeline stages (pp > 1): one stage runs the batch whole")
    if split:
        topo = topology(target)
        n = topo.per_node
        if tp > 1 and not (n % tp == 0 or tp % n == 0):
            raise SimError(f"tp {tp} must divide the target's {n} GPUs a node or be a multiple of it (a "
                           "tensor-parallel group does not straddle nodes)")
        if topo.inter is None and (tp > n or crossings(par, n).any()
                                   or any(ep_nodes(par, s, n) > 1 for s in range(pp))):
            raise SimError(f"{tp * pp * dp} devices (tp {tp} x pp {pp} x dp {dp}) span nodes of {n} GPUs and "
                           f"{target.name} gives no network between nodes (network_bytes_per_s)")


# --------------------------------------------------------------------------------------------
# Topology and collectives
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """GPUs in nodes: ``intra`` between the GPUs of one node (NVLink/NVSwitch, or PCIe), ``inter``
    between nodes (the network, per GPU and direction; None: one node only), ``per_node`` GPUs a
    node.  A group of ``n`` contiguous devices spans ``ceil(n / per_node)`` nodes."""

    intra: Link
    inter: Link | None = None
    per_node: int = 8
    p2p_latency_s: float | None = None  # a send inside a node (none: the intra link's collective latency)

    def nodes(self, n: int) -> int:
        return max(1, -(-n // self.per_node)) if n > 1 else 1

    def _two_level(self, n: int, nodes: int | None = None) -> tuple[int, int]:
        nodes = self.nodes(n) if nodes is None else nodes
        if nodes > 1 and self.inter is None:
            raise SimError(f"a group of {n} devices spans {nodes} nodes of {self.per_node} GPUs and the target "
                           "gives no network between nodes (network_bytes_per_s)")
        return nodes, max(1, n // nodes)

    def all_reduce(self, nbytes: float, n: int) -> float:
        """Inside one node a ring over the node's link; across nodes two levels: reduce-scatter and
        all-gather inside each node (one intra-node all-reduce's traffic) and an all-reduce of each
        GPU's 1/local share between the nodes."""
        if n <= 1:
            return 0.0
        nodes, local = self._two_level(n)
        if nodes == 1:
            return self.intra.all_reduce(nbytes, n)
        return self.intra.all_reduce(nbytes, local) + self.inter.all_reduce(nbytes / local, nodes)

    def all_gather(self, nbytes: float, n: int) -> float:
        """``nbytes`` in total, 1/n from each device; across nodes, between the nodes first (each
        GPU its 1/local share of every node's part), then inside each node."""
        if n <= 1:
            return 0.0
        nodes, local = self._two_level(n)
        if nodes == 1:
            return self.intra.all_gather(nbytes, n)
        return self.inter.all_gather(nbytes / local, nodes) + self.intra.all_gather(nbytes, local)

    def all_to_all(self, nbytes: float, n: int, nodes: int | None = None) -> float:
        """Each device sends ``nbytes`` spread evenly over the group (1/n of it stays home): the
        part for the device's own node over the node's link, the rest over the network, at once
        (``nodes``: how many nodes the group spans, where its devices are not contiguous)."""
        if n <= 1:
            return 0.0
        nodes, local = self._two_level(n, nodes)
        near = nbytes * (local - 1) / n
        t = self.intra.latency_s + near / self.intra.bytes_per_s
        if nodes > 1:
            far = nbytes * (n - local) / n
            t = max(t, self.inter.latency_s + far / self.inter.bytes_per_s)
        return t

    def send(self, nbytes: float, cross_node: bool) -> float:
        """A point-to-point transfer between two devices (a pipeline stage's activations)."""
        if cross_node:
            if self.inter is None:
                raise SimError("pipeline stages span nodes and the target gives no network between nodes "
                               "(network_bytes_per_s)")
            return self.inter.transfer_s(nbytes)
        lat = self.intra.latency_s if self.p2p_latency_s is None else self.p2p_latency_s
        return lat + nbytes / self.intra.bytes_per_s


def topology(target) -> Topology:
    """The target's topology (a GPU target's ``link``, ``network`` and ``gpus_per_node``)."""
    link = getattr(target, "link", None)
    if link is None:
        raise SimError(f"{target.name} has no GPU-to-GPU link")
    return Topology(link, getattr(target, "network", None), int(getattr(target, "gpus_per_node", 8) or 8),
                    getattr(target, "p2p_latency_s", None))


# --------------------------------------------------------------------------------------------
# Placement
# --------------------------------------------------------------------------------------------


def stage_layers(layers: int, pp: int) -> np.ndarray:
    """Stage of each layer: ``pp`` contiguous runs, the first ``layers % pp`` one layer longer."""
    sizes = np.full(pp, layers // pp)
    sizes[: layers % pp] += 1
    return np.repeat(np.arange(pp), sizes)


def owners(layer: np.ndarray, expert: np.ndarray, layers: int, pp: int, ep: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage and expert rank of each traced op (rank -1: every rank of the group runs it).  Ops
    outside the layers go with the first stage before the first layer (the embedding) and with the
    last after it (final norm, head)."""
    layer = np.asarray(layer, dtype=np.int64)
    of = stage_layers(layers, pp)
    stage = np.where(layer >= 0, of[np.clip(layer, 0, layers - 1)], -1)
    inside = np.flatnonzero(layer >= 0)
    if len(inside):
        stage[: inside[0]] = 0
        stage[inside[-1] + 1:] = pp - 1
        # an op between layers outside any (rare): the stage of the layer before it
        fill = np.maximum.accumulate(np.where(stage >= 0, np.arange(len(stage)), 0))
        stage = stage[fill]
    else:
        stage[:] = 0
    expert = np.asarray(expert, dtype=np.int64)
    rank = np.where((expert >= 0) & (ep > 1), expert % max(ep, 1), -1)
    return stage, rank


def stage_fractions(cycles: np.ndarray, stage: np.ndarray, rank: np.ndarray, layer: np.ndarray, pp: int,
                    ep: int) -> np.ndarray:
    """Per stage, its share of all ``cycles`` on its busiest rank: the ops every rank runs, plus in
    each layer the rank whose experts take longest (the all-to-all waits for it, layer by layer)."""
    cycles = np.asarray(cycles, dtype=np.float64)
    total = cycles.sum()
    if total <= 0:
        return np.full(pp, 1.0 / pp)
    shared = np.bincount(stage[rank < 0], weights=cycles[rank < 0], minlength=pp)[:pp]
    own = np.zeros(pp)
    if ep > 1 and (rank >= 0).any():
        on = rank >= 0
        lay = np.asarray(layer)[on]
        per = np.zeros((lay.max() + 1, ep))
        np.add.at(per, (lay, rank[on]), cycles[on])
        layer_stage = np.zeros(lay.max() + 1, dtype=np.int64)
        layer_stage[lay] = stage[on]
        own = np.bincount(layer_stage, weights=per.max(axis=1), minlength=pp)[:pp]
    return (shared + own) / total


def multiplicity(rank: np.ndarray, par) -> np.ndarray:
    """How many times each op of one rank's micro-batch runs in the whole system per micro-batch:
    on every tensor-parallel rank of every replica, or (a whole expert under expert parallelism)
    once per expert-parallel group: each replica (ep = tp) or all of them together (ep = tp x dp)."""
    groups = par.dp // (par.ep // par.tp) if par.ep > 1 else par.dp
    return np.where(np.asarray(rank) >= 0, groups, par.tp * par.dp).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Collectives per stage
# --------------------------------------------------------------------------------------------


def expert_traffic(layer: np.ndarray, expert: np.ndarray, role: np.ndarray, kind: np.ndarray, gemm_m: np.ndarray,
                   layers: int, ep: int) -> tuple[np.ndarray, np.ndarray]:
    """From a costed frame: which layers hold experts, and per layer the most tokens one expert rank
    receives (its experts' loads summed; under skewed routing the hot rank's)."""
    moe = np.zeros(layers, dtype=bool)
    recv = np.zeros(layers)
    rows = (np.asarray(expert) >= 0) & (np.asarray(role) == "expert_gate_up") & (np.asarray(kind) == "gemm")
    if not rows.any():
        return moe, recv
    lay, ex, tok = np.asarray(layer)[rows], np.asarray(expert)[rows], np.asarray(gemm_m, dtype=np.float64)[rows]
    moe[np.unique(lay)] = True
    per = np.zeros((layers, max(ep, 1)))
    np.add.at(per, (lay, ex % max(ep, 1)), tok)
    recv[:] = per.max(axis=1)
    return moe, recv


def stage_collectives(spec, par, topo: Topology, tokens: int, seqs: int, act_bytes: float,
                      moe: np.ndarray | None = None, recv: np.ndarray | None = None) -> np.ndarray:
    """Seconds of each stage's collectives for one micro-batch of ``tokens`` tokens (batch x
    sequence): per layer tensor parallelism's two all-reduces of the hidden state; under ``ep``, a
    layer with experts (``moe``) has one all-reduce and the dispatch and combine all-to-alls over
    the ``ep`` devices (across the replicas where ep = tp x dp, over the network where they span
    nodes), each rank sending its 1/tp of its replica's tokens to their ``k`` experts' ranks or
    receiving its experts' tokens (``recv``, the busiest rank's), whichever is more; the last stage's head gathers the
    logits of each of the ``seqs`` sequences' last position."""
    tp, pp, ep = par.tp, par.pp, par.ep
    of = stage_layers(spec.layers, pp)
    per_layer = np.zeros(spec.layers)
    ar = topo.all_reduce(tokens * spec.hidden * act_bytes, tp) if tp > 1 else 0.0
    per_layer[:] = 2 * ar
    if ep > 1 and moe is not None and moe.any():
        send = -(-tokens // tp) * spec.experts_per_token
        for i in np.flatnonzero(moe):
            nodes = ep_nodes(par, int(of[i]), topo.per_node)
            a2a = topo.all_to_all(max(send, float(recv[i])) * spec.hidden * act_bytes, ep, nodes=nodes)
            per_layer[i] = ar + 2 * a2a
    out = np.array([per_layer[of == s].sum() for s in range(pp)])
    if tp > 1 and spec.kind == "decoder":
        out[-1] += topo.all_gather(seqs * spec.vocab * act_bytes, tp)
    return out


def splice_experts(small, big):
    """One replica's trace (``small``) with each layer's expert ops taken from ``big``, the same
    model traced for the tokens of every replica that shares the experts (ep = tp x dp): the
    experts see all those tokens, the rest of the layer only the replica's.  ``big``'s expert rows
    go where ``small``'s were; ``idx`` is renumbered."""
    import pandas as pd

    ex_s = small["expert"].to_numpy() >= 0
    ex_b = big["expert"].to_numpy() >= 0
    key_s = np.arange(len(small), dtype=np.float64)
    lay_s = small["layer"].to_numpy()
    anchor = {}
    for i in np.flatnonzero(ex_s):
        anchor.setdefault(int(lay_s[i]), float(i))
    rows = big[ex_b]
    lay_b = rows["layer"].to_numpy()
    key_b = np.empty(len(rows))
    for layer in np.unique(lay_b):
        at = np.flatnonzero(lay_b == layer)
        if int(layer) not in anchor:
            raise SimError(f"layer {int(layer)} has experts in one trace and none in the other")
        key_b[at] = anchor[int(layer)] - 1 + (np.arange(len(at)) + 1) / (len(at) + 1)
    out = pd.concat([small[~ex_s].assign(_key=key_s[~ex_s]), rows.assign(_key=key_b)], ignore_index=True)
    out = out.sort_values("_key", kind="stable").drop(columns="_key").reset_index(drop=True)
    out["idx"] = np.arange(len(out), dtype=np.int64)
    out.attrs = dict(small.attrs)
    return out


def crossings(par, per_node: int) -> np.ndarray:
    """For each of the pipeline's hops (stage s to s + 1, and the last stage back to the first),
    whether it crosses a node boundary in any replica (device ``r tp pp + s tp`` is stage s's first
    GPU in replica r)."""
    tp, pp = par.tp, par.pp
    out = np.zeros(pp, dtype=bool)
    for r in range(par.dp):
        first = r * tp * pp + np.arange(pp) * tp
        out |= first // per_node != np.roll(first, -1) // per_node
    return out


def ep_members(par, stage: int) -> list[int]:
    """The devices that share a stage's experts: its tensor-parallel group (ep = tp), or every
    replica's (ep = tp x dp)."""
    reps = range(par.dp) if par.ep > par.tp else range(1)
    return [r * par.tp * par.pp + stage * par.tp + i for r in reps for i in range(par.tp)]


def ep_nodes(par, stage: int, per_node: int) -> int:
    """How many nodes a stage's expert-parallel group spans."""
    return len({d // per_node for d in ep_members(par, stage)}) if par.ep > 1 else 1


def hop_seconds(topo: Topology, par, nbytes: float) -> np.ndarray:
    """Seconds to send ``nbytes`` from each stage to the next (pp - 1 hops): over the network where
    the hop crosses a node boundary in any replica (the slowest replica sets the pace), else over
    the node's link."""
    cross = crossings(par, topo.per_node)
    return np.array([topo.send(nbytes, bool(cross[s])) for s in range(par.pp - 1)], dtype=np.float64)


def back_seconds(topo: Topology, par, nbytes: float) -> float:
    """The sampled tokens' way from the last stage back to the first (0 without stages)."""
    return topo.send(nbytes, bool(crossings(par, topo.per_node)[-1])) if par.pp > 1 else 0.0


# --------------------------------------------------------------------------------------------
# Pipeline schedules
# --------------------------------------------------------------------------------------------


def prefill_makespan(stage_s: np.ndarray, hops_s: np.ndarray, m: int) -> float:
    """``m`` identical micro-batches through the stages and the links between them (a flow shop
    of identical jobs: the sum of the times plus ``m - 1`` times the slowest)."""
    times = np.concatenate([np.asarray(stage_s, dtype=np.float64), np.asarray(hops_s, dtype=np.float64)])
    return float(times.sum() + (m - 1) * times.max()) if len(times) else 0.0


def decode_period(stage_s: np.ndarray, hops_s: np.ndarray, back_s: float, m: int) -> float:
    """One decode step of ``m`` micro-batches in a pipeline in steady state: the busiest resource
    serving all of them, or one micro-batch's round trip (every stage, every hop and the sampled
    token back to the first stage), whichever is longer."""
    stage_s = np.asarray(stage_s, dtype=np.float64)
    hops_s = np.asarray(hops_s, dtype=np.float64)
    back = back_s if len(stage_s) > 1 else 0.0
    busiest = max(stage_s.max(), hops_s.max() if len(hops_s) else 0.0, back)
    return float(max(m * busiest, stage_s.sum() + hops_s.sum() + back))


def _fifo(ready: np.ndarray, free: float, t: float) -> np.ndarray:
    """End times of jobs arriving at ``ready`` (in order) at a single FIFO server free from
    ``free``, each taking ``t``: ``end_j = (j + 1) t + max(free, max_{i <= j} (ready_i - i t))``."""
    idx = np.arange(len(ready), dtype=np.float64)
    return (idx + 1) * t + np.maximum(free, np.maximum.accumulate(ready - idx * t))


def decode_ends(stage_s: np.ndarray, hops_s: np.ndarray, back_s: float, m: int) -> np.ndarray:
    """When each decode step ends (its last micro-batch through the last stage), from the end of
    the prefill (time 0), for ``m`` micro-batches cycling through the stages: step ``k``'s stage
    times ``stage_s[k]``, the hops between stages ``hops_s``, the sampled token's way back to the
    first stage ``back_s`` (before every step, the first too: the prefill sampled it).  Every stage and link serves its micro-batches first come, first
    served, so they keep their order and each resource is a max-plus scan (:func:`_fifo`); exact
    for the task graph of :func:`timeline` (tested)."""
    stage_s = np.atleast_2d(np.asarray(stage_s, dtype=np.float64))
    hops_s = np.asarray(hops_s, dtype=np.float64)
    n, pp = stage_s.shape
    if pp == 1 and m == 1:
        return np.cumsum(stage_s[:, 0])
    free = np.zeros(2 * pp)  # when each stage (even slots) and each link after it (odd slots) is free
    ready = np.zeros(m)
    ends = np.empty(n)
    for k in range(n):
        if pp > 1:  # the sampled token back to the first stage (after the prefill too)
            ready = _fifo(ready, free[-1], back_s)
            free[-1] = ready[-1]
        for s in range(pp):
            ready = _fifo(ready, free[2 * s], stage_s[k, s])
            free[2 * s] = ready[-1]
            if s < pp - 1:
                ready = _fifo(ready, free[2 * s + 1], hops_s[s])
                free[2 * s + 1] = ready[-1]
        ends[k] = ready[-1]
    return ends


def timeline(stage_s: np.ndarray, hops_s: np.ndarray, m: int, steps: int = 0, dec_stage_s: np.ndarray | None = None,
             dec_hops_s: np.ndarray | None = None, back_s: float = 0.0, tp: int = 1):
    """The pipeline's schedule on the engine's task graph: the prefill of ``m`` micro-batches, then
    ``steps`` decode steps of each (a micro-batch's step after its previous token is back at the
    first stage); a stage's task holds each of its ``tp`` GPUs (one row per GPU), a hop its link."""
    from sim.engine.graph import TaskGraph

    g = TaskGraph()
    pp = len(stage_s)

    def stage_res(s):  # every GPU of the stage's tensor-parallel group: one timeline row each
        return tuple(f"GPU {s * tp + i} (stage {s})" for i in range(tp))

    def run(phase, times, hops, j, after):
        last = after
        for s in range(pp):
            last = g.add(f"{phase} mb{j} stage{s}", stage_res(s), float(times[s]), (last,), "compute")
            if s < pp - 1:
                last = g.add(f"{phase} mb{j} hop{s}", (f"link {s}->{s + 1}",), float(hops[s]), (last,), "comm")
        return last

    ends = [run("prefill", stage_s, hops_s, j, "") for j in range(m)]
    prefilled = ends[-1]  # decoding starts when the whole batch is prefilled (as the summary counts it)
    dst = dec_stage_s if dec_stage_s is not None else stage_s
    dh = dec_hops_s if dec_hops_s is not None else hops_s
    for k in range(steps):
        for j in range(m):
            after = prefilled if k == 0 else ends[j]
            if pp > 1:
                after = g.add(f"step{k} mb{j} token back", (f"link {pp - 1}->0",), float(back_s), (after,), "comm")
            ends[j] = run(f"step{k}", dst, dh, j, after)
    return g


def predict_collectives(table, targets: dict):
    """The model's time for each measured collective of ``table`` (columns system, collective,
    gpus, gpus_per_node, size_bytes, measured_s; see results/validation/collectives/published.csv),
    on ``targets[system]``'s topology with the measurement's GPUs per node; adds ``predicted_s`` and
    ``rel_error``."""
    import dataclasses

    out = table.copy()
    pred = []
    for r in out.itertuples(index=False):
        topo = dataclasses.replace(topology(targets[r.system]), per_node=int(r.gpus_per_node))
        if r.collective == "all_reduce":
            pred.append(topo.all_reduce(float(r.size_bytes), int(r.gpus)))
        elif r.collective == "send_recv":
            pred.append(topo.send(float(r.size_bytes), cross_node=int(r.gpus_per_node) < int(r.gpus)))
        else:
            raise SimError(f"unknown collective {r.collective!r}")
    out["predicted_s"] = pred
    out["rel_error"] = (out["predicted_s"] - out["measured_s"]) / out["measured_s"]
    return out
