"""Does a run fit?  What must live in a device's memory, against what the target has.

Before any tracing (:func:`need`, from the model's published shape): the weights at their storage
precision (the published parameter count), the KV cache of ``batch x (prompt + decode tokens)``
positions at the cache's precision, and an estimate of the prefill's largest activations.  After
the prefill is traced (:func:`need` with ``trace``): the activations are the traced ones (the
largest op's inputs and outputs that are neither weights nor cache, at the activations'
precision), and LoRA adapters are counted from the trace's weights beyond the base model's.

:func:`check` raises :class:`Infeasible` (a :class:`SimError`: one line, exit status 2) when the
need exceeds the target's memory (``Target.memory.capacity_bytes``; a target that does not model
its capacity is not checked), saying what would fit: a shorter context, more devices, narrower
weights.  Sizes no device could hold (past :data:`ABSURD_BYTES`) are refused on every target,
before tracing: a trace of them would only crash inside torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from models.errors import SimError

#: more than any device holds (1 EiB): refused before tracing on every target
ABSURD_BYTES = 1 << 60
GB = 1e9


class Infeasible(SimError):
    """A run that cannot fit the target's memory (a sweep stores the point as infeasible)."""


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes that must be resident in device memory for a run."""

    weights: int
    kv_cache: int
    activations: int
    lora: int = 0
    kv_per_token: int = 0  # KV bytes per position of one sequence (for "what would fit")

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.lora

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def _kv_per_token(spec, kv_bits: float) -> int:
    if spec.kind != "decoder" or not spec.config_class:  # encoders; recurrent (project-native) models
        return 0
    return int(spec.layers * 2 * spec.kv_heads * spec.head_dim * kv_bits / 8)


def _tied(spec) -> bool:
    """Whether the model's head shares the embedding's matrix (the config's key, else its config
    class's default: a user's config.json may leave it out)."""
    tied = spec.config.get("tie_word_embeddings")
    if tied is None:
        import transformers

        tied = getattr(getattr(transformers, spec.config_class)(**spec.config), "tie_word_embeddings", False)
    return bool(tied)


def _stage_params(spec, pp: int) -> int:
    """Parameters of the largest of ``pp`` pipeline stages (contiguous layers, the first stages one
    layer longer where ``pp`` does not divide them; the embedding on the first, the head on the
    last): the layers' share of the published count, plus the stage's end matrices."""
    total = int(spec.published_params)
    if pp <= 1 or not spec.config_class or "hidden_size" not in spec.config:
        return total
    emb = spec.vocab * spec.hidden
    head = 0 if _tied(spec) else emb
    per_layer = max(0, total - emb - head) / spec.layers
    longest = -(-spec.layers // pp)
    return int(per_layer * longest + max(emb, head))


def need(spec, w, trace=None, par=None) -> MemoryNeed:
    """What a run of workload ``w`` on model ``spec`` must hold (see the module docstring); with the
    prefill's ``trace`` the activations and adapters are the traced ones.  With devices sharing the
    model (``par``, a :class:`sim.config.Parallel`), one device's share: the weights of the largest
    pipeline stage split ``tp`` ways (its routed experts ``ep`` ways instead), the KV cache of the
    stage's layers by KV heads (replicated where there are fewer KV heads than devices) for a
    replica's ``batch / dp`` sequences, ``trace`` already one device's micro-batch."""
    tp, pp, dp, ep = (par.tp, par.pp, par.dp, par.ep) if par is not None else (1, 1, 1, 1)
    p = w.precision
    stage = _stage_params(spec, pp)
    experts = 0
    if ep > 1 and spec.expert_params:  # the stage's experts over the expert-parallel group, the rest over tp
        experts = min(stage, spec.expert_params * -(-spec.layers // pp) // spec.layers)
    weights = int((stage - experts) * p.weight_storage_bits / 8) // tp + int(experts * p.weight_storage_bits / 8) // ep
    tokens = int(w.prompt) + int(w.decode_tokens or 0)
    per_token = _kv_per_token(spec, p.kv_bits)
    if tp > 1 and per_token:
        per_token //= min(tp, spec.kv_heads)
    if pp > 1 and per_token:
        per_token = per_token * -(-spec.layers // pp) // spec.layers
    kv = per_token * (int(w.batch) // dp) * tokens
    act_bytes = p.act_bits / 8
    lora = 0
    if trace is None:
        cfg = spec.config
        if spec.config_class and "hidden_size" in cfg:
            hidden = int(cfg["hidden_size"])
            wide = max(int(cfg.get("intermediate_size") or cfg.get("ffn_dim") or 4 * hidden), hidden)
            rows = int(w.batch) * int(w.prompt)
            scores = int(w.batch) * int(cfg.get("num_attention_heads", 1)) * int(w.prompt) ** 2
            acts = int((rows * (2 * wide + 2 * hidden) + scores) * act_bytes)
        else:  # project-native models: their trace says
            acts = 0
    else:
        storage = trace["dtype"].map({"fp32": 4, "fp16": 2, "bf16": 2}).fillna(2)
        own = (trace.bytes_read - trace.weight_bytes - trace.kv_bytes_read + trace.bytes_written).clip(lower=0)
        acts = int((own * act_bytes / storage).max()) if len(trace) else 0
        if w.lora is not None:  # the adapters' weights, as traced (role lora), spread over the stages
            ad = (trace.role == "lora").to_numpy()
            lora = int((trace.weight_bytes[ad] / storage[ad]).sum() * p.weight_storage_bits / 8) // pp
    return MemoryNeed(weights=weights, kv_cache=kv, activations=acts, lora=lora, kv_per_token=per_token)


def check_size(n: MemoryNeed) -> None:
    """Raise :class:`Infeasible` for sizes no device could hold (past :data:`ABSURD_BYTES`)."""
    if n.total > ABSURD_BYTES:
        raise Infeasible(f"needs {n.total / GB:.3g} GB of device memory (weights {n.weights / GB:.3g} GB, "
                         f"KV cache {n.kv_cache / GB:.3g} GB, activations {n.activations / GB:.3g} GB): no device "
                         "holds that; use a smaller batch, prompt or decode_tokens")


def check(n: MemoryNeed, target, w, name: str = "", par=None) -> None:
    """Raise :class:`Infeasible` unless ``n`` (one device's need, of ``par``'s devices sharing the
    model) fits the target's memory (see the module docstring)."""
    check_size(n)
    tp, dp = (par.tp * par.pp, par.dp) if par is not None else (1, 1)
    batch = int(w.batch) // dp
    cap = target.memory.capacity_bytes
    if not cap or n.total <= cap:
        return
    fits = []
    room = cap - n.weights - n.activations - n.lora
    if n.kv_per_token and room > 0:
        tokens = room // (n.kv_per_token * max(1, batch))
        if tokens >= 1:
            fits.append(f"at most {tokens:,} tokens of prompt + decode at batch {int(w.batch)}")
        per_seq = n.kv_per_token * (int(w.prompt) + int(w.decode_tokens or 0))
        if per_seq and room // per_seq >= 1 and room // per_seq < batch:
            fits.append(f"batch {room // per_seq * dp} at this length")
    devices = -(-n.total * tp // cap)
    per = " per replica" if dp > 1 else ""
    if getattr(target, "link", None) is not None:  # only a target with a device-to-device link splits a model
        fits.append(f"{devices} devices{per} sharing it (parallel.tp, or tp x pp)" if devices > tp else "")
    fits = [f for f in fits if f]
    wb = w.precision.weight_storage_bits
    for bits in (8, 4):
        if bits < wb and n.total - n.weights + n.weights * bits / wb <= cap:
            fits.append(f"weights at {bits} bits (workload.weight_bits: {bits})")
            break
    where = f"{name}: " if name else ""
    raise Infeasible(
        f"{where}does not fit: needs {_gb(n.total)} GB (weights {_gb(n.weights)}, KV cache "
        f"{_gb(n.kv_cache)}" + (f", activations {n.activations / GB:.2f}" if n.activations else "")
        + (f", LoRA {n.lora / GB:.2f}" if n.lora else "")
        + f" GB{' per device' if tp > 1 or dp > 1 else ''}) against {_gb(cap)} GB of device memory"
        + ("; would fit: " + "; ".join(fits) if fits else ""))


def _gb(b: float) -> str:
    """Bytes as GB: one decimal, or three significant digits below 1 GB (an FPGA's on-chip memory)."""
    return f"{b / GB:.1f}" if b >= GB or b == 0 else f"{b / GB:.3g}"
