"""The vector unit's instruction word and stream payloads: one definition for the RTL and the compiler.

An instruction names an operation (:class:`Op`) and the shape of the job: ``rows`` rows of
``length`` elements. The operand rows arrive on the unit's ``i`` stream, ``lanes`` elements per
beat (the last beat of a row may be partial); an operation that needs ``passes`` passes over a row
(:data:`PASSES`) reads each row that many times in a row, so the SRAM reader sends it again.
Per-column operands (the second addend, multipliers, gamma/beta, the RoPE partner) arrive on the
``s`` ("side") stream, one beat per output beat, for the operations in :data:`NEEDS_SIDE`.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

__all__ = ["Op", "OutWidth", "Instruction", "PASSES", "NEEDS_SIDE", "ELEMENTWISE", "REDUCTIONS", "SHORT_PATH",
           "MAX_FIRST", "MAX_ABS_FIRST", "VALUE_BITS", "lane_input_layout", "side_layout", "output_layout", "passes",
           "row_ends"]

#: Width of the wide representation (int32) on every lane.
VALUE_BITS = 32
#: Width of the per-row scalar result (sums of up to 2**16 int32 values).
ROW_VALUE_BITS = 48


class Op(enum.Enum, shape=5):
    """What the vector unit computes (the golden function each equals, bit for bit)."""

    REQUANT = 0      #: ``requantize(x, m, e, bias=b, out_bits)`` per element
    ADD = 1          #: ``add(x, b)`` (saturating residual add)
    MUL = 2          #: ``mul(x, b)``
    GELU = 3         #: ``gelu(x)``
    SILU = 4         #: ``silu(x)``
    EXP = 5          #: ``exp_neg(x)``, x <= 0
    ROPE = 6         #: ``rope``: x*cos -/+ partner*sin, partner on the side stream's ``b``
    MAX = 7          #: ``row_max``: one output beat per row, result in ``value``
    SUM = 8          #: ``row_sum``
    MAX_ABS = 9      #: ``row_max_abs``
    SUM_SQUARES = 10  #: ``row_sum_squares``: ``value`` = sum of (x >> s)**2; ``m``, ``e`` = ``rms_scale(x, eps)``
    QUANTIZE = 11    #: ``quantize_rows``: int8 in ``data``, row scale in ``m``, ``e``
    SOFTMAX = 12     #: ``softmax`` with a prefix (optionally causal) mask
    RMSNORM = 13     #: ``rmsnorm``; gamma (m, e) and bias on the side stream
    LAYERNORM = 14   #: ``layernorm``; gamma (m, e) and beta on the side stream
    SOFTMAX_EXP = 15  #: ``softmax_exp``: e in ``data``, the row sum in ``value`` of the row's last beat
    QUANT_SCALE = 16  #: ``quant_scales``: one beat a row, the row scale in ``m``, ``e`` and the
    #: requantization scale that quantizes the row, packed (``recip`` low, its exponent high), in ``value``


class OutWidth(enum.Enum, shape=2):
    """Saturation width of ``REQUANT`` (every other operation saturates to int32)."""

    INT8 = 0
    INT16 = 1
    INT32 = 2


#: Passes over each row (the row is streamed this many times).
PASSES = {op: 1 for op in Op} | {
    Op.SUM_SQUARES: 2, Op.QUANTIZE: 2, Op.SOFTMAX_EXP: 2, Op.SOFTMAX: 3, Op.RMSNORM: 3, Op.LAYERNORM: 3}
#: Operations that take one side-stream beat per beat of their last pass.
NEEDS_SIDE = (Op.REQUANT, Op.ADD, Op.MUL, Op.ROPE, Op.RMSNORM, Op.LAYERNORM)
#: Operations that emit one beat per input beat of their last pass.
ELEMENTWISE = (Op.REQUANT, Op.ADD, Op.MUL, Op.GELU, Op.SILU, Op.EXP, Op.ROPE, Op.QUANTIZE,
               Op.SOFTMAX, Op.SOFTMAX_EXP, Op.RMSNORM, Op.LAYERNORM)
#: Operations that emit one beat per row (the result in ``value``).
REDUCTIONS = (Op.MAX, Op.SUM, Op.MAX_ABS, Op.SUM_SQUARES, Op.QUANT_SCALE)
#: Single-pass operations whose every step is in the output segment (F): the unit sends their
#: beats from issue straight to F, past the per-row segments they would only ride through.
SHORT_PATH = (Op.REQUANT, Op.ADD, Op.MUL, Op.GELU, Op.SILU, Op.ROPE)
#: Operations whose first pass only looks for the row's largest value (of the keys it allows, for
#: the softmaxes) ...
MAX_FIRST = (Op.MAX, Op.SOFTMAX, Op.SOFTMAX_EXP)
#: ... or for its largest magnitude. A unit narrower than a beat takes such a pass's beats whole,
#: each reduced to one piece on the way in (:class:`rtl.vector.narrow.NarrowVectorUnit`).
MAX_ABS_FIRST = (Op.MAX_ABS, Op.QUANTIZE, Op.RMSNORM, Op.SUM_SQUARES, Op.QUANT_SCALE)


def passes(op: Op) -> int:
    return PASSES[Op(op)]


def row_ends(op: Op, length: int, rows: int, allowed: int = 0, causal: int = 0) -> list[int]:
    """Where each row of a job ends for a unit built with ``trim_masked``: a softmax row at its
    last allowed key (``allowed``, one more a row with ``causal``; the keys after it are masked,
    their results 0), every other row at ``length``. Such a unit takes and emits each pass of a
    row only up to there; whoever feeds it leaves the rest out, and whoever stores its results
    writes the rest as zeros."""
    if Op(op) not in (Op.SOFTMAX, Op.SOFTMAX_EXP) or not allowed:
        return [length] * rows
    return [min(allowed + r * bool(causal), length) for r in range(rows)]


class Instruction(data.Struct):
    """One vector-unit job: ``rows`` rows of ``length`` elements.

    ``allowed`` (SOFTMAX, SOFTMAX_EXP): keys ``0 .. allowed-1`` of the first row take part, 0 means all;
    with ``causal`` set each following row allows one more. ``position`` (ROPE): the token
    position of every row. ``eps`` (norms): ``eps_q = round(eps * H * 4**FRAC)``.
    ``inv_len_m``, ``inv_len_e`` (LAYERNORM): the scale of ``1/H``. ``fold`` (SOFTMAX_EXP): each
    result is ``requantize(e, m, e_side)`` with the side stream's per-column ``m``, ``e`` (attention's
    value-scale fold, ``V_FOLD_V``, on the output stage); the row sum stays that of ``e``. Rows or
    length 0: no-op.
    """

    op: Op
    out_width: OutWidth
    causal: unsigned(1)
    length: unsigned(16)
    rows: unsigned(16)
    allowed: unsigned(16)
    position: unsigned(16)
    eps: unsigned(32)
    inv_len_m: signed(16)
    inv_len_e: signed(8)
    fold: unsigned(1)


def lane_input_layout(lanes: int) -> data.ArrayLayout:
    """One beat of the operand row: ``lanes`` wide (int32) values."""
    return data.ArrayLayout(signed(VALUE_BITS), lanes)


def side_layout(lanes: int) -> data.ArrayLayout:
    """One beat of per-column operands: ``b`` (addend, multiplicand, bias/beta, RoPE partner),
    ``m`` and ``e`` (a requantization multiplier and exponent, or gamma's scale)."""
    return data.ArrayLayout(data.StructLayout({
        "b": signed(VALUE_BITS), "m": signed(16), "e": signed(8)}), lanes)


def output_layout(lanes: int) -> data.StructLayout:
    """One output beat: ``lanes`` results, and the row's scalar result and scale.

    ``value``: the reduction (MAX, SUM, MAX_ABS, SUM_SQUARES; SOFTMAX_EXP's row sum on the row's
    last beat, 0 on the others; QUANT_SCALE's packed requantization scale); ``m``, ``e``: the row
    scale of QUANTIZE and QUANT_SCALE, or the norm's row scale of SUM_SQUARES
    (:func:`golden.ops.rms_scale`, with the instruction's ``eps``). Lanes past the row's end are 0.
    """
    return data.StructLayout({
        "data": data.ArrayLayout(signed(VALUE_BITS), lanes),
        "value": signed(ROW_VALUE_BITS),
        "m": signed(16),
        "e": signed(8),
    })
