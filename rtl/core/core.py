"""One Scoville core: controller, DMA engine, scratchpad, accumulator, matrix unit and transfer unit
behind one generic memory port (DRAM, through an AXI master or the network-on-chip)."""

from amaranth.hdl import Cat, Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.core.controller import QUEUES, Controller, ErrorCode
from rtl.core.matrix_unit import MatrixUnit
from rtl.core.read_arbiter import ReadArbiter
from rtl.core.transfer_unit import TransferUnit
from rtl.core.vector_sequencer import VectorSequencer
from rtl.dma.descriptor import ADDR_BITS
from rtl.dma.engine import DmaEngine
from rtl.dma.port import MemoryPortSignature
from rtl.matrix.systolic import counters_layout
from rtl.memory.accumulator import Accumulator
from rtl.memory.scratchpad import Scratchpad
from scoville.config import ChipConfig

__all__ = ["Core"]

COUNTER_BITS = 32


def _power_of_two(value: int) -> bool:
    return value >= 1 and not value & (value - 1)


class Core(wiring.Component):
    """A core that runs Scoville programs (``docs/isa.md``) from DRAM.

    The host sets the DRAM window and the program address and pulses ``start``: the core first
    clears its units (one cycle), then the controller fetches the program through the memory
    port and dispatches it to the queues. ``finished`` pulses when the program's ``END`` has
    drained every queue; ``error``/``error_addr`` say why the core stopped otherwise, and hold
    until the next start. Start a job only while ``busy`` is low.

    ``abort_job`` stops a running job as an error does (``ABORTED``, the next instruction's address);
    the memory port drains and ``busy`` falls.

    An instruction with an operand past the scratchpad or the accumulator stops the core with
    ``SRAM_BOUNDS`` before it runs (the instruction's address). A malformed vector instruction (a
    ``V_ROPE`` head size of zero or odd) stops it with ``UNIT_FAULT``, the instruction's ``addr0``
    as the address.

    Parameters
    ----------
    config : ChipConfig
        Array size, lanes, scratchpad and accumulator capacity, bus width.
    watchdog : int
        Cycles without progress before the controller stops with ``TIMEOUT``.

    Ports
    -----
    memory : Out(MemoryPortSignature(32, 8 * bus_bytes))
    start, abort_job, program_addr, window_base, window_limit : In
    busy, finished, error, error_addr, pc : Out
    cycles : Out(32), cycles since reset; matrix_counters : the systolic array's counters.
    unit_busy, unit_waiting, unit_stalled : Out(4)
        Per unit (load, matrix, vector, store), every cycle: it holds an instruction; its next
        instruction waits for a semaphore; it holds an instruction but moved no data this cycle.
    """

    def __init__(self, config: ChipConfig | None = None, watchdog: int = 1 << 20):
        config = config or ChipConfig()
        if config.rows != config.columns:
            raise ValueError(f"the core needs a square array (rows == columns), got {config.name}")
        if not _power_of_two(config.columns) or config.lanes != config.columns:
            raise ValueError(f"columns must be a power of two equal to lanes, got {config.columns} and {config.lanes}")
        if config.bus_bytes < config.columns:
            raise ValueError(f"bus_bytes ({config.bus_bytes}) must be at least the array width ({config.columns}): "
                             f"a scratchpad row holds one bus word")
        spad_rows = config.spad_bytes // config.bus_bytes
        acc_rows = config.acc_words // config.lanes
        if not _power_of_two(spad_rows) or spad_rows * config.bus_bytes != config.spad_bytes:
            raise ValueError(f"spad_bytes must be a power-of-two multiple of bus_bytes, got {config.spad_bytes}")
        if not _power_of_two(acc_rows) or acc_rows * config.lanes != config.acc_words:
            raise ValueError(f"acc_words must be a power-of-two multiple of lanes, got {config.acc_words}")
        self.config = config
        width = 8 * config.bus_bytes
        self.scratchpad = Scratchpad(depth=spad_rows, row_bytes=config.bus_bytes, banks=2)
        self.accumulator = Accumulator(depth=acc_rows, lanes=config.lanes, dma_width=width,
                                       banks=config.acc_banks)
        self.engine = DmaEngine(data_width=width, spad_bytes=config.spad_bytes, acc_bytes=4 * config.acc_words)
        self.controller = Controller(data_width=min(width, 256), watchdog=watchdog, queue_depth=config.queue_depth,
                                     burst=config.fetch_burst, spad_bytes=config.spad_bytes,
                                     acc_words=config.acc_words)
        self.matrix = MatrixUnit(rows=config.rows, columns=config.columns, spad_row_bytes=config.bus_bytes,
                                 spad_row_bits=self.scratchpad.addr_bits, acc_row_bits=self.accumulator.addr_bits,
                                 partial_rows=config.partial_rows)
        self.transfer = TransferUnit(lanes=config.lanes, acc_row_bits=self.accumulator.addr_bits)
        self.vector = VectorSequencer(lanes=config.lanes, unit_lanes=config.unit_lanes, spad_row_bytes=config.bus_bytes,
                                      spad_row_bits=self.scratchpad.addr_bits, acc_row_bits=self.accumulator.addr_bits,
                                      stage_merge=config.vector_stage_merge, rope_pairs=config.rope_pairs,
                                      wide_requant=config.wide_requant)
        super().__init__({
            "memory": Out(MemoryPortSignature(ADDR_BITS, width)),
            "start": In(1),
            "abort_job": In(1),
            "program_addr": In(ADDR_BITS),
            "window_base": In(ADDR_BITS),
            "window_limit": In(ADDR_BITS),
            "busy": Out(1),
            "finished": Out(1),
            "error": Out(ErrorCode),
            "error_addr": Out(ADDR_BITS),
            "pc": Out(ADDR_BITS),
            "cycles": Out(COUNTER_BITS),
            "matrix_counters": Out(counters_layout),
            "unit_busy": Out(len(QUEUES)),
            "unit_waiting": Out(len(QUEUES)),
            "unit_stalled": Out(len(QUEUES)),
        })

    def elaborate(self, platform):
        m = Module()
        # a start first clears the units (a job stopped by an error may have left them mid-instruction)
        flush = Signal()
        start = Signal()
        m.d.sync += [flush.eq(self.start & ~self.busy), start.eq(flush)]

        m.submodules.controller = controller = ResetInserter(flush)(self.controller)
        m.submodules.matrix = matrix = ResetInserter(flush)(self.matrix)
        m.submodules.transfer = transfer = ResetInserter(flush)(self.transfer)
        m.submodules.vector = ResetInserter(flush)(self.vector)
        m.submodules.engine = engine = self.engine
        m.submodules.scratchpad = spad = self.scratchpad
        m.submodules.accumulator = acc = self.accumulator
        fetch_beats = self.controller.burst * self.controller.beats_per_instruction
        m.submodules.arbiter = arbiter = ReadArbiter(ADDR_BITS, 8 * self.config.bus_bytes, fetch_buffer=fetch_beats)
        controller, matrix, transfer, vector = self.controller, self.matrix, self.transfer, self.vector

        wiring.connect(m, arbiter.memory, wiring.flipped(self.memory))
        wiring.connect(m, engine.dram, arbiter.dma)
        wiring.connect(m, controller.fetch_request, arbiter.fetch.read_request)
        wiring.connect(m, controller.fetch_response, arbiter.fetch.read_response)
        wiring.connect(m, engine.spad, spad.dma)
        wiring.connect(m, engine.acc, acc.dma)
        m.d.comb += [engine.window_base.eq(self.window_base), engine.window_limit.eq(self.window_limit)]

        wiring.connect(m, controller.load, transfer.load)
        wiring.connect(m, controller.store, transfer.store)
        wiring.connect(m, transfer.descriptor, engine.descriptor)
        wiring.connect(m, transfer.status, engine.status)
        wiring.connect(m, transfer.acc, acc.transfer_read)
        wiring.connect(m, controller.matrix, matrix.instruction)
        wiring.connect(m, matrix.spad, spad.matrix_read)
        wiring.connect(m, matrix.spad_weights, spad.matrix_weight_read)
        wiring.connect(m, matrix.spad_pair, spad.matrix_pair_read)
        wiring.connect(m, matrix.acc, acc.matrix_write)
        wiring.connect(m, controller.vector, vector.instruction)
        wiring.connect(m, vector.acc_read, acc.vector_read)
        wiring.connect(m, vector.acc_side, acc.side_read)
        wiring.connect(m, vector.acc_write, acc.vector_write)
        wiring.connect(m, vector.spad_read, spad.vector_read)
        wiring.connect(m, vector.spad_write, spad.vector_write)
        m.d.comb += [controller.load_done.eq(transfer.load_done), controller.store_done.eq(transfer.store_done),
                     controller.matrix_done.eq(matrix.done), controller.vector_done.eq(vector.done),
                     controller.unit_overlap[QUEUES.index("matrix")].eq(matrix.overlap),
                     controller.unit_overlap[QUEUES.index("vector")].eq(vector.overlap),
                     controller.unit_overlap[QUEUES.index("load")].eq(transfer.overlap),
                     controller.unit_overlap[QUEUES.index("store")].eq(transfer.overlap),
                     self.matrix_counters.eq(matrix.counters)]

        # a malformed vector instruction (the sequencer names no address: addr0 of the instruction)
        vector_fault = Signal()
        vector_operand = Signal(ADDR_BITS)
        with m.If(controller.vector.valid & controller.vector.ready):
            m.d.sync += vector_operand.eq(controller.vector.payload.addr0)
        m.d.comb += vector_fault.eq(vector.error)
        with m.If(self.abort_job):
            m.d.comb += [controller.unit_error.eq(1), controller.unit_error_code.eq(ErrorCode.ABORTED),
                         controller.unit_error_addr.eq(controller.pc)]
        with m.Elif(transfer.error):
            m.d.comb += [controller.unit_error.eq(1), controller.unit_error_code.eq(transfer.error_code),
                         controller.unit_error_addr.eq(transfer.error_addr)]
        with m.Elif(vector_fault):
            m.d.comb += [controller.unit_error.eq(1), controller.unit_error_code.eq(ErrorCode.UNIT_FAULT),
                         controller.unit_error_addr.eq(vector_operand)]

        # data moving, per unit: the watchdog's progress and the performance counters' stalls
        def moved(*streams):
            return Cat(s.valid & s.ready for s in streams).any()

        port = self.memory
        moving = {
            "load": moved(engine.dram.read_response),
            "matrix": moved(matrix.acc, matrix.spad.request, matrix.spad_weights.request),
            "vector": moved(vector.acc_write, vector.spad_write, vector.acc_side.request, vector.acc_read.request,
                            vector.spad_read.request),
            "store": moved(engine.dram.write_data),
        }
        m.d.comb += controller.unit_progress.eq(
            Cat(moving.values()).any() | moved(port.read_response, port.write_data, port.write_response))
        for index, name in enumerate(QUEUES):
            m.d.comb += self.unit_stalled[index].eq(controller.unit_busy[index] & ~moving[name])
        m.d.comb += [self.unit_busy.eq(controller.unit_busy), self.unit_waiting.eq(controller.unit_waiting)]
        m.d.comb += [
            controller.start.eq(start),
            controller.program_addr.eq(self.program_addr),
            # a unit stopped by an error stays busy until the next start clears it; the DMA always
            # drains, and so does a fetch request offered or in flight (the stopped controller discards its beats)
            self.busy.eq(controller.busy | flush | start | engine.busy | arbiter.fetch_pending),
            self.finished.eq(controller.finished),
            self.error.eq(controller.error),
            self.error_addr.eq(controller.error_addr),
            self.pc.eq(controller.pc),
        ]
        m.d.sync += self.cycles.eq(self.cycles + 1)
        return m
