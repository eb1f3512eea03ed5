"""Each integer operation of the golden model against float math, with stated error bounds.

Exhaustive where the input domain is small (every wide input of GELU/SiLU on their table range,
every exp argument down to the point where it is zero, every quantization of int8-sized rows).
"""

import math

import numpy as np
import pytest
from scipy.special import erf

from golden import ops
from golden.float_ops import FloatOps
from golden.quant_ops import GoldenOps, quantize_weight
from scoville import numerics as nx

ONE = 1 << nx.FRAC
LSB = 1.0 / ONE


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_round_shift_is_half_up_and_saturate_clamps():
    x = np.array([5, 6, 7, -5, -6, -7, 0])
    assert ops.round_shift(x, 2).tolist() == [1, 2, 2, -1, -1, -2, 0]
    assert ops.round_shift(x, 0).tolist() == x.tolist()
    assert ops.saturate([1 << 40, -(1 << 40), 3], 8).tolist() == [127, -128, 3]


def test_bit_length_matches_python():
    values = [0, 1, 2, 3, 255, 256, (1 << 31) - 1, 1 << 40, (1 << 62) + 5]
    assert ops.bit_length(values).tolist() == [v.bit_length() for v in values]


def test_scale_from_float_round_trips():
    values = np.array([1e-9, 3.3e-4, 0.5, 1.0, 7.25, 1e6, -0.37])
    m, e = nx.scale_from_float(values)
    assert np.all(np.abs(m) >= 1 << 14) and np.all(np.abs(m) < 1 << 15)
    np.testing.assert_allclose(m * np.exp2(e.astype(float)), values, rtol=2**-15)
    assert nx.scale_from_float(0.0)[0] == 0


def test_reciprocal_and_rsqrt_relative_error():
    n = np.unique(np.concatenate([np.arange(1, 5000), np.geomspace(1, 1 << 45, 2000).astype(np.int64)]))
    m, e = ops.reciprocal(n)
    np.testing.assert_allclose(m * np.exp2(e.astype(float)), 1.0 / n, rtol=2.5e-4)
    m, e = ops.rsqrt(n)
    np.testing.assert_allclose(m * np.exp2(e.astype(float)), 1.0 / np.sqrt(n), rtol=1e-4)
    with pytest.raises(ValueError):
        ops.reciprocal([0])


def test_requantize_matches_exact_rational_rounding(rng):
    acc = rng.integers(-(1 << 31), 1 << 31, size=5000)
    m = rng.integers(-(1 << 15) + 1, 1 << 15, size=5000)
    e = rng.integers(-60, 0, size=5000)
    got = ops.requantize(acc, m, e, out_bits=32)
    # exact: floor(acc*m / 2**-e + 1/2) with Python integers
    want = [max(-(1 << 31), min((1 << 31) - 1, (int(a) * int(b) + (1 << (-int(s) - 1))) >> -int(s)))
            for a, b, s in zip(acc, m, e, strict=True)]
    assert got.tolist() == want
    assert ops.requantize([1000], [3], [2], out_bits=8).tolist() == [127]  # left shift, saturating
    with pytest.raises(ValueError):
        ops.requantize([1], [1], [16])


def test_quantize_rows_exhaustive_small_rows():
    # every row [a, b] with a, b in [-300, 300]: error within half a step plus the truncation of amax
    a, b = np.meshgrid(np.arange(-300, 301), np.arange(-300, 301))
    x = np.stack([a.ravel(), b.ravel()], axis=-1)
    q, m, e = ops.quantize_rows(x)
    amax = np.abs(x).max(axis=-1)
    step = m * np.exp2(e.astype(float)) / nx.QMAX
    nonzero = amax > 0
    err = np.abs(q[nonzero] * step[nonzero, None] - x[nonzero])
    assert np.all(err <= 0.5 * step[nonzero, None] + 1e-9 + amax[nonzero, None] * 2**-14)
    assert np.all(q[~nonzero] == 0) and np.all(m[~nonzero] == 0)
    assert q.dtype == np.int8 and q.min() >= -127


def test_quant_scales_requantize_to_quantize_rows():
    # V_QUANT with ROW_SCALE then V_REQUANT8 is V_QUANT: the requantization by each row's
    # quant_scales, saturated to int8, is quantize_rows bit for bit (no clamp needed at -128)
    rng = np.random.default_rng(7)
    rows = [rng.integers(-(1 << b), 1 << b, size=(200, 37)) for b in (1, 8, 15, 16, 24, 31)]
    rows.append(np.zeros((3, 37), dtype=np.int64))
    extremes = np.full((4, 37), -(1 << 31), dtype=np.int64)
    extremes[1] = (1 << 31) - 1
    extremes[2, :] = 0
    extremes[2, 5] = -1
    extremes[3] = rng.integers(-(1 << 14), 1 << 14, size=37)
    extremes[3, 0] = -(1 << 14)
    rows.append(extremes)
    x = np.concatenate(rows)
    recip, shift, m, e = ops.quant_scales(x)
    assert np.all(np.abs(recip) < 1 << nx.SCALE_BITS) and np.all(shift <= -8)
    q = ops.requantize(x, recip[:, None], shift[:, None], out_bits=8)
    want_q, want_m, want_e = ops.quantize_rows(x)
    assert np.array_equal(q, want_q) and np.array_equal(m, want_m) and np.array_equal(e, want_e)
    assert q.min() >= -nx.QMAX


def test_matmul_corner_values_and_overflow_check():
    a = np.full((3, 4096), -128, dtype=np.int8)
    out = ops.matmul(a, np.full((4096, 2), -128, dtype=np.int8))
    assert out.dtype == np.int32 and np.all(out == 4096 * 16384)
    with pytest.raises(OverflowError):
        ops.matmul(np.full((1, 1 << 17), -128, dtype=np.int8), np.full((1 << 17, 1), -128, dtype=np.int8))
    with pytest.raises(TypeError):
        ops.matmul(np.zeros((1, 1), dtype=np.int16), np.zeros((1, 1), dtype=np.int8))


def test_exp_exhaustive_over_its_nonzero_range():
    d = -np.arange(0, 20 * ONE)  # exp(-20) is below the Q0.15 resolution
    got = ops.exp_neg(d) / (1 << nx.PROB_FRAC)
    want = np.exp(d * LSB)
    # table interpolation (~4e-5) + argument quantization (half an LSB) + output rounding
    assert np.max(np.abs(got - want)) < 1.2e-4
    assert ops.exp_neg([0])[0] == 1 << nx.PROB_FRAC
    assert ops.exp_neg([-(1 << 31)])[0] == 0


def test_gelu_and_silu_exhaustive_on_the_int16_domain():
    x = np.arange(-(1 << 15), 1 << 15)  # every wide value in [-32, 32)
    xf = x * LSB
    gelu = ops.gelu(x) * LSB
    want = 0.5 * xf * (1 + erf(xf / math.sqrt(2)))
    assert np.max(np.abs(gelu - want)) < 2.5e-3
    silu = ops.silu(x) * LSB
    assert np.max(np.abs(silu - xf / (1 + np.exp(-xf)))) < 1.2e-2  # sigmoid table clipped at |x| = 8
    inner = np.abs(xf) < 6
    assert np.max(np.abs(silu - xf / (1 + np.exp(-xf)))[inner]) < 2.5e-3


def test_softmax_matches_float(rng):
    s = rng.normal(size=(50, 37)) * 3
    allowed = rng.random((50, 37)) < 0.8
    allowed[:, 0] = True
    p = ops.softmax(ops.to_wide(s), allowed) / (1 << nx.PROB_FRAC)
    ref = np.where(allowed, np.exp(s - np.where(allowed, s, -np.inf).max(-1, keepdims=True)), 0)
    ref /= ref.sum(-1, keepdims=True)
    assert np.max(np.abs(p - ref)) < 3e-4
    assert np.all(p[~allowed] == 0)
    with pytest.raises(ValueError):
        ops.softmax_exp(np.zeros((1, 3), dtype=np.int64), np.zeros((1, 3), dtype=bool))


@pytest.mark.parametrize("hidden", [1, 7, 64, 384])
def test_norms_match_float(rng, hidden):
    f, g = FloatOps(), GoldenOps()
    x = (rng.normal(size=(20, hidden)) * rng.uniform(0.01, 30, size=(20, 1))).astype(np.float32)
    x[0] = 0.0  # an all-zero row
    x[1] = 5.0  # an all-equal row (LayerNorm: zero variance)
    gamma = (1 + 0.2 * rng.normal(size=hidden)).astype(np.float32)
    beta = (0.1 * rng.normal(size=hidden)).astype(np.float32)
    xw = ops.to_wide(x)
    rms = ops.from_wide(g.rmsnorm(xw, g.prepare_norm(gamma, None, 1e-6)))
    rms_ref = f.rmsnorm(ops.from_wide(xw), f.prepare_norm(gamma, None, 1e-6))
    assert np.max(np.abs(rms - rms_ref)) < 4e-3 * max(1.0, np.abs(rms_ref).max())
    ln = ops.from_wide(g.layernorm(xw, g.prepare_norm(gamma, beta, 1e-12)))
    ln_ref = f.layernorm(ops.from_wide(xw), f.prepare_norm(gamma, beta, 1e-12))
    bad = np.abs(ln - ln_ref)[2:]  # rows 0-1: the float reference divides 0 by sqrt(eps)
    assert np.max(bad) < 4e-3 * max(1.0, np.abs(ln_ref).max())
    assert np.all(ln[0] == ops.to_wide(beta) * LSB) or np.allclose(ln[0], beta, atol=LSB)


def test_rms_scale_then_requantize_is_the_rmsnorm(rng):
    """A norm as its rows' scales, then a requantization with gamma as column scales (what
    ``V_RMSNORM`` with ``ROW_SCALE`` and a ``V_REQUANT`` compute), equals the norm in one step as
    the contract writes it (the rsqrt and gamma's scale combined, then ``+ FRAC - s``), for any
    rows: all zero, near the int32 limits, tiny, with eps 0 or large."""
    rows, cols = 40, 37
    x = rng.integers(-(1 << 31), 1 << 31, size=(rows, cols)) >> rng.integers(0, 32, size=(rows, 1))
    x[0], x[1], x[2] = 0, -(1 << 31), (1 << 31) - 1
    x[3] = rng.integers(-2, 3, size=cols)
    gm, ge = nx.scale_from_float(rng.uniform(-3.0, 3.0, size=cols) * np.sqrt(cols))
    bias = rng.integers(-(1 << 20), 1 << 20, size=cols)
    for eps_q in (0, 1, 12345, 1 << 30):
        shift = np.maximum(ops.bit_length(np.abs(x).max(axis=1)) - nx.NORM_BITS, 0)
        xs = x >> shift[:, None]
        rm, re = ops.rsqrt((xs * xs).sum(axis=1) + ops.round_shift(np.int64(eps_q), 2 * shift))
        m, e = ops.scale_mul(rm[:, None], re[:, None], gm, ge)
        want = ops.requantize(x, m, e + nx.FRAC - shift[:, None], bias)
        sm, se = ops.rms_scale(x, eps_q)
        assert np.array_equal(ops.requantize(x, *ops.scale_mul(sm[:, None], se[:, None], gm, ge), bias), want)
        assert np.array_equal(ops.rmsnorm(x, gm, ge, eps_q, bias), want)
        # the row scale fits the packed 16-bit fields and the unit's 8-bit exponent
        assert np.all((0 <= sm) & (sm < 1 << 15)) and np.all((-128 <= se) & (se < 128))


def test_rope_matches_float(rng):
    f, g = FloatOps(), GoldenOps()
    x = rng.normal(size=(40, 3, 16)).astype(np.float32) * 4
    pos = np.arange(1000, 1040)
    got = ops.from_wide(g.rope(ops.to_wide(x), g.prepare_rope(16, 10000.0), pos))
    want = f.rope(x, f.prepare_rope(16, 10000.0), pos)
    assert np.max(np.abs(got - want)) < 4e-3


def test_linear_and_attention_track_float(rng):
    f, g = FloatOps(), GoldenOps()
    x = rng.normal(size=(9, 70)).astype(np.float32)
    w = (rng.normal(size=(33, 70)) * 0.05).astype(np.float32)
    b = (rng.normal(size=33) * 0.1).astype(np.float32)
    y = ops.from_wide(g.linear(ops.to_wide(x), g.prepare_linear(w, b)))
    y_ref = f.linear(x, f.prepare_linear(w, b))
    assert _cos(y, y_ref) > 0.9995
    q, k, v = (rng.normal(size=(9, 4, 16)).astype(np.float32) for _ in range(3))
    k2, v2 = k[:, :2], v[:, :2]  # grouped-query: 4 query heads over 2 kv heads
    pos = np.arange(9)
    out = g.attention(ops.to_wide(q), g.kv_store(ops.to_wide(k2), ops.to_wide(v2)), pos, pos, True, None)
    ref = f.attention(q, f.kv_store(k2, v2), pos, pos, True, None)
    assert _cos(ops.from_wide(out), ref) > 0.999
    # token 0 attends only to itself: its output is V's row 0 (for each head's kv group)
    np.testing.assert_allclose(ops.from_wide(out)[0, 1], v2[0, 0], atol=0.03)


def test_weight_quantization_is_per_output_channel(rng):
    w = rng.normal(size=(5, 9)) * np.array([[0.001], [0.01], [0.1], [1.0], [10.0]])
    q, scale = quantize_weight(w)
    assert np.all(np.abs(q).max(axis=1) == 127)
    assert np.all(np.abs(q * scale[:, None] - w) <= scale[:, None] * 0.5 + 1e-12)


def _cos(a, b):
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    return a @ b / np.linalg.norm(a) / np.linalg.norm(b)
