"""cocotb side of the ``rtl`` backend: runs compiled jobs on the simulated chip.

The host (:mod:`compiler.rtl_runner`) passes a job description in ``SCOVILLE_RUN`` (JSON: the
checkpoint directory, the prompt ids, how many tokens to generate, the chip configuration, the
output file). This process compiles the checkpoint, writes the DRAM image through the DRAM
model's backdoor, sets the job window and starts the core; between start and finish no Python
touches the data. It then reads the hidden states and logits back, picks the next token (greedy)
and runs the decode job for it on the same DRAM, so the KV cache the chip wrote carries over.
Outputs, cycle counts and the matrix engine's counters go to an ``.npz`` file.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, ValueChange

from compiler.lower import Compiler
from golden import ops
from golden.checkpoint import load_checkpoint
from rtl.core.controller import ErrorCode
from scoville.config import ChipConfig
from scoville.isa import INSTRUCTION_BYTES


class Chip:
    """Backdoor access to the DRAM model and the host's view of the core."""

    def __init__(self, dut, word_bytes: int):
        self.dut, self.word_bytes = dut, word_bytes
        self.storage = dut.dram.storage.mem  # the Verilog storage array of the DRAM model

    def write(self, image: np.ndarray, start: int = 0, end: int | None = None, skip_zero: bool = False) -> None:
        w = self.word_bytes
        end = len(image) if end is None else end
        first, last = start // w, -(-end // w)
        words = image[first * w:last * w].reshape(-1, w)
        indices = np.flatnonzero(words.any(axis=1)) if skip_zero else np.arange(len(words))
        for n in indices:
            self.storage[first + int(n)].value = int.from_bytes(words[n].tobytes(), "little")

    def read(self, start: int, nbytes: int) -> np.ndarray:
        w = self.word_bytes
        first, last = start // w, -(-(start + nbytes) // w)
        raw = b"".join(int(self.storage[n].value).to_bytes(w, "little") for n in range(first, last))
        offset = start - first * w
        return np.frombuffer(raw[offset:offset + nbytes], dtype=np.uint8).copy()

    async def run(self, program_addr: int) -> dict:
        dut = self.dut
        while int(dut.busy.value):
            await RisingEdge(dut.clk)
        cycles0 = int(dut.cycles.value)
        dut.program_addr.value = program_addr
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        # no Python per cycle: wake on completion or on an error
        while not (int(dut.finished.value) or int(dut.error.value)):
            await First(RisingEdge(dut.finished), ValueChange(dut.error))
        await ClockCycles(dut.clk, 2)
        error = int(dut.error.value)
        return {"error": error, "error_addr": int(dut.error_addr.value),
                "cycles": int(dut.cycles.value) - cycles0,
                # a start clears the units, their counters included
                "matrix_busy": int(dut.matrix_counters.value) & 0xFFFFFFFF}


@cocotb.test()
async def run_jobs(dut):
    spec = json.loads(os.environ["SCOVILLE_RUN"])
    config = ChipConfig(**spec["config"])
    ckpt = load_checkpoint(spec["checkpoint"])
    compiler = Compiler(ckpt, config)
    ids = np.asarray(spec["ids"], dtype=np.int64)
    chip = Chip(dut, config.bus_bytes)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.latency.value = spec.get("latency", 20)
    dut.beat_interval.value = 1
    dut.window_base.value = 0
    dut.window_limit.value = config.dram_bytes
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    job = compiler.job(ids)
    scratch = job.dram.copy()  # the host's copy, for the programs and ids of later jobs
    chip.write(job.dram, skip_zero=True)
    await RisingEdge(dut.clk)
    results = {"cycles": [], "matrix_busy": [], "instructions": [], "wall": []}

    async def execute(job, phase: str) -> None:
        began = time.perf_counter()
        status = await chip.run(job.program_addr)
        if status["error"]:
            raise RuntimeError(f"{phase}: the core stopped with {ErrorCode(status['error']).name} at "
                               f"0x{status['error_addr']:x}")
        results["cycles"].append(status["cycles"])
        results["matrix_busy"].append(status["matrix_busy"])
        results["instructions"].append(job.instructions)
        results["wall"].append(time.perf_counter() - began)
        dut._log.info(f"{phase}: {job.tokens} tokens, {job.instructions} instructions, {status['cycles']} cycles, "
                      f"{time.perf_counter() - began:.1f} s")

    def outputs(job) -> tuple[np.ndarray, np.ndarray | None]:
        t, h = job.tokens, job.hidden_size
        hidden = chip.read(job.hidden_addr, 4 * t * h).view(np.int32).reshape(t, h)
        logits = None
        if job.logits_addr is not None:
            logits = chip.read(job.logits_addr, 4 * t * job.vocab_size).view(np.int32).reshape(t, job.vocab_size)
        return hidden, logits

    await execute(job, "prefill")
    hidden, logits = outputs(job)
    saved = {"hidden_wide": hidden, "prompt_tokens": np.int64(len(ids))}
    if logits is not None:
        saved["logits_wide"] = logits
    tokens = []
    for step in range(spec.get("generate") or 0):
        token = int(np.argmax(ops.from_wide(logits)[-1]))
        tokens.append(token)
        if step == spec["generate"] - 1:
            break
        job = compiler.job(np.array([token]), len(ids) + step, scratch)
        chip.write(scratch, job.program_addr, job.program_addr + job.instructions * INSTRUCTION_BYTES)
        chip.write(scratch, compiler.ids_addr, compiler.ids_addr + 12 * job.tokens)
        await execute(job, f"decode {step + 1}")
        _, logits = outputs(job)
    saved["tokens"] = np.array(tokens, dtype=np.int64)
    for name, values in results.items():
        saved[name] = np.array(values)
    np.savez(spec["out"], **saved)
