"""A ``lanes``-wide vector unit built from a narrower one, for chips that cannot afford C lanes.

:class:`NarrowVectorUnit` has the ports of ``VectorUnit(lanes)`` and computes the same results,
bit for bit, with a ``VectorUnit(unit_lanes)`` inside: every input and side beat goes through in
as many pieces of ``unit_lanes`` elements as it has elements in its row (one to
``lanes // unit_lanes``), and the pieces of each output beat are put back together. The golden
functions do not depend on the lane count, so neither do the results; what changes is the
throughput (a full beat takes ``lanes // unit_lanes`` cycles) and the logic (the unit's lanes,
about half of the FPGA chip at C = 8, scale with ``unit_lanes``).

The first pass of the operations that only look for a row's largest value or magnitude
(``isa.MAX_FIRST``, ``isa.MAX_ABS_FIRST``: the max-abs pass of QUANTIZE and RMSNORM, the max pass of the
softmaxes) needs no multipliers, so it does not go in pieces: the input splitter reduces each beat
to one piece (lane ``j`` of it the largest, or largest in magnitude, of the beat's elements
``j, j + unit_lanes, ...`` that the pass takes) and the unit inside, built with ``reduced_step``
= ``lanes``, takes it as the whole beat. That pass then takes a cycle a beat, as on a full-width
unit.

The unit's instruction stream says how long the rows are, so the beats need no framing signals:
each accepted instruction also queues its framing (row length, and how many rows each stream
carries) for the input splitter, the side splitter and the output combiner, which each follow
their own stream through it. With ``trim_masked`` a softmax row ends at its last allowed key
(:func:`rtl.vector.isa.row_ends`) on every stream, as for the unit inside.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .arith import any_of
from .isa import (
    ELEMENTWISE,
    MAX_ABS_FIRST,
    MAX_FIRST,
    NEEDS_SIDE,
    PASSES,
    Instruction,
    Op,
    lane_input_layout,
    output_layout,
    side_layout,
)
from .unit import VectorUnit

__all__ = ["NarrowVectorUnit"]

#: What a splitter or the combiner needs of an instruction: its row length and how many rows
#: (row passes, for the input) its stream carries, whether each row's outputs are beats, and the
#: elements of the first row a softmax takes (``limit``, one more for each following row if
#: ``causal``): the input's first pass reduces only those, and with ``trim_masked`` every stream's
#: rows end there.
FRAME = data.StructLayout({"length": unsigned(16), "rows": unsigned(18), "elementwise": unsigned(1),
                           "limit": unsigned(16), "causal": unsigned(1)})
#: The input splitter's framing besides: the passes over each row and how the first pass's beats
#: are reduced (:class:`Reduce`).
INPUT_FRAME = data.StructLayout({**{name: field.shape for name, field in FRAME}, "passes": unsigned(2),
                                 "reduce": unsigned(2)})


class Reduce:
    """How the input splitter reduces a beat of an operation's first pass to one piece."""

    NONE, MAX, MAX_ABS = 0, 1, 2


class NarrowVectorUnit(wiring.Component):
    """``VectorUnit(lanes)``'s ports and results on ``unit_lanes`` lanes.

    Parameters
    ----------
    lanes : int
        Elements per beat on the ports (C).
    unit_lanes : int
        Lanes of the vector unit inside; divides ``lanes``.
    frame_depth : int
        Instructions whose beats may be in flight at once (the framing queues' depth); the unit's
        own queue (``queue_depth``, default 8) is the other limit.
    trim_masked : bool
        As :class:`~rtl.vector.unit.VectorUnit`'s: every stream's softmax rows end at their last
        allowed key.
    **unit_params
        Passed on to :class:`~rtl.vector.unit.VectorUnit` (``head_dim``, ``ops``, ...).

    Ports: as :class:`~rtl.vector.unit.VectorUnit` at ``lanes``. Latency: the unit's.
    """

    def __init__(self, lanes: int, unit_lanes: int, frame_depth: int = 8, trim_masked: bool = False,
                 **unit_params):
        if not isinstance(lanes, int) or not isinstance(unit_lanes, int) or unit_lanes < 1 \
                or lanes < unit_lanes or lanes % unit_lanes:
            raise ValueError(f"unit_lanes must be a positive divisor of lanes, got {unit_lanes!r} for {lanes!r}")
        if not isinstance(frame_depth, int) or frame_depth < 1:
            raise ValueError(f"frame_depth must be a positive integer, got {frame_depth!r}")
        self.lanes, self.unit_lanes, self.frame_depth = lanes, unit_lanes, frame_depth
        self.trim_masked = bool(trim_masked)
        self.unit = VectorUnit(lanes=unit_lanes, reduced_step=lanes, trim_masked=trim_masked, **unit_params)
        self.ops = self.unit.ops
        super().__init__({
            "c": In(stream.Signature(Instruction)),
            "i": In(stream.Signature(lane_input_layout(lanes))),
            "s": In(stream.Signature(side_layout(lanes))),
            "o": Out(stream.Signature(output_layout(lanes))),
        })

    @property
    def latency(self):
        """Cycles from an input beat to its output beat (known after elaboration)."""
        return self.unit.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        frames = {}
        layouts = {"input": INPUT_FRAME, "side": FRAME, "output": FRAME}
        for name, layout in layouts.items():
            frames[name] = m.submodules[f"{name}_frames"] = SyncFIFOBuffered(width=layout.size,
                                                                             depth=self.frame_depth)

        # ------------------------------------------------------------ instructions
        ins = self.c.payload
        op = ins.op.as_value()
        passes = Signal(2)
        with m.Switch(op):
            for code in Op:
                with m.Case(code):
                    m.d.comb += passes.eq(PASSES[code])
        needs_side = Signal()
        elementwise = Signal()
        m.d.comb += [needs_side.eq(any_of(op, NEEDS_SIDE) | (ins.fold & (op == Op.SOFTMAX_EXP))),
                     elementwise.eq(any_of(op, ELEMENTWISE))]
        # the unit drops an instruction without rows or elements: so do the framing queues
        empty = (ins.rows == 0) | (ins.length == 0)
        room = Signal()
        m.d.comb += [
            room.eq(frames["input"].w_rdy & frames["side"].w_rdy & frames["output"].w_rdy),
            unit.c.payload.eq(ins),
            unit.c.valid.eq(self.c.valid & room),
            self.c.ready.eq(unit.c.ready & room),
        ]
        accepted = self.c.valid & self.c.ready & ~empty
        rows = {"input": ins.rows * passes, "side": ins.rows, "output": ins.rows}
        # the keys a softmax takes (`allowed`, 0 for all)
        softmax = any_of(op, (Op.SOFTMAX, Op.SOFTMAX_EXP))
        for name, fifo in frames.items():
            frame = data.View(layouts[name], fifo.w_data)
            m.d.comb += [frame.length.eq(ins.length), frame.rows.eq(rows[name]),
                         frame.elementwise.eq(elementwise),
                         frame.limit.eq(Mux(softmax & (ins.allowed != 0), ins.allowed, ins.length)),
                         frame.causal.eq(softmax & ins.causal),
                         fifo.w_en.eq(accepted & (needs_side if name == "side" else 1))]
        # the first pass's reduction
        frame = data.View(INPUT_FRAME, frames["input"].w_data)
        m.d.comb += [
            frame.passes.eq(passes),
            frame.reduce.eq(Mux(any_of(op, MAX_FIRST), Reduce.MAX, Mux(any_of(op, MAX_ABS_FIRST), Reduce.MAX_ABS,
                                                                           Reduce.NONE))),
        ]

        self._split(m, self.i, unit.i, frames["input"], lane_input_layout(1).size, reduce=True)
        self._split(m, self.s, unit.s, frames["side"], side_layout(1).size)
        self._combine(m, unit.o, self.o, frames["output"])
        return m

    def _split(self, m, wide, narrow, fifo, elem_bits, reduce=False):
        """Send each beat of ``wide`` to ``narrow`` in pieces, as many as its row has elements for
        (``reduce``: the input's framing, whose first pass may go as one reduced piece a beat)."""
        u, pieces = self.unit_lanes, self.lanes // self.unit_lanes
        frame = data.View(INPUT_FRAME if reduce else FRAME, fifo.r_data)
        base = Signal(17)                     # the beat's first element in its row
        piece = Signal(range(pieces))
        rows_done = Signal(18)
        # the row's index (the input carries each row once per pass: it counts them apart)
        row_offset = Signal(16) if reduce else rows_done
        bound = Signal(17)                    # the elements a softmax row takes: 0 .. bound - 1
        m.d.comb += bound.eq(_allowed(frame, row_offset))
        end = bound if self.trim_masked else frame.length   # where the row's beats end
        row_end = base + self.lanes >= end
        piece_now = wide.payload.as_value().word_select(piece, u * elem_bits)
        reduced = Signal()                    # this beat goes as one reduced piece
        # another piece of this beat holds elements of the row
        more = Signal()
        m.d.comb += more.eq(~reduced & (piece != pieces - 1) & (base + (piece + 1) * u < end))
        if reduce:
            pass_ = Signal(2)                 # of the row being sent
            m.d.comb += reduced.eq((frame.reduce != Reduce.NONE) & (pass_ == 0))
            piece_now = Mux(reduced, self._reduced_piece(m, wide.payload, base, bound, frame.reduce), piece_now)
            with m.If(narrow.valid & narrow.ready & ~more & row_end):
                last_pass = pass_ + 1 == frame.passes
                m.d.sync += pass_.eq(Mux(last_pass, 0, pass_ + 1))
                with m.If(rows_done + 1 == frame.rows):
                    m.d.sync += row_offset.eq(0)
                with m.Elif(last_pass):
                    m.d.sync += row_offset.eq(row_offset + 1)
        m.d.comb += [
            narrow.payload.eq(piece_now),
            narrow.valid.eq(wide.valid & fifo.r_rdy),
            wide.ready.eq(narrow.ready & fifo.r_rdy & ~more),
        ]
        with m.If(narrow.valid & narrow.ready):
            with m.If(more):
                m.d.sync += piece.eq(piece + 1)
            with m.Else():
                m.d.sync += piece.eq(0)
                _next_beat(m, row_end, base, self.lanes, rows_done, frame, fifo)

    def _reduced_piece(self, m, beat, base, bound, how):
        """One piece for the whole input ``beat`` at element ``base`` of its row: lane ``j`` the
        largest (``how`` = MAX) or largest in magnitude (MAX_ABS, sign kept) of the beat's
        elements ``j + k * unit_lanes`` below ``bound``, or any element if none is (the unit then
        does not take the lane)."""
        u, pieces = self.unit_lanes, self.lanes // self.unit_lanes
        by_magnitude = how == Reduce.MAX_ABS
        lanes = []
        for j in range(u):
            # (taken, key, value) per element; the key orders them: the value, or its magnitude
            level = []
            for k in range(pieces):
                x = beat[k * u + j]
                magnitude = Mux(x < 0, -x, x).as_unsigned()[:33]
                key = Signal(signed(34), name=f"reduce_key{j}_{k}")
                m.d.comb += key.eq(Mux(by_magnitude, magnitude, x))
                level.append((base + k * u + j < bound, key, x))
            while len(level) > 1:
                pairs = []
                for a, b in zip(level[0::2], level[1::2], strict=False):
                    take_b = b[0] & (~a[0] | (b[1] > a[1]))
                    pairs.append((a[0] | b[0], Mux(take_b, b[1], a[1]), Mux(take_b, b[2], a[2])))
                if len(level) % 2:
                    pairs.append(level[-1])
                level = pairs
            lanes.append(level[0][2])
        return Cat(*lanes)

    def _combine(self, m, narrow, wide, fifo):
        """Put the pieces of each output beat back together (a reduction's beat is one piece)."""
        u, pieces = self.unit_lanes, self.lanes // self.unit_lanes
        piece_bits = 32 * u
        frame = data.View(FRAME, fifo.r_data)
        position = Signal(17)                 # the piece's first element in its row
        piece = Signal(range(pieces))
        rows_done = Signal(18)
        held = Array(Signal(piece_bits, name=f"held{n}") for n in range(max(pieces - 1, 1)))
        row_end = Signal()
        last = Signal()                       # the piece completes a beat
        end = _allowed(frame, rows_done) if self.trim_masked else frame.length   # a softmax row's last allowed key
        m.d.comb += [
            row_end.eq(~frame.elementwise | (position + u >= end)),
            last.eq((piece == pieces - 1) | row_end),
        ]
        current = narrow.payload.data.as_value()
        parts = []
        for n in range(pieces):
            part = Mux(piece == n, current, 0)
            if n < pieces - 1:
                part = Mux(piece > n, held[n], part)
            parts.append(part)
        m.d.comb += [
            wide.payload.data.eq(Cat(*parts)),
            wide.payload.value.eq(narrow.payload.value),
            wide.payload.m.eq(narrow.payload.m),
            wide.payload.e.eq(narrow.payload.e),
            wide.valid.eq(narrow.valid & fifo.r_rdy & last),
            narrow.ready.eq(fifo.r_rdy & (wide.ready | ~last)),
        ]
        with m.If(narrow.valid & narrow.ready):
            with m.If(~last):
                m.d.sync += [held[piece].eq(current), piece.eq(piece + 1), position.eq(position + u)]
            with m.Else():
                m.d.sync += piece.eq(0)
                _next_beat(m, row_end, position, u, rows_done, frame, fifo)


def _allowed(frame, row):
    """The elements row ``row`` of ``frame`` takes: a softmax's allowed keys (``limit``, one more a
    row if ``causal``), at most its length."""
    limit = frame.limit + Mux(frame.causal, row, 0)
    return Mux(limit < frame.length, limit, frame.length)


def _next_beat(m, row_end, position, step, rows_done, frame, fifo) -> None:
    """Move ``position`` on by ``step`` elements, or to the next row at a row's end; after the
    frame's last row, take the next frame from ``fifo``."""
    with m.If(row_end):
        m.d.sync += position.eq(0)
        with m.If(rows_done + 1 == frame.rows):
            m.d.sync += rows_done.eq(0)
            m.d.comb += fifo.r_en.eq(1)
        with m.Else():
            m.d.sync += rows_done.eq(rows_done + 1)
    with m.Else():
        m.d.sync += position.eq(position + step)
