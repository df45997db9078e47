"""EasySpec reproduction (``sim run configs/easyspec/reproduce.yaml``): vanilla TP decoding, standard
speculative decoding and EasySpec's layer-parallel drafting on N GPUs (``sim/multigpu.py``), for
base/draft pairs, fed with acceptance rates and the paper's figures; a sweep over GPUs, gamma,
group size and acceptance with a speedup heatmap; Chrome traces of one iteration of each decoder.

The file::

    study: easyspec
    out: results/easyspec
    gpu: ../targets/gpu_h100_sxm_cudagraph.yaml   # the GPU target file (a CUDA-graph runtime)
    eager_gpu: ../targets/gpu_h100_sxm_eager.yaml  # optional: the same runs in an eager runtime (metrics *_eager)
    gpu_params: {}                                 # overrides of its parameters (optional)
    link: {bytes_per_s: 4.5e+11, latency_s: 2.0e-5, source: ...}   # latency_s: each collective's floor
    gpus: 8
    context: 512
    gamma: 4
    group: 4
    draft_tp: best                                 # or a GPU count: the draft's tensor-parallel degree
    pairs: [{base: Llama-3-70B, draft: Llama-3-8B}, ...]
    acceptance: {exact: 0.88, layer_parallel_drop: 0.07, source: ...}   # or layer_parallel:, or measured: a.csv
    acceptance_also: {tiny_pair: {measured: a.csv, source: ...}}  # more sets: metrics <metric>_tiny_pair
    calibration: on_mismatch                       # or every_iteration (the draft's KV calibration)
    paper: [{metric: ..., paper: 4.17, source: ...}, ...]
    sweep: {gpus: [2, 4, 8], gamma: [...], group: [...], alpha: [...]}
    frontier: {alpha: [...], cost_ratio: [...], gamma_max: 8}   # what a speedup requires (frontier.csv)
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.errors import SimError
from sim.config import load_yaml, located, resolve_path, validated
from sim.studies.base import Options, Progress, Study, StudyResult, no_progress, paper_vs_sim


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LinkSpec(_Strict):
    bytes_per_s: float = Field(gt=0)
    latency_s: float = Field(ge=0, description="each collective's fixed cost (its latency floor)")
    source: str


class Pair(_Strict):
    base: str
    draft: str


class Acceptance(_Strict):
    exact: float | None = Field(None, gt=0, lt=1)
    layer_parallel: float | None = Field(None, gt=0, lt=1)
    # or the layer-parallel drafts' acceptance as a drop from the exact one's: alpha x (1 - drop)
    layer_parallel_drop: float | None = Field(None, ge=0, lt=1)
    measured: str | None = None  # a CSV from `python -m models.easyspec measure`
    source: str


class PaperFigure(_Strict):
    metric: str
    paper: float
    source: str


class SweepSpec(_Strict):
    gpus: list[int] = Field(min_length=1)
    gamma: list[int] = Field(min_length=1)
    group: list[int] = Field(min_length=1)
    alpha: list[float] = Field(min_length=1)


class FrontierSpec(_Strict):
    """What standard speculative decoding gives at an acceptance and a draft/base cost ratio
    (Leviathan et al.'s expectation, the best gamma up to ``gamma_max``): where a paper's speedup lies."""
    alpha: list[float] = Field(min_length=1)
    cost_ratio: list[float] = Field(min_length=1)
    gamma_max: int = Field(8, gt=0)


class EasySpecFile(_Strict):
    study: Literal["easyspec"]
    out: str | None = None
    gpu: str
    gpu_params: dict[str, Any] = Field(default_factory=dict)
    link: LinkSpec
    gpus: int = Field(gt=0)
    context: int = Field(gt=0)
    gamma: int = Field(gt=0)
    group: int = Field(gt=0)
    # the draft's tensor-parallel degree: a number of GPUs, or "best": each speculative decoder takes
    # the fastest of the GPU counts that divide `gpus` (its own best baseline)
    draft_tp: int | Literal["best"] | None = "best"
    frontier: FrontierSpec | None = None
    exact_ends: bool = True  # the draft's first and last layers outside any group (the authors' default)
    # where a layer-parallel step runs its groups' MLPs: whole on each GPU that ran the group's attentions
    # (unsharded, the authors' code as issue 21 reads it) or on the draft's tensor-parallel group
    group_mlps: Literal["unsharded", "draft_tp"] = "unsharded"
    # a second runtime for the same runs, the authors' (eager PyTorch: a GPU file with a host); its
    # figures are the paper metrics named <metric>_eager
    eager_gpu: str | None = None
    pairs: list[Pair] = Field(min_length=1)
    acceptance: Acceptance
    # further acceptances, each giving the acceptance-dependent metrics again, named <metric>_<key>
    acceptance_also: dict[str, Acceptance] = Field(default_factory=dict)
    # when the draft's layer-parallel KV entries are recomputed: after every iteration (the paper's
    # abstract) or only after one that rejected a draft (the authors' code's default)
    calibration: Literal["every_iteration", "on_mismatch"] = "on_mismatch"
    paper: list[PaperFigure] = Field(default_factory=list)
    sweep: SweepSpec | None = None
    notes: str = ""


def _acceptance(a: Acceptance, base: Path, gamma: int, group: int, calibration: str = "every_iteration") -> dict:
    """Acceptance of exact and layer-parallel drafting: per-token alpha and, when measured, tokens per
    iteration and the share of iterations that accepted every draft (``python -m models.easyspec
    measure``: columns mode, group_size, refill, gamma, alpha, mean_tokens_per_iter,
    expected_tokens_per_iter, all_accepted; the layer-parallel rows of the file's calibration policy)."""
    if a.measured:
        if any(v is not None for v in (a.exact, a.layer_parallel, a.layer_parallel_drop)):
            raise SimError("give measured, or exact with layer_parallel or layer_parallel_drop, not both")
        p = resolve_path(a.measured, base)
        if not p.exists():
            raise SimError(f"measured: no such file {a.measured!r}")
        m = pd.read_csv(p)
        ex = m[(m["mode"] == "exact") & (m.gamma == gamma)]
        lp = m[(m["mode"] != "exact") & (m.gamma == gamma)]
        if "refill" in lp:
            lp = lp[lp.refill == calibration]
        exact_g = lp[lp.group_size == group]
        lp = exact_g if len(exact_g) else lp[lp.group_size == lp.group_size.max()]
        if ex.empty or lp.empty:
            raise SimError(f"{p}: no exact and layer-parallel rows for gamma {gamma} (calibration {calibration})")
        return {"alpha_exact": float(ex.alpha.iloc[0]), "alpha_parallel": float(lp.alpha.iloc[0]),
                "tokens_exact": float(ex.mean_tokens_per_iter.iloc[0]),
                "tokens_parallel": float(lp.mean_tokens_per_iter.iloc[0]),
                "leviathan_exact": float(ex.expected_tokens_per_iter.iloc[0]),
                "leviathan_parallel": float(lp.expected_tokens_per_iter.iloc[0]),
                "all_accepted": float(lp.all_accepted.iloc[0]) if "all_accepted" in lp else None,
                "group_measured": int(lp.group_size.iloc[0]), "source": f"{a.source} ({p.name})"}
    if a.exact is None or (a.layer_parallel is None) == (a.layer_parallel_drop is None):
        raise SimError("give exact and one of layer_parallel or layer_parallel_drop, or measured")
    from sim.multigpu import expected_tokens

    lp = a.layer_parallel if a.layer_parallel is not None else a.exact * (1 - a.layer_parallel_drop)
    return {"alpha_exact": a.exact, "alpha_parallel": lp,
            "tokens_exact": expected_tokens(a.exact, gamma),
            "tokens_parallel": expected_tokens(lp, gamma),
            "leviathan_exact": expected_tokens(a.exact, gamma),
            "leviathan_parallel": expected_tokens(lp, gamma), "all_accepted": None, "group_measured": group,
            "source": a.source}


def run(path: str | Path, out: str | Path | None = None,
        progress=None) -> tuple[pd.DataFrame, pd.DataFrame, EasySpecFile, pd.DataFrame]:
    """All runs, the paper comparison, the file, and the sweep's points; the Chrome traces go to
    ``out`` (default the file's ``out``)."""
    from sim.config import Hardware
    from sim.multigpu import run_decoder
    from sim.targets.parts import Link
    from sim.targets import build

    path = Path(path)
    data, lines = load_yaml(path)
    f = validated(EasySpecFile, data, path, lines)
    gpu, _, _ = build(Hardware(file=f.gpu, params=f.gpu_params), path)
    link = Link(f.link.bytes_per_s, f.link.latency_s, source=f.link.source)
    sets = {"": f.acceptance, **{f"_{k}": a for k, a in f.acceptance_also.items()}}
    accs = {}
    for k, a in sets.items():
        key = "acceptance" if not k else ("acceptance_also", k[1:])
        try:
            accs[k] = _acceptance(a, path.parent, f.gamma, f.group, f.calibration)
        except SimError as e:  # named by the file, the key and its line
            raise SimError(f"{located(path, key, lines)}: {e}") from None
    out = Path(out or f.out or "results/easyspec")
    step = progress or no_progress
    rows = []
    tps = ([d for d in range(1, f.gpus + 1) if f.gpus % d == 0] if f.draft_tp == "best"
           else [f.draft_tp or f.gpus])

    def best(kind, trace_to, **kw):
        """The decoder at the draft TP degree that makes it fastest (traced at that degree)."""
        runs_ = [run_decoder(kind, draft_tp=d, **kw) for d in tps]
        r = min(runs_, key=lambda x: x["time_per_token_s"])
        d = tps[runs_.index(r)]
        return {**run_decoder(kind, draft_tp=d, trace_to=trace_to, **kw), "draft_tp": d}

    runtimes = [("", gpu)]
    if f.eager_gpu:
        eager, _, _ = build(Hardware(file=f.eager_gpu, params=f.gpu_params), path)
        if not eager.host.modelled:
            raise SimError(f"eager_gpu: {f.eager_gpu} has no host (params.host): it is not an eager runtime")
        runtimes.append(("eager", eager))
    n_runs = len(runtimes) * len(f.pairs) * (1 + 2 * len(sets))
    k = 0
    for (rt, g_), pair in itertools.product(runtimes, f.pairs):
        kw = dict(base=pair.base, gpu=g_, link=link, n=f.gpus, context=f.context, gamma=f.gamma)
        slug = f"{pair.base}-{pair.draft}".replace(".", "_") + (f"_{rt}" if rt else "")
        step(f"{pair.base} vanilla {rt}", k, n_runs)
        v = {**run_decoder("vanilla", draft=None, trace_to=out / f"trace_{slug}_vanilla.json", **kw), "draft_tp": 0}
        rows.append({"runtime": rt or "file", "acceptance_set": "", "base": pair.base, "draft": pair.draft, **v,
                     "alpha": None, "speedup_vs_vanilla": 1.0})
        k += 1
        for sfx, acc in accs.items():
            tr = slug + sfx
            step(f"{pair.base} speculative {rt}{sfx}", k, n_runs)
            s = best("speculative", out / f"trace_{tr}_spec.json", draft=pair.draft,
                     tokens_per_iter=acc["tokens_exact"], **kw)
            step(f"{pair.base} easyspec {rt}{sfx}", k + 1, n_runs)
            e = best("easyspec", out / f"trace_{tr}_easyspec.json", draft=pair.draft,
                     tokens_per_iter=acc["tokens_parallel"], alpha=acc["alpha_parallel"],
                     all_accepted=acc["all_accepted"], calibration=f.calibration, group=f.group,
                     exact_ends=f.exact_ends, group_mlps=f.group_mlps, **kw)
            k += 2
            for r, alpha in ((s, acc["alpha_exact"]), (e, acc["alpha_parallel"])):
                rows.append({"runtime": rt or "file", "acceptance_set": sfx[1:] or "primary", "base": pair.base,
                             "draft": pair.draft, **r, "alpha": alpha,
                             "speedup_vs_vanilla": v["time_per_token_s"] / r["time_per_token_s"]})
    step("done", n_runs, n_runs)
    runs = pd.DataFrame(rows)
    sim_fig = {}
    for sfx, acc in accs.items():
        sim_fig[f"acceptance_drop{sfx}"] = 1 - acc["alpha_parallel"] / acc["alpha_exact"]
        for rt, _ in runtimes:
            r = runs[(runs.runtime == (rt or "file")) & runs.acceptance_set.isin([sfx[1:] or "primary", ""])]
            name = f"{'_' + rt if rt else ''}{sfx}"
            sim_fig[f"peak_speedup_vs_vanilla{name}"] = float(r[r.decoder == "easyspec"].speedup_vs_vanilla.max())
            sim_fig[f"drafting_speedup{name}"] = float(np.max([
                r[(r.base == p.base) & (r.decoder == "speculative")].drafting_s.item()
                / r[(r.base == p.base) & (r.decoder == "easyspec")].drafting_s.item() for p in f.pairs]))
    unknown = [m.metric for m in f.paper if m.metric not in sim_fig]
    if unknown:
        raise SimError(f"paper: no simulated figure named {', '.join(unknown)} (the names: {', '.join(sim_fig)})")
    metrics = paper_vs_sim({"metric": m.metric, "paper": m.paper, "simulated": sim_fig.get(m.metric, np.nan),
                            "source": m.source} for m in f.paper)
    metrics.attrs["acceptance"] = accs
    if f.frontier:
        metrics.attrs["frontier"] = frontier(f.frontier)
    sweep = sweep_points(f, gpu, link) if f.sweep else pd.DataFrame()
    return runs, metrics, f, sweep


def frontier(fs: FrontierSpec) -> pd.DataFrame:
    """Standard speculative decoding's speedup over the base model alone at per-token acceptance
    ``alpha`` and a draft step costing ``cost_ratio`` of a base step, at the best gamma (Leviathan
    et al., ICML 2023, Theorem 3.8: E[tokens] / (gamma c + 1), verification at a base step's cost)."""
    from sim.multigpu import expected_tokens

    rows = []
    for a, c in itertools.product(fs.alpha, fs.cost_ratio):
        sp = {g: expected_tokens(a, g) / (g * c + 1) for g in range(1, fs.gamma_max + 1)}
        g = max(sp, key=sp.get)
        rows.append({"alpha": a, "cost_ratio": c, "best_gamma": g, "speedup": sp[g]})
    return pd.DataFrame(rows)


def sweep_points(f: EasySpecFile, gpu, link) -> pd.DataFrame:
    """EasySpec's speedup over vanilla across GPUs x gamma x group x acceptance, for the first pair."""
    from sim.multigpu import run_decoder

    pair = f.pairs[0]
    rows = []
    s = f.sweep
    for n, gamma, group, alpha in itertools.product(s.gpus, s.gamma, s.group, s.alpha):
        kw = dict(base=pair.base, gpu=gpu, link=link, n=n, context=f.context, gamma=gamma)
        v = run_decoder("vanilla", draft=None, **kw)
        e = run_decoder("easyspec", draft=pair.draft, alpha=alpha, group=group, exact_ends=f.exact_ends,
                        group_mlps=f.group_mlps, calibration=f.calibration, **kw)
        rows.append({"gpus": n, "gamma": gamma, "group": group, "alpha": alpha,
                     "speedup": v["time_per_token_s"] / e["time_per_token_s"]})
    return pd.DataFrame(rows)


def write(out: str | Path, runs: pd.DataFrame, metrics: pd.DataFrame, f: EasySpecFile, sweep: pd.DataFrame) -> Path:
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.report import _png, html_page

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    metrics.to_csv(out / "paper_vs_sim.csv", index=False)
    accs = metrics.attrs.get("acceptance", {})
    acc_rows = pd.DataFrame([
        {"acceptance_set": sfx[1:] or "primary", "drafting": d, "alpha": acc.get(f"alpha_{k}"),
         "tokens_per_iter_used": acc.get(f"tokens_{k}"), "leviathan_expected": acc.get(f"leviathan_{k}"),
         "source": acc.get("source")}
        for sfx, acc in accs.items()
        for d, k in (("exact", "exact"), (f"layer-parallel (group {acc.get('group_measured')})", "parallel"))])
    acc_rows.to_csv(out / "acceptance_used.csv", index=False)
    front = metrics.attrs.get("frontier")
    parts = ["<h1>Reproduction: EasySpec</h1>",
             f"<h2>Acceptance used</h2><p>Calibration of the draft's layer-parallel KV entries: "
             f"{html.escape(f.calibration.replace('_', ' '))}. Metrics named _&lt;set&gt; use that set; the "
             "others the primary one.</p>"
             + acc_rows.to_html(index=False, float_format=lambda v: f"{v:.3f}"),
             "<h2>Paper vs simulation</h2>", metrics.to_html(index=False, float_format=lambda v: f"{v:.4g}"),
             "<h2>Runs</h2>", runs.to_html(index=False, float_format=lambda v: f"{v:.4g}"),
             "<p>Chrome traces of one iteration of each decoder: trace_*.json (open in ui.perfetto.dev).</p>"]
    if front is not None and len(front):
        front.to_csv(out / "frontier.csv", index=False)
        piv = front.pivot(index="alpha", columns="cost_ratio", values="speedup")
        parts.append("<h2>What a speedup requires</h2><p>Standard speculative decoding's speedup over the base "
                     "model alone at the best gamma, by per-token acceptance (rows) and the draft step's cost "
                     "over a base step's (columns): Leviathan et al.'s expectation (frontier.csv).</p>"
                     + piv.to_html(float_format=lambda v: f"{v:.2f}"))
    if f.notes.strip():
        parts.append("<h2>Where and why they differ</h2>" + "".join(
            f"<p>{html.escape(p.strip())}</p>" for p in f.notes.strip().split("\n\n")))
    if len(sweep):
        sweep.to_csv(out / "sweep.csv", index=False)
        for n in sorted(sweep.gpus.unique()):
            sub = sweep[sweep.gpus == n]
            groups = sorted(sub.group.unique())
            fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.4), squeeze=False, sharey=True)
            for i, (ax, g) in enumerate(zip(axes[0], groups)):
                piv = sub[sub.group == g].pivot(index="alpha", columns="gamma", values="speedup")
                im = ax.imshow(piv.to_numpy(), origin="lower", aspect="auto", cmap="viridis")
                ax.set_xticks(range(len(piv.columns)), [str(c) for c in piv.columns])
                ax.set_yticks(range(len(piv.index)), [f"{a:.2f}" for a in piv.index])
                for (yy, xx), val in np.ndenumerate(piv.to_numpy()):
                    ax.text(xx, yy, f"{val:.2f}", ha="center", va="center", fontsize=7, color="w")
                ax.set_title(f"{n} GPUs, group {g}")
                ax.set_xlabel("gamma")
                if i == 0:  # the panels share the acceptance axis
                    ax.set_ylabel("acceptance")
            fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="speedup over vanilla")
            parts.append(f"<h2>Speedup heatmap, {n} GPUs</h2><img src='data:image/png;base64,{_png(fig)}'>")
    page = html_page("EasySpec", parts)
    (out / "report.html").write_text(page)
    return out


class EasySpec(Study):
    """Multi-GPU speculative decoding: vanilla, standard speculative and layer-parallel drafting."""

    kind = "easyspec"
    schema = EasySpecFile

    def run(self, path: Path, options: Options, progress: Progress = no_progress) -> StudyResult:
        runs, metrics, f, sweep = run(path, options.out, progress=progress)
        out = Path(options.out or f.out or "results/easyspec")
        return StudyResult(tables={"runs": runs, "sweep": sweep}, paper_vs_sim=metrics, out=out,
                           title=f"EasySpec: paper vs simulation ({f.gpus} GPUs, gamma {f.gamma}, group {f.group})",
                           data=(runs, metrics, f, sweep))

    def write(self, out: Path, result: StudyResult) -> list[str]:
        runs, metrics, f, sweep = result.data
        write(out, runs, metrics, f, sweep)
        return ["paper_vs_sim.csv", "runs.csv", "acceptance_used.csv", *(["sweep.csv"] if len(sweep) else []),
                *(["frontier.csv"] if f.frontier else []),
                "report.html", "trace_*.json"]
