"""Lamarr's pipeline on the suite's hardware targets: events/s and joules per event per target.

``sim run configs/lamarr/hardware.yaml`` (or the ``hardware:`` block of ``configs/lamarr/reproduce.yaml``,
run by :mod:`sim.studies.lamarr.validation`).  The networks are the zoo's ``Lamarr-<stage>`` entries
(models/lamarr/nets.py).

What is modelled
----------------
Events come from the generator and are grouped into batches of ``B`` events.  A batch's particles
pass the stages in order; a stage sees ``B x particles_per_event x fraction`` particles, where the
fraction is 1 for ``acceptance`` (every generated particle), ``accepted`` for ``tracking`` and
``reconstructed`` for the later stages (fractions of the generated particles), times
``muon_preselected`` for the muon stages (``ismuon``, ``muon_signs``, ``muon``: the share of
reconstructed tracks in the muon identification's preselection, long and downstream tracks above
3 GeV, the only ones the fast simulation runs them on), times ``hurdle`` for the three hurdle GANs
(``rich``, ``muon``, ``gpid``: the share of the tracks the stage's sign classifier sees whose
sampled sign pattern leaves some value non-zero, the only tracks the fast simulation runs the GAN
on; a GAN with a share of 0 is not run at all).  A sign-pattern classifier whose stage has only
one pattern (``sign_patterns``: the patterns the detailed simulation produces; the global PID's is
always "all zero" here) is not run either: the fast simulation samples among the patterns that occur
and one pattern leaves nothing to sample.  Each stage is
traced at the batch it sees, costed on the target and scheduled by the engine (:func:`sim.engine.schedule.schedule`):
that gives the stage's time and its action counts (energy).

A SimPy model (time in integer nanoseconds) then runs ``batches`` batches through the system's
resources: the host (optional pre-processing, ``host_s_per_particle``), the host-to-device link
(the batch's inputs), the device (the stages of one batch back to back) and the device-to-host link
(every stage's outputs).  PCIe is full duplex: the two directions are separate resources.  A
device holds ``2`` batches in flight when ``overlap`` is true (the next batch's inputs arrive while
this batch computes: double buffering), else one.  A target with no ``link`` runs on the host:
no transfers.  Outputs per target and batch size:

- ``events_per_s`` = events simulated / makespan (pipeline fill and drain included);
- ``bound_events_per_s`` = B / (the busiest resource's time per batch): the closed-form limit;
- ``latency_s``: mean time from a batch being ready to its outputs being on the host;
- ``j_per_event``: the devices' dynamic energy (the targets' action counts priced by their energy
  tables) plus their static power over the whole makespan (busy or idle), over the events.  The
  host that drives an accelerator is not counted; link energy is ``pj_per_byte`` of the link
  (0 unless given with a source);
- per-stage time per batch (``stage_s_<stage>``), the transfers, and energy per component.

Transfers: the inputs are the generator-level features of every generated particle (``INPUT_FEATURES``
values each, at the run's dtype); the outputs are each stage's outputs for the particles it saw.
Between stages the data stay on the device (the selections are made there).

Measured check on this machine (``cpu_check``): the real torch time of each stage (the zoo module with
random weights, fp32, at ``threads`` threads; warm-up, then the median of repeats) against the
``host_cpu`` target's prediction for the same trace; the host-CPU target is calibrated by its own
micro-benchmarks (:func:`sim.targets.cpu.measure`), never fitted to these runs.

Measured check on a GPU (``gpu_check``): the rows of a CSV written by ``benchmarks/lamarr_gpu.py`` on a
real GPU (each stage alone, eager; the whole pipeline eager and replayed from a CUDA graph; a
host-to-device copy) against the GPU target file's prediction through :func:`stage_cost`, the same
path the sweep uses.  Two runtimes, each a target file: ``eager`` (``target``, e.g. gpu_h100_sxm.yaml:
``kernel_overhead_s`` of an eager host launch, every non-GEMM op its own kernel) and ``graph``
(``graph_target``, gpu_h100_sxm_cudagraph.yaml, which extends it: 0.9 us a kernel replayed from a
CUDA graph, non-GEMM ops fused, as EasySpec and configs/gpu/ run it).  Every compute row is
predicted in both modes; the one whose runtime was measured is ``matched`` and only those enter
the MAPE.  Nothing is fitted: the target's parameters are the file's.  Two known differences from
what was measured: the stage traces include creating the stage's zero inputs (two small kernels;
the benchmark made its inputs beforehand), and an fp32 trace's GEMMs are priced on the TF32 tensor-core
path (``mma_dtype``: w32a32 -> tf32) while the benchmark turned TF32 off (fp32 on CUDA cores); the
table's ``gemm_path`` column says which path the model priced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.errors import SimError
from sim.config import CONFIGS_DIR, Hardware, load_yaml, resolve_path, validated
from sim.studies.base import Options, Progress, Study, StudyResult, no_progress
from sim.targets.parts import Link

STAGE_NAMES = ("acceptance", "tracking", "resolution", "covariance", "ismuon", "rich_signs", "rich", "muon_signs",
               "muon", "gpid_signs", "gpid")
# which fraction of the generated particles each stage sees
STAGE_FRACTION = {"acceptance": "generated", "tracking": "accepted", **{s: "reconstructed" for s in STAGE_NAMES[2:]}}
HURDLE_GANS = ("rich", "muon", "gpid")  # run on the reconstructed tracks with a non-zero sign pattern only
MUON_STAGES = ("ismuon", "muon_signs", "muon")  # run on the muon preselection only (models/lamarr/fastsim.py)
SIGN_STAGES = ("rich_signs", "muon_signs", "gpid_signs")  # not run where one pattern is all there is
# generator-level values sent per generated particle: log10 p, eta, cos/sin phi, charge, vz, log10 nTracks,
# species one-hot (5) -- every stage's truth condition (models/lamarr/nets.py); the rest is made on the device
INPUT_FEATURES = 12
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
DTYPE_BITS = {"fp32": 32, "bf16": 16, "fp16": 16}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Events(_Strict):
    """Particles per event and the fractions of them the stages see (placeholders until measured)."""

    particles_per_event: float = Field(gt=0)
    accepted: float = Field(gt=0, le=1, description="fraction of generated particles in the acceptance")
    reconstructed: float = Field(gt=0, le=1, description="fraction of generated particles reconstructed as tracks")
    muon_preselected: float = Field(1.0, ge=0, le=1, description="share of reconstructed tracks the muon stages "
                                                               "run on (long/downstream, p > 3 GeV)")
    hurdle: dict[str, float] = Field(default_factory=lambda: dict.fromkeys(HURDLE_GANS, 1.0),
                                     description="per hurdle GAN, the share of its sign classifier's tracks it runs on")
    sign_patterns: dict[str, int] = Field(default_factory=dict,
                                          description="per sign-pattern classifier, the patterns that occur "
                                                      "(1: the stage is not run; not given: many)")
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _order(self):
        if self.reconstructed > self.accepted:
            raise ValueError(f"reconstructed ({self.reconstructed}) cannot exceed accepted ({self.accepted})")
        return self

    @staticmethod
    def _known(v: dict, stages: tuple[str, ...]) -> None:
        unknown = set(v) - set(stages)
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(sorted(unknown))}; expected {', '.join(stages)}")

    @field_validator("hurdle")
    @classmethod
    def _hurdle(cls, v: dict[str, float]) -> dict[str, float]:
        cls._known(v, HURDLE_GANS)
        bad = {k: x for k, x in v.items() if not 0 <= x <= 1}
        if bad:
            raise ValueError(f"shares must lie in [0, 1], got {bad}")
        return {k: float(v.get(k, 1.0)) for k in HURDLE_GANS}  # a stage not given: every track

    @field_validator("sign_patterns")
    @classmethod
    def _patterns(cls, v: dict[str, int]) -> dict[str, int]:
        cls._known(v, SIGN_STAGES)
        if any(n < 1 for n in v.values()):
            raise ValueError(f"a stage has at least one pattern, got {v}")
        return v


class LinkSpec(_Strict):
    """A link as the file gives it: becomes a :class:`sim.targets.parts.Link`."""

    bytes_per_s: float = Field(gt=0, description="per direction")
    latency_s: float = Field(0.0, ge=0, description="fixed cost per transfer (DMA set-up, driver)")
    pj_per_byte: float = Field(0.0, ge=0)
    source: str = Field(min_length=1)

    def part(self) -> Link:
        return Link(self.bytes_per_s, self.latency_s, self.pj_per_byte, self.source)


class TargetEntry(_Strict):
    name: str = Field(min_length=1, description="label in the outputs")
    file: str | None = Field(None, description="a target file (configs/targets/*.yaml)")
    target: str | None = Field(None, description="a target name (host_cpu) when there is no file")
    energy: str | None = Field(None, description="energy table (default: the target file's)")
    calibration: str | None = Field(None, description="host_cpu: 'measure' or a calibration YAML "
                                    "(as `sim validate --device cpu` writes)")
    params: dict = Field(default_factory=dict, description="overrides of the target's parameters")
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    link: str | None = Field(None, description="a key of `links`; none: the target is the host")
    overlap: bool = Field(True, description="transfers of the next batch overlap this batch's compute")

    @model_validator(mode="after")
    def _one_source(self):
        if not self.file and not self.target:
            raise ValueError("needs `file` (a target file) or `target` (a target name)")
        if self.target == "host_cpu" and not self.calibration and not self.params:
            raise ValueError("host_cpu needs `calibration`: 'measure' or a calibration YAML")
        return self


class CpuCheck(_Strict):
    particles: list[int] = Field(min_length=1, description="batch sizes (particles) to time each stage at")
    repeats: int = Field(7, gt=0)
    threads: int = Field(2, gt=0)
    calibration: str = Field("measure", description="host_cpu calibration for the predictions: 'measure' or a "
                             "YAML file (fp32 must be in it)")

    @model_validator(mode="after")
    def _positive(self):
        if any(p <= 0 for p in self.particles):
            raise ValueError(f"particles must be positive, got {self.particles}")
        return self


class GpuCheck(_Strict):
    """Measured GPU timings (``benchmarks/lamarr_gpu.py``) vs the GPU target's prediction."""

    enabled: bool = True
    measured: str = Field(min_length=1, description="the CSV benchmarks/lamarr_gpu.py wrote (relative to this file, "
                          "configs/ or the repository root)")
    target: str = Field("targets/gpu_h100_sxm.yaml", min_length=1, description="the GPU target file (eager rows)")
    graph_target: str = Field("targets/gpu_h100_sxm_cudagraph.yaml", min_length=1,
                              description="the same GPU with a CUDA-graph runtime (the graph-replayed rows)")
    link: str | None = Field(None, description="a key of `links`: predicts the host-to-device copy rows")


class HardwareSpec(_Strict):
    """The ``hardware`` block (also a standalone file with ``study: lamarr_hw``)."""

    study: Literal["lamarr_hw"] | None = None
    out: str | None = None
    events: Events
    batch_events: list[int] = Field(min_length=1, description="events per batch (the sweep)")
    batches: int = Field(16, ge=2, description="batches simulated per point")
    arrival_events_per_s: float | None = Field(None, gt=0, description="generator rate (none: always ready)")
    host_s_per_particle: float = Field(0.0, ge=0, description="host pre/post-processing per generated particle")
    fidelity: Literal["simpy", "analytic"] = "simpy"
    links: dict[str, LinkSpec] = Field(default_factory=dict)
    targets: list[TargetEntry] = Field(min_length=1)
    cpu_check: CpuCheck | None = None
    gpu_check: GpuCheck | None = None

    @model_validator(mode="after")
    def _refs(self):
        if any(b <= 0 for b in self.batch_events):
            raise ValueError(f"batch_events must be positive, got {self.batch_events}")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique, got {names}")
        for t in self.targets:
            if t.link is not None and t.link not in self.links:
                known = ", ".join(self.links) or "(none)"
                raise ValueError(f"target {t.name!r}: unknown link {t.link!r} (links: {known})")
        g = self.gpu_check
        if g is not None and g.link is not None and g.link not in self.links:
            known = ", ".join(self.links) or "(none)"
            raise ValueError(f"gpu_check: unknown link {g.link!r} (links: {known})")
        return self


def load(path: str | Path) -> HardwareSpec:
    """A standalone hardware file; every problem is a one-line SimError naming the file and key."""
    path = Path(path)
    data, lines = load_yaml(path)
    if not (isinstance(data, dict) and data.get("study") == "lamarr_hw"):
        raise SimError(f"{path}: study: expected 'lamarr_hw' (a Lamarr hardware file)")
    return validated(HardwareSpec, data, path, lines)


def spec_of(block) -> HardwareSpec:
    """A spec from a mapping (the ``hardware:`` block of another file) or a spec."""
    if isinstance(block, HardwareSpec):
        return block
    from pydantic import ValidationError

    from sim.config import validation_error

    try:
        return HardwareSpec.model_validate(block)
    except ValidationError as e:
        raise validation_error(Path("hardware"), e, {}) from None


# ---------------------------------------------------------------------------- fractions


def merged_events(spec: HardwareSpec, fractions: dict | None) -> Events:
    """The spec's events, with measured ``fractions`` (``particles_per_event``, ``accepted``,
    ``reconstructed``, ``muon_preselected``, ``hurdle``, ``sign_patterns``, as
    :func:`sim.studies.lamarr.validation.fractions` returns) replacing the placeholders."""
    if not fractions:
        return spec.events
    known = ("particles_per_event", "accepted", "reconstructed", "muon_preselected", "hurdle", "sign_patterns")
    unknown = set(fractions) - set(known)
    if unknown:
        raise SimError(f"unknown fraction(s) {', '.join(sorted(unknown))}; expected {', '.join(known)}")
    measured = {k: (dict(v) if isinstance(v, dict) else float(v)) for k, v in fractions.items()}
    data = {**spec.events.model_dump(), **measured,
            "source": "measured by the detailed simulation (sim.studies.lamarr.validation.fractions)"}
    from pydantic import ValidationError

    try:
        return Events.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise SimError(f"fractions: {'.'.join(map(str, err['loc'])) or 'events'}: {err['msg']}") from None


def stage_particles(ev: Events, batch_events: int) -> dict[str, int]:
    """Particles each stage sees in a batch of ``batch_events`` events (rounded, at least 1; 0 for a
    stage with a share of 0 and a sign-pattern classifier with one pattern: not run)."""
    share = {"generated": 1.0, "accepted": ev.accepted, "reconstructed": ev.reconstructed}
    out = {}
    for s in STAGE_NAMES:
        f = (share[STAGE_FRACTION[s]] * (ev.muon_preselected if s in MUON_STAGES else 1.0) * ev.hurdle.get(s, 1.0)
             * (ev.sign_patterns.get(s, 2) > 1))
        out[s] = max(1, int(round(batch_events * ev.particles_per_event * f))) if f > 0 else 0
    return out


def transfer_bytes(parts: dict[str, int], dtype: str) -> tuple[int, int]:
    """(host->device, device->host) bytes of one batch."""
    from workloads.zoo import LAMARR_STAGES

    el = DTYPE_BYTES[dtype]
    h2d = parts["acceptance"] * INPUT_FEATURES * el
    d2h = sum(parts[s] * LAMARR_STAGES[s][4] * el for s in STAGE_NAMES)
    return h2d, d2h


# ---------------------------------------------------------------------------- targets and stage costs

_CALIB: dict = {}


def host_calibration(how: str, dtype: str, base: Path, progress=None) -> dict:
    """host_cpu parameters: measured now (``'measure'``, once per process and dtype) or read from a file."""
    from sim.targets.cpu import measure

    if how == "measure":
        if dtype not in _CALIB:
            (progress or (lambda m: None))(f"calibrating the host CPU ({dtype} micro-benchmarks)")
            _CALIB[dtype] = measure(dtypes=(dtype,), progress=progress).model_dump()
        return dict(_CALIB[dtype])
    p = resolve_path(how, base)
    if not p.exists() and (CONFIGS_DIR.parent / how).exists():  # a path from the repository root (results/...)
        p = CONFIGS_DIR.parent / how
    if not p.exists():
        raise SimError(f"host_cpu calibration: no such file {how!r} (looked in {base}, configs/ and the "
                       "repository root)")
    data, _ = load_yaml(p)
    if dtype not in (data.get("peak_flops_per_s") or {}):
        have = ", ".join(data.get("peak_flops_per_s") or {}) or "none"
        raise SimError(f"{p}: the host CPU was calibrated at {have}, not {dtype}; calibrate with "
                       f"`sim validate --device cpu --dtype {dtype}` or use calibration: measure")
    return data


def build_target(t: TargetEntry, base: Path, progress=None):
    """(target, energy table, resolved description) of an entry."""
    from sim import targets

    params = dict(t.params)
    if t.target == "host_cpu" and t.calibration:
        params = {**host_calibration(t.calibration, t.dtype, base, progress), **params}
    hw = Hardware(target=t.target, file=t.file, energy=t.energy, params=params)
    try:
        return targets.build(hw, base / "lamarr_hardware.yaml")
    except SimError as e:
        raise SimError(f"target {t.name!r}: {e}") from None


def _static_w(energy, actions: dict, op_seconds: np.ndarray, busy_s: float) -> float:
    """The device's static power over a stage (W): the static energy its table prices over the stage's ops
    (:meth:`sim.energy.EnergyTable.static`: the table's static power at the target's operating point, over
    each op's time) per busy second; the table's static power where nothing is busy."""
    if busy_s <= 0:
        return energy.static_w
    return sum(float(np.sum(v)) for v in energy.static(actions, op_seconds).values()) * 1e-12 / busy_s


def stage_cost(target, energy, stage: str, particles: int, dtype: str, fidelity: str = "simpy") -> dict:
    """One stage at a batch of ``particles`` on a target: seconds, dynamic energy by component (J),
    static power (W), MACs and the trace's GEMM count."""
    from sim.engine.schedule import schedule
    from sim.targets.base import OpArrays
    from sim.targets.parts import Precision
    from workloads import api

    tr = api.trace(f"Lamarr-{stage}", "prefill", particles, 1, 0, dtype)
    bits = DTYPE_BITS[dtype]
    c = target.cost(OpArrays.from_frame(tr), Precision(bits, bits))
    sched = schedule(c, tr["layer"].to_numpy(), fidelity)
    seconds = sched.cycles / target.freq_hz
    dyn = {comp: float(np.sum(v)) * 1e-12 for comp, v in energy.dynamic(c.actions).items()}
    busy = float(np.sum(sched.op_cycles)) / target.freq_hz
    static_w = _static_w(energy, c.actions, sched.op_cycles / target.freq_hz, busy)
    return {"time_s": seconds, "dynamic_j": dyn, "static_w": static_w,
            "macs": int(np.sum(c.macs)), "gemms": int((tr.kind == "gemm").sum()),
            "ops": int((tr.kind != "view").sum())}


_NO_COST = {"time_s": 0.0, "dynamic_j": {}, "static_w": 0.0, "macs": 0, "gemms": 0, "ops": 0}  # a stage not run


# ---------------------------------------------------------------------------- the SimPy pipeline


def _ns(seconds: float) -> int:
    """Seconds as the model's integer nanoseconds (nearest; a positive time is at least 1 ns)."""
    return max(1, int(round(seconds * 1e9))) if seconds > 0 else 0


def simulate_pipeline(n_batches: int, batch_events: int, stage_s: dict[str, float], h2d_s: float = 0.0,
                      d2h_s: float = 0.0, host_s: float = 0.0, overlap: bool = True, on_host: bool = False,
                      arrival_events_per_s: float | None = None, graph: bool = False) -> dict:
    """``n_batches`` batches through host -> link -> device stages -> link, as a task graph over the
    resources ``host``, ``h2d``, ``device`` and ``d2h`` (:class:`sim.engine.TaskGraph`, integer ns).

    A batch holds one of the device's buffer slots (2 with ``overlap``: double buffering; else 1)
    from its upload to its download, so batch k's upload follows batch k - slots' download (slots
    are taken and given back in batch order).  Returns the makespan, per-batch latencies, the busy
    time of each resource and the completion times (and the graph itself with ``graph``).
    ``on_host``: the stages run on the host itself (one resource; no transfers)."""
    from sim.engine.graph import TaskGraph

    g = TaskGraph()
    slots = 2 if (overlap and not on_host) else 1
    t_dev = sum(_ns(v) for v in stage_s.values())
    t_h2d, t_d2h, t_host = (0, 0, _ns(host_s)) if on_host else (_ns(h2d_s), _ns(d2h_s), _ns(host_s))
    device = "host" if on_host else "device"
    ready = [_ns((k + 1) * batch_events / arrival_events_per_s) if arrival_events_per_s else 0
             for k in range(n_batches)]
    last: list[str] = []
    for k in range(n_batches):
        start = ready[k]
        prev = None
        if t_host:
            prev = g.add(f"host {k}", ["host"], t_host, cat="host", not_before=start)
            start = 0
        slot_free = last[k - slots] if k >= slots else None
        for name, res, dt in (("h2d", "h2d", t_h2d), ("stages", device, t_dev), ("d2h", "d2h", t_d2h)):
            if dt or name == "stages":
                prev = g.add(f"{name} {k}", [res], dt, after=(prev, slot_free), cat=name, not_before=start)
                slot_free, start = None, 0
        last.append(prev)
    makespan = g.run()
    busy = {"host": 0, "h2d": 0, "device": 0, "d2h": 0, **g.busy()}
    if on_host:
        busy["device"], busy["host"] = busy["host"], 0
    done = [int(g.end[name]) for name in last]
    out = {"makespan_ns": int(makespan), "latency_ns": np.array(done) - np.array(ready), "busy_ns": busy,
           "done_ns": done}
    if graph:
        out["graph"] = g
    return out


def bound_events_per_s(batch_events: int, stage_s: dict[str, float], h2d_s: float = 0.0, d2h_s: float = 0.0,
                       host_s: float = 0.0, overlap: bool = True, on_host: bool = False) -> float:
    """Closed-form upper bound: B over the busiest resource's time per batch (with overlap), or over
    the sum of the serial steps (without); time rounded to ns as the simulation does."""
    dev = sum(_ns(v) for v in stage_s.values())
    h, d, ho = _ns(h2d_s), _ns(d2h_s), _ns(host_s)
    if on_host:
        per = dev + ho
    elif overlap:
        per = max(dev, h, d, ho, (h + dev + d) / 2)  # two slots: each batch holds one for h2d+compute+d2h
    else:
        per = max(h + dev + d, ho)
    return batch_events / (per * 1e-9)


# ---------------------------------------------------------------------------- the sweep


def run(spec: HardwareSpec | dict, fractions: dict | None = None, base_dir: str | Path = ".",
        progress=None, graphs: dict | None = None) -> pd.DataFrame:
    """Every target at every batch size: one row each (see the module docstring for the columns).
    ``graphs``: a dict that receives each (target, batch size)'s scheduled pipeline (a
    :class:`sim.engine.TaskGraph` in ns), for a trace.

    ``fractions``: measured particles per event and stage fractions (replacing the spec's
    placeholders).  The frame's ``attrs`` carry ``cpu_check`` (records of the measured-vs-predicted
    table, when the spec asks for it), ``calibration`` (the host-CPU parameters measured, if any) and
    ``events`` (the fractions used)."""
    spec = spec_of(spec)
    base = Path(base_dir)
    say = progress or (lambda m: None)
    ev = merged_events(spec, fractions)
    rows = []
    for t in spec.targets:
        say(f"{t.name}: building the target")
        target, energy, _ = build_target(t, base, say)
        on_host = t.link is None
        link = spec.links[t.link].part() if t.link else None
        for b in spec.batch_events:
            say(f"{t.name}: batch of {b} events")
            parts = stage_particles(ev, b)
            costs = {s: stage_cost(target, energy, s, parts[s], t.dtype, spec.fidelity) if parts[s] else _NO_COST
                     for s in STAGE_NAMES}
            stage_s = {s: c["time_s"] for s, c in costs.items()}
            h2d_b, d2h_b = transfer_bytes(parts, t.dtype)
            h2d_s = 0.0 if on_host else link.transfer_s(h2d_b)
            d2h_s = 0.0 if on_host else link.transfer_s(d2h_b)
            host_s = spec.host_s_per_particle * parts["acceptance"]
            sim = simulate_pipeline(spec.batches, b, stage_s, h2d_s, d2h_s, host_s, t.overlap, on_host,
                                    spec.arrival_events_per_s, graph=graphs is not None)
            if graphs is not None:
                graphs[(t.name, b)] = sim["graph"]
            makespan = sim["makespan_ns"] * 1e-9
            events = spec.batches * b
            static_w = max(c["static_w"] for c in costs.values())
            comps: dict[str, float] = {}
            for c in costs.values():
                for comp, j in c["dynamic_j"].items():
                    comps[comp] = comps.get(comp, 0.0) + j * spec.batches
            link_j = 0.0 if on_host else (h2d_b + d2h_b) * link.pj_per_byte * 1e-12 * spec.batches
            static_j = static_w * makespan
            total = sum(comps.values()) + static_j + link_j
            row = {
                "target": t.name, "dtype": t.dtype, "link": t.link or "host",
                "overlap": bool(t.overlap and not on_host),
                "batch_events": b, "batches": spec.batches, "events": events,
                "particles_per_batch": parts["acceptance"], "makespan_s": makespan,
                "events_per_s": events / makespan,
                "bound_events_per_s": bound_events_per_s(b, stage_s, h2d_s, d2h_s, host_s, t.overlap, on_host),
                "latency_s": float(np.mean(sim["latency_ns"])) * 1e-9,
                "j_per_event": total / events, "energy_j": total,
                "energy_j_static": static_j, "energy_j_link": link_j, "static_w": static_w,
                "device_s_per_batch": sum(stage_s.values()), "h2d_s": h2d_s, "d2h_s": d2h_s, "host_s": host_s,
                "h2d_bytes": h2d_b, "d2h_bytes": d2h_b,
                "device_utilization": sim["busy_ns"]["device"] / sim["makespan_ns"] if sim["makespan_ns"] else 0.0,
                "macs_per_event": sum(c["macs"] for c in costs.values()) / b,
            }
            row.update({f"energy_j_{k}": v for k, v in sorted(comps.items())})
            row.update({f"stage_s_{s}": stage_s[s] for s in STAGE_NAMES})
            row.update({f"particles_{s}": parts[s] for s in STAGE_NAMES})
            rows.append(row)
    df = pd.DataFrame(rows)
    energy_cols = sorted(c for c in df.columns if c.startswith("energy_j_"))
    df[energy_cols] = df[energy_cols].fillna(0.0)
    df.attrs["events"] = ev.model_dump()
    if spec.cpu_check is not None:
        check = cpu_check(spec.cpu_check, base, say)
        df.attrs["cpu_check"] = check.to_dict("records")
    g = spec.gpu_check
    if g is not None and g.enabled:
        say("GPU check: predicting the measured GPU timings")
        check = gpu_check(g.measured, g.target, base, spec.links[g.link].part() if g.link else None, g.graph_target,
                          say)
        df.attrs["gpu_check"] = check.to_dict("records")
    cal = {k: v for k, v in _CALIB.items()}
    if cal:
        df.attrs["calibration"] = cal
    return df


# ---------------------------------------------------------------------------- measured on this CPU


def measure_stage(stage: str, particles: int, repeats: int = 7, threads: int = 2) -> float:
    """Median seconds of one real forward of a stage (the zoo module, random weights, fp32) on this CPU."""
    import torch

    from sim.targets.cpu import time_call
    from workloads import zoo
    from workloads.build import build

    model = build(zoo.get(f"Lamarr-{stage}"), "fp32", "cpu")
    ids = torch.zeros((particles, 1), dtype=torch.long)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return time_call(lambda: model.trace_run(ids, "prefill"), samples=repeats, warmup=3)
    finally:
        torch.set_num_threads(before)


def cpu_check(chk: CpuCheck, base: Path, progress=None) -> pd.DataFrame:
    """Each stage at each batch: measured torch time on this CPU vs the host_cpu target's prediction."""
    from sim.targets import build
    from sim.targets.cpu import HostCPU, _cpu_model

    say = progress or (lambda m: None)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(chk.threads)  # the calibration measures at the same thread count
    try:
        params = host_calibration(chk.calibration, "fp32", base, say)
    finally:
        torch.set_num_threads(before)
    target = HostCPU(HostCPU.Params.model_validate(params))
    _, energy, _ = build(Hardware(target="host_cpu", energy="energy/host_cpu.yaml", params=params),
                         base / "lamarr_hardware.yaml")
    rows = []
    for stage in STAGE_NAMES:
        for n in chk.particles:
            say(f"timing {stage} at {n} particles")
            meas = measure_stage(stage, n, chk.repeats, chk.threads)
            pred = stage_cost(target, energy, stage, n, "fp32")["time_s"]
            rows.append({"stage": stage, "particles": n, "measured_s": meas, "predicted_s": pred,
                         "rel_error": (pred - meas) / meas, "threads": chk.threads, "cpu": _cpu_model()})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- measured on a GPU

GPU_CSV_COLUMNS = ("what", "stage", "dtype", "batch", "seconds")
_RUNTIME = {"stage": "eager", "pipeline_eager": "eager", "pipeline_graph": "graph"}
# a network timed and today's are compared when their parameters differ by at most this: a first layer
# given a few more inputs since (the committed H100 file predates the species and sign-pattern inputs)
# moves a stage's parameters by 0-3.5%; a narrower or wider stage moves them by far more
PARAMS_TOLERANCE = 0.10


def _find(name: str, base: Path) -> Path | None:
    """A path from a config: as :func:`sim.config.resolve_path`, or from the repository root; None if missing."""
    p = resolve_path(name, base)
    if not p.exists() and (CONFIGS_DIR.parent / name).exists():
        p = CONFIGS_DIR.parent / name
    return p if p.exists() else None


def read_gpu_measured(path: str | Path, base: Path = CONFIGS_DIR) -> pd.DataFrame:
    """The CSV of ``benchmarks/lamarr_gpu.py``, checked: its columns, the kinds of row, stages, dtypes and
    positive batches and times.  Any problem is a one-line SimError naming the file."""
    import re

    p = _find(str(path), Path(base))
    if p is None:
        raise SimError(f"gpu_check: no such measured file {str(path)!r} (looked in {base}, configs/ and the "
                       "repository root); write it with `python benchmarks/lamarr_gpu.py --out <csv>` on a GPU")
    try:
        m = pd.read_csv(p)
    except (OSError, ValueError) as e:
        raise SimError(f"{p}: cannot read the measured GPU timings: {e}") from None
    missing = [c for c in GPU_CSV_COLUMNS if c not in m.columns]
    if missing:
        raise SimError(f"{p}: missing column(s) {', '.join(missing)} (expected those benchmarks/lamarr_gpu.py writes)")
    if m.empty:
        raise SimError(f"{p}: no rows")
    for i, r in enumerate(m.itertuples(index=False), start=2):  # line 1 is the header
        what = str(r.what)
        if what not in _RUNTIME and not re.fullmatch(r"h2d_copy_\d+_features", what):
            raise SimError(f"{p}: line {i}: unknown what {what!r} (stage, pipeline_eager, pipeline_graph, "
                           "h2d_copy_<n>_features)")
        if what == "stage" and r.stage not in STAGE_NAMES:
            raise SimError(f"{p}: line {i}: unknown stage {r.stage!r}")
        if r.dtype not in DTYPE_BITS:
            raise SimError(f"{p}: line {i}: dtype {r.dtype!r} is not one of {', '.join(DTYPE_BITS)}")
        try:
            ok = int(r.batch) == r.batch and r.batch > 0 and float(r.seconds) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise SimError(f"{p}: line {i}: batch and seconds must be positive numbers (got {r.batch!r}, "
                           f"{r.seconds!r})")
    m = m.copy()
    if "params" in m.columns:  # optional: the parameters of the networks timed (none on copy rows)
        count = pd.to_numeric(m.params, errors="coerce")
        bad = m.index[m.what.isin(list(_RUNTIME)) & ~(count > 0)]
        if len(bad):
            raise SimError(f"{p}: line {bad[0] + 2}: params must be a positive count on stage and pipeline rows "
                           f"(got {m.params[bad[0]]!r})")
        m["params"] = count
    m["batch"] = m["batch"].astype(np.int64)
    m["seconds"] = m["seconds"].astype(np.float64)
    m.attrs["path"] = str(p)
    return m


def gpu_check(csv_path: str | Path, target: str = "targets/gpu_h100_sxm.yaml", base: str | Path = CONFIGS_DIR,
              link: Link | None = None, graph_target: str = "targets/gpu_h100_sxm_cudagraph.yaml",
              progress=None) -> pd.DataFrame:
    """Every row of a ``benchmarks/lamarr_gpu.py`` CSV against the GPU target's prediction.

    Compute rows (a stage alone, the whole pipeline) are predicted in both runtime modes, ``eager``
    (``target``) and ``graph`` (``graph_target``: the same GPU with a CUDA-graph runtime),
    from each stage's trace at the row's batch and dtype (:func:`stage_cost`; the pipeline is the sum of
    its stages, every stage over the same batch, as the benchmark ran it: the stages the file times
    one by one).  The traces are of today's networks: a file measured before a stage's inputs grew
    (``rich``, ``muon``, ``gpid``: + the sign pattern; ``tracking``, ``resolution``, ``covariance``:
    + species) is compared with slightly wider first layers than it ran.  ``matched`` marks the mode
    whose runtime was measured (stage and pipeline_eager rows: eager; pipeline_graph: graph) on the
    network modelled today: a file with a ``params`` column (the parameters of each stage, or of the
    stages of a pipeline row, as timed) is compared only where today's networks hold within
    :data:`PARAMS_TOLERANCE` of them (a pipeline row: every stage within it); ``params_ratio`` is
    today's over the file's.  (The committed H100 file timed the muon GAN with three 128-wide layers,
    3.6x the parameters of today's 64-wide stage: its rows and the pipeline's are not compared.)  A
    ``h2d_copy_<n>_features`` row is predicted by ``link`` (``latency_s`` + n x batch x dtype bytes /
    ``bytes_per_s``), mode ``link``.  Columns: what, stage, dtype, batch, mode, matched, measured_s,
    predicted_s, rel_error ((predicted - measured) / measured), kernels (launches the prediction
    pays for), gemm_path (the tensor-core path of the GEMMs: ``tf32`` for fp32 traces), params_ratio,
    device, torch."""
    base = Path(base)
    say = progress or (lambda m: None)
    meas = read_gpu_measured(csv_path, base)
    from workloads.zoo import LAMARR_STAGES

    modes = {}
    for mode, file in (("eager", target), ("graph", graph_target)):
        modes[mode] = build_target(TargetEntry(name=f"gpu_check {mode}", file=file), base, say)[:2]
        if getattr(modes[mode][0], "name", None) != "gpu":
            raise SimError(f"gpu_check: {file} is not a GPU target (target: {modes[mode][0].name})")
    memo: dict = {}
    # a pipeline row is the stages the file timed one by one (the pipeline as it was measured: a file
    # taken before the sign-pattern stages existed holds eight)
    timed_stages = set(meas.loc[meas.what == "stage", "stage"])
    piped = [s for s in STAGE_NAMES if s in timed_stages] or list(STAGE_NAMES)
    # each stage's parameters as timed (the file's params column; not given: a row is taken to be today's)
    timed_params = {}
    if "params" in meas:
        rows_with = meas[(meas.what == "stage") & meas.params.notna()]
        timed_params = dict(zip(rows_with.stage, rows_with.params.astype(float)))

    def cost(mode, stage, batch, dtype):
        key = (mode, stage, batch, dtype)
        if key not in memo:
            t, e = modes[mode]
            c = stage_cost(t, e, stage, batch, dtype)
            fused = bool(t.params.fuse_vector_ops)
            memo[key] = (c["time_s"], c["gemms"] if fused else c["ops"])
        return memo[key]

    rows = []
    for r in meas.itertuples(index=False):
        base_row = {"what": r.what, "stage": r.stage, "dtype": r.dtype, "batch": int(r.batch)}
        extra = {"device": getattr(r, "device", ""), "torch": getattr(r, "torch", "")}
        if r.what in _RUNTIME:
            say(f"GPU check: {r.what} {r.stage} {r.dtype} at {r.batch}")
            stages = [r.stage] if r.what == "stage" else piped
            bits = DTYPE_BITS[r.dtype]
            path = modes["eager"][0].mma_key(bits, bits, "bf16" if r.dtype == "bf16" else "f16")
            # the networks timed against today's: a stage (every stage of a pipeline row) within
            # PARAMS_TOLERANCE of the parameters the file records is the same network, else not compared
            today = [LAMARR_STAGES[s][5] for s in stages]
            timed = getattr(r, "params", np.nan)
            ratio = sum(today) / timed if timed == timed else np.nan
            if r.what == "stage" or not set(stages) <= set(timed_params):  # the row's own count
                same = not abs(ratio - 1) > PARAMS_TOLERANCE
            else:  # a pipeline row: every stage it ran, as the file's stage rows timed them
                same = all(not abs(t / timed_params[s] - 1) > PARAMS_TOLERANCE for s, t in zip(stages, today))
            for mode in modes:
                parts = [cost(mode, s, int(r.batch), r.dtype) for s in stages]
                pred = sum(p[0] for p in parts)
                rows.append({**base_row, "mode": mode, "matched": mode == _RUNTIME[r.what] and same,
                             "measured_s": r.seconds, "predicted_s": pred, "rel_error": (pred - r.seconds) / r.seconds,
                             "kernels": sum(p[1] for p in parts), "gemm_path": path, "params_ratio": ratio, **extra})
        else:
            if link is None:
                raise SimError(f"gpu_check: {meas.attrs['path']} has {r.what} rows; give `link` (a key of `links`) "
                               "to predict them")
            n_feat = int(str(r.what).split("_")[2])
            pred = link.transfer_s(int(r.batch) * n_feat * DTYPE_BYTES[r.dtype])
            rows.append({**base_row, "mode": "link", "matched": True, "measured_s": r.seconds, "predicted_s": pred,
                         "rel_error": (pred - r.seconds) / r.seconds, "kernels": 0, "gemm_path": "-", **extra})
    return pd.DataFrame(rows)


def gpu_check_summary(check: pd.DataFrame) -> pd.DataFrame:
    """MAPE (mean |rel_error|) of the matched rows per mode and per mode and kind of row, with the worst row."""
    m = check[check.matched]
    out = []
    for key, g in [(("all",), m), *[((w,), gg) for w, gg in m.groupby("what", sort=False)]]:
        for mode, gm in g.groupby("mode", sort=False):
            worst = gm.loc[gm.rel_error.abs().idxmax()]
            out.append({"what": key[0], "mode": mode, "rows": len(gm), "mape": float(gm.rel_error.abs().mean()),
                        "median_rel_error": float(gm.rel_error.median()),
                        "worst": f"{worst['what']} {worst['stage']} {worst['dtype']} {worst['batch']}",
                        "worst_rel_error": float(worst.rel_error)})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------- outputs


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per target, at its largest batch: events/s, the closed-form bound, J/event, latency."""
    last = df.loc[df.groupby("target", sort=False)["batch_events"].idxmax()]
    return last[["target", "dtype", "link", "batch_events", "events_per_s", "bound_events_per_s", "j_per_event",
                 "latency_s", "device_utilization"]].reset_index(drop=True)


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, g in df.groupby("target", sort=False):
        a1.plot(g.batch_events, g.events_per_s, "o-", label=name)
        a2.plot(g.batch_events, g.j_per_event, "o-", label=name)
    a1.set(xscale="log", yscale="log", xlabel="events per batch", ylabel="events / s",
           title="Lamarr pipeline throughput")
    a2.set(xscale="log", yscale="log", xlabel="events per batch", ylabel="J / event", title="Energy per event")
    for a in (a1, a2):
        a.grid(True, which="both", lw=0.3)
    a1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write(out_dir: str | Path, df: pd.DataFrame, gpu_check: pd.DataFrame | None = None) -> list[str]:
    """Write the sweep (``lamarr_hw.csv``), its plot (``lamarr_hw.png``), the CPU check
    (``lamarr_hw_cpu_check.csv``), the GPU check (``lamarr_hw_gpu_check.csv``: ``gpu_check``, else the
    frame's ``attrs``) and the host-CPU calibration used (``lamarr_hw_calibration.yaml``) when there are;
    returns the names written (relative to ``out_dir``)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SimError(f"cannot create {out}: {e.strerror or e}") from None
    written = []
    df.to_csv(out / "lamarr_hw.csv", index=False, float_format="%.6g")
    written.append("lamarr_hw.csv")
    plot(df, out / "lamarr_hw.png")
    written.append("lamarr_hw.png")
    if df.attrs.get("cpu_check"):
        pd.DataFrame(df.attrs["cpu_check"]).to_csv(out / "lamarr_hw_cpu_check.csv", index=False, float_format="%.6g")
        written.append("lamarr_hw_cpu_check.csv")
    gpu = gpu_check if gpu_check is not None else (pd.DataFrame(df.attrs["gpu_check"]) if df.attrs.get("gpu_check")
                                                   else None)
    if gpu is not None:
        gpu.to_csv(out / "lamarr_hw_gpu_check.csv", index=False, float_format="%.6g")
        written.append("lamarr_hw_gpu_check.csv")
    if df.attrs.get("calibration"):
        import json

        import yaml

        cal = json.loads(json.dumps(df.attrs["calibration"]))
        (out / "lamarr_hw_calibration.yaml").write_text(yaml.safe_dump(cal, sort_keys=False))
        written.append("lamarr_hw_calibration.yaml")
    return written


__all__ = ["HardwareSpec", "bound_events_per_s", "cpu_check", "gpu_check", "gpu_check_summary", 
           "load", "read_gpu_measured", "run", "simulate_pipeline", "stage_cost", "stage_particles",
           "summary_table", "write"]


class LamarrHardware(Study):
    """Lamarr's pipeline of networks on the suite's targets (``study: lamarr_hw``)."""

    kind = "lamarr_hw"
    schema = HardwareSpec
    traceable = True

    def run(self, path: Path, options: Options, progress: Progress = no_progress) -> StudyResult:
        spec = load(path)
        graphs: dict = {}
        df = run(spec, None, path.parent, progress=lambda m: progress(m), graphs=graphs)
        return StudyResult(tables={"lamarr_hw": df}, out=Path(options.out or spec.out or "results/lamarr_hw"),
                           data=(df, graphs))

    def write(self, out: Path, result: StudyResult) -> list[str]:
        return write(out, result.data[0])

    def spans(self, result: StudyResult) -> list:
        """Each target's pipeline at its largest batch: one process per target, a track per resource."""
        df, graphs = result.data
        out = []
        for name, b in df.groupby("target", sort=False)["batch_events"].max().items():
            out += graphs[(name, b)].spans(f"{name}, {b} events per batch", seconds_per_unit=1e-9)
        return out

    def print(self, result: StudyResult, console) -> None:
        console.print(summary_table(result.data[0]).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
