"""Aten-level tracing of a torch model: one row per op, with its cost in FLOPs and bytes.

How it works
------------
The model runs under a :class:`torch.utils._python_dispatch.TorchDispatchMode` that sees every aten
op after autograd decomposition (``linear`` arrives as ``addmm``/``mm`` on a 2-D view, ``matmul`` as
``bmm``, ...).  Forward hooks on every submodule keep a stack of module paths, so each op knows the
module that issued it; the suite's own attention function (registered with ``transformers`` as the
``"mlhw"`` attention implementation) adds scopes for the parts of attention that have no module.

Large models run on the meta device: shapes and dtypes propagate, nothing is computed or
allocated.  The same code runs real tensors on the CPU (all-MiniLM-L6-v2 on real text), so the two
traces can be compared op for op.

Attention
---------
Attention is traced as the unfused sequence a kernel library would fuse: ``mlhw.attn_score``
(Q K^T times the scale, one op), the mask add (when there is a mask), ``softmax`` and
``mlhw.attn_context`` (P V, writing the output in ``[batch, seq, heads, head_dim]`` layout).  The two
matmuls are custom ops so that grouped-query attention is charged as it runs in FlashAttention-like
kernels: each KV head is read once for the whole query group, never copied per query head (the
eager ``repeat_kv`` path would materialize those copies).  The causal mask is applied inside the
attention function when the query spans more than one token; no mask tensor for the whole model
is materialized.  Targets decide what they fuse (see the ``role`` column).

KV cache
--------
The attention function keeps its own static cache per attention module, ``[batch, kv_heads,
context + seq, head_dim]``: each step writes its ``seq`` new keys and values into it (role
``kv_write``, one ``copy_`` each) and, when there is a context, attends over the whole cache, so the
cache reads show in ``kv_bytes_read``.  Caches are allocated outside the trace (allocation is not a
per-step cost).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from workloads.schema import COLUMNS, INT_COLUMNS


# ---------------------------------------------------------------------------------------------
# The suite's attention ops.  Their meta ("fake") kernels give shapes; their CPU kernels compute.
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("mlhw::attn_score", mutates_args=())
def attn_score(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """S = scale * Q K^T with grouped KV heads. q: [B, H, S, D], k: [B, Hkv, L, D] -> [B, H, S, L]."""
    b, h, s, d = q.shape
    hkv, kv_len = k.shape[1], k.shape[2]
    qg = q.reshape(b, hkv, (h // hkv) * s, d)
    return (torch.matmul(qg, k.transpose(-1, -2)) * scale).reshape(b, h, s, kv_len)


@attn_score.register_fake
def _(q, k, scale):
    return q.new_empty((q.shape[0], q.shape[1], q.shape[2], k.shape[2]))


@torch.library.custom_op("mlhw::attn_context", mutates_args=())
def attn_context(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """O = P V with grouped KV heads. p: [B, H, S, L], v: [B, Hkv, L, D] -> [B, S, H, D]."""
    b, h, s, kv_len = p.shape
    hkv, d = v.shape[1], v.shape[3]
    pg = p.reshape(b, hkv, (h // hkv) * s, kv_len)
    out = torch.matmul(pg, v).reshape(b, h, s, d)
    return out.transpose(1, 2).contiguous()


@attn_context.register_fake
def _(p, v):
    return p.new_empty((p.shape[0], p.shape[2], p.shape[1], v.shape[3]))


# ---------------------------------------------------------------------------------------------
# Run context: what the attention function needs to know about the traced run.
# ---------------------------------------------------------------------------------------------


@dataclass
class RunContext:
    context: int = 0  # tokens already in the KV cache
    kv_cache: bool = True  # decoders keep a KV cache; an encoder's one forward pass does not
    caches: dict = field(default_factory=dict)  # id(attention module) -> (k_cache, v_cache)
    tracer: "Tracer | None" = None
    routing_skew: float = 0.0  # a mixture of experts' routing policy (expert_loads): 0 is uniform


_RUN: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("mlhw_run", default=None)


def _scope(name: str):
    run = _RUN.get()
    if run is None or run.tracer is None:
        return contextlib.nullcontext()
    return run.tracer.scope(name)


def mlhw_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention as the suite traces it (see the module docstring).  Returns ([B, S, H, D], None)."""
    run = _RUN.get()
    b, h, s, d = query.shape
    if scaling is None:
        scaling = d**-0.5
    context = run.context if run is not None else 0
    if run is not None and run.kv_cache:
        caches = run.caches.get(id(module))
        if caches is None:
            shape = (b, key.shape[1], context + s, key.shape[3])
            with run.tracer.paused() if run.tracer is not None else contextlib.nullcontext():
                caches = (key.new_zeros(shape), value.new_zeros(shape))
            if run.tracer is not None:
                run.tracer.mark_kv(*caches)
            run.caches[id(module)] = caches
        k_cache, v_cache = caches
        with _scope("kv_write"):
            k_cache[:, :, context : context + s].copy_(key)
            v_cache[:, :, context : context + s].copy_(value)
        if context:
            key, value = k_cache, v_cache
    with _scope("attn_score"):
        scores = torch.ops.mlhw.attn_score(query, key, float(scaling))
    kv_len = key.shape[2]
    if attention_mask is not None:
        with _scope("attn_mask"):
            if attention_mask.dtype == torch.bool:
                attention_mask = torch.where(attention_mask, 0.0, torch.finfo(scores.dtype).min).to(scores.dtype)
            scores = scores + attention_mask[..., -kv_len:]
    elif getattr(module, "is_causal", False) and s > 1:
        with _scope("attn_mask"):
            mask = torch.full((s, kv_len), torch.finfo(scores.dtype).min, dtype=scores.dtype, device=scores.device)
            scores = scores + mask.triu(kv_len - s + 1)
    with _scope("attn_softmax"):
        probs = torch.softmax(scores, dim=-1)
    with _scope("attn_context"):
        out = torch.ops.mlhw.attn_context(probs, value)
    return out, None


def register_attention() -> str:
    """Register :func:`mlhw_attention` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register("mlhw", mlhw_attention)
    return "mlhw"


def expert_loads(tokens: int, top_k: int, experts: int, skew: float = 0.0) -> list[int]:
    """Tokens per expert under the suite's routing policy (meta tensors carry no router values, so
    the policy is stated, not observed).  The ``tokens x top_k`` assignments go to the experts in
    proportion to ``(e + 1) ** -skew`` (a Zipf law over the expert index: ``skew`` 0 is uniform,
    larger values load the low-numbered experts more), no expert taking more than ``tokens`` (a
    token's ``top_k`` experts are distinct); whole tokens by the largest remainder, ties to the
    lower index.  Fewer assignments than experts leave the rest idle: a batch-1 decode step runs
    ``top_k`` experts of one token each and reads only their weights.  The same loads in every
    layer (the hot experts keep their index: for expert parallelism, a stated worst case)."""
    tokens, top_k, experts = int(tokens), int(top_k), int(experts)
    total = tokens * min(top_k, experts)
    if total <= 0 or experts <= 0:
        return [0] * max(experts, 0)
    w = (np.arange(experts, dtype=np.float64) + 1.0) ** -float(skew)
    x = np.zeros(experts)
    free = np.ones(experts, dtype=bool)
    left = float(total)
    while True:  # water-filling: shares in proportion to w, none above the cap
        x[free] = left * w[free] / w[free].sum()
        over = free & (x > tokens)
        if not over.any():
            break
        x[over] = tokens
        free &= ~over
        left = total - x[~free].sum()
    base = np.floor(x + 1e-9).astype(np.int64)
    order = sorted(range(experts), key=lambda e: (-(x[e] - base[e]), e))
    for e in order[: total - int(base.sum())]:
        base[e] += 1
    return [int(v) for v in base]


def mlhw_experts(self, hidden_states, top_k_index, top_k_weights):
    """A mixture-of-experts layer's experts as the suite traces them (transformers' experts
    interface): each active expert's gate/up and down projections on its share of the tokens
    (:func:`expert_loads`), weighted and summed back per token.  Static shapes, so it runs on the
    meta device; the expert weights are views of the layer's 3D parameters, traced as weights."""
    import torch.nn.functional as F  # noqa: N812

    tokens, hidden = hidden_states.shape[0], hidden_states.shape[-1]
    k = top_k_index.shape[-1]
    out = hidden_states.new_zeros(tokens, hidden)
    run = _RUN.get()
    skew = run.routing_skew if run is not None else 0.0
    tracer = run.tracer if run is not None else None
    for e, n in enumerate(expert_loads(tokens, k, self.num_experts, skew)):
        if n == 0:
            continue
        if tracer is not None:
            tracer.expert = e
        x = hidden_states[:n]  # the expert's tokens (which ones is the router's business)
        w_up = self.gate_up_proj[e] if self.has_gate else self.up_proj[e]
        with _scope("expert_gate_up"):
            h = F.linear(x, w_up.t() if getattr(self, "is_transposed", False) else w_up)
        with _scope("expert_act"):
            h = self._apply_gate(h) if self.has_gate else self.act_fn(h)
        w_down = self.down_proj[e]
        with _scope("expert_down"):
            y = F.linear(h, w_down.t() if getattr(self, "is_transposed", False) else w_down)
        with _scope("expert_combine"):
            out[:n] += y * top_k_weights[:n, :1]
    if tracer is not None:
        tracer.expert = -1
    return out


def register_experts() -> str:
    """Register :func:`mlhw_experts` with transformers' experts interface (idempotent); its name."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    ALL_EXPERTS_FUNCTIONS.register("mlhw", mlhw_experts)
    return "mlhw"


# ---------------------------------------------------------------------------------------------
# Op classification and cost
# ---------------------------------------------------------------------------------------------

_VIEW_OPS = {
    "view", "_unsafe_view", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze", "slice",
    "select", "as_strided", "alias", "detach", "lift_fresh", "_reshape_alias", "split", "split_with_sizes",
    "unbind", "chunk", "narrow", "dropout", "feature_dropout", "alpha_dropout", "view_as_real", "view_as_complex", "unfold", "diagonal", "_unsafe_split",
}
_COPY_OPS = {"clone", "_to_copy", "copy_", "copy", "cat", "stack", "index_copy", "index_copy_",
             "index_put", "index_put_", "slice_scatter", "select_scatter", "contiguous", "repeat",
             "index_select", "gather", "index", "flip", "roll"}
_CREATION_OPS = {"arange", "full", "zeros", "ones", "empty", "empty_strided", "scalar_tensor", "new_empty",
                 "new_zeros", "new_ones", "new_full", "zeros_like", "ones_like", "full_like", "empty_like",
                 "rand", "randn", "randint", "tensor", "_local_scalar_dense"}
_REDUCTION_OPS = {"sum", "mean", "amax", "amin", "max", "min", "var", "std", "var_mean", "prod", "argmax",
                  "argmin", "any", "all", "norm", "linalg_vector_norm", "cumsum", "cumprod", "logsumexp"}
_SOFTMAX_OPS = {"_softmax", "softmax", "_safe_softmax", "_log_softmax", "log_softmax"}
_NORM_OPS = {"native_layer_norm", "layer_norm", "rms_norm", "_fused_rms_norm", "native_group_norm",
             "native_batch_norm", "_native_batch_norm_legit_no_training"}
_MM_OPS = {"mm", "addmm", "bmm", "baddbmm"}
_ATTN_OPS = {"attn_score", "attn_context"}


@dataclass(frozen=True)
class _OpInfo:
    name: str
    kind: str  # before the weight test: "matmul" becomes gemm or attn_matmul per call
    inplace: bool


_OPINFO_CACHE: dict = {}


def _opinfo(func) -> _OpInfo:
    info = _OPINFO_CACHE.get(func)
    if info is not None:
        return info
    base = func.overloadpacket.__name__
    ns = func.namespace
    name = base if ns == "aten" else f"{ns}.{base}"
    plain = base[:-1] if base.endswith("_") and not base.startswith("_") else base
    if ns == "mlhw" and base in _ATTN_OPS:
        kind = "attn_matmul"
    elif ns == "mlhw" and base == "ternary_mm":
        kind = "ternary_gemm"
    elif base in _MM_OPS:
        kind = "matmul"
    elif base == "embedding":
        kind = "embedding"
    elif base in _VIEW_OPS or plain in _VIEW_OPS:
        kind = "view"
    elif base in _COPY_OPS or plain in _COPY_OPS:
        kind = "copy"
    elif base in _CREATION_OPS:
        kind = "creation"
    elif base in _SOFTMAX_OPS:
        kind = "softmax"
    elif base in _NORM_OPS:
        kind = "norm"
    elif base in _REDUCTION_OPS:
        kind = "reduction"
    elif torch.Tag.pointwise in func.tags:
        kind = "elementwise"
    else:
        kind = "other"
    inplace = base.endswith("_") and not base.startswith("_")
    info = _OpInfo(name, kind, inplace)
    _OPINFO_CACHE[func] = info
    return info


_DTYPE_SHORT = {
    torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32", torch.float64: "f64",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8",
    torch.bool: "b8",
}


def _dt(t: torch.Tensor) -> str:
    return _DTYPE_SHORT.get(t.dtype, str(t.dtype).replace("torch.", ""))


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(x) for x in t.shape)


def _ubytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements a tensor view covers (dims of stride 0 count once)."""
    n = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            n *= size
    return n * t.element_size()


def _tensors(items) -> list[torch.Tensor]:
    out = []
    for a in items:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, torch.Tensor))
    return out


def _numel(t: torch.Tensor) -> int:
    return t.numel()


# ---------------------------------------------------------------------------------------------
# Roles: from the module path (and the attention function's scopes)
# ---------------------------------------------------------------------------------------------

_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks)\.(\d+)(?:\.|$)")

_LEAF_ROLES = {
    "q_proj": "q_proj", "query": "q_proj", "k_proj": "k_proj", "key": "k_proj", "v_proj": "v_proj",
    "value": "v_proj", "qkv_proj": "qkv_proj", "query_key_value": "qkv_proj", "Wqkv": "qkv_proj",
    "o_proj": "o_proj", "out_proj": "o_proj",
    "gate_proj": "mlp_gate", "up_proj": "mlp_up", "fc1": "mlp_up", "gate_up_proj": "mlp_gate_up",
    "down_proj": "mlp_down", "fc2": "mlp_down",
    "embed_tokens": "embedding", "word_embeddings": "embedding", "embed_positions": "pos_embedding",
    "position_embeddings": "pos_embedding", "token_type_embeddings": "pos_embedding",
    "lm_head": "lm_head", "embeddings": "embedding", "i_proj": "mix_candidate", "f_proj": "mix_forget",
    "gate": "moe_router",  # a mixture-of-experts block's router (Mixtral's and Qwen3-MoE's mlp.gate)
    "g_proj": "mix_gate", "rotary_emb": "rotary", "act_fn": "activation", "activation_fn": "activation",
    "intermediate_act_fn": "activation", "act": "activation", "pooler": "pooler",
    "lora_A": "lora", "lora_B": "lora",  # LoRA adapters run beside a projection (workloads.build.LoraLinear)
}
_ATTN_CONTAINERS = {"self_attn", "attn", "attention", "self", "self_attention"}
_MLP_CONTAINERS = {"mlp", "feed_forward", "intermediate", "ffn"}


def role_of(module: str, scope: str, kind: str, op: str) -> str:
    """The role of an op issued by ``module`` (dotted path) inside ``scope`` (may be '')."""
    if scope:
        return scope
    parts = module.split(".") if module else []
    leaf = parts[-1] if parts else ""
    parent = parts[-2] if len(parts) > 1 else ""
    if "pooler" in parts:
        return "pooler"
    if leaf in _LEAF_ROLES:
        return _LEAF_ROLES[leaf]
    if "norm" in leaf.lower():
        return "norm"
    if leaf == "dense":  # Phi-2 and BERT name several projections 'dense'
        if "attention" in parts or "self_attn" in parts:
            return "o_proj"
        return "mlp_up" if parent == "intermediate" else "mlp_down"
    if leaf in _ATTN_CONTAINERS:
        return "attn_other"
    if leaf in _MLP_CONTAINERS:
        return "mlp_other"
    if leaf.isdigit() or leaf == "output":  # a layer's own forward (or BERT's Output blocks)
        return "residual" if op == "add" else "layer_other"
    return "model_other"


# ---------------------------------------------------------------------------------------------
# The tracer
# ---------------------------------------------------------------------------------------------

_DROPOUTS = {torch.ops.aten.dropout, torch.ops.aten.feature_dropout, torch.ops.aten.alpha_dropout}
_COMPOSITE: set = set()
_LEAF: set = set()


def _is_composite(func) -> bool:
    comp = func.has_kernel_for_dispatch_key(torch._C.DispatchKey.CompositeImplicitAutograd)
    (_COMPOSITE if comp else _LEAF).add(func)
    return comp



class Tracer(TorchDispatchMode):
    """Records one row per aten op issued while active.  Use :func:`trace_module` normally."""

    def __init__(self, model: torch.nn.Module | None = None):
        super().__init__()
        self._weights: set[int] = set()
        self._kv: set[int] = set()
        self._keep: list[torch.Tensor] = []  # keeps marked tensors alive so ids stay unique
        self._stack: list[str] = [""]
        self._scopes: list[str] = []
        self.expert = -1  # the mixture-of-experts expert whose ops are being recorded (-1: none)
        self._paused = 0
        self._hooks: list = []
        self.rows: list[tuple] = []
        if model is not None:
            self._mark(self._weights, list(model.parameters()))
            for name, mod in model.named_modules():
                if name:
                    self._hooks.append(mod.register_forward_pre_hook(self._make_pre(name)))
                    self._hooks.append(mod.register_forward_hook(self._post, always_call=True))

    # -- module stack -----------------------------------------------------------------------
    def _make_pre(self, name: str):
        def pre(_mod, _args):
            self._stack.append(name)

        return pre

    def _post(self, _mod, _args, _out):
        self._stack.pop()

    def remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    @contextlib.contextmanager
    def scope(self, name: str):
        self._scopes.append(name)
        try:
            yield
        finally:
            self._scopes.pop()

    @contextlib.contextmanager
    def paused(self):
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def mark_kv(self, *tensors: torch.Tensor) -> None:
        self._mark(self._kv, tensors)

    # -- dispatch ---------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in _DROPOUTS and not (args[2] if len(args) > 2 else kwargs.get("train")):
            # dropout at inference is the identity: no work, recorded as a view (no decomposition,
            # which would record a clone that no inference runtime performs)
            out = args[0]
            if not self._paused:
                self.rows.append(self._record(func, args, kwargs, out))
            return out
        if func in _COMPOSITE or (func not in _LEAF and _is_composite(func)):
            # CompositeImplicit ops (linear, matmul, reshape, to, ...) reach the mode when autograd is
            # off: run their decomposition under the mode, so the ops that do the work are recorded.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if not self._paused:
            self.rows.append(self._record(func, args, kwargs, out))
        return out

    def _is(self, t: torch.Tensor, ids: set[int]) -> bool:
        return id(t) in ids

    def _mark(self, ids: set[int], tensors) -> None:
        for t in tensors:
            ids.add(id(t))
            self._keep.append(t)  # alive until the trace ends, so the id is not reused

    def _record(self, func, args, kwargs, out) -> tuple:
        info = _opinfo(func)
        ins = _tensors(args) + _tensors(kwargs.values())
        outs = _tensors(out if isinstance(out, (list, tuple)) else (out,))
        kind = info.kind
        w_in = [self._is(t, self._weights) for t in ins]
        if kind == "matmul":
            kind = "gemm" if any(w_in) else "attn_matmul"

        flops = 0
        m = n = k = batch = 0
        read = written = wbytes = kv_read = kv_written = 0
        o0 = outs[0] if outs else None
        if kind == "view":
            # views of weights (t(w) for a linear) and of the cache stay weights and cache; autograd's
            # view tracking (``_base``) is not there below the Python dispatch key, so do it here
            if any(w_in):
                self._mark(self._weights, outs)
            elif any(self._is(t, self._kv) for t in ins):
                self._mark(self._kv, outs)
        else:
            base = info.name
            if kind in ("gemm", "attn_matmul", "ternary_gemm"):
                if base == "mlhw.ternary_mm":  # x [..., K], w [N, K]
                    x, w = ins[0], ins[1]
                    m, k, n, batch = x.numel() // x.shape[-1], x.shape[-1], w.shape[0], 1
                elif base in ("mm", "addmm"):
                    a, b_ = ins[-2], ins[-1]
                    m, k, n, batch = a.shape[0], a.shape[1], b_.shape[1], 1
                elif base in ("bmm", "baddbmm"):
                    a, b_ = ins[-2], ins[-1]
                    batch, m, k, n = a.shape[0], a.shape[1], a.shape[2], b_.shape[2]
                elif base == "mlhw.attn_score":  # q [B,H,S,D], k [B,Hkv,L,D]
                    q, kk = ins[0], ins[1]
                    batch, m, k, n = q.shape[0] * q.shape[1], q.shape[2], q.shape[3], kk.shape[2]
                else:  # mlhw.attn_context: p [B,H,S,L], v [B,Hkv,L,D]
                    p, v = ins[0], ins[1]
                    batch, m, k, n = p.shape[0] * p.shape[1], p.shape[2], p.shape[3], v.shape[3]
                flops = 2 * batch * m * n * k
                if base in ("addmm", "baddbmm"):
                    flops += batch * m * n
            elif kind == "elementwise" and o0 is not None:
                flops = o0.numel()
            elif kind in ("softmax", "norm") and o0 is not None:
                flops = 5 * o0.numel()
            elif kind == "reduction" and ins:
                flops = ins[0].numel()

            if kind == "embedding":
                rows = _ubytes(o0)
                read = rows + _ubytes(ins[1])
                wbytes = rows
                written = rows
            elif base == "copy_":
                dst, src = ins[0], ins[1]
                read = _ubytes(src)
                written = _ubytes(dst)
                if self._is(src, self._kv):
                    kv_read = read
                if self._is(dst, self._kv):
                    kv_written = written
            else:
                seen: set[int] = set()
                for t, is_w in zip(ins, w_in):
                    if id(t) in seen:
                        continue
                    seen.add(id(t))
                    nb = _ubytes(t)
                    read += nb
                    if is_w:
                        wbytes += nb
                    elif self._is(t, self._kv):
                        kv_read += nb
                if info.inplace:
                    written = _ubytes(ins[0]) if ins else 0
                    if ins and self._is(ins[0], self._kv):
                        kv_written = written
                else:
                    written = sum(_ubytes(t) for t in outs)

        scope = self._scopes[-1] if self._scopes else ""
        return (
            info.name, kind, scope, self._stack[-1],
            ";".join(_shape(t) for t in ins), ";".join(_dt(t) for t in ins),
            ";".join(_shape(t) for t in outs), _dt(o0) if o0 is not None else "",
            flops, read, written, wbytes, kv_read, kv_written, m, n, k, batch, self.expert,
        )

    # -- result -----------------------------------------------------------------------------
    def dataframe(self) -> pd.DataFrame:
        cols = ["op", "kind", "scope", "module", "in_shapes", "in_dtypes", "out_shapes", "dtype",
                "flops", "bytes_read", "bytes_written", "weight_bytes", "kv_bytes_read", "kv_bytes_written",
                "gemm_m", "gemm_n", "gemm_k", "gemm_batch", "expert"]
        df = pd.DataFrame.from_records(self.rows, columns=cols)
        roles: dict = {}
        role = []
        layer = []
        for mod, scope, kind, op in zip(df["module"], df["scope"], df["kind"], df["op"]):
            key = (mod, scope, kind, op)
            r = roles.get(key)
            if r is None:
                mt = _LAYER_RE.search(mod)
                r = roles[key] = (role_of(mod, scope, kind, op), int(mt.group(1)) if mt else -1)
            role.append(r[0])
            layer.append(r[1])
        df["role"] = role
        df["layer"] = np.asarray(layer, dtype=np.int64)
        df["idx"] = np.arange(len(df), dtype=np.int64)
        df = df[list(COLUMNS)]
        for c in INT_COLUMNS:
            df[c] = df[c].astype(np.int64)
        for c, (t, _) in COLUMNS.items():
            if t == "str":
                df[c] = df[c].astype(str)  # pandas' default string dtype, as Parquet reads it back
        return df


@contextlib.contextmanager
def tracing(model: torch.nn.Module, context: int = 0, kv_cache: bool = True, routing_skew: float = 0.0):
    """Trace everything ``model`` runs inside the block; yields the :class:`Tracer`.

    ``context`` is the number of tokens already in the KV cache; ``kv_cache`` False runs attention
    without a cache (an encoder).
    """
    tracer = Tracer(model)
    token = _RUN.set(RunContext(context=context, kv_cache=kv_cache, tracer=tracer, routing_skew=routing_skew))
    try:
        with torch.inference_mode(), tracer:
            yield tracer
    finally:
        _RUN.reset(token)
        tracer.remove_hooks()
