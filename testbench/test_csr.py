"""cocotb tests of the host CSR block through cocotbext-axi's AxiLiteMaster."""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from rtl.core.controller import ErrorCode
from rtl.core.csr import ID_VALUE, REGISTERS


class TB:
    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"), dut.clk, dut.rst)
        self.starts = 0
        self.resets = 0
        for name in ("busy", "finished", "error", "error_addr", "unit_busy", "unit_waiting",
                     "unit_stalled", "matrix_rows"):
            getattr(dut, name).value = 0

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        cocotb.start_soon(self._count_pulses())

    async def _count_pulses(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.starts += int(self.dut.start.value)
            self.resets += int(self.dut.abort_job.value)

    async def read(self, name):
        return await self.axil.read_dword(REGISTERS[name])

    async def write(self, name, value):
        await self.axil.write_dword(REGISTERS[name], value)


@cocotb.test()
async def registers_read_back_and_start_pulses_once(dut):
    tb = TB(dut)
    await tb.reset()
    assert await tb.read("ID") == ID_VALUE
    for name, value in (("PROGRAM_ADDR", 0x12345678), ("WINDOW_BASE", 0x1000), ("WINDOW_LIMIT", 0xFFFF0000)):
        await tb.write(name, value)
        assert await tb.read(name) == value
    assert int(dut.program_addr.value) == 0x12345678 and int(dut.window_limit.value) == 0xFFFF0000
    await tb.write("CONTROL", 0b001)
    await tb.write("CONTROL", 0b010)
    await ClockCycles(dut.clk, 2)
    assert (tb.starts, tb.resets) == (1, 1)


@cocotb.test()
async def status_done_irq_and_error(dut):
    tb = TB(dut)
    await tb.reset()
    await tb.write("CONTROL", 0b100)  # interrupts on
    dut.busy.value = 1
    await ClockCycles(dut.clk, 50)
    assert await tb.read("STATUS") & 1
    dut.busy.value = 0
    dut.finished.value = 1
    await RisingEdge(dut.clk)
    dut.finished.value = 0
    await RisingEdge(dut.clk)
    assert await tb.read("STATUS") == 0b010 and int(dut.irq.value) == 1
    cycles = await tb.read("CYCLES_LO")
    assert 50 <= cycles <= 53 and await tb.read("CYCLES_HI") == 0, cycles
    await tb.write("STATUS", 0b010)  # acknowledge
    assert await tb.read("STATUS") == 0 and int(dut.irq.value) == 0
    dut.error.value = ErrorCode.OUT_OF_WINDOW.value
    dut.error_addr.value = 0xBAD0
    await RisingEdge(dut.clk)
    assert await tb.read("STATUS") == 0b100 and int(dut.irq.value) == 1
    assert ErrorCode(await tb.read("ERROR_CODE")) is ErrorCode.OUT_OF_WINDOW
    assert await tb.read("ERROR_ADDR") == 0xBAD0


@cocotb.test()
async def unit_counters_count_and_restart_with_start(dut):
    tb = TB(dut)
    await tb.reset()
    dut.unit_busy.value = 0b0101  # load and vector busy
    dut.unit_stalled.value = 0b0010  # matrix stalled
    await ClockCycles(dut.clk, 20)
    dut.unit_busy.value = 0
    dut.unit_stalled.value = 0
    assert await tb.read("LOAD_BUSY") == 20 and await tb.read("VECTOR_BUSY") == 20
    assert await tb.read("MATRIX_BUSY") == 0 and await tb.read("MATRIX_STALLED") == 20
    await tb.write("CONTROL", 1)
    await ClockCycles(dut.clk, 2)
    assert await tb.read("LOAD_BUSY") == 0


@cocotb.test()
async def unmapped_and_read_only_registers_answer_slverr(dut):
    tb = TB(dut)
    await tb.reset()
    write = await tb.axil.write(0xF0, b"\x01\x00\x00\x00")
    assert write.resp == 2, write.resp
    read = await tb.axil.read(0xF4, 4)
    assert read.resp == 2, read.resp
    write = await tb.axil.write(REGISTERS["ID"], b"\x00\x00\x00\x00")
    assert write.resp == 2 and await tb.read("ID") == ID_VALUE
