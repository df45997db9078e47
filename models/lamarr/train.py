"""Deterministic training of the Lamarr pipeline on samples of the detailed simulation.

``python scripts/train_lamarr.py`` (the entry point) generates events with
:func:`models.lamarr.generator.generate`, runs the detailed simulation on them
(:func:`models.lamarr.detector.simulate`), and trains every stage of :mod:`models.lamarr.nets` in
Lamarr's order on the particles that reach it:

- classifiers (acceptance, tracking, isMuon): cross-entropy, Adam;
- sign-pattern classifiers (whether each PID variable is exactly 0, negative or positive;
  cross-entropy) before the RICH, muon and global-PID GANs, which then model the magnitudes of the
  non-zero values (a hurdle model, see nets); the patterns that occur in the sample are recorded
  (``Pipeline.seen``);
- conditional GANs (resolution, covariance, RICH, muon, global PID): the generator maps the
  condition and Gaussian noise to the stage's targets Gaussianized by a quantile map fitted on the
  training sample; a discriminator (an MLP on condition + sample, training only) plays the
  non-saturating GAN game (Goodfellow et al. 2014) with Adam (lr 2e-4, betas 0.5/0.9: the DCGAN
  settings, Radford et al. 2015), both learning rates decayed to a tenth on a cosine over the run.
  The global-PID GAN is conditioned on the detailed simulation's RICH and muon DLLs during
  training and on the generated ones at inference, as in Lamarr.

Each stage trains on the particles it sees in the fast simulation: every generated particle, the
accepted ones, the reconstructed tracks, and for the muon stages the tracks in the muon
preselection (:func:`models.lamarr.fastsim.muon_preselected`).

Determinism: one thread, ``torch.use_deterministic_algorithms``, every random draw from generators
seeded per stage: the same settings give byte-identical weights (the test trains a small pipeline
twice and compares the digests).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from models.lamarr import fastsim, nets


@dataclass(frozen=True)
class TrainConfig:
    events: int = 20000
    seed: int = 1  # generator seed; the detector uses seed + 1
    classifier_steps: int = 10000
    gan_steps: int = 8000
    batch: int = 1024
    gan_batch: int = 1024
    classifier_lr: float = 1e-3
    gan_lr: float = 2e-4


def sample(cfg: TrainConfig, progress=print) -> pd.DataFrame:
    """Generated events with the detailed simulation's columns (the training sample)."""
    from models.lamarr import detector, generator

    t0 = time.perf_counter()
    truth = generator.generate(cfg.events, seed=cfg.seed)
    det = detector.simulate(truth, seed=cfg.seed + 1)
    progress(f"sample: {cfg.events} events, {len(det)} particles, detailed simulation "
             f"{time.perf_counter() - t0:.1f} s")
    return det


def _standardize(module, x: np.ndarray) -> None:
    module.in_mean.copy_(torch.from_numpy(x.mean(axis=0).astype(np.float32)))
    module.in_std.copy_(torch.from_numpy(np.maximum(x.std(axis=0), 1e-6).astype(np.float32)))


def train_classifier(net: nets.Mlp, x: np.ndarray, y: np.ndarray, cfg: TrainConfig, seed: int) -> float:
    """Fit ``net`` to labels ``y`` (binary 0/1 or class indices); returns the last 100 steps' mean loss."""
    _standardize(net, x)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    binary = net.net[-1].out_features == 1
    opt = torch.optim.Adam(net.parameters(), lr=cfg.classifier_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.classifier_steps)
    net.train()
    losses = []
    for _ in range(cfg.classifier_steps):
        idx = torch.randint(len(xt), (min(cfg.batch, len(xt)),), generator=gen)
        out = net(xt[idx])
        loss = (F.binary_cross_entropy_with_logits(out[:, 0], yt[idx].float()) if binary
                else F.cross_entropy(out, yt[idx].long()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    net.eval()
    return float(np.mean(losses[-100:]))


def train_gan(g: nets.Generator, qmap: nets.QuantileMap, x: np.ndarray, y: np.ndarray, cfg: TrainConfig,
              seed: int, signed: bool = False) -> dict:
    """Fit the conditional generator ``g`` to targets ``y`` given conditions ``x`` (``signed``: a
    hurdle stage, see :mod:`models.lamarr.nets`: the generator learns the magnitudes of the
    non-zero values, through a map for each sign)."""
    _standardize(g, x)
    qmap.fit(y, signed)
    rng = np.random.default_rng(seed)
    z = qmap.forward_np(y, rng, signed).astype(np.float32)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n_out = z.shape[1]
    d = nets.Mlp(x.shape[1] + n_out, (128, 128, 128), 1)
    _standardize(d, np.concatenate([x, z], axis=1))
    xt, zt = torch.from_numpy(x), torch.from_numpy(z)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.gan_lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.gan_lr, betas=(0.5, 0.9))
    # cosine decay of both learning rates to a tenth: the late steps refine instead of oscillating
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, cfg.gan_steps, eta_min=0.1 * cfg.gan_lr)
              for o in (opt_g, opt_d)]
    g.train()
    hist_d, hist_g = [], []
    b = min(cfg.gan_batch, len(xt))
    for _ in range(cfg.gan_steps):
        idx = torch.randint(len(xt), (b,), generator=gen)
        c, real = xt[idx], zt[idx]
        noise = torch.randn((b, g.latent), generator=gen)
        fake = g(c, noise)
        # discriminator step
        lr_real = d(torch.cat([c, real], 1))
        lr_fake = d(torch.cat([c, fake.detach()], 1))
        loss_d = (F.binary_cross_entropy_with_logits(lr_real, torch.ones_like(lr_real))
                  + F.binary_cross_entropy_with_logits(lr_fake, torch.zeros_like(lr_fake)))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        # generator step (non-saturating)
        lg = d(torch.cat([c, fake], 1))
        loss_g = F.binary_cross_entropy_with_logits(lg, torch.ones_like(lg))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        for sc in scheds:
            sc.step()
        hist_d.append(loss_d.item())
        hist_g.append(loss_g.item())
    g.eval()
    return {"loss_d": float(np.mean(hist_d[-200:])), "loss_g": float(np.mean(hist_g[-200:]))}


def stage_data(det: pd.DataFrame, stage: nets.Stage) -> tuple[np.ndarray, np.ndarray]:
    """The (features, targets) of ``stage`` from a detailed-simulation frame, on the particles the
    stage sees (rows with undefined targets dropped; the muon stages: the tracks in the muon
    preselection, :func:`fastsim.muon_preselected`).  A ``<gan>_signs`` classifier's targets are
    the sign patterns of its GAN's variables, on the same rows; a hurdle GAN is conditioned on its
    rows' true patterns (its quantile map turns the values into magnitudes)."""
    if stage.name == "acceptance":
        return nets.feature_matrix(det, stage), det["in_acceptance"].to_numpy().astype(np.int64)
    if stage.name == "tracking":
        sub = det[det["in_acceptance"].to_numpy()]
        return nets.feature_matrix(sub, stage), sub["track_type"].to_numpy().astype(np.int64)
    sub = det[fastsim.reconstructed(det)]
    if stage.name in nets.MUON_STAGES:  # the muon identification's tracks (elsewhere isMuon false, DLL 0)
        sub = sub[fastsim.muon_preselected(sub["track_type"], sub["p_reco_gev"])]
    if stage.name == "ismuon":
        return nets.feature_matrix(sub, stage), sub["is_muon"].to_numpy().astype(np.int64)
    gan = next((g for g, z in nets.SIGNS.items() if z == stage.name), stage.name)
    outputs = nets.STAGE[gan].outputs
    if gan == "resolution":
        y = fastsim.resolution_targets(sub)
    elif gan == "covariance":
        y = fastsim.covariance_targets(sub)
    elif gan == "gpid":  # what the global PID adds to the sub-detectors' combination
        y = sub[list(outputs)].to_numpy(np.float64) - fastsim.gpid_base(sub)
    else:
        y = sub[list(outputs)].to_numpy(np.float64)
    if gan in nets.SIGNS:
        pattern = nets.sign_pattern(y)
        sub = sub.assign(**{nets.SIGNS[gan]: pattern})
    x = nets.feature_matrix(sub, stage)
    ok = np.isfinite(y).all(axis=1) & np.isfinite(x).all(axis=1)
    if gan != stage.name:  # the sign-pattern classifier
        return x[ok], pattern[ok]
    return x[ok], y[ok]


def train(det: pd.DataFrame, cfg: TrainConfig, progress=print) -> tuple[nets.Pipeline, dict]:
    """Train every stage on the detailed-simulation frame ``det``; returns the pipeline and a report."""
    torch.set_num_threads(1)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(1000 * (cfg.seed + 1))  # the initial weights
        pipe = nets.new_pipeline()
        report = {}
        for i, s in enumerate(nets.STAGES):
            t0 = time.perf_counter()
            x, y = stage_data(det, s)
            seed = 1000 * (cfg.seed + 1) + i
            if s.name in nets.SIGNS.values():  # the patterns that occur: the only ones the fast simulation samples
                seen = getattr(pipe, f"seen_{s.name}")
                seen.copy_(torch.from_numpy(np.bincount(y, minlength=len(seen)) > 0))
            with torch.enable_grad():
                if s.kind == "classifier":
                    r = {"loss": train_classifier(pipe.nets[s.name], x, y, cfg, seed)}
                else:
                    r = train_gan(pipe.nets[s.name], pipe.maps[s.name], x, y, cfg, seed, s.name in nets.SIGNS)
            r.update(samples=int(len(x)), seconds=round(time.perf_counter() - t0, 2))
            report[s.name] = r
            progress(f"{s.name}: {r}")
    finally:
        torch.use_deterministic_algorithms(prev)
    return pipe.eval(), report


def save(pipe: nets.Pipeline, folder: Path, meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(pipe.state_dict(), folder / fastsim.PIPELINE_FILE)
    (folder / fastsim.META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def run(cfg: TrainConfig, folder: Path, progress=print) -> dict:
    t0 = time.perf_counter()
    det = sample(cfg, progress)
    pipe, report = train(det, cfg, progress)
    meta = {"config": asdict(cfg), "stages": report, "digest": fastsim.digest(pipe),
            "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__}
    save(pipe, folder, meta)
    progress(f"saved {folder} (digest {meta['digest'][:16]}, {meta['seconds']} s)")
    return meta

