"""The workload API: traces of zoo models by phase and shape, cached, and decode templates.

Phases
------
``prefill``
    ``batch`` sequences of ``seq`` prompt tokens (after ``context`` tokens already cached: chunked
    prefill; 0 by default).  The K and V of the new tokens are written to the cache; logits are
    computed for the last position only.  For an encoder this is its one forward pass.
``decode``
    ``batch`` sequences each adding ``seq`` tokens (1 by default; more is speculative
    verification) to a KV cache of ``context`` tokens; attention reads the whole cache and logits
    are computed for every new token.

Decode changes with the context length only through the attention and cache terms, and every
number in a decode trace (FLOPs, bytes, shape dims) is affine in the context length.  A
:class:`DecodeTemplate` holds two traces and evaluates the trace at any context, or sums a whole
generation, in closed form: ``N`` generated tokens cost two traces, not ``N``.

LoRA
----
Every trace takes an optional :class:`LoraSpec` (``lora=``): low-rank adapters of rank ``r`` on
the named projections of every layer.  Mode ``separate`` runs each adapter as two extra weight
matmuls beside its projection, ``x A^T`` (K -> r) then ``(.) B^T`` (r -> N), scaled and added to
the projection's output (role ``lora``; A and B are weights).  Mode ``merged`` folds ``B A`` into
the projection's weight: the trace is the base model's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.errors import SimError
from workloads import cache as _cache
from workloads import zoo
from workloads.schema import COLUMNS, INT_COLUMNS

PHASES = ("prefill", "decode")
DTYPES = ("fp16", "bf16", "fp32")


def _positive(name: str, value, allow_zero: bool = False) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value, ok = int(value), True
    if not ok or value < (0 if allow_zero else 1):
        want = "a non-negative integer" if allow_zero else "a positive integer"
        raise SimError(f"{name} must be {want}, got {value!r}")
    return int(value)


def check_args(spec: zoo.ModelSpec, phase: str, batch, seq, context, dtype: str) -> tuple[int, int, int]:
    """Validate the shape arguments of a trace; returns (batch, seq, context) as ints."""
    if phase not in PHASES:
        raise SimError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    if dtype not in DTYPES:
        raise SimError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if spec.kind == "encoder" and phase != "prefill":
        raise SimError(f"model {spec.name!r} is an encoder: it has only the prefill phase (one forward pass)")
    batch = _positive("batch", batch)
    if seq is None:
        if phase == "prefill":
            raise SimError("prefill needs the prompt length (seq)")
        seq = 1
    seq = _positive("seq", seq)
    context = _positive("context", context, allow_zero=(phase == "prefill"))
    if spec.max_positions and seq + context > spec.max_positions:
        raise SimError(
            f"seq + context = {seq + context} exceeds the {spec.max_positions} positions of {spec.name}"
        )
    return batch, seq, context


LORA_MODES = ("separate", "merged")


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapters on every layer's ``targets`` projections (module leaf names, e.g. q_proj).

    ``scaling`` (``alpha / rank``; 1 without ``alpha``) multiplies the adapter's output; it does not
    change the trace's numbers, so it is not part of the cache key.  Hashable: a memo key."""

    rank: int
    targets: tuple[str, ...]
    mode: str = "separate"
    alpha: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "rank", _positive("lora rank", self.rank))
        targets = self.targets
        if isinstance(targets, str) or not all(isinstance(t, str) and t for t in (targets or ())):
            raise SimError(f"lora targets must be a non-empty list of projection names, got {targets!r}")
        if not targets:
            raise SimError("lora targets must be a non-empty list of projection names, got []")
        object.__setattr__(self, "targets", tuple(sorted(set(targets))))
        if self.mode not in LORA_MODES:
            raise SimError(f"lora mode must be one of {', '.join(LORA_MODES)}, got {self.mode!r}")
        a = self.alpha
        if a is not None and (isinstance(a, bool) or not isinstance(a, (int, float, np.number)) or not a > 0):
            raise SimError(f"lora alpha must be a positive number, got {a!r}")
        if a is not None:
            object.__setattr__(self, "alpha", float(a))

    @classmethod
    def of(cls, lora) -> LoraSpec | None:
        """A spec from None, a LoraSpec, or a mapping {rank, targets, mode?, alpha?}."""
        if lora is None or isinstance(lora, LoraSpec):
            return lora
        if isinstance(lora, Mapping):
            unknown = set(lora) - {"rank", "targets", "mode", "alpha"}
            if unknown:
                raise SimError(f"unknown lora key(s): {', '.join(sorted(map(str, unknown)))}")
            if "rank" not in lora or "targets" not in lora:
                raise SimError("lora needs `rank` and `targets`")
            return cls(lora["rank"], tuple(lora["targets"]) if isinstance(lora["targets"], (list, tuple))
                       else lora["targets"], lora.get("mode", "separate"), lora.get("alpha"))
        raise SimError(f"lora must be a mapping {{rank, targets, mode, alpha}} or None, got {lora!r}")

    @property
    def scaling(self) -> float:
        return (self.alpha if self.alpha is not None else self.rank) / self.rank

    @property
    def traced(self) -> bool:
        """Whether the adapters show in the trace (mode 'separate')."""
        return self.mode == "separate"

    def key(self) -> dict:
        """What shapes the trace (the cache key's part)."""
        return {"rank": self.rank, "targets": list(self.targets), "mode": self.mode}

    def describe(self) -> dict:
        return {**self.key(), "alpha": self.alpha}


_LORA_TARGETS: dict = {}


def lora_targets(model) -> tuple[str, ...]:
    """The projections LoRA can target in ``model`` (a name or a ModelSpec): the leaf names of the
    ``nn.Linear`` modules inside its layers, from the model built on the meta device."""
    import dataclasses

    spec = model if isinstance(model, zoo.ModelSpec) else zoo.get(model)
    fp = spec.fingerprint()
    if fp not in _LORA_TARGETS:
        from workloads.build import build, lora_leaf_names

        cut = spec.uniform_layers and spec.layers > 2
        m = build(dataclasses.replace(spec, config={**spec.config, "num_hidden_layers": 2}) if cut else spec,
                  "fp16", "meta")
        _LORA_TARGETS[fp] = lora_leaf_names(m)
    return _LORA_TARGETS[fp]


def check_lora(spec: zoo.ModelSpec, lora) -> LoraSpec | None:
    """Validate a LoRA spec against the model; returns it normalized (a :class:`LoraSpec` or None).
    An unknown target is a SimError naming the valid ones."""
    lora = LoraSpec.of(lora)
    if lora is None:
        return None
    valid = lora_targets(spec)
    if not valid:
        raise SimError(f"model {spec.name!r} has no nn.Linear projections in its layers that LoRA can target")
    bad = [t for t in lora.targets if t not in valid]
    if bad:
        raise SimError(unknown_lora_target(spec, bad[0], valid))
    return lora


def unknown_lora_target(spec: zoo.ModelSpec, target: str, valid) -> str:
    return f"unknown LoRA target {target!r} for {spec.name}; valid targets: {', '.join(valid)}"


_LAYER_IN_PATH = re.compile(r"((?:^|\.)(?:layers|layer|h|blocks)\.)(\d+)(?=\.|$)")


def _replicate_layers(df: pd.DataFrame, n_layers: int) -> pd.DataFrame:
    """Expand a trace of a model cut to two layers into the trace of ``n_layers`` identical layers.

    Layer 0 is kept as traced; layer 1 stands for layers 1..n-1 (its rows are copied with the layer
    index and module paths renumbered).  Exact for models whose layers are identical; the tests
    compare it with full traces of every zoo model.
    """
    layer = df["layer"].to_numpy()
    inside = np.flatnonzero(layer >= 0)
    first, last = inside[0], inside[-1]
    if not ((layer[first:last + 1] >= 0).all() and set(np.unique(layer[inside])) == {0, 1}):
        raise ValueError("cannot replicate layers: the layers' ops are not contiguous")
    pre, l0, post = df.iloc[:first], df[df.layer == 0], df.iloc[last + 1:]
    l1 = df[df.layer == 1]
    copies = []
    for i in range(1, n_layers):
        c = l1.copy()
        c["layer"] = i
        c["module"] = [_LAYER_IN_PATH.sub(lambda m, i=i: f"{m.group(1)}{i}", mod, count=1) for mod in l1["module"]]
        copies.append(c)
    out = pd.concat([pre, l0, *copies, post], ignore_index=True)
    out["idx"] = np.arange(len(out), dtype=np.int64)
    return out


def _trace_uncached(spec: zoo.ModelSpec, phase: str, batch: int, seq: int, context: int, dtype: str,
                    replicate: bool = True, lora: LoraSpec | None = None,
                    routing_skew: float = 0.0) -> pd.DataFrame:
    """Trace on the meta device.  Models whose layers are identical (``spec.uniform_layers``) are
    traced with two layers and expanded (see :func:`_replicate_layers`): tracing time then does not
    grow with depth.  ``lora`` in mode 'separate' adds its adapters to the built model."""
    import dataclasses

    import torch

    from workloads.build import add_lora, build, run_decoder, run_encoder
    from workloads.tracer import tracing

    lora = LoraSpec.of(lora)
    cut = replicate and spec.uniform_layers and spec.layers > 2
    model = build(dataclasses.replace(spec, config={**spec.config, "num_hidden_layers": 2}) if cut else spec,
                  dtype, "meta")
    if lora is not None and lora.traced:
        add_lora(model, lora.rank, lora.targets, lora.scaling)
    ids = torch.zeros((batch, seq), dtype=torch.long, device="meta")
    mask = torch.ones((batch, seq), dtype=torch.long, device="meta")  # inputs are made outside the trace
    from workloads.userconfig import is_user

    try:
        with tracing(model, context=context, kv_cache=spec.kind == "decoder", routing_skew=routing_skew) as tr:
            if spec.kind == "encoder":
                run_encoder(model, ids, mask)
            else:
                run_decoder(model, ids, phase)
    except SimError:
        raise
    except Exception as e:  # a user's architecture the meta-device trace cannot run: one line, not a crash
        if not is_user(spec):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise SimError(f"{spec.name}: transformers' {spec.model_class} does not trace on the meta device here "
                       f"({type(e).__name__}: {first})") from None
    df = tr.dataframe()
    return _replicate_layers(df, spec.layers) if cut else df


def trace_key(spec: zoo.ModelSpec, phase: str, batch: int, seq: int, context: int, dtype: str,
              lora: LoraSpec | None = None, routing_skew: float = 0.0) -> str:
    """The cache key of a trace.  Adapters that do not show in the trace (mode 'merged') leave the
    base model's key: the two traces are the same; so does the uniform routing policy."""
    parts = dict(model=spec.fingerprint(), phase=phase, batch=batch, seq=seq, context=context, dtype=dtype)
    if lora is not None and lora.traced:
        parts["lora"] = lora.key()
    if routing_skew:
        parts["routing_skew"] = float(routing_skew)
    return _cache.key(**parts)


def check_routing(spec: zoo.ModelSpec, routing_skew) -> float:
    """A routing skew (:func:`workloads.tracer.expert_loads`) as a float: finite, at least 0, and only
    for a model with experts."""
    import math

    try:
        s = float(routing_skew)
    except (TypeError, ValueError):
        raise SimError(f"routing skew must be a number, got {routing_skew!r}") from None
    if not math.isfinite(s) or s < 0:
        raise SimError(f"routing skew must be finite and at least 0, got {routing_skew!r}")
    if s and not spec.experts:
        raise SimError(f"{spec.name} has no experts to route to (routing skew is for mixtures of experts)")
    return s


def trace(model: str, phase: str = "prefill", batch=1, seq=None, context=0, dtype: str = "fp16",
          use_cache: bool = True, lora=None, routing_skew: float = 0.0) -> pd.DataFrame:
    """The aten-level trace of one step of ``model`` (see :data:`workloads.schema.COLUMNS`).

    ``lora``: a :class:`LoraSpec` (or a mapping ``{rank, targets, mode, alpha}``) adding LoRA
    adapters; None (the default) traces the base model.  ``routing_skew``: a mixture of experts'
    routing policy (:func:`workloads.tracer.expert_loads`; 0, uniform, by default).  The frame's
    ``attrs`` carry the model, phase, batch, seq, context and dtype (and ``lora`` and
    ``routing_skew``, when given).
    """
    spec = zoo.get(model)
    batch, seq, context = check_args(spec, phase, batch, seq, context, dtype)
    lora = check_lora(spec, lora)  # unknown targets: a SimError naming the valid ones
    skew = check_routing(spec, routing_skew)
    k = trace_key(spec, phase, batch, seq, context, dtype, lora, skew)
    df = _MEMO.get(k) if use_cache else None
    if df is None:
        df = _cache.load(k) if use_cache else None
        if df is None:
            df = _trace_uncached(spec, phase, batch, seq, context, dtype, lora=lora, routing_skew=skew)
            if use_cache:
                _cache.store(k, df)
        if use_cache:
            _remember(k, df)
    out = df.copy()
    out.attrs = dict(model=spec.name, phase=phase, batch=batch, seq=seq, context=context, dtype=dtype)
    if lora is not None:
        out.attrs["lora"] = lora.describe()
    if skew:
        out.attrs["routing_skew"] = skew
    return out


# In-memory layer of the cache: a process that runs many points (a sweep worker) reads each trace
# from disk once.  Callers get copies.
_MEMO: dict = {}
_MEMO_MAX = 32


def _remember(k, value) -> None:
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[k] = value


def trace_text(model: str, sentences: list[str], dtype: str = "fp32"):
    """Run ``model``'s real weights on real text through its real tokenizer, traced.

    Returns ``(trace, outputs, inputs)``: the trace, the model's outputs (sentence embeddings for an
    encoder) and the tokenized inputs.
    """
    import torch

    from workloads.build import load_real, run_encoder, tokenize
    from workloads.tracer import tracing

    spec = zoo.get(model)
    if dtype not in DTYPES:
        raise SimError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if spec.kind != "encoder":
        raise SimError(f"real-text tracing is for encoders; {spec.name} is a {spec.kind}")
    enc = tokenize(spec, list(sentences))
    m = load_real(spec, dtype)
    with tracing(m, kv_cache=False) as tr:
        out = run_encoder(m, enc["input_ids"], enc["attention_mask"])
    df = tr.dataframe()
    b, s = enc["input_ids"].shape
    df.attrs = dict(model=spec.name, phase="prefill", batch=int(b), seq=int(s), context=0, dtype=dtype)
    return df, out.detach() if isinstance(out, torch.Tensor) else out, enc


# --------------------------------------------------------------------------------------------
# Decode templates
# --------------------------------------------------------------------------------------------

_NUM = re.compile(r"(\d+)")
_STR_AFFINE = ("in_shapes", "out_shapes")


def _affine_str(a: str, b: str, span: int):
    """Split two strings that differ only in their numbers into (parts, base, slope)."""
    pa, pb = _NUM.split(a), _NUM.split(b)
    if len(pa) != len(pb) or pa[0::2] != pb[0::2]:
        raise ValueError(f"decode traces differ in structure: {a!r} vs {b!r}")
    na = np.array([int(x) for x in pa[1::2]], dtype=np.int64)
    nb = np.array([int(x) for x in pb[1::2]], dtype=np.int64)
    diff = nb - na
    if np.any(diff % span):
        raise ValueError(f"decode shape not affine in the context length: {a!r} vs {b!r}")
    return pa[0::2], na, diff // span


@dataclass
class DecodeTemplate:
    """Decode traces at any context length, from two traces at contexts ``ctx_a`` < ``ctx_b``."""

    base: pd.DataFrame  # the trace at ctx_a
    ctx_a: int
    slopes: dict[str, np.ndarray]  # int column -> per-op change per context token
    shape_rows: dict[str, dict[int, tuple]]  # str column -> row -> (parts, base, slope)
    max_context: int

    @classmethod
    def from_traces(cls, a: pd.DataFrame, b: pd.DataFrame, max_context: int) -> "DecodeTemplate":
        ctx_a, ctx_b = a.attrs["context"], b.attrs["context"]
        span = ctx_b - ctx_a
        if len(a) != len(b) or not (a["op"].values == b["op"].values).all():
            raise ValueError("decode traces at two contexts have different ops: not a template")
        for col in ("kind", "role", "module", "layer", "dtype", "in_dtypes"):
            if not (a[col].values == b[col].values).all():
                raise ValueError(f"decode traces at two contexts differ in {col!r}")
        slopes = {}
        for c in INT_COLUMNS:
            d = b[c].to_numpy() - a[c].to_numpy()
            if np.any(d % span):
                raise ValueError(f"column {c!r} is not affine in the context length")
            slopes[c] = d // span
        shape_rows = {}
        for c in _STR_AFFINE:
            rows = {}
            for i in np.flatnonzero(a[c].to_numpy() != b[c].to_numpy()):
                rows[int(i)] = _affine_str(a[c].iat[i], b[c].iat[i], span)
            shape_rows[c] = rows
        slopes["idx"] = np.zeros(len(a), dtype=np.int64)
        return cls(a.copy(), ctx_a, slopes, shape_rows, max_context)

    def stacked(self, contexts, rows=None) -> dict[str, np.ndarray]:
        """The integer columns of the decode traces at each of ``contexts``, as arrays of shape (len(contexts), n_ops): a whole
        generation's numbers without building a frame per step.  ``rows`` (op positions) keeps
        only those ops' columns: (len(contexts), len(rows))."""
        ctx = np.asarray([_positive("context", c) for c in contexts], dtype=np.int64)
        if len(ctx) and ctx.max() > self.max_context:
            raise SimError(f"context {ctx.max()} exceeds the model's positions (at most {self.max_context} here)")
        dl = (ctx - self.ctx_a)[:, None]
        sel = slice(None) if rows is None else np.asarray(rows, dtype=np.int64)
        return {c: base[sel][None, :] + slope[sel][None, :] * dl for c, (base, slope) in self.affine().items()}

    def affine(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every integer column as (value at ``ctx_a``, change per context token), arrays over the
        ops: column at context c = value + change * (c - ctx_a)."""
        return {c: (self.base[c].to_numpy(), self.slopes[c]) for c in INT_COLUMNS}

    def varying(self) -> np.ndarray:
        """Which ops' numbers change with the context (attention over the KV cache, its writes): a
        boolean array over the ops.  The others are the same in every decode step."""
        return np.any([s != 0 for c, (_, s) in self.affine().items() if c != "idx"], axis=0)

    def totals(self, context0: int, steps: int, columns=None) -> dict[str, np.ndarray]:
        """Per-op sums of integer ``columns`` (default: all but ``idx``) over ``steps`` decode steps at
        contexts context0, context0 + seq, ..., in closed form."""
        seq = int(self.base.attrs.get("seq", 1))
        # sum over k of (base + slope * (context0 + seq*k - ctx_a))
        offset_sum = steps * (context0 - self.ctx_a) + seq * steps * (steps - 1) // 2
        cols = [c for c in INT_COLUMNS if c != "idx"] if columns is None else list(columns)
        return {c: self.base[c].to_numpy() * steps + self.slopes[c] * offset_sum for c in cols}

    def at(self, context: int) -> pd.DataFrame:
        """The decode trace with a KV cache of ``context`` tokens."""
        context = _positive("context", context)
        if context > self.max_context:
            raise SimError(f"context {context} exceeds the model's positions (at most {self.max_context} here)")
        dl = context - self.ctx_a
        df = self.base.copy()
        for c, s in self.slopes.items():
            df[c] = df[c].to_numpy() + s * dl
        for c, rows in self.shape_rows.items():
            col = df[c].to_numpy().copy()
            for i, (parts, base, slope) in rows.items():
                nums = base + slope * dl
                col[i] = "".join(p + (str(n) if j < len(nums) else "") for j, (p, n) in
                                 enumerate(zip(parts, list(nums) + [0])))
            df[c] = col
        df.attrs = {**self.base.attrs, "context": context}
        return df

    def total(self, context0: int, steps: int) -> pd.DataFrame:
        """Per-op sums over ``steps`` decode steps at contexts context0, context0+seq, ...

        Integer columns are summed in closed form; shape columns are those of the last step.
        """
        context0 = _positive("context", context0)
        steps = _positive("steps", steps)
        seq = int(self.base.attrs.get("seq", 1))
        last = context0 + seq * (steps - 1)
        df = self.at(last)
        for c, v in self.totals(context0, steps).items():
            df[c] = v
        df.attrs = {**self.base.attrs, "context": context0, "steps": steps}
        return df


def trace_module(module, *example_inputs, **example_kwargs) -> pd.DataFrame:
    """The aten-level trace of any ``nn.Module`` run once on ``example_inputs`` (tensors, on the meta
    device for shapes only, or real ones), as the zoo's traces are: one row per op with its kind,
    role, shapes, flops and bytes; ``weight_bytes`` are the module's parameters an op reads.  Cost
    it with any target: ``target.cost(OpArrays.from_frame(df), Precision(16, 16))``."""
    import torch

    from workloads.tracer import tracing

    if not isinstance(module, torch.nn.Module):
        raise SimError(f"trace_module: expected an nn.Module, got {type(module).__name__}")
    if not example_inputs and not example_kwargs:
        raise SimError("trace_module: give example inputs (tensors of the shapes the module runs on)")
    module.eval()
    with tracing(module, context=0, kv_cache=False) as tr:
        module(*example_inputs, **example_kwargs)
    df = tr.dataframe()
    if df.empty:
        raise SimError(f"trace_module: {type(module).__name__} ran no traceable op on these inputs")
    df.attrs = dict(model=type(module).__name__, phase="prefill", batch=0, seq=0, context=0, dtype="")
    return df


def decode_template(model: str, batch=1, seq=1, dtype: str = "fp16", use_cache: bool = True,
                    lora=None, routing_skew: float = 0.0) -> DecodeTemplate:
    """A :class:`DecodeTemplate` for ``model`` (two cached traces, at contexts 16 and 48), with
    ``lora`` adapters as in :func:`trace`.

    Templates are kept in memory per process and shared: treat them as read-only."""
    spec = zoo.get(model)
    check_args(spec, "decode", batch, seq, 1, dtype)
    lora = check_lora(spec, lora)
    skew = check_routing(spec, routing_skew)
    ctx_a, ctx_b = 16, 48
    k = ("template", spec.fingerprint(), int(batch), int(seq), dtype, lora, skew)
    tpl = _MEMO.get(k) if use_cache else None
    if tpl is None:
        a = trace(model, "decode", batch, seq, ctx_a, dtype, use_cache, lora=lora, routing_skew=skew)
        b = trace(model, "decode", batch, seq, ctx_b, dtype, use_cache, lora=lora, routing_skew=skew)
        tpl = DecodeTemplate.from_traces(a, b, max_context=(spec.max_positions or 1 << 62) - int(seq))
        if use_cache:
            _remember(k, tpl)
    return tpl


def summarize(df: pd.DataFrame, by: str = "role") -> pd.DataFrame:
    """Totals of the cost columns grouped by ``by`` (role, kind, layer, ...), largest FLOPs first."""
    cols = ["flops", "bytes_read", "bytes_written", "weight_bytes", "kv_bytes_read", "kv_bytes_written"]
    g = df.groupby(by, sort=False)[cols].sum()
    g.insert(0, "ops", df.groupby(by, sort=False).size())
    return g.sort_values("flops", ascending=False)


__all__ = ["COLUMNS", "DecodeTemplate", "LoraSpec", "PHASES", "check_args", "check_lora", "decode_template",
           "lora_targets", "summarize", "trace", "trace_text"]
