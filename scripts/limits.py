"""What limits the roofline fraction: the performance model with one overhead of the chip taken away
at a time (no simulation).

For tiny-llama's 64-token prompt and one decode token after it, on the default 8x8 chip and on the
16x16 / 128-bit configuration, :mod:`compiler.perfmodel` predicts the cycles and the whole job's
roofline fraction (and attention's) as built, then with each of these removed (``OVERHEADS``):

* ``vector latency``: the fixed cost of a vector instruction (the vector unit's pipeline with
  the sequencer's handshakes: about 75 cycles on its long path and 15-25 on its short one with
  the chip's merged stages, 134 and 25-40 with every stage a register), paid
  once per instruction because the sequencer runs one instruction at a time and most follow one
  another's results;
* ``DMA per-instruction``: the transfer unit's fixed cost per LOAD/STORE/GATHER row (descriptor
  check, DRAM latency through the NoC, status), paid because one descriptor runs at a time;
* ``array weight load``: the cycles a matmul tile waits for its weights to enter the array
  beyond its activation rows (decode streams one row per tile, so this is most of a decode
  matmul);
* ``narrow vector unit``: the FPGA configuration's vector unit of ``vector_lanes`` lanes instead
  of one lane per accumulator word;

and with all of them removed at once; then, as the limit of what the vector unit can give, with
every vector instruction taking one cycle (``all vector work``). A removed overhead is a
coefficient of the model set to zero (or the configuration changed), so the figures say how much
of each gap that overhead explains under the model's schedule, not what a redesign would reach.
Prints a table and writes ``build/limits.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np

from compiler import perfmodel
from compiler.lower import Compiler
from compiler.profile import profile
from scoville.config import CONFIGS, ChipConfig
from scoville.flow import BUILD_ROOT
from scoville.isa import Opcode
from scoville.models import load_model

PROMPT = 64


def _zero(coefficients: dict, keys, index: int) -> dict:
    out = {key: value.copy() for key, value in coefficients.items()}
    for key in keys:
        out[key][index] = 0.0
    return out


def _vector_keys(coefficients: dict) -> list[str]:
    """The coefficient rows of the vector family (not the scalar path or RoPE's chunks)."""
    keys = ["vector", "vector_short"]
    for key in coefficients:
        opcode = getattr(Opcode, key, None)
        if opcode is not None and perfmodel._family(opcode) == "vector":
            keys.append(key)
    return keys


def _no_dma_overhead(c: dict) -> dict:
    # LOAD/STORE: the constant per instruction; GATHER: the constant per row (one descriptor each)
    return _zero(_zero(c, [k for k in ("transfer", "LOAD", "STORE") if k in c], 0), ["GATHER"], 1)


#: name -> (coefficients, configuration) changes
OVERHEADS = {
    "vector latency": (lambda c: _zero(c, _vector_keys(c), 0), lambda cfg: cfg),
    "DMA per-instruction": (_no_dma_overhead, lambda cfg: cfg),
    "array weight load": (lambda c: _zero(c, ["matmul", "MATMUL"], 3), lambda cfg: cfg),
    "narrow vector unit": (lambda c: c, lambda cfg: dataclasses.replace(cfg, vector_lanes=None)),
}


def _no_vector_work(c: dict) -> dict:
    """Not an overhead but the bound on what the others can give: every vector instruction (the
    scalar path's and RoPE's included) taking one cycle, so that only the matrix engine, the DMA
    and the dependencies between them remain."""
    return _zero(c, _vector_keys(c) + ["scalar", "rope", "V_ROPE", "V_ATTN_SCALE"], slice(None))


def _all(c: dict, cfg: ChipConfig) -> tuple[dict, ChipConfig]:
    for change_c, change_cfg in OVERHEADS.values():
        c, cfg = change_c(c), change_cfg(cfg)
    return c, cfg


def predict_jobs(ckpt, config: ChipConfig, coefficients: dict) -> dict[str, tuple[int, float, float]]:
    """(cycles, whole-job roofline fraction, attention's fraction) of the prompt and the decode
    token after it."""
    compiler = Compiler(ckpt, config)
    ids = np.arange(1, PROMPT + 1) * 7 % ckpt.config.vocab_size
    out = {}
    for phase, job in (("prefill", compiler.job(ids)), ("decode", compiler.job(np.array([1]), PROMPT))):
        trace, cycles = perfmodel.predict(job.program, config, coefficients)
        _, table = profile(job, trace, cycles, config)
        out[phase] = (cycles, table["model"]["fraction"], table["attention"]["fraction"])
    return out


def main(argv: list[str]) -> int:
    ckpt = load_model("tiny-llama")
    rows = []
    print(f"{'configuration':24s} {'removed':22s} {'prefill cycles':>15s} {'fraction':>9s} {'attention':>9s} "
          f"{'decode cycles':>14s} {'fraction':>9s} {'attention':>9s}")
    for label, config in (("8x8 64b (default)", ChipConfig()), ("16x16 128b", CONFIGS["16x16-128b"])):
        cases = [("nothing (as built)", perfmodel.COEFFICIENTS, config)]
        cases += [(name, change_c(perfmodel.COEFFICIENTS), change_cfg(config))
                  for name, (change_c, change_cfg) in OVERHEADS.items()]
        cases.append(("all of the above", *_all(perfmodel.COEFFICIENTS, config)))
        cases.append(("all vector work", _no_vector_work(perfmodel.COEFFICIENTS), config))
        for name, coefficients, cfg in cases:
            if name == "narrow vector unit" and cfg.unit_lanes == config.unit_lanes:
                continue   # this configuration's vector unit is full width already
            figures = predict_jobs(ckpt, cfg, coefficients)
            row = {"config": label, "removed": name}
            for phase, (cycles, fraction, attention) in figures.items():
                row[f"{phase}.cycles"], row[f"{phase}.fraction"] = cycles, round(fraction, 3)
                row[f"{phase}.attention"] = round(attention, 3)
            rows.append(row)
            print(f"{label:24s} {name:22s} {row['prefill.cycles']:>15d} {row['prefill.fraction']:>9.3f} "
                  f"{row['prefill.attention']:>9.3f} {row['decode.cycles']:>14d} {row['decode.fraction']:>9.3f} "
                  f"{row['decode.attention']:>9.3f}", flush=True)
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    (BUILD_ROOT / "limits.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {BUILD_ROOT / 'limits.json'} (performance model: tiny-llama, {PROMPT}-token prompt and a "
          f"decode token after it)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
