"""The LHCb-like detailed simulation (models.lamarr.generator, models.lamarr.detector): determinism,
columns, input checks and physics sanity on small samples (fixed seeds)."""

import numpy as np
import pandas as pd
import pytest

from models.errors import SimError
from models.lamarr import detector, generator

M_D0_MEV = 1864.84  # PDG 2024


@pytest.fixture(scope="module")
def sample():
    truth = generator.generate(300, seed=11)
    return truth, detector.simulate(truth, seed=12)


def _gun(pid: int, n: int, p_range, eta_range=(2.5, 4.0), seed: int = 0) -> pd.DataFrame:
    """A generator-like table of single particles of one species, flat in p and eta."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(*p_range, n)
    eta = rng.uniform(*eta_range, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    pt = p / np.cosh(eta)
    pids = np.where(rng.random(n) < 0.5, pid, -pid).astype(np.int32)
    return pd.DataFrame({
        "event": np.arange(n, dtype=np.int64), "pid": pids, "charge": generator.charge_of(pids),
        "mass_gev": generator.MASS_GEV[pid], "d0_id": np.full(n, -1, np.int64),
        "vx_mm": rng.normal(0, 0.04, n), "vy_mm": rng.normal(0, 0.04, n), "vz_mm": rng.normal(0, 45.0, n),
        "px_gev": pt * np.cos(phi), "py_gev": pt * np.sin(phi), "pz_gev": pt * np.sinh(eta),
        "p_gev": p, "pt_gev": pt, "eta": eta, "phi": phi, "n_tracks": np.full(n, 20, np.int32)})


# ---- generator --------------------------------------------------------------------------------


def test_generator_columns_dtypes_and_determinism():
    a = generator.generate(20, seed=3)
    assert tuple(a.columns) == generator.COLUMNS
    dt = a.dtypes
    assert dt["event"] == np.int64 and dt["pid"] == np.int32 and dt["charge"] == np.int8
    assert dt["d0_id"] == np.int64 and dt["n_tracks"] == np.int32 and dt["p_gev"] == np.float64
    pd.testing.assert_frame_equal(a, generator.generate(20, seed=3))
    assert not a.equals(generator.generate(20, seed=4))
    assert (a["pz_gev"] > 0).all()
    assert set(np.abs(a["pid"])) <= {11, 13, 211, 321, 2212}
    # n_tracks is the event's multiplicity; charges follow the PDG sign convention
    assert (a.groupby("event")["n_tracks"].first() == a.groupby("event").size()).all()
    assert (a.loc[a["pid"] == 211, "charge"] == 1).all() and (a.loc[a["pid"] == 13, "charge"] == -1).all()
    assert generator.generate(0, seed=1).empty


def test_generator_d0_daughters_have_the_d0_mass():
    t = generator.generate(200, seed=5)
    d = t[t["d0_id"] >= 0].sort_values(["d0_id", "pid"])
    assert (d.groupby("d0_id").size() == 2).all() and d["d0_id"].nunique() == 200
    e = np.sqrt(d["p_gev"] ** 2 + d["mass_gev"] ** 2).groupby(d["d0_id"]).sum()
    p = d[["px_gev", "py_gev", "pz_gev"]].groupby(d["d0_id"]).sum()
    m = np.sqrt(e ** 2 - (p ** 2).sum(axis=1))
    assert np.abs(m - M_D0_MEV / 1000).max() < 1e-6
    # K and pi of opposite charge, K charge tags the flavour; both from the same (displaced) vertex
    g = d.groupby("d0_id")
    assert (g["charge"].sum() == 0).all()
    assert (g["vz_mm"].nunique() == 1).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"n_events": -1, "seed": 1}, "n_events"),
    ({"n_events": 2.5, "seed": 1}, "n_events"),
    ({"n_events": 3, "seed": -2}, "seed"),
    ({"n_events": 3, "seed": 1, "mean_gun": -1.0}, "mean_gun"),
])
def test_generator_bad_input(kwargs, match):
    with pytest.raises(SimError, match=match):
        generator.generate(**kwargs)


# ---- detector: API -----------------------------------------------------------------------------


def test_detector_columns_and_determinism():
    truth = generator.generate(15, seed=21)
    truth.index = truth.index + 1000  # index and order are kept
    a = detector.simulate(truth, seed=7)
    assert list(a.columns) == list(truth.columns) + list(detector.COLUMNS)
    assert a.index.equals(truth.index)
    pd.testing.assert_frame_equal(a[truth.columns], truth)
    pd.testing.assert_frame_equal(a, detector.simulate(truth, seed=7))
    b = detector.simulate(truth, seed=8)
    assert not a.equals(b)
    assert a["in_acceptance"].dtype == bool and a["is_muon"].dtype == bool
    assert a["track_type"].dtype == np.int8
    reco = a["track_type"] > 0
    assert reco.any() and (~reco).any()
    assert a.loc[reco, "in_acceptance"].all()
    cols = detector.STATE + detector.DERIVED + detector.COVARIANCE + detector.RICH + detector.GPID + ("muon_dll",)
    assert a.loc[reco, list(cols)].notna().all().all()
    assert a.loc[~reco, list(cols)].isna().all().all()
    assert not a.loc[~reco, "is_muon"].any()
    assert (a.loc[reco, "chi2ndof"] <= detector.CHI2NDOF_MAX).all()
    assert (a.loc[reco, list(detector.COVARIANCE[:5])] > 0).all().all()
    assert (a.loc[reco, ["corr_x_tx", "corr_y_ty"]].abs() <= 1).all().all()


def test_detector_bad_input():
    truth = generator.generate(3, seed=1)
    with pytest.raises(SimError, match="lacks column.*pz_gev"):
        detector.simulate(truth.drop(columns=["pz_gev"]), seed=1)
    with pytest.raises(SimError, match="seed"):
        detector.simulate(truth, seed=-1)
    with pytest.raises(SimError, match="DataFrame"):
        detector.simulate(truth.to_dict(), seed=1)
    bad = truth.copy()
    bad.loc[bad.index[0], "pz_gev"] = -1.0
    with pytest.raises(SimError, match="pz_gev > 0"):
        detector.simulate(bad, seed=1)
    bad = truth.copy()
    bad.loc[bad.index[0], "pid"] = 22
    with pytest.raises(SimError, match="unsupported pid 22"):
        detector.simulate(bad, seed=1)
    with pytest.raises(SimError, match="n_events"):
        detector.cost_per_event(n_events=0)


def test_cost_per_event():
    c = detector.cost_per_event(n_events=10, seed=1)
    assert c["n_events"] == 10 and c["n_particles"] > 10
    assert 0 < c["seconds_per_particle"] < c["seconds_per_event"]


# ---- detector: physics -------------------------------------------------------------------------


@pytest.mark.slow
def test_kpi_mass_peak(sample):
    _, d = sample
    dd = d[d["d0_id"] >= 0]
    both_long = dd.groupby("d0_id")["track_type"].transform(lambda t: (t == 1).all())
    dd = dd[both_long]
    k = dd[np.abs(dd["pid"]) == 321].set_index("d0_id").sort_index()
    pi = dd[np.abs(dd["pid"]) == 211].set_index("d0_id").loc[k.index]
    assert len(k) > 80

    def p3(x):
        n = np.sqrt(1 + x["tx"] ** 2 + x["ty"] ** 2)
        return np.stack([x["tx"] / n, x["ty"] / n, 1 / n], axis=1) * x["p_reco_gev"].to_numpy()[:, None]

    pk, ppi = p3(k), p3(pi)
    e = np.sqrt((pk ** 2).sum(1) + 0.493677 ** 2) + np.sqrt((ppi ** 2).sum(1) + 0.13957039 ** 2)
    m = np.sqrt(e ** 2 - ((pk + ppi) ** 2).sum(1)) * 1000
    peak = np.median(m)
    width = 1.4826 * np.median(np.abs(m - peak))
    assert abs(peak - M_D0_MEV) < 3.0
    assert 3.0 < width < 15.0


def test_long_track_momentum_resolution(sample):
    _, d = sample
    lt = d[(d["track_type"] == 1) & (np.abs(d["pid"]) != 11)]  # electrons radiate (brems tails)
    dp = lt["p_reco_gev"] / lt["p_gev"] - 1
    core = 1.4826 * np.median(np.abs(dp - np.median(dp)))
    assert 0.001 < core < 0.012
    assert abs(np.median(dp)) < 0.001
    pull = (lt["qop"] - lt["charge"] / lt["p_gev"]) / lt["sigma_qop"]
    assert 0.8 < 1.4826 * np.median(np.abs(pull)) < 1.25
    # resolution degrades at high momentum (hit resolution) as in IJMPA 30 (2015) 1530022
    lo = lt["p_gev"].between(2, 10)
    hi = lt["p_gev"] > 40
    assert (lt.loc[hi, "sigma_qop"] * lt.loc[hi, "p_gev"]).median() > (lt.loc[lo, "sigma_qop"]
                                                                       * lt.loc[lo, "p_gev"]).median()


def test_acceptance_vs_eta(sample):
    _, d = sample
    acc = d.groupby(pd.cut(d["eta"], [1.5, 1.9, 2.5, 4.0, 5.05, 5.5]), observed=False)["in_acceptance"].mean()
    assert acc.iloc[0] < 0.4
    assert acc.iloc[2] > 0.95
    assert acc.iloc[4] < 0.05
    assert not d.loc[~d["in_acceptance"], "track_type"].any()


def test_low_momentum_particles_are_not_long(sample):
    _, d = sample
    acc = d[d["in_acceptance"]]
    frac = lambda m: (acc.loc[m, "track_type"] == 1).mean()  # noqa: E731
    assert (acc.loc[acc["p_gev"] < 1.2, "track_type"] != 1).all()
    assert frac(acc["p_gev"] < 2) < 0.5 * frac(acc["p_gev"] > 5)
    # low-momentum particles bent out of the T stations are upstream tracks
    assert (acc.loc[acc["p_gev"] < 1.2, "track_type"] == 2).mean() > 0.5


def test_muon_identification():
    mu = detector.simulate(_gun(13, 250, (10, 60), seed=1), seed=2)
    pi = detector.simulate(_gun(211, 400, (10, 60), seed=3), seed=4)
    sel = lambda d: d[(d["track_type"] == 1) & d["in_muon_acceptance"]]  # noqa: E731
    m, p = sel(mu), sel(pi)
    assert len(m) > 150 and len(p) > 250
    assert m["is_muon"].mean() > 0.9
    assert p["is_muon"].mean() < 0.1
    assert m["muon_dll"].median() > 0 > p["muon_dll"].median()


def test_rich_kaon_pion_separation():
    k = detector.simulate(_gun(321, 300, (10, 60), seed=5), seed=6)
    pi = detector.simulate(_gun(211, 300, (10, 60), seed=7), seed=8)
    k, pi = k[k["track_type"] == 1], pi[pi["track_type"] == 1]
    assert k["rich_dll_k"].mean() > 0 > pi["rich_dll_k"].mean()
    assert (k["rich_dll_k"] > 0).mean() > 0.8 and (pi["rich_dll_k"] < 0).mean() > 0.8
    assert (k["pid_k"] == k["rich_dll_k"]).all()
