"""The `scoville run` contract: outputs, exit codes, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from golden.synthetic import write_llama
from scoville.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_llama_npz_contract(capsys, tmp_path):
    out = tmp_path / "t.npz"
    code, stdout, _ = run(capsys, "run", "tiny-llama", "--ids", "1,2,3,4", "--backend", "golden",
                          "--generate", "3", "--out", str(out))
    assert code == 0
    for field in ("model:", "sequence: 4 tokens", "backend:  golden", "wall:", "cosine vs float"):
        assert field in stdout
    z = np.load(out)
    assert set(z.files) == {"hidden", "logits", "tokens"}
    assert z["hidden"].dtype == np.float32 and z["hidden"].shape == (4, 64)
    assert z["logits"].dtype == np.float32 and z["logits"].shape == (4, 512)
    assert z["tokens"].dtype == np.int64 and z["tokens"].shape == (3,)


def test_bert_npz_contract(capsys, tmp_path):
    out = tmp_path / "e.npz"
    code, _, _ = run(capsys, "run", "minilm", "--text", "A man is eating food.", "--out", str(out))
    assert code == 0
    z = np.load(out)
    assert set(z.files) == {"hidden", "pooled"}
    assert z["pooled"].shape == (384,) and z["hidden"].shape[1] == 384
    np.testing.assert_allclose(z["pooled"], z["hidden"].mean(axis=0), rtol=1e-6)


def test_rtl_backend_rejects_bad_ids_before_simulating(capsys):
    code, _, err = run(capsys, "run", "tiny-llama", "--ids", "1,99999", "--backend", "rtl")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "99999" in err


def _broken_checkpoint(tmp_path, mutate):
    path = write_llama(tmp_path / "m", vocab_size=50, hidden_size=16, intermediate_size=24, num_layers=1,
                       num_heads=2, max_positions=8, tokenizer=False)
    mutate(path)
    return path


@pytest.mark.parametrize("case", ["missing_config", "bad_json", "unsupported_arch", "missing_weights",
                                  "ids_out_of_vocab", "too_long", "bad_ids", "generate_bert",
                                  "text_without_tokenizer", "unknown_model", "timeline_without_rtl",
                                  "roofline_without_rtl"])
def test_bad_input_exits_1_with_one_line(capsys, tmp_path, case):
    def config_edit(edit):
        def mutate(path):
            cfg = json.loads((path / "config.json").read_text())
            edit(cfg)
            (path / "config.json").write_text(json.dumps(cfg))
        return mutate

    args = ["--ids", "1,2"]
    model = None
    if case == "missing_config":
        model = _broken_checkpoint(tmp_path, lambda p: (p / "config.json").unlink())
    elif case == "bad_json":
        model = _broken_checkpoint(tmp_path, lambda p: (p / "config.json").write_text("{not json"))
    elif case == "unsupported_arch":
        model = _broken_checkpoint(tmp_path, config_edit(lambda c: c.update(architectures=["GPT2LMHeadModel"],
                                                                            model_type="gpt2")))
    elif case == "missing_weights":
        model = _broken_checkpoint(tmp_path, lambda p: (p / "model.safetensors").unlink())
    elif case == "ids_out_of_vocab":
        model, args = _broken_checkpoint(tmp_path, lambda p: None), ["--ids", "1,50"]
    elif case == "too_long":
        model, args = _broken_checkpoint(tmp_path, lambda p: None), ["--ids", ",".join(["1"] * 9)]
    elif case == "bad_ids":
        model, args = "tiny-llama", ["--ids", "1,x"]
    elif case == "generate_bert":
        model, args = "minilm", ["--ids", "101,102", "--generate", "2"]
    elif case == "text_without_tokenizer":
        model, args = _broken_checkpoint(tmp_path, lambda p: None), ["--text", "hello"]
    elif case == "unknown_model":
        model = "no-such-model"
    elif case == "timeline_without_rtl":
        model, args = "tiny-llama", ["--ids", "1,2", "--backend", "golden", "--timeline", str(tmp_path / "t.png")]
    elif case == "roofline_without_rtl":
        model, args = "tiny-llama", ["--ids", "1,2", "--backend", "isa", "--roofline", str(tmp_path / "r.png")]
    code, _, err = run(capsys, "run", str(model), *args)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scoville: error:"), err
    assert "Traceback" not in err


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "scoville.cli", "run", "tiny-llama", "--ids", "5,6"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "backend:  float" in result.stdout


def test_isa_backend_is_bit_exact_with_golden(capsys, tmp_path):
    out = tmp_path / "i.npz"
    code, stdout, _ = run(capsys, "run", "tiny-llama", "--ids", "3,1,4,1,5", "--backend", "isa", "--generate", "2",
                          "--out", str(out))
    assert code == 0 and "match vs golden: bit-exact" in stdout
    code, _, _ = run(capsys, "run", "tiny-llama", "--ids", "3,1,4,1,5", "--backend", "golden", "--generate", "2",
                     "--out", str(tmp_path / "g.npz"))
    a, b = np.load(out), np.load(tmp_path / "g.npz")
    for key in ("hidden", "logits", "tokens"):
        np.testing.assert_array_equal(a[key], b[key])


def test_synthesised_fmax_falls_back_to_the_committed_record(tmp_path):
    """A fresh clone has no build/: tokens/s uses the Fmax recorded in synth/reports/figures.json."""
    import json

    from scoville.cli import _synthesised_fmax
    from scoville.config import CONFIGS, ChipConfig

    chip = ChipConfig(dram_bytes=1 << 20)     # the runner sizes the DRAM window per job

    key = "synth.chip.8x8.ecp5.fmax_mhz"
    assert _synthesised_fmax(chip, tmp_path) is None
    (tmp_path / "synth" / "reports").mkdir(parents=True)
    (tmp_path / "synth" / "reports" / "figures.json").write_text(json.dumps({key: 51.5}))
    assert _synthesised_fmax(chip, tmp_path) == 51.5
    assert _synthesised_fmax(CONFIGS["16x16"], tmp_path) is None
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "synth.json").write_text(json.dumps({"synth.matrix.8x8.ecp5.fmax_mhz": 160.0}))
    assert _synthesised_fmax(chip, tmp_path) == 51.5      # this checkout's run lacks the chip
    (tmp_path / "build" / "synth.json").write_text(json.dumps({key: 48.25}))
    assert _synthesised_fmax(chip, tmp_path) == 48.25     # this checkout's own run wins
    # another 8x8 chip is not the one synthesised
    other = ChipConfig(vector_lanes=2 if chip.unit_lanes != 2 else 4)
    assert _synthesised_fmax(other, tmp_path) is None


def test_tokens_per_second_names_the_synthesised_revision(tmp_path):
    """The Fmax comes from a synthesis of some revision; the report names it, and so does the
    tokens/s line (the RTL may have changed since)."""
    from scoville.cli import _synthesised_revision
    from scoville.config import ChipConfig

    assert _synthesised_revision(ChipConfig(), tmp_path) is None
    (tmp_path / "synth" / "reports").mkdir(parents=True)
    (tmp_path / "synth" / "reports" / "chip-8x8-ecp5.txt").write_text(
        "chip 8x8 on Lattice ECP5 LFE5U-85F\nsource: 389ae37\nfigures:\n  fmax_mhz: 29.61\n")
    assert _synthesised_revision(ChipConfig(), tmp_path) == "389ae37"
    assert _synthesised_revision(ChipConfig(), None) is not None    # the committed report
