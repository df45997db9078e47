"""`sim run`: config -> workload traces -> target costs -> engine -> energy -> Result.

A run is one request: ``batch`` prompts of ``prompt`` tokens (prefill), then ``decode_tokens``
decode steps, step k with ``prompt + k`` tokens in the KV cache.

Scheduling at SimPy fidelity simulates what is distinct and replicates what repeats, both checked:

- Layers: when every layer's ops cost the same as layer 1's (checked op by op on the target's
  costs), the ops before the layers, layers 0 and 1 and the ops after are simulated, and layer 1's
  time stands for layers 2..L-1 (its ops' times are copied).  The pipeline state at a layer
  boundary repeats, so this is the full simulation's answer; a test checks it against one.
- Decode steps: the first, middle and last steps are simulated and the other steps' op times are
  interpolated linearly in the step index; if the middle step is off the line by more than 0.5%,
  every step is simulated.  Energy is always summed over every step's exact costs.

The analytic fidelity evaluates every op of every step in closed form.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.errors import SimError
from sim import engine, targets
from sim.config import Config, load_config, located
from sim.energy import EnergyTable
from sim.targets.base import Costs, OpArrays, Target

TRACE_COLS = ["idx", "op", "kind", "role", "module", "layer", "in_shapes", "out_shapes", "dtype", "flops",
              "gemm_m", "gemm_n", "gemm_k", "gemm_batch"]


@dataclass
class Schedule:
    op_cycles: np.ndarray  # critical-path cycles attributed to each op
    cycles: int  # makespan
    events: int


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
        tl = engine.analytic(c)
        return Schedule(_per_op(tl.op_end, tl.makespan), tl.makespan, 0)
    split = _layer_blocks(layers)
    if split is None or not _uniform(c, split[1]):
        tl = engine.simulate(c)
        return Schedule(_per_op(tl.op_end, tl.makespan), tl.makespan, tl.events)
    pre, blocks, post = split
    idx = np.concatenate([pre, blocks[0], blocks[1], post])
    tl = engine.simulate(c.take(idx))
    sub = _per_op(tl.op_end, tl.makespan)
    op_cycles = np.zeros(len(c), dtype=np.int64)
    op_cycles[idx] = sub
    for b in blocks[2:]:
        op_cycles[b] = op_cycles[blocks[1]]
    return Schedule(op_cycles, int(op_cycles.sum()), tl.events)


def _sum_costs(c: Costs, steps: int = 1) -> dict[str, np.ndarray]:
    """Per-op totals of costs stacked ``steps`` times (step k's ops follow step k-1's)."""
    keys = ["load_cycles", "compute_cycles", "store_cycles", "dram_read_bytes", "dram_write_bytes", "macs"]
    fold = lambda a: np.asarray(a).reshape(steps, -1).sum(axis=0)  # noqa: E731
    out = {k: fold(getattr(c, k)) for k in keys}
    out["mem_cycles"] = fold(c.memory_cycles())
    out["math_cycles"] = fold(c.arithmetic_cycles())
    for a, v in c.actions.items():
        out["action:" + a] = fold(v)
    return out


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


def prepare(raw: dict, config_path: Path, lines: dict | None = None, fidelity: str | None = None) -> Prepared:
    """Validate a config mapping (as read from ``config_path``) down to the target and the model.

    Every problem is a SimError naming the file, the key and (where known) its line.
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
        except SimError as e:
            raise SimError(f"{located(config_path, key, lines)}: {e}") from None

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
    return Prepared(cfg, raw, spec, target, energy, hw)


def run(config_path: str | Path, fidelity: str | None = None, progress=None) -> Result:
    """Run a config file end to end (without writing anything; see :func:`sim.report.write`)."""
    config_path = Path(config_path)
    cfg, raw, lines = load_config(config_path)
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


def _prefill_arrays(spec, w) -> tuple[pd.DataFrame, OpArrays]:
    from workloads import api as wl

    lora = lora_spec(w)

    def make():
        df = wl.trace(spec.name, "prefill", w.batch, w.prompt, 0, w.dtype, lora=lora)
        return df, OpArrays.from_frame(df)

    return _memo(("prefill", spec.fingerprint(), w.batch, w.prompt, w.dtype, lora), make)


def execute(prep: Prepared, progress=None) -> Result:
    """Trace, cost, schedule and price a prepared run."""
    from workloads import api as wl

    cfg, raw, spec, target, energy, hw = prep.config, prep.raw, prep.spec, prep.target, prep.energy, prep.hardware
    w = cfg.workload
    fid = cfg.run.fidelity
    freq = target.freq_hz
    step = progress or (lambda msg: None)
    t0 = time.perf_counter()

    # ---- prefill ----
    step("tracing prefill")
    pre_trace, pre_arrays = _prefill_arrays(spec, w)
    step("costing prefill")
    pre_costs = target.cost(pre_arrays, *w.precision)
    step("scheduling prefill")
    pre_sched = schedule(pre_costs, pre_trace["layer"].to_numpy(), fid)
    frames = [_cost_frame(pre_trace, _sum_costs(pre_costs), pre_sched.op_cycles, freq, energy, "prefill")]
    events = pre_sched.events
    dec_cycles = 0
    step_cycles: list[int] = []

    # ---- decode ----
    if w.decode_tokens:
        step("tracing decode")
        lora = lora_spec(w)
        tpl = wl.decode_template(spec.name, w.batch, 1, w.dtype, lora=lora)
        contexts = [w.prompt + k for k in range(w.decode_tokens)]
        n_steps, n_ops = len(contexts), len(tpl.base)
        step(f"costing {n_steps} decode steps")
        arrays = _memo(("decode", spec.fingerprint(), w.batch, w.dtype, tuple(contexts), lora),
                       lambda: OpArrays.from_template(tpl, contexts))
        allc = target.cost(arrays, *w.precision)
        costs = lambda k: allc.take(np.arange(k * n_ops, (k + 1) * n_ops))  # noqa: E731
        layers = tpl.base["layer"].to_numpy()
        step(f"scheduling {n_steps} decode steps")
        if fid == "analytic" or n_steps <= 3:
            scheds = [schedule(costs(k), layers, fid) for k in range(n_steps)]
            per_step = np.array([s.op_cycles for s in scheds])
            events += sum(s.events for s in scheds)
        else:
            ks = [0, (n_steps - 1) // 2, n_steps - 1]
            sampled = {k: schedule(costs(k), layers, fid) for k in ks}
            events += sum(s.events for s in sampled.values())
            a, m, b = (sampled[k].op_cycles.astype(np.float64) for k in ks)
            line_mid = a + (b - a) * (ks[1] / ks[2])
            if abs(m.sum() - line_mid.sum()) > 0.005 * m.sum():
                scheds = [sampled.get(k) or schedule(costs(k), layers, fid) for k in range(n_steps)]
                events += sum(s.events for k, s in enumerate(scheds) if k not in sampled)
                per_step = np.array([s.op_cycles for s in scheds])
            else:
                frac = np.arange(n_steps, dtype=np.float64)[:, None] / (n_steps - 1)
                per_step = np.rint(a[None, :] + (b - a)[None, :] * frac).astype(np.int64)
                for k in ks:
                    per_step[k] = sampled[k].op_cycles
        step_cycles = [int(x) for x in per_step.sum(axis=1)]
        dec_cycles = int(sum(step_cycles))
        sums = _sum_costs(allc, n_steps)
        last = _memo(("decode_frame", spec.fingerprint(), w.batch, w.dtype, contexts[-1], lora),
                     lambda: tpl.at(contexts[-1]))
        dec = _cost_frame(last, sums, per_step.sum(axis=0), freq, energy, "decode")
        frames.append(dec)

    ops = pd.concat(frames, ignore_index=True)
    summary = _summary(cfg, spec, target, energy, ops, pre_sched.cycles, dec_cycles, step_cycles, events, hw, raw)
    step("done")
    stages = [("wall_s", time.perf_counter() - t0)]
    return Result(cfg, raw, hw, target, energy, ops, summary, stages)


def _fail(msg: str):
    raise SimError(msg)


def _phase_summary(ops: pd.DataFrame, cycles: int, freq: float, tokens: int) -> dict:
    e = float(ops["energy_pj"].sum()) * 1e-12
    lat = cycles / freq
    return {
        "cycles": int(cycles), "latency_s": lat, "energy_j": e, "tokens": int(tokens),
        "tokens_per_s": tokens / lat if lat else 0.0, "tokens_per_j": tokens / e if e else 0.0,
        "dram_bytes": int(ops["dram_read_bytes"].sum() + ops["dram_write_bytes"].sum()),
    }


def _summary(cfg, spec, target, energy, ops, pre_cycles, dec_cycles, step_cycles, events, hw, raw) -> dict:
    from sim import __version__

    w = cfg.workload
    freq = target.freq_hz
    cycles = int(pre_cycles + dec_cycles)
    latency = cycles / freq
    energy_j = float(ops["energy_pj"].sum()) * 1e-12
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
        "energy_by_component_j": {c: float(ops[f"energy_pj_{c}"].sum()) * 1e-12 for c in comps},
        "prefill": _phase_summary(pre, pre_cycles, freq, w.batch * w.prompt),
    }
    generated = w.batch * w.decode_tokens
    if w.decode_tokens:
        d = _phase_summary(dec, dec_cycles, freq, generated)
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
