"""The vector unit: every non-matrix operation of a transformer layer on ``lanes`` lanes.

One lockstep pipeline serves every operation (see ``docs/architecture.md``, "Vector unit"):

=========  ==================================================================================
segment    what happens there
=========  ==================================================================================
issue      instruction queue; tags each input beat with (op, pass, first, last, lane mask)
R1         per-beat lane trees (max, min, sum) and the row accumulators of pass 0
S1         per-row scalars from pass 0: max|x|, LayerNorm mean, norm shift, quantize divider
T2         per-lane: exp (softmax, EXP), x - mean and squares (norms), quantize; lane tree and
           row accumulator of pass 1
S2         per-row scalars from pass 1: softmax reciprocal (divider), rsqrt (integer Newton)
F          per-lane: GELU/SiLU tables, RoPE phase and sine tables, then one shared
           ``saturate(round_shift(x*M + x2, -E) + B)`` datapath for every output
=========  ==================================================================================

A per-row result is left in a register by the last beat of a pass when that beat passes a
segment boundary; the beats of the next pass (which follow it in the pipeline) read it there.
So rows follow each other without gaps, whatever their length: a row of ``n`` beats and ``p``
passes takes ``n * p`` cycles in steady state.

Per-beat values that only ride along through a segment (the lane values across R1+S1 and across
the pass-1 reduction + S2, the row results and operands across F) wait in block-RAM delay lines
(``Lockstep.park``/``unpark``) rather than in a register per bit per stage.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data as data_lib
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from scoville import numerics as nx

from .arith import (
    Lockstep,
    add_levels,
    any_of,
    bit_length_of_chunks,
    clamp,
    fits,
    leading_one_chunks,
    maximum,
    minimum,
    product_pieces,
    pwl_lookup,
    saturate_narrow,
    shift_add_terms,
    shift_right_low,
)
from .isa import (
    ELEMENTWISE,
    MAX_ABS_FIRST,
    MAX_FIRST,
    NEEDS_SIDE,
    PASSES,
    ROW_VALUE_BITS,
    SHORT_PATH,
    Instruction,
    Op,
    OutWidth,
    lane_input_layout,
    output_layout,
    side_layout,
)

__all__ = ["VectorUnit"]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ACC_BITS = ROW_VALUE_BITS
#: (127 << RECIP_FRAC) // a15, a15 >= 2**14, has 15 quotient bits; (2**29 - 1) // n15 has 15.
QUANT_DIVIDEND = nx.QMAX << nx.RECIP_FRAC
QUANT_QUOTIENT_BITS = (QUANT_DIVIDEND >> (nx.SCALE_BITS - 1)).bit_length()
RECIP_DIVIDEND, RECIP_QUOTIENT_BITS = (1 << 29) - 1, 15
#: Per-beat fields that only ride along through the per-row scalar segments (parked there).
LANE_FIELDS = ("x", "on", "base", "final", "emit", "ilast")
#: Width of the output shifter's result: enough that a clamped value saturates as the exact one.
WINDOW_BITS = 35
#: What the issue logic needs of a queued job, worked out when it is queued.
JOB_LAYOUT = data_lib.StructLayout({
    "op": Op, "last_pass": unsigned(2), "needs_side": unsigned(1), "elementwise": unsigned(1),
    "short": unsigned(1),        # its beats take the short path (isa.SHORT_PATH)
    "softmax": unsigned(1), "causal": unsigned(1), "length": unsigned(16),
    # the first row's end (`length`, or with `trim_masked` a softmax row's last allowed key) - 2 *
    # lanes: the beat after the one at `base` is the row's last if base >= this
    "length_m2": signed(18),
    "rows_m2": signed(17), "one_beat": unsigned(1), "one_row": unsigned(1),
    # the first pass's beats stand for `reduced_step` elements each (a narrow unit's reduced beats)
    "reduced": unsigned(1), "length_m2_first": signed(18), "one_beat_first": unsigned(1),
    "limit": unsigned(16),       # softmax: the keys the first row allows
    "end1": unsigned(16),        # the second row's end
    "grow": unsigned(1)})        # each row's end one further than the one before's, up to length


def _rsqrt_seed() -> list[int]:
    # the same table as golden.ops._RSQRT_SEED (the RTL does not import the golden model)
    return [0 if i < 4 else int(round(2**29 / (((i + 0.5) * 2**26) ** 0.5))) for i in range(16)]


def JobView(bits) -> data_lib.View:  # noqa: N802 (reads like the layout it views)
    return data_lib.View(JOB_LAYOUT, bits)


def _only(terms: list):
    """The one partial sum left after the last adder level."""
    if len(terms) != 1:
        raise AssertionError(f"{len(terms)} partial sums left, expected 1")
    return terms[0]


class VectorUnit(wiring.Component):
    """C-lane vector unit, bit-exact with ``golden.ops``.

    Parameters
    ----------
    lanes : int
        Elements per beat (C), at least 1.
    head_dim : int
        RoPE head dimension (even): the frequency table has ``head_dim // 2`` entries.
    rope_theta : float
        RoPE base.
    queue_depth : int
        Instructions in flight (a power of two).
    divide_bits_per_stage : int
        Quotient bits per pipeline stage of the two dividers (fewer: higher Fmax, more latency).
    stage_merge : int
        Pipeline stages per register stage, 1 to 3 (``Lockstep``'s ``merge``): 1 registers every
        stage, as the unit is built for 100 MHz and more; 2 keeps about every other register,
        so the latency is about half and the longest path about twice as long (for a chip
        clocked far below the unit's own Fmax, the FPGA chip's 30 MHz).
    ops : iterable of Op, optional
        The operations built (default: every one). The logic only another operation needs is
        left out, so a user that never issues ``ROPE`` saves its phase products, sine tables and
        partner product (at C = 8: 40 DSP blocks and 8 block RAMs), and one that never issues
        ``SOFTMAX`` the reciprocal divider. The results of the operations built, and the
        latency, are the same as with every operation; an instruction for another operation
        gives undefined results.
    reduced_step : int, optional
        Elements each beat of the first pass of ``isa.MAX_FIRST`` and ``isa.MAX_ABS_FIRST``
        operations stands for: a multiple of ``lanes`` (default ``lanes``). Lane ``j`` of such a
        beat at element ``base`` of its row holds the largest value (or the value of largest
        magnitude) of the row's elements ``base + j + k * lanes`` that the pass takes, and is
        taken if ``base + j`` is; the beat after it starts at ``base + reduced_step``.
        :class:`~rtl.vector.narrow.NarrowVectorUnit` sends that pass's C-element beats so, one
        cycle each instead of one per piece.
    trim_masked : bool
        Take and emit every pass of a softmax row only up to its last allowed key
        (:func:`rtl.vector.isa.row_ends`), instead of up to ``length``: the masked keys' results
        are 0, so the feeder leaves them out and the writer stores zeros for them. A causal
        row's fully masked beats then cost nothing here.

    Ports
    -----
    c : In(stream.Signature(Instruction))
        Instructions.
    i : In(stream.Signature(lane_input_layout(lanes)))
        Operand rows, each streamed once per pass (``isa.PASSES``), up to ``isa.row_ends`` with
        ``trim_masked``.
    s : In(stream.Signature(side_layout(lanes)))
        Per-column operands, one beat per beat of the last pass of ``isa.NEEDS_SIDE`` operations.
    o : Out(stream.Signature(output_layout(lanes)))
        Results: one beat per input beat of the last pass, or one per row for reductions.

    Latency: :attr:`latency` cycles from an input beat to its output beat, :attr:`short_latency`
    for the operations of ``isa.SHORT_PATH`` (which skip the per-row segments). Throughput: one
    beat per cycle on ``i``; every port tolerates stalls in every cycle.
    """

    def __init__(self, lanes: int = 4, head_dim: int = 64, rope_theta: float = 10000.0,
                 queue_depth: int = 8, divide_bits_per_stage: int = 2, stage_merge: int = 1, ops=None,
                 reduced_step: int | None = None, trim_masked: bool = False):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
        reduced_step = lanes if reduced_step is None else reduced_step
        if not isinstance(reduced_step, int) or reduced_step < lanes or reduced_step % lanes:
            raise ValueError(f"reduced_step must be a multiple of lanes ({lanes}), got {reduced_step!r}")
        if not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
            raise ValueError(f"head_dim must be a positive even integer, got {head_dim!r}")
        if rope_theta <= 0:
            raise ValueError(f"rope_theta must be positive, got {rope_theta!r}")
        if not isinstance(queue_depth, int) or queue_depth < 2 or queue_depth & (queue_depth - 1):
            raise ValueError(f"queue_depth must be a power of two >= 2, got {queue_depth!r}")
        if divide_bits_per_stage not in (1, 2, 3, 4):
            raise ValueError(f"divide_bits_per_stage must be 1..4, got {divide_bits_per_stage!r}")
        if stage_merge not in (1, 2, 3):
            raise ValueError(f"stage_merge must be 1, 2 or 3, got {stage_merge!r}")
        ops = frozenset(Op) if ops is None else frozenset(ops)
        if not ops or not all(isinstance(op, Op) for op in ops):
            raise ValueError(f"ops must be a non-empty set of Op, got {ops!r}")
        self.ops = ops
        self.lanes = lanes
        self.reduced_step = reduced_step
        self.trim_masked = bool(trim_masked)
        self.head_dim = head_dim
        self.rope_theta = float(rope_theta)
        self.queue_depth = queue_depth
        self.divide_bits_per_stage = divide_bits_per_stage
        self.stage_merge = stage_merge
        self.latency = self.short_latency = None  # known after elaboration
        super().__init__({
            "c": In(stream.Signature(Instruction)),
            "i": In(stream.Signature(lane_input_layout(lanes))),
            "s": In(stream.Signature(side_layout(lanes))),
            "o": Out(stream.Signature(output_layout(lanes))),
        })

    # ------------------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        advance = Signal()
        pipe = Lockstep(m, advance, merge=self.stage_merge)

        # ---------------------------------------------------------------- instruction queue
        depth = self.queue_depth
        index_bits = (depth - 1).bit_length()
        ring = Array(Signal(Instruction.as_shape().size, name=f"queue{n}") for n in range(depth))
        # what the issue logic needs of a job, worked out when it is queued (off the issue path)
        jobs = Array(Signal(JOB_LAYOUT.size, name=f"job{n}") for n in range(depth))
        # counts of jobs queued, issued and finished (one bit wider than an index: full != empty)
        written, issued, freed = (Signal(index_bits + 1, name=n) for n in ("written", "issued", "freed"))
        written_seen = [Signal(index_bits + 1, name=f"written_seen{n}") for n in range(2)]
        freeing = Signal()
        issue_done = Signal()

        # an instruction is taken into a register first, then queued (or dropped if empty) from there
        held = Signal()
        incoming = Signal(Instruction)
        empty_job = Signal()   # of the held instruction, registered with it
        room = (written - freed)[:index_bits + 1] != depth
        write = Signal()
        m.d.comb += [write.eq(held & room & ~empty_job), self.c.ready.eq(~held | room | empty_job)]
        with m.If(self.c.valid & self.c.ready):
            m.d.sync += [held.eq(1), incoming.eq(self.c.payload),
                         empty_job.eq((self.c.payload.rows == 0) | (self.c.payload.length == 0))]
        with m.Elif(held & (room | empty_job)):
            m.d.sync += held.eq(0)
        job_in = Signal(JOB_LAYOUT)
        reduced_in = job_in.reduced if self.reduced_step != lanes else Const(0, 1)
        # where the rows end (isa.row_ends): a trimmed softmax row at its last allowed key
        limit_in = Mux(incoming.allowed == 0, incoming.length, incoming.allowed)
        trim_in = any_of(incoming.op.as_value(), (Op.SOFTMAX, Op.SOFTMAX_EXP)) & self.trim_masked
        end0 = Signal(16)
        m.d.comb += end0.eq(Mux(trim_in & (limit_in < incoming.length), limit_in, incoming.length))
        grow_in = trim_in & incoming.causal
        m.d.comb += [
            job_in.op.eq(incoming.op),
            # SOFTMAX_EXP with `fold` takes the value scales on the side stream
            job_in.needs_side.eq(any_of(incoming.op.as_value(), NEEDS_SIDE)
                                 | (incoming.fold & (incoming.op == Op.SOFTMAX_EXP))),
            job_in.elementwise.eq(any_of(incoming.op.as_value(), ELEMENTWISE)),
            job_in.short.eq(any_of(incoming.op.as_value(), SHORT_PATH)),
            job_in.softmax.eq(any_of(incoming.op.as_value(), (Op.SOFTMAX, Op.SOFTMAX_EXP))),
            job_in.causal.eq(incoming.causal),
            job_in.length.eq(incoming.length),
            job_in.length_m2.eq(end0 - 2 * lanes),
            job_in.rows_m2.eq(incoming.rows - 2),
            job_in.one_beat.eq(end0 <= lanes),
            job_in.one_row.eq(incoming.rows == 1),
            job_in.length_m2_first.eq(end0 - 2 * Mux(reduced_in, self.reduced_step, lanes)),
            job_in.one_beat_first.eq(end0 <= Mux(reduced_in, self.reduced_step, lanes)),
            job_in.limit.eq(limit_in),
            job_in.end1.eq(Mux(grow_in & (end0 < incoming.length), end0 + 1, end0)),
            job_in.grow.eq(grow_in),
        ]
        # (a unit built without reduced beats does not look at the flag; it follows the operation
        # all the same, so that every bit of the job is driven)
        m.d.comb += job_in.reduced.eq(any_of(incoming.op.as_value(), MAX_FIRST + MAX_ABS_FIRST))
        with m.Switch(incoming.op):
            for op in Op:
                with m.Case(op):
                    m.d.comb += job_in.last_pass.eq(PASSES[op] - 1)
        with m.If(write):
            m.d.sync += [ring[written[:index_bits]].eq(incoming.as_value()),
                         jobs[written[:index_bits]].eq(job_in.as_value()), written.eq(written + 1)]
        with m.If(freeing):
            m.d.sync += freed.eq(freed + 1)
        with m.If(issue_done):
            m.d.sync += issued.eq(issued + 1)
        # a job issues two cycles after it is queued, once `cur` below, then the flags computed
        # from `cur`, have been loaded from it
        m.d.sync += [written_seen[0].eq(written), written_seen[1].eq(written_seen[0])]

        def instruction(tag):
            return Instruction(ring[tag])

        # ---------------------------------------------------------------- issue
        # the job being issued, registered: the next one is loaded as the last beat of this one goes
        issue_index = issued[:index_bits]
        cur = Signal(JOB_LAYOUT)
        m.d.sync += cur.eq(Mux(issue_done, jobs[(issued + 1)[:index_bits]], jobs[issue_index]))
        active = written_seen[1] != issued
        row = Signal(16)
        pass_ = Signal(2)
        base = Signal(17)
        # the beat is a row's last (base + lanes >= length) and the row the job's last: registered
        # flags, worked out a cycle ahead, so admission and the job change stay off the comparators
        last_beat, last_row = Signal(), Signal()
        last_pass = pass_ == cur.last_pass
        accept = Signal()
        # The pipeline never stops (no enable on its registers): a beat is admitted only when the
        # output FIFO has room for it (credits) and, if its operation needs one, with its side
        # beat, which waits in the side FIFO until the beat reaches the side stage.
        credit = Signal()
        side_room = Signal()
        needs_side_now = last_pass & cur.needs_side
        # A beat of a SHORT_PATH operation goes from issue straight to the output segment F, so it
        # may only go once every beat on the long path has reached F (`long_empty`, registered):
        # then it cannot meet one at F's entrance or overtake one. A long-path beat admitted after
        # it reaches F later anyway.
        long_empty = Signal(init=1)
        may_go = active & credit & (~cur.short | long_empty)
        m.d.comb += [
            self.i.ready.eq(may_go & (~needs_side_now | (self.s.valid & side_room))),
            accept.eq(self.i.valid & self.i.ready),
            self.s.ready.eq(self.i.valid & may_go & needs_side_now & side_room),
        ]
        m.d.comb += issue_done.eq(accept & last_beat & last_pass & last_row)
        # the flags for the beat after this one, from registers only; admission just selects them
        next_job = JobView(jobs[(issued + 1)[:index_bits]])
        after_beat = Signal(2)
        # (a job's first pass may step `reduced_step` elements a beat, its other passes `lanes`)
        first_pass = pass_ == 0
        reduced_now = cur.reduced & first_pass if self.reduced_step != lanes else Const(0, 1)
        # where this row ends (isa.row_ends: the job's length but for a trimmed softmax), as the
        # comparisons take it, registered when the row begins; and where the next row ends
        row_m2, row_m2_first = Signal(signed(18)), Signal(signed(18))
        row_one = Signal()
        end_next = Signal(16)
        step_first = Mux(cur.reduced, self.reduced_step, lanes) if self.reduced_step != lanes else lanes
        m.d.comb += after_beat.eq(Mux(
            last_beat & last_pass & last_row, Cat(next_job.one_beat_first, next_job.one_row),
            Mux(last_beat, Cat(Mux(last_pass, end_next <= step_first, row_one),
                               Mux(last_pass, row == cur.rows_m2, last_row)),
                Cat(Cat(base, Const(0, 1)).as_signed() >= Mux(first_pass, row_m2_first, row_m2),
                    last_row))))
        with m.If(accept):
            m.d.sync += Cat(last_beat, last_row).eq(after_beat)
        with m.Elif(~active):
            # idle (base and row are 0): follow the job at the head of the queue, as `cur` does
            m.d.sync += [last_beat.eq(cur.one_beat_first), last_row.eq(cur.one_row)]
        with m.If(accept & last_beat & last_pass & last_row):
            m.d.sync += [row_m2.eq(next_job.length_m2), row_m2_first.eq(next_job.length_m2_first),
                         row_one.eq(next_job.one_beat), end_next.eq(next_job.end1)]
        with m.Elif(accept & last_beat & last_pass):
            m.d.sync += [row_m2.eq(end_next - 2 * lanes), row_m2_first.eq(end_next - 2 * step_first),
                         row_one.eq(end_next <= lanes),
                         end_next.eq(Mux(cur.grow & (end_next < cur.length), end_next + 1, end_next))]
        with m.Elif(~active):
            m.d.sync += [row_m2.eq(cur.length_m2), row_m2_first.eq(cur.length_m2_first), row_one.eq(cur.one_beat),
                         end_next.eq(cur.end1)]
        with m.If(accept):
            with m.If(last_beat):
                m.d.sync += base.eq(0)
                with m.If(last_pass):
                    m.d.sync += pass_.eq(0)
                    with m.If(last_row):
                        m.d.sync += row.eq(0)
                    with m.Else():
                        m.d.sync += row.eq(row + 1)
                with m.Else():
                    m.d.sync += pass_.eq(pass_ + 1)
            with m.Else():
                m.d.sync += base.eq(base + Mux(reduced_now, self.reduced_step, lanes))
        op_now = cur.op.as_value()
        slot = {
            "valid": accept, "short": cur.short, "op": op_now, "tag": issue_index, "pass_": pass_,
            "first": base == 0, "last": last_beat, "final": last_pass,
            "emit": last_pass & (cur.elementwise | last_beat),
            "ilast": last_pass & last_row & last_beat, "base": base,
            "length": cur.length, "limit": cur.limit + Mux(cur.causal, row, 0), "softmax": cur.softmax,
            "x": [self.i.payload[j] for j in range(lanes)],
        }
        # the instruction fields later segments need travel with the beat (the first in registers,
        # the rest in delay lines), so the queue is only read here, next to the issue logic
        ins = instruction(issue_index)
        slot.update({"inv_len_m": ins.inv_len_m, "inv_len_e": ins.inv_len_e, "eps": ins.eps,
                     "position": ins.position, "out_width": ins.out_width.as_value()})
        # SOFTMAX_EXP's fold (one bit): in registers with the beat, as the side stage needs it too
        slot["fold"] = ins.fold if Op.SOFTMAX_EXP in self.ops else Const(0, 1)
        slot = pipe.stage(slot, keep=True)   # the input register
        # what F needs of the instruction: a beat on the short path takes it along in registers
        short_job = {k: pipe.reg(slot[k], f"short_{k}") for k in ("position", "out_width")}
        job_eps = pipe.park({"eps": slot.pop("eps")})
        job_position = pipe.park({"position": slot.pop("position")})
        job_out_width = pipe.park({"out_width": slot.pop("out_width")})
        # the lane mask (row end, softmax mask) from the registered beat position
        base, length, limit, is_softmax = (slot.pop(k) for k in ("base", "length", "limit", "softmax"))
        lane_on = [(base + j < length) & (~is_softmax | (base + j < limit)) for j in range(lanes)]
        slot = pipe.stage({**slot, "base": base, "on": lane_on}, keep=True)
        # the short path leaves here (the beat's fields as they are now) and rejoins at F; on
        # the long path the beat is a bubble
        short = slot.pop("short")
        short_slot = {**slot, **short_job, "valid": slot["valid"] & short}
        short_depth = pipe.depth
        slot["valid"] = slot["valid"] & ~short

        def built(*ops):
            return [op for op in ops if op in self.ops]

        def is_op(s, *ops):
            # an operation that is not built never arrives: its test is a constant 0, and what
            # only it uses is left without a load (Yosys removes it)
            return any_of(s["op"], built(*ops)) if built(*ops) else Const(0, 1)

        def token(s, pass_index):
            """The last beat of pass ``pass_index`` of a row (it carries the row's results)."""
            return s["valid"] & s["last"] & (s["pass_"] == pass_index)

        def row_reduce(s, leaves: dict, combine: dict, pass_index: int, acc_shapes: dict):
            """Lane trees (one stage per level) then the row accumulators; returns the slot with
            the row-so-far values (final on the pass's last beat) as fields."""
            level = dict(leaves)
            while len(next(iter(level.values()))) > 1:
                nxt = {}
                for key, values in level.items():
                    pairs = [combine[key](values[n], values[n + 1]) for n in range(0, len(values) - 1, 2)]
                    if len(values) % 2:
                        pairs.append(values[-1])
                    nxt[key] = pairs
                s = pipe.stage({**s, **{f"tree_{k}": v for k, v in nxt.items()}})
                level = {k: s.pop(f"tree_{k}") for k in nxt}
            take = s["valid"] & (s["pass_"] == pass_index)
            out = {}
            for key, values in level.items():
                beat = values[0]
                acc = Signal(acc_shapes[key], name=f"row_{key}")
                so_far = Mux(s["first"], beat, combine[key](acc, beat))
                with m.If(advance & take):
                    m.d.sync += acc.eq(so_far)
                out[key] = so_far
            return pipe.stage({**s, **out})

        def sum_stages(s, key, levels_per_stage=1, width=None):
            """Add up the list ``s[key]`` a few adder levels per stage; the field becomes the sum."""
            while len(s[key]) > 1:
                s = pipe.stage({**s, key: add_levels(s.pop(key), levels_per_stage, width)})
            s[key] = s[key][0]
            return s

        def lane_sum_stages(s, key, levels_per_stage=1, width=None):
            """:func:`sum_stages` for a per-lane list of term lists."""
            while len(s[key][0]) > 1:
                s = pipe.stage({**s, key: [add_levels(terms, levels_per_stage, width) for terms in s.pop(key)]})
            s[key] = [terms[0] for terms in s[key]]
            return s

        # ---------------------------------------------------------------- R1: pass-0 reductions
        x, on = slot["x"], slot["on"]
        leaves = {"rmax": [Mux(on[j], x[j], INT32_MIN) for j in range(lanes)],
                  "rmin": [Mux(on[j], x[j], INT32_MAX) for j in range(lanes)],
                  "rsum": [Mux(on[j], x[j], 0) for j in range(lanes)]}
        # the lane values wait in a delay line while the row scalars of pass 0 are worked out
        parked = pipe.park({k: slot.pop(k) for k in LANE_FIELDS})
        slot = pipe.stage({**slot, **{f"leaf_{k}": v for k, v in leaves.items()}})
        slot = row_reduce(
            slot,
            leaves={k: slot.pop(f"leaf_{k}") for k in leaves},
            combine={"rmax": maximum, "rmin": minimum, "rsum": lambda a, b: a + b},
            pass_index=0,
            acc_shapes={"rmax": signed(32), "rmin": signed(32), "rsum": signed(ACC_BITS)})

        # ---------------------------------------------------------------- S1: row scalars of pass 0
        slot = pipe.stage({**slot, "neg_min": -slot["rmin"],
                           "mean_shift": clamp(-slot.pop("inv_len_e"), 0, 62).as_unsigned()[:6]})
        neg_min = slot.pop("neg_min")
        slot = pipe.stage({**slot, "amax": maximum(slot["rmax"], neg_min).as_unsigned()[:32]})
        amax = slot["amax"]
        value = Signal(signed(ROW_VALUE_BITS))
        with m.Switch(slot["op"]):
            for op, row_value in ((Op.MAX, slot["rmax"]), (Op.SUM, slot["rsum"]), (Op.MAX_ABS, amax)):
                if op in self.ops:
                    with m.Case(op):
                        m.d.comb += value.eq(row_value)
        # LayerNorm's mean: round_shift(sum * m, -e); the product from registered 18 x 18 pieces
        mean_shift = slot.pop("mean_shift")
        rsum = slot.pop("rsum")
        slot = pipe.stage({**slot, "value": value,
                           "mean_product": product_pieces(rsum, slot.pop("inv_len_m")),
                           "mean_round": mean_shift != 0,
                           "mean_shift": Mux(mean_shift == 0, 0, mean_shift - 1)[:6]})
        parked_value = pipe.park({"value": slot.pop("value")})
        slot = sum_stages(slot, "mean_product")
        # the shift by s - 1 in two stages (multiples of 8, then the rest), then ((.) + 1) >> 1
        mean_shift = slot.pop("mean_shift")
        slot = pipe.stage({**slot, "mean_shift": mean_shift[:3],
                           "mean_product": slot.pop("mean_product") >> Cat(Const(0, 3), mean_shift[3:6])})
        slot = pipe.stage({**slot, "mean_partial": slot.pop("mean_product") >> slot.pop("mean_shift")})
        partial = slot.pop("mean_partial")
        slot = pipe.stage({**slot, "mean_rounded": Mux(slot.pop("mean_round"), (partial + 1) >> 1, partial)})
        rounded = slot.pop("mean_rounded")
        # clamp to [-2**33, 2**33] by a sign check (2**33 itself does not fit in 34 bits but is its own clamp)
        mean = Mux(fits(rounded, 34), rounded, Mux(rounded[-1], -(1 << 33), 1 << 33))
        mean = Mux(is_op(slot, Op.LAYERNORM), mean, 0)
        slot = pipe.stage({**slot, "mean": mean.as_signed()[:35].as_signed()})
        # LayerNorm's max|x - mean| from the row's max and min: saturate(x - mean) is monotone
        slot = pipe.stage({**slot, "centred_max": slot["rmax"] - slot["mean"],
                           "centred_min": slot.pop("rmin") - slot["mean"]})
        # the row's max and mean wait in a delay line until the end of the segment
        row_parked = pipe.park({"rmax": slot.pop("rmax"), "mean": slot.pop("mean")})
        slot = pipe.stage({**slot, "centred_max": saturate_narrow(slot.pop("centred_max"), 32),
                           "centred_min_neg": -saturate_narrow(slot.pop("centred_min"), 32)})
        amax_ln = maximum(slot.pop("centred_max"), slot.pop("centred_min_neg")).as_unsigned()[:32]
        amax = slot.pop("amax")
        amax_norm = Mux(is_op(slot, Op.LAYERNORM), amax_ln, amax)
        quant_zero = amax == 0
        quant_amax = Mux(quant_zero, 1, amax)
        slot = pipe.stage({**slot, "amax_norm": amax_norm, "quant_zero": quant_zero, "quant_amax": quant_amax})
        # bit lengths: a leading-one tree per 16-bit chunk, then the chunks
        norm_chunks = leading_one_chunks(slot.pop("amax_norm"))
        quant_chunks = leading_one_chunks(slot["quant_amax"])
        slot = pipe.stage({**slot, "norm_any": [a for a, _ in norm_chunks], "norm_index": [i for _, i in norm_chunks],
                           "quant_any": [a for a, _ in quant_chunks], "quant_index": [i for _, i in quant_chunks]})
        norm_bits = bit_length_of_chunks(list(zip(slot.pop("norm_any"), slot.pop("norm_index"), strict=True)))
        quant_bits = bit_length_of_chunks(list(zip(slot.pop("quant_any"), slot.pop("quant_index"), strict=True)))
        slot = pipe.stage({**slot, "norm_bits": norm_bits, "quant_bits": quant_bits})
        norm_bits, quant_bits = slot.pop("norm_bits"), slot.pop("quant_bits")
        slot = pipe.stage({**slot, "norm_shift": Mux(norm_bits > nx.NORM_BITS, norm_bits - nx.NORM_BITS, 0)[:5],
                           "quant_shift": (quant_bits - nx.SCALE_BITS).as_signed()[:6].as_signed()})
        qsh = slot["quant_shift"]
        slot = pipe.stage({**slot, "quant_left": qsh < 0, "quant_right_by": qsh.as_unsigned(),
                           "quant_left_by": (-qsh).as_unsigned()[:4]})
        quant_amax = slot.pop("quant_amax")
        right_by, left_by = slot.pop("quant_right_by"), slot.pop("quant_left_by")
        slot = pipe.stage({**slot, "a15_right": (quant_amax >> Cat(Const(0, 3), right_by[3:6]))[:22],
                           "a15_left": (quant_amax << Cat(Const(0, 3), left_by[3]))[:15],
                           "quant_right_by": right_by[:3], "quant_left_by": left_by[:3]})
        a15 = Mux(slot.pop("quant_left"), slot.pop("a15_left") << slot.pop("quant_left_by"),
                  slot.pop("a15_right") >> slot.pop("quant_right_by"))[:15]
        slot = pipe.stage({**slot, "a15": a15})
        slot = self._divide(pipe, slot, "a15", "recip", QUANT_DIVIDEND, QUANT_QUOTIENT_BITS)

        # ---------------------------------------------------------------- T2: pass 1 (and later)
        # QUANT_SCALE's one pass ends here: its row's last beat carries its own quantize scalars
        # on (the beats of a second pass read them from the latch)
        quant_keys = ("quant_shift", "a15", "recip", "quant_zero")
        own = {f"own_{k}": slot[k] for k in quant_keys} if Op.QUANT_SCALE in self.ops else {}
        row1 = pipe.latch(token(slot, 0), {**pipe.unpark(row_parked),
                                           **{k: slot.pop(k) for k in ("norm_shift", *quant_keys)}}, "row1")
        slot = pipe.stage({**slot, **pipe.unpark(parked), **own,
                           "t2_softmax": is_op(slot, Op.SOFTMAX, Op.SOFTMAX_EXP)})
        x, on = slot["x"], slot["on"]
        softmax = slot.pop("t2_softmax")
        quant_scale = is_op(slot, Op.QUANT_SCALE)
        quantize = is_op(slot, Op.QUANTIZE) | quant_scale
        own = {k: slot.pop(f"own_{k}") for k in quant_keys} if own else row1
        quant = {k: Mux(quant_scale, own[k], row1[k]) for k in quant_keys}
        # exp's -d (d = x - max, or x) and x - mean; clamps and products in the stages after
        minus_d = [Mux(on[j], Mux(softmax, row1["rmax"], 0) - x[j], 0) for j in range(lanes)]
        slot = pipe.stage({
            **slot, "minus_d": minus_d, "centred": [x[j] - row1["mean"] for j in range(lanes)],
            "norm_shift": row1["norm_shift"], "quant_shift": quant["quant_shift"], "recip": quant["recip"],
            "om": Mux(quantize & ~quant["quant_zero"], quant["a15"], Const(0, signed(16))),
            "oe": Mux(quantize, Mux(quant["quant_zero"], nx.ZERO_ROW_EXP, quant["quant_shift"]),
                      Const(0, signed(8))),
        })
        # x, x - mean and its square are needed again only at the end of the segment: delay lines
        lanes_parked = [pipe.park({"x": slot.pop("x")})]
        t_exp = []
        for nd in slot.pop("minus_d"):
            # from -d = 2**15 on, z = t >> 24 > EXP_MAX_SHIFT and exp is 0: clamp before the multiply
            nd = nd.as_unsigned()[:33]
            nd = Mux(nd[15:].any(), 1 << 15, nd[:15])
            t_exp.append(add_levels([nd << i for i in range(nx.LOG2E_Q.bit_length()) if (nx.LOG2E_Q >> i) & 1], 1))
        slot = pipe.stage({**slot, "t_exp": t_exp,
                           "centred": [saturate_narrow(c, 32) for c in slot.pop("centred")]})
        slot = lane_sum_stages(slot, "t_exp", levels_per_stage=2)
        slot = pipe.stage({**slot, "scaled": [(c >> slot["norm_shift"])[:17].as_signed() for c in slot["centred"]]})
        lanes_parked.append(pipe.park({"centred": slot.pop("centred")}))
        exp2 = nx.exp2_table()
        z, k0, slope, frac_low, square = [], [], [], [], []
        for j in range(lanes):
            t = slot["t_exp"][j]
            frac = t[nx.FRAC:nx.FRAC + nx.LOG2E_FRAC]
            knot, slope_j = pwl_lookup(exp2, frac[exp2.frac_bits:])
            z.append(t[nx.FRAC + nx.LOG2E_FRAC:])
            k0.append(knot)
            slope.append(slope_j)
            frac_low.append(frac[:exp2.frac_bits])
            scaled = slot["scaled"][j]
            square.append((scaled * scaled).as_unsigned()[:34])
        slot.pop("t_exp")
        slot.pop("scaled")
        slot = pipe.stage({**slot, "z": z, "k0": k0, "slope": slope, "frac_low": frac_low, "square": square})
        lanes_parked.append(pipe.park({"square": slot.pop("square")}))
        slope_frac = [add_levels(shift_add_terms(s, f), 1)
                      for s, f in zip(slot.pop("slope"), slot.pop("frac_low"), strict=True)]
        slot = pipe.stage({**slot, "slope_frac": slope_frac})
        slot = lane_sum_stages(slot, "slope_frac", levels_per_stage=2)
        v_exp = [slot["k0"][j] + (slot["slope_frac"][j] >> exp2.frac_bits) for j in range(lanes)]
        slot.pop("k0")
        slot.pop("slope_frac")
        z = slot.pop("z")
        slot = pipe.stage({**slot, "v_exp": v_exp, "exp_whole": [zj[:5] == 0 for zj in z],
                           "z_shift": [(zj[:5] - 1).as_unsigned()[:5] for zj in z],
                           "exp_zero": [(zj > nx.EXP_MAX_SHIFT) | ~slot["on"][j] for j, zj in enumerate(z)]})
        # round_shift(v, s): v >> (s - 1) here, ((.) + 1) >> 1 next
        v_exp, z_shift = slot.pop("v_exp"), slot.pop("z_shift")
        slot = pipe.stage({**slot, "v_exp": v_exp,
                           "v_half": [v >> s for v, s in zip(v_exp, z_shift, strict=True)]})
        exp_value = [Mux(zero, 0, Mux(whole, v, (h + 1) >> 1)) for zero, whole, v, h in zip(
            slot.pop("exp_zero"), slot.pop("exp_whole"), slot.pop("v_exp"), slot.pop("v_half"), strict=True)]
        slot = pipe.stage({**slot, "exp_value": exp_value, **{k: v for parked_lanes in lanes_parked
                                                              for k, v in pipe.unpark(parked_lanes).items()}})
        lane_value, leaves = [], []
        norm_like = is_op(slot, Op.RMSNORM, Op.LAYERNORM, Op.SUM_SQUARES)
        for j in range(lanes):
            e = slot["exp_value"][j]
            # e <= 2**15 and the others are int32: the lane value fits in 32 bits
            lane_value.append(Mux(is_op(slot, Op.SOFTMAX, Op.SOFTMAX_EXP, Op.EXP), e,
                                  Mux(norm_like, slot["centred"][j], slot["x"][j]))[:32].as_signed())
            leaves.append(Mux(slot["on"][j], Mux(is_op(slot, Op.SOFTMAX, Op.SOFTMAX_EXP), e, slot["square"][j]), 0))
        for key in ("exp_value", "centred", "square"):
            slot.pop(key)
        slot = pipe.stage({**slot, "x": lane_value, "leaf": leaves})
        leaves = slot.pop("leaf")
        # and again across the pass-1 reduction and the row scalars of pass 1
        parked = pipe.park({k: slot.pop(k) for k in LANE_FIELDS + ("om", "oe", "quant_shift", "recip")})
        slot = row_reduce(slot, leaves={"sum2": leaves}, combine={"sum2": lambda a, b: a + b},
                          pass_index=1, acc_shapes={"sum2": unsigned(ACC_BITS)})

        # ---------------------------------------------------------------- S2: row scalars of pass 1
        sum_chunks = leading_one_chunks(slot["sum2"][:34])
        eps_shift = (slot["norm_shift"] << 1)
        slot = pipe.stage({**slot, "sum_any": [a for a, _ in sum_chunks], "sum_index": [i for _, i in sum_chunks],
                           **pipe.unpark(job_eps), "eps_whole": eps_shift == 0,
                           "eps_shift": (eps_shift - 1).as_unsigned()[:6]})
        # round_shift(eps, 2 * norm_shift): the shift in two stages, then the rounding
        eps_shift = slot.pop("eps_shift")
        sum_bits = bit_length_of_chunks(list(zip(slot.pop("sum_any"), slot.pop("sum_index"), strict=True)))
        slot = pipe.stage({**slot, "sum_bits": sum_bits, "eps_shift": eps_shift[:3],
                           "eps_half": slot["eps"] >> Cat(Const(0, 3), eps_shift[3:6])})
        sum_bits = slot.pop("sum_bits")
        slot = pipe.stage({**slot, "recip_shift": Mux(sum_bits > nx.SCALE_BITS, sum_bits - nx.SCALE_BITS, 0)[:5],
                           "eps_half": slot.pop("eps_half") >> slot.pop("eps_shift")})
        eps_half = slot.pop("eps_half")
        eps_rounded = Mux(slot.pop("eps_whole"), slot.pop("eps"), (eps_half + 1) >> 1)
        slot = pipe.stage({**slot, "n15": (slot["sum2"] >> slot["recip_shift"])[:15], "eps_rounded": eps_rounded})
        slot = pipe.stage({**slot, "v": slot["sum2"] + slot.pop("eps_rounded")})
        sum_parked = pipe.park({"sum2": slot.pop("sum2")})
        v_chunks = leading_one_chunks(slot["v"])
        slot = pipe.stage({**slot, "v_any": [a for a, _ in v_chunks], "v_index": [i for _, i in v_chunks]})
        v_any = slot.pop("v_any")
        v_bits = bit_length_of_chunks(list(zip(v_any, slot.pop("v_index"), strict=True)))
        slot = pipe.stage({**slot, "v_bits": v_bits, "v_zero": ~Cat(*v_any).any()})
        k = ((slot.pop("v_bits") - 29).as_signed() >> 1)
        slot = pipe.stage({**slot, "rsqrt_k": k.as_signed()[:6].as_signed(), "v_right": k >= 0,
                           "v_right_by": (k << 1).as_unsigned()[:6], "v_left_by": (-(k << 1)).as_unsigned()[:6]})
        # u = v >> 2k or v << -2k, 30 bits: multiples of 8 first, then the rest
        v, right_by, left_by = slot.pop("v"), slot.pop("v_right_by"), slot.pop("v_left_by")
        slot = pipe.stage({**slot, "v_shifted_right": (v >> Cat(Const(0, 3), right_by[3:6]))[:37],
                           "v_shifted_left": (v << Cat(Const(0, 3), left_by[3:6]))[:30],
                           "v_right_by": right_by[:3], "v_left_by": left_by[:3]})
        u = Mux(slot["v_zero"], 1 << 28,
                Mux(slot.pop("v_right"), slot.pop("v_shifted_right") >> slot.pop("v_right_by"),
                    slot.pop("v_shifted_left") << slot.pop("v_left_by")))
        slot = pipe.stage({**slot, "u": u[:30]})
        seed = Array(Const(s, unsigned(16)) for s in _rsqrt_seed())
        slot = pipe.stage({**slot, "y": Cat(seed[slot["u"][26:30]], Const(0, 2)).as_signed()})
        # the softmax reciprocal's divider runs alongside the Newton steps; each step is
        # t = u*(y*y) >> 29, y = y*(3*2**29 - t) >> 30, every product from registered 18 x 18
        # pieces added up one adder level per stage
        rsqrt_stages = []
        yy_width = 2 * len(slot["y"])
        uyy_pieces = len(product_pieces(Signal(len(slot["u"])), Signal(signed(yy_width))))
        for _ in range(3):  # golden.ops.RSQRT_ITERATIONS
            rsqrt_stages.append(lambda s: {"yy": s["y"] * s["y"]})
            rsqrt_stages.append(lambda s: {"uyy": product_pieces(s["u"], s.pop("yy"))})
            for _level in range((uyy_pieces - 1).bit_length()):
                rsqrt_stages.append(lambda s: {"uyy": add_levels(s.pop("uyy"), 1)})
            rsqrt_stages.append(lambda s: {"newton": (3 << 29) - (_only(s.pop("uyy")) >> 29)})
            rsqrt_stages.append(lambda s: {"y_newton": product_pieces(s["y"], s.pop("newton"))})
            rsqrt_stages.append(lambda s: {"y_newton": add_levels(s.pop("y_newton"), 1)})
            rsqrt_stages.append(lambda s: {"y_newton": add_levels(s.pop("y_newton"), 1)})
            rsqrt_stages.append(lambda s: {"y_newton": add_levels(s.pop("y_newton"), 2)})
            rsqrt_stages.append(lambda s: {"y": ((_only(s.pop("y_newton"))) >> 30)[:18].as_signed()})
        divide_stages = self._divide_stages("n15", "recip_m", RECIP_DIVIDEND, RECIP_QUOTIENT_BITS)
        for n in range(max(len(rsqrt_stages), len(divide_stages))):
            update = {}
            if n < len(rsqrt_stages):
                update.update(rsqrt_stages[n](slot))
            if n < len(divide_stages):
                update.update(divide_stages[n](slot))
            slot = pipe.stage({**slot, **update})
        y = Mux(slot["y"] > (1 << 15) - 1, (1 << 15) - 1, slot["y"])
        rm = Mux(is_op(slot, Op.SOFTMAX), slot["recip_m"],
                 Mux(slot["v_zero"], (1 << 15) - 1, y))
        re = Mux(is_op(slot, Op.SOFTMAX), -29 - slot["recip_shift"],
                 Mux(slot["v_zero"], 0, -29 - slot["rsqrt_k"]))
        for key in ("y", "u", "recip_m", "recip_shift", "rsqrt_k", "v_zero", "n15", "sum2", "recip_m_r"):
            slot.pop(key, None)
        slot = pipe.stage({**slot, **pipe.unpark(parked), **pipe.unpark(parked_value), **pipe.unpark(sum_parked),
                           "rm": rm[:16], "re": re.as_signed()[:8].as_signed()})
        sum_squares = is_op(slot, Op.SUM_SQUARES)
        row_sum = is_op(slot, Op.SOFTMAX_EXP) & slot["last"]
        # SUM_SQUARES's row scale, golden.ops.rms_scale: the rsqrt with the norm's exponent
        rms_e = (slot["re"] + nx.FRAC - slot["norm_shift"]).as_signed()[:8].as_signed()
        # QUANT_SCALE's requantization scale, packed: (recip, -(RECIP_FRAC + sh))
        recip = Value.cast(slot["recip"]).as_unsigned()
        assert len(recip) < 16, "the requantization multiplier is a signed 16-bit mantissa"
        quant_word = Cat(recip, Const(0, 16 - len(recip)), (-nx.RECIP_FRAC - slot["quant_shift"]).as_signed()[:16])
        value = Mux(is_op(slot, Op.QUANT_SCALE), quant_word.as_signed(), slot["value"])
        slot = pipe.stage({**slot, "value": Mux(sum_squares | row_sum, slot.pop("sum2"), value),
                           "om": Mux(sum_squares, slot["rm"], slot["om"]),
                           "oe": Mux(sum_squares, rms_e, slot["oe"])})

        # ---------------------------------------------------------------- the short path rejoins
        # Beats of the long path that have not reached this point yet: a short-path beat waits
        # at admission until there are none. The count and its zero test are registered.
        long_pending = Signal(range(pipe.depth + 2))
        pending_next = long_pending + (accept & ~cur.short) - slot["valid"]
        m.d.sync += [long_pending.eq(pending_next), long_empty.eq(pending_next == 0)]
        slot.update(pipe.unpark(job_position))
        slot.update(pipe.unpark(job_out_width))
        # each field from the short path when it holds a beat; the row results it does not have
        # are those of an operation without any (0), as the long path leaves them
        take_short = short_slot["valid"]

        def join(long, short, name):
            if isinstance(long, list):
                short = short if isinstance(short, list) else [short] * len(long)
                return [join(a, b, f"{name}{n}") for n, (a, b) in enumerate(zip(long, short, strict=True))]
            joined = Signal(Value.cast(long).shape(), name=f"join_{name}")
            m.d.comb += joined.eq(Mux(take_short, short, long))
            return joined

        slot = {key: join(value, short_slot.get(key, 0), key) for key, value in slot.items()}
        skipped = pipe.depth - short_depth   # the stages a short-path beat does not go through
        job_out_width = pipe.park({"out_width": slot.pop("out_width")})

        # ---------------------------------------------------------------- F: per-lane outputs
        x = slot["x"]
        # the lane value waits for the output multiply, the beat's row results for the output
        to_multiply = pipe.park({"x": slot.pop("x")})
        to_select = pipe.park({k: slot.pop(k) for k in ("quant_shift", "recip")})
        to_output = pipe.park({k: slot.pop(k) for k in ("value", "om", "oe", "on", "emit", "ilast")})
        half = self.head_dim // 2
        pair_bits = max((half - 1).bit_length(), 1)
        freqs = Array(Const(int(f), unsigned(32)) for f in nx.rope_frequencies(self.head_dim, self.rope_theta))
        gelu_t, silu_t = nx.gelu_table(), nx.silu_table()
        assert gelu_t.frac_bits == silu_t.frac_bits
        # base is a multiple of the lanes: with its low bits known to be 0, each lane's frequency
        # table keeps only the entries that lane can see
        base = slot.pop("base")
        known_zero = (lanes & -lanes).bit_length() - 1
        beat_base = Cat(Const(0, known_zero), base[known_zero:])
        # GELU/SiLU: |x|, then the range check, then the tables; RoPE: the element, its pair, its frequency
        gelu = is_op(slot, Op.GELU)
        slot = pipe.stage({**slot, "act_abs": [abs(xj) for xj in x], "act_neg": [xj < 0 for xj in x],
                           "element": [beat_base + j for j in range(lanes)], "position": slot.pop("position"),
                           "act_gelu": gelu,
                           "act_limit": Mux(gelu, int(nx.GELU_RANGE) << nx.FRAC, int(nx.SILU_RANGE) << nx.FRAC)})
        limit = slot.pop("act_limit")
        act_big = [a >= limit for a in slot["act_abs"]]
        act_u = [Mux(big, limit - 1, a)[:13] for big, a in zip(act_big, slot.pop("act_abs"), strict=True)]
        element = slot.pop("element")
        slot = pipe.stage({**slot, "act_big": act_big, "act_u": act_u,
                           # freqs has `half` entries: an element past the head reads 0, as before
                           "pair": [Mux(e >= half, e - half, e)[:pair_bits] for e in element],
                           "pair_ok": [e < 2 * half for e in element],
                           "rotate_sub": [e < half for e in element]})
        act_k0, act_slope, act_frac = [], [], []
        gelu = slot.pop("act_gelu")
        for u in slot.pop("act_u"):
            gk, gs = pwl_lookup(gelu_t, u[gelu_t.frac_bits:gelu_t.frac_bits + gelu_t.index_bits])
            sk, ss = pwl_lookup(silu_t, u[silu_t.frac_bits:silu_t.frac_bits + silu_t.index_bits])
            act_k0.append(Mux(gelu, gk, sk))
            act_slope.append(Mux(gelu, gs, ss)[:12].as_signed())
            act_frac.append(u[:gelu_t.frac_bits])
        slot = pipe.stage({**slot, "act_k0": act_k0, "act_slope": act_slope, "act_frac": act_frac,
                           "freq": [Mux(ok, freqs[p], 0) for p, ok in zip(slot.pop("pair"), slot.pop("pair_ok"),
                                                                           strict=True)]})
        # slope x frac on adders; (position * freq) mod 2**32: one 16 x 17 DSP product, the top
        # 15 bits of freq on adders
        act_prod = [add_levels(shift_add_terms(s, f), 2)
                    for s, f in zip(slot.pop("act_slope"), slot.pop("act_frac"), strict=True)]
        position = slot.pop("position")
        freq = slot.pop("freq")
        slot = pipe.stage({**slot, "act_prod": act_prod,
                           "phase_low": [position * f[:17] for f in freq],
                           "phase_high": [add_levels(shift_add_terms(position, f[17:], width=15), 2, width=15)
                                          for f in freq]})
        slot = pipe.stage({**slot, "act_prod": [add_levels(p, 2)[0] for p in slot.pop("act_prod")],
                           "phase_high": [add_levels(p, 2, width=15)[0][:15] for p in slot.pop("phase_high")]})
        one = 1 << nx.PROB_FRAC
        g = [Mux(big, one, k + (p >> gelu_t.frac_bits)) for big, k, p in zip(
            slot.pop("act_big"), slot.pop("act_k0"), slot.pop("act_prod"), strict=True)]
        phase = [(low + (high << 17))[:32] for low, high in zip(slot.pop("phase_low"), slot.pop("phase_high"),
                                                                 strict=True)]
        slot = pipe.stage({**slot, "act_g": g, "phase": phase})

        # sine table: one ROM (block RAM) per lane, read twice (sin, and cos = a quarter turn on)
        sine = nx.sine_table()
        phi, sin_rom, cos_rom, sin_frac, cos_frac = [], [], [], [], []
        rom_init = [(k & 0xFFFF) | (((sine.knots[i + 1] - k) & 0x3FF) << 16)
                    for i, k in enumerate(sine.knots[:-1])]
        for j in range(lanes):
            g = slot["act_g"][j]
            phi.append(Mux(slot["act_neg"][j], one - g, g))
            if Op.ROPE in self.ops:
                rom = Memory(shape=unsigned(26), depth=sine.segments, init=rom_init)
                m.submodules[f"sine_rom{j}"] = rom
            for phase, data, frac in ((slot["phase"][j], sin_rom, sin_frac),
                                      ((slot["phase"][j] + (1 << 30))[:32], cos_rom, cos_frac)):
                if Op.ROPE in self.ops:
                    port = rom.read_port(domain="sync")
                    m.d.comb += [port.addr.eq(phase[sine.frac_bits:]), port.en.eq(advance)]
                    data.append(port.data)
                else:   # nothing reads sin or cos (see the multiplier's arms and partner)
                    data.append(Const(0, 26))
                frac.append(phase[:sine.frac_bits])
        for key in ("act_g", "act_neg", "phase"):
            slot.pop(key)
        # the ROM's read data comes a register later than its address: this stage stays one
        slot = pipe.stage({**slot, "phi": phi, "sin_frac": sin_frac, "cos_frac": cos_frac}, keep=True)
        # the ROM words are registered before the interpolation multiplies them
        slot = pipe.stage({**slot, "sin_rom": sin_rom, "cos_rom": cos_rom})

        def interpolation_terms(rom_data, frac):
            # slope (10 bits) x frac (24 bits): one DSP for the top 17 bits of frac, adders for the rest
            slope = rom_data[16:26].as_signed()
            return [(slope * frac[7:]) << 7, *add_levels(shift_add_terms(slope, frac[:7]), 2)]

        sin_sf = [interpolation_terms(d, f) for d, f in zip(slot["sin_rom"], slot.pop("sin_frac"), strict=True)]
        cos_sf = [interpolation_terms(d, f) for d, f in zip(slot["cos_rom"], slot.pop("cos_frac"), strict=True)]
        slot = pipe.stage({**slot, "sin_k0": [d[:16].as_signed() for d in slot.pop("sin_rom")],
                           "cos_k0": [d[:16].as_signed() for d in slot.pop("cos_rom")],
                           "sin_sf": sin_sf, "cos_sf": cos_sf})
        slot = pipe.stage({**slot, "sin_sf": [add_levels(t, 2)[0] for t in slot.pop("sin_sf")],
                           "cos_sf": [add_levels(t, 2)[0] for t in slot.pop("cos_sf")]})
        # |sin|, |cos| <= 2**14: a linear interpolation stays between its two knots
        sin = [(slot["sin_k0"][j] + (slot["sin_sf"][j] >> sine.frac_bits))[:16].as_signed() for j in range(lanes)]
        cos = [(slot["cos_k0"][j] + (slot["cos_sf"][j] >> sine.frac_bits))[:16].as_signed() for j in range(lanes)]
        for key in ("sin_k0", "sin_sf", "cos_k0", "cos_sf"):
            slot.pop(key)
        slot = pipe.stage({**slot, "sin": sin, "cos": cos})

        # the side beat taken with this beat at admission leaves the side FIFO here, and is
        # registered with the row results of pass 1 before anything is computed from it
        side_needed = Signal()
        m.d.comb += side_needed.eq(slot["valid"] & slot["final"]
                                   & (is_op(slot, *NEEDS_SIDE) | (slot["fold"] & is_op(slot, Op.SOFTMAX_EXP))))
        side_depth = 1 << (pipe.depth + 2).bit_length()
        # a side beat is written into the FIFO at admission and readable two cycles later; a
        # short-path beat, the quickest, must not reach this stage sooner (merged stages bring it
        # closer)
        if pipe.depth - skipped < 3:
            raise ValueError(f"stage_merge {self.stage_merge}: a short-path beat reaches the side FIFO "
                             f"{pipe.depth - skipped} cycles after admission, before its side beat can")
        m.submodules.side_fifo = side_fifo = SyncFIFOBuffered(width=side_layout(lanes).size, depth=side_depth)
        m.d.comb += [
            side_fifo.w_data.eq(self.s.payload.as_value()),
            side_fifo.w_en.eq(self.s.valid & self.s.ready),
            side_fifo.r_en.eq(side_needed),
        ]
        # registered like the output credit: a cycle late, so with a margin of one entry
        m.d.sync += side_room.eq(side_fifo.w_level < side_depth - 1)
        side_beat = data_lib.View(side_layout(lanes), side_fifo.r_data)
        row2 = pipe.latch(token(slot, 1), {k: slot.pop(k) for k in ("rm", "re", "norm_shift")}, "row2")
        slot = pipe.stage({**slot, **pipe.unpark(to_select),
                           "side_b": [side_beat[j].b for j in range(lanes)],
                           "side_m": [side_beat[j].m for j in range(lanes)],
                           "side_e": [side_beat[j].e for j in range(lanes)],
                           "rm": row2["rm"], "re": row2["re"], "norm_shift": row2["norm_shift"]})
        # the norms' M = rsqrt x gamma's scale: its operands get registers of their own first,
        # which read nothing else, so the placer can put them next to their DSP block (the side
        # beat's registers sit by the side FIFO's block RAMs; routed at 88.78 MHz, this DSP
        # round trip was the critical path with 7.8 ns of routing)
        slot = pipe.stage({**slot, "norm_a": [slot["rm"] for _ in range(lanes)],
                           "norm_b": [mj for mj in slot["side_m"]]})
        # ... then M and the exponent; RoPE's partner x sin operands
        rm, re = slot["rm"], slot["re"]
        norm_shift = slot.pop("norm_shift")
        rotate_sub = slot.pop("rotate_sub")
        sin = slot.pop("sin")
        rope = is_op(slot, Op.ROPE)
        slot = pipe.stage({
            **slot,
            "norm_m": [(a * b) >> nx.SCALE_BITS for a, b in zip(slot.pop("norm_a"), slot.pop("norm_b"), strict=True)],
            "norm_e": [re + ej + nx.SCALE_BITS + nx.FRAC - norm_shift for ej in slot["side_e"]],
            "partner": [Mux(rope, bj, 0) for bj in slot["side_b"]],
            "partner_sin": [Mux(rotate_sub[j], -sin[j], sin[j])[:16].as_signed() for j in range(lanes)],
        })
        job = pipe.unpark(job_out_width)
        mult, expo, bias = [], [], []
        for j in range(lanes):
            bj_side, mj_side, ej_side = slot["side_b"][j], slot["side_m"][j], slot["side_e"][j]
            mj = Signal(signed(33), name=f"mult{j}")
            ej = Signal(signed(10), name=f"expo{j}")
            bj = Signal(signed(32), name=f"bias{j}")
            m.d.comb += [mj.eq(1), ej.eq(0), bj.eq(0)]
            arms = (
                ((Op.ADD,), [bj.eq(bj_side)]),
                ((Op.MUL,), [mj.eq(bj_side), ej.eq(-nx.FRAC)]),
                ((Op.REQUANT,), [mj.eq(mj_side), ej.eq(ej_side), bj.eq(bj_side)]),
                ((Op.GELU, Op.SILU), [mj.eq(slot["phi"][j]), ej.eq(-nx.PROB_FRAC)]),
                ((Op.ROPE,), [mj.eq(slot["cos"][j]), ej.eq(-nx.TRIG_FRAC)]),
                ((Op.QUANTIZE,), [mj.eq(slot["recip"]), ej.eq(-nx.RECIP_FRAC - slot["quant_shift"])]),
                ((Op.SOFTMAX,), [mj.eq(slot["rm"]), ej.eq(slot["re"] + nx.PROB_FRAC)]),
                # e x the value scale, rounded (golden's V fold); without `fold`, e itself
                ((Op.SOFTMAX_EXP,), [mj.eq(Mux(slot["fold"], mj_side, 1)), ej.eq(Mux(slot["fold"], ej_side, 0))]),
                ((Op.RMSNORM, Op.LAYERNORM), [mj.eq(slot["norm_m"][j]), ej.eq(slot["norm_e"][j]), bj.eq(bj_side)]),
            )
            with m.Switch(slot["op"]):
                for ops, assignments in arms:
                    if built(*ops):
                        with m.Case(*built(*ops)):
                            m.d.comb += assignments
            mult.append(mj)
            expo.append(ej)
            bias.append(bj)
        # saturation: int8/16/32, or quantize_rows' symmetric [-127, 127]
        out_width = Mux(is_op(slot, Op.REQUANT), job["out_width"],
                        Mux(is_op(slot, Op.QUANTIZE), 3, OutWidth.INT32.value))
        for key in ("phi", "cos", "recip", "quant_shift", "final", "side_b", "side_m", "side_e", "rm", "re",
                    "norm_m", "norm_e", "fold"):
            slot.pop(key)
        slot = pipe.stage({**slot, "mult": mult, "expo": expo, "bias": bias, "out_width": out_width})
        # the bias waits in a delay line until the sum
        to_sum = pipe.park({"bias": slot.pop("bias"), "out_width": slot.pop("out_width")})
        # A positive exponent (REQUANT, the norms; at most 15, low 4 bits as before) shifts M
        # instead of the product: M * 2**e still fits in 33 bits (|M| < 2**17 for those operations),
        # and the output shifter only ever shifts right.
        expo = slot.pop("expo")
        slot = pipe.stage({**slot, "left": [e > 0 for e in expo], "left_by": [e.as_unsigned()[:4] for e in expo],
                           "right": [Mux(e > 0, 0, clamp(-e, 0, 62)).as_unsigned()[:6] for e in expo]})
        mult = [Mux(up, mj << by, mj)[:33].as_signed()
                for up, mj, by in zip(slot.pop("left"), slot.pop("mult"), slot.pop("left_by"), strict=True)]
        right = slot.pop("right")
        slot = pipe.stage({**slot, **pipe.unpark(to_multiply), "mult": mult,
                           "shift": [Mux(r == 0, 0, r - 1)[:6] for r in right], "round": [r != 0 for r in right]})

        # x * M + partner * sin, from 18 x 18 pieces: one DSP each, the products registered
        # before the adders (x = xh * 2**16 + xl, M = mh * 2**17 + ml, partner = ph * 2**16 + pl)
        pieces = {"xl_ml": [], "xh_ml": [], "xl_mh": [], "xh_mh": [], "pl_s": [], "ph_s": []}
        for xj, mj, pj, sj in zip(slot.pop("x"), slot.pop("mult"), slot.pop("partner"), slot.pop("partner_sin"),
                                  strict=True):
            xl, xh = xj[:16], xj[16:32].as_signed()
            ml, mh = mj[:17], mj[17:33].as_signed()
            pl, ph = pj[:16], pj[16:32].as_signed()
            # without ROPE, partner is 0: its products are left out rather than folded by Yosys
            rope_products = (pl * sj, ph * sj) if Op.ROPE in self.ops else (Const(0, 1), Const(0, 1))
            for key, product in (("xl_ml", xl * ml), ("xh_ml", xh * ml), ("xl_mh", xl * mh), ("xh_mh", xh * mh),
                                 ("pl_s", rope_products[0]), ("ph_s", rope_products[1])):
                pieces[key].append(product)
        # round_shift(product, right) shifts by right - 1, then rounds if right != 0; `beyond`
        # marks the product bits at and above shift + 34 (they must all equal its sign)
        shift = slot.pop("shift")
        slot = pipe.stage({**slot, **pieces, "shift": shift,
                           "beyond": [Cat(*[sh <= i - (WINDOW_BITS - 1) for i in range(WINDOW_BITS - 1, 64)])
                                      for sh in shift]})
        to_shift = pipe.park({"shift": slot.pop("shift"), "round": slot.pop("round"), "beyond": slot.pop("beyond")})
        # x * ml, x * mh and partner * sin: one add each
        x_ml = [a + b.shift_left(16) for a, b in zip(slot.pop("xl_ml"), slot.pop("xh_ml"), strict=True)]
        x_mh = [a + b.shift_left(16) for a, b in zip(slot.pop("xl_mh"), slot.pop("xh_mh"), strict=True)]
        p_s = [a + b.shift_left(16) for a, b in zip(slot.pop("pl_s"), slot.pop("ph_s"), strict=True)]
        slot = pipe.stage({**slot, "x_ml": x_ml, "x_mh": x_mh, "p_s": p_s})
        low = [a + b for a, b in zip(slot.pop("x_ml"), slot.pop("p_s"), strict=True)]
        slot = pipe.stage({**slot, "low": low, "x_mh": slot.pop("x_mh")})
        # |x * M| <= 2**63 and |partner * sin| <= 2**45: 65 bits hold the sum
        product = [(a + b.shift_left(17))[:65].as_signed()
                   for a, b in zip(slot.pop("low"), slot.pop("x_mh"), strict=True)]
        slot = pipe.stage({**slot, **pipe.unpark(to_shift), "product": product})
        # p >> (right - 1) is clamped to 35 bits: every output saturates to 32 bits at most after
        # adding a 32-bit bias, so a value beyond still saturates the same way, and the shifter,
        # the rounding, the bias adder and the saturation all stay 35-36 bits wide. The shift in
        # two stages: multiples of 8 (keeping the 42 bits the rest can still use), then the rest.
        coarse, beyond, sign = [], [], []
        for product, shift, above in zip(slot.pop("product"), slot["shift"], slot.pop("beyond"), strict=True):
            s = product[-1]
            bits = [(product[i] ^ s) & above[i - (WINDOW_BITS - 1)] for i in range(WINDOW_BITS - 1, len(product) - 1)]
            beyond.append(Cat(*[Cat(*bits[n:n + 4]).any() for n in range(0, len(bits), 4)]))
            coarse.append(shift_right_low(product, Cat(Const(0, 3), shift[3:6]), WINDOW_BITS + 7))
            sign.append(s)
        slot = pipe.stage({**slot, "coarse": coarse, "beyond": beyond, "sign": sign})
        partial = []
        for value, shift, out_of_range, s in zip(slot.pop("coarse"), slot.pop("shift"), slot.pop("beyond"),
                                                 slot.pop("sign"), strict=True):
            window = shift_right_low(value, shift[:3], WINDOW_BITS)
            limit = Mux(s, -(1 << (WINDOW_BITS - 1)), (1 << (WINDOW_BITS - 1)) - 1)
            partial.append(Mux(out_of_range.any(), limit, window)[:WINDOW_BITS].as_signed())
        slot = pipe.stage({**slot, "partial": partial})
        shifted = [Mux(r, (p + 1).shift_right(1), p)
                   for p, r in zip(slot.pop("partial"), slot.pop("round"), strict=True)]
        slot = pipe.stage({**slot, **pipe.unpark(to_sum), "shifted": shifted})
        total = [a + b for a, b in zip(slot.pop("shifted"), slot.pop("bias"), strict=True)]
        slot = pipe.stage({**slot, **pipe.unpark(to_output), "total": total})
        # every saturation at once, then the one the beat wants
        slot = pipe.stage({**slot, "int8": [saturate_narrow(t, 8) for t in slot["total"]],
                           "int16": [saturate_narrow(t, 16) for t in slot["total"]],
                           "int32": [saturate_narrow(t, 32) for t in slot.pop("total")]})
        data = []
        out_width = slot["out_width"]
        for j in range(lanes):
            int8 = slot["int8"][j]
            # quantize_rows: symmetric [-127, 127]
            symmetric = Mux(int8 == -128, -127, int8)
            sat = Mux(out_width == OutWidth.INT8.value, int8,
                      Mux(out_width == OutWidth.INT16.value, slot["int16"][j],
                          Mux(out_width == 3, symmetric, slot["int32"][j])))
            data.append(Mux(slot["on"][j] & is_op(slot, *ELEMENTWISE), sat, 0)[:32].as_signed())
        out = pipe.stage({"valid": slot["valid"], "emit": slot["emit"], "ilast": slot["ilast"], "data": data,
                          "value": slot["value"], "om": slot["om"], "oe": slot["oe"]}, keep=True)

        # ---------------------------------------------------------------- output FIFO and credits
        # room for every beat in flight plus a margin: the credit below is a cycle late
        out_depth = 1 << (pipe.depth + 4).bit_length()
        beat = Signal(output_layout(lanes))
        m.d.comb += [beat.value.eq(out["value"]), beat.m.eq(out["om"]), beat.e.eq(out["oe"])]
        for j in range(lanes):
            m.d.comb += beat.data[j].eq(out["data"][j])
        m.submodules.out_fifo = out_fifo = SyncFIFOBuffered(width=output_layout(lanes).size, depth=out_depth)
        m.d.comb += [
            out_fifo.w_data.eq(beat.as_value()),
            out_fifo.w_en.eq(out["valid"] & out["emit"]),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
            advance.eq(1),
            freeing.eq(out["valid"] & out["ilast"]),
        ]
        # Beats admitted that will be output, and not yet taken from the FIFO, never exceed what
        # the FIFO holds, so it cannot overflow however long `o` stalls. Two counters (admitted,
        # taken) instead of one up/down count keep admission off the adders; the credit is
        # registered from their difference, so it lags a cycle: it allows a beat only while at
        # most out_depth - 2 were pending a cycle ago (at most one has been admitted since).
        count_bits = out_depth.bit_length() + 1
        admitted, taken = Signal(count_bits), Signal(count_bits)
        emitting = Signal()
        m.d.comb += emitting.eq(accept & last_pass & (cur.elementwise | last_beat))
        with m.If(emitting):
            m.d.sync += admitted.eq(admitted + 1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += taken.eq(taken + 1)
        m.d.sync += credit.eq((admitted - taken)[:count_bits] < out_depth - 1)
        self.latency = pipe.depth
        self.short_latency = pipe.depth - skipped
        return m

    # ------------------------------------------------------------------------------------------

    def _divide_stages(self, divisor: str, quotient: str, dividend: int, quotient_bits: int):
        """Restoring division of a constant by a slot field in [2**14, 2**15), a few quotient bits
        per stage. Returns one slot-update function per stage."""
        per_stage = self.divide_bits_per_stage
        remainder = f"{quotient}_r"
        stages = []
        done = 0
        while done < quotient_bits:
            bits = list(range(quotient_bits - 1 - done, max(quotient_bits - done - per_stage, 0) - 1, -1))

            def update(s, bits=bits, first=(done == 0)):
                d = s[divisor]
                r = Const(dividend >> quotient_bits, unsigned(16)) if first else s[remainder]
                q = Const(0, unsigned(quotient_bits)) if first else s[quotient]
                for bit in bits:
                    r = Cat(Const((dividend >> bit) & 1, 1), r[:16])
                    difference = r - d
                    # the sign of the difference, not `r >= d`: r is a constant in the first step
                    ge = ~difference[-1]
                    r = Mux(ge, difference, r)[:16]
                    q = Cat(ge, q)[:quotient_bits]
                return {remainder: r, quotient: q}

            stages.append(update)
            done += len(bits)
        return stages

    def _divide(self, pipe: Lockstep, slot: dict, divisor: str, quotient: str, dividend: int, bits: int) -> dict:
        for update in self._divide_stages(divisor, quotient, dividend, bits):
            slot = pipe.stage({**slot, **update(slot)})
        slot.pop(f"{quotient}_r")
        return slot
