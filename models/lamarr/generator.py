"""Generator-level events for the LHCb-like simulation: one particle table, one row per charged particle.

Each event is one D0 -> K- pi+ decay (or its conjugate D0bar -> K+ pi-, 50/50) plus a Poisson number
(mean ``mean_gun``) of prompt "particle gun" / underlying-event particles from the primary vertex.

Spectra and constants (GeV, mm):

- Masses and lifetimes: PDG 2024 (Review of Particle Physics, Phys. Rev. D 110 (2024) 030001):
  m(D0) = 1.86484, m(K) = 0.493677, m(pi) = 0.13957039, m(mu) = 0.1056584, m(p) = 0.93827209,
  m(e) = 0.00051099895 GeV; c*tau(D0) = 122.9 um.
- Prompt particles: Levy-Tsallis transverse-momentum spectrum
  dN/dpT ~ pT (1 + (mT - m)/(n T))^-n with T = 0.13 GeV, n = 7.0 for every species, within the
  range of the Levy-Tsallis fits to identified pp spectra (ALICE, Eur. Phys. J. C 71 (2011) 1655,
  Table 4: T ~ 0.12-0.18 GeV, n ~ 6-8); our single (T, n) is a choice.  Pseudorapidity flat in
  1.5 < eta < 5.5 (wider than the LHCb acceptance 2 < eta < 5, so the acceptance matters), phi flat.
- Gun species mix, enriched for PID studies (a choice, not a measured composition):
  pi 0.70, K 0.14, p 0.07, mu 0.04, e 0.05; charge +/- 50/50.
- D0: dsigma/dpT ~ pT / (1 + (pT/p0)^2)^n with p0 = 2.8 GeV, n = 3.0 on 0 < pT < 15 GeV and
  rapidity flat in 2 < y < 4.5 -- the kinematic range of the LHCb prompt-charm measurement at
  13 TeV (JHEP 03 (2016) 159), whose measured pT spectrum this shape follows (mean pT ~ 2 GeV);
  p0 and n are our by-eye choice, an assumption.  Isotropic two-body decay in the D0 rest frame.
  The D0 flies an exponential distance (c*tau = 122.9 um, boosted) before decaying; the decay
  angle is redrawn until both daughters go forward (pz > 0), a negligible conditioning.
- Primary vertex: Gaussian luminous region, sigma_x = sigma_y = 0.040 mm, sigma_z = 45 mm centred
  at 0 -- LHCb-like Run 2 values, an assumption.

Columns: ``event, pid, charge, mass_gev, d0_id, vx_mm, vy_mm, vz_mm, px_gev, py_gev, pz_gev, p_gev,
pt_gev, eta, phi, n_tracks`` (see :data:`COLUMNS`).  ``pid`` is the signed PDG code (11 = e-,
13 = mu-, 211 = pi+, 321 = K+, 2212 = p); ``n_tracks`` is the event's generated charged multiplicity.
The same ``(n_events, seed, mean_gun)`` give the same frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.errors import SimError

# PDG 2024 masses (GeV) and c*tau (mm)
M_D0_GEV = 1.86484
M_K_GEV = 0.493677
M_PI_GEV = 0.13957039
M_MU_GEV = 0.1056583755
M_P_GEV = 0.93827208816
M_E_GEV = 0.00051099895
CTAU_D0_MM = 0.1229

MASS_GEV = {11: M_E_GEV, 13: M_MU_GEV, 211: M_PI_GEV, 321: M_K_GEV, 2212: M_P_GEV}

# Gun composition (a choice: enriched in K, p, mu, e for PID studies)
GUN_SPECIES = (211, 321, 2212, 13, 11)
GUN_FRACTIONS = (0.70, 0.14, 0.07, 0.04, 0.05)

# Levy-Tsallis parameters (choice within ALICE EPJC 71 (2011) 1655 Table 4 ranges)
TSALLIS_T_GEV = 0.13
TSALLIS_N = 7.0
ETA_RANGE = (1.5, 5.5)

# D0 spectrum shape (follows LHCb JHEP 03 (2016) 159; parameters an assumption)
D0_P0_GEV = 2.8
D0_N = 3.0
D0_PT_MAX_GEV = 15.0
D0_Y_RANGE = (2.0, 4.5)

# Luminous region (assumption, LHCb-like)
BEAM_SIGMA_XY_MM = 0.040
BEAM_SIGMA_Z_MM = 45.0

COLUMNS = ("event", "pid", "charge", "mass_gev", "d0_id", "vx_mm", "vy_mm", "vz_mm", "px_gev", "py_gev",
           "pz_gev", "p_gev", "pt_gev", "eta", "phi", "n_tracks")


def charge_of(pid: np.ndarray) -> np.ndarray:
    """Electric charge of signed PDG codes (leptons: positive code = negative charge)."""
    pid = np.asarray(pid)
    s = np.sign(pid)
    lepton = np.isin(np.abs(pid), (11, 13))
    return np.where(lepton, -s, s).astype(np.int8)


def _tsallis_cdf(mass: float):
    """Grid (pT, CDF) of the Levy-Tsallis spectrum for one mass; inverse-CDF sampling."""
    pt = np.linspace(0.0, 30.0, 30001)
    mt = np.sqrt(pt * pt + mass * mass)
    f = pt * (1.0 + (mt - mass) / (TSALLIS_N * TSALLIS_T_GEV)) ** (-TSALLIS_N)
    c = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(pt))])
    return pt, c / c[-1]


_CDF = {abs_pid: _tsallis_cdf(m) for abs_pid, m in MASS_GEV.items()}


def _d0_pt(u: np.ndarray) -> np.ndarray:
    """Inverse CDF of pT / (1 + (pT/p0)^2)^n on [0, pT_max]."""
    a = 1.0 - D0_N
    fmax = 1.0 - (1.0 + (D0_PT_MAX_GEV / D0_P0_GEV) ** 2) ** a
    return D0_P0_GEV * np.sqrt((1.0 - u * fmax) ** (1.0 / a) - 1.0)


def _two_body_pstar(m: float, m1: float, m2: float) -> float:
    return float(np.sqrt((m * m - (m1 + m2) ** 2) * (m * m - (m1 - m2) ** 2)) / (2.0 * m))


def generate(n_events: int, seed: int, mean_gun: float = 20.0) -> pd.DataFrame:
    """Generate ``n_events`` events (see the module docstring); one row per charged particle."""
    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 0:
        raise SimError(f"generate: n_events must be a non-negative integer, got {n_events!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SimError(f"generate: seed must be a non-negative integer, got {seed!r}")
    if not np.isfinite(mean_gun) or mean_gun < 0:
        raise SimError(f"generate: mean_gun must be a finite number >= 0, got {mean_gun!r}")
    rng = np.random.default_rng(int(seed))
    n_events = int(n_events)

    # ---- primary vertices
    pv = np.stack([rng.normal(0.0, BEAM_SIGMA_XY_MM, n_events), rng.normal(0.0, BEAM_SIGMA_XY_MM, n_events),
                   rng.normal(0.0, BEAM_SIGMA_Z_MM, n_events)], axis=1)

    # ---- D0 -> K pi
    is_bar = rng.random(n_events) < 0.5
    d_pt = _d0_pt(rng.random(n_events))
    d_y = rng.uniform(*D0_Y_RANGE, n_events)
    d_phi = rng.uniform(-np.pi, np.pi, n_events)
    d_mt = np.sqrt(d_pt ** 2 + M_D0_GEV ** 2)
    d_p4 = np.stack([d_mt * np.cosh(d_y), d_pt * np.cos(d_phi), d_pt * np.sin(d_phi), d_mt * np.sinh(d_y)], axis=1)
    d_pabs = np.linalg.norm(d_p4[:, 1:], axis=1)
    flight = rng.exponential(CTAU_D0_MM, n_events) * d_pabs / M_D0_GEV
    dv = pv + flight[:, None] * d_p4[:, 1:] / d_pabs[:, None]
    pstar = _two_body_pstar(M_D0_GEV, M_K_GEV, M_PI_GEV)
    e_k, e_pi = np.sqrt(pstar ** 2 + M_K_GEV ** 2), np.sqrt(pstar ** 2 + M_PI_GEV ** 2)
    beta = d_p4[:, 1:] / d_p4[:, :1]
    gamma = d_p4[:, 0] / M_D0_GEV
    p_k = np.zeros((n_events, 3))
    p_pi = np.zeros((n_events, 3))
    todo = np.arange(n_events)
    while todo.size:  # redraw decays with a backward daughter (negligible conditioning)
        cth = rng.uniform(-1.0, 1.0, todo.size)
        phs = rng.uniform(-np.pi, np.pi, todo.size)
        sth = np.sqrt(1.0 - cth * cth)
        n = np.stack([sth * np.cos(phs), sth * np.sin(phs), cth], axis=1)
        b, g = beta[todo], gamma[todo]
        b2 = np.sum(b * b, axis=1)
        for sign, e_star, out in ((1.0, e_k, p_k), (-1.0, e_pi, p_pi)):
            q = sign * pstar * n
            bq = np.sum(b * q, axis=1)
            coef = (g - 1.0) * bq / np.where(b2 > 0, b2, 1.0) + g * e_star
            out[todo] = q + coef[:, None] * b
        todo = todo[(p_k[todo, 2] <= 0) | (p_pi[todo, 2] <= 0)]
    k_pid = np.where(is_bar, 321, -321)
    pi_pid = np.where(is_bar, -211, 211)

    # ---- gun particles
    n_gun = rng.poisson(mean_gun, n_events)
    n_g = int(n_gun.sum())
    g_event = np.repeat(np.arange(n_events), n_gun)
    species = np.asarray(GUN_SPECIES)[rng.choice(len(GUN_SPECIES), size=n_g, p=GUN_FRACTIONS)]
    sign = np.where(rng.random(n_g) < 0.5, 1, -1)
    u = rng.random(n_g)
    g_pt = np.empty(n_g)
    for s in GUN_SPECIES:
        m = species == s
        grid, cdf = _CDF[s]
        g_pt[m] = np.interp(u[m], cdf, grid)
    g_eta = rng.uniform(*ETA_RANGE, n_g)
    g_phi = rng.uniform(-np.pi, np.pi, n_g)
    g_p = np.stack([g_pt * np.cos(g_phi), g_pt * np.sin(g_phi), g_pt * np.sinh(g_eta)], axis=1)

    # ---- assemble: per event, the two D0 daughters then the gun particles
    ev = np.concatenate([np.arange(n_events), np.arange(n_events), g_event])
    order = np.argsort(np.concatenate([np.zeros(n_events), np.ones(n_events), np.full(n_g, 2.0)])
                       + 3.0 * ev, kind="stable")
    pid = np.concatenate([k_pid, pi_pid, species * sign]).astype(np.int32)[order]
    mom = np.concatenate([p_k, p_pi, g_p])[order]
    vtx = np.concatenate([dv, dv, pv[g_event]])[order]
    d0 = np.concatenate([np.arange(n_events), np.arange(n_events), np.full(n_g, -1)]).astype(np.int64)[order]
    ev = ev.astype(np.int64)[order]
    n_tracks = (2 + n_gun).astype(np.int32)[ev]
    px, py, pz = mom[:, 0], mom[:, 1], mom[:, 2]
    pt = np.hypot(px, py)
    p = np.sqrt(pt * pt + pz * pz)
    df = pd.DataFrame({
        "event": ev,
        "pid": pid,
        "charge": charge_of(pid),
        "mass_gev": np.array([MASS_GEV[abs(int(c))] for c in (11, 13, 211, 321, 2212)])[
            np.searchsorted(np.array([11, 13, 211, 321, 2212]), np.abs(pid))],
        "d0_id": d0,
        "vx_mm": vtx[:, 0], "vy_mm": vtx[:, 1], "vz_mm": vtx[:, 2],
        "px_gev": px, "py_gev": py, "pz_gev": pz,
        "p_gev": p, "pt_gev": pt,
        "eta": np.arcsinh(pz / np.where(pt > 0, pt, 1e-12)),
        "phi": np.arctan2(py, px),
        "n_tracks": n_tracks,
    })
    return df
