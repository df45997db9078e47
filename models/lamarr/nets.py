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
kept (acceptance -> tracking: accepted; resolution and later: reconstructed tracks; the muon stages
``ismuon``, ``muon_signs`` and ``muon``: the reconstructed tracks the muon identification runs on,
long and downstream tracks with a reconstructed momentum above 3 GeV, as in the detailed simulation;
on the others isMuon is false and the muon DLL 0 by definition, see
:func:`models.lamarr.fastsim.muon_preselected`):

=============  ==========  =====================================================  =====================
stage          kind        condition (generator-level truth unless said)           output
=============  ==========  =====================================================  =====================
acceptance     classifier  log10 p, eta, cos/sin phi, charge, vz                  P(in acceptance)
tracking       classifier  + log10 nTracks, species                               P(not reco / long /
                                                                                  upstream / downstream)
resolution     cGAN        + track type                                           reco - true state
                                                                                  (x, y, tx, ty, q/p)
covariance     cGAN        same                                                   7 covariance terms
ismuon         classifier  log10 p, eta, log10 nTracks, species, track type       P(isMuon)
rich_signs     classifier  same                                                   each RICH DLL 0, < 0 or
                                                                                  > 0 (81 classes)
rich           cGAN        same + the sign pattern                                |4 RICH DLLs|
muon_signs     classifier  ismuon's + isMuon                                      muon DLL < 0 or > 0
muon           cGAN        same + the sign pattern                                |muon DLL|
gpid_signs     classifier  muon's + the RICH DLLs and the muon DLL (generated)    signs of the corrections
gpid           cGAN        same + the sign pattern                                |4 global PID DLLs minus
                                                                                  the RICH (+ muon) DLLs|
=============  ==========  =====================================================  =====================

Inputs are standardized inside each network (stored means and widths).  A GAN's targets are
Gaussianized per variable by a stored quantile map (:class:`QuantileMap`): the generator learns in
that space and :meth:`QuantileMap.inverse` maps its output back (monotone, piecewise linear).  The
maps are post-processing on the host, not part of the networks the hardware targets run.

The PID stages are two-part (hurdle) models: a ``<stage>_signs`` classifier samples, per particle,
whether each of the stage's variables is exactly 0, negative or positive (one class per pattern,
3^k of them), and the GAN, conditioned on that pattern, generates the magnitudes (through a
quantile map per sign, :class:`QuantileMap`); the pattern's signs and zeros are applied after it.  The zeros
are point masses a GAN cannot place (a DLL below every Cherenkov threshold of the hypotheses it
compares, a track no radiator or muon station saw: a third of all RICH DLLs; a GAN left to place
them put 25-33% of 50-100 GeV kaons and pions at DLLK = 0 where the detailed simulation has 7%, on
this project's first pipeline).  The signs are the PID decision (which hypothesis the likelihoods
favour), a probability per momentum bin a classifier calibrates well and a GAN did not: on its own
the RICH GAN missed the 1% of 3-7 GeV pions with DLLK > 0 (a separate mode: a pion that decayed in
flight, its ring at the wrong angle) and gave 50-100 GeV pions DLLK > 0 three times too often,
with run-to-run swings between trainings as large as that error.  The magnitudes, and so cuts away
from 0, stay the GAN's: the validation reports DLLK > 5 and DLLK > -5 beside DLLK > 0.

The global-PID GAN generates what the global PID adds to the sub-detectors' combination
(:func:`models.lamarr.fastsim.gpid_base`: the RICH DLLs, plus the muon DLL for the muon hypothesis),
not the global DLLs themselves: a GAN that has to reproduce its conditions as outputs adds noise to
them (it turned 6.7% of 2-3 GeV pions with RICH DLLK > 0 into 4.5% with global DLLK > 0).  In this
detector the correction is exactly 0 (no calorimeter PID), so the sign pattern says "all zero" and
the stage passes the combination through; a detector with more PID inputs would give it work.
"""

from __future__ import annotations

import functools
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

_SIGN_SYMBOLS = "0-+"  # a variable's state in a sign pattern: 0 exactly 0, 1 negative, 2 positive


def _sign_classes(variables: tuple[str, ...]) -> tuple[str, ...]:
    """Class names of a sign-pattern classifier: class ``sum_j state_j 3**j`` (state 0: variable j
    is exactly 0, 1: negative, 2: positive), e.g. ``sign:rich_dll_e+,rich_dll_mu0,...``."""
    k = len(variables)
    return tuple("sign:" + ",".join(v + _SIGN_SYMBOLS[c // 3 ** j % 3] for j, v in enumerate(variables))
                 for c in range(3 ** k))


def sign_states(pattern: np.ndarray, k: int) -> np.ndarray:
    """(n, k) states (0: zero, 1: negative, 2: positive) of the class indices ``pattern``."""
    return _state_table(k)[np.asarray(pattern, np.int64) % 3 ** k]


@functools.lru_cache(maxsize=None)
def _state_table(k: int) -> np.ndarray:
    """Every class's states, (3**k, k): a lookup instead of k integer divisions per row."""
    return np.arange(3 ** k)[:, None] // 3 ** np.arange(k) % 3


def sign_pattern(y: np.ndarray) -> np.ndarray:
    """The class index of each row's sign pattern (see :func:`_sign_classes`)."""
    y = np.asarray(y)
    states = np.where(y == 0, 0, np.where(y < 0, 1, 2))
    return (states @ 3 ** np.arange(y.shape[1])).astype(np.int64)


def apply_signs(magnitude: np.ndarray, pattern: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
    """``magnitude`` (>= 0) with each row's pattern applied: 0, minus or plus (in place; returned).
    ``states``: the pattern's :func:`sign_states`, when the caller has them already."""
    st = sign_states(pattern, magnitude.shape[1]) if states is None else states
    magnitude *= np.array([0.0, -1.0, 1.0])[st]
    return magnitude


STAGES: tuple[Stage, ...] = (
    Stage("acceptance", "classifier", _KIN, ("in_acceptance",), (64, 64, 64)),
    Stage("tracking", "classifier", _KIN + ("logntr", "species"), ("not_reco", "long", "upstream", "downstream"),
          (64, 64, 64)),
    Stage("resolution", "gan", _KIN + ("logntr", "species", "type"), RESOLUTION_VARS, (128, 128, 128), latent=16),
    Stage("covariance", "gan", _KIN + ("logntr", "species", "type"), COVARIANCE_VARS, (128, 128, 128), latent=16),
    Stage("ismuon", "classifier", _PIDC, ("is_muon",), (64, 64, 64)),
    Stage("rich_signs", "classifier", _PIDC, _sign_classes(RICH_VARS), (64, 64, 64)),
    Stage("rich", "gan", _PIDC + ("rich_signs",), RICH_VARS, (128, 128, 128), latent=16),
    Stage("muon_signs", "classifier", _PIDC + ("is_muon",), _sign_classes(MUON_VARS), (64, 64, 64)),
    # one variable: 64-wide layers validate as the 128-wide did (muon DLL median KS 0.017 against 0.016, 5 seeds)
    Stage("muon", "gan", _PIDC + ("is_muon", "muon_signs"), MUON_VARS, (64, 64, 64), latent=16),
    Stage("gpid_signs", "classifier", _PIDC + ("is_muon", "rich", "muon"), _sign_classes(GPID_VARS), (64, 64, 64)),
    Stage("gpid", "gan", _PIDC + ("is_muon", "rich", "muon", "gpid_signs"), GPID_VARS, (128, 128, 128), latent=16),
)
STAGE = {s.name: s for s in STAGES}
# the stages that see only the muon preselection's tracks (models.lamarr.fastsim.muon_preselected:
# long and downstream tracks above 3 GeV), not every reconstructed track
MUON_STAGES = ("ismuon", "muon_signs", "muon")
SIGNS = {s.name: s.name + "_signs" for s in STAGES if s.name + "_signs" in {t.name for t in STAGES}}
# a GAN's condition holds its sign pattern as two flags per variable (exactly 0; negative)
_WIDTH = {"species": len(SPECIES), "type": len(TRACK_TYPES), "rich": len(RICH_VARS), "muon": 1,
          **{z: 2 * len(STAGE[g].outputs) for g, z in SIGNS.items()}}


def n_features(stage: Stage) -> int:
    return sum(_WIDTH.get(f, 1) for f in stage.features)


def n_outputs(stage: Stage) -> int:
    return 1 if stage.outputs == ("in_acceptance",) or stage.outputs == ("is_muon",) else len(stage.outputs)


def feature_matrix(df, stage: Stage, cache: dict | None = None, rows: np.ndarray | None = None,
                   noise: torch.Tensor | None = None) -> np.ndarray:
    """The stage's condition features of every row of ``df`` (float32, not yet standardized), (n,
    :func:`n_features`), or (n, n_features + latent) with a GAN's ``noise`` appended.

    ``df`` (a DataFrame or a mapping of column arrays) holds the generator columns (``p_gev, eta,
    phi, charge, vz_mm, n_tracks, pid``) and, for later stages, ``track_type``, ``is_muon``, the
    generated RICH and muon DLLs and the sign patterns.  ``cache``: a dict kept with one particle
    table, which receives each feature group the first time a stage needs it and hands it to every
    later stage (stages share most of their conditions: log10 p alone feeds all eleven); a column
    must not change once a group made from it is cached.  ``rows``: only these rows of ``df``
    (the cached groups stay whole)."""
    groups = []
    for f in stage.features:
        g = None if cache is None else cache.get(f)
        if g is None:
            g = _feature_group(df, f, stage)
            if cache is not None:
                cache[f] = g
        groups.append(torch.from_numpy(g if rows is None else g[rows]))
    if noise is not None:
        groups.append(noise)
    return torch.cat(groups, dim=1).numpy()


def _feature_group(df, f: str, stage: Stage) -> np.ndarray:
    """One feature group of every row of ``df``: (n, width) float32."""

    def col(name):
        return np.asarray(df[name])

    try:
        if f == "logp":
            g = np.log10(col("p_gev"))
        elif f in ("eta", "charge", "is_muon"):
            g = col(f)
        elif f == "cosphi":
            g = np.cos(col("phi"))
        elif f == "sinphi":
            g = np.sin(col("phi"))
        elif f == "vz":
            g = col("vz_mm")
        elif f == "logntr":
            g = np.log10(np.maximum(col("n_tracks"), 1))
        elif f == "species":
            g = np.abs(col("pid"))[:, None] == np.array(SPECIES)
        elif f == "type":
            g = col("track_type")[:, None] == np.array(TRACK_TYPES)
        elif f == "rich":
            g = np.stack([col(c) for c in RICH_VARS], axis=1)
        elif f == "muon":
            g = col("muon_dll")
        elif f in _WIDTH and f.endswith("_signs"):  # the pattern: per variable, 0? and < 0?
            st = sign_states(col(f), _WIDTH[f] // 2)
            g = np.concatenate([st == 0, st == 1], axis=1)
        else:  # pragma: no cover - the table above is the only source of names
            raise KeyError(f)
    except KeyError as e:
        raise SimError(f"Lamarr stage {stage.name!r} needs column {e.args[0]!r} in the particle table") from None
    return np.ascontiguousarray(g.reshape(len(g), -1), np.float32)


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
    """Per-variable monotone map between data and a standard normal (stored knots, no parameters).

    A hurdle stage's map is *signed*: its exact zeros are sampled apart (by the stage's sign
    classifier), and the positive values and the magnitudes of the negative ones get a map each
    (``knots``, ``neg_knots``).  One map of all magnitudes would put a muon's DLL of +18 and a
    pion's of -18 on one knot: the muon GAN trained that way generated the muons' DLL 13% short at
    its upper quartile and 19% at its 95th percentile (KS 0.18 against the detailed simulation; 0.02
    with a map per sign, the same GAN and training)."""

    def __init__(self, n_vars: int, n_knots: int = N_KNOTS):
        super().__init__()
        self.register_buffer("knots", torch.zeros(n_vars, n_knots))
        self.register_buffer("neg_knots", torch.zeros(n_vars, n_knots))  # signed maps: of the |negative| values

    @staticmethod
    def levels(n_knots: int = N_KNOTS) -> np.ndarray:
        from scipy.special import ndtri

        u = np.linspace(0.0, 1.0, n_knots)
        u[0], u[-1] = 0.5 / 1e6, 1 - 0.5 / 1e6  # the tails: a million-event sample's extreme quantiles
        return ndtri(u)

    @staticmethod
    def _groups(col: np.ndarray, signed: bool):
        """(rows, sign) of each map of one column: all rows, or the positive and the negative ones."""
        if not signed:
            return ((np.arange(len(col)), 1.0),)
        return ((np.flatnonzero(col > 0), 1.0), (np.flatnonzero(col < 0), -1.0))

    def fit(self, y: np.ndarray, signed: bool = False) -> None:
        """Knots at evenly spaced quantiles of each column (``signed``: of its positive values and of
        its negative values' magnitudes, zeros left out; a map with no values gets zeros)."""
        u = np.linspace(0.0, 1.0, self.knots.shape[1])
        k = {1.0: np.zeros(self.knots.shape), -1.0: np.zeros(self.knots.shape)}
        for j in range(y.shape[1]):
            for rows, sign in self._groups(y[:, j], signed):
                if len(rows):
                    k[sign][j] = np.quantile(sign * y[rows, j], u)
        self.knots.copy_(torch.from_numpy(k[1.0].astype(np.float32)))
        self.neg_knots.copy_(torch.from_numpy(k[-1.0].astype(np.float32)))

    def forward_np(self, y: np.ndarray, rng: np.random.Generator, signed: bool = False) -> np.ndarray:
        """Data -> normal by ranks (ties broken at random, so point masses spread over their share).
        ``signed``: a magnitude's rank among the values of its sign; exact zeros map to 0 (a fixed
        target the generator learns to give where the pattern says the value is 0)."""
        from scipy.special import ndtri

        z = np.zeros(y.shape, np.float64)
        for j in range(y.shape[1]):
            for rows, sign in self._groups(y[:, j], signed):
                n = len(rows)
                order = np.lexsort((rng.random(n), sign * y[rows, j]))
                ranks = np.empty(n)
                ranks[order] = np.arange(n)
                z[rows, j] = ndtri((ranks + 0.5) / n)
        return z

    def inverse(self, z: np.ndarray, negative: np.ndarray | None = None) -> np.ndarray:
        """Normal -> data: per variable, linear interpolation between the knots at :meth:`levels`
        (``np.interp``'s result, clamped at the ends), by a compiled table lookup.  ``negative``
        (signed maps; a boolean array shaped like ``z``): which elements are magnitudes of negative
        values (their map is ``neg_knots``); the result is a magnitude, the caller applies the sign."""
        lv, lo, width, table = _bin_table(self.knots.shape[1])
        out = np.empty(z.shape, np.float64)
        knots = torch.stack([self.knots, self.neg_knots]).double().numpy()
        sel = np.zeros((0, 0), np.int8) if negative is None else np.ascontiguousarray(negative, np.int8)
        z = np.ascontiguousarray(z, np.float32 if z.dtype == np.float32 else np.float64)  # float32: exact in float64
        _interp_knots(z, sel, lv, knots, lo, width, table, out)
        return out


_TABLE_CELLS = 8192


@functools.lru_cache(maxsize=None)
def _bin_table(n_knots: int) -> tuple[np.ndarray, float, float, np.ndarray]:
    """The levels of ``n_knots`` knots and a uniform grid over them, each cell holding the knot
    interval its left edge lies in (the cells are narrower than any interval, so a lookup is at
    most a step away)."""
    lv = QuantileMap.levels(n_knots)
    lo, hi = float(lv[0]), float(lv[-1])
    width = (hi - lo) / _TABLE_CELLS
    edges = lo + width * np.arange(_TABLE_CELLS)
    return lv, lo, width, np.clip(np.searchsorted(lv, edges, side="right") - 1, 0, len(lv) - 2)


@njit(cache=True)
def _interp_knots(z, sel, lv, knots, lo, width, table, out):  # pragma: no cover - compiled
    n_lv = lv.shape[0]
    signed = sel.shape[0] > 0
    for i in range(z.shape[0]):
        for v in range(z.shape[1]):
            x = z[i, v]
            k = knots[1 if signed and sel[i, v] else 0, v]
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
    with their :class:`QuantileMap`), and per sign-pattern classifier the patterns its training
    sample held (``seen_<stage>``, a mask over the 3^k classes; see :meth:`seen`)."""

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
        for z in SIGNS.values():  # every pattern allowed until training says which occur
            self.register_buffer(f"seen_{z}", torch.ones(n_outputs(STAGE[z]), dtype=torch.bool))

    def seen(self, stage: str) -> np.ndarray:
        """The classes (pattern indices) of a sign-pattern classifier that occurred in its training
        sample: the fast simulation samples among these only.  Most patterns cannot occur (a track
        below every RICH threshold has all four DLLs 0, not some): the RICH's training sample held
        21 of the 81, the global PID's 1 (its correction is exactly 0 in this detector, so its
        classifier has nothing to decide and is not evaluated)."""
        return np.flatnonzero(getattr(self, f"seen_{stage}").numpy())

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
