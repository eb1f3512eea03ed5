"""cocotb tests of the vector unit against golden.ops, every operation, with random stalls."""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from rtl.vector.isa import Instruction, Op, lane_input_layout, output_layout, side_layout
from scoville.flow import design_params
from testbench.streams import StreamSink, StreamSource, pauses
from testbench.vector import Job, expected_beats, input_beats, random_job, side_beats


class TB:
    """Clock, reset and the four stream models around one VectorUnit."""

    def __init__(self, dut, stall: float = 0.0):
        self.dut = dut
        params = design_params()
        self.lanes = params["lanes"]
        self.head_dim = params.get("head_dim", 64)
        self.rope_theta = params.get("rope_theta", 10000.0)
        self.seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
        dut._log.info(f"seed {self.seed} (replay with SCOVILLE_SEED={self.seed})")
        self.rng = random.Random(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

        def gaps():
            return pauses(stall, self.rng) if stall else None

        self.instructions = StreamSource(dut, "c", dut.clk, Instruction.as_shape(), gaps())
        self.source = StreamSource(dut, "i", dut.clk, lane_input_layout(self.lanes), gaps())
        self.side = StreamSource(dut, "s", dut.clk, side_layout(self.lanes), gaps())
        self.sink = StreamSink(dut, "o", dut.clk, output_layout(self.lanes), gaps())

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        for model in (self.instructions, self.source, self.side, self.sink):
            cocotb.start_soon(model.run())

    def expected(self, job: Job) -> list[dict]:
        return expected_beats(job, self.lanes, self.head_dim, self.rope_theta)

    async def run(self, jobs: list[Job], timeout_cycles: int | None = None) -> int:
        """Queue every job at once, wait for all results, compare with golden; returns cycles."""
        want = []
        start = len(self.sink.received)
        beats = 0
        for job in jobs:
            self.instructions.send([job.instruction()])
            beats_in = input_beats(job, self.lanes)
            beats += len(beats_in)
            self.source.send(beats_in)
            self.side.send(side_beats(job, self.lanes))
            want.extend((job, n, beat) for n, beat in enumerate(self.expected(job)))
        limit = timeout_cycles or 20 * beats + 500
        cycles = 0
        while len(self.sink.received) - start < len(want) and cycles < limit:
            await RisingEdge(self.dut.clk)
            cycles += 1
        got = self.sink.received[start:]
        assert len(got) == len(want), (
            f"timeout: {len(got)} of {len(want)} output beats after {limit} cycles, seed {self.seed}")
        for (job, n, beat), g in zip(want, got, strict=True):
            if g != beat:
                bad = [j for j in range(self.lanes) if g["data"][j] != beat["data"][j]]
                raise AssertionError(
                    f"{job.op.name} rows={job.rows} length={job.length} fields={job.fields}: output beat {n} "
                    f"differs from golden: got {g}, want {beat} (lanes {bad}); seed {self.seed}"
                    + self._operands(job, n))
        return cycles

    def _operands(self, job: Job, n: int) -> str:
        per_row = -(-job.length // self.lanes)
        r, k = divmod(n, per_row)
        if r >= job.rows:
            return ""
        cols = slice(k * self.lanes, (k + 1) * self.lanes)
        text = f"\n  row {r} x={job.x[r, cols].tolist()}"
        for name in ("side_b", "side_m", "side_e"):
            if getattr(job, name) is not None:
                text += f" {name}={getattr(job, name)[r, cols].tolist()}"
        return text


class CycleCounter:
    def __init__(self, clk):
        self.clk, self.cycles = clk, 0

    async def run(self):
        while True:
            await RisingEdge(self.clk)
            self.cycles += 1


def lengths(lanes: int) -> list[int]:
    return sorted({1, lanes - 1 or 1, lanes, lanes + 1, 3 * lanes + 2, 37, 69})


async def random_ops(dut, ops: list[Op], stall: float, jobs_per_op: int = 6):
    tb = TB(dut, stall)
    await tb.reset()
    jobs = []
    for op in ops:
        for _ in range(jobs_per_op):
            length = tb.rng.choice(lengths(tb.lanes))
            jobs.append(random_job(op, tb.np_rng, rows=tb.rng.randint(1, 3), length=length, head_dim=tb.head_dim))
    tb.rng.shuffle(jobs)
    await tb.run(jobs)


@cocotb.test()
async def elementwise_with_stalls(dut):
    """Requant, add, mul, GELU, SiLU, exp, RoPE: random operands, odd lengths, 30% stalls everywhere."""
    await random_ops(dut, [Op.REQUANT, Op.ADD, Op.MUL, Op.GELU, Op.SILU, Op.EXP, Op.ROPE], stall=0.3)


@cocotb.test()
async def reductions_with_stalls(dut):
    """max, sum, max|x|, sum of squares, quantize_rows: random rows, odd lengths, 30% stalls."""
    await random_ops(dut, [Op.MAX, Op.SUM, Op.MAX_ABS, Op.SUM_SQUARES, Op.QUANTIZE, Op.QUANT_SCALE], stall=0.3)


@cocotb.test()
async def row_operations_with_stalls(dut):
    """softmax and softmax_exp (prefix and causal masks), RMSNorm, LayerNorm: random rows, 30% stalls."""
    await random_ops(dut, [Op.SOFTMAX, Op.SOFTMAX_EXP, Op.RMSNORM, Op.LAYERNORM], stall=0.3)


@cocotb.test()
async def corner_rows(dut):
    """All-equal rows, one huge element, all -128, all zero, INT32 extremes, length 1, for every
    row operation, back to back without stalls."""
    tb = TB(dut)
    await tb.reset()
    length = 2 * tb.lanes + 1
    rows = []
    rows.append(np.full(length, 1234))
    rows.append(np.full(length, -128))
    rows.append(np.zeros(length, dtype=np.int64))
    huge = np.ones(length, dtype=np.int64)
    huge[length // 2] = (1 << 31) - 1
    rows.append(huge)
    rows.append(np.full(length, -(1 << 31)))
    rows.append(np.where(np.arange(length) % 2, (1 << 31) - 1, -(1 << 31)))
    x = np.array(rows, dtype=np.int64)
    jobs = []
    for op in (Op.MAX, Op.SUM, Op.MAX_ABS, Op.SUM_SQUARES, Op.QUANTIZE, Op.QUANT_SCALE, Op.RMSNORM, Op.LAYERNORM):
        job = random_job(op, tb.np_rng, rows=len(rows), length=length)
        job.x = x
        jobs.append(job)
        single = random_job(op, tb.np_rng, rows=1, length=1)
        jobs.append(single)
    softmax = Job(Op.SOFTMAX, np.clip(x, -(1 << 20), 1 << 20))
    jobs += [softmax, Job(Op.SOFTMAX, x[:, :1])]
    await tb.run(jobs)


@cocotb.test()
async def exhaustive_int16(dut):
    """GELU and SiLU of every int16 value, exp of every non-positive int16 value."""
    tb = TB(dut)
    await tb.reset()
    every = np.arange(-(1 << 15), 1 << 15, dtype=np.int64)
    jobs = [Job(Op.GELU, every.reshape(-1, 1024)), Job(Op.SILU, every.reshape(-1, 1024)),
            Job(Op.EXP, every[: (1 << 15) + 1].reshape(1, -1))]
    await tb.run(jobs)


@cocotb.test()
async def throughput(dut):
    """Measures steady-state elements per cycle (no stalls): SCOVILLE_BENCH names the runs and
    SCOVILLE_BENCH_OUT the JSON file; without them, a short smoke run."""
    tb = TB(dut)
    await tb.reset()
    spec = json.loads(os.environ.get("SCOVILLE_BENCH", "[]")) or [
        [op.name, 64, 8] for op in (Op.ADD, Op.SOFTMAX, Op.LAYERNORM, Op.MAX)]
    results = {}
    for name, length, rows in spec:
        op = Op[name]
        job = random_job(op, tb.np_rng, rows=rows, length=length, head_dim=tb.head_dim)
        if op == Op.ROPE:  # RoPE rows are one head: several heads of one token
            job = random_job(op, tb.np_rng, rows=rows * length // tb.head_dim, length=tb.head_dim,
                             head_dim=tb.head_dim)
        ends: list[int] = []
        clock = CycleCounter(dut.clk)
        tb.sink.on_beat = lambda beat, ends=ends, clock=clock: ends.append(clock.cycles)
        started = time.perf_counter()
        counter = cocotb.start_soon(clock.run())
        await tb.run([job])
        counter.cancel()
        tb.sink.on_beat = None
        per_row = len(ends) // job.rows
        # steady state: from the end of the first row's output to the end of the last row's
        span = ends[-1] - ends[per_row - 1]
        elements = job.length * (job.rows - 1)
        results[f"{name}.{length}"] = {
            "elems_per_cycle": elements / span, "latency": ends[0], "rows": job.rows,
            "wall_s": time.perf_counter() - started}
        dut._log.info(f"{name} length {length}: {elements / span:.3f} elements/cycle")
    out = os.environ.get("SCOVILLE_BENCH_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(results, f)
