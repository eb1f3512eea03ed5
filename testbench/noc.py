"""cocotb models for the NoC: packets, traffic patterns, a driver of every local port, a scoreboard.

One coroutine drives every inject port and every eject port of a mesh (one ``await`` per cycle
for all of them, rather than one per port), with a queue of packets per source and random idle
cycles on every port.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from cocotb.triggers import RisingEdge

from rtl.noc.flit import HEADER_BITS, Header, PacketKind
from testbench.streams import pack, unpack

HEADER_LAYOUT = Header.as_shape()
PATTERNS = ("uniform", "transpose", "hotspot", "neighbour")


def header_bits(dest, src, length: int, kind: PacketKind = PacketKind.TRAFFIC) -> int:
    return pack(HEADER_LAYOUT, {"dest_x": dest[0], "dest_y": dest[1], "src_x": src[0], "src_y": src[1],
                                "kind": kind.value, "length": length})


def decode_header(data: int) -> dict:
    return unpack(HEADER_LAYOUT, data & ((1 << HEADER_BITS) - 1))


@dataclass
class Packet:
    src: tuple[int, int]
    dest: tuple[int, int]
    flits: list[dict]
    seq: int
    injected_at: int | None = None


def make_packet(rng: random.Random, src, dest, length: int, seq: int, flit_width: int) -> Packet:
    """A packet with a header, a sequence number above it, and random body flits."""
    seq_bits = min(16, flit_width - HEADER_BITS)
    head = header_bits(dest, src, length) | ((seq & ((1 << seq_bits) - 1)) << HEADER_BITS)
    words = [head] + [rng.getrandbits(flit_width) for _ in range(length - 1)]
    flits = [{"data": w, "head": int(n == 0), "tail": int(n == length - 1)} for n, w in enumerate(words)]
    return Packet(tuple(src), tuple(dest), flits, seq)


def destination(pattern: str, rng: random.Random, src, width: int, height: int, hotspot=(0, 0),
                hot_fraction: float = 0.25):
    """Destination of the next packet from ``src`` under ``pattern``; None if ``src`` sends nothing."""
    x, y = src
    if pattern == "uniform":
        return rng.randrange(width), rng.randrange(height)
    if pattern == "transpose":
        return None if x == y or y >= width or x >= height else (y, x)
    if pattern == "hotspot":
        if rng.random() < hot_fraction:
            return hotspot
        return rng.randrange(width), rng.randrange(height)
    if pattern == "neighbour":
        options = [(x + dx, y + dy) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))
                   if 0 <= x + dx < width and 0 <= y + dy < height]
        return rng.choice(options) if options else (x, y)
    raise ValueError(f"unknown traffic pattern {pattern!r}")


@dataclass
class PortModel:
    valid: object
    ready: object
    payload: object
    queue: deque = field(default_factory=deque)
    flit_index: int = 0
    driving: bool = False


class MeshDriver:
    """Drives ``{prefix}inject_x{x}_y{y}`` and ``{prefix}eject_x{x}_y{y}`` of every tile.

    Sources send the flits of queued packets in order, idling with probability ``inject_pause``
    per cycle; sinks withhold ``ready`` with probability ``eject_pause``. Received flits are
    reassembled into packets per tile and passed to ``on_packet(tile, flits, cycle)``.
    """

    def __init__(self, dut, clk, tiles, layout, rng: random.Random, prefix: str = "",
                 inject_pause: float = 0.0, eject_pause: float = 0.0, on_packet=None):
        self.clk, self.layout, self.rng = clk, layout, rng
        self.inject_pause, self.eject_pause = inject_pause, eject_pause
        self.on_packet = on_packet
        self.cycle = 0
        self.sources, self.sinks, self.partial = {}, {}, {}
        for x, y in tiles:
            name = f"x{x}_y{y}"
            self.sources[x, y] = PortModel(*(getattr(dut, f"{prefix}inject_{name}__{s}")
                                             for s in ("valid", "ready", "payload")))
            self.sinks[x, y] = PortModel(*(getattr(dut, f"{prefix}eject_{name}__{s}")
                                           for s in ("valid", "ready", "payload")))
            self.sources[x, y].valid.value = 0
            self.sinks[x, y].ready.value = 0
            self.partial[x, y] = []
        self.flits_received = 0

    def send(self, packet: Packet) -> None:
        self.sources[packet.src].queue.append(packet)

    @property
    def idle(self) -> bool:
        return all(not s.queue for s in self.sources.values()) and not any(self.partial.values())

    async def run(self) -> None:
        rng = self.rng
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            for source in self.sources.values():
                if source.driving and int(source.ready.value):
                    packet = source.queue[0]
                    if source.flit_index == 0:
                        packet.injected_at = self.cycle
                    source.flit_index += 1
                    if source.flit_index == len(packet.flits):
                        source.queue.popleft()
                        source.flit_index = 0
                    source.driving = False
                if not source.driving:
                    if source.queue and not (self.inject_pause and rng.random() < self.inject_pause):
                        source.payload.value = pack(self.layout, source.queue[0].flits[source.flit_index])
                        source.valid.value = 1
                        source.driving = True
                    else:
                        source.valid.value = 0
            for tile, sink in self.sinks.items():
                if int(sink.ready.value) and int(sink.valid.value):
                    flit = unpack(self.layout, int(sink.payload.value))
                    self.flits_received += 1
                    self.partial[tile].append(flit)
                    if flit["tail"]:
                        flits, self.partial[tile] = self.partial[tile], []
                        if self.on_packet:
                            self.on_packet(tile, flits, self.cycle)
                sink.ready.value = int(not (self.eject_pause and rng.random() < self.eject_pause))


class Scoreboard:
    """Every packet arrives exactly once, intact, at its destination, in order per (source, destination)."""

    def __init__(self, log):
        self.log = log
        self.expected: dict[tuple, deque] = {}
        self.sent = 0
        self.received = 0
        self.latencies: list[int] = []

    def add(self, packet: Packet) -> None:
        self.expected.setdefault((packet.src, packet.dest), deque()).append(packet)
        self.sent += 1

    def receive(self, tile, flits: list[dict], cycle: int) -> None:
        heads = [n for n, f in enumerate(flits) if f["head"]]
        assert heads == [0], f"tile {tile}: packet framing broken, head flags at {heads} of {len(flits)} flits"
        header = decode_header(flits[0]["data"])
        src, dest = (header["src_x"], header["src_y"]), (header["dest_x"], header["dest_y"])
        assert dest == tuple(tile), f"packet for {dest} from {src} delivered to tile {tile}"
        queue = self.expected.get((src, dest))
        assert queue, f"tile {tile}: unexpected packet from {src} (duplicate or never sent): {flits[0]}"
        want = queue.popleft()
        if flits != want.flits:
            bad = next((n for n, (a, b) in enumerate(zip(flits, want.flits, strict=False)) if a != b), None)
            raise AssertionError(
                f"tile {tile}: packet seq {want.seq} from {src} differs (out of order or corrupted): "
                f"{len(flits)} flits received, {len(want.flits)} sent, first difference at flit {bad}: "
                f"got {flits[bad] if bad is not None else None}, sent {want.flits[bad] if bad is not None else None}")
        self.received += 1
        self.latencies.append(cycle - want.injected_at)

    def check_complete(self) -> None:
        missing = {k: len(v) for k, v in self.expected.items() if v}
        assert not missing, f"{sum(missing.values())} packets never arrived, per (src, dest): {missing}"
        assert self.received == self.sent
