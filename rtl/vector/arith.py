"""Combinational integer helpers shared by the vector unit's stages (golden's rounding, exactly).

Each returns an Amaranth value; only :class:`Lockstep` (the pipeline registers and delay lines)
holds state. ``round_shift`` and ``saturate`` have the
meaning of the functions of the same name in ``golden/ops.py``.
"""

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib.memory import Memory

from scoville.numerics import PwlTable

__all__ = ["Lockstep", "Parked", "bit_length", "leading_one_chunks", "bit_length_of_chunks", "add_levels",
           "shift_add_terms", "round_shift", "saturate", "clamp", "maximum", "minimum", "pwl_lookup", "any_of",
           "shift_add_multiply", "const_multiply", "shift_right_low", "fits", "saturate_narrow"]


#: Delays shorter than this are register chains: a block RAM for two or three stages costs more
#: routing (a wide bus to a block-RAM row and back) than the flip-flops it saves.
SHORT_DELAY = 4


@dataclass(frozen=True)
class Parked:
    """Fields taken out of a :class:`Lockstep` pipeline at stage ``depth`` (see ``park``)."""

    depth: int
    fields: dict


class Lockstep:
    """Pipeline registers that all move on one shared ``advance`` signal.

    A *slot* is a dict of field name -> value (or list of values, one per lane); :meth:`stage`
    registers every field. Because every stage moves together, the number of stages between two
    slots never changes: a per-row result that one slot leaves in a register at stage ``k`` is
    seen by every later slot when it reaches stage ``k``.

    Only the :data:`CONTROL_FIELDS` of a slot have a reset: a reset (the core's flush, which
    restarts every unit) empties the pipeline by clearing them, and every other field is read
    only where they say the slot holds a beat, so its registers are ``reset_less`` (as the
    parked fields' block RAMs already are). Per-row registers (:meth:`latch`) are written by a
    row's beats before the row's later beats read them. On an FPGA this keeps the reset off the
    flip-flops of the datapath.
    """

    #: Slot fields that say whether the slot holds a beat: registered with a reset.
    CONTROL_FIELDS = ("valid",)

    def __init__(self, m: Module, advance: Signal, merge: int = 1):
        self.m, self.advance = m, advance
        #: stages registered so far: the pipeline's depth, and what park/unpark delays count
        self.depth = 0
        self.delay_lines = 0
        #: :meth:`stage` calls per register stage (1: each is a register stage)
        self.merge = merge
        self.stages = 0

    def park(self, fields: dict) -> "Parked":
        """Take ``fields`` out of the pipeline here; :meth:`unpark` gives them back further on.

        Values that a beat only carries across a segment (the lane values across the per-row
        scalar segments) would need a register per bit per stage; a parked slot waits in a
        memory instead (block RAM): one write and one read per advance. ``fields`` are values of
        the current stage (what :meth:`stage` returned), not the inputs of the next one.
        """
        return Parked(self.depth, dict(fields))

    def unpark(self, parked: "Parked") -> dict:
        """The fields of ``parked`` as they were when their beat was parked, aligned with the
        stage the beat has reached now (the stages added since :meth:`park`)."""
        delay = self.depth - parked.depth
        if delay < 0:
            raise ValueError(f"unpark before park (delay {delay})")
        keys, values = [], []
        for key, value in parked.fields.items():
            if isinstance(value, list):
                keys += [(key, n) for n in range(len(value))]
                values += [Value.cast(v) for v in value]
            else:
                keys.append((key, None))
                values.append(Value.cast(value))
        if delay < SHORT_DELAY:
            delayed = values
            for n in range(delay):
                delayed = [self.reg(v, f"unpark{parked.depth}_{n}_{i}") for i, v in enumerate(delayed)]
        else:
            delayed = self._delay_line(values, delay)
        out: dict = {}
        for (key, index), value in zip(keys, delayed, strict=True):
            if index is None:
                out[key] = value
            else:
                out.setdefault(key, []).append(value)
        return out

    def _delay_line(self, values: list, delay: int) -> list:
        # written when the beat is parked, read `delay - 1` advances later (the read port's own
        # register is the last stage); entries live `depth` advances, at least `delay`
        depth = 1 << (delay - 1).bit_length()
        width = sum(len(v) for v in values)
        # block RAM: a LUT-RAM delay line this wide costs more logic than the registers it saves
        memory = Memory(shape=width, depth=depth, init=[], attrs={"ram_style": "block"})
        self.m.submodules[f"delay_line{self.delay_lines}"] = memory
        self.delay_lines += 1
        write, read = memory.write_port(), memory.read_port(domain="sync")
        address_bits = (depth - 1).bit_length()
        # each delay line counts its own addresses (the read address delay - 1 behind the write
        # address), so no counter fans out to block RAMs all over the chip
        name = f"delay_line{self.delay_lines - 1}"
        write_address = Signal(address_bits, name=f"{name}_write")
        read_address = Signal(address_bits, name=f"{name}_read", init=(1 - delay) % depth)
        with self.m.If(self.advance):
            self.m.d.sync += [write_address.eq(write_address + 1), read_address.eq(read_address + 1)]
        self.m.d.comb += [
            write.addr.eq(write_address),
            write.data.eq(Cat(*values)),
            write.en.eq(self.advance),
            read.addr.eq(read_address),
            read.en.eq(self.advance),
        ]
        out, offset = [], 0
        for v in values:
            bits = read.data[offset:offset + len(v)]
            out.append(bits.as_signed() if v.shape().signed else bits)
            offset += len(v)
        return out

    def reg(self, value, name: str, reset: bool = False) -> Signal:
        """``value`` one advance later; without a reset unless ``reset`` (see the class)."""
        value = Value.cast(value)
        reg = Signal(value.shape(), name=name, reset_less=not reset)
        with self.m.If(self.advance):
            self.m.d.sync += reg.eq(value)
        return reg

    def stage(self, slot: dict, keep: bool = False) -> dict:
        """Register every field of ``slot`` (a value, a list of values, or a list of such lists:
        per lane, the partial sums of an adder tree).

        With ``merge`` > 1 only every ``merge``-th call registers (and those with ``keep``: a
        stage whose inputs include a synchronous memory's read data must stay one); the others
        return ``slot`` as it is, so their logic runs on into the next stage's in the same cycle.
        Every delay (:meth:`unpark`) and position (:meth:`latch`) counts register stages, so the
        pipeline means the same with fewer, longer stages."""
        self.stages += 1
        if not keep and self.stages % self.merge:
            return dict(slot)
        self.depth += 1

        def register(value, name, reset):
            if isinstance(value, list):
                return [register(v, f"{name}_{n}" if isinstance(v, list) else f"{name}{n}", reset)
                        for n, v in enumerate(value)]
            return self.reg(value, name, reset)

        return {key: register(value, f"p{self.depth}_{key}", key in self.CONTROL_FIELDS)
                for key, value in slot.items()}

    def latch(self, when, fields: dict, prefix: str) -> dict:
        """Registers loaded from ``fields`` when the pipeline advances and ``when`` holds."""
        out = {}
        for key, value in fields.items():
            value = Value.cast(value)
            reg = Signal(value.shape(), name=f"{prefix}_{key}", reset_less=True)
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
    """The larger of ``a`` and ``b``, selected by the sign of ``a - b`` (one carry chain and a
    multiplexer, where a comparison can put logic after the chain)."""
    a, b = Value.cast(a), Value.cast(b)
    return Mux((a - b)[-1], b, a)


def minimum(a, b) -> Value:
    """The smaller of ``a`` and ``b`` (see :func:`maximum`)."""
    a, b = Value.cast(a), Value.cast(b)
    return Mux((a - b)[-1], a, b)


def clamp(x, lo: int, hi: int) -> Value:
    return Mux(x > hi, hi, Mux(x < lo, lo, x))


def saturate(x, bits: int = 32) -> Value:
    """Clamp to the signed ``bits``-bit range, as ``signed(bits)``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return clamp(x, lo, hi).as_signed()[:bits].as_signed()


def leading_one_chunks(x, chunk: int = 16) -> list[tuple[Value, Value]]:
    """Per ``chunk``-bit slice of ``x`` (lowest first): (any bit set, index of its highest set
    bit). A log-depth tree of 2:1 multiplexers, no priority chain; the first half of
    :func:`bit_length`, to put a pipeline register between the halves."""
    x = Value.cast(x)

    def tree(bits: Value) -> tuple[Value, Value]:
        if len(bits) == 1:
            return bits[0], Const(0, 1)
        low_width = 1 << ((len(bits) - 1).bit_length() - 1)  # largest power of two below the width
        any_low, index_low = tree(bits[:low_width])
        any_high, index_high = tree(bits[low_width:])
        index_bits = (low_width - 1).bit_length()
        # the high half's index is below low_width: prefixing a 1 adds low_width, no adder
        index = Mux(any_high, Cat(index_high, Const(0, index_bits))[:index_bits] | low_width,
                    Cat(index_low, Const(0, index_bits))[:index_bits])
        return any_low | any_high, index

    return [tree(x[n:n + chunk]) for n in range(0, len(x), chunk)]


def bit_length_of_chunks(chunks: list, chunk: int = 16) -> Value:
    """The number of bits of the value that :func:`leading_one_chunks` split (0 for 0)."""
    n = Const(0, 1)
    for position, (any_set, index) in enumerate(chunks):
        n = Mux(any_set, index + (position * chunk + 1), n)
    return n


def bit_length(m: Module, x) -> Value:
    """Number of bits of a non-negative value (0 for 0): a log-depth leading-one detector."""
    return bit_length_of_chunks(leading_one_chunks(x))


def add_levels(terms: list, levels: int, width: int | None = None) -> list:
    """``levels`` levels of a pairwise adder tree over ``terms`` (the partial sums that remain);
    with ``width``, every sum is taken modulo ``2**width``."""
    terms = list(terms)
    for _ in range(levels):
        if len(terms) == 1:
            break
        pairs = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        if width is not None:
            pairs = [p[:width] for p in pairs]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms


def shift_add_terms(a, b, width: int | None = None) -> list:
    """The shifted copies of ``a`` that :func:`shift_add_multiply` adds up (sum them with
    :func:`add_levels`, a few levels per pipeline stage)."""
    a, b = Value.cast(a), Value.cast(b)
    n = len(b)
    terms = []
    for i in range(n):
        term = Mux(b[i], a << i, 0)
        if width is not None:
            term = term[:width]
        terms.append(-term if (b.shape().signed and i == n - 1) else term)
    return terms


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
    terms = shift_add_terms(a, b, width)
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


def shift_right_low(value, shift, width: int) -> Value:
    """The low ``width`` bits of ``value >> shift`` (arithmetic), as ``signed(width)``.

    A logarithmic shifter from the largest step down that keeps, after each step, only the bits
    the remaining steps can still bring into the low ``width``: fewer multiplexers than a full
    shift of ``value`` when ``width`` is much narrower.
    """
    value, shift = Value.cast(value), Value.cast(shift)
    value = value.as_signed() if value.shape().signed else value
    for k in reversed(range(len(shift))):
        keep = min(width + (1 << k) - 1, len(value))
        shifted = value.shift_right(1 << k) if (1 << k) < len(value) else Mux(value[-1], -1, 0)
        value = Mux(shift[k], shifted, value)[:keep]
        value = value.as_signed() if keep == len(value) else value
    return value[:width].as_signed()


def fits(x, bits: int) -> Value:
    """``x`` (signed) lies in the signed ``bits``-bit range: its bits from ``bits - 1`` up agree."""
    x = Value.cast(x)
    top = x[bits - 1:]
    return (top == 0) | (top == (1 << len(top)) - 1)


def saturate_narrow(x, bits: int) -> Value:
    """:func:`saturate` of a signed ``x`` by a sign check instead of two wide comparisons."""
    x = Value.cast(x)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(fits(x, bits), x[:bits], Mux(x[-1], lo, hi)).as_signed()[:bits].as_signed()


def product_pieces(a, b, piece: int = 17, small: int = 4) -> list[Value]:
    """``a * b`` as a list of partial products whose sum is the exact product: ``a`` and ``b`` cut
    into ``piece``-bit slices (unsigned, the top one signed when the operand is), one 18 x 18
    multiply (a DSP block) per pair of slices, already shifted into place; a slice of ``small``
    bits or fewer is multiplied by shift-and-add instead of a DSP. Register the pieces before
    adding them (:func:`add_levels`) so a DSP and a wide adder are never in one stage."""
    a, b = Value.cast(a), Value.cast(b)

    def slices(v: Value) -> list[tuple[Value, int]]:
        out = []
        for low in range(0, len(v), piece):
            s = v[low:low + piece]
            if low + piece >= len(v) and v.shape().signed:
                s = s.as_signed()
            out.append((s, low))
        return out

    pieces = []
    for sa, la in slices(a):
        for sb, lb in slices(b):
            if len(sb) <= small:
                p = shift_add_multiply(sa, sb)
            elif len(sa) <= small:
                p = shift_add_multiply(sb, sa)
            else:
                p = sa * sb
            pieces.append(p.shift_left(la + lb) if la + lb else p)
    return pieces
