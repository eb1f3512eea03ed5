"""``make sweep``: design-space sweep with the performance model (no simulation).

For each chip configuration (array size, DRAM bus width, SRAM sizes) the compiler builds the
jobs and :mod:`compiler.perfmodel` predicts their cycles: tiny-llama's 64-token prompt and one
decode token after it, and MiniLM on 64 tokens. Prints a table (cycles, the roofline fraction
of the whole job, tokens per second at 100 MHz) and writes ``build/sweep.png`` and
``build/sweep.json``. ``python -m scripts.sweep --quick`` sweeps fewer points.

The model's durations were fitted to RTL traces of the 8x8 chip with a 64-bit bus
(``python -m compiler.perfmodel --fit``); other configurations extrapolate its formulas, so
their figures are estimates, not measurements.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np

from compiler.lower import Compiler, FitError
from compiler.perfmodel import predict
from compiler.profile import profile
from scoville.config import ChipConfig
from scoville.flow import BUILD_ROOT
from scoville.models import load_model

PROMPT = 64
CLOCK_MHZ = 100.0
MINILM_TEXT = " ".join(["A man is eating food while a woman plays the guitar in the park."] * 6)


def configurations(quick: bool) -> list[ChipConfig]:
    out = []
    arrays = (8, 16) if quick else (4, 8, 16, 32)
    buses = (8, 16) if quick else (8, 16, 32)
    for n in arrays:
        for bus in buses:
            for spad_kib, acc_kwords in ((32, 32), (256, 64)) if not quick else ((256, 64),):
                # full-width vector units, and from 16 lanes a quarter of a RoPE chunk a cycle, as
                # in scoville.config.CONFIGS
                out.append(ChipConfig(rows=n, columns=n, lanes=n, bus_bytes=bus, spad_bytes=spad_kib * 1024,
                                      acc_words=acc_kwords * 1024, vector_lanes=None, acc_banks=8,
                                      rope_pairs=n // 4 if n >= 16 else 1))
    return out


def evaluate(config: ChipConfig, models: dict) -> dict:
    row = {"config": f"{config.name} {8 * config.bus_bytes}b {config.spad_bytes // 1024}KiB/"
                     f"{config.acc_words // 1024}Kw"}
    for name, (ckpt, ids, decode) in models.items():
        try:
            compiler = Compiler(ckpt, dataclasses.replace(config, dram_bytes=64 << 20))
            jobs = [("prefill", compiler.job(ids))]
            if decode:
                jobs.append(("decode", compiler.job(np.array([1]), len(ids))))
        except FitError as exc:
            row[name] = f"does not fit: {exc}"
            continue
        for phase, job in jobs:
            trace, cycles = predict(job.program, config)
            _, table = profile(job, trace, cycles, config)
            row[f"{name}.{phase}.cycles"] = cycles
            row[f"{name}.{phase}.roofline"] = round(table["model"]["fraction"], 3)
        if decode:
            row[f"{name}.tokens_per_s"] = round(CLOCK_MHZ * 1e6 / row[f"{name}.decode.cycles"], 1)
    return row


def cell(row: dict, column: str) -> str:
    """A table cell: the figure, or why the model has none in this configuration."""
    if column in row:
        return str(row[column])
    model = column.split(".")[0]
    return "does not fit" if str(row.get(model, "")).startswith("does not fit") else "-"


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    tiny, minilm = load_model("tiny-llama"), load_model("minilm")
    models = {"tiny-llama": (tiny, np.arange(1, PROMPT + 1) * 7 % tiny.config.vocab_size, True),
              "minilm": (minilm, minilm.encode(MINILM_TEXT)[:PROMPT], False)}
    rows = []
    columns = ["config", "tiny-llama.prefill.cycles", "tiny-llama.prefill.roofline", "tiny-llama.decode.cycles",
               "tiny-llama.decode.roofline", "tiny-llama.tokens_per_s", "minilm.prefill.cycles",
               "minilm.prefill.roofline"]
    print("  ".join(f"{c:>28s}" if n else f"{c:26s}" for n, c in enumerate(columns)))
    for config in configurations(quick):
        row = evaluate(config, models)
        rows.append(row)
        print("  ".join(f"{cell(row, c)!s:>28s}" if n else f"{row[c]:26s}" for n, c in enumerate(columns)),
              flush=True)
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    (BUILD_ROOT / "sweep.json").write_text(json.dumps(rows, indent=1))
    plot(rows, BUILD_ROOT / "sweep.png")
    print(f"wrote {BUILD_ROOT / 'sweep.json'} and {BUILD_ROOT / 'sweep.png'} (performance model, not measurements)")
    return 0


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, key, title in ((axes[0], "tiny-llama.prefill.cycles", "tiny-llama, 64-token prompt"),
                           (axes[1], "tiny-llama.decode.cycles", "tiny-llama, one token after 64"),
                           (axes[2], "minilm.prefill.cycles", "MiniLM, 64 tokens")):
        labels = [r["config"] for r in rows if isinstance(r.get(key), int)]
        values = [r[key] for r in rows if isinstance(r.get(key), int)]
        ax.barh(range(len(values)), values, color="#1f77b4")
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("predicted cycles")
        ax.set_title(title)
    fig.suptitle("Design-space sweep (performance model fitted to the 8x8 / 64-bit RTL)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
