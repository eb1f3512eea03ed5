"""cocotb tests of the requantizer against golden.ops.requantize."""

import os
import random

import cocotb
import numpy as np
from amaranth.hdl import signed
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from golden import ops
from rtl.vector.requant import requant_input_layout
from scoville.flow import design_params
from testbench.streams import StreamSink, StreamSource, pauses


class TB:
    """Clock, reset and stream models around one Requantizer."""

    def __init__(self, dut, stall: float):
        self.dut = dut
        self.params = design_params()
        self.lanes, self.out_bits = self.params["lanes"], self.params["out_bits"]
        self.seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
        dut._log.info(f"seed {self.seed} (replay with SCOVILLE_SEED={self.seed})")
        self.rng = random.Random(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.source = StreamSource(dut, "i", dut.clk, requant_input_layout(self.lanes),
                                   pauses(stall, self.rng) if stall else None)
        self.sink = StreamSink(dut, "o", dut.clk, data.ArrayLayout(signed(self.out_bits), self.lanes),
                               pauses(stall, self.rng) if stall else None)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        cocotb.start_soon(self.source.run())
        cocotb.start_soon(self.sink.run())

    async def check(self, acc, mult, exp, bias, timeout_cycles=None):
        rows = [{"acc": acc[r].tolist(), "mult": mult[r].tolist(), "exp": exp[r].tolist(),
                 "bias": bias[r].tolist()} for r in range(acc.shape[0])]
        start = len(self.sink.received)
        self.source.send(rows)
        limit = timeout_cycles or 20 * len(rows) + 100
        for _ in range(limit):
            if len(self.sink.received) - start >= len(rows):
                break
            await RisingEdge(self.dut.clk)
        got = np.array(self.sink.received[start:], dtype=np.int64)
        assert len(got) == len(rows), f"timeout: {len(got)} of {len(rows)} rows after {limit} cycles"
        want = ops.requantize(acc, mult, exp, bias, self.out_bits)
        bad = np.argwhere(got != want)
        if len(bad):
            r, c = bad[0]
            raise AssertionError(
                f"first mismatch at row {r} lane {c}: got {got[r, c]}, golden {want[r, c]} "
                f"(acc={acc[r, c]} mult={mult[r, c]} exp={exp[r, c]} bias={bias[r, c]}); "
                f"{len(bad)} mismatches, seed {self.seed}")


def random_operands(rng: np.random.Generator, rows: int, lanes: int):
    acc = rng.integers(-(1 << 31), 1 << 31, size=(rows, lanes), dtype=np.int64)
    # mix magnitudes so every shift range is exercised
    acc >>= rng.integers(0, 31, size=(rows, lanes))
    mult = rng.integers(-(1 << 15) + 1, 1 << 15, size=(rows, lanes), dtype=np.int64)
    exp = rng.integers(-70, 16, size=(rows, lanes), dtype=np.int64)
    bias = rng.integers(-(1 << 31), 1 << 31, size=(rows, lanes), dtype=np.int64)
    bias >>= rng.integers(0, 31, size=(rows, lanes))
    return acc, mult, exp, bias


@cocotb.test()
async def random_rows_with_stalls(dut):
    """Random operands over every shift range, 30% random idle cycles on both ports."""
    tb = TB(dut, stall=0.3)
    await tb.reset()
    await tb.check(*random_operands(tb.np_rng, 400, tb.lanes))


@cocotb.test()
async def corners_back_to_back(dut):
    """Extremes (INT32 min/max accumulators, largest multipliers, exponent edges) at full rate."""
    tb = TB(dut, stall=0.0)
    await tb.reset()
    values = np.array([-(1 << 31), (1 << 31) - 1, -1, 0, 1], dtype=np.int64)
    mults = np.array([-(1 << 15) + 1, (1 << 15) - 1, 1, -1, 0], dtype=np.int64)
    exps = np.array([-70, -63, -48, -47, -1, 0, 1, 15], dtype=np.int64)
    biases = np.array([-(1 << 31), (1 << 31) - 1, 0, 12345], dtype=np.int64)
    grid = np.array(np.meshgrid(values, mults, exps, biases)).reshape(4, -1).T
    pad = (-len(grid)) % tb.lanes
    grid = np.concatenate([grid, grid[:pad]])
    rows = grid.reshape(-1, tb.lanes, 4)
    await tb.check(rows[..., 0], rows[..., 1], rows[..., 2], rows[..., 3])
    # full rate: one row per cycle once the pipeline is full
    assert tb.source.sent == len(rows)
