"""`sim report RESULTS`: the report of a sweep (also written at the end of every sweep).

Writes to the sweep's folder: ``points.csv`` and ``points.parquet`` (one row per point: its swept
parameters as ``param:<key>`` columns, status and error, metrics) and ``report.html`` with PNG
plots: latency against energy with the Pareto front marked, the sensitivity of each metric to each
swept parameter, and a table of the best designs per objective.
"""

from __future__ import annotations

import html
import re
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


# --------------------------------------------------------------------------------------------
# Formatting: numbers, parameter names, compact tables
# --------------------------------------------------------------------------------------------

METRIC_COLUMNS = {  # metric -> (column heading, unit for engineering notation or None)
    "latency_s": ("latency", "s"),
    "energy_j": ("energy", "J"),
    "tokens_per_j": ("tokens/J", None),
    "tokens_per_s": ("tokens/s", None),
}
_PREFIXES = {-15: "f", -12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T"}


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA


def _eng(v: float, unit: str) -> str:
    """1.135e-4, "s" -> "113.5 µs"."""
    if v == 0 or not np.isfinite(v):
        return f"{v:g} {unit}"
    e = int(np.floor(np.log10(abs(v)) / 3) * 3)
    e = min(max(e, min(_PREFIXES)), max(_PREFIXES))
    m = v / 10.0 ** e
    if round(abs(m), 1) >= 1000 and e + 3 in _PREFIXES:  # 999.96 -> "1 k", not "1000"
        e, m = e + 3, m / 1000
    return f"{m:.4g} {_PREFIXES[e]}{unit}"


def _num(v) -> str:
    """A parameter or plain metric value: integers in full (with thousands separators from 10,000),
    other numbers to 4 significant digits, "8e+08" written "8e8"; a parameter a point does not set
    (mode: points) is "base" (the base config's value)."""
    if _missing(v):
        return "base"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and float(v).is_integer()
                                            and abs(v) < 1e6):
        return f"{int(v):,}" if abs(v) >= 10000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        if 1000 <= abs(v) < 1e7:
            return f"{float(v):,.0f}"
        return _sig(float(v), 4)
    return str(v)


def _sig(v: float, digits: int) -> str:
    t = f"{v:.{digits}g}"
    if "e" in t:
        m, x = t.split("e")
        t = f"{m}e{int(x)}"
    return t


def _metric_str(metric: str, v) -> str:
    if _missing(v):
        return "–"
    unit = METRIC_COLUMNS.get(metric, (metric, None))[1]
    return _eng(float(v), unit) if unit else _num(float(v))


def _short_names(params: list[str]) -> dict[str, str]:
    """``param:hardware.params.freq_hz`` -> ``freq_hz`` (the target's parameters are most axes);
    other keys stay whole, and so does every key when shortening would make two names the same."""
    keys = {p: p[len("param:"):] for p in params}
    short = {p: k[len("hardware.params."):] if k.startswith("hardware.params.") else k for p, k in keys.items()}
    return short if len(set(short.values())) == len(short) else keys


def _sweep_axes(out: Path) -> list[list[str]]:
    """The axes of the sweep in the order of its file, each as the ``param:`` keys it sets (several
    for a named axis, ``buffers: [{a: .., b: ..}, ...]``), read from the copy of the sweep file in the
    results folder; none when it is missing or unreadable (the report then goes by the data)."""
    import yaml

    try:
        axes = (yaml.safe_load((out / "sweep.yaml").read_text()) or {}).get("axes") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return []
    found = []
    for name, values in axes.items() if isinstance(axes, dict) else []:
        keys: list[str] = []
        for v in values if isinstance(values, list) else []:
            if isinstance(v, dict) and v and all("." in str(k) for k in v):
                keys += [f"param:{k}" for k in v if f"param:{k}" not in keys]
        found.append(keys or [f"param:{name}"])
    return found


def _param_groups(df: pd.DataFrame, params: list[str], named: list[list[str]] = ()) -> list[list[str]]:
    """Parameters that change together form one group, shown as one column and one row of plots:
    the keys of a named axis of the sweep file (``named``), and parameters that always go together
    in the data (every value of one with one value of the other); the others are groups of one."""
    groups: list[list[str]] = []
    placed: set[str] = set()
    vals = df[params].astype(str)
    for p in params:
        if p in placed:
            continue
        for keys in named:
            if p in keys:
                g = [k for k in keys if k in params and k not in placed]
                groups.append(g)
                placed.update(g)
                break
        else:
            for g in groups:
                q = g[0]
                pair = vals[[p, q]].drop_duplicates()
                if len(pair) == vals[p].nunique() == vals[q].nunique():
                    g.append(p)
                    break
            else:
                groups.append([p])
            placed.add(p)
    return groups


def _group_value(row, group: list[str], collapse: bool = True) -> str:
    """A group's values in one row, joined by " / "; one value where they are all equal and
    ``collapse`` (see :func:`_collapsible`)."""
    shown = [_num(row[p]) for p in group]
    return shown[0] if collapse and len(set(shown)) == 1 else " / ".join(shown)


def _collapsible(frame: pd.DataFrame, group: list[str]) -> bool:
    """Whether a group's values are equal in every row (then one stands for all); where some rows
    differ, every row shows them all, so "2" and "2 / base / base" cannot be confused."""
    return all(len({_num(r[p]) for p in group}) == 1 for _, r in frame[group].iterrows())


def _breakable(text: str) -> str:
    """Escaped, with break opportunities after dots and underscores (long headings wrap)."""
    out = html.escape(text)
    for ch in "._":
        out = out.replace(ch, ch + "<wbr>")
    return out


def _table(headers: list[tuple[str, str]], rows: list[list[tuple[str, str]]]) -> str:
    """A compact HTML table: headers as (text, title), cells as (text, css class)."""
    head = "".join(f'<th title="{html.escape(t)}">{_breakable(h)}</th>' for h, t in headers)
    body = "".join("<tr>" + "".join(f'<td class="{c}">{html.escape(v)}</td>' for v, c in r) + "</tr>"
                   for r in rows)
    return f'<div class="tablewrap"><table class="compact"><tr>{head}</tr>{body}</table></div>'


CSS = ("<style>.tablewrap{max-width:100%;overflow-x:auto;margin:0.5em 0 1em}"
       "table.compact th{vertical-align:bottom;max-width:9em;background:#f4f4f4}"
       "table.compact td{white-space:nowrap}"
       "table.compact td.num{text-align:right;font-variant-numeric:tabular-nums}"
       "table.compact td.label{white-space:normal;min-width:9em;max-width:16em}"
       "table.compact td.best{font-weight:bold;background:#e8f3e8}"
       "table.compact td.text{white-space:normal;max-width:40em}</style>")


def _param_headers(groups: list[list[str]], short: dict[str, str]) -> list[tuple[str, str]]:
    return [(" / ".join(short[p] for p in g), " / ".join(p[len("param:"):] for p in g)) for g in groups]


def best_design_table(ok: pd.DataFrame, params: list[str], groups: list[list[str]] | None = None) -> str:
    """One row per objective: the objective, its best value, that point's index and design
    parameters, and all the objectives' metrics at that point (the objective's own in bold)."""
    groups = groups if groups is not None else [[p] for p in params]
    short = _short_names(params)
    metrics = [m for m, _, _ in OBJECTIVES]
    headers = [("objective", ""), ("best", "the objective's best value"), ("point", "index of the point in the sweep")]
    headers += _param_headers(groups, short)
    headers += [(METRIC_COLUMNS[m][0], m) for m in metrics]
    rows = []
    for metric, better, label in OBJECTIVES:
        col = ok[metric].astype(float)
        if col.notna().sum() == 0:
            continue
        r = ok.loc[col.idxmin() if better == "min" else col.idxmax()]
        row = [(label, "label"), (_metric_str(metric, r[metric]) + ("" if METRIC_COLUMNS[metric][1]
                                                                   else " " + METRIC_COLUMNS[metric][0]), "num best"),
               (str(int(r["idx"])), "num")]
        row += [(_group_value(r, g, _collapsible(ok, g)), "num") for g in groups]
        row += [(_metric_str(m, r[m]), "num best" if m == metric else "num") for m in metrics]
        rows.append(row)
    return _table(headers, rows)


def _points_table(pts: pd.DataFrame, params: list[str], groups: list[list[str]], metrics: list[str]) -> str:
    short = _short_names(params)
    headers = [("point", "index of the point in the sweep")] + _param_headers(groups, short)
    headers += [(METRIC_COLUMNS[m][0], m) for m in metrics]
    rows = []
    collapse = [_collapsible(pts, g) for g in groups]
    for _, r in pts.iterrows():
        rows.append([(str(int(r["idx"])), "num")] + [(_group_value(r, g, c), "num") for g, c in zip(groups, collapse)]
                    + [(_metric_str(m, r[m]), "num") for m in metrics])
    return _table(headers, rows)


def _plain_formatter():
    """Tick labels of a quantity without a unit: as many significant digits as the tick spacing
    needs (ticks 1.8505, 1.851, 1.8515 are not all "1.85"), no offset or scale factor."""
    from matplotlib.ticker import Formatter

    class Plain(Formatter):
        ticks: list = []

        def set_locs(self, locs):
            self.ticks = list(locs)

        def __call__(self, x, pos=None):
            if x == 0:
                return "0"
            if float(x).is_integer() and abs(x) < 1e7:
                return _num(float(x))
            locs = sorted(v for v in self.ticks if np.isfinite(v))
            steps = [b - a for a, b in zip(locs, locs[1:]) if b > a]
            digits = 3
            if steps:
                digits = int(np.floor(np.log10(abs(x)))) - int(np.floor(np.log10(min(steps)))) + 1
            return _sig(float(x), min(max(digits, 1), 8))

    return Plain()


def _axis(ax, which: str, values, unit: str | None) -> None:
    """Log scale where the values span more than two decades (then at least two decades are
    labelled), linear otherwise; ticks in engineering notation ("300 ms", "48 J")."""
    from matplotlib.ticker import EngFormatter, NullFormatter

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    axis = ax.xaxis if which == "x" else ax.yaxis
    if len(v) and (v > 0).all() and v.max() / v.min() > 100:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(EngFormatter(unit=unit, places=None) if unit else _plain_formatter())


def _wrap(text: str, width: int) -> list[str]:
    """``text`` over lines of at most ``width`` characters, broken after hyphens, underscores, slashes
    and spaces only (a piece longer than ``width`` stays whole)."""
    lines = [""]
    for piece in re.findall(r"[^-_/ ]+[-_/ ]*|[-_/ ]+", text):
        if lines[-1] and len(lines[-1]) + len(piece.rstrip()) > width:
            lines.append("")
        lines[-1] += piece
    return [ln.rstrip() for ln in lines]


def _tick_labels(labels: list[str], budget: int = 30) -> tuple[list[str], int]:
    """Category labels that fit under a panel about ``budget`` characters wide: as they are when they
    fit, else wrapped over up to three lines, else turned upright."""
    if sum(len(t) + 2 for t in labels) <= budget:
        return labels, 0
    width = budget // max(1, len(labels)) - 2
    if width >= 5:
        wrapped = [_wrap(t, width) for t in labels]
        if all(len(w) <= 3 and max(map(len, w)) <= width for w in wrapped):
            return ["\n".join(w) for w in wrapped], 0
    return labels, 90


def _sensitivity_figure(ok: pd.DataFrame, groups: list[list[str]], short: dict[str, str]):
    """One row per parameter (group), one column per metric: the median of the metric over the
    points sharing each value of the parameter.  Three panels a row keep the labels readable at page
    width; a numeric parameter with many distinct values (a random sweep) is a scatter instead."""
    import matplotlib.pyplot as plt

    ncols = len(SENSITIVITY)
    fig, axes = plt.subplots(len(groups), ncols, figsize=(10, 2.9 * len(groups) + 0.4), squeeze=False)
    for r, g in enumerate(groups):
        prm = g[0]
        xlabel = " / ".join(short[p] for p in g)
        numeric = pd.api.types.is_numeric_dtype(ok[prm]) and not pd.api.types.is_bool_dtype(ok[prm])
        many = numeric and ok[prm].nunique() > 12
        for c, metric in enumerate(SENSITIVITY):
            ax = axes[r][c]
            y_all = ok[metric].astype(float)
            if many:
                x = ok[prm].astype(float)
                ax.scatter(x, y_all, s=10, alpha=0.5)
                _axis(ax, "x", x, None)
                ys = y_all
            else:
                keys = ok[g].apply(lambda row, c=_collapsible(ok, g): _group_value(row, g, c), axis=1)
                med = ok.groupby(keys, sort=False)[metric].median()
                try:  # in the order of the values (of each key of a group in turn)
                    first = ok.groupby(keys, sort=False)[g].first()
                    order = sorted(med.index, key=lambda k: tuple(
                        (0, 0.0) if _missing(first.loc[k, p]) else (1, float(first.loc[k, p])) for p in g))
                    med = med.loc[order]
                except (TypeError, ValueError):
                    pass  # not numbers: in the order of the sweep
                ax.plot(range(len(med)), med.to_numpy(float), "o-", ms=5)
                ax.set_xticks(range(len(med)))
                labels, rotation = _tick_labels(list(med.index))
                ax.set_xticklabels(labels, rotation=rotation)
                ax.set_xlim(-0.5, len(med) - 0.5)
                ys = med
            _axis(ax, "y", ys, METRIC_COLUMNS[metric][1])
            ax.tick_params(labelsize=9)
            ax.grid(True, alpha=0.3)
            ax.set_xlabel(xlabel, fontsize=10)
            if r == 0:
                ax.set_title(f"{METRIC_COLUMNS[metric][0]} ({metric})", fontsize=11)
    fig.tight_layout(h_pad=1.2, w_pad=1.5)
    return fig


def write_sweep_report(out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    df = load_results(out)
    df.to_csv(out / "points.csv", index=False)
    df.to_parquet(out / "points.parquet", index=False)
    ok = df[df.status == "ok"].copy()
    axes = _sweep_axes(out)
    params = [c for c in df.columns if c.startswith("param:")]
    in_file = [k for keys in axes for k in keys if k in params]
    params = list(dict.fromkeys(in_file + params))  # in the order of the sweep file
    short = _short_names(params)
    groups = _param_groups(df, params, [keys for keys in axes if len(keys) > 1]) if params else []
    name = out.name
    parts = [CSS, f"<h1>Sweep {html.escape(name)}</h1>",
             f"<p>{len(df)} points: {int((df.status == 'ok').sum())} ok, "
             f"{int((df.status == 'infeasible').sum())} infeasible (the workload does not fit: the reason is "
             f"listed), {int((df.status == 'error').sum())} failed.</p>"]

    if len(ok):
        x, y = ok.latency_s.to_numpy(float), ok.energy_j.to_numpy(float)
        front = pareto_front(x, y)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter(x[~front], y[~front], s=14, alpha=0.5, label="design points")
        o = np.argsort(x[front])
        ax.plot(x[front][o], y[front][o], "r.-", ms=9, label=f"Pareto front ({int(front.sum())})")
        ax.set_xlabel("latency")
        ax.set_ylabel("energy")
        _axis(ax, "x", x, "s")
        _axis(ax, "y", y, "J")
        ax.grid(True, alpha=0.3)
        ax.legend()
        parts.append("<h2>Latency vs energy</h2>")
        parts.append(f'<img alt="pareto" src="data:image/png;base64,{_png(fig)}">')

        front_tab = ok.loc[front].sort_values("latency_s")
        parts.append("<h3>Pareto-optimal designs</h3>"
                     + _points_table(front_tab, params, groups, ["latency_s", "energy_j", "tokens_per_j"]))

        if params:
            fig = _sensitivity_figure(ok, groups, short)
            parts.append("<h2>Sensitivity (median over the other parameters)</h2>")
            parts.append(f'<img alt="sensitivity" src="data:image/png;base64,{_png(fig)}">')

        parts.append("<h2>Best design per objective</h2>" + best_design_table(ok, params, groups))
    for status, title, col in (("infeasible", "Infeasible points (the workload does not fit)", "reason"),
                               ("error", "Failed points", "error")):
        failed = df[df.status == status]
        if len(failed):
            headers = [("point", "index of the point in the sweep")] + _param_headers(groups, short) + [(col, "")]
            rows = [[(str(int(r["idx"])), "num")] + [(_group_value(r, g, _collapsible(failed, g)), "num")
                                                     for g in groups]
                    + [(r["error"], "text")] for _, r in failed.iterrows()]
            parts.append(f"<h2>{title}</h2>" + _table(headers, rows))
    parts.append("<p>Data: points.csv, points.parquet, sweep.sqlite.</p>")
    page = html_page("sweep report", parts, max_width=1100)
    (out / "report.html").write_text(page)
    return out / "report.html"
