"""MatMul-free LM (HGRN-bit): ternary BitLinear layers, the MLGRU token mixer, a ternary GLU.

Source: Zhu, Zhang, Sifferman, Sheaves, Wang, Richmond, Zhou, Eshraghian, "Scalable MatMul-free
Language Modeling" (arXiv 2406.02528), Sec. 3, and its public release ridgerchu/matmulfreellm
(``mmfreelm/ops/bitnet.py``, ``mmfreelm/layers/hgrn_bit.py``,
``mmfreelm/models/hgrn_bit/modeling_hgrn_bit.py``, ``mmfreelm/ops/hgrn/recurrent_fuse.py``,
``fla/modules/fused_norm_gate.py`` under ``3rdparty/flash-linear-attention``), whose checkpoints
are ``ridger/MMfreeLM-370M``, ``-1.3B`` and ``-2.7B`` on Hugging Face.  Written from those
descriptions; no code is copied.

**This module follows the public release** (the code the checkpoints run with), not the paper
where the two differ.  The paper's equations are noted next to each difference.

BitLinear (``BitLinear`` in ``mmfreelm/ops/bitnet.py``), inference semantics:

- its own RMSNorm with a learnable gain (eps 1e-8) on the input;
- activations: per token, ``s_x = 127 / max(|x|)`` (absmax clamped to >= 1e-5),
  ``x_q = round(x * s_x)``, in [-127, 127] (int8 values held in a float tensor; the release's
  clamp to [-128, 127] never binds);
- weights: per tensor, ``beta = mean(|W|)`` (clamped to >= 1e-5),
  ``w_q = clamp(round(W / beta), -1, 1)``, so ``w_q`` is ternary;
- ``y = ternary_matmul(x_q, w_q) * beta / s_x``.  The release computes
  ``F.linear(x_q / s_x, w_q * beta)``, the same product up to float rounding.  Every
  BitLinear's matmul goes through the one module-level :func:`ternary_matmul`, so that a tracer
  can route it to a custom op; with int8 x ternary operands and K < 2^17 the float32 product is
  exact.  No straight-through estimator: this is an inference model (the paper trains with STE,
  Sec. 3.4).

MLGRU token mixer (paper Sec. 3.3; release ``HGRNBitAttention``), per layer ``l``:

    f_t = sigmoid(x_t W_f)                 release: f_t = lb_l + (1 - lb_l) * sigmoid(x_t W_f)
    c_t = SiLU(x_t W_c)
    h_t = f_t * h_{t-1} + (1 - f_t) * c_t  (elementwise; no hidden-to-hidden weights)
    g_t = sigmoid(x_t W_g)                 release: g_t = x_t W_g (no sigmoid)
    o'_t = g_t * h_t                       release: o'_t = RMSNorm(g_t) * gamma * SiLU(h_t)
    o_t = o'_t W_o

with every W a BitLinear.  Where the release differs from the paper:

- **Lower-bounded forget gate** (HGRN, ``use_lower_bound=True`` in every released config): a
  learned ``[L, d]`` parameter, softmaxed over layers and cumulatively summed,
  ``lb = cumsum(softmax(P, 0)) - softmax(P, 0)[0]``; layer 0 has no bound (``lb_0 = 0``) and
  deeper layers get monotonically larger bounds.  Not in the paper's equations.
- **Output gate and normalization**: the release applies ``FusedRMSNormSwishGate(g, h)``, which
  RMS-normalizes the *gate projection* (learnable gain, eps = ``rms_norm_eps``) and multiplies
  it by ``SiLU(h_t)``; the paper writes ``sigmoid(g_t) * h_t``.  Followed here as released.
- **Heads**: the release splits the recurrence into ``num_heads`` heads, but the recurrence is
  elementwise, so heads change nothing numerically; all released configs use ``num_heads=1``.
- **Expand ratio**: ``expand_ratio=1`` in all released configs (recurrent width D = d), as in
  the paper ("reduces the hidden state dimension from 2d to d", against HGRN).  Kept
  configurable.
- No short convolution (``use_short_conv=False`` in every released config).

Channel mixer (paper Sec. 3.3; release ``HGRNBitMLP``): ``down(SiLU(gate) * up)``.  The
release fuses gate and up into **one** BitLinear ``d -> 2I`` (one RMSNorm, one absmean weight
scale over both halves; first half = gate), and so does this module.  The paper sets the
up-projection to 8d/3; the release rounds ``int(d * 4 * 2/3)`` up to a multiple of 256:
I = 2816 (d=1024), 5632 (d=2048), 6912 (d=2560).

LM (release ``HGRNBitModel`` / ``HGRNBitForCausalLM``): full-precision embedding (vocab 32000),
N blocks of ``x += MLGRU(RMSNorm(x)); x += GLU(RMSNorm(x))`` (block norms eps 1e-6), a final
RMSNorm, and an **LM head that is a ternary BitLinear** (``lm_head = BitLinear(d, V)``),
untied from the embedding (``tie_word_embeddings: false`` in every released config).

Run modes: :meth:`MatMulFreeLM.forward` prefills a sequence (projections over all tokens at
once, the recurrence as a loop over time) and returns the final recurrent state;
:meth:`MatMulFreeLM.step` decodes one token from a state.  The state is one ``[B, D]`` vector
per layer, no KV cache (:meth:`MatMulFreeLM.init_state`).

Configs (:data:`SIZES`) are the released ones; see :data:`SIZES` for sources.  Parameter counts
(:func:`param_count`): 374,108,160 (370M, +1.1%), 1,364,779,008 (1.3B, +5.0%: the released
d=2048, L=24 shape, the same shape fla's "1.3B" baselines use), 2,702,357,504 (2.7B, +0.1%).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import SimError
from models.matmulfree_config import (  # noqa: F401  (re-exported: the model's API in one module)
    ACT_QMAX, FPGA_BLOCK, NOMINAL, QUANT_EPS, SIZES, MatMulFreeConfig, bitlinear_shapes, config_dict, param_breakdown,
    param_count, resolve_config, tiny_config)

# ---------------------------------------------------------------------------------------------
# numerics


@torch.library.custom_op("mlhw::ternary_mm", mutates_args=())
def ternary_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Y = X W^T with W ternary ({-1, 0, +1} as floats) and X 8-bit integers as floats: the matmul of
    a BitLinear, which hardware runs as additions, subtractions and skips. x: [..., K], w: [N, K].

    A custom op so that the suite's tracer records it as its own kind (``ternary_gemm``)."""
    return torch.matmul(x, w.transpose(0, 1))


@ternary_mm.register_fake
def _(x, w):
    return x.new_empty((*x.shape[:-1], w.shape[0]))


def ternary_matmul(x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    """``x_q @ w_q.T``: int8-valued activations [..., K] times ternary weights [N, K].

    The one place every BitLinear multiplies (through the custom op :func:`ternary_mm`).
    """
    return torch.ops.mlhw.ternary_mm(x_q, w_q)


def activation_quant(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token absmax int8: ``(x_q, s_x)`` with ``x ~= x_q / s_x``, ``s_x`` shaped [..., 1]."""
    scale = ACT_QMAX / x.abs().amax(dim=-1, keepdim=True).clamp(min=QUANT_EPS)
    # The release then clamps to [-128, 127]; that clamp never binds, since |x| * scale <= 127
    # (to within a rounding of the product), so it is left out.
    return (x * scale).round(), scale


def weight_quant(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor absmean ternary: ``(w_q, beta)``, ``w_q`` in {-1, 0, 1}, ``W ~= w_q * beta``."""
    beta = w.abs().mean().clamp(min=QUANT_EPS)
    return (w / beta).round().clamp(-1, 1), beta


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y if weight is None else y * weight


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class BitLinear(nn.Module):
    """RMSNorm -> int8 activations x ternary weights (:func:`ternary_matmul`) -> rescale."""

    def __init__(self, in_features: int, out_features: int, eps: float = 1e-8,
                 init_std: float = 0.02):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.norm = RMSNorm(in_features, eps)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.normal_(self.weight, std=init_std)

    def quantized_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self, "beta"):
            return self.weight, self.beta
        return weight_quant(self.weight)

    @torch.no_grad()
    def freeze(self) -> None:
        """Store the weights ternary with their scale ``beta`` (a parameter), as inference hardware
        holds them: the forward pass then quantizes only its activations."""
        if hasattr(self, "beta"):
            return
        w_q, beta = weight_quant(self.weight)
        self.weight.data = w_q
        self.beta = nn.Parameter(beta.reshape(()), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_q, s_x = activation_quant(self.norm(x))
        w_q, beta = self.quantized_weight()
        return ternary_matmul(x_q, w_q) * (beta / s_x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class MLGRU(nn.Module):
    """The MatMul-free linear GRU token mixer, as released (see the module docstring)."""

    def __init__(self, cfg: MatMulFreeConfig):
        super().__init__()
        d, dd, std = cfg.hidden_size, cfg.input_dim, cfg.initializer_range
        self.width = dd
        self.i_proj = BitLinear(d, dd, cfg.bitlinear_eps, std)  # candidate c_t (W_c)
        self.f_proj = BitLinear(d, dd, cfg.bitlinear_eps, std)  # forget gate f_t (W_f)
        self.g_proj = BitLinear(d, dd, cfg.bitlinear_eps, std)  # output gate g_t (W_g)
        self.g_norm = RMSNorm(dd, cfg.rms_norm_eps)
        self.o_proj = BitLinear(dd, d, cfg.bitlinear_eps, std)  # W_o

    def forward(self, x: torch.Tensor, h: torch.Tensor | None, lower_bound: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` [B, T, d], ``h`` [B, D] (state before token 0) -> (``o`` [B, T, d], new ``h``)."""
        if h is None:  # a zero state, made here so that a trace charges it to this layer
            h = x.new_zeros(x.shape[0], self.width)
        f = torch.sigmoid(self.f_proj(x))
        if lower_bound is not None:
            f = lower_bound + (1 - lower_bound) * f
        inp = F.silu(self.i_proj(x)) * (1 - f)
        hs = []
        for t in range(x.shape[1]):  # h_t = f_t * h_{t-1} + (1 - f_t) * c_t
            h = f[:, t] * h + inp[:, t]
            hs.append(h)
        hseq = torch.stack(hs, dim=1)
        o = self.g_norm(self.g_proj(x)) * F.silu(hseq)
        return self.o_proj(o), h


class GLU(nn.Module):
    """Ternary GLU: gate and up fused in one BitLinear d -> 2I (as released), SiLU, down."""

    def __init__(self, cfg: MatMulFreeConfig):
        super().__init__()
        d, i, std = cfg.hidden_size, cfg.mlp_dim, cfg.initializer_range
        self.gate_proj = BitLinear(d, 2 * i, cfg.bitlinear_eps, std)
        self.down_proj = BitLinear(i, d, cfg.bitlinear_eps, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: MatMulFreeConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = MLGRU(cfg)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = GLU(cfg)

    def forward(self, x, h, lower_bound):
        o, h = self.attn(self.attn_norm(x), h, lower_bound)
        x = x + o
        return x + self.mlp(self.mlp_norm(x)), h


State = tuple[torch.Tensor, ...]


class MatMulFreeLM(nn.Module):
    """Embedding, N x (MLGRU, GLU) blocks, final RMSNorm, ternary BitLinear LM head."""

    def __init__(self, cfg: MatMulFreeConfig):
        super().__init__()
        self.config = cfg
        d = cfg.hidden_size
        self.embeddings = nn.Embedding(cfg.vocab_size, d)
        nn.init.normal_(self.embeddings.weight, std=cfg.initializer_range)
        if cfg.use_lower_bound:
            # [L, D]; the release makes it [L, d], the same while expand_ratio is 1
            self.lower_bounds = nn.Parameter(torch.zeros(cfg.num_hidden_layers, cfg.input_dim))
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(d, cfg.rms_norm_eps)
        self.lm_head = BitLinear(d, cfg.vocab_size, cfg.bitlinear_eps, cfg.initializer_range)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embeddings.weight

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """The zero recurrent state: one [batch, D] hidden vector per layer."""
        p = self.embeddings.weight
        return tuple(torch.zeros(batch, self.config.input_dim, device=device or p.device,
                                 dtype=dtype or p.dtype)
                     for _ in range(self.config.num_hidden_layers))

    def _lower_bounds(self):
        if not self.config.use_lower_bound:
            return [None] * self.config.num_hidden_layers
        if getattr(self, "_frozen_bounds", False):  # per-layer constants, stored by freeze()
            return [getattr(layer.attn, "lower_bound", None) for layer in self.layers]
        p = torch.softmax(self.lower_bounds, dim=0)
        lb = torch.cumsum(p, dim=0) - p[0]
        return [None] + [lb[i] for i in range(1, self.config.num_hidden_layers)]  # none on layer 0

    def forward(self, input_ids: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        """Prefill: ``input_ids`` [B, T] -> (logits [B, T, V], state after the last token)."""
        if input_ids.dim() != 2:
            raise SimError("MatMul-free LM: input_ids must be [batch, seq], "
                           f"got {tuple(input_ids.shape)}")
        if state is None:
            state = self.init_state(input_ids.shape[0])
        x = self.embeddings(input_ids)
        new_state = []
        for layer, h, lb in zip(self.layers, state, self._lower_bounds()):
            x, h = layer(x, h, lb)
            new_state.append(h)
        return self.lm_head(self.norm(x)), tuple(new_state)

    def freeze(self) -> "MatMulFreeLM":
        """The inference form, which the suite traces: every BitLinear's weights stored ternary
        (:meth:`BitLinear.freeze`) and the forget gates' lower bounds computed once, a constant vector
        per layer.  The outputs do not change."""
        for m in self.modules():
            if isinstance(m, BitLinear):
                m.freeze()
        if self.config.use_lower_bound and not getattr(self, "_frozen_bounds", False):
            # the forget gates' lower bounds are constants at inference: one [D] vector per layer
            with torch.no_grad():
                for layer, lb in zip(self.layers, self._lower_bounds()):
                    if lb is not None:
                        layer.attn.lower_bound = nn.Parameter(lb.detach().clone(), requires_grad=False)
            self._frozen_bounds = True
        return self

    def trace_run(self, input_ids: torch.Tensor, phase: str) -> torch.Tensor:
        """One step as the suite's tracer runs a decoder: the blocks over ``input_ids`` from a state
        (zeros: its values do not change the work), then the head on the last position (prefill, what
        generation needs) or on every new position (decode)."""
        x = self.embeddings(input_ids)
        for layer, lb in zip(self.layers, self._lower_bounds()):
            x, _ = layer(x, None, lb)
        x = self.norm(x)
        if phase == "prefill":
            x = x[:, -1:]
        return self.lm_head(x)

    def step(self, token_ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Decode one token: ``token_ids`` [B] (or [B, 1]) -> (logits [B, V], new state)."""
        logits, state = self.forward(token_ids.reshape(-1, 1), state)
        return logits[:, 0], state


# ---------------------------------------------------------------------------------------------
# building and counting


def build(size_or_config: str | MatMulFreeConfig | dict = "370M",
          dtype: torch.dtype = torch.float32, device: str | torch.device = "meta") -> MatMulFreeLM:
    """Construct the model; on ``device="meta"`` (the default) no weights are allocated."""
    cfg = resolve_config(size_or_config)
    with torch.device(device):
        model = MatMulFreeLM(cfg)
    return model.to(dtype=dtype).eval()
