"""Cores' memory ports reaching one AXI4 memory through the NoC."""

from collections.abc import Iterable

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.axi import Axi4Signature
from rtl.dma.port import MemoryPortSignature
from rtl.memory.scratchpad import Scratchpad
from rtl.noc.interface import NetworkInterface
from rtl.noc.memory_packets import memory_flit_width
from rtl.noc.memory_tile import AxiMemoryTile, MemoryTile
from rtl.noc.mesh import NoC, tile_name

__all__ = ["SCRATCHPAD_BASE", "MemoryNoC"]


#: Where the scratchpads of other cores appear in a core's address space (scratchpad n of
#: ``scratchpads`` at ``SCRATCHPAD_BASE + n * its size``).
SCRATCHPAD_BASE = 0x8000_0000


class MemoryNoC(wiring.Component):
    """A ``width`` x ``height`` :class:`NoC` with a network interface at each of ``cores`` and an
    :class:`AxiMemoryTile` at ``memory``. The cores in ``scratchpads`` also serve their
    scratchpad (``spad_depth`` words, :class:`rtl.memory.scratchpad.Scratchpad`) to every core,
    at :data:`SCRATCHPAD_BASE` onwards: a core's DMA can write into another core's scratchpad.
    ``buffer_beats`` and ``packet_beats`` are those of every :class:`NetworkInterface`.

    Ports
    -----
    port_x{x}_y{y} : In(MemoryPortSignature(addr_width, data_width))
        The memory port of the core at (x, y) (its DMA engine is the initiator).
    m_axi : Out(Axi4Signature(addr_width, data_width))
        The memory tile's AXI4 master.
    """

    def __init__(self, width: int, height: int, cores: Iterable[tuple[int, int]], memory: tuple[int, int],
                 addr_width: int = 32, data_width: int = 64, depth: int = 4,
                 scratchpads: Iterable[tuple[int, int]] = (), spad_depth: int = 256, buffer_beats: int = 64,
                 packet_beats: int = 32):
        self.cores = [tuple(c) for c in cores]
        self.scratchpads = [tuple(c) for c in scratchpads]
        if not set(self.scratchpads) <= set(self.cores):
            raise ValueError(f"scratchpads {self.scratchpads!r} must be cores")
        self.spad_depth = spad_depth
        self.spad_bytes = spad_depth * data_width // 8
        self.address_map = [(SCRATCHPAD_BASE + n * self.spad_bytes, self.spad_bytes, tile)
                            for n, tile in enumerate(self.scratchpads)]
        self.memory = tuple(memory)
        if self.memory in self.cores:
            raise ValueError(f"memory tile {self.memory!r} cannot also be a core")
        self.width, self.height, self.depth = width, height, depth
        self.addr_width, self.data_width = addr_width, data_width
        self.flit_width = memory_flit_width(addr_width, data_width)
        self.buffer_beats, self.packet_beats = buffer_beats, packet_beats
        members = {f"port_{tile_name(x, y)}": In(MemoryPortSignature(addr_width, data_width)) for x, y in self.cores}
        members["m_axi"] = Out(Axi4Signature(addr_width, data_width))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        noc = m.submodules.noc = NoC(self.width, self.height, self.flit_width, self.depth, [*self.cores, self.memory])
        for x, y in self.cores:
            name = tile_name(x, y)
            interface = NetworkInterface(x, y, *self.memory, self.addr_width, self.data_width, self.flit_width,
                                         self.address_map, self.buffer_beats, self.packet_beats)
            m.submodules[f"interface_{name}"] = interface
            wiring.connect(m, wiring.flipped(getattr(self, f"port_{name}")), interface.port)
            wiring.connect(m, interface.request, getattr(noc, f"request_inject_{name}"))
            wiring.connect(m, getattr(noc, f"response_eject_{name}"), interface.response)
            if (x, y) in self.scratchpads:
                server = MemoryTile(x, y, self.addr_width, self.data_width, self.flit_width)
                spad = Scratchpad(self.spad_depth, self.data_width // 8, banks=2)
                m.submodules[f"spad_server_{name}"], m.submodules[f"scratchpad_{name}"] = server, spad
                wiring.connect(m, getattr(noc, f"request_eject_{name}"), server.request)
                wiring.connect(m, server.response, getattr(noc, f"response_inject_{name}"))
                wiring.connect(m, server.port, spad.dma)
                m.d.comb += [spad.matrix_read.request.valid.eq(0), spad.vector_read.request.valid.eq(0),
                             spad.vector_write.valid.eq(0)]
            else:
                # a core without a served scratchpad sends no responses and receives no requests
                m.d.comb += [getattr(noc, f"response_inject_{name}").valid.eq(0),
                             getattr(noc, f"request_eject_{name}").ready.eq(0)]
        name = tile_name(*self.memory)
        tile = m.submodules.memory_tile = AxiMemoryTile(*self.memory, self.addr_width, self.data_width,
                                                        self.flit_width)
        wiring.connect(m, getattr(noc, f"request_eject_{name}"), tile.request)
        wiring.connect(m, tile.response, getattr(noc, f"response_inject_{name}"))
        m.d.comb += [getattr(noc, f"request_inject_{name}").valid.eq(0),
                     getattr(noc, f"response_eject_{name}").ready.eq(0)]
        wiring.connect(m, tile.m_axi, wiring.flipped(self.m_axi))
        return m
