"""The scratchpad's bank arbitration (``rtl/memory/scratchpad.py`` ``banked_memory``): the first
reader has priority, but the last one (the DMA's reads, a STORE) goes first once it has waited
``last_waits`` cycles, so a reader streaming every cycle into the same bank (the matrix engine's
activation rows during a MATMUL) does not hold a STORE off for the MATMUL's whole length.

Amaranth's Python simulator (no Verilator build)."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.sim import Simulator

from rtl.memory.bridge import SramReadSignature, write_request_layout
from rtl.memory.scratchpad import DMA_WAITS, banked_memory

ADDR, WIDTH, DEPTH, BANKS = 6, 16, 64, 2


class Harness(wiring.Component):
    def __init__(self, last_waits):
        read = SramReadSignature(ADDR, WIDTH)
        super().__init__({"first": wiring.In(read), "last": wiring.In(read),
                          "write": wiring.In(stream.Signature(write_request_layout(ADDR, WIDTH)))})
        self.last_waits = last_waits

    def elaborate(self, platform):
        m = Module()
        banked_memory(m, depth=DEPTH, banks=BANKS, width=WIDTH, readers=[self.first, self.last],
                      writers=[self.write], name="mem", last_waits=self.last_waits)
        return m


def _run(last_waits, cycles: int = 48) -> tuple[list, list]:
    """Fill the memory, then the first reader asks for a bank-0 word every cycle while the last
    asks for the eight words 8..15 of bank 0 in turn: (cycle, address, data) of each word each
    reader got."""
    dut = Harness(last_waits)
    got = {"first": [], "last": []}

    async def testbench(ctx):
        for addr in range(DEPTH):
            ctx.set(dut.write.payload, {"addr": addr, "data": 1000 + addr, "strb": 0b11})
            ctx.set(dut.write.valid, 1)
            await ctx.tick()
        ctx.set(dut.write.valid, 0)
        wanted = list(range(8, 16))
        for cycle in range(cycles):
            ctx.set(dut.first.request.valid, 1)
            ctx.set(dut.first.request.payload, cycle % 8)
            ctx.set(dut.last.request.valid, bool(wanted))
            if wanted:
                ctx.set(dut.last.request.payload, wanted[0])
            taken = {"first": ctx.get(dut.first.request.ready), "last": ctx.get(dut.last.request.ready) and wanted}
            requests = {"first": cycle % 8, "last": wanted[0] if wanted else None}
            await ctx.tick()
            for name in ("first", "last"):   # the word comes the cycle after its request is taken
                port = getattr(dut, name)
                assert ctx.get(port.data_valid) == bool(taken[name])
                if taken[name]:
                    got[name].append((cycle, requests[name], ctx.get(port.data)))
            if taken["last"]:
                wanted.pop(0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return got["first"], got["last"]


def test_a_waiting_dma_read_goes_first_every_other_cycle():
    first, last = _run(DMA_WAITS)
    # every word to the reader that asked, with its data
    assert all(data == 1000 + addr for _, addr, data in first + last)
    assert [addr for _, addr, _ in last] == list(range(8, 16))
    # the last reader gets a word every DMA_WAITS + 1 cycles, the first reader the rest
    assert last[-1][0] - last[0][0] == 7 * (DMA_WAITS + 1)
    assert len(first) + len(last) == 48


def test_without_it_the_first_reader_holds_the_bank():
    first, last = _run(None)
    assert not last and len(first) == 48
