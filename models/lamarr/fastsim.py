"""Lamarr's fast simulation: the trained pipeline (:mod:`models.lamarr.nets`) run on generated events.

:func:`load` reads the trained pipeline saved with the project (``models/weights/lamarr/``, written
by ``scripts/train_lamarr.py``); :func:`simulate` runs it batched on a generator-level particle
table (:func:`models.lamarr.generator.generate`) and returns the detector columns the detailed
simulation (:func:`models.lamarr.detector.simulate`) returns, for the variables Lamarr
parameterizes.  The random draws (Bernoulli / categorical for the classifiers, the GANs' noise) come
from one seeded ``torch.Generator``: the same seed gives the same frame.

The conversions between the detector's columns and the networks' targets live here too
(:func:`true_state`, :func:`resolution_targets`, :func:`covariance_targets`, :func:`derive`), so the
training script, the fast simulation and the validation share one definition.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from models.errors import SimError
from models.lamarr import nets
from models.lamarr.detector import P_MUON_MIN_GEV

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "lamarr"
PIPELINE_FILE = "pipeline.pt"
META_FILE = "pipeline.json"

# Columns the fast simulation writes (the detailed simulation writes these and more).
STATE = ("x_mm", "y_mm", "tx", "ty", "qop")
DERIVED = ("p_reco_gev", "pt_reco_gev", "eta_reco", "phi_reco")
COVARIANCE = ("sigma_x_mm", "sigma_y_mm", "sigma_tx", "sigma_ty", "sigma_qop", "corr_x_tx", "corr_y_ty")
COLUMNS = (("in_acceptance", "track_type") + STATE + DERIVED + COVARIANCE + nets.RICH_VARS
           + ("is_muon",) + nets.MUON_VARS + nets.GPID_VARS)


# ---- shared conversions ------------------------------------------------------------------------


def _a(df, col: str) -> np.ndarray:
    return np.asarray(df[col])


def true_state(df) -> np.ndarray:
    """The generated particle's state at z = 0 (x, y in mm, slopes tx, ty, q/p in c/GeV), an
    (n, 5) array: a straight line from the production vertex (no field upstream of the VELO).
    ``df``: a DataFrame or a mapping of column arrays (as every function here)."""
    pz = _a(df, "pz_gev")
    tx, ty = _a(df, "px_gev") / pz, _a(df, "py_gev") / pz
    vz = _a(df, "vz_mm")
    x = _a(df, "vx_mm") - vz * tx
    y = _a(df, "vy_mm") - vz * ty
    return np.stack([x, y, tx, ty, _a(df, "charge") / _a(df, "p_gev")], axis=1)


def resolution_targets(df) -> np.ndarray:
    """Reconstructed minus true state (x, y, tx, ty) and q/p relative to the truth: (n, 5)."""
    t = true_state(df)
    r = np.stack([_a(df, c) for c in STATE], axis=1).astype(np.float64)
    d = r - t
    d[:, 4] = r[:, 4] / t[:, 4] - 1.0
    return d


def apply_resolution(df, d: np.ndarray) -> np.ndarray:
    """Inverse of :func:`resolution_targets`: the reconstructed state, (n, 5)."""
    t = true_state(df)
    r = t + d
    r[:, 4] = t[:, 4] * (1.0 + d[:, 4])
    return r


def covariance_targets(df) -> np.ndarray:
    """log sigma of x, y, tx, ty, log of sigma(q/p) / |q/p true|, and the two correlations: (n, 7)."""
    qop_true = np.abs(_a(df, "charge") / _a(df, "p_gev"))
    s = np.stack([_a(df, c) for c in ("sigma_x_mm", "sigma_y_mm", "sigma_tx", "sigma_ty")], axis=1)
    return np.column_stack([np.log(s.astype(np.float64)), np.log(_a(df, "sigma_qop") / qop_true),
                            _a(df, "corr_x_tx"), _a(df, "corr_y_ty")])


def apply_covariance(df, c: np.ndarray) -> np.ndarray:
    """Inverse of :func:`covariance_targets`: the seven covariance columns, (n, 7)."""
    qop_true = np.abs(_a(df, "charge") / _a(df, "p_gev"))
    out = np.empty_like(c)
    out[:, :4] = np.exp(c[:, :4])
    out[:, 4] = np.exp(c[:, 4]) * qop_true
    out[:, 5:] = np.clip(c[:, 5:], -1.0, 1.0)
    return out


def derive(state: np.ndarray) -> np.ndarray:
    """p, pT, eta, phi of reconstructed states (x, y, tx, ty, q/p): (n, 4).  Used for both
    simulations, so their derived columns agree by construction."""
    tx, ty, qop = state[:, 2], state[:, 3], state[:, 4]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 1.0 / np.abs(qop)
        t = np.hypot(tx, ty)
        pt = p * t / np.sqrt(1.0 + t * t)
        eta = np.arcsinh(1.0 / t)
    return np.stack([p, pt, eta, np.arctan2(ty, tx)], axis=1)


def gpid_base(df) -> np.ndarray:
    """The sub-detectors' combination the global PID starts from, (n, 4) in the order of
    ``nets.GPID_VARS``: the RICH DLLs, with the muon DLL added to the muon hypothesis (the detailed
    simulation's global PID is exactly this: it has no calorimeter PID).  The global-PID GAN models
    the difference (see :mod:`models.lamarr.nets`)."""
    return np.stack([_a(df, "rich_dll_e"), _a(df, "rich_dll_mu") + _a(df, "muon_dll"), _a(df, "rich_dll_k"),
                     _a(df, "rich_dll_p")], axis=1).astype(np.float64)


def reconstructed(df) -> np.ndarray:
    """Mask of reconstructed tracks (track_type > 0)."""
    return _a(df, "track_type") > 0


def muon_preselected(track_type, p_reco_gev) -> np.ndarray:
    """Mask of the tracks the muon identification runs on: long or downstream tracks (types 1 and 3)
    with a reconstructed momentum above ``P_MUON_MIN_GEV`` (3 GeV), as in the detailed simulation
    (:mod:`models.lamarr.detector`); on every other track isMuon is false and the muon DLL 0 by
    definition.  The muon stages (isMuon, the muon DLL's sign and magnitude) are trained and run on
    these tracks only: the rule is applied, not learned (a classifier conditioned on the true
    momentum can only blur a cut on the reconstructed one)."""
    t = np.asarray(track_type)
    return ((t == 1) | (t == 3)) & (np.asarray(p_reco_gev) > P_MUON_MIN_GEV)


# ---- the trained pipeline ----------------------------------------------------------------------


def load(path: str | Path | None = None) -> nets.Pipeline:
    """The trained pipeline (float32, CPU, eval mode) from ``path`` (a folder; default: the one
    saved with the project)."""
    folder = Path(path) if path is not None else WEIGHTS
    f = folder / PIPELINE_FILE
    if not f.is_file():
        raise SimError(f"no trained Lamarr pipeline at {f}; train it with `python scripts/train_lamarr.py`")
    p = nets.new_pipeline()
    p.load_state_dict(torch.load(f, map_location="cpu", weights_only=True))
    return p.eval()


def metadata(path: str | Path | None = None) -> dict:
    folder = Path(path) if path is not None else WEIGHTS
    f = folder / META_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def digest(pipeline: nets.Pipeline) -> str:
    """SHA-256 of the pipeline's tensors (order-stable), for determinism checks."""
    h = hashlib.sha256()
    for k, v in sorted(pipeline.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _fused_linear_available() -> bool:
    """Whether torch has oneDNN's fused linear (matrix product, bias and activation in one pass:
    the kernel torch's own compiler emits for a linear layer followed by an activation on a CPU)."""
    try:
        x = torch.ones((2, 3))
        y = torch.ops.mkldnn._linear_pointwise(x, torch.ones((4, 3)), torch.zeros(4), "leaky_relu", [0.5], "")
        return bool(torch.equal(y, torch.full((2, 4), 3.0)))
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


_FUSED = _fused_linear_available()


class _Compiled:
    """One network ready for batched inference: each layer one fused oneDNN linear (matrix product,
    bias and LeakyReLU in one pass over the activations; ``addmm`` and an in-place LeakyReLU where
    torch lacks it).  Same function as the module.

    fp32: the input standardization is folded into the first layer.  bf16: every layer's weights
    trained in fp32 rounded to bfloat16; the input is standardized in fp32 first, then rounded
    (a standardized input keeps 4x more of bf16's 8 significant bits than a raw one such as
    eta ~ 3.3 with a spread of 0.9), and the output returned in fp32."""

    def __init__(self, net: nn.Module, dtype: torch.dtype, outputs: np.ndarray | None = None):
        lin = [m for m in net.net if isinstance(m, nn.Linear)]
        self.slope = next(m.negative_slope for m in net.net if isinstance(m, nn.LeakyReLU))
        w0 = lin[0].weight.detach().double()
        mean, std = net.in_mean.double(), net.in_std.double()
        n = len(mean)
        self.dtype = dtype
        self.standardize = None
        if dtype == torch.float32:
            w = w0.clone()
            w[:, :n] = w0[:, :n] / std
            b = lin[0].bias.detach().double() - w0[:, :n] @ (mean / std)
            first = (w.float().contiguous(), b.float())
        else:  # x * scale + shift on every input column (the GAN's noise columns pass unchanged)
            k = lin[0].in_features
            scale, shift = torch.ones(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
            scale[:n], shift[:n] = 1.0 / std, -mean / std
            self.standardize = (scale.float(), shift.float())
            first = (w0.to(dtype).contiguous(), lin[0].bias.detach().to(dtype))
        # weights kept (out, in): oneDNN's and MKL's fastest layout for these narrow layers (addmm
        # on a contiguous (in, out) copy is 2-3x slower, measured with torch 2.13 on this CPU)
        self.layers = [first] + [(m.weight.detach().to(dtype).contiguous(), m.bias.detach().to(dtype))
                                 for m in lin[1:]]
        if outputs is not None:  # only these outputs (a classifier's possible classes)
            w, b = self.layers[-1]
            idx = torch.from_numpy(np.asarray(outputs, np.int64))
            self.layers[-1] = (w[idx].contiguous(), b[idx].contiguous())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize is not None:
            scale, shift = self.standardize
            x = torch.addcmul(shift, x, scale).to(self.dtype)
        last = len(self.layers) - 1
        h = x
        for i, (w, b) in enumerate(self.layers):
            if _FUSED:
                h = torch.ops.mkldnn._linear_pointwise(h, w, b, *(("none", []) if i == last
                                                                   else ("leaky_relu", [self.slope])), "")
            else:
                h = torch.addmm(b, h, w.t())
                if i < last:
                    torch.nn.functional.leaky_relu_(h, self.slope)
        return h.float()


def compiled(pipeline: nets.Pipeline, dtype: str = "fp32") -> dict[str, _Compiled]:
    """Every stage's network of ``pipeline`` as :class:`_Compiled` in ``dtype`` ('fp32' or 'bf16':
    every layer in bfloat16 on the input standardized in fp32); a sign-pattern classifier's outputs
    cut to the patterns its training sample held (:meth:`nets.Pipeline.seen`).  Kept per pipeline and
    dtype, and rebuilt when any of the pipeline's tensors changed since: its storage, or torch's
    version counter, which every in-place write through the tensor advances (``load_state_dict``,
    an optimizer step, ``w.mul_()`` under ``no_grad``); a write through ``w.data`` is not counted by
    torch and goes unseen.  Building takes ~2 ms, 1% of a 2,000-event fast simulation."""
    if dtype not in DTYPES:
        raise SimError(f"Lamarr fast-simulation dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    state = tuple((t.data_ptr(), t._version) for m in pipeline.modules() for d in (m._parameters, m._buffers)
                  for t in d.values() if t is not None)  # 0.2 ms
    kept = _COMPILED.setdefault(pipeline, {})
    if dtype not in kept or kept[dtype][0] != state:
        signs = set(nets.SIGNS.values())
        kept[dtype] = (state, {name: _Compiled(net, DTYPES[dtype], pipeline.seen(name) if name in signs else None)
                               for name, net in pipeline.nets.items()})
    return kept[dtype][1]


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pipeline -> {dtype: (state, networks)}


def _classify(net: _Compiled, x: np.ndarray, gen: torch.Generator, batch: int) -> np.ndarray:
    """Sample a class per row from a classifier (binary: sigmoid; else softmax)."""
    out = []
    for i in range(0, len(x), batch):
        logits = net(torch.from_numpy(x[i:i + batch]))
        if logits.shape[1] == 1:
            p = torch.sigmoid(logits[:, 0])
            out.append((torch.rand(p.shape, generator=gen) < p).numpy().astype(np.int64))
        elif logits.shape[1] <= 32:  # inverse-CDF sampling: one uniform per row (torch.multinomial is
            # ~10x slower here); up to 32 classes: on the (classes, rows) view, every step along the rows
            # (torch's softmax and cumsum along a last dimension of 3-4 are 2-3x slower, of 21 1.5x slower;
            # of 81 the softmax below is 2x faster), the weights exp(logit - max) not normalized: the
            # uniform is scaled by their sum
            lt = logits.t()
            c = (lt - lt.max(dim=0).values).exp_().cumsum_(dim=0)
            u = torch.rand(len(logits), generator=gen) * c[-1]
            out.append((c < u).sum(dim=0).clamp_(max=c.shape[0] - 1).numpy())
        else:  # many classes (all 81 of a sign pattern's): row by row, a binary search in each row's CDF
            c = torch.softmax(logits, dim=1).cumsum_(dim=1)
            u = torch.rand((len(c), 1), generator=gen) * c[:, -1:]
            out.append(torch.searchsorted(c, u).clamp_(max=c.shape[1] - 1).numpy()[:, 0])
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _generate(pipe: nets.Pipeline, net: _Compiled, stage: nets.Stage, x: np.ndarray, batch: int,
              negative: np.ndarray | None = None) -> np.ndarray:
    """A GAN's samples for inputs ``x`` (conditions and noise, :func:`nets.feature_matrix`), mapped
    back from its Gaussianized space (``negative``: a hurdle GAN's elements whose sign pattern is
    negative, see :meth:`nets.QuantileMap.inverse`)."""
    g = np.empty((len(x), nets.n_outputs(stage)), np.float32)
    for i in range(0, len(x), batch):
        g[i:i + batch] = net(torch.from_numpy(x[i:i + batch])).numpy()
    return pipe.maps[stage.name].inverse(g, negative)


@torch.inference_mode()
def simulate(truth: pd.DataFrame, seed: int, pipeline: nets.Pipeline | None = None, batch: int = 8192,
             timings: dict | None = None, dtype: str = "fp32") -> pd.DataFrame:
    """The fast simulation of ``truth`` (a generator table): ``truth`` plus :data:`COLUMNS`.

    Works on column arrays and builds the frame once at the end; the networks run in chunks of
    ``batch`` rows (activations stay in cache) and in ``dtype`` ('bf16': the hidden and output
    layers' weights trained in fp32 rounded to bfloat16, see :func:`compiled`).
    ``timings``, when given, receives the seconds each stage took (features, network, sampling and
    quantile map)."""
    import time

    pipe = pipeline if pipeline is not None else load()
    net = compiled(pipe, dtype)
    gen = torch.Generator().manual_seed(int(seed))
    n = len(truth)
    clock = time.perf_counter
    st = nets.STAGE

    def timed(name, f):
        t0 = clock()
        r = f()
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + clock() - t0
        return r

    cols = {c: truth[c].to_numpy() for c in ("p_gev", "eta", "phi", "charge", "vz_mm", "n_tracks", "pid", "px_gev",
                                             "py_gev", "pz_gev", "vx_mm", "vy_mm")}
    truth_feats: dict = {}  # the generator-level feature groups, computed once over every particle
    acc = timed("acceptance", lambda: _classify(net["acceptance"], nets.feature_matrix(cols, st["acceptance"],
                                                                                       truth_feats), gen, batch)) == 1
    ia = np.flatnonzero(acc)
    ttype = np.zeros(n, np.int8)
    ttype[ia] = timed("tracking", lambda: _classify(net["tracking"], nets.feature_matrix(cols, st["tracking"],
                                                                                         truth_feats, ia), gen, batch))
    rec = np.flatnonzero(ttype > 0)
    sub = {k: v[rec] for k, v in cols.items()}
    sub["track_type"] = ttype[rec]
    feats = {f: g[rec] for f, g in truth_feats.items()}  # the reconstructed tracks' groups, shared by the stages below

    def features(name, rows=None, latent=0):  # a GAN's noise: one draw for all rows (what a draw per batch gives)
        m = len(rec) if rows is None else len(rows)
        noise = torch.randn((m, latent), generator=gen) if latent else None
        return nets.feature_matrix(sub, st[name], feats, rows, noise)

    def gan(name):
        return timed(name, lambda: _generate(pipe, net[name], st[name], features(name, latent=st[name].latent), batch))

    state = apply_resolution(sub, gan("resolution"))
    kin = derive(state)
    cov = apply_covariance(sub, gan("covariance"))
    mu_rows = np.flatnonzero(muon_preselected(sub["track_type"], kin[:, 0]))  # where the muon stages run
    sub["is_muon"] = np.zeros(len(rec), bool)
    sub["is_muon"][mu_rows] = timed("ismuon", lambda: _classify(net["ismuon"], features("ismuon", mu_rows), gen, batch))

    def hurdle(name, among=None):  # the sign pattern first (on rows ``among``; all zero elsewhere), then the GAN
        # (magnitudes) conditioned on it, then the signs
        zs = nets.SIGNS[name]
        classes = pipe.seen(zs)  # sampled among the patterns that occurred in training; one: nothing to sample
        sub[zs] = pat = np.zeros(len(rec), np.int64)
        sel = slice(None) if among is None else among  # every row: a view, no gather of the feature groups
        pat[sel] = timed(zs, lambda: np.full(len(pat[sel]), classes[0]) if len(classes) == 1
                         else classes[_classify(net[zs], features(zs, among), gen, batch)])
        out = np.zeros((len(pat), nets.n_outputs(st[name])))
        states = nets.sign_states(pat, out.shape[1])
        rows = np.flatnonzero(pat != 0)  # the GAN runs where some value is not 0 (class 0: all are)
        out[rows] = timed(name, lambda: _generate(pipe, net[name], st[name], features(name, rows, st[name].latent),
                                                  batch, states[rows] == 1) if len(rows) else out[rows])
        return nets.apply_signs(out, pat, states)

    rich = hurdle("rich")
    sub.update(zip(nets.RICH_VARS, rich.T))
    mu = hurdle("muon", mu_rows)
    sub["muon_dll"] = mu[:, 0]
    gp = gpid_base(sub) + hurdle("gpid")

    # one float block, column after column (pandas keeps a frame's block as (columns, rows): built
    # that way it is neither copied nor transposed; 2x faster than scattering rows), the three
    # integer/boolean columns inserted in place
    floats = STATE + DERIVED + COVARIANCE + nets.RICH_VARS + nets.MUON_VARS + nets.GPID_VARS  # COLUMNS' floats
    full = np.full((len(floats), n), np.nan)
    for j, v in enumerate(c for part in (state, kin, cov, rich, mu, gp) for c in part.T):
        full[j, rec] = v
    out = pd.DataFrame(full.T, index=truth.index, columns=list(floats), copy=False)
    ism = np.zeros(n, bool)
    ism[rec] = sub["is_muon"]
    for c, v in (("in_acceptance", acc), ("track_type", ttype), ("is_muon", ism)):
        out.insert(COLUMNS.index(c), c, v)
    return pd.concat([truth, out], axis=1)
