"""``make accuracy``: how closely the integer ``golden`` backend tracks ``float``.

Per model and input: cosine similarity of the final hidden states (the whole [seq, hidden]
matrix, and the worst single token), for decoders the largest absolute logit error and greedy
top-1 agreement, for MiniLM the cosine of each sentence embedding (mean over tokens,
L2-normalised). Besides tiny-llama and minilm, synthetic checkpoints with odd shapes (dimensions
that are not multiples of 8, grouped-query attention, tied embeddings) at lengths 1 to 16.

The same measurements back the accuracy tests (``tests/test_golden_model.py``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.checkpoint import Checkpoint, load_checkpoint
from golden.model import run_model
from golden.synthetic import write_bert, write_llama

#: The six-plus sentences of the MiniLM report (a mix of lengths and topics).
SENTENCES = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A cheetah is running behind its prey.",
    "Hello world",
)

#: Synthetic shapes checked besides the named models: odd sizes, GQA, tied embeddings.
ODD_LLAMA = dict(vocab_size=101, hidden_size=40, intermediate_size=77, num_layers=2, num_heads=5,
                 num_kv_heads=1, max_positions=64, seed=3)
GQA_LLAMA = dict(vocab_size=300, hidden_size=96, intermediate_size=200, num_layers=3, num_heads=6,
                 num_kv_heads=2, max_positions=64, tie_word_embeddings=True, seed=4)
ODD_BERT = dict(vocab_size=211, hidden_size=60, intermediate_size=130, num_layers=2, num_heads=5,
                max_positions=64, seed=5)


def cosine(a, b) -> float:
    """Cosine similarity of two arrays, flattened, in float64 (NaN if either is all zero)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator else float("nan")


@dataclass
class Comparison:
    """golden vs float on one input."""

    label: str
    seq: int
    hidden_cosine: float
    worst_token_cosine: float
    max_logit_error: float | None = None
    top1_agreement: float | None = None
    embedding_cosine: float | None = None


def compare(ckpt: Checkpoint, ids: np.ndarray, label: str) -> Comparison:
    f = run_model(ckpt, ids, "float")
    g = run_model(ckpt, ids, "golden")
    result = Comparison(label, len(ids), cosine(f.hidden, g.hidden),
                        min(cosine(f.hidden[t], g.hidden[t]) for t in range(len(ids))))
    if f.logits is not None:
        result.max_logit_error = float(np.max(np.abs(f.logits - g.logits)))
        result.top1_agreement = float(np.mean(f.logits.argmax(-1) == g.logits.argmax(-1)))
    if f.pooled is not None:
        fe = f.pooled / np.linalg.norm(f.pooled)
        ge = g.pooled / np.linalg.norm(g.pooled)
        result.embedding_cosine = cosine(fe, ge)
    return result


def sample_ids(vocab: int, length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=length).astype(np.int64)


def synthetic_checkpoints(root: Path) -> dict[str, Checkpoint]:
    return {
        "llama-odd-40x5h-1kv": load_checkpoint(write_llama(root / "llama-odd", **ODD_LLAMA)),
        "llama-gqa-tied-96x6h-2kv": load_checkpoint(write_llama(root / "llama-gqa", **GQA_LLAMA)),
        "bert-odd-60x5h": load_checkpoint(write_bert(root / "bert-odd", **ODD_BERT)),
    }


def report() -> list[Comparison]:
    from scoville.models import load_model

    results: list[Comparison] = []
    tiny = load_model("tiny-llama")
    for n, text in enumerate(["The quick brown fox", "Once upon a time there was a little chip",
                              "Hello"]):
        results.append(compare(tiny, tiny.encode(text), f"tiny-llama text {n}"))
    for length in (1, 7, 16, 32):
        results.append(compare(tiny, sample_ids(tiny.config.vocab_size, length, length), f"tiny-llama ids {length}"))
    minilm = load_model("minilm")
    for sentence in SENTENCES:
        results.append(compare(minilm, minilm.encode(sentence), f"minilm {sentence!r}"))
    with tempfile.TemporaryDirectory() as tmp:
        for name, ckpt in synthetic_checkpoints(Path(tmp)).items():
            for length in (1, 5, 16):
                results.append(compare(ckpt, sample_ids(ckpt.config.vocab_size, length, 100 + length),
                                       f"{name} ids {length}"))
    return results


def main() -> int:
    results = report()
    print(f"{'input':58s} {'seq':>4s} {'hidden cos':>10s} {'worst tok':>9s} {'logit err':>9s} "
          f"{'top1':>5s} {'emb cos':>8s}")
    for r in results:
        logit = f"{r.max_logit_error:9.4f}" if r.max_logit_error is not None else " " * 9
        top1 = f"{r.top1_agreement:5.2f}" if r.top1_agreement is not None else " " * 5
        emb = f"{r.embedding_cosine:8.5f}" if r.embedding_cosine is not None else " " * 8
        print(f"{r.label[:58]:58s} {r.seq:4d} {r.hidden_cosine:10.5f} {r.worst_token_cosine:9.5f} "
              f"{logit} {top1} {emb}")
    worst = min(r.hidden_cosine for r in results)
    embeddings = [r.embedding_cosine for r in results if r.embedding_cosine is not None and "minilm" in r.label]
    print(f"worst hidden-state cosine over all inputs: {worst:.5f} (bar 0.99)")
    if embeddings:
        print(f"minilm sentence embeddings: worst {min(embeddings):.5f}, mean {np.mean(embeddings):.5f}")
    return 0 if worst >= 0.99 else 1


if __name__ == "__main__":
    raise SystemExit(main())
