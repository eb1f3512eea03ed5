"""Bounded model check of the AXI4 master: the AXI rules its address and write channels must
keep whatever the DMA side does (within the stream rules) and whatever the slave does."""

import pytest
from amaranth.hdl import Assert, Assume, Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.axi import Axi4Signature
from rtl.dma.axi_master import AxiMaster
from rtl.dma.port import MemoryPortSignature

ADDR_WIDTH = 32


class AxiMasterRules(wiring.Component):
    """:class:`AxiMaster` with free inputs, assumptions on the port's streams and assertions on
    the AXI side (checked in every cycle after reset)."""

    def __init__(self, data_width: int):
        self.data_width = data_width
        super().__init__({
            "port": In(MemoryPortSignature(ADDR_WIDTH, data_width)),
            "m_axi": Out(Axi4Signature(ADDR_WIDTH, data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = AxiMaster(ADDR_WIDTH, self.data_width, max_outstanding=4)
        wiring.connect(m, wiring.flipped(self.port), dut.port)
        wiring.connect(m, wiring.flipped(self.m_axi), dut.m_axi)
        axi, port = self.m_axi, self.port
        shift = (self.data_width // 8).bit_length() - 1

        started = Signal()  # one cycle after reset: "previous cycle" values are meaningful
        m.d.sync += started.eq(1)

        def held(valid, ready, payload, name):
            """valid & ~ready last cycle -> valid and the same payload now."""
            was_waiting = Signal(name=f"{name}_was_waiting")
            last = Signal.like(payload, name=f"{name}_last")
            m.d.sync += [was_waiting.eq(valid & ~ready), last.eq(payload)]
            return started & was_waiting, valid & (payload == last)

        # the DMA side keeps the stream rules, and asks for at least one word
        for stream_port in (port.read_request, port.write_request, port.write_data):
            waiting, holds = held(stream_port.valid, stream_port.ready, stream_port.payload.as_value(),
                                  f"in_{id(stream_port) % 1000}")
            with m.If(waiting):
                m.d.comb += Assume(holds)
        for request in (port.read_request, port.write_request):
            with m.If(request.valid):
                m.d.comb += Assume(request.payload.beats != 0)

        for ch in ("ar", "aw"):
            valid, ready = getattr(axi, f"{ch}valid"), getattr(axi, f"{ch}ready")
            addr, length = getattr(axi, f"{ch}addr"), getattr(axi, f"{ch}len")
            waiting, holds = held(valid, ready, Cat(addr, length), ch)
            with m.If(waiting):
                m.d.comb += Assert(holds, f"{ch}: valid and payload held until ready")
            with m.If(started & valid):
                m.d.comb += [
                    Assert(addr[:shift] == 0, f"{ch}: aligned address"),
                    Assert(addr[:12] + ((length + 1) << shift) <= 4096, f"{ch}: burst crosses 4 KiB"),
                    Assert(getattr(axi, f"{ch}burst") == 1, f"{ch}: INCR"),
                ]
        waiting, holds = held(axi.wvalid, axi.wready, Cat(axi.wdata, axi.wstrb, axi.wlast), "w")
        with m.If(waiting):
            m.d.comb += Assert(holds, "w: valid and payload held until ready")
        return m


@pytest.mark.parametrize("depth", [
    8,  # a request split at 4 KiB and its next one; a mutant page size is caught in 2 s
    pytest.param(14, marks=pytest.mark.slow),
])
def test_axi_master_keeps_axi_rules(depth):
    from scoville.formal import check

    check(AxiMasterRules(64), f"axi_master_rules_64_d{depth}", mode="bmc", depth=depth)
