"""models.ternary alone: ternary codes, BitLinear quantizers, the exact ternary dot product, the Q8.8
row ops against brute-force rational arithmetic, the measured approximation errors, cycle formulas."""

from fractions import Fraction
from math import floor

import numpy as np
import pytest

from models import ternary as tm
from models.errors import SimError

# ------------------------------------------------------------------------------------ codes, quantizers


def test_ternary_codes_round_trip():
    w = np.array([-1, 0, 1, 1, -1, 0])
    codes = tm.encode_ternary(w)
    assert codes.tolist() == [0b11, 0b00, 0b01, 0b01, 0b11, 0b00] and codes.dtype == np.uint8
    assert np.array_equal(tm.decode_ternary(codes), w)
    assert tm.decode_ternary([0, 1, 2, 3]).tolist() == [0, 1, 0, -1]  # the reserved 0b10 reads as 0
    rng = np.random.default_rng(0)
    w = rng.integers(-1, 2, (64, 333))
    assert np.array_equal(tm.decode_ternary(tm.encode_ternary(w)), w)
    assert tm.CODE_RESERVED not in tm.encode_ternary(w)


@pytest.mark.parametrize("fn,arg", [(tm.encode_ternary, [2]), (tm.encode_ternary, [0.5]), (tm.decode_ternary, [4]),
                                    (tm.decode_ternary, [-1]), (tm.ternary_dot_ref, None)])
def test_bad_codes_are_rejected(fn, arg):
    with pytest.raises(SimError):
        fn(arg) if arg is not None else fn([1, 2], [1])


def test_weight_quantizer_is_absmean():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((48, 80)) * 0.02
    w_q, scale = tm.quantize_weights_absmean(w)
    assert scale == pytest.approx(np.abs(w).mean(), rel=1e-12)
    brute = [[max(-1, min(1, round(x / (scale + tm.EPS)))) for x in row] for row in w]
    assert w_q.tolist() == brute and w_q.dtype == np.int8
    assert set(np.unique(w_q)) == {-1, 0, 1}
    # weights within half a scale of zero are dropped; beyond 1.5 scales they clip to +-1
    assert np.all(w_q[np.abs(w) < 0.49 * scale] == 0) and np.all(np.abs(w_q[np.abs(w) > 0.51 * scale]) == 1)
    z, s = tm.quantize_weights_absmean(np.zeros((3, 4)))
    assert s == 0 and not z.any()


def test_activation_quantizer_is_per_token_absmax():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 7, 64)) * rng.uniform(0.1, 10, (5, 7, 1))
    x_q, scale = tm.quantize_acts_absmax(x)
    assert x_q.dtype == np.int8 and scale.shape == (5, 7, 1)
    amax = np.abs(x).max(-1, keepdims=True)
    assert np.allclose(scale, amax / 127)
    assert np.all(np.abs(x_q).max(-1) == 127)  # each token's largest magnitude maps to +-127
    assert np.all(np.abs(x_q * scale - x) <= scale / 2 + 1e-12)
    assert np.array_equal(x_q, np.clip(np.round(x * 127 / amax), -128, 127))
    z, s = tm.quantize_acts_absmax(np.zeros((2, 3)))
    assert not z.any() and np.all(s == tm.EPS / 127)


def test_bitlinear_is_the_dequantized_ternary_matmul():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((4, 96)), rng.standard_normal((10, 96))
    y = tm.bitlinear_ref(x, w)
    x_q, sx = tm.quantize_acts_absmax(x)
    w_q, sw = tm.quantize_weights_absmean(w)
    assert np.allclose(y, (x_q.astype(np.int64) @ w_q.T.astype(np.int64)) * sx * sw)
    # a coarse approximation of the float layer: the ternary weights keep the sign structure
    assert np.corrcoef(y.ravel(), (x @ w.T).ravel())[0, 1] > 0.8


# ------------------------------------------------------------------------------------ ternary dot


def test_ternary_dot_is_add_subtract_skip():
    rng = np.random.default_rng(4)
    for _ in range(300):
        k = int(rng.integers(1, 200))
        a, c = rng.integers(-128, 128, k), rng.integers(0, 4, k)
        acc = 0
        for x, code in zip(a.tolist(), c.tolist()):
            if code == 0b01:
                acc += x
            elif code == 0b11:
                acc -= x
        assert tm.ternary_dot_ref(a, c) == acc
    a, c = rng.integers(-128, 128, (6, 50)), rng.integers(0, 4, (9, 50))
    mm = tm.ternary_matmul_ref(a, c)
    assert mm.shape == (6, 9) and mm.tolist() == [[tm.ternary_dot_ref(r, w) for w in c] for r in a]


def test_accumulator_width_is_the_smallest_that_holds_every_sum():
    for k in list(range(1, 3000)) + [65535, 65536, 1 << 20]:
        w = tm.acc_bits(k)
        lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
        assert lo <= -128 * k and 128 * k <= hi  # the extremes: all -128 times all +1 or all -1
        assert not (-(1 << (w - 2)) <= -128 * k and 128 * k <= (1 << (w - 2)) - 1)
        assert tm.max_length(w) >= k
    assert (tm.acc_bits(1), tm.acc_bits(1024), tm.acc_bits(65535), tm.max_length(24)) == (9, 19, 24, 65535)


# ------------------------------------------------------------------------------------ Q8.8 row ops


def rnd(fr: Fraction) -> int:
    """Round to nearest, ties toward +infinity, then saturate to int16."""
    return max(tm.Q_MIN, min(tm.Q_MAX, floor(fr + Fraction(1, 2))))


def test_elementwise_ops_against_rational_arithmetic():
    rng = np.random.default_rng(6)
    a = np.r_[rng.integers(tm.Q_MIN, tm.Q_MAX + 1, 3000), rng.integers(-600, 600, 1000), [tm.Q_MIN, tm.Q_MAX, 0]]
    b = np.r_[rng.integers(tm.Q_MIN, tm.Q_MAX + 1, 3000), rng.integers(-600, 600, 1000), [tm.Q_MIN, tm.Q_MIN, 0]]
    c = rng.integers(tm.Q_MIN, tm.Q_MAX + 1, a.size)
    f = np.r_[rng.integers(0, 257, 3000), rng.integers(tm.Q_MIN, tm.Q_MAX + 1, a.size - 3000)]
    al, bl, cl, fl = a.tolist(), b.tolist(), c.tolist(), f.tolist()
    assert tm.fx_add(a, b).tolist() == [rnd(Fraction(x + y)) for x, y in zip(al, bl)]
    assert tm.fx_sub(a, b).tolist() == [rnd(Fraction(x - y)) for x, y in zip(al, bl)]
    assert tm.fx_mul(a, b).tolist() == [rnd(Fraction(x * y, 256)) for x, y in zip(al, bl)]
    ref = [rnd(Fraction(g * h + (256 - g) * k, 256)) for g, h, k in zip(fl, bl, cl)]
    assert tm.gru_step(f, b, c).tolist() == ref
    # f in [0, 1]: a convex combination, never saturates, lies between h and c
    h = tm.gru_step(f[:3000], b[:3000], c[:3000])
    assert np.all(h >= np.minimum(b[:3000], c[:3000])) and np.all(h <= np.maximum(b[:3000], c[:3000]))
    with pytest.raises(SimError):
        tm.fx_add([tm.Q_MAX + 1], [0])
    with pytest.raises(SimError, match="unknown row op"):
        tm.rowwise_ref("tanh", [0])
    with pytest.raises(SimError, match="operand"):
        tm.rowwise_ref("gru", [0], [0])


def test_sigmoid_and_silu_shape():
    x = np.arange(tm.Q_MIN, tm.Q_MAX + 1)
    s, y = tm.fx_sigmoid(x), tm.fx_silu(x)
    assert np.all(np.diff(tm.sigmoid_q16(x)) >= 0) and np.all(np.diff(s) >= 0)  # monotone
    assert s.min() == 0 and s.max() == 256 and s[x == 0][0] == 128
    xs = np.arange(tm.Q_MIN + 1, tm.Q_MAX + 1)
    assert np.all(np.abs(tm.fx_sigmoid(xs) + tm.fx_sigmoid(-xs) - 256) <= 1)  # sigma(x) + sigma(-x) = 1 +- 1 LSB
    assert np.all(np.abs(y) <= np.abs(x)) and y[x == 0][0] == 0
    assert y[-1] == tm.Q_MAX and y[0] == 0 and y.min() == tm.fx_silu([round(-1.278 * 256)])[0]  # SiLU's minimum
    # the LUT: 65 knots of sigma at multiples of 1/4 in Q0.16, and exact at the knots
    assert len(tm.SIGMOID_LUT) == 65 and tm.SIGMOID_LUT[0] == 32768 and tm.SIGMOID_LUT[-1] == 65536
    knots = np.arange(0, 64) * 64
    assert tm.sigmoid_q16(knots).tolist() == list(tm.SIGMOID_LUT[:64])


def test_rsqrt_and_rmsnorm():
    v = np.r_[np.arange(1, 5000), (1 << 34) + 1, (1 << 36) - 1]
    g1, e = tm.rsqrt_fixed(v)
    assert np.all(np.abs(g1 * 2.0 ** (-15 - e) * np.sqrt(v) - 1) < 8e-5)
    assert np.all((g1 >= 1 << 14) & (g1 <= 1 << 15))
    with pytest.raises(SimError):
        tm.rsqrt_fixed([0])
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        x = tm.to_fixed(rng.standard_normal(n) * rng.uniform(0.01, 20))
        s = sum(int(t) ** 2 for t in x)  # exact sum of squares, Q16.16
        v1 = (s * 16) // n + 1  # mean square in Q.20 plus eps = 2^-20
        g, ee = tm.rms_factor(x)
        assert (g, ee) == tuple(int(t[0]) for t in tm.rsqrt_fixed([v1]))
        assert tm.fx_rmsnorm(x).tolist() == [rnd(Fraction(int(t) * g, 1 << (5 + ee))) for t in x]
    assert not tm.fx_rmsnorm(np.zeros(9, np.int64)).any()
    assert tm.fx_rmsnorm(np.full(7, tm.Q_MIN)).tolist() == [-256] * 7  # -1.0
    with pytest.raises(SimError):
        tm.fx_rmsnorm(np.zeros(tm.MAX_ROW + 1, np.int64))


def test_approximation_errors_are_the_measured_ones():
    """The errors reported for the row unit (absolute, real units, against float64)."""
    err = tm.approx_error()
    bounds = {  # (max, mean) measured, rounded up
        "sigmoid": (0.00269, 6.5e-5),  # every Q8.8 input; half an output LSB (0.00195) of it is rounding
        "sigmoid_central": (0.00269, 0.00099),  # |x| <= 8
        "sigmoid_q16": (0.00076, 1.1e-5),  # the LUT + interpolation before rounding to Q8.8
        "silu": (0.00301, 8.5e-5),
        "silu_central": (0.00301, 0.00101),
        "rsqrt_mantissa": (4.5e-5, 1.01e-5),  # 1 / sqrt(u), u in [1, 4)
        "rsqrt_rel": (7.7e-5, 1.51e-5),  # relative, V in [1, 2^34 + 1]
        "rmsnorm": (0.00249, 0.00097),  # outputs, under one LSB (0.0039)
    }
    for name, (mx, mean) in bounds.items():
        assert err[name]["max"] <= mx and err[name]["mean"] <= mean, (name, err[name])
        assert err[name]["max"] > 0.8 * mx, (name, err[name])  # the stated numbers stay honest
    assert err["sigmoid"]["points"] == 65536 and err["rsqrt_mantissa"]["points"] == 3 << 20


def test_mlgru_and_glu_compose_the_ops():
    rng = np.random.default_rng(8)
    fp, cp, gp, h0 = (rng.integers(-1500, 1500, 64) for _ in range(4))
    h, o = tm.mlgru_ref(fp, cp, gp, h0)
    sig = lambda v: 1 / (1 + np.exp(-v / 256))  # noqa: E731
    f, c = sig(fp), cp / 256 * sig(cp)
    hf = f * h0 / 256 + (1 - f) * c
    # f in Q8.8 carries up to 2^-9 of rounding, times |h - c| (up to ~6 here)
    assert np.allclose(h / 256, hf, atol=0.03) and np.allclose(o / 256, sig(gp) * hf, atol=0.03)
    assert np.array_equal(tm.glu_ref(gp, h0), tm.fx_mul(tm.fx_silu(gp), h0))


# ------------------------------------------------------------------------------------ cycles


def test_cycle_formulas():
    assert tm.ternary_unit_cycles(1, 16) == 2 and tm.ternary_unit_cycles(16, 16) == 2
    assert tm.ternary_unit_cycles(17, 16) == 3 and tm.ternary_unit_cycles(2560, 16) == 161
    assert tm.ternary_gemm_cycles(1, 1, 17, 16) == tm.ternary_unit_cycles(17, 16)
    assert tm.ternary_gemm_cycles(4, 2560, 2560, 64) == 4 * 2560 * 40 + 1
    for op in tm.ROW_OPS:
        want = 2 * 3 + 40 + 1 if op == "rmsnorm" else 3 + 1
        assert tm.rowwise_cycles(op, 17, 8) == want, op
        assert tm.rowwise_cycles(op, 17, 8, rows=5) == 5 * (want - 1) + 1
    assert tm.RMS_COMPUTE_CYCLES == 40
    for bad in [(0, 4), (4, 0), (2.0, 4), (True, 4)]:
        with pytest.raises(SimError):
            tm.ternary_unit_cycles(*bad)
    with pytest.raises(SimError):
        tm.rowwise_cycles("tanh", 4, 4)
    with pytest.raises(SimError):
        tm.rowwise_cycles("add", tm.MAX_ROW + 1, 4)
