"""The zoo: architectures rebuilt from published hyperparameters match the published sizes."""

import pytest

from models.errors import SimError
from workloads import zoo
from workloads.build import build

DECODERS = [s.name for s in zoo.specs() if s.kind == "decoder"]

EXPECTED_ZOO = {"OPT-1.3B", "OPT-6.7B", "Phi-2", "Phi-3-mini", "Yi-6B", "Llama-2-7B", "Llama-2-13B",
                "Llama-2-70B", "Llama-3-8B", "Llama-3-70B", "Qwen2-7B", "Qwen2-72B", "all-MiniLM-L6-v2",
                "Mixtral-8x7B", "Qwen3-30B-A3B"}


def closed_form_params(s: zoo.ModelSpec) -> int:
    """Parameter count from the hyperparameters alone, by hand, per family."""
    c, d, L, V = s.config, s.hidden, s.layers, s.vocab
    hd, h, kv = s.head_dim, s.heads, s.kv_heads
    if s.family == "opt":
        ff = c["ffn_dim"]
        attn = 4 * (d * d + d)
        mlp = d * ff + ff + ff * d + d
        norms = 2 * 2 * d
        emb = V * d + (c["max_position_embeddings"] + 2) * d  # learned positions, offset 2
        return emb + L * (attn + mlp + norms) + 2 * d  # tied lm_head, final LayerNorm
    if s.family == "phi":
        ff = c["intermediate_size"]
        attn = 4 * (d * d + d)
        mlp = d * ff + ff + ff * d + d
        return V * d + L * (attn + mlp + 2 * d) + 2 * d + d * V + V  # untied lm_head with bias
    if s.family == "bert":
        ff = c["intermediate_size"]
        attn = 4 * (d * d + d) + 2 * d
        mlp = d * ff + ff + ff * d + d + 2 * d
        emb = (V + c["max_position_embeddings"] + c["type_vocab_size"]) * d + 2 * d
        return emb + L * (attn + mlp) + d * d + d  # + pooler
    if s.family in ("mixtral", "qwen3_moe"):  # mixtures of experts: gated experts, a router, untied head
        experts = c.get("num_local_experts") or c["num_experts"]
        ff = c.get("moe_intermediate_size") or c["intermediate_size"]
        attn = d * h * hd + 2 * d * kv * hd + h * hd * d
        if s.family == "qwen3_moe":
            attn += 2 * hd  # q_norm, k_norm over the head dimension
        moe = experts * 3 * d * ff + d * experts
        return V * d + L * (attn + moe + 2 * d) + d + d * V
    # llama, qwen2, phi3: gated MLP, RMSNorm, untied lm_head
    ff = c["intermediate_size"]
    attn = d * h * hd + 2 * d * kv * hd + h * hd * d
    if s.family == "qwen2":
        attn += h * hd + 2 * kv * hd  # q, k, v biases
    return V * d + L * (attn + 3 * d * ff + 2 * d) + d + d * V


def test_zoo_has_the_published_models():
    assert EXPECTED_ZOO <= set(zoo.names())
    for s in zoo.specs():
        assert s.source and s.params_source and s.published_params > 0, s.name


@pytest.mark.parametrize("name", sorted(EXPECTED_ZOO))
def test_parameter_count_matches_published(name):
    spec = zoo.get(name)
    model = build(spec, "fp16", "meta")
    n = sum(p.numel() for p in model.parameters())
    assert n == closed_form_params(spec)
    assert abs(n - spec.published_params) / spec.published_params < 0.01, (n, spec.published_params)


def test_real_minilm_checkpoint_has_the_published_count():
    from workloads.build import load_real

    m = load_real(zoo.get("all-MiniLM-L6-v2"))
    assert sum(p.numel() for p in m.parameters()) == zoo.get("all-MiniLM-L6-v2").published_params


def test_gqa_models_have_eight_kv_heads():
    for name in ("Llama-2-70B", "Llama-3-8B", "Llama-3-70B", "Qwen2-72B"):
        assert zoo.get(name).kv_heads == 8
    assert zoo.get("Llama-2-7B").kv_heads == 32


def test_names_are_case_and_punctuation_insensitive():
    assert zoo.get("llama-2-7b") is zoo.get("Llama_2_7B") is zoo.get("LLAMA 2 7B")


def test_unknown_model_suggests_close_matches():
    with pytest.raises(SimError) as e:
        zoo.get("llama2-7")
    msg = str(e.value)
    assert "unknown model" in msg and "Llama-2-7B" in msg and "\n" not in msg


def test_registering_a_conflicting_name_is_refused():
    spec = zoo.get("Llama-2-7B")
    with pytest.raises(ValueError):
        zoo.register(zoo.ModelSpec("llama-2-7b", "llama", "decoder", {**spec.config, "hidden_size": 8}))
