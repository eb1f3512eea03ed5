"""Whole models on the generated Verilog of the single-core 8x8 chip (the ``rtl`` backend),
bit for bit against the ``golden`` backend: hidden states, logits, pooled embeddings and greedy
tokens decoded with the KV cache the chip keeps in DRAM."""

import numpy as np
import pytest

from compiler.rtl_runner import run_rtl
from golden.model import generate, run_model
from golden.synthetic import write_llama
from scoville.models import load_model


def assert_bit_exact(rtl, gold, tokens=None, gold_tokens=None):
    for name in ("hidden", "logits", "pooled"):
        mine, theirs = getattr(rtl.outputs, name), getattr(gold, name)
        if theirs is None:
            continue
        assert np.array_equal(mine, theirs), f"{name} differs at {np.argwhere(mine != theirs)[:3].tolist()}"
    if gold_tokens is not None:
        assert np.array_equal(tokens, gold_tokens), (tokens, gold_tokens)


def test_tiny_llama_prompt_and_decode():
    """tiny-llama: a 7-token prompt, then 3 greedy tokens, each a decode job on the chip's KV cache."""
    ckpt = load_model("tiny-llama")
    ids = np.array([1, 17, 300, 42, 99, 5, 250])
    rtl = run_rtl(ckpt, ids, generate=3)
    gold_tokens, gold = generate(ckpt, ids, 3, backend="golden")
    assert_bit_exact(rtl, gold, rtl.tokens, gold_tokens)
    assert len(rtl.cycles) == 3 and all(c > 0 for c in rtl.cycles)
    # the array's row counter and the matrix unit's busy counter are different counters
    assert all(0 < rows < units["matrix"]["busy"] for rows, units in zip(rtl.matrix_busy, rtl.unit_counters))


def test_odd_shapes_gqa_one_token(tmp_path):
    """A Llama with odd widths, grouped-query attention and tied embeddings, on one token and on 13."""
    path = write_llama(tmp_path / "odd", vocab_size=101, hidden_size=40, intermediate_size=77, num_layers=2,
                       num_heads=5, num_kv_heads=1, max_positions=32, tie_word_embeddings=True, tokenizer=False)
    from golden.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    for ids in (np.array([7]), np.arange(3, 16)):
        rtl = run_rtl(ckpt, ids)
        assert_bit_exact(rtl, run_model(ckpt, ids, backend="golden"))


@pytest.mark.slow
def test_minilm_sentence():
    """MiniLM (6 BERT layers) on one sentence: the embedding equals golden's."""
    ckpt = load_model("minilm")
    ids = ckpt.encode("A man is eating food.")
    rtl = run_rtl(ckpt, ids)
    assert_bit_exact(rtl, run_model(ckpt, ids, backend="golden"))
