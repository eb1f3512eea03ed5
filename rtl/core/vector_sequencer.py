"""The vector sequencer of a core: executes the vector queue (``V_*`` instructions) with the vector
unit, reading operands from and writing results to the core's SRAMs at any element address.

For an instruction over ``rows`` x ``cols`` elements it runs four processes at once:

* the *feeder* streams each source row (accumulator words, or scratchpad bytes for
  ``V_DEQUANT``) into the vector unit, ``lanes`` elements per beat, once per pass the operation
  needs;
* the *side feeder* reads the per-column operands of the last pass (the second addend, column
  scales and biases, gamma and beta, value scales) and forms the side beats: requantization
  scales ``row (x) column`` are multiplied here (:func:`golden.ops.scale_mul`'s contract);
* the *writer* stores each result beat (int8 results of ``V_QUANT`` into the scratchpad), and the
  per-row results (``V_QUANT``'s row scale, ``V_SOFTMAX_EXP``'s row sum) into the accumulator;
* with ``wide_requant``, ``V_REQUANT``, ``V_DEQUANT``, ``V_FOLD_V`` and ``V_ADD`` bypass the
  vector unit: each operand beat meets its side beat in a ``lanes``-wide
  :class:`rtl.vector.requant.Requantizer`, whose results go to the writer, a beat a cycle;
* for the per-row scale instructions (``V_SCALE_MUL``, ``V_ATTN_SCALE``) a scalar path does the
  whole job: scale products and the reciprocal (a restoring divider, two radix-4 steps a cycle:
  4 cycles) per row. The rows go through it as a pipeline, their operands read a chunk of
  ``lanes`` rows at a time: ``V_ATTN_SCALE`` a row a division (the next row normalised while one
  divides, the row before combined and written), ``V_SCALE_MUL`` a row a cycle. It also runs
  ``V_ROPE`` in chunks of up to ``lanes`` rotation pairs, with the frequencies read from the
  accumulator (so one chip serves any head size and RoPE base), streamed: three reads bring each
  chunk's first elements, second elements and frequencies, ahead of the chunk running;
  ``rope_pairs`` pairs a cycle go through a three-stage pipeline (phase ``position *
  frequency``; the sine table twice, sin and cos a quarter turn on; two products and roundings)
  into one of two output banks, and a full bank leaves as two writes while the next chunk fills
  the other.

A causal ``V_SOFTMAX_EXP`` row ends at its last allowed key (``imm + 1 + row``,
:func:`rtl.vector.isa.row_ends`) for the feeder, the side feeder and the unit (built with
``trim_masked``): the keys after it are masked, so they are neither read nor computed, and the
writer stores zeros for them, a beat a cycle. The row's fully masked beats cost no unit cycles.

A ``V_ROPE`` whose head size (``addr3``) is zero or odd stops the core with ``UNIT_FAULT``.

``V_FOLD_V``, ``V_ATTN_SCALE`` and a ``V_SOFTMAX_EXP`` with ``FOLD_V`` (which folds the value
scales at ``addr3`` into its results, as a ``V_FOLD_V`` after it would) first scan the value scales
for their largest exponent.
The instruction is done once its last result is in the SRAM.

Two instructions overlap: once every operand of the one it holds is in the vector unit (or the
wide requantizer), the sequencer takes the next (``overlap``) and feeds it while the writer still
stores the first one's results; the writer holds the second's destination until the first is
done. A read of the second (source rows, side operands) waits while it reaches into what the
first has still to write: its results from the writer's position on (all of them if its rows
overlap) and its row results from the writer's row on. So an instruction reading the one
before's results follows it row by row. A scalar-path, scanning or empty instruction waits until
the first is done. At most two are in flight, as the controller releases them; ``done`` strobes
come in order.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from rtl.core.chunks import ChunkReader, ChunkSplitter
from rtl.memory.bridge import SramReadSignature, write_request_layout
from rtl.vector.arith import maximum
from rtl.vector.isa import PASSES, Op, OutWidth, lane_input_layout, output_layout, side_layout
from rtl.vector.narrow import NarrowVectorUnit
from rtl.vector.requant import Requantizer
from rtl.vector.unit import VectorUnit
from scoville import numerics as nx
from scoville.isa import Flag, Instruction, Opcode

__all__ = ["VectorSequencer"]

SCALE_BITS = nx.SCALE_BITS


class _Side(enum.Enum, shape=3):
    """What the side beats of an instruction are made of."""

    NONE = 0
    OTHER = 1        # b = the other operand's row (V_ADD, V_MUL)
    ROW_COL = 2      # m, e = row scale x column scale; b = bias (V_REQUANT)
    ROW = 3          # m, e = row scale; b = bias (V_REQUANT NO_COL_SCALE, V_DEQUANT)
    GAMMA = 4        # m, e = gamma scale; b = beta / bias (norms)
    FOLD = 5         # m = value scale mantissa, e = its exponent - the largest (V_FOLD_V, FOLD_V)


class _Output(enum.Enum, shape=3):
    ACC = 0          # wide results into the accumulator
    QUANT = 1        # int8 into the scratchpad, then the row scale into the accumulator
    SOFTMAX = 2      # wide results, then the row sum into the accumulator
    ROW_SCALE = 3    # one word a row, the row's scale (V_RMSNORM with ROW_SCALE)
    QUANT_SCALES = 4  # one word a row, its requantization scale; then its row scale (V_QUANT ROW_SCALE)
    INT8 = 5         # int8 into the scratchpad, saturated (V_REQUANT8)
    ROW_MAX = 6      # wide results, then the row's largest |result| into the accumulator (V_REQUANT ROW_SCALE)


def _has_row_result(output) -> Value:
    """Whether an output kind writes a word after each row's results (at addr2, or imm)."""
    return ((output == _Output.QUANT) | (output == _Output.SOFTMAX) | (output == _Output.QUANT_SCALES)
            | (output == _Output.ROW_MAX))


class _Field(enum.Enum, shape=2):
    """What a side read brings back."""

    ROW_SCALE = 0
    FIRST = 1        # the column operand: other row / column scales / gamma / value scales
    BIAS = 2         # the bias / beta chunk
    SCALAR = 3       # a word for the scalar path or the exponent scan


#: ``cached``: the beat's column operands come from the side cache (no SRAM read); ``fill``: this
#: read of the first row also fills the cache.
_side_tag = data.StructLayout({"field": _Field, "last": 1, "cached": 1, "fill": 1})


def _writer_layout(addr_bits: int) -> data.StructLayout:
    """What the writer needs of an instruction, kept while the next one is fed: where its results
    go, and the two address ranges it writes, ``[addr1, data_end)`` (the scratchpad's with
    ``data_spad``) and ``[addr2, rows_end)`` (row results) in the accumulator; addresses of
    ``addr_bits``, as the SRAMs see them (the core's bounds check keeps every operand inside)."""
    return data.StructLayout({
        "output": _Output, "wide": 1, "addr1": addr_bits, "addr2": addr_bits, "stride1": 16, "rows": 16,
        "cols": 16, "data_spad": 1, "data_end": addr_bits + 1, "rows_end": addr_bits + 1,
        "end0": 16, "grow": 1,   # where the unit's first row ends, and whether each ends one further
    })


#: Each lane instruction as a vector-unit job: the operation, its side operands, its output.
_UNIT_JOBS = {
    Opcode.V_QUANT: (Op.QUANTIZE, _Side.NONE, _Output.QUANT),
    Opcode.V_REQUANT: (Op.REQUANT, _Side.ROW_COL, _Output.ACC),
    Opcode.V_DEQUANT: (Op.REQUANT, _Side.ROW, _Output.ACC),
    Opcode.V_REQUANT8: (Op.REQUANT, _Side.ROW, _Output.INT8),
    Opcode.V_ADD: (Op.ADD, _Side.OTHER, _Output.ACC),
    Opcode.V_MUL: (Op.MUL, _Side.OTHER, _Output.ACC),
    Opcode.V_GELU: (Op.GELU, _Side.NONE, _Output.ACC),
    Opcode.V_SILU: (Op.SILU, _Side.NONE, _Output.ACC),
    Opcode.V_RMSNORM: (Op.RMSNORM, _Side.GAMMA, _Output.ACC),
    Opcode.V_LAYERNORM: (Op.LAYERNORM, _Side.GAMMA, _Output.ACC),
    Opcode.V_SOFTMAX_EXP: (Op.SOFTMAX_EXP, _Side.NONE, _Output.SOFTMAX),
    Opcode.V_FOLD_V: (Op.REQUANT, _Side.FOLD, _Output.ACC),
}
#: The vector-unit operations the sequencer issues (and SUM_SQUARES, which ``V_RMSNORM`` with
#: ``ROW_SCALE`` runs: the rows' norm scales, one word a row). The unit is built with these only:
#: V_ROPE runs on the scalar path and no instruction asks for ROPE, SOFTMAX, EXP or the other
#: reductions, so the unit's RoPE phase, sine tables and partner product and its softmax
#: reciprocal are left out.
UNIT_OPS = frozenset(unit_op for unit_op, _, _ in _UNIT_JOBS.values()) | {Op.SUM_SQUARES, Op.QUANT_SCALE}
#: The operations the wide requantizer takes instead of the unit (``wide_requant``): REQUANT, and
#: ADD as ``saturate(x * 1 + other)``, :func:`golden.ops.add` bit for bit.
WIDE_OPS = frozenset({Op.REQUANT, Op.ADD})


def _row_end(m: Module, name: str, start, first, next_row, grow, cols) -> Signal:
    """Where the current row ends (:func:`rtl.vector.isa.row_ends`): ``first`` from ``start`` on,
    one further at each ``next_row`` while ``grow`` (a causal softmax), up to ``cols``."""
    end = Signal(16, name=name)
    with m.If(start):
        m.d.sync += end.eq(first)
    with m.Elif(next_row & grow & (end < cols)):
        m.d.sync += end.eq(end + 1)
    return end


def _unpack_m(word):
    return word[:16].as_signed()


def _unpack_e(word):
    return word[16:32].as_signed()


def _clamp8(value):
    """Clamp a signed exponent to the side stream's signed 8 bits."""
    return Mux(value < -128, -128, Mux(value > 127, 127, value))


class VectorSequencer(wiring.Component):
    """``V_*`` instructions on a :class:`rtl.vector.unit.VectorUnit`.

    Parameters
    ----------
    lanes : int
        Vector lanes, also the accumulator's int32 words per row (a power of two).
    unit_lanes : int, optional
        Lanes of the vector unit's datapath (default ``lanes``); a divisor of ``lanes`` builds a
        :class:`rtl.vector.narrow.NarrowVectorUnit`, which takes each beat in pieces.
    spad_row_bytes : int
        Bytes per scratchpad row (at least ``lanes``).
    spad_row_bits, acc_row_bits : int
        Row-address widths of the scratchpad and the accumulator.
    head_dim, rope_theta : the vector unit's RoPE tables.
    stage_merge : int
        The vector unit's pipeline stages per register stage (``VectorUnit``'s).
    rope_pairs : int
        ``V_ROPE`` rotation pairs the scalar path computes a cycle (a power of two, at most
        ``lanes``): each is a phase product, two sine-table interpolations and four products.
    wide_requant : bool
        Run the requantizing instructions (``V_REQUANT``, ``V_DEQUANT``, ``V_FOLD_V``) and
        ``V_ADD`` (a requantization by 1 with the other row as its bias) on a ``lanes``-wide
        :class:`rtl.vector.requant.Requantizer` beside the vector unit, a beat a cycle whatever
        the unit's width, with its 3-cycle latency instead of the unit's short path.

    Ports
    -----
    instruction : In(stream.Signature(Instruction)); done : Out(1) strobe; busy : Out(1)
    overlap : Out(1)
        The sequencer holds an instruction whose results are still being written and would take
        the next now (the controller's ``unit_overlap``).
    error : Out(1), strobe: the instruction is malformed (the core stops).
    acc_read, acc_side : Out(SramReadSignature(acc_row_bits, 32 * lanes))
    acc_write : Out(stream.Signature(write_request_layout(acc_row_bits, 32 * lanes)))
    spad_read : Out(SramReadSignature(spad_row_bits, 8 * spad_row_bytes))
    spad_write : Out(stream.Signature(write_request_layout(spad_row_bits, 8 * spad_row_bytes)))
    """

    def __init__(self, *, lanes: int = 8, spad_row_bytes: int = 8, spad_row_bits: int = 15, acc_row_bits: int = 13,
                 head_dim: int = 64, rope_theta: float = 10000.0, side_cache_chunks: int = 16,
                 unit_lanes: int | None = None, stage_merge: int = 1, rope_pairs: int = 1,
                 wide_requant: bool = False):
        if lanes & (lanes - 1) or spad_row_bytes < lanes:
            raise ValueError(f"lanes must be a power of two no larger than spad_row_bytes, got {lanes!r}")
        if not isinstance(rope_pairs, int) or rope_pairs < 1 or rope_pairs & (rope_pairs - 1) or rope_pairs > lanes:
            raise ValueError(f"rope_pairs must be a power of two from 1 to lanes ({lanes}), got {rope_pairs!r}")
        self.rope_pairs = rope_pairs
        if not isinstance(side_cache_chunks, int) or side_cache_chunks < 1:
            raise ValueError(f"side_cache_chunks must be a positive integer, got {side_cache_chunks!r}")
        self.side_cache_chunks = side_cache_chunks
        self.wide_requant = bool(wide_requant)
        # with the wide requantizer, no instruction asks the unit for REQUANT or ADD
        ops = UNIT_OPS - WIDE_OPS if self.wide_requant else UNIT_OPS
        self.lanes, self.spad_row_bytes = lanes, spad_row_bytes
        self.spad_row_bits, self.acc_row_bits = spad_row_bits, acc_row_bits
        if unit_lanes is None or unit_lanes == lanes:
            self.unit = VectorUnit(lanes=lanes, head_dim=head_dim, rope_theta=rope_theta, ops=ops,
                                   stage_merge=stage_merge, trim_masked=True)
        else:
            self.unit = NarrowVectorUnit(lanes, unit_lanes, head_dim=head_dim, rope_theta=rope_theta, ops=ops,
                                         stage_merge=stage_merge, trim_masked=True)
        acc_row = SramReadSignature(acc_row_bits, 32 * lanes)
        super().__init__({
            "instruction": In(stream.Signature(Instruction)),
            "done": Out(1),
            "busy": Out(1),
            "overlap": Out(1),
            "error": Out(1),
            "acc_read": Out(acc_row),
            "acc_side": Out(acc_row),
            "acc_write": Out(stream.Signature(write_request_layout(acc_row_bits, 32 * lanes))),
            "spad_read": Out(SramReadSignature(spad_row_bits, 8 * spad_row_bytes)),
            "spad_write": Out(stream.Signature(write_request_layout(spad_row_bits, 8 * spad_row_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        C = self.lanes
        m.submodules.unit = unit = self.unit
        if self.wide_requant:
            m.submodules.requant = requant = Requantizer(lanes=C, out_bits=32)
        m.submodules.acc_source = acc_source = ChunkReader(row_bits=self.acc_row_bits, row_elems=C, elem_bits=32,
                                                           chunk=C, depth=4)
        m.submodules.spad_source = spad_source = ChunkReader(row_bits=self.spad_row_bits,
                                                             row_elems=self.spad_row_bytes, elem_bits=8, chunk=C,
                                                             depth=4)
        m.submodules.side_source = side_source = ChunkReader(row_bits=self.acc_row_bits, row_elems=C, elem_bits=32,
                                                             chunk=C, depth=4, tag_bits=_side_tag.size)
        m.submodules.acc_out = acc_out = ChunkSplitter(row_bits=self.acc_row_bits, row_elems=C, elem_bits=32,
                                                       chunk=C)
        m.submodules.spad_out = spad_out = ChunkSplitter(row_bits=self.spad_row_bits, row_elems=self.spad_row_bytes,
                                                         elem_bits=8, chunk=C)
        wiring.connect(m, acc_source.sram, wiring.flipped(self.acc_read))
        wiring.connect(m, spad_source.sram, wiring.flipped(self.spad_read))
        wiring.connect(m, side_source.sram, wiring.flipped(self.acc_side))
        acc_mask_bits = self.acc_row_bits + (C.bit_length() - 1)
        spad_mask_bits = self.spad_row_bits + (self.spad_row_bytes.bit_length() - 1)
        for splitter, port in ((acc_out, self.acc_write), (spad_out, self.spad_write)):
            row = splitter.rows.payload
            elem_bytes = 4 if splitter is acc_out else 1
            m.d.comb += [
                port.valid.eq(splitter.rows.valid),
                port.payload.addr.eq(row.row),
                port.payload.data.eq(row.data),
                port.payload.strb.eq(Cat(bit.replicate(elem_bytes) for bit in row.mask)),
                splitter.rows.ready.eq(port.ready),
            ]

        # ------------------------------------------------------------ decode
        ins = Signal(Instruction)
        opcode = ins.opcode
        flags = ins.flags
        has_bias = flags[Flag.HAS_BIAS.bit_length() - 1]
        op = Signal(Op)
        side = Signal(_Side)
        output = Signal(_Output)
        passes = Signal(2)
        from_spad = Signal()
        scalar_job = Signal()   # V_SCALE_MUL / V_ATTN_SCALE: no vector unit
        scan_job = Signal()     # needs the largest value-scale exponent first
        with m.Switch(opcode):
            for code, (unit_op, side_kind, out_kind) in _UNIT_JOBS.items():
                with m.Case(code):
                    m.d.comb += [op.eq(unit_op), side.eq(side_kind), output.eq(out_kind),
                                 passes.eq(PASSES[unit_op])]
            with m.Case(Opcode.V_SCALE_MUL, Opcode.V_ATTN_SCALE, Opcode.V_ROPE):
                m.d.comb += scalar_job.eq(1)
        # V_SOFTMAX_EXP with FOLD_V: the value scales (at addr3) on the side stream of its last pass
        fused_fold = (opcode == Opcode.V_SOFTMAX_EXP) & flags[Flag.FOLD_V.bit_length() - 1]
        # the requantizing instructions and V_ADD on the wide requantizer instead of the unit
        wide = Signal()
        if self.wide_requant:
            m.d.comb += wide.eq(Cat(op == wide_op for wide_op in WIDE_OPS).any())
        with m.If(fused_fold):
            m.d.comb += side.eq(_Side.FOLD)
        m.d.comb += [from_spad.eq(opcode == Opcode.V_DEQUANT),
                     scan_job.eq((opcode == Opcode.V_FOLD_V) | (opcode == Opcode.V_ATTN_SCALE) | fused_fold)]
        with m.If((opcode == Opcode.V_REQUANT) & flags[Flag.NO_COL_SCALE.bit_length() - 1]):
            m.d.comb += side.eq(_Side.ROW)
        # V_REQUANT with ROW_SCALE: each row's largest |result| after the row, at imm (a V_QUANT with
        # ROW_SCALE of those words gives the rows' requantization scales without reading them again)
        with m.If((opcode == Opcode.V_REQUANT) & flags[Flag.ROW_SCALE.bit_length() - 1]):
            m.d.comb += output.eq(_Output.ROW_MAX)
        # V_RMSNORM with ROW_SCALE: the unit's SUM_SQUARES gives each row's scale; a V_REQUANT with
        # gamma as its column scales applies it (golden.ops.rms_scale)
        with m.If((opcode == Opcode.V_RMSNORM) & flags[Flag.ROW_SCALE.bit_length() - 1]):
            m.d.comb += [op.eq(Op.SUM_SQUARES), side.eq(_Side.NONE), output.eq(_Output.ROW_SCALE),
                         passes.eq(PASSES[Op.SUM_SQUARES])]
        # V_QUANT with ROW_SCALE: the unit's QUANT_SCALE (one max-abs pass) gives each row's
        # requantization scale and row scale; a V_REQUANT8 by the first quantizes the rows
        # (golden.ops.quant_scales), on the wide requantizer when there is one
        with m.If((opcode == Opcode.V_QUANT) & flags[Flag.ROW_SCALE.bit_length() - 1]):
            m.d.comb += [op.eq(Op.QUANT_SCALE), output.eq(_Output.QUANT_SCALES),
                         passes.eq(PASSES[Op.QUANT_SCALE])]
        # one word a row written at addr1 (stride1 apart), not the row
        word_a_row = (output == _Output.ROW_SCALE) | (output == _Output.QUANT_SCALES)
        rows, cols = ins.rows, ins.cols
        chunk_count = lambda c0: Mux(cols - c0 < C, cols - c0, C)  # noqa: E731
        # a causal softmax's rows end at their last allowed key, imm + 1 + row (the unit trims them)
        trimmed = (op == Op.SOFTMAX_EXP) & flags[Flag.CAUSAL.bit_length() - 1]
        first_end = Mux(trimmed & (ins.imm + 1 < cols), ins.imm + 1, cols)

        # ------------------------------------------------------------ the writer's instructions
        # element addresses of either SRAM
        addr_bits = max(self.acc_row_bits + (C.bit_length() - 1),
                        self.spad_row_bits + (self.spad_row_bytes.bit_length() - 1))
        writer_layout = _writer_layout(addr_bits)
        wr = Signal(writer_layout)         # the instruction the writer stores
        wr_valid = Signal()
        pend = Signal(writer_layout)       # the next one, fed while the writer finishes ``wr``
        pend_valid = Signal()
        writer_free = ~wr_valid & ~pend_valid
        # (rows - 1) x stride1 of the instruction taken, for where its results end (16 x 16 bits)
        span_dst = Signal(addr_bits + 1)
        with m.If(self.instruction.valid & self.instruction.ready):
            taken = self.instruction.payload
            m.d.sync += span_dst.eq(Mux(taken.rows == 0, 0, taken.rows - 1)[:16] * taken.stride1)
        # While the front feeds ``pend``, the writer has still to write [data_mark, wr.data_end) and
        # [rows_mark, wr.rows_end) of ``wr`` (the marks follow the writer, two cycles behind): a read
        # that reaches into either waits.
        data_mark, rows_mark = Signal(addr_bits + 1), Signal(addr_bits + 1)

        def unwritten(spad, addr, count):
            addr = addr[:addr_bits]
            end = addr + count
            data_left = (spad == wr.data_spad) & (data_mark < wr.data_end) & (addr < wr.data_end) & (end > data_mark)
            rows_left = ~spad & (rows_mark < wr.rows_end) & (addr < wr.rows_end) & (end > rows_mark)
            return pend_valid & (data_left | rows_left)

        # ------------------------------------------------------------ control
        start_streams = Signal()   # pulse: feeder and side feeder begin, the writer takes the instruction
        front_done = Signal()      # every operand of the instruction fed has gone into the unit
        scalar_start = Signal()
        scalar_done = Signal()
        scan_start = Signal()
        scan_done = Signal()
        e_max = Signal(signed(16))
        with m.FSM(name="control") as control:
            with m.State("IDLE"):
                m.d.comb += [self.instruction.ready.eq(1), self.overlap.eq(wr_valid)]
                with m.If(self.instruction.valid):
                    m.d.sync += ins.eq(self.instruction.payload)
                    m.next = "DECODE"
            with m.State("DECODE"):
                # V_SCALE_MUL works on rows alone (its cols field is unused)
                empty_job = (rows == 0) | ((cols == 0) & (opcode != Opcode.V_SCALE_MUL))
                with m.If(~writer_free & (empty_job | scan_job | scalar_job)):
                    pass   # until the instruction before is done
                with m.Elif(empty_job):
                    m.next = "FINISH"
                with m.Elif((opcode == Opcode.V_ROPE) & ((ins.addr3 == 0) | ins.addr3[0] | (ins.addr3 >= 1 << 16))):
                    m.d.comb += self.error.eq(1)
                    m.next = "STOPPED"
                with m.Elif(scan_job):
                    m.d.comb += scan_start.eq(1)
                    m.next = "SCAN"
                with m.Elif(scalar_job):
                    m.d.comb += scalar_start.eq(1)
                    m.next = "SCALAR"
                with m.Else():
                    m.next = "UNIT"
            with m.State("SCAN"):
                with m.If(scan_done):
                    with m.If(scalar_job):
                        m.d.comb += scalar_start.eq(1)
                        m.next = "SCALAR"
                    with m.Else():
                        m.next = "UNIT"
            with m.State("SCALAR"):
                with m.If(scalar_done):
                    m.next = "SETTLE"
            with m.State("UNIT"):
                # the vector unit's instruction, then the streams (the wide requantizer needs none)
                job = unit.c.payload
                m.d.comb += [
                    unit.c.valid.eq(~wide),
                    job.op.eq(op),
                    job.length.eq(cols),
                    job.rows.eq(rows),
                    job.causal.eq(flags[Flag.CAUSAL.bit_length() - 1]),
                    # imm + 1 keys, at most cols (a larger imm, 16 bits or more, allows them all)
                    job.allowed.eq(Mux(flags[Flag.CAUSAL.bit_length() - 1], first_end, 0)),
                    job.position.eq(ins.imm),
                    job.eps.eq(ins.imm),
                    job.inv_len_m.eq(_unpack_m(ins.addr3)),
                    job.inv_len_e.eq(_unpack_e(ins.addr3)),
                    job.fold.eq(fused_fold),
                ]
                m.d.comb += job.out_width.eq(Mux(output == _Output.INT8, OutWidth.INT8, OutWidth.INT32))
                with m.If(unit.c.ready | wide):
                    m.d.comb += start_streams.eq(1)
                    m.next = "STREAMS"
            with m.State("STREAMS"):
                # the writer finishes the instruction (and strobes ``done``) from here
                with m.If(front_done):
                    m.next = "IDLE"
            with m.State("SETTLE"):
                with m.If(acc_out.idle & spad_out.idle):
                    m.next = "FINISH"
            with m.State("FINISH"):
                # the last row write reached the SRAM in the cycle before
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
            with m.State("STOPPED"):
                pass  # until the core's next start resets the sequencer

        # ------------------------------------------------------------ feeder
        feed_row = Signal(16)
        feed_pass = Signal(2)
        feed_c0 = Signal(16)
        feed_base = Signal(32)   # element address of the row being fed
        feeding = Signal()
        with m.If(start_streams):
            m.d.sync += [feeding.eq(1), feed_row.eq(0), feed_pass.eq(0), feed_c0.eq(0), feed_base.eq(ins.addr0)]
        source_ready = Mux(from_spad, spad_source.request.ready, acc_source.request.ready)
        feed_next_row = Signal()
        feed_end = _row_end(m, "feed_end", start_streams, first_end, feed_next_row, trimmed, cols)
        for reader in (acc_source, spad_source):
            m.d.comb += [reader.request.payload.addr.eq(feed_base + feed_c0),
                         reader.request.payload.count.eq(chunk_count(feed_c0))]
        feed_blocked = unwritten(from_spad, feed_base + feed_c0, chunk_count(feed_c0))
        with m.If(feeding & ~feed_blocked):
            with m.If(from_spad):
                m.d.comb += spad_source.request.valid.eq(1)
            with m.Else():
                m.d.comb += acc_source.request.valid.eq(1)
            with m.If(source_ready):
                m.d.sync += feed_c0.eq(feed_c0 + C)
                with m.If(feed_c0 + C >= feed_end):
                    m.d.sync += [feed_c0.eq(0), feed_pass.eq(feed_pass + 1)]
                    with m.If(feed_pass == passes - 1):
                        m.d.comb += feed_next_row.eq(1)
                        m.d.sync += [feed_pass.eq(0), feed_row.eq(feed_row + 1), feed_base.eq(feed_base + ins.stride0)]
                        with m.If(feed_row == rows - 1):
                            m.d.sync += feeding.eq(0)
        # the feeder's beats and the side beats go to the unit, or to the wide requantizer (below)
        lanes_in = data.View(lane_input_layout(C), unit.i.payload)
        feed_valid, feed_ready = Signal(), Signal()
        side_valid, side_ready = Signal(), Signal()
        m.d.comb += [unit.i.valid.eq(feed_valid & ~wide), unit.s.valid.eq(side_valid & ~wide)]
        with m.If(~wide):
            m.d.comb += [feed_ready.eq(unit.i.ready), side_ready.eq(unit.s.ready)]
        with m.If(from_spad):
            m.d.comb += [feed_valid.eq(spad_source.response.valid),
                         spad_source.response.ready.eq(feed_ready)]
            for lane in range(C):
                m.d.comb += lanes_in[lane].eq(spad_source.response.payload.data.word_select(lane, 8).as_signed())
        with m.Else():
            m.d.comb += [feed_valid.eq(acc_source.response.valid),
                         acc_source.response.ready.eq(feed_ready)]
            for lane in range(C):
                m.d.comb += lanes_in[lane].eq(acc_source.response.payload.data.word_select(lane, 32).as_signed())

        # ------------------------------------------------------------ side feeder: reads
        side_request = side_source.request.payload
        side_tag = data.View(_side_tag, side_request.tag)
        side_row = Signal(16)
        side_c0 = Signal(16)
        side_step = Signal(2)   # 0: row scale (first chunk of a row), 1: first operand, 2: bias
        side_active = Signal()
        other_base = Signal(32)
        needs_row_scale = (side == _Side.ROW_COL) | (side == _Side.ROW)
        bias_base = Mux(side == _Side.GAMMA, ins.addr2, ins.addr3) + cols
        needs_bias = has_bias & ((side == _Side.ROW_COL) | (side == _Side.ROW) | (side == _Side.GAMMA))
        # the row scales come a chunk of C rows a read, before the first beat of each C-th row
        chunk_start = (side_row + 1)[:max(1, (C - 1).bit_length())] == 0 if C > 1 else Const(1)
        with m.If(start_streams & (side != _Side.NONE)):
            m.d.sync += [side_active.eq(1), side_row.eq(0), side_c0.eq(0), other_base.eq(ins.addr2),
                         side_step.eq(Mux(needs_row_scale, 0, 1))]
        # Column operands (scales, bias, gamma/beta, value scales) are the same for every row: the
        # first row to read a chunk keeps it in the side cache, and later rows read only their row
        # scale (the first row reads them all but where a causal softmax's rows grow).
        cacheable = Signal()
        m.d.sync += cacheable.eq((side != _Side.OTHER) & (cols <= self.side_cache_chunks * C))
        filled = Signal(self.side_cache_chunks)
        side_chunk_index = (side_c0 >> (C.bit_length() - 1))[:max(1, (self.side_cache_chunks - 1).bit_length())]
        from_cache = cacheable & filled.bit_select(side_chunk_index, 1)
        side_next_row = Signal()
        side_end = _row_end(m, "side_end", start_streams, first_end, side_next_row, trimmed, cols)
        with m.If(start_streams):
            m.d.sync += filled.eq(0)

        # the scalar path and the exponent scan use the same reader
        scalar_read = Signal()
        scalar_addr = Signal(32)
        scalar_count = Signal(range(C + 1))
        with m.If(side_active):
            with m.Switch(side_step):
                with m.Case(0):
                    m.d.comb += [side_request.addr.eq(ins.addr2 + side_row),
                                 side_request.count.eq(Mux(rows - side_row < C, rows - side_row, C)),
                                 side_tag.field.eq(_Field.ROW_SCALE)]
                with m.Case(1):
                    first_addr = Mux(side == _Side.OTHER, other_base,
                                     Mux((side == _Side.ROW_COL) | fused_fold, ins.addr3, ins.addr2)) + side_c0
                    m.d.comb += [side_request.addr.eq(first_addr), side_request.count.eq(chunk_count(side_c0)),
                                 side_tag.field.eq(_Field.FIRST), side_tag.last.eq(~needs_bias),
                                 side_tag.fill.eq(cacheable)]
                with m.Default():
                    m.d.comb += [side_request.addr.eq(bias_base + side_c0), side_request.count.eq(chunk_count(side_c0)),
                                 side_tag.field.eq(_Field.BIAS), side_tag.last.eq(1), side_tag.fill.eq(cacheable)]
            # ROW without bias has no column read: the row scale alone makes every beat of the row
            row_only = (side == _Side.ROW) & ~needs_bias
            with m.If((side_step == 1) & row_only):
                m.d.comb += [side_request.count.eq(0), side_tag.field.eq(_Field.FIRST), side_tag.last.eq(1)]
            with m.If((side_step == 1) & from_cache):
                m.d.comb += [side_request.count.eq(0), side_tag.field.eq(_Field.FIRST), side_tag.last.eq(1),
                             side_tag.cached.eq(1), side_tag.fill.eq(0)]
            side_blocked = unwritten(Const(0, 1), side_request.addr, side_request.count)
            m.d.comb += side_source.request.valid.eq(~side_blocked)
            with m.If(side_source.request.ready & ~side_blocked):
                next_chunk = Signal()
                with m.Switch(side_step):
                    with m.Case(0):
                        m.d.sync += side_step.eq(1)
                    with m.Case(1):
                        with m.If(needs_bias & ~from_cache):
                            m.d.sync += side_step.eq(2)
                        with m.Else():
                            m.d.comb += next_chunk.eq(1)
                    with m.Default():
                        m.d.comb += next_chunk.eq(1)
                with m.If(next_chunk):
                    m.d.sync += [side_c0.eq(side_c0 + C), side_step.eq(1)]
                    with m.If(cacheable):
                        m.d.sync += filled.bit_select(side_chunk_index, 1).eq(1)
                    with m.If(side_c0 + C >= side_end):
                        m.d.comb += side_next_row.eq(1)
                        m.d.sync += [side_c0.eq(0), side_row.eq(side_row + 1), other_base.eq(other_base + ins.imm),
                                     side_step.eq(Mux(needs_row_scale & chunk_start, 0, 1))]
                        with m.If(side_row == rows - 1):
                            m.d.sync += side_active.eq(0)
        with m.Elif(scalar_read):
            m.d.comb += [side_source.request.valid.eq(1), side_request.addr.eq(scalar_addr),
                         side_request.count.eq(scalar_count), side_tag.field.eq(_Field.SCALAR)]

        # ------------------------------------------------------------ side feeder: beats
        response = side_source.response.payload
        response_tag = data.View(_side_tag, response.tag)
        words = [response.data.word_select(lane, 32) for lane in range(C)]
        row_m = Signal(signed(16))
        row_e = Signal(signed(16))
        row_scales = Signal(32 * (C - 1) if C > 1 else 1)   # the chunk's next rows' scales
        first = Signal(32 * C)   # the first operand chunk, kept while the bias chunk comes
        side_beat = data.View(side_layout(C), unit.s.payload)
        scalar_word = Signal(32 * C)
        scalar_valid = Signal()
        m.d.comb += scalar_valid.eq(side_source.response.valid & (response_tag.field == _Field.SCALAR))
        m.d.comb += scalar_word.eq(response.data)
        with m.If(side_source.response.valid):
            with m.Switch(response_tag.field):
                with m.Case(_Field.ROW_SCALE):
                    m.d.comb += side_source.response.ready.eq(1)
                    m.d.sync += [row_m.eq(_unpack_m(words[0])), row_e.eq(_unpack_e(words[0]))]
                    if C > 1:
                        m.d.sync += row_scales.eq(response.data[32:])
                with m.Case(_Field.FIRST, _Field.BIAS):
                    with m.If(~response_tag.last):
                        m.d.comb += side_source.response.ready.eq(1)
                        m.d.sync += first.eq(response.data)
                    with m.Else():
                        m.d.comb += [side_valid.eq(1), side_source.response.ready.eq(side_ready)]
                with m.Case(_Field.SCALAR):
                    pass  # taken by the scalar path or the scan below
        # the side cache: one entry per chunk of the row, written by the first row's responses
        side_chunk = Signal(range(self.side_cache_chunks))
        side_chunk_c0 = Signal(16)
        m.submodules.cache_first = cache_first = memory.Memory(shape=32 * C, depth=self.side_cache_chunks, init=[])
        m.submodules.cache_bias = cache_bias = memory.Memory(shape=32 * C, depth=self.side_cache_chunks, init=[])
        cached_first = cache_first.read_port(domain="comb")
        cached_bias = cache_bias.read_port(domain="comb")
        fill_first = cache_first.write_port()
        fill_bias = cache_bias.write_port()
        response_taken = side_source.response.valid & side_source.response.ready
        m.d.comb += [cached_first.addr.eq(side_chunk), cached_bias.addr.eq(side_chunk),
                     fill_first.addr.eq(side_chunk), fill_bias.addr.eq(side_chunk),
                     fill_first.data.eq(response.data), fill_bias.data.eq(response.data),
                     fill_first.en.eq(response_taken & response_tag.fill & (response_tag.field == _Field.FIRST)),
                     fill_bias.en.eq(response_taken & response_tag.fill & (response_tag.field == _Field.BIAS))]
        beat_next_row = Signal()
        beat_end = _row_end(m, "side_beat_end", start_streams, first_end, beat_next_row, trimmed, cols)
        with m.If(start_streams):
            m.d.sync += [side_chunk.eq(0), side_chunk_c0.eq(0)]
        with m.Elif(side_valid & side_ready):
            m.d.sync += [side_chunk.eq(side_chunk + 1), side_chunk_c0.eq(side_chunk_c0 + C)]
            with m.If(side_chunk_c0 + C >= beat_end):
                m.d.comb += beat_next_row.eq(1)
                m.d.sync += [side_chunk.eq(0), side_chunk_c0.eq(0)]
                if C > 1:   # the next row's scale (after a chunk's last row, its read replaces it)
                    m.d.sync += [row_m.eq(_unpack_m(row_scales[:32])), row_e.eq(_unpack_e(row_scales[:32])),
                                 row_scales.eq(row_scales[32:])]
        # the first operand's chunk and the bias chunk of this beat
        column = Mux(response_tag.cached, cached_first.data,
                     Mux(response_tag.field == _Field.BIAS, first, response.data))
        bias = Mux(response_tag.cached, Mux(needs_bias, cached_bias.data, 0),
                   Mux(response_tag.field == _Field.BIAS, response.data, 0))
        for lane in range(C):
            word = column.word_select(lane, 32)
            b = side_beat[lane]
            with m.Switch(side):
                with m.Case(_Side.OTHER):
                    m.d.comb += b.b.eq(word.as_signed())
                with m.Case(_Side.ROW_COL):
                    product = Signal(signed(32), name=f"scale_product{lane}")
                    m.d.comb += product.eq(row_m * _unpack_m(word))
                    m.d.comb += [b.m.eq(product >> SCALE_BITS),
                                 b.e.eq(_clamp8(row_e + _unpack_e(word) + SCALE_BITS)),
                                 b.b.eq(bias.word_select(lane, 32).as_signed())]
                with m.Case(_Side.ROW):
                    m.d.comb += [b.m.eq(row_m), b.e.eq(_clamp8(row_e)),
                                 b.b.eq(bias.word_select(lane, 32).as_signed())]
                with m.Case(_Side.GAMMA):
                    m.d.comb += [b.m.eq(_unpack_m(word)), b.e.eq(_clamp8(_unpack_e(word))),
                                 b.b.eq(bias.word_select(lane, 32).as_signed())]
                with m.Case(_Side.FOLD):
                    m.d.comb += [b.m.eq(_unpack_m(word)), b.e.eq(_clamp8(_unpack_e(word) - e_max))]
        if self.wide_requant:
            # a beat goes in when both its operand row and its side beat are there
            job_in = requant.i.payload
            m.d.comb += [requant.i.valid.eq(wide & feed_valid & side_valid)]
            with m.If(wide):
                m.d.comb += [feed_ready.eq(requant.i.ready & side_valid), side_ready.eq(requant.i.ready & feed_valid)]
            add = op == Op.ADD   # x * 1 + the other row
            for lane in range(C):
                m.d.comb += [job_in.acc[lane].eq(lanes_in[lane]),
                             job_in.mult[lane].eq(Mux(add, 1, side_beat[lane].m)),
                             job_in.exp[lane].eq(Mux(add, 0, side_beat[lane].e)),
                             job_in.bias[lane].eq(side_beat[lane].b)]

        # ------------------------------------------------------------ the front's end
        # reads asked of each reader and not yet answered: with none, and the feeders done, every
        # operand of the instruction has gone into the unit (or the wide requantizer)
        waiting = []
        for name, reader in (("acc", acc_source), ("spad", spad_source), ("side", side_source)):
            asked = reader.request.valid & reader.request.ready
            answered = reader.response.valid & reader.response.ready
            count = Signal(range(2 * reader.depth + 2), name=f"{name}_unanswered")
            with m.If(asked & ~answered):
                m.d.sync += count.eq(count + 1)
            with m.Elif(answered & ~asked):
                m.d.sync += count.eq(count - 1)
            waiting.append(count != 0)
        m.d.comb += front_done.eq(~feeding & ~side_active & ~Cat(*waiting).any())

        # ------------------------------------------------------------ exponent scan
        scan_c0 = Signal(16)
        scan_base = Signal(32)
        scanning = Signal()
        # the columns not received yet, and which lanes of the next chunk hold one: registers,
        # worked out as the chunk before arrives, so the lane masks in front of the tree of maxima
        # need no subtraction (cols - received and its comparisons were the FPGA chip's critical
        # path, docs/architecture.md "The FPGA chip")
        scan_left = Signal(17)
        scan_lanes = Signal(C)
        with m.If(scan_start):
            m.d.sync += [scanning.eq(1), scan_c0.eq(0), e_max.eq(-(1 << 15)),
                         scan_left.eq(cols), scan_lanes.eq(Cat(*[cols > lane for lane in range(C)])),
                         scan_base.eq(Mux(opcode == Opcode.V_FOLD_V, ins.addr2, Mux(fused_fold, ins.addr3, ins.imm)))]
        scan_issue = Signal()
        with m.If(scanning & (scan_c0 < cols)):
            m.d.comb += [scalar_read.eq(1), scalar_addr.eq(scan_base + scan_c0), scalar_count.eq(chunk_count(scan_c0)),
                         scan_issue.eq(side_source.request.ready)]
        with m.If(scan_issue):
            m.d.sync += scan_c0.eq(scan_c0 + C)
        with m.If(scanning & scalar_valid):
            m.d.comb += side_source.response.ready.eq(1)
            chunk_max = Signal(signed(16))
            candidates = [Mux(scan_lanes[lane], _unpack_e(words[lane]), -(1 << 15)) for lane in range(C)]
            # a tree of maxima, log2(C) compare-and-selects deep: as a chain of C - 1 it was the
            # chip's critical path (docs/architecture.md, "Chip")
            while len(candidates) > 1:
                pairs = zip(candidates[0::2], candidates[1::2], strict=False)
                candidates = [Mux(b > a, b, a) for a, b in pairs] + candidates[len(candidates) & ~1:]
            m.d.comb += chunk_max.eq(candidates[0])
            m.d.sync += [e_max.eq(Mux(chunk_max > e_max, chunk_max, e_max)), scan_left.eq(scan_left - C),
                         scan_lanes.eq(Cat(*[scan_left > lane + C for lane in range(C)]))]
            with m.If(scan_left <= C):
                m.d.sync += scanning.eq(0)
                m.d.comb += scan_done.eq(1)

        # ------------------------------------------------------------ scalar path (V_SCALE_MUL, V_ATTN_SCALE)
        scalar_row = Signal(16)
        p_m = Signal(signed(16))
        p_e = Signal(signed(16))
        numerator = Signal(31)     # restoring division (2**29 - 1) // n15
        divisor = Signal(16)
        quotient = Signal(16)
        step = Signal(2)
        shift = Signal(signed(8))  # bit_length(total) - 15
        rows_run = Signal()        # the scalar path runs a V_ATTN_SCALE or a V_SCALE_MUL
        last_write = Signal()
        to_write = Signal()
        r_m = Signal(signed(32))
        r_e = Signal(signed(16))
        out_word = Signal(32)
        write_scalar = Signal()
        const_m, const_e = _unpack_m(ins.addr3), _unpack_e(ins.addr3)
        attn = opcode == Opcode.V_ATTN_SCALE
        # RoPE: rows x heads x chunks of up to C pairs, streamed. A *reader* walks the chunks
        # and asks for each one's first elements, second elements and frequencies (three reads,
        # one a cycle, as far ahead as the side reader's response buffer allows); its destination,
        # pair count and position go into a small FIFO. The three words of a chunk gather in a
        # staging register while the chunk before runs. A chunk then goes through
        # phase -> sine -> rotation (a register after each) `rope_pairs` pairs a cycle into one
        # of two output banks (chunk i into bank i % 2, once the writes of chunk i - 2 are done),
        # and a *writer* sends each full bank as two writes (first halves, second halves) while
        # the next chunk fills the other. The sine table is two ROM-like arrays (knots, slopes).
        R = self.rope_pairs
        steps_bits = max(1, (C // R - 1).bit_length())
        head_dim = ins.addr3[:16]
        half = head_dim[1:16]
        rope = opcode == Opcode.V_ROPE
        rope_start = Signal()
        rope_done = Signal()
        sine = nx.sine_table()
        knots = Array(Const(k, signed(18)) for k in sine.knots[:-1])
        slopes = Array(Const(sine.knots[i + 1] - k, signed(18)) for i, k in enumerate(sine.knots[:-1]))

        def sine_at(turns):
            index = turns[sine.frac_bits:sine.frac_bits + sine.index_bits]
            frac = turns[:sine.frac_bits]
            return knots[index] + ((slopes[index] * frac) >> sine.frac_bits)

        def rotate(a, b, c, s):
            """saturate(round_shift(a*c - b*s, TRIG_FRAC))"""
            wide = a * c - b * s
            rounded = (wide + (1 << (nx.TRIG_FRAC - 1))) >> nx.TRIG_FRAC
            return Mux(rounded > (1 << 31) - 1, (1 << 31) - 1, Mux(rounded < -(1 << 31), -(1 << 31), rounded))

        # the reader: the chunk it asks for next
        rd_active = Signal()
        rd_k = Signal(2)           # which of the chunk's three reads
        rd_pair = Signal(16)       # the chunk's first pair within the head
        rd_head = Signal(16)       # element offset of the head in the row
        rd_row = Signal(16)
        rd_src = Signal(32)        # element address of the row
        rd_dst = Signal(32)
        rd_position = Signal(32)   # the row's token position
        rd_pairs = Mux(half - rd_pair < C, half - rd_pair, C)
        rd_after = rd_pair + rd_pairs
        rd_head_done = rd_after >= half
        rd_row_done = rd_head_done & (rd_head + head_dim >= cols)
        rd_last = rd_row_done & (rd_row == rows - 1)
        rd_x1 = rd_src + rd_head + rd_pair
        chunk_meta = data.StructLayout({"dst": 32, "pairs": range(C + 1), "position": 32, "last": 1})
        m.submodules.rope_meta = rope_meta = SyncFIFOBuffered(width=chunk_meta.size, depth=4)
        meta_in = data.View(chunk_meta, rope_meta.w_data)
        meta_out = data.View(chunk_meta, rope_meta.r_data)
        with m.If(rope_start):
            m.d.sync += [rd_active.eq(1), rd_k.eq(0), rd_pair.eq(0), rd_head.eq(0), rd_row.eq(0),
                         rd_src.eq(ins.addr0), rd_dst.eq(ins.addr1), rd_position.eq(ins.imm)]
        m.d.comb += [meta_in.dst.eq(rd_dst + rd_head + rd_pair), meta_in.pairs.eq(rd_pairs),
                     meta_in.position.eq(rd_position), meta_in.last.eq(rd_last)]
        with m.If(rd_active & ((rd_k != 0) | rope_meta.w_rdy)):
            m.d.comb += [scalar_read.eq(1), scalar_count.eq(rd_pairs),
                         scalar_addr.eq(Mux(rd_k == 0, rd_x1, Mux(rd_k == 1, rd_x1 + half, ins.addr2 + rd_pair)))]
            with m.If(side_source.request.ready):
                m.d.comb += rope_meta.w_en.eq(rd_k == 0)
                m.d.sync += rd_k.eq(rd_k + 1)
                with m.If(rd_k == 2):
                    m.d.sync += [rd_k.eq(0), rd_pair.eq(Mux(rd_head_done, 0, rd_after))]
                    with m.If(rd_head_done):
                        m.d.sync += rd_head.eq(rd_head + head_dim)
                        with m.If(rd_row_done):
                            m.d.sync += [rd_head.eq(0), rd_row.eq(rd_row + 1), rd_position.eq(rd_position + 1),
                                         rd_src.eq(rd_src + ins.stride0), rd_dst.eq(rd_dst + ins.stride1)]
                    with m.If(rd_last):
                        m.d.sync += rd_active.eq(0)

        # staging: a chunk's three words as they come
        staged = Signal(2)
        stage_x1, stage_x2, stage_f = (Signal(32 * C, name=f"rope_stage_{n}") for n in ("x1", "x2", "f"))
        # the chunk running: its words (lowest pairs next), steps left, bank, position
        run_valid = Signal()
        run_x1, run_x2, run_f = (Signal(32 * C, name=f"rope_run_{n}") for n in ("x1", "x2", "f"))
        run_step = Signal(steps_bits)
        run_last_step = Signal(steps_bits)
        run_bank = Signal()
        run_position = Signal(32)
        # the output banks: taken by a chunk (until written), full (every result in), what to write
        bank_taken = Signal(2)
        bank_full = Signal(2)
        bank_dst = [Signal(32, name=f"rope_dst{b}") for b in range(2)]
        bank_pairs = [Signal(range(C + 1), name=f"rope_pairs{b}") for b in range(2)]
        bank_last = Signal(2)
        out1 = [Signal(32 * C, name=f"rope_out1_{b}") for b in range(2)]
        out2 = [Signal(32 * C, name=f"rope_out2_{b}") for b in range(2)]
        next_bank = Signal()       # the bank the next chunk takes
        write_bank = Signal()      # the bank the writer sends next
        write_second = Signal()    # its second halves are next
        with m.If(rope_start):
            m.d.sync += [staged.eq(0), run_valid.eq(0), bank_taken.eq(0), bank_full.eq(0), next_bank.eq(0),
                         write_bank.eq(0), write_second.eq(0)]
        with m.If(rope & scalar_valid & (staged != 3)):
            m.d.comb += side_source.response.ready.eq(1)
            m.d.sync += staged.eq(staged + 1)
            with m.Switch(staged):
                with m.Case(0):
                    m.d.sync += stage_x1.eq(scalar_word)
                with m.Case(1):
                    m.d.sync += stage_x2.eq(scalar_word)
                with m.Default():
                    m.d.sync += stage_f.eq(scalar_word)
        issuing = run_valid
        finishing = issuing & (run_step == run_last_step)
        bank_free = Mux(next_bank, ~bank_taken[1], ~bank_taken[0])
        load = (staged == 3) & rope_meta.r_rdy & (~run_valid | finishing) & bank_free
        with m.If(issuing):
            m.d.sync += [run_x1.eq(run_x1 >> (32 * R)), run_x2.eq(run_x2 >> (32 * R)), run_f.eq(run_f >> (32 * R)),
                         run_step.eq(run_step + 1)]
            with m.If(finishing):
                m.d.sync += run_valid.eq(0)
        with m.If(load):
            steps = (meta_out.pairs + (R - 1)) >> (R.bit_length() - 1)
            m.d.comb += rope_meta.r_en.eq(1)
            m.d.sync += [staged.eq(0), run_valid.eq(1), run_x1.eq(stage_x1), run_x2.eq(stage_x2), run_f.eq(stage_f),
                         run_step.eq(0), run_last_step.eq(steps - 1), run_bank.eq(next_bank),
                         run_position.eq(meta_out.position), next_bank.eq(~next_bank)]
            for b in range(2):
                with m.If(next_bank == b):
                    m.d.sync += [bank_taken[b].eq(1), bank_dst[b].eq(meta_out.dst), bank_pairs[b].eq(meta_out.pairs),
                                 bank_last[b].eq(meta_out.last)]
        # phase -> sine -> rotation, R pairs a cycle
        s1 = {"valid": Signal(name="rope_s1_valid"), "step": Signal(steps_bits, name="rope_s1_step"),
              "bank": Signal(name="rope_s1_bank"), "full": Signal(name="rope_s1_full")}
        s2 = {"valid": Signal(name="rope_s2_valid"), "step": Signal(steps_bits, name="rope_s2_step"),
              "bank": Signal(name="rope_s2_bank"), "full": Signal(name="rope_s2_full")}
        m.d.sync += [s1["valid"].eq(issuing), s1["step"].eq(run_step), s1["bank"].eq(run_bank),
                     s1["full"].eq(finishing)]
        m.d.sync += [s2[k].eq(s1[k]) for k in s1]
        rotated1, rotated2 = [], []
        for k in range(R):
            x1, x2 = (Signal(signed(32), name=f"rope_x{n}_{k}") for n in (1, 2))
            phase = Signal(32, name=f"rope_phase{k}")
            sx1, sx2 = (Signal(signed(32), name=f"rope_sx{n}_{k}") for n in (1, 2))
            sin, cos = Signal(signed(18), name=f"rope_sin{k}"), Signal(signed(18), name=f"rope_cos{k}")
            m.d.sync += [
                x1.eq(run_x1.word_select(k, 32).as_signed()), x2.eq(run_x2.word_select(k, 32).as_signed()),
                phase.eq((run_position * run_f.word_select(k, 32))[:32]),
                sx1.eq(x1), sx2.eq(x2),
                sin.eq(sine_at(phase)), cos.eq(sine_at((phase + (1 << 30))[:32])),
            ]
            rotated1.append(rotate(sx1, sx2, cos, sin)[:32])
            rotated2.append(rotate(sx2, -sx1, cos, sin)[:32])
        with m.If(s2["valid"]):
            for b in range(2):
                with m.If(s2["bank"] == b):
                    m.d.sync += [out1[b].word_select(s2["step"], 32 * R).eq(Cat(*rotated1)),
                                 out2[b].word_select(s2["step"], 32 * R).eq(Cat(*rotated2))]
                    with m.If(s2["full"]):
                        m.d.sync += bank_full[b].eq(1)
        # the writer: each full bank's first halves, then its second halves
        rope_write = Signal()
        m.d.comb += [rope_write.eq(rope & Mux(write_bank, bank_full[1], bank_full[0])), write_scalar.eq(rope_write)]
        write_addr = Signal(32)
        write_count = Signal(range(C + 1))
        write_data = Signal(32 * C)
        m.d.comb += [write_addr.eq(Mux(write_bank, bank_dst[1], bank_dst[0]) + Mux(write_second, half, 0)),
                     write_count.eq(Mux(write_bank, bank_pairs[1], bank_pairs[0])),
                     write_data.eq(Mux(write_second, Mux(write_bank, out2[1], out2[0]),
                                       Mux(write_bank, out1[1], out1[0])))]
        with m.If(rope_write & acc_out.request.ready):
            m.d.sync += write_second.eq(~write_second)
            with m.If(write_second):
                m.d.sync += write_bank.eq(~write_bank)
                for b in range(2):
                    with m.If(write_bank == b):
                        m.d.sync += [bank_full[b].eq(0), bank_taken[b].eq(0)]
                        with m.If(bank_last[b]):
                            m.d.comb += rope_done.eq(1)

        with m.FSM(name="scalar"):
            with m.State("IDLE"):
                with m.If(scalar_start):
                    m.d.sync += scalar_row.eq(0)
                    with m.If(rope):
                        m.d.comb += rope_start.eq(1)
                        m.next = "ROPE"
                    with m.Else():
                        m.next = "ROWS"
            with m.State("ROPE"):
                with m.If(rope_done):
                    m.d.comb += scalar_done.eq(1)
                    m.next = "IDLE"
            with m.State("ROWS"):
                m.d.comb += rows_run.eq(1)
                with m.If(last_write):
                    m.d.comb += scalar_done.eq(1)
                    m.next = "IDLE"

        # The per-row scale instructions, rows in a pipeline. V_ATTN_SCALE, a row a division (4
        # cycles): the rows' sums and P scales come in chunks of up to C rows (two reads a chunk,
        # the next chunk's once the last row of this one is picked); a row is *picked* from the
        # chunk into a register, *staged* (its sum normalised to 15 bits: the divisor and the
        # shift) while the row before divides, *divided*, then *combined* (the scale products) and
        # *written* while the next row divides. V_SCALE_MUL, a row a cycle: its scales in chunks
        # (one read a chunk), each picked straight into the combine register (the product).
        scale_mul = opcode == Opcode.V_SCALE_MUL
        attn_run = rows_run & attn
        reads = Mux(scale_mul, 1, 2)   # reads a chunk
        chunk_first = Signal(32 * C)   # V_ATTN_SCALE's sums, V_SCALE_MUL's scales
        chunk_ps = Signal(32 * C)      # V_ATTN_SCALE's P scales
        chunk_asked = Signal(2)      # the chunk's reads issued (first, then P scales)
        chunk_have = Signal(2)       # and answered, in the same order
        chunk_base = Signal(16)      # the chunk's first row
        pick_row = Signal(16)        # the next row to pick
        picked, picked_sum, picked_p, picked_row = Signal(), Signal(32), Signal(32), Signal(16)
        staged, staged_row = Signal(), Signal(16)
        staged_divisor, staged_shift = Signal(16), Signal(signed(8))
        staged_m, staged_e = Signal(signed(16)), Signal(signed(16))
        dividing, divide_row = Signal(), Signal(16)
        combining, combine_row = Signal(), Signal(16)
        combine_q, combine_shift = Signal(16), Signal(signed(8))
        combine_m, combine_e = Signal(signed(16)), Signal(signed(16))
        write_pending = Signal()
        with m.If(scalar_start):
            m.d.sync += [chunk_asked.eq(0), chunk_have.eq(0), chunk_base.eq(0), pick_row.eq(0), picked.eq(0),
                         staged.eq(0), dividing.eq(0), combining.eq(0), write_pending.eq(0)]
        chunk_rows = Mux(rows - chunk_base < C, rows - chunk_base, C)
        with m.If(rows_run & (chunk_asked != reads) & (chunk_base < rows)):
            m.d.comb += [scalar_read.eq(1), scalar_count.eq(chunk_rows),
                         scalar_addr.eq(Mux(chunk_asked == 0, ins.addr0, ins.addr2) + chunk_base)]
            with m.If(side_source.request.ready):
                m.d.sync += chunk_asked.eq(chunk_asked + 1)
        with m.If(rows_run & scalar_valid):
            m.d.comb += side_source.response.ready.eq(1)
            with m.If(chunk_have == 0):
                m.d.sync += chunk_first.eq(scalar_word)
            with m.Else():
                m.d.sync += chunk_ps.eq(scalar_word)
            m.d.sync += chunk_have.eq(chunk_have + 1)

        # stage: normalise the picked row's sum to 15 bits
        to_stage = attn_run & picked & ~staged
        with m.If(to_stage):
            length = Signal(6)
            for bit in range(32):
                with m.If(picked_sum[bit]):
                    m.d.comb += length.eq(bit + 1)
            m.d.sync += [staged.eq(1), staged_row.eq(picked_row), picked.eq(0),
                         staged_shift.eq(length - SCALE_BITS),
                         staged_divisor.eq(Mux(length >= SCALE_BITS, picked_sum >> (length - SCALE_BITS)[:6],
                                               picked_sum << (SCALE_BITS - length)[:6])),
                         staged_m.eq(_unpack_m(picked_p)), staged_e.eq(_unpack_e(picked_p))]
        # pick: the next row out of the chunk
        in_chunk = Signal(range(C))
        m.d.comb += in_chunk.eq(pick_row - chunk_base)
        pick = Signal()
        with m.If(rows_run & (chunk_have == reads) & (pick_row < rows)):
            with m.If(scale_mul):
                m.d.comb += pick.eq(~combining | to_write)
            with m.Else():
                m.d.comb += pick.eq(~picked | to_stage)
        with m.If(pick):
            m.d.sync += pick_row.eq(pick_row + 1)
            with m.If((in_chunk == C - 1) | (pick_row == rows - 1)):
                m.d.sync += [chunk_have.eq(0), chunk_asked.eq(0), chunk_base.eq(chunk_base + C)]
        with m.If(pick & attn):
            m.d.sync += [picked.eq(1), picked_row.eq(pick_row),
                         picked_sum.eq(chunk_first.word_select(in_chunk, 32)),
                         picked_p.eq(chunk_ps.word_select(in_chunk, 32))]

        # write, then combine (the combine register empties into the write register)
        write_taken = Signal()
        with m.If(rows_run & write_pending):
            m.d.comb += [write_scalar.eq(1), out_word.eq(Cat(r_m[:16], r_e[:16])),
                         write_taken.eq(acc_out.request.ready)]
            with m.If(acc_out.request.ready):
                m.d.sync += write_pending.eq(0)
        m.d.comb += last_write.eq(write_taken & (scalar_row == rows - 1))
        m.d.comb += to_write.eq(rows_run & combining & (~write_pending | write_taken))
        with m.If(to_write):
            m.d.sync += [scalar_row.eq(combine_row), write_pending.eq(1), combining.eq(0)]
            with m.If(scale_mul):
                # the row's scale x the constant
                m.d.sync += [r_m.eq((combine_m * const_m) >> SCALE_BITS), r_e.eq(combine_e + const_e + SCALE_BITS)]
            with m.Else():
                # (rm, re) = reciprocal x constant; then P scale (exponent + largest V exponent) x that
                rm = (combine_q.as_signed() * const_m) >> SCALE_BITS
                re = -29 - combine_shift + const_e + SCALE_BITS
                m.d.sync += [r_m.eq((combine_m * rm) >> SCALE_BITS), r_e.eq(combine_e + e_max + re + SCALE_BITS)]
        with m.If(pick & scale_mul):
            word = chunk_first.word_select(in_chunk, 32)
            m.d.sync += [combining.eq(1), combine_row.eq(pick_row), combine_m.eq(_unpack_m(word)),
                         combine_e.eq(_unpack_e(word))]

        # divide: four quotient bits per cycle, two radix-4 restoring steps, most significant first
        # (quotient < 2**16), each taking the largest of divisor x {3, 2, 1} << b that fits
        def radix4(rest, low, name):
            once, twice, thrice = (Signal(33, name=f"{name}_{k}") for k in ("once", "twice", "thrice"))
            m.d.comb += [once.eq(divisor << low), twice.eq(divisor << (low + 1)), thrice.eq(once + twice)]
            digit = Mux(rest >= thrice, 3, Mux(rest >= twice, 2, Mux(rest >= once, 1, 0)))
            taken = Mux(rest >= thrice, thrice, Mux(rest >= twice, twice, Mux(rest >= once, once, 0)))
            left = Signal(31, name=f"{name}_left")
            m.d.comb += left.eq(rest - taken)
            return left, digit
        high, low = Signal(4), Signal(4)   # the two digits' bit positions
        m.d.comb += [high.eq(14 - 4 * step), low.eq(12 - 4 * step)]
        middle, high_digit = radix4(numerator, high, "divide_high")
        rest, low_digit = radix4(middle, low, "divide_low")
        digits = quotient | (high_digit << high) | (low_digit << low)
        finishing = dividing & (step == 3)
        # the last step waits while the combine register is still full
        advance = attn_run & dividing & (~finishing | ~combining | to_write)
        with m.If(advance):
            m.d.sync += [numerator.eq(rest), quotient.eq(digits), step.eq(step + 1)]
            with m.If(finishing):
                m.d.sync += [dividing.eq(0), combining.eq(1), combine_q.eq(digits), combine_shift.eq(shift),
                             combine_m.eq(p_m), combine_e.eq(p_e), combine_row.eq(divide_row)]
        with m.If(attn_run & staged & (~dividing | (finishing & advance))):
            m.d.sync += [dividing.eq(1), divide_row.eq(staged_row), staged.eq(0),
                         numerator.eq((1 << 29) - 1), quotient.eq(0), step.eq(0),
                         divisor.eq(staged_divisor), shift.eq(staged_shift), p_m.eq(staged_m), p_e.eq(staged_e)]

        # ------------------------------------------------------------ writer
        # The writer's instruction: the one fed last, or the one before it until that is done (then
        # the next comes out of ``pend``). Done is strobed two cycles after the last write is taken,
        # when it has reached the SRAM.
        fed = Signal(writer_layout)
        fed_row_result = _has_row_result(output)
        m.d.comb += [fed.output.eq(output), fed.wide.eq(wide), fed.addr1.eq(ins.addr1),
                     fed.addr2.eq(Mux(output == _Output.ROW_MAX, ins.imm, ins.addr2)),
                     fed.stride1.eq(ins.stride1), fed.rows.eq(rows), fed.cols.eq(cols),
                     fed.data_spad.eq((output == _Output.QUANT) | (output == _Output.INT8)),
                     fed.data_end.eq(ins.addr1 + span_dst + Mux(word_a_row, 1, cols)),
                     fed.rows_end.eq(ins.addr2 + Mux(fed_row_result, rows, 0)),
                     fed.end0.eq(first_end), fed.grow.eq(trimmed)]
        writing = Signal()     # the writer stores ``wr``'s results
        finished = Signal()    # its last write reached the SRAM in the cycle before
        with m.If(finished):
            m.d.sync += [finished.eq(0), wr_valid.eq(0)]
            m.d.comb += self.done.eq(1)
        with m.Elif(wr_valid & ~writing & acc_out.idle & spad_out.idle):
            m.d.sync += finished.eq(1)
        load_writer = (~wr_valid | finished) & (pend_valid | start_streams)
        following = Signal(writer_layout)   # what the writer takes next: the pending one first
        m.d.comb += following.eq(Mux(pend_valid, pend, fed))
        with m.If(load_writer):
            m.d.sync += [wr.eq(following), wr_valid.eq(1)]
        with m.If(start_streams & ~(load_writer & ~pend_valid)):
            m.d.sync += [pend.eq(fed), pend_valid.eq(1)]
        with m.Elif(load_writer & pend_valid):
            m.d.sync += pend_valid.eq(0)
        m.d.comb += self.busy.eq(~control.ongoing("IDLE") | wr_valid | pend_valid)

        out = data.View(output_layout(C), unit.o.payload)
        out_valid = Signal()
        out_data = Signal(out.data.shape())
        out_row = Signal(16)
        out_c0 = Signal(16)
        out_base = Signal(32)
        row_phase = Signal()  # the row's last beat: its data is written, the row result is next
        beat_taken = Signal()
        # past where the unit's row ends (a causal softmax's last allowed key) the beats are zeros
        # the unit does not give, one a cycle; the row's sum came with its last beat from the unit
        out_end = _row_end(m, "out_end", load_writer, following.end0, beat_taken & (out_c0 + C >= wr.cols),
                           wr.grow, wr.cols)
        padding = out_c0 >= out_end
        unit_sum = Signal(32)
        m.d.comb += [out_valid.eq(unit.o.valid | padding), out_data.eq(Mux(padding, 0, out.data))]
        if self.wide_requant:
            with m.If(wr.wide):
                m.d.comb += [out_valid.eq(requant.o.valid), out_data.eq(requant.o.payload)]
        with m.If(load_writer):
            m.d.sync += [writing.eq(1), out_row.eq(0), out_c0.eq(0), row_phase.eq(0),
                         out_base.eq(following.addr1)]
        # the marks: what the writer has written of ``wr`` is below them (addresses rise row after
        # row unless rows overlap: then nothing counts as written until ``wr`` is done); a new
        # instruction in the writer starts them at its first addresses
        row_scales_out = (wr.output == _Output.ROW_SCALE) | (wr.output == _Output.QUANT_SCALES)   # a word a row
        cols_written = Mux(row_scales_out, 1, wr.cols)
        rising = (wr.stride1 >= cols_written) | (wr.rows <= 1)
        data_mark_1, rows_mark_1 = Signal(addr_bits + 1), Signal(addr_bits + 1)
        with m.If(load_writer):
            m.d.sync += [data_mark_1.eq(following.addr1), data_mark.eq(following.addr1),
                         rows_mark_1.eq(following.addr2), rows_mark.eq(following.addr2)]
        with m.Else():
            m.d.sync += [data_mark_1.eq(Mux(rising, out_base + out_c0, wr.addr1)), data_mark.eq(data_mark_1),
                         rows_mark_1.eq(wr.addr2 + out_row), rows_mark.eq(rows_mark_1)]
        wr_last_chunk = out_c0 + C >= wr.cols
        wr_count = Mux(wr.cols - out_c0 < C, wr.cols - out_c0, C)
        last_beat = wr_last_chunk | row_scales_out
        has_row_result = _has_row_result(wr.output)
        int8_out = (wr.output == _Output.QUANT) | (wr.output == _Output.INT8)
        acc_request = acc_out.request.payload
        spad_request = spad_out.request.payload
        scale_word = Cat(out.m, out.e.as_signed()[:8], out.e.as_signed()[7].replicate(8))   # the packed (m, e)
        # the row's largest |result| so far (ROW_MAX), the beat being written included once it is
        # taken: the row result the cycle after the row's last beat. Lanes past the row's end are
        # zero (the readers zero a run past its count, operand and bias alike), so every lane counts.
        row_max = Signal(32)
        magnitudes = []
        for lane in range(C):
            value = out_data[lane].as_signed()
            magnitudes.append(Mux(value < 0, -value, value)[:32])   # |-2**31| is 2**31
        while len(magnitudes) > 1:
            pairs = [magnitudes[i:i + 2] for i in range(0, len(magnitudes), 2)]
            magnitudes = [maximum(*p) if len(p) == 2 else p[0] for p in pairs]
        beat_max = magnitudes[0]
        row_result = Signal(32)    # after a row: its scale, the softmax's row sum or its largest |result|
        m.d.comb += row_result.eq(Mux(wr.output == _Output.SOFTMAX, Mux(padding, unit_sum, out.value[:32]),
                                      Mux(wr.output == _Output.ROW_MAX, row_max, scale_word)))
        row_word = Signal(32)      # a row's one word: the norm's scale, or the quantization's requantization scale
        m.d.comb += row_word.eq(Mux(wr.output == _Output.QUANT_SCALES, out.value[:32], scale_word))
        # int8 results: V_QUANT's are within +-127; V_REQUANT8's saturate here (the wide requantizer
        # saturates at 32 bits)
        int8_lanes = []
        for lane in range(C):
            value = out_data[lane]
            fits = value[7:].all() | ~value[7:].any()
            int8_lanes.append(Mux(fits, value[:8], Mux(value[-1], 0x80, 0x7F)))
        with m.If(write_scalar):
            m.d.comb += acc_out.request.valid.eq(1)
            with m.If(rope):
                m.d.comb += [acc_request.addr.eq(write_addr[:acc_mask_bits]), acc_request.count.eq(write_count),
                             acc_request.data.eq(write_data)]
            with m.Else():
                m.d.comb += [acc_request.addr.eq((ins.addr1 + scalar_row)[:acc_mask_bits]), acc_request.count.eq(1),
                             acc_request.data.eq(out_word)]
        with m.Elif(writing & out_valid):
            with m.If(~row_phase):
                with m.If(int8_out):
                    m.d.comb += [spad_out.request.valid.eq(1),
                                 spad_request.addr.eq((out_base + out_c0)[:spad_mask_bits]),
                                 spad_request.count.eq(wr_count),
                                 spad_request.data.eq(Cat(int8_lanes))]
                with m.Elif(row_scales_out):
                    m.d.comb += [acc_out.request.valid.eq(1), acc_request.addr.eq(out_base[:acc_mask_bits]),
                                 acc_request.count.eq(1), acc_request.data.eq(row_word)]
                with m.Else():
                    m.d.comb += [acc_out.request.valid.eq(1),
                                 acc_request.addr.eq((out_base + out_c0)[:acc_mask_bits]),
                                 acc_request.count.eq(wr_count),
                                 acc_request.data.eq(out_data.as_value())]
                data_accepted = Mux(int8_out, spad_out.request.ready, acc_out.request.ready)
                with m.If(data_accepted):
                    m.d.sync += row_max.eq(Mux(out_c0 == 0, beat_max, maximum(beat_max, row_max)))
                    with m.If(~padding):
                        m.d.sync += unit_sum.eq(out.value[:32])
                    with m.If(last_beat & has_row_result):
                        m.d.sync += row_phase.eq(1)
                    with m.Else():
                        m.d.comb += beat_taken.eq(1)
            with m.Else():
                m.d.comb += [acc_out.request.valid.eq(1), acc_request.addr.eq((wr.addr2 + out_row)[:acc_mask_bits]),
                             acc_request.count.eq(1), acc_request.data.eq(row_result)]
                with m.If(acc_out.request.ready):
                    m.d.sync += row_phase.eq(0)
                    m.d.comb += beat_taken.eq(1)
        m.d.comb += unit.o.ready.eq(beat_taken & ~wr.wide & ~padding)
        if self.wide_requant:
            m.d.comb += requant.o.ready.eq(beat_taken & wr.wide)
        with m.If(beat_taken):
            m.d.sync += out_c0.eq(out_c0 + C)
            with m.If(last_beat):
                m.d.sync += [out_c0.eq(0), out_row.eq(out_row + 1), out_base.eq(out_base + wr.stride1)]
                with m.If(out_row == wr.rows - 1):
                    m.d.sync += writing.eq(0)
        return m
