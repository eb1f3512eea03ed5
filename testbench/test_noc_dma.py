"""cocotb tests of real DMA engines on cores at different mesh positions, reaching cocotbext-axi
``AxiRam`` through network interface, mesh and memory tile (rtl/sim/dma_noc.py), against the numpy
model of a transfer (testbench/dma_model.py).

DRAM layout: a shared region every core reads (nobody writes it) and one region per core that
only that core writes, so each core's view of memory can be checked after each of its
descriptors while the others keep running."""

from __future__ import annotations

import logging
import os
import random

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from rtl.dma.descriptor import Descriptor, DmaError, Space, Status
from scoville.flow import design_params
from testbench import dma_model
from testbench.axi_memory import axi_ram
from testbench.streams import StreamSink, StreamSource, pauses

RAM_BYTES = 1 << 16
SHARED = dma_model.Region(0x1000, 0x4000)
CORE_REGION_BYTES = 0x4000  # core n owns [0x4000 * (n + 1), 0x4000 * (n + 2))
DESCRIPTOR = data.Layout.cast(Descriptor)
STATUS = data.Layout.cast(Status)


class Core:
    """One core's DMA engine as the testbench sees it: descriptor source, status sink, window,
    backdoor to its SRAMs, and the numpy model of the memory it can see."""

    def __init__(self, tb: TB, index: int, xy: tuple[int, int], pause: float):
        dut, name = tb.dut, f"x{xy[0]}_y{xy[1]}"
        self.tb, self.xy, self.name = tb, xy, name
        self.region = dma_model.Region(CORE_REGION_BYTES * (index + 1), CORE_REGION_BYTES * (index + 2))
        self.rng = random.Random(tb.rng.random())
        pause_rng = random.Random(tb.rng.random())
        self.source = StreamSource(dut, f"descriptor_{name}", dut.clk, DESCRIPTOR,
                                   pauses(pause, pause_rng) if pause else None)
        self.sink = StreamSink(dut, f"status_{name}", dut.clk, STATUS, pauses(pause, pause_rng) if pause else None)
        self.window_base, self.window_limit = getattr(dut, f"window_base_{name}"), getattr(dut, f"window_limit_{name}")
        banks = tb.params.get("banks", 2)
        self.spad_banks = [getattr(getattr(dut, f"scratchpad_{name}"), f"spad_bank{b}") for b in range(banks)]
        self.acc_banks = [getattr(getattr(dut, f"accumulator_{name}"), f"acc_bank{b}") for b in range(banks)]
        self.sizes = {Space.SPAD.value: tb.spad_bytes, Space.ACC.value: tb.acc_bytes}
        self.model: dict[int, np.ndarray] = {}
        self.window = (0, 0)
        self.set_window(self.region.lo, self.region.hi)

    def set_window(self, base: int, limit: int) -> None:
        self.window = (base, limit)
        self.window_base.value, self.window_limit.value = base, limit

    def start(self) -> None:
        cocotb.start_soon(self.source.run())
        cocotb.start_soon(self.sink.run())

    async def run(self, desc: dict, timeout: int = 100_000) -> dict:
        """Send one descriptor, wait for its status."""
        start = len(self.sink.received)
        self.source.send([desc])
        for _ in range(timeout):
            await RisingEdge(self.tb.dut.clk)
            if len(self.sink.received) > start:
                return self.sink.received[start]
        raise AssertionError(f"core {self.xy}: no status after {timeout} cycles for {desc}; seed {self.tb.seed}; "
                             f"{self.stuck_state()}")

    def stuck_state(self) -> str:
        """Where the network interface and the memory tile stand, for a timeout message."""
        network = self.tb.dut.network
        interface, tile = f"interface_{self.name}", "memory_tile.tile"

        def value(*path: str) -> str:
            handle = network
            try:
                for name in ".".join(path).split("."):
                    handle = getattr(handle, name)
                return str(int(handle.value))
            except AttributeError:  # a signal this version lacks, or the build keeps private
                return "-"

        port = {n: value(interface, f"port__{n}__valid")
                for n in ("read_request", "write_request", "write_data", "read_response")}

        return (f"interface request FSM {value(interface, 'request_fsm_state')} (0 idle, 1 read address, "
                f"2 write address, 3 write data), valid {port}, read credits {value(interface, 'credits')}, "
                f"write beats buffered {value(interface, 'write_buffer.w_level')}, "
                f"packets owed: reads {value(interface, 'reads_owed')}, writes {value(interface, 'writes_owed')}; "
                f"memory tile request FSM {value(tile, 'request_fsm_state')} (0 head, 1 address, 2 data), "
                f"response FSM {value(tile, 'response_fsm_state')} (0 idle, 1 read data)")

    def memories(self) -> dict[int, np.ndarray]:
        """What this core can see now: its SRAMs, and DRAM where it reads or writes (its own
        region and the shared one; elsewhere the model, since other cores write there)."""
        dram = self.model[Space.DRAM.value].copy()
        for region in (SHARED, self.region):
            dram[region.lo:region.hi] = np.frombuffer(self.tb.ram.read(region.lo, region.hi - region.lo), np.uint8)
        return {Space.DRAM.value: dram, Space.SPAD.value: sram_read(self.spad_banks),
                Space.ACC.value: sram_read(self.acc_banks)}


def sram_read(banks) -> np.ndarray:
    """An SRAM's bytes through the simulator: rows are little-endian words, bank after bank."""
    width = len(banks[0][0]) // 8
    words = [int(bank[n].value) for bank in banks for n in range(len(bank))]
    return np.frombuffer(b"".join(w.to_bytes(width, "little") for w in words), dtype=np.uint8).copy()


def sram_write(banks, content: np.ndarray) -> None:
    width, rows = len(banks[0][0]) // 8, len(banks[0])
    for b, bank in enumerate(banks):
        for n in range(rows):
            start = (b * rows + n) * width
            bank[n].value = int.from_bytes(content[start:start + width].tobytes(), "little")


class TB:
    """Clock, reset, AxiRam (random latency, pauses on every channel) and one :class:`Core` per
    core of a :class:`rtl.sim.dma_noc.DmaNoC`."""

    def __init__(self, dut, *, pause: float = 0.2, latency: int | None = None):
        self.dut = dut
        self.params = design_params()
        self.seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
        dut._log.info(f"seed {self.seed} (replay with SCOVILLE_SEED={self.seed})")
        self.rng = random.Random(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        self.word_bytes = self.params.get("data_width", 64) // 8
        self.spad_bytes = self.params["spad_depth"] * self.word_bytes
        self.acc_bytes = self.params["acc_depth"] * self.params.get("lanes", 8) * 4
        self.latency = self.rng.choice([2, 10, 40, 80]) if latency is None else latency
        dut._log.info(f"AxiRam latency {self.latency} cycles, pauses {pause}")
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.ram = axi_ram(dut, "m_axi", dut.clk, dut.rst, RAM_BYTES, latency=self.latency, pause=pause,
                           rng=self.rng)
        for interface in (self.ram.read_if, self.ram.write_if):
            interface.log.setLevel(logging.WARNING)  # a line per burst costs more than the simulation
        self.cores = [Core(self, n, tuple(xy), pause) for n, xy in enumerate(self.params["cores"])]
        if self.cores[-1].region.hi > RAM_BYTES:
            raise ValueError(f"{len(self.cores)} cores do not fit in {RAM_BYTES} bytes of AxiRam")

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        for core in self.cores:
            core.start()
        await ClockCycles(self.dut.clk, 2)

    async def fill_random(self) -> None:
        """Random contents everywhere; every core's model starts from them."""
        dram = self.np_rng.integers(0, 256, RAM_BYTES, dtype=np.uint8)
        self.ram.write(0, dram.tobytes())
        for core in self.cores:
            spad = self.np_rng.integers(0, 256, self.spad_bytes, dtype=np.uint8)
            acc = self.np_rng.integers(0, 256, self.acc_bytes, dtype=np.uint8)
            sram_write(core.spad_banks, spad)
            sram_write(core.acc_banks, acc)
            core.model = {Space.DRAM.value: dram.copy(), Space.SPAD.value: spad, Space.ACC.value: acc}
        await RisingEdge(self.dut.clk)  # cocotb applies the writes at the end of the time step


def compare(core: Core, got: dict[int, np.ndarray], what: str) -> None:
    for space, want in core.model.items():
        bad = np.flatnonzero(got[space] != want)
        if len(bad):
            n = bad[0]
            raise AssertionError(
                f"core {core.xy}, {what}: {Space(space).name} byte {n:#x}: got {got[space][n]:#04x}, "
                f"model {want[n]:#04x}; {len(bad)} bytes differ (first {[hex(x) for x in bad[:8]]}), "
                f"seed {core.tb.seed}")


def random_descriptor(core: Core) -> dict:
    """Among the core's own DRAM region (both halves: DRAM to DRAM) and its SRAMs, or (a quarter
    of them) a read of the shared region into an SRAM."""
    srams = {Space.SPAD.value: dma_model.Region(0, core.tb.spad_bytes),
             Space.ACC.value: dma_model.Region(0, core.tb.acc_bytes)}
    shared = core.rng.random() < 0.25
    regions = {Space.DRAM.value: SHARED if shared else core.region, **srams}
    while True:
        desc = dma_model.random_descriptor(core.rng, regions)
        dram = [desc[f"{side}_space"] == Space.DRAM.value for side in ("src", "dst")]
        if shared and dram != [True, False]:
            continue
        return desc


async def fuzz_core(core: Core, count: int, outcomes: dict[str, int]) -> None:
    """``count`` random descriptors on one core, its memories checked against the model after each.

    About 10% get a job window they may leave by one byte (refused, nothing touched); about 10%
    of those that reach the core's own DRAM region meet a SLVERR on one word there (the status
    names it; every byte holds its old value or one the transfer would have written). DRAM to
    DRAM meets it on the read side in even-numbered descriptors, on the write side in odd ones."""
    tb, rng = core.tb, core.rng
    for n in range(count):
        desc = random_descriptor(core)
        dram_sides = [side for side in ("src", "dst") if desc[f"{side}_space"] == Space.DRAM.value]
        dram_side = dram_sides[0] if dram_sides else None
        in_shared = dram_side is not None and desc[dram_side] < SHARED.hi
        if dram_side and rng.random() < 0.1:
            first, last = dma_model.extent(desc, dram_side)
            core.set_window(first + rng.choice([0, 1]), last + rng.choice([0, 1]))
        else:
            core.set_window(*((SHARED.lo, SHARED.hi) if in_shared else (core.region.lo, core.region.hi)))
        want = dma_model.expected_error(desc, core.window, core.sizes)
        bad = None
        if dram_side and not in_shared and want == DmaError.OK and rng.random() < 0.1:
            # no random draw for the side, so that a seed replays the same descriptors as before
            error_side = dram_sides[n % len(dram_sides)]
            c0, c1, c2 = desc["count"]
            starts = dma_model.row_starts(desc[error_side], c1, c2, *desc[f"{error_side}_stride"])
            bad_word = (rng.choice(starts) + rng.randrange(c0 << desc["elem_log2"])) & -tb.word_bytes
            bad = [bad_word, bad_word + tb.word_bytes]
            # only this core touches its region, so the injected error can only meet this descriptor
            errors = tb.ram.bad_reads if error_side == "src" else tb.ram.bad_writes
            want = DmaError.READ_SLVERR if error_side == "src" else DmaError.WRITE_SLVERR
            errors.append(tuple(bad))
        status = await core.run(desc)
        if bad:
            errors.remove(tuple(bad))
        what = f"descriptor {n} {desc} (window {core.window[0]:#x}..{core.window[1]:#x})"
        assert status["error"] == want.value, (
            f"core {core.xy}, {what}: status {DmaError(status['error']).name}, want {want.name}; seed {tb.seed}")
        outcomes[want.name] = outcomes.get(want.name, 0) + 1
        got = core.memories()
        if bad:
            fault = status["fault_addr"]
            if want == DmaError.READ_SLVERR:
                assert fault == bad[0], f"core {core.xy}, {what}: fault {fault:#x}, want {bad[0]:#x}; seed {tb.seed}"
            else:  # the start of the AXI burst that failed
                assert bad[0] - 4096 < fault <= bad[0], f"core {core.xy}, {what}: fault {fault:#x}; seed {tb.seed}"
            for space, stray in dma_model.stray_bytes(desc, core.model, got).items():
                assert not stray.any(), (f"core {core.xy}, {what}: stray write at {Space(space).name} "
                                         f"{[hex(x) for x in np.flatnonzero(stray)[:4]]}; seed {tb.seed}")
            core.model = got
            continue
        if want == DmaError.OK:
            dma_model.apply(desc, core.model)
            outcomes["bytes"] = outcomes.get("bytes", 0) + (desc["count"][0] * desc["count"][1] * desc["count"][2]
                                                            << desc["elem_log2"])
        compare(core, got, what)


@cocotb.test()
async def descriptors_from_every_core(dut):
    """Every core at once: random descriptors (1D/2D/3D, any alignment and length, DRAM to and
    from both SRAMs, DRAM to DRAM, SRAM to SRAM, shared reads), window errors and injected bus
    errors, random pauses on every stream and AXI channel and a random memory latency.
    SCOVILLE_DESCRIPTORS per core."""
    tb = TB(dut)
    await tb.reset()
    await tb.fill_random()
    count = int(os.environ.get("SCOVILLE_DESCRIPTORS", "150"))
    outcomes: dict[str, int] = {}
    tasks = [cocotb.start_soon(fuzz_core(core, count, outcomes)) for core in tb.cores]
    for task in tasks:
        await task
    dut._log.info(f"{count} descriptors on each of {len(tb.cores)} cores: {outcomes}")



@cocotb.test()
async def bus_errors_reach_the_right_core(dut):
    """At once: one core's read meets SLVERR, another's write meets SLVERR, the third runs
    clean. Each status names its own error and address; nothing strays; all go on normally."""
    tb = TB(dut, pause=0.2, latency=20)
    await tb.reset()
    await tb.fill_random()
    reader, writer, bystander = tb.cores[:3]
    read_bad = reader.region.lo + 0x838
    write_bad = writer.region.lo + 0x1400
    tb.ram.bad_reads.append((read_bad, read_bad + tb.word_bytes))
    tb.ram.bad_writes.append((write_bad, write_bad + tb.word_bytes))
    cases = [
        # a 2D read of overlapping rows; the fourth is the first to reach the bad word
        (reader, dma_model.descriptor(reader.region.lo + 0x7F3, 9, Space.DRAM, Space.SPAD, [40, 6], 0, (11, 0),
                                      (48, 0)), DmaError.READ_SLVERR),
        (writer, dma_model.descriptor(5, writer.region.lo + 0x1301, Space.SPAD, Space.DRAM, [700]),
         DmaError.WRITE_SLVERR),
        (bystander, dma_model.descriptor(bystander.region.lo + 0x7F3, 9, Space.DRAM, Space.SPAD, [40, 6], 0,
                                         (11, 0), (48, 0)), DmaError.OK),
    ]

    async def run(core, desc):
        return await core.run(desc)

    tasks = [cocotb.start_soon(run(core, desc)) for core, desc, _ in cases]
    for (core, desc, code), task in zip(cases, tasks, strict=True):
        status = await task
        assert status["error"] == code.value, (
            f"core {core.xy}: {DmaError(status['error']).name}, want {code.name}; seed {tb.seed}")
        got = core.memories()
        if code == DmaError.READ_SLVERR:
            assert status["fault_addr"] == read_bad, f"read fault {status['fault_addr']:#x}, want {read_bad:#x}"
        elif code == DmaError.WRITE_SLVERR:
            fault = status["fault_addr"]
            assert write_bad - 4096 < fault <= write_bad, f"write fault {fault:#x}, bad word {write_bad:#x}"
        if code != DmaError.OK:
            for space, stray in dma_model.stray_bytes(desc, core.model, got).items():
                assert not stray.any(), (f"core {core.xy}: stray write at {Space(space).name} "
                                         f"{[hex(x) for x in np.flatnonzero(stray)[:4]]}; seed {tb.seed}")
            core.model = got
        else:
            dma_model.apply(desc, core.model)
            compare(core, got, f"{desc}")
    tb.ram.bad_reads.clear()
    tb.ram.bad_writes.clear()
    for core in (reader, writer):  # the error is cleared by taking the status
        desc = dma_model.descriptor(core.region.lo + 0x100, 0x200, Space.DRAM, Space.SPAD, [300])
        assert (await core.run(desc))["error"] == DmaError.OK.value
        dma_model.apply(desc, core.model)
        compare(core, core.memories(), "after the error")


@cocotb.test()
async def out_of_window_makes_no_access(dut):
    """Descriptors that leave their job window by one byte at either end, or the SRAM, from
    every core: not one request leaves the core's network interface, not one AXI handshake."""
    tb = TB(dut, pause=0.0, latency=2)
    await tb.reset()
    await tb.fill_random()
    network = dut.network
    requests = 0

    async def count():
        nonlocal requests
        while True:
            await RisingEdge(dut.clk)
            requests += int(dut.m_axi__arvalid.value) + int(dut.m_axi__awvalid.value)
            for core in tb.cores:
                requests += int(getattr(network, f"interface_{core.name}").request__valid.value)

    cocotb.start_soon(count())
    for core in tb.cores:
        lo = core.region.lo
        core.set_window(lo + 0x1000, lo + 0x2000)
        cases = [
            (dma_model.descriptor(lo + 0xFFF, 0, Space.DRAM, Space.SPAD, [16]), DmaError.SRC_WINDOW, lo + 0xFFF),
            (dma_model.descriptor(lo + 0x1FF1, 0, Space.DRAM, Space.SPAD, [16]), DmaError.SRC_WINDOW, lo + 0x1FF1),
            (dma_model.descriptor(lo + 0x1000, 0, Space.DRAM, Space.SPAD, [16, 3, 2], 0, (1500, 1500)),
             DmaError.SRC_WINDOW, lo + 0x1000),
            (dma_model.descriptor(0, lo + 0x1FFC, Space.SPAD, Space.DRAM, [1, 2], 2, (0, 0), (4, 0)),
             DmaError.DST_WINDOW, lo + 0x1FFC),
            (dma_model.descriptor(lo + 0x1000, tb.spad_bytes - 7, Space.DRAM, Space.SPAD, [8]),
             DmaError.DST_WINDOW, tb.spad_bytes - 7),
        ]
        for desc, code, fault in cases:
            status = await core.run(desc)
            assert status["error"] == code.value and status["fault_addr"] == fault, (
                f"core {core.xy} {desc}: {DmaError(status['error']).name} at {status['fault_addr']:#x}, "
                f"want {code.name} at {fault:#x}")
    await ClockCycles(dut.clk, 20)
    assert requests == 0, f"{requests} request cycles from refused descriptors"
    for core in tb.cores:  # what a timeout would print: every signal it names is visible in the build
        state = core.stuck_state()
        assert "-" not in state, f"core {core.xy}: a signal a timeout names is not visible: {state}"
    for core in tb.cores:
        compare(core, core.memories(), "after refused descriptors")
    # exactly at the window's edges, the same core goes through
    core = tb.cores[-1]
    for desc in (dma_model.descriptor(core.region.lo + 0x1000, 0, Space.DRAM, Space.SPAD, [16]),
                 dma_model.descriptor(0x20, core.region.lo + 0x1FF0, Space.SPAD, Space.DRAM, [16])):
        assert (await core.run(desc))["error"] == DmaError.OK.value
        dma_model.apply(desc, core.model)
    compare(core, core.memories(), "at the window's edges")
    assert requests > 0
