"""MatMul-free LM configurations and parameter counts, without torch (the zoo imports this to list the
models fast).  The network itself is :mod:`models.matmulfree`, whose docstring gives the sources.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from models.errors import SimError

ACT_QMAX = 127  # activation quant: round(x * 127 / absmax), within [-127, 127]
QUANT_EPS = 1e-5  # clamp of the activation absmax and the weight absmean (release value)


@dataclass(frozen=True)
class MatMulFreeConfig:
    """Hyperparameters, named as in the release's ``HGRNBitConfig``."""

    vocab_size: int = 32000
    hidden_size: int = 2048
    num_hidden_layers: int = 24
    num_heads: int = 1
    expand_ratio: int = 1
    hidden_ratio: int = 4
    intermediate_size: int | None = None  # None: derived from hidden_ratio as in the release
    rms_norm_eps: float = 1e-6  # block norms, final norm and the MLGRU output norm
    bitlinear_eps: float = 1e-8  # the RMSNorm inside every BitLinear
    use_lower_bound: bool = True
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    source: str = ""

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_heads",
                     "expand_ratio", "hidden_ratio"):
            if int(getattr(self, name)) < 1:
                raise SimError(f"MatMul-free config: {name} must be >= 1, "
                               f"got {getattr(self, name)}")
        if self.input_dim % self.num_heads:
            raise SimError(f"MatMul-free config: recurrent width {self.input_dim} is not divisible "
                           f"by num_heads={self.num_heads}")

    @property
    def input_dim(self) -> int:
        """Width D of the MLGRU (its gates and its recurrent state)."""
        return int(self.hidden_size * self.expand_ratio)

    @property
    def mlp_dim(self) -> int:
        """GLU width I: given, or 256 * ceil(int(d * hidden_ratio * 2/3) / 256) as released."""
        if self.intermediate_size is not None:
            return int(self.intermediate_size)
        i = int(self.hidden_size * self.hidden_ratio * 2 / 3)
        return 256 * ((i + 255) // 256)


_CFG = "https://huggingface.co/ridger/MMfreeLM-{}/blob/main/config.json"
#: The released configs.  All three share vocab 32000, num_heads 1, expand_ratio 1,
#: hidden_ratio 4 with intermediate_size null, rms_norm_eps 1e-6, use_lower_bound true,
#: use_short_conv false, tie_word_embeddings false (model_type ``hgrn_bit``).
SIZES: dict[str, MatMulFreeConfig] = {
    # config.json of ridger/MMfreeLM-370M (as copied, "_name_or_path": "ridger/MMfreeLM-370M",
    # into huggingface.co/dhanesh123in/HGRNBitCausalLM/blob/main/config.json);
    # README model zoo: 24 layers, hidden 1024, 15B tokens
    "370M": MatMulFreeConfig(hidden_size=1024, num_hidden_layers=24, source=_CFG.format("370M")),
    # README model zoo (ridgerchu/matmulfreellm): 24 layers, hidden 2048, 100B tokens; the other
    # fields are the defaults of HGRNBitConfig (configuration_hgrn_bit.py), whose defaults are
    # exactly this model (hidden 2048, 24 layers)
    "1.3B": MatMulFreeConfig(hidden_size=2048, num_hidden_layers=24, source=_CFG.format("1.3B")),
    # config.json of ridger/MMfreeLM-2.7B (huggingface.co/ridger/MMfreeLM-2.7B, refs/pr/1;
    # "_name_or_path": "ridger/hgrn_bit_3B_100B_realbit"): hidden 2560, 32 layers
    "2.7B": MatMulFreeConfig(hidden_size=2560, num_hidden_layers=32, source=_CFG.format("2.7B")),
}
NOMINAL = {"370M": 370e6, "1.3B": 1.3e9, "2.7B": 2.7e9}
#: The paper's FPGA test: "one core running one block at d=512" (arXiv 2406.02528 v1-v5, Sec. 5);
#: the other fields as the released models (GLU width 1536).
FPGA_BLOCK = MatMulFreeConfig(hidden_size=512, num_hidden_layers=1,
                              source="arXiv 2406.02528 (v1-v5) Sec. 5: the FPGA test, one block at d=512")


def resolve_config(size_or_config: str | MatMulFreeConfig | dict) -> MatMulFreeConfig:
    """A :class:`MatMulFreeConfig` from a size name in :data:`SIZES`, a config, or a dict."""
    if isinstance(size_or_config, MatMulFreeConfig):
        return size_or_config
    if isinstance(size_or_config, dict):
        return MatMulFreeConfig(**size_or_config)
    key = str(size_or_config)
    for name, cfg in SIZES.items():
        if key.upper().removeprefix("MMFREELM-") == name.upper():
            return cfg
    raise SimError(f"unknown MatMul-free LM size {size_or_config!r}; known: {', '.join(SIZES)}")


def bitlinear_shapes(cfg: MatMulFreeConfig) -> dict[str, tuple[int, int]]:
    """``name -> (out_features, in_features)`` of every BitLinear in one block, plus the head."""
    d, dd, i = cfg.hidden_size, cfg.input_dim, cfg.mlp_dim
    return {"attn.i_proj": (dd, d), "attn.f_proj": (dd, d), "attn.g_proj": (dd, d),
            "attn.o_proj": (d, dd), "mlp.gate_proj": (2 * i, d), "mlp.down_proj": (d, i),
            "lm_head": (cfg.vocab_size, d)}


def param_breakdown(size_or_config) -> dict[str, int]:
    """Parameter counts by kind, computed from the config alone (no module is built)."""
    cfg = resolve_config(size_or_config)
    d, dd, n_layers, v = cfg.hidden_size, cfg.input_dim, cfg.num_hidden_layers, cfg.vocab_size
    shapes = bitlinear_shapes(cfg)
    block = {k: s for k, s in shapes.items() if k != "lm_head"}
    ternary_block = sum(o * i for o, i in block.values())
    # per block: attn_norm, mlp_norm (d each), g_norm (D), one RMSNorm gain per BitLinear (its K)
    norm_block = 2 * d + dd + sum(i for _, i in block.values())
    return {
        "embedding": v * d,
        "ternary_blocks": n_layers * ternary_block,
        "lm_head": 0 if cfg.tie_word_embeddings else v * d,  # ternary in the release
        "norms": n_layers * norm_block + d + d,  # + final norm + the LM head's BitLinear norm
        "lower_bounds": n_layers * dd if cfg.use_lower_bound else 0,
    }


def param_count(size_or_config) -> int:
    """Total parameters of :func:`build` for this config (embedding and LM head included)."""
    return sum(param_breakdown(size_or_config).values())


def config_dict(size_or_config) -> dict:
    cfg = resolve_config(size_or_config)
    return {**asdict(cfg), "input_dim": cfg.input_dim, "mlp_dim": cfg.mlp_dim}


def tiny_config(**overrides) -> MatMulFreeConfig:
    """A small config for tests and examples (real weights fit in a few hundred kB)."""
    base = MatMulFreeConfig(vocab_size=97, hidden_size=32, num_hidden_layers=3,
                            intermediate_size=48, source="tiny test config")
    return replace(base, **overrides)
