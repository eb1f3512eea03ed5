"""Registered shift-in / shift-out wrapper so any block fits an FPGA's I/O pins for synthesis."""

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ShiftWrapper"]


class ShiftWrapper(wiring.Component):
    """Wraps ``inner`` behind two shift registers and four pins.

    Every input port of ``inner`` is driven by a bit of the input chain (``serial_in`` shifts in
    while ``shift``), every output port is captured into the output chain when ``capture`` is high
    and shifted out on ``serial_out``. The block's own paths therefore start and end at
    registers, as they would inside a chip, and no logic can be optimised away.

    Parameters
    ----------
    inner : wiring.Component
        The block to wrap (clocked by the wrapper's ``sync`` domain).

    Attributes
    ----------
    input_bits, output_bits : int
        Lengths of the two chains: the wrapper's flip-flops, to subtract from a report.
    """

    serial_in: In(1)
    shift: In(1)
    capture: In(1)
    serial_out: Out(1)

    def __init__(self, inner: wiring.Component):
        if not isinstance(inner, wiring.Component):
            raise TypeError(f"inner must be a wiring.Component, got {inner!r}")
        self.inner = inner
        self.inputs, self.outputs = [], []
        for _path, member, value in inner.signature.flatten(inner):
            (self.inputs if member.flow == wiring.In else self.outputs).append(Value.cast(value))
        self.input_bits = sum(len(value) for value in self.inputs)
        self.output_bits = sum(len(value) for value in self.outputs)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = self.inner
        input_chain = Signal(max(self.input_bits, 2))
        output_chain = Signal(max(self.output_bits, 2))
        with m.If(self.shift):
            m.d.sync += input_chain.eq(Cat(self.serial_in, input_chain[:-1]))
        m.d.comb += Cat(*self.inputs).eq(input_chain)
        with m.If(self.capture):
            m.d.sync += output_chain.eq(Cat(*self.outputs))
        with m.Elif(self.shift):
            m.d.sync += output_chain.eq(output_chain[1:])
        m.d.comb += self.serial_out.eq(output_chain[0])
        return m
