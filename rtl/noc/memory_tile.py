"""Memory tile: request packets from the NoC onto a memory port (and AXI4), responses back."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.axi import Axi4Signature
from rtl.dma.axi_master import AxiMaster
from rtl.dma.port import BEATS_BITS, MemoryPortSignature, Resp
from rtl.noc.flit import COORD_BITS, MAX_MESH, PacketKind, flit_layout
from rtl.noc.memory_packets import (
    ack_layout,
    head_layout,
    memory_flit_width,
    packet_length,
    read_data_layout,
    write_data_layout,
)

__all__ = ["MemoryTile", "AxiMemoryTile"]


class MemoryTile(wiring.Component):
    """The memory tile at (``x``, ``y``): serves read and write packets from any core in arrival
    order on its memory port, and sends read data and write acknowledgements back to the sender.
    Each packet is one request on the port; an acknowledgement carries the ``last`` flag of the
    write packet it answers (:mod:`rtl.noc.memory_packets`).

    A request is issued on the port as soon as its address flit arrives (reads and writes
    pipelined, up to ``outstanding`` of each waiting for their responses); a write's data flits
    flow to ``write_data`` as they arrive. A read-data packet starts when its first beat is
    there, so it never holds a path of the response network waiting for memory.

    Parameters
    ----------
    x, y : int
        Mesh coordinates of the tile.
    addr_width, data_width : int
        Of the memory port.
    flit_width : int
        At least :func:`rtl.noc.memory_packets.memory_flit_width`.
    outstanding : int
        Requests per direction awaiting their response.

    Ports
    -----
    request : In(stream.Signature(flit_layout(flit_width)))
        From the request network's eject port.
    response : Out(stream.Signature(flit_layout(flit_width)))
        To the response network's inject port.
    port : Out(MemoryPortSignature(addr_width, data_width))
        To the memory (:class:`rtl.dma.axi_master.AxiMaster` in :class:`AxiMemoryTile`).
    """

    def __init__(self, x: int, y: int, addr_width: int = 32, data_width: int = 64,
                 flit_width: int | None = None, outstanding: int = 8):
        for name, value in (("x", x), ("y", y)):
            if not isinstance(value, int) or not 0 <= value < MAX_MESH:
                raise ValueError(f"{name} must be an integer in [0, {MAX_MESH}), got {value!r}")
        needed = memory_flit_width(addr_width, data_width)
        flit_width = needed if flit_width is None else flit_width
        if flit_width < needed:
            raise ValueError(f"flit_width must be at least {needed} for this port, got {flit_width!r}")
        if not isinstance(outstanding, int) or outstanding < 1:
            raise ValueError(f"outstanding must be a positive integer, got {outstanding!r}")
        self.x, self.y, self.outstanding = x, y, outstanding
        self.addr_width, self.data_width, self.flit_width = addr_width, data_width, flit_width
        super().__init__({
            "request": In(stream.Signature(flit_layout(flit_width))),
            "response": Out(stream.Signature(flit_layout(flit_width))),
            "port": Out(MemoryPortSignature(addr_width, data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        port, inp, out = self.port, self.request, self.response
        coords = 2 * COORD_BITS
        # who asked (and how many beats, for reads; whether it ends the sender's port request, for
        # writes), in request order per direction
        reads = m.submodules.pending_reads = fifo.SyncFIFO(width=coords + BEATS_BITS, depth=self.outstanding)
        writes = m.submodules.pending_writes = fifo.SyncFIFO(width=coords + 1, depth=self.outstanding)

        # ---- requests
        head = data.View(head_layout(), inp.payload.data[:head_layout().size])
        beat = data.View(write_data_layout(self.data_width), inp.payload.data[:write_data_layout(self.data_width).size])
        kind = Signal(PacketKind)
        source = Signal(coords)
        beats = Signal(BEATS_BITS)
        last = Signal()
        with m.FSM(name="request_fsm"):
            with m.State("HEAD"):
                m.d.comb += inp.ready.eq(1)
                with m.If(inp.valid):
                    m.d.sync += [kind.eq(head.header.kind), beats.eq(head.beats), last.eq(head.last),
                                 source.eq(Cat(head.header.src_x, head.header.src_y))]
                    # a malformed one-flit request is dropped here rather than hanging the tile
                    with m.If(~inp.payload.tail):
                        m.next = "ADDR"
            with m.State("ADDR"):
                addr = inp.payload.data[:self.addr_width]
                with m.If(kind == PacketKind.MEM_READ):
                    m.d.comb += [
                        port.read_request.valid.eq(inp.valid & reads.w_rdy),
                        port.read_request.payload.addr.eq(addr),
                        port.read_request.payload.beats.eq(beats),
                        inp.ready.eq(port.read_request.ready & reads.w_rdy),
                        reads.w_data.eq(Cat(source, beats)),
                        reads.w_en.eq(inp.valid & port.read_request.ready & reads.w_rdy),
                    ]
                    with m.If(inp.valid & inp.ready):
                        m.next = "HEAD"
                with m.Else():
                    m.d.comb += [
                        port.write_request.valid.eq(inp.valid & writes.w_rdy),
                        port.write_request.payload.addr.eq(addr),
                        port.write_request.payload.beats.eq(beats),
                        inp.ready.eq(port.write_request.ready & writes.w_rdy),
                        writes.w_data.eq(Cat(source, last)),
                        writes.w_en.eq(inp.valid & port.write_request.ready & writes.w_rdy),
                    ]
                    with m.If(inp.valid & inp.ready):
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [
                    port.write_data.valid.eq(inp.valid),
                    port.write_data.payload.data.eq(beat.data),
                    port.write_data.payload.strb.eq(beat.strb),
                    inp.ready.eq(port.write_data.ready),
                ]
                with m.If(inp.valid & inp.ready & inp.payload.tail):
                    m.next = "HEAD"

        # ---- responses: one registered flit on `response`, refilled when it leaves
        free = ~out.valid | out.ready
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)

        def emit(flit_data, head_flag: bool, tail):
            m.d.sync += [out.valid.eq(1), out.payload.data.eq(flit_data), out.payload.head.eq(int(head_flag)),
                         out.payload.tail.eq(tail)]

        def header_to(dest, kind_value, length):
            value = Signal(head_layout().members["header"])
            m.d.comb += [
                value.dest_x.eq(dest[:COORD_BITS]), value.dest_y.eq(dest[COORD_BITS:]),
                value.src_x.eq(self.x), value.src_y.eq(self.y), value.kind.eq(kind_value), value.length.eq(length),
            ]
            return value

        left = Signal(BEATS_BITS)
        prefer_ack = Signal()
        read_source, read_beats = reads.r_data[:coords], reads.r_data[coords:]
        with m.FSM(name="response_fsm"):
            with m.State("IDLE"):
                data_ready = reads.r_rdy & port.read_response.valid
                ack_ready = writes.r_rdy & port.write_response.valid
                with m.If(free & data_ready & (~ack_ready | ~prefer_ack)):
                    m.d.comb += reads.r_en.eq(1)
                    head_out = Signal(head_layout())
                    m.d.comb += [
                        head_out.header.eq(header_to(read_source, PacketKind.MEM_READ_DATA,
                                                     packet_length(read_beats + 1))),
                        head_out.beats.eq(read_beats),
                        head_out.last.eq(0),
                    ]
                    emit(head_out.as_value(), True, 0)
                    m.d.sync += [left.eq(read_beats), prefer_ack.eq(1)]
                    m.next = "READ_DATA"
                with m.Elif(free & ack_ready):
                    m.d.comb += [writes.r_en.eq(1), port.write_response.ready.eq(1)]
                    ack = Signal(ack_layout(self.addr_width))
                    m.d.comb += [
                        ack.header.eq(header_to(writes.r_data[:coords], PacketKind.MEM_WRITE_ACK, Const(1, 1))),
                        ack.resp.eq(port.write_response.payload.resp),
                        ack.fault_addr.eq(port.write_response.payload.fault_addr),
                        ack.last.eq(writes.r_data[coords]),
                    ]
                    emit(ack.as_value(), True, 1)
                    m.d.sync += prefer_ack.eq(0)
            with m.State("READ_DATA"):
                response = port.read_response
                with m.If(free & response.valid):
                    m.d.comb += response.ready.eq(1)
                    flit = Signal(read_data_layout(self.data_width))
                    failed = (response.payload.resp == Resp.SLVERR) | (response.payload.resp == Resp.DECERR)
                    m.d.comb += [
                        flit.data.eq(Mux(failed, response.payload.fault_addr, response.payload.data)),
                        flit.resp.eq(response.payload.resp),
                    ]
                    emit(flit.as_value(), False, left == 1)
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "IDLE"
        return m


class AxiMemoryTile(wiring.Component):
    """A :class:`MemoryTile` in front of an :class:`rtl.dma.axi_master.AxiMaster`.

    Ports: ``request``, ``response`` as in :class:`MemoryTile`; ``m_axi`` : Out(Axi4Signature).
    """

    def __init__(self, x: int, y: int, addr_width: int = 32, data_width: int = 64,
                 flit_width: int | None = None, outstanding: int = 8):
        self.tile = MemoryTile(x, y, addr_width, data_width, flit_width, outstanding)
        self.master = AxiMaster(addr_width, data_width, outstanding)
        flit = flit_layout(self.tile.flit_width)
        super().__init__({
            "request": In(stream.Signature(flit)),
            "response": Out(stream.Signature(flit)),
            "m_axi": Out(Axi4Signature(addr_width, data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.tile, m.submodules.master = self.tile, self.master
        wiring.connect(m, wiring.flipped(self.request), self.tile.request)
        wiring.connect(m, self.tile.response, wiring.flipped(self.response))
        wiring.connect(m, self.tile.port, self.master.port)
        wiring.connect(m, self.master.m_axi, wiring.flipped(self.m_axi))
        return m
