"""cocotb tests of cores' memory ports reaching cocotbext-axi ``AxiRam`` through the NoC and the
memory tile (rtl/noc/system.py): every byte written from every core is read back and compared
with a Python model and with the RAM's own contents."""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from rtl.dma.port import Resp, read_response_layout, request_layout, write_data_layout, write_response_layout
from rtl.noc.system import SCRATCHPAD_BASE
from scoville.flow import design_params
from testbench.axi_memory import axi_ram
from testbench.streams import StreamSink, StreamSource, pauses

RAM_BYTES = 1 << 16
REGION = 1 << 13  # bytes per core: transfers of different cores never overlap
BAD = (RAM_BYTES - 1024, RAM_BYTES)  # answers SLVERR


class CorePort:
    """Python initiator on one core's memory port (the role of its DMA engine)."""

    def __init__(self, dut, name: str, aw: int, dw: int, rng: random.Random, pause: float):
        prefix = f"port_{name}"

        def p():
            return pauses(pause, random.Random(rng.random())) if pause else None

        self.read_request = StreamSource(dut, f"{prefix}__read_request", dut.clk, request_layout(aw), p())
        self.write_request = StreamSource(dut, f"{prefix}__write_request", dut.clk, request_layout(aw), p())
        self.write_data = StreamSource(dut, f"{prefix}__write_data", dut.clk, write_data_layout(dw), p())
        self.read_response = StreamSink(dut, f"{prefix}__read_response", dut.clk,
                                        read_response_layout(aw, dw), p())
        self.write_response = StreamSink(dut, f"{prefix}__write_response", dut.clk, write_response_layout(aw), p())
        self.streams = [self.read_request, self.write_request, self.write_data, self.read_response,
                        self.write_response]

    def start(self):
        for s in self.streams:
            cocotb.start_soon(s.run())


class TB:
    def __init__(self, dut, pause: float = 0.2, latency: int = 8):
        self.dut = dut
        params = design_params()
        self.aw, self.dw = params.get("addr_width", 32), params.get("data_width", 64)
        self.word = self.dw // 8
        self.cores = [tuple(c) for c in params["cores"]]
        self.seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
        dut._log.info(f"seed {self.seed} (replay with SCOVILLE_SEED={self.seed})")
        self.rng = random.Random(self.seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.ram = axi_ram(dut, "m_axi", dut.clk, dut.rst, RAM_BYTES, latency=latency, pause=pause, rng=self.rng,
                           bad_reads=[BAD], bad_writes=[BAD])
        self.ports = {c: CorePort(dut, f"x{c[0]}_y{c[1]}", self.aw, self.dw, self.rng, pause) for c in self.cores}

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        for port in self.ports.values():
            port.start()

    async def wait_for(self, sink, count: int, what: str, timeout: int = 50_000):
        for _ in range(timeout):
            if len(sink.received) >= count:
                return
            await RisingEdge(self.dut.clk)
        raise AssertionError(f"timeout waiting for {what}: {len(sink.received)} of {count}; seed {self.seed}")


async def core_traffic(tb: TB, core, index: int, transfers: int, batch: int):
    """Batches of ``batch`` writes (random lengths and strobes) in flight together, then reads of the
    same ranges; every read beat must match the model of this core's region."""
    port = tb.ports[core]
    base = index * REGION
    model = bytearray(tb.ram.read(base, REGION) if hasattr(tb.ram, "read") else bytes(REGION))
    words = REGION // tb.word
    done_writes = done_reads = 0
    for _ in range(0, transfers, batch):
        ranges = []
        for _ in range(batch):
            beats = tb.rng.choice([1, 2, 3, tb.rng.randint(1, 40), tb.rng.randint(1, words // 4)])
            first = tb.rng.randrange(words - beats + 1)
            ranges.append((first, beats))
            port.write_request.send([{"addr": base + first * tb.word, "beats": beats}])
            beats_out = []
            for n in range(beats):
                data = tb.rng.getrandbits(tb.dw)
                strb = tb.rng.choice([(1 << tb.word) - 1, tb.rng.getrandbits(tb.word)])
                beats_out.append({"data": data, "strb": strb})
                for b in range(tb.word):
                    if strb >> b & 1:
                        model[(first + n) * tb.word + b] = (data >> (8 * b)) & 0xFF
            port.write_data.send(beats_out)
        done_writes += batch
        await tb.wait_for(port.write_response, done_writes, f"write responses at core {core}")
        for response in port.write_response.received[-batch:]:
            assert response["resp"] == Resp.OKAY.value, f"core {core}: write failed {response}; seed {tb.seed}"
        expected = []
        for first, beats in ranges:
            port.read_request.send([{"addr": base + first * tb.word, "beats": beats}])
            expected += [int.from_bytes(model[(first + n) * tb.word:(first + n + 1) * tb.word], "little")
                         for n in range(beats)]
        start = len(port.read_response.received)
        done_reads += len(expected)
        await tb.wait_for(port.read_response, done_reads, f"read beats at core {core}")
        got = port.read_response.received[start:start + len(expected)]
        for n, (beat, want) in enumerate(zip(got, expected, strict=True)):
            assert beat["resp"] == Resp.OKAY.value and beat["data"] == want, (
                f"core {core}: read beat {n} got {beat['data']:#x} resp {beat['resp']}, want {want:#x}; "
                f"seed {tb.seed}")
    ram_bytes = tb.ram.read(base, REGION)
    bad = next((i for i in range(REGION) if ram_bytes[i] != model[i]), None)
    assert bad is None, (f"core {core}: AxiRam byte {base + bad:#x} is {ram_bytes[bad]:#x}, "
                         f"model {model[bad]:#x}; seed {tb.seed}")


@cocotb.test()
async def transfers_from_every_core(dut):
    """All cores at once, random lengths (1 beat to a quarter of the region), random strobes,
    several writes then several reads in flight, random pauses on every stream and AXI channel."""
    tb = TB(dut)
    await tb.reset()
    transfers = int(os.environ.get("SCOVILLE_NOC_TRANSFERS", "24"))
    tasks = [cocotb.start_soon(core_traffic(tb, core, n, transfers, batch=4)) for n, core in enumerate(tb.cores)]
    for task in tasks:
        await task


@cocotb.test()
async def bus_errors_reach_the_core(dut):
    """A read and a write into the RAM's error range come back as SLVERR with the fault address."""
    tb = TB(dut, pause=0.0, latency=2)
    await tb.reset()
    port = tb.ports[tb.cores[-1]]
    addr = BAD[0] + 64
    port.write_request.send([{"addr": addr, "beats": 2}])
    port.write_data.send([{"data": 1, "strb": 0xFF}, {"data": 2, "strb": 0xFF}])
    await tb.wait_for(port.write_response, 1, "the write response")
    response = port.write_response.received[0]
    assert response["resp"] == Resp.SLVERR.value and response["fault_addr"] == addr, response
    port.read_request.send([{"addr": addr, "beats": 3}])
    await tb.wait_for(port.read_response, 3, "the read beats")
    for n, beat in enumerate(port.read_response.received[:3]):
        assert beat["resp"] == Resp.SLVERR.value and beat["fault_addr"] == addr + n * tb.word, (n, beat)


@cocotb.test()
async def cores_write_into_another_cores_scratchpad(dut):
    """Core A writes another core's scratchpad (its DRAM writes interleaved, so requests to two
    tiles alternate); a third core and the owner itself read it back through the NoC."""
    params = design_params()
    owner = tuple(params["scratchpads"][0])
    size = params["spad_depth"] * params.get("data_width", 64) // 8
    tb = TB(dut, pause=0.2, latency=4)
    await tb.reset()
    writer, reader = [c for c in tb.cores if c != owner][:2]
    words = size // tb.word
    model = bytearray(size)
    port = tb.ports[writer]
    transfers = 0
    for _ in range(int(os.environ.get("SCOVILLE_NOC_TRANSFERS", "24"))):
        beats = tb.rng.randint(1, 32)
        first = tb.rng.randrange(words - beats + 1)
        beats_out = [{"data": tb.rng.getrandbits(tb.dw), "strb": (1 << tb.word) - 1} for _ in range(beats)]
        for n, beat in enumerate(beats_out):
            model[(first + n) * tb.word:(first + n + 1) * tb.word] = beat["data"].to_bytes(tb.word, "little")
        port.write_request.send([{"addr": SCRATCHPAD_BASE + first * tb.word, "beats": beats}])
        port.write_data.send(beats_out)
        # and a DRAM write in between, in flight at the same time
        port.write_request.send([{"addr": tb.rng.randrange(REGION // tb.word) * tb.word, "beats": 1}])
        port.write_data.send([{"data": 0, "strb": 0xFF}])
        transfers += 2
    await tb.wait_for(port.write_response, transfers, "write responses")
    assert all(r["resp"] == Resp.OKAY.value for r in port.write_response.received)
    for who in (reader, owner):
        sink = tb.ports[who].read_response
        start = len(sink.received)
        tb.ports[who].read_request.send([{"addr": SCRATCHPAD_BASE, "beats": words}])
        await tb.wait_for(sink, start + words, f"scratchpad read by {who}")
        got = b"".join(beat["data"].to_bytes(tb.word, "little") for beat in sink.received[start:start + words])
        bad = next((i for i in range(size) if got[i] != model[i]), None)
        assert bad is None, (f"{who} reads scratchpad byte {bad:#x} of {owner} as {got[bad]:#x}, "
                             f"written {model[bad]:#x}; seed {tb.seed}")
