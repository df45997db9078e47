"""Weight-quantization quality of a real-weight model: `sim quantize MODEL`.

Quantizes every linear layer of the encoder of a zoo model with real weights (all-MiniLM-L6-v2)
per group of 128 input channels with each format of :mod:`models.bitmod`, and measures (a) the
weight mean squared error per layer and (b) the cosine similarity of the model's sentence
embeddings to the FP32 model's, on real sentences through the real tokenizer.  Embeddings and
the pooler, which the sentence embedding does not use, stay FP32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models import bitmod

# Real text: opening sentences of public-domain books, and sentences about this project's subject.
SENTENCES = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.",
    "Call me Ishmael.",
    "It was the best of times, it was the worst of times.",
    "When on board H.M.S. Beagle, as naturalist, I was much struck with certain facts in the "
    "distribution of the inhabitants of South America.",
    "You will rejoice to hear that no disaster has accompanied the commencement of an enterprise "
    "which you have regarded with such evil forebodings.",
    "Happy families are all alike; every unhappy family is unhappy in its own way.",
    "The sky above the port was the color of television, tuned to a dead channel.",
    "In a hole in the ground there lived a hobbit.",
    "A systolic array streams operands through a grid of multiply-accumulate units.",
    "Weights are read from DRAM once per generated token during decoding.",
    "Quantizing weights to four bits shrinks the model and the memory traffic.",
    "The cache holds the keys and values of every token seen so far.",
    "A bit-serial processing element handles two weight bits per cycle.",
    "The train leaves the station at noon and arrives in the evening.",
    "She planted tomatoes and basil in the garden behind the house.",
    "The committee postponed its decision until the next meeting.",
]

FORMATS = ("bitmod", "int_asym", "fp", "int_sym")


def _linear_weights(model) -> dict[str, np.ndarray]:
    import torch

    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and "pooler" not in name:
            out[name] = mod.weight.detach().double().numpy()
    return out


def evaluate(model_name: str = "all-MiniLM-L6-v2", bits=(4, 3), formats=FORMATS, sentences=SENTENCES):
    """(per-layer frame, summary frame): weight MSE per layer and format, embedding similarity."""
    import torch

    from workloads import zoo
    from workloads.build import load_real, run_encoder, tokenize

    spec = zoo.get(model_name)
    model = load_real(spec, "fp32")
    enc = tokenize(spec, list(sentences))
    with torch.inference_mode():
        ref = run_encoder(model, enc["input_ids"], enc["attention_mask"])
    weights = _linear_weights(model)
    params = dict(model.named_parameters())
    rows, summary = [], []
    for b in bits:
        for fmt in formats:
            total_err = total_n = 0.0
            choices = np.zeros(4, dtype=np.int64)
            quantized = {}
            for name, w in weights.items():
                q = bitmod.quantize(w, fmt, b)
                err = float(((q.dequant - w) ** 2).mean())
                rows.append({"bits": b, "format": fmt, "layer": name, "weight_mse": err,
                             "weight_rmse_rel": float(np.sqrt(err) / w.std())})
                total_err += err * w.size
                total_n += w.size
                quantized[name] = q.dequant
                if fmt == "bitmod":
                    choices += np.bincount(q.choice.ravel(), minlength=4)
            saved = {n: params[n + ".weight"].detach().clone() for n in quantized}
            with torch.inference_mode():
                for n, d in quantized.items():
                    params[n + ".weight"].copy_(torch.from_numpy(d).float())
                emb = run_encoder(model, enc["input_ids"], enc["attention_mask"])
                for n, t in saved.items():
                    params[n + ".weight"].copy_(t)
            cos = (emb * ref).sum(-1) / (emb.norm(dim=-1) * ref.norm(dim=-1))
            s = {"bits": b, "format": fmt, "bits_per_weight": bitmod.bits_per_weight(fmt, b),
                 "weight_mse": total_err / total_n, "cos_mean": float(cos.mean()), "cos_min": float(cos.min())}
            if fmt == "bitmod":
                for i, cname in enumerate(bitmod.CANDIDATES[b]):
                    s[f"share_{cname}"] = float(choices[i] / choices.sum())
            summary.append(s)
    return pd.DataFrame(rows), pd.DataFrame(summary)


def write(out: str | Path, per_layer: pd.DataFrame, summary: pd.DataFrame) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_layer.to_csv(out / "per_layer.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    return out
