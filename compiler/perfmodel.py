"""A performance model: a job's cycles from the compiler's schedule, without simulating the RTL.

Two parts:

* :func:`duration`: the cycles one instruction keeps its unit busy, from its fields and the chip
  configuration. Each opcode family has a formula in the terms the hardware works in (DMA rows
  and bus beats, weight tiles and activation rows through the array, vector beats and passes),
  with coefficients :data:`COEFFICIENTS` fitted once to instruction traces of the RTL
  (``python -m compiler.perfmodel --fit``).
* :func:`schedule`: the controller's behaviour replayed as events (``rtl/core/controller.py``):
  instructions are fetched in program order into per-queue FIFOs of ``queue_depth`` (fetch stops
  while the next instruction's queue is full), a queue's head is released when its semaphores
  are non-zero and its unit is idle (load and store share the transfer unit), one release per
  cycle, and a completion signals its semaphores.

:func:`predict` gives each instruction's release and completion cycle, in the same form as the
RTL's trace (:class:`compiler.profile.Trace`), so :func:`compiler.profile.profile` attributes
predicted cycles to the parts of the model exactly as it does measured ones. ``make sweep`` runs
it over array sizes, bus widths, SRAM sizes (``scripts/sweep.py``).
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from compiler.profile import Trace
from scoville.config import ChipConfig
from scoville.isa import QUEUE_OF, SEMAPHORES, Flag, Opcode

__all__ = ["COEFFICIENTS", "duration", "features", "predict", "schedule"]

QUEUES = ("load", "matrix", "vector", "store")
UNIT_OF = {"load": "transfer", "store": "transfer", "matrix": "matrix", "vector": "vector"}

#: vector opcodes run on the scalar path of the sequencer (one element at a time)
SCALAR = {Opcode.V_ROPE, Opcode.V_SCALE_MUL, Opcode.V_ATTN_SCALE}
#: passes over each row of the multi-pass vector operations (``rtl/vector/isa.py``)
PASSES = {Opcode.V_RMSNORM: 2, Opcode.V_LAYERNORM: 3, Opcode.V_SOFTMAX_EXP: 2, Opcode.V_QUANT: 2}


def _family(opcode: Opcode) -> str:
    if opcode in (Opcode.LOAD, Opcode.STORE, Opcode.GATHER):
        return "transfer"
    if opcode is Opcode.MATMUL:
        return "matmul"
    if opcode in SCALAR:
        return "scalar"
    return "vector"


def features(opcode: Opcode, fields: dict, config: ChipConfig) -> np.ndarray:
    """The terms an instruction's duration is linear in (see :data:`COEFFICIENTS`)."""
    rows, cols = max(fields.get("rows", 0), 1), max(fields.get("cols", 0), 1)
    family = _family(opcode)
    if family == "transfer":
        elem = 4 if fields.get("flags", 0) & Flag.DST_ACC else 1
        row_bytes = cols * elem
        beats = rows * math.ceil(row_bytes / config.bus_bytes)
        return np.array([1.0, rows, beats])
    if family == "matmul":
        k, n = max(fields.get("imm", 0), 1), cols
        tiles = math.ceil(k / config.rows) * math.ceil(n / config.columns)
        return np.array([1.0, tiles, tiles * rows])
    if family == "scalar":
        return np.array([1.0, rows, rows * cols])
    passes = PASSES.get(opcode, 1)
    beats = rows * math.ceil(cols / config.lanes)
    return np.array([1.0, rows * passes, beats * passes])


#: Fitted coefficients of :func:`features` per family (cycles): constant, per row (or tile),
#: per beat (or activation row per tile, or element).
COEFFICIENTS = {
    "transfer": np.array([40.0, 4.0, 1.0]),
    "matmul": np.array([20.0, 12.0, 1.0]),
    "scalar": np.array([20.0, 4.0, 2.0]),
    "vector": np.array([140.0, 4.0, 1.0]),
}


def duration(opcode: Opcode, fields: dict, config: ChipConfig, coefficients: dict | None = None) -> int:
    """Cycles ``opcode`` keeps its unit busy."""
    coefficients = coefficients or COEFFICIENTS
    return max(1, round(float(features(opcode, fields, config) @ coefficients[_family(opcode)])))


def schedule(program: list[tuple[Opcode, dict]], durations: list[int], *, queue_depth: int = 4,
             fetch_cycles: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Release and completion cycle of each instruction (-1 for control instructions) when the
    controller runs ``program`` with these unit ``durations``."""
    n = len(program)
    issue = np.full(n, -1, dtype=np.int64)
    done = np.full(n, -1, dtype=np.int64)
    fifos = {q: deque() for q in QUEUES}
    semaphores = [0] * SEMAPHORES
    busy_until = {"transfer": 0, "matrix": 0, "vector": 0}
    completions: list[tuple[int, int]] = []   # (cycle, instruction)
    next_fetch, fetch_ready = 0, 0
    clock = 0
    finished = 0
    real = [QUEUE_OF[op] in QUEUES for op, _ in program]
    total = sum(real)
    turn = 0
    while finished < total:
        # completions up to now signal their semaphores
        while completions and completions[0][0] <= clock:
            _, index = heapq.heappop(completions)
            signal = program[index][1].get("signal", 0)
            for s in range(SEMAPHORES):
                if signal >> s & 1:
                    semaphores[s] += 1
            finished += 1
        # fetch, in program order, while the next instruction's queue has room
        while next_fetch < n and fetch_ready <= clock:
            opcode, _ = program[next_fetch]
            queue = QUEUE_OF[opcode]
            if queue in QUEUES:
                if len(fifos[queue]) >= queue_depth:
                    break
                fifos[queue].append(next_fetch)
            next_fetch += 1
            fetch_ready = clock + fetch_cycles
        # one release per cycle, round robin over the queues
        released = False
        for offset in range(len(QUEUES)):
            queue = QUEUES[(turn + offset) % len(QUEUES)]
            if not fifos[queue]:
                continue
            index = fifos[queue][0]
            wait = program[index][1].get("wait", 0)
            unit = UNIT_OF[queue]
            if busy_until[unit] > clock or any(wait >> s & 1 and semaphores[s] == 0 for s in range(SEMAPHORES)):
                continue
            for s in range(SEMAPHORES):
                if wait >> s & 1:
                    semaphores[s] -= 1
            fifos[queue].popleft()
            issue[index] = clock
            done[index] = clock + durations[index]
            busy_until[unit] = done[index]
            heapq.heappush(completions, (int(done[index]), index))
            turn = (turn + offset + 1) % len(QUEUES)
            released = True
            break
        if released:
            clock += 1
            continue
        # nothing to do this cycle: jump to the next event
        events = [t for t in (completions[0][0] if completions else None,
                              fetch_ready if next_fetch < n else None) if t is not None and t > clock]
        events += [t for t in busy_until.values() if t > clock]
        if not events:
            if finished < total and not completions:
                raise RuntimeError("the schedule is stuck: no completion, fetch or release can happen")
            clock += 1
        else:
            clock = min(events)
    return issue, done


def predict(program: list[tuple[Opcode, dict]], config: ChipConfig, coefficients: dict | None = None,
            **options) -> tuple[Trace, int]:
    """The predicted trace of ``program`` (as :class:`compiler.profile.Trace`, no stalls) and its
    total cycles."""
    durations = [duration(op, fields, config, coefficients) if QUEUE_OF[op] in QUEUES else 0
                 for op, fields in program]
    issue, done = schedule(program, durations, **options)
    per = {q: [i for i, (op, _) in enumerate(program) if QUEUE_OF[op] == q] for q in QUEUES}
    trace = Trace({q: issue[per[q]] for q in QUEUES}, {q: done[per[q]] for q in QUEUES},
                  {q: np.zeros(len(per[q]), dtype=np.int64) for q in QUEUES})
    return trace, int(done.max()) if len(done) else 0


# ---------------------------------------------------------------------------------- fitting

def fit(samples: list[tuple[Opcode, dict, int]], config: ChipConfig) -> dict[str, np.ndarray]:
    """Least-squares coefficients per family from measured (opcode, fields, duration) samples."""
    out = {}
    for family in COEFFICIENTS:
        rows = [(features(op, fields, config), cycles) for op, fields, cycles in samples if _family(op) == family]
        if not rows:
            out[family] = COEFFICIENTS[family]
            continue
        x = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows], dtype=float)
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        out[family] = coef
    return out


def samples_from_trace(job, trace) -> list[tuple[Opcode, dict, int]]:
    """(opcode, fields, cycles busy) of every instruction of a traced RTL job."""
    issue, done, _ = trace.per_instruction(job)
    return [(op, fields, int(done[i] - issue[i])) for i, (op, fields) in enumerate(job.program) if issue[i] >= 0]


def compare(job, trace, cycles: int, config: ChipConfig, coefficients: dict | None = None) -> dict[str, tuple]:
    """Per part of the model: (measured cycles, predicted cycles)."""
    from compiler.profile import profile

    predicted_trace, predicted_total = predict(job.program, config, coefficients)
    _, measured = profile(job, trace, cycles, config)
    _, predicted = profile(job, predicted_trace, predicted_total, config)
    return {part: (measured[part]["cycles"], predicted[part]["cycles"]) for part in measured}


# ---------------------------------------------------------------------------------- command line

def _traced_runs():
    """RTL traces the coefficients are fitted to: tiny-llama with 16- and 64-token prompts (and
    one decode token after each) and MiniLM on one sentence, on the default chip."""
    from compiler.lower import Compiler
    from compiler.rtl_runner import run_rtl
    from scoville.models import load_model

    runs = []
    ckpt = load_model("tiny-llama")
    for tokens in (16, 64):
        ids = np.arange(1, tokens + 1) * 7 % ckpt.config.vocab_size
        rtl = run_rtl(ckpt, ids, generate=2, trace=True)
        compiler = Compiler(ckpt, rtl.config)
        jobs = [compiler.job(ids), compiler.job(rtl.tokens[:1], len(ids))]
        runs += [(f"tiny-llama {phase} ({tokens})", job, trace, cycles, rtl.config)
                 for phase, job, trace, cycles in zip(("prefill", "decode"), jobs, rtl.traces, rtl.cycles,
                                                      strict=True)]
    minilm = load_model("minilm")
    ids = minilm.encode("A man is eating food.")
    rtl = run_rtl(minilm, ids, trace=True)
    runs.append(("minilm prefill (8)", Compiler(minilm, rtl.config).job(ids), rtl.traces[0], rtl.cycles[0],
                 rtl.config))
    return runs


def main(argv: list[str]) -> int:
    """``--fit``: fit :data:`COEFFICIENTS` to fresh RTL traces; without it, compare the model
    with them. Prints measured and predicted cycles per part of the model."""
    runs = _traced_runs()
    coefficients = COEFFICIENTS
    if "--fit" in argv:
        samples = [s for _, job, trace, _, _ in runs for s in samples_from_trace(job, trace)]
        coefficients = fit(samples, runs[0][4])
        print("COEFFICIENTS = {")
        for family, values in coefficients.items():
            print(f'    "{family}": np.array([{", ".join(f"{v:.3f}" for v in values)}]),')
        print("}")
    worst = 0.0
    for name, job, trace, cycles, config in runs:
        parts = compare(job, trace, cycles, config, coefficients)
        cells = []
        for part, (measured, predicted) in parts.items():
            error = predicted / measured - 1 if measured else 0.0
            worst = max(worst, abs(error))
            cells.append(f"{part} {measured}/{predicted} ({error:+.1%})")
        print(f"{name}: " + ", ".join(cells))
    print(f"largest error per part: {worst:.1%} (measured/predicted cycles)")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
