"""Network interface: a core's generic memory port carried as packets to a memory tile."""

from collections.abc import Sequence

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.port import BEATS_BITS, MemoryPortSignature, Resp
from rtl.noc.flit import COORD_BITS, MAX_MESH, Header, PacketKind, flit_layout
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
    turns when both wait; a write's data beats follow its address flit. A request to a tile other
    than the one still owing responses in its direction waits until those have arrived, so
    responses always return in request order. Responses: read data and
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
    address_map : sequence of (base, size, (x, y))
        Byte ranges served by other tiles (another core's scratchpad, another memory tile); the
        first entry that contains a request's address wins, and the tile receives the offset in
        the range. Addresses outside every range go to the memory tile unchanged.

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
                 data_width: int = 64, flit_width: int | None = None,
                 address_map: Sequence[tuple[int, int, tuple[int, int]]] = ()):
        for name, value in (("x", x), ("y", y), ("memory_x", memory_x), ("memory_y", memory_y)):
            if not isinstance(value, int) or not 0 <= value < MAX_MESH:
                raise ValueError(f"{name} must be an integer in [0, {MAX_MESH}), got {value!r}")
        needed = memory_flit_width(addr_width, data_width)
        flit_width = needed if flit_width is None else flit_width
        if flit_width < needed:
            raise ValueError(f"flit_width must be at least {needed} for this port, got {flit_width!r}")
        self.address_map = [(int(base), int(size), (int(tx), int(ty))) for base, size, (tx, ty) in address_map]
        for base, size, (tx, ty) in self.address_map:
            in_mesh = 0 <= tx < MAX_MESH and 0 <= ty < MAX_MESH
            if base < 0 or size < 1 or base + size > 1 << addr_width or not in_mesh:
                raise ValueError(f"address map entry {(base, size, (tx, ty))!r} is invalid "
                                 f"for {addr_width}-bit addresses")
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

        def head_flit(kind, beats, flits, dest):
            head = Signal(head_layout())
            m.d.comb += [
                head.header.dest_x.eq(dest[:COORD_BITS]), head.header.dest_y.eq(dest[COORD_BITS:]),
                head.header.src_x.eq(self.x), head.header.src_y.eq(self.y),
                head.header.kind.eq(kind), head.header.length.eq(packet_length(flits)),
                head.beats.eq(beats),
            ]
            return head.as_value()

        addr = Signal(self.addr_width)
        left = Signal(BEATS_BITS)
        prefer_write = Signal()
        read, write = port.read_request, port.write_request
        read_dest, read_local = self._target(m, read.payload.addr, "read")
        write_dest, write_local = self._target(m, write.payload.addr, "write")
        # Responses from one tile come back in order; from two tiles they could cross. So a
        # request to another tile than the one still owing responses (per direction) waits.
        reads_owed, writes_owed = Signal(8), Signal(8)
        owed_by_read, owed_by_write = Signal(2 * COORD_BITS), Signal(2 * COORD_BITS)
        read_ok = read.valid & ((reads_owed == 0) | ((owed_by_read == read_dest) & (reads_owed != 255)))
        write_ok = write.valid & ((writes_owed == 0) | ((owed_by_write == write_dest) & (writes_owed != 255)))
        read_sent, write_sent = Signal(), Signal()
        with m.FSM(name="request_fsm"):
            with m.State("IDLE"):
                take_read = read_ok & (~write_ok | ~prefer_write)
                with m.If(free & take_read):
                    m.d.comb += [read.ready.eq(1), read_sent.eq(1)]
                    emit(head_flit(PacketKind.MEM_READ, read.payload.beats, Const(2, 2), read_dest), True, 0)
                    m.d.sync += [addr.eq(read_local), prefer_write.eq(1), owed_by_read.eq(read_dest)]
                    m.next = "READ_ADDR"
                with m.Elif(free & write_ok):
                    m.d.comb += [write.ready.eq(1), write_sent.eq(1)]
                    emit(head_flit(PacketKind.MEM_WRITE, write.payload.beats, write.payload.beats + 2, write_dest),
                         True, 0)
                    m.d.sync += [addr.eq(write_local), left.eq(write.payload.beats), prefer_write.eq(0),
                                 owed_by_write.eq(write_dest)]
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

        read_done = in_read_data & inp.valid & inp.ready & inp.payload.tail
        write_done = port.write_response.valid & port.write_response.ready
        m.d.sync += [reads_owed.eq(reads_owed + read_sent - read_done),
                     writes_owed.eq(writes_owed + write_sent - write_done)]
        return m

    def _target(self, m, addr, name):
        """The tile that serves ``addr`` (first matching map entry, else the memory tile) and the
        address to send it (the offset in the entry's range; ``addr`` itself for the memory tile)."""
        dest = Signal(2 * COORD_BITS, name=f"{name}_dest")
        local = Signal(self.addr_width, name=f"{name}_local_addr")
        m.d.comb += [dest.eq(self.memory_x | (self.memory_y << COORD_BITS)), local.eq(addr)]
        for base, size, (tx, ty) in reversed(self.address_map):  # the first entry wins
            with m.If((addr >= base) & (addr < base + size)):
                m.d.comb += [dest.eq(tx | (ty << COORD_BITS)), local.eq(addr - base)]
        return dest, local
