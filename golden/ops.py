"""Integer operations of the golden model: the exact arithmetic the hardware performs.

Every function is pure and vectorised over numpy integer arrays; it computes in int64 and
states its contract (input ranges, rounding, saturation) in its docstring. Constants and tables
come from :mod:`scoville.numerics`, which the RTL shares. The representation names used below
(wide, scale, Q0.15) are defined there.

Rounding, everywhere: ``round_shift(x, s) = (x + 2**(s-1)) >> s`` (half up, arithmetic shift).
"""

from __future__ import annotations

import numpy as np

from scoville import numerics as nx

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def saturate(x, bits: int = 32) -> np.ndarray:
    """Clamp to the signed ``bits``-bit range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(_i64(x), lo, hi)


def round_shift(x, s) -> np.ndarray:
    """``(x + 2**(s-1)) >> s`` for ``s`` in [1, 62], ``x`` for ``s == 0``; ``s`` clamped to 62.

    ``|x|`` must stay below ``2**62``.
    """
    x = _i64(x)
    s = np.clip(_i64(s), 0, 62)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(x + half, s)


def bit_length(x) -> np.ndarray:
    """Number of bits of non-negative integers (0 for 0), vectorised."""
    x = _i64(x)
    out = np.zeros(x.shape, dtype=np.int64)
    rem = x.copy()
    for step in (32, 16, 8, 4, 2, 1):
        big = rem >= (np.int64(1) << step)
        out += np.where(big, step, 0)
        rem = np.where(big, rem >> step, rem)
    return out + (rem > 0)


# ---------------------------------------------------------------------------- scales


def scale_mul(m1, e1, m2, e2) -> tuple[np.ndarray, np.ndarray]:
    """Product of two scales: ``((m1*m2) >> 15, e1 + e2 + 15)`` (floor), broadcasting.

    Mantissas are signed with magnitude below ``2**15``; so is the result's.
    """
    m = np.right_shift(_i64(m1) * _i64(m2), nx.SCALE_BITS)
    return m, _i64(e1) + _i64(e2) + nx.SCALE_BITS


def reciprocal(n) -> tuple[np.ndarray, np.ndarray]:
    """Scale approximating ``1/n`` for integers ``n >= 1`` (one divide per row in hardware).

    ``n`` is normalised to 15 bits, ``n15 = n >> sh`` (truncating, or ``n << -sh``); then
    ``m = (2**29 - 1) // n15`` in [2**14, 2**15) and ``e = -29 - sh``.
    """
    n = _i64(n)
    if np.any(n < 1):
        raise ValueError("reciprocal of a non-positive number")
    sh = bit_length(n) - nx.SCALE_BITS
    n15 = np.where(sh >= 0, np.right_shift(n, np.maximum(sh, 0)), np.left_shift(n, np.maximum(-sh, 0)))
    m = ((1 << 29) - 1) // n15
    return m, -29 - sh


# Initial guesses for the reciprocal square root, indexed by the top 4 bits of u in [2**28, 2**30).
_RSQRT_SEED = np.array(
    [0 if i < 4 else int(round(2**29 / np.sqrt((i + 0.5) * 2**26))) for i in range(16)], dtype=np.int64
)
RSQRT_ITERATIONS = 3


def rsqrt(v) -> tuple[np.ndarray, np.ndarray]:
    """Scale approximating ``1/sqrt(v)`` for integers ``v >= 0`` (integer Newton iteration).

    ``v = u * 4**k`` with ``u`` in [2**28, 2**30) (``k`` may be negative: exact left shift; for
    positive ``k`` the low bits are truncated). A 12-entry seed table on the top bits of ``u``
    then :data:`RSQRT_ITERATIONS` Newton steps ``t = u*Y*Y >> 29``,
    ``Y = Y * (3 * 2**29 - t) >> 30``; ``Y`` is clamped to ``2**15 - 1``. Result ``(Y, -29 - k)``.
    ``v == 0`` gives ``(2**15 - 1, 0)`` (the norms multiply it by a zero row).
    """
    v = _i64(v)
    if np.any(v < 0):
        raise ValueError("rsqrt of a negative number")
    n = bit_length(v)
    k = np.floor_divide(n - 29, 2)
    u = np.where(k >= 0, np.right_shift(v, np.maximum(2 * k, 0)), np.left_shift(v, np.maximum(-2 * k, 0)))
    u = np.where(v == 0, 1 << 28, u)
    y = _RSQRT_SEED[np.clip(np.right_shift(u, 26), 4, 15)]
    for _ in range(RSQRT_ITERATIONS):
        t = np.right_shift(u * y * y, 29)
        y = np.right_shift(y * (3 * (1 << 29) - t), 30)
    y = np.minimum(y, (1 << nx.SCALE_BITS) - 1)
    e = -29 - k
    return np.where(v == 0, (1 << nx.SCALE_BITS) - 1, y), np.where(v == 0, 0, e)


# ---------------------------------------------------------------------------- quantization


def requantize(acc, m, e, bias=0, out_bits: int = 32) -> np.ndarray:
    """``saturate(round_shift(acc * m, -e) + bias, out_bits)``, broadcasting.

    Contract: ``acc`` int32, ``|m| < 2**15``, ``bias`` int32 added after rounding. ``e <= 0`` is
    a rounding right shift (beyond 62 the result is 0); ``0 < e <= 15`` is a left shift
    (saturating; larger ``e`` raises: no realistic scale reaches it).
    """
    e = _i64(e)
    if np.any(e > 15):
        raise ValueError("requantization multiplier out of range (scale exponent > 15)")
    product = _i64(acc) * _i64(m)
    y = np.where(e > 0, np.left_shift(product, np.maximum(e, 0)), round_shift(product, -e))
    return saturate(y + _i64(bias), out_bits)


def quant_scales(x) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scales of :func:`quantize_rows` without the int8 rows.

    Returns the requantization scale that quantizes each row, ``(recip, -(RECIP_FRAC + sh))``,
    and the row's scale ``(m, e)``: ``quantize_rows(x) == (requantize(x, recip, -(RECIP_FRAC + sh),
    out_bits=8), m, e)`` (``V_QUANT`` with ``ROW_SCALE``, then ``V_REQUANT8``). ``recip < 2**15``
    and ``RECIP_FRAC + sh >= 8``, so it is a requantization scale; ``|q| <= QMAX`` without a clamp,
    since ``|x| <= amax < (a15 + 1) * 2**sh``. An all-zero row's (``amax`` taken as 1) multiplies
    zeros. All four are int64, shape of ``x`` without its last axis.
    """
    x = _i64(x)
    amax = np.max(np.abs(x), axis=-1)
    zero = amax == 0
    amax = np.where(zero, 1, amax)
    sh = bit_length(amax) - nx.SCALE_BITS
    a15 = np.where(sh >= 0, np.right_shift(amax, np.maximum(sh, 0)), np.left_shift(amax, np.maximum(-sh, 0)))
    recip = (nx.QMAX << nx.RECIP_FRAC) // a15
    return recip, -(nx.RECIP_FRAC + sh), np.where(zero, 0, a15), np.where(zero, nx.ZERO_ROW_EXP, sh)


def quantize_rows(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dynamic symmetric int8 quantization of the last axis of a wide array.

    ``amax = max|x|``; ``sh = bitlen(amax) - 15``, ``a15 = amax >> sh`` (or ``<< -sh``) in
    [2**14, 2**15); ``recip = (127 << RECIP_FRAC) // a15`` (``RECIP_FRAC`` 22);
    ``q = clamp(round_shift(x * recip, RECIP_FRAC + sh), -127, 127)``. The row's scale is ``(a15, sh)``:
    ``x ~= q * a15 * 2**sh / 127``. An all-zero row gives ``q = 0``, scale ``(0, ZERO_ROW_EXP)``.

    Returns ``q`` (int8), ``m`` and ``e`` (int64, shape of ``x`` without its last axis).
    """
    x = _i64(x)
    recip, shift, m, e = quant_scales(x)
    q = round_shift(x * recip[..., None], -shift[..., None])
    q = np.clip(q, -nx.QMAX, nx.QMAX).astype(np.int8)
    return q, m, e


def matmul(a, b) -> np.ndarray:
    """int8 [M, K] @ int8 [K, N] -> int32 [M, N], exact (the systolic array's contract)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype != np.int8 or b.dtype != np.int8:
        raise TypeError(f"matmul takes int8 operands, got {a.dtype} and {b.dtype}")
    out = a.astype(np.int64) @ b.astype(np.int64)
    if np.any(out > INT32_MAX) or np.any(out < INT32_MIN):
        raise OverflowError("int32 accumulator overflow")
    return out.astype(np.int32)


# ---------------------------------------------------------------------------- elementwise


def add(a, b) -> np.ndarray:
    """Saturating int32 addition (residual add)."""
    return saturate(_i64(a) + _i64(b)).astype(np.int32)


def mul(a, b, frac: int = nx.FRAC) -> np.ndarray:
    """Product of two wide values: ``saturate(round_shift(a * b, frac))``."""
    return saturate(round_shift(_i64(a) * _i64(b), frac)).astype(np.int32)


def pwl(table: nx.PwlTable, u) -> np.ndarray:
    """Evaluate a piecewise-linear table at unsigned ``u`` < ``2**(index_bits + frac_bits)``.

    ``knots[i] + ((knots[i+1] - knots[i]) * f >> frac_bits)`` (floor), with ``i`` the top bits
    and ``f`` the low bits of ``u``.
    """
    u = _i64(u)
    knots = np.asarray(table.knots, dtype=np.int64)
    i = np.right_shift(u, table.frac_bits)
    f = u & ((1 << table.frac_bits) - 1)
    return knots[i] + np.right_shift((knots[i + 1] - knots[i]) * f, table.frac_bits)


def exp_neg(d) -> np.ndarray:
    """``exp(d)`` for wide ``d <= 0``, Q0.15 in [0, 2**15].

    ``t = -d * LOG2E_Q`` (Q.(FRAC+14)); integer part ``z = t >> (FRAC+14)``, fraction
    ``f = (t >> FRAC) & (2**14 - 1)``; ``v = pwl(exp2, f)`` approximates ``2**-f`` in (0.5, 1];
    result ``round_shift(v, z)``, 0 when ``z > EXP_MAX_SHIFT``.
    """
    d = _i64(d)
    if np.any(d > 0):
        raise ValueError("exp_neg takes non-positive arguments")
    t = np.minimum(-d, 1 << 40) * nx.LOG2E_Q
    z = np.right_shift(t, nx.FRAC + nx.LOG2E_FRAC)
    f = np.right_shift(t, nx.FRAC) & ((1 << nx.LOG2E_FRAC) - 1)
    v = pwl(nx.exp2_table(), f)
    return np.where(z > nx.EXP_MAX_SHIFT, 0, round_shift(v, np.minimum(z, nx.EXP_MAX_SHIFT)))


def _odd_symmetric_factor(table: nx.PwlTable, x, range_: float) -> np.ndarray:
    """``g(x)`` in Q0.15 for g with ``g(-x) = 1 - g(x)`` (Phi, sigmoid) from a table on [0, range)."""
    x = _i64(x)
    a = np.abs(x)
    limit = int(range_ * (1 << nx.FRAC))
    g = np.where(a >= limit, 1 << nx.PROB_FRAC, pwl(table, np.minimum(a, limit - 1)))
    return np.where(x >= 0, g, (1 << nx.PROB_FRAC) - g)


def gelu(x) -> np.ndarray:
    """erf GELU of a wide value: ``round_shift(x * Phi(x), 15)``.

    ``Phi(|x|)`` from the 32-segment table on [0, 4); 1 beyond; ``Phi(-x) = 1 - Phi(x)``.
    """
    phi = _odd_symmetric_factor(nx.gelu_table(), x, nx.GELU_RANGE)
    return round_shift(_i64(x) * phi, nx.PROB_FRAC).astype(np.int32)


def silu(x) -> np.ndarray:
    """SiLU of a wide value: ``round_shift(x * sigmoid(x), 15)``, sigmoid from a 64-segment
    table on [0, 8), 1 beyond, ``sigmoid(-x) = 1 - sigmoid(x)``."""
    sig = _odd_symmetric_factor(nx.silu_table(), x, nx.SILU_RANGE)
    return round_shift(_i64(x) * sig, nx.PROB_FRAC).astype(np.int32)


# ---------------------------------------------------------------------------- row operations


def row_max(x) -> np.ndarray:
    """Maximum of each row (last axis) of a wide array, int64."""
    return np.max(_i64(x), axis=-1)


def row_sum(x) -> np.ndarray:
    """Exact sum of each row (last axis), int64 (the vector unit keeps 48 bits: rows up to 2**16)."""
    return np.sum(_i64(x), axis=-1)


def row_max_abs(x) -> np.ndarray:
    """``max|x|`` of each row (last axis), int64 (``2**31`` for a row holding INT32_MIN)."""
    return np.max(np.abs(_i64(x)), axis=-1)


def row_sum_squares(x) -> tuple[np.ndarray, np.ndarray]:
    """Block-normalised sum of squares of each row, as the norms compute it: ``s`` = shift that
    brings ``max|x|`` to 15 bits (0 if it fits), returns ``(sum((x >> s)**2), s)``."""
    xs, s = _row_normalise(x)
    return np.sum(xs * xs, axis=-1), s


def softmax_exp(scores, allowed=None) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised softmax of wide scores along the last axis.

    ``e = exp_neg(s - max(s))`` over the allowed entries, 0 elsewhere; returns ``e`` (Q0.15,
    int64) and the row sums (int64, at least ``exp_neg(0)`` for a row with one allowed entry).
    Normalisation is deferred: attention divides ``P @ V`` by the sum after the matmul.
    """
    s = _i64(scores)
    if allowed is None:
        allowed = np.ones(s.shape, dtype=bool)
    if np.any(~np.any(allowed, axis=-1)):
        raise ValueError("softmax row with no allowed entry")
    masked = np.where(allowed, s, np.iinfo(np.int64).min // 4)
    peak = np.max(masked, axis=-1, keepdims=True)
    e = np.where(allowed, exp_neg(np.where(allowed, s - peak, 0)), 0)
    return e, e.sum(axis=-1)


def softmax(scores, allowed=None) -> np.ndarray:
    """Normalised softmax, Q0.15 probabilities: ``round_shift(e * recip(sum), -e_r)``.

    The vector unit's stand-alone softmax; the attention path uses :func:`softmax_exp`.
    """
    e, total = softmax_exp(scores, allowed)
    m, ex = reciprocal(total)
    return requantize(e, m[..., None], (ex + nx.PROB_FRAC)[..., None])


def _row_normalise(x) -> tuple[np.ndarray, np.ndarray]:
    """Values of each row shifted right by ``s = max(0, bitlen(max|x|) - NORM_BITS)``."""
    x = _i64(x)
    amax = np.max(np.abs(x), axis=-1)
    s = np.maximum(bit_length(amax) - nx.NORM_BITS, 0)
    return np.right_shift(x, s[..., None]), s


def rms_scale(x, eps_q: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-row scale of :func:`rmsnorm` before gamma: ``(r_m, r_e + FRAC - s)`` with
    ``(r_m, r_e) = rsqrt(sum(xs**2) + round_shift(eps_q, 2s))``, ``xs = x >> s``. So
    ``rmsnorm(x, gm, ge, eps_q, b) == requantize(x, *scale_mul(m, e, gm, ge), b)``: a norm is this
    scale per row, then a requantization with gamma as column scales (``V_RMSNORM`` with
    ``ROW_SCALE``, then ``V_REQUANT``). Returns ``m``, ``e`` (int64, shape of ``x`` without its
    last axis)."""
    x = _i64(x)
    xs, s = _row_normalise(x)
    v = np.sum(xs * xs, axis=-1) + round_shift(np.int64(eps_q), 2 * s)
    rm, re = rsqrt(v)
    return rm, re + nx.FRAC - s


def rmsnorm(x, gamma_m, gamma_e, eps_q: int, bias=0) -> np.ndarray:
    """RMSNorm of wide rows (last axis ``H``), wide result.

    Rows are block-normalised to 15 bits, ``xs = x >> s``; ``v = sum(xs**2) + (eps_q >> 2s)``
    with ``eps_q = round(eps * H * 4**FRAC)``; ``r = rsqrt(v)``. The per-column scale
    ``gamma * sqrt(H)`` (``gamma_m``, ``gamma_e``) is combined with ``r`` by :func:`scale_mul`
    and applied with :func:`requantize` at exponent ``+ FRAC - s``, plus ``bias`` (wide): the
    row's :func:`rms_scale` times gamma.
    """
    x = _i64(x)
    rm, re = rms_scale(x, eps_q)
    m, e = scale_mul(rm[..., None], re[..., None], gamma_m, gamma_e)
    return requantize(x, m, e, bias).astype(np.int32)


def layernorm(x, inv_h_m: int, inv_h_e: int, gamma_m, gamma_e, beta, eps_q: int) -> np.ndarray:
    """LayerNorm of wide rows: ``mean = round_shift(sum(x) * inv_h_m, -inv_h_e)`` with the
    scale ``1/H``; ``xc = saturate(x - mean)``; then :func:`rmsnorm` of ``xc`` with ``beta``."""
    x = _i64(x)
    mean = round_shift(np.sum(x, axis=-1) * inv_h_m, -inv_h_e)
    xc = saturate(x - mean[..., None])
    return rmsnorm(xc, gamma_m, gamma_e, eps_q, bias=beta)


def rope(x, positions, freqs) -> np.ndarray:
    """Rotary embedding of wide ``x`` [..., T, heads, D] (half-split pairs, as Hugging Face).

    Phase of pair ``i`` at position ``p``: ``(p * freqs[i]) mod 2**32`` turns; ``sin`` and
    ``cos`` (phase + a quarter turn) from the 256-segment sine table, Q1.14; outputs
    ``round_shift(x1*cos - x2*sin, 14)`` and ``round_shift(x2*cos + x1*sin, 14)``, saturated.
    """
    x = _i64(x)
    half = x.shape[-1] // 2
    pos = np.asarray(positions, dtype=np.uint64)
    phase = (pos[:, None] * np.asarray(freqs, dtype=np.uint64)[None, :]) & np.uint64((1 << nx.PHASE_BITS) - 1)
    quarter = np.uint64(1 << (nx.PHASE_BITS - 2))
    cos_phase = (phase + quarter) & np.uint64((1 << nx.PHASE_BITS) - 1)
    table = nx.sine_table()
    sin = pwl(table, phase.astype(np.int64))[:, None, :]
    cos = pwl(table, cos_phase.astype(np.int64))[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    out1 = round_shift(x1 * cos - x2 * sin, nx.TRIG_FRAC)
    out2 = round_shift(x2 * cos + x1 * sin, nx.TRIG_FRAC)
    return saturate(np.concatenate([out1, out2], axis=-1)).astype(np.int32)


# ---------------------------------------------------------------------------- conversions


def to_wide(x_float) -> np.ndarray:
    """Float -> wide (only for constants at compile time and for test stimuli)."""
    return saturate(np.round(np.asarray(x_float, dtype=np.float64) * (1 << nx.FRAC))).astype(np.int32)


def from_wide(x) -> np.ndarray:
    """Wide -> float32 (dequantized outputs)."""
    return (np.asarray(x, dtype=np.float64) / (1 << nx.FRAC)).astype(np.float32)
