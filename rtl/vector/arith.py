"""Combinational integer helpers shared by the vector unit's stages (golden's rounding, exactly).

Each returns an Amaranth value; none holds state. ``round_shift`` and ``saturate`` have the
meaning of the functions of the same name in ``golden/ops.py``.
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal, Value, signed

from scoville.numerics import PwlTable

__all__ = ["Lockstep", "bit_length", "round_shift", "saturate", "clamp", "maximum", "pwl_lookup", "any_of",
           "shift_add_multiply", "const_multiply"]


class Lockstep:
    """Pipeline registers that all move on one shared ``advance`` signal.

    A *slot* is a dict of field name -> value (or list of values, one per lane); :meth:`stage`
    registers every field. Because every stage moves together, the number of stages between two
    slots never changes: a per-row result that one slot leaves in a register at stage ``k`` is
    seen by every later slot when it reaches stage ``k``.
    """

    def __init__(self, m: Module, advance: Signal):
        self.m, self.advance = m, advance
        self.depth = 0

    def reg(self, value, name: str) -> Signal:
        value = Value.cast(value)
        reg = Signal(value.shape(), name=name)
        with self.m.If(self.advance):
            self.m.d.sync += reg.eq(value)
        return reg

    def stage(self, slot: dict) -> dict:
        self.depth += 1
        out = {}
        for key, value in slot.items():
            if isinstance(value, list):
                out[key] = [self.reg(v, f"p{self.depth}_{key}{n}") for n, v in enumerate(value)]
            else:
                out[key] = self.reg(value, f"p{self.depth}_{key}")
        return out

    def latch(self, when, fields: dict, prefix: str) -> dict:
        """Registers loaded from ``fields`` when the pipeline advances and ``when`` holds."""
        out = {}
        for key, value in fields.items():
            value = Value.cast(value)
            reg = Signal(value.shape(), name=f"{prefix}_{key}")
            with self.m.If(self.advance & when):
                self.m.d.sync += reg.eq(value)
            out[key] = reg
        return out


def any_of(value, choices) -> Value:
    """``value`` equals one of ``choices``."""
    terms = [value == c for c in choices]
    out = terms[0]
    for t in terms[1:]:
        out = out | t
    return out


def maximum(a, b) -> Value:
    return Mux(a > b, a, b)


def clamp(x, lo: int, hi: int) -> Value:
    return Mux(x > hi, hi, Mux(x < lo, lo, x))


def saturate(x, bits: int = 32) -> Value:
    """Clamp to the signed ``bits``-bit range, as ``signed(bits)``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return clamp(x, lo, hi).as_signed()[:bits].as_signed()


def bit_length(m: Module, x) -> Signal:
    """Number of bits of a non-negative value (0 for 0): a priority encoder."""
    x = Value.cast(x)
    width = len(x)
    n = Signal(range(width + 1))
    for i in range(width):
        with m.If(x[i]):
            m.d.comb += n.eq(i + 1)
    return n


def round_shift(x, s, max_shift: int = 62) -> Value:
    """``(x + 2**(s-1)) >> s`` for unsigned ``s`` in [1, max_shift], ``x`` for ``s == 0``,
    computed as ``((x >> (s-1)) + 1) >> 1`` so no wider sum is needed; ``s`` must already be
    clamped to ``max_shift``."""
    x = Value.cast(x)
    s = Value.cast(s)
    s_minus_1 = (s - 1).as_unsigned()[:len(s)]
    return Mux(s == 0, x, ((x >> s_minus_1) + 1) >> 1)


def pwl_lookup(table: PwlTable, index) -> tuple[Value, Value]:
    """The knot at ``index`` and the slope to the next one (``knots[i+1] - knots[i]``)."""
    knots = table.knots
    base = Array(Const(k, signed(18)) for k in knots[:-1])
    slope = Array(Const(knots[i + 1] - knots[i], signed(18)) for i in range(len(knots) - 1))
    return base[index], slope[index]


def shift_add_multiply(a, b, width: int | None = None) -> Value:
    """``a * b`` as a sum of shifted copies of ``a``, one per bit of ``b`` (a small operand):
    carry-chain adders instead of a DSP block, for narrow products. ``b`` may be signed (its top
    bit then weighs ``-2**(n-1)``). With ``width``, the sum is taken modulo ``2**width``."""
    a, b = Value.cast(a), Value.cast(b)
    n = len(b)
    terms = []
    for i in range(n):
        term = Mux(b[i], a << i, 0)
        if width is not None:
            term = term[:width]
        terms.append(-term if (b.shape().signed and i == n - 1) else term)
    while len(terms) > 1:
        pairs = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0] if width is None else terms[0][:width]


def const_multiply(a, constant: int) -> Value:
    """``a * constant`` (a non-negative constant) as a sum of shifted copies of ``a``."""
    a = Value.cast(a)
    terms = [a << i for i in range(constant.bit_length()) if (constant >> i) & 1]
    while len(terms) > 1:
        pairs = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]
