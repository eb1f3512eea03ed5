"""The ``float`` backend: numpy float32 with the semantics of the Hugging Face implementations.

Each operation follows the corresponding ``transformers`` code (LlamaRMSNorm, LlamaRotaryEmbedding
with ``rotate_half``, eager attention with a float32 softmax, BertSelfAttention, erf GELU) in
float32, so results agree with Hugging Face to float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

F32 = np.float32


@dataclass
class Linear:
    weight_t: np.ndarray  # [in, out]
    bias: np.ndarray | None


@dataclass
class Norm:
    gamma: np.ndarray
    beta: np.ndarray | None
    eps: float


@dataclass
class Rope:
    inv_freq: np.ndarray  # float32 [head_dim / 2]


class FloatOps:
    name = "float"

    def prepare_linear(self, weight, bias) -> Linear:
        return Linear(np.ascontiguousarray(weight.astype(F32).T), None if bias is None else bias.astype(F32))

    def prepare_norm(self, gamma, beta, eps) -> Norm:
        return Norm(gamma.astype(F32), None if beta is None else beta.astype(F32), float(eps))

    def prepare_embedding(self, table) -> np.ndarray:
        return table.astype(F32)

    def prepare_rope(self, head_dim: int, theta: float) -> Rope:
        # As transformers: the exponent is computed from an int64 arange cast to float32.
        exponent = np.arange(0, head_dim, 2, dtype=np.int64).astype(F32) / F32(head_dim)
        inv_freq = (F32(1.0) / (F32(theta) ** exponent)).astype(F32)
        return Rope(inv_freq)

    def embed(self, table, ids) -> np.ndarray:
        return table[np.asarray(ids)]

    def linear(self, x, layer: Linear) -> np.ndarray:
        y = x.astype(F32) @ layer.weight_t
        if layer.bias is not None:
            y = y + layer.bias
        return y.astype(F32)

    def rmsnorm(self, x, norm: Norm) -> np.ndarray:
        variance = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
        y = x * (F32(1.0) / np.sqrt(variance + F32(norm.eps)))
        return (norm.gamma * y.astype(F32)).astype(F32)

    def layernorm(self, x, norm: Norm) -> np.ndarray:
        mean = np.mean(x, axis=-1, keepdims=True, dtype=F32)
        centered = x - mean
        var = np.mean(centered * centered, axis=-1, keepdims=True, dtype=F32)
        y = centered / np.sqrt(var + F32(norm.eps))
        y = y * norm.gamma
        if norm.beta is not None:
            y = y + norm.beta
        return y.astype(F32)

    def rope(self, x, rope: Rope, positions) -> np.ndarray:
        freqs = np.asarray(positions, dtype=F32)[:, None] * rope.inv_freq[None, :]
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos = np.cos(emb).astype(F32)[:, None, :]
        sin = np.sin(emb).astype(F32)[:, None, :]
        half = x.shape[-1] // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return (x * cos + rotated * sin).astype(F32)

    def kv_store(self, k, v):
        return (k.astype(F32), v.astype(F32))

    def kv_concat(self, old, new):
        return (np.concatenate([old[0], new[0]], axis=0), np.concatenate([old[1], new[1]], axis=0))

    def attention(self, q, kv, q_pos, k_pos, causal, key_mask) -> np.ndarray:
        k, v = kv
        n_heads, n_kv = q.shape[1], k.shape[1]
        group = n_heads // n_kv
        k = np.repeat(k, group, axis=1)
        v = np.repeat(v, group, axis=1)
        scale = F32(q.shape[-1] ** -0.5)
        # [heads, T, S]
        scores = np.einsum("thd,shd->hts", q, k).astype(F32) * scale
        allowed = np.ones((len(q_pos), len(k_pos)), dtype=bool)
        if causal:
            allowed &= np.asarray(k_pos)[None, :] <= np.asarray(q_pos)[:, None]
        if key_mask is not None:
            allowed &= np.asarray(key_mask, dtype=bool)[None, :]
        scores = np.where(allowed[None], scores, F32(np.finfo(F32).min))
        scores = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p = (p / p.sum(axis=-1, keepdims=True)).astype(F32)
        out = np.einsum("hts,shd->thd", p, v)
        return out.astype(F32)

    def add(self, a, b) -> np.ndarray:
        return (a + b).astype(F32)

    def mul(self, a, b) -> np.ndarray:
        return (a * b).astype(F32)

    def gelu(self, x) -> np.ndarray:
        return (x * F32(0.5) * (F32(1.0) + erf(x / F32(np.sqrt(2.0))).astype(F32))).astype(F32)

    def silu(self, x) -> np.ndarray:
        return (x / (F32(1.0) + np.exp(-x))).astype(F32)

    def to_float(self, x) -> np.ndarray:
        return np.asarray(x, dtype=F32)
