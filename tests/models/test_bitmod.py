"""BitMoD numerics against brute-force references on random weights, plus edge cases."""

import numpy as np
import pytest

from models import bitmod as bm


def test_value_sets():
    assert bm.values("fp4").tolist() == [-6, -4, -3, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert bm.values("fp3").tolist() == [-4, -2, -1, 0, 1, 2, 4]
    # one special value in the code of the redundant -0: 16 (4-bit) and 8 (3-bit) codes, all used
    assert len(bm.values("fp4_er_pos")) == 16 and 5.0 in bm.values("fp4_er_pos")
    assert -8.0 in bm.values("fp4_ea_neg") and 8.0 not in bm.values("fp4_ea_neg")
    assert len(bm.values("fp3_ea_pos")) == 8 and 6.0 in bm.values("fp3_ea_pos")
    assert -3.0 in bm.values("fp3_er_neg")
    with pytest.raises(ValueError):
        bm.values("fp5_er_pos")


def brute_round(x, vals):
    d = np.abs(x[:, None] - vals[None, :])
    return vals[np.argmin(d, axis=1)]  # argmin takes the first (lower) value on a tie


@pytest.mark.parametrize("name", ["fp4", "fp3", *bm.CANDIDATES[4], *bm.CANDIDATES[3]])
def test_rounding_is_nearest_with_ties_down(name):
    vals = bm.values(name)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-10, 10, 20000), (vals[1:] + vals[:-1]) / 2, vals, [-1e6, 1e6, 0.0]])
    assert np.array_equal(bm.round_to_set(x, vals), brute_round(x, vals))


def brute_bitmod(w, bits):
    """Per group, try every candidate and keep the first with the lowest MSE."""
    rows, cols = w.shape
    out = np.empty_like(w)
    choice = np.empty((rows, cols // 128), dtype=int)
    for r in range(rows):
        for gi in range(cols // 128):
            g = w[r, gi * 128:(gi + 1) * 128]
            best = None
            for ci, name in enumerate(bm.CANDIDATES[bits]):
                vals = bm.values(name)
                s = min(max(np.abs(g).max() / np.abs(vals).max(), 1e-5), 1e4)
                q = brute_round(g / s, vals) * s
                e = ((q - g) ** 2).mean()
                if best is None or e < best[0]:
                    best = (e, q, ci)
            out[r, gi * 128:(gi + 1) * 128] = best[1]
            choice[r, gi] = best[2]
    return out, choice


@pytest.mark.parametrize("bits", [3, 4])
def test_bitmod_picks_the_lowest_mse_candidate(bits):
    rng = np.random.default_rng(bits)
    # 10,000 groups of different shapes: gaussian, skewed, with outliers of either sign
    w = rng.standard_normal((100, 128 * 100))
    w[::3] += rng.exponential(0.5, w[::3].shape)
    w[1::7, ::53] *= 9
    w[2::5, ::61] *= -12
    q = bm.quantize_bitmod(w, bits, scale_bits=None)
    ref, choice = brute_bitmod(w[:8], bits)
    assert np.allclose(q.dequant[:8], ref, rtol=0, atol=1e-12)
    assert np.array_equal(q.choice[:8], choice)
    # over all 10,000 groups: no single candidate beats the mixture on any group
    g = w.reshape(100, 100, 128)
    mix = ((q.dequant.reshape(g.shape) - g) ** 2).mean(-1)
    for name in bm.CANDIDATES[bits]:
        one = bm.quantize_set(w, [name], bits)
        assert np.all(mix <= ((one.dequant.reshape(g.shape) - g) ** 2).mean(-1) + 1e-15)
    assert set(np.unique(q.choice)) == {0, 1, 2, 3}  # all four variants get used


def test_extra_resolution_never_loses_to_plain_fp4():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((64, 1024))
    g = w.reshape(64, 8, 128)
    fp4 = ((bm.quantize_fp(w, 4).dequant.reshape(g.shape) - g) ** 2).mean(-1)
    er = bm.quantize_set(w, ["fp4_er_pos", "fp4_er_neg"], 4)
    assert np.all(((er.dequant.reshape(g.shape) - g) ** 2).mean(-1) <= fp4 + 1e-15)


def test_int_asym_matches_the_formula_and_keeps_the_range():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 256)) + 0.3
    for bits in (3, 4):
        q = bm.quantize_int_asym(w, bits)
        g = w.reshape(16, 2, 128)
        top = 2**bits - 1
        s = (g.max(-1) - g.min(-1)) / top
        zp = np.clip(np.round(-g.min(-1) / s), 0, top)
        codes = np.clip(np.round(g / s[..., None]) + zp[..., None], 0, top)
        assert np.allclose(q.dequant.reshape(g.shape), (codes - zp[..., None]) * s[..., None])
        assert len(np.unique(np.round(q.dequant[0, :128] / q.scales[0, 0]))) <= 2**bits
        assert np.abs(q.dequant - w).max() <= s.max()  # within a step of the range


def test_int_sym_codes():
    w = np.linspace(-1, 1, 128)[None, :]
    q = bm.quantize_int_sym(w, 4)
    assert np.allclose(np.unique(np.round(q.dequant / q.scales[0, 0])), np.arange(-7, 8))


def test_edge_cases():
    z = np.zeros((2, 128))
    for fmt in ("bitmod", "int_asym", "int_sym", "fp"):
        assert np.array_equal(bm.quantize(z, fmt, 4).dequant, z)  # zeros stay zeros
    one = np.zeros((1, 128))
    one[0, 5] = -3.7  # a single outlier is represented exactly by some variant's extreme
    q = bm.quantize_bitmod(one, 4, scale_bits=None)
    assert q.dequant[0, 5] == pytest.approx(-3.7) and np.count_nonzero(q.dequant) == 1
    with pytest.raises(ValueError):
        bm.quantize_bitmod(np.zeros((2, 100)), 4)
    with pytest.raises(ValueError):
        bm.quantize(np.zeros((2, 128)), "nf4", 4)


def test_second_level_scales_are_8_bit_codes():
    rng = np.random.default_rng(5)
    s = rng.uniform(0.01, 1.0, (32, 12))
    qs = bm.quantize_scales(s, 8)
    step = s.max(axis=1, keepdims=True) / 255
    codes = qs / step
    assert np.allclose(codes, np.round(codes)) and np.round(codes).max() <= 255 and np.round(codes).min() >= 0
    assert np.all(np.abs(qs - s) <= step / 2 + 1e-15)
    w = rng.standard_normal((32, 128 * 12))
    q8 = bm.quantize_bitmod(w, 4)
    assert q8.bits_per_weight == pytest.approx(4 + 10 / 128)
    exact = bm.quantize_bitmod(w, 4, scale_bits=None)
    # 8-bit scales cost little (paper Table V: INT8 scales lossless at the model level)
    assert ((q8.dequant - w) ** 2).mean() < 1.05 * ((exact.dequant - w) ** 2).mean()
