"""The ``golden`` backend: the exact integer arithmetic of the hardware (W8A8, dynamic per token).

Weights: int8, symmetric, per output channel (``s_n = max|W_n| / 127``). Activations entering a
matmul: int8, symmetric, dynamic per row (per token for linear layers, per token and head for
Q, K and V), quantized by :func:`golden.ops.quantize_rows`. Everything between matmuls is wide
(int32 Q.FRAC). Why dynamic per token: see ``docs/numerics.md`` (per-tensor static scales fall
below the 0.99 cosine bar on MiniLM).

Float numbers appear only in ``prepare_*`` (compile time: weights, gammas, constants), never on
activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from golden import ops
from scoville import numerics as nx


@dataclass
class QLinear:
    """int8 weights ``[in, out]`` with per-column scale ``s_n / 127`` and a wide bias."""

    weight_t: np.ndarray
    col_m: np.ndarray
    col_e: np.ndarray
    bias: np.ndarray


@dataclass
class QNorm:
    gamma_m: np.ndarray  # scale of gamma * sqrt(H)
    gamma_e: np.ndarray
    beta: np.ndarray  # wide
    eps_q: int
    inv_h_m: int
    inv_h_e: int


@dataclass
class QEmbedding:
    table: np.ndarray  # int8 [rows, H]
    row_m: np.ndarray  # scale of s_row, with FRAC folded in
    row_e: np.ndarray


@dataclass
class QKV:
    """Quantized keys and values per token and kv head, as the KV cache holds them."""

    k: np.ndarray  # int8 [S, kv_heads, D]
    k_m: np.ndarray  # [S, kv_heads]
    k_e: np.ndarray
    v: np.ndarray
    v_m: np.ndarray
    v_e: np.ndarray


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 quantization of a float matrix ``[rows, cols]``: ``(q, scale)``."""
    w = np.asarray(w, dtype=np.float64)
    amax = np.max(np.abs(w), axis=1)
    scale = np.where(amax > 0, amax / nx.QMAX, 1.0)
    q = np.clip(np.round(w / scale[:, None]), -nx.QMAX, nx.QMAX).astype(np.int8)
    return q, np.where(amax > 0, scale, 0.0)


class GoldenOps:
    name = "golden"

    # ------------------------------------------------------------------ compile time

    def prepare_linear(self, weight, bias) -> QLinear:
        q, scale = quantize_weight(weight)
        m, e = nx.scale_from_float(scale / nx.QMAX)
        out = weight.shape[0]
        b = np.zeros(out, dtype=np.int32) if bias is None else ops.to_wide(bias)
        return QLinear(np.ascontiguousarray(q.T), m, e, b)

    def prepare_norm(self, gamma, beta, eps) -> QNorm:
        h = gamma.shape[0]
        gm, ge = nx.scale_from_float(np.asarray(gamma, dtype=np.float64) * math.sqrt(h))
        b = np.zeros(h, dtype=np.int32) if beta is None else ops.to_wide(beta)
        eps_q = int(round(eps * h * 4.0**nx.FRAC))
        inv_m, inv_e = nx.scale_from_float(1.0 / h)
        return QNorm(gm, ge, b, eps_q, int(inv_m), int(inv_e))

    def prepare_embedding(self, table) -> QEmbedding:
        q, scale = quantize_weight(table)
        m, e = nx.scale_from_float(scale)
        return QEmbedding(q, m, e + nx.FRAC)

    def prepare_rope(self, head_dim: int, theta: float) -> np.ndarray:
        return nx.rope_frequencies(head_dim, theta)

    # ------------------------------------------------------------------ run time (integer only)

    def embed(self, table: QEmbedding, ids) -> np.ndarray:
        ids = np.asarray(ids)
        q = table.table[ids].astype(np.int64)
        return ops.requantize(q, table.row_m[ids][:, None], table.row_e[ids][:, None]).astype(np.int32)

    def linear(self, x, layer: QLinear) -> np.ndarray:
        q, rm, re = ops.quantize_rows(x)
        acc = ops.matmul(q, layer.weight_t)
        m, e = ops.scale_mul(rm[:, None], re[:, None], layer.col_m[None, :], layer.col_e[None, :])
        return ops.requantize(acc, m, e, layer.bias[None, :]).astype(np.int32)

    def rmsnorm(self, x, norm: QNorm) -> np.ndarray:
        return ops.rmsnorm(x, norm.gamma_m, norm.gamma_e, norm.eps_q, norm.beta)

    def layernorm(self, x, norm: QNorm) -> np.ndarray:
        return ops.layernorm(x, norm.inv_h_m, norm.inv_h_e, norm.gamma_m, norm.gamma_e, norm.beta, norm.eps_q)

    def rope(self, x, freqs, positions) -> np.ndarray:
        return ops.rope(x, positions, freqs)

    def kv_store(self, k, v) -> QKV:
        kq, km, ke = ops.quantize_rows(k)
        vq, vm, ve = ops.quantize_rows(v)
        return QKV(kq, km, ke, vq, vm, ve)

    def kv_concat(self, old: QKV, new: QKV) -> QKV:
        return QKV(*(np.concatenate([a, b], axis=0) for a, b in zip(
            (old.k, old.k_m, old.k_e, old.v, old.v_m, old.v_e),
            (new.k, new.k_m, new.k_e, new.v, new.v_m, new.v_e), strict=True)))

    def attention(self, q, kv: QKV, q_pos, k_pos, causal, key_mask) -> np.ndarray:
        """Integer attention per head (see docs/numerics.md for the derivation).

        scores = requant(q8 @ k8^T, A_q x A_k / (127^2 sqrt(D) 2^FRAC))     (wide)
        e      = exp(scores - max) over allowed keys, Q0.15; total = sum(e)
        P'_j   = round_shift(e_j * m_vj, sh_max - sh_vj)   (folds V's per-token scale)
        out    = requant(quant(P') @ v8, A_p x 2**sh_max / (127^2 total))  (wide)
        """
        t, n_heads, d = q.shape
        n_kv = kv.k.shape[1]
        group = n_heads // n_kv
        qq, qm, qe = ops.quantize_rows(q)  # [T, H, D], [T, H]
        allowed = np.ones((len(q_pos), len(k_pos)), dtype=bool)
        if causal:
            allowed &= np.asarray(k_pos)[None, :] <= np.asarray(q_pos)[:, None]
        if key_mask is not None:
            allowed &= np.asarray(key_mask, dtype=bool)[None, :]
        c_m, c_e = nx.scale_from_float(1.0 / (nx.QMAX * nx.QMAX * math.sqrt(d) * (1 << nx.FRAC)))
        p_m, p_e = nx.scale_from_float(1.0 / (nx.QMAX * nx.QMAX))
        out = np.zeros((t, n_heads, d), dtype=np.int32)
        for h in range(n_heads):
            g = h // group
            acc = ops.matmul(qq[:, h, :], np.ascontiguousarray(kv.k[:, g, :].T))  # [T, S]
            km, ke = ops.scale_mul(kv.k_m[:, g], kv.k_e[:, g], c_m, c_e)
            m, e = ops.scale_mul(qm[:, h, None], qe[:, h, None], km[None, :], ke[None, :])
            scores = ops.requantize(acc, m, e)
            ex, total = ops.softmax_exp(scores, allowed)
            vm, ve = kv.v_m[:, g], kv.v_e[:, g]
            sh_max = np.max(ve)
            p_prime = ops.round_shift(ex * vm[None, :], (sh_max - ve)[None, :])
            pq, pm, pe = ops.quantize_rows(p_prime)
            acc = ops.matmul(pq, np.ascontiguousarray(kv.v[:, g, :]))  # [T, D]
            rm, re = ops.reciprocal(total)
            rm, re = ops.scale_mul(rm, re, p_m, p_e)
            m, e = ops.scale_mul(pm, pe + sh_max, rm, re)
            out[:, h, :] = ops.requantize(acc, m[:, None], e[:, None])
        return out

    def add(self, a, b) -> np.ndarray:
        return ops.add(a, b)

    def mul(self, a, b) -> np.ndarray:
        return ops.mul(a, b)

    def gelu(self, x) -> np.ndarray:
        return ops.gelu(x)

    def silu(self, x) -> np.ndarray:
        return ops.silu(x)

    def to_float(self, x) -> np.ndarray:
        return ops.from_wide(x)
