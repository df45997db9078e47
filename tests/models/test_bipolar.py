"""Bipolar-INT numerics and the one-bit GEMM decomposition against plain int64 references."""

import itertools

import numpy as np
import pytest

from models import bipolar as bp
from models.errors import SimError

FMTS = bp.FORMATS
PAIRS = list(itertools.product(FMTS, FMTS))


def all_values(bits, fmt):
    lo, hi = bp.value_range(bits, fmt)
    step = 2 if fmt == "bipolar" else 1
    return np.arange(lo, hi + 1, step, dtype=np.int64)


def random_values(rng, shape, bits, fmt):
    lo, hi = bp.value_range(bits, fmt)
    if fmt == "bipolar":
        return 2 * rng.integers(0, 1 << bits, size=shape, dtype=np.int64) - ((1 << bits) - 1)
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)


def brute_bits(values, bits, fmt):
    """Stored bit patterns, independently of the module: Python ints, one value at a time."""
    out = np.zeros((bits, len(values)), dtype=np.uint8)
    for col, v in enumerate(values.tolist()):
        if fmt == "signed":
            u = v % (1 << bits)
        elif fmt == "bipolar":
            u = (v + (1 << bits) - 1) // 2
        else:
            u = v
        for i in range(bits):
            out[i, col] = (u >> i) & 1
    return out


# ---------------------------------------------------------------- formats and conversion


@pytest.mark.parametrize("bits", range(1, 17))
def test_value_ranges_and_weights(bits):
    assert bp.value_range(bits, "unsigned") == (0, 2**bits - 1)
    assert bp.value_range(bits, "signed") == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert bp.value_range(bits, "bipolar") == (-(2**bits - 1), 2**bits - 1)
    # 2^n codes in each format
    assert all(len(all_values(bits, f)) == 2**bits for f in FMTS)
    pw = [2**i for i in range(bits)]
    assert bp.plane_weights(bits, "unsigned").tolist() == pw
    assert bp.plane_weights(bits, "bipolar").tolist() == pw
    assert bp.plane_weights(bits, "signed").tolist() == pw[:-1] + [-pw[-1]]


@pytest.mark.parametrize("bits", range(1, 17))
def test_signed_bipolar_round_trip_every_value(bits):
    v = all_values(bits, "signed")
    b = bp.to_bipolar(v, bits)
    assert b.dtype == np.int64
    assert np.array_equal(b, 2 * v + 1)
    # a bijection onto all odd values of the bipolar range
    assert np.array_equal(b, all_values(bits, "bipolar"))
    assert np.array_equal(bp.from_bipolar(b, bits), v)
    if bits <= 8:
        # the bipolar pattern is the offset-binary pattern v + 2^(n-1) (two's complement, MSB flipped)
        planes = bp.bitplanes(b, bits, "bipolar")
        assert np.array_equal(planes, bp.bitplanes(v + 2 ** (bits - 1), bits, "unsigned"))
        flipped = bp.bitplanes(v, bits, "signed")
        flipped[-1] ^= 1
        assert np.array_equal(planes, flipped)


def test_known_bit_patterns():
    # bipolar 3-bit: 011 -> +1 +2 -4 = -1; 000 -> -7; 111 -> +7; 100 -> -1 -2 +4 = 1
    assert bp.bitplanes(np.array([-1, -7, 7, 1]), 3, "bipolar")[:, :].T.tolist() == [
        [1, 1, 0],
        [0, 0, 0],
        [1, 1, 1],
        [0, 0, 1],
    ]
    # signed 4-bit: -3 = 1101 (LSB first 1,0,1,1); -8 = 1000
    assert bp.bitplanes(np.array([-3, -8]), 4, "signed").T.tolist() == [[1, 0, 1, 1], [0, 0, 0, 1]]
    assert bp.bitplanes(np.array([6]), 3, "unsigned")[:, 0].tolist() == [0, 1, 1]
    # 1-bit: bipolar {-1, +1}, signed {-1, 0}, unsigned {0, 1}
    assert bp.from_bitplanes(np.array([[0, 1]]), "bipolar").tolist() == [-1, 1]
    assert bp.from_bitplanes(np.array([[0, 1]]), "signed").tolist() == [0, -1]
    assert bp.from_bitplanes(np.array([[0, 1]]), "unsigned").tolist() == [0, 1]


@pytest.mark.parametrize("fmt", FMTS)
def test_bitplanes_every_value(fmt):
    for bits in range(1, 9):
        v = all_values(bits, fmt)
        planes = bp.bitplanes(v, bits, fmt)
        assert planes.dtype == np.uint8 and planes.shape == (bits, len(v))
        assert np.array_equal(planes, brute_bits(v, bits, fmt))
        assert np.array_equal(bp.from_bitplanes(planes, fmt), v)
        # the value from the definition: digits (2b-1 for bipolar) times plane weights
        digits = 2 * planes.astype(np.int64) - 1 if fmt == "bipolar" else planes.astype(np.int64)
        assert np.array_equal(bp.plane_weights(bits, fmt) @ digits, v)


def test_bitplanes_keep_shape():
    rng = np.random.default_rng(1)
    v = random_values(rng, (3, 4, 5), 6, "signed")
    planes = bp.bitplanes(v, 6, "signed")
    assert planes.shape == (6, 3, 4, 5)
    assert np.array_equal(bp.from_bitplanes(planes, "signed"), v)


# ---------------------------------------------------------------- packing and one-bit GEMMs


@pytest.mark.parametrize("k", [1, 63, 64, 65, 130])
def test_pack_bits_layout(k):
    rng = np.random.default_rng(k)
    bits = rng.integers(0, 2, size=(3, k))
    words = bp.pack_bits(bits)
    assert words.dtype == np.uint64 and words.shape == (3, -(-k // 64))
    for r in range(3):
        for i in range(k):
            assert (int(words[r, i // 64]) >> (i % 64)) & 1 == bits[r, i]
    # padding bits are zero: popcount of the words equals the number of ones
    assert np.array_equal(bp.popcount(words).sum(axis=1), bits.sum(axis=1))


def test_popcount_table_matches():
    rng = np.random.default_rng(2)
    w = rng.integers(0, 2**64, size=1000, dtype=np.uint64)
    w[:3] = [0, 2**64 - 1, 1 << 63]
    expected = np.array([int(x).bit_count() for x in w])
    assert np.array_equal(bp._popcount_table(w), expected)
    assert np.array_equal(bp.popcount(w), expected)


def test_numpy_without_bitwise_count(monkeypatch):
    """The lookup-table path (numpy < 2.0) gives the same GEMMs."""
    monkeypatch.setattr(bp, "_HAS_BITWISE_COUNT", False)
    rng = np.random.default_rng(5)
    for a_fmt, b_fmt in PAIRS:
        A = random_values(rng, (3, 70), 5, a_fmt)
        B = random_values(rng, (70, 4), 6, b_fmt)
        assert np.array_equal(bp.apmm(A, B, 5, 6, a_fmt, b_fmt), A @ B)


@pytest.mark.parametrize("k", [1, 63, 64, 65, 200])
def test_binary_gemm_modes(k):
    rng = np.random.default_rng(100 + k)
    a = rng.integers(0, 2, size=(6, k))
    b = rng.integers(0, 2, size=(5, k))  # columns of B, i.e. B transposed
    wa, wb = bp.pack_bits(a), bp.pack_bits(b)
    pm_a, pm_b = 2 * a - 1, 2 * b - 1
    expected = {"and": a @ b.T, "xor": pm_a @ pm_b.T, "and_bipolar_a": pm_a @ b.T, "and_bipolar_b": a @ pm_b.T}
    for mode, ref in expected.items():
        got = bp.binary_gemm(wa, wb, k, mode)
        assert got.dtype == np.int64 and np.array_equal(got, ref), mode
    assert bp.binary_mode("bipolar", "bipolar") == "xor"
    assert bp.binary_mode("signed", "unsigned") == "and"
    assert bp.binary_mode("bipolar", "signed") == "and_bipolar_a"
    assert bp.binary_mode("unsigned", "bipolar") == "and_bipolar_b"


def test_binary_gemm_chunked(monkeypatch):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, size=(37, 150))
    b = rng.integers(0, 2, size=(11, 150))
    monkeypatch.setattr(bp, "_CHUNK_WORDS", 30)  # a few rows per chunk, ragged last chunk
    assert np.array_equal(bp.binary_gemm(bp.pack_bits(a), bp.pack_bits(b), 150, "xor"), (2 * a - 1) @ (2 * b - 1).T)
    A = random_values(rng, (37, 150), 5, "signed")
    B = random_values(rng, (150, 11), 3, "bipolar")
    assert np.array_equal(bp.apmm(A, B, 5, 3, "signed", "bipolar"), A @ B)


# ---------------------------------------------------------------- arbitrary precision matmul


@pytest.mark.parametrize(("a_fmt", "b_fmt"), PAIRS)
def test_apmm_bit_exact_every_width(a_fmt, b_fmt):
    rng = np.random.default_rng(PAIRS.index((a_fmt, b_fmt)))
    m, n, k = 5, 7, 67  # K not a multiple of 64: the last word is padded
    for p in range(1, 9):
        for q in range(1, 9):
            A = random_values(rng, (m, k), p, a_fmt)
            B = random_values(rng, (k, n), q, b_fmt)
            C = bp.apmm(A, B, p, q, a_fmt, b_fmt)
            assert C.dtype == np.int64 and C.shape == (m, n)
            assert np.array_equal(C, A @ B), (p, q)


@pytest.mark.parametrize(("a_fmt", "b_fmt"), PAIRS)
@pytest.mark.parametrize("k", [1, 64, 65])
def test_apmm_extremes(a_fmt, b_fmt, k):
    for p, q in [(1, 1), (1, 8), (8, 3), (8, 8), (16, 16)]:
        a_lo, a_hi = bp.value_range(p, a_fmt)
        b_lo, b_hi = bp.value_range(q, b_fmt)
        for av, bv in [(a_lo, b_lo), (a_hi, b_hi), (a_lo, b_hi), (a_hi, b_lo)]:
            A = np.full((2, k), av, dtype=np.int64)
            B = np.full((k, 3), bv, dtype=np.int64)
            C = bp.apmm(A, B, p, q, a_fmt, b_fmt)
            assert np.array_equal(C, np.full((2, 3), k * av * bv)), (p, q, av, bv)


@pytest.mark.parametrize(("a_fmt", "b_fmt"), PAIRS)
def test_apmm_wide_random(a_fmt, b_fmt):
    rng = np.random.default_rng(7)
    for p, q in [(12, 16), (16, 9)]:
        A = random_values(rng, (4, 129), p, a_fmt)
        B = random_values(rng, (129, 6), q, b_fmt)
        assert np.array_equal(bp.apmm(A, B, p, q, a_fmt, b_fmt), A @ B)


def test_apmm_signed_through_bipolar():
    """A signed GEMM run in bipolar-INT: (2A+1)(2B+1) = 4AB + 2A1 + 21B + K, undone exactly."""
    rng = np.random.default_rng(4)
    k = 67
    A = random_values(rng, (5, k), 4, "signed")
    B = random_values(rng, (k, 7), 3, "signed")
    P = bp.apmm(bp.to_bipolar(A, 4), bp.to_bipolar(B, 3), 4, 3, "bipolar", "bipolar")
    recovered = (P - 2 * A.sum(axis=1, keepdims=True) - 2 * B.sum(axis=0, keepdims=True) - k) // 4
    assert np.array_equal(recovered, A @ B)


@pytest.mark.parametrize(("m", "k", "n"), [(0, 5, 3), (4, 5, 0), (4, 0, 3), (0, 0, 0)])
def test_apmm_zero_size(m, k, n):
    A = np.zeros((m, k), dtype=np.int64) + 1  # 1 is valid (odd) in every format used here
    B = np.ones((k, n), dtype=np.int64)
    for a_fmt, b_fmt in PAIRS:
        C = bp.apmm(A, B, 3, 2, a_fmt, b_fmt)
        assert C.shape == (m, n) and C.dtype == np.int64
        assert not C.any()  # an empty sum over K, or no entries at all


def test_apmm_accepts_other_integer_dtypes():
    A = np.array([[255, 0], [7, 128]], dtype=np.uint8)
    B = np.array([[-128, 127], [3, -1]], dtype=np.int8)
    assert np.array_equal(bp.apmm(A, B, 8, 8, "unsigned", "signed"), A.astype(np.int64) @ B.astype(np.int64))
    assert np.array_equal(bp.apmm([[1, -1]], [[3], [1]], 1, 2, "bipolar", "bipolar"), [[2]])


def test_cost_model():
    assert bp.binary_gemm_count(1, 1) == 1
    assert bp.binary_gemm_count(3, 5) == 15
    assert bp.binary_gemm_count(8, 8) == 64
    assert bp.bit_ops(5, 7, 67, 4, 2) == 8 * 5 * 7 * 67
    assert bp.bit_ops(0, 7, 67, 4, 2) == 0
    assert bp.packed_words(0) == 0 and bp.packed_words(64) == 1 and bp.packed_words(65) == 2
    with pytest.raises(SimError):
        bp.binary_gemm_count(0, 4)
    with pytest.raises(SimError):
        bp.bit_ops(-1, 2, 3, 4, 4)


# ---------------------------------------------------------------- errors


def raises_one_line(match, fn, *args, **kwargs):
    with pytest.raises(SimError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("bits", [1, 3, 8])
def test_out_of_range_values_rejected(fmt, bits):
    lo, hi = bp.value_range(bits, fmt)
    ok = np.full((2, 3), lo)
    for bad in (lo - 1, hi + 1, hi + 2, lo - 2):
        A = ok.copy()
        A[1, 2] = bad
        raises_one_line("must lie in", bp.apmm, A, np.full((3, 2), 1), bits, 1, fmt, "unsigned")
        raises_one_line("must lie in", bp.apmm, np.full((2, 2), 1), A, 1, bits, "unsigned", fmt)
        raises_one_line("must lie in", bp.bitplanes, A, bits, fmt)
    assert bp.apmm(ok, np.ones((3, 2), dtype=int), bits, 1, fmt, "unsigned").tolist() == [[3 * lo] * 2] * 2


def test_bipolar_even_values_rejected():
    raises_one_line("odd", bp.apmm, [[1, 2]], [[1], [1]], 3, 1, "bipolar", "unsigned")
    raises_one_line("odd", bp.apmm, [[1, 0]], [[1], [0]], 1, 1, "unsigned", "bipolar")
    raises_one_line("odd", bp.from_bipolar, np.array([1, 3, 0]), 2)
    raises_one_line("odd", bp.bitplanes, np.array([-4]), 3, "bipolar")
    raises_one_line("must lie in", bp.to_bipolar, np.array([4]), 3)
    raises_one_line("must lie in", bp.from_bipolar, np.array([9]), 3)


def test_huge_unsigned_values_do_not_wrap():
    A = np.array([[2**64 - 1]], dtype=np.uint64)  # would be -1 if cast to int64 first
    raises_one_line("must lie in", bp.apmm, A, [[1]], 8, 8, "signed", "signed")


@pytest.mark.parametrize("bits", [0, 17, -1, True, 2.0, "4"])
def test_bad_bit_widths_rejected(bits):
    raises_one_line("must be", bp.apmm, [[0]], [[0]], bits, 4, "signed", "signed")
    raises_one_line("must be", bp.apmm, [[0]], [[0]], 4, bits, "signed", "signed")
    raises_one_line("must be", bp.value_range, bits, "signed")
    raises_one_line("must be", bp.to_bipolar, np.array([0]), bits)


def test_bad_shapes_formats_and_dtypes_rejected():
    A = np.zeros((5, 67), dtype=np.int64)
    raises_one_line("inner dimensions", bp.apmm, A, np.zeros((66, 7), dtype=np.int64), 4, 4)
    raises_one_line("2-D", bp.apmm, np.zeros(67, dtype=np.int64), np.zeros((67, 7), dtype=np.int64), 4, 4)
    raises_one_line("integers", bp.apmm, A.astype(float), np.zeros((67, 7), dtype=np.int64), 4, 4)
    raises_one_line("a_fmt must be one of", bp.apmm, A, np.zeros((67, 7), dtype=np.int64), 4, 4, "int", "signed")
    raises_one_line("b_fmt must be one of", bp.apmm, A, np.zeros((67, 7), dtype=np.int64), 4, 4, "signed", "fp4")
    raises_one_line("fmt must be one of", bp.bitplanes, np.array([0]), 4, "twos")
    raises_one_line("only 0 and 1", bp.from_bitplanes, np.array([[0, 2]]), "unsigned")
    raises_one_line("only 0 and 1", bp.pack_bits, np.array([[0, -1]]))
    raises_one_line("number of bit planes", bp.from_bitplanes, np.zeros((17, 2), dtype=int), "signed")


def test_binary_gemm_bad_input_rejected():
    wa = bp.pack_bits(np.ones((2, 65), dtype=int))
    wb = bp.pack_bits(np.ones((3, 65), dtype=int))
    assert bp.binary_gemm(wa, wb, 65, "and").tolist() == [[65] * 3] * 2
    raises_one_line("mode must be one of", bp.binary_gemm, wa, wb, 65, "or")
    raises_one_line("words per row", bp.binary_gemm, wa, wb, 64, "and")
    raises_one_line("words per row", bp.binary_gemm, wa, wb[:, :1], 65, "and")
    raises_one_line("2-D uint64", bp.binary_gemm, wa.astype(np.int64), wb, 65, "and")
    dirty = wa.copy()
    dirty[0, 1] |= np.uint64(1 << 5)  # a bit beyond K=65
    raises_one_line("padding bits", bp.binary_gemm, dirty, wb, 65, "xor")
