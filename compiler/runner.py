"""Run a model through the compiler on the functional simulator (the ``isa`` backend).

Compiles the checkpoint for a chip configuration, runs the prompt as one job and each generated
token as a decode job on the same DRAM (the KV cache carries over), and returns the same outputs
as the software backends: dequantized hidden states, logits and pooled embedding, greedy tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.funcsim import Machine, run_program
from compiler.lower import Compiler
from golden import ops
from golden.checkpoint import Checkpoint
from golden.model import Outputs
from scoville.config import ChipConfig


@dataclass
class IsaRun:
    """Outputs of the prompt job, generated tokens, and what the programs executed."""

    outputs: Outputs
    tokens: np.ndarray | None
    hidden_wide: np.ndarray
    logits_wide: np.ndarray | None
    instructions: int = 0
    counts: dict = field(default_factory=dict)


def run_isa(ckpt: Checkpoint, ids: np.ndarray, generate: int | None = None,
            config: ChipConfig | None = None) -> IsaRun:
    compiler = Compiler(ckpt, config or ChipConfig())
    ids = ckpt.check_ids(ids)
    job = compiler.job(ids)
    machine = run_program(Machine(compiler.config, job.dram), job.program_addr)
    hidden, logits = compiler.read_outputs(job, machine.dram)
    outputs = Outputs(hidden=ops.from_wide(hidden), logits=None if logits is None else ops.from_wide(logits))
    if ckpt.config.arch == "bert":
        outputs.pooled = outputs.hidden.mean(axis=0).astype(np.float32)
    run = IsaRun(outputs, None, hidden, logits, machine.executed, dict(machine.counts))
    if generate:
        tokens = []
        step_logits = outputs.logits
        dram = machine.dram
        for step in range(generate):
            token = int(np.argmax(step_logits[-1]))
            tokens.append(token)
            if step == generate - 1:
                break
            job = compiler.job(np.array([token]), len(ids) + step, dram)
            machine = run_program(Machine(compiler.config, job.dram), job.program_addr)
            dram = machine.dram
            run.instructions += machine.executed
            for name, count in machine.counts.items():
                run.counts[name] = run.counts.get(name, 0) + count
            step_logits = ops.from_wide(compiler.read_outputs(job, dram)[1])
        run.tokens = np.array(tokens, dtype=np.int64)
    return run
