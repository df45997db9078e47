"""`sim report RESULTS`: the report of a sweep (also written at the end of every sweep).

Writes to the sweep's folder: ``points.csv`` and ``points.parquet`` (one row per point: its swept
parameters as ``param:<key>`` columns, status and error, metrics) and ``report.html`` with PNG
plots: latency against energy with the Pareto front marked, the sensitivity of each metric to each
swept parameter, and a table of the best designs per objective.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from sim.report import _png, html_page
from sim.sweep import load_results

OBJECTIVES = [  # (metric, better, label)
    ("latency_s", "min", "lowest latency"),
    ("energy_j", "min", "lowest energy"),
    ("tokens_per_j", "max", "most tokens per joule (tokens/s per W)"),
    ("tokens_per_s", "max", "most tokens per second"),
]
SENSITIVITY = ["latency_s", "energy_j", "tokens_per_j"]


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats in both x and y (both minimized)."""
    order = np.lexsort((y, x))
    mask = np.zeros(len(x), dtype=bool)
    best = np.inf
    for i in order:
        if y[i] < best:
            mask[i] = True
            best = y[i]
    return mask


def _value_str(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_sweep_report(out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    df = load_results(out)
    df.to_csv(out / "points.csv", index=False)
    df.to_parquet(out / "points.parquet", index=False)
    ok = df[df.status == "ok"].copy()
    params = [c for c in df.columns if c.startswith("param:")]
    name = out.name
    parts = [f"<h1>Sweep {html.escape(name)}</h1>",
             f"<p>{len(df)} points: {int((df.status == 'ok').sum())} ok, {int((df.status != 'ok').sum())} failed.</p>"]

    if len(ok):
        x, y = ok.latency_s.to_numpy(float), ok.energy_j.to_numpy(float)
        front = pareto_front(x, y)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter(x[~front], y[~front], s=14, alpha=0.5, label="design points")
        o = np.argsort(x[front])
        ax.plot(x[front][o], y[front][o], "r.-", ms=9, label=f"Pareto front ({int(front.sum())})")
        ax.set_xlabel("latency (s)")
        ax.set_ylabel("energy (J)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend()
        parts.append("<h2>Latency vs energy</h2>")
        parts.append(f'<img alt="pareto" src="data:image/png;base64,{_png(fig)}">')

        cols = ["idx"] + params + ["latency_s", "energy_j", "tokens_per_j"]
        front_tab = ok.loc[front, cols].sort_values("latency_s")
        parts.append("<h3>Pareto-optimal designs</h3>" + front_tab.to_html(index=False, float_format=_value_str))

        # sensitivity: median of each metric over the points sharing a parameter value
        if params:
            fig, axes = plt.subplots(len(SENSITIVITY), len(params), figsize=(3.2 * len(params), 2.6 * len(SENSITIVITY)),
                                     squeeze=False)
            for r, metric in enumerate(SENSITIVITY):
                for c, prm in enumerate(params):
                    ax = axes[r][c]
                    g = ok.groupby(ok[prm].map(_value_str), sort=False)[metric].median()
                    try:
                        g = g.iloc[np.argsort([float(v) for v in g.index])]
                    except ValueError:
                        pass
                    ax.plot(range(len(g)), g.to_numpy(), "o-")
                    ax.set_xticks(range(len(g)))
                    ax.set_xticklabels(g.index, rotation=45, fontsize=7)
                    if r == len(SENSITIVITY) - 1:
                        ax.set_xlabel(prm[len("param:"):], fontsize=8)
                    if c == 0:
                        ax.set_ylabel(metric, fontsize=8)
            fig.tight_layout()
            parts.append("<h2>Sensitivity (median over the other parameters)</h2>")
            parts.append(f'<img alt="sensitivity" src="data:image/png;base64,{_png(fig)}">')

        rows = []
        for metric, better, label in OBJECTIVES:
            i = ok[metric].idxmin() if better == "min" else ok[metric].idxmax()
            r = ok.loc[i]
            rows.append({"objective": label, metric: r[metric], "idx": r["idx"],
                         **{p[len("param:"):]: r[p] for p in params}})
        parts.append("<h2>Best design per objective</h2>" + pd.DataFrame(rows).to_html(index=False,
                                                                                          float_format=_value_str))
    failed = df[df.status != "ok"]
    if len(failed):
        parts.append("<h2>Failed points</h2>" + failed[["idx"] + params + ["error"]].to_html(index=False))
    parts.append("<p>Data: points.csv, points.parquet, sweep.sqlite.</p>")
    page = html_page("sweep report", parts, max_width=1100)
    (out / "report.html").write_text(page)
    return out / "report.html"
