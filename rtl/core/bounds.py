"""SRAM bounds of one instruction, checked before it is queued.

Every instruction names rectangles of the scratchpad (bytes) and the accumulator (words): ``rows``
runs of ``cols`` elements, ``stride`` apart, from ``addr`` (:func:`compiler.dependencies.footprint`
lists them; :mod:`compiler.funcsim` raises on the same ones). A rectangle with rows and columns
fits when its last element, ``addr + (rows - 1) * stride + cols - 1``, is inside its memory.
Addresses are unsigned, so that is the only condition; an empty rectangle always fits.

The check runs over up to :data:`SLOTS` operands per instruction, one per cycle, through one
multiplier (``(rows - 1) * stride``; a factor wider than the memory's address makes any product
with a non-zero other factor too large, so the multiplier is only as wide as the address), then
an adder and a comparison, each registered: the verdict of an instruction with ``n`` operands is
ready ``n + 3`` cycles after ``start``. The controller runs it on the word it has assembled while
the next one arrives (an instruction takes 4 beats on a 64-bit bus, plus the fetch latency).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from scoville.isa import Flag, Instruction, Opcode

__all__ = ["BoundsCheck", "SLOTS", "operands"]

#: Operands checked per instruction, at most (``V_REQUANT`` has five, ``V_ATTN_SCALE`` and
#: ``V_SOFTMAX_EXP`` four).
SLOTS = 5

SPAD, ACC = 0, 1


def _rect(space, addr, rows, cols, stride):
    """A 2D operand: (space, base, rows - 1, stride, cols, non-empty)."""
    return space, addr, rows - 1, stride, cols, (rows != 0) & (cols != 0)


def _words(addr, count):
    """``count`` consecutive accumulator words from ``addr``."""
    return ACC, addr, Const(0, 1), Const(0, 1), count, count != 0


def operands(opcode: Opcode, w) -> list[tuple]:
    """The SRAM operands of ``opcode`` in the fields of ``w`` (an ``Instruction`` view), as
    (space, base, factor a, factor b, extent, active): the operand's end is
    ``base + a * b + extent`` and must not exceed its memory's size. ``space`` is :data:`SPAD`,
    :data:`ACC` or a 1-bit value (1: ACC). Mirrors :func:`compiler.dependencies.footprint`."""
    flags = w.flags
    to_acc = flags[Flag.DST_ACC.bit_length() - 1]
    if opcode is Opcode.LOAD:
        return [_rect(to_acc, w.addr1, w.rows, w.cols, w.stride1)]
    if opcode is Opcode.GATHER:
        return [_words(w.addr2, w.rows), _rect(to_acc, w.addr1, w.rows, w.cols, w.stride1)]
    if opcode is Opcode.STORE:
        return [_rect(to_acc, w.addr0, w.rows, w.cols, w.stride0)]
    if opcode is Opcode.MATMUL:
        transposed = flags[Flag.B_TRANSPOSED.bit_length() - 1]
        b_rows = Mux(transposed, w.cols, w.imm)
        b_cols = Mux(transposed, w.imm, w.cols)
        return [_rect(SPAD, w.addr0, w.rows, w.imm, w.stride0), _rect(SPAD, w.addr1, b_rows, b_cols, w.stride1),
                _rect(ACC, w.addr2, w.rows, w.cols, w.addr3)]
    src = _rect(ACC, w.addr0, w.rows, w.cols, w.stride0)
    dst = _rect(ACC, w.addr1, w.rows, w.cols, w.stride1)
    bias = flags[Flag.HAS_BIAS.bit_length() - 1]
    with_bias = Mux(bias, w.cols << 1, w.cols)   # cols scales (or gammas), then cols biases
    if opcode is Opcode.V_QUANT:
        # with ROW_SCALE: one accumulator word a row at addr1 instead of the int8 rows
        scales_only = flags[Flag.ROW_SCALE.bit_length() - 1]
        return [src, _rect(scales_only, w.addr1, w.rows, Mux(scales_only, 1, w.cols), w.stride1),
                _words(w.addr2, w.rows)]
    if opcode is Opcode.V_REQUANT8:
        return [src, _words(w.addr2, w.rows), _rect(SPAD, w.addr1, w.rows, w.cols, w.stride1)]
    if opcode is Opcode.V_REQUANT:
        no_col_scale = flags[Flag.NO_COL_SCALE.bit_length() - 1]
        # column scales at addr3 (unless NO_COL_SCALE), biases after them: both end at addr3 + 2 cols
        columns = _words(w.addr3, Mux(bias, w.cols << 1, Mux(no_col_scale, 0, w.cols)))
        # with ROW_SCALE, each row's largest result at imm, a word a row
        row_max = _words(w.imm, Mux(flags[Flag.ROW_SCALE.bit_length() - 1], w.rows, 0))
        return [src, _words(w.addr2, w.rows), columns, dst, row_max]
    if opcode is Opcode.V_DEQUANT:
        return [_rect(SPAD, w.addr0, w.rows, w.cols, w.stride0), _words(w.addr2, w.rows), dst]
    if opcode in (Opcode.V_ADD, Opcode.V_MUL):
        return [src, _rect(ACC, w.addr2, w.rows, w.cols, w.imm), dst]
    if opcode in (Opcode.V_GELU, Opcode.V_SILU):
        return [src, dst]
    if opcode is Opcode.V_RMSNORM:
        # with ROW_SCALE: no gamma or beta read, and one word a row written
        scales_only = flags[Flag.ROW_SCALE.bit_length() - 1]
        return [src, _words(w.addr2, Mux(scales_only, 0, with_bias)),
                _rect(ACC, w.addr1, w.rows, Mux(scales_only, 1, w.cols), w.stride1)]
    if opcode is Opcode.V_LAYERNORM:
        return [src, _words(w.addr2, with_bias), dst]
    if opcode is Opcode.V_ROPE:
        return [src, _words(w.addr2, w.addr3 >> 1), dst]
    if opcode is Opcode.V_SOFTMAX_EXP:
        fold = flags[Flag.FOLD_V.bit_length() - 1]   # the value scales at addr3
        return [src, dst, _words(w.addr2, w.rows), _words(w.addr3, Mux(fold, w.cols, 0))]
    if opcode is Opcode.V_FOLD_V:
        return [src, _words(w.addr2, w.cols), dst]
    if opcode is Opcode.V_ATTN_SCALE:
        return [_words(w.addr0, w.rows), _words(w.addr2, w.rows), _words(w.imm, w.cols), _words(w.addr1, w.rows)]
    if opcode is Opcode.V_SCALE_MUL:
        return [_words(w.addr0, w.rows), _words(w.addr1, w.rows)]
    return []


class BoundsCheck(wiring.Component):
    """Whether every SRAM operand of an instruction lies inside its memory.

    Parameters
    ----------
    spad_bytes, acc_words : int
        Sizes of the scratchpad (bytes) and the accumulator (words).

    Ports
    -----
    word : In(Instruction)
        The instruction; it must not change from ``start`` until ``done``.
    start : In(1)
        Begin checking ``word`` (clears ``done``).
    done : Out(1)
        The verdict is ready (holds until the next ``start``).
    ok : Out(1)
        With ``done``: every operand fits.
    operand : Out(3)
        With ``done`` and not ``ok``: the first operand (in :func:`operands` order) that does not.
    """

    def __init__(self, spad_bytes: int, acc_words: int):
        for name, value in (("spad_bytes", spad_bytes), ("acc_words", acc_words)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.spad_bytes, self.acc_words = spad_bytes, acc_words
        #: factors below 2**width can be multiplied; a wider one makes any non-zero product too large
        self.width = max(spad_bytes, acc_words).bit_length()
        super().__init__({
            "word": In(Instruction),
            "start": In(1),
            "done": Out(1),
            "ok": Out(1),
            "operand": Out(range(SLOTS)),
        })

    def elaborate(self, platform):
        m = Module()
        w, width = self.word, self.width
        limit_bits = width + 2

        # ---------------------------------------------------------------- slot selection
        slot = Signal(range(SLOTS + 1))
        running = Signal()
        count = Signal(range(SLOTS + 1))   # operands of this opcode
        space, base, factor_a, factor_b, extent, active = (
            Signal(), Signal(32), Signal(32), Signal(32), Signal(33), Signal())
        with m.Switch(w.opcode.as_value()):
            for opcode in Opcode:
                slots = operands(opcode, w)
                if not slots:
                    continue
                assert len(slots) <= SLOTS, opcode
                with m.Case(opcode.value):
                    m.d.comb += count.eq(len(slots))
                    with m.Switch(slot):
                        for index, (sp, b, a, f, e, act) in enumerate(slots):
                            with m.Case(index):
                                m.d.comb += [space.eq(sp), base.eq(b), factor_a.eq(a), factor_b.eq(f),
                                             extent.eq(e), active.eq(act)]

        # ---------------------------------------------------------------- stage 1: operands registered
        s1_valid, s1_index, s1_space = Signal(), Signal(range(SLOTS)), Signal()
        s1_a, s1_b = Signal(width), Signal(width)
        s1_wide = Signal()   # a factor does not fit `width` bits and the other is not zero
        s1_offset = Signal(34)
        m.d.sync += s1_valid.eq(0)
        with m.If(self.start):
            m.d.sync += [slot.eq(0), running.eq(1)]
        with m.Elif(running):
            with m.If(slot < count):
                m.d.sync += [slot.eq(slot + 1), s1_valid.eq(active), s1_index.eq(slot), s1_space.eq(space),
                             s1_a.eq(factor_a), s1_b.eq(factor_b), s1_offset.eq(base + extent),
                             s1_wide.eq(((factor_a >> width) != 0) & (factor_b != 0)
                                        | ((factor_b >> width) != 0) & (factor_a != 0))]
            with m.Else():
                m.d.sync += running.eq(0)

        # ---------------------------------------------------------------- stage 2: the product
        s2_valid, s2_index, s2_space, s2_wide = Signal(), Signal(range(SLOTS)), Signal(), Signal()
        s2_product = Signal(2 * width)
        s2_offset = Signal(34)
        m.d.sync += [s2_valid.eq(s1_valid), s2_index.eq(s1_index), s2_space.eq(s1_space), s2_wide.eq(s1_wide),
                     s2_product.eq(s1_a * s1_b), s2_offset.eq(s1_offset)]

        # ---------------------------------------------------------------- stage 3: end against the size
        end = Signal(max(2 * width, 34) + 1)
        limit = Signal(limit_bits)
        m.d.comb += [end.eq(s2_product + s2_offset),
                     limit.eq(Mux(s2_space, self.acc_words, self.spad_bytes))]
        s3_valid = Signal()
        m.d.sync += s3_valid.eq(s2_valid)
        bad = Signal()
        with m.If(self.start):
            m.d.sync += [bad.eq(0), self.operand.eq(0)]
        with m.Elif(s2_valid & ~bad & (s2_wide | (end > limit))):
            m.d.sync += [bad.eq(1), self.operand.eq(s2_index)]

        # ---------------------------------------------------------------- verdict
        # the last operand is in stage 1 the cycle after `running` falls, and its verdict in `bad`
        # the cycle after that: `done` rises with it
        with m.If(self.start):
            m.d.sync += self.done.eq(0)
        with m.Elif(~running):
            m.d.sync += self.done.eq(1)
        m.d.comb += self.ok.eq(~bad)
        return m
