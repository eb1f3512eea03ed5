"""Cores with real DMA engines reaching one AXI4 memory through the NoC: the end-to-end test top."""

from collections.abc import Iterable

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.axi import Axi4Signature
from rtl.dma.descriptor import ADDR_BITS, Descriptor, Status
from rtl.dma.engine import DmaEngine
from rtl.memory.accumulator import Accumulator
from rtl.memory.scratchpad import Scratchpad
from rtl.noc.mesh import tile_name
from rtl.noc.system import MemoryNoC

__all__ = ["DmaNoC"]


class DmaNoC(wiring.Component):
    """A :class:`rtl.noc.system.MemoryNoC` whose cores each run a :class:`DmaEngine` with its own
    :class:`Scratchpad` and :class:`Accumulator`; the engine's DRAM port is the core's memory
    port, so every DRAM access goes network interface -> mesh -> memory tile -> AXI4.

    The SRAMs' other clients (matrix engine, vector unit) are idle.

    Parameters
    ----------
    width, height, cores, memory, depth, buffer_beats, packet_beats : as :class:`MemoryNoC`.
    data_width : int
        Bus word, DMA word and scratchpad row (``data_width / 8`` int8).
    spad_depth, acc_depth : int
        Rows of each core's scratchpad and accumulator.
    lanes : int
        int32 values per accumulator row.
    rows_in_flight : int
        Of each engine.

    Ports
    -----
    descriptor_x{x}_y{y}, status_x{x}_y{y}, window_base_x{x}_y{y}, window_limit_x{x}_y{y}, busy_x{x}_y{y}
        The engine of the core at (x, y), as :class:`DmaEngine`.
    m_axi : Out(Axi4Signature(ADDR_BITS, data_width))
        The memory tile's AXI4 master.
    """

    def __init__(self, width: int, height: int, cores: Iterable[tuple[int, int]], memory: tuple[int, int],
                 data_width: int = 64, depth: int = 4, spad_depth: int = 256, acc_depth: int = 32,
                 lanes: int = 8, rows_in_flight: int = 16, buffer_beats: int = 64, packet_beats: int = 32):
        self.network = MemoryNoC(width, height, cores, memory, ADDR_BITS, data_width, depth,
                                 buffer_beats=buffer_beats, packet_beats=packet_beats)
        self.cores = self.network.cores
        self.data_width, self.rows_in_flight = data_width, rows_in_flight
        self.spad_depth, self.acc_depth, self.lanes = spad_depth, acc_depth, lanes
        members = {"m_axi": Out(Axi4Signature(ADDR_BITS, data_width))}
        for x, y in self.cores:
            name = tile_name(x, y)
            members |= {
                f"descriptor_{name}": In(stream.Signature(Descriptor)),
                f"status_{name}": Out(stream.Signature(Status)),
                f"window_base_{name}": In(ADDR_BITS),
                f"window_limit_{name}": In(ADDR_BITS),
                f"busy_{name}": Out(1),
            }
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.network = network = self.network
        for x, y in self.cores:
            name = tile_name(x, y)
            spad = Scratchpad(self.spad_depth, self.data_width // 8, banks=2)
            acc = Accumulator(self.acc_depth, self.lanes, self.data_width, banks=2)
            engine = DmaEngine(self.data_width, spad.size_bytes, acc.size_bytes, self.rows_in_flight)
            m.submodules[f"scratchpad_{name}"] = spad
            m.submodules[f"accumulator_{name}"] = acc
            m.submodules[f"engine_{name}"] = engine
            wiring.connect(m, wiring.flipped(getattr(self, f"descriptor_{name}")), engine.descriptor)
            wiring.connect(m, wiring.flipped(getattr(self, f"status_{name}")), engine.status)
            m.d.comb += [engine.window_base.eq(getattr(self, f"window_base_{name}")),
                         engine.window_limit.eq(getattr(self, f"window_limit_{name}")),
                         getattr(self, f"busy_{name}").eq(engine.busy)]
            wiring.connect(m, engine.dram, getattr(network, f"port_{name}"))
            wiring.connect(m, engine.spad, spad.dma)
            wiring.connect(m, engine.acc, acc.dma)
            m.d.comb += [spad.matrix_read.request.valid.eq(0), spad.vector_read.request.valid.eq(0),
                         spad.vector_write.valid.eq(0), acc.matrix_write.valid.eq(0),
                         acc.vector_read.request.valid.eq(0)]
        wiring.connect(m, network.m_axi, wiring.flipped(self.m_axi))
        return m
