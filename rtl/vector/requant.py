"""Requantizer: int32 accumulators to int8/int16/int32 with multiplier, shift, bias, saturation."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Requantizer", "requant_input_layout"]

#: Widths of the per-lane operands (the contract of :func:`golden.ops.requantize`).
ACC_BITS = 32
MULT_BITS = 16
EXP_BITS = 8
BIAS_BITS = 32
PRODUCT_BITS = ACC_BITS + MULT_BITS
MAX_LEFT_SHIFT = 15


def requant_input_layout(lanes: int) -> data.StructLayout:
    """One row of ``lanes`` requantization jobs: accumulator, multiplier, exponent, bias."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(ACC_BITS), lanes),
        "mult": data.ArrayLayout(signed(MULT_BITS), lanes),
        "exp": data.ArrayLayout(signed(EXP_BITS), lanes),
        "bias": data.ArrayLayout(signed(BIAS_BITS), lanes),
    })


class Requantizer(wiring.Component):
    """``saturate(round_shift(acc * mult, -exp) + bias, out_bits)`` on ``lanes`` lanes.

    Bit-exact with :func:`golden.ops.requantize`: the rounding is half up
    (``(p + 2**(s-1)) >> s``), right shifts of 48 or more give 0, positive exponents (at most
    15) shift left, and the sum with the bias saturates to ``out_bits``. One shifter does both
    directions: ``h = (p * 2**16) >> min(15 - e, 63)`` is ``p * 2**(e+1)``, rounded down, so
    ``(h + 1) >> 1`` is ``p * 2**e`` for ``e >= 0`` and ``p`` rounded half up by ``-e`` bits
    below (a right and a left shifter and their selection were about a third more logic).

    Parameters
    ----------
    lanes : int
        Values per row (the vector unit's width), at least 1.
    out_bits : int
        Output width: 8, 16 or 32.

    Ports
    -----
    i : In(stream.Signature(requant_input_layout(lanes)))
    o : Out(stream.Signature(data.ArrayLayout(signed(out_bits), lanes)))

    Latency: 3 cycles. Throughput: one row per cycle. The pipeline holds when ``o`` is stalled.
    """

    def __init__(self, lanes: int = 4, out_bits: int = 8):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
        if out_bits not in (8, 16, 32):
            raise ValueError(f"out_bits must be 8, 16 or 32, got {out_bits!r}")
        self.lanes = lanes
        self.out_bits = out_bits
        super().__init__({
            "i": In(stream.Signature(requant_input_layout(lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_bits), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        out_max = (1 << (self.out_bits - 1)) - 1
        out_min = -(1 << (self.out_bits - 1))

        # A stage moves when the stage after it is empty or moving; the output stage when the
        # consumer takes it. One `advance` for the whole pipeline keeps the control trivially
        # correct; bubbles inside are not collapsed.
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        valid1, valid2 = Signal(), Signal()
        product = [Signal(signed(PRODUCT_BITS), name=f"product{n}") for n in range(lanes)]
        shift1 = [Signal(range(64), name=f"shift1_{n}") for n in range(lanes)]
        bias1 = [Signal(signed(BIAS_BITS), name=f"bias1_{n}") for n in range(lanes)]
        # p * 2**(e + 1) spans PRODUCT_BITS + MAX_LEFT_SHIFT + 1 bits
        wide_bits = PRODUCT_BITS + MAX_LEFT_SHIFT + 1
        scaled = [Signal(signed(wide_bits), name=f"scaled{n}") for n in range(lanes)]
        bias2 = [Signal(signed(BIAS_BITS), name=f"bias2_{n}") for n in range(lanes)]

        with m.If(advance):
            m.d.sync += [valid1.eq(self.i.valid), valid2.eq(valid1), self.o.valid.eq(valid2)]
            for n in range(lanes):
                p = self.i.payload
                # 15 - exp, within [0, 63] (an exponent above 15 is outside the contract)
                right = MAX_LEFT_SHIFT - p.exp[n]
                m.d.sync += [
                    product[n].eq(p.acc[n] * p.mult[n]),
                    shift1[n].eq(Mux(right < 0, 0, Mux(right > 63, 63, right))),
                    bias1[n].eq(p.bias[n]),
                ]
                doubled = Signal(signed(wide_bits + 1), name=f"doubled{n}")   # p * 2**(e + 1)
                m.d.comb += doubled.eq(product[n].shift_left(MAX_LEFT_SHIFT + 1) >> shift1[n])
                m.d.sync += [scaled[n].eq((doubled + 1) >> 1), bias2[n].eq(bias1[n])]

                total = Signal(signed(wide_bits + 1), name=f"total{n}")
                m.d.comb += total.eq(scaled[n] + bias2[n])
                # the sum fits out_bits when its bits from out_bits - 1 up all equal its sign (two
                # comparisons with the bounds were two carry chains as long as the sum)
                high = total[self.out_bits - 1:]
                m.d.sync += self.o.payload[n].eq(Mux(high.all() | ~high.any(), total[:self.out_bits],
                                                     Mux(total[-1], out_min, out_max)))
        return m
