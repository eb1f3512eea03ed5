"""Testbench-side tile sequencer for the systolic array: runs an M x K x N GEMM through its streams.

The GEMM ``A[M, K] @ B[K, N]`` is cut into weight tiles of R x C (K and N padded with zeros to
multiples of R and C). For each N-tile, for each K-tile: the R rows of the weight tile, then the M
activation rows ``A[:, K-tile]`` with ``accumulate`` set on every K-tile but the first and ``last``
on the final row. Result rows are added into (or written over) an int32 accumulator as their flag
says, as the core's accumulator SRAM will do.

One coroutine drives all three ports, one stream beat per port per cycle, with payloads packed in
advance with numpy, so the array sees inputs valid every cycle unless a pause pattern says
otherwise (this is what the utilization figures need).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np
from cocotb.triggers import RisingEdge


def _pack_rows(rows: np.ndarray) -> list[int]:
    """int8 [n, width] -> one little-endian integer per row (element 0 in the low bits)."""
    raw = np.ascontiguousarray(rows.astype(np.int8)).tobytes()
    width = rows.shape[1]
    return [int.from_bytes(raw[i * width:(i + 1) * width], "little") for i in range(rows.shape[0])]


@dataclass
class GemmPlan:
    """The beats of one GEMM on an R x C array, in the order the array must see them."""

    rows: int
    columns: int
    m: int
    k_tiles: int
    n_tiles: int
    weight_beats: list[int]
    activation_beats: list[int]

    @classmethod
    def build(cls, a: np.ndarray, b: np.ndarray, rows: int, columns: int, weight_rows: int = 1) -> GemmPlan:
        """``weight_rows`` tile rows per weight beat (the array's), row k in the low bits."""
        m, k = a.shape
        k2, n = b.shape
        if k != k2:
            raise ValueError(f"inner dimensions differ: {a.shape} @ {b.shape}")
        k_tiles = -(-k // rows)
        n_tiles = -(-n // columns)
        a_pad = np.zeros((m, k_tiles * rows), np.int8)
        a_pad[:, :k] = a
        b_pad = np.zeros((k_tiles * rows, n_tiles * columns), np.int8)
        b_pad[:k, :n] = b
        # Activation payloads of each K-tile, reused for every N-tile.
        a_slices = [_pack_rows(a_pad[:, kt * rows:(kt + 1) * rows]) for kt in range(k_tiles)]
        accumulate_bit, last_bit = 1 << (8 * rows), 1 << (8 * rows + 1)
        weight_beats: list[int] = []
        activation_beats: list[int] = []
        for nt in range(n_tiles):
            for kt in range(k_tiles):
                tile = b_pad[kt * rows:(kt + 1) * rows, nt * columns:(nt + 1) * columns]
                weight_beats += _pack_rows(tile.reshape(rows // weight_rows, weight_rows * columns))
                flags = accumulate_bit if kt else 0
                beats = [beat | flags for beat in a_slices[kt]]
                beats[-1] |= last_bit
                activation_beats += beats
        return cls(rows, columns, m, k_tiles, n_tiles, weight_beats, activation_beats)

    @property
    def useful_macs(self) -> int:
        """MACs of the unpadded GEMM are counted by the caller; this is the padded tile count."""
        return self.m * self.k_tiles * self.n_tiles * self.rows * self.columns


@dataclass
class GemmResult:
    c: np.ndarray            # int32 [M, N]
    cycles: int              # first input beat accepted .. last result beat, inclusive
    sim_cycles: int          # every cycle the coroutine ran
    wall_seconds: float
    flag_errors: list[str]


def _pauses(probability: float, rng: random.Random):
    if not probability:
        return None
    return lambda: rng.random() < probability


async def run_gemm(dut, a: np.ndarray, b: np.ndarray, rows: int, columns: int, *,
                   rng: random.Random | None = None, weight_pause: float = 0.0,
                   activation_pause: float = 0.0, result_pause: float = 0.0,
                   timeout: int = 2000, weight_rows: int = 1) -> GemmResult:
    """Run ``a @ b`` through the array under ``dut`` (reset and clocked already).

    ``*_pause`` is the probability that a port idles in a given cycle (source not valid, sink
    not ready). Raises ``TimeoutError`` when nothing moves for ``timeout`` cycles.
    """
    rng = rng or random.Random(0)
    plan = GemmPlan.build(a, b, rows, columns, weight_rows)
    m, n = a.shape[0], b.shape[1]
    w_pause = _pauses(weight_pause, rng)
    a_pause = _pauses(activation_pause, rng)
    r_pause = _pauses(result_pause, rng)

    clk = dut.clk
    w_valid, w_ready, w_payload = dut.weights__valid, dut.weights__ready, dut.weights__payload
    a_valid, a_ready, a_payload = dut.activations__valid, dut.activations__ready, dut.activations__payload
    r_valid, r_ready, r_payload = dut.results__valid, dut.results__ready, dut.results__payload

    weights, activations = plan.weight_beats, plan.activation_beats
    total_results = len(activations)
    wi = ai = 0
    results: list[int] = []
    w_driving = a_driving = r_taking = False
    cycle = 0
    first_cycle = last_cycle = None
    idle_cycles = 0
    w_valid.value = 0
    a_valid.value = 0
    r_ready.value = 0
    start = time.perf_counter()
    while len(results) < total_results:
        await RisingEdge(clk)
        cycle += 1
        progressed = False
        # Handshakes of the cycle this edge ends.
        if w_driving and w_ready.value:
            wi += 1
            w_driving = False
            progressed = True
            if first_cycle is None:
                first_cycle = cycle
        if a_driving and a_ready.value:
            ai += 1
            a_driving = False
            progressed = True
            if first_cycle is None:
                first_cycle = cycle
        if r_taking and r_valid.value:
            results.append(r_payload.value.to_unsigned())
            last_cycle = cycle
            progressed = True
        # What the next cycle offers.
        if not w_driving:
            if wi < len(weights) and not (w_pause and w_pause()):
                w_payload.value = weights[wi]
                w_valid.value = 1
                w_driving = True
            else:
                w_valid.value = 0
        if not a_driving:
            if ai < len(activations) and not (a_pause and a_pause()):
                a_payload.value = activations[ai]
                a_valid.value = 1
                a_driving = True
            else:
                a_valid.value = 0
        r_taking = not (r_pause and r_pause())
        r_ready.value = int(r_taking)
        idle_cycles = 0 if progressed else idle_cycles + 1
        if idle_cycles > timeout:
            raise TimeoutError(f"no progress for {timeout} cycles: {wi}/{len(weights)} weight beats, "
                               f"{ai}/{len(activations)} activation rows, "
                               f"{len(results)}/{total_results} result rows")
    wall = time.perf_counter() - start
    w_valid.value = 0
    a_valid.value = 0
    r_ready.value = 0

    c, flag_errors = _accumulate(plan, results)
    return GemmResult(c[:m, :n], last_cycle - first_cycle + 1, cycle, wall, flag_errors)


def _accumulate(plan: GemmPlan, results: list[int]) -> tuple[np.ndarray, list[str]]:
    """Apply result rows to an int32 accumulator by their flags; check the flags on the way."""
    columns, m = plan.columns, plan.m
    data_bytes = 4 * columns
    mask = (1 << (32 * columns)) - 1
    raw = b"".join((beat & mask).to_bytes(data_bytes, "little") for beat in results)
    rows = np.frombuffer(raw, dtype="<i4").reshape(len(results), columns).astype(np.int64)
    accumulate = np.array([(beat >> (32 * columns)) & 1 for beat in results], dtype=bool)
    last = np.array([(beat >> (32 * columns + 1)) & 1 for beat in results], dtype=bool)
    tiles = plan.n_tiles * plan.k_tiles
    want_accumulate = np.repeat(np.arange(tiles) % plan.k_tiles != 0, m)
    want_last = np.tile(np.arange(m) == m - 1, tiles)
    errors = []
    if (bad := np.flatnonzero(accumulate != want_accumulate)).size:
        errors.append(f"accumulate flag wrong on result row {bad[0]} ({bad.size} rows)")
    if (bad := np.flatnonzero(last != want_last)).size:
        errors.append(f"last flag wrong on result row {bad[0]} ({bad.size} rows)")
    out = np.zeros((m, plan.n_tiles * columns), np.int64)
    blocks = rows.reshape(plan.n_tiles, plan.k_tiles, m, columns)
    acc_blocks = accumulate.reshape(plan.n_tiles, plan.k_tiles, m)
    for nt in range(plan.n_tiles):
        target = out[:, nt * columns:(nt + 1) * columns]
        for kt in range(plan.k_tiles):
            keep = acc_blocks[nt, kt][:, None]
            target[:] = np.where(keep, target, 0) + blocks[nt, kt]
    # int32 wrap-around, as a 32-bit accumulator SRAM would do.
    return (out & 0xFFFFFFFF).astype(np.uint32).view(np.int32), errors
