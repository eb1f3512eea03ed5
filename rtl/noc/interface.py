"""Network interface: a core's generic memory port carried as packets to a memory tile."""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.port import BEATS_BITS, MemoryPortSignature, Resp
from rtl.noc.flit import MAX_MESH, Header, PacketKind, flit_layout
from rtl.noc.memory_packets import (
    ack_layout,
    head_layout,
    memory_flit_width,
    packet_length,
    read_data_layout,
    write_data_layout,
)

__all__ = ["NetworkInterface"]


class NetworkInterface(wiring.Component):
    """Turns the memory port of the core at (``x``, ``y``) into request packets to the memory tile
    at (``memory_x``, ``memory_y``), and its response packets back into port responses.

    Requests: reads and writes are sent as whole packets (:mod:`rtl.noc.memory_packets`), taking
    turns when both wait; a write's data beats follow its address flit. Responses: read data and
    write acknowledgements arrive in request order per direction and pass straight to the port.
    The tile must accept every response it asked for (it does: a port's response streams are
    the DMA's, which keeps room for what it requested), which the deadlock argument relies on.

    Parameters
    ----------
    x, y, memory_x, memory_y : int
        Mesh coordinates of this tile and of its memory tile.
    addr_width, data_width : int
        Of the memory port.
    flit_width : int
        At least :func:`rtl.noc.memory_packets.memory_flit_width`.

    Ports
    -----
    port : In(MemoryPortSignature(addr_width, data_width))
        From the DMA engine.
    request : Out(stream.Signature(flit_layout(flit_width)))
        To the request network's inject port.
    response : In(stream.Signature(flit_layout(flit_width)))
        From the response network's eject port.

    Latency: a request's head flit leaves one cycle after the request is offered.
    """

    def __init__(self, x: int, y: int, memory_x: int, memory_y: int, addr_width: int = 32,
                 data_width: int = 64, flit_width: int | None = None):
        for name, value in (("x", x), ("y", y), ("memory_x", memory_x), ("memory_y", memory_y)):
            if not isinstance(value, int) or not 0 <= value < MAX_MESH:
                raise ValueError(f"{name} must be an integer in [0, {MAX_MESH}), got {value!r}")
        needed = memory_flit_width(addr_width, data_width)
        flit_width = needed if flit_width is None else flit_width
        if flit_width < needed:
            raise ValueError(f"flit_width must be at least {needed} for this port, got {flit_width!r}")
        self.x, self.y, self.memory_x, self.memory_y = x, y, memory_x, memory_y
        self.addr_width, self.data_width, self.flit_width = addr_width, data_width, flit_width
        super().__init__({
            "port": In(MemoryPortSignature(addr_width, data_width)),
            "request": Out(stream.Signature(flit_layout(flit_width))),
            "response": In(stream.Signature(flit_layout(flit_width))),
        })

    def elaborate(self, platform):
        m = Module()
        port, out = self.port, self.request

        # ---- requests: one registered flit on `request`, refilled when it leaves
        free = ~out.valid | out.ready
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)

        def emit(flit_data, head: bool, tail):
            m.d.sync += [out.valid.eq(1), out.payload.data.eq(flit_data), out.payload.head.eq(int(head)),
                         out.payload.tail.eq(tail)]

        def head_flit(kind, beats, flits):
            head = Signal(head_layout())
            m.d.comb += [
                head.header.dest_x.eq(self.memory_x), head.header.dest_y.eq(self.memory_y),
                head.header.src_x.eq(self.x), head.header.src_y.eq(self.y),
                head.header.kind.eq(kind), head.header.length.eq(packet_length(flits)),
                head.beats.eq(beats),
            ]
            return head.as_value()

        addr = Signal(self.addr_width)
        left = Signal(BEATS_BITS)
        prefer_write = Signal()
        with m.FSM(name="request_fsm"):
            with m.State("IDLE"):
                read, write = port.read_request, port.write_request
                take_read = read.valid & (~write.valid | ~prefer_write)
                with m.If(free & take_read):
                    m.d.comb += read.ready.eq(1)
                    emit(head_flit(PacketKind.MEM_READ, read.payload.beats, Const(2, 2)), True, 0)
                    m.d.sync += [addr.eq(read.payload.addr), prefer_write.eq(1)]
                    m.next = "READ_ADDR"
                with m.Elif(free & write.valid):
                    m.d.comb += write.ready.eq(1)
                    emit(head_flit(PacketKind.MEM_WRITE, write.payload.beats, write.payload.beats + 2), True, 0)
                    m.d.sync += [addr.eq(write.payload.addr), left.eq(write.payload.beats), prefer_write.eq(0)]
                    m.next = "WRITE_ADDR"
            with m.State("READ_ADDR"):
                with m.If(free):
                    emit(addr, False, 1)
                    m.next = "IDLE"
            with m.State("WRITE_ADDR"):
                with m.If(free):
                    emit(addr, False, 0)
                    m.next = "WRITE_DATA"
            with m.State("WRITE_DATA"):
                beat = Signal(write_data_layout(self.data_width))
                m.d.comb += [beat.data.eq(port.write_data.payload.data), beat.strb.eq(port.write_data.payload.strb)]
                with m.If(free & port.write_data.valid):
                    m.d.comb += port.write_data.ready.eq(1)
                    emit(beat.as_value(), False, left == 1)
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "IDLE"

        # ---- responses: straight through, framing tracked
        inp = self.response
        in_read_data = Signal()
        header = Header(inp.payload.data[:Header.as_shape().size])
        ack = data.View(ack_layout(self.addr_width), inp.payload.data[:ack_layout(self.addr_width).size])
        beat = data.View(read_data_layout(self.data_width), inp.payload.data[:read_data_layout(self.data_width).size])
        with m.If(~in_read_data):
            with m.If(header.kind == PacketKind.MEM_WRITE_ACK):
                m.d.comb += [
                    port.write_response.valid.eq(inp.valid),
                    port.write_response.payload.resp.eq(ack.resp),
                    port.write_response.payload.fault_addr.eq(ack.fault_addr),
                    inp.ready.eq(port.write_response.ready),
                ]
            with m.Else():
                # the head of a read-data packet carries nothing the port needs
                m.d.comb += inp.ready.eq(1)
                with m.If(inp.valid & ~inp.payload.tail):
                    m.d.sync += in_read_data.eq(1)
        with m.Else():
            m.d.comb += [
                port.read_response.valid.eq(inp.valid),
                port.read_response.payload.data.eq(beat.data),
                port.read_response.payload.resp.eq(beat.resp),
                inp.ready.eq(port.read_response.ready),
            ]
            with m.If((beat.resp == Resp.SLVERR) | (beat.resp == Resp.DECERR)):
                m.d.comb += port.read_response.payload.fault_addr.eq(beat.data[:self.addr_width])
            with m.If(inp.valid & inp.ready & inp.payload.tail):
                m.d.sync += in_read_data.eq(0)
        return m
