"""Accumulator SRAM: int32 rows with read-modify-write accumulation for the matrix engine."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In

from rtl.dma.descriptor import ADDR_BITS
from rtl.dma.port import MemoryPortSignature
from rtl.memory.bridge import MemoryPortBridge, SramReadSignature, write_request_layout
from rtl.memory.scratchpad import _check_geometry, banked_memory

__all__ = ["YIELD_AFTER", "Accumulator", "matrix_write_layout"]

#: The matrix engine's read-modify-write yields one cycle in this many to a client kept waiting:
#: every other cycle. On the FPGA chip the vector unit, not the matrix engine, is the busier one;
#: at one cycle in 8 a requantization reading the bank a MATMUL writes took 7.5 times as long
#: (tiny-llama's 64-token prompt on 8x8: 241 944 cycles at 8, 231 979 at 4, 225 160 at 2).
YIELD_AFTER = 2


def matrix_write_layout(addr_bits: int, lanes: int) -> data.StructLayout:
    """A row from the matrix engine: store it, or add it (wrapping int32) to what the row holds,
    in the lanes whose ``mask`` bit is set (the others keep their value)."""
    return data.StructLayout({"addr": addr_bits, "data": data.ArrayLayout(signed(32), lanes), "accumulate": 1,
                              "mask": lanes})


class Accumulator(wiring.Component):
    """The int32 accumulator: ``depth`` rows of ``lanes`` int32 in ``banks`` banks.

    ``matrix_write`` stores a row, or with ``accumulate`` adds it lane by lane (wrapping int32)
    to the row already there, in the lanes its ``mask`` selects: a two-stage read-modify-write
    pipeline at one row per cycle, also back to back on the same row (the read port sees the write
    of the cycle before). Banks as in the scratchpad: the high part of the row address; priority
    matrix, vector, transfer, DMA.

    The DMA sees the accumulator as bytes, row after row, little-endian int32 lanes, in words
    of ``dma_width`` bits (``lanes * 32`` must be a multiple of ``dma_width``).

    Parameters
    ----------
    depth : int
        Rows (power of two).
    lanes : int
        int32 values per row (the array's column count).
    dma_width : int
        Bits per DMA word.
    banks : int

    Ports
    -----
    dma : In(MemoryPortSignature(ADDR_BITS, dma_width))
    matrix_write : In(stream.Signature(matrix_write_layout(row bits, lanes)))
    vector_read, side_read, transfer_read : In(SramReadSignature(row bits, row layout))
        The vector unit's operand and side-operand reads, the transfer unit's (``GATHER`` ids).
    vector_write : In(stream.Signature({addr, data, strb})), the vector unit's results.

    Latency: reads one cycle; an accumulate writes its row two cycles after it is taken.
    """

    def __init__(self, depth: int = 512, lanes: int = 8, dma_width: int = 64, banks: int = 2):
        _check_geometry(depth, banks)
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
        if not isinstance(dma_width, int) or dma_width < 8 or dma_width & (dma_width - 1) or (32 * lanes) % dma_width:
            raise ValueError(f"dma_width must be a power of two dividing 32 * lanes, got {dma_width!r}")
        self.depth, self.lanes, self.dma_width, self.banks = depth, lanes, dma_width, banks
        self.addr_bits = (depth - 1).bit_length() or 1
        self.slices = 32 * lanes // dma_width
        row = data.ArrayLayout(signed(32), lanes)
        super().__init__({
            "dma": In(MemoryPortSignature(ADDR_BITS, dma_width)),
            "matrix_write": In(stream.Signature(matrix_write_layout(self.addr_bits, lanes))),
            "vector_read": In(SramReadSignature(self.addr_bits, row)),
            "side_read": In(SramReadSignature(self.addr_bits, row)),
            "transfer_read": In(SramReadSignature(self.addr_bits, row)),
            "vector_write": In(stream.Signature(write_request_layout(self.addr_bits, 32 * lanes))),
        })

    @property
    def size_bytes(self) -> int:
        return self.depth * self.lanes * 4

    def elaborate(self, platform):
        m = Module()
        width = 32 * self.lanes
        slice_bits = (self.slices - 1).bit_length()
        m.submodules.bridge = bridge = MemoryPortBridge(ADDR_BITS, self.dma_width, self.addr_bits + slice_bits)
        wiring.connect(m, wiring.flipped(self.dma), bridge.port)

        # the DMA's words are slices of rows
        dma_read = SramReadSignature(self.addr_bits, width).create(path=("dma_read",))
        dma_write = stream.Signature(write_request_layout(self.addr_bits, width)).create(path=("dma_write",))
        read_slice = Signal(range(max(2, self.slices)))
        write_slice = Signal(range(max(2, self.slices)))
        m.d.comb += [
            dma_read.request.valid.eq(bridge.read.request.valid),
            dma_read.request.payload.eq(bridge.read.request.payload >> slice_bits),
            bridge.read.request.ready.eq(dma_read.request.ready),
            bridge.read.data_valid.eq(dma_read.data_valid),
            bridge.read.data.eq(dma_read.data.word_select(read_slice, self.dma_width)),
            write_slice.eq(bridge.write.payload.addr[:slice_bits] if slice_bits else 0),
            dma_write.valid.eq(bridge.write.valid),
            dma_write.payload.addr.eq(bridge.write.payload.addr >> slice_bits),
            dma_write.payload.data.eq(bridge.write.payload.data.replicate(self.slices)),
            dma_write.payload.strb.eq(bridge.write.payload.strb << (write_slice * (self.dma_width // 8))),
            bridge.write.ready.eq(dma_write.ready),
        ]
        if slice_bits:
            with m.If(bridge.read.request.valid & bridge.read.request.ready):
                m.d.sync += read_slice.eq(bridge.read.request.payload[:slice_bits])

        # read-modify-write: stage 0 reads the row, stage 1 adds and writes it
        rmw_read = SramReadSignature(self.addr_bits, width).create(path=("rmw_read",))
        rmw_write = stream.Signature(write_request_layout(self.addr_bits, width)).create(path=("rmw_write",))
        stage1 = Signal(matrix_write_layout(self.addr_bits, self.lanes))
        stage1_valid = Signal()
        incoming = self.matrix_write.payload
        # The matrix engine has priority, but yields one cycle after another client has waited
        # YIELD_AFTER - 1 cycles in a row: a long MATMUL into a bank would otherwise hold off a
        # DMA load or the vector unit on that bank for its whole duration.
        others = [self.vector_read.request, self.side_read.request, self.transfer_read.request, dma_read.request]
        waiting = Signal()
        m.d.comb += waiting.eq(Cat(r.valid & ~r.ready for r in others).any()
                               | (self.vector_write.valid & ~self.vector_write.ready)
                               | (dma_write.valid & ~dma_write.ready))
        waited = Signal(range(YIELD_AFTER))
        yielding = Signal()
        m.d.comb += yielding.eq(waited == YIELD_AFTER - 1)
        with m.If(waiting & ~yielding):
            m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
        # a row stored (not added) is only written: the bank's read port stays the others'
        m.d.comb += [
            rmw_read.request.valid.eq(self.matrix_write.valid & incoming.accumulate & ~yielding),
            rmw_read.request.payload.eq(incoming.addr),
            self.matrix_write.ready.eq(Mux(incoming.accumulate, rmw_read.request.ready, 1) & ~yielding),
        ]
        m.d.sync += [stage1_valid.eq(self.matrix_write.valid & self.matrix_write.ready), stage1.eq(incoming)]
        old = data.View(data.ArrayLayout(signed(32), self.lanes), rmw_read.data)
        summed = Signal(data.ArrayLayout(signed(32), self.lanes))
        for n in range(self.lanes):
            m.d.comb += summed[n].eq(Mux(stage1.accumulate, old[n] + stage1.data[n], stage1.data[n]))
        m.d.comb += [
            rmw_write.valid.eq(stage1_valid),  # highest write priority: always taken
            rmw_write.payload.addr.eq(stage1.addr),
            rmw_write.payload.data.eq(summed),
            rmw_write.payload.strb.eq(Cat(lane.replicate(4) for lane in stage1.mask)),
        ]

        # The transfer unit's and the DMA's reads share one bank port, as do the vector unit's and
        # the DMA's writes: each bank then selects among four readers and two writers, not five
        # and three (at eight banks of 256-bit rows, about 4 000 LUTs less on the FPGA chip). The
        # DMA is the one that waits, as it did when it asked for the same bank.
        shared_read = SramReadSignature(self.addr_bits, width).create(path=("shared_read",))
        _share_read(m, shared_read, [wiring.flipped(self.transfer_read), dma_read])
        shared_write = stream.Signature(write_request_layout(self.addr_bits, width)).create(path=("shared_write",))
        _share_write(m, shared_write, [wiring.flipped(self.vector_write), dma_write])
        banked_memory(m, depth=self.depth, banks=self.banks, width=width,
                      readers=[rmw_read, wiring.flipped(self.vector_read), wiring.flipped(self.side_read),
                               shared_read],
                      writers=[rmw_write, shared_write], name="acc")
        return m


def _share_read(m: Module, port, clients: list) -> None:
    """Serve the read ``clients`` (first wins) through one read ``port``."""
    granted = Signal(range(len(clients)))
    taken = Const(0, 1)
    for n, client in enumerate(clients):
        with m.If(client.request.valid & ~taken):
            m.d.comb += [port.request.valid.eq(1), port.request.payload.eq(client.request.payload),
                         client.request.ready.eq(port.request.ready)]
            with m.If(port.request.ready):
                m.d.sync += granted.eq(n)
        taken = taken | client.request.valid
        m.d.comb += [client.data.eq(port.data), client.data_valid.eq(port.data_valid & (granted == n))]


def _share_write(m: Module, port, clients: list) -> None:
    """Serve the write ``clients`` (first wins) through one write ``port``."""
    taken = Const(0, 1)
    for client in clients:
        with m.If(client.valid & ~taken):
            m.d.comb += [port.valid.eq(1), port.payload.eq(client.payload), client.ready.eq(port.ready)]
        taken = taken | client.valid
