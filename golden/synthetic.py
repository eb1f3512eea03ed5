"""Deterministic synthetic checkpoints in Hugging Face format.

The project needs models it can make itself: small enough to run on simulated hardware, shaped
like real checkpoints (GQA, odd widths, tied embeddings), and byte-identical on every run so that
golden-model and RTL results can be compared across machines and commits. The writers here produce
ordinary Hugging Face directories (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``tokenizer_config.json``) that ``transformers`` loads as they are.

Weights are random but scaled like trained models, so that activations stay healthy through the
layers (neither exploding nor vanishing) and integer quantisation meets realistic ranges:

- projections reading a normalised input: standard deviation ``1/sqrt(fan_in)`` (queries and keys
  1.5 times that, so attention is not uniform); Llama projections writing the residual stream:
  ``0.5/sqrt(fan_in)``; an untied LM head ``2/sqrt(hidden)`` (logits spread over a few units);
- norm gains ``1 + 0.1 N(0, 1)``, LayerNorm biases and linear biases ``N(0, 0.02)``;
- embeddings ``N(0, 0.05)`` (``1/sqrt(hidden)`` when tied to the LM head);
- outlier channels, as trained models have (the channels that make per-tensor int8 activation
  scales fail): in Llama a few embedding columns six times larger, in BERT a few channels with
  LayerNorm biases of +-2.

With these, hidden states keep a standard deviation of about 0.5-1.5 through the layers and peak
at 5-10 times that, close to what all-MiniLM-L6-v2 shows.

Tokenizers are built with the ``tokenizers`` library from a fixed built-in English text, with
the vocabulary padded by ``<unusedN>`` tokens to exactly ``vocab_size``: byte-level BPE for
Llama models with room for the 256 byte symbols (any text encodes), SentencePiece-style BPE with
``<unk>`` otherwise, both putting ``<s>`` first; a lower-casing WordPiece with ``[CLS] ... [SEP]``
for BERT. The BPE merges are learnt here rather than by the library's trainers, whose tie-breaking
varies from run to run.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GENERATOR_VERSION", "TINY_LLAMA", "tiny_llama", "write_bert", "write_llama"]

#: Bumped whenever the bytes the writers produce change, so cached models get regenerated.
GENERATOR_VERSION = "1"

#: The embedded default model ``tiny-llama``: small enough for simulated hardware, with GQA.
TINY_LLAMA: dict[str, Any] = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=172,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    max_positions=128,
    rope_theta=10000.0,
    tie_word_embeddings=False,
    seed=0,
)

# Training text for the tokenizers: plain English with punctuation and digits, written for this
# project. Changing it changes every synthetic tokenizer (bump GENERATOR_VERSION).
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A small processor reads its program from memory,
fetches one instruction after another, and keeps the matrix engine busy while the next tile is
loaded. Every number that leaves the accumulator is rounded, scaled and saturated before it is
stored again, and the golden model says exactly how.
Once upon a time there was a little river that ran through a quiet valley. In the morning the
water was cold and clear; in the evening it carried the colours of the sky. Children came to the
bank to throw stones, to count the fish and to watch the boats go by. Their parents told them
stories about the old mill, the bridge of seven arches and the miller who could read the weather.
Language models turn text into tokens, tokens into vectors, and vectors into new tokens. Each layer
mixes information between positions with attention, then transforms every position on its own
with a feed-forward network. Normalisation keeps the numbers in range; residual connections keep
the signal from fading away. Training adjusts millions of weights until the predictions improve.
She opened the window, looked at the garden and smiled: the roses were in bloom, the apple tree was
heavy with fruit, and the cat was asleep in the sun. "What a beautiful day," she said. "Let us walk
to the market, buy bread and cheese, and eat our lunch by the river."
Numbers matter too: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64, 128, 256, 512 and 1024 appear
in every design. Eight bits hold values from -128 to 127; thirty-two bits hold the sums. A clock
of 100 MHz ticks one hundred million times per second, and a good schedule wastes few of them.
Why do birds sing at dawn? Some say they call to their neighbours, some say they defend their
homes, and some say they simply enjoy the first light. Whatever the reason, the forest is never
silent for long. Wind moves through the leaves, rain falls on the roof, and the world keeps talking.
Questions, answers, lists and tables: we write them all. Can you explain how the system works? Yes!
First, the host writes the address of the program; second, it rings the doorbell; third, it waits
for the interrupt. If something goes wrong, the core stops cleanly and reports an error code.
"""

_LLAMA_SPECIALS = ["<unk>", "<s>", "</s>"]
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _corpus_lines() -> list[str]:
    return _CORPUS.splitlines()


def _pad_vocab(tokenizer: Any, vocab_size: int) -> Any:
    """Make the tokenizer's vocabulary exactly ``vocab_size`` entries long."""
    from tokenizers import AddedToken

    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if size < vocab_size:
        tokenizer.add_special_tokens(
            [AddedToken(f"<unused{i}>", special=True) for i in range(vocab_size - size)]
        )
    assert tokenizer.get_vocab_size(with_added_tokens=True) == vocab_size
    return tokenizer


def _frequent(counts: Counter[str], n: int) -> list[str]:
    """The ``n`` most frequent keys, ties broken by the key itself (never by hash order)."""
    return sorted(counts, key=lambda key: (-counts[key], key))[:n]


def _train_bpe(
    words: Counter[tuple[str, ...]], vocab: dict[str, int], vocab_size: int
) -> list[tuple[str, str]]:
    """Learn BPE merges until ``vocab`` has ``vocab_size`` entries (or nothing is left to merge).

    The ``tokenizers`` trainers break ties between equally frequent pairs in hash order, which
    changes from run to run; this plain loop breaks them by the pair's text, so the merges (and
    the written tokenizer.json) are the same on every run and every machine.
    """
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merged = best[0] + best[1]
        merges.append(best)
        vocab.setdefault(merged, len(vocab))
        updated: Counter[tuple[str, ...]] = Counter()
        for word, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            updated[tuple(out)] += count
        words = updated
    return merges


def _llama_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    if vocab_size < len(_LLAMA_SPECIALS) + 1:
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room beside the special tokens {_LLAMA_SPECIALS}"
        )
    vocab = {token: i for i, token in enumerate(_LLAMA_SPECIALS)}
    words: Counter[tuple[str, ...]] = Counter()
    if vocab_size >= 256 + len(_LLAMA_SPECIALS) + 16:
        # Byte-level BPE, as GPT-2 and Llama 3: every byte has a symbol, so any text encodes.
        pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
            vocab[symbol] = len(vocab)
        for line in _corpus_lines():
            for word, _ in pre_tokenizer.pre_tokenize_str(line):
                words[tuple(word)] += 1
        model = models.BPE(vocab=vocab, merges=_train_bpe(words, vocab, vocab_size))
        decoder = decoders.ByteLevel()
    else:
        # Too few entries for all 256 bytes: SentencePiece-style pieces over the corpus's most
        # frequent characters; any other character becomes <unk>.
        pre_tokenizer = pre_tokenizers.Metaspace()
        pieces = [word for line in _corpus_lines() for word, _ in pre_tokenizer.pre_tokenize_str(line)]
        alphabet = set(_frequent(Counter("".join(pieces)), vocab_size - len(vocab)))
        for symbol in sorted(alphabet):
            vocab[symbol] = len(vocab)
        for piece in pieces:
            # Train on the runs of known characters only.
            for run in re.split(f"[^{re.escape(''.join(sorted(alphabet)))}]+", piece):
                if run:
                    words[tuple(run)] += 1
        model = models.BPE(vocab=vocab, merges=_train_bpe(words, vocab, vocab_size), unk_token="<unk>")
        decoder = decoders.Metaspace()
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoder
    tokenizer.add_special_tokens(_LLAMA_SPECIALS)
    # Llama tokenizers put <s> in front of every sequence.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return _pad_vocab(tokenizer, vocab_size)


def _bert_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if vocab_size < len(_BERT_SPECIALS) + 2:
        raise ValueError(f"vocab_size={vocab_size} leaves no room beside the special tokens {_BERT_SPECIALS}")
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter(
        word
        for line in _corpus_lines()
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))
    )
    # WordPiece vocabulary: characters and their ##continuations (so every word over the
    # alphabet encodes), then whole words by frequency.
    vocab = {token: i for i, token in enumerate(_BERT_SPECIALS)}
    chars: Counter[str] = Counter()
    for word, count in words.items():
        for char in word:
            chars[char] += count
    alphabet = sorted(_frequent(chars, (vocab_size - len(vocab)) // 2))
    for token in alphabet + ["##" + char for char in alphabet]:
        vocab[token] = len(vocab)
    for word in _frequent(Counter({w: c for w, c in words.items() if len(w) > 1}), vocab_size - len(vocab)):
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(_BERT_SPECIALS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return _pad_vocab(tokenizer, vocab_size)


def _write_json(file: Path, obj: Any) -> None:
    file.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_directory(
    path: Path | str,
    config: dict[str, Any],
    tensors: dict[str, np.ndarray],
    tokenizer: Any | None,
    tokenizer_config: dict[str, Any],
) -> Path:
    from safetensors.numpy import save_file

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(directory / "config.json", config)
    tensors = {name: np.ascontiguousarray(t, dtype=np.float32) for name, t in tensors.items()}
    # transformers refuses safetensors files without a recognised "format" entry.
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "model.safetensors").chmod(0o644)  # safetensors creates it owner-only
    if tokenizer is not None:
        tokenizer.save(str(directory / "tokenizer.json"), pretty=True)
        _write_json(directory / "tokenizer_config.json", tokenizer_config)
    return directory


class _Init:
    """Seeded initialiser; tensors are drawn in a fixed order, so equal calls give equal bytes."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def normal(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        return (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def gain(self, n: int) -> np.ndarray:
        return (1.0 + self.normal((n,), 0.1)).astype(np.float32)

    def linear_in(self, out: int, fan_in: int, scale: float = 1.0) -> np.ndarray:
        """A projection that reads a normalised input."""
        return self.normal((out, fan_in), scale / np.sqrt(fan_in))

    def linear_out(self, out: int, fan_in: int) -> np.ndarray:
        """A projection whose output is added to the residual stream."""
        return self.normal((out, fan_in), 0.5 / np.sqrt(fan_in))

    def outlier_channels(self, hidden: int) -> np.ndarray:
        count = max(1, hidden // 32)
        return np.sort(self.rng.choice(hidden, size=count, replace=False))

    def embedding(self, rows: int, hidden: int, outliers: np.ndarray, std: float = 0.05) -> np.ndarray:
        table = self.normal((rows, hidden), std)
        table[:, outliers] *= np.float32(6.0)
        return table


def write_llama(
    path: Path | str,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    intermediate_size: int = 172,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    head_dim: int | None = None,
    max_positions: int = 128,
    rope_theta: float = 10000.0,
    tie_word_embeddings: bool = False,
    attention_bias: bool = False,
    mlp_bias: bool = False,
    rms_norm_eps: float = 1e-5,
    seed: int = 0,
    tokenizer: bool = True,
) -> Path:
    """Write a seeded random ``LlamaForCausalLM`` checkpoint directory.

    Parameters
    ----------
    path : Path or str
        Directory to create (or overwrite files in).
    vocab_size, hidden_size, intermediate_size, num_layers, num_heads : int
        Model dimensions.
    num_kv_heads : int, optional
        Key/value heads (grouped-query attention when fewer than ``num_heads``); default
        ``num_heads``.
    head_dim : int, optional
        Width of one head; default ``hidden_size // num_heads`` (then written to the config
        explicitly either way).
    max_positions : int
        ``max_position_embeddings``.
    rope_theta : float
        RoPE base.
    tie_word_embeddings : bool
        Share the embedding matrix with the LM head (no ``lm_head.weight`` is written).
    attention_bias, mlp_bias : bool
        Give the projections biases.
    rms_norm_eps : float
        RMSNorm epsilon.
    seed : int
        Seed of the weights; the tokenizer does not depend on it.
    tokenizer : bool
        Also write ``tokenizer.json`` and ``tokenizer_config.json``.

    Returns
    -------
    Path
        The directory.
    """
    num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    if head_dim is None:
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}; give head_dim"
            )
        head_dim = hidden_size // num_heads
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads={num_heads} is not divisible by num_kv_heads={num_kv_heads}")
    if head_dim % 2:
        raise ValueError(f"head_dim={head_dim} must be even for RoPE")
    H, I, V = hidden_size, intermediate_size, vocab_size
    q_out, kv_out = num_heads * head_dim, num_kv_heads * head_dim

    init = _Init(seed)
    outliers = init.outlier_channels(H)
    # A tied table doubles as the LM head, so it needs the head's scale (logits of a few units).
    embed_std = 1.0 / np.sqrt(H) if tie_word_embeddings else 0.05
    tensors: dict[str, np.ndarray] = {"model.embed_tokens.weight": init.embedding(V, H, outliers, embed_std)}
    for n in range(num_layers):
        p = f"model.layers.{n}."
        tensors[p + "input_layernorm.weight"] = init.gain(H)
        tensors[p + "self_attn.q_proj.weight"] = init.linear_in(q_out, H, scale=1.5)
        tensors[p + "self_attn.k_proj.weight"] = init.linear_in(kv_out, H, scale=1.5)
        tensors[p + "self_attn.v_proj.weight"] = init.linear_in(kv_out, H)
        tensors[p + "self_attn.o_proj.weight"] = init.linear_out(H, q_out)
        if attention_bias:
            for proj, width in (("q", q_out), ("k", kv_out), ("v", kv_out), ("o", H)):
                tensors[p + f"self_attn.{proj}_proj.bias"] = init.normal((width,), 0.02)
        tensors[p + "post_attention_layernorm.weight"] = init.gain(H)
        tensors[p + "mlp.gate_proj.weight"] = init.linear_in(I, H)
        tensors[p + "mlp.up_proj.weight"] = init.linear_in(I, H)
        tensors[p + "mlp.down_proj.weight"] = init.linear_out(H, I)
        if mlp_bias:
            for proj, width in (("gate", I), ("up", I), ("down", H)):
                tensors[p + f"mlp.{proj}_proj.bias"] = init.normal((width,), 0.02)
    tensors["model.norm.weight"] = init.gain(H)
    if not tie_word_embeddings:
        # Logit spread of a few units, like a trained LM head on normalised states.
        tensors["lm_head.weight"] = init.normal((V, H), 2.0 / np.sqrt(H))

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": V,
        "hidden_size": H,
        "intermediate_size": I,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": max_positions,
        "rms_norm_eps": rms_norm_eps,
        "rope_theta": float(rope_theta),
        "rope_scaling": None,
        "tie_word_embeddings": tie_word_embeddings,
        "attention_bias": attention_bias,
        "attention_dropout": 0.0,
        "mlp_bias": mlp_bias,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": None,
        "torch_dtype": "float32",
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "model_max_length": max_positions,
        "clean_up_tokenization_spaces": False,
    }
    return _write_directory(
        path, config, tensors, _llama_tokenizer(V) if tokenizer else None, tokenizer_config
    )


def write_bert(
    path: Path | str,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    intermediate_size: int = 256,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 128,
    type_vocab_size: int = 2,
    layer_norm_eps: float = 1e-12,
    seed: int = 0,
    tokenizer: bool = True,
) -> Path:
    """Write a seeded random ``BertModel`` checkpoint directory (encoder only, no pooler).

    Parameters
    ----------
    path : Path or str
        Directory to create (or overwrite files in).
    vocab_size, hidden_size, intermediate_size, num_layers, num_heads : int
        Model dimensions; ``hidden_size`` must be divisible by ``num_heads``.
    max_positions : int
        ``max_position_embeddings``.
    type_vocab_size : int
        Token-type embedding rows.
    layer_norm_eps : float
        LayerNorm epsilon.
    seed : int
        Seed of the weights; the tokenizer does not depend on it.
    tokenizer : bool
        Also write ``tokenizer.json`` and ``tokenizer_config.json``.

    Returns
    -------
    Path
        The directory.
    """
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
    H, I = hidden_size, intermediate_size
    init = _Init(seed)
    outliers = init.outlier_channels(H)
    outlier_sign = np.where(np.arange(outliers.size) % 2 == 0, 1.0, -1.0).astype(np.float32)

    def layer_norm(prefix: str) -> None:
        # Trained BERTs have a few channels with large LayerNorm biases (MiniLM's hidden states
        # reach 10-17 times their standard deviation there). Large gains instead would compound
        # from one LayerNorm to the next.
        gain = init.gain(H)
        bias = init.normal((H,), 0.02)
        bias[outliers] += outlier_sign * np.float32(2.0)
        tensors[prefix + ".weight"] = gain
        tensors[prefix + ".bias"] = bias

    def linear(prefix: str, weight: np.ndarray) -> None:
        tensors[prefix + ".weight"] = weight
        tensors[prefix + ".bias"] = init.normal((weight.shape[0],), 0.02)

    tensors: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": init.normal((vocab_size, H), 0.05),
        "embeddings.position_embeddings.weight": init.normal((max_positions, H), 0.02),
        "embeddings.token_type_embeddings.weight": init.normal((type_vocab_size, H), 0.02),
    }
    layer_norm("embeddings.LayerNorm")
    for n in range(num_layers):
        p = f"encoder.layer.{n}."
        linear(p + "attention.self.query", init.linear_in(H, H, scale=1.5))
        linear(p + "attention.self.key", init.linear_in(H, H, scale=1.5))
        linear(p + "attention.self.value", init.linear_in(H, H))
        linear(p + "attention.output.dense", init.linear_in(H, H))
        layer_norm(p + "attention.output.LayerNorm")
        linear(p + "intermediate.dense", init.linear_in(I, H))
        linear(p + "output.dense", init.linear_in(H, I))
        layer_norm(p + "output.LayerNorm")

    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": H,
        "intermediate_size": I,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "hidden_act": "gelu",
        "max_position_embeddings": max_positions,
        "type_vocab_size": type_vocab_size,
        "layer_norm_eps": layer_norm_eps,
        "position_embedding_type": "absolute",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": 0,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "[UNK]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
        "do_lower_case": True,
        "model_max_length": max_positions,
        "clean_up_tokenization_spaces": False,
    }
    return _write_directory(
        path, config, tensors, _bert_tokenizer(vocab_size) if tokenizer else None, tokenizer_config
    )


def tiny_llama(path: Path | str) -> Path:
    """Write the embedded default model ``tiny-llama`` (see :data:`TINY_LLAMA`) to ``path``."""
    return write_llama(path, **TINY_LLAMA)
