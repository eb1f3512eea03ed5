"""Element-addressed access to row-organised SRAMs: read or write a run of consecutive elements
that starts anywhere in a row.

The core's SRAMs are rows of ``row_elems`` elements (bytes in the scratchpad, int32 words in the
accumulator), while the instruction set addresses single elements with any stride. A run of up
to ``chunk`` elements (``chunk <= row_elems``) touches one row, or two when it crosses a row
boundary; these blocks turn such runs into row accesses.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.memory.bridge import SramReadSignature

__all__ = ["ChunkReader", "ChunkSplitter", "chunk_request_layout", "chunk_response_layout", "chunk_write_layout",
           "row_write_layout"]


def _log2(value: int) -> int:
    return value.bit_length() - 1


def _check(row_elems: int, elem_bits: int, chunk: int) -> None:
    if not isinstance(row_elems, int) or row_elems < 1 or row_elems & (row_elems - 1):
        raise ValueError(f"row_elems must be a power of two, got {row_elems!r}")
    if elem_bits not in (8, 16, 32):
        raise ValueError(f"elem_bits must be 8, 16 or 32, got {elem_bits!r}")
    if not isinstance(chunk, int) or not 1 <= chunk <= row_elems:
        raise ValueError(f"chunk must be an integer from 1 to row_elems ({row_elems}), got {chunk!r}")


def chunk_request_layout(addr_bits: int, chunk: int, tag_bits: int = 0, pair: bool = False) -> data.StructLayout:
    """A run of ``count`` (0 to ``chunk``) elements starting at element address ``addr``; ``tag``
    comes back with the run (what the caller wants it for). ``pair``: a second run, ``count2``
    elements at ``addr2``, read in the same cycle (it must lie within one row)."""
    second = {"addr2": addr_bits, "count2": range(chunk + 1)} if pair else {}
    return data.StructLayout({"addr": addr_bits, "count": range(chunk + 1)} | second
                             | ({"tag": tag_bits} if tag_bits else {}))


def chunk_response_layout(chunk: int, elem_bits: int, tag_bits: int = 0, pair: bool = False) -> data.StructLayout:
    """The run's elements (and the second run's above them, with ``pair``)."""
    return data.StructLayout({"data": (2 if pair else 1) * chunk * elem_bits}
                             | ({"tag": tag_bits} if tag_bits else {}))


def chunk_write_layout(addr_bits: int, chunk: int, elem_bits: int, flags: int) -> data.StructLayout:
    """A run to write: its elements (element 0 in the low bits) and caller-defined ``flags``."""
    return data.StructLayout({"addr": addr_bits, "count": range(chunk + 1), "data": chunk * elem_bits}
                             | ({"flags": flags} if flags else {}))


def row_write_layout(row_bits: int, row_elems: int, elem_bits: int, flags: int) -> data.StructLayout:
    """One row write: the row, its elements rotated into place, which elements to write."""
    return data.StructLayout({"row": row_bits, "data": row_elems * elem_bits, "mask": row_elems}
                             | ({"flags": flags} if flags else {}))


class ChunkReader(wiring.Component):
    """Reads runs of up to ``chunk`` consecutive elements at any element address.

    Each request becomes one SRAM row read, or two when the run crosses a row boundary (none
    when ``count`` is 0); the response holds the run's elements from element 0 up, zero past
    ``count``. Requests are pipelined: one row read per cycle, responses in order.

    Parameters
    ----------
    row_bits : int
        Width of the SRAM's row address.
    row_elems, elem_bits : int
        Elements per SRAM row (a power of two) and bits per element.
    chunk : int
        Longest run, at most ``row_elems``.
    depth : int
        Responses buffered.
    tag_bits : int
        Bits of the tag each request carries to its response.
    pair : bool
        Each request also names a second run (``addr2``, ``count2``) within one row, read through
        ``pair_sram`` in the cycle of the first run's last row read, and the response carries both.

    Ports
    -----
    request : In(stream.Signature(chunk_request_layout(row_bits + log2(row_elems), chunk, tag_bits, pair)))
    response : Out(stream.Signature(chunk_response_layout(chunk, elem_bits, tag_bits, pair)))
    sram : Out(SramReadSignature(row_bits, row_elems * elem_bits))
    pair_sram : Out(SramReadSignature(...)), with ``pair``: a read port that is always ready.

    Latency: a response is offered two cycles after its last row read is taken.
    """

    def __init__(self, *, row_bits: int, row_elems: int, elem_bits: int, chunk: int, depth: int = 4,
                 tag_bits: int = 0, pair: bool = False):
        _check(row_elems, elem_bits, chunk)
        if not isinstance(row_bits, int) or row_bits < 1:
            raise ValueError(f"row_bits must be a positive integer, got {row_bits!r}")
        self.row_bits, self.row_elems, self.elem_bits, self.chunk, self.depth = \
            row_bits, row_elems, elem_bits, chunk, depth
        self.tag_bits, self.pair = tag_bits, pair
        self.addr_bits = row_bits + _log2(row_elems)
        super().__init__({
            "request": In(stream.Signature(chunk_request_layout(self.addr_bits, chunk, tag_bits, pair))),
            "response": Out(stream.Signature(chunk_response_layout(chunk, elem_bits, tag_bits, pair))),
            "sram": Out(SramReadSignature(row_bits, row_elems * elem_bits)),
        } | ({"pair_sram": Out(SramReadSignature(row_bits, row_elems * elem_bits))} if pair else {}))

    def elaborate(self, platform):
        m = Module()
        offset_bits = _log2(self.row_elems)
        eb, width = self.elem_bits, self.row_elems * self.elem_bits
        runs = 2 if self.pair else 1
        m.submodules.responses = responses = fifo.SyncFIFOBuffered(width=runs * self.chunk * eb + self.tag_bits,
                                                                   depth=self.depth)

        head = self.request.payload
        offset = Signal(range(self.row_elems))
        row = Signal(self.row_bits)
        crosses = Signal()
        m.d.comb += [
            offset.eq(head.addr[:offset_bits] if offset_bits else 0),
            row.eq(head.addr[offset_bits:]),
            crosses.eq(offset + head.count > self.row_elems),
        ]

        # what the row read in flight (answered next cycle) is for
        tag_valid = Signal()
        tag_first = Signal()      # the first of two rows: keep it
        tag_complete = Signal()   # the run is complete with this row (or had no row at all)
        tag_none = Signal()       # count 0: no row was read
        tag_offset = Signal(range(self.row_elems))
        tag_count = Signal(range(self.chunk + 1))
        tag_tag = Signal(max(self.tag_bits, 1))
        second = Signal()  # the head's first row has been read, the second is next

        # room for every run that will complete, so a read never has to wait for the response FIFO
        room = Signal()
        m.d.comb += room.eq(responses.level + (tag_valid & tag_complete) < self.depth)

        issue_read = Signal()
        advance = Signal()
        with m.If(self.request.valid & room):
            with m.If(head.count == 0):
                m.d.comb += advance.eq(1)
            with m.Else():
                m.d.comb += [self.sram.request.valid.eq(1),
                             self.sram.request.payload.eq(row + second)]
                with m.If(self.sram.request.ready):
                    m.d.comb += issue_read.eq(1)
                    with m.If(~crosses | second):
                        m.d.comb += advance.eq(1)
        m.d.comb += self.request.ready.eq(advance)
        with m.If(issue_read & crosses & ~second):
            m.d.sync += second.eq(1)
        with m.Elif(advance):
            m.d.sync += second.eq(0)

        m.d.sync += [
            tag_valid.eq(advance | issue_read),
            tag_first.eq(issue_read & crosses & ~second),
            tag_complete.eq(advance),
            tag_none.eq(head.count == 0),
            tag_offset.eq(offset),
            tag_count.eq(head.count),
            tag_tag.eq(head.tag if self.tag_bits else 0),
        ]

        kept = Signal(width)
        with m.If(tag_valid & tag_first):
            m.d.sync += kept.eq(self.sram.data)
        pair = Signal(2 * width)
        with m.If(tag_none):
            m.d.comb += pair.eq(0)
        with m.Elif(tag_offset + tag_count > self.row_elems):
            m.d.comb += pair.eq(Cat(kept, self.sram.data))
        with m.Else():
            m.d.comb += pair.eq(Cat(self.sram.data, Const(0, width)))
        shifted = Signal(2 * width)
        m.d.comb += shifted.eq(pair >> (tag_offset * eb))
        mask = Signal(self.chunk * eb)
        m.d.comb += mask.eq((Const(1, self.chunk * eb + 1) << (tag_count * eb)) - 1)
        second_run = []
        if self.pair:
            # the second run: one row read beside the first run's last, through the port of its own
            offset2 = Signal(range(self.row_elems))
            m.d.comb += [offset2.eq(head.addr2[:offset_bits] if offset_bits else 0),
                         self.pair_sram.request.valid.eq(advance & (head.count2 != 0)),
                         self.pair_sram.request.payload.eq(head.addr2[offset_bits:])]
            tag_offset2 = Signal(range(self.row_elems))
            tag_count2 = Signal(range(self.chunk + 1))
            m.d.sync += [tag_offset2.eq(offset2), tag_count2.eq(head.count2)]
            mask2 = Signal(self.chunk * eb)
            m.d.comb += mask2.eq((Const(1, self.chunk * eb + 1) << (tag_count2 * eb)) - 1)
            shifted2 = Signal(width)
            m.d.comb += shifted2.eq(self.pair_sram.data >> (tag_offset2 * eb))   # zero past count2: mask2
            second_run = [shifted2[:self.chunk * eb] & mask2]
        m.d.comb += [
            responses.w_en.eq(tag_valid & tag_complete),
            responses.w_data.eq(Cat(shifted[:self.chunk * eb] & mask, *second_run, tag_tag[:self.tag_bits])),
            self.response.valid.eq(responses.r_rdy),
            self.response.payload.eq(responses.r_data),
            responses.r_en.eq(self.response.ready),
        ]
        return m


class ChunkSplitter(wiring.Component):
    """Turns a run of up to ``chunk`` elements at any element address into one or two row writes
    with element masks (two when the run crosses a row boundary; none when ``count`` is 0).

    Parameters
    ----------
    row_bits, row_elems, elem_bits, chunk : as :class:`ChunkReader`.
    flags : int
        Caller-defined bits carried to every row write (the accumulator's ``accumulate``, say).

    Ports
    -----
    request : In(stream.Signature(chunk_write_layout(...)))
    rows : Out(stream.Signature(row_write_layout(...)))
    idle : Out(1), nothing held.

    Latency: combinational from ``request`` to ``rows``; a crossing run takes two cycles.
    """

    def __init__(self, *, row_bits: int, row_elems: int, elem_bits: int, chunk: int, flags: int = 0):
        _check(row_elems, elem_bits, chunk)
        self.row_bits, self.row_elems, self.elem_bits, self.chunk, self.flags = \
            row_bits, row_elems, elem_bits, chunk, flags
        self.addr_bits = row_bits + _log2(row_elems)
        super().__init__({
            "request": In(stream.Signature(chunk_write_layout(self.addr_bits, chunk, elem_bits, flags))),
            "rows": Out(stream.Signature(row_write_layout(row_bits, row_elems, elem_bits, flags))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        offset_bits = _log2(self.row_elems)
        eb, n = self.elem_bits, self.row_elems
        head = self.request.payload
        offset = Signal(range(n))
        row = Signal(self.row_bits)
        m.d.comb += [offset.eq(head.addr[:offset_bits] if offset_bits else 0), row.eq(head.addr[offset_bits:])]
        placed = Signal(2 * n * eb)
        m.d.comb += placed.eq(Cat(head.data, Const(0, 2 * n * eb - self.chunk * eb)) << (offset * eb))
        wanted = Signal(2 * n)
        m.d.comb += wanted.eq((((Const(1, 2 * n + 1) << head.count) - 1) << offset)[:2 * n])
        second = Signal()  # the low row has been written, the high row is next
        high_needed = Signal()
        m.d.comb += high_needed.eq(wanted[n:].any())

        out = self.rows.payload
        if self.flags:
            m.d.comb += out.flags.eq(head.flags)
        with m.If(self.request.valid):
            with m.If(head.count == 0):
                m.d.comb += self.request.ready.eq(1)
            with m.Elif(~second):
                m.d.comb += [self.rows.valid.eq(1), out.row.eq(row), out.data.eq(placed[:n * eb]),
                             out.mask.eq(wanted[:n])]
                with m.If(self.rows.ready):
                    with m.If(high_needed):
                        m.d.sync += second.eq(1)
                    with m.Else():
                        m.d.comb += self.request.ready.eq(1)
            with m.Else():
                m.d.comb += [self.rows.valid.eq(1), out.row.eq(row + 1), out.data.eq(placed[n * eb:]),
                             out.mask.eq(wanted[n:])]
                with m.If(self.rows.ready):
                    m.d.sync += second.eq(0)
                    m.d.comb += self.request.ready.eq(1)
        m.d.comb += self.idle.eq(~self.request.valid)
        return m
