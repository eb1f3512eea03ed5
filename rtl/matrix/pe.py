"""Processing element of the weight-stationary systolic array."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """One int8 x int8 multiply-accumulate cell with two weight registers (double buffer).

    Activations travel left to right with the bank tag that says which of the two weights they
    meet; partial sums travel top to bottom.

    Parameters
    ----------
    psum_width : int
        Width of the partial sums (enough for a column of products without overflow).

    Ports
    -----
    activation_in, bank_in : In
        Activation and its weight-bank tag from the left neighbour (or the input skew).
    activation_out, bank_out : Out
        The same, registered, to the right neighbour (1 cycle).
    psum_in : In(signed(psum_width))
        Partial sum from the cell above (0 for the top row).
    psum_out : Out(signed(psum_width))
        ``psum_in + activation * weight[bank]``; the product is registered first, so the sum of
        an activation that arrives in cycle t leaves in cycle t + 3 (t + 1 ``activation_out``,
        t + 2 product register, t + 3 ``psum_out``).
    weight, weight_write : In
        ``weight_write[b]`` loads ``weight`` into bank ``b`` at the next clock edge. The bank is
        read in the cycle ``bank_in`` arrives (one cycle before the multiply).
    """

    def __init__(self, psum_width: int):
        if not isinstance(psum_width, int) or psum_width < 16:
            raise ValueError(f"psum_width must be an integer >= 16, got {psum_width!r}")
        self.psum_width = psum_width
        super().__init__({
            "activation_in": In(signed(8)),
            "bank_in": In(1),
            "activation_out": Out(signed(8)),
            "bank_out": Out(1),
            "psum_in": In(signed(psum_width)),
            "psum_out": Out(signed(psum_width)),
            "weight": In(signed(8)),
            "weight_write": In(2),
        })

    def elaborate(self, platform):
        m = Module()
        # Every register here is data: whether a row or a weight tile is valid is the array's
        # bookkeeping (its row flags and bank states), which a reset clears. So these need no
        # reset (on an FPGA the core's flush stays off their flip-flops).
        weights = [Signal(signed(8), name=f"weight{bank}", reset_less=True) for bank in range(2)]
        selected_weight = Signal(signed(8), reset_less=True)
        product = Signal(signed(16), reset_less=True)
        activation = Signal(signed(8), reset_less=True)
        bank = Signal(reset_less=True)
        psum = Signal(signed(self.psum_width), reset_less=True)
        for index, weight in enumerate(weights):
            with m.If(self.weight_write[index]):
                m.d.sync += weight.eq(self.weight)
        m.d.sync += [
            activation.eq(self.activation_in),
            bank.eq(self.bank_in),
            # The bank is chosen in the cycle before the multiply, so both multiplier inputs come
            # straight from registers (the bank mux sat on the ECP5 critical path).
            selected_weight.eq(Mux(self.bank_in, weights[1], weights[0])),
            # A register after the multiplier keeps the DSP and the adder's carry chain in
            # separate cycles.
            product.eq(activation * selected_weight),
            psum.eq(self.psum_in + product),
        ]
        m.d.comb += [self.activation_out.eq(activation), self.bank_out.eq(bank), self.psum_out.eq(psum)]
        return m
