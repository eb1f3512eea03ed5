"""cocotbext-axi ``AxiRam`` with memory latency, random pauses on every channel and error injection.

``AxiRam`` answers as soon as it can; a memory controller does not. :func:`axi_ram` wraps it:
read bursts wait ``latency`` cycles after their AR handshake before the first beat, write
responses come ``latency`` cycles after the burst's last W beat, and many bursts overlap (a
pipelined memory), so a master with several requests in flight sees full bandwidth.
Addresses in ``bad_reads`` / ``bad_writes`` (lists of ``(lo, hi)`` byte ranges) answer SLVERR.
"""

from __future__ import annotations

import random
from collections import deque

import cocotb
from cocotb.triggers import Event, RisingEdge
from cocotbext.axi import AxiBus, AxiRam

from testbench.streams import pauses


class _Clock:
    """Cycle counter shared by the delay lines."""

    def __init__(self, clk):
        self.clk, self.now = clk, 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.now += 1


class _DelayedRecv:
    """Stands in for an AxiARSink: hands out AR beats ``latency`` cycles after they arrived."""

    def __init__(self, channel, clock: _Clock, latency: int):
        self.channel, self.clock, self.latency = channel, clock, latency
        self.queue: deque = deque()
        self.event = Event()
        cocotb.start_soon(self._drain())

    async def _drain(self):
        while True:
            item = await self.channel.recv()
            self.queue.append((self.clock.now + self.latency, item))
            self.event.set()

    async def recv(self):
        while not self.queue:
            self.event.clear()
            await self.event.wait()
        due, item = self.queue.popleft()
        while self.clock.now < due:
            await RisingEdge(self.clock.clk)
        return item

    def __getattr__(self, name):
        return getattr(self.channel, name)


class _DelayedSend:
    """Stands in for an AxiBSource: sends each response ``latency`` cycles after it is given."""

    def __init__(self, channel, clock: _Clock, latency: int):
        self.channel, self.clock, self.latency = channel, clock, latency
        self.queue: deque = deque()
        self.event = Event()
        cocotb.start_soon(self._run())

    async def send(self, item):
        self.queue.append((self.clock.now + self.latency, item))
        self.event.set()

    async def _run(self):
        while True:
            while not self.queue:
                self.event.clear()
                await self.event.wait()
            due, item = self.queue.popleft()
            while self.clock.now < due:
                await RisingEdge(self.clock.clk)
            await self.channel.send(item)

    def __getattr__(self, name):
        return getattr(self.channel, name)


def _in(ranges, address: int, length: int) -> bool:
    return any(address < hi and address + length > lo for lo, hi in ranges)


def axi_ram(dut, prefix: str, clk, rst, size: int, *, latency: int = 0, pause: float = 0.0,
            rng: random.Random | None = None, bad_reads=(), bad_writes=()) -> AxiRam:
    """An ``AxiRam`` on ``dut``'s ``prefix`` AXI4 port, with the behaviour described above."""
    ram = AxiRam(AxiBus.from_prefix(dut, prefix, bus_separator="__"), clk, rst, size=size)
    ram.bad_reads, ram.bad_writes = list(bad_reads), list(bad_writes)
    clock = _Clock(clk)
    if latency:
        ram.read_if.ar_channel = _DelayedRecv(ram.read_if.ar_channel, clock, latency)
        ram.write_if.b_channel = _DelayedSend(ram.write_if.b_channel, clock, latency)
    if pause:
        rng = rng or random.Random(0)
        for channel in (ram.read_if.ar_channel, ram.read_if.r_channel, ram.write_if.aw_channel,
                        ram.write_if.w_channel, ram.write_if.b_channel):
            channel.set_pause_generator(pauses(pause, random.Random(rng.random())))

    read_target, write_target = ram.read_if._read, ram.write_if._write

    async def read(address, length):
        if _in(ram.bad_reads, address, length):
            raise OSError(f"injected read error at {address:#x}")
        return await read_target(address, length)

    async def write(address, data):
        if _in(ram.bad_writes, address, len(data)):
            raise OSError(f"injected write error at {address:#x}")
        await write_target(address, data)

    ram.read_if._read, ram.write_if._write = read, write
    return ram
