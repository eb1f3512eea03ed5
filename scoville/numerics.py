"""The numerics contract: constants and tables shared by the golden model and the RTL.

Neither ``golden/`` nor ``rtl/`` owns these facts; both import them from here so that a change
reaches both at once. See ``docs/numerics.md`` for the reasoning.

Representations
---------------
wide
    int32 fixed point with :data:`FRAC` fractional bits (``Q21.10``): the residual stream, every
    linear-layer output, attention scores, norm and activation outputs.
int8 activations
    symmetric, per row (per token, or per token and head), dynamic: ``q = round(x * 127 / amax)``
    with the row's scale kept as a :class:`scale <FixScale>`.
scale (``m``, ``e``)
    a small integer float, value ``m * 2**e``, ``m`` a signed 16-bit mantissa (normalised to
    ``[2**14, 2**15)`` in magnitude when it comes from a float), ``e`` a signed exponent.
probability / activation factors
    Q0.15 unsigned (1.0 is ``2**15``).

Piecewise-linear tables
-----------------------
``exp2`` of a fraction, the normal CDF (GELU), the logistic sigmoid (SiLU) and sine (RoPE) are
evaluated by one primitive: a table of ``segments + 1`` Q0.15 knots indexed by the top bits of
the argument, linear interpolation between knots with the remaining bits. The knots are rounded
float64 values computed here once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

#: Fractional bits of the wide (int32) representation.
FRAC = 10
#: Largest magnitude of an int8 activation or weight (symmetric: -128 is never produced).
QMAX = 127
#: Mantissa bits of a scale: |m| < 2**SCALE_BITS.
SCALE_BITS = 15
#: Exponent given to the scale of an all-zero row, so it never dominates a shared exponent.
ZERO_ROW_EXP = -64
#: Fractional bits of the reciprocal used to quantize a row (q = x * recip >> (RECIP_FRAC + sh)):
#: 22 keeps ``recip = (QMAX << RECIP_FRAC) // a15`` below ``2**15``, a requantization multiplier,
#: so that a requantizer can apply it (``golden.ops.quant_scales``).
RECIP_FRAC = 22
#: Q-format of probabilities and activation factors (exp values, Phi, sigmoid).
PROB_FRAC = 15
#: Q-format of RoPE's cos/sin values.
TRIG_FRAC = 14
#: Fractional bits of the RoPE phase: a full turn is 2**PHASE_BITS.
PHASE_BITS = 32
#: Bits of the row-normalised values that norms square (block floating point per row).
NORM_BITS = 15
#: log2(e) in Q.LOG2E_FRAC, used to turn exp(d) into 2**(d*log2e).
LOG2E_FRAC = 14
LOG2E_Q = round(math.log2(math.e) * (1 << LOG2E_FRAC))
#: Largest right shift the exp unit applies before its output is zero.
EXP_MAX_SHIFT = 16


@dataclass(frozen=True)
class PwlTable:
    """A piecewise-linear function of an unsigned fixed-point argument.

    The argument ``u`` has ``index_bits + frac_bits`` bits: the top ``index_bits`` select a
    segment, the low ``frac_bits`` interpolate. ``knots[i]`` is ``f(i * step)`` in Q0.15 (or
    Q1.14 for sine); the value is ``knots[i] + ((knots[i+1] - knots[i]) * frac >> frac_bits)``.
    """

    name: str
    index_bits: int
    frac_bits: int
    knots: tuple[int, ...]

    @property
    def segments(self) -> int:
        return 1 << self.index_bits


def _pwl(name: str, func, lo: float, hi: float, index_bits: int, frac_bits: int, one: int) -> PwlTable:
    xs = np.linspace(lo, hi, (1 << index_bits) + 1, dtype=np.float64)
    knots = tuple(int(round(float(func(x)) * one)) for x in xs)
    return PwlTable(name, index_bits, frac_bits, knots)


@cache
def exp2_table() -> PwlTable:
    """``2**-f`` for ``f`` in [0, 1), Q0.15; argument is the fraction in Q0.(index+frac)."""
    return _pwl("exp2", lambda f: 2.0 ** (-f), 0.0, 1.0, 5, 9, 1 << PROB_FRAC)


#: GELU: Phi(|x|) for |x| in [0, GELU_RANGE); beyond it Phi is taken as 1.
GELU_RANGE = 4.0
#: SiLU: sigmoid(|x|) for |x| in [0, SILU_RANGE); beyond it sigmoid is taken as 1.
SILU_RANGE = 8.0


@cache
def gelu_table() -> PwlTable:
    """Normal CDF on [0, GELU_RANGE), Q0.15; argument is |x| in the wide format (FRAC bits)."""
    index_bits = 5
    frac_bits = FRAC + int(math.log2(GELU_RANGE)) - index_bits
    return _pwl("phi", lambda x: 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))), 0.0, GELU_RANGE,
                index_bits, frac_bits, 1 << PROB_FRAC)


@cache
def silu_table() -> PwlTable:
    """Logistic sigmoid on [0, SILU_RANGE), Q0.15; argument is |x| in the wide format."""
    index_bits = 6
    frac_bits = FRAC + int(math.log2(SILU_RANGE)) - index_bits
    return _pwl("sigmoid", lambda x: 1.0 / (1.0 + math.exp(-x)), 0.0, SILU_RANGE,
                index_bits, frac_bits, 1 << PROB_FRAC)


@cache
def sine_table() -> PwlTable:
    """sin over one full turn, Q1.14; argument is a phase in turns, Q0.PHASE_BITS."""
    index_bits = 8
    return _pwl("sine", lambda t: math.sin(2.0 * math.pi * t), 0.0, 1.0,
                index_bits, PHASE_BITS - index_bits, 1 << TRIG_FRAC)


def rope_frequencies(head_dim: int, theta: float) -> np.ndarray:
    """Per-pair RoPE frequencies in turns per position, unsigned Q0.PHASE_BITS (uint64 array).

    Pair ``i`` rotates by ``pos * theta**(-2i/head_dim)`` radians; stored as that over 2*pi,
    so ``(pos * freq) mod 2**PHASE_BITS`` is the phase in turns with no explicit modulo.
    """
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    if theta <= 0:
        raise ValueError(f"rope_theta must be positive, got {theta}")
    i = np.arange(head_dim // 2, dtype=np.float64)
    inv_freq = theta ** (-2.0 * i / head_dim)
    return np.round(inv_freq / (2.0 * math.pi) * (1 << PHASE_BITS)).astype(np.uint64)


def scale_from_float(value: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compile-time conversion of real scale factors to (mantissa, exponent) integer pairs.

    ``m`` has magnitude in [2**14, 2**15) (0 for a zero value) and ``m * 2**e`` rounds ``value``.
    """
    v = np.asarray(value, dtype=np.float64)
    mant, exp = np.frexp(v)  # v = mant * 2**exp, |mant| in [0.5, 1)
    m = np.round(mant * (1 << SCALE_BITS)).astype(np.int64)
    e = exp.astype(np.int64) - SCALE_BITS
    # rounding can reach 2**15: renormalise
    over = np.abs(m) >= (1 << SCALE_BITS)
    m = np.where(over, m // 2, m)
    e = np.where(over, e + 1, e)
    zero = v == 0
    m = np.where(zero, 0, m)
    e = np.where(zero, ZERO_ROW_EXP, e)
    return m, e
