"""Network interface: a core's generic memory port carried as packets to a memory tile."""

from collections.abc import Sequence

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.port import BEATS_BITS, MemoryPortSignature, Resp, request_layout
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

    A port request is sent as packets of at most ``packet_beats`` beats
    (:mod:`rtl.noc.memory_packets`), and a packet starts only when it can finish without waiting
    for the core, so a request packet never holds a path of the request network waiting for the
    core and the response network never waits for it either:

    * a read packet is sent only when its beats fit in the read-data buffer (``buffer_beats``
      beats, counted as credits: taken when the read is sent, returned as the port takes each
      beat), so read data always drains from the network into the buffer;
    * a write packet is sent only when all its beats are in the write-data buffer
      (``buffer_beats`` beats), so its data flits follow its address flit back to back.

    A read request is taken as soon as no other is held (its packets then leave from a register),
    so a read response never comes before its request was taken. Reads and writes take turns
    when both can go. The acknowledgements of a write request's
    packets are merged into one port response (the first error wins, with its fault address).
    A request to a tile other than the one still owing responses in its direction waits until
    those have arrived, so responses always return in request order.

    The port's write responses must be taken whatever the network does (the DMA takes them at
    once); its read responses may wait for anything, its write data too.

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
    buffer_beats : int
        Depth of the read-data buffer and of the write-data buffer, in beats. The read buffer
        bounds the read beats in flight: it should cover the round trip to memory at the rate
        wanted.
    packet_beats : int
        Most beats in one packet, at most ``buffer_beats``. Half of it lets a packet fill while
        the one before drains.

    Ports
    -----
    port : In(MemoryPortSignature(addr_width, data_width))
        From the DMA engine.
    request : Out(stream.Signature(flit_layout(flit_width)))
        To the request network's inject port.
    response : In(stream.Signature(flit_layout(flit_width)))
        From the response network's eject port.

    Latency: a read packet's head flit leaves one cycle after the request is offered (with
    credits to spare), a write packet's one cycle after its last beat reaches the buffer output
    (3 cycles after the beat is offered). Read data reaches the port 2 cycles after its flit.
    """

    def __init__(self, x: int, y: int, memory_x: int, memory_y: int, addr_width: int = 32,
                 data_width: int = 64, flit_width: int | None = None,
                 address_map: Sequence[tuple[int, int, tuple[int, int]]] = (),
                 buffer_beats: int = 64, packet_beats: int = 32):
        for name, value in (("x", x), ("y", y), ("memory_x", memory_x), ("memory_y", memory_y)):
            if not isinstance(value, int) or not 0 <= value < MAX_MESH:
                raise ValueError(f"{name} must be an integer in [0, {MAX_MESH}), got {value!r}")
        needed = memory_flit_width(addr_width, data_width)
        flit_width = needed if flit_width is None else flit_width
        if flit_width < needed:
            raise ValueError(f"flit_width must be at least {needed} for this port, got {flit_width!r}")
        if not isinstance(buffer_beats, int) or buffer_beats < 1:
            raise ValueError(f"buffer_beats must be a positive integer, got {buffer_beats!r}")
        if not isinstance(packet_beats, int) or not 1 <= packet_beats <= buffer_beats:
            raise ValueError(f"packet_beats must be an integer in [1, buffer_beats = {buffer_beats}], "
                             f"got {packet_beats!r}")
        self.address_map = [(int(base), int(size), (int(tx), int(ty))) for base, size, (tx, ty) in address_map]
        for base, size, (tx, ty) in self.address_map:
            in_mesh = 0 <= tx < MAX_MESH and 0 <= ty < MAX_MESH
            if base < 0 or size < 1 or base + size > 1 << addr_width or not in_mesh:
                raise ValueError(f"address map entry {(base, size, (tx, ty))!r} is invalid "
                                 f"for {addr_width}-bit addresses")
        self.x, self.y, self.memory_x, self.memory_y = x, y, memory_x, memory_y
        self.addr_width, self.data_width, self.flit_width = addr_width, data_width, flit_width
        self.buffer_beats, self.packet_beats = buffer_beats, packet_beats
        super().__init__({
            "port": In(MemoryPortSignature(addr_width, data_width)),
            "request": Out(stream.Signature(flit_layout(flit_width))),
            "response": In(stream.Signature(flit_layout(flit_width))),
        })

    def elaborate(self, platform):
        m = Module()
        port, out = self.port, self.request
        word_shift = (self.data_width // 8).bit_length() - 1
        read_beat_layout = read_data_layout(self.data_width)
        write_beat_layout = write_data_layout(self.data_width)
        read_buffer = m.submodules.read_buffer = fifo.SyncFIFOBuffered(width=read_beat_layout.size,
                                                                       depth=self.buffer_beats)
        write_buffer = m.submodules.write_buffer = fifo.SyncFIFOBuffered(width=write_beat_layout.size,
                                                                         depth=self.buffer_beats)

        # ---- write data: into the buffer as it comes
        write_in = Signal(write_beat_layout)
        m.d.comb += [
            write_in.data.eq(port.write_data.payload.data), write_in.strb.eq(port.write_data.payload.strb),
            write_buffer.w_data.eq(write_in), write_buffer.w_en.eq(port.write_data.valid),
            port.write_data.ready.eq(write_buffer.w_rdy),
        ]

        # ---- requests: one registered flit on `request`, refilled when it leaves
        free = ~out.valid | out.ready
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)

        def emit(flit_data, head: bool, tail):
            m.d.sync += [out.valid.eq(1), out.payload.data.eq(flit_data), out.payload.head.eq(int(head)),
                         out.payload.tail.eq(tail)]

        def head_flit(kind, beats, last, flits, dest):
            head = Signal(head_layout())
            m.d.comb += [
                head.header.dest_x.eq(dest[:COORD_BITS]), head.header.dest_y.eq(dest[COORD_BITS:]),
                head.header.src_x.eq(self.x), head.header.src_y.eq(self.y),
                head.header.kind.eq(kind), head.header.length.eq(packet_length(flits)),
                head.beats.eq(beats), head.last.eq(last),
            ]
            return head.as_value()

        def next_packet(request, name):
            """The next packet of the port request: its beats, whether it is the request's last,
            and its address (the request's own, past the beats already sent)."""
            sent = Signal(BEATS_BITS, name=f"{name}_beats_sent")
            left = Signal(BEATS_BITS, name=f"{name}_beats_left")
            beats = Signal(BEATS_BITS, name=f"{name}_packet_beats")
            last = Signal(name=f"{name}_packet_last")
            dest, local = self._target(m, request.payload.addr, name)
            addr = Signal(self.addr_width, name=f"{name}_packet_addr")
            m.d.comb += [
                left.eq(request.payload.beats - sent),
                last.eq(left <= self.packet_beats),
                beats.eq(Mux(last, left, self.packet_beats)),
                addr.eq(local + (sent << word_shift)),
            ]
            return sent, beats, last, dest, addr

        # A read request is taken at once into a register and sent from there: its data may come
        # back before its last packet leaves, and whoever routes responses by request (the
        # core's read arbiter) must know the request by then.
        read = stream.Signature(request_layout(self.addr_width)).create(path=("read_held",))
        m.d.comb += port.read_request.ready.eq(~read.valid)
        with m.If(port.read_request.valid & port.read_request.ready):
            m.d.sync += [read.valid.eq(1), read.payload.eq(port.read_request.payload)]
        with m.If(read.ready):
            m.d.sync += read.valid.eq(0)
        write = port.write_request
        read_sent, read_beats, read_last, read_dest, read_addr = next_packet(read, "read")
        write_sent, write_beats, write_last, write_dest, write_addr = next_packet(write, "write")
        # Read credits: buffer entries neither holding a beat nor promised to a read in flight.
        credits = Signal(range(self.buffer_beats + 1), init=self.buffer_beats)
        credits_taken = Signal.like(read_beats)
        # Responses from one tile come back in order; from two tiles they could cross. So a
        # request to another tile than the one still owing responses (per direction) waits.
        reads_owed, writes_owed = Signal(8, name="reads_owed"), Signal(8, name="writes_owed")  # packets
        owed_by_read = Signal(2 * COORD_BITS, name="owed_by_read")
        owed_by_write = Signal(2 * COORD_BITS, name="owed_by_write")
        read_ok = (read.valid & (read_beats <= credits)
                   & ((reads_owed == 0) | ((owed_by_read == read_dest) & (reads_owed != 255))))
        write_ok = (write.valid & (write_beats <= write_buffer.level)
                    & ((writes_owed == 0) | ((owed_by_write == write_dest) & (writes_owed != 255))))
        prefer_write = Signal()
        addr = Signal(self.addr_width)
        left = Signal(BEATS_BITS)
        read_packet_sent, write_packet_sent = Signal(name="read_packet_sent"), Signal(name="write_packet_sent")
        with m.FSM(name="request_fsm"):
            with m.State("IDLE"):
                take_read = read_ok & (~write_ok | ~prefer_write)
                with m.If(free & take_read):
                    m.d.comb += [read.ready.eq(read_last), read_packet_sent.eq(1), credits_taken.eq(read_beats)]
                    emit(head_flit(PacketKind.MEM_READ, read_beats, 0, Const(2, 2), read_dest), True, 0)
                    m.d.sync += [addr.eq(read_addr), prefer_write.eq(1), owed_by_read.eq(read_dest),
                                 read_sent.eq(Mux(read_last, 0, read_sent + read_beats))]
                    m.next = "READ_ADDR"
                with m.Elif(free & write_ok):
                    m.d.comb += [write.ready.eq(write_last), write_packet_sent.eq(1)]
                    emit(head_flit(PacketKind.MEM_WRITE, write_beats, write_last, write_beats + 2, write_dest),
                         True, 0)
                    m.d.sync += [addr.eq(write_addr), left.eq(write_beats), prefer_write.eq(0),
                                 owed_by_write.eq(write_dest),
                                 write_sent.eq(Mux(write_last, 0, write_sent + write_beats))]
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
                # all of the packet's beats were in the buffer when it started; r_rdy only waits
                # for the buffer's own output register
                with m.If(free & write_buffer.r_rdy):
                    m.d.comb += write_buffer.r_en.eq(1)
                    emit(write_buffer.r_data, False, left == 1)
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "IDLE"

        # ---- responses: read data into its buffer (room reserved by the credits), write
        # acknowledgements merged per port request
        inp = self.response
        in_read_data = Signal()
        header = Header(inp.payload.data[:Header.as_shape().size])
        ack = data.View(ack_layout(self.addr_width), inp.payload.data[:ack_layout(self.addr_width).size])
        failed_earlier = Signal()  # an earlier packet of this write request failed
        failed_resp = Signal(Resp)
        failed_addr = Signal(self.addr_width)
        ack_taken = Signal()
        with m.If(~in_read_data):
            with m.If(header.kind == PacketKind.MEM_WRITE_ACK):
                with m.If(ack.last):
                    m.d.comb += [
                        port.write_response.valid.eq(inp.valid),
                        port.write_response.payload.resp.eq(Mux(failed_earlier, failed_resp, ack.resp)),
                        port.write_response.payload.fault_addr.eq(Mux(failed_earlier, failed_addr,
                                                                      ack.fault_addr)),
                        inp.ready.eq(port.write_response.ready),
                    ]
                    with m.If(inp.valid & inp.ready):
                        m.d.sync += failed_earlier.eq(0)
                with m.Else():
                    m.d.comb += inp.ready.eq(1)
                    failed = (ack.resp == Resp.SLVERR) | (ack.resp == Resp.DECERR)
                    with m.If(inp.valid & failed & ~failed_earlier):
                        m.d.sync += [failed_earlier.eq(1), failed_resp.eq(ack.resp),
                                     failed_addr.eq(ack.fault_addr)]
                m.d.comb += ack_taken.eq(inp.valid & inp.ready)
            with m.Else():
                # the head of a read-data packet carries nothing the port needs
                m.d.comb += inp.ready.eq(1)
                with m.If(inp.valid & ~inp.payload.tail):
                    m.d.sync += in_read_data.eq(1)
        with m.Else():
            m.d.comb += [
                read_buffer.w_data.eq(inp.payload.data[:read_beat_layout.size]),
                read_buffer.w_en.eq(inp.valid),
                inp.ready.eq(read_buffer.w_rdy),
            ]
            with m.If(inp.valid & inp.ready & inp.payload.tail):
                m.d.sync += in_read_data.eq(0)

        beat = data.View(read_beat_layout, read_buffer.r_data)
        m.d.comb += [
            port.read_response.valid.eq(read_buffer.r_rdy),
            port.read_response.payload.data.eq(beat.data),
            port.read_response.payload.resp.eq(beat.resp),
            read_buffer.r_en.eq(port.read_response.ready),
        ]
        with m.If((beat.resp == Resp.SLVERR) | (beat.resp == Resp.DECERR)):
            m.d.comb += port.read_response.payload.fault_addr.eq(beat.data[:self.addr_width])
        credit_returned = read_buffer.r_rdy & read_buffer.r_en
        m.d.sync += credits.eq(credits - credits_taken + credit_returned)

        read_done = in_read_data & inp.valid & inp.ready & inp.payload.tail
        m.d.sync += [reads_owed.eq(reads_owed + read_packet_sent - read_done),
                     writes_owed.eq(writes_owed + write_packet_sent - ack_taken)]
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
