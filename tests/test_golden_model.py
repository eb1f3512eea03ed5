"""Whole-model checks of the golden backend: accuracy against float, KV-cache consistency."""

import numpy as np
import pytest

from golden.model import build_model, generate, run_model
from scoville import accuracy
from scoville.models import load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return accuracy.synthetic_checkpoints(tmp_path_factory.mktemp("synthetic"))


@pytest.mark.parametrize("length", [1, 2, 7, 16])
def test_tiny_llama_golden_tracks_float(tiny, length):
    r = accuracy.compare(tiny, accuracy.sample_ids(tiny.config.vocab_size, length, length), "tiny")
    assert r.hidden_cosine >= 0.99, r


@pytest.mark.parametrize("name", ["llama-odd-40x5h-1kv", "llama-gqa-tied-96x6h-2kv", "bert-odd-60x5h"])
@pytest.mark.parametrize("length", [1, 5, 16])
def test_odd_shapes_golden_tracks_float(synthetic, name, length):
    ckpt = synthetic[name]
    r = accuracy.compare(ckpt, accuracy.sample_ids(ckpt.config.vocab_size, length, 100 + length), name)
    assert r.hidden_cosine >= 0.99, r


def test_minilm_sentences_golden_tracks_float():
    minilm = load_model("minilm")
    results = [accuracy.compare(minilm, minilm.encode(s), s) for s in accuracy.SENTENCES]
    assert len(results) >= 6
    for r in results:
        assert r.hidden_cosine >= 0.99, r
        assert r.embedding_cosine >= 0.99, r


@pytest.mark.parametrize("backend", ["float", "golden"])
def test_kv_cache_decode_equals_full_forward(tiny, backend):
    """Decoding token by token with the cache gives the logits of one pass over the whole
    sequence: bit for bit on golden (every quantization is per token), to rounding on float."""
    ids = accuracy.sample_ids(tiny.config.vocab_size, 12, 7)
    full = run_model(tiny, ids, backend)
    model = build_model(tiny, backend)
    cache = model.new_cache()
    model.forward(ids[:5], cache)
    steps = [model.forward(ids[t:t + 1], cache).logits[0] for t in range(5, 12)]
    if backend == "golden":
        np.testing.assert_array_equal(np.stack(steps), full.logits[5:])
    else:
        np.testing.assert_allclose(np.stack(steps), full.logits[5:], atol=1e-5)


def test_greedy_generation_is_deterministic_and_uses_argmax(tiny):
    ids = tiny.encode("Once upon a time")
    tokens, prompt = generate(tiny, ids, 5, backend="golden")
    again, _ = generate(tiny, ids, 5, backend="golden")
    assert tokens.dtype == np.int64 and len(tokens) == 5
    np.testing.assert_array_equal(tokens, again)
    assert tokens[0] == int(np.argmax(prompt.logits[-1]))
    extended = run_model(tiny, np.concatenate([ids, tokens[:-1]]), "golden")
    assert tokens[-1] == int(np.argmax(extended.logits[-1]))


def test_bert_attention_mask_ignores_masked_tokens(synthetic):
    ckpt = synthetic["bert-odd-60x5h"]
    ids = accuracy.sample_ids(ckpt.config.vocab_size, 6, 1)
    model = build_model(ckpt, "golden")
    padded = np.concatenate([ids, [0, 0]])
    mask = np.array([1] * 6 + [0, 0])
    full = model.forward(ids)
    masked = model.forward(padded, attention_mask=mask)
    np.testing.assert_array_equal(masked.hidden[:6], full.hidden)
