"""Lamarr's pipeline of parameterizations: the networks that replace the detailed detector simulation.

Source: "The LHCb ultra-fast simulation option, Lamarr: design and validation" (Anderlini et al.,
EPJ Web Conf. 295 (2024) 03040, arXiv 2309.13213) and "Lamarr: LHCb ultra-fast simulation based on
machine learning models deployed within Gauss" (arXiv 2303.11428).  From them: the modules and their
order (geometrical acceptance -> tracking efficiency -> resolution -> covariance -> PID: isMuon,
RICH, muon, global PID), classifiers (NN) for the efficiencies, conditional GANs for the
resolutions and the PID likelihoods, everything conditioned on generator-level kinematics and the
particle's true species, run per particle and batched.  Written from those descriptions; the layer
widths, latent sizes and features below are this project's choices (the papers give no single
architecture for all modules).

A particle flows through the stages in order; each stage sees only the particles the previous one
kept (acceptance -> tracking: accepted; resolution and later: reconstructed tracks):

=============  ==========  =====================================================  =====================
stage          kind        condition (generator-level truth unless said)           output
=============  ==========  =====================================================  =====================
acceptance     classifier  log10 p, eta, cos/sin phi, charge, vz                  P(in acceptance)
tracking       classifier  + log10 nTracks                                        P(not reco / long /
                                                                                  upstream / downstream)
resolution     cGAN        + track type                                           reco - true state
                                                                                  (x, y, tx, ty, q/p)
covariance     cGAN        same                                                   7 covariance terms
ismuon         classifier  log10 p, eta, log10 nTracks, species, track type       P(isMuon)
rich           cGAN        same                                                   4 RICH DLLs
muon           cGAN        + isMuon                                               muon DLL
gpid           cGAN        + the RICH DLLs and the muon DLL (generated above)     4 global PID DLLs
=============  ==========  =====================================================  =====================

Inputs are standardized inside each network (stored means and widths).  A GAN's targets are
Gaussianized per variable by a stored quantile map (:class:`QuantileMap`): the generator learns in
that space and :meth:`QuantileMap.inverse` maps its output back (monotone, piecewise linear; point
masses such as a DLL of exactly 0 below every Cherenkov threshold come back as point masses).
The maps are post-processing on the host, not part of the networks the hardware targets run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from numba import njit

from models.errors import SimError

SPECIES = (11, 13, 211, 321, 2212)  # |PDG id| of the one-hot species columns: e, mu, pi, K, p
TRACK_TYPES = (1, 2, 3)  # long, upstream, downstream (0: not reconstructed)
N_KNOTS = 513  # quantile-map knots per variable

# The stage's feature groups; each a function of the particle frame (truth + earlier stages).
_KIN = ("logp", "eta", "cosphi", "sinphi", "charge", "vz")
_PIDC = ("logp", "eta", "logntr", "species", "type")


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str  # "classifier" or "gan"
    features: tuple[str, ...]
    outputs: tuple[str, ...]  # detector columns the stage produces (classifiers: the classes)
    hidden: tuple[int, ...]
    latent: int = 0  # GAN noise dimensions


# Targets of the resolution GAN: reconstructed minus true state at z = 0, and q/p relative.
RESOLUTION_VARS = ("dx_mm", "dy_mm", "dtx", "dty", "dqop_rel")
COVARIANCE_VARS = ("log_sigma_x", "log_sigma_y", "log_sigma_tx", "log_sigma_ty", "log_sigma_qop_rel",
                   "corr_x_tx", "corr_y_ty")
RICH_VARS = ("rich_dll_e", "rich_dll_mu", "rich_dll_k", "rich_dll_p")
MUON_VARS = ("muon_dll",)
GPID_VARS = ("pid_e", "pid_mu", "pid_k", "pid_p")

STAGES: tuple[Stage, ...] = (
    Stage("acceptance", "classifier", _KIN, ("in_acceptance",), (64, 64, 64)),
    Stage("tracking", "classifier", _KIN + ("logntr",), ("not_reco", "long", "upstream", "downstream"),
          (64, 64, 64)),
    Stage("resolution", "gan", _KIN + ("logntr", "type"), RESOLUTION_VARS, (128, 128, 128), latent=16),
    Stage("covariance", "gan", _KIN + ("logntr", "type"), COVARIANCE_VARS, (128, 128, 128), latent=16),
    Stage("ismuon", "classifier", _PIDC, ("is_muon",), (64, 64, 64)),
    Stage("rich", "gan", _PIDC, RICH_VARS, (128, 128, 128), latent=16),
    Stage("muon", "gan", _PIDC + ("is_muon",), MUON_VARS, (128, 128, 128), latent=16),
    Stage("gpid", "gan", _PIDC + ("is_muon", "rich", "muon"), GPID_VARS, (128, 128, 128), latent=16),
)
STAGE = {s.name: s for s in STAGES}
_WIDTH = {"species": len(SPECIES), "type": len(TRACK_TYPES), "rich": len(RICH_VARS), "muon": 1}


def n_features(stage: Stage) -> int:
    return sum(_WIDTH.get(f, 1) for f in stage.features)


def n_outputs(stage: Stage) -> int:
    return 1 if stage.outputs == ("in_acceptance",) or stage.outputs == ("is_muon",) else len(stage.outputs)


def feature_matrix(df, stage: Stage) -> np.ndarray:
    """The stage's condition features of every row of ``df`` (float32, not yet standardized).

    ``df`` (a DataFrame or a mapping of column arrays) holds the generator columns (``p_gev, eta,
    phi, charge, vz_mm, n_tracks, pid``) and, for later stages, ``track_type``, ``is_muon`` and the
    generated RICH and muon DLLs."""

    def col(name):
        return np.asarray(df[name])

    cols = []
    for f in stage.features:
        try:
            if f == "logp":
                cols.append(np.log10(col("p_gev")))
            elif f in ("eta", "charge", "is_muon"):
                cols.append(col(f))
            elif f == "cosphi":
                cols.append(np.cos(col("phi")))
            elif f == "sinphi":
                cols.append(np.sin(col("phi")))
            elif f == "vz":
                cols.append(col("vz_mm"))
            elif f == "logntr":
                cols.append(np.log10(np.maximum(col("n_tracks"), 1)))
            elif f == "species":
                a = np.abs(col("pid"))
                cols.extend(a == s for s in SPECIES)
            elif f == "type":
                t = col("track_type")
                cols.extend(t == k for k in TRACK_TYPES)
            elif f == "rich":
                cols.extend(col(c) for c in RICH_VARS)
            elif f == "muon":
                cols.append(col("muon_dll"))
            else:  # pragma: no cover - the table above is the only source of names
                raise KeyError(f)
        except KeyError as e:
            raise SimError(f"Lamarr stage {stage.name!r} needs column {e.args[0]!r} in the particle table") from None
    if not cols:
        return np.zeros((len(df), 0), np.float32)
    out = np.empty((len(cols[0]), len(cols)), np.float32)
    for j, c in enumerate(cols):
        out[:, j] = c
    return out


class Mlp(nn.Module):
    """Standardize, then dense layers with LeakyReLU; a linear output (logits or a GAN sample)."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], n_out: int):
        super().__init__()
        self.register_buffer("in_mean", torch.zeros(n_in))
        self.register_buffer("in_std", torch.ones(n_in))
        layers: list[nn.Module] = []
        w = n_in
        for h in hidden:
            layers += [nn.Linear(w, h), nn.LeakyReLU(0.1)]
            w = h
        layers.append(nn.Linear(w, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.in_mean) / self.in_std)


class Generator(nn.Module):
    """A conditional GAN's generator: standardized condition + latent noise -> Gaussianized sample."""

    def __init__(self, n_cond: int, latent: int, hidden: tuple[int, ...], n_out: int):
        super().__init__()
        self.latent = latent
        self.register_buffer("in_mean", torch.zeros(n_cond))
        self.register_buffer("in_std", torch.ones(n_cond))
        layers: list[nn.Module] = []
        w = n_cond + latent
        for h in hidden:
            layers += [nn.Linear(w, h), nn.LeakyReLU(0.1)]
            w = h
        layers.append(nn.Linear(w, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([(cond - self.in_mean) / self.in_std, noise], dim=1))


class QuantileMap(nn.Module):
    """Per-variable monotone map between data and a standard normal (stored knots, no parameters)."""

    def __init__(self, n_vars: int, n_knots: int = N_KNOTS):
        super().__init__()
        self.register_buffer("knots", torch.zeros(n_vars, n_knots))

    @staticmethod
    def levels(n_knots: int = N_KNOTS) -> np.ndarray:
        from scipy.special import ndtri

        u = np.linspace(0.0, 1.0, n_knots)
        u[0], u[-1] = 0.5 / 1e6, 1 - 0.5 / 1e6  # the tails: a million-event sample's extreme quantiles
        return ndtri(u)

    def fit(self, y: np.ndarray) -> None:
        u = np.linspace(0.0, 1.0, self.knots.shape[1])
        self.knots.copy_(torch.from_numpy(np.quantile(y, u, axis=0).T.astype(np.float32)))

    def forward_np(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Data -> normal by ranks (ties broken at random, so point masses spread over their share)."""
        from scipy.special import ndtri

        n = len(y)
        z = np.empty(y.shape, np.float64)
        for j in range(y.shape[1]):
            order = np.lexsort((rng.random(n), y[:, j]))
            ranks = np.empty(n)
            ranks[order] = np.arange(n)
            z[:, j] = ndtri((ranks + 0.5) / n)
        return z

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Normal -> data: per variable, linear interpolation between the knots at :meth:`levels`
        (``np.interp``'s result, clamped at the ends), by a compiled table lookup."""
        lv = self.levels(self.knots.shape[1])
        lo, width, table = _bin_table(lv)
        out = np.empty(z.shape, np.float64)
        _interp_knots(np.ascontiguousarray(z, np.float64), lv, self.knots.double().numpy(), lo, width, table, out)
        return out


_TABLE_CELLS = 8192
_TABLES: dict = {}


def _bin_table(lv: np.ndarray) -> tuple[float, float, np.ndarray]:
    """A uniform grid over the inner levels, each cell holding the knot interval its left edge lies
    in (the cells are narrower than any interval, so a lookup is at most a step away)."""
    key = (len(lv), float(lv[1]))
    if key not in _TABLES:
        lo, hi = float(lv[0]), float(lv[-1])
        width = (hi - lo) / _TABLE_CELLS
        edges = lo + width * np.arange(_TABLE_CELLS)
        _TABLES[key] = lo, width, np.clip(np.searchsorted(lv, edges, side="right") - 1, 0, len(lv) - 2)
    return _TABLES[key]


@njit(cache=True)
def _interp_knots(z, lv, knots, lo, width, table, out):  # pragma: no cover - compiled
    n_lv = lv.shape[0]
    for i in range(z.shape[0]):
        for v in range(z.shape[1]):
            x = z[i, v]
            k = knots[v]
            if not x > lv[0]:  # below the first level (or NaN): np.interp's left value
                out[i, v] = k[0] if x == x else x
                continue
            if x >= lv[n_lv - 1]:
                out[i, v] = k[n_lv - 1]
                continue
            c = int((x - lo) / width)
            j = table[min(max(c, 0), table.shape[0] - 1)]
            while j < n_lv - 2 and x >= lv[j + 1]:
                j += 1
            while j > 0 and x < lv[j]:
                j -= 1
            t = (x - lv[j]) / (lv[j + 1] - lv[j])
            out[i, v] = k[j] + t * (k[j + 1] - k[j])


class Pipeline(nn.Module):
    """All stages of the Lamarr pipeline (classifiers as :class:`Mlp`, GANs as :class:`Generator`
    with their :class:`QuantileMap`)."""

    def __init__(self):
        super().__init__()
        self.nets = nn.ModuleDict()
        self.maps = nn.ModuleDict()
        for s in STAGES:
            if s.kind == "classifier":
                self.nets[s.name] = Mlp(n_features(s), s.hidden, n_outputs(s))
            else:
                self.nets[s.name] = Generator(n_features(s), s.latent, s.hidden, n_outputs(s))
                self.maps[s.name] = QuantileMap(n_outputs(s))

    def trace_run(self, input_ids: torch.Tensor, phase: str) -> tuple[torch.Tensor, ...]:
        """The tracer's entry: every stage over ``input_ids.shape[0] * shape[1]`` particles."""
        return run_stages(self.nets, [s.name for s in STAGES], input_ids.shape[0] * input_ids.shape[1])


def run_stages(modules: nn.ModuleDict, names, n: int) -> tuple[torch.Tensor, ...]:
    """One batched pass of the named stages over ``n`` particles, in pipeline order, on zero inputs
    in the networks' dtype and device (shapes only: what a trace needs).  The conditions are built
    on the host from the particle table and earlier stages' outputs; a GAN also takes its noise."""
    w = next(modules.parameters())
    outs = []
    for name in names:
        st = STAGE[name]
        cond = torch.zeros((n, n_features(st)), dtype=w.dtype, device=w.device)
        if st.kind == "classifier":
            outs.append(modules[name](cond))
        else:
            outs.append(modules[name](cond, torch.zeros((n, st.latent), dtype=w.dtype, device=w.device)))
    return tuple(outs)


def new_pipeline(dtype: torch.dtype = torch.float32, device: str = "cpu") -> Pipeline:
    with torch.device(device):
        p = Pipeline()
    return p.to(dtype).eval()
