"""Reproductions of a paper's results: `sim run configs/<system>/reproduce.yaml`.

A reproduce file is a matrix of runs — models x accelerators x tasks — and the paper's metrics
with their sources::

    study: reproduce
    name: bitmod
    out: results/bitmod
    fidelity: simpy
    workload: {batch: 1, prompt: 256, dtype: fp16}     # shared by every run
    tasks:                                             # what differs per task
      discriminative: {decode_tokens: 0}
      generative: {decode_tokens: 20}
    models: [OPT-1.3B, Llama-2-7B]
    reference: fp16                                    # speedups are relative to this accelerator
    accelerators:
      fp16:
        file: targets/bitmod_fp16_baseline.yaml
        params: {generative: {pe_rows: 64, pe_cols: 12}}        # per task
        precision: {all: {default: {weight_bits: 16}}}          # per task, then per model
    metrics:
      - {metric: speedup_bitmod_vs_ant, kind: speedup, acc: bitmod, over: ant, task: all,
         paper: 1.69, source: "BitMoD abstract"}

Metrics follow the paper's method (BitMoD's plotting notebooks): per task, each accelerator's
speedup over the reference is averaged (arithmetic mean) over the models, and ``acc`` over ``over``
is the ratio of those means; ``task: all`` averages the per-task ratios.  ``energy_efficiency`` is
the same with energy.  ``decode_efficiency`` is the ratio of decode tokens per joule (modelled
draw), ``decode_efficiency_rated`` a paper's convention: decode tokens/s over a rated power
(``rated_w``, ``over_rated_w``, with ``rated_source``), acc's over ``over``'s.  An absolute metric
with ``spread_over: <accelerator>`` is divided by that accelerator's cores (a paper's projection of a
one-core time onto a many-core design; ``runs.csv`` has each run's ``cores``).  The run writes ``runs.csv`` (every run's latency and energy),
``paper_vs_sim.csv`` (metric, paper, simulated, rel_error, source) and ``report.html``.

Kernel-level metrics (``gemm_tokens`` and ``gemm_metrics``): the linear layers' GEMMs of each model's
prefill trace at each token count, priced on each accelerator at its precision (``gemms.csv``); a
metric is the ratio of two accelerators' summed times, reduced over models and token counts (the
maximum for a paper's "up to").
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.errors import SimError
from sim.config import load_yaml, located, merge, validated
from sim.studies.base import Options, Progress, Study, StudyResult, no_progress, paper_vs_sim


class Accel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)  # task (or "all") -> params
    precision: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)  # task -> model -> workload keys


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str
    kind: Literal["speedup", "energy_efficiency", "ms_per_token", "blocks_ms_per_token", "tokens_per_s",
                  "power_w", "tokens_per_s_per_w", "decode_power_w", "decode_tokens_per_s_per_w",
                  "decode_efficiency", "decode_efficiency_rated"]
    acc: str
    over: str | None = None  # the ratios' denominator (speedup, energy_efficiency)
    model: str | None = None  # absolute kinds: this model's run (default: the mean over the models)
    # absolute kinds: the figure divided by the cores of this accelerator (a paper's projection of a
    # one-core time onto a many-core design, "block time x layers / cores")
    spread_over: str | None = None
    task: str
    paper: float
    source: str
    # decode_efficiency_rated: a paper's convention, decode tokens/s over a rated power (not a draw),
    # acc's over `over`'s; the two ratings and where they come from
    rated_w: float | None = Field(None, gt=0)
    over_rated_w: float | None = Field(None, gt=0)
    rated_source: str | None = None

    @model_validator(mode="after")
    def _rated(self):
        rated = self.kind == "decode_efficiency_rated"
        given = (self.rated_w, self.over_rated_w, self.rated_source)
        if rated and (None in given or self.over is None):
            raise ValueError(f"{self.metric}: decode_efficiency_rated needs over, rated_w, over_rated_w and "
                             "rated_source (the ratings and their source)")
        if not rated and any(g is not None for g in given):
            raise ValueError(f"{self.metric}: rated_w, over_rated_w and rated_source belong to "
                             "decode_efficiency_rated")
        return self


_ABSOLUTE = {  # kind -> (runs.csv column, scale)
    "ms_per_token": ("decode_s_per_token", 1e3), "blocks_ms_per_token": ("blocks_s_per_token", 1e3),
    "tokens_per_s": ("decode_tokens_per_s", 1.0), "power_w": ("average_power_w", 1.0),
    "tokens_per_s_per_w": ("tokens_per_s_per_w", 1.0), "decode_power_w": ("decode_power_w", 1.0),
    "decode_tokens_per_s_per_w": ("decode_tokens_per_j", 1.0),
}


class GemmMetric(BaseModel):
    """A kernel-level metric: the linear layers' GEMMs of each model at each token count, priced on
    two accelerators at their precisions; the ratio of their summed times, reduced over models and
    token counts by ``stat`` (``max`` for a paper's "up to")."""

    model_config = ConfigDict(extra="forbid")
    metric: str
    acc: str
    over: str
    stat: Literal["max", "mean", "min"] = "max"
    paper: float
    source: str


class ReproduceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    study: Literal["reproduce"]
    name: str  # the system reproduced (results/<name> by default)
    out: str | None = None
    fidelity: Literal["simpy", "analytic"] = "simpy"
    workload: dict[str, Any] = Field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    reference: str
    accelerators: dict[str, Accel]
    metrics: list[Metric] = Field(default_factory=list)
    gemm_tokens: list[int] = Field(default_factory=list)  # token counts (M) of the kernel-level GEMM table
    gemm_metrics: list[GemmMetric] = Field(default_factory=list)
    notes: str = ""  # where and why the simulation and the paper differ (shown in the report)


def _pick(table: dict, task: str, model: str | None = None) -> dict:
    out: dict = {}
    for t in ("all", task):
        level = table.get(t, {})
        if model is None:
            out = merge(out, level)
        else:
            for m in ("default", model):
                out = merge(out, level.get(m, {}))
    return out


def load(path: Path) -> tuple[ReproduceFile, list[tuple[str, str, str, dict]]]:
    """The file and its runs: (task, model, accelerator, config mapping); all validated."""
    from sim.run import prepare

    data, lines = load_yaml(path)
    rf = validated(ReproduceFile, data, path, lines)
    if "all" in rf.tasks:
        raise SimError(f"{located(path, ('tasks', 'all'), lines)}: 'all' names every task; choose another task name")
    if len(set(rf.models)) != len(rf.models):
        raise SimError(f"{located(path, 'models', lines)}: a model is listed twice")
    for name, acc in rf.accelerators.items():
        for field in ("params", "precision"):
            for task, per in getattr(acc, field).items():
                if task != "all" and task not in rf.tasks:
                    raise SimError(f"{located(path, ('accelerators', name, field, task), lines)}: unknown task {task!r} "
                                   f"(tasks: {', '.join(rf.tasks)}, or all)")
                if field == "precision":
                    for model in per:
                        if model != "default" and model not in rf.models:
                            raise SimError(f"{located(path, ('accelerators', name, field, task, model), lines)}: unknown "
                                           f"model {model!r} (not in models; or default)")
    if rf.reference not in rf.accelerators:
        raise SimError(f"{located(path, 'reference', lines)}: {rf.reference!r} is not an accelerator")
    for key, ms in (("metrics", rf.metrics), ("gemm_metrics", rf.gemm_metrics)):
        for i, m in enumerate(ms):
            ratio = getattr(m, "kind", "") in ("speedup", "energy_efficiency", "decode_efficiency",
                                               "decode_efficiency_rated")
            if key == "metrics" and ratio and m.over is None:
                raise SimError(f"{located(path, (key, i), lines)}: a {m.kind} metric needs 'over'")
            if getattr(m, "model", None) and m.model not in rf.models:
                raise SimError(f"{located(path, (key, i), lines)}: unknown model {m.model!r}")
            if getattr(m, "spread_over", None) and m.kind not in _ABSOLUTE:
                raise SimError(f"{located(path, (key, i), lines)}: spread_over belongs to an absolute metric "
                               f"({', '.join(_ABSOLUTE)})")
            for who in (m.acc, m.over, getattr(m, "spread_over", None)):
                if who is not None and who not in rf.accelerators:
                    raise SimError(f"{located(path, (key, i), lines)}: unknown accelerator {who!r}")
    if rf.gemm_metrics and not rf.gemm_tokens:
        raise SimError(f"{located(path, 'gemm_metrics', lines)}: gemm_metrics need gemm_tokens (token counts)")
    if any(t <= 0 for t in rf.gemm_tokens):
        raise SimError(f"{located(path, 'gemm_tokens', lines)}: token counts must be positive")
    for i, m in enumerate(rf.metrics):
        if m.task != "all" and m.task not in rf.tasks:
            raise SimError(f"{located(path, ('metrics', i), lines)}: unknown task {m.task!r}")
    runs = []
    for task, tcfg in rf.tasks.items():
        for model in rf.models:
            for name, acc in rf.accelerators.items():
                cfg = {
                    "name": f"{rf.name}-{task}-{model}-{name}",
                    "workload": {**rf.workload, **tcfg, "model": model, **_pick(acc.precision, task, model)},
                    "hardware": {"file": acc.file, "params": _pick(acc.params, task)},
                    "run": {"fidelity": rf.fidelity},
                }
                try:
                    prepare(cfg, path)
                except SimError as e:
                    raise SimError(f"{e} (run {task} / {model} / {name})") from None
                runs.append((task, model, name, cfg))
    return rf, runs


def compute_metrics(rf: ReproduceFile, runs: pd.DataFrame) -> pd.DataFrame:
    """The paper's metrics from the runs (see the module docstring for the method)."""
    rows = []
    for m in rf.metrics:
        tasks = list(rf.tasks) if m.task == "all" else [m.task]
        if m.kind in _ABSOLUTE:
            col, scale = _ABSOLUTE[m.kind]
            sel = runs[runs.task.isin(tasks) & (runs.accelerator == m.acc)]
            if m.model:
                sel = sel[sel.model == m.model]
            value, source = float(sel[col].mean()) * scale, m.source
            if m.spread_over:
                own = sel.cores.dropna().unique()
                if list(own) != [1]:
                    raise SimError(f"{m.metric}: spread_over projects a one-core time, but {m.acc!r} has "
                                   f"{list(own) or 'no'} cores")
                cores = runs.loc[runs.accelerator == m.spread_over, "cores"].dropna().unique()
                if len(cores) != 1:
                    raise SimError(f"{m.metric}: spread_over {m.spread_over!r} needs one core count "
                                   f"(its runs have {list(cores) or 'none'})")
                value, source = value / cores[0], f"{source} (spread over {int(cores[0])} cores of {m.spread_over})"
            rows.append({"metric": m.metric, "paper": m.paper, "simulated": value, "source": source})
            continue
        if m.kind in ("decode_efficiency", "decode_efficiency_rated"):
            # decode tokens per joule (modelled draw), or decode tokens/s over a rated power, acc over `over`
            rated = m.kind == "decode_efficiency_rated"
            ratios = []
            for t in tasks:
                r = runs[runs.task == t].pivot(index="model", columns="accelerator",
                                               values="decode_tokens_per_s" if rated else "decode_tokens_per_j")
                if m.model:
                    r = r.loc[[m.model]]
                scale = m.over_rated_w / m.rated_w if rated else 1.0
                ratios.append(float((r[m.acc] / r[m.over]).mean()) * scale)
            source = f"{m.source}; ratings: {m.rated_source}" if rated else m.source
            rows.append({"metric": m.metric, "paper": m.paper, "simulated": float(np.mean(ratios)), "source": source})
            continue
        col = "latency_s" if m.kind == "speedup" else "energy_j"
        ratios = []
        for t in tasks:
            r = runs[runs.task == t].pivot(index="model", columns="accelerator", values=col)
            if m.model:
                r = r.loc[[m.model]]
            gain = lambda a: float((r[rf.reference] / r[a]).mean())  # noqa: E731
            ratios.append(gain(m.acc) / gain(m.over))
        rows.append({"metric": m.metric, "paper": m.paper, "simulated": float(np.mean(ratios)), "source": m.source})
    return paper_vs_sim(rows)


def gemm_table(rf: ReproduceFile, path: Path) -> pd.DataFrame:
    """Kernel level: every model's linear-layer GEMMs (the prefill trace at each of ``gemm_tokens``
    tokens, attention and the LM head left out) on every accelerator at its precision; one row per
    model, token count and accelerator with the summed time."""
    from sim.engine import analytic
    from sim.run import prepare
    from workloads import api

    task = next(iter(rf.tasks))
    rows = []
    for model in rf.models:
        for name, acc in rf.accelerators.items():
            cfg = {"workload": {**rf.workload, **rf.tasks[task], "model": model, **_pick(acc.precision, task, model)},
                   "hardware": {"file": acc.file, "params": _pick(acc.params, "all")}}
            prep = prepare(cfg, path)
            w, target = prep.config.workload, prep.target
            for tokens in rf.gemm_tokens:
                df = api.trace(model, "prefill", 1, tokens, 0, rf.workload.get("dtype", "fp16"))
                g = df[(df.kind == "gemm") & (df.role != "lm_head")]
                c = target.cost(g, w.precision)
                rows.append({"model": model, "tokens": tokens, "accelerator": name, "gemms": len(g),
                             "weight_bits": w.wbits, "act_bits": w.abits,
                             "time_s": analytic(c).makespan / target.freq_hz})
    return pd.DataFrame(rows)


def compute_gemm_metrics(rf: ReproduceFile, table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for m in rf.gemm_metrics:
        t = table.pivot_table(index=["model", "tokens"], columns="accelerator", values="time_s")
        ratio = t[m.over] / t[m.acc]
        sim = float(getattr(ratio, m.stat)())
        at = ratio.idxmax() if m.stat == "max" else (ratio.idxmin() if m.stat == "min" else None)
        where = f" (at {at[0]}, {at[1]} tokens)" if at is not None else ""
        rows.append({"metric": m.metric, "paper": m.paper, "simulated": sim, "source": m.source + where})
    return paper_vs_sim(rows)


def run(path: str | Path, fidelity: str | None = None,
        progress=None) -> tuple[pd.DataFrame, pd.DataFrame, ReproduceFile]:
    from sim.run import execute, prepare

    path = Path(path)
    rf, runs = load(path)
    if fidelity:
        rf = rf.model_copy(update={"fidelity": fidelity})
    rows = []
    for k, (task, model, name, cfg) in enumerate(runs):
        if progress:
            progress(f"{task} {model} {name}", k, len(runs))
        cfg["run"]["fidelity"] = rf.fidelity
        prep = prepare(cfg, path)
        res = execute(prep)
        cores = getattr(prep.target.params, "cores", None)
        s = res.summary
        dec = s.get("decode", {})
        steps = max(1, int(cfg["workload"].get("decode_tokens", 0)))
        blocks = res.ops[(res.ops.phase == "decode") & (res.ops.layer >= 0)].time_s.sum() / steps
        rows.append({"task": task, "model": model, "accelerator": name,
                     "cores": cores if isinstance(cores, int) else np.nan, "latency_s": s["latency_s"],
                     "energy_j": s["energy_j"], "prefill_latency_s": s["prefill"]["latency_s"],
                     "decode_latency_s": dec.get("latency_s", 0.0),
                     "decode_s_per_token": dec.get("time_per_token_s", 0.0),
                     "decode_tokens_per_s": dec.get("tokens_per_s", 0.0),
                     "blocks_s_per_token": float(blocks) if dec else 0.0,
                     "average_power_w": s["average_power_w"], "tokens_per_s_per_w": s["tokens_per_s_per_w"],
                     "decode_power_w": dec["energy_j"] / dec["latency_s"] if dec.get("latency_s") else 0.0,
                     "decode_tokens_per_j": dec.get("tokens_per_j", 0.0),
                     "energy_by_component": ";".join(f"{k}={v:.4g}" for k, v in s["energy_by_component_j"].items()),
                     "mac_utilization": s["utilization"]["mac"],
                     "dram_energy_j": s["energy_by_component_j"].get("dram", 0.0)})
    if progress:
        progress("done", len(runs), len(runs))
    df = pd.DataFrame(rows)
    metrics = compute_metrics(rf, df)
    if rf.gemm_tokens:
        table = gemm_table(rf, path)
        metrics = pd.concat([metrics, compute_gemm_metrics(rf, table)], ignore_index=True)
        df.attrs["gemm_table"] = table
    return df, metrics, rf


def write(out: str | Path, runs: pd.DataFrame, metrics: pd.DataFrame, rf: ReproduceFile) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.report import _png, html_page

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    metrics.to_csv(out / "paper_vs_sim.csv", index=False)
    gemms = runs.attrs.get("gemm_table")
    if gemms is not None:
        gemms.to_csv(out / "gemms.csv", index=False)
    parts = [f"<h1>Reproduction: {html.escape(rf.name)}</h1>", "<h2>Paper vs simulation</h2>",
             metrics.to_html(index=False, float_format=lambda v: f"{v:.4g}")]
    if rf.notes.strip():
        parts.append("<h2>Where and why they differ</h2>" + "".join(
            f"<p>{html.escape(p.strip())}</p>" for p in rf.notes.strip().split("\n\n")))
    for col, label in (("latency_s", "speedup over " + rf.reference), ("energy_j", "energy efficiency over " + rf.reference)):
        fig, axes = plt.subplots(1, len(rf.tasks), figsize=(6 * len(rf.tasks), 3.6), squeeze=False)
        for ax, task in zip(axes[0], rf.tasks):
            r = runs[runs.task == task].pivot(index="model", columns="accelerator", values=col).loc[rf.models]
            gain = r[[rf.reference]].to_numpy() / r
            x = np.arange(len(rf.models))
            w = 0.8 / len(gain.columns)
            for i, a in enumerate(rf.accelerators):
                ax.bar(x + i * w, gain[a].to_numpy(), w, label=a)
            ax.set_xticks(x + 0.4 - w / 2)
            ax.set_xticklabels(rf.models, rotation=30, fontsize=8)
            ax.set_title(task)
            ax.set_ylabel(label)
        axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the bars
        fig.tight_layout()
        parts.append(f"<h2>{html.escape(label)}</h2><img src='data:image/png;base64,{_png(fig)}'>")
    if "energy_by_component" in runs.columns and len(runs):
        # energy per generated token (whole request over its decoded tokens), split by component
        comp = pd.DataFrame([dict(kv.split("=") for kv in str(e).split(";") if "=" in kv)
                             for e in runs["energy_by_component"]]).astype(float).fillna(0.0)
        tokens = np.maximum(runs["decode_tokens_per_s"].to_numpy() * runs["decode_latency_s"].to_numpy(), 1.0)
        per_tok = comp.div(tokens, axis=0)
        labels = [f"{t} / {m} / {a}" for t, m, a in zip(runs.task, runs.model, runs.accelerator)]
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.5))
        left = np.zeros(len(labels))
        for c in per_tok.columns:
            ax.barh(labels, per_tok[c].to_numpy(), left=left, label=c)
            left += per_tok[c].to_numpy()
        ax.set_xlabel("energy per generated token (J; prompt tokens when nothing is generated)")
        ax.legend(fontsize=7, ncol=4)
        ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        parts.append(f"<h2>Energy by component</h2><img src='data:image/png;base64,{_png(fig)}'>")
    if gemms is not None:
        t = gemms.pivot_table(index=["model", "tokens"], columns="accelerator", values="time_s")
        speed = (t[[rf.reference]].to_numpy() / t).reset_index()
        parts.append(f"<h2>Linear-layer GEMMs: speedup over {html.escape(rf.reference)}</h2>"
                     + speed.to_html(index=False, float_format=lambda v: f"{v:.3g}"))
    parts.append("<h2>Runs</h2>" + runs.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    page = html_page("reproduction", parts)
    (out / "report.html").write_text(page)
    return out


class Reproduce(Study):
    """The matrix reproduction of a paper (models x accelerators x tasks)."""

    kind = "reproduce"
    schema = ReproduceFile

    def run(self, path: Path, options: Options, progress: Progress = no_progress) -> StudyResult:
        runs, metrics, rf = run(path, fidelity=options.fidelity, progress=progress)
        out = Path(options.out or rf.out or Path("results") / rf.name)
        return StudyResult(tables={"runs": runs}, paper_vs_sim=metrics, out=out,
                           title=f"{rf.name}: paper vs simulation ({len(runs)} runs, {rf.fidelity})",
                           data=(runs, metrics, rf))

    def write(self, out: Path, result: StudyResult) -> list[str]:
        runs, metrics, rf = result.data
        write(out, runs, metrics, rf)
        return ["paper_vs_sim.csv", "runs.csv", *(["gemms.csv"] if "gemm_table" in runs.attrs else []), "report.html"]
