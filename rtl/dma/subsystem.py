"""The DMA subsystem of a core: DMA engine, AXI4 master, scratchpad and accumulator."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.axi import Axi4Signature
from rtl.dma.axi_master import AxiMaster
from rtl.dma.descriptor import ADDR_BITS, Descriptor, Status
from rtl.dma.engine import DmaEngine
from rtl.memory.accumulator import Accumulator
from rtl.memory.scratchpad import Scratchpad

__all__ = ["DmaAxi", "DmaSubsystem"]


class DmaSubsystem(wiring.Component):
    """DMA engine wired to an AXI4 master (DRAM), a scratchpad and an accumulator.

    Parameters
    ----------
    data_width : int
        AXI data width and DMA word, also the scratchpad row (``data_width / 8`` int8).
    spad_depth, acc_depth : int
        Rows of the scratchpad and of the accumulator.
    lanes : int
        int32 values per accumulator row.
    banks : int
        Banks of each SRAM.
    max_outstanding : int
        AXI bursts in flight per direction.

    Ports
    -----
    descriptor, status, window_base, window_limit, busy : as :class:`DmaEngine`
    m_axi : Out(Axi4Signature(ADDR_BITS, data_width))
    spad_matrix_read, spad_vector_read, spad_vector_write : the scratchpad's other clients
    acc_matrix_write, acc_vector_read : the accumulator's other clients
    """

    def __init__(self, data_width: int = 64, spad_depth: int = 1024, acc_depth: int = 256, lanes: int = 8,
                 banks: int = 2, max_outstanding: int = 8, rows_in_flight: int = 16):
        self.scratchpad = Scratchpad(depth=spad_depth, row_bytes=data_width // 8, banks=banks)
        self.accumulator = Accumulator(depth=acc_depth, lanes=lanes, dma_width=data_width, banks=banks)
        self.engine = DmaEngine(data_width=data_width, spad_bytes=self.scratchpad.size_bytes,
                                acc_bytes=self.accumulator.size_bytes, rows_in_flight=rows_in_flight)
        self.axi_master = AxiMaster(ADDR_BITS, data_width, max_outstanding)
        spad, acc = self.scratchpad.signature.members, self.accumulator.signature.members
        super().__init__({
            "descriptor": In(stream.Signature(Descriptor)),
            "status": Out(stream.Signature(Status)),
            "window_base": In(ADDR_BITS),
            "window_limit": In(ADDR_BITS),
            "busy": Out(1),
            "m_axi": Out(Axi4Signature(ADDR_BITS, data_width)),
            "spad_matrix_read": spad["matrix_read"],
            "spad_vector_read": spad["vector_read"],
            "spad_vector_write": spad["vector_write"],
            "acc_matrix_write": acc["matrix_write"],
            "acc_vector_read": acc["vector_read"],
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.axi_master = axi_master = self.axi_master
        m.submodules.scratchpad = spad = self.scratchpad
        m.submodules.accumulator = acc = self.accumulator
        wiring.connect(m, wiring.flipped(self.descriptor), engine.descriptor)
        wiring.connect(m, wiring.flipped(self.status), engine.status)
        m.d.comb += [engine.window_base.eq(self.window_base), engine.window_limit.eq(self.window_limit),
                     self.busy.eq(engine.busy)]
        wiring.connect(m, engine.dram, axi_master.port)
        wiring.connect(m, wiring.flipped(self.m_axi), axi_master.m_axi)
        wiring.connect(m, engine.spad, spad.dma)
        wiring.connect(m, engine.acc, acc.dma)
        wiring.connect(m, wiring.flipped(self.spad_matrix_read), spad.matrix_read)
        wiring.connect(m, wiring.flipped(self.spad_vector_read), spad.vector_read)
        wiring.connect(m, wiring.flipped(self.spad_vector_write), spad.vector_write)
        wiring.connect(m, wiring.flipped(self.acc_matrix_write), acc.matrix_write)
        wiring.connect(m, wiring.flipped(self.acc_vector_read), acc.vector_read)
        return m


class DmaAxi(wiring.Component):
    """The DMA engine with its AXI4 master and its two SRAM memory ports left open: the unit
    that ``make synth`` measures as ``synth.dma.<bits>b``.

    Ports: as :class:`DmaEngine`, with ``dram`` replaced by ``m_axi``.
    """

    def __init__(self, data_width: int = 64, spad_bytes: int = 1 << 16, acc_bytes: int = 1 << 16,
                 max_outstanding: int = 8, rows_in_flight: int = 16):
        self.engine = DmaEngine(data_width=data_width, spad_bytes=spad_bytes, acc_bytes=acc_bytes,
                                rows_in_flight=rows_in_flight)
        self.axi_master = AxiMaster(ADDR_BITS, data_width, max_outstanding)
        engine = self.engine.signature.members
        super().__init__({
            "descriptor": In(stream.Signature(Descriptor)),
            "status": Out(stream.Signature(Status)),
            "window_base": In(ADDR_BITS),
            "window_limit": In(ADDR_BITS),
            "busy": Out(1),
            "m_axi": Out(Axi4Signature(ADDR_BITS, data_width)),
            "spad": engine["spad"],
            "acc": engine["acc"],
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.axi_master = axi_master = self.axi_master
        wiring.connect(m, wiring.flipped(self.descriptor), engine.descriptor)
        wiring.connect(m, wiring.flipped(self.status), engine.status)
        m.d.comb += [engine.window_base.eq(self.window_base), engine.window_limit.eq(self.window_limit),
                     self.busy.eq(engine.busy)]
        wiring.connect(m, engine.dram, axi_master.port)
        wiring.connect(m, wiring.flipped(self.m_axi), axi_master.m_axi)
        wiring.connect(m, wiring.flipped(self.spad), engine.spad)
        wiring.connect(m, wiring.flipped(self.acc), engine.acc)
        return m
