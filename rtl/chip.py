"""The Scoville chip: cores and a memory tile on the network-on-chip, with host CSRs and an interrupt.

A ``mesh_width`` x ``mesh_height`` grid of :class:`rtl.core.core.Core` (from the
:class:`scoville.config.ChipConfig`) plus one column on the east side for the memory tile at
``(mesh_width, 0)``: every core reaches DRAM through its network interface, the mesh, the
memory tile and its AXI4 master. The single-core default is a 2 x 1 mesh, the core at (0, 0).

The host sees one AXI4-Lite slave. Core ``n`` (``n = y * mesh_width + x``) has its
:class:`rtl.core.csr.HostCsr` register page at ``n * 0x100``; an address past the last page
answers SLVERR. ``irq`` is the OR of the cores' interrupts.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.core.core import Core
from rtl.core.csr import AxiLiteSignature, HostCsr
from rtl.dma.axi import Axi4Signature
from rtl.dma.descriptor import ADDR_BITS
from rtl.noc.mesh import tile_name
from rtl.noc.system import MemoryNoC
from scoville.config import ChipConfig

__all__ = ["AxiLiteDecoder", "Chip", "CSR_PAGE_BITS", "CSR_ADDR_BITS"]

#: Bytes of one core's register page (``1 << CSR_PAGE_BITS``) and the width of the host's address.
CSR_PAGE_BITS = 8
CSR_ADDR_BITS = 16

OKAY, SLVERR = 0, 2


class AxiLiteDecoder(wiring.Component):
    """One AXI4-Lite master to ``targets`` slaves, each a page of ``1 << page_bits`` bytes.

    One read and one write are in flight at a time (a register file needs no more). A request
    past the last page is answered here with SLVERR, and reaches no slave.

    Ports
    -----
    s_axil : In(AxiLiteSignature(addr_width))
    m_axil{n} : Out(AxiLiteSignature(addr_width)), for each target ``n``.
    """

    def __init__(self, targets: int, page_bits: int = CSR_PAGE_BITS, addr_width: int = CSR_ADDR_BITS):
        if not isinstance(targets, int) or not 1 <= targets <= 1 << (addr_width - page_bits):
            raise ValueError(f"targets must be 1..{1 << (addr_width - page_bits)}, got {targets!r}")
        self.targets, self.page_bits, self.addr_width = targets, page_bits, addr_width
        members = {"s_axil": In(AxiLiteSignature(addr_width))}
        members |= {f"m_axil{n}": Out(AxiLiteSignature(addr_width)) for n in range(targets)}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil
        slaves = [getattr(self, f"m_axil{n}") for n in range(self.targets)]
        for slave in slaves:
            m.d.comb += [slave.awaddr.eq(bus.awaddr), slave.awprot.eq(bus.awprot), slave.wdata.eq(bus.wdata),
                         slave.wstrb.eq(bus.wstrb), slave.araddr.eq(bus.araddr), slave.arprot.eq(bus.arprot)]

        # ---------------------------------------------------------------- reads
        r_busy, r_local = Signal(), Signal()   # a read is in flight; it is answered here (SLVERR)
        r_target = Signal(range(max(2, self.targets)))
        ar_page = bus.araddr[self.page_bits:]
        with m.If(~r_busy & bus.arvalid):
            with m.If(ar_page < self.targets):
                for n, slave in enumerate(slaves):
                    with m.If(ar_page == n):
                        m.d.comb += [slave.arvalid.eq(1), bus.arready.eq(slave.arready)]
                with m.If(bus.arready):
                    m.d.sync += [r_busy.eq(1), r_local.eq(0), r_target.eq(ar_page)]
            with m.Else():
                m.d.comb += bus.arready.eq(1)
                m.d.sync += [r_busy.eq(1), r_local.eq(1)]
        with m.If(r_busy & r_local):
            m.d.comb += [bus.rvalid.eq(1), bus.rresp.eq(SLVERR), bus.rdata.eq(0)]
        with m.Elif(r_busy):
            for n, slave in enumerate(slaves):
                with m.If(r_target == n):
                    m.d.comb += [bus.rvalid.eq(slave.rvalid), bus.rresp.eq(slave.rresp), bus.rdata.eq(slave.rdata),
                                 slave.rready.eq(bus.rready)]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += r_busy.eq(0)

        # ---------------------------------------------------------------- writes (address and data together)
        w_busy, w_local = Signal(), Signal()
        w_target = Signal(range(max(2, self.targets)))
        aw_page = bus.awaddr[self.page_bits:]
        with m.If(~w_busy & bus.awvalid & bus.wvalid):
            with m.If(aw_page < self.targets):
                for n, slave in enumerate(slaves):
                    with m.If(aw_page == n):
                        m.d.comb += [slave.awvalid.eq(1), slave.wvalid.eq(1),
                                     bus.awready.eq(slave.awready & slave.wready),
                                     bus.wready.eq(slave.awready & slave.wready)]
                with m.If(bus.awready):
                    m.d.sync += [w_busy.eq(1), w_local.eq(0), w_target.eq(aw_page)]
            with m.Else():
                m.d.comb += [bus.awready.eq(1), bus.wready.eq(1)]
                m.d.sync += [w_busy.eq(1), w_local.eq(1)]
        with m.If(w_busy & w_local):
            m.d.comb += [bus.bvalid.eq(1), bus.bresp.eq(SLVERR)]
        with m.Elif(w_busy):
            for n, slave in enumerate(slaves):
                with m.If(w_target == n):
                    m.d.comb += [bus.bvalid.eq(slave.bvalid), bus.bresp.eq(slave.bresp), slave.bready.eq(bus.bready)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += w_busy.eq(0)
        return m


class Chip(wiring.Component):
    """Cores, network-on-chip, memory tile and host interface (see the module docstring).

    Parameters
    ----------
    config : ChipConfig
        The cores' sizes, the bus width (the NoC's data width) and the mesh of cores.
    watchdog : int
        Each core's controller watchdog, in cycles.
    buffer_beats, packet_beats : int
        Of each core's network interface (:class:`rtl.noc.interface.NetworkInterface`).

    Ports
    -----
    s_axil : In(AxiLiteSignature(CSR_ADDR_BITS))
        The host's register interface.
    irq : Out(1)
    m_axi : Out(Axi4Signature(32, 8 * bus_bytes))
        The memory tile's AXI4 master (DRAM).
    """

    def __init__(self, config: ChipConfig | None = None, watchdog: int = 1 << 20, buffer_beats: int = 64,
                 packet_beats: int = 32):
        config = config or ChipConfig()
        self.config = config
        self.tiles = [(x, y) for y in range(config.mesh_height) for x in range(config.mesh_width)]
        self.memory_tile = (config.mesh_width, 0)
        self.cores = [Core(config, watchdog=watchdog) for _ in self.tiles]
        self.csrs = [HostCsr(CSR_ADDR_BITS) for _ in self.tiles]
        self.decoder = AxiLiteDecoder(len(self.tiles))
        self.network = MemoryNoC(config.mesh_width + 1, config.mesh_height, self.tiles, self.memory_tile, ADDR_BITS,
                                 8 * config.bus_bytes, buffer_beats=buffer_beats, packet_beats=packet_beats)
        super().__init__({
            "s_axil": In(AxiLiteSignature(CSR_ADDR_BITS)),
            "irq": Out(1),
            "m_axi": Out(Axi4Signature(ADDR_BITS, 8 * config.bus_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.network = network = self.network
        m.submodules.csr_decoder = decoder = self.decoder
        wiring.connect(m, wiring.flipped(self.s_axil), decoder.s_axil)
        wiring.connect(m, network.m_axi, wiring.flipped(self.m_axi))
        irqs = []
        for n, ((x, y), core, csr) in enumerate(zip(self.tiles, self.cores, self.csrs, strict=True)):
            name = tile_name(x, y)
            m.submodules[f"core_{name}"] = core
            m.submodules[f"csr_{name}"] = csr
            wiring.connect(m, getattr(decoder, f"m_axil{n}"), csr.s_axil)
            wiring.connect(m, core.memory, getattr(network, f"port_{name}"))
            m.d.comb += [
                core.start.eq(csr.start), core.abort_job.eq(csr.abort_job), core.program_addr.eq(csr.program_addr),
                core.window_base.eq(csr.window_base), core.window_limit.eq(csr.window_limit),
                csr.busy.eq(core.busy), csr.finished.eq(core.finished), csr.error.eq(core.error),
                csr.error_addr.eq(core.error_addr), csr.unit_busy.eq(core.unit_busy),
                csr.unit_waiting.eq(core.unit_waiting), csr.unit_stalled.eq(core.unit_stalled),
                csr.matrix_rows.eq(core.matrix_counters.busy),
            ]
            irqs.append(csr.irq)
        m.d.comb += self.irq.eq(Cat(irqs).any())
        return m
