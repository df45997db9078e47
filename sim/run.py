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
              "gemm_m", "gemm_n", "gemm_k", "gemm_batch"]


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
    tp = cfg.parallel.tp
    if tp > 1:
        at("parallel.tp", _check_tp, spec, target, tp)
    if check_memory:
        est = memory.need(spec, w, tp=tp)
        at("workload", memory.check_size, est)
        at("workload", memory.check, dataclasses.replace(est, activations=0), target, w, "", tp)
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


def _prefill_arrays(spec, w, tp: int = 1) -> tuple[pd.DataFrame, OpArrays]:
    from workloads import api as wl

    lora = lora_spec(w)

    def make():
        df = wl.trace(spec.name, "prefill", w.batch, w.prompt, 0, w.dtype, lora=lora)
        if tp > 1:
            from sim.multigpu import shard

            df = shard(df, tp, spec.kv_heads)
        return df, OpArrays.from_frame(df)

    return _memo(("prefill", spec.fingerprint(), w.batch, w.prompt, w.dtype, lora, tp), make)


def _check_tp(spec, target, tp: int) -> None:
    """Tensor parallelism needs a multi-GPU link and a model whose heads split evenly over the devices."""
    link = getattr(target, "link", None)
    if link is None:
        raise SimError(f"tensor parallelism over {tp} devices needs a GPU target with a GPU-to-GPU link "
                       f"(link_bytes_per_s); {target.name} has none")
    if not spec.config_class or "num_attention_heads" not in spec.config:
        raise SimError(f"{spec.name} is not a transformers model with attention heads to shard")
    kv = spec.kv_heads
    if spec.heads % tp or (kv % tp and tp % kv):
        raise SimError(f"tp {tp} must divide {spec.name}'s {spec.heads} attention heads and its {kv} KV heads "
                       "(or be a multiple of them)")


def _shard_template(tpl, tp: int, kv_heads: int):
    """One device's decode template: the two traces it was made from, sharded (heads split evenly,
    so every column stays affine in the context)."""
    from sim.multigpu import shard
    from workloads.api import DecodeTemplate

    ctx_b = tpl.ctx_a + 32
    a, b = tpl.at(tpl.ctx_a), tpl.at(ctx_b)
    a.attrs, b.attrs = {**tpl.base.attrs, "context": tpl.ctx_a}, {**tpl.base.attrs, "context": ctx_b}
    sa, sb = shard(a, tp, kv_heads), shard(b, tp, kv_heads)
    sa.attrs, sb.attrs = a.attrs, b.attrs
    return DecodeTemplate.from_traces(sa, sb, tpl.max_context)


def _collectives(spec, w, target, tp: int) -> dict:
    """Seconds of a step's collectives under Megatron tensor parallelism: per layer an all-reduce of
    the hidden state after the attention's row-parallel projection and one after the MLP's, and an
    all-gather of the column-parallel head's logits (the last position's)."""
    link = target.link
    act = w.precision.act_bits / 8

    def step_s(tokens: int) -> float:
        hidden = w.batch * tokens * spec.hidden * act
        return (2 * spec.layers * link.all_reduce(hidden, tp)
                + (link.all_gather(w.batch * spec.vocab * act, tp) if spec.kind == "decoder" else 0.0))

    return {"prefill_s": step_s(w.prompt), "decode_step_s": step_s(1) if w.decode_tokens else 0.0,
            "link": link.source}


def execute(prep: Prepared, progress=None, every_step: bool = False) -> Result:
    """Trace, cost, schedule and price a prepared run.  ``every_step`` simulates every decode step
    instead of sampling them (what the sampling is tested against; slow for long generations)."""
    from workloads import api as wl

    cfg, raw, spec, target, energy, hw = prep.config, prep.raw, prep.spec, prep.target, prep.energy, prep.hardware
    w = cfg.workload
    fid = cfg.run.fidelity
    freq = target.freq_hz
    step = progress or (lambda msg: None)
    t0 = time.perf_counter()

    tp = cfg.parallel.tp
    # ---- prefill ----
    step("tracing prefill")
    pre_trace, pre_arrays = _prefill_arrays(spec, w, tp)
    # the traced activations (and adapters) join the weights and the KV cache, per device
    need = memory.need(spec, w, pre_trace, tp=tp)
    memory.check(need, target, w, tp=tp)
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
        tpl = wl.decode_template(spec.name, w.batch, 1, w.dtype, lora=lora)
        if tp > 1:  # one device's share of every decode step (the template sharded at both contexts)
            tpl = _memo(("decode_tpl_tp", spec.fingerprint(), w.batch, w.dtype, lora, tp),
                        lambda: _shard_template(tpl, tp, spec.kv_heads))
        n_steps = w.decode_tokens
        contexts = w.prompt + np.arange(n_steps, dtype=np.int64)
        dec_ops = _memo(("decode_ops", spec.fingerprint(), w.batch, w.dtype, lora, tp), lambda: DecodeOps.of(tpl))
        step(f"costing {n_steps} decode steps")
        gen = Generation(tpl, dec_ops, contexts, target, w.precision)
        step(f"costing and scheduling {n_steps} decode steps")
        ds = schedule_decode(gen, tpl.base["layer"].to_numpy(), fid, every_step)
        events += ds.events
        step_cycles = [int(x) for x in ds.step_cycles]
        dec_cycles = int(sum(step_cycles))
        decode_info = {"steps": n_steps, "sampled_steps": ds.sampled, "checked_error": ds.checked_error}
        last = _memo(("decode_frame", spec.fingerprint(), w.batch, w.dtype, int(contexts[-1]), lora, tp),
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
    par = None
    if tp > 1:  # the collectives between the devices' shares, serialized with their kernels (after the
        # host stream, which prices a step from its ops alone)
        par = _collectives(spec, w, target, tp)
        pre_cycles += int(np.ceil(par["prefill_s"] * freq))
        step_cycles = [c + int(np.ceil(par["decode_step_s"] * freq)) for c in step_cycles]
        dec_cycles = int(sum(step_cycles))
    ops = pd.concat(frames, ignore_index=True)
    if tp > 1:  # every device runs its share: the system's energy is tp times one device's
        for c in [c for c in ops.columns if c.startswith("energy_pj")]:
            ops[c] = ops[c] * tp
    idle_s = None
    if host_info is not None:  # the devices wait for their hosts: no op runs, their static power still draws
        idle_s = {"prefill": host_info["prefill"]["device_idle_s"] * tp}
        if "decode_step" in host_info:
            idle_s["decode"] = host_info["decode_step"]["device_idle_s"] * max(1, len(step_cycles)) * tp
    summary = _summary(cfg, spec, target, energy, ops, pre_cycles, dec_cycles, step_cycles, events, hw, raw, idle_s)
    if host_info is not None:
        summary["host"] = host_info
        summary["host"]["idle_static_j"] = summary.pop("_idle_static_j")
    summary["memory"] = {**need.as_dict(), "capacity": target.memory.capacity_bytes, "per_device": tp > 1}
    if par is not None:
        summary["parallel"] = {"tp": tp, **par}
    step("done")
    stages = [("wall_s", time.perf_counter() - t0)]
    return Result(cfg, raw, hw, target, energy, ops, summary, stages, decode_info)


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
