"""Chip figures (``make bench``): whole models on the generated Verilog of the single-core 8x8
chip with a 64-bit DRAM bus (DRAM model latency 20 cycles).

* ``chip.cycles.<model>.prefill`` and ``chip.matrix_util.<model>.prefill``: a 16-token prompt;
* ``chip.cycles.<model>.decode`` and ``...decode``: one token after a 16-token KV cache;
* ``chip.tokens_per_s.<model>``: decode tokens per second at the chip's synthesised Fmax
  (``synth.chip.8x8.ecp5.fmax_mhz`` from ``build/synth.json`` or the committed
  ``synth/reports/figures.json``; absent until it is measured);
* ``sim.cycles_per_s.chip``: simulated cycles per wall-clock second of the prefill (Verilator
  through cocotb, build excluded);
* ``chip.unit_busy.<model>.<phase>.<unit>``: the fraction of the job's cycles each unit (load,
  matrix, vector, store) held an instruction, from the chip's performance counters;
* ``chip.wall_s.<model>``: wall time of the whole run, Verilator build included if not cached;
  for ``minilm``, one sentence ("A man is eating food.", 8 tokens, 6 layers) on a 32 MiB DRAM
  model, whose build is not shared with tiny-llama's.

* ``chip.roofline_fraction.<model>.<phase>.<part>``: the roofline bound over the measured cycles
  (1.0 is the limit) per part of the model (``qkv``, ``attention``, ``out_proj``, ``mlp``,
  ``norm``, plus ``embed`` and ``head``) and ``model`` for the whole job, from the instruction
  trace (:mod:`compiler.profile`): tiny-llama with a 64-token prompt (``prefill``) and one token
  after it (``decode``, a KV cache of 64), MiniLM on 64 tokens (``prefill``); the cycles of those
  jobs are ``chip.cycles.<model>.<phase>64``. Their roofline plot of all layers (prefill and
  decode) goes to ``build/roofline-<model>.png`` (:func:`compiler.profile.plot_roofline`).
* ``chip.perfmodel_error.<model>.<phase>.job``, ``...layer`` and ``...part``: the performance
  model's (:mod:`compiler.perfmodel`) predicted over measured cycles, less one, of those jobs: the
  whole job, and the transformer layer and the part of a layer it misses most (cycles attributed
  by completion).
* ``chip16x16.*``: the same for tiny-llama on a 16x16 array with a 128-bit bus (64 KiB
  scratchpad, 64K-word accumulator), plot ``build/roofline-tiny-llama-16x16.png``.

Matrix utilization is the fraction of cycles in which an activation row entered the array.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from compiler.perfmodel import compare_layers, predict
from compiler.profile import layer_table, phases, plot_roofline
from compiler.rtl_runner import run_rtl
from scoville.cli import _synthesised_fmax
from scoville.config import CONFIGS, ChipConfig
from scoville.models import load_model

REPO_ROOT = Path(__file__).resolve().parent.parent
#: where the roofline plots go
PLOTS = REPO_ROOT / "build"
PROMPT = 16
#: the 16x16 / 128-bit configuration (not an FPGA one: 64 KiB scratchpad, 64K-word accumulator)
WIDE = CONFIGS["16x16-128b"]
#: prompt length of the roofline figures (the performance issue's bar)
ROOFLINE_PROMPT = 64
#: MiniLM's 64 tokens: this text, encoded and cut to 64 ids
MINILM_TEXT = " ".join(["A man is eating food while a woman plays the guitar in the park."] * 6)


def roofline(out: dict, name: str, ckpt, ids, generate: int | None, config: ChipConfig | None = None,
             prefix: str = "chip") -> None:
    """Roofline fractions of a traced run of ``ids`` (and one decode job when ``generate``), and
    the roofline plot of all its layers, ``build/roofline-<model>.png`` (``-<config>`` for
    another ``config``, whose figures start with ``prefix``)."""
    run = run_rtl(ckpt, ids, generate=generate, config=config, trace=True)
    profiled = phases(ckpt, ids, run)
    for n, (phase, (job, _, table)) in enumerate(profiled.items()):
        out[f"{prefix}.cycles.{name}.{phase}{len(ids)}"] = run.cycles[n]
        for part, row in table.items():
            out[f"{prefix}.roofline_fraction.{name}.{phase}.{part}"] = round(row["fraction"], 4)
        out[f"{prefix}.perfmodel_error.{name}.{phase}.job"] = round(predict(job.program, run.config)[1]
                                                                    / run.cycles[n] - 1, 4)
        # the performance model against this trace: the largest error over the transformer
        # layers, and over their parts
        errors = {key: p / m - 1 for key, (m, p) in compare_layers(job, run.traces[n], run.cycles[n],
                                                                    run.config).items() if m and key[0] >= 0}
        for kind, keys in (("layer", [k for k in errors if k[1] is None]), ("part", [k for k in errors if k[1]])):
            worst = max(keys, key=lambda k: abs(errors[k]))
            out[f"{prefix}.perfmodel_error.{name}.{phase}.{kind}"] = round(errors[worst], 4)
    path = PLOTS / (f"roofline-{name}.png" if config is None else f"roofline-{name}-{run.config.name}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_roofline({phase: layer_table(job, segs, run.config) for phase, (job, segs, _) in profiled.items()},
                  run.config, path, title=f"{name}: {len(ids)} tokens, {run.config.name} array, "
                                          f"{8 * run.config.bus_bytes}-bit bus")
    print(f"roofline plot: {path.relative_to(REPO_ROOT)}", file=sys.stderr)


def figures() -> dict[str, float]:
    out: dict[str, float] = {}
    ckpt = load_model("tiny-llama")
    ids = np.arange(1, PROMPT + 1) * 7 % ckpt.config.vocab_size
    began = time.perf_counter()
    run = run_rtl(ckpt, ids, generate=2)
    out["chip.wall_s.tiny-llama"] = round(time.perf_counter() - began, 1)
    for phase, job in (("prefill", 0), ("decode", 1)):
        out[f"chip.cycles.tiny-llama.{phase}"] = run.cycles[job]
        out[f"chip.matrix_util.tiny-llama.{phase}"] = round(run.matrix_utilization(job), 4)
        for unit, counters in run.unit_counters[job].items():
            out[f"chip.unit_busy.tiny-llama.{phase}.{unit}"] = round(counters["busy"] / run.cycles[job], 4)
    out["sim.cycles_per_s.chip"] = round(run.cycles[0] / run.sim_wall[0])
    minilm = load_model("minilm")
    began = time.perf_counter()
    sentence = run_rtl(minilm, minilm.encode("A man is eating food."))
    out["chip.wall_s.minilm"] = round(time.perf_counter() - began, 1)
    out["chip.cycles.minilm.prefill"] = sentence.cycles[0]
    roofline(out, "tiny-llama", ckpt, np.arange(1, ROOFLINE_PROMPT + 1) * 7 % ckpt.config.vocab_size, 2)
    roofline(out, "minilm", minilm, minilm.encode(MINILM_TEXT)[:ROOFLINE_PROMPT], None)
    # the performance issue's second configuration: a 16x16 array on a 128-bit bus
    roofline(out, "tiny-llama", ckpt, np.arange(1, ROOFLINE_PROMPT + 1) * 7 % ckpt.config.vocab_size, 2,
             config=WIDE, prefix="chip16x16")
    fmax = _synthesised_fmax(run.config)
    if fmax is not None:
        out["chip.tokens_per_s.tiny-llama"] = round(fmax * 1e6 / run.cycles[1], 2)
    return out
