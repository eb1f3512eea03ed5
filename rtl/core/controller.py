"""The core's controller: fetches the program, decodes it, dispatches to four queues, keeps the
semaphores between them, and stops cleanly on errors.

Instructions are :data:`scoville.isa.Instruction` words (256 bits), fetched in bursts through a
read-only memory port (the read half of :class:`rtl.dma.port.MemoryPortSignature`). Each word is
decoded and pushed into the FIFO of its queue (load, store, matrix, vector). The head of a queue
is released to its unit only when every semaphore in its ``wait`` mask is non-zero (they are then
decremented; one release per cycle, round robin over the queues) and the unit has finished what
was released to it before. When the unit reports the
instruction done (a ``done`` strobe per queue, in order), every semaphore in its ``signal`` mask
is incremented. ``END`` stops fetching; the job is finished when every queue has drained,
every released instruction is done and the beats of every fetch request made have arrived.
``LOOP`` (``docs/isa.md``) is executed here: the body's words are fetched again for each
iteration (beats fetched past the body are dropped) and their address fields stepped as they
are decoded, so the queues see the unrolled program.

Errors stop dispatch at once and latch a code and an address: an undefined opcode
(``ILLEGAL_INSTRUCTION``, the instruction's address), an operand reaching past the scratchpad or
the accumulator (``SRAM_BOUNDS``, the instruction's address; checked before it is queued, so it
never runs, when the sizes are given), a bus error on fetch (``FETCH_BUS_ERROR``,
the faulting address), an error reported by a unit (its code and address), or no progress for
``watchdog`` cycles (``TIMEOUT``, the address of the next instruction to fetch). ``start`` clears
a previous error and begins a new job.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.core.bounds import BoundsCheck
from rtl.dma.port import read_response_layout, request_layout
from scoville.isa import INSTRUCTION_BITS, LOOP_BODY_MAX, SEMAPHORES, Instruction, Opcode

__all__ = ["Controller", "ErrorCode", "Queue", "QUEUES"]


class ErrorCode(enum.Enum, shape=4):
    """Why the core stopped (0: it did not)."""

    NONE = 0
    ILLEGAL_INSTRUCTION = 1
    FETCH_BUS_ERROR = 2
    DMA_BUS_ERROR = 3
    OUT_OF_WINDOW = 4
    UNIT_FAULT = 5
    TIMEOUT = 6
    ABORTED = 7
    SRAM_BOUNDS = 8


class Queue(enum.Enum, shape=2):
    LOAD = 0
    MATRIX = 1
    VECTOR = 2
    STORE = 3


QUEUES = ("load", "matrix", "vector", "store")


def queue_of(opcode_value: int) -> str | None:
    """Which queue an opcode goes to (None: control), from the opcode's high nibble."""
    return {0x1: "load", 0x2: "store", 0x3: "matrix", 0x4: "vector"}.get(opcode_value >> 4)


class Controller(wiring.Component):
    """Instruction fetch, decode, queues, semaphores and error handling of one core.

    Parameters
    ----------
    addr_width : int
        Byte-address width of the fetch port (32).
    data_width : int
        Fetch bus width in bits: 64, 128 or 256 (a divisor of the 256-bit instruction).
    queue_depth : int
        Instructions buffered per queue (a power of two, at least 2).
    burst : int
        Instructions fetched per read request (at least 1).
    watchdog : int
        Cycles without progress (no fetch beat, dispatch, completion or unit data movement) before ``TIMEOUT``.
    shared_units : tuple of tuples of queue names
        Queues served by one unit (the core's transfer unit runs both load and store): a queue's
        head is offered only when no instruction released from any queue of its unit is running.
    spad_bytes, acc_words : int or None
        Sizes of the core's scratchpad and accumulator: every instruction's SRAM operands are
        checked against them (:class:`rtl.core.bounds.BoundsCheck`) before it is queued, and one
        that reaches past its memory stops the core with ``SRAM_BOUNDS``. None (both): no check.

    Ports
    -----
    fetch_request, fetch_response
        Read half of the generic memory port.
    start, program_addr
        Host: a one-cycle ``start`` begins the program at ``program_addr`` (clears an error).
    busy, finished, error, error_addr, pc
        Status: ``finished`` pulses when a job completes; ``error`` holds until the next start.
    load, matrix, vector, store
        Decoded instructions released to each unit (streams of ``Instruction``).
    load_done, matrix_done, vector_done, store_done
        One-cycle strobes: the unit finished its oldest released instruction.
    unit_error, unit_error_code, unit_error_addr
        A unit stopped on an error (the DMA's out-of-window or bus error, say).
    unit_progress
        A unit moved data this cycle: a long instruction is not a stall.
    unit_overlap : In(4)
        Per queue: its unit holds one released instruction and takes the next now (the matrix
        unit, once it has sent every read of the one it holds; the transfer unit, once the one it
        holds is a descriptor out), so that the next is offered before the first is done; at most
        two are then in flight. Low: one at a time.
    unit_busy, unit_waiting : Out(4)
        Per queue (load, matrix, vector, store): an instruction released to the unit is not done
        yet; the queue's next instruction is waiting for a semaphore (performance counters).
    """

    def __init__(self, *, addr_width: int = 32, data_width: int = 64, queue_depth: int = 4,
                 burst: int = 4, watchdog: int = 1 << 20, shared_units: tuple = (("load", "store"),),
                 spad_bytes: int | None = None, acc_words: int | None = None):
        if data_width not in (64, 128, 256):
            raise ValueError(f"data_width must be 64, 128 or 256, got {data_width!r}")
        if not isinstance(queue_depth, int) or queue_depth < 2 or queue_depth & (queue_depth - 1):
            raise ValueError(f"queue_depth must be a power of two >= 2, got {queue_depth!r}")
        if not isinstance(burst, int) or not 1 <= burst <= 64:
            raise ValueError(f"burst must be an integer from 1 to 64, got {burst!r}")
        if not isinstance(watchdog, int) or watchdog < 16:
            raise ValueError(f"watchdog must be an integer >= 16, got {watchdog!r}")
        named = [name for unit in shared_units for name in unit]
        if any(name not in QUEUES for name in named) or len(set(named)) != len(named):
            raise ValueError(f"shared_units must name each queue of {QUEUES} at most once, got {shared_units!r}")
        if (spad_bytes is None) != (acc_words is None):
            raise ValueError("give both spad_bytes and acc_words (the bounds check) or neither")
        self.bounds = BoundsCheck(spad_bytes, acc_words) if spad_bytes is not None else None
        self.unit_queues = {name: next((unit for unit in shared_units if name in unit), (name,)) for name in QUEUES}
        self.addr_width, self.data_width = addr_width, data_width
        self.queue_depth, self.burst, self.watchdog = queue_depth, burst, watchdog
        self.beats_per_instruction = INSTRUCTION_BITS // data_width
        members = {
            "fetch_request": Out(stream.Signature(request_layout(addr_width))),
            "fetch_response": In(stream.Signature(read_response_layout(addr_width, data_width))),
            "start": In(1),
            "program_addr": In(addr_width),
            "busy": Out(1),
            "finished": Out(1),
            "error": Out(ErrorCode),
            "error_addr": Out(addr_width),
            "pc": Out(addr_width),
            "unit_error": In(1),
            "unit_error_code": In(ErrorCode),
            "unit_error_addr": In(addr_width),
            "unit_progress": In(1),
            "unit_overlap": In(len(QUEUES)),
            "unit_busy": Out(len(QUEUES)),
            "unit_waiting": Out(len(QUEUES)),
        }
        for name in QUEUES:
            members[name] = Out(stream.Signature(Instruction))
            members[f"{name}_done"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        ipw = self.beats_per_instruction
        instruction_bytes = INSTRUCTION_BITS // 8

        running = Signal()      # a job is active and no error has stopped it
        fetching = Signal()     # END not yet seen
        fetch_addr = Signal(self.addr_width)   # next instruction to request
        decode_addr = Signal(self.addr_width)  # address of the instruction being decoded
        outstanding = Signal(range(self.burst * ipw + 1))  # beats requested, not yet received
        progress = Signal()  # something moved this cycle (resets the watchdog)
        m.d.comb += progress.eq(self.unit_progress)
        idle_cycles = Signal(range(self.watchdog + 1))

        m.d.comb += [self.busy.eq(running), self.pc.eq(decode_addr)]

        # ------------------------------------------------------------ per-queue FIFOs and bookkeeping
        fifos = {}
        inflight = {}   # signal masks of released, not yet done instructions
        for name in QUEUES:
            fifos[name] = m.submodules[f"{name}_queue"] = fifo.SyncFIFOBuffered(
                width=Instruction.size, depth=self.queue_depth)
            inflight[name] = m.submodules[f"{name}_inflight"] = fifo.SyncFIFOBuffered(
                width=SEMAPHORES, depth=4)

        # ------------------------------------------------------------ fetch: bursts of whole instructions
        room = Signal()  # enough free space downstream for a whole burst is not required: the
        # assembled word waits in `word_valid` until its queue has room, and responses wait for it.
        dropping = Signal()  # a loop went back to its start: the beats of earlier requests are not wanted
        m.d.comb += room.eq((outstanding == 0) & ~dropping)
        # A request stays offered, unchanged, until it is taken, even once END, an error or a loop
        # going back has made it unwanted: the read arbiter may already be passing it on to the
        # memory, and its beats would then wait in the arbiter's fetch buffer for ever. They are
        # counted in `outstanding` like any others, and dropped.
        offered = Signal()  # the request was offered last cycle and not taken
        m.d.comb += [
            self.fetch_request.payload.addr.eq(fetch_addr),
            self.fetch_request.payload.beats.eq(self.burst * ipw),
            self.fetch_request.valid.eq(offered | (running & fetching & room)),
        ]
        m.d.sync += offered.eq(self.fetch_request.valid & ~self.fetch_request.ready)
        with m.If((outstanding == 0) & ~self.fetch_request.valid):
            m.d.sync += dropping.eq(0)
        with m.If(self.fetch_request.valid & self.fetch_request.ready):
            m.d.sync += [outstanding.eq(self.burst * ipw), fetch_addr.eq(fetch_addr + self.burst * instruction_bytes)]

        # Beats are assembled in `beats`; a whole instruction moves on to `word`, where it is
        # decoded and its SRAM operands are checked while the next one arrives.
        beats = Signal(INSTRUCTION_BITS)
        beats_valid = Signal()
        beat_index = Signal(range(max(ipw, 2)))
        word = Signal(INSTRUCTION_BITS)
        word_valid = Signal()
        word_taken = Signal()
        discard = Signal()  # after END or an error, or when a loop goes back, remaining beats are dropped
        m.d.comb += discard.eq(~running | ~fetching | dropping)
        m.d.comb += self.fetch_response.ready.eq((outstanding != 0) & (discard | ~beats_valid))
        response = self.fetch_response.payload
        with m.If(self.fetch_response.valid & self.fetch_response.ready):
            m.d.sync += outstanding.eq(outstanding - 1)
            m.d.comb += progress.eq(1)
            with m.If(~discard):
                with m.If(response.resp.as_value()[1]):  # SLVERR or DECERR
                    m.d.sync += [running.eq(0), self.error.eq(ErrorCode.FETCH_BUS_ERROR),
                                 self.error_addr.eq(response.fault_addr)]
                with m.Else():
                    if ipw == 1:
                        m.d.sync += [beats.eq(response.data), beats_valid.eq(1)]
                    else:
                        m.d.sync += beats.eq(Cat(beats[self.data_width:], response.data))
                        m.d.sync += beat_index.eq(beat_index + 1)
                        with m.If(beat_index == ipw - 1):
                            m.d.sync += [beat_index.eq(0), beats_valid.eq(1)]
        advance = Signal()
        m.d.comb += advance.eq(beats_valid & ~word_valid & running & fetching)
        with m.If(beats_valid & ~(running & fetching)):
            m.d.sync += beats_valid.eq(0)

        # ------------------------------------------------------------ loops
        # A LOOP (taken in `word`, below) arms these; the body's words are stepped as they move on
        # to `word`, and after the body's last word fetching goes back to its first.
        loop_active = Signal()
        loop_body = Signal(range(LOOP_BODY_MAX + 1))
        loop_position = Signal(range(LOOP_BODY_MAX))
        loop_left = Signal(32)       # iterations after the current one
        loop_start = Signal(self.addr_width)
        loop_steps = Signal(4 * LOOP_BODY_MAX)
        loop_increment = [Signal(32, name=f"loop_increment{f}") for f in range(4)]
        loop_offset = [Signal(32, name=f"loop_offset{f}") for f in range(4)]
        assemble_addr = Signal(self.addr_width)   # address of the word in `beats`
        stepped = Signal(Instruction)
        incoming = Instruction(beats)
        position_steps = loop_steps.word_select(loop_position, 4)
        m.d.comb += stepped.eq(beats)
        for f in range(4):
            field = f"addr{f}"
            m.d.comb += getattr(stepped, field).eq(
                getattr(incoming, field) + Mux(loop_active & position_steps[f], loop_offset[f], 0))
        with m.If(advance):
            m.d.sync += assemble_addr.eq(assemble_addr + instruction_bytes)
            with m.If(loop_active):
                with m.If(loop_position + 1 != loop_body):
                    m.d.sync += loop_position.eq(loop_position + 1)
                with m.Elif(loop_left != 0):
                    # the body again: drop what is in flight, fetch from its start (below)
                    m.d.sync += [loop_position.eq(0), loop_left.eq(loop_left - 1),
                                 assemble_addr.eq(loop_start), beat_index.eq(0), dropping.eq(1)]
                    m.d.sync += [loop_offset[f].eq(loop_offset[f] + loop_increment[f]) for f in range(4)]
                with m.Else():
                    m.d.sync += loop_active.eq(0)
        # while dropping, nothing new is requested: the fetch goes back to the body's start once no
        # request is offered (one offered before the loop went back keeps its address until taken)
        with m.If(dropping & ~self.fetch_request.valid):
            m.d.sync += fetch_addr.eq(loop_start)

        # the SRAM bounds of the instruction in `word`
        checked, fits = Signal(), Signal()
        if self.bounds is not None:
            m.submodules.bounds = bounds = self.bounds
            m.d.comb += [bounds.word.eq(word), bounds.start.eq(advance), checked.eq(bounds.done),
                         fits.eq(bounds.ok)]
        else:
            m.d.comb += [checked.eq(1), fits.eq(1)]

        # ------------------------------------------------------------ decode and enqueue
        decoded = Instruction(word)
        opcode = decoded.opcode.as_value()
        defined = Signal()
        with m.Switch(opcode):
            for op in Opcode:
                with m.Case(op.value):
                    m.d.comb += defined.eq(1)
        is_end = opcode == Opcode.END.value
        is_loop = opcode == Opcode.LOOP.value
        # a LOOP of 1 to LOOP_BODY_MAX instructions, at least once, without semaphores, outside any
        # loop body; no END inside a body
        bad_loop = is_loop & (loop_active | (decoded.flags == 0) | (decoded.flags > LOOP_BODY_MAX)
                              | (decoded.imm == 0) | (decoded.wait != 0) | (decoded.signal != 0))
        known = Signal()
        m.d.comb += known.eq(defined & ~bad_loop & ~(is_end & loop_active))
        target = {name: Signal(name=f"to_{name}") for name in QUEUES}
        high = opcode[4:8]
        for name, nibble in (("load", 0x1), ("store", 0x2), ("matrix", 0x3), ("vector", 0x4)):
            m.d.comb += target[name].eq(known & (high == nibble))
        for name in QUEUES:
            m.d.comb += fifos[name].w_data.eq(word)
            m.d.comb += fifos[name].w_en.eq(word_valid & running & fetching & checked & fits & target[name])
        queue_ready = Signal()
        m.d.comb += queue_ready.eq(
            ~((target["load"] & ~fifos["load"].w_rdy) | (target["store"] & ~fifos["store"].w_rdy)
              | (target["matrix"] & ~fifos["matrix"].w_rdy) | (target["vector"] & ~fifos["vector"].w_rdy)))
        m.d.comb += word_taken.eq(word_valid & running & fetching & known & checked & fits & queue_ready)
        with m.If(word_valid & ~(running & fetching)):
            m.d.sync += word_valid.eq(0)
        with m.If(advance):
            m.d.sync += [word.eq(stepped), word_valid.eq(1), beats_valid.eq(0), decode_addr.eq(assemble_addr)]
        with m.If(word_taken):
            m.d.sync += word_valid.eq(0)
            m.d.comb += progress.eq(1)
            with m.If(is_end):
                m.d.sync += fetching.eq(0)
            with m.If(is_loop):
                m.d.sync += [loop_active.eq(1), loop_body.eq(decoded.flags), loop_position.eq(0),
                             loop_left.eq(decoded.imm - 1), loop_start.eq(decode_addr + instruction_bytes),
                             loop_steps.eq(Cat(decoded.rows, decoded.cols, decoded.stride0, decoded.stride1))]
                m.d.sync += [loop_increment[f].eq(getattr(decoded, f"addr{f}")) for f in range(4)]
                m.d.sync += [loop_offset[f].eq(0) for f in range(4)]
        with m.If(word_valid & running & fetching & ~known):
            m.d.sync += [running.eq(0), word_valid.eq(0), self.error.eq(ErrorCode.ILLEGAL_INSTRUCTION),
                         self.error_addr.eq(decode_addr)]
        with m.If(word_valid & running & fetching & known & checked & ~fits):
            m.d.sync += [running.eq(0), word_valid.eq(0), self.error.eq(ErrorCode.SRAM_BOUNDS),
                         self.error_addr.eq(decode_addr)]

        # ------------------------------------------------------------ semaphores and release
        semaphores = Array(Signal(8, name=f"semaphore{n}") for n in range(SEMAPHORES))
        heads = {name: Instruction(fifos[name].r_data) for name in QUEUES}
        can_release = {}
        for name in QUEUES:
            ok = Signal(name=f"{name}_waits_met")
            waits = heads[name].wait
            m.d.comb += ok.eq(Cat(~waits[n] | (semaphores[n] != 0) for n in range(SEMAPHORES)).all())
            can_release[name] = Signal(name=f"{name}_can_release")
            # Only an idle unit gets an offer: an offer is held until the unit takes it, and one held
            # by a busy unit would keep every other queue from being released meanwhile.
            unit_idle = Signal(name=f"{name}_unit_idle")
            index = QUEUES.index(name)
            m.d.comb += unit_idle.eq(Cat((inflight[q].level == 0)
                                         | ((inflight[q].level == 1) & self.unit_overlap[QUEUES.index(q)])
                                         for q in self.unit_queues[name]).all())
            m.d.comb += [self.unit_busy[index].eq(inflight[name].level != 0),
                         self.unit_waiting[index].eq(running & fifos[name].r_rdy & ~ok)]
            port = getattr(self, name)
            m.d.comb += [
                port.payload.eq(fifos[name].r_data),
                can_release[name].eq(running & fifos[name].r_rdy & ok & unit_idle),
            ]

        # Release: one offer at a time, chosen round robin among the queues whose head may go, and
        # held (valid stays up, payload fixed) until the unit takes it, as the stream rules require.
        # A new offer is chosen the cycle after a transfer, once the queue heads have moved.
        offer_valid = Signal()
        offer_index = Signal(range(len(QUEUES)))
        turn = Signal(range(len(QUEUES)))
        chosen = Signal(range(len(QUEUES)))
        any_release = Signal()
        for offset in reversed(range(len(QUEUES))):
            for index, name in enumerate(QUEUES):
                with m.If(((turn + offset) % len(QUEUES) == index) & can_release[name]):
                    m.d.comb += [chosen.eq(index), any_release.eq(1)]
        released_waits = Signal(SEMAPHORES)
        transfer = Signal()
        for index, name in enumerate(QUEUES):
            port = getattr(self, name)
            m.d.comb += port.valid.eq(offer_valid & (offer_index == index))
            with m.If(port.valid & port.ready):
                m.d.comb += [transfer.eq(1), fifos[name].r_en.eq(1), released_waits.eq(heads[name].wait),
                             inflight[name].w_en.eq(1), inflight[name].w_data.eq(heads[name].signal)]
                m.d.sync += turn.eq(index + 1 if index + 1 < len(QUEUES) else 0)
                m.d.comb += progress.eq(1)
        with m.If(transfer | ~running):
            m.d.sync += offer_valid.eq(0)
        with m.Elif(~offer_valid & any_release):
            m.d.sync += [offer_valid.eq(1), offer_index.eq(chosen)]

        # completions: a done strobe may arrive before the released instruction's entry is
        # readable from its in-flight FIFO, so strobes are counted and matched as entries appear.
        retire = {}
        for name in QUEUES:
            pending = Signal(range(8), name=f"{name}_done_pending")
            strobe = getattr(self, f"{name}_done")
            retire[name] = Signal(name=f"{name}_retire")
            m.d.comb += retire[name].eq(((pending != 0) | strobe) & inflight[name].r_rdy)
            m.d.comb += inflight[name].r_en.eq(retire[name])
            m.d.sync += pending.eq(pending + strobe - retire[name])
            with m.If(self.start & ~running):
                m.d.sync += pending.eq(0)
            with m.If(retire[name]):
                m.d.comb += progress.eq(1)
        signalled = [Signal(3, name=f"signalled{n}") for n in range(SEMAPHORES)]
        for n in range(SEMAPHORES):
            m.d.comb += signalled[n].eq(sum((retire[name] & inflight[name].r_data[n]).as_unsigned()
                                            for name in QUEUES))
        with m.If(self.start & ~running):
            for n in range(SEMAPHORES):
                m.d.sync += semaphores[n].eq(0)
        with m.Else():
            for n in range(SEMAPHORES):
                m.d.sync += semaphores[n].eq(semaphores[n] + signalled[n] - released_waits[n])

        # ------------------------------------------------------------ completion, watchdog, errors, start
        drained = Signal()
        # levels, not r_rdy: a word just written is not readable yet from a buffered FIFO
        m.d.comb += drained.eq(Cat((fifos[name].level == 0) & (inflight[name].level == 0) for name in QUEUES).all()
                               & ~word_valid & ~beats_valid & ~self.fetch_request.valid & (outstanding == 0))
        m.d.sync += self.finished.eq(0)
        with m.If(running & ~fetching & drained):
            m.d.sync += [running.eq(0), self.finished.eq(1)]

        with m.If(progress | ~running):
            m.d.sync += idle_cycles.eq(0)
        with m.Else():
            m.d.sync += idle_cycles.eq(idle_cycles + 1)
        with m.If(running & (idle_cycles == self.watchdog)):
            m.d.sync += [running.eq(0), self.error.eq(ErrorCode.TIMEOUT), self.error_addr.eq(decode_addr)]
        with m.If(running & self.unit_error):
            m.d.sync += [running.eq(0), self.error.eq(self.unit_error_code), self.error_addr.eq(self.unit_error_addr)]

        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), fetching.eq(1), fetch_addr.eq(self.program_addr),
                         decode_addr.eq(self.program_addr), assemble_addr.eq(self.program_addr),
                         loop_active.eq(0), dropping.eq(0), self.error.eq(ErrorCode.NONE),
                         self.error_addr.eq(0), beat_index.eq(0), word_valid.eq(0), beats_valid.eq(0),
                         idle_cycles.eq(0)]
        return m
