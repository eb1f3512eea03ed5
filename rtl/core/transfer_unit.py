"""The transfer unit of a core: executes the load queue (``LOAD``, ``GATHER``) and the store queue
(``STORE``) as DMA descriptors.

``LOAD``/``STORE`` are one 2D descriptor each, sent as soon as the unit takes the instruction:
the DMA engine checks the next while one runs and issues its rows right behind the last one's,
so the unit has up to two descriptors out and takes the next ``LOAD``/``STORE`` while one
is under way (``overlap``). When both queues offer one, they take turns. ``GATHER`` reads each
row's id from the accumulator, checks it against the table size (``imm``) and moves that table
row: one descriptor per row, the first after every descriptor before it has reported (a LOAD before
it may bring the ids), the next ones as soon as the row before has been sent, up to two out, as
LOAD/STORE descriptors are (a row's DRAM round trip is no longer paid per row). An instruction is
done once the DMA has reported its descriptors' status, in the order the instructions were taken.
A DMA error (window or bus) or an id outside the table stops the unit and reports an error code
and address, which stops the core; the unit then takes the statuses of descriptors still out, so
the engine drains.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.core.chunks import ChunkReader
from rtl.core.controller import ErrorCode
from rtl.dma.descriptor import ADDR_BITS, Descriptor, DmaError, Space, Status
from rtl.memory.bridge import SramReadSignature
from scoville.isa import Flag, Instruction, Opcode

__all__ = ["TransferUnit"]


class TransferUnit(wiring.Component):
    """Load and store queues to DMA descriptors.

    Parameters
    ----------
    lanes : int
        int32 words per accumulator row.
    acc_row_bits : int
        Row-address width of the accumulator.

    Ports
    -----
    load, store : In(stream.Signature(Instruction))
    load_done, store_done : Out(1), one-cycle strobes.
    descriptor : Out(stream.Signature(Descriptor)); status : In(stream.Signature(Status))
    acc : Out(SramReadSignature(acc_row_bits, 32 * lanes)), for ``GATHER`` ids.
    error, error_code, error_addr : Out; ``error`` is a one-cycle strobe.
    busy : Out(1)
    overlap : Out(1), the unit holds an instruction and would take another now (``LOAD``/``STORE``
        descriptors out: one), so that the controller can offer it before the first is done.
    """

    def __init__(self, *, lanes: int = 8, acc_row_bits: int = 13):
        self.lanes, self.acc_row_bits = lanes, acc_row_bits
        super().__init__({
            "load": In(stream.Signature(Instruction)),
            "store": In(stream.Signature(Instruction)),
            "load_done": Out(1),
            "store_done": Out(1),
            "descriptor": Out(stream.Signature(Descriptor)),
            "status": In(stream.Signature(Status)),
            "acc": Out(SramReadSignature(acc_row_bits, 32 * lanes)),
            "error": Out(1),
            "error_code": Out(ErrorCode),
            "error_addr": Out(ADDR_BITS),
            "busy": Out(1),
            "overlap": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.ids = ids = ChunkReader(row_bits=self.acc_row_bits, row_elems=self.lanes, elem_bits=32,
                                             chunk=1, depth=4)
        wiring.connect(m, ids.sram, wiring.flipped(self.acc))

        ins = Signal(Instruction)
        from_store = Signal()   # the instruction came from the store queue
        to_acc = ins.flags[Flag.DST_ACC.bit_length() - 1]
        turn = Signal()         # 1: the store queue goes first when both offer
        row = Signal(16)        # GATHER: the row being moved
        id_value = Signal(data.signed(32))
        desc = self.descriptor.payload

        def finish(m):
            m.d.comb += [self.load_done.eq(~from_store), self.store_done.eq(from_store)]

        # descriptors sent whose status has not come: which queue each is done for (bit 0), and
        # whether it is a GATHER row before the instruction's last (bit 1: its status is no done)
        m.submodules.out = out = fifo.SyncFIFO(width=2, depth=2)
        stopping = Signal()     # an error status came: send nothing more
        failure = Signal()      # this cycle's status of an outstanding descriptor is an error
        status_error = self.status.payload.error != DmaError.OK

        def report_error(m):
            error = self.status.payload.error
            bus = ((error == DmaError.READ_SLVERR) | (error == DmaError.READ_DECERR)
                   | (error == DmaError.WRITE_SLVERR) | (error == DmaError.WRITE_DECERR))
            m.d.comb += [self.error.eq(1), self.error_addr.eq(self.status.payload.fault_addr)]
            with m.If(bus):
                m.d.comb += self.error_code.eq(ErrorCode.DMA_BUS_ERROR)
            with m.Else():
                m.d.comb += self.error_code.eq(ErrorCode.OUT_OF_WINDOW)

        with m.FSM(name="transfer") as fsm:
            with m.State("IDLE"):
                take_store = self.store.valid & (turn | ~self.load.valid)
                room = out.w_rdy
                with m.If(stopping | failure):
                    m.next = "STOPPED"
                with m.Elif(take_store & room):
                    m.d.comb += self.store.ready.eq(1)
                    m.d.sync += [ins.eq(self.store.payload), from_store.eq(1), turn.eq(0)]
                    m.next = "DESCRIPTOR"
                with m.Elif(self.load.valid & room):
                    m.d.comb += self.load.ready.eq(1)
                    m.d.sync += [ins.eq(self.load.payload), from_store.eq(0), turn.eq(1), row.eq(0)]
                    with m.If(self.load.payload.opcode == Opcode.GATHER):
                        m.next = "GATHER_WAIT"
                    with m.Else():
                        m.next = "DESCRIPTOR"
            with m.State("DESCRIPTOR"):
                # LOAD: DRAM -> SRAM; STORE: SRAM -> DRAM. Accumulator addresses and strides are words.
                width_log2 = Mux(to_acc, 2, 0)
                sram_space = Mux(to_acc, Space.ACC, Space.SPAD)
                with m.If(stopping | failure):
                    m.next = "STOPPED"
                with m.Elif((ins.rows == 0) | (ins.cols == 0)):
                    # nothing to move: done once those before it are (dones come in order)
                    with m.If(~out.r_rdy):
                        finish(m)
                        m.next = "IDLE"
                with m.Else():
                    m.d.comb += [
                        self.descriptor.valid.eq(1),
                        desc.elem_log2.eq(width_log2),
                        desc.count[0].eq(ins.cols),
                        desc.count[1].eq(ins.rows),
                        desc.count[2].eq(1),
                        desc.src_stride[0].eq(ins.stride0 << width_log2),
                        desc.dst_stride[0].eq(ins.stride1 << width_log2),
                        desc.src_stride[1].eq(ins.rows * ins.stride0 << width_log2),  # one plane
                        desc.dst_stride[1].eq(ins.rows * ins.stride1 << width_log2),
                    ]
                    with m.If(from_store):
                        m.d.comb += [desc.src.eq(ins.addr0 << width_log2), desc.dst.eq(ins.addr1),
                                     desc.src_space.as_value().eq(sram_space), desc.dst_space.eq(Space.DRAM)]
                    with m.Else():
                        m.d.comb += [desc.src.eq(ins.addr0), desc.dst.eq(ins.addr1 << width_log2),
                                     desc.src_space.eq(Space.DRAM), desc.dst_space.as_value().eq(sram_space)]
                    with m.If(self.descriptor.ready):
                        m.d.comb += [out.w_en.eq(1), out.w_data.eq(from_store)]
                        m.next = "IDLE"
            with m.State("GATHER_WAIT"):
                # a GATHER's rows follow every descriptor before it, one at a time
                with m.If(stopping | failure):
                    m.next = "STOPPED"
                with m.Elif(~out.r_rdy):
                    m.next = "GATHER_ID"
            with m.State("GATHER_ID"):
                with m.If(stopping | failure):
                    m.next = "STOPPED"
                with m.Elif(ins.rows == 0):
                    finish(m)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [ids.request.valid.eq(1), ids.request.payload.addr.eq(ins.addr2 + row),
                                 ids.request.payload.count.eq(1)]
                    with m.If(ids.request.ready):
                        m.next = "GATHER_CHECK"
            with m.State("GATHER_CHECK"):
                m.d.comb += ids.response.ready.eq(1)
                with m.If(ids.response.valid):
                    value = ids.response.payload.data.as_signed()
                    m.d.sync += id_value.eq(value)
                    with m.If((value < 0) | (value.as_unsigned() >= ins.imm)):
                        m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.OUT_OF_WINDOW),
                                     self.error_addr.eq(ins.addr0)]
                        m.next = "STOPPED"
                    with m.Else():
                        m.next = "GATHER_DESCRIPTOR"
            with m.State("GATHER_DESCRIPTOR"):
                width_log2 = Mux(to_acc, 2, 0)
                m.d.comb += [
                    desc.elem_log2.eq(width_log2),
                    desc.count[0].eq(ins.cols),
                    desc.count[1].eq(1),
                    desc.count[2].eq(1),
                    desc.src.eq(ins.addr0 + ((id_value.as_unsigned() * ins.stride0) << width_log2)),
                    desc.dst.eq((ins.addr1 + row * ins.stride1) << width_log2),
                    desc.src_space.eq(Space.DRAM),
                ]
                with m.If(to_acc):
                    m.d.comb += desc.dst_space.eq(Space.ACC)
                with m.Else():
                    m.d.comb += desc.dst_space.eq(Space.SPAD)
                last = row + 1 == ins.rows
                with m.If(stopping | failure):
                    m.next = "STOPPED"
                with m.Else():
                    # sent once the status queue has room (at most two descriptors out); the
                    # last row's status is the instruction's done
                    m.d.comb += self.descriptor.valid.eq(out.w_rdy)
                    with m.If(self.descriptor.ready & out.w_rdy):
                        m.d.comb += [out.w_en.eq(1), out.w_data.eq(Mux(last, 0, 2))]
                        m.d.sync += row.eq(row + 1)
                        with m.If(last):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "GATHER_ID"
            with m.State("STOPPED"):
                pass  # until the core's next start resets the unit

        # the statuses of LOAD/STORE descriptors, in order: a done strobe each, or the error that
        # stops the unit; once stopped, the statuses of those still out are taken and dropped
        with m.If(out.r_rdy):
            m.d.comb += self.status.ready.eq(1)
            with m.If(self.status.valid):
                m.d.comb += out.r_en.eq(1)
                with m.If(fsm.ongoing("STOPPED") | stopping):
                    pass
                with m.Elif(status_error):
                    m.d.comb += failure.eq(1)
                    m.d.sync += stopping.eq(1)
                    report_error(m)
                with m.Elif(~out.r_data[1]):
                    m.d.comb += [self.load_done.eq(~out.r_data[0]), self.store_done.eq(out.r_data[0])]
        m.d.comb += [
            self.busy.eq(~fsm.ongoing("IDLE") | out.r_rdy),
            self.overlap.eq(fsm.ongoing("IDLE") & out.r_rdy & out.w_rdy & ~stopping),
        ]
        return m
