"""cocotb tests of the chip (a core: controller, transfer unit, DMA, SRAMs, matrix and vector
units; its network interface, the mesh and the memory tile; the host registers) running programs
from the DRAM model, compared byte for byte with the functional simulator
(:mod:`compiler.funcsim`, the ISA's reference semantics), and its fault handling."""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout

from compiler.funcsim import Machine, run_program
from compiler.loops import fold
from compiler.perfmodel import ATTN_SCALE_ROW, COEFFICIENTS, SCAN_FIXED, features, rope_chunk_cycles
from golden import ops
from rtl.chip import CSR_PAGE_BITS
from rtl.core.controller import ErrorCode
from rtl.core.csr import ABORT, BUSY, DONE, ID_VALUE, IRQ_ENABLE
from scoville import numerics as nx
from scoville.config import ChipConfig
from scoville.flow import design_params
from scoville.isa import Flag, Opcode, encode, in_program_order
from testbench.chip_run import CLOCK_NS, Chip

PROGRAM_ADDR = 0x0


class TB:
    """A chip (:class:`rtl.sim.core_system.ChipWithDram`) seen from the host: DRAM backdoor, and
    jobs started and awaited through core 0's registers and the interrupt."""

    def __init__(self, dut):
        self.dut = dut
        self.params = design_params()
        self.config = ChipConfig(**{k: v for k, v in self.params.items() if k not in ("dram_bytes", "watchdog")})
        self.dram_bytes = self.params["dram_bytes"]
        self.seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
        dut._log.info(f"seed {self.seed} (replay with SCOVILLE_SEED={self.seed})")
        self.rng = random.Random(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        self.chip = Chip(dut, self.config.bus_bytes)
        self.window = (0, self.dram_bytes)

    async def reset(self, latency: int = 8) -> None:
        await self.chip.reset(latency)

    def set_window(self, base: int, limit: int) -> None:
        self.window = (base, limit)

    def write_dram(self, image: np.ndarray) -> None:
        self.chip.write(image)

    def read_dram(self) -> np.ndarray:
        return self.chip.read(0, self.dram_bytes)

    async def run(self, program_addr: int = PROGRAM_ADDR, timeout: int = 300_000) -> tuple[int, int, int]:
        """Start a job and sleep until its interrupt: (error code, error address, cycles)."""
        await self.chip.start(program_addr, self.window)
        try:
            status = await with_timeout(self.chip.wait(), 10 * timeout, "ns")
        except SimTimeoutError:
            raise AssertionError(f"no interrupt within {timeout} cycles") from None
        return status["error"], status["error_addr"], status["cycles"]


def assemble(program: list[tuple[Opcode, dict]], loops: bool = False) -> np.ndarray:
    """Encode with program-order semaphores and an END (``loops``: repeated runs folded into
    ``LOOP`` instructions)."""
    ordered = in_program_order(program + [(Opcode.END, {})])
    if loops:
        ordered = fold(ordered)
        assert any(op is Opcode.LOOP for op, _ in ordered), "nothing to fold"
    words = [encode(op, **fields) for op, fields in ordered]
    return np.frombuffer(b"".join(words), dtype=np.uint8)


class Layout:
    """Bump allocation of DRAM regions after the program area."""

    def __init__(self, start: int, size: int):
        self.top, self.size = start, size

    def take(self, nbytes: int, align: int = 1) -> int:
        base = -(-self.top // align) * align
        self.top = base + nbytes
        assert self.top <= self.size, "test image too large"
        return base


def random_gemm(tb: TB, image: np.ndarray, layout: Layout, spad: Layout, acc: Layout,
                max_dim: int = 40) -> list[tuple[Opcode, dict]]:
    """LOAD A and B at random alignments and strides, MATMUL (plain or B transposed, overwrite or
    accumulate onto a loaded C), STORE C. Half the time B and its stride are on scratchpad rows,
    as the compiler lays out weights: the matrix unit then reads two of its rows a cycle."""
    rng = tb.rng
    m, k, n = rng.randint(1, max_dim), rng.randint(1, max_dim), rng.randint(1, max_dim)
    transposed = rng.random() < 0.4
    accumulate = rng.random() < 0.3
    b_rows, b_cols = (n, k) if transposed else (k, n)
    a_dram = layout.take(m * k)
    b_dram = layout.take(b_rows * b_cols)
    c_dram = layout.take(4 * m * n, 4)
    image[a_dram:a_dram + m * k] = tb.np_rng.integers(0, 256, m * k, dtype=np.uint8)
    image[b_dram:b_dram + b_rows * b_cols] = tb.np_rng.integers(0, 256, b_rows * b_cols, dtype=np.uint8)
    image[c_dram:c_dram + 4 * m * n] = tb.np_rng.integers(0, 256, 4 * m * n, dtype=np.uint8)
    a_stride = k + rng.randint(0, 9)
    b_stride = b_cols + rng.randint(0, 9)
    row = tb.config.bus_bytes
    on_rows = rng.random() < 0.5
    if on_rows:
        b_stride = -(-b_stride // row) * row
    c_stride = n + rng.randint(0, 5)
    a_spad = spad.take(m * a_stride)
    b_spad = spad.take(b_rows * b_stride, row if on_rows else 1)
    if acc.top + m * c_stride > acc.size:
        # three of up to 40 x 45 words outgrow the accumulator: this C reuses the GEMMs' before it
        # (the program runs in order, so their STOREs have read them by then)
        acc.top = 0
    c_acc = acc.take(m * c_stride)
    program = [
        (Opcode.LOAD, dict(addr0=a_dram, addr1=a_spad, rows=m, cols=k, stride0=k, stride1=a_stride)),
        (Opcode.LOAD, dict(addr0=b_dram, addr1=b_spad, rows=b_rows, cols=b_cols, stride0=b_cols, stride1=b_stride)),
    ]
    if accumulate:
        program.append((Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=c_dram, addr1=c_acc, rows=m, cols=n,
                                          stride0=n, stride1=c_stride)))
    flags = (Flag.B_TRANSPOSED if transposed else 0) | (Flag.ACCUMULATE if accumulate else 0)
    program.append((Opcode.MATMUL, dict(flags=flags, addr0=a_spad, stride0=a_stride, addr1=b_spad, stride1=b_stride,
                                        addr2=c_acc, addr3=c_stride, rows=m, cols=n, imm=k)))
    program.append((Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=c_acc, stride0=c_stride, addr1=c_dram, stride1=n,
                                       rows=m, cols=n)))
    tb.dut._log.info(f"GEMM {m}x{k}x{n} transposed={transposed} accumulate={accumulate} "
                     f"A@{a_spad} B@{b_spad} C@{c_acc}")
    return program


def expected(tb: TB, image: np.ndarray) -> np.ndarray:
    machine = Machine(tb.config, image.copy())
    run_program(machine, PROGRAM_ADDR)
    return machine.dram


def compare(got: np.ndarray, want: np.ndarray) -> None:
    if not np.array_equal(got, want):
        bad = np.flatnonzero(got != want)
        runs = np.split(bad, np.flatnonzero(np.diff(bad) != 1) + 1)
        where = ", ".join(f"0x{r[0]:x}..0x{r[-1]:x}" for r in runs[:8])
        raise AssertionError(f"{len(bad)} DRAM bytes differ ({where}); first at 0x{bad[0]:x}: got {got[bad[0]]}, "
                             f"want {want[bad[0]]}")


def fresh_image(tb: TB) -> tuple[np.ndarray, Layout, Layout, Layout]:
    image = np.zeros(tb.dram_bytes, dtype=np.uint8)
    layout = Layout(4096, tb.dram_bytes)
    spad = Layout(tb.rng.randrange(64), tb.config.spad_bytes)
    acc = Layout(tb.rng.randrange(64), tb.config.acc_words)
    return image, layout, spad, acc


async def run_and_compare(tb: TB, program: list, image: np.ndarray, loops: bool = False) -> int:
    code = assemble(program, loops)
    image[PROGRAM_ADDR:PROGRAM_ADDR + code.size] = code
    want = expected(tb, image)
    if os.environ.get("SCOVILLE_DUMP"):
        np.save(os.environ["SCOVILLE_DUMP"], image)
    tb.write_dram(image)
    await RisingEdge(tb.dut.clk)
    error, addr, cycles = await tb.run()
    assert error == 0, f"the core stopped with {ErrorCode(error).name} at 0x{addr:x}"
    compare(tb.read_dram(), want)
    return cycles


@cocotb.test()
async def gemm_programs(dut):
    """Random GEMM programs (odd shapes, misaligned scratchpad and accumulator addresses, strides,
    B transposed, accumulation) equal the functional simulator byte for byte."""
    tb = TB(dut)
    await tb.reset(latency=tb.rng.choice([0, 8, 40]))
    for job in range(int(os.environ.get("SCOVILLE_JOBS", "6"))):
        image, layout, spad, acc = fresh_image(tb)
        program = []
        for _ in range(tb.rng.randint(1, 3)):
            program += random_gemm(tb, image, layout, spad, acc)
        cycles = await run_and_compare(tb, program, image)
        dut._log.info(f"job {job}: {len(program)} instructions, {cycles} cycles")


def matmul_run(tb: TB, image: np.ndarray, layout: Layout, spad: Layout, acc: Layout, count: int,
               shape: tuple[int, int, int] | None = None) -> list[tuple[Opcode, dict]]:
    """``count`` MATMULs one after another with nothing between them, so that each is taken while
    the one before drains (random shapes, some empty, B plain or transposed, some accumulating onto
    the result of the one just before: a read-modify-write of rows the previous instruction is still
    writing), then a STORE of every result. ``shape``: every MATMUL (m, k, n), B plain, each after the
    first accumulating onto its result (one STORE)."""
    rng = tb.rng
    a_rows, a_cols = 4, 24
    a_dram, b_dram = layout.take(a_rows * a_cols), layout.take(a_cols * a_cols)
    image[a_dram:a_dram + a_rows * a_cols] = tb.np_rng.integers(0, 256, a_rows * a_cols, dtype=np.uint8)
    image[b_dram:b_dram + a_cols * a_cols] = tb.np_rng.integers(0, 256, a_cols * a_cols, dtype=np.uint8)
    a_spad, b_spad = spad.take(a_rows * a_cols), spad.take(a_cols * a_cols)
    program = [(Opcode.LOAD, dict(addr0=a_dram, addr1=a_spad, rows=a_rows, cols=a_cols, stride0=a_cols,
                                  stride1=a_cols)),
               (Opcode.LOAD, dict(addr0=b_dram, addr1=b_spad, rows=a_cols, cols=a_cols, stride0=a_cols,
                                  stride1=a_cols))]
    results, previous = [], None
    for _ in range(count):
        if shape is None:
            m, k, n = rng.choice([0, 1, 1, 2, 3, 4]), rng.randint(1, a_cols), rng.randint(1, a_cols)
            transposed = rng.random() < 0.4
        else:
            (m, k, n), transposed = shape, False
        flags = Flag.B_TRANSPOSED if transposed else 0
        if previous is not None and (shape is not None or rng.random() < 0.4):
            # onto the previous result: same rows, same columns or fewer
            c_acc, c_stride, m = previous[:3]
            n = n if shape is not None else rng.randint(1, previous[3])
            flags |= Flag.ACCUMULATE
        else:
            c_stride = n + rng.randint(0, 3)
            c_acc = acc.take(max(m, 1) * c_stride)
            results.append((c_acc, c_stride, m, n))
        program.append((Opcode.MATMUL, dict(flags=flags, addr0=a_spad, stride0=a_cols, addr1=b_spad,
                                            stride1=a_cols, addr2=c_acc, addr3=c_stride, rows=m, cols=n, imm=k)))
        previous = (c_acc, c_stride, m, n) if m else None
    for c_acc, c_stride, m, n in results:
        if m:
            c_dram = layout.take(4 * m * n, 4)
            program.append((Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=c_acc, stride0=c_stride, addr1=c_dram,
                                               stride1=n, rows=m, cols=n)))
    return program


@cocotb.test()
async def back_to_back_matmuls(dut):
    """MATMULs that follow one another overlap (the next is taken while the one before drains)
    and still equal the functional simulator byte for byte: random runs with accumulation onto
    the previous result and empty instructions; then a run of one-tile, one-row MATMULs (a decode's
    shape) costs each well under what one alone costs, the drain it used to wait for."""
    tb = TB(dut)
    latency = tb.rng.choice([0, 8, 40])
    await tb.reset(latency=latency)
    dut._log.info(f"DRAM latency {latency}")
    for job in range(int(os.environ.get("SCOVILLE_JOBS", "4"))):
        image, layout, spad, acc = fresh_image(tb)
        cycles = await run_and_compare(tb, matmul_run(tb, image, layout, spad, acc, tb.rng.randint(4, 12)), image)
        dut._log.info(f"job {job}: {cycles} cycles")
    R, C = tb.config.rows, tb.config.columns
    runs = {}
    for count in (1, 17):
        image, layout, spad, acc = fresh_image(tb)
        runs[count] = await run_and_compare(tb, matmul_run(tb, image, layout, spad, acc, count, (1, R, C)), image)
    each = (runs[17] - runs[1]) / 16
    dut._log.info(f"one-row, one-tile MATMULs: one alone {runs[1]} cycles, 17 in {runs[17]}: {each:.1f} each")
    # one at a time, each took its weight load (R), the row through the array (R + C), the
    # accumulator and the handshakes: 50 cycles at 8x8. Two in flight halve that: 25 at 8x8
    assert each <= 2 * R + C + 8, f"back-to-back MATMULs took {each:.1f} cycles each: they do not overlap"


@cocotb.test()
async def back_to_back_loads(dut):
    """LOADs that follow one another overlap (the transfer unit sends the next descriptor while one
    runs, and the DMA issues its rows right behind): a run of one-row LOADs costs each little more
    than its beats, where one at a time each paid the check, the DRAM latency and the status; a
    STORE of everything loaded equals the functional simulator."""
    tb = TB(dut)
    latency = tb.rng.choice([0, 8, 40])
    await tb.reset(latency=latency)
    row = 256
    runs = {}
    for count in (1, 17):
        image, layout, spad, _ = fresh_image(tb)
        src = layout.take(count * row)
        image[src:src + count * row] = tb.np_rng.integers(0, 256, count * row, dtype=np.uint8)
        base = spad.take(count * row)
        program = [(Opcode.LOAD, dict(addr0=src + n * row, addr1=base + n * row, rows=1, cols=row))
                   for n in range(count)]
        dst = layout.take(count * row)
        program.append((Opcode.STORE, dict(addr0=base, addr1=dst, rows=1, cols=count * row)))
        runs[count] = await run_and_compare(tb, program, image)
    # each LOAD more adds its row's beats twice: its own, and the STORE's for that row
    each = (runs[17] - runs[1]) / 16
    beats = row // tb.config.bus_bytes
    dut._log.info(f"one-row LOADs of {row} bytes (DRAM latency {latency}): one alone {runs[1]} cycles, "
                  f"17 in {runs[17]}: {each:.1f} each with the STORE's {beats} beats, {beats} beats")
    # one descriptor at a time, each LOAD took its beats, the DRAM latency and about 50 cycles more
    # (about 114 cycles each here at latency 0). With two descriptors out, half the round trip is
    # still paid when it is longer than a row's beats (8x8, latency 0: 74; 40: 90)
    bound = 2 * beats + 16 + latency // 2
    assert each <= bound, f"back-to-back LOADs took {each:.1f} cycles each for {beats} + {beats} beats (> {bound})"


@cocotb.test()
async def one_row_tiles(dut):
    """A MATMUL of one activation row (a decode's shape) over many weight tiles, against the
    functional simulator, and what each tile more costs:

    * B on scratchpad rows (the compiler's weights): two rows a cycle (the second through the
      scratchpad's pair port), and a bank of the array turns round in max(R - 1, R / 2 + 1) + 1
      cycles (``SystolicArray.cooldown``), so a tile costs about R / 2 with an even R from 4 on
      (R with one row a cycle);
    * B transposed (attention's scores against the cached keys): the next tile's C columns fill
      one tile buffer while the rows of the one before enter the array from the other, about
      max(R, C) a tile (with one buffer it cost C + R and more).
    """
    tb = TB(dut)
    await tb.reset()
    R, C = tb.config.rows, tb.config.columns
    k, n = R, 16 * C
    for transposed in (False, True):
        runs = {}
        for cols in (C, n):
            image, layout, spad, acc = fresh_image(tb)
            a_dram, b_dram, c_dram = layout.take(k), layout.take(n * k), layout.take(4 * n, 4)
            image[a_dram:a_dram + k] = tb.np_rng.integers(0, 256, k, dtype=np.uint8)
            image[b_dram:b_dram + n * k] = tb.np_rng.integers(0, 256, n * k, dtype=np.uint8)
            # B's rows on scratchpad rows: a row or column that straddles two rows is two reads
            # (the compiler aligns its tiles; a random start would make this a test of misalignment).
            # B in the scratchpad's upper bank, A in its lower one, as the compiler's weight ring
            # and activations: in one bank each tile's activation read would take a weight read's
            # cycle.
            row = tb.config.bus_bytes
            a_spad, b_spad, c_acc = spad.take(k, row), tb.config.spad_bytes // 2, acc.take(n)
            flags, stride = (Flag.B_TRANSPOSED, k) if transposed else (0, n)
            program = [
                (Opcode.LOAD, dict(addr0=a_dram, addr1=a_spad, rows=1, cols=k)),
                (Opcode.LOAD, dict(addr0=b_dram, addr1=b_spad, rows=1, cols=n * k)),
                # C starts at zero (from DRAM) in both runs, which differ only in the MATMUL
                (Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=c_dram, addr1=c_acc, rows=1, cols=n)),
                (Opcode.MATMUL, dict(flags=flags, addr0=a_spad, stride0=k, addr1=b_spad, stride1=stride,
                                     addr2=c_acc, addr3=n, rows=1, cols=cols, imm=k)),
                (Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=c_acc, addr1=c_dram, rows=1, cols=n)),
            ]
            runs[cols] = await run_and_compare(tb, program, image)
        each = (runs[n] - runs[C]) / (n // C - 1)
        what = "B transposed" if transposed else "B on scratchpad rows"
        dut._log.info(f"{what}, one row, {R}x{C}: {runs[C]} cycles for one tile, {runs[n]} for {n // C}: "
                      f"{each:.1f} a tile more")
        if transposed:
            bound = max(R, C) + 1
        else:
            bound = (max(R - 1, R // 2 + 1) + 1) / 2 + 0.5 if R % 2 == 0 else R + 1
        assert each <= bound, f"{what}: a one-row tile took {each:.1f} cycles (> {bound})"


@cocotb.test()
async def gather_rows(dut):
    """GATHER of int8 and int32 table rows by ids loaded into the accumulator."""
    tb = TB(dut)
    await tb.reset()
    image, layout, spad, acc = fresh_image(tb)
    rows, cols, table_rows = 13, 37, 50
    table = layout.take(table_rows * cols)
    wide = layout.take(4 * table_rows * 3, 4)
    ids_dram = layout.take(4 * rows, 4)
    out = layout.take(rows * cols)
    out_wide = layout.take(4 * rows * 3, 4)
    image[table:table + table_rows * cols] = tb.np_rng.integers(0, 256, table_rows * cols, dtype=np.uint8)
    image[wide:wide + 12 * table_rows] = tb.np_rng.integers(0, 256, 12 * table_rows, dtype=np.uint8)
    ids = tb.np_rng.integers(0, table_rows, rows).astype(np.int32)
    image[ids_dram:ids_dram + 4 * rows] = ids.view(np.uint8)
    ids_acc, rows_spad, rows_acc = acc.take(rows), spad.take(rows * cols), acc.take(rows * 3)
    program = [
        (Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=ids_dram, addr1=ids_acc, rows=1, cols=rows)),
        (Opcode.GATHER, dict(addr0=table, addr1=rows_spad, addr2=ids_acc, rows=rows, cols=cols, stride0=cols,
                             stride1=cols, imm=table_rows)),
        (Opcode.GATHER, dict(flags=Flag.DST_ACC, addr0=wide, addr1=rows_acc, addr2=ids_acc, rows=rows, cols=3,
                             stride0=3, stride1=3, imm=table_rows)),
        (Opcode.STORE, dict(addr0=rows_spad, addr1=out, rows=rows, cols=cols, stride0=cols, stride1=cols)),
        (Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=rows_acc, addr1=out_wide, rows=rows, cols=3, stride0=3,
                            stride1=3)),
    ]
    await run_and_compare(tb, program, image)


@cocotb.test()
async def back_to_back_gather_rows(dut):
    """A GATHER's rows overlap as back-to-back LOADs do (the next row's descriptor goes out while
    one runs): a row costs little more than its beats, where one at a time each paid the check,
    the DRAM latency and the status (about 49 cycles at latency 0 on 8x8); the rows equal the
    functional simulator's."""
    tb = TB(dut)
    for latency in (0, 8, 40):
        await tb.reset(latency=latency)
        await _gather_rows_each(tb, latency)


async def _gather_rows_each(tb: TB, latency: int) -> None:
    row, table_rows = 64, 40
    runs = {}
    for count in (1, 17):
        image, layout, spad, acc = fresh_image(tb)
        table = layout.take(table_rows * row)
        image[table:table + table_rows * row] = tb.np_rng.integers(0, 256, table_rows * row, dtype=np.uint8)
        ids_dram = layout.take(4 * count, 4)
        image[ids_dram:ids_dram + 4 * count] = tb.np_rng.integers(0, table_rows, count).astype(np.int32).view(np.uint8)
        ids_acc, rows_spad = acc.take(count), spad.take(count * row)
        dst = layout.take(count * row)
        program = [
            (Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=ids_dram, addr1=ids_acc, rows=1, cols=count)),
            (Opcode.GATHER, dict(addr0=table, addr1=rows_spad, addr2=ids_acc, rows=count, cols=row, stride0=row,
                                 stride1=row, imm=table_rows)),
            (Opcode.STORE, dict(addr0=rows_spad, addr1=dst, rows=1, cols=count * row)),
        ]
        runs[count] = await run_and_compare(tb, program, image)
    # each row more adds its beats twice: the GATHER's, and the STORE's for that row
    each = (runs[17] - runs[1]) / 16
    beats = row // tb.config.bus_bytes
    tb.dut._log.info(f"GATHER rows of {row} bytes (DRAM latency {latency}): one {runs[1]} cycles, 17 {runs[17]}: "
                  f"{each:.1f} each with the STORE's {beats} beats, {beats} beats")
    # the row's id (an accumulator read), its check and descriptor: about 8 cycles besides
    bound = 2 * beats + 24 + latency // 2
    assert each <= bound, f"GATHER rows took {each:.1f} cycles each for {beats} + {beats} beats (> {bound})"


async def expect_fault(tb: TB, program: list, code: ErrorCode, addr: int | None, image=None) -> None:
    if image is None:
        image = np.zeros(tb.dram_bytes, dtype=np.uint8)
    words = assemble(program)
    image[PROGRAM_ADDR:PROGRAM_ADDR + words.size] = words
    tb.write_dram(image)
    await RisingEdge(tb.dut.clk)
    error, error_addr, _ = await tb.run()
    assert error == code.value, f"expected {code.name}, the core reported {ErrorCode(error).name}"
    if addr is not None:
        assert error_addr == addr, f"{code.name}: expected address 0x{addr:x}, got 0x{error_addr:x}"
    tb.dut._log.info(f"{code.name} at 0x{error_addr:x} as expected")


async def next_job_runs(tb: TB) -> None:
    image, layout, spad, acc = fresh_image(tb)
    await run_and_compare(tb, random_gemm(tb, image, layout, spad, acc, max_dim=12), image)


async def abort_after(tb: TB, words: np.ndarray, cycles: int) -> dict:
    """Start the program ``words``, let it run ``cycles`` (still busy), abort it: the status of an
    ``ABORTED`` job."""
    image = np.zeros(tb.dram_bytes, dtype=np.uint8)
    image[PROGRAM_ADDR:PROGRAM_ADDR + words.size] = words
    tb.write_dram(image)
    await tb.chip.start(PROGRAM_ADDR, tb.window)
    await ClockCycles(tb.dut.clk, cycles)
    assert await tb.chip.read_csr("STATUS") == BUSY, (
        ErrorCode(await tb.chip.read_csr("ERROR_CODE")), hex(await tb.chip.read_csr("ERROR_ADDR")))
    await tb.chip.write_csr("CONTROL", ABORT | IRQ_ENABLE)
    status = await tb.chip.wait()
    assert ErrorCode(status["error"]) is ErrorCode.ABORTED, ErrorCode(status["error"])
    return status


@cocotb.test()
async def faults_stop_the_core(dut):
    """Illegal instruction, out-of-window descriptor, AXI error response, GATHER id outside its
    table, operands past the SRAMs, a semaphore never signalled (watchdog): each stops the core
    with its code and address, and the next job after it runs correctly."""
    tb = TB(dut)
    await tb.reset()
    load = dict(addr0=0x2000, addr1=0, rows=2, cols=16, stride0=16, stride1=16)

    # an undefined opcode, third instruction (32 bytes each)
    image = np.zeros(tb.dram_bytes, dtype=np.uint8)
    words = assemble([(Opcode.LOAD, load), (Opcode.LOAD, load), (Opcode.LOAD, load)])
    words = words.copy()
    words[64] = 0xEE
    image[:words.size] = words
    tb.write_dram(image)
    await RisingEdge(dut.clk)
    error, error_addr, _ = await tb.run()
    assert (error, error_addr) == (ErrorCode.ILLEGAL_INSTRUCTION.value, 64), (ErrorCode(error), error_addr)
    await next_job_runs(tb)

    # a LOAD reaching past the job window
    tb.set_window(0, 0x8000)
    await expect_fault(tb, [(Opcode.LOAD, dict(load, addr0=0x7FF0))], ErrorCode.OUT_OF_WINDOW, 0x7FF0)
    tb.set_window(0, tb.dram_bytes)
    await next_job_runs(tb)

    # the DRAM answers DECERR past its end (the window allows it)
    tb.set_window(0, 2 * tb.dram_bytes)
    await expect_fault(tb, [(Opcode.LOAD, dict(load, addr0=tb.dram_bytes + 0x100))], ErrorCode.DMA_BUS_ERROR,
                       tb.dram_bytes + 0x100)
    await expect_fault(tb, [(Opcode.STORE, dict(addr0=0, addr1=tb.dram_bytes + 0x40, rows=1, cols=8))],
                       ErrorCode.DMA_BUS_ERROR, tb.dram_bytes + 0x40)
    tb.set_window(0, tb.dram_bytes)
    await next_job_runs(tb)

    # a GATHER id outside the table
    image = np.zeros(tb.dram_bytes, dtype=np.uint8)
    image[0x3000:0x3004] = np.array([7], dtype=np.int32).view(np.uint8)
    program = [(Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=0x3000, addr1=0, rows=1, cols=1)),
               (Opcode.GATHER, dict(addr0=0x2000, addr1=0, addr2=0, rows=1, cols=8, stride0=8, stride1=8, imm=7))]
    await expect_fault(tb, program, ErrorCode.OUT_OF_WINDOW, 0x2000, image)
    await next_job_runs(tb)
    # ... the fourth of six, while the rows before it are still under way
    image = np.zeros(tb.dram_bytes, dtype=np.uint8)
    image[0x3000:0x3018] = np.array([1, 0, 2, 9, 3, 4], dtype=np.int32).view(np.uint8)
    program = [(Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=0x3000, addr1=0, rows=1, cols=6)),
               (Opcode.GATHER, dict(addr0=0x2000, addr1=0, addr2=0, rows=6, cols=64, stride0=64, stride1=64, imm=7))]
    await expect_fault(tb, program, ErrorCode.OUT_OF_WINDOW, 0x2000, image)
    await next_job_runs(tb)
    # ... and a table row past the job window, the third of six (the DMA's window check)
    tb.set_window(0, 0x4000)
    image[0x3000:0x3018] = np.array([1, 0, 150, 2, 3, 4], dtype=np.int32).view(np.uint8)
    await expect_fault(tb, [program[0], (Opcode.GATHER, dict(program[1][1], imm=200))], ErrorCode.OUT_OF_WINDOW,
                       0x2000 + 150 * 64, image)
    tb.set_window(0, tb.dram_bytes)
    await next_job_runs(tb)

    # operands past the scratchpad or the accumulator: stopped before they run, at their address
    # (the instruction before the faulting one has run)
    spad, acc = tb.config.spad_bytes, tb.config.acc_words
    matmul = dict(addr0=0, addr1=spad - 8 * 16 + 1, addr2=0, addr3=8, rows=4, cols=8, imm=16, stride0=16,
                  stride1=8)
    await expect_fault(tb, [(Opcode.LOAD, load), (Opcode.MATMUL, matmul)], ErrorCode.SRAM_BOUNDS, 32)
    await next_job_runs(tb)
    add = dict(addr0=0, addr1=0, addr2=acc - 3 * 100 - 7, rows=4, cols=8, stride0=8, stride1=8, imm=100)
    await expect_fault(tb, [(Opcode.V_ADD, add)], ErrorCode.SRAM_BOUNDS, 0)
    await expect_fault(tb, [(Opcode.NOP, {}), (Opcode.STORE, dict(addr0=spad - 15, addr1=0x2000, rows=1, cols=16))],
                       ErrorCode.SRAM_BOUNDS, 32)
    await next_job_runs(tb)
    # the same operands ending exactly at the memories' ends run
    image = np.zeros(tb.dram_bytes, dtype=np.uint8)
    program = [(Opcode.LOAD, load), (Opcode.MATMUL, dict(matmul, addr1=spad - 8 * 16)),
               (Opcode.V_ADD, dict(add, addr2=acc - 3 * 100 - 8))]
    await run_and_compare(tb, program, image)

    # a V_ROPE with an odd head size
    await expect_fault(tb, [(Opcode.V_ROPE, dict(addr0=0x40, addr1=0, rows=1, cols=6, addr3=3))], ErrorCode.UNIT_FAULT,
                       0x40)
    await next_job_runs(tb)

    # waiting for a semaphore nobody signals: the watchdog stops the core
    await expect_fault(tb, [(Opcode.LOAD, dict(load, wait=1 << 6))], ErrorCode.TIMEOUT, None)
    await next_job_runs(tb)

    # the host aborts a job that waits (the watchdog would take its time): ABORTED, then busy falls
    await abort_after(tb, assemble([(Opcode.LOAD, load), (Opcode.LOAD, dict(load, wait=1 << 6))]), 500)
    await next_job_runs(tb)

    # aborted while the vector unit and the array are in the middle of long instructions: the
    # next start's flush clears them (only their valid bits and bookkeeping have a reset, the
    # datapath registers none), and vector jobs with multi-pass rows and a GEMM then run exactly
    rows = 1000   # every row the same SRAM row (strides 0): long instructions in small SRAMs
    # no semaphores between them (assemble would chain them in program order): both units at once
    words = np.frombuffer(b"".join(encode(op, **fields) for op, fields in [
        (Opcode.V_ADD, dict(addr0=0, addr1=16, addr2=8, rows=rows, cols=8, stride0=0, stride1=0, imm=0)),
        (Opcode.MATMUL, dict(addr0=0, stride0=0, addr1=64, stride1=8, addr2=64, addr3=0, rows=rows, cols=8, imm=16)),
        (Opcode.LOAD, dict(load, wait=1 << 6)),
        (Opcode.END, {}),
    ]), dtype=np.uint8)
    status = await abort_after(tb, words, 400)
    # both were under way and far from done (the V_ADD alone is 1 000 rows, each in pieces on the narrow unit)
    assert 0 < status["matrix_rows"] < rows and status["vector_busy"] > 0, status
    for opcode in (Opcode.V_RMSNORM, Opcode.V_QUANT, Opcode.V_SOFTMAX_EXP):
        image, layout, spad, acc = fresh_image(tb)
        await run_and_compare(tb, vector_case(tb, opcode, image, layout, acc, spad, None), image)
    await next_job_runs(tb)


@cocotb.test()
async def host_registers(dut):
    """The host interface: identification, a page without a core answers SLVERR, counters of a
    job add up (each unit busy no longer than the job, the matrix unit busy during a GEMM)."""
    tb = TB(dut)
    await tb.reset()
    cores = tb.config.mesh_width * tb.config.mesh_height
    for n in range(cores):
        assert await tb.chip.core(n).read_csr("ID") == ID_VALUE, n
    read = await tb.chip.axil.read(cores << CSR_PAGE_BITS, 4)
    assert read.resp == 2, read.resp
    write = await tb.chip.axil.write(cores << CSR_PAGE_BITS, b"\x01\x00\x00\x00")
    assert write.resp == 2, write.resp
    image, layout, spad, acc = fresh_image(tb)
    program = random_gemm(tb, image, layout, spad, acc, max_dim=24)
    words = assemble(program)
    image[PROGRAM_ADDR:PROGRAM_ADDR + words.size] = words
    tb.write_dram(image)
    status = await tb.chip.run(PROGRAM_ADDR, tb.window)
    assert status["error"] == 0 and status["status"] == DONE, status
    for unit in ("load", "matrix", "vector", "store"):
        assert status[f"{unit}_busy"] <= status["cycles"], (unit, status)
        assert status[f"{unit}_stalled"] <= status[f"{unit}_busy"], (unit, status)
    assert status["load_busy"] > 0 and status["matrix_busy"] > 0 and status["store_busy"] > 0, status
    assert status["vector_busy"] == 0, status
    # activation rows enter the array only while the matrix unit is busy, not every cycle of it
    assert 0 < status["matrix_rows"] < status["matrix_busy"], status
    # program order: the store waits for the matrix unit, the matrix unit for the loads
    assert status["store_waiting"] > 0 and status["matrix_waiting"] > 0, status
    assert await tb.chip.read_csr("STATUS") == 0  # DONE acknowledged, the interrupt low
    assert int(dut.irq.value) == 0


@cocotb.test()
async def load_store_round_trip(dut):
    """LOAD and STORE through the scratchpad and the accumulator at odd addresses and strides."""
    tb = TB(dut)
    await tb.reset()
    image, layout, spad, acc = fresh_image(tb)
    program = []
    for _ in range(4):
        rows, cols = tb.rng.randint(1, 9), tb.rng.randint(1, 30)
        dut._log.info(f"{rows}x{cols} at {layout.top:#x}")
        src = layout.take(rows * cols * 4, 4)
        dst = layout.take(rows * cols * 4, 4)
        image[src:src + 4 * rows * cols] = tb.np_rng.integers(0, 256, 4 * rows * cols, dtype=np.uint8)
        to_acc = tb.rng.random() < 0.5
        stride = cols + tb.rng.randint(0, 5)
        where = (acc if to_acc else spad).take(rows * stride)
        flags = Flag.DST_ACC if to_acc else 0
        program += [(Opcode.LOAD, dict(flags=flags, addr0=src, addr1=where, rows=rows, cols=cols, stride0=cols,
                                       stride1=stride)),
                    (Opcode.STORE, dict(flags=flags, addr0=where, addr1=dst, rows=rows, cols=cols, stride0=stride,
                                        stride1=cols))]
    await run_and_compare(tb, program, image)

    # long runs: a contiguous int8 block and int32 rows longer than the network interface's
    # buffers (whole weight matrices and bias rows of a model)
    image, layout, spad, acc = fresh_image(tb)
    program = []
    for flags, rows, cols, size in ((0, 48, 172, 1), (Flag.DST_ACC, 1, 172, 4), (Flag.DST_ACC, 3, 300, 4)):
        src, dst = layout.take(rows * cols * size, 8), layout.take(rows * cols * size, 8)
        image[src:src + size * rows * cols] = tb.np_rng.integers(0, 256, size * rows * cols, dtype=np.uint8)
        where = (acc if flags else spad).take(rows * cols)
        program += [(Opcode.LOAD, dict(flags=flags, addr0=src, addr1=where, rows=rows, cols=cols, stride0=cols,
                                       stride1=cols)),
                    (Opcode.STORE, dict(flags=flags, addr0=where, addr1=dst, rows=rows, cols=cols, stride0=cols,
                                        stride1=cols))]
    await run_and_compare(tb, program, image)

    # the same copies in a LOOP: each iteration loads the next block into one scratchpad buffer
    # and stores it further on (the DRAM addresses step, the buffer does not)
    image, layout, spad, acc = fresh_image(tb)
    rows, cols, copies = 3, 24, 7
    src, dst = layout.take(rows * cols * copies), layout.take(rows * cols * copies)
    image[src:src + rows * cols * copies] = tb.np_rng.integers(0, 256, rows * cols * copies, dtype=np.uint8)
    where = spad.take(rows * cols)
    program = []
    for k in range(copies):
        step = k * rows * cols
        program += [(Opcode.LOAD, dict(addr0=src + step, addr1=where, rows=rows, cols=cols, stride0=cols,
                                       stride1=cols)),
                    (Opcode.STORE, dict(addr0=where, addr1=dst + step, rows=rows, cols=cols, stride0=cols,
                                        stride1=cols))]
    await run_and_compare(tb, program, image, loops=True)


def load_rows(image: np.ndarray, layout: Layout, sram: Layout, program: list, words: np.ndarray,
              to_spad: bool = False, stride: int | None = None, nrows: int = 1) -> int:
    """Place ``words`` (int32/uint32 [nrows, n], or int8 for the scratchpad) in DRAM and append
    their LOAD into ``sram`` (rows ``stride`` apart) to ``program``: where they land."""
    raw = np.ascontiguousarray(words).view(np.uint8).ravel()
    dram = layout.take(raw.size, 4)
    image[dram:dram + raw.size] = raw
    n = words.shape[-1] if words.ndim > 1 else words.size
    stride = stride or n
    where = sram.take(nrows * stride)
    program.append((Opcode.LOAD, dict(flags=0 if to_spad else Flag.DST_ACC, addr0=dram, addr1=where, rows=nrows,
                                      cols=n, stride0=n, stride1=stride)))
    return where


def store_rows(layout: Layout, program: list, where: int, n: int, nrows: int = 1, stride: int | None = None,
               from_spad: bool = False) -> None:
    """Append the STORE of ``nrows`` rows of ``n`` elements at ``where`` to a fresh DRAM region."""
    dram = layout.take(n * nrows * (1 if from_spad else 4), 4)
    program.append((Opcode.STORE, dict(flags=0 if from_spad else Flag.DST_ACC, addr0=where, addr1=dram,
                                       rows=nrows, cols=n, stride0=stride or n, stride1=n)))


def _packed(m, e) -> np.ndarray:
    return ((np.asarray(m, np.int64) & 0xFFFF) | ((np.asarray(e, np.int64) & 0xFFFF) << 16)).astype(np.uint32)


def _scales(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    """Packed scales with mantissas in [2**14, 2**15) (some negative for gamma) and exponents in [lo, hi]."""
    return _packed(rng.integers(1 << 14, 1 << 15, n), rng.integers(lo, hi + 1, n))


#: V_REQUANT's operand variants: column scales with or without a bias, the row scale alone with or
#: without a bias, and each row's largest |result| besides (ROW_SCALE)
REQUANT_FLAGS = (Flag.HAS_BIAS, 0, Flag.NO_COL_SCALE, Flag.NO_COL_SCALE | Flag.HAS_BIAS,
                 Flag.HAS_BIAS | Flag.ROW_SCALE, Flag.NO_COL_SCALE | Flag.ROW_SCALE)
#: the variants each round runs, by opcode: V_REQUANT's, V_SOFTMAX_EXP without and with FOLD_V,
#: V_RMSNORM's and V_QUANT's rows or their scales alone (ROW_SCALE)
VARIANTS = {Opcode.V_REQUANT: REQUANT_FLAGS, Opcode.V_SOFTMAX_EXP: (0, Flag.FOLD_V),
            Opcode.V_RMSNORM: (0, Flag.ROW_SCALE), Opcode.V_QUANT: (0, Flag.ROW_SCALE)}


def vector_case(tb: TB, opcode: Opcode, image: np.ndarray, layout: Layout, acc: Layout, spad: Layout,
                flags: int | None = None) -> list:
    """One vector instruction on random valid operands: LOADs, the instruction, STOREs of every
    output. ``flags``: V_REQUANT's variant (random when None), V_SOFTMAX_EXP's FOLD_V, or
    V_RMSNORM's or V_QUANT's ROW_SCALE."""
    rng, prng = tb.np_rng, tb.rng
    # now and then a row longer than the side cache (16 chunks of 8 lanes): column operands read per row
    rows, cols = prng.randint(1, 6), prng.choice([prng.randint(1, 40)] * 3 + [prng.randint(120, 160)])
    if opcode == Opcode.V_ROPE:
        head, heads = prng.choice([2, 4, 6, 8, 16, 20, 64]), prng.randint(1, 3)
        cols = head * heads
    if opcode in (Opcode.V_ATTN_SCALE, Opcode.V_SCALE_MUL):   # rows come in chunks of C: some span several
        rows, cols = prng.randint(1, 3 * tb.config.lanes + 2), min(cols, 40)   # (the test image's room)
    if opcode in (Opcode.V_REQUANT, Opcode.V_DEQUANT) and prng.random() < 0.5:   # row scales a chunk of C rows a read
        rows, cols = prng.randint(tb.config.lanes + 1, 3 * tb.config.lanes + 2), min(cols, 24)
    if opcode == Opcode.V_SOFTMAX_EXP and prng.random() < 0.5:
        # causal rows whose ends cross several beats (the unit trims each at its last allowed key)
        rows, cols = prng.randint(tb.config.lanes + 1, 2 * tb.config.lanes + 2), min(cols, 40)
    program = []

    def put(words: np.ndarray, what: str, to_spad: bool = False, stride: int | None = None, nrows: int = 1) -> int:
        return load_rows(image, layout, spad if to_spad else acc, program, words, to_spad, stride, nrows)

    def get(where: int, n: int, nrows: int = 1, stride: int | None = None, from_spad: bool = False) -> None:
        store_rows(layout, program, where, n, nrows, stride, from_spad)

    def wide_rows(n: int) -> np.ndarray:
        return rng.integers(-(1 << 18), 1 << 18, (n, cols)).astype(np.int32)

    wide = wide_rows(rows)
    src_stride = cols + prng.randint(0, 3)
    dst_stride = cols + prng.randint(0, 3)
    src = put(wide, "source", stride=src_stride, nrows=rows)
    dst = acc.take(rows * dst_stride)
    fields = dict(addr0=src, stride0=src_stride, addr1=dst, stride1=dst_stride, rows=rows, cols=cols)
    outputs = [(dst, cols, rows, dst_stride, False)]
    if opcode == Opcode.V_QUANT:
        q = spad.take(rows * dst_stride)
        scales = acc.take(rows)
        fields.update(addr1=q, addr2=scales)
        outputs = [(q, cols, rows, dst_stride, True), (scales, rows, 1, rows, False)]
        if flags:   # ROW_SCALE: each row's requantization scale, a word a row stride1 apart; rows of
            # every magnitude, some all zero
            x = wide >> rng.integers(0, 19, (rows, 1))
            x = np.where(rng.random((rows, 1)) < 0.2, 0, x).astype(np.int32)
            scale_stride = prng.choice([1, 1, 3])
            fields.update(flags=Flag.ROW_SCALE, addr0=put(x, "source", stride=src_stride, nrows=rows),
                          addr1=acc.take(rows * scale_stride), stride1=scale_stride)
            outputs = [(fields["addr1"], 1, rows, scale_stride, False), (scales, rows, 1, rows, False)]
    elif opcode == Opcode.V_REQUANT8:
        # the even rows by scales that saturate some results at int8, the odd rows by their own
        # quantization scales (golden.ops.quant_scales)
        recip, shift, _, _ = ops.quant_scales(wide)
        row_scales = np.where(np.arange(rows) % 2 == 0, _scales(rng, rows, -30, -20), _packed(recip, shift))
        q = spad.take(rows * dst_stride)
        fields.update(addr1=q, addr2=put(row_scales, "row scales"))
        outputs = [(q, cols, rows, dst_stride, True)]
    elif opcode == Opcode.V_REQUANT:
        flags = prng.choice(REQUANT_FLAGS) if flags is None else flags
        # with ROW_SCALE, now and then scales that saturate results at int32 (a row's largest
        # |result| then 2**31, written as -2**31)
        big = flags & Flag.ROW_SCALE and prng.random() < 0.3
        row_scales = put(_scales(rng, rows, 0, 2) if big else _scales(rng, rows, -24, -16), "row scales")
        col = np.concatenate([_scales(rng, cols, -10, -2), rng.integers(-5000, 5000, cols).astype(np.uint32)])
        fields.update(flags=flags, addr2=row_scales, addr3=put(col, "column scales and bias"))
        if flags & Flag.ROW_SCALE:
            if not big:   # rows of every magnitude, back to back: a row's last chunk stops at its
                # end, before the next row's values
                x = (wide >> rng.integers(0, 19, (rows, 1))).astype(np.int32)
                fields.update(addr0=put(x, "source", stride=cols, nrows=rows), stride0=cols)
            fields.update(imm=acc.take(rows))
            outputs.append((fields["imm"], rows, 1, rows, False))
    elif opcode == Opcode.V_DEQUANT:
        q = put(rng.integers(-127, 128, (rows, cols)).astype(np.int8), "int8 rows", to_spad=True,
                stride=src_stride, nrows=rows)
        fields.update(addr0=q, addr2=put(_scales(rng, rows, -12, -4), "row scales"))
    elif opcode in (Opcode.V_ADD, Opcode.V_MUL):
        other_stride = cols + prng.randint(0, 3)
        other = rng.integers(-(1 << 18), 1 << 18, (rows, cols))
        if opcode == Opcode.V_ADD and prng.random() < 0.5:
            # near the int32 extremes: about half the sums saturate
            edge = rng.integers(0, 1 << 18, (rows, cols))
            other = np.where(rng.random((rows, cols)) < 0.5, (1 << 31) - 1 - edge, -(1 << 31) + edge)
        other = other.astype(np.int32)
        fields.update(addr2=put(other, "other", stride=other_stride, nrows=rows), imm=other_stride)
    elif opcode in (Opcode.V_RMSNORM, Opcode.V_LAYERNORM):
        params = np.concatenate([_scales(rng, cols, -14, -12), rng.integers(-3000, 3000, cols).astype(np.uint32)])
        inv_m, inv_e = nx.scale_from_float(1.0 / cols)
        fields.update(flags=Flag.HAS_BIAS, addr2=put(params, "gamma and beta"), imm=prng.randint(0, 1 << 20),
                      addr3=int(_packed(inv_m, inv_e)))
        if opcode == Opcode.V_RMSNORM and flags:   # ROW_SCALE: a word a row, stride1 apart
            # rows long enough for several beats a pass, some all zero; not beside the long rows,
            # whose 17 would not fit the accumulator with the source and destination already taken
            if prng.random() < 0.5 and cols <= 40:
                rows = prng.randint(tb.config.lanes + 1, 2 * tb.config.lanes + 2)
                x = np.where(rng.random((rows, 1)) < 0.2, 0, wide_rows(rows)).astype(np.int32)
                fields.update(rows=rows, addr0=put(x, "source", stride=src_stride, nrows=rows))
            scale_stride = prng.choice([1, 1, 3])
            fields.update(flags=Flag.ROW_SCALE, addr1=acc.take(rows * scale_stride), stride1=scale_stride)
            outputs = [(fields["addr1"], 1, rows, scale_stride, False)]
    elif opcode == Opcode.V_ROPE:
        fields.update(addr3=head, imm=prng.randint(0, 500),
                      addr2=put(nx.rope_frequencies(head, 10000.0).astype(np.uint32), "frequencies"))
    elif opcode == Opcode.V_SOFTMAX_EXP:
        sums = acc.take(rows)
        causal = prng.random() < 0.5
        # imm past the rows' keys (every key allowed), now and then past 16 bits
        fields.update(flags=Flag.CAUSAL if causal else 0, addr2=sums,
                      imm=prng.choice([prng.randint(0, 3), prng.randint(0, cols + 2), (1 << 16) + prng.randint(-1, 2)]))
        if flags:   # FOLD_V: the value scales folded into the results
            fields.update(flags=fields["flags"] | Flag.FOLD_V, addr3=put(_scales(rng, cols, -20, -8), "value scales"))
        outputs.append((sums, rows, 1, rows, False))
    elif opcode == Opcode.V_FOLD_V:
        e = rng.integers(0, 1 << 15, (rows, cols)).astype(np.int32)
        fields.update(addr0=put(e, "exponentials", stride=src_stride, nrows=rows),
                      addr2=put(_scales(rng, cols, -20, -8), "value scales"))
    elif opcode == Opcode.V_ATTN_SCALE:
        totals = put(rng.integers(1, 1 << 22, rows).astype(np.int32), "sums")
        fields.update(addr0=totals, addr2=put(_scales(rng, rows, -20, -14), "P scales"),
                      imm=put(_scales(rng, cols, -20, -8), "value scales"), addr3=int(_scales(rng, 1, -10, -5)[0]))
        fields.update(addr1=dst)
        outputs = [(dst, rows, 1, rows, False)]
    elif opcode == Opcode.V_SCALE_MUL:
        fields.update(addr0=put(_scales(rng, rows, -20, -5), "scales"), addr3=int(_scales(rng, 1, -20, -5)[0]),
                      cols=prng.choice([0, cols]))  # cols is unused: the compiler leaves it 0
        outputs = [(dst, rows, 1, rows, False)]
    program.append((opcode, fields))
    for where, n, nrows, stride, from_spad in outputs:
        get(where, n, nrows, stride, from_spad)
    tb.dut._log.info(f"{opcode.name} {fields}")
    return program


VECTOR_OPCODES = [op for op in Opcode if op.name.startswith("V_")]


@cocotb.test()
async def vector_instructions(dut):
    """Every vector instruction on random valid operands, odd shapes and strides, equals the
    functional simulator byte for byte."""
    tb = TB(dut)
    await tb.reset()
    only = set(filter(None, os.environ.get("SCOVILLE_OPCODE", "").split(",")))
    for round_ in range(int(os.environ.get("SCOVILLE_ROUNDS", "2"))):
        for opcode in VECTOR_OPCODES:
            if only and opcode.name not in only:
                continue
            for flags in VARIANTS.get(opcode, (None,)):
                image, layout, spad, acc = fresh_image(tb)
                program = vector_case(tb, opcode, image, layout, acc, spad, flags)
                cycles = await run_and_compare(tb, program, image)
                dut._log.info(f"round {round_} {opcode.name}: {cycles} cycles")


def vector_chain(tb: TB, image: np.ndarray, layout: Layout, acc: Layout, spad: Layout) -> list:
    """Two chains of vector instructions, interleaved at random, each instruction reading what one
    before it wrote: through the scratchpad and the row results (``V_QUANT``, then ``V_DEQUANT``),
    the accumulator in place (``V_ADD``), row scales (``V_RMSNORM`` with ``ROW_SCALE``, then
    ``V_REQUANT``; ``V_QUANT`` with ``ROW_SCALE``, then ``V_REQUANT8``), the rows' largest results
    (``V_REQUANT`` with ``ROW_SCALE``, then ``V_QUANT`` with ``ROW_SCALE`` of those words) and the
    softmax's results (``V_MUL``). Each instruction runs as soon as the sequencer may take it beside the one before."""
    rng, prng = tb.np_rng, tb.rng
    C = tb.config.lanes
    # the accumulator holds six rows x stride buffers (stride up to cols + 2), two of gamma and nine
    # of one word a row, after a start of up to 63: cols is drawn no wider than fits beside the rows
    rows = prng.randint(1, 2 * C + 2)
    room = (tb.config.acc_words - 64 - 9 * rows) // (6 * rows + 2)
    cols = prng.randint(1, min(39, room - 2))
    program, stores = [], []

    def put(words: np.ndarray, nrows: int = 1, stride: int | None = None) -> int:
        return load_rows(image, layout, acc, program, words, stride=stride, nrows=nrows)

    wide = lambda: rng.integers(-(1 << 18), 1 << 18, (rows, cols)).astype(np.int32)  # noqa: E731
    stride = cols + prng.randint(0, 2)
    x = put(wide(), rows, stride)
    scores = put(wide(), rows, stride)
    gamma = put(np.concatenate([_scales(rng, cols, -10, -2), rng.integers(-5000, 5000, cols).astype(np.uint32)]))
    row_scales = put(_scales(rng, rows, -24, -16))
    q, q_scales, y, r, z, e, sums, g = (spad.take(rows * stride), acc.take(rows), acc.take(rows * stride),
                                        acc.take(rows), acc.take(rows * stride), acc.take(rows * stride),
                                        acc.take(rows), acc.take(rows * stride))
    q2, q2_scales, by = spad.take(rows * stride), acc.take(rows), acc.take(rows)
    largest, z_by, z_scales = acc.take(rows), acc.take(rows), acc.take(rows)
    inv_m, inv_e = nx.scale_from_float(1.0 / cols)
    rect = dict(rows=rows, cols=cols, stride0=stride, stride1=stride)
    first = [
        (Opcode.V_QUANT, dict(addr0=x, addr1=q, addr2=q_scales, **rect)),
        (Opcode.V_DEQUANT, dict(addr0=q, addr1=y, addr2=q_scales, **rect)),
        (Opcode.V_ADD, dict(addr0=y, addr1=y, addr2=x, imm=stride, **rect)),
        (Opcode.V_RMSNORM, dict(flags=Flag.ROW_SCALE, addr0=y, addr1=r, imm=prng.randint(0, 1 << 20),
                                addr3=int(_packed(inv_m, inv_e)), **{**rect, "stride1": 1})),
        (Opcode.V_REQUANT, dict(flags=Flag.HAS_BIAS | Flag.ROW_SCALE, addr0=y, addr1=z, addr2=r, addr3=gamma,
                                imm=largest, **rect)),
        (Opcode.V_SILU, dict(addr0=z, addr1=g, **rect)),
        # z's quantization scales from its rows' largest results, a word a row
        (Opcode.V_QUANT, dict(flags=Flag.ROW_SCALE, addr0=largest, stride0=1, addr1=z_by, stride1=1, addr2=z_scales,
                              rows=rows, cols=1)),
    ]
    second = [
        (Opcode.V_SOFTMAX_EXP, dict(addr0=scores, addr1=e, addr2=sums, **rect)),
        (Opcode.V_MUL, dict(addr0=e, addr1=e, addr2=x, imm=stride, **rect)),
        (Opcode.V_QUANT, dict(flags=Flag.ROW_SCALE, addr0=e, addr1=by, addr2=q2_scales, **{**rect, "stride1": 1})),
        (Opcode.V_REQUANT8, dict(addr0=e, addr1=q2, addr2=by, **rect)),
        (Opcode.V_REQUANT, dict(flags=Flag.NO_COL_SCALE, addr0=scores, addr1=scores, addr2=row_scales, **rect)),
    ]
    while first or second:
        chain = first if first and (not second or prng.random() < 0.6) else second
        program.append(chain.pop(0))
    store_rows(layout, stores, q, cols, rows, stride, from_spad=True)
    store_rows(layout, stores, q2, cols, rows, stride, from_spad=True)
    for where, n, nrows, step in ((q_scales, rows, 1, rows), (q2_scales, rows, 1, rows), (by, rows, 1, rows),
                                  (largest, rows, 1, rows), (z_by, rows, 1, rows), (z_scales, rows, 1, rows),
                                  (y, cols, rows, stride), (r, rows, 1, rows),
                                  (z, cols, rows, stride), (e, cols, rows, stride), (sums, rows, 1, rows),
                                  (g, cols, rows, stride), (scores, cols, rows, stride)):
        store_rows(layout, stores, where, n, nrows, step)
    tb.dut._log.info(f"chain of {rows} x {cols}: " + ", ".join(op.name for op, _ in program if op.name[:2] == "V_"))
    return program + stores


@cocotb.test()
async def vector_chains(dut):
    """Vector instructions back to back, some reading what the one before writes and some not, equal
    the functional simulator byte for byte. And the second of two is fed while the first's results
    are written, row by row: a one-row V_GELU after a four-row V_SOFTMAX_EXP (the unit's long path)
    takes as long beside it as when it reads the softmax's first row of results, and longer when
    it reads the last (it waits until that row is written)."""
    tb = TB(dut)
    await tb.reset()
    for _ in range(int(os.environ.get("SCOVILLE_ROUNDS", "2")) * 3):
        image, layout, spad, acc = fresh_image(tb)
        await run_and_compare(tb, vector_chain(tb, image, layout, acc, spad), image)
    C = tb.config.lanes
    rows, cols = 4, 4 * C
    cycles = {}
    for name in ("apart", "first row", "last row"):
        image, layout, spad, acc = fresh_image(tb)
        source = tb.np_rng.integers(-(1 << 18), 1 << 18, (rows, cols)).astype(np.int32)
        where, program = load_words(image, layout, acc, {"a": source, "b": source}, C)
        out = acc.take((rows + 1) * cols + rows, C)
        read = {"apart": where["b"], "first row": out, "last row": out + (rows - 1) * cols}[name]
        program += [(Opcode.V_SOFTMAX_EXP, dict(addr0=where["a"], addr1=out, addr2=out + (rows + 1) * cols,
                                                rows=rows, cols=cols, stride0=cols, stride1=cols)),
                    (Opcode.V_GELU, dict(addr0=read, addr1=out + rows * cols, rows=1, cols=cols))]
        dram = layout.take(4 * ((rows + 1) * cols + rows), 4)
        program.append((Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=out, addr1=dram, rows=1,
                                           cols=(rows + 1) * cols + rows)))
        cycles[name] = await run_and_compare(tb, program, image)
    dut._log.info(f"V_SOFTMAX_EXP ({rows} x {cols}) then V_GELU (1 x {cols}): " + ", ".join(
        f"{cycles[name]} cycles reading {'another row' if name == 'apart' else 'the ' + name}" for name in cycles))
    assert cycles["apart"] == cycles["first row"] < cycles["last row"], cycles


@cocotb.test()
async def rope_chunks(dut):
    """V_ROPE against the functional simulator, and what each chunk of rotation pairs costs: a
    cycle per ``rope_pairs`` pairs, its reads, pipeline and writes overlapping the chunks before
    and after it, or its three reads for a short chunk (``compiler.perfmodel.rope_chunk_cycles``:
    a head of 16 elements, chunks of 8 pairs, 8 cycles on 8x8; a head wider than C pairs is
    chunks of C and a shorter last one)."""
    tb = TB(dut)
    await tb.reset()
    C = tb.config.lanes
    for head in (16, 2 * C + 6):
        half, heads = head // 2, 3
        cols = head * heads
        runs = {}
        for rows in (1, 9):
            # the same nine rows in and out both times, rotated in place: only the V_ROPE differs
            image, layout, spad, acc = fresh_image(tb)
            x = tb.np_rng.integers(-(1 << 20), 1 << 20, (9, cols)).astype(np.int32)
            freqs = nx.rope_frequencies(head, 10000.0).astype(np.uint32)
            x_dram, f_dram = layout.take(x.nbytes, 4), layout.take(freqs.nbytes, 4)
            image[x_dram:x_dram + x.nbytes] = x.view(np.uint8).ravel()
            image[f_dram:f_dram + freqs.nbytes] = freqs.view(np.uint8)
            # on whole accumulator rows, as the compiler places its buffers: a chunk read that
            # straddles two rows is two reads (a random start measured 14 cycles a chunk)
            buf, f_acc = acc.take(x.size, C), acc.take(half, C)
            program = [
                (Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=x_dram, addr1=buf, rows=1, cols=x.size)),
                (Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=f_dram, addr1=f_acc, rows=1, cols=half)),
                (Opcode.V_ROPE, dict(addr0=buf, stride0=cols, addr1=buf, stride1=cols, addr2=f_acc, addr3=head,
                                     rows=rows, cols=cols, imm=tb.rng.randrange(100))),
                (Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=buf, addr1=x_dram, rows=1, cols=x.size)),
            ]
            runs[rows] = await run_and_compare(tb, program, image)
        chunks = 8 * heads * -(-half // C)
        each = (runs[9] - runs[1]) / chunks
        dut._log.info(f"V_ROPE, head {head}: {runs[1]} cycles for one row, {runs[9]} for 9: "
                      f"{each:.2f} a chunk more ({chunks} chunks, {half} pairs a head)")
        # (the wider head's second halves start mid-row: each such read is two row reads, which
        # its short chunks do not hide, about 1.4 cycles a chunk on the 8x8 core)
        slack = 0.5 if head == 16 else 1.5
        bound = 8 * heads * rope_chunk_cycles(half, C, tb.config.rope_pairs) / chunks + slack
        assert each <= bound, f"a V_ROPE chunk took {each:.2f} cycles (> {bound})"


def load_words(image: np.ndarray, layout: Layout, acc: Layout, words: dict, lanes: int) -> tuple[dict, list]:
    """Each array of ``words`` (int32/uint32, by name) placed in DRAM and LOADed into whole
    accumulator rows, as the compiler places its buffers: (name -> accumulator address, the LOADs)."""
    where, program = {}, []
    for name, w in words.items():
        dram = layout.take(w.nbytes, 4)
        image[dram:dram + w.nbytes] = w.view(np.uint8).ravel()
        where[name] = acc.take(w.size, lanes)
        program.append((Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=dram, addr1=where[name], rows=1, cols=w.size)))
    return where, program


@cocotb.test()
async def attn_scale_rows(dut):
    """V_ATTN_SCALE against the functional simulator, and what each row costs on the scalar path:
    its two reads (prefetched while the row before divides), the division, the scale products and
    the write (``compiler.perfmodel.ATTN_SCALE_ROW``). The same rows in and out both times: only
    the instruction's row count differs."""
    tb = TB(dut)
    await tb.reset()
    C = tb.config.lanes
    keys = 64
    runs = {}
    for rows in (1, 33):
        image, layout, spad, acc = fresh_image(tb)
        words = {"sums": tb.np_rng.integers(1, 1 << 22, 33).astype(np.uint32),
                 "P scales": _scales(tb.np_rng, 33, -20, -14), "value scales": _scales(tb.np_rng, keys, -20, -8),
                 "out": np.zeros(33, np.uint32)}   # (a known state for the rows one row leaves alone)
        where, program = load_words(image, layout, acc, words, C)
        out, out_dram = where["out"], layout.take(4 * 33, 4)
        program += [
            (Opcode.V_ATTN_SCALE, dict(addr0=where["sums"], addr1=out, addr2=where["P scales"],
                                       addr3=int(_scales(tb.np_rng, 1, -10, -5)[0]), imm=where["value scales"],
                                       rows=rows, cols=keys)),
            (Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=out, addr1=out_dram, rows=1, cols=33)),
        ]
        runs[rows] = await run_and_compare(tb, program, image)
    each = (runs[33] - runs[1]) / 32
    dut._log.info(f"V_ATTN_SCALE: {runs[1]} cycles for one row, {runs[33]} for 33: {each:.2f} a row more")
    assert each <= ATTN_SCALE_ROW + 0.5, f"a V_ATTN_SCALE row took {each:.2f} cycles (> {ATTN_SCALE_ROW})"


@cocotb.test()
async def scale_mul_rows(dut):
    """V_SCALE_MUL against the functional simulator, in place as the compiler runs it on the keys'
    scales, and what its rows cost: a row a cycle, and a read of the next chunk of ``lanes``
    scales after each chunk (``compiler.perfmodel.COEFFICIENTS["V_SCALE_MUL"]``)."""
    tb = TB(dut)
    await tb.reset()
    C = tb.config.lanes
    runs = {}
    for rows in (1, 4 * C + 1):
        image, layout, spad, acc = fresh_image(tb)
        where, program = load_words(image, layout, acc, {"scales": _scales(tb.np_rng, 4 * C + 1, -20, -5)}, C)
        out_dram = layout.take(4 * (4 * C + 1), 4)
        program += [
            (Opcode.V_SCALE_MUL, dict(addr0=where["scales"], addr1=where["scales"], rows=rows,
                                      addr3=int(_scales(tb.np_rng, 1, -20, -5)[0]))),
            (Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=where["scales"], addr1=out_dram, rows=1, cols=4 * C + 1)),
        ]
        runs[rows] = await run_and_compare(tb, program, image)
    coefficients = COEFFICIENTS["V_SCALE_MUL"]
    many = 4 * C + 1
    each = (runs[many] - runs[1]) / (many - 1)
    want = coefficients[1] + coefficients[2] / C
    dut._log.info(f"V_SCALE_MUL: {runs[1]} cycles for one row, {runs[many]} for {many}: {each:.2f} a row more")
    assert each <= want + 0.25, f"a V_SCALE_MUL row took {each:.2f} cycles (> {want:.2f})"


@cocotb.test()
async def requant_rows(dut):
    """V_REQUANT with column scales and a bias, one beat a row, against the functional simulator,
    and what each row costs: on the wide requantizer (``ChipConfig.wide_requant``) a beat a cycle
    whatever the vector unit's width, its row scales read a chunk of ``lanes`` rows at a time (a
    read a row made it two cycles); through a narrower unit, its pieces."""
    tb = TB(dut)
    await tb.reset()
    C = tb.config.lanes
    many = 3 * C + 1
    rng = tb.np_rng
    source = rng.integers(-(1 << 18), 1 << 18, (many, C)).astype(np.int32)
    row_scales = _scales(rng, many, -24, -16)
    column = np.concatenate([_scales(rng, C, -10, -2), rng.integers(-5000, 5000, C).astype(np.uint32)])
    # the source, the scales and the result each in a bank of their own, as the compiler keeps a
    # matmul's tile, its scales and the layer's output apart (in one bank the reads and the
    # writes take turns)
    bank = tb.config.acc_words // tb.config.acc_banks
    runs = {}
    for rows in (1, many):
        image, layout, spad, acc = fresh_image(tb)
        where, program = load_words(image, layout, acc, {"source": source}, bank)
        acc.take(0, bank)   # the next bank
        scales, loads = load_words(image, layout, acc, {"row": row_scales, "column": column}, C)
        dst = acc.take(many * C, bank)
        out_dram = layout.take(4 * many * C, 4)
        # the rows it does not write are stored too: zeros, whatever tests before left there
        zeros = layout.take(4 * many * C, 4)
        loads.append((Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=zeros, addr1=dst, rows=1, cols=many * C)))
        program += loads + [
            (Opcode.V_REQUANT, dict(flags=Flag.HAS_BIAS, addr0=where["source"], stride0=C, addr1=dst, stride1=C,
                                    addr2=scales["row"], addr3=scales["column"], rows=rows, cols=C)),
            (Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=dst, addr1=out_dram, rows=1, cols=many * C)),
        ]
        runs[rows] = await run_and_compare(tb, program, image)
    each = (runs[many] - runs[1]) / (many - 1)
    want = 1.0 if tb.config.wide_requant else C / tb.config.unit_lanes
    dut._log.info(f"V_REQUANT: {runs[1]} cycles for one row, {runs[many]} for {many}: {each:.2f} a row more")
    assert each <= want + 1 / C + 0.25, f"a one-beat V_REQUANT row took {each:.2f} cycles (> {want:.2f})"


@cocotb.test()
async def fold_in_the_softmax(dut):
    """A V_SOFTMAX_EXP with FOLD_V leaves in the SRAM what a V_SOFTMAX_EXP and a V_FOLD_V after it
    leave (both against the functional simulator, and byte for byte against each other), in fewer
    cycles; its cost over a plain V_SOFTMAX_EXP is the exponent scan
    (``compiler.perfmodel.SCAN_FIXED`` and a cycle a chunk), not another pass."""
    tb = TB(dut)
    await tb.reset()
    C = tb.config.lanes
    rows, cols = 32, 64
    scores = tb.np_rng.integers(-(1 << 18), 1 << 18, (rows, cols)).astype(np.int32)
    v_scales = _scales(tb.np_rng, cols, -12, -3)
    causal = dict(flags=Flag.CAUSAL, imm=cols - rows)
    results, cycles = {}, {}
    for name in ("apart", "fused", "plain"):
        image, layout, spad, acc = fresh_image(tb)
        where, program = load_words(image, layout, acc, {"scores": scores, "value scales": v_scales}, C)
        sums = acc.take(rows, C)
        softmax = dict(addr0=where["scores"], stride0=cols, addr1=where["scores"], stride1=cols, addr2=sums,
                       rows=rows, cols=cols, **causal)
        if name == "fused":
            program.append((Opcode.V_SOFTMAX_EXP, {**softmax, "flags": Flag.CAUSAL | Flag.FOLD_V,
                                                   "addr3": where["value scales"]}))
        else:
            program.append((Opcode.V_SOFTMAX_EXP, softmax))
        if name == "apart":
            program.append((Opcode.V_FOLD_V, dict(addr0=where["scores"], stride0=cols, addr1=where["scores"],
                                                  stride1=cols, addr2=where["value scales"], rows=rows, cols=cols)))
        out = layout.take(4 * (rows * cols + rows), 4)
        program += [(Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=where["scores"], addr1=out, rows=1,
                                        cols=rows * cols)),
                    (Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=sums, addr1=out + 4 * rows * cols, rows=1,
                                        cols=rows))]
        cycles[name] = await run_and_compare(tb, program, image)
        results[name] = tb.read_dram()[out:out + 4 * (rows * cols + rows)].copy()
    dut._log.info(f"32 x 64 causal softmax: with V_FOLD_V after it {cycles['apart']} cycles, folded "
                  f"{cycles['fused']}, without the fold {cycles['plain']}")
    assert np.array_equal(results["fused"], results["apart"]), "the fused fold differs from V_FOLD_V's"
    assert not np.array_equal(results["fused"], results["plain"]), "the value scales changed nothing"
    scan = SCAN_FIXED + -(-cols // C)
    assert cycles["fused"] - cycles["plain"] <= scan, \
        f"the fold cost {cycles['fused'] - cycles['plain']} cycles over the softmax (> the scan, {scan})"


@cocotb.test()
async def causal_softmax_skips_masked_keys(dut):
    """A causal V_SOFTMAX_EXP from key 0 (row r allows r + 1 keys) against the same rows
    unmasked: both equal the functional simulator, and the causal one saves at least 90 % of
    the unit cycles the performance model says its masked keys take (the feeder and the unit
    stop each row at its last allowed key, the writer fills the rest with zeros)."""
    tb = TB(dut)
    await tb.reset()
    C = tb.config.lanes
    rows, cols = 32, 64
    scores = tb.np_rng.integers(-(1 << 18), 1 << 18, (rows, cols)).astype(np.int32)
    cycles, work = {}, {}
    for name, flags in (("causal", Flag.CAUSAL), ("unmasked", 0)):
        image, layout, spad, acc = fresh_image(tb)
        where, program = load_words(image, layout, acc, {"scores": scores}, C)
        sums = acc.take(rows, C)
        softmax = dict(flags=flags, addr0=where["scores"], stride0=cols, addr1=where["scores"], stride1=cols,
                       addr2=sums, rows=rows, cols=cols, imm=0)
        out = layout.take(4 * (rows * cols + rows), 4)
        program += [(Opcode.V_SOFTMAX_EXP, softmax),
                    (Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=where["scores"], addr1=out, rows=1,
                                        cols=rows * cols)),
                    (Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=sums, addr1=out + 4 * rows * cols, rows=1,
                                        cols=rows))]
        cycles[name] = await run_and_compare(tb, program, image)
        work[name] = features(Opcode.V_SOFTMAX_EXP, softmax, tb.config)[2]
    saved, modelled = cycles["unmasked"] - cycles["causal"], work["unmasked"] - work["causal"]
    dut._log.info(f"{rows} x {cols} softmax: causal {cycles['causal']} cycles, unmasked {cycles['unmasked']}; "
                  f"saved {saved}, the model's masked work {modelled:.0f}")
    assert saved >= 0.9 * modelled, f"the causal rows saved {saved} cycles, the model says {modelled:.0f}"


async def wait_done(chip: Chip, timeout: int = 300_000) -> dict:
    """Poll one core's STATUS until its job is done or stopped (the interrupt is every core's)."""
    for _ in range(timeout // 64):
        status = await chip.read_csr("STATUS")
        if not status & BUSY:
            low = await chip.read_csr("CYCLES_LO")
            return {"status": status, "error": await chip.read_csr("ERROR_CODE"),
                    "error_addr": await chip.read_csr("ERROR_ADDR"), "cycles": low,
                    "finished": get_sim_time("ns") // CLOCK_NS}
        await ClockCycles(chip.dut.clk, 64)
    raise AssertionError(f"core at page {chip.page:#x}: still busy after {timeout} cycles")


@cocotb.test(skip=design_params().get("mesh_width", 1) * design_params().get("mesh_height", 1) < 2)
async def cores_run_at_once(dut):
    """Every core of a multi-core chip runs its own GEMM programs from its own DRAM window at the
    same time, through the one memory tile; each equals the functional simulator, and together they
    take less time than one after the other."""
    tb = TB(dut)
    await tb.reset(latency=20)
    cores = tb.config.mesh_width * tb.config.mesh_height
    region = tb.dram_bytes // cores
    for job in range(2):
        image = np.zeros(tb.dram_bytes, dtype=np.uint8)
        programs = []
        for n in range(cores):
            layout = Layout(n * region + 4096, (n + 1) * region)
            spad = Layout(tb.rng.randrange(64), tb.config.spad_bytes)
            acc = Layout(tb.rng.randrange(64), tb.config.acc_words)
            program = []
            for _ in range(3):
                program += random_gemm(tb, image, layout, spad, acc, max_dim=24)
            code = assemble(program)
            image[n * region:n * region + code.size] = code
            programs.append(n * region)
        want = image.copy()
        for base in programs:   # each core has its own SRAMs; their DRAM regions are disjoint
            run_program(Machine(tb.config, want), base)
        tb.write_dram(image)
        await RisingEdge(dut.clk)
        views = [tb.chip.core(n) for n in range(cores)]
        began = get_sim_time("ns") // CLOCK_NS
        for n, view in enumerate(views):
            await view.start(programs[n], (n * region, (n + 1) * region))
        results = [await wait_done(view) for view in views]
        for n, result in enumerate(results):
            assert result["error"] == 0, f"core {n} stopped with {ErrorCode(result['error']).name} at " \
                                         f"{result['error_addr']:#x}"
            assert result["status"] & DONE, result
            await views[n].write_csr("STATUS", DONE)
        compare(tb.read_dram(), want)
        together = max(r["finished"] for r in results) - began
        alone = sum(r["cycles"] for r in results)
        dut._log.info(f"job {job}: cores took {[r['cycles'] for r in results]} cycles, {together} together")
        assert together < alone, (together, alone)
