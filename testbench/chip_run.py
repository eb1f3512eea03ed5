"""cocotb side of the ``rtl`` backend: runs compiled jobs on the simulated chip.

The host (:mod:`compiler.rtl_runner`) passes a job description in ``SCOVILLE_RUN`` (JSON: the
checkpoint directory, the prompt ids, how many tokens to generate, the chip configuration, the
prompt job the host compiled (a pickled :class:`compiler.lower.Job`), the output file). This
process writes the job's DRAM image through the DRAM model's backdoor, sets the job window and
starts the core through its AXI4-Lite registers, and sleeps until the chip's interrupt: between
start and finish no Python touches the data. It then reads the hidden states and logits back,
picks the next token (greedy) and runs the decode job for it (compiling the checkpoint for those)
on the same DRAM, so the KV cache the chip wrote carries over.
Outputs, cycle counts and the performance counters (matrix rows, and each unit's busy, waiting
and stalled cycles) go to an ``.npz`` file. With ``"trace": true`` in the spec, :class:`Tracer`
also records when each instruction was released and finished (a Python callback per event, not
per cycle), for timelines and per-section profiles (:mod:`compiler.profile`).
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge, ReadWrite, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from compiler.lower import Compiler
from golden import ops
from golden.checkpoint import load_checkpoint
from rtl.chip import CSR_PAGE_BITS
from rtl.core.controller import QUEUES, ErrorCode
from rtl.core.csr import BUSY, DONE, IRQ_ENABLE, REGISTERS, START, UNIT_COUNTERS
from rtl.sim.dram import LOAD_FILE
from scoville.config import ChipConfig
from scoville.isa import INSTRUCTION_BYTES

#: The simulated clock period (any value: only cycles are reported).
CLOCK_NS = 10
#: How long a core may stay busy after a job before :meth:`Chip.start` gives up: far longer than
#: its memory port takes to drain (a few bursts), far shorter than a hang takes to notice.
DRAIN_CYCLES = 1 << 16


class DramBackdoor:
    """Reads and writes of the DRAM model's contents without simulated time (``dram.storage.mem``,
    the model's Verilog storage array)."""

    def __init__(self, dut, word_bytes: int):
        self.dut, self.word_bytes = dut, word_bytes
        self.storage = dut.dram.storage.mem

    def write(self, image: np.ndarray, start: int = 0, end: int | None = None) -> None:
        w = self.word_bytes
        end = len(image) if end is None else end
        first, last = start // w, -(-end // w)
        words = image[first * w:last * w].reshape(-1, w)
        for n in range(len(words)):
            self.storage[first + int(n)].value = int.from_bytes(words[n].tobytes(), "little")

    async def load(self, image: np.ndarray) -> None:
        """The nonzero words of ``image`` (the DRAM from address 0, all zero before) through one
        file that the storage reads itself (:data:`rtl.sim.dram.LOAD_FILE`, ``$readmemh``) instead
        of a simulator call a word: a model's weights in seconds, not minutes. Takes no simulated
        time."""
        w = self.word_bytes
        words = image[:len(image) // w * w].reshape(-1, w)
        used = np.flatnonzero(words.any(axis=1))
        # runs of nonzero words: each an ``@`` address, then its words as big-endian hex
        breaks = np.flatnonzero(np.diff(used) != 1) + 1
        with open(LOAD_FILE, "wb") as out:
            for run in np.split(used, breaks) if len(used) else []:
                digits = words[run[0]:run[-1] + 1, ::-1].tobytes().hex().encode()
                out.write(b"@%x\n" % run[0])
                out.write(b"\n".join(np.frombuffer(digits, dtype=f"S{2 * w}").tolist()) + b"\n")
        load = self.dut.dram.storage.load
        load.value = 1
        await ReadWrite()
        load.value = 0
        await ReadWrite()
        os.remove(LOAD_FILE)

    def read(self, start: int, nbytes: int) -> np.ndarray:
        w = self.word_bytes
        first, last = start // w, -(-(start + nbytes) // w)
        raw = b"".join(int(self.storage[n].value).to_bytes(w, "little") for n in range(first, last))
        offset = start - first * w
        return np.frombuffer(raw[offset:offset + nbytes], dtype=np.uint8).copy()


class Chip(DramBackdoor):
    """The host's view of :class:`rtl.sim.core_system.ChipWithDram`: the DRAM backdoor, and core
    ``core``'s registers (:mod:`rtl.core.csr`) through cocotbext-axi's AXI4-Lite master.
    :meth:`core` gives the view of another core, sharing the master."""

    def __init__(self, dut, word_bytes: int, core: int = 0, axil: AxiLiteMaster | None = None):
        super().__init__(dut, word_bytes)
        self.page = core << CSR_PAGE_BITS
        self.axil = axil or AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"), dut.clk,
                                          dut.rst)

    def core(self, n: int) -> Chip:
        """The same chip seen through core ``n``'s registers."""
        return Chip(self.dut, self.word_bytes, n, self.axil)

    async def reset(self, latency: int = 20) -> None:
        """Clock, reset and the DRAM model's timing."""
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        dut.rst.value = 1
        dut.latency.value = latency
        dut.beat_interval.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        # the chip's reset is the pin's, registered (rtl.sim.core_system.ChipWithDram)
        await ClockCycles(dut.clk, 2)

    async def read_csr(self, name: str) -> int:
        return await self.axil.read_dword(self.page + REGISTERS[name])

    async def write_csr(self, name: str, value: int) -> None:
        await self.axil.write_dword(self.page + REGISTERS[name], value)

    async def start(self, program_addr: int, window: tuple[int, int], on_start=None) -> None:
        """Set the window and program address and start the job, interrupt enabled (once the core
        is no longer busy: after an error its memory port drains first). ``on_start`` is called
        just before the start is written."""
        waited = 0
        while await self.read_csr("STATUS") & BUSY:
            if waited >= DRAIN_CYCLES:
                raise RuntimeError(f"the core is still busy {waited} cycles after its last job ended: a DMA "
                                   "transfer or a program fetch never completed, so the next job cannot start")
            await ClockCycles(self.dut.clk, 16)
            waited += 16
        await self.write_csr("WINDOW_BASE", window[0])
        await self.write_csr("WINDOW_LIMIT", window[1])
        await self.write_csr("PROGRAM_ADDR", program_addr)
        if on_start is not None:
            on_start()
        await self.write_csr("CONTROL", START | IRQ_ENABLE)

    async def wait(self) -> dict:
        """Sleep until the interrupt (no Python per cycle), then read the job's status and counters
        and acknowledge ``DONE``."""
        dut = self.dut
        if int(dut.irq.value):  # the interrupt of the previous job's error, until the start clears it
            await FallingEdge(dut.irq)
        await RisingEdge(dut.irq)
        status = await self.read_csr("STATUS")
        result = {"status": status, "error": await self.read_csr("ERROR_CODE"),
                  "error_addr": await self.read_csr("ERROR_ADDR")}
        low = await self.read_csr("CYCLES_LO")
        result["cycles"] = low | await self.read_csr("CYCLES_HI") << 32
        result["matrix_rows"] = await self.read_csr("MATRIX_ROWS")
        for unit in QUEUES:
            for counter in UNIT_COUNTERS:
                name = f"{unit.upper()}_{counter.upper()}"
                result[name.lower()] = await self.read_csr(name)
        if status & DONE:
            await self.write_csr("STATUS", DONE)
        return result

    async def run(self, program_addr: int, window: tuple[int, int]) -> dict:
        await self.start(program_addr, window)
        return await self.wait()


class Tracer:
    """Release and completion cycles of every instruction of core 0, per queue, from the trace
    ports of :class:`rtl.sim.core_system.ChipWithDram` (toggles, so no event is missed)."""

    def __init__(self, dut):
        self.dut = dut
        self.issue = {q: [] for q in QUEUES}
        self.done = {q: [] for q in QUEUES}
        self.stalled = {q: [] for q in QUEUES}   # the unit's stalled cycles in this job, at each completion
        self.origin = 0
        self.stall_base = [0] * len(QUEUES)
        cocotb.start_soon(self._origin(dut.trace_start))
        cocotb.start_soon(self._watch(dut.trace_issue, self.issue))
        cocotb.start_soon(self._watch(dut.trace_done, self.done, stalls=True))

    def now(self) -> int:
        return get_sim_time("ns") // CLOCK_NS

    def begin(self) -> None:
        """A job is about to start: clear the events."""
        for store in (self.issue, self.done, self.stalled):
            for events in store.values():
                events.clear()

    async def _origin(self, signal) -> None:
        # cycles count from the start pulse, as the core's CYCLES counter does (the trace ports
        # are all registered alike, so the one-cycle delay cancels)
        while True:
            await signal.value_change
            self.origin = self.now()
            self.stall_base = self._stall_counts()

    def _stall_counts(self) -> list[int]:
        counts = int(self.dut.trace_stalled.value)
        return [counts >> (32 * n) & 0xFFFFFFFF for n in range(len(QUEUES))]

    async def _watch(self, signal, store: dict, stalls: bool = False) -> None:
        previous = int(signal.value)
        while True:
            await signal.value_change
            value = int(signal.value)
            cycle = self.now() - self.origin
            for n, queue in enumerate(QUEUES):
                if (value ^ previous) >> n & 1:
                    store[queue].append(cycle)
                    if stalls:
                        self.stalled[queue].append(self._stall_counts()[n] - self.stall_base[n])
            previous = value

    def job(self) -> dict[str, np.ndarray]:
        """This job's events: ``<queue>_issue``, ``<queue>_done`` and ``<queue>_stalled`` arrays."""
        out = {}
        for queue in QUEUES:
            out[f"{queue}_issue"] = np.array(self.issue[queue], dtype=np.int64)
            out[f"{queue}_done"] = np.array(self.done[queue], dtype=np.int64)
            out[f"{queue}_stalled"] = np.array(self.stalled[queue], dtype=np.int64)
        return out


@cocotb.test()
async def run_jobs(dut):
    spec = json.loads(os.environ["SCOVILLE_RUN"])
    config = ChipConfig(**spec["config"])
    ids = np.asarray(spec["ids"], dtype=np.int64)
    chip = Chip(dut, config.bus_bytes)
    await chip.reset(spec.get("latency", 20))

    job = pickle.loads(Path(spec["prompt"]).read_bytes())   # compiled by the host
    compiler = None   # for the decode jobs
    scratch = job.dram.copy()  # the host's copy, for the programs and ids of later jobs
    await chip.load(job.dram)
    await RisingEdge(dut.clk)
    results = {"cycles": [], "matrix_busy": [], "units": [], "instructions": [], "wall": []}
    tracer = Tracer(dut) if spec.get("trace") else None
    traces = []

    async def execute(job, phase: str) -> None:
        began = time.perf_counter()
        await chip.start(job.program_addr, (0, config.dram_bytes), tracer.begin if tracer is not None else None)
        status = await chip.wait()
        if tracer is not None:
            traces.append(tracer.job())
        if status["error"]:
            raise RuntimeError(f"{phase}: the core stopped with {ErrorCode(status['error']).name} at "
                               f"0x{status['error_addr']:x}")
        results["cycles"].append(status["cycles"])
        results["matrix_busy"].append(status["matrix_rows"])
        results["units"].append([[status[f"{unit}_{counter}"] for counter in UNIT_COUNTERS] for unit in QUEUES])
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
        compiler = compiler or Compiler(load_checkpoint(spec["checkpoint"]), config)
        job = compiler.job(np.array([token]), len(ids) + step, scratch)
        chip.write(scratch, job.program_addr, job.program_addr + job.words * INSTRUCTION_BYTES)
        chip.write(scratch, compiler.ids_addr, compiler.ids_addr + 12 * job.tokens)
        await execute(job, f"decode {step + 1}")
        _, logits = outputs(job)
    saved["tokens"] = np.array(tokens, dtype=np.int64)
    for name, values in results.items():
        saved[name] = np.array(values)
    for n, trace in enumerate(traces):
        saved.update({f"trace{n}_{key}": value for key, value in trace.items()})
    np.savez(spec["out"], **saved)
