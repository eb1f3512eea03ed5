"""cocotb tests of a mesh under hardware traffic generators and checkers (rtl/noc/traffic.py).

Python only configures, waits and reads counters, so runs go at Verilator speed. Environment:
``SCOVILLE_SOAK_PACKETS`` (packets per pattern for ``soak``), ``SCOVILLE_BENCH_OUT`` (JSON file
for ``bench``), ``SCOVILLE_SEED``.
"""

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer

from rtl.noc.traffic import COUNTERS, TrafficPattern
from scoville.flow import design_params

PATTERNS = {"uniform": TrafficPattern.UNIFORM, "transpose": TrafficPattern.TRANSPOSE,
            "hotspot": TrafficPattern.HOTSPOT, "neighbour": TrafficPattern.NEIGHBOUR}
ERROR_NAMES = {0: "none", 1: "not head", 2: "wrong tile", 3: "bad header", 4: "sequence",
               5: "head in body", 6: "body data", 7: "length"}


CLOCK_NS = 10


def probability(p: float) -> int:
    return max(0, min(1 << 16, round(p * (1 << 16))))


class TB:
    def __init__(self, dut):
        self.dut = dut
        params = design_params()
        self.width, self.height = params["width"], params["height"]
        self.tiles = [(x, y) for y in range(self.height) for x in range(self.width)]
        self.seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
        dut._log.info(f"seed {self.seed} (replay with SCOVILLE_SEED={self.seed})")
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.cycles = 0

    async def reset(self):
        self.dut.rst.value = 1
        self.dut.enable.value = 0
        self.dut.clear.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0

    async def start(self, pattern: str, load: float, min_length: int = 1, max_length: int = 8,
                    eject_stall: float = 0.0, hot_fraction: float = 0.2, hotspot=(1, 1), seed: int | None = None):
        """Clear all counters and start creating ``load`` flits per tile per cycle of ``pattern``."""
        dut = self.dut
        mean_length = (min_length + max_length) / 2
        dut.pattern.value = PATTERNS[pattern].value
        dut.rate.value = probability(load / mean_length)
        dut.min_length.value, dut.max_length.value = min_length, max_length
        dut.hotspot_x.value, dut.hotspot_y.value = hotspot
        dut.hot_fraction.value = probability(hot_fraction)
        dut.eject_stall.value = probability(eject_stall)
        dut.seed.value = (self.seed if seed is None else seed) & 0xFFFFFFFF
        dut.clear.value = 1
        await ClockCycles(dut.clk, 1)
        dut.clear.value = 0
        dut.enable.value = 1

    def counters(self) -> dict[str, dict]:
        out = {name: {} for name in COUNTERS}
        for x, y in self.tiles:
            for name in COUNTERS:
                out[name][x, y] = int(getattr(self.dut, f"{name}_x{x}_y{y}").value)
        return out

    def totals(self) -> dict[str, int]:
        return {name: sum(per_tile.values()) for name, per_tile in self.counters().items()
                if name not in ("latency_max", "first_error")}

    async def run(self, cycles: int):
        # A timer, not ClockCycles: no Python callback per cycle, so the mesh runs at Verilator speed.
        await Timer(cycles * CLOCK_NS, unit="ns")
        await RisingEdge(self.dut.clk)
        self.cycles += cycles

    async def drain(self, timeout_cycles: int = 20000):
        """Stop creating, wait until every created packet has arrived, check the counters."""
        self.dut.enable.value = 0
        waited = 0
        while True:
            totals = self.totals()
            if totals["received_packets"] == totals["created"] or waited >= timeout_cycles:
                break
            await self.run(100)
            waited += 100
        self.check(totals, waited, timeout_cycles)
        return totals

    def check(self, totals, waited, timeout_cycles):
        counters = self.counters()
        bad = {tile: (n, ERROR_NAMES[counters["first_error"][tile]])
               for tile, n in counters["errors"].items() if n}
        assert not bad, f"checker errors per tile (count, first): {bad}; seed {self.seed}"
        assert totals["received_packets"] == totals["created"] == totals["sent_packets"], (
            f"after {waited} drain cycles (timeout {timeout_cycles}): created {totals['created']}, "
            f"sent {totals['sent_packets']}, received {totals['received_packets']} (deadlock or loss); "
            f"seed {self.seed}")
        assert totals["received_flits"] == totals["sent_flits"], totals


async def measure(tb: TB, pattern: str, load: float, warmup: int, window: int, **kw) -> dict:
    """Accepted flits per tile per cycle and mean latency over ``window`` cycles after ``warmup``."""
    await tb.start(pattern, load, **kw)
    await tb.run(warmup)
    before = tb.totals()
    await tb.run(window)
    after = tb.totals()
    totals = await tb.drain()
    delta = {k: after[k] - before[k] for k in after}
    nodes = len(tb.tiles)
    return {
        "offered": load, "pattern": pattern,
        "accepted": delta["received_flits"] / (nodes * window),
        "created_rate": delta["created"] * (kw.get("min_length", 1) + kw.get("max_length", 8)) / 2 / (nodes * window),
        "refused": delta["refused"],
        "latency": delta["latency_sum"] / max(delta["received_packets"], 1),
        "packets": totals["received_packets"],
    }


@cocotb.test()
async def soak(dut):
    """Each pattern at and past saturation, random lengths and ejection stalls; then drained:
    every packet checked, none lost, no deadlock."""
    tb = TB(dut)
    await tb.reset()
    target = int(os.environ.get("SCOVILLE_SOAK_PACKETS", "25000"))
    total = 0
    start = time.perf_counter()
    runs = [("uniform", 1.0, 0.0), ("transpose", 0.6, 0.2), ("hotspot", 0.8, 0.1), ("neighbour", 1.0, 0.3),
            ("uniform", 0.5, 0.5)]
    for pattern, load, stall in runs:
        await tb.start(pattern, load, 1, 16, eject_stall=stall)
        received = 0
        while received < target // len(runs):
            await tb.run(2000)
            received = tb.totals()["received_packets"]
        totals = await tb.drain()
        total += totals["received_packets"]
        dut._log.info(f"{pattern} load {load} stall {stall}: {totals['received_packets']} packets, "
                      f"{totals['received_flits']} flits checked")
    seconds = time.perf_counter() - start
    dut._log.info(f"soak: {total} packets in {tb.cycles} cycles, {tb.cycles / seconds:.0f} cycles/s")
    assert total >= target


@cocotb.test()
async def short_clean_run(dut):
    """A light uniform load: every packet arrives, checked, with no error flagged."""
    tb = TB(dut)
    await tb.reset()
    await tb.start("uniform", 0.2, 1, 4)
    await tb.run(1000)
    totals = await tb.drain()
    assert totals["received_packets"] > 0


@cocotb.test()
async def bench(dut):
    """Latency against offered load per pattern and saturation throughput (figures to JSON)."""
    tb = TB(dut)
    await tb.reset()
    out_path = os.environ.get("SCOVILLE_BENCH_OUT")
    sweep = [float(v) for v in os.environ.get("SCOVILLE_NOC_LOADS", "0.1,0.3,0.5,1.0").split(",")]
    window = int(os.environ.get("SCOVILLE_NOC_WINDOW", "10000"))
    results = []
    patterns = os.environ.get("SCOVILLE_NOC_PATTERNS") or "uniform,transpose,hotspot"
    for pattern in patterns.split(","):
        for load in sweep:
            point = await measure(tb, pattern, load, warmup=2000, window=window)
            dut._log.info(f"{point}")
            results.append(point)
    if out_path:
        with open(out_path, "w") as f:
            json.dump(results, f)


@cocotb.test()
async def saturation_bar(dut):
    """Uniform random traffic offered at 1 flit/tile/cycle, packets of 1-8 flits: the mesh
    accepts at least 0.5 flits per tile per cycle (the issue's bar; the bisection bound is 1.0)."""
    tb = TB(dut)
    await tb.reset()
    point = await measure(tb, "uniform", 1.0, warmup=1000, window=5000)
    dut._log.info(f"{point}")
    assert point["accepted"] >= 0.5, point
