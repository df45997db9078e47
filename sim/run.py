"""`sim run`: config -> workload traces -> target costs -> engine -> energy -> Result.

A run is one request: ``batch`` prompts of ``prompt`` tokens (prefill), then ``decode_tokens``
decode steps, step k with ``prompt + k`` tokens in the KV cache.

Scheduling (:mod:`sim.engine.schedule`) simulates what is distinct and replicates what repeats, both
checked: identical layers, and decode steps sampled and interpolated within a stated bound; the
analytic fidelity evaluates every op of every step in closed form.

``ops.parquet`` (:attr:`Result.ops`): one row per op and phase.  Prefill rows are the prefill
trace's ops; decode rows are the decode trace's ops with every number summed over the generated
tokens (``flops``, ``macs``, bytes, cycles, ``time_s``, energy), so ratios of them (arithmetic
intensity, achieved rate) are those of the whole generation; the shape columns (``in_shapes``,
``out_shapes``, ``gemm_m/n/k/batch``) are the last step's.  Columns: the trace's ``idx, op, kind,
role, module, layer, in_shapes, out_shapes, dtype, flops, gemm_m, gemm_n, gemm_k, gemm_batch``
(:data:`workloads.schema.COLUMNS`), then ``load_cycles, compute_cycles, store_cycles,
dram_read_bytes, dram_write_bytes, macs`` (the target's costs), ``cycles`` (the op's share of the
critical path), ``time_s``, ``bound`` (compute | memory | none), ``energy_pj_<component>`` and
``energy_pj``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.errors import SimError
from sim import memory, targets
from sim.engine.schedule import DecodeOps, Generation, schedule, schedule_decode
from sim.config import Config, load_yaml, located
from sim.energy import EnergyTable
from sim.targets.base import OpArrays, Target

TRACE_COLS = ["idx", "op", "kind", "role", "module", "layer", "in_shapes", "out_shapes", "dtype", "flops",
              "gemm_m", "gemm_n", "gemm_k", "gemm_batch", "expert"]


@dataclass
class Result:
    config: Config
    raw_config: dict
    hardware: dict
    target: Target
    energy: EnergyTable
    ops: pd.DataFrame
    summary: dict
    stages: list = field(default_factory=list)
    # how the decode steps were scheduled: steps, sampled_steps (the steps simulated; the others
    # interpolated), checked_error (the largest error found at a checked step, a fraction)
    decode: dict = field(default_factory=dict)
    # a multi-device run's pipeline schedule (sim.parallel.timeline: the prefill and the first decode
    # steps, one row per stage and link), for the trace; None for one device
    timeline: object = None


def _cost_frame(trace: pd.DataFrame, sums: dict, op_cycles: np.ndarray, freq: float, energy: EnergyTable,
                phase: str) -> pd.DataFrame:
    df = trace[TRACE_COLS].copy()
    df.insert(0, "phase", phase)
    for k in ("load_cycles", "compute_cycles", "store_cycles", "dram_read_bytes", "dram_write_bytes", "macs"):
        df[k] = sums[k].astype(np.int64)
    df["cycles"] = op_cycles.astype(np.int64)
    df["time_s"] = op_cycles / freq
    dram = sums["mem_cycles"]
    busy = (dram > 0) | (sums["compute_cycles"] > 0)
    df["bound"] = np.where(~busy, "none", np.where(dram > sums["math_cycles"], "memory", "compute"))
    actions = {k[len("action:"):]: v for k, v in sums.items() if k.startswith("action:")}
    e = energy.apply(actions, df["time_s"].to_numpy())
    total = np.zeros(len(df))
    for comp in sorted(e):
        df[f"energy_pj_{comp}"] = e[comp]
        total = total + e[comp]
    df["energy_pj"] = total
    return df


@dataclass
class Prepared:
    """A validated run: everything checked, nothing computed yet."""

    config: Config
    raw: dict
    spec: object  # workloads.zoo.ModelSpec
    target: Target
    energy: EnergyTable
    hardware: dict


def prepare(raw: dict, config_path: Path, lines: dict | None = None, fidelity: str | None = None,
            check_memory: bool = True) -> Prepared:
    """Validate a config mapping (as read from ``config_path``) down to the target and the model.

    Every problem is a SimError naming the file, the key and (where known) its line.  With
    ``check_memory`` a workload that cannot fit the device (weights and KV cache against its
    memory, :mod:`sim.memory`) is refused here, before any tracing (:class:`sim.memory.Infeasible`);
    a sweep validates its points without it and stores such a point as infeasible when it runs.
    """
    from pydantic import ValidationError

    from sim.config import validation_error
    from workloads import api as wl
    from workloads import zoo

    lines = lines or {}
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise validation_error(config_path, e, lines) from None
    if fidelity:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"fidelity": fidelity})})
    w = cfg.workload

    def at(key: str, fn, *a):
        """Run a check; its SimError names the config file, the key and its line."""
        try:
            return fn(*a)
        except SimError as e:  # the same kind of error (an Infeasible stays one), located
            raise type(e)(f"{located(config_path, key, lines)}: {e}") from None

    spec = at("workload.model", zoo.get, w.model)
    if spec.kind != "decoder" and w.decode_tokens:
        at("workload.decode_tokens", _fail, f"{spec.name} is an encoder; it cannot decode")
    if w.lora is not None:
        valid = at("workload.lora", wl.lora_targets, spec)
        if not valid:
            at("workload.lora", _fail, f"{spec.name} has no nn.Linear projections in its layers that LoRA can target")
        for i, t in enumerate(w.lora.targets):
            if t not in valid:
                at(("workload", "lora", "targets", i), _fail, wl.unknown_lora_target(spec, t, valid))
    at("workload.prompt", wl.check_args, spec, "prefill", w.batch, w.prompt, 0, w.dtype)
    if w.decode_tokens:
        at("workload.decode_tokens", wl.check_args, spec, "decode", w.batch, 1, w.prompt + w.decode_tokens - 1,
           w.dtype)
    target, energy, hw = targets.build(cfg.hardware, config_path, lines)
    # an unsupported precision fails here, before any work
    at("workload.weight_bits" if w.weight_bits else "workload", target.peak_macs_per_cycle, w.wbits, w.abits)
    at("workload.kv_bits" if w.kv_bits else "workload", target.peak_macs_per_cycle, w.kvbits, w.abits)
    # what must be resident, before any tracing: weights and KV cache against the device's memory
    # (activations counted from the trace later), and sizes no device holds
    if w.routing_skew:
        at("workload.routing_skew", wl.check_routing, spec, w.routing_skew)
    par = cfg.parallel
    if par != type(par)():
        from sim import parallel

        at("parallel", parallel.check, spec, target, par, w)
    if check_memory:
        at("hardware", target.check_fits)
        est = memory.need(spec, w, par=par)
        at("workload", memory.check_size, est)
        at("workload", memory.check, dataclasses.replace(est, activations=0), target, w, "", par)
    return Prepared(cfg, raw, spec, target, energy, hw)


def run(config_path: str | Path, fidelity: str | None = None, progress=None) -> Result:
    """Run a config file end to end (without writing anything; see :func:`sim.report.write`)."""
    config_path = Path(config_path)
    raw, lines = load_yaml(config_path)  # validated once, by prepare
    return execute(prepare(raw, config_path, lines, fidelity), progress)


_ARRAYS: dict = {}


def _memo(key, make):
    """Per-process memo of trace-derived arrays (a sweep worker reuses them across points)."""
    hit = _ARRAYS.get(key)
    if hit is None:
        if len(_ARRAYS) >= 16:
            _ARRAYS.pop(next(iter(_ARRAYS)))
        hit = _ARRAYS[key] = make()
    return hit


def lora_spec(w):
    """The workload's LoRA adapters as the trace API takes them (None without)."""
    from workloads import api as wl

    return None if w.lora is None else wl.LoraSpec.of(w.lora.model_dump())


def _prefill_arrays(spec, w, tp: int = 1, ep: int = 1) -> tuple[pd.DataFrame, OpArrays]:
    from workloads import api as wl

    lora = lora_spec(w)

    def make():
        df = wl.trace(spec.name, "prefill", w.batch, w.prompt, 0, w.dtype, lora=lora, routing_skew=w.routing_skew)
        if tp > 1:
            from sim.multigpu import shard

            df = shard(df, tp, spec.kv_heads, whole_experts=ep > 1)
        return df, OpArrays.from_frame(df)

    return _memo(("prefill", spec.fingerprint(), w.batch, w.prompt, w.dtype, lora, w.routing_skew, tp, ep), make)


def _rebuild_template(tpl, fn, *others):
    """A decode template made again from the traces it affinely spans (at two contexts), each
    passed through ``fn`` together with the same context's traces of the templates ``others``."""
    from workloads.api import DecodeTemplate

    out = []
    for ctx in (tpl.ctx_a, tpl.ctx_a + 32):
        frames = [t.at(ctx) for t in (tpl, *others)]
        for f, t in zip(frames, (tpl, *others)):
            f.attrs = {**t.base.attrs, "context": ctx}
        g = fn(*frames)
        g.attrs = frames[0].attrs
        out.append(g)
    return DecodeTemplate.from_traces(out[0], out[1], tpl.max_context)


def _shard_template(tpl, tp: int, kv_heads: int, whole_experts: bool = False):
    """One device's decode template: its traces sharded (heads split evenly, so every column stays
    affine in the context)."""
    from sim.multigpu import shard

    return _rebuild_template(tpl, lambda a: shard(a, tp, kv_heads, whole_experts))


def _splice_template(small, big):
    """A decode template whose expert ops are ``big``'s (every sharing replica's tokens) and the
    rest ``small``'s."""
    from sim.parallel import splice_experts

    return _rebuild_template(small, splice_experts, big)


def execute(prep: Prepared, progress=None, every_step: bool = False) -> Result:
    """Trace, cost, schedule and price a prepared run.  ``every_step`` simulates every decode step
    instead of sampling them (what the sampling is tested against; slow for long generations).

    With ``parallel``, the work traced and costed is one micro-batch as one tensor-parallel rank
    runs it, every layer and (under expert parallelism) every expert; :mod:`sim.parallel` places it
    on the devices and adds what moves between them."""
    from workloads import api as wl

    cfg, raw, spec, target, energy, hw = prep.config, prep.raw, prep.spec, prep.target, prep.energy, prep.hardware
    w = cfg.workload
    par = cfg.parallel
    fid = cfg.run.fidelity
    freq = target.freq_hz
    step = progress or (lambda msg: None)
    t0 = time.perf_counter()

    tp, ep = par.tp, par.ep
    multi = par.devices > 1
    mb = w.batch // (par.dp * par.micro_batches)  # the sequences of one micro-batch of one replica
    wm = w if mb == w.batch else w.model_copy(update={"batch": mb})
    share = ep // tp if ep > tp else 1  # replicas whose tokens meet at the experts (ep = tp x dp)
    # ---- prefill ----
    step("tracing prefill")
    pre_trace, pre_arrays = _prefill_arrays(spec, wm, tp, ep)
    if share > 1:  # the experts see every sharing replica's tokens, the rest of a layer its replica's
        from sim.parallel import splice_experts

        big, _ = _prefill_arrays(spec, wm.model_copy(update={"batch": mb * share}), tp, ep)
        pre_trace = _memo(("prefill_ep", spec.fingerprint(), mb, share, w.prompt, w.dtype, lora_spec(w),
                           w.routing_skew, tp, ep), lambda: splice_experts(pre_trace, big))
        pre_arrays = OpArrays.from_frame(pre_trace)
    # the traced activations (and adapters) join the weights and the KV cache, per device
    need = memory.need(spec, w, pre_trace, par=par)
    memory.check(need, target, w, par=par)
    step("costing prefill")
    pre_costs = target.cost(pre_arrays, w.precision)
    step("scheduling prefill")
    pre_sched = schedule(pre_costs, pre_trace["layer"].to_numpy(), fid)
    frames = [_cost_frame(pre_trace, pre_costs.sums(), pre_sched.op_cycles, freq, energy, "prefill")]
    events = pre_sched.events
    dec_cycles = 0
    step_cycles: list[int] = []
    decode_info: dict = {}

    # ---- decode ----
    if w.decode_tokens:
        step("tracing decode")
        lora = lora_spec(w)
        skew = w.routing_skew
        tpl = wl.decode_template(spec.name, mb, 1, w.dtype, lora=lora, routing_skew=skew)
        if tp > 1:  # one device's share of every decode step (the template sharded at both contexts)
            tpl = _memo(("decode_tpl_tp", spec.fingerprint(), mb, w.dtype, lora, skew, tp, ep),
                        lambda: _shard_template(tpl, tp, spec.kv_heads, ep > 1))
        if share > 1:  # the experts at every sharing replica's tokens
            small = tpl

            def spliced():
                bigt = wl.decode_template(spec.name, mb * share, 1, w.dtype, lora=lora, routing_skew=skew)
                if tp > 1:
                    bigt = _shard_template(bigt, tp, spec.kv_heads, True)
                return _splice_template(small, bigt)

            tpl = _memo(("decode_tpl_ep", spec.fingerprint(), mb, share, w.dtype, lora, skew, tp, ep), spliced)
        n_steps = w.decode_tokens
        contexts = w.prompt + np.arange(n_steps, dtype=np.int64)
        dec_ops = _memo(("decode_ops", spec.fingerprint(), mb, share, w.dtype, lora, skew, tp, ep),
                        lambda: DecodeOps.of(tpl))
        step(f"costing {n_steps} decode steps")
        gen = Generation(tpl, dec_ops, contexts, target, w.precision)
        step(f"costing and scheduling {n_steps} decode steps")
        ds = schedule_decode(gen, tpl.base["layer"].to_numpy(), fid, every_step)
        events += ds.events
        step_cycles = [int(x) for x in ds.step_cycles]
        dec_cycles = int(sum(step_cycles))
        decode_info = {"steps": n_steps, "sampled_steps": ds.sampled, "checked_error": ds.checked_error}
        last = _memo(("decode_frame", spec.fingerprint(), mb, share, w.dtype, int(contexts[-1]), lora, skew, tp, ep),
                     lambda: tpl.at(int(contexts[-1])))
        dec = _cost_frame(last, ds.sums, ds.op_cycles, freq, energy, "decode")
        dec["flops"] = tpl.totals(int(contexts[0]), n_steps, ["flops"])["flops"]  # summed like macs
        frames.append(dec)

    pre_cycles = pre_sched.cycles
    host_info = None
    if target.host.modelled:  # the runtime's host as its own stream beside the device
        host_info, pre_cycles, step_cycles = _host_stream(
            target, pre_trace, pre_sched.op_cycles, tpl if w.decode_tokens else None,
            ds.op_cycles if w.decode_tokens else None, step_cycles)
        dec_cycles = int(sum(step_cycles))
    ops = pd.concat(frames, ignore_index=True)
    idle_s = None
    par_info = None
    if multi:  # the devices: stages, collectives, pipeline, replicas (after the host stream, which
        # prices a step from its ops alone)
        par_info, pre_cycles, step_cycles, ops, idle_s, timeline = _place(
            spec, w, wm, par, target, ops, pre_trace, pre_sched.op_cycles, pre_cycles,
            tpl.base if w.decode_tokens else None, ds.op_cycles if w.decode_tokens else None, step_cycles)
        dec_cycles = int(sum(step_cycles))
    elif host_info is not None:  # the device waits for its host: no op runs, its static power still draws
        idle_s = {"prefill": host_info["prefill"]["device_idle_s"]}
        if "decode_step" in host_info:
            idle_s["decode"] = host_info["decode_step"]["device_idle_s"] * max(1, len(step_cycles))
    summary = _summary(cfg, spec, target, energy, ops, pre_cycles, dec_cycles, step_cycles, events, hw, raw, idle_s)
    if host_info is not None:
        summary["host"] = host_info
    if idle_s is not None:
        (par_info if multi else summary["host"])["idle_static_j"] = summary.pop("_idle_static_j")
    summary["memory"] = {**need.as_dict(), "capacity": target.memory.capacity_bytes, "per_device": multi}
    result_timeline = None
    if par_info is not None:
        summary["parallel"] = par_info
        summary["utilization"] = par_info.pop("utilization")
        result_timeline = timeline
    step("done")
    stages = [("wall_s", time.perf_counter() - t0)]
    return Result(cfg, raw, hw, target, energy, ops, summary, stages, decode_info, result_timeline)


def _place(spec, w, wm, par, target, ops, pre_trace, pre_op_cycles, pre_cycles, dec_base, dec_op_cycles,
           step_cycles):
    """A multi-device run's time and energy from one rank's costed micro-batch (:mod:`sim.parallel`):
    the stages' shares of each step, their collectives, the pipeline over the micro-batches, and the
    energy of every device.  Returns the summary's ``parallel`` block, the prefill's and each decode
    step's cycles, the ops with every device's energy (and their stage and expert rank), the
    devices' idle seconds per phase and the pipeline's task graph (for the trace)."""
    from sim import parallel as P

    freq = target.freq_hz
    pp, m, tp, ep = par.pp, par.micro_batches, par.tp, par.ep
    topo = P.topology(target) if tp > 1 or pp > 1 or ep > 1 else None  # replicas alone exchange nothing
    act = w.precision.act_bits / 8
    pre = ops.phase == "prefill"
    stage = np.zeros(len(ops), dtype=np.int64)
    rank = np.full(len(ops), -1, dtype=np.int64)

    def phase(frame, op_cycles, tokens):
        """A phase's stages and ranks per op, each stage's share of the phase's cycles, and its
        collectives for ``tokens`` tokens of the micro-batch."""
        layer = frame["layer"].to_numpy()
        st, rk = P.owners(layer, frame["expert"].to_numpy(), spec.layers, pp, ep)
        f = P.stage_fractions(op_cycles, st, rk, layer, pp, ep)
        coll = np.zeros(pp)
        if topo is not None:
            moe, recv = P.expert_traffic(layer, frame["expert"].to_numpy(), frame["role"].to_numpy(),
                                         frame["kind"].to_numpy(), frame["gemm_m"].to_numpy(), spec.layers, ep)
            coll = P.stage_collectives(spec, par, topo, tokens, wm.batch, act, moe, recv)
        return st, rk, f, coll

    st, rk, f_pre, coll_pre = phase(pre_trace, pre_op_cycles, wm.batch * wm.prompt)
    stage[pre.to_numpy()], rank[pre.to_numpy()] = st, rk
    hidden = spec.hidden * act if topo is not None else 0.0  # a pipeline stage's activations, per token
    hops_pre = P.hop_seconds(topo, par, wm.batch * wm.prompt * hidden) if topo is not None else np.zeros(0)
    stage_pre = pre_cycles / freq * f_pre + coll_pre
    prefill_s = P.prefill_makespan(stage_pre, hops_pre, m)
    info = {"tp": tp, "pp": pp, "ep": ep, "dp": par.dp, "micro_batches": m, "devices": par.devices,
            "micro_batch": wm.batch, "prefill_s": float(coll_pre.sum()), "decode_step_s": 0.0,
            "prefill_stage_s": [float(x) for x in stage_pre], "prefill_hop_s": [float(x) for x in hops_pre],
            "link": topo.intra.source if topo is not None else None,
            "network": topo.inter.source if topo is not None and topo.inter is not None else None,
            "gpus_per_node": topo.per_node if topo is not None else None}
    new_steps = list(step_cycles)
    stage_dec = hops_dec = None
    back = 0.0
    if dec_base is not None:
        dec = (ops.phase == "decode").to_numpy()
        st_d, rk_d, f_dec, coll_dec = phase(dec_base, dec_op_cycles, wm.batch)
        stage[dec], rank[dec] = st_d, rk_d
        hops_dec = P.hop_seconds(topo, par, wm.batch * hidden) if topo is not None else np.zeros(0)
        back = P.back_seconds(topo, par, wm.batch * 8) if topo is not None else 0.0  # the sampled token ids
        secs = np.asarray(step_cycles, dtype=np.float64) / freq
        stages_k = secs[:, None] * f_dec[None, :] + coll_dec[None, :]
        ends = P.decode_ends(stages_k, hops_dec, back, m)
        stage_dec = stages_k.mean(axis=0)
        new_steps = [int(x) for x in np.diff(np.ceil(np.concatenate([[0.0], ends]) * freq))]
        info.update({"decode_step_s": float(coll_dec.sum()), "decode_stage_s": [float(x) for x in stage_dec],
                     "decode_hop_s": [float(x) for x in hops_dec], "token_back_s": float(back)})
    # energy: every rank's, micro-batch's and replica's run of each op; the static power of every
    # device over the whole phase (the busy part is in the ops, the rest is idle)
    mult = P.multiplicity(rank, par) * m  # every rank, replica and micro-batch
    ops = ops.copy()
    ops.insert(ops.columns.get_loc("layer") + 1, "stage", stage)
    ops.insert(ops.columns.get_loc("stage") + 1, "ep_rank", rank)
    for c in [c for c in ops.columns if c.startswith("energy_pj")]:
        ops[c] = ops[c] * mult
    busy = ops["time_s"].to_numpy() * mult
    pre_c = int(np.ceil(prefill_s * freq))

    def idle_s(wall, busy_s):
        """The devices' seconds without an op: every device is busy at most the phase's wall."""
        left = par.devices * wall - busy_s
        if left < -1e-6 * par.devices * wall:
            raise AssertionError(f"devices busy {busy_s} s in a phase of {wall} s x {par.devices}")
        return max(0.0, left)

    idle = {"prefill": idle_s(prefill_s, float(busy[pre.to_numpy()].sum()))}
    if dec_base is not None:
        idle["decode"] = idle_s(sum(new_steps) / freq, float(busy[~pre.to_numpy()].sum()))
    info["busy_device_s"] = {"prefill": float(busy[pre.to_numpy()].sum()),
                             "decode": float(busy[~pre.to_numpy()].sum())}
    cycles = pre_c + sum(new_steps)
    peak = target.peak_macs_per_cycle(w.wbits, w.abits) * par.devices * cycles
    dram = (ops["dram_read_bytes"].to_numpy() + ops["dram_write_bytes"].to_numpy()) * mult
    info["utilization"] = {"mac": float((ops["macs"].to_numpy() * mult).sum() / peak) if peak else 0.0,
                           "dram": float(dram.sum() / (target.dram_bytes_per_cycle() * par.devices * cycles))
                           if cycles else 0.0}
    tl = P.timeline(stage_pre, hops_pre, m, min(2, len(new_steps)), stage_dec, hops_dec, back, tp) \
        if pp * m <= 512 else None
    return info, pre_c, new_steps, ops, idle, tl


def _host_stream(target, pre_trace, pre_op_cycles, tpl, dec_op_cycles, step_cycles):
    """The prefill's and each decode step's cycles with the target's host as its own stream
    (:func:`sim.engine.host.host_device`): the host dispatches every traced op (by kind), calls each
    module once, runs the framework's step and, per decoded token, the generate loop's work; the
    device runs each op when it is dispatched and free.  A decode step's overlap is computed on the
    generation's mean per-op device profile (the host's part is the same at every step), and the
    device's idle time it gives is added to each step's device cycles."""
    from sim.engine.host import host_device

    host, freq = target.host, target.freq_hz

    def modules(df) -> int:
        m = df["module"].astype(str)
        return int(m[m != ""].nunique())

    pre = host_device(host.op_seconds(pre_trace["kind"].to_numpy()), pre_op_cycles / freq,
                      host.fixed_seconds(modules(pre_trace), decode=False), host.params.overlap)
    info = {"runtime": host.params.runtime, "overlap": host.params.overlap, "source": host.source,
            "prefill": {"host_s": pre.host_s, "device_s": pre.device_s, "device_idle_s": pre.device_idle_s,
                        "host_bound": pre.host_bound}}
    pre_cycles = int(np.ceil(pre.seconds * freq))
    if tpl is None:
        return info, pre_cycles, step_cycles
    n = max(1, len(step_cycles))
    base = tpl.base
    dec = host_device(host.op_seconds(base["kind"].to_numpy()), dec_op_cycles / n / freq,
                      host.fixed_seconds(modules(base), decode=True), host.params.overlap)
    idle = int(np.ceil(dec.device_idle_s * freq))
    info["decode_step"] = {"host_s": dec.host_s, "device_s": dec.device_s, "device_idle_s": dec.device_idle_s,
                           "host_bound": dec.host_bound}
    return info, pre_cycles, [int(c) + idle for c in step_cycles]


def _fail(msg: str):
    raise SimError(msg)


def _phase_summary(ops: pd.DataFrame, cycles: int, freq: float, tokens: int, extra_j: float = 0.0) -> dict:
    e = float(ops["energy_pj"].sum()) * 1e-12 + extra_j
    lat = cycles / freq
    return {
        "cycles": int(cycles), "latency_s": lat, "energy_j": e, "tokens": int(tokens),
        "tokens_per_s": tokens / lat if lat else 0.0, "tokens_per_j": tokens / e if e else 0.0,
        "dram_bytes": int(ops["dram_read_bytes"].sum() + ops["dram_write_bytes"].sum()),
    }


def _summary(cfg, spec, target, energy, ops, pre_cycles, dec_cycles, step_cycles, events, hw, raw,
             idle_s: dict | None = None) -> dict:
    """The run's summary; ``idle_s``: per phase, seconds the device waits for the host (its static
    power draws then too: added to the energies, ``_idle_static_j`` per phase)."""
    from sim import __version__

    w = cfg.workload
    freq = target.freq_hz
    cycles = int(pre_cycles + dec_cycles)
    latency = cycles / freq
    idle = {ph: {c: float(v[0]) * 1e-12 for c, v in energy.static({}, np.array([sec])).items()}
            for ph, sec in (idle_s or {}).items()}
    idle_j = {ph: sum(d.values()) for ph, d in idle.items()}
    energy_j = float(ops["energy_pj"].sum()) * 1e-12 + sum(idle_j.values())
    comps = sorted(c[len("energy_pj_"):] for c in ops.columns if c.startswith("energy_pj_"))
    pre = ops[ops.phase == "prefill"]
    dec = ops[ops.phase == "decode"]
    s = {
        "name": cfg.name or spec.name,
        "model": spec.name,
        "target": hw["target"],
        "fidelity": cfg.run.fidelity,
        "freq_hz": freq,
        "cycles": cycles,
        "latency_s": latency,
        "energy_j": energy_j,
        "average_power_w": energy_j / latency if latency else 0.0,
        "energy_by_component_j": {c: float(ops[f"energy_pj_{c}"].sum()) * 1e-12
                                  + sum(d.get(c, 0.0) for d in idle.values()) for c in comps},
        "prefill": _phase_summary(pre, pre_cycles, freq, w.batch * w.prompt, idle_j.get("prefill", 0.0)),
    }
    if idle_s is not None:
        s["_idle_static_j"] = idle_j
    generated = w.batch * w.decode_tokens
    if w.decode_tokens:
        d = _phase_summary(dec, dec_cycles, freq, generated, idle_j.get("decode", 0.0))
        d["time_per_token_s"] = dec_cycles / freq / w.decode_tokens
        d["step_cycles"] = step_cycles
        s["decode"] = d
        s["tokens_per_s"] = generated / latency
        s["tokens_per_j"] = generated / energy_j if energy_j else 0.0
        s["energy_per_token_j"] = energy_j / generated
    else:
        s["tokens_per_s"] = s["prefill"]["tokens_per_s"]
        s["tokens_per_j"] = s["prefill"]["tokens_per_j"]
        s["energy_per_token_j"] = energy_j / (w.batch * w.prompt)
    s["tokens_per_s_per_w"] = s["tokens_per_j"]  # (tokens/s) / (J/s)
    peak = target.peak_macs_per_cycle(w.wbits, w.abits)
    s["utilization"] = {
        "mac": float(ops["macs"].sum()) / (peak * cycles) if cycles else 0.0,
        "dram": float(ops["dram_read_bytes"].sum() + ops["dram_write_bytes"].sum())
        / (target.dram_bytes_per_cycle() * cycles) if cycles else 0.0,
    }
    s["time_by_bound_s"] = {b: float(ops.loc[ops.bound == b, "time_s"].sum()) for b in ("compute", "memory", "none")}
    s["simulated_events"] = int(events)
    s["config"] = {**raw, "hardware": hw, "run": cfg.run.model_dump()}
    s["energy_table"] = energy.name
    s["version"] = __version__
    return s
