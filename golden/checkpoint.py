"""Load Hugging Face checkpoints (Llama decoders, BERT encoders) into float32 numpy arrays.

A checkpoint is a directory with ``config.json``, ``model.safetensors`` (or a sharded
``model.safetensors.index.json``) and optionally ``tokenizer.json``. Everything read from it is
validated here, once: the configuration against what the model description supports, every tensor
against the shape the configuration implies. Any problem raises :class:`CheckpointError` with a
one-line message naming the file, the key or tensor, and what was expected; callers (the CLI) print
that line and exit, so no other exception type escapes for bad input.

Weights keep the Hugging Face layout: a linear layer's weight is ``[out_features, in_features]``,
so ``y = x @ w.T + b``. All arrays are float32 and read-only.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "BertLayer",
    "BertWeights",
    "Checkpoint",
    "CheckpointError",
    "LlamaLayer",
    "LlamaWeights",
    "ModelConfig",
    "load_checkpoint",
    "parse_config",
]


class CheckpointError(Exception):
    """A checkpoint cannot be used; the message is one line naming the problem."""


#: Hugging Face ``architectures`` entries we accept, and the model family each one maps to. BERT
#: task heads are accepted by loading only the encoder weights.
SUPPORTED_ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "BertModel": "bert",
    "BertForMaskedLM": "bert",
    "BertForPreTraining": "bert",
    "BertForSequenceClassification": "bert",
    "BertForTokenClassification": "bert",
    "BertForQuestionAnswering": "bert",
    "BertForMultipleChoice": "bert",
    "BertForNextSentencePrediction": "bert",
}

_MODEL_TYPES = {"llama": "llama", "bert": "bert"}

# Safetensors dtypes that convert to float32 without loss of meaning (F64 rounds, which is what
# `torch_dtype=float32` loading does too).
_FLOAT_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


@dataclass(frozen=True)
class ModelConfig:
    """The parts of a Hugging Face ``config.json`` the model description uses.

    Attributes
    ----------
    arch : str
        ``"llama"`` or ``"bert"``.
    vocab_size, hidden_size, intermediate_size, num_layers : int
        Embedding rows, residual width, MLP width, transformer blocks.
    num_heads, num_kv_heads, head_dim : int
        Query heads, key/value heads (grouped-query attention when fewer), width of one head.
    max_positions : int
        Longest sequence the model accepts (``max_position_embeddings``).
    norm_eps : float
        ``rms_norm_eps`` (llama) or ``layer_norm_eps`` (bert).
    rope_theta : float
        RoPE base (llama); 0.0 for bert.
    tie_word_embeddings : bool
        The LM head shares the embedding matrix.
    type_vocab_size : int
        Token-type embedding rows (bert); 0 for llama.
    hidden_act : str
        ``"silu"`` (llama) or ``"gelu"`` (bert, the exact erf form).
    pad_token_id, bos_token_id, eos_token_id : int or None
        Special token ids (the first one when the config lists several eos ids).
    attention_bias, mlp_bias : bool
        Llama projections carry biases.
    """

    arch: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_positions: int
    norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    type_vocab_size: int
    hidden_act: str
    pad_token_id: int | None
    bos_token_id: int | None
    eos_token_id: int | None
    attention_bias: bool = False
    mlp_bias: bool = False


@dataclass
class LlamaLayer:
    """One Llama decoder block (weights ``[out, in]``; biases ``None`` unless configured)."""

    attn_norm: np.ndarray
    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    mlp_norm: np.ndarray
    w_gate: np.ndarray
    w_up: np.ndarray
    w_down: np.ndarray
    bq: np.ndarray | None = None
    bk: np.ndarray | None = None
    bv: np.ndarray | None = None
    bo: np.ndarray | None = None
    b_gate: np.ndarray | None = None
    b_up: np.ndarray | None = None
    b_down: np.ndarray | None = None


@dataclass
class LlamaWeights:
    """All Llama weights; ``lm_head is embed`` when the embeddings are tied."""

    embed: np.ndarray
    layers: list[LlamaLayer]
    final_norm: np.ndarray
    lm_head: np.ndarray


@dataclass
class BertLayer:
    """One BERT encoder block (post-LayerNorm)."""

    wq: np.ndarray
    bq: np.ndarray
    wk: np.ndarray
    bk: np.ndarray
    wv: np.ndarray
    bv: np.ndarray
    wo: np.ndarray
    bo: np.ndarray
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    w_in: np.ndarray
    b_in: np.ndarray
    w_out: np.ndarray
    b_out: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray


@dataclass
class BertWeights:
    """BERT embeddings and encoder weights (task heads and the pooler are not loaded)."""

    word: np.ndarray
    position: np.ndarray
    token_type: np.ndarray
    emb_ln_g: np.ndarray
    emb_ln_b: np.ndarray
    layers: list[BertLayer]


@dataclass
class Checkpoint:
    """A validated checkpoint: configuration, float32 weights and (optionally) its tokenizer."""

    path: Path
    config: ModelConfig
    weights: LlamaWeights | BertWeights
    tokenizer: Any | None = field(default=None, repr=False)  # tokenizers.Tokenizer
    name: str = ""

    def encode(self, text: str) -> np.ndarray:
        """Tokenize ``text`` with the checkpoint's tokenizer (special tokens included).

        Parameters
        ----------
        text : str
            Input text.

        Returns
        -------
        numpy.ndarray
            int64 token ids ``[seq]``, checked with :meth:`check_ids`.

        Raises
        ------
        CheckpointError
            The checkpoint has no ``tokenizer.json``, or the ids do not fit the model.
        """
        if self.tokenizer is None:
            raise CheckpointError(
                f"{self.path}: no tokenizer.json, so text cannot be encoded; pass token ids"
            )
        ids = np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64)
        return self.check_ids(ids)

    def check_ids(self, ids: Any) -> np.ndarray:
        """Check that token ids are a usable input for this model.

        Parameters
        ----------
        ids : array_like of int
            One sequence of token ids.

        Returns
        -------
        numpy.ndarray
            The ids as int64 ``[seq]``.

        Raises
        ------
        CheckpointError
            Not a 1-D integer sequence, empty, an id outside ``[0, vocab_size)``, or longer than
            ``max_positions``.
        """
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise CheckpointError(f"token ids must be one sequence (1-D), got shape {list(arr.shape)}")
        if arr.size == 0:
            raise CheckpointError("token ids are empty: the model needs at least one token")
        if not np.issubdtype(arr.dtype, np.integer):
            raise CheckpointError(f"token ids must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        cfg = self.config
        bad = np.flatnonzero((arr < 0) | (arr >= cfg.vocab_size))
        if bad.size:
            i = int(bad[0])
            raise CheckpointError(
                f"token id {int(arr[i])} at position {i} is outside the vocabulary [0, {cfg.vocab_size}) "
                f"of {self.name or self.path}"
            )
        if arr.size > cfg.max_positions:
            raise CheckpointError(
                f"sequence of {arr.size} tokens is longer than max_positions={cfg.max_positions} "
                f"of {self.name or self.path}"
            )
        return arr


# --------------------------------------------------------------------------------------------------
# config.json


_REQUIRED = object()


class _ConfigReader:
    """Typed access to a config dict; every problem becomes a one-line CheckpointError."""

    def __init__(self, raw: dict[str, Any], file: Path) -> None:
        self.raw = raw
        self.file = file

    def fail(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.file}: {message}")

    def _get(self, key: str, default: Any) -> Any:
        if key in self.raw and self.raw[key] is not None:
            return self.raw[key]
        if default is _REQUIRED:
            raise self.fail(f"missing key '{key}'")
        return default

    def integer(self, key: str, default: Any = _REQUIRED, minimum: int = 1) -> int:
        value = self._get(key, default)
        # bool is an int subclass in Python, and `true` for a size is a broken config.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"'{key}' must be an integer, got {json.dumps(value)}")
        if value < minimum:
            raise self.fail(f"'{key}' must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: Any = _REQUIRED, positive: bool = True) -> float:
        value = self._get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.fail(f"'{key}' must be a number, got {json.dumps(value)}")
        value = float(value)
        if not np.isfinite(value) or (positive and value <= 0):
            raise self.fail(f"'{key}' must be a positive finite number, got {value}")
        return value

    def flag(self, key: str, default: Any = _REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"'{key}' must be true or false, got {json.dumps(value)}")
        return value

    def text(self, key: str, default: Any = _REQUIRED) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.fail(f"'{key}' must be a string, got {json.dumps(value)}")
        return value

    def token_id(self, key: str, default: int | None) -> int | None:
        value = self.raw.get(key, default)
        if isinstance(value, list):
            # Llama 3 style configs list several eos ids; the first is the canonical one.
            if not value:
                return None
            value = value[0]
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(f"'{key}' must be a non-negative integer or null, got {json.dumps(value)}")
        return value


def _architecture(reader: _ConfigReader) -> str:
    supported = ", ".join(SUPPORTED_ARCHITECTURES)
    architectures = reader.raw.get("architectures")
    if architectures is None:
        model_type = reader.raw.get("model_type")
        if model_type in _MODEL_TYPES:
            return _MODEL_TYPES[model_type]
        raise reader.fail(
            f"no 'architectures' and unsupported model_type {json.dumps(model_type)}; "
            f"supported: {supported} (or model_type llama/bert)"
        )
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise reader.fail(f"'architectures' must be a list of strings, got {json.dumps(architectures)}")
    for name in architectures:
        if name in SUPPORTED_ARCHITECTURES:
            return SUPPORTED_ARCHITECTURES[name]
    shown = ", ".join(architectures) or "(empty list)"
    raise reader.fail(f"unsupported architecture {shown}; supported: {supported}")


def _rope_theta(reader: _ConfigReader) -> float:
    """RoPE base, accepting both the classic ``rope_theta`` key and transformers 5 ``rope_parameters``."""
    params = None
    for key in ("rope_parameters", "rope_scaling"):
        value = reader.raw.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise reader.fail(f"'{key}' must be an object or null, got {json.dumps(value)}")
        rope_type = value.get("rope_type", value.get("type", "default"))
        if rope_type != "default":
            raise reader.fail(
                f"'{key}' selects RoPE scaling {json.dumps(rope_type)}; only plain RoPE is supported"
            )
        partial = value.get("partial_rotary_factor", 1.0)
        if partial != 1.0:
            raise reader.fail(f"'{key}.partial_rotary_factor' = {partial} is not supported (only 1.0)")
        params = value if params is None else params
    if reader.raw.get("partial_rotary_factor", 1.0) not in (1.0, None):
        raise reader.fail("'partial_rotary_factor' other than 1.0 is not supported")
    if params is not None and params.get("rope_theta") is not None:
        return _ConfigReader(params, reader.file).number("rope_theta")
    return reader.number("rope_theta", 10000.0)


def _parse_llama(reader: _ConfigReader) -> ModelConfig:
    act = reader.text("hidden_act", "silu")
    if act != "silu":
        raise reader.fail(f'hidden_act {json.dumps(act)} is not supported for llama (only "silu")')
    hidden = reader.integer("hidden_size")
    heads = reader.integer("num_attention_heads")
    kv_heads = reader.integer("num_key_value_heads", heads)
    if "head_dim" in reader.raw and reader.raw["head_dim"] is not None:
        head_dim = reader.integer("head_dim")
    else:
        if hidden % heads:
            raise reader.fail(f"hidden_size {hidden} is not divisible by num_attention_heads {heads}")
        head_dim = hidden // heads
    if heads % kv_heads:
        raise reader.fail(f"num_attention_heads {heads} is not divisible by num_key_value_heads {kv_heads}")
    if head_dim % 2:
        raise reader.fail(f"head_dim {head_dim} is odd; RoPE rotates pairs of dimensions")
    if reader.raw.get("sliding_window") is not None:
        raise reader.fail("'sliding_window' attention is not supported")
    return ModelConfig(
        arch="llama",
        vocab_size=reader.integer("vocab_size"),
        hidden_size=hidden,
        intermediate_size=reader.integer("intermediate_size"),
        num_layers=reader.integer("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        max_positions=reader.integer("max_position_embeddings", 2048),
        norm_eps=reader.number("rms_norm_eps", 1e-6),
        rope_theta=_rope_theta(reader),
        tie_word_embeddings=reader.flag("tie_word_embeddings", False),
        type_vocab_size=0,
        hidden_act="silu",
        pad_token_id=reader.token_id("pad_token_id", None),
        bos_token_id=reader.token_id("bos_token_id", 1),
        eos_token_id=reader.token_id("eos_token_id", 2),
        attention_bias=reader.flag("attention_bias", False),
        mlp_bias=reader.flag("mlp_bias", False),
    )


def _parse_bert(reader: _ConfigReader) -> ModelConfig:
    act = reader.text("hidden_act", "gelu")
    if act != "gelu":
        raise reader.fail(
            f'hidden_act {json.dumps(act)} is not supported for bert (only "gelu", the exact erf GELU)'
        )
    position_type = reader.text("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise reader.fail(
            f'position_embedding_type {json.dumps(position_type)} is not supported (only "absolute")'
        )
    if reader.flag("is_decoder", False):
        raise reader.fail("'is_decoder': true (causal BERT) is not supported; only the bidirectional encoder")
    hidden = reader.integer("hidden_size")
    heads = reader.integer("num_attention_heads")
    if hidden % heads:
        raise reader.fail(f"hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    return ModelConfig(
        arch="bert",
        vocab_size=reader.integer("vocab_size"),
        hidden_size=hidden,
        intermediate_size=reader.integer("intermediate_size"),
        num_layers=reader.integer("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        max_positions=reader.integer("max_position_embeddings", 512),
        norm_eps=reader.number("layer_norm_eps", 1e-12),
        rope_theta=0.0,
        tie_word_embeddings=reader.flag("tie_word_embeddings", True),
        type_vocab_size=reader.integer("type_vocab_size", 2),
        hidden_act="gelu",
        pad_token_id=reader.token_id("pad_token_id", 0),
        bos_token_id=reader.token_id("bos_token_id", None),
        eos_token_id=reader.token_id("eos_token_id", None),
    )


def parse_config(raw: Any, file: Path | str = "config.json") -> ModelConfig:
    """Validate a decoded ``config.json`` and reduce it to a :class:`ModelConfig`.

    Parameters
    ----------
    raw : dict
        The decoded JSON object.
    file : Path or str
        Where it came from, for error messages.

    Returns
    -------
    ModelConfig

    Raises
    ------
    CheckpointError
        Not an object, a key missing or of the wrong type, or an unsupported architecture or option.
    """
    file = Path(file)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{file}: must be a JSON object, got {type(raw).__name__}")
    reader = _ConfigReader(raw, file)
    arch = _architecture(reader)
    return _parse_llama(reader) if arch == "llama" else _parse_bert(reader)


# --------------------------------------------------------------------------------------------------
# model.safetensors


class _SafetensorsFile:
    """One safetensors file: header via ``safe_open``, tensors converted to float32."""

    def __init__(self, file: Path) -> None:
        from safetensors import SafetensorError, safe_open

        self.file = file
        try:
            self._handle = safe_open(str(file), framework="np")
            self.names = set(self._handle.keys())
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{file}: not a readable safetensors file ({_one_line(exc)})") from None
        self._raw_header: dict[str, Any] | None = None

    def dtype_and_shape(self, name: str) -> tuple[str, list[int]]:
        sl = self._handle.get_slice(name)
        return sl.get_dtype(), list(sl.get_shape())

    def read(self, name: str) -> np.ndarray:
        dtype, shape = self.dtype_and_shape(name)
        if dtype == "BF16":
            return self._read_bf16(name, shape)
        if dtype not in _FLOAT_DTYPES:
            raise CheckpointError(
                f"{self.file}: tensor '{name}' has dtype {dtype}, which does not convert to float32 "
                f"(supported: F32, F16, BF16, F64)"
            )
        try:
            arr = self._handle.get_tensor(name)
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt data
            raise CheckpointError(f"{self.file}: tensor '{name}' cannot be read ({_one_line(exc)})") from None
        return np.asarray(arr, dtype=np.float32)

    def _read_bf16(self, name: str, shape: list[int]) -> np.ndarray:
        # numpy has no bfloat16: read the raw little-endian 16-bit words and widen them, which is
        # exact (bfloat16 is the upper half of a float32).
        if self._raw_header is None:
            with open(self.file, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                self._raw_header = json.loads(f.read(length))
            self._data_start = 8 + length
        begin, end = self._raw_header[name]["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != 2 * count:
            raise CheckpointError(
                f"{self.file}: tensor '{name}' has {end - begin} bytes for {count} BF16 values"
            )
        words = np.fromfile(self.file, dtype="<u2", count=count, offset=self._data_start + begin)
        return (words.astype(np.uint32) << 16).view(np.float32).reshape(shape)


class _TensorSource:
    """All tensors of a checkpoint (single file or sharded), looked up by name, shape-checked."""

    def __init__(self, directory: Path) -> None:
        single = directory / "model.safetensors"
        index = directory / "model.safetensors.index.json"
        self.where: dict[str, _SafetensorsFile] = {}
        if single.is_file():
            shard = _SafetensorsFile(single)
            self.where = dict.fromkeys(shard.names, shard)
            self.description = str(single)
        elif index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index}: missing or malformed 'weight_map'")
            shards: dict[str, _SafetensorsFile] = {}
            for name, shard_name in weight_map.items():
                if not isinstance(shard_name, str) or "/" in shard_name or "\\" in shard_name:
                    raise CheckpointError(
                        f"{index}: bad shard file name {json.dumps(shard_name)} for '{name}'"
                    )
                if shard_name not in shards:
                    shard_file = directory / shard_name
                    if not shard_file.is_file():
                        raise CheckpointError(f"{index}: shard file {shard_name} does not exist")
                    shards[shard_name] = _SafetensorsFile(shard_file)
                if name not in shards[shard_name].names:
                    raise CheckpointError(
                        f"{directory / shard_name}: missing tensor '{name}' listed in {index.name}"
                    )
                self.where[name] = shards[shard_name]
            self.description = str(index)
        else:
            raise CheckpointError(f"{directory}: no model.safetensors (nor model.safetensors.index.json)")
        self.prefix = ""

    def has(self, name: str) -> bool:
        return self.prefix + name in self.where

    def get(self, name: str, shape: tuple[int, ...], why: str) -> np.ndarray:
        """Read tensor ``name`` as float32, checking that its shape is ``shape`` (``why`` explains it)."""
        full = self.prefix + name
        shard = self.where.get(full)
        if shard is None:
            raise CheckpointError(f"{self.description}: missing tensor '{full}'")
        _, actual = shard.dtype_and_shape(full)
        if tuple(actual) != tuple(shape):
            raise CheckpointError(
                f"{shard.file}: tensor '{full}' has shape {list(actual)}, expected {list(shape)} ({why})"
            )
        arr = shard.read(full)
        if not np.isfinite(arr).all():
            raise CheckpointError(f"{shard.file}: tensor '{full}' contains NaN or infinite values")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        arr.flags.writeable = False  # shared between users (and between embed and a tied lm_head)
        return arr


def _load_llama(src: _TensorSource, cfg: ModelConfig) -> LlamaWeights:
    H, I, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    q_out = cfg.num_heads * cfg.head_dim
    kv_out = cfg.num_kv_heads * cfg.head_dim
    h = f"hidden_size={H}"
    q = f"num_attention_heads*head_dim={cfg.num_heads}*{cfg.head_dim}"
    kv = f"num_key_value_heads*head_dim={cfg.num_kv_heads}*{cfg.head_dim}"
    i = f"intermediate_size={I}"
    layers = []
    for n in range(cfg.num_layers):
        p = f"model.layers.{n}."
        layer = LlamaLayer(
            attn_norm=src.get(p + "input_layernorm.weight", (H,), h),
            wq=src.get(p + "self_attn.q_proj.weight", (q_out, H), f"{q}, {h}"),
            wk=src.get(p + "self_attn.k_proj.weight", (kv_out, H), f"{kv}, {h}"),
            wv=src.get(p + "self_attn.v_proj.weight", (kv_out, H), f"{kv}, {h}"),
            wo=src.get(p + "self_attn.o_proj.weight", (H, q_out), f"{h}, {q}"),
            mlp_norm=src.get(p + "post_attention_layernorm.weight", (H,), h),
            w_gate=src.get(p + "mlp.gate_proj.weight", (I, H), f"{i}, {h}"),
            w_up=src.get(p + "mlp.up_proj.weight", (I, H), f"{i}, {h}"),
            w_down=src.get(p + "mlp.down_proj.weight", (H, I), f"{h}, {i}"),
        )
        if cfg.attention_bias:
            layer.bq = src.get(p + "self_attn.q_proj.bias", (q_out,), q)
            layer.bk = src.get(p + "self_attn.k_proj.bias", (kv_out,), kv)
            layer.bv = src.get(p + "self_attn.v_proj.bias", (kv_out,), kv)
            layer.bo = src.get(p + "self_attn.o_proj.bias", (H,), h)
        if cfg.mlp_bias:
            layer.b_gate = src.get(p + "mlp.gate_proj.bias", (I,), i)
            layer.b_up = src.get(p + "mlp.up_proj.bias", (I,), i)
            layer.b_down = src.get(p + "mlp.down_proj.bias", (H,), h)
        layers.append(layer)
    extra = f"model.layers.{cfg.num_layers}.input_layernorm.weight"
    if src.has(extra):
        raise CheckpointError(
            f"{src.description}: has tensor '{extra}' but num_hidden_layers={cfg.num_layers}"
        )
    embed = src.get("model.embed_tokens.weight", (V, H), f"vocab_size={V}, {h}")
    if cfg.tie_word_embeddings:
        lm_head = embed  # transformers ties them too, ignoring a stored lm_head.weight
    else:
        lm_head = src.get("lm_head.weight", (V, H), f"vocab_size={V}, {h}; tie_word_embeddings is false")
    return LlamaWeights(
        embed=embed,
        layers=layers,
        final_norm=src.get("model.norm.weight", (H,), h),
        lm_head=lm_head,
    )


def _load_bert(src: _TensorSource, cfg: ModelConfig) -> BertWeights:
    H, I = cfg.hidden_size, cfg.intermediate_size
    h = f"hidden_size={H}"
    i = f"intermediate_size={I}"
    if not src.has("embeddings.word_embeddings.weight") and any(k.startswith("bert.") for k in src.where):
        src.prefix = "bert."  # task-head checkpoints (BertForMaskedLM, ...) nest the encoder
    # Checkpoints from the TensorFlow era name LayerNorm parameters gamma/beta; transformers renames them.
    legacy = src.has("embeddings.LayerNorm.gamma") and not src.has("embeddings.LayerNorm.weight")
    g, b = ("gamma", "beta") if legacy else ("weight", "bias")

    def linear(prefix: str, out: int, inp: int, why: str) -> tuple[np.ndarray, np.ndarray]:
        return src.get(prefix + ".weight", (out, inp), why), src.get(prefix + ".bias", (out,), why)

    layers = []
    for n in range(cfg.num_layers):
        p = f"encoder.layer.{n}."
        wq, bq = linear(p + "attention.self.query", H, H, h)
        wk, bk = linear(p + "attention.self.key", H, H, h)
        wv, bv = linear(p + "attention.self.value", H, H, h)
        wo, bo = linear(p + "attention.output.dense", H, H, h)
        w_in, b_in = linear(p + "intermediate.dense", I, H, f"{i}, {h}")
        w_out, b_out = linear(p + "output.dense", H, I, f"{h}, {i}")
        layers.append(
            BertLayer(
                wq=wq, bq=bq, wk=wk, bk=bk, wv=wv, bv=bv, wo=wo, bo=bo,
                ln1_g=src.get(p + f"attention.output.LayerNorm.{g}", (H,), h),
                ln1_b=src.get(p + f"attention.output.LayerNorm.{b}", (H,), h),
                w_in=w_in, b_in=b_in, w_out=w_out, b_out=b_out,
                ln2_g=src.get(p + f"output.LayerNorm.{g}", (H,), h),
                ln2_b=src.get(p + f"output.LayerNorm.{b}", (H,), h),
            )
        )  # fmt: skip
    extra = f"encoder.layer.{cfg.num_layers}.output.dense.weight"
    if src.has(extra):
        raise CheckpointError(
            f"{src.description}: has tensor '{src.prefix}{extra}' but num_hidden_layers={cfg.num_layers}"
        )
    e = "embeddings."
    return BertWeights(
        word=src.get(e + "word_embeddings.weight", (cfg.vocab_size, H), f"vocab_size={cfg.vocab_size}, {h}"),
        position=src.get(
            e + "position_embeddings.weight",
            (cfg.max_positions, H),
            f"max_position_embeddings={cfg.max_positions}, {h}",
        ),
        token_type=src.get(
            e + "token_type_embeddings.weight",
            (cfg.type_vocab_size, H),
            f"type_vocab_size={cfg.type_vocab_size}, {h}",
        ),
        emb_ln_g=src.get(e + f"LayerNorm.{g}", (H,), h),
        emb_ln_b=src.get(e + f"LayerNorm.{b}", (H,), h),
        layers=layers,
    )


# --------------------------------------------------------------------------------------------------
# The directory


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _read_json(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot be read ({_one_line(exc)})") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{file}: is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{file}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def _load_tokenizer(file: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for bad files
        raise CheckpointError(f"{file}: not a valid tokenizers file ({_one_line(exc)})") from None
    # Whole sequences or an error: never pad, never truncate silently (check_ids reports length).
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def load_checkpoint(path: Path | str, *, name: str | None = None) -> Checkpoint:
    """Load and validate a Hugging Face checkpoint directory.

    Parameters
    ----------
    path : Path or str
        Directory holding ``config.json``, ``model.safetensors`` (or a sharded index) and optionally
        ``tokenizer.json``.
    name : str, optional
        Display name; defaults to the directory name.

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        Any problem with the directory, the configuration, the tensors or the tokenizer.
    """
    directory = Path(path)
    if not directory.exists():
        raise CheckpointError(f"{directory}: checkpoint directory does not exist")
    if not directory.is_dir():
        raise CheckpointError(
            f"{directory}: is not a directory (a checkpoint is a directory with config.json)"
        )
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{directory}: no config.json")
    config = parse_config(_read_json(config_file), config_file)
    source = _TensorSource(directory)
    weights = _load_llama(source, config) if config.arch == "llama" else _load_bert(source, config)
    tokenizer_file = directory / "tokenizer.json"
    tokenizer = _load_tokenizer(tokenizer_file) if tokenizer_file.is_file() else None
    return Checkpoint(
        path=directory,
        config=config,
        weights=weights,
        tokenizer=tokenizer,
        name=name or directory.resolve().name,
    )
