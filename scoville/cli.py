"""``scoville``: run a model on a backend and write its outputs.

Contract (other tools script it)::

    scoville run MODEL (--ids 1,2,3 | --text "...") [--backend float|golden|isa|rtl]
                 [--generate N] [--out FILE.npz] [--waves] [--timeline FILE.png]
                 [--roofline FILE.png]

``--out`` writes ``hidden`` float32 [seq, hidden] (Llama: after the final norm; BERT:
last_hidden_state), ``logits`` float32 [seq, vocab] (causal LMs), ``pooled`` float32 [hidden]
(BERT, mean over tokens) and ``tokens`` int64 [N] with ``--generate N``. Integer backends write
dequantized values. ``isa`` runs the compiled program on the instruction-set simulator
(``compiler/funcsim.py``) and checks it against ``golden``. Bad input exits 1 with one line
naming the problem. ``--backend rtl`` runs the generated Verilog of the single-core chip
(``best`` picks it) and prints cycles, matrix-engine utilization and tokens/s; with
``--timeline`` it also traces every instruction, prints the prompt job's roofline fraction per
part of the model (:mod:`compiler.profile`) and draws the per-unit timeline of its first layer;
``--roofline`` draws the roofline plot of all layers, prefill and (with ``--generate``) decode.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

EXIT_BAD_INPUT = 1
EXIT_UNAVAILABLE = 2


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit code 1."""


def _parse_ids(text: str) -> np.ndarray:
    try:
        ids = [int(part) for part in text.replace(" ", "").split(",") if part != ""]
    except ValueError:
        raise UsageError(f"--ids must be comma-separated integers, got {text!r}") from None
    if not ids:
        raise UsageError("--ids is empty")
    return np.array(ids, dtype=np.int64)


def _first_mismatch(out, gold) -> str:
    for name in ("hidden", "logits"):
        a, b = getattr(out, name), getattr(gold, name)
        if a is not None and not np.array_equal(a, b):
            where = tuple(np.argwhere(a != b)[0])
            return f"MISMATCH in {name} at {where}: {a[where]} vs {b[where]}"
    return "MISMATCH in generated tokens"


def _resolve_backend(name: str) -> str:
    if name == "best":
        return "rtl"
    return name


def _synthesised_fmax(config, root=None) -> float | None:
    """The chip's Fmax from ``make synth``, if it was measured: ``build/synth.json`` (this
    checkout's last run), else ``synth/reports/figures.json`` (the record kept in the repository).
    None for a configuration other than the synthesised one (``CONFIGS[config.name]``; the DRAM
    window aside), even of the same array size. ``root``: the repository (tests point it elsewhere)."""
    import dataclasses
    import json
    from pathlib import Path

    from scoville.config import CONFIGS

    synthesised = CONFIGS.get(config.name)
    if synthesised is None or dataclasses.replace(config, dram_bytes=synthesised.dram_bytes) != synthesised:
        return None
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    key = f"synth.chip.{config.name}.ecp5.fmax_mhz"
    for path in (root / "build" / "synth.json", root / "synth" / "reports" / "figures.json"):
        try:
            value = json.loads(path.read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if value:
            return float(value)
    return None


def _synthesised_revision(config, root=None) -> str | None:
    """The source revision the chip's synthesis report names (``source:`` in
    ``synth/reports/chip-<config>-ecp5.txt``), so that a tokens/s figure says whose Fmax it uses
    when the RTL has changed since. None without a report."""
    from pathlib import Path

    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    try:
        text = (root / "synth" / "reports" / f"chip-{config.name}-ecp5.txt").read_text()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("source:")), None)


def _print_rtl_figures(rtl) -> None:
    phases = ["prefill"] + [f"decode {n}" for n in range(1, len(rtl.cycles))]
    for phase, cycles, busy, wall in zip(phases, rtl.cycles, rtl.matrix_busy, rtl.sim_wall, strict=True):
        print(f"{phase + ':':12s}{cycles} cycles, matrix-engine utilization {busy / max(cycles, 1):.3f}, "
              f"simulated at {cycles / max(wall, 1e-9):,.0f} cycles/s")
    fmax = _synthesised_fmax(rtl.config)
    revision = _synthesised_revision(rtl.config)
    source = f" (synthesised from revision {revision})" if revision else ""
    if fmax is None:
        print(f"tokens/s:   not known: this {rtl.config.name} chip's Fmax has not been measured (make synth)")
    elif len(rtl.cycles) > 1:
        decode = sum(rtl.cycles[1:]) / (len(rtl.cycles) - 1)
        print(f"tokens/s:   {fmax * 1e6 / decode:,.1f} decode at {fmax:.1f} MHz{source}")
    else:
        print(f"tokens/s:   {fmax * 1e6 * len(rtl.outputs.hidden) / rtl.cycles[0]:,.1f} prefill at {fmax:.1f} MHz"
              f"{source}")


def _profile(ckpt, ids, rtl, model: str, timeline: str | None, roofline: str | None) -> None:
    """The prompt job's roofline fraction per part of the model, its first layer's timeline, and
    the roofline plot of all layers (prefill, and decode when tokens were generated)."""
    from compiler.profile import layer_table, phases, plot_roofline, plot_timeline

    profiled = phases(ckpt, ids, rtl)
    for phase, (_, _, table) in profiled.items():
        print(f"roofline:   {phase}, bound / cycles per part: "
              + ", ".join(f"{name} {row['fraction']:.3f}" for name, row in table.items()))
    setup = f"{rtl.config.name} array, {8 * rtl.config.bus_bytes}-bit bus"
    try:
        if timeline:
            job = profiled["prefill"][0]
            plot_timeline(job, rtl.traces[0], timeline, layer=0,
                          title=f"{ckpt.name or model}: prompt of {len(ids)} tokens, layer 0, {setup}")
            print(f"timeline:   {timeline}")
        if roofline:
            plot_roofline({phase: layer_table(job, segs, rtl.config) for phase, (job, segs, _) in profiled.items()},
                          rtl.config, roofline, title=f"{ckpt.name or model}: prompt of {len(ids)} tokens, {setup}")
            print(f"roofline:   {roofline}")
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename or 'the picture'}: {exc.strerror or exc}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from golden.model import generate, run_model
    from scoville.accuracy import cosine
    from scoville.models import load_model

    backend = _resolve_backend(args.backend)
    for option in ("timeline", "roofline"):
        if getattr(args, option) and backend != "rtl":
            raise UsageError(f"--{option} needs the rtl backend, not {backend}")
    if args.generate is not None and args.generate < 1:
        raise UsageError(f"--generate takes a positive count, got {args.generate}")

    ckpt = load_model(args.model)
    ids = _parse_ids(args.ids) if args.ids is not None else ckpt.encode(args.text)
    ids = ckpt.check_ids(ids)

    start = time.perf_counter()
    if args.generate is not None and ckpt.config.arch != "llama":
        raise UsageError(f"--generate needs a causal LM; {ckpt.name or args.model} is a {ckpt.config.arch} encoder")
    if args.generate is not None and len(ids) + args.generate > ckpt.config.max_positions:
        raise UsageError(f"prompt of {len(ids)} tokens plus {args.generate} generated exceeds the model's "
                         f"{ckpt.config.max_positions} positions")

    tokens = None
    isa = rtl = None
    if backend == "isa":
        from compiler.lower import FitError
        from compiler.runner import run_isa

        try:
            isa = run_isa(ckpt, ids, args.generate)
        except FitError as exc:
            raise UsageError(f"does not fit the chip: {exc}") from None
        out, tokens = isa.outputs, isa.tokens
    elif backend == "rtl":
        from compiler.lower import FitError
        from compiler.rtl_runner import run_rtl

        try:
            rtl = run_rtl(ckpt, ids, args.generate, waves=True if args.waves else None, progress=True,
                          trace=bool(args.timeline or args.roofline))
        except FitError as exc:
            raise UsageError(f"does not fit the chip: {exc}") from None
        out, tokens = rtl.outputs, rtl.tokens
    elif args.generate is not None:
        tokens, out = generate(ckpt, ids, args.generate, backend=backend)
    else:
        out = run_model(ckpt, ids, backend=backend)
    wall = time.perf_counter() - start

    cfg = ckpt.config
    print(f"model:    {ckpt.name or args.model} ({cfg.arch}, {cfg.num_layers} layers, hidden {cfg.hidden_size})")
    print(f"sequence: {len(ids)} tokens")
    print(f"backend:  {backend}")
    print(f"wall:     {wall:.3f} s")
    if isa is not None:
        print(f"program:  {isa.instructions} instructions executed (" +
              ", ".join(f"{k} {v}" for k, v in sorted(isa.counts.items(), key=lambda kv: -kv[1])[:5]) + ", ...)")
    if rtl is not None:
        _print_rtl_figures(rtl)
        if args.timeline or args.roofline:
            _profile(ckpt, ids, rtl, args.model, args.timeline, args.roofline)
    if isa is not None or rtl is not None:
        if tokens is not None:
            gold_tokens, gold = generate(ckpt, ids, len(tokens), backend="golden")
        else:
            gold_tokens, gold = None, run_model(ckpt, ids, backend="golden")
        exact = np.array_equal(out.hidden, gold.hidden) and (
            out.logits is None or np.array_equal(out.logits, gold.logits)) and (
            tokens is None or np.array_equal(tokens, gold_tokens))
        print(f"match vs golden: {'bit-exact' if exact else _first_mismatch(out, gold)}")
    if backend in ("golden", "isa", "rtl"):
        reference = run_model(ckpt, ids, backend="float")
        print(f"cosine vs float (hidden states): {cosine(out.hidden, reference.hidden):.5f}")
        if out.pooled is not None:
            print(f"cosine vs float (pooled embedding): {cosine(out.pooled, reference.pooled):.5f}")
    if tokens is not None:
        text = ""
        if ckpt.tokenizer is not None:
            text = " " + repr(ckpt.tokenizer.decode(tokens.tolist()))
        print(f"generated: {tokens.tolist()}{text}")

    if args.out:
        arrays = {"hidden": out.hidden.astype(np.float32)}
        if out.logits is not None:
            arrays["logits"] = out.logits.astype(np.float32)
        if out.pooled is not None:
            arrays["pooled"] = out.pooled.astype(np.float32)
        if tokens is not None:
            arrays["tokens"] = tokens.astype(np.int64)
        try:
            np.savez(args.out, **arrays)
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"wrote:    {args.out} ({', '.join(arrays)})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from scoville.models import MODELS

    for name, description in MODELS.items():
        print(f"{name:12s} {description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scoville", description="Scoville LLM-inference processor tools")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a model on a backend")
    run.add_argument("model", help="checkpoint directory (config.json + model.safetensors) or a named model "
                                   "(`scoville models` lists them)")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--ids", help="comma-separated token ids, e.g. 1,2,3")
    source.add_argument("--text", help="text, encoded with the checkpoint's tokenizer.json")
    run.add_argument("--backend", default="float", choices=["float", "golden", "isa", "rtl", "best"],
                     help="float: numpy float32 (Hugging Face semantics); golden: the hardware's exact "
                          "integer arithmetic; isa: the compiled program on the instruction-set simulator; "
                          "rtl: the generated Verilog; best: the most faithful available (default: float)")
    run.add_argument("--generate", type=int, metavar="N", help="greedily generate N tokens (causal LMs)")
    run.add_argument("--out", metavar="FILE.npz", help="write hidden/logits/pooled/tokens to an npz file")
    run.add_argument("--waves", action="store_true", help="rtl: write an FST waveform of the run")
    run.add_argument("--timeline", metavar="FILE.png",
                     help="rtl: trace every instruction, print the roofline fraction per part of the model "
                          "and draw the per-unit timeline of the prompt's first layer")
    run.add_argument("--roofline", metavar="FILE.png",
                     help="rtl: trace every instruction and draw the roofline plot of all layers "
                          "(prefill, and decode with --generate)")
    run.set_defaults(func=cmd_run)

    models = sub.add_parser("models", help="list the named models")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    from golden.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, UsageError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"scoville: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
