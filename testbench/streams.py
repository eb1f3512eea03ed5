"""cocotb helpers for ``amaranth.lib.stream`` ports: packing ``data`` layouts, sources, sinks.

Amaranth flattens a stream port ``i`` to ``i__valid``, ``i__ready`` and ``i__payload``; the
payload is the layout's bits, first field in the least significant bits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from cocotb.triggers import RisingEdge

from scoville.bits import pack, unpack

__all__ = ["pack", "unpack", "pauses", "StreamSource", "StreamSink"]


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
