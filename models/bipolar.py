"""Bipolar-INT numbers and arbitrary-precision matmul by one-bit GEMMs: the numerics view.

Source: Ma, Fang, Shao, Wang, "Efficient Arbitrary Precision Acceleration for Large Language
Models on GPU Tensor Cores" (arXiv 2409.17870): the bipolar-INT data format and the matmul that
decomposes a p-bit x q-bit GEMM into one-bit GEMMs (run on the Tensor Cores' 1-bit MMA) and
recovers the result with shifts.

Formats of an n-bit element (bit i of the stored pattern is b_i in {0, 1}):

- ``"unsigned"``: value = sum_i b_i 2^i, in [0, 2^n - 1].
- ``"signed"`` (two's complement): value = sum_{i<n-1} b_i 2^i - b_{n-1} 2^(n-1), in
  [-2^(n-1), 2^(n-1) - 1]; the MSB plane carries the weight -2^(n-1).
- ``"bipolar"`` (bipolar-INT): bit b_i stands for the digit s_i = 2 b_i - 1 in {-1, +1} and
  value = sum_i s_i 2^i, an odd integer in [-(2^n - 1), 2^n - 1].  The range is symmetric (no
  lone most-negative code as in two's complement) and every plane has a positive weight 2^i.

Conversion from signed INT is lossless: v in [-2^(n-1), 2^(n-1) - 1] is stored as the unsigned
pattern u = v + 2^(n-1) (offset binary, i.e. two's complement with the MSB inverted), whose
bipolar value is 2u - (2^n - 1) = 2v + 1; back, v = (b - 1) / 2.  So a signed matmul can run in
bipolar-INT as (2A + 1)(2B + 1) and be undone with row/column sums; :func:`apmm` instead takes
each operand in its own format.

Decomposition (:func:`apmm`): with plane weights w_i (:func:`plane_weights`),

    C = A @ B = sum_{i<p} sum_{j<q} w^A_i w^B_j G_ij,

where G_ij is the one-bit GEMM of plane i of A with plane j of B, computed only from the packed
bits (K packed into uint64 words, :func:`pack_bits`) and popcounts (:func:`binary_gemm`):

- both planes {0, 1} (unsigned/signed x unsigned/signed): G = popcount(a AND b)        ``"and"``
- both planes {-1, +1} (bipolar x bipolar):               G = K - 2 popcount(a XOR b)  ``"xor"``
- A planes {-1, +1}, B planes {0, 1}:                     G = 2 popcount(a AND b) - popcount(b)
                                                                             ``"and_bipolar_a"``
- A planes {0, 1}, B planes {-1, +1}:                     G = 2 popcount(a AND b) - popcount(a)
                                                                             ``"and_bipolar_b"``

Padding bits (K up to a multiple of 64) are zero in both operands, so they add nothing to any of
the popcounts above.  As on the GPU, all p*q one-bit GEMMs run as one binary GEMM of the
stacked planes, (p*M) x (q*N) x K, and the recovery is a weighted sum over the (p, q) blocks.

Cost model: :func:`binary_gemm_count` = p*q one-bit GEMMs of M x N x K each;
:func:`bit_ops` = p*q*M*N*K one-bit multiply-accumulates; :func:`packed_words` = ceil(K / 64).

Arithmetic is exact int64 numpy (widths 1..16 bits; the result is exact while
K * 2^(p+q) < 2^63).
"""

from __future__ import annotations

import numpy as np

from models.errors import SimError

FORMATS = ("bipolar", "unsigned", "signed")
MODES = ("and", "xor", "and_bipolar_a", "and_bipolar_b")
MAX_BITS = 16
WORD_BITS = 64
#: uint64 words of the largest temporary of :func:`binary_gemm` (about 32 MiB)
_CHUNK_WORDS = 1 << 22

_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")  # numpy >= 2.0
_POPCOUNT8 = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)


# --------------------------------------------------------------------------- checks


def _check_bits(bits: int, name: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise SimError(f"{name} must be an integer in 1..{MAX_BITS}, got {bits!r}")
    if not 1 <= bits <= MAX_BITS:
        raise SimError(f"{name} must be in 1..{MAX_BITS}, got {bits}")
    return int(bits)


def _check_fmt(fmt: str, name: str = "fmt") -> str:
    if fmt not in FORMATS:
        raise SimError(f"{name} must be one of {', '.join(FORMATS)}; got {fmt!r}")
    return fmt


def _as_int(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "biu":
        raise SimError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr


def value_range(bits: int, fmt: str) -> tuple[int, int]:
    """Smallest and largest value of an n-bit element in ``fmt`` (bipolar values are all odd)."""
    bits, fmt = _check_bits(bits), _check_fmt(fmt)
    if fmt == "unsigned":
        return 0, (1 << bits) - 1
    if fmt == "signed":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return -((1 << bits) - 1), (1 << bits) - 1


def _checked(x: object, bits: int, fmt: str, name: str) -> np.ndarray:
    """``x`` as int64 after checking that every element is a valid n-bit ``fmt`` value."""
    arr = _as_int(x, name)
    lo, hi = value_range(bits, fmt)
    if arr.size:
        vmin, vmax = int(arr.min()), int(arr.max())  # Python ints: no wrap for uint64 input
        if vmin < lo or vmax > hi:
            raise SimError(f"{name}: {fmt} {bits}-bit values must lie in [{lo}, {hi}], got min {vmin} max {vmax}")
    arr = arr.astype(np.int64)
    if fmt == "bipolar" and arr.size and not np.all(arr & 1):
        even = int(arr[(arr & 1) == 0].flat[0])
        raise SimError(f"{name}: bipolar {bits}-bit values must be odd integers in [{lo}, {hi}], got {even}")
    return arr


# --------------------------------------------------------------------------- conversions


def to_bipolar(v: np.ndarray, bits: int) -> np.ndarray:
    """Signed n-bit INT values v in [-2^(n-1), 2^(n-1) - 1] -> bipolar-INT values 2v + 1 (int64).

    The bipolar bit pattern is the unsigned pattern v + 2^(n-1) (offset binary).
    """
    return 2 * _checked(v, bits, "signed", "v") + 1


def from_bipolar(b: np.ndarray, bits: int) -> np.ndarray:
    """Bipolar-INT n-bit values (odd, in [-(2^n - 1), 2^n - 1]) -> signed INT (b - 1) / 2 (int64)."""
    return (_checked(b, bits, "bipolar", "b") - 1) >> 1  # exact: b - 1 is even


def plane_weights(bits: int, fmt: str) -> np.ndarray:
    """Weight of each bit plane, LSB first (int64): 2^i; the signed MSB plane -2^(n-1).

    For ``"bipolar"`` the weight multiplies the digit 2 b_i - 1, otherwise the bit b_i.
    """
    bits, fmt = _check_bits(bits), _check_fmt(fmt)
    w = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
    if fmt == "signed":
        w[-1] = -w[-1]
    return w


def _patterns(v: np.ndarray, bits: int, fmt: str) -> np.ndarray:
    """Stored unsigned bit patterns of checked int64 values."""
    if fmt == "unsigned":
        return v
    if fmt == "signed":
        return v & ((1 << bits) - 1)
    return (v + ((1 << bits) - 1)) >> 1


def bitplanes(values: np.ndarray, bits: int, fmt: str) -> np.ndarray:
    """Bit planes of n-bit ``fmt`` values: uint8 0/1 array of shape (bits, *values.shape), LSB first."""
    bits, fmt = _check_bits(bits), _check_fmt(fmt)
    u = _patterns(_checked(values, bits, fmt, "values"), bits, fmt)
    shifts = np.arange(bits, dtype=np.int64).reshape((bits,) + (1,) * u.ndim)
    return ((u[None] >> shifts) & 1).astype(np.uint8)


def from_bitplanes(planes: np.ndarray, fmt: str) -> np.ndarray:
    """Values (int64) from bit planes with a leading axis of bits, LSB first: inverse of :func:`bitplanes`."""
    fmt = _check_fmt(fmt)
    p = _as_int(planes, "planes")
    if p.ndim < 1:
        raise SimError("planes must have a leading axis of bits")
    bits = _check_bits(p.shape[0], "number of bit planes")
    if p.size and (int(p.min()) < 0 or int(p.max()) > 1):
        raise SimError("planes must hold only 0 and 1")
    digits = p.astype(np.int64)
    if fmt == "bipolar":
        digits = 2 * digits - 1
    return np.tensordot(plane_weights(bits, fmt), digits, axes=(0, 0))


# --------------------------------------------------------------------------- one-bit GEMM


def packed_words(k: int) -> int:
    """uint64 words that hold K bits: ceil(K / 64)."""
    return -(-int(k) // WORD_BITS)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a 0/1 array along its last axis (length K) into uint64 words: shape (..., ceil(K/64)).

    Bit k goes to word k // 64; the padding bits of the last word are zero.
    """
    b = _as_int(bits, "bits")
    if b.ndim < 1:
        raise SimError("bits to pack must have at least one axis")
    if b.size and (int(b.min()) < 0 or int(b.max()) > 1):
        raise SimError("bits to pack must hold only 0 and 1")
    k = b.shape[-1]
    words = packed_words(k)
    pad = words * WORD_BITS - k
    if pad:
        b = np.concatenate([b, np.zeros(b.shape[:-1] + (pad,), dtype=b.dtype)], axis=-1)
    packed = np.packbits(b.astype(np.uint8), axis=-1, bitorder="little")  # (..., 8 * words) bytes
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 word (uint8 result); np.bitwise_count where numpy has it."""
    w = np.asarray(words, dtype=np.uint64)
    if _HAS_BITWISE_COUNT:
        return np.bitwise_count(w)
    return _popcount_table(w)


def _popcount_table(w: np.ndarray) -> np.ndarray:
    """Byte lookup-table popcount (the fallback for numpy < 2.0)."""
    w = np.ascontiguousarray(w, dtype=np.uint64)
    by = w.view(np.uint8).reshape(w.shape + (8,))
    return _POPCOUNT8[by].sum(axis=-1, dtype=np.uint8)


def binary_mode(a_fmt: str, b_fmt: str) -> str:
    """The one-bit GEMM mode of a format pair: "xor", "and", "and_bipolar_a" or "and_bipolar_b"."""
    a_bip = _check_fmt(a_fmt, "a_fmt") == "bipolar"
    b_bip = _check_fmt(b_fmt, "b_fmt") == "bipolar"
    if a_bip and b_bip:
        return "xor"
    if a_bip:
        return "and_bipolar_a"
    if b_bip:
        return "and_bipolar_b"
    return "and"


def binary_gemm(a_words: np.ndarray, b_words: np.ndarray, k: int, mode: str = "and") -> np.ndarray:
    """One-bit GEMM (M x N, int64) from packed bits only, by AND/XOR and popcount.

    ``a_words``: (M, W) uint64, the rows of A packed along K; ``b_words``: (N, W) uint64, the
    columns of B packed along K (so B transposed); W = ceil(k / 64), padding bits zero.
    ``mode`` (see the module docstring): "and" {0,1}x{0,1}, "xor" {±1}x{±1},
    "and_bipolar_a" {±1}x{0,1}, "and_bipolar_b" {0,1}x{±1}.
    """
    if mode not in MODES:
        raise SimError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    a = np.asarray(a_words)
    b = np.asarray(b_words)
    if a.dtype != np.uint64 or b.dtype != np.uint64 or a.ndim != 2 or b.ndim != 2:
        raise SimError(f"packed operands must be 2-D uint64, got {a.dtype}{a.shape} and {b.dtype}{b.shape}")
    k = int(k)
    words = packed_words(k)
    if k < 0 or a.shape[1] != words or b.shape[1] != words:
        raise SimError(f"K={k} needs {words} words per row, got {a.shape[1]} (A) and {b.shape[1]} (B)")
    tail = k % WORD_BITS
    if tail:
        pad_mask = np.uint64(~((1 << tail) - 1) & ((1 << WORD_BITS) - 1))
        if np.any(a[:, -1] & pad_mask) or np.any(b[:, -1] & pad_mask):
            raise SimError(f"padding bits beyond K={k} must be zero")
    m, n = a.shape[0], b.shape[0]
    out = np.empty((m, n), dtype=np.int64)
    op = np.bitwise_xor if mode == "xor" else np.bitwise_and
    rows = max(1, _CHUNK_WORDS // max(1, n * words))
    for r0 in range(0, m, rows):
        blk = op(a[r0 : r0 + rows, None, :], b[None, :, :])
        out[r0 : r0 + rows] = popcount(blk).sum(axis=-1, dtype=np.int64)
    if mode == "xor":
        return k - 2 * out
    if mode == "and_bipolar_a":
        return 2 * out - popcount(b).sum(axis=-1, dtype=np.int64)[None, :]
    if mode == "and_bipolar_b":
        return 2 * out - popcount(a).sum(axis=-1, dtype=np.int64)[:, None]
    return out


# --------------------------------------------------------------------------- arbitrary precision


def apmm(a: np.ndarray, b: np.ndarray, p: int, q: int, a_fmt: str = "signed", b_fmt: str = "signed") -> np.ndarray:
    """C = A @ B (int64) for p-bit A (M x K) in ``a_fmt`` and q-bit B (K x N) in ``b_fmt``.

    Computed by the decomposition into p*q one-bit GEMMs on packed bits (:func:`binary_gemm`)
    and their shifted, signed recombination; bit-exact to the integer matmul.  Zero-size M, N
    or K gives the (M, N) zero matrix, like ``A @ B``.
    """
    p, q = _check_bits(p, "p"), _check_bits(q, "q")
    mode = binary_mode(a_fmt, b_fmt)
    a_arr, b_arr = _as_int(a, "A"), _as_int(b, "B")
    if a_arr.ndim != 2 or b_arr.ndim != 2:
        raise SimError(f"A and B must be 2-D, got shapes {a_arr.shape} and {b_arr.shape}")
    if a_arr.shape[1] != b_arr.shape[0]:
        raise SimError(f"inner dimensions differ: A is {a_arr.shape}, B is {b_arr.shape}")
    a_arr = _checked(a_arr, p, a_fmt, "A")
    b_arr = _checked(b_arr, q, b_fmt, "B")
    m, k = a_arr.shape
    n = b_arr.shape[1]
    shifts_a = np.arange(p, dtype=np.int64)[:, None, None]
    shifts_b = np.arange(q, dtype=np.int64)[:, None, None]
    planes_a = (_patterns(a_arr, p, a_fmt)[None] >> shifts_a) & 1  # (p, M, K)
    planes_b = (_patterns(b_arr.T, q, b_fmt)[None] >> shifts_b) & 1  # (q, N, K)
    words = packed_words(k)
    words_a = pack_bits(planes_a).reshape(p * m, words)
    words_b = pack_bits(planes_b).reshape(q * n, words)
    g = binary_gemm(words_a, words_b, k, mode).reshape(p, m, q, n)  # G_ij blocks
    coef = np.outer(plane_weights(p, a_fmt), plane_weights(q, b_fmt))  # w_i w_j = ±2^(i+j)
    return np.einsum("ij,imjn->mn", coef, g)


def binary_gemm_count(p: int, q: int) -> int:
    """One-bit GEMMs in a p-bit x q-bit GEMM: p * q, each of the full M x N x K shape."""
    return _check_bits(p, "p") * _check_bits(q, "q")


def bit_ops(m: int, n: int, k: int, p: int, q: int) -> int:
    """One-bit multiply-accumulates (AND/XOR + popcount-add) of the decomposition: p*q*M*N*K.

    Counted once per bit pair; conventions that count a MAC as 2 ops double this.
    """
    for name, dim in (("M", m), ("N", n), ("K", k)):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 0:
            raise SimError(f"{name} must be a non-negative integer, got {dim!r}")
    return binary_gemm_count(p, q) * int(m) * int(n) * int(k)
