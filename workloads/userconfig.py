"""A user's own model: a Hugging Face ``config.json`` of any architecture ``transformers`` ships,
turned into a zoo entry (:class:`workloads.zoo.ModelSpec`) so that it traces, checks and errs as the
zoo's models do.  ``workload.model`` (and every API that takes a model name) accepts a path to such
a file, or to a folder holding one.

The architecture comes from the file: ``model_type`` names the config class (``AutoConfig``'s
mapping), ``architectures`` the model class (a causal LM decodes; anything else is an encoder, one
forward); the model is built on the meta device, so no weights exist and nothing is downloaded.
The parameter count is counted on that meta model (the memory check's weights).  Layers are traced
two at a time and expanded when every decoder layer has the same structure, as the zoo's uniform
models are; otherwise every layer is traced.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.errors import SimError

#: the parameter-count source of every user model (how :func:`is_user` knows one)
USER_SOURCE = "counted on the meta device from the user's config.json"
#: keys of a config.json that describe the file, not the architecture
_META_KEYS = {"architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path", "auto_map",
              "model_type", "_commit_hash", "quantization_config"}


#: a mixture of experts' keys besides the expert count (workloads.zoo.ModelSpec.experts_per_token, moe_layers)
_MOE_KEYS = ("num_experts_per_tok", "decoder_sparse_step", "mlp_only_layers", "first_k_dense_replace", "moe_layer_freq")


def is_user(spec) -> bool:
    """Whether a zoo entry was made from a user's config.json (not one of the zoo's checked models)."""
    return spec.params_source == USER_SOURCE


def is_config_path(name) -> bool:
    """Whether a model name is meant as a path to a config.json (or a folder with one)."""
    s = str(name)
    return s.endswith(".json") or "/" in s or s.startswith(".")


def _layers(model):
    for path in ("model.layers", "model.decoder.layers", "transformer.h", "transformer.layers", "gpt_neox.layers",
                 "encoder.layer", "bert.encoder.layer"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return list(obj)
    return None


def spec_from_config(name) -> "ModelSpec":  # noqa: F821 (zoo imports this module lazily)
    """A :class:`~workloads.zoo.ModelSpec` for the config.json at ``name`` (see the module docstring)."""
    import torch
    import transformers

    from workloads.zoo import EXPERT_KEYS, ModelSpec

    p = Path(str(name)).expanduser()
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise SimError(f"model {str(name)!r}: no such config.json (a zoo name, or a path to a Hugging Face config.json)")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise SimError(f"{p}: not a readable JSON config ({e})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise SimError(f"{p}: a Hugging Face config.json needs model_type (e.g. llama, mistral, qwen2)")
    model_type = data["model_type"]
    try:
        config_cls = type(transformers.AutoConfig.for_model(model_type))
    except (ValueError, KeyError):
        raise SimError(f"{p}: model_type {model_type!r} is not an architecture transformers "
                       f"{transformers.__version__} ships") from None
    archs = data.get("architectures") or []
    arch = next((a for a in archs if hasattr(transformers, a)), None)
    if arch is None:
        mapping = transformers.models.auto.modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        arch = mapping.get(model_type) or transformers.models.auto.modeling_auto.MODEL_MAPPING_NAMES.get(model_type)
    if arch is None or not hasattr(transformers, arch):
        raise SimError(f"{p}: no model class for {model_type!r} (architectures: {archs or 'none given'})")
    kind = "decoder" if arch.endswith("ForCausalLM") else "encoder"
    config = {k: v for k, v in data.items() if k not in _META_KEYS}
    try:
        cfg = config_cls(**config)
        with torch.device("meta"):
            model = getattr(transformers, arch)(cfg)
    except Exception as e:  # a config its class rejects: the user's input, reported in one line
        raise SimError(f"{p}: transformers cannot build {arch} from it ({type(e).__name__}: {e})") from None
    params = sum(t.numel() for t in model.parameters())
    layers = _layers(model)
    uniform = bool(layers) and len({repr(layer) for layer in layers}) == 1
    # what the file leaves to its class's defaults, where the suite reads it from the spec (shapes, and
    # a mixture of experts' experts: the trace builds the config class, so both must agree)
    # (the experts' keys only where the built model has experts: a dense model's class may still default
    # a number of experts, as Doge's does)
    moe = any(n.rsplit(".", 1)[-1] == "experts" for n, _ in model.named_modules())
    for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                "intermediate_size", "vocab_size", "max_position_embeddings", *((*EXPERT_KEYS, *_MOE_KEYS) if moe else ())):
        if key not in config and getattr(cfg, key, None) is not None:
            config[key] = getattr(cfg, key)
    return ModelSpec(name=str(p), family=model_type, kind=kind, config=config, config_class=config_cls.__name__,
                     model_class=arch, published_params=int(params),
                     params_source=USER_SOURCE,
                     nominal="", source=str(p), uniform_layers=uniform)
