"""cocotb helpers for ``amaranth.lib.stream`` ports: packing ``data`` layouts, sources, sinks.

Amaranth flattens a stream port ``i`` to ``i__valid``, ``i__ready`` and ``i__payload``; the
payload is the layout's bits, first field in the least significant bits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import data
from cocotb.triggers import RisingEdge


def _shape(field_shape) -> Any:
    return field_shape if isinstance(field_shape, data.Layout) else Shape.cast(field_shape)


def pack(layout, value) -> int:
    """Pack nested dicts/lists/ints into the integer bits of an Amaranth shape or layout."""
    shape = _shape(layout)
    if isinstance(shape, data.ArrayLayout):
        out = 0
        elem_width = Shape.cast(shape.elem_shape).width
        for n, item in enumerate(value):
            out |= pack(shape.elem_shape, item) << (n * elem_width)
        return out
    if isinstance(shape, data.StructLayout):
        out = 0
        for name, field in shape:
            out |= pack(field.shape, value[name]) << field.offset
        return out
    return int(value) & ((1 << shape.width) - 1)


def unpack(layout, bits: int):
    """Inverse of :func:`pack`: nested dicts/lists of Python ints (signed where the shape is)."""
    shape = _shape(layout)
    if isinstance(shape, data.ArrayLayout):
        elem_width = Shape.cast(shape.elem_shape).width
        return [unpack(shape.elem_shape, (bits >> (n * elem_width)) & ((1 << elem_width) - 1))
                for n in range(shape.length)]
    if isinstance(shape, data.StructLayout):
        return {name: unpack(field.shape, (bits >> field.offset) & ((1 << Shape.cast(field.shape).width) - 1))
                for name, field in shape}
    bits &= (1 << shape.width) - 1
    if shape.signed and bits >> (shape.width - 1):
        bits -= 1 << shape.width
    return bits


def pauses(probability: float, rng: random.Random) -> Iterator[bool]:
    """An endless pause pattern: True means 'idle this cycle'."""
    while True:
        yield rng.random() < probability


class StreamSource:
    """Drives a stream port from a queue of payloads, idling when ``pause`` says so.

    Handshakes are sampled at each rising edge (the values of the cycle that edge ends), as in
    cocotbext-axi; ``valid`` never waits for ``ready`` and holds, with its payload, until taken.
    """

    def __init__(self, dut, prefix: str, clk, layout, pause: Iterator[bool] | None = None):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk, self.layout, self.pause = clk, layout, pause
        self.queue: list[Any] = []
        self.sent = 0
        self.valid.value = 0

    def send(self, items) -> None:
        self.queue.extend(items)

    @property
    def idle(self) -> bool:
        return not self.queue

    async def run(self) -> None:
        driving = False
        while True:
            await RisingEdge(self.clk)
            if driving and int(self.ready.value):
                self.queue.pop(0)
                self.sent += 1
                driving = False
            if not driving:
                if self.queue and not (self.pause and next(self.pause)):
                    self.payload.value = pack(self.layout, self.queue[0])
                    self.valid.value = 1
                    driving = True
                else:
                    self.valid.value = 0


class StreamSink:
    """Accepts beats from a stream port, withholding ``ready`` when ``pause`` says so."""

    def __init__(self, dut, prefix: str, clk, layout, pause: Iterator[bool] | None = None,
                 on_beat: Callable[[Any], None] | None = None):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk, self.layout, self.pause, self.on_beat = clk, layout, pause, on_beat
        self.received: list[Any] = []
        self.ready.value = 0

    async def run(self) -> None:
        while True:
            await RisingEdge(self.clk)
            if int(self.ready.value) and int(self.valid.value):
                beat = unpack(self.layout, int(self.payload.value))
                self.received.append(beat)
                if self.on_beat:
                    self.on_beat(beat)
            self.ready.value = int(not (self.pause and next(self.pause)))
