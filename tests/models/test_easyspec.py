"""EasySpec speculative decoding: losslessness, layer-parallel drafting, KV calibration,
acceptance bookkeeping and deterministic training (models/easyspec.py)."""

import math

import pytest
import torch

from models import easyspec as es


def _tiny(seed, n_layer=4, d_model=32, n_head=2, max_len=96, scale=1.0):
    torch.manual_seed(seed)
    m = es.TinyLM(es.LMConfig(n_layer=n_layer, d_model=d_model, n_head=n_head, max_len=max_len))
    with torch.no_grad():  # larger weights than the 0.02 init, so the argmax is not flat
        for p in m.parameters():
            if p.dim() >= 2:
                p.mul_(scale * 20.0)
    return m.double().eval()


def _prompt(seed, n=12):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n,), generator=g).tolist()


@pytest.fixture(scope="module")
def pair():
    return es.load_pretrained()


@pytest.fixture(scope="module")
def pair_prompts():
    # held-out-style English prompts (no corpus download needed in tests)
    return [es.encode(s) for s in (
        "PROSPERO.\nNow I arise:\nSit still, and hear the last of our sea-sorrow.",
        "When I do count the clock that tells the time,\nAnd see the brave day",
        "MIRANDA.\nO, I have suffered\nWith those that I saw suffer!")]


def test_cached_forward_matches_full_forward():
    m = _tiny(0)
    ids = torch.tensor([_prompt(1, 20)])
    full = m(ids)
    cache = m.new_cache()
    parts = [m(ids[:, :7], cache), m(ids[:, 7:8], cache), m(ids[:, 8:20], cache)]
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-12)
    assert len(cache) == 20


@pytest.mark.parametrize("gamma,group_size", [(2, 2)] + [  # one case in the fast tier, the rest slow
    pytest.param(g, s, marks=pytest.mark.slow) for g in (1, 2, 3, 5) for s in (1, 2, 4) if (g, s) != (2, 2)])
def test_speculative_is_lossless_random_models(gamma, group_size):
    base, draft = _tiny(10, n_layer=3), _tiny(11, n_layer=4, d_model=16)
    for s in range(3):
        p = _prompt(100 + s)
        ref = es.greedy_decode(base, p, 40)
        out, st = es.speculative_decode(base, draft, p, 40, gamma, group_size)
        assert out == ref
        assert sum(st.tokens_per_iter) >= 40


@pytest.mark.slow
@pytest.mark.parametrize("gamma", [2, 4])
@pytest.mark.parametrize("group_size", [1, 2, 4])
def test_speculative_is_lossless_trained_pair(pair, pair_prompts, gamma, group_size):
    base, draft = pair
    for p in pair_prompts:
        ref = es.greedy_decode(base, p, 48)
        out, st = es.speculative_decode(base, draft, p, 48, gamma, group_size)
        assert out == ref
        if group_size == 1:  # a trained draft agrees with its base fairly often
            assert st.alpha > 0.3


def test_group_size_one_equals_exact_forward():
    m = _tiny(3)
    ids = torch.tensor([_prompt(4, 16)])
    c1, c2 = m.new_cache(), m.new_cache()
    assert torch.equal(m(ids, c1), m(ids, c2, group_size=1))
    for i in range(m.cfg.n_layer):
        assert torch.equal(c1.k[i], c2.k[i]) and torch.equal(c1.v[i], c2.v[i])
    # and a larger group really changes the forward (of a model with layers between its ends)
    m4 = _tiny(3, n_layer=4)
    ids4 = torch.tensor([_prompt(4, 16)])
    assert not torch.allclose(m4(ids4), m4(ids4, group_size=2))


def test_layer_groups_keep_the_first_and_last_layers_exact():
    assert es.layer_groups(4, 2) == [[0], [1, 2], [3]]
    assert es.layer_groups(6, 4) == [[0], [1, 2, 3, 4], [5]]
    assert es.layer_groups(6, 99) == [[0], [1, 2, 3, 4], [5]]
    assert es.layer_groups(4, 2, exact_ends=False) == [[0, 1], [2, 3]]
    assert es.layer_groups(4, 1) == [[0], [1], [2], [3]]
    assert es.layer_groups(2, 2) == [[0, 1]]  # too few layers to keep ends apart


@pytest.mark.parametrize("exact_ends", [False, True])
def test_layer_parallel_group_semantics(exact_ends):
    """A group's attentions all read the group's input; each layer then adds its attention and its
    MLP in order (interleaved); with exact_ends the first and last layers run exactly."""
    m = _tiny(5, n_layer=4)
    ids = torch.tensor([_prompt(6, 10)])
    with torch.no_grad():
        x = m.tok(ids)
        groups = [[0], [1, 2], [3]] if exact_ends else [[0, 1, 2, 3]]
        for group in groups:
            x0 = x
            for i in group:
                x = x + m.blocks[i].attention(x0, None, i, 0)
                x = x + m.blocks[i].mlp(x)
        ref = torch.nn.functional.linear(m.ln_f(x), m.tok.weight)
        g = 2 if exact_ends else 4
        assert torch.allclose(m(ids, group_size=g, exact_ends=exact_ends), ref, atol=1e-12)
        assert torch.allclose(m(ids, group_size=99, exact_ends=exact_ends), ref, atol=1e-12)
        # the old form (all of a group's attentions summed before any MLP) is not it
        x = m.tok(ids)
        x0 = x
        x = x + sum(b.attention(x0, None, i, 0) for i, b in enumerate(m.blocks))
        for b in m.blocks:
            x = x + b.mlp(x)
        old = torch.nn.functional.linear(m.ln_f(x), m.tok.weight)
        assert not torch.allclose(m(ids, group_size=4, exact_ends=False), old)


def test_layer_parallel_drafting_group_one_equals_exact():
    base, draft = _tiny(20, n_layer=2), _tiny(21, n_layer=4, d_model=16)
    p = _prompt(22)
    d_exact = es.SpeculativeDecoder(base, draft, p, 4, group_size=None)
    d_g1 = es.SpeculativeDecoder(base, draft, p, 4, group_size=1)
    for _ in range(6):
        assert d_exact.propose() == d_g1.propose()
        d_exact.step(), d_g1.step()
        assert d_exact.seq == d_g1.seq
    assert d_exact.stats == d_g1.stats


@pytest.mark.parametrize("group_size", [2, 4])
def test_calibration_restores_exact_kv_cache(group_size):
    base, draft = _tiny(30, n_layer=2), _tiny(31, n_layer=4, d_model=16, scale=0.3)
    dec = es.SpeculativeDecoder(base, draft, _prompt(32), gamma=4, group_size=group_size)
    for _ in range(6):
        dec.step()
        fresh = draft.new_cache()
        logits = draft(torch.tensor([dec.seq]), fresh)
        assert len(dec.draft_cache) == len(dec.seq) == len(fresh)
        for i in range(draft.cfg.n_layer):
            assert torch.allclose(dec.draft_cache.k[i], fresh.k[i], atol=1e-10)
            assert torch.allclose(dec.draft_cache.v[i], fresh.v[i], atol=1e-10)
        assert torch.allclose(dec.draft_next, logits[0, -1], atol=1e-10)
    # without calibration the draft cache would hold approximate entries: after a proposal,
    # the last layer's key for the first drafted token differs from the exact one
    n = len(dec.seq)
    d1 = int(dec.draft_next.argmax())
    dec.propose()
    assert len(dec.draft_cache) == n + dec.gamma - 1
    exact = draft.new_cache()
    draft(torch.tensor([dec.seq + [d1]]), exact)
    assert torch.allclose(dec.draft_cache.k[0][:, :, n], exact.k[0][:, :, n], atol=1e-10)
    assert not torch.allclose(dec.draft_cache.k[3][:, :, n], exact.k[3][:, :, n], atol=1e-6)


@pytest.mark.parametrize("gamma,group_size", [(3, 2), (4, 4)])
def test_refill_on_mismatch_is_lossless_and_calibrates_only_after_a_rejection(gamma, group_size):
    base, draft = _tiny(60, n_layer=2), _tiny(61, n_layer=4, d_model=16, scale=0.3)
    p = _prompt(62)
    ref = es.greedy_decode(base, p, 40)
    out, st = es.speculative_decode(base, draft, p, 40, gamma, group_size, refill="on_mismatch")
    assert out == ref
    # after an iteration that accepted every draft the layer-parallel entries stay (the exact prefix
    # does not move); after a rejection calibration recomputes them exactly from that prefix on
    kinds = set()
    for b, d in ((base, draft), (_tiny(63, n_layer=4, scale=0.05),) * 2):  # a model as its own draft
        dec = es.SpeculativeDecoder(b, d, p, gamma, group_size, refill="on_mismatch")
        for _ in range(8):
            before = dec.n_exact
            full = dec.step() == gamma + 1
            kinds.add(full)
            assert len(dec.draft_cache) == len(dec.seq)
            if full:
                assert dec.n_exact == before
            else:
                fresh = d.new_cache()
                d(torch.tensor([dec.seq]), fresh)
                assert dec.n_exact == len(dec.seq)
                assert torch.allclose(dec.draft_cache.k[3], fresh.k[3], atol=1e-10)
        assert dec.generated == es.greedy_decode(b, p, len(dec.generated))
    assert kinds == {True, False}
    with pytest.raises(ValueError, match="refill"):
        es.SpeculativeDecoder(base, draft, p, gamma, group_size, refill="never")


def test_base_as_draft_accepts_everything():
    base = _tiny(40, n_layer=3)
    out, st = es.speculative_decode(base, base, _prompt(41), 30, gamma=3)
    assert out == es.greedy_decode(base, _prompt(41), 30)
    assert st.acceptance_rate == 1.0 and st.alpha == 1.0
    assert st.tokens_per_iter == [4] * st.iterations
    assert st.compared == st.accepted == st.drafted == 3 * st.iterations
    assert es.expected_tokens_per_iter(st.alpha, 3) == 4.0


def test_acceptance_bookkeeping():
    base, draft = _tiny(50, n_layer=2), _tiny(51, n_layer=4, d_model=16)
    dec = es.SpeculativeDecoder(base, draft, _prompt(52), gamma=4, group_size=2)
    n_prev = len(dec.generated)
    for _ in range(10):
        drafts_before = len(dec.generated)
        k = dec.step()
        assert 1 <= k <= 5 and len(dec.generated) - drafts_before == k
    st = dec.stats
    assert st.iterations == 10 and st.drafted == 40
    assert sum(st.tokens_per_iter) == len(dec.generated) - n_prev
    assert st.accepted == sum(t - 1 for t in st.tokens_per_iter)
    assert st.compared == sum(min(t - 1 + 1, 4) for t in st.tokens_per_iter)
    assert st.acceptance_rate == st.accepted / 40
    assert st.mean_tokens_per_iter == pytest.approx(1 + st.accepted / 10)
    if st.compared:
        assert st.alpha == st.accepted / st.compared


def test_expected_tokens_per_iter():
    assert es.expected_tokens_per_iter(0.0, 4) == 1.0
    assert es.expected_tokens_per_iter(1.0, 4) == 5.0
    a = 0.7
    assert es.expected_tokens_per_iter(a, 3) == pytest.approx(1 + a + a**2 + a**3)


@pytest.mark.slow
def test_measure_acceptance_dataframe():
    base, draft = _tiny(60, n_layer=2), _tiny(61, n_layer=4, d_model=16)
    df = es.measure_acceptance(base, draft, [_prompt(62), _prompt(63)], gammas=(2, 3),
                               max_new_tokens=16)
    assert list(df["mode"]) == ["exact", "exact", "g2", "g2", "all", "all"]
    assert df["lossless"].all()
    assert ((df["acceptance_rate"] >= 0) & (df["acceptance_rate"] <= 1)).all()
    assert ((df["mean_tokens_per_iter"] >= 1) & (df["mean_tokens_per_iter"] <= df["gamma"] + 1)).all()
    row = df.iloc[1]
    assert row["expected_tokens_per_iter"] == pytest.approx(
        es.expected_tokens_per_iter(row["alpha"], 3))


def test_committed_weights_match_manifest(pair):
    base, draft = pair
    assert base.cfg.n_layer > draft.cfg.n_layer or base.cfg.d_model > draft.cfg.d_model
    assert es.n_params(base) > 3 * es.n_params(draft)
    assert base.cfg.vocab == draft.cfg.vocab == 256  # one byte-level tokenizer


@pytest.mark.slow
def test_deterministic_training():
    text = ("To be, or not to be, that is the question:\n"
            "Whether 'tis nobler in the mind to suffer\n") * 8
    data = torch.tensor(es.encode(text), dtype=torch.uint8)
    cfg = es.LMConfig(n_layer=2, d_model=32, n_head=2, max_len=64)
    tcfg = es.TrainConfig(steps=20, batch=4, seq_len=32, lr=3e-3, warmup=5, seed=7)
    m1, l1 = es.train_lm(cfg, tcfg, data)
    m2, l2 = es.train_lm(cfg, tcfg, data)
    assert es.state_hash(m1) == es.state_hash(m2)
    assert es.state_hash(m1, torch.float32) == es.state_hash(m2, torch.float32)
    assert l1 == l2 and math.isfinite(l1)
    m3, _ = es.train_lm(cfg, es.TrainConfig(**{**tcfg.__dict__, "seed": 8}), data)
    assert es.state_hash(m3) != es.state_hash(m1)
