"""cocotb tests of a mesh (or the request + response NoC) driven from Python at every local port."""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from rtl.noc.flit import flit_layout
from scoville.flow import design_params
from testbench.noc import PATTERNS, MeshDriver, Scoreboard, destination, make_packet


class TB:
    """Clock, reset, one :class:`MeshDriver` per network and a scoreboard per network."""

    def __init__(self, dut, inject_pause: float = 0.0, eject_pause: float = 0.0):
        self.dut = dut
        params = design_params()
        self.width, self.height = params["width"], params["height"]
        self.flit_width = params.get("flit_width", 64)
        self.tiles = [tuple(t) for t in params.get("tiles") or
                      [(x, y) for y in range(self.height) for x in range(self.width)]]
        self.networks = params.get("networks", [""])
        self.seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
        dut._log.info(f"seed {self.seed} (replay with SCOVILLE_SEED={self.seed})")
        self.rng = random.Random(self.seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        layout = flit_layout(self.flit_width)
        self.scoreboards, self.drivers = {}, {}
        for network in self.networks:
            board = Scoreboard(dut._log)
            prefix = f"{network}_" if network else ""
            self.scoreboards[network] = board
            self.drivers[network] = MeshDriver(dut, dut.clk, self.tiles, layout, self.rng, prefix,
                                               inject_pause, eject_pause, board.receive)
        self.seq = {}

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        for driver in self.drivers.values():
            cocotb.start_soon(driver.run())

    def send(self, src, dest, length: int, network: str = ""):
        network = network if network in self.drivers else self.networks[0]
        seq = self.seq.get((network, src, dest), 0)
        self.seq[network, src, dest] = seq + 1
        packet = make_packet(self.rng, src, dest, length, seq, self.flit_width)
        self.scoreboards[network].add(packet)
        self.drivers[network].send(packet)
        return packet

    async def drain(self, timeout_cycles: int):
        for _ in range(timeout_cycles):
            if all(b.received == b.sent for b in self.scoreboards.values()):
                break
            await RisingEdge(self.dut.clk)
        for network, board in self.scoreboards.items():
            assert board.received == board.sent, (
                f"network {network or 'mesh'}: {board.received} of {board.sent} packets after "
                f"{timeout_cycles} cycles (deadlock or loss), seed {self.seed}")
            board.check_complete()


@cocotb.test()
async def zero_load_latency(dut):
    """One single-flit packet at a time from the corner to every tile: latency = hops + 1."""
    tb = TB(dut)
    await tb.reset()
    src = tb.tiles[0]
    board = tb.scoreboards[tb.networks[0]]
    for dest in tb.tiles:
        tb.send(src, dest, 1)
        await tb.drain(100)
        hops = abs(dest[0] - src[0]) + abs(dest[1] - src[1])
        assert board.latencies[-1] == hops + 1, f"{src} -> {dest}: {board.latencies[-1]} cycles, want {hops + 1}"


async def random_traffic(dut, pattern: str, packets_per_tile: int, load: float, max_length: int = 8):
    """Bernoulli injection of ``pattern`` traffic with 20% idle on inject and 30% on eject ports."""
    tb = TB(dut, inject_pause=0.2, eject_pause=0.3)
    await tb.reset()
    mean_length = (1 + max_length) / 2
    pending = {(network, t): packets_per_tile for network in tb.networks for t in tb.tiles}
    hotspot = tb.tiles[len(tb.tiles) // 2]
    while any(pending.values()):
        for (network, src), left in pending.items():
            if left and tb.rng.random() < load / mean_length:
                dest = destination(pattern, tb.rng, src, tb.width, tb.height, hotspot)
                if dest is not None and dest not in tb.tiles:
                    dest = tb.tiles[tb.rng.randrange(len(tb.tiles))]
                if dest is None:
                    pending[network, src] = 0
                    continue
                tb.send(src, dest, tb.rng.randint(1, max_length), network)
                pending[network, src] = left - 1
        await RisingEdge(dut.clk)
    await tb.drain(20000)
    for network, board in tb.scoreboards.items():
        lat = board.latencies
        dut._log.info(f"{pattern} {network or 'mesh'}: {board.received} packets, mean latency "
                      f"{sum(lat) / max(len(lat), 1):.1f}, max {max(lat, default=0)}")


for _pattern in PATTERNS:
    async def _test(dut, pattern=_pattern):
        await random_traffic(dut, pattern, int(os.environ.get("SCOVILLE_NOC_PACKETS", "40")), load=0.3)

    _test.__name__ = f"{_pattern}_random_lengths_with_stalls"
    _test.__qualname__ = _test.__name__
    _test.__doc__ = f"{_pattern} traffic, packets of 1 to 8 flits, random stalls at every port."
    globals()[_test.__name__] = cocotb.test()(_test)


@cocotb.test()
async def saturated_back_to_back(dut):
    """Every tile sends maximal-length packets without pause to random tiles: no loss, no deadlock."""
    tb = TB(dut, eject_pause=0.5)
    await tb.reset()
    for _ in range(10):
        for src in tb.tiles:
            for network in tb.networks:
                dest = tb.tiles[tb.rng.randrange(len(tb.tiles))]
                tb.send(src, dest, tb.rng.choice([1, 2, 16]), network)
    await tb.drain(20000)


@cocotb.test()
async def bench_zero_load(dut):
    """Zero-load latency from the first tile to every tile, one single-flit packet at a time
    (figures to ``SCOVILLE_BENCH_OUT``): cycles from the inject handshake to the eject handshake."""
    tb = TB(dut)
    await tb.reset()
    src = tb.tiles[0]
    board = tb.scoreboards[tb.networks[0]]
    points = []
    for dest in tb.tiles:
        tb.send(src, dest, 1)
        await tb.drain(100)
        points.append({"hops": abs(dest[0] - src[0]) + abs(dest[1] - src[1]), "latency": board.latencies[-1]})
    out_path = os.environ.get("SCOVILLE_BENCH_OUT")
    if out_path:
        with open(out_path, "w") as f:
            json.dump(points, f)
