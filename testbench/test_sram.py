"""cocotb tests of the scratchpad and accumulator inside the DMA subsystem: the matrix engine,
vector unit and DMA at the same time in the double-buffered pattern, and accumulation."""

from __future__ import annotations

import cocotb
import numpy as np
from amaranth.hdl import unsigned
from cocotb.triggers import ClockCycles, RisingEdge

from rtl.dma.descriptor import Space
from rtl.memory.accumulator import matrix_write_layout
from rtl.memory.bridge import write_request_layout
from scoville.flow import design_params
from testbench import dma_model
from testbench.streams import StreamSource, pauses
from testbench.test_dma import TB, compare


class ReadClient:
    """Issues row reads on an SRAM read port and collects what comes back one cycle later."""

    def __init__(self, dut, prefix: str, clk, addr_bits: int, pause=None):
        self.source = StreamSource(dut, f"{prefix}__request", clk, unsigned(addr_bits), pause)
        self.data = getattr(dut, f"{prefix}__data")
        self.data_valid = getattr(dut, f"{prefix}__data_valid")
        self.valid = getattr(dut, f"{prefix}__request__valid")
        self.ready = getattr(dut, f"{prefix}__request__ready")
        self.clk = clk
        self.received: list[int] = []
        self.stalls = 0

    async def run(self):
        cocotb.start_soon(self.source.run())
        while True:
            await RisingEdge(self.clk)
            if int(self.data_valid.value):
                self.received.append(int(self.data.value))
            if int(self.valid.value) and not int(self.ready.value):
                self.stalls += 1


class Stalls:
    """Counts cycles where a stream offers a beat that is not taken."""

    def __init__(self, dut, prefix: str, clk):
        self.valid, self.ready, self.clk = getattr(dut, f"{prefix}__valid"), getattr(dut, f"{prefix}__ready"), clk
        self.count = 0

    async def run(self):
        while True:
            await RisingEdge(self.clk)
            if int(self.valid.value) and not int(self.ready.value):
                self.count += 1


def rows_of(content: np.ndarray, row_bytes: int) -> list[int]:
    return [int.from_bytes(content[n:n + row_bytes].tobytes(), "little") for n in range(0, len(content), row_bytes)]


@cocotb.test()
async def double_buffered_scratchpad(dut):
    """DMA fills bank 1 while the matrix engine reads bank 0 and the vector unit writes bank 0,
    every cycle: neither the matrix engine nor the vector unit ever waits, and all data is right."""
    tb = TB(dut)
    await tb.reset()
    params = design_params()
    word = tb.word_bytes
    depth, banks = params["spad_depth"], params["banks"]
    bank_rows = depth // banks
    addr_bits = (depth - 1).bit_length()
    model = await tb.fill_random()
    spad = model[Space.SPAD.value]
    reader = ReadClient(dut, "spad_matrix_read", dut.clk, addr_bits)
    writer = StreamSource(dut, "spad_vector_write", dut.clk, write_request_layout(addr_bits, 8 * word))
    writer_stalls = Stalls(dut, "spad_vector_write", dut.clk)
    cocotb.start_soon(reader.run())
    cocotb.start_soon(writer.run())
    cocotb.start_soon(writer_stalls.run())
    read_rows = list(range(bank_rows // 2)) * 4
    new_rows = {bank_rows // 2 + n: tb.rng.getrandbits(8 * word) for n in range(bank_rows // 2)}
    reader.source.send(read_rows)
    writer.send([{"addr": a, "data": d, "strb": (1 << word) - 1} for a, d in new_rows.items()])
    length = bank_rows * word  # all of bank 1
    desc = dma_model.descriptor(0x2000, bank_rows * word, Space.DRAM, Space.SPAD, [length])
    status = await tb.run(desc)
    assert status["error"] == 0
    while not (reader.source.idle and writer.idle):
        await RisingEdge(dut.clk)
    await ClockCycles(dut.clk, 3)
    assert reader.stalls == 0 and writer_stalls.count == 0, (reader.stalls, writer_stalls.count)
    rows = rows_of(spad, word)
    assert reader.received == [rows[r] for r in read_rows], "matrix reads returned wrong rows"
    dma_model.apply(desc, model)
    for addr, value in new_rows.items():
        spad[addr * word:(addr + 1) * word] = np.frombuffer(value.to_bytes(word, "little"), dtype=np.uint8)
    got = tb.memories()
    compare(got, model, "double buffering", tb.seed)


@cocotb.test()
async def accumulate_rows(dut):
    """Random stores and accumulates (back to back on the same row included, with bubbles) into
    bank 0 while the DMA copies bank 1 to DRAM; read back through the vector port."""
    tb = TB(dut)
    await tb.reset()
    params = design_params()
    lanes, depth, banks = params["lanes"], params["acc_depth"], params["banks"]
    bank_rows = depth // banks
    addr_bits = (depth - 1).bit_length()
    model = await tb.fill_random()
    acc = model[Space.ACC.value].view(np.int32).reshape(depth, lanes).copy()
    writer = StreamSource(dut, "acc_matrix_write", dut.clk, matrix_write_layout(addr_bits, lanes),
                          pauses(0.2, tb.rng))
    cocotb.start_soon(writer.run())
    rng = np.random.default_rng(tb.seed)
    beats = []
    expect = acc.copy()
    row = 0
    for _ in range(600):
        if tb.rng.random() < 0.5:
            row = tb.rng.randrange(bank_rows)  # else: the same row again, back to back
        values = rng.integers(-(1 << 31), 1 << 31, lanes, dtype=np.int64)
        if tb.rng.random() < 0.1:
            values[:] = tb.rng.choice([-(1 << 31), (1 << 31) - 1])
        accumulate = tb.rng.random() < 0.8
        mask = (1 << lanes) - 1 if tb.rng.random() < 0.5 else tb.rng.randrange(1 << lanes)
        beats.append({"addr": row, "data": values.tolist(), "accumulate": int(accumulate), "mask": mask})
        written = np.array([(mask >> lane) & 1 for lane in range(lanes)], dtype=bool)
        new = (expect[row].astype(np.int64) + values).astype(np.int32) if accumulate else values.astype(np.int32)
        expect[row] = np.where(written, new, expect[row])
    writer.send(beats)
    row_bytes = lanes * 4
    desc = dma_model.descriptor(bank_rows * row_bytes, 0x3000, Space.ACC, Space.DRAM, [bank_rows * row_bytes])
    status = await tb.run(desc)
    assert status["error"] == 0
    while not writer.idle:
        await RisingEdge(dut.clk)
    await ClockCycles(dut.clk, 4)
    reader = ReadClient(dut, "acc_vector_read", dut.clk, addr_bits)
    cocotb.start_soon(reader.run())
    reader.source.send(list(range(depth)))
    while len(reader.received) < depth:
        await RisingEdge(dut.clk)
    got = np.array([[((v >> (32 * n)) & 0xFFFFFFFF) for n in range(lanes)] for v in reader.received],
                   dtype=np.uint32).view(np.int32)
    bad = np.argwhere(got != expect)
    if len(bad):
        r, c = bad[0]
        raise AssertionError(f"accumulator row {r} lane {c}: got {got[r, c]}, want {expect[r, c]}; "
                             f"{len(bad)} differ, seed {tb.seed}")
    dram = tb.memories()[Space.DRAM.value]
    copied = model[Space.ACC.value][bank_rows * row_bytes:]
    assert (dram[0x3000:0x3000 + len(copied)] == copied).all(), "DMA copy of bank 1 differs"
