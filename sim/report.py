"""Run outputs: ``ops.parquet``, ``summary.json``, ``report.html`` (with plots), a terminal table.

Everything written is a function of the config alone (no timestamps, no wall times), so the same
config and seed give the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from sim.run import Result


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write(result: Result, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.ops.to_parquet(out / "ops.parquet", index=False)
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2, sort_keys=True, default=_json_default) + "\n")
    (out / "report.html").write_text(_html(result))
    return out


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def html_page(title: str, parts: list[str], max_width: int = 1200) -> str:
    """A self-contained HTML page of ``parts`` (the reproduction and sweep reports' frame)."""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + title + "</title><style>"
            f"body{{font-family:sans-serif;max-width:{max_width}px;margin:2em auto}}"
            "table{border-collapse:collapse;display:block;width:max-content;max-width:100%;overflow-x:auto}"
            "th,td{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _per_layer(ops: pd.DataFrame, col: str) -> pd.DataFrame:
    g = ops.assign(where=np.where(ops.layer >= 0, ops.layer.astype(str), "other"))
    t = g.pivot_table(index="where", columns="phase", values=col, aggfunc="sum", fill_value=0)
    order = sorted((w for w in t.index if w != "other"), key=int) + (["other"] if "other" in t.index else [])
    return t.loc[order]


def roofline_points(ops: pd.DataFrame, freq_hz: float) -> pd.DataFrame:
    """The roofline's points: per op that does arithmetic and moves DRAM bytes, its arithmetic
    intensity (``flops`` per DRAM byte read and written) and achieved rate: ``flops`` over the op's
    own duration, its loads and stores overlapped with its compute (max of the two, cycles at
    ``freq_hz``), all from the op's row: summed over the generated tokens alike for decode rows.
    Not ``time_s``, the op's share of the critical path: an op whose loads were prefetched under
    the op before it has a short share and would be drawn above the memory roof.  Ops that move
    no DRAM bytes (their operands on chip) have no intensity and are left out."""
    dram = (ops.dram_read_bytes + ops.dram_write_bytes).to_numpy(np.float64)
    flops = ops.flops.to_numpy(np.float64)
    own = np.maximum(ops.load_cycles + ops.store_cycles, ops.compute_cycles).to_numpy(np.float64)
    sel = (own > 0) & (flops > 0) & (dram > 0)
    return pd.DataFrame({"phase": ops.phase.to_numpy()[sel], "intensity": flops[sel] / dram[sel],
                         "achieved": flops[sel] * freq_hz / own[sel]}, index=ops.index[sel])


def _plots(result: Result) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = result.ops
    out = {}

    # per-layer latency and energy, by phase
    for col, label, name in (("time_s", "latency (s)", "layer_latency"), ("energy_pj", "energy (J)", "layer_energy")):
        t = _per_layer(ops, col) * (1e-12 if col == "energy_pj" else 1.0)
        fig, ax = plt.subplots(figsize=(9, 3.2))
        bottom = np.zeros(len(t))
        for phase in t.columns:
            ax.bar(t.index, t[phase].to_numpy(), bottom=bottom, label=phase)
            bottom += t[phase].to_numpy()
        ax.set_xlabel("layer")
        ax.set_ylabel(label)
        ax.tick_params(axis="x", labelsize=7, rotation=90)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        out[name] = _png(fig)

    # energy by component and role
    comps = sorted(c for c in ops.columns if c.startswith("energy_pj_"))
    by_role = ops.groupby("role")[comps].sum() * 1e-12
    by_role = by_role.loc[by_role.sum(axis=1).sort_values(ascending=False).index[:12]]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    left = np.zeros(len(by_role))
    for c in comps:
        ax.barh(by_role.index, by_role[c].to_numpy(), left=left, label=c[len("energy_pj_"):])
        left += by_role[c].to_numpy()
    ax.set_xlabel("energy (J)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    out["energy_roles"] = _png(fig)

    # roofline of the ops that do work
    w = result.config.workload
    freq = result.target.freq_hz
    peak = result.target.peak_macs_per_cycle(w.wbits, w.abits) * 2 * freq
    bw = result.target.dram_bytes_per_cycle() * freq
    pts = roofline_points(ops, freq)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for phase, marker in (("prefill", "o"), ("decode", "^")):
        sel = pts[pts.phase == phase]
        if len(sel):
            ax.scatter(sel.intensity, sel.achieved, s=10, marker=marker, alpha=0.6, label=phase)
    xs = np.logspace(-2, 5, 200)
    ax.plot(xs, np.minimum(peak, xs * bw), "k-", lw=1, label="roofline (PE array, DRAM)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per DRAM byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.legend(fontsize=8)
    out["roofline"] = _png(fig)
    return out


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>"


def summary_rows(s: dict) -> list[tuple[str, str]]:
    rows = [
        ("model", s["model"]), ("target", s["target"]), ("fidelity", s["fidelity"]),
        ("latency", f"{s['latency_s']:.6g} s ({s['cycles']:,} cycles)"),
        ("prefill", f"{s['prefill']['latency_s']:.6g} s, {s['prefill']['tokens_per_s']:.4g} tokens/s"),
    ]
    if "decode" in s:
        d = s["decode"]
        rows.append(("decode", f"{d['latency_s']:.6g} s, {d['time_per_token_s'] * 1e3:.4g} ms/token"))
    rows += [
        ("energy", f"{s['energy_j']:.6g} J ({s['energy_per_token_j']:.4g} J/token)"),
        ("average power", f"{s['average_power_w']:.4g} W"),
        ("tokens/s", f"{s['tokens_per_s']:.4g}"),
        ("tokens/s per W", f"{s['tokens_per_s_per_w']:.4g}"),
        ("MAC utilization", f"{s['utilization']['mac']:.1%}"),
        ("time compute-/memory-bound", f"{s['time_by_bound_s']['compute']:.4g} s / {s['time_by_bound_s']['memory']:.4g} s"),
    ]
    m = s.get("memory")
    if m:
        cap = f" of {m['capacity'] / 1e9:.4g} GB" if m.get("capacity") else ""
        parts = ", ".join(f"{k.replace('_', ' ')} {m[k] / 1e9:.3g}" for k in ("weights", "kv_cache", "activations", "lora")
                          if m.get(k))
        rows.append(("memory" + (" per device" if m.get("per_device") else ""), f"{m['total'] / 1e9:.4g} GB{cap} ({parts})"))
    p = s.get("parallel")
    if p:
        rows.append(("devices", f"{p['devices']} = tp {p['tp']} x pp {p['pp']} x dp {p['dp']} (ep {p['ep']}, "
                                f"{p['micro_batches']} micro-batch(es) of {p['micro_batch']})"))
        rows.append(("collectives", f"prefill {p['prefill_s'] * 1e3:.4g} ms, decode {p['decode_step_s'] * 1e3:.4g} ms/step"))
        if p["pp"] > 1 and "decode_stage_s" in p:
            rows.append(("decode stage times", ", ".join(f"{x * 1e3:.3g}" for x in p["decode_stage_s"]) + " ms"))
    rows += [(f"energy: {k}", f"{v:.4g} J") for k, v in s["energy_by_component_j"].items()]
    return rows


def _html(result: Result) -> str:
    s = result.summary
    plots = _plots(result)
    img = lambda k, alt: f'<img alt="{alt}" src="data:image/png;base64,{plots[k]}">'  # noqa: E731
    top = (result.ops.sort_values("time_s", ascending=False).head(15)
           [["phase", "layer", "role", "op", "in_shapes", "bound", "cycles", "time_s", "energy_pj"]])
    cfg = json.dumps(s["config"], indent=2, sort_keys=True, default=_json_default)
    note = ("<p>Devices share this run: the per-layer and per-op times are one tensor-parallel rank's, for one "
            "micro-batch; the energies are every device's (docs/parallelism.md).</p>" if "parallel" in s else "")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(s['name'])}: mlhw-sim report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(s['name'])}</h1>
<h2>Summary</h2>{_table(summary_rows(s))}
<h2>Latency per layer</h2>{note}{img('layer_latency', 'latency per layer')}
<h2>Energy per layer</h2>{img('layer_energy', 'energy per layer')}
<h2>Energy by role and component</h2>{img('energy_roles', 'energy by role')}
<h2>Roofline</h2>{img('roofline', 'roofline')}
<h2>Slowest ops</h2>{top.to_html(index=False)}
<h2>Resolved config</h2><pre>{html.escape(cfg)}</pre>
<p>mlhw-sim {html.escape(s['version'])}</p></body></html>
"""


def print_summary(s: dict, console=None) -> None:
    from sim.tables import console as make_console
    from sim.tables import rich_table

    t = rich_table(f"{s['name']}: {s['model']} on {s['target']}", ["metric", "value"],
                   [list(r) for r in summary_rows(s)], right={"value"}, show_header=False)
    (console or make_console()).print(t, crop=False)
