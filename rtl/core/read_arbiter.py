"""Two memory-port initiators sharing one memory port: the core's instruction fetch and its DMA."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.port import BEATS_BITS, MemoryPortSignature, read_response_layout

__all__ = ["ReadArbiter"]


class ReadArbiter(wiring.Component):
    """Merges the reads of ``fetch`` (read-only) with the port of the DMA (``dma``) onto ``memory``.

    Read requests are granted round robin, an offered request held until it is taken; the owner
    and length of every granted request wait in a FIFO so each response beat goes back to whoever
    asked (responses come in request order).
    Writes pass straight through from ``dma``.

    The fetch's responses land in a buffer of ``fetch_buffer`` beats, and a fetch request is only
    granted when the buffer can take all of its beats: the controller stops taking instructions
    while its queues are full, and without the buffer its unread responses would block the DMA's
    responses behind them, which the instruction at the head of a full queue may be waiting for.

    Parameters
    ----------
    addr_width, data_width : int
    depth : int
        Read requests in flight.
    fetch_buffer : int
        Fetch response beats buffered (at least the longest fetch request).

    Ports
    -----
    fetch : In(MemoryPortSignature) (only its read half is used)
    dma : In(MemoryPortSignature)
    memory : Out(MemoryPortSignature)
    fetch_pending : Out(1), a fetch request offered, or fetch beats granted and not yet taken by the fetch.
    """

    def __init__(self, addr_width: int = 32, data_width: int = 64, depth: int = 16, fetch_buffer: int = 16):
        port = MemoryPortSignature(addr_width, data_width)
        self.addr_width, self.data_width = addr_width, data_width
        self.depth, self.fetch_buffer = depth, fetch_buffer
        super().__init__({"fetch": In(port), "dma": In(port), "memory": Out(port), "fetch_pending": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # writes: the DMA's only
        for name in ("write_request", "write_data"):
            source, sink = getattr(self.dma, name), getattr(self.memory, name)
            m.d.comb += [sink.valid.eq(source.valid), sink.payload.eq(source.payload), source.ready.eq(sink.ready)]
        source, sink = self.memory.write_response, self.dma.write_response
        m.d.comb += [sink.valid.eq(source.valid), sink.payload.eq(source.payload), source.ready.eq(sink.ready)]

        layout = read_response_layout(self.addr_width, self.data_width)
        m.submodules.fetched = fetched = fifo.SyncFIFOBuffered(width=layout.size, depth=self.fetch_buffer)
        reserved = Signal(range(self.fetch_buffer + 1))  # beats granted to the fetch, not yet taken by it
        fetch_fits = Signal()
        m.d.comb += fetch_fits.eq(reserved + self.fetch.read_request.payload.beats <= self.fetch_buffer)

        m.submodules.owners = owners = fifo.SyncFIFOBuffered(width=1 + BEATS_BITS, depth=self.depth)
        turn = Signal()  # 1: the fetch goes first
        fetch_wants = Signal()
        pick_fetch = Signal()
        # An offered request stays offered, unchanged, until it is taken: a network interface takes
        # a long request packet by packet, over many cycles, and must see the same request.
        held, held_fetch = Signal(), Signal()
        m.d.comb += [fetch_wants.eq(self.fetch.read_request.valid & fetch_fits),
                     pick_fetch.eq(Mux(held, held_fetch, fetch_wants & (turn | ~self.dma.read_request.valid)))]
        m.d.sync += [held.eq(self.memory.read_request.valid & ~self.memory.read_request.ready),
                     held_fetch.eq(pick_fetch)]
        with m.If(owners.w_rdy):
            with m.If(pick_fetch):
                m.d.comb += [self.memory.read_request.valid.eq(1),
                             self.memory.read_request.payload.eq(self.fetch.read_request.payload),
                             self.fetch.read_request.ready.eq(self.memory.read_request.ready)]
            with m.Else():
                m.d.comb += [self.memory.read_request.valid.eq(self.dma.read_request.valid),
                             self.memory.read_request.payload.eq(self.dma.read_request.payload),
                             self.dma.read_request.ready.eq(self.memory.read_request.ready)]
        granted = self.memory.read_request.valid & self.memory.read_request.ready
        m.d.comb += [owners.w_en.eq(granted),
                     owners.w_data.eq(pick_fetch | (self.memory.read_request.payload.beats << 1))]
        with m.If(granted):
            m.d.sync += turn.eq(~pick_fetch)
        fetch_granted = granted & pick_fetch
        fetch_taken = self.fetch.read_response.valid & self.fetch.read_response.ready
        m.d.sync += reserved.eq(reserved + (fetch_granted * self.fetch.read_request.payload.beats) - fetch_taken)
        m.d.comb += self.fetch_pending.eq(self.fetch.read_request.valid | (reserved != 0))

        owner = owners.r_data[0]
        beats = owners.r_data[1:]
        received = Signal(BEATS_BITS)
        response = self.memory.read_response
        m.d.comb += [self.dma.read_response.payload.eq(response.payload), fetched.w_data.eq(response.payload)]
        with m.If(owners.r_rdy):
            with m.If(owner == 0):
                m.d.comb += [self.dma.read_response.valid.eq(response.valid),
                             response.ready.eq(self.dma.read_response.ready)]
            with m.Else():  # room is reserved: never waits
                m.d.comb += [fetched.w_en.eq(response.valid), response.ready.eq(1)]
        m.d.comb += [self.fetch.read_response.valid.eq(fetched.r_rdy),
                     self.fetch.read_response.payload.eq(fetched.r_data),
                     fetched.r_en.eq(self.fetch.read_response.ready)]
        with m.If(response.valid & response.ready):
            m.d.sync += received.eq(received + 1)
            with m.If(received + 1 == beats):
                m.d.sync += received.eq(0)
                m.d.comb += owners.r_en.eq(1)
        return m
