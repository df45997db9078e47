"""BitMoD weight datatypes and per-group quantization: the numerics view.

Source: Chen et al., "BitMoD: Bit-serial Mixture-of-Datatype LLM Acceleration", HPCA 2025
(arXiv 2411.11745), Sec. III and Table IV, and its released quantization code
(abdelfattah-lab/BitMoD-HPCA-25, ``bitmod_quant/quant_utils/quant_weight.py``).

Datatypes (values in units of the group's scale):

- FP4 (E2M1): 0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6.  FP3: 0, ±1, ±2, ±4.
- BitMoD puts one special value into the code of the redundant negative zero.  Extra resolution
  (ER) adds ±5 to FP4, ±3 to FP3; extra asymmetry (EA) adds ±8 to FP4, ±6 to FP3.  A group
  chooses among the four variants {+ER, −ER, +EA, −EA} (2 bits of metadata per group; paper
  Sec. III-A: "we set N = 4 which only requires 2-bit encoding per group").  Plain FP4/INT4 are
  not candidates.

Per group of 128 weights along the input channel, for each candidate: scale = absmax / max|value|
(not sign-aware, as in the released code), each weight rounds to the nearest value of the set
(ties to the lower value; out-of-range values clamp), and the candidate with the lowest mean
squared error wins (ties to the earlier candidate).  Baselines: INT-asym per group (scale =
(max − min) / (2^b − 1), zero point round(−min / scale) clamped to the code range; paper Eq. 2),
INT-sym, plain FP4/FP3.

Scales: the released code keeps per-group scales in FP16.  The hardware stores an 8-bit scale
per group, quantized against a per-output-channel scale (second-level quantization after
VS-Quant, paper Sec. III-C: "only needs an 8-bit scaling factor and 2-bit encoding metadata ...
the 10-bit extra memory per group", versus a 16-bit scale plus an 8-bit zero point for INT-asym).
:func:`quantize_scales` implements that step (unsigned 8-bit codes 0..255 of channel max / 255,
as in yc2367/BitMoD ``quant_weight_double.py``); ``scale_bits=None`` keeps exact scales.
:data:`METADATA_BITS` gives the bits per group each format stores.

Arithmetic here is float64 numpy (the released code computes in fp16).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FP4 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
FP3 = (0.0, 1.0, 2.0, 4.0)
SPECIAL = {4: {"er": 5.0, "ea": 8.0}, 3: {"er": 3.0, "ea": 6.0}}  # BitMoD Table IV
CANDIDATES = {b: [f"fp{b}_er_pos", f"fp{b}_er_neg", f"fp{b}_ea_pos", f"fp{b}_ea_neg"] for b in (3, 4)}
GROUP = 128  # weights per group (BitMoD Sec. V-A; the released code's default)

#: bits stored per group besides the weights: BitMoD 8-bit scale + 2-bit datatype selector
#: (paper Sec. III-C); INT-asym FP16 scale + 8-bit zero point (the paper's comparison);
#: plain FP/INT-sym an FP16 scale.
METADATA_BITS = {"bitmod": 10, "int_asym": 24, "int_sym": 16, "fp": 16}


def values(name: str) -> np.ndarray:
    """The sorted value set of a datatype: 'fp4', 'fp3', 'fp4_er_pos', ..., 'fp3_ea_neg'."""
    parts = name.split("_")
    bits = {"fp4": 4, "fp3": 3}.get(parts[0])
    if bits is None or len(parts) not in (1, 3):
        raise ValueError(f"unknown datatype {name!r}")
    base = FP4 if bits == 4 else FP3
    vals = set(base) | {-v for v in base}
    if len(parts) == 3:
        kind, sign = parts[1], parts[2]
        if kind not in ("er", "ea") or sign not in ("pos", "neg"):
            raise ValueError(f"unknown datatype {name!r}")
        vals.add(SPECIAL[bits][kind] * (1 if sign == "pos" else -1))
    return np.array(sorted(vals), dtype=np.float64)


def round_to_set(x: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Nearest value of the sorted set ``vals`` (ties to the lower value; outside, the ends)."""
    mids = (vals[1:] + vals[:-1]) / 2
    return vals[np.searchsorted(mids, x, side="left")]


def _groups(w: np.ndarray, group: int) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] % group:
        raise ValueError(f"weights must be 2-D with a multiple of {group} input channels, got {w.shape}")
    return w.reshape(w.shape[0], w.shape[1] // group, group)


@dataclass
class Quantized:
    """A quantized weight matrix: dequantized values, per-group scales and datatype choices."""

    dequant: np.ndarray  # same shape as the weights
    scales: np.ndarray  # (rows, groups)
    choice: np.ndarray  # (rows, groups): index into the candidate list (0 for single formats)
    candidates: list[str]
    bits: int
    metadata_bits: int
    group: int = GROUP

    @property
    def bits_per_weight(self) -> float:
        return self.bits + self.metadata_bits / self.group


def quantize_scales(scales: np.ndarray, bits: int = 8) -> np.ndarray:
    """Second-level scale quantization: unsigned ``bits``-bit codes of channel max / (2^bits − 1)."""
    top = (1 << bits) - 1
    ch = scales.max(axis=1, keepdims=True) / top
    ch = np.where(ch > 0, ch, 1.0)
    return np.clip(np.round(scales / ch), 0, top) * ch


def _set_quant(g: np.ndarray, vals: np.ndarray, scale_bits: int | None):
    scale = np.clip(np.abs(g).max(axis=-1) / np.abs(vals).max(), 1e-5, 1e4)
    if scale_bits:
        scale = quantize_scales(scale, scale_bits)
        scale = np.where(scale > 0, scale, 1e-5)
    q = round_to_set(g / scale[..., None], vals) * scale[..., None]
    return q, scale


def quantize_set(w: np.ndarray, names: list[str], bits: int, group: int = GROUP, scale_bits: int | None = None,
                 metadata_bits: int | None = None) -> Quantized:
    """Per-group quantization to the candidate datatype with the lowest MSE (one name: a plain format)."""
    g = _groups(w, group)
    best = best_err = best_scale = choice = None
    for i, name in enumerate(names):
        q, scale = _set_quant(g, values(name), scale_bits)
        err = ((q - g) ** 2).mean(axis=-1)
        if best is None:
            best, best_err, best_scale, choice = q, err, scale, np.zeros(err.shape, dtype=np.int64)
            continue
        better = err < best_err  # strict: ties keep the earlier candidate
        best = np.where(better[..., None], q, best)
        best_err = np.where(better, err, best_err)
        best_scale = np.where(better, scale, best_scale)
        choice = np.where(better, i, choice)
    if metadata_bits is None:
        metadata_bits = METADATA_BITS["bitmod"] if len(names) > 1 else METADATA_BITS["fp"]
    return Quantized(best.reshape(np.shape(w)), best_scale, choice, list(names), bits, metadata_bits, group)


def quantize_bitmod(w: np.ndarray, bits: int, group: int = GROUP, scale_bits: int | None = 8) -> Quantized:
    """BitMoD: per group, the best of the four FP variants of ``bits`` (3 or 4) bits."""
    if bits not in CANDIDATES:
        raise ValueError("BitMoD's FP mixtures are 3- or 4-bit")
    return quantize_set(w, CANDIDATES[bits], bits, group, scale_bits)


def quantize_fp(w: np.ndarray, bits: int, group: int = GROUP, scale_bits: int | None = None) -> Quantized:
    """Plain FP4 (E2M1) or FP3 per group with an absmax scale."""
    return quantize_set(w, [f"fp{bits}"], bits, group, scale_bits)


def quantize_int_asym(w: np.ndarray, bits: int, group: int = GROUP) -> Quantized:
    """Asymmetric INT per group (paper Eq. 2): codes 0..2^b − 1 with a zero point."""
    g = _groups(w, group)
    top = (1 << bits) - 1
    lo, hi = g.min(axis=-1), g.max(axis=-1)
    scale = np.clip((hi - lo) / top, 1e-5, 1e4)
    zp = np.clip(np.round(-lo / scale), 0, top)
    q = np.clip(np.round(g / scale[..., None]) + zp[..., None], 0, top)
    deq = (q - zp[..., None]) * scale[..., None]
    return Quantized(deq.reshape(np.shape(w)), scale, np.zeros(scale.shape, np.int64), [f"int{bits}_asym"], bits,
                     METADATA_BITS["int_asym"], group)


def quantize_int_sym(w: np.ndarray, bits: int, group: int = GROUP) -> Quantized:
    """Symmetric INT per group: absmax / (2^(b−1) − 1), codes clamped to ±(2^(b−1) − 1)."""
    g = _groups(w, group)
    top = (1 << (bits - 1)) - 1
    scale = np.clip(np.abs(g).max(axis=-1) / top, 1e-5, 1e4)
    deq = np.clip(np.round(g / scale[..., None]), -top, top) * scale[..., None]
    return Quantized(deq.reshape(np.shape(w)), scale, np.zeros(scale.shape, np.int64), [f"int{bits}_sym"], bits,
                     METADATA_BITS["int_sym"], group)


def bits_per_weight(fmt: str, bits: int, group: int = GROUP) -> float:
    """Stored bits per weight of a format: the code plus its per-group metadata."""
    return bits + METADATA_BITS[fmt] / group


QUANTIZERS = {
    "bitmod": quantize_bitmod,
    "int_asym": quantize_int_asym,
    "int_sym": quantize_int_sym,
    "fp": quantize_fp,
}


def quantize(w: np.ndarray, fmt: str, bits: int, group: int = GROUP) -> Quantized:
    """Quantize with a named format: bitmod, int_asym, int_sym or fp."""
    try:
        fn = QUANTIZERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(QUANTIZERS)}") from None
    return fn(w, bits, group)


# ---------------------------------------------------------------------------------------------
# Reference arithmetic of the bit-serial PE (hw/bitmod_pe.py): exact integers, bit for bit.
#
# FP weights are 4-bit codes (FP4: sign + 3-bit magnitude code; FP3: the low 3 bits, sign + 2-bit
# code) whose negative zero means the group's special value, chosen by the 2-bit selector in the
# order of CANDIDATES (+ER, -ER, +EA, -EA).  INT6/INT8 weights (lossless BitMoD) are two's
# complement integers; the PE Booth-recodes them into 3 or 4 radix-4 terms.  Magnitudes are fixed point in half units, so every
# value is an integer: FP4 0, 1, 2, 3, 4, 6, 8, 12 (0 .. 6), specials 10 and 16 (5 and 8); FP3
# 0, 2, 4, 8 (0 .. 4), specials 6 and 12 (3 and 6).  Each has at most two set bits: the PE takes
# it as two terms, one per cycle.  An FP16 activation is m * 2^e with m its 11-bit significand
# (hidden bit included) and e its biased exponent (1 for subnormals).  The PE sums
# sign * m * 2^e * w_half exactly: the value times 2^26 (2^25 for the FP16 scaling, 2 for half
# units).  Dequantization multiplies a group's sum by its 8-bit scale code.
# ---------------------------------------------------------------------------------------------

FP4_HALF = (0, 1, 2, 3, 4, 6, 8, 12)
FP3_HALF = (0, 2, 4, 8)
SPECIAL_HALF = {4: (10, -10, 16, -16), 3: (6, -6, 12, -12)}  # by selector: +ER, -ER, +EA, -EA


PE_FORMATS = ("fp4", "fp3", "int6", "int8")  # the PE's mode input, in this order
PE_CYCLES_PER_STEP = {"fp4": 2, "fp3": 2, "int6": 3, "int8": 4}  # terms per weight


def weight_half_units(codes: np.ndarray, fmt: str, selector: int = 0) -> np.ndarray:
    """Signed weight values in half units from the PE's 8-bit weight codes (see above; INT6 and
    INT8 weights are two's-complement integers, 2w half units)."""
    c = np.asarray(codes, dtype=np.int64)
    if fmt == "fp4":
        sign, mag = (c >> 3) & 1, FP4_HALF
        idx, negzero = c & 7, (c & 15) == 8
        bits = 4
    elif fmt == "fp3":
        sign, mag = (c >> 2) & 1, FP3_HALF
        idx, negzero = c & 3, (c & 7) == 4
        bits = 3
    elif fmt in ("int6", "int8"):
        n = 6 if fmt == "int6" else 8
        v = c & ((1 << n) - 1)
        return 2 * np.where(v >= 1 << (n - 1), v - (1 << n), v)
    else:
        raise ValueError(f"unknown PE weight format {fmt!r}")
    v = np.asarray(mag, dtype=np.int64)[idx] * np.where(sign == 1, -1, 1)
    return np.where(negzero, SPECIAL_HALF[bits][selector], v)


def fp16_significand(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sign, 11-bit significand, effective exponent) of FP16 bit patterns (finite values)."""
    a = np.asarray(acts, dtype=np.int64)
    e = (a >> 10) & 31
    if np.any(e == 31):
        raise ValueError("the PE takes finite FP16 activations (no inf or NaN)")
    frac = a & 1023
    m = np.where(e == 0, frac, frac | 1024)
    return (a >> 15) & 1, m, np.where(e == 0, 1, e)


def pe_group_sum(acts: np.ndarray, codes: np.ndarray, fmt: str, selector: int = 0) -> int:
    """Exact dot product of one group (activations as FP16 bits, weights as codes), times 2^26."""
    s, m, e = fp16_significand(acts)
    w = weight_half_units(codes, fmt, selector)
    return int(sum(int(v) for v in np.where(s == 1, -1, 1) * m * (np.int64(1) << e) * w))


def pe_dequant(group_sum: int, scale_code: int) -> int:
    """Dequantization: the group sum times its unsigned 8-bit scale code (exact)."""
    return int(group_sum) * int(scale_code)
