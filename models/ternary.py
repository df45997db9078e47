"""MatMul-free language modelling down to FPGA units: ternary weights, BitLinear quantizers, the
reference arithmetic of the ternary accumulate unit and of the row-wise operation unit, and the
cycles the FPGA target charges for them.

Source: Zhu et al., "Scalable MatMul-free Language Modeling", 2024 (arXiv 2406.02528).  Dense
layers are BitLinear layers with ternary weights, so a "matmul" is additions and subtractions of
8-bit activations; the token mixer is the MLGRU and the channel mixer a GLU, both built from
elementwise operations that the paper's FPGA design runs on a row-wise operation unit.

BitLinear quantizers (float64 numpy; ``round`` is numpy's round-half-to-even, as ``torch.round``):

- weights, per tensor, by absmean: ``w_q = clip(round(w / (mean|w| + EPS)), -1, 1)``, scale
  ``mean|w|`` (``w ~ w_q * scale``; EPS only guards the division).
- activations, per token (the last axis), by absmax to 8 bits:
  ``x_q = clip(round(x * 127 / max(max|x|, EPS)), -128, 127)``, scale ``max(max|x|, EPS) / 127``.
- EPS = 1e-5.

Ternary weight codes, 2 bits, sign-magnitude (bit 0 = nonzero, bit 1 = negative):
``0b00`` -> 0, ``0b01`` -> +1, ``0b11`` -> -1.  The fourth code ``0b10`` (a "negative zero") is never
produced by :func:`encode_ternary`; :func:`decode_ternary` reads it as 0 and the unit skips it,
exactly as code ``0b00``.  Packed, a weight costs 2 bits (the paper's 1.58 bits, rounded up).

Ternary dot product (:func:`ternary_dot_ref`, :func:`ternary_matmul_ref`): exact integers.  Per
element the unit adds the activation when the weight is +1, subtracts it when -1 and skips it when
0 — no multiplier.  With int8 activations, ``|sum| <= 128 k`` for length k, so a signed accumulator
of :func:`acc_bits` ``(k) = bit_length(128 k) + 1`` bits holds every sum exactly: 9 bits for k = 1,
19 for k = 1024, and 24 bits (the unit's default) for every k <= 65535 (:func:`max_length`).  A
narrower accumulator wraps modulo 2^width (two's complement).

Row-wise operation unit, fixed point.  Every operand and result is Q8.8: a signed 16-bit integer
X standing for X / 256, range [-128, 127.99609375], LSB 2^-8.  Intermediate products are exact;
every result is rounded to nearest with ties toward +infinity — ``(P + 2^(s-1)) >> s`` with an
arithmetic (floor) shift — and then saturated to [-32768, 32767].  Ops (``ROW_OPS``, the op code
is the index):

0. ``add``      y = sat(a + b)
1. ``sub``      y = sat(a - b)
2. ``mul``      y = sat((a b + 2^7) >> 8)
3. ``gru``      the MLGRU recurrence h_t = f h_{t-1} + (1 - f) c with a = f, b = h_{t-1}, c = c:
   y = sat((f h + (256 - f) c + 2^7) >> 8).  The unit computes the same integer as
   ``256 c + f (h - c)`` with one multiplier; for f in [0, 256] (a sigmoid output) it never saturates.
4. ``sigmoid``  LUT + linear interpolation on |x|, by symmetry sigma(-x) = 1 - sigma(x).  With
   t = |X| (0 .. 32768): if t >= 4096 (|x| >= 16) s = 2^16, else, with i = t >> 6 (knots every
   0.25) and r = t & 63, s = T[i] + (((T[i+1] - T[i]) r) >> 6) where T[j] = round(2^16 sigma(j / 4)),
   j = 0 .. 64 (``SIGMOID_LUT``, 65 entries of 17 bits).  s is sigma(|x|) in Q0.16; for x < 0,
   s <- 2^16 - s.  y = (s + 2^7) >> 8, in [0, 256].
5. ``silu``     y = sat((X s + 2^15) >> 16) with s the Q0.16 sigmoid above (before its rounding to
   Q8.8, so SiLU keeps the LUT's precision); |y| <= |X|, it never saturates.
6. ``rmsnorm``  y = x / sqrt(mean(x^2) + eps) over the row (a gain is a following ``mul``):
   S = sum X^2 (exact, < 2^46 for rows up to 65535 elements), ms = floor(2^4 S / n), the mean
   square in Q.20 (the unit divides with a 35-step restoring divider: ms <= 2^34), V = ms + 1
   (eps = 2^-20 ~ 0.95e-6, one LSB of ms; the paper's float model uses 1e-6), then an inverse square
   root by a LUT plus one Newton step (:func:`rsqrt_fixed`): V = u 4^e with u in [1, 4) (e =
   (bit_length(V) - 1) >> 1, 0 .. 17), U = (V << (34 - 2e)) >> 4 (u in Q2.30, truncated),
   g0 = ``RSQRT_LUT``[(U >> 24) - 64] = round(2^15 / sqrt((i + 0.5) / 64)) for the 192 intervals
   i = 64 .. 255 of u of width 1/64 (Q1.15), then with floor shifts sq = (g0 g0) >> 15,
   p = ((U >> 15) sq) >> 15, g1 = (g0 (3 * 2^15 - p)) >> 16, so g1 / 2^15 ~ 1 / sqrt(u) and
   1 / sqrt(V / 2^20) ~ g1 2^(-5-e).  Per element y = sat((X g1 + 2^(4+e)) >> (5 + e)).

:func:`approx_error` measures the sigmoid, SiLU and rsqrt approximations (and RMSNorm end to end)
against float64 on dense grids; the numbers are in ``tests/models/test_ternary.py``.

Cycles (what the FPGA target charges; ``hw/matmulfree.py`` matches them, the testbenches check it).
A cycle count is the number of clock edges from the edge that takes a unit's first input beat up
to and including the edge after which its last result is valid.

- Ternary unit with L lanes: one beat of L activations and L codes per cycle, a registered
  adder-tree stage, then the accumulator: :func:`ternary_unit_cycles` ``(k, L) = ceil(k / L) +
  TERNARY_LATENCY`` (= 1).  Dot products stream back to back, so M x N x K on one unit is
  :func:`ternary_gemm_cycles` ``= M N ceil(K / L) + TERNARY_LATENCY``.
- Row unit with L lanes: a beat of L elements per cycle through an input register and an output
  register: an elementwise op on a row of n takes ``ceil(n / L) + ROW_LATENCY`` (= 1).  RMSNorm
  streams the row twice (sum of squares, then scaling) with ``RMS_COMPUTE_CYCLES`` (= 40: 35 divide
  steps, 1 normalize, 1 LUT, 3 Newton multiplies) in between, during which the unit takes no input:
  ``2 ceil(n / L) + 40 + 1``.  Rows stream back to back: :func:`rowwise_cycles` ``(op, n, L, rows)``
  = rows x :func:`row_occupancy` + ROW_LATENCY, where a row occupies the input ``ceil(n / L)``
  cycles, or ``2 ceil(n / L) + 40`` for rmsnorm.
"""

from __future__ import annotations

import math

import numpy as np

from models.errors import SimError

EPS = 1e-5

# ------------------------------------------------------------------------------------ ternary codes

CODE_ZERO, CODE_POS, CODE_NEG, CODE_RESERVED = 0b00, 0b01, 0b11, 0b10


def _int_array(x, lo: int, hi: int, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        if a.size and np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        elif a.size == 0:
            a = a.astype(np.int64)
        else:
            raise SimError(f"{name} must be integers in [{lo}, {hi}]")
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        raise SimError(f"{name} must be in [{lo}, {hi}], got values in [{a.min()}, {a.max()}]")
    return a


def encode_ternary(w_q) -> np.ndarray:
    """Ternary values {-1, 0, +1} -> 2-bit codes (uint8): 0 -> 0b00, +1 -> 0b01, -1 -> 0b11."""
    w = _int_array(w_q, -1, 1, "ternary weights")
    return np.where(w == 0, CODE_ZERO, np.where(w > 0, CODE_POS, CODE_NEG)).astype(np.uint8)


def decode_ternary(codes) -> np.ndarray:
    """2-bit codes -> int8 values: 0b01 -> +1, 0b11 -> -1, 0b00 and the reserved 0b10 -> 0."""
    c = _int_array(codes, 0, 3, "ternary codes")
    return np.where(c & 1, np.where(c & 2, -1, 1), 0).astype(np.int8)


# ------------------------------------------------------------------------------------ quantizers


def quantize_weights_absmean(w, eps: float = EPS) -> tuple[np.ndarray, float]:
    """Per-tensor absmean ternary quantization: (w_q int8 in {-1, 0, 1}, scale = mean|w|)."""
    w = np.asarray(w, dtype=np.float64)
    if w.size == 0 or not np.all(np.isfinite(w)):
        raise SimError("weights must be a non-empty array of finite numbers")
    scale = float(np.abs(w).mean())
    return np.clip(np.round(w / (scale + eps)), -1, 1).astype(np.int8), scale


def quantize_acts_absmax(x, eps: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    """Per-token (last axis) absmax 8-bit quantization: (x_q int8, scale = max(max|x|, eps) / 127,
    one per token with the last axis kept as 1)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0 or not np.all(np.isfinite(x)):
        raise SimError("activations must be a non-empty array of finite numbers")
    amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), eps)
    return np.clip(np.round(x * 127.0 / amax), -128, 127).astype(np.int8), amax / 127.0


def bitlinear_ref(x, w, eps: float = EPS) -> np.ndarray:
    """BitLinear forward y = x W^T with both operands quantized: the integer ternary matmul of
    :func:`ternary_matmul_ref`, dequantized by the activation and weight scales."""
    x_q, sx = quantize_acts_absmax(x, eps)
    w_q, sw = quantize_weights_absmean(w, eps)
    if np.ndim(w_q) != 2 or x_q.shape[-1] != w_q.shape[1]:
        raise SimError(f"weights must be (out, in) with in = {x_q.shape[-1]}, got {np.shape(w_q)}")
    lead = x_q.shape[:-1]
    acc = ternary_matmul_ref(x_q.reshape(-1, x_q.shape[-1]), encode_ternary(w_q))
    return acc.reshape(*lead, w_q.shape[0]) * sx * sw


# ------------------------------------------------------------------------------------ ternary dot


def acc_bits(k: int) -> int:
    """Signed accumulator bits that hold every dot product of k int8 activations with ternary
    weights exactly: |sum| <= 128 k."""
    k = _positive(k, "k")
    return (128 * k).bit_length() + 1


def max_length(acc_width: int) -> int:
    """The longest dot product an ``acc_width``-bit signed accumulator holds exactly."""
    return ((1 << (int(acc_width) - 1)) - 1) // 128


def ternary_dot_ref(acts, codes) -> int:
    """Exact dot product of int8 activations and 2-bit ternary codes (1-D, same length): the sum of
    the activations with weight +1 minus the sum of those with weight -1."""
    a = _int_array(acts, -128, 127, "activations")
    w = decode_ternary(codes)
    if a.ndim != 1 or a.shape != w.shape or a.size == 0:
        raise SimError(f"activations and codes must be 1-D of the same non-zero length, got {a.shape}, {w.shape}")
    return int(a[w == 1].sum() - a[w == -1].sum())


def ternary_matmul_ref(acts, codes) -> np.ndarray:
    """Exact int64 (M, N) = acts (M, K) x decode(codes (N, K))^T, the ternary GEMM."""
    a = _int_array(acts, -128, 127, "activations")
    w = decode_ternary(codes).astype(np.int64)
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[1] or a.shape[1] == 0:
        raise SimError(f"need acts (M, K) and codes (N, K), got {a.shape} and {w.shape}")
    return a @ (w == 1).T.astype(np.int64) - a @ (w == -1).T.astype(np.int64)


# ------------------------------------------------------------------------------------ row unit (Q8.8)

Q_FRAC = 8
Q_BITS = 16
Q_MIN, Q_MAX = -(1 << (Q_BITS - 1)), (1 << (Q_BITS - 1)) - 1
ONE = 1 << Q_FRAC
ROW_OPS = ("add", "sub", "mul", "gru", "sigmoid", "silu", "rmsnorm")  # the unit's op code is the index
ROW_OP_CODE = {name: i for i, name in enumerate(ROW_OPS)}
ROW_OPERANDS = {"add": 2, "sub": 2, "mul": 2, "gru": 3, "sigmoid": 1, "silu": 1, "rmsnorm": 1}
MAX_ROW = (1 << 16) - 1  # the unit's 16-bit length input

SIG_KNOT_BITS = 6  # knots every 2^6 LSB = 0.25
SIG_LIMIT = 16 << Q_FRAC  # |x| >= 16: sigma = 1 (in Q0.16)
SIGMOID_LUT = tuple(int(round(65536 / (1 + math.exp(-j / 4)))) for j in range((SIG_LIMIT >> SIG_KNOT_BITS) + 1))

RSQRT_LUT_FIRST = 64  # index (U >> 24) runs over 64 .. 255: u in [1, 4) in steps of 1/64
RSQRT_LUT = tuple(int(round(2**15 / math.sqrt((i + 0.5) / 64))) for i in range(RSQRT_LUT_FIRST, 256))
RMS_MS_FRAC = 20  # the mean square's fraction bits: ms = floor(2^4 S / n), S in Q.16
RMS_DIV_CYCLES = 35  # quotient bits: ms <= 2^34
RMS_RSQRT_CYCLES = 5  # normalize, LUT, three Newton multiplies
RMS_COMPUTE_CYCLES = RMS_DIV_CYCLES + RMS_RSQRT_CYCLES


def to_fixed(x) -> np.ndarray:
    """float -> Q8.8 int64, round half to even and saturate."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * ONE), Q_MIN, Q_MAX).astype(np.int64)


def from_fixed(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) / ONE


def sat16(v) -> np.ndarray:
    return np.clip(np.asarray(v, dtype=np.int64), Q_MIN, Q_MAX)


def _q(x, name: str) -> np.ndarray:
    return _int_array(x, Q_MIN, Q_MAX, name)


def _rshift_round(p, s: int) -> np.ndarray:
    return (np.asarray(p, dtype=np.int64) + (1 << (s - 1))) >> s


def fx_add(a, b) -> np.ndarray:
    return sat16(_q(a, "a") + _q(b, "b"))


def fx_sub(a, b) -> np.ndarray:
    return sat16(_q(a, "a") - _q(b, "b"))


def fx_mul(a, b) -> np.ndarray:
    return sat16(_rshift_round(_q(a, "a") * _q(b, "b"), Q_FRAC))


def gru_step(f, h, c) -> np.ndarray:
    """MLGRU hidden update h_t = f h_{t-1} + (1 - f) c in Q8.8 (one rounding, then saturation)."""
    f, h, c = _q(f, "f"), _q(h, "h"), _q(c, "c")
    return sat16(_rshift_round(f * h + (ONE - f) * c, Q_FRAC))


def sigmoid_q16(x) -> np.ndarray:
    """The unit's internal sigmoid of Q8.8 inputs, in Q0.16 (0 .. 65536)."""
    x = _q(x, "x")
    t = np.abs(x)
    lut = np.asarray(SIGMOID_LUT, dtype=np.int64)
    i = np.minimum(t >> SIG_KNOT_BITS, len(lut) - 2)
    r = t & ((1 << SIG_KNOT_BITS) - 1)
    s = lut[i] + (((lut[i + 1] - lut[i]) * r) >> SIG_KNOT_BITS)
    s = np.where(t >= SIG_LIMIT, 1 << 16, s)
    return np.where(x < 0, (1 << 16) - s, s)


def fx_sigmoid(x) -> np.ndarray:
    return _rshift_round(sigmoid_q16(x), 16 - Q_FRAC)


def fx_silu(x) -> np.ndarray:
    x = _q(x, "x")
    return sat16(_rshift_round(x * sigmoid_q16(x), 16))


def rsqrt_fixed(v) -> tuple[np.ndarray, np.ndarray]:
    """LUT + one Newton step: (g1, e) with g1 2^(-15-e) ~ 1 / sqrt(v), for integers 1 <= v < 2^36."""
    v = _int_array(v, 1, (1 << 36) - 1, "rsqrt input")
    e = (np.frexp(v.astype(np.float64))[1] - 1) >> 1  # frexp is exact here: bit_length(v) - 1 = 2e or 2e + 1
    u = (v << (34 - 2 * e)) >> 4
    g0 = np.asarray(RSQRT_LUT, dtype=np.int64)[(u >> 24) - RSQRT_LUT_FIRST]
    sq = (g0 * g0) >> 15
    p = ((u >> 15) * sq) >> 15
    g1 = (g0 * (3 * (1 << 15) - p)) >> 16
    return g1, e


def rms_factor(x) -> tuple[int, int]:
    """RMSNorm's per-row factor (g1, e) of a Q8.8 row: 1 / sqrt(mean(x^2) + 2^-20) ~ g1 2^(-5-e)."""
    x = _q(x, "row")
    if x.ndim != 1 or not 1 <= x.size <= MAX_ROW:
        raise SimError(f"an RMSNorm row is 1-D with 1..{MAX_ROW} elements, got shape {x.shape}")
    s = int((x * x).sum())
    g1, e = rsqrt_fixed((s << (RMS_MS_FRAC - 2 * Q_FRAC)) // x.size + 1)
    return int(g1), int(e)


def fx_rmsnorm(x) -> np.ndarray:
    """RMS normalization of one Q8.8 row (1-D), no gain."""
    x = _q(x, "row")
    g1, e = rms_factor(x)
    return sat16(_rshift_round(x * g1, 5 + e))  # 1 / sqrt(V / 2^20) = 2^10 g1 2^(-15-e)


def rowwise_ref(op: str, a, b=None, c=None) -> np.ndarray:
    """One row-unit op on Q8.8 int arrays (elementwise ops broadcast; rmsnorm takes a 1-D row)."""
    if op not in ROW_OP_CODE:
        raise SimError(f"unknown row op {op!r}; known: {', '.join(ROW_OPS)}")
    args = [a, b, c][:ROW_OPERANDS[op]]
    if any(v is None for v in args):
        raise SimError(f"row op {op!r} takes {ROW_OPERANDS[op]} operand(s)")
    fn = {"add": fx_add, "sub": fx_sub, "mul": fx_mul, "gru": gru_step, "sigmoid": fx_sigmoid, "silu": fx_silu,
          "rmsnorm": fx_rmsnorm}[op]
    return fn(*args)


def mlgru_ref(f_pre, c_pre, g_pre, h_prev) -> tuple[np.ndarray, np.ndarray]:
    """One MLGRU step from the BitLinear outputs (Q8.8): f = sigma(f_pre), c = SiLU(c_pre),
    h = f h_prev + (1 - f) c, o = sigma(g_pre) h (before the output BitLinear).  Returns (h, o):
    five row-unit ops per token (sigmoid, silu, gru, sigmoid, mul)."""
    f, cc = fx_sigmoid(f_pre), fx_silu(c_pre)
    h = gru_step(f, h_prev, cc)
    return h, fx_mul(fx_sigmoid(g_pre), h)


def glu_ref(g, u) -> np.ndarray:
    """The channel mixer's gate: SiLU(g) * u (two row-unit ops)."""
    return fx_mul(fx_silu(g), u)


def approx_error(rsqrt_points: int = 1 << 20, rms_rows: int = 2000, seed: int = 0) -> dict:
    """Measured errors of the approximations against float64, each as {"max", "mean", "points"}
    (absolute errors in real units):

    - ``sigmoid``, ``silu``: over every Q8.8 input (65536 points, exact inputs, so the error includes
      the output rounding); ``sigmoid_central`` / ``silu_central``: the same for |x| <= 8 (4097
      points); ``sigmoid_q16``: the Q0.16 sigmoid before its rounding (the LUT + interpolation).
    - ``rsqrt_mantissa``: g1 / 2^15 against 1 / sqrt(u) for u = 1 + j 2^-20 over [1, 4).
    - ``rsqrt_rel``: the relative error of g1 2^(-15-e) against 1 / sqrt(V) over every integer V in
      [1, rsqrt_points] and as many log-spaced V up to 2^34 + 1 (ms's largest value plus eps).
    - ``rmsnorm``: outputs on random rows (1 .. 256 elements, Gaussian at four scales, rounded to
      Q8.8) against float64 x / sqrt(mean(x^2) + 2^-20) of the same Q8.8 inputs.
    """
    out = {}

    def stats(err):
        return {"max": float(err.max()), "mean": float(err.mean()), "points": int(err.size)}

    x = np.arange(Q_MIN, Q_MAX + 1, dtype=np.int64)
    xf = x / ONE
    sig = 1 / (1 + np.exp(-xf))
    central = np.abs(xf) <= 8
    for name, got, ref in (("sigmoid", fx_sigmoid(x) / ONE, sig), ("silu", fx_silu(x) / ONE, xf * sig),
                           ("sigmoid_q16", sigmoid_q16(x) / 65536, sig)):
        err = np.abs(got - ref)
        out[name] = stats(err)
        if name != "sigmoid_q16":
            out[name + "_central"] = stats(err[central])
    u = np.arange(1 << 20, 4 << 20, dtype=np.int64)  # u = U / 2^30 with U = u << 10: V = u gives e = 10
    g1, e = rsqrt_fixed(u)
    assert np.all(e == 10)
    out["rsqrt_mantissa"] = stats(np.abs(g1 / 2.0**15 - 1 / np.sqrt(u / 2.0**20)))
    top = (1 << 34) + 1
    v = np.concatenate([np.arange(1, rsqrt_points + 1, dtype=np.int64),
                        np.round(np.geomspace(rsqrt_points, top, rsqrt_points)).astype(np.int64)])  # non-decreasing
    v = v[np.r_[True, np.diff(v) != 0]]
    g1, e = rsqrt_fixed(v)
    out["rsqrt_rel"] = stats(np.abs(g1 * 2.0 ** (-15 - e) * np.sqrt(v) - 1))
    rng = np.random.default_rng(seed)
    errs = []
    for _ in range(rms_rows):
        n = int(rng.integers(1, 257))
        row = to_fixed(rng.standard_normal(n) * rng.choice([0.05, 0.5, 2.0, 10.0]))
        xr = row / ONE
        ref = np.clip(xr / np.sqrt(np.mean(xr * xr) + 2.0**-RMS_MS_FRAC), Q_MIN / ONE, Q_MAX / ONE)
        errs.append(np.abs(fx_rmsnorm(row) / ONE - ref))
    out["rmsnorm"] = stats(np.concatenate(errs))
    return out


# ------------------------------------------------------------------------------------ cycles

TERNARY_LATENCY = 1  # the registered adder-tree stage; the accumulator register holds the result
ROW_LATENCY = 1  # input register -> output register


def _positive(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise SimError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def ternary_unit_cycles(k: int, lanes: int) -> int:
    """Cycles for one dot product of length k on a ternary unit with ``lanes`` lanes."""
    return -(-_positive(k, "k") // _positive(lanes, "lanes")) + TERNARY_LATENCY


def ternary_gemm_cycles(m: int, n: int, k: int, lanes: int) -> int:
    """Cycles for an M x N x K ternary GEMM on one unit: M N dot products streamed back to back."""
    beats = -(-_positive(k, "k") // _positive(lanes, "lanes"))
    return _positive(m, "m") * _positive(n, "n") * beats + TERNARY_LATENCY


def row_occupancy(op: str, length: int, lanes: int) -> int:
    """Cycles a row keeps the row unit's input busy (the interval until the next row's first beat)."""
    if op not in ROW_OP_CODE:
        raise SimError(f"unknown row op {op!r}; known: {', '.join(ROW_OPS)}")
    beats = -(-_positive(length, "length") // _positive(lanes, "lanes"))
    if length > MAX_ROW:
        raise SimError(f"row length must be at most {MAX_ROW}, got {length}")
    return 2 * beats + RMS_COMPUTE_CYCLES if op == "rmsnorm" else beats


def rowwise_cycles(op: str, length: int, lanes: int, rows: int = 1) -> int:
    """Cycles for ``rows`` rows of ``length`` elements through one row unit, streamed back to back."""
    return _positive(rows, "rows") * row_occupancy(op, length, lanes) + ROW_LATENCY
