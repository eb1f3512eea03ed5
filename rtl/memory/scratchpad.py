"""Scratchpad SRAM: int8 rows, banked, shared by the DMA, the matrix engine and the vector unit."""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In

from rtl.dma.descriptor import ADDR_BITS
from rtl.dma.port import MemoryPortSignature
from rtl.memory.bridge import MemoryPortBridge, SramReadSignature, write_request_layout

__all__ = ["Scratchpad", "DMA_WAITS"]

#: Cycles in a row the DMA's read (a STORE from the scratchpad) waits for a bank before it goes
#: first for one: every other cycle. Behind the matrix engine's activation reads it waited for a
#: whole MATMUL: in tiny-llama's 64-token prompt on the 8x8 chip a 512-byte STORE of keys took
#: 3 922 cycles beside the attention's matmuls, and the queries' quantization that overwrites its
#: rows waited for it.
DMA_WAITS = 1


def _check_geometry(depth: int, banks: int) -> None:
    if not isinstance(banks, int) or banks < 1 or banks & (banks - 1):
        raise ValueError(f"banks must be a power of two, got {banks!r}")
    if not isinstance(depth, int) or depth < banks or depth & (depth - 1):
        raise ValueError(f"depth must be a power of two >= banks, got {depth!r}")


def banked_memory(m: Module, *, depth: int, banks: int, width: int, readers: list, writers: list,
                  name: str, own_readers: list = (), last_waits: int | None = None) -> None:
    """``banks`` SRAMs of ``depth / banks`` words; the bank is the high part of the word address,
    so the two halves of a double buffer live in different banks.

    ``readers`` are ``SramReadSignature`` interfaces (flipped: we serve them), ``writers`` are
    write-request streams; both in priority order, first wins when two ask for the same bank in
    the same cycle (the loser sees ``ready`` low and waits). Each bank has one read and one
    write port; a read in the cycle of a write to the same word returns the new data.
    ``own_readers`` get a read port of their own on every bank (``ready`` always high): the
    memory is read twice a cycle (on an FPGA whose block RAMs have two ports, one of them
    taken by writes, each bank is stored twice). With ``last_waits``, the last reader goes first
    once it has been kept waiting that many cycles in a row (so it is not held off for as long as
    the readers before it keep a bank busy).
    """
    rows = depth // banks
    row_bits = (rows - 1).bit_length()
    bank_bits = (banks - 1).bit_length()

    def bank_of(addr):
        return addr[row_bits:row_bits + bank_bits] if bank_bits else Const(0, 1)

    read_bank = [Signal(range(banks), name=f"{name}_read_bank{n}") for n in range(len(readers))]
    last_first = Const(0, 1)
    if last_waits is not None:
        last = readers[-1].request
        waited = Signal(range(last_waits + 1), name=f"{name}_last_waited")
        last_first = Signal(name=f"{name}_last_first")
        m.d.comb += last_first.eq(waited == last_waits)
        with m.If(last.valid & ~last.ready & ~last_first):
            m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
    read_grant = [Signal(name=f"{name}_read_grant{n}") for n in range(len(readers))]
    bank_ports = []
    own_ports = [[] for _ in own_readers]
    for b in range(banks):
        mem = memory.Memory(shape=width, depth=rows, init=[])
        m.submodules[f"{name}_bank{b}"] = mem
        write = mem.write_port(granularity=8)
        read = mem.read_port(transparent_for=(write,))
        bank_ports.append(read)
        for n, reader in enumerate(own_readers):
            own = mem.read_port(transparent_for=(write,))
            own_ports[n].append(own)
            with m.If(reader.request.valid & (bank_of(reader.request.payload) == b)):
                m.d.comb += [own.addr.eq(reader.request.payload[:row_bits]), own.en.eq(1)]
        # the last reader first on its bank when it has waited long enough (its request stays
        # offered until taken); the other banks keep the order
        first = last_first & (bank_of(readers[-1].request.payload) == b)
        taken = first
        for n, reader in enumerate(readers):
            wants = reader.request.valid & (bank_of(reader.request.payload) == b)
            grant = wants & (first | ~taken) if n == len(readers) - 1 else wants & ~taken
            with m.If(grant):
                m.d.comb += [reader.request.ready.eq(1), read.addr.eq(reader.request.payload[:row_bits]),
                             read.en.eq(1)]
            taken = taken | wants
        taken = Const(0, 1)
        for writer in writers:
            wants = writer.valid & (bank_of(writer.payload.addr) == b)
            grant = wants & ~taken
            with m.If(grant):
                m.d.comb += [writer.ready.eq(1), write.addr.eq(writer.payload.addr[:row_bits]),
                             write.data.eq(writer.payload.data), write.en.eq(writer.payload.strb)]
            taken = taken | wants
    for n, reader in enumerate(own_readers):
        own_bank = Signal(range(banks), name=f"{name}_own_bank{n}")
        m.d.comb += reader.request.ready.eq(1)
        m.d.sync += [reader.data_valid.eq(reader.request.valid), own_bank.eq(bank_of(reader.request.payload))]
        with m.Switch(own_bank):
            for b in range(banks):
                with m.Case(b):
                    m.d.comb += reader.data.eq(own_ports[n][b].data)
    for n, reader in enumerate(readers):
        m.d.sync += [read_grant[n].eq(reader.request.valid & reader.request.ready),
                     read_bank[n].eq(bank_of(reader.request.payload))]
        m.d.comb += reader.data_valid.eq(read_grant[n])
        with m.Switch(read_bank[n]):
            for b in range(banks):
                with m.Case(b):
                    m.d.comb += reader.data.eq(bank_ports[b].data)


class Scratchpad(wiring.Component):
    """The int8 scratchpad: ``depth`` rows of ``row_bytes`` bytes in ``banks`` banks.

    Bank ``b`` holds rows ``b * depth / banks`` to ``(b + 1) * depth / banks - 1``: put the two
    halves of a double buffer in different banks and the DMA filling one never waits for the
    matrix engine or vector unit reading the other. Within a bank, the matrix engine has priority,
    then the vector unit, then the DMA (which is elastic), except that a DMA read kept waiting
    :data:`DMA_WAITS` cycles goes first for one.

    Parameters
    ----------
    depth : int
        Rows (power of two).
    row_bytes : int
        Bytes per row; also the DMA word (``8 * row_bytes`` bits, power of two).
    banks : int
        Power of two, at most ``depth``.

    Ports
    -----
    dma : In(MemoryPortSignature(ADDR_BITS, 8 * row_bytes)), byte addresses ``0 .. depth * row_bytes``.
    matrix_read, matrix_weight_read, vector_read : In(SramReadSignature(row bits, ArrayLayout(signed(8), row_bytes)))
        The matrix engine's activation rows and weight tiles (two ports, so a weight tile in one
        bank loads while activations stream from the other), the vector unit's reads; in that
        priority order.
    matrix_pair_read : In(SramReadSignature(...))
        The matrix engine's second weight row of each cycle: a read port of its own on every
        bank, always ready, so two tile rows come in one cycle whatever bank they are in (each
        bank is read twice a cycle; on the ECP5 its block RAMs are doubled).
    vector_write : In(stream.Signature({addr, data, strb}))

    Latency: read data one cycle after the request is taken.
    """

    def __init__(self, depth: int = 1024, row_bytes: int = 8, banks: int = 2):
        _check_geometry(depth, banks)
        if not isinstance(row_bytes, int) or row_bytes < 1 or row_bytes & (row_bytes - 1):
            raise ValueError(f"row_bytes must be a power of two, got {row_bytes!r}")
        self.depth, self.row_bytes, self.banks = depth, row_bytes, banks
        self.addr_bits = (depth - 1).bit_length() or 1
        width = 8 * row_bytes
        super().__init__({
            "dma": In(MemoryPortSignature(ADDR_BITS, width)),
            "matrix_read": In(SramReadSignature(self.addr_bits, width)),
            "matrix_weight_read": In(SramReadSignature(self.addr_bits, width)),
            "matrix_pair_read": In(SramReadSignature(self.addr_bits, width)),
            "vector_read": In(SramReadSignature(self.addr_bits, width)),
            "vector_write": In(stream.Signature(write_request_layout(self.addr_bits, width))),
        })

    @property
    def size_bytes(self) -> int:
        return self.depth * self.row_bytes

    def elaborate(self, platform):
        m = Module()
        width = 8 * self.row_bytes
        m.submodules.bridge = bridge = MemoryPortBridge(ADDR_BITS, width, self.addr_bits)
        wiring.connect(m, wiring.flipped(self.dma), bridge.port)
        banked_memory(m, depth=self.depth, banks=self.banks, width=width,
                      readers=[wiring.flipped(self.matrix_read), wiring.flipped(self.matrix_weight_read),
                               wiring.flipped(self.vector_read), bridge.read],
                      writers=[wiring.flipped(self.vector_write), bridge.write], name="spad",
                      own_readers=[wiring.flipped(self.matrix_pair_read)], last_waits=DMA_WAITS)
        return m

