"""Bridge from the generic memory port to single-word SRAM accesses (the DMA's view of an SRAM)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.port import BEATS_BITS, MemoryPortSignature, Resp

__all__ = ["MemoryPortBridge", "SramReadSignature"]


class SramReadSignature(wiring.Signature):
    """A read client of an SRAM: ``request`` carries a word address; the word comes back on
    ``data`` with ``data_valid`` high exactly one cycle after the request was taken."""

    def __init__(self, addr_bits: int, shape):
        super().__init__({
            "request": Out(stream.Signature(addr_bits)),
            "data": In(shape),
            "data_valid": In(1),
        })


def write_request_layout(addr_bits: int, data_width: int) -> data.StructLayout:
    return data.StructLayout({"addr": addr_bits, "data": data_width, "strb": data_width // 8})


class MemoryPortBridge(wiring.Component):
    """Serves a generic memory port with one-word SRAM reads and writes.

    Requests become consecutive word accesses (``word address = byte address / word bytes``,
    taken modulo the SRAM); read responses queue in a 4-word FIFO so a stalled reader never
    loses a word; one write response follows the last word of each write request. Responses
    are always OKAY: the DMA checks SRAM bounds before it issues anything.

    Ports
    -----
    port : In(MemoryPortSignature(addr_width, data_width))
    read : Out(SramReadSignature(word_bits, data_width))
    write : Out(stream.Signature(write_request_layout(word_bits, data_width)))
    """

    RESPONSE_DEPTH = 4

    def __init__(self, addr_width: int, data_width: int, word_bits: int):
        self.addr_width, self.data_width, self.word_bits = addr_width, data_width, word_bits
        super().__init__({
            "port": In(MemoryPortSignature(addr_width, data_width)),
            "read": Out(SramReadSignature(word_bits, data_width)),
            "write": Out(stream.Signature(write_request_layout(word_bits, data_width))),
        })

    def elaborate(self, platform):
        m = Module()
        port = self.port
        shift = (self.data_width // 8).bit_length() - 1

        # reads
        m.submodules.responses = responses = fifo.SyncFIFO(width=self.data_width, depth=self.RESPONSE_DEPTH)
        read_busy = Signal()
        read_addr = Signal(self.word_bits)
        read_left = Signal(BEATS_BITS)
        in_flight = Signal()
        read_issue = Signal()
        m.d.comb += read_issue.eq(self.read.request.valid & self.read.request.ready)
        m.d.comb += [
            # a new request is taken in the cycle the last word of the current one is issued
            port.read_request.ready.eq(~read_busy | (read_issue & (read_left == 1))),
            self.read.request.valid.eq(read_busy & (responses.level + in_flight < self.RESPONSE_DEPTH)),
            self.read.request.payload.eq(read_addr),
            responses.w_en.eq(self.read.data_valid),
            responses.w_data.eq(self.read.data),
            port.read_response.valid.eq(responses.r_rdy),
            port.read_response.payload.data.eq(responses.r_data),
            port.read_response.payload.resp.eq(Resp.OKAY),
            responses.r_en.eq(port.read_response.ready),
        ]
        m.d.sync += in_flight.eq(self.read.request.valid & self.read.request.ready)
        with m.If(read_issue):
            m.d.sync += [read_addr.eq(read_addr + 1), read_left.eq(read_left - 1),
                         read_busy.eq(read_left != 1)]
        with m.If(port.read_request.valid & port.read_request.ready):
            m.d.sync += [read_busy.eq(1), read_addr.eq(port.read_request.payload.addr >> shift),
                         read_left.eq(port.read_request.payload.beats)]

        # writes
        write_busy = Signal()
        write_addr = Signal(self.word_bits)
        write_left = Signal(BEATS_BITS)
        responses_due = Signal(4)
        last_word = Signal()
        m.d.comb += last_word.eq(self.write.valid & self.write.ready & (write_left == 1))
        m.d.comb += [
            port.write_request.ready.eq((~write_busy | last_word) & (responses_due < 14)),
            self.write.valid.eq(write_busy & port.write_data.valid),
            self.write.payload.addr.eq(write_addr),
            self.write.payload.data.eq(port.write_data.payload.data),
            self.write.payload.strb.eq(port.write_data.payload.strb),
            port.write_data.ready.eq(write_busy & self.write.ready),
            port.write_response.valid.eq(responses_due != 0),
            port.write_response.payload.resp.eq(Resp.OKAY),
        ]
        with m.If(self.write.valid & self.write.ready):
            m.d.sync += [write_addr.eq(write_addr + 1), write_left.eq(write_left - 1),
                         write_busy.eq(write_left != 1)]
        with m.If(port.write_request.valid & port.write_request.ready):
            m.d.sync += [write_busy.eq(1), write_addr.eq(port.write_request.payload.addr >> shift),
                         write_left.eq(port.write_request.payload.beats)]
        m.d.sync += responses_due.eq(responses_due + last_word
                                     - (port.write_response.valid & port.write_response.ready))
        return m
