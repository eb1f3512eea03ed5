"""The model description shared by every backend.

A transformer is written once here, against a small set of operations (:class:`Ops`): embed,
linear, norm, rope, attention, add, mul, activation. A backend supplies those operations and its
own tensor type: :class:`golden.float_ops.FloatOps` (numpy float32, Hugging Face semantics) and
:class:`golden.quant_ops.GoldenOps` (the integer arithmetic of the hardware). The RTL backend
compiles the same description to a program.

Architectures: Llama-family decoders (RMSNorm, RoPE, grouped-query attention, SwiGLU, tied or
untied LM head) and BERT encoders (absolute position and token-type embeddings, post-LayerNorm,
erf GELU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from golden.checkpoint import BertWeights, Checkpoint, LlamaWeights


class Ops(Protocol):
    """What a backend provides. ``T`` below is the backend's tensor type (float32 or wide int32
    array); shapes are ``[tokens, features]`` unless stated."""

    name: str

    def prepare_linear(self, weight: np.ndarray, bias: np.ndarray | None) -> Any: ...
    def prepare_norm(self, gamma: np.ndarray, beta: np.ndarray | None, eps: float) -> Any: ...
    def prepare_embedding(self, table: np.ndarray) -> Any: ...
    def prepare_rope(self, head_dim: int, theta: float) -> Any: ...

    def embed(self, table: Any, ids: np.ndarray) -> Any: ...
    def linear(self, x: Any, layer: Any) -> Any: ...
    def rmsnorm(self, x: Any, norm: Any) -> Any: ...
    def layernorm(self, x: Any, norm: Any) -> Any: ...
    def rope(self, x: Any, rope: Any, positions: np.ndarray) -> Any: ...
    def kv_store(self, k: Any, v: Any) -> Any: ...
    def kv_concat(self, old: Any, new: Any) -> Any: ...
    def attention(self, q: Any, kv: Any, q_pos: np.ndarray, k_pos: np.ndarray,
                  causal: bool, key_mask: np.ndarray | None) -> Any: ...
    def add(self, a: Any, b: Any) -> Any: ...
    def mul(self, a: Any, b: Any) -> Any: ...
    def gelu(self, x: Any) -> Any: ...
    def silu(self, x: Any) -> Any: ...
    def to_float(self, x: Any) -> np.ndarray: ...


@dataclass
class Outputs:
    """Final hidden states (dequantized float32), logits for causal LMs, pooled for encoders."""

    hidden: np.ndarray
    logits: np.ndarray | None = None
    pooled: np.ndarray | None = None


def _heads(x: np.ndarray, n: int) -> np.ndarray:
    return x.reshape(x.shape[0], n, -1)


def _merge(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1)


@dataclass
class KVCache:
    """Per-layer key/value storage in the backend's representation, and the positions held."""

    layers: list[Any]
    length: int = 0


@dataclass
class Llama:
    """A Llama-family decoder prepared for one backend."""

    ckpt: Checkpoint
    ops: Ops
    params: dict = field(init=False)

    def __post_init__(self) -> None:
        cfg, w, ops = self.ckpt.config, self.ckpt.weights, self.ops
        assert isinstance(w, LlamaWeights)
        eps = cfg.norm_eps
        self.params = {
            "embed": ops.prepare_embedding(w.embed),
            "rope": ops.prepare_rope(cfg.head_dim, cfg.rope_theta),
            "layers": [
                {
                    "attn_norm": ops.prepare_norm(lw.attn_norm, None, eps),
                    "q": ops.prepare_linear(lw.wq, lw.bq),
                    "k": ops.prepare_linear(lw.wk, lw.bk),
                    "v": ops.prepare_linear(lw.wv, lw.bv),
                    "o": ops.prepare_linear(lw.wo, lw.bo),
                    "mlp_norm": ops.prepare_norm(lw.mlp_norm, None, eps),
                    "gate": ops.prepare_linear(lw.w_gate, lw.b_gate),
                    "up": ops.prepare_linear(lw.w_up, lw.b_up),
                    "down": ops.prepare_linear(lw.w_down, lw.b_down),
                }
                for lw in w.layers
            ],
            "final_norm": ops.prepare_norm(w.final_norm, None, eps),
            "lm_head": ops.prepare_linear(w.lm_head, None),
        }

    def new_cache(self) -> KVCache:
        return KVCache([None] * self.ckpt.config.num_layers)

    def forward(self, ids: np.ndarray, cache: KVCache) -> Outputs:
        """Run ``ids`` (the next tokens after those in ``cache``) and extend the cache."""
        cfg, ops, p = self.ckpt.config, self.ops, self.params
        positions = np.arange(cache.length, cache.length + len(ids), dtype=np.int64)
        k_pos = np.arange(0, cache.length + len(ids), dtype=np.int64)
        x = ops.embed(p["embed"], ids)
        for i, lp in enumerate(p["layers"]):
            h = ops.rmsnorm(x, lp["attn_norm"])
            q = ops.rope(_heads(ops.linear(h, lp["q"]), cfg.num_heads), p["rope"], positions)
            k = ops.rope(_heads(ops.linear(h, lp["k"]), cfg.num_kv_heads), p["rope"], positions)
            v = _heads(ops.linear(h, lp["v"]), cfg.num_kv_heads)
            new = ops.kv_store(k, v)
            cache.layers[i] = new if cache.layers[i] is None else ops.kv_concat(cache.layers[i], new)
            a = ops.attention(q, cache.layers[i], positions, k_pos, causal=True, key_mask=None)
            x = ops.add(x, ops.linear(_merge(a), lp["o"]))
            h = ops.rmsnorm(x, lp["mlp_norm"])
            g = ops.silu(ops.linear(h, lp["gate"]))
            x = ops.add(x, ops.linear(ops.mul(g, ops.linear(h, lp["up"])), lp["down"]))
        cache.length += len(ids)
        h = ops.rmsnorm(x, p["final_norm"])
        logits = ops.linear(h, p["lm_head"])
        return Outputs(hidden=ops.to_float(h), logits=ops.to_float(logits))


@dataclass
class Bert:
    """A BERT encoder prepared for one backend."""

    ckpt: Checkpoint
    ops: Ops
    params: dict = field(init=False)

    def __post_init__(self) -> None:
        cfg, w, ops = self.ckpt.config, self.ckpt.weights, self.ops
        assert isinstance(w, BertWeights)
        eps = cfg.norm_eps
        self.params = {
            "word": ops.prepare_embedding(w.word),
            "position": ops.prepare_embedding(w.position),
            "token_type": ops.prepare_embedding(w.token_type),
            "emb_norm": ops.prepare_norm(w.emb_ln_g, w.emb_ln_b, eps),
            "layers": [
                {
                    "q": ops.prepare_linear(lw.wq, lw.bq),
                    "k": ops.prepare_linear(lw.wk, lw.bk),
                    "v": ops.prepare_linear(lw.wv, lw.bv),
                    "o": ops.prepare_linear(lw.wo, lw.bo),
                    "ln1": ops.prepare_norm(lw.ln1_g, lw.ln1_b, eps),
                    "in": ops.prepare_linear(lw.w_in, lw.b_in),
                    "out": ops.prepare_linear(lw.w_out, lw.b_out),
                    "ln2": ops.prepare_norm(lw.ln2_g, lw.ln2_b, eps),
                }
                for lw in w.layers
            ],
        }

    def forward(self, ids: np.ndarray, token_types: np.ndarray | None = None,
                attention_mask: np.ndarray | None = None) -> Outputs:
        cfg, ops, p = self.ckpt.config, self.ops, self.params
        positions = np.arange(len(ids), dtype=np.int64)
        types = np.zeros(len(ids), dtype=np.int64) if token_types is None else np.asarray(token_types)
        x = ops.add(ops.embed(p["word"], ids), ops.embed(p["token_type"], types))
        x = ops.add(x, ops.embed(p["position"], positions))
        x = ops.layernorm(x, p["emb_norm"])
        for lp in p["layers"]:
            q = _heads(ops.linear(x, lp["q"]), cfg.num_heads)
            k = _heads(ops.linear(x, lp["k"]), cfg.num_heads)
            v = _heads(ops.linear(x, lp["v"]), cfg.num_heads)
            kv = ops.kv_store(k, v)
            a = ops.attention(q, kv, positions, positions, causal=False, key_mask=attention_mask)
            x = ops.layernorm(ops.add(x, ops.linear(_merge(a), lp["o"])), lp["ln1"])
            h = ops.gelu(ops.linear(x, lp["in"]))
            x = ops.layernorm(ops.add(x, ops.linear(h, lp["out"])), lp["ln2"])
        hidden = ops.to_float(x)
        if attention_mask is None:
            pooled = hidden.mean(axis=0)
        else:
            keep = np.asarray(attention_mask, dtype=bool)
            pooled = hidden[keep].mean(axis=0)
        return Outputs(hidden=hidden, pooled=pooled.astype(np.float32))


BACKENDS = ("float", "golden")


def make_ops(backend: str) -> Ops:
    """The operation set of a software backend by name."""
    if backend == "float":
        from golden.float_ops import FloatOps

        return FloatOps()
    if backend == "golden":
        from golden.quant_ops import GoldenOps

        return GoldenOps()
    raise ValueError(f"unknown backend {backend!r}; software backends are {', '.join(BACKENDS)}")


def build_model(ckpt: Checkpoint, backend: str) -> Llama | Bert:
    ops = make_ops(backend)
    if ckpt.config.arch == "llama":
        return Llama(ckpt, ops)
    if ckpt.config.arch == "bert":
        return Bert(ckpt, ops)
    raise ValueError(f"unsupported architecture {ckpt.config.arch!r}")


def run_model(ckpt: Checkpoint, ids: np.ndarray, backend: str = "float",
              token_types: np.ndarray | None = None) -> Outputs:
    """One forward pass over ``ids`` (int64 [seq]) on a software backend."""
    ids = ckpt.check_ids(ids)
    model = build_model(ckpt, backend)
    if isinstance(model, Llama):
        return model.forward(ids, model.new_cache())
    return model.forward(ids, token_types)


def generate(ckpt: Checkpoint, ids: np.ndarray, n: int, backend: str = "float",
             model: Llama | None = None) -> tuple[np.ndarray, Outputs]:
    """Greedy generation of ``n`` tokens after ``ids`` with a KV cache.

    Returns the generated tokens (int64 [n]) and the outputs of the prompt's forward pass.
    """
    if ckpt.config.arch != "llama":
        raise ValueError(f"--generate needs a causal LM; {ckpt.name or ckpt.path} is {ckpt.config.arch}")
    ids = ckpt.check_ids(ids)
    if len(ids) + n > ckpt.config.max_positions:
        ckpt.check_ids(np.zeros(len(ids) + n, dtype=np.int64))  # raises: names the limit
    model = model or build_model(ckpt, backend)
    cache = model.new_cache()
    prompt_out = model.forward(ids, cache)
    tokens = []
    logits = prompt_out.logits
    for _ in range(n):
        token = int(np.argmax(logits[-1]))
        tokens.append(token)
        if len(tokens) == n:
            break
        logits = model.forward(np.array([token], dtype=np.int64), cache).logits
    return np.array(tokens, dtype=np.int64), prompt_out
