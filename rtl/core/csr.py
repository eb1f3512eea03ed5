"""The host interface of a core: control and status registers on AXI4-Lite, and an interrupt.

Register map (32-bit registers, byte offsets; ``ro`` read-only, ``w1p`` write 1 to pulse,
``w1c`` write 1 to clear):

======  ================  ====  ===================================================================
offset  name              type  meaning
======  ================  ====  ===================================================================
0x00    ID                ro    ``0x5343564C`` ("SCVL")
0x04    CONTROL           rw    bit 0 START (w1p), bit 1 ABORT (w1p: stop the job, ``ABORTED``),
                                bit 2 IRQ_ENABLE
0x08    STATUS            ro/   bit 0 BUSY, bit 1 DONE (sticky, w1c), bit 2 ERROR (an error code is
                          w1c   latched)
0x0C    ERROR_CODE        ro    :class:`rtl.core.controller.ErrorCode` of the last job
0x10    ERROR_ADDR        ro    faulting or offending address
0x14    PROGRAM_ADDR      rw    where the next START fetches the program
0x18    WINDOW_BASE       rw    first byte of the job's DRAM window
0x1C    WINDOW_LIMIT      rw    first byte past the window
0x20    CYCLES_LO         ro    cycles the current/last job has been busy (reading LO snapshots HI)
0x24    CYCLES_HI         ro
0x28    MATRIX_ROWS       ro    activation rows that entered the systolic array (utilization:
                                ``MATRIX_ROWS / CYCLES``)
0x40+   unit counters     ro    per unit (load, matrix, vector, store) three registers, cycles:
                                BUSY (the unit holds an instruction), WAITING (its next instruction
                                waits for a semaphore), STALLED (busy but no data moved: memory
                                or SRAM back-pressure); unit ``u`` at ``0x40 + 12*u``
======  ================  ====  ===================================================================

The interrupt is ``IRQ_ENABLE & (DONE | ERROR)``. START while busy is ignored by the controller.
Unmapped addresses answer SLVERR. Counters restart with each START.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.core.controller import QUEUES, ErrorCode

__all__ = ["AxiLiteSignature", "HostCsr", "REGISTERS", "ID_VALUE", "UNIT_COUNTERS"]

ID_VALUE = 0x5343564C
REGISTERS = {"ID": 0x00, "CONTROL": 0x04, "STATUS": 0x08, "ERROR_CODE": 0x0C, "ERROR_ADDR": 0x10,
             "PROGRAM_ADDR": 0x14, "WINDOW_BASE": 0x18, "WINDOW_LIMIT": 0x1C, "CYCLES_LO": 0x20,
             "CYCLES_HI": 0x24, "MATRIX_ROWS": 0x28}
UNIT_COUNTERS = ("busy", "waiting", "stalled")
#: Control bits.
START, ABORT, IRQ_ENABLE = 1, 2, 4
#: Status bits.
BUSY, DONE, ERROR = 1, 2, 4
for _u, _unit in enumerate(QUEUES):
    for _c, _counter in enumerate(UNIT_COUNTERS):
        REGISTERS[f"{_unit.upper()}_{_counter.upper()}"] = 0x40 + 12 * _u + 4 * _c

OKAY, SLVERR = 0, 2


class AxiLiteSignature(wiring.Signature):
    """AXI4-Lite from the master's side, 32-bit data, AXI's member names (cocotbext-axi binds
    ``AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__")``)."""

    def __init__(self, addr_width: int = 12):
        if not isinstance(addr_width, int) or not 4 <= addr_width <= 32:
            raise ValueError(f"addr_width must be an integer in 4..32, got {addr_width!r}")
        self.addr_width = addr_width
        super().__init__({
            "awvalid": Out(1), "awready": In(1), "awaddr": Out(addr_width), "awprot": Out(3),
            "wvalid": Out(1), "wready": In(1), "wdata": Out(32), "wstrb": Out(4),
            "bvalid": In(1), "bready": Out(1), "bresp": In(2),
            "arvalid": Out(1), "arready": In(1), "araddr": Out(addr_width), "arprot": Out(3),
            "rvalid": In(1), "rready": Out(1), "rdata": In(32), "rresp": In(2),
        })


class HostCsr(wiring.Component):
    """AXI4-Lite control/status registers of one core (see the module docstring for the map).

    Parameters
    ----------
    addr_width : int
        Width of the AXI4-Lite address (the register file decodes its low 8 bits).

    Ports
    -----
    s_axil : In(AxiLiteSignature)
    start, abort_job : Out(1)
        One-cycle pulses.
    program_addr, window_base, window_limit : Out(32)
    busy, finished : In(1)
        From the controller; ``finished`` is a one-cycle pulse.
    error, error_addr : In
        The controller's latched error.
    unit_busy, unit_waiting, unit_stalled : In(4)
        One bit per unit (load, matrix, vector, store), sampled every cycle.
    matrix_rows : In(32)
        The systolic array's busy counter (restarted by the core at each start).
    irq : Out(1)
    """

    def __init__(self, addr_width: int = 12):
        self.addr_width = addr_width
        super().__init__({
            "s_axil": In(AxiLiteSignature(addr_width)),
            "start": Out(1), "abort_job": Out(1),
            "program_addr": Out(32), "window_base": Out(32), "window_limit": Out(32),
            "busy": In(1), "finished": In(1), "error": In(ErrorCode), "error_addr": In(32),
            "unit_busy": In(len(QUEUES)), "unit_waiting": In(len(QUEUES)), "unit_stalled": In(len(QUEUES)),
            "matrix_rows": In(32),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil
        irq_enable = Signal()
        done = Signal()
        cycles = Signal(64)
        cycles_hi_snapshot = Signal(32)
        counters = {(unit, name): Signal(32, name=f"{unit}_{name}")
                    for unit in QUEUES for name in UNIT_COUNTERS}
        has_error = Signal()
        m.d.comb += has_error.eq(self.error != ErrorCode.NONE)

        # ------------------------------------------------------------------ counters
        with m.If(self.start):
            m.d.sync += cycles.eq(0)
            for counter in counters.values():
                m.d.sync += counter.eq(0)
        with m.Else():
            with m.If(self.busy):
                m.d.sync += cycles.eq(cycles + 1)
            for u, unit in enumerate(QUEUES):
                for name, bits in (("busy", self.unit_busy), ("waiting", self.unit_waiting),
                                   ("stalled", self.unit_stalled)):
                    with m.If(bits[u]):
                        m.d.sync += counters[(unit, name)].eq(counters[(unit, name)] + 1)
        with m.If(self.finished):
            m.d.sync += done.eq(1)
        m.d.comb += self.irq.eq(irq_enable & (done | has_error))

        # ------------------------------------------------------------------ reads
        read_value = Signal(32)
        read_ok = Signal()
        offset = bus.araddr[:8]
        table = {
            REGISTERS["ID"]: Const(ID_VALUE, 32),
            REGISTERS["CONTROL"]: Cat(Const(0, 2), irq_enable),
            # DONE is set the cycle after ``finished``, when BUSY has already fallen: read in that
            # cycle, STATUS would say neither
            REGISTERS["STATUS"]: Cat(self.busy, done | self.finished, has_error),
            REGISTERS["ERROR_CODE"]: self.error.as_value(),
            REGISTERS["ERROR_ADDR"]: self.error_addr,
            REGISTERS["PROGRAM_ADDR"]: self.program_addr,
            REGISTERS["WINDOW_BASE"]: self.window_base,
            REGISTERS["WINDOW_LIMIT"]: self.window_limit,
            REGISTERS["CYCLES_LO"]: cycles[:32],
            REGISTERS["CYCLES_HI"]: cycles_hi_snapshot,
            REGISTERS["MATRIX_ROWS"]: self.matrix_rows,
        }
        for (unit, name), counter in counters.items():
            table[REGISTERS[f"{unit.upper()}_{name.upper()}"]] = counter
        with m.Switch(offset):
            for address, value in table.items():
                with m.Case(address):
                    m.d.comb += [read_value.eq(value), read_ok.eq(1)]

        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        m.d.comb += bus.arready.eq(~bus.rvalid)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(read_value), bus.rresp.eq(Mux(read_ok, OKAY, SLVERR))]
            with m.If(offset == REGISTERS["CYCLES_LO"]):
                m.d.sync += cycles_hi_snapshot.eq(cycles[32:])

        # ------------------------------------------------------------------ writes
        # Address and data are taken together once both are offered and no response is pending.
        take = Signal()
        m.d.comb += [take.eq(bus.awvalid & bus.wvalid & ~bus.bvalid), bus.awready.eq(take), bus.wready.eq(take)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        m.d.sync += [self.start.eq(0), self.abort_job.eq(0)]
        w_offset = bus.awaddr[:8]
        data = bus.wdata
        writable = (REGISTERS["CONTROL"], REGISTERS["STATUS"], REGISTERS["PROGRAM_ADDR"],
                    REGISTERS["WINDOW_BASE"], REGISTERS["WINDOW_LIMIT"])
        with m.If(take):
            m.d.sync += [bus.bvalid.eq(1), bus.bresp.eq(SLVERR)]
            with m.Switch(w_offset):
                with m.Case(REGISTERS["CONTROL"]):
                    m.d.sync += [self.start.eq(data[0]), self.abort_job.eq(data[1]), irq_enable.eq(data[2])]
                    with m.If(data[0]):
                        m.d.sync += done.eq(0)
                with m.Case(REGISTERS["STATUS"]):
                    with m.If(data[1]):
                        m.d.sync += done.eq(0)
                with m.Case(REGISTERS["PROGRAM_ADDR"]):
                    m.d.sync += self.program_addr.eq(data)
                with m.Case(REGISTERS["WINDOW_BASE"]):
                    m.d.sync += self.window_base.eq(data)
                with m.Case(REGISTERS["WINDOW_LIMIT"]):
                    m.d.sync += self.window_limit.eq(data)
            with m.If(Cat(w_offset == address for address in writable).any()):
                m.d.sync += bus.bresp.eq(OKAY)
        return m

