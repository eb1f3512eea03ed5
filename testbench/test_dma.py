"""cocotb tests of the DMA subsystem (engine, AXI4 master, scratchpad, accumulator) against
the numpy model of a transfer, with cocotbext-axi's AxiRam as DRAM."""

from __future__ import annotations

import hashlib
import os
import random

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time

from rtl.dma.descriptor import Descriptor, DmaError, Space, Status
from scoville.flow import design_params
from testbench import dma_model
from testbench.axi_memory import axi_ram
from testbench.streams import StreamSink, StreamSource, pack, pauses

DRAM_BYTES = 1 << 18
DESCRIPTOR = data.Layout.cast(Descriptor)
STATUS = data.Layout.cast(Status)


class TB:
    """Clock, reset, AxiRam, descriptor source and status sink around one DmaSubsystem."""

    def __init__(self, dut, *, latency: int = 0, pause: float = 0.0, bad_reads=(), bad_writes=()):
        self.dut = dut
        self.params = design_params()
        self.seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
        dut._log.info(f"seed {self.seed} (replay with SCOVILLE_SEED={self.seed})")
        self.rng = random.Random(self.seed)
        # descriptors draw from their own generators, so AxiRam and DramModel runs of one seed
        # see the same descriptors whatever else (pauses, injected errors) draws randomness
        self.desc_rng = random.Random(self.seed)
        self.error_rng = random.Random(self.seed + 1)
        self.np_rng = np.random.default_rng(self.seed)
        self.word_bytes = self.params["data_width"] // 8
        self.lanes = self.params["lanes"]
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        # DmaWithDram (the hardware DRAM model, loaded by backdoor) or DmaSubsystem with AxiRam
        self.dram_model = "dram_bytes" in self.params
        if self.dram_model:
            self.dram_bytes = self.params["dram_bytes"]
            self.root = dut.dma
            self.ram = None
            dut.latency.value = latency
            dut.beat_interval.value = 1
        else:
            self.dram_bytes = DRAM_BYTES
            self.root = dut
            self.ram = axi_ram(dut, "m_axi", dut.clk, dut.rst, DRAM_BYTES, latency=latency, pause=pause,
                               rng=self.rng, bad_reads=bad_reads, bad_writes=bad_writes)
            for port in ("spad_matrix_read__request", "spad_vector_read__request", "spad_vector_write",
                         "acc_matrix_write", "acc_vector_read__request"):
                getattr(dut, f"{port}__valid").value = 0
        self.source = StreamSource(dut, "descriptor", dut.clk, DESCRIPTOR)
        self.sink = StreamSink(dut, "status", dut.clk, STATUS, pauses(0.3, self.rng) if pause else None)
        self.spad_banks = self._banks("scratchpad", "spad")
        self.acc_banks = self._banks("accumulator", "acc")
        self.spad_bytes = self.params["spad_depth"] * self.word_bytes
        self.acc_bytes = self.params["acc_depth"] * self.lanes * 4
        self.sizes = {Space.SPAD.value: self.spad_bytes, Space.ACC.value: self.acc_bytes}
        self.window = (0, self.dram_bytes)
        self.set_window(*self.window)

    def _banks(self, instance, prefix):
        parent = getattr(self.root, instance)
        return [getattr(parent, f"{prefix}_bank{b}") for b in range(self.params["banks"])]

    def set_window(self, base: int, limit: int) -> None:
        self.window = (base, limit)
        self.dut.window_base.value = base
        self.dut.window_limit.value = limit

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        self.tasks = [cocotb.start_soon(self.source.run()), cocotb.start_soon(self.sink.run())]
        await ClockCycles(self.dut.clk, 2)

    # ---- backdoor access to the SRAMs (rows are little-endian words, bank after bank)
    def _sram_read(self, banks) -> np.ndarray:
        words = []
        for bank in banks:
            words += [int(bank[n].value) for n in range(len(bank))]
        width = len(banks[0][0]) // 8
        return np.frombuffer(b"".join(w.to_bytes(width, "little") for w in words), dtype=np.uint8).copy()

    def _sram_write(self, banks, content: np.ndarray) -> None:
        width = len(banks[0][0]) // 8
        rows = len(banks[0])
        for b, bank in enumerate(banks):
            for n in range(rows):
                start = (b * rows + n) * width
                bank[n].value = int.from_bytes(content[start:start + width].tobytes(), "little")

    def _dram_read(self) -> np.ndarray:
        if self.ram is not None:
            return np.frombuffer(self.ram.read(0, self.dram_bytes), dtype=np.uint8).copy()
        return self._sram_read([self.dut.dram.storage])

    def _dram_write(self, content: np.ndarray) -> None:
        if self.ram is not None:
            self.ram.write(0, content.tobytes())
        else:
            self._sram_write([self.dut.dram.storage], content)

    def memories(self) -> dict[int, np.ndarray]:
        return {Space.DRAM.value: self._dram_read(),
                Space.SPAD.value: self._sram_read(self.spad_banks),
                Space.ACC.value: self._sram_read(self.acc_banks)}

    async def fill_random(self) -> dict[int, np.ndarray]:
        content = {Space.DRAM.value: self.np_rng.integers(0, 256, self.dram_bytes, dtype=np.uint8),
                   Space.SPAD.value: self.np_rng.integers(0, 256, self.spad_bytes, dtype=np.uint8),
                   Space.ACC.value: self.np_rng.integers(0, 256, self.acc_bytes, dtype=np.uint8)}
        self._dram_write(content[Space.DRAM.value])
        self._sram_write(self.spad_banks, content[Space.SPAD.value])
        self._sram_write(self.acc_banks, content[Space.ACC.value])
        await RisingEdge(self.dut.clk)  # cocotb applies the writes at the end of the time step
        return content

    async def run(self, desc: dict, timeout: int = 200_000) -> dict:
        """Send one descriptor, wait for its status."""
        start = len(self.sink.received)
        self.source.send([desc])
        for _ in range(timeout):
            await RisingEdge(self.dut.clk)
            if len(self.sink.received) > start:
                return self.sink.received[start]
        raise AssertionError(f"no status after {timeout} cycles for {desc} (seed {self.seed})")


def compare(got: dict[int, np.ndarray], want: dict[int, np.ndarray], what: str, seed: int) -> None:
    for space in want:
        bad = np.flatnonzero(got[space] != want[space])
        if len(bad):
            n = bad[0]
            raise AssertionError(
                f"{what}: {Space(space).name} byte {n:#x}: got {got[space][n]:#04x}, model {want[space][n]:#04x}; "
                f"{len(bad)} bytes differ (first {[hex(x) for x in bad[:8]]}), seed {seed}")


async def fuzz(tb: TB, count: int, window_errors: bool = True, bus_errors: bool = True) -> None:
    """Random descriptors between all spaces; memory compared with the model after each.

    About 15% get a job window they may leave by one byte (the check must refuse them and touch
    nothing); with AxiRam, about 10% meet a SLVERR on one word of their DRAM side (the status
    must name it, and every byte must hold either its old value or the one the transfer
    would have written)."""
    regions = {Space.DRAM.value: dma_model.Region(0x1000, tb.dram_bytes - 0x1000),
               Space.SPAD.value: dma_model.Region(0, tb.spad_bytes),
               Space.ACC.value: dma_model.Region(0, tb.acc_bytes)}
    model = await tb.fill_random()
    outcomes: dict[str, int] = {}
    moved = 0
    digest = hashlib.sha256()
    for n in range(count):
        desc = dma_model.random_descriptor(tb.desc_rng, regions)
        digest.update(repr(desc).encode())
        if window_errors and tb.desc_rng.random() < 0.15:
            # a job window that the descriptor may leave by a byte
            first, last = dma_model.extent(desc, "src" if desc["src_space"] == 0 else "dst")
            tb.set_window(first + tb.desc_rng.choice([0, 1]), last + tb.desc_rng.choice([0, 1]))
        else:
            tb.set_window(0x1000, tb.dram_bytes - 0x1000)
        want_code = dma_model.expected_error(desc, tb.window, tb.sizes)
        bad_word = None
        touches_dram = Space.DRAM.value in (desc["src_space"], desc["dst_space"])
        if bus_errors and tb.ram is not None and touches_dram and want_code == DmaError.OK \
                and tb.error_rng.random() < 0.1:
            side = "src" if desc["src_space"] == Space.DRAM.value else "dst"
            c0, c1, c2 = desc["count"]
            row = c0 << desc["elem_log2"]
            starts = dma_model.row_starts(desc[side], c1, c2, *desc[f"{side}_stride"])
            byte = tb.error_rng.choice(starts) + tb.error_rng.randrange(row)
            bad_word = byte & -tb.word_bytes
            bad = [(bad_word, bad_word + tb.word_bytes)]
            if side == "src":
                tb.ram.bad_reads, want_code = bad, DmaError.READ_SLVERR
            else:
                tb.ram.bad_writes, want_code = bad, DmaError.WRITE_SLVERR
        status = await tb.run(desc)
        if tb.ram is not None:
            tb.ram.bad_reads, tb.ram.bad_writes = [], []
        assert status["error"] == want_code.value, (
            f"descriptor {n} {desc}: status {DmaError(status['error']).name}, want {want_code.name} "
            f"(window {tb.window}), seed {tb.seed}")
        outcomes[want_code.name] = outcomes.get(want_code.name, 0) + 1
        got = tb.memories()
        if bad_word is not None:
            if want_code == DmaError.READ_SLVERR:
                assert status["fault_addr"] == bad_word, f"fault {status['fault_addr']:#x}, want {bad_word:#x}"
            else:
                assert bad_word - 4096 < status["fault_addr"] <= bad_word, f"fault {status['fault_addr']:#x}"
            for space, stray in dma_model.stray_bytes(desc, model, got).items():
                assert not stray.any(), (f"descriptor {n} {desc}: stray write at {Space(space).name} "
                                         f"{np.flatnonzero(stray)[:4]}, seed {tb.seed}")
            model = got
            continue
        if want_code == DmaError.OK:
            dma_model.apply(desc, model)
            moved += desc["count"][0] * desc["count"][1] * desc["count"][2] << desc["elem_log2"]
        compare(got, model, f"descriptor {n} {desc}", tb.seed)
    final = hashlib.sha256(b"".join(model[space].tobytes() for space in sorted(model))).hexdigest()[:16]
    tb.dut._log.info(f"{count} descriptors (digest {digest.hexdigest()[:16]}): {outcomes}, {moved} bytes moved; "
                     f"memories digest {final}")
    out = os.environ.get("SCOVILLE_FUZZ_OUT")
    if out:
        import json

        with open(out, "w") as f:
            json.dump({"descriptors": digest.hexdigest(), "memories": final, "outcomes": outcomes}, f)


@cocotb.test()
async def fuzz_descriptors(dut):
    """Random descriptors (shapes, strides, alignments, spaces, window violations), with random
    pauses on every AXI channel and memory latency; SCOVILLE_DESCRIPTORS sets how many."""
    latency = int(os.environ.get("SCOVILLE_LATENCY", "20"))
    tb = TB(dut, latency=latency, pause=0.2)
    await tb.reset()
    await fuzz(tb, int(os.environ.get("SCOVILLE_DESCRIPTORS", "100")),
               bus_errors=os.environ.get("SCOVILLE_BUS_ERRORS", "1") != "0")


@cocotb.test()
async def long_transfers_cross_pages(dut):
    """Rows longer than 256 beats and across 4 KiB boundaries (AxiRam asserts on a crossing
    burst), unaligned on both sides, both directions, latency 100 with pauses."""
    tb = TB(dut, latency=100, pause=0.3)
    await tb.reset()
    model = await tb.fill_random()
    length = min(tb.spad_bytes - 16, 5000)
    for desc in (
        dma_model.descriptor(0x0FF3, 5, Space.DRAM, Space.SPAD, [length]),
        dma_model.descriptor(3, 0x12FFD, Space.SPAD, Space.DRAM, [length]),
        dma_model.descriptor(0x28001, 0x1003, Space.DRAM, Space.DRAM, [1, 40, 3], 2, (700, 30000),
                             (1003, 42000)),
    ):
        status = await tb.run(desc)
        assert status["error"] == 0, f"{desc}: {DmaError(status['error']).name}"
        dma_model.apply(desc, model)
        compare(tb.memories(), model, f"{desc}", tb.seed)


@cocotb.test()
async def bus_errors_stop_cleanly(dut):
    """SLVERR on reads and on writes: the status names the error and the address, nothing is
    written outside the destination, and the next descriptor runs normally."""
    bad = (0x8000, 0x8040)
    tb = TB(dut, latency=30, pause=0.2, bad_reads=[bad], bad_writes=[(0x9000, 0x9008)])
    await tb.reset()
    model = await tb.fill_random()
    cases = [
        # read error in the middle of a long row
        (dma_model.descriptor(0x7F01, 0, Space.DRAM, Space.SPAD, [700]), DmaError.READ_SLVERR),
        # read error in a 2D block
        (dma_model.descriptor(0x7E10, 100, Space.DRAM, Space.SPAD, [24, 8], 0, (80, 0), (30, 0)),
         DmaError.READ_SLVERR),
        # write error
        (dma_model.descriptor(0, 0x8F80, Space.SPAD, Space.DRAM, [400]), DmaError.WRITE_SLVERR),
    ]
    for desc, code in cases:
        before = tb.memories()
        status = await tb.run(desc)
        assert status["error"] == code.value, f"{desc}: got {DmaError(status['error']).name}, want {code.name}"
        fault = status["fault_addr"]
        if code == DmaError.READ_SLVERR:
            starts = dma_model.row_starts(desc["src"], desc["count"][1], desc["count"][2], *desc["src_stride"])
            row = desc["count"][0] << desc["elem_log2"]
            words = [w for s in starts for w in range(s & -tb.word_bytes, s + row, tb.word_bytes)]
            want_fault = next(w for w in words if bad[0] <= w < bad[1])
            assert fault == want_fault, f"fault address {fault:#x}, want {want_fault:#x}"
        else:
            assert 0x9000 - 4096 < fault <= 0x9000, f"write fault address {fault:#x}"
        # every byte is either untouched or what one of the rows would have written there
        after = tb.memories()
        for space, stray in dma_model.stray_bytes(desc, before, after).items():
            assert not stray.any(), f"{desc}: stray write at {Space(space).name} {np.flatnonzero(stray)[:4]}"
        model = after
    # the engine runs normally afterwards
    desc = dma_model.descriptor(0x100, 0x200, Space.DRAM, Space.SPAD, [300])
    status = await tb.run(desc)
    assert status["error"] == 0
    dma_model.apply(desc, model)
    compare(tb.memories(), model, "after errors", tb.seed)


async def run_batch(tb: TB, descs: list[dict], timeout: int = 200_000) -> tuple[list[dict], int]:
    """Send ``descs`` at once (the engine takes each as soon as it would), wait for every status;
    the statuses in order and the cycles from the first descriptor taken to the last status."""
    start = len(tb.sink.received)
    tb.source.send(descs)
    first = None
    for cycle in range(timeout):
        await RisingEdge(tb.dut.clk)
        if first is None and int(tb.dut.descriptor__valid.value) and int(tb.dut.descriptor__ready.value):
            first = cycle
        if len(tb.sink.received) - start == len(descs):
            return tb.sink.received[start:], cycle - first
    raise AssertionError(f"{len(tb.sink.received) - start} of {len(descs)} statuses after {timeout} cycles "
                         f"(seed {tb.seed})")


@cocotb.test()
async def descriptors_back_to_back(dut):
    """Descriptors sent without waiting for each status: the memories end as the model's with
    the descriptors applied in order, a run of loads pays the DRAM latency once, and a failure
    stops the descriptors taken behind it."""
    tb = TB(dut, latency=20, pause=0.2)
    await tb.reset()
    regions = {Space.DRAM.value: dma_model.Region(0x1000, tb.dram_bytes - 0x1000),
               Space.SPAD.value: dma_model.Region(0, tb.spad_bytes),
               Space.ACC.value: dma_model.Region(0, tb.acc_bytes)}
    tb.set_window(0x1000, tb.dram_bytes - 0x1000)
    model = await tb.fill_random()
    # random descriptors between every pair of spaces (a run reading one memory and writing
    # others overlaps; a change of source, or a copy within one memory, waits for the one before)
    dram, spad, acc = Space.DRAM.value, Space.SPAD.value, Space.ACC.value
    runs = [{(dram, spad)}, {(spad, dram)}, {(dram, acc)}, {(dram, spad), (dram, acc)},
            {(spad, dram), (spad, acc)}, {(acc, dram), (acc, spad)}]
    for batch in range(12):
        descs = [dma_model.random_descriptor(tb.desc_rng, regions) for _ in range(12)]
        if batch % 2:   # runs of loads and of stores, which overlap
            pairs = runs[batch // 2]
            descs = []
            while len(descs) < 12:
                desc = dma_model.random_descriptor(tb.desc_rng, regions)
                if (desc["src_space"], desc["dst_space"]) in pairs:
                    descs.append(desc)
        statuses, _ = await run_batch(tb, descs)
        assert [s["error"] for s in statuses] == [0] * len(descs), f"batch {batch}: {statuses}, seed {tb.seed}"
        for desc in descs:
            dma_model.apply(desc, model)
        compare(tb.memories(), model, f"batch {batch}", tb.seed)

    # a run of one-row loads: the DRAM latency and the check once, not once per descriptor
    row = min(64 * tb.word_bytes, tb.spad_bytes // 16)
    loads = [dma_model.descriptor(0x2000 + n * row, n * row, Space.DRAM, Space.SPAD, [row]) for n in range(16)]
    statuses, cycles = await run_batch(tb, loads)
    assert all(s["error"] == 0 for s in statuses), statuses
    for desc in loads:
        dma_model.apply(desc, model)
    compare(tb.memories(), model, "run of loads", tb.seed)
    beats = len(loads) * row // tb.word_bytes
    tb.dut._log.info(f"{len(loads)} loads of {row} bytes back to back: {cycles} cycles ({beats} beats)")
    # AxiRam pauses 20 % of the beats on every channel here; one descriptor at a time paid about
    # 50 cycles each: 1 860 cycles on the 64-bit bus, where this engine takes 1 333
    assert cycles <= 1.4 * beats + 5 * len(loads) + 100, f"{cycles} cycles for {beats} beats"

    # the same into the scratchpad and the accumulator in turn (a weight tile and its scales):
    # these overlap too, and each reports once its own memory has acknowledged its writes
    mixed = [dma_model.descriptor(0x2000 + n * row, (n // 2) * row, Space.DRAM, Space.ACC if n % 2 else Space.SPAD,
                                  [row]) for n in range(16)]
    statuses, cycles = await run_batch(tb, mixed)
    assert all(s["error"] == 0 for s in statuses), statuses
    for desc in mixed:
        dma_model.apply(desc, model)
    compare(tb.memories(), model, "loads into both memories", tb.seed)
    tb.dut._log.info(f"{len(mixed)} loads into the scratchpad and the accumulator in turn: {cycles} cycles")
    assert cycles <= 1.4 * beats + 5 * len(mixed) + 100, f"{cycles} cycles for {beats} beats, mixed"

    # a descriptor that fails its check: those before it move, it and the one behind it do not
    good = dma_model.descriptor(0x3000, 0x100, Space.DRAM, Space.SPAD, [900])
    outside = dma_model.descriptor(tb.dram_bytes - 0x1000, 0x800, Space.DRAM, Space.SPAD, [16])
    behind = dma_model.descriptor(0x4000, 0xC00, Space.DRAM, Space.SPAD, [64])
    statuses, _ = await run_batch(tb, [good, outside, behind])
    assert [DmaError(s["error"]) for s in statuses] == [DmaError.OK, DmaError.SRC_WINDOW, DmaError.SRC_WINDOW], statuses
    assert statuses[1]["fault_addr"] == statuses[2]["fault_addr"] == outside["src"]
    dma_model.apply(good, model)
    compare(tb.memories(), model, "a failed check in a run", tb.seed)

    # a bus error: the descriptors behind it in the run move nothing and report it
    tb.ram.bad_reads = [(0x5040, 0x5048)]
    failing = dma_model.descriptor(0x5000, 0x1000, Space.DRAM, Space.SPAD, [256])
    after = [dma_model.descriptor(0x6000 + 0x100 * n, 0x1400 + 0x100 * n, Space.DRAM, Space.SPAD, [200])
             for n in range(2)]
    before = tb.memories()
    statuses, _ = await run_batch(tb, [failing, *after])
    tb.ram.bad_reads = []
    assert [DmaError(s["error"]) for s in statuses] == [DmaError.READ_SLVERR] * 3, statuses
    assert statuses[0]["fault_addr"] == 0x5040
    got = tb.memories()
    for space, stray in dma_model.stray_bytes(failing, before, got).items():
        assert not stray.any(), f"stray write at {Space(space).name} {np.flatnonzero(stray)[:4]}"
    # and the engine runs normally afterwards
    desc = dma_model.descriptor(0x2100, 0x200, Space.DRAM, Space.SPAD, [300])
    assert (await tb.run(desc))["error"] == 0
    dma_model.apply(desc, got)
    compare(tb.memories(), got, "after the errors", tb.seed)


@cocotb.test()
async def out_of_window_makes_no_access(dut):
    """Descriptors that leave the window by one byte at either end, or the SRAM, touch nothing:
    not one AXI handshake."""
    tb = TB(dut)
    await tb.reset()
    await tb.fill_random()
    handshakes = 0

    async def count():
        nonlocal handshakes
        while True:
            await RisingEdge(dut.clk)
            handshakes += int(dut.m_axi__arvalid.value) + int(dut.m_axi__awvalid.value)

    cocotb.start_soon(count())
    tb.set_window(0x4000, 0x5000)
    cases = [
        (dma_model.descriptor(0x3FFF, 0, Space.DRAM, Space.SPAD, [16]), DmaError.SRC_WINDOW, 0x3FFF),
        (dma_model.descriptor(0x4FF1, 0, Space.DRAM, Space.SPAD, [16]), DmaError.SRC_WINDOW, 0x4FF1),
        (dma_model.descriptor(0x4000, 0, Space.DRAM, Space.SPAD, [16, 3, 2], 0, (1500, 1500)),
         DmaError.SRC_WINDOW, 0x4000),
        (dma_model.descriptor(0, 0x4FFC, Space.SPAD, Space.DRAM, [1, 2], 2, (0, 0), (4, 0)),
         DmaError.DST_WINDOW, 0x4FFC),
        (dma_model.descriptor(0x4000, tb.spad_bytes - 7, Space.DRAM, Space.SPAD, [8]), DmaError.DST_WINDOW,
         tb.spad_bytes - 7),
        (dma_model.descriptor(0x4000, 0, Space.DRAM, Space.DRAM, [65535, 65535, 65535], 3, (1 << 31, 1 << 31)),
         DmaError.SRC_WINDOW, 0x4000),
    ]
    for desc, code, fault in cases:
        status = await tb.run(desc)
        assert status["error"] == code.value, f"{desc}: {DmaError(status['error']).name}, want {code.name}"
        assert status["fault_addr"] == fault
    bad_space = dma_model.descriptor(0x4000, 0, Space.DRAM, Space.SPAD, [8])
    bad_space["dst_space"] = 3
    assert (await tb.run(bad_space))["error"] == DmaError.BAD_SPACE.value
    empty = dma_model.descriptor(0x3000, 0, Space.DRAM, Space.SPAD, [0, 5])
    assert (await tb.run(empty))["error"] == DmaError.OK.value
    assert handshakes == 0, f"{handshakes} AXI address handshakes for rejected descriptors"
    # inside the window, exactly at its edges
    desc = dma_model.descriptor(0x4000, 0x4FF0, Space.DRAM, Space.DRAM, [16])
    assert (await tb.run(desc))["error"] == 0
    assert handshakes > 0



@cocotb.test()
async def dram_model_decode_error(dut):
    """(DramModel only) beyond the end of the model's memory: DECERR on reads and on writes,
    with the address of the first word outside."""
    if "dram_bytes" not in design_params():
        return
    tb = TB(dut, latency=7)
    await tb.reset()
    size = tb.dram_bytes
    tb.set_window(0, size + 0x1000)
    status = await tb.run(dma_model.descriptor(size - 20, 0, Space.DRAM, Space.SPAD, [64]))
    assert status["error"] == DmaError.READ_DECERR.value and status["fault_addr"] == size, status
    status = await tb.run(dma_model.descriptor(0, size - 0x104, Space.SPAD, Space.DRAM, [0x200]))
    assert status["error"] == DmaError.WRITE_DECERR.value, status
    status = await tb.run(dma_model.descriptor(0, 0x100, Space.SPAD, Space.DRAM, [0x200]))
    assert status["error"] == DmaError.OK.value, status


@cocotb.test()
async def bench(dut):
    """(DramModel) 64 KiB and strided 2D transfers: data beats / cycles from the descriptor's
    handshake to its status, written as JSON to SCOVILLE_BENCH_OUT."""
    import json
    import time

    out = os.environ.get("SCOVILLE_BENCH_OUT")
    if not out:
        return
    latencies = [int(x) for x in os.environ.get("SCOVILLE_LATENCIES", "0,64").split(",")]
    tb = TB(dut)
    await tb.reset()
    bits = tb.word_bytes * 8
    total = 64 * 1024
    rows = total // 64
    figures = {}
    wall, cycles_run = time.perf_counter(), 0
    for latency in latencies:
        dut.latency.value = latency
        cases = {
            # 8-byte elements: a count is 16 bits
            "read": dma_model.descriptor(0x0, 0, Space.DRAM, Space.SPAD, [total // 8], 3),
            "write": dma_model.descriptor(0, 0x0, Space.SPAD, Space.DRAM, [total // 8], 3),
            # rows of 64 bytes, 128 bytes apart in DRAM, packed in the SRAM
            "read.2d64": dma_model.descriptor(0x0, 0, Space.DRAM, Space.SPAD, [64, rows], 0, (128, 0), (64, 0)),
            "write.2d64": dma_model.descriptor(0, 0x0, Space.SPAD, Space.DRAM, [64, rows], 0, (64, 0), (128, 0)),
        }
        for name, desc in cases.items():
            moved = (desc["count"][0] << desc["elem_log2"]) * desc["count"][1]
            start = len(tb.sink.received)
            tb.source.send([desc])
            cycles, started = 0, False
            while len(tb.sink.received) == start:
                await RisingEdge(dut.clk)
                if not started and int(dut.descriptor__valid.value) and int(dut.descriptor__ready.value):
                    started = True
                elif started:
                    cycles += 1
            assert tb.sink.received[start]["error"] == 0
            cycles_run += cycles
            direction, _, shape = name.partition(".")
            key = f"dma.bus_efficiency.{direction}.{bits}b.lat{latency}" + (f".{shape}" if shape else "")
            figures[key] = round(moved / tb.word_bytes / cycles, 4)
            figures[key.replace("bus_efficiency", "cycles")] = cycles
    figures[f"sim.cycles_per_s.dma{bits}b.polled"] = round(cycles_run / (time.perf_counter() - wall))
    # Chip-level speed: no Python runs per cycle (the descriptor goes in by hand, the test sleeps
    # until the status rises), so this is Verilator with the hardware DRAM model alone.
    for task in tb.tasks:
        task.cancel()
    dut.status__ready.value = 0
    dut.latency.value = 64
    await RisingEdge(dut.clk)
    wall, cycles_run = time.perf_counter(), 0
    for n in range(8):
        desc = dma_model.descriptor(0, 0, Space.DRAM, Space.SPAD, [total // 8], 3) if n % 2 else \
            dma_model.descriptor(0, 0, Space.SPAD, Space.DRAM, [total // 8], 3)
        begin = get_sim_time(unit="ns")
        dut.descriptor__payload.value = pack(DESCRIPTOR, desc)
        dut.descriptor__valid.value = 1
        await RisingEdge(dut.clk)
        dut.descriptor__valid.value = 0
        await RisingEdge(dut.status__valid)
        dut.status__ready.value = 1
        await RisingEdge(dut.clk)
        dut.status__ready.value = 0
        cycles_run += round((get_sim_time(unit="ns") - begin) / 10)
    figures[f"sim.cycles_per_s.dma{bits}b"] = round(cycles_run / (time.perf_counter() - wall))
    with open(out, "w") as f:
        json.dump(figures, f)


@cocotb.test()
async def bursts_in_flight(dut):
    """(AxiRam) at memory latency 100, at least 4 read bursts and 4 write bursts are
    outstanding at once (address handshake done, last R beat / B response not yet)."""
    if "dram_bytes" in design_params():
        return
    tb = TB(dut, latency=100)
    await tb.reset()
    await tb.fill_random()
    peak = {"read": 0, "write": 0}
    live = {"read": 0, "write": 0}

    async def watch():
        while True:
            await RisingEdge(dut.clk)
            if int(dut.m_axi__arvalid.value) and int(dut.m_axi__arready.value):
                live["read"] += 1
            if int(dut.m_axi__rvalid.value) and int(dut.m_axi__rready.value) and int(dut.m_axi__rlast.value):
                live["read"] -= 1
            if int(dut.m_axi__awvalid.value) and int(dut.m_axi__awready.value):
                live["write"] += 1
            if int(dut.m_axi__bvalid.value) and int(dut.m_axi__bready.value):
                live["write"] -= 1
            for k in live:
                peak[k] = max(peak[k], live[k])

    cocotb.start_soon(watch())
    # rows of 32 bytes: many short bursts
    size = min(tb.spad_bytes, 4096)
    await tb.run(dma_model.descriptor(0x1000, 0, Space.DRAM, Space.SPAD, [32, size // 32], 0, (64, 0), (32, 0)))
    await tb.run(dma_model.descriptor(0, 0x8000, Space.SPAD, Space.DRAM, [32, size // 32], 0, (32, 0), (64, 0)))
    dut._log.info(f"peak bursts in flight: {peak}")
    assert peak["read"] >= 4 and peak["write"] >= 4, peak
