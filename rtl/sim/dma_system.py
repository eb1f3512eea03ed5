"""The DMA subsystem with the fast DRAM model attached: benchmarks and chip-level DMA runs."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.descriptor import ADDR_BITS, Descriptor, Status
from rtl.dma.subsystem import DmaSubsystem
from rtl.sim.dram import DramModel

__all__ = ["DmaWithDram"]


class DmaWithDram(wiring.Component):
    """:class:`DmaSubsystem` whose AXI4 port drives a :class:`DramModel` of ``dram_bytes``.

    The SRAMs' other clients are idle. Parameters are those of :class:`DmaSubsystem` plus
    ``dram_bytes``; ``latency`` and ``beat_interval`` are ports of the DRAM model.
    """

    def __init__(self, dram_bytes: int = 1 << 17, **subsystem):
        self.subsystem = DmaSubsystem(**subsystem)
        self.dram = DramModel(size_bytes=dram_bytes, data_width=subsystem.get("data_width", 64))
        super().__init__({
            "descriptor": In(stream.Signature(Descriptor)),
            "status": Out(stream.Signature(Status)),
            "window_base": In(ADDR_BITS),
            "window_limit": In(ADDR_BITS),
            "busy": Out(1),
            "latency": In(16),
            "beat_interval": In(8),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = self.subsystem
        m.submodules.dram = dram = self.dram
        wiring.connect(m, wiring.flipped(self.descriptor), dma.descriptor)
        wiring.connect(m, wiring.flipped(self.status), dma.status)
        wiring.connect(m, dma.m_axi, dram.s_axi)
        m.d.comb += [
            dma.window_base.eq(self.window_base), dma.window_limit.eq(self.window_limit),
            self.busy.eq(dma.busy), dram.latency.eq(self.latency), dram.beat_interval.eq(self.beat_interval),
        ]
        return m
