"""Lamarr validation (``sim run configs/lamarr/reproduce.yaml``): detailed and fast simulation of the
same generated events, compared variable by variable, efficiency by efficiency, and on a physics
observable; both timed; optionally the pipeline on modelled hardware (:mod:`sim.studies.lamarr.hardware`).

The file::

    study: lamarr
    out: results/lamarr
    events: 4000            # held-out events (a seed the training never used)
    seed: 2026              # generator seed; the detailed simulation uses seed + 1, the fast one seed + 2
    weights: null           # a folder with a trained pipeline (default: models/weights/lamarr)
    batch: 8192             # rows per network call in the fast simulation
    dtype: fp32             # or bf16: the networks' arithmetic in the fast simulation
    bins: {p_gev: [...], eta: [...]}
    paper: [{metric: ..., paper: ..., source: ...}]
    hardware: hardware.yaml # optional: a Lamarr hardware file (or its block inline), run with the
                            # fractions the detailed simulation measured here

What it writes (``out``): ``metrics.csv`` (per variable and species: Wasserstein distance, raw and
over the detailed sample's standard deviation, KS statistic and p-value), ``efficiencies.csv``
(per momentum and pseudorapidity bin, both simulations, binomial errors and the pull),
``physics.csv`` (the D0 -> K pi mass peak and the daughters' PID efficiencies),
``resolution_widths.csv`` (each resolution's width per momentum bin, long tracks), ``speed.csv``,
``paper_vs_sim.csv``, ``report.html`` with the overlay plots, and the hardware outputs if asked.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.errors import SimError
from sim.config import load_yaml, resolve_path, validated
from sim.studies.base import Options, Progress, Study, StudyResult, no_progress
from sim.studies.base import paper_vs_sim as pvs_table

SPECIES_NAMES = {211: "pi", 321: "K", 2212: "p", 13: "mu", 11: "e"}
MASS_GEV = {"K": 0.493677, "pi": 0.13957039}  # PDG 2024 (charged kaon and pion masses)
D0_MASS_GEV = 1.86484  # PDG 2024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bins(_Strict):
    p_gev: list[float] = Field(min_length=2)
    eta: list[float] = Field(min_length=2)


class PaperFigure(_Strict):
    metric: str
    paper: float
    source: str


class LamarrFile(_Strict):
    study: Literal["lamarr"]
    out: str | None = None
    events: int = Field(gt=0)
    seed: int = Field(ge=0)
    weights: str | None = None
    batch: int = Field(8192, gt=0)
    dtype: Literal["fp32", "bf16"] = "fp32"  # the networks' arithmetic in the fast simulation
    bins: Bins
    paper: list[PaperFigure] = Field(default_factory=list)
    hardware: str | dict[str, Any] | None = None  # a Lamarr hardware file (path) or its block


PAPER_METRICS = ("speedup_detector_step", "d0_width_ratio_fast_over_detailed")


def load(path: str | Path) -> LamarrFile:
    path = Path(path)
    data, lines = load_yaml(path)
    f = validated(LamarrFile, data, path, lines)
    for k in ("p_gev", "eta"):
        edges = getattr(f.bins, k)
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise SimError(f"{path}: bins.{k} must increase strictly, got {edges}")
    for i, p in enumerate(f.paper):
        if p.metric not in PAPER_METRICS:
            raise SimError(f"{path}: paper.{i}.metric {p.metric!r} is unknown; known: {', '.join(PAPER_METRICS)}")
    return f


# ---- metrics -----------------------------------------------------------------------------------


def distance(a: np.ndarray, b: np.ndarray) -> dict:
    """Wasserstein-1 distance and two-sample KS statistic of samples ``a`` (detailed) and ``b``
    (fast); the distance also over ``a``'s standard deviation (comparable across variables)."""
    from scipy import stats

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return {"n_detailed": len(a), "n_fast": len(b), "wasserstein": np.nan, "wasserstein_rel": np.nan,
                "ks": np.nan, "ks_pvalue": np.nan}
    w = stats.wasserstein_distance(a, b)
    ks = stats.ks_2samp(a, b)
    sd = float(np.std(a))
    return {"n_detailed": len(a), "n_fast": len(b), "wasserstein": float(w),
            "wasserstein_rel": float(w / sd) if sd > 0 else np.nan, "ks": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue)}


def efficiency(passed: np.ndarray, x: np.ndarray, edges) -> pd.DataFrame:
    """Efficiency of boolean ``passed`` in bins of ``x``: n, k, eff and its binomial error."""
    idx = np.digitize(x, edges) - 1
    rows = []
    for i in range(len(edges) - 1):
        m = idx == i
        n, k = int(m.sum()), int(passed[m].sum())
        e = k / n if n else np.nan
        # binomial error; at 0 or 1 that of (k + 1/2) / (n + 1), so an empty or full bin is not exact
        ee = e if 0 < k < n else (k + 0.5) / (n + 1)
        rows.append({"lo": edges[i], "hi": edges[i + 1], "n": n, "k": k, "eff": e,
                     "err": np.sqrt(ee * (1 - ee) / n) if n else np.nan})
    return pd.DataFrame(rows)


def compare_efficiency(name: str, var: str, det: tuple, fast: tuple, edges) -> pd.DataFrame:
    """One efficiency curve for both simulations (``det``/``fast``: (passed, x) of the particles
    the efficiency is defined on) with the pull (fast - detailed) / combined error."""
    d, f = efficiency(*det, edges), efficiency(*fast, edges)
    out = d[["lo", "hi"]].copy()
    out.insert(0, "variable", var)
    out.insert(0, "efficiency", name)
    for tag, t in (("detailed", d), ("fast", f)):
        out[f"n_{tag}"], out[f"eff_{tag}"], out[f"err_{tag}"] = t["n"], t["eff"], t["err"]
    out["pull"] = (out.eff_fast - out.eff_detailed) / np.hypot(out.err_fast, out.err_detailed)
    return out


def clipped_gauss(m: np.ndarray, center: float, half_window: float = 0.08, nsigma: float = 2.5):
    """Mean and width of a peak by iterated n-sigma clipping inside a window (no fit to converge);
    returns (mean, sigma, sigma's error, entries)."""
    x = m[np.abs(m - center) < half_window]
    mu, sd = (float(np.mean(x)), float(np.std(x))) if len(x) else (np.nan, np.nan)
    for _ in range(20):
        if len(x) < 5:
            break
        y = x[np.abs(x - mu) < nsigma * sd]
        if len(y) == len(x) or len(y) < 5:
            break
        x = y
        mu, sd = float(np.mean(x)), float(np.std(x))
    # clipping at 2.5 sigma removes 1.2% of a Gaussian and narrows its std by the factor below
    from scipy import stats

    k = nsigma
    shrink = np.sqrt(1 - 2 * k * stats.norm.pdf(k) / (2 * stats.norm.cdf(k) - 1))
    return mu, sd / shrink, sd / shrink / np.sqrt(2 * max(len(x), 1)), len(x)


def kpi_mass(df: pd.DataFrame) -> pd.DataFrame:
    """The reconstructed K pi invariant mass of every D0 whose two daughters are reconstructed long
    tracks (truth-matched through ``d0_id``), with the daughters' PID columns."""
    s = df[(df["d0_id"].to_numpy() >= 0) & (df["track_type"].to_numpy() == 1)]
    s = s[s.groupby("d0_id")["d0_id"].transform("size") == 2]
    k = s[np.abs(s["pid"]) == 321].set_index("d0_id")
    pi = s[np.abs(s["pid"]) == 211].set_index("d0_id")
    both = k.index.intersection(pi.index)
    k, pi = k.loc[both], pi.loc[both]

    def four(t, mass):
        tx, ty, p = t["tx"].to_numpy(), t["ty"].to_numpy(), t["p_reco_gev"].to_numpy()
        pz = p / np.sqrt(1 + tx * tx + ty * ty)
        return np.sqrt(p * p + mass * mass), tx * pz, ty * pz, pz

    ek, xk, yk, zk = four(k, MASS_GEV["K"])
    ep, xp, yp, zp = four(pi, MASS_GEV["pi"])
    m2 = (ek + ep) ** 2 - (xk + xp) ** 2 - (yk + yp) ** 2 - (zk + zp) ** 2
    return pd.DataFrame({"mass_gev": np.sqrt(np.maximum(m2, 0)), "k_pid_k": k["pid_k"].to_numpy(),
                         "pi_pid_k": pi["pid_k"].to_numpy()}, index=both)


def _species(df: pd.DataFrame) -> np.ndarray:
    return np.abs(df["pid"].to_numpy())


def _resolution_columns(df: pd.DataFrame) -> pd.DataFrame:
    from models.lamarr import fastsim

    rec = fastsim.reconstructed(df)
    sub = df[rec]
    d = fastsim.resolution_targets(sub)
    out = pd.DataFrame(d, columns=["dx_mm", "dy_mm", "dtx", "dty", "dqop_rel"], index=sub.index)
    out["sigma_qop_rel"] = sub["sigma_qop"].to_numpy() * sub["p_gev"].to_numpy()
    return out


# Variables compared on reconstructed tracks: (column, selection by true species or None).
KINEMATIC = ("p_reco_gev", "pt_reco_gev", "eta_reco", "phi_reco", "x_mm", "y_mm", "tx", "ty")
RESOLUTION = ("dx_mm", "dy_mm", "dtx", "dty", "dqop_rel")
COVARIANCE = ("sigma_x_mm", "sigma_y_mm", "sigma_tx", "sigma_ty", "sigma_qop_rel", "corr_x_tx", "corr_y_ty")
PID = ("rich_dll_e", "rich_dll_mu", "rich_dll_k", "rich_dll_p", "muon_dll", "pid_e", "pid_mu", "pid_k", "pid_p")


def _tracks(df: pd.DataFrame) -> pd.DataFrame:
    from models.lamarr import fastsim

    rec = df[fastsim.reconstructed(df)].copy()
    return rec.join(_resolution_columns(df))


def metrics(det: pd.DataFrame, fast: pd.DataFrame, tracks: tuple | None = None) -> pd.DataFrame:
    """Per-variable distances of the fast to the detailed simulation on reconstructed tracks
    (``tracks``: both frames' :func:`_tracks`, when the caller has them already)."""
    a, b = tracks if tracks is not None else (_tracks(det), _tracks(fast))
    rows = []
    for group, cols in (("kinematics", KINEMATIC), ("resolution", RESOLUTION), ("covariance", COVARIANCE)):
        for c in cols:
            rows.append({"group": group, "variable": c, "species": "all",
                         **distance(a[c].to_numpy(float), b[c].to_numpy(float))})
    sa, sb = _species(a), _species(b)
    for c in PID:
        for code, name in SPECIES_NAMES.items():
            rows.append({"group": "pid", "variable": c, "species": name,
                         **distance(a[c].to_numpy(float)[sa == code], b[c].to_numpy(float)[sb == code])})
    return pd.DataFrame(rows)


PID_CUTS = (0.0, 5.0, -5.0)  # DLLK working points of the kaon-ID efficiencies


def efficiencies(det: pd.DataFrame, fast: pd.DataFrame, bins: Bins) -> pd.DataFrame:
    """Acceptance, long-track, isMuon and kaon-ID (:data:`PID_CUTS`) efficiencies per p and eta bin,
    both simulations."""
    da, fa = det[det.in_acceptance.to_numpy()], fast[fast.in_acceptance.to_numpy()]
    dl, fl = det[det.track_type.to_numpy() == 1], fast[fast.track_type.to_numpy() == 1]
    sd, sf = _species(dl), _species(fl)
    long_of = {code: (dl[sd == code], fl[sf == code]) for code in (13, 211, 321)}  # true species' long tracks
    parts = []
    for var, edges in (("p_gev", bins.p_gev), ("eta", bins.eta)):
        def col(df, c=var):
            return df[c].to_numpy()

        parts.append(compare_efficiency("acceptance", var, (det.in_acceptance.to_numpy(), col(det)),
                                        (fast.in_acceptance.to_numpy(), col(fast)), edges))
        parts.append(compare_efficiency("long track | accepted", var, (da.track_type.to_numpy() == 1, col(da)),
                                        (fa.track_type.to_numpy() == 1, col(fa)), edges))
        for code, name in ((13, "mu"), (211, "pi")):
            d, f = long_of[code]
            parts.append(compare_efficiency(f"isMuon ({name}, long)", var, (d.is_muon.to_numpy().astype(bool), col(d)),
                                            (f.is_muon.to_numpy().astype(bool), col(f)), edges))
        # kaon ID and pion mis-ID at DLLK > 0 (the sign the RICH classifier samples) and at +-5 (the
        # magnitudes the RICH GAN generates)
        for cut in PID_CUTS:
            for code, name in ((321, "K"), (211, "pi")):
                d, f = long_of[code]
                parts.append(compare_efficiency(f"DLLK>{cut:g} ({name}, long)", var, (d.pid_k.to_numpy() > cut, col(d)),
                                                (f.pid_k.to_numpy() > cut, col(f)), edges))
    return pd.concat(parts, ignore_index=True)


def half_width(x: np.ndarray) -> tuple[float, float]:
    """Half the central 68% interval of ``x`` (a width that a tail does not inflate) and its
    statistical error, 0.96 w / sqrt(n) (the large-sample variance of the two quantiles and their
    covariance for a Gaussian)."""
    x = x[np.isfinite(x)]
    if len(x) < 10:
        return np.nan, np.nan
    lo, hi = np.percentile(x, [15.865, 84.135])
    w = (hi - lo) / 2
    return float(w), float(0.96 * w / np.sqrt(len(x)))


def resolution_widths(tracks: tuple, edges) -> pd.DataFrame:
    """The resolutions' widths (:func:`half_width`) per momentum bin, long tracks, both
    simulations: how the mass peak's width comes about (its daughters' q/p and slopes)."""
    a, b = (t[t.track_type.to_numpy() == 1] for t in tracks)
    rows = []
    for c in RESOLUTION:
        for lo, hi in zip(edges[:-1], edges[1:]):
            r = {"variable": c, "lo": lo, "hi": hi}
            for tag, t in (("detailed", a), ("fast", b)):
                p = t.p_gev.to_numpy()
                x = t[c].to_numpy(float)[(p >= lo) & (p < hi)]
                r[f"n_{tag}"] = len(x)
                r[f"width_{tag}"], r[f"err_{tag}"] = half_width(x)
            r["ratio"] = r["width_fast"] / r["width_detailed"]
            r["pull"] = (r["width_fast"] - r["width_detailed"]) / np.hypot(r["err_fast"], r["err_detailed"])
            rows.append(r)
    return pd.DataFrame(rows)


def physics(det: pd.DataFrame, fast: pd.DataFrame) -> pd.DataFrame:
    """The D0 -> K pi peak (mean, width) and its daughters' PID efficiencies in both simulations."""
    rows = []
    for tag, df in (("detailed", det), ("fast", fast)):
        m = kpi_mass(df)
        mu, sd, sd_err, n = clipped_gauss(m["mass_gev"].to_numpy(), D0_MASS_GEV)
        k_eff = float(np.mean(m.k_pid_k > 0)) if len(m) else np.nan
        pi_eff = float(np.mean(m.pi_pid_k < 0)) if len(m) else np.nan
        rows.append({"simulation": tag, "candidates": len(m), "peak_mev": 1e3 * mu, "width_mev": 1e3 * sd,
                     "width_err_mev": 1e3 * sd_err, "kaon_eff_dllk_gt0": k_eff,
                     "kaon_eff_err": np.sqrt(k_eff * (1 - k_eff) / max(len(m), 1)),
                     "pion_eff_dllk_lt0": pi_eff, "pion_eff_err": np.sqrt(pi_eff * (1 - pi_eff) / max(len(m), 1))})
    return pd.DataFrame(rows)


def fractions(det: pd.DataFrame) -> dict:
    """Particles per event and the share of them each pipeline stage sees (for the hardware model):
    accepted and reconstructed (of the generated particles), the share of the reconstructed tracks
    in the muon preselection (the muon stages' tracks), per hurdle GAN the share of its sign
    classifier's tracks on which it runs (some of its values not exactly 0), and per sign-pattern
    classifier the number of patterns that occur there (one: the classifier is not run)."""
    from models.lamarr import fastsim, nets

    n_ev = det["event"].nunique()
    n = len(det)
    rec = det[fastsim.reconstructed(det)]
    pre = fastsim.muon_preselected(rec["track_type"], rec["p_reco_gev"])
    values = {"rich": rec[list(nets.RICH_VARS)].to_numpy(), "muon": rec.loc[pre, list(nets.MUON_VARS)].to_numpy(),
              "gpid": rec[list(nets.GPID_VARS)].to_numpy() - fastsim.gpid_base(rec)}
    return {"particles_per_event": n / n_ev, "accepted": float(det.in_acceptance.mean()),
            "reconstructed": float((det.track_type > 0).mean()),
            "muon_preselected": float(pre.mean()) if len(rec) else 1.0,
            "hurdle": {k: float(np.mean((v != 0).any(axis=1))) if len(v) else 1.0 for k, v in values.items()},
            "sign_patterns": {nets.SIGNS[k]: max(1, len(np.unique(nets.sign_pattern(v)))) for k, v in values.items()}}


# ---- the run -----------------------------------------------------------------------------------


def run(path: str | Path, out: str | None = None, progress=None) -> dict:
    """Generate, simulate both ways, compare; returns everything :func:`write` needs."""
    from models.lamarr import detector, fastsim, generator

    path = Path(path)
    f = load(path)
    say = progress or (lambda what: None)
    weights = resolve_path(f.weights, path.parent) if f.weights else None
    pipe = fastsim.load(weights)
    say(f"generating {f.events} events")
    truth = generator.generate(f.events, seed=f.seed)
    say("detailed simulation")
    detector.simulate(truth.iloc[:min(len(truth), 200)], seed=f.seed + 1)  # compile (numba) outside the timing
    t0 = time.perf_counter()
    det = detector.simulate(truth, seed=f.seed + 1)
    t_det = time.perf_counter() - t0
    say("fast simulation")
    fastsim.simulate(truth.iloc[:1000], seed=f.seed + 2, pipeline=pipe, batch=f.batch, dtype=f.dtype)  # warm-up
    stages: dict = {}
    t0 = time.perf_counter()
    fast = fastsim.simulate(truth, seed=f.seed + 2, pipeline=pipe, batch=f.batch, timings=stages, dtype=f.dtype)
    t_fast = time.perf_counter() - t0
    say("comparing")
    speed = pd.DataFrame([
        {"simulation": "detailed", "seconds": t_det, "events_per_s": f.events / t_det,
         "us_per_particle": 1e6 * t_det / len(truth)},
        {"simulation": "fast (pipeline, all stages)", "seconds": t_fast, "events_per_s": f.events / t_fast,
         "us_per_particle": 1e6 * t_fast / len(truth)},
        *({"simulation": f"fast: {k}", "seconds": v, "events_per_s": f.events / v if v else np.nan,
           "us_per_particle": 1e6 * v / len(truth)} for k, v in stages.items()),
    ])
    tracks = (_tracks(det), _tracks(fast))  # reconstructed rows + resolution columns, for metrics and plots
    res = {"file": f, "truth": truth, "det": det, "fast": fast, "tracks": tracks, "speed": speed,
           "speedup": t_det / t_fast, "metrics": metrics(det, fast, tracks),
           "efficiencies": efficiencies(det, fast, f.bins), "physics": physics(det, fast),
           "resolution_widths": resolution_widths(tracks, f.bins.p_gev),
           "fractions": fractions(det), "meta": fastsim.metadata(weights)}
    res["paper_vs_sim"] = paper_vs_sim(f, res)
    if f.hardware is not None:
        from sim.studies.lamarr import hardware as lamarr_hw

        say("pipeline on modelled hardware")
        if isinstance(f.hardware, str):
            hw_path = resolve_path(f.hardware, path.parent)
            spec, base = lamarr_hw.load(hw_path), hw_path.parent
        else:
            spec, base = lamarr_hw.spec_of(f.hardware), path.parent
        res["hardware"] = lamarr_hw.run(spec, res["fractions"], base)
    return res


def paper_vs_sim(f: LamarrFile, res: dict) -> pd.DataFrame:
    phys = res["physics"].set_index("simulation")
    simulated = {"speedup_detector_step": res["speedup"],
                 "d0_width_ratio_fast_over_detailed": phys.width_mev["fast"] / phys.width_mev["detailed"]}
    # names checked by load()
    return pvs_table({"metric": p.metric, "paper": p.paper, "simulated": simulated[p.metric], "source": p.source}
                     for p in f.paper)


def summary(res: dict) -> dict:
    """Headline figures: speed ratio, efficiency pulls, worst distances, the D0 peak."""
    e = res["efficiencies"]
    pulls = e.pull.to_numpy()
    ok = np.isfinite(pulls)
    m = res["metrics"]
    phys = res["physics"].set_index("simulation")
    w = res["resolution_widths"].dropna(subset=["pull"])
    return {
        "events": res["file"].events,
        "speedup_detector_step": res["speedup"],
        "efficiency_bins": int(ok.sum()),
        "efficiency_chi2_per_bin": float(np.mean(pulls[ok] ** 2)) if ok.any() else np.nan,
        "efficiency_bins_within_2sigma": float(np.mean(np.abs(pulls[ok]) < 2)) if ok.any() else np.nan,
        "median_ks": float(m.ks.median()),
        "median_wasserstein_rel": float(m.wasserstein_rel.median()),
        "d0_width_mev": {k: float(phys.width_mev[k]) for k in phys.index},
        "d0_width_err_mev": {k: float(phys.width_err_mev[k]) for k in phys.index},
        "resolution_width_bins_within_2sigma": float(np.mean(np.abs(w.pull) < 2)) if len(w) else np.nan,
        "fractions": res["fractions"],
    }


# ---- outputs -----------------------------------------------------------------------------------


def _overlay(tracks: tuple, cols, title: str, species: int | None = None):
    """Histograms of ``cols`` for both simulations' reconstructed tracks (``tracks``: their :func:`_tracks`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = tracks
    if species is not None:
        a, b = a[_species(a) == species], b[_species(b) == species]
    n = len(cols)
    ncol = 4
    fig, axes = plt.subplots((n + ncol - 1) // ncol, ncol, figsize=(3.2 * ncol, 2.6 * ((n + ncol - 1) // ncol)))
    for ax, c in zip(np.ravel(axes), cols):
        x, y = a[c].to_numpy(float), b[c].to_numpy(float)
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        if len(x) == 0:
            ax.set_title(f"{c} (none)", fontsize=9)
            continue
        lo, hi = np.quantile(x, [0.005, 0.995])
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        edges = np.linspace(lo, hi, 41)
        ax.hist(x, edges, histtype="stepfilled", alpha=0.4, label="detailed", density=True)
        ax.hist(y, edges, histtype="step", lw=1.4, label="fast (Lamarr)", density=True)
        ax.set_title(c, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in np.ravel(axes)[n:]:
        ax.axis("off")
    np.ravel(axes)[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _efficiency_plot(e: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(e.efficiency))
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.4 * len(names)))
    for i, name in enumerate(names):
        for j, var in enumerate(("p_gev", "eta")):
            ax = axes[i, j]
            t = e[(e.efficiency == name) & (e.variable == var)]
            x = 0.5 * (t.lo + t.hi)
            ax.errorbar(x, t.eff_detailed, yerr=t.err_detailed, fmt="o", ms=3, label="detailed")
            ax.errorbar(x * (1.02 if var == "p_gev" else 1) + (0 if var == "p_gev" else 0.03), t.eff_fast,
                        yerr=t.err_fast, fmt="s", ms=3, label="fast (Lamarr)")
            if var == "p_gev":
                ax.set_xscale("log")
            ax.set_xlabel("p [GeV]" if var == "p_gev" else "eta", fontsize=8)
            ax.set_ylabel(name, fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _mass_plot(det: pd.DataFrame, fast: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    edges = np.linspace(1.78, 1.95, 69)
    for tag, df, kw in (("detailed", det, dict(histtype="stepfilled", alpha=0.4)),
                        ("fast (Lamarr)", fast, dict(histtype="step", lw=1.4))):
        ax.hist(kpi_mass(df)["mass_gev"], edges, label=tag, **kw)
    ax.set_xlabel("m(K pi) [GeV]")
    ax.set_ylabel("candidates")
    ax.set_title("D0 -> K pi, truth-matched long tracks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _summary_table(s: dict) -> pd.DataFrame:
    """The summary's figures as rows (nested keys joined by dots), numbers at four significant figures."""
    rows = []

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                rows.append({"figure": prefix + k, "value": f"{v:.4g}" if isinstance(v, float) else str(v)})

    walk(s)
    return pd.DataFrame(rows)


def write(out: Path, res: dict) -> list[str]:
    from sim.report import _png, html_page

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"metrics.csv": res["metrics"], "efficiencies.csv": res["efficiencies"], "physics.csv": res["physics"],
             "resolution_widths.csv": res["resolution_widths"], "speed.csv": res["speed"],
             "paper_vs_sim.csv": res["paper_vs_sim"]}
    for name, df in files.items():
        df.to_csv(out / name, index=False, float_format="%.6g")
    written = list(files)
    s = summary(res)
    import json

    (out / "summary.json").write_text(json.dumps(s, indent=1, default=float) + "\n")
    written.append("summary.json")
    det, fast = res["det"], res["fast"]
    tracks = res.get("tracks") or (_tracks(det), _tracks(fast))
    figs = [("Reconstructed kinematics (all reconstructed tracks)", _overlay(tracks, KINEMATIC, "kinematics")),
            ("Resolution: reconstructed minus true state", _overlay(tracks, RESOLUTION, "resolution")),
            ("Track covariance", _overlay(tracks, COVARIANCE, "covariance")),
            ("PID of true kaons", _overlay(tracks, PID, "PID, true kaons", 321)),
            ("PID of true pions", _overlay(tracks, PID, "PID, true pions", 211)),
            ("PID of true muons", _overlay(tracks, PID, "PID, true muons", 13)),
            ("Efficiencies per bin", _efficiency_plot(res["efficiencies"])),
            ("D0 -> K pi mass peak", _mass_plot(det, fast))]
    parts = [f"<h1>Lamarr: fast vs detailed simulation ({s['events']} held-out events)</h1>",
             "<h2>Summary</h2>" + _summary_table(s).to_html(index=False),
             "<h2>Speed</h2>" + res["speed"].to_html(index=False, float_format="%.4g"),
             "<h2>Paper vs simulation</h2>" + res["paper_vs_sim"].to_html(index=False, float_format="%.4g"),
             "<h2>D0 -> K pi</h2>" + res["physics"].to_html(index=False, float_format="%.4g"),
             "<h2>Resolution widths per momentum bin (long tracks)</h2>"
             + res["resolution_widths"].to_html(index=False, float_format="%.4g")]
    for title, fig in figs:
        parts.append(f"<h2>{title}</h2><img src='data:image/png;base64,{_png(fig)}'>")
    parts.append("<h2>Distances per variable</h2>" + res["metrics"].to_html(index=False, float_format="%.4g"))
    parts.append("<h2>Efficiencies</h2>" + res["efficiencies"].to_html(index=False, float_format="%.4g"))
    if "hardware" in res:
        from sim.studies.lamarr import hardware as lamarr_hw

        written += lamarr_hw.write(out, res["hardware"])
        parts.append("<h2>Pipeline on modelled hardware</h2>" + lamarr_hw.summary_table(res["hardware"])
                     .to_html(index=False, float_format="%.4g"))
    (out / "report.html").write_text(html_page("Lamarr validation", parts))
    written.append("report.html")
    return written


class LamarrValidation(Study):
    """Lamarr's fast simulation against the detailed one on the same events (``study: lamarr``)."""

    kind = "lamarr"
    schema = LamarrFile

    def run(self, path: Path, options: Options, progress: Progress = no_progress) -> StudyResult:
        res = run(path, progress=lambda m: progress(m))
        return StudyResult(paper_vs_sim=res["paper_vs_sim"], summary=summary(res), title="Lamarr: paper vs simulation",
                           out=Path(options.out or res["file"].out or "results/lamarr"), data=res)

    def write(self, out: Path, result: StudyResult) -> list[str]:
        return write(out, result.data)

    def print(self, result: StudyResult, console) -> None:
        s = result.summary
        console.print(f"Lamarr vs detailed simulation, {s['events']} events: detector step "
                      f"{s['speedup_detector_step']:.0f}x faster; efficiency bins within 2 sigma "
                      f"{s['efficiency_bins_within_2sigma']:.0%} "
                      f"(mean pull^2 {s['efficiency_chi2_per_bin']:.2f}); median KS {s['median_ks']:.3f}; D0 width "
                      f"{s['d0_width_mev']['detailed']:.2f} (detailed) vs {s['d0_width_mev']['fast']:.2f} MeV (fast)")
        super().print(result, console)
