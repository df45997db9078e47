"""Traces: schema, FLOPs against the closed form, bytes, GQA, roles, determinism, cache."""

import numpy as np
import pandas as pd
import pytest

from workloads import COLUMNS, trace, zoo
from workloads import api


def closed_form_flops(spec: zoo.ModelSpec, phase: str, b: int, s: int, ctx: int) -> int:
    """2 x (matmul parameters) x tokens + attention, from the hyperparameters.

    Matmul parameters per layer: the attention projections and the MLP (gated: 3 matrices, else 2);
    a mixture of experts: the router, and each token through its top-k gated experts.
    The LM head runs on every new token in decode and on the last position only in prefill (what
    generation needs).  Attention: Q K^T and P V, 2 x B x heads x S x (context + S) x head_dim each,
    per layer (unmasked: the causal half is computed, as dense kernels do).
    """
    c, d, hd, h, kv = spec.config, spec.hidden, spec.head_dim, spec.heads, spec.kv_heads
    ff = c.get("intermediate_size") or c["ffn_dim"]
    gated = spec.family in ("llama", "qwen2", "phi3")
    tokens = b * s
    experts = c.get("num_local_experts") or c.get("num_experts")
    if experts:  # a mixture of experts: the router, and every token through top-k gated experts
        per_layer = d * h * hd + 2 * d * kv * hd + h * hd * d + d * experts
        ff = c.get("moe_intermediate_size") or ff
        flops = 2 * per_layer * spec.layers * tokens + 2 * 3 * d * ff * tokens * c["num_experts_per_tok"] * spec.layers
    else:
        per_layer = d * h * hd + 2 * d * kv * hd + h * hd * d + (3 if gated else 2) * d * ff
        flops = 2 * per_layer * spec.layers * tokens
    if spec.kind == "decoder":
        head_tokens = b if phase == "prefill" else tokens
        flops += 2 * d * spec.vocab * head_tokens
    else:
        flops += 2 * d * d * b  # BERT pooler
    flops += 4 * b * h * s * (ctx + s) * hd * spec.layers
    return flops


# transformers only: project-native models (MatMul-free LM, Lamarr's networks) have their own tests
CASES = [(s.name, "prefill", 2, 96, 0) for s in zoo.specs() if s.builder is None] + [
    (s.name, "decode", 2, 1, 300) for s in zoo.specs() if s.kind == "decoder" and s.builder is None
]


@pytest.mark.parametrize("name,phase,b,s,ctx", CASES)
def test_total_flops_match_closed_form(name, phase, b, s, ctx):
    spec = zoo.get(name)
    df = trace(name, phase, b, s, ctx, "fp16")
    want = closed_form_flops(spec, phase, b, s, ctx)
    got = int(df["flops"].sum())
    assert abs(got - want) / want < 0.01, (got, want)
    # the matmuls alone are exact (biases add one FLOP per output in addmm)
    mm = df[df.kind.isin(["gemm", "attn_matmul"])]
    assert 0 <= int(mm.flops.sum()) - want <= int((mm.gemm_m * mm.gemm_n * mm.gemm_batch).sum())


@pytest.mark.parametrize("name", ["Llama-2-7B", "OPT-1.3B", "Phi-2", "Phi-3-mini", "Qwen2-7B"])
def test_decode_weight_bytes_are_the_model_less_unused_embedding_rows(name):
    spec = zoo.get(name)
    b = 3
    df = trace(name, "decode", b, 1, 40, "bf16")
    from workloads.build import build

    m = build(spec, "bf16", "meta")
    total = sum(p.numel() for p in m.parameters()) * 2
    emb = [mod for n_, mod in m.named_modules() if n_.endswith(("embed_tokens", "embed_positions"))]
    unread = sum(e.weight.numel() * 2 for e in emb) - sum(b * e.weight.shape[1] * 2 for e in emb)
    if spec.config.get("tie_word_embeddings"):
        unread -= spec.vocab * spec.hidden * 2  # the tied table is read whole by the LM head
    assert int(df.weight_bytes.sum()) == total - unread


def test_schema_columns_and_dtypes():
    df = trace("OPT-1.3B", "prefill", 1, 8)
    assert list(df.columns) == list(COLUMNS)
    for c, (t, _) in COLUMNS.items():
        if t == "int64":
            assert df[c].dtype == np.int64, c
        else:
            assert all(isinstance(x, str) for x in df[c]), c
    assert (df.idx.to_numpy() == np.arange(len(df))).all()
    assert (df[[c for c, (t, _) in COLUMNS.items() if t == "int64"]] >= -1).all().all()


def test_roles_of_a_llama_layer():
    df = trace("Llama-2-7B", "prefill", 1, 16)
    g = df[(df.layer == 5) & (df.kind == "gemm")]
    assert list(g.role) == ["q_proj", "k_proj", "v_proj", "o_proj", "mlp_gate", "mlp_up", "mlp_down"]
    assert list(g.gemm_k) == [4096] * 6 + [11008]
    assert (g.gemm_m == 16).all()
    a = df[(df.layer == 5) & (df.kind == "attn_matmul")]
    assert list(a.role) == ["attn_score", "attn_context"]
    assert set(df.layer) == set(range(32)) | {-1}
    assert df[(df.role == "lm_head") & (df.kind == "gemm")].gemm_m.tolist() == [1]  # last position only
    assert df[df.role == "embedding"].kind.tolist() == ["embedding"]


def test_fused_projections_of_phi3():
    df = trace("Phi-3-mini", "decode", 1, 1, 10)
    roles = set(df[df.kind == "gemm"].role)
    assert {"qkv_proj", "o_proj", "mlp_gate_up", "mlp_down", "lm_head"} == roles


@pytest.mark.parametrize("name,kv_heads", [("Llama-2-70B", 8), ("Llama-3-8B", 8), ("Llama-2-7B", 32)])
def test_gqa_shows_in_kv_bytes(name, kv_heads):
    spec = zoo.get(name)
    b, s, ctx = 2, 1, 1000
    df = trace(name, "decode", b, s, ctx, "fp16")
    per_token = 2 * spec.layers * kv_heads * spec.head_dim * 2  # K and V, all layers, fp16
    # the score and context matmuls each read the whole cache of their layer once
    assert int(df.kv_bytes_read.sum()) == b * (ctx + s) * per_token
    assert int(df.kv_bytes_written.sum()) == b * s * per_token
    score = df[df.role == "attn_score"].iloc[0]
    assert score.in_shapes == f"{b}x{spec.heads}x{s}x{spec.head_dim};{b}x{kv_heads}x{ctx + s}x{spec.head_dim}"


def test_prefill_writes_the_cache_and_reads_none():
    df = trace("Llama-3-8B", "prefill", 1, 64)
    assert df.kv_bytes_read.sum() == 0
    assert df.kv_bytes_written.sum() == 64 * 2 * 32 * 8 * 128 * 2


def test_chunked_prefill_attends_over_the_context():
    spec = zoo.get("Llama-3-8B")
    df = trace("Llama-3-8B", "prefill", 1, 64, 128)
    score = df[df.role == "attn_score"].iloc[0]
    assert score.gemm_n == 192 and score.gemm_m == 64
    assert int(df.kv_bytes_read.sum()) == 192 * 2 * spec.layers * 8 * 128 * 2
    assert closed_form_flops(spec, "prefill", 1, 64, 128) == pytest.approx(df.flops.sum(), rel=0.01)


def test_dtype_sets_the_bytes():
    a = trace("OPT-1.3B", "decode", 1, 1, 10, "fp32")
    b = trace("OPT-1.3B", "decode", 1, 1, 10, "bf16")
    assert a.weight_bytes.sum() == 2 * b.weight_bytes.sum()
    assert set(b[b.kind == "gemm"].dtype) == {"bf16"}


def test_traces_are_deterministic_and_cached(monkeypatch):
    a = trace("Phi-2", "decode", 2, 1, 33, use_cache=False)
    b = trace("Phi-2", "decode", 2, 1, 33)  # miss: traced and stored
    monkeypatch.setattr(api, "_trace_uncached", lambda *a, **k: pytest.fail("cache not used"))
    c = trace("Phi-2", "decode", 2, 1, 33)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    assert c.attrs == {"model": "Phi-2", "phase": "decode", "batch": 2, "seq": 1, "context": 33, "dtype": "fp16"}


def test_cache_key_covers_shapes_and_dtype():
    from workloads import cache

    keys = {cache.key(model="m", phase="decode", batch=b, seq=1, context=c, dtype=d)
            for b in (1, 2) for c in (1, 2) for d in ("fp16", "bf16")}
    assert len(keys) == 8


def test_corrupt_cache_entry_is_a_miss():
    from workloads import cache

    trace("OPT-1.3B", "prefill", 1, 4)
    spec = zoo.get("OPT-1.3B")
    k = cache.key(model=spec.fingerprint(), phase="prefill", batch=1, seq=4, context=0, dtype="fp16")
    path = cache.cache_dir() / f"{k}.parquet"
    path.write_bytes(b"garbage")
    api._MEMO.clear()  # as in a new process: read the disk cache
    df = trace("OPT-1.3B", "prefill", 1, 4)
    assert len(df) > 0 and cache.load(k) is not None


# the zoo models the shortcut applies to (uniform layers, more than two of them); on the others
# (Lamarr's stage networks, a one-block MatMul-free LM) both calls would run the same code
REPLICATED = [n for n in zoo.names() if zoo.get(n).uniform_layers and zoo.get(n).layers > 2]


def test_the_shortcut_covers_the_zoo_s_transformers():
    assert {"Llama-2-70B", "Qwen2-72B", "MMfreeLM-370M", "all-MiniLM-L6-v2"} <= set(REPLICATED)
    assert not any(n.startswith("Lamarr-") for n in REPLICATED)


@pytest.mark.slow
@pytest.mark.parametrize("name", REPLICATED)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_two_layer_expansion_equals_the_full_trace(name, phase):
    """Tracing two layers and replicating the second is exact for every zoo model it applies to."""
    spec = zoo.get(name)
    if spec.kind == "encoder" and phase == "decode":
        pytest.skip("encoders have no decode phase")
    args = (spec, phase, 2, 5 if phase == "prefill" else 1, 0 if phase == "prefill" else 7, "fp16")
    full = api._trace_uncached(*args, replicate=False)
    fast = api._trace_uncached(*args)
    pd.testing.assert_frame_equal(fast, full)
