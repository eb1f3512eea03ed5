"""cocotb tests of the systolic array (rtl.matrix.systolic) against golden.ops.matmul.

Parameters come from the pytest entry point (tests/test_matrix.py) through ``design_params()``:
``rows``, ``columns``; the benchmark adds ``SCOVILLE_GEMM``, ``SCOVILLE_BUBBLES`` and
``SCOVILLE_BENCH_OUT`` in the environment.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from golden import ops
from scoville.flow import design_params
from testbench.gemm import GemmResult, run_gemm


class TB:
    """Clock and reset around one SystolicArray; runs GEMMs through testbench.gemm."""

    def __init__(self, dut):
        self.dut = dut
        params = design_params()
        self.rows, self.columns = params["rows"], params["columns"]
        self.weight_rows = params.get("weight_rows", 1)
        self.seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
        dut._log.info(f"{self.rows}x{self.columns} array, seed {self.seed} "
                      f"(replay with SCOVILLE_SEED={self.seed})")
        self.rng = random.Random(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self):
        self.dut.weights__valid.value = 0
        self.dut.activations__valid.value = 0
        self.dut.results__ready.value = 0
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 1)

    async def gemm(self, a: np.ndarray, b: np.ndarray, stall: float = 0.0, **kwargs) -> GemmResult:
        """Run ``a @ b`` and compare the whole result with golden.ops.matmul."""
        kwargs.setdefault("weight_rows", self.weight_rows)
        result = await run_gemm(self.dut, a, b, self.rows, self.columns, rng=self.rng,
                                weight_pause=stall, activation_pause=stall, result_pause=stall, **kwargs)
        want = ops.matmul(a, b)
        context = f"GEMM {a.shape[0]}x{a.shape[1]}x{b.shape[1]} on {self.rows}x{self.columns}, seed {self.seed}"
        assert not result.flag_errors, f"{context}: {'; '.join(result.flag_errors)}"
        bad = np.argwhere(result.c != want)
        if len(bad):
            i, j = bad[0]
            raise AssertionError(f"{context}: first mismatch at C[{i}, {j}]: got {result.c[i, j]}, "
                                 f"golden {want[i, j]}; {len(bad)} of {want.size} elements differ")
        return result

    def counters(self) -> dict[str, int]:
        raw = self.dut.counters.value.to_unsigned()
        names = ("busy", "stall_weights", "stall_output", "idle")
        return {name: (raw >> (32 * n)) & 0xFFFFFFFF for n, name in enumerate(names)}

    def random_int8(self, *shape) -> np.ndarray:
        return self.np_rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)


def utilization(m: int, k: int, n: int, rows: int, columns: int, cycles: int) -> float:
    """Useful MACs (of the unpadded GEMM) per MAC slot of the cycles counted."""
    return m * k * n / (cycles * rows * columns)


@cocotb.test()
async def small_gemm(dut):
    """One tile, then a few tiles with edges, no stalls; the busy counter counts the rows."""
    tb = TB(dut)
    await tb.reset()
    await tb.gemm(tb.random_int8(3, tb.rows), tb.random_int8(tb.rows, tb.columns))
    a, b = tb.random_int8(5, 2 * tb.rows + 1), tb.random_int8(2 * tb.rows + 1, tb.columns + 1)
    await tb.gemm(a, b)
    rows_sent = 3 + 5 * 3 * 2
    assert tb.counters()["busy"] == rows_sent, f"busy counter {tb.counters()} != {rows_sent} rows"


@cocotb.test()
async def random_shapes_with_stalls(dut):
    """Random (odd) shapes, 30% random idle cycles on weights, activations and results."""
    tb = TB(dut)
    await tb.reset()
    limit = int(os.environ.get("SCOVILLE_MAX_DIM", "40"))
    shapes = [(1, 1, 1), (1, tb.rows + 1, 1), (2, 1, tb.columns * 2 + 1)]
    shapes += [tuple(tb.rng.randint(1, limit) for _ in range(3)) for _ in range(6)]
    for m, k, n in shapes:
        dut._log.info(f"GEMM {m}x{k}x{n}")
        await tb.gemm(tb.random_int8(m, k), tb.random_int8(k, n), stall=0.3)


@cocotb.test()
async def extreme_values(dut):
    """All -128, all 127, alternating signs, and a long K of -128 * -128 (sum 2**14 * K)."""
    tb = TB(dut)
    await tb.reset()
    m, k, n = 7, 3 * tb.rows + 1, 2 * tb.columns + 1
    for value_a, value_b in [(-128, -128), (127, 127), (-128, 127), (127, -128)]:
        await tb.gemm(np.full((m, k), value_a, np.int8), np.full((k, n), value_b, np.int8))
    alternating_a = np.where(np.indices((m, k)).sum(0) % 2, 127, -128).astype(np.int8)
    alternating_b = np.where(np.indices((k, n)).sum(0) % 2, -128, 127).astype(np.int8)
    await tb.gemm(alternating_a, alternating_b, stall=0.2)
    long_k = 4096
    result = await tb.gemm(np.full((2, long_k), -128, np.int8), np.full((long_k, 3), -128, np.int8))
    assert result.c[0, 0] == 16384 * long_k


@cocotb.test()
async def weight_reload_between_short_tiles(dut):
    """M = 1 and 2: weight loads follow each other with no drain between tiles (the weight rows
    reach the columns with the activations' skew), so a one-row tile costs its weight beats (R,
    or R / 2 with two rows a beat)."""
    tb = TB(dut)
    await tb.reset()
    for m in (1, 2):
        k, n = 8 * tb.rows, 6 * tb.columns
        result = await tb.gemm(tb.random_int8(m, k), tb.random_int8(k, n))
        tiles = 48
        # a bank is free the cycle after its last row; the next tile's R rows load and count
        # as loaded 2 cycles later, while the other bank's tile computes: two tiles take the
        # longer of 2R, 2M and R + M + 1 cycles. The first load and the last row's way through
        # the array come once. (With a drain of C cycles, 8x8 at M = 1 took 9 cycles a tile.)
        # With two rows a beat a tile's R / 2 beats load in R / 2 cycles, but a bank takes its
        # first beat max(R / 2 - 2, 0) cycles after the cycle that frees it (so each row is still
        # rewritten behind the last activation that reads it): a bank turns round in
        # max(R - 1, R / 2 + 1) + M cycles, and the other bank loads meanwhile.
        beats = tb.rows // tb.weight_rows
        turn = tb.rows + 1 if tb.weight_rows == 1 else max(tb.rows - 1, tb.rows // 2 + 1)
        per_two_tiles = max(2 * beats, 2 * m, turn + m)
        bound = tiles * per_two_tiles // 2 + 2 * (tb.rows + tb.columns) + 8
        assert result.cycles <= bound, f"M={m}: {result.cycles} cycles for {tiles} tiles > {bound}"


@cocotb.test()
async def utilization_bar(dut):
    """Inputs always valid, outputs always ready: utilization >= 0.98 (cycles are deterministic)."""
    tb = TB(dut)
    await tb.reset()
    # Default: about 128x64x64, rounded so that no tile is padded (padding is not a stall).
    default = f"128x{-(-64 // tb.rows) * tb.rows}x{-(-64 // tb.columns) * tb.columns}"
    m, k, n = (int(x) for x in os.environ.get("SCOVILLE_GEMM", default).split("x"))
    result = await tb.gemm(tb.random_int8(m, k), tb.random_int8(k, n))
    util = utilization(m, k, n, tb.rows, tb.columns, result.cycles)
    dut._log.info(f"{m}x{k}x{n} on {tb.rows}x{tb.columns}: {result.cycles} cycles, utilization {util:.4f}")
    counters = tb.counters()
    # Only the first weight tile may hold activations back (R beats, write register, flag).
    assert counters["stall_weights"] <= tb.rows + 2 and counters["stall_output"] == 0, counters
    assert util >= 0.98, f"utilization {util:.4f} < 0.98 ({result.cycles} cycles)"


@cocotb.test()
async def bench(dut):
    """The benchmark: one GEMM (SCOVILLE_GEMM=MxKxN), optional input bubbles; writes JSON figures."""
    out = os.environ.get("SCOVILLE_BENCH_OUT")
    if not out:
        return  # only run by scripts.bench_matrix
    tb = TB(dut)
    await tb.reset()
    m, k, n = (int(x) for x in os.environ["SCOVILLE_GEMM"].split("x"))
    bubbles = float(os.environ.get("SCOVILLE_BUBBLES", "0"))
    a, b = tb.random_int8(m, k), tb.random_int8(k, n)
    result = await run_gemm(dut, a, b, tb.rows, tb.columns, rng=tb.rng, weight_rows=tb.weight_rows,
                            weight_pause=bubbles, activation_pause=bubbles)
    assert np.array_equal(result.c, ops.matmul(a, b)), "benchmark GEMM result differs from golden"
    figures = {
        "cycles": result.cycles,
        "utilization": utilization(m, k, n, tb.rows, tb.columns, result.cycles),
        "cycles_per_s": result.sim_cycles / result.wall_seconds,
        "counters": tb.counters(),
    }
    with open(out, "w") as f:
        json.dump(figures, f)
