"""cocotb tests of the core controller: fetch, decode, queues, semaphores, errors, watchdog.

The testbench plays the memory (a fetch responder with random latency and optional bus-error
range) and the four units (random readiness, random execution time, one ``done`` per
instruction, in order). A semaphore model checks every release: an instruction may start only
if each semaphore it waits on has been signalled more often than it has been waited on.
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from rtl.core.controller import QUEUES, ErrorCode
from rtl.dma.port import Resp, read_response_layout
from scoville.bits import pack
from scoville.flow import design_params
from scoville.isa import INSTRUCTION_BYTES, Fetcher, Opcode, decode, encode, loop

# Dedicated semaphore per (producer queue, consumer queue), as the compiler allocates them.
PAIRS = [("load", "matrix"), ("load", "vector"), ("matrix", "vector"), ("vector", "store"),
         ("vector", "matrix"), ("store", "load"), ("matrix", "load"), ("vector", "load")]
OPCODES = {"load": [Opcode.LOAD, Opcode.GATHER], "store": [Opcode.STORE], "matrix": [Opcode.MATMUL],
           "vector": [Opcode.V_QUANT, Opcode.V_REQUANT, Opcode.V_ADD, Opcode.V_SOFTMAX_EXP]}


#: A controller built with SRAM sizes checks every instruction's operands: its random programs keep
#: their fields small enough to fit.
BOUNDED = "spad_bytes" in design_params()


def random_program(rng: random.Random, count: int) -> list[bytes]:
    """Instructions over all queues with consistent waits/signals (never deadlocks); with the
    bounds check, operands that fit 64 KiB / 64K words."""
    pending = {pair: 0 for pair in PAIRS}
    words = []
    for _ in range(count):
        queue = rng.choice(QUEUES)
        wait = signal = 0
        for n, (producer, consumer) in enumerate(PAIRS):
            if consumer == queue and pending[(producer, consumer)] and rng.random() < 0.5:
                wait |= 1 << n
                pending[(producer, consumer)] -= 1
            if producer == queue and rng.random() < 0.3:
                signal |= 1 << n
                pending[(producer, consumer)] += 1
        bits = (10, 7, 7) if BOUNDED else (32, 16, 32)   # addresses, rows and columns, imm
        words.append(encode(rng.choice(OPCODES[queue]), wait=wait, signal=signal,
                            addr0=rng.getrandbits(bits[0]), addr1=rng.getrandbits(bits[0]),
                            addr2=rng.getrandbits(bits[0]), addr3=rng.getrandbits(bits[1]),
                            rows=rng.getrandbits(bits[1]), cols=rng.getrandbits(bits[1]),
                            stride0=rng.getrandbits(bits[1]), stride1=rng.getrandbits(bits[1]),
                            imm=rng.getrandbits(bits[2])))
    words.append(encode(Opcode.END))
    return words


class TB:
    def __init__(self, dut):
        self.dut = dut
        params = design_params()
        self.data_width = params.get("data_width", 64)
        self.seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
        dut._log.info(f"seed {self.seed} (replay with SCOVILLE_SEED={self.seed})")
        self.rng = random.Random(self.seed)
        self.memory = bytearray(1 << 16)
        self.generation = 0
        self.bad_range = (1 << 30, 1 << 30)  # [lo, hi): fetches there answer SLVERR
        self.request_ready = 0.7  # how often the memory takes a fetch request offered to it
        self.released = {name: [] for name in QUEUES}
        self.semaphores = [0] * 8
        self.violations = []
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        dut.start.value = 0
        dut.unit_error.value = 0
        dut.fetch_request__ready.value = 0
        dut.fetch_response__valid.value = 0
        for name in QUEUES:
            getattr(dut, f"{name}__ready").value = 0
            getattr(dut, f"{name}_done").value = 0
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    def load_program(self, words: list[bytes], base: int) -> None:
        for n, word in enumerate(words):
            self.memory[base + n * INSTRUCTION_BYTES:base + (n + 1) * INSTRUCTION_BYTES] = word

    async def memory_model(self, latency=(0, 12)):
        """Answers fetch bursts in order, one beat per cycle when ready, after a random latency; a
        reset makes it forget the requests it holds."""
        dut, beat_bytes = self.dut, self.data_width // 8
        requests = []
        cocotb.start_soon(self._accept_requests(requests))
        while True:
            await RisingEdge(dut.clk)
            if not requests:
                continue
            generation, addr, beats = requests.pop(0)
            if generation != self.generation:
                continue
            for _ in range(self.rng.randint(*latency)):
                await RisingEdge(dut.clk)
            for beat in range(beats):
                if generation != self.generation:   # reset since the request was taken
                    break
                a = addr + beat * beat_bytes
                bad = self.bad_range[0] <= a < self.bad_range[1]
                data = 0 if bad or a + beat_bytes > len(self.memory) else int.from_bytes(
                    self.memory[a:a + beat_bytes], "little")
                resp = Resp.SLVERR.value if bad else Resp.OKAY.value
                dut.fetch_response__payload.value = pack(read_response_layout(32, self.data_width),
                                                         {"data": data, "resp": resp, "fault_addr": a})
                dut.fetch_response__valid.value = 1
                await RisingEdge(dut.clk)
                while not int(dut.fetch_response__ready.value) and generation == self.generation:
                    await RisingEdge(dut.clk)
                dut.fetch_response__valid.value = 0

    async def _accept_requests(self, requests):
        """Takes fetch requests with random readiness, and checks the stream rule: a request offered
        stays offered, unchanged, until it is taken."""
        dut = self.dut
        offered = None  # the payload of a request offered and not taken at the last edge
        while True:
            dut.fetch_request__ready.value = int(self.rng.random() < self.request_ready)
            await RisingEdge(dut.clk)
            valid, payload = int(dut.fetch_request__valid.value), int(dut.fetch_request__payload.value)
            if int(dut.rst.value):
                # The memory forgets its requests, those taken at the edge that raised the reset
                # included: `reset` bumping the generation itself raced with that edge's request.
                self.generation += 1
                offered = None
                continue
            if offered is not None and (not valid or payload != offered):
                self.violations.append(f"fetch request for {offered & 0xFFFFFFFF:#x} withdrawn or changed "
                                       f"before it was taken")
            taken = valid and int(dut.fetch_request__ready.value)
            if taken:
                requests.append((self.generation, payload & 0xFFFFFFFF, payload >> 32))
            offered = payload if valid and not taken else None

    async def unit(self, name: str, busy=(0, 6)):
        """Takes instructions with random readiness, executes each for a random time, pulses done."""
        dut = self.dut
        valid, ready, payload = (getattr(dut, f"{name}__{s}") for s in ("valid", "ready", "payload"))
        done = getattr(dut, f"{name}_done")
        while True:
            ready.value = int(self.rng.random() < 0.6)
            await RisingEdge(dut.clk)
            if int(ready.value) and int(valid.value):
                ready.value = 0
                ins = decode(int(payload.value).to_bytes(INSTRUCTION_BYTES, "little"))
                for n in range(8):
                    if ins["wait"] >> n & 1:
                        if self.semaphores[n] <= 0:
                            self.violations.append(f"{name} released {ins['opcode'].name} waiting on "
                                                   f"semaphore {n} = {self.semaphores[n]}")
                        self.semaphores[n] -= 1
                self.released[name].append(ins)
                for _ in range(self.rng.randint(*busy)):
                    await RisingEdge(dut.clk)
                    # the controller offers nothing to a busy unit (load and store share one)
                    for other in (("load", "store") if name in ("load", "store") else (name,)):
                        if int(getattr(dut, f"{other}__valid").value):
                            self.violations.append(f"{other} offered while {name} runs {ins['opcode'].name}")
                for n in range(8):
                    if ins["signal"] >> n & 1:
                        self.semaphores[n] += 1
                done.value = 1
                await RisingEdge(dut.clk)
                done.value = 0

    def start_models(self):
        cocotb.start_soon(self.memory_model())
        for name in QUEUES:
            cocotb.start_soon(self.unit(name))

    def new_job(self) -> None:
        """Forget what earlier jobs released (the semaphores restart at zero with each start)."""
        self.released = {name: [] for name in QUEUES}
        self.semaphores = [0] * 8

    async def start(self, program_addr: int) -> None:
        self.dut.program_addr.value = program_addr
        self.dut.start.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.start.value = 0

    async def run(self, program_addr: int, limit: int = 20000) -> tuple[str, int]:
        dut = self.dut
        await self.start(program_addr)
        for _ in range(limit):
            await RisingEdge(dut.clk)
            if int(dut.finished.value):
                return "finished", 0
            if int(dut.error.value):
                return ErrorCode(int(dut.error.value)).name, int(dut.error_addr.value)
        raise AssertionError(f"neither finished nor error after {limit} cycles (seed {self.seed})")

    def check_dispatch(self, words: list[bytes]):
        """Each unit got the program's instructions in order, loops expanded."""
        expected = {name: [] for name in QUEUES}
        fetcher = Fetcher(lambda pc: words[pc // INSTRUCTION_BYTES], 0)
        while True:
            ins = fetcher.next()
            del ins["pc"]
            if ins["opcode"] is Opcode.END:
                break
            queue = {0x1: "load", 0x2: "store", 0x3: "matrix", 0x4: "vector"}.get(ins["opcode"].value >> 4)
            if queue:
                expected[queue].append(ins)
        for name in QUEUES:
            got, want = self.released[name], expected[name]
            assert len(got) == len(want), f"{name}: {len(got)} released, {len(want)} in the program"
            for n, (a, b) in enumerate(zip(got, want, strict=True)):
                assert a == b, f"{name} instruction {n}: released {a}, program has {b} (seed {self.seed})"
        assert not self.violations, self.violations[:3]


@cocotb.test()
async def random_programs_run_in_order_with_semaphores(dut):
    await run_jobs(dut, lambda rng: random_program(rng, 60))


async def run_jobs(dut, make_program, limit: int = 20000) -> None:
    """Three jobs of ``make_program(rng)`` words, each finishing with every instruction dispatched
    in order."""
    tb = TB(dut)
    await tb.reset()
    tb.start_models()
    for n in range(3):
        words = make_program(tb.rng)
        base = 0x1000 * (n + 1)
        tb.load_program(words, base)
        tb.new_job()
        assert await tb.run(base, limit=limit) == ("finished", 0)
        await ClockCycles(dut.clk, 2)
        tb.check_dispatch(words)
        assert not int(dut.busy.value)


def looped_program(rng: random.Random, count: int) -> list[bytes]:
    """Random instructions with loops: bodies of 1 to 16 instructions without semaphores, run 1 to
    6 times, stepping random address fields by random increments (some wrapping past 2**32; with
    the bounds check, small ones that keep the operands inside the SRAMs)."""
    words = []
    while len(words) < count:
        if rng.random() < 0.5:
            words += random_program(rng, rng.randint(1, 4))[:-1]
            continue
        body = rng.randint(1, 16)
        choices = [0, 1, 8, 100] if BOUNDED else [0, 1, 8, 4096, rng.getrandbits(32)]
        increments = tuple(rng.choice(choices) for _ in range(4))
        words.append(encode(Opcode.LOOP, **loop(body, rng.randint(1, 6), increments, rng.getrandbits(4 * body))))
        for _ in range(body):
            queue = rng.choice(QUEUES)
            small = (1 << 7) if BOUNDED else (1 << 32)
            words.append(encode(rng.choice(OPCODES[queue]), rows=rng.randrange(8), cols=rng.randrange(8),
                                **{f"addr{f}": rng.randrange(small) for f in range(4)}))
    words.append(encode(Opcode.END))
    return words


@cocotb.test()
async def loops_run_their_bodies_with_stepped_addresses(dut):
    """Random programs with loops: every unit gets the expanded stream, in order; the fetch goes
    back for each iteration and drops what it had fetched past the body."""
    await run_jobs(dut, lambda rng: looped_program(rng, 40), limit=40000)


@cocotb.test()
async def fetch_requests_stay_offered_until_taken(dut):
    """A memory slow to take requests: the next burst is often still offered when END, a loop going
    back or an error makes it unwanted. It stays offered until taken (the core's read arbiter may
    already be passing it on to the memory) and its beats are dropped; a withdrawn request left
    them in the arbiter's fetch buffer, and the core busy, for ever (tiny-llama, 16 tokens, 16x16)."""
    tb = TB(dut)
    tb.request_ready = 0.1
    await tb.reset()
    tb.start_models()
    for n in range(6):
        words = looped_program(tb.rng, 30) if n % 2 else random_program(tb.rng, 30)
        base = 0x1000 * (n + 1)
        tb.load_program(words, base)
        tb.new_job()
        assert await tb.run(base, limit=60000) == ("finished", 0)
        await ClockCycles(dut.clk, 2)
        tb.check_dispatch(words)
        assert not int(dut.busy.value) and not int(dut.fetch_request__valid.value)
    for n in range(4):   # an error while the next burst may be offered
        words = [encode(Opcode.NOP)] * (3 + n) + [bytes([0xEE]) + bytes(INSTRUCTION_BYTES - 1), encode(Opcode.END)]
        tb.load_program(words, 0x8000)
        assert await tb.run(0x8000) == ("ILLEGAL_INSTRUCTION", 0x8000 + (3 + n) * INSTRUCTION_BYTES)
        for _ in range(1000):
            if not int(dut.fetch_request__valid.value):
                break
            await RisingEdge(dut.clk)
        else:
            raise AssertionError("the stopped controller's fetch request is never taken")
        await ClockCycles(dut.clk, 40)  # its beats arrive and are dropped before the next start
    assert not tb.violations, tb.violations[:3]


@cocotb.test()
async def malformed_loops_are_illegal_instructions(dut):
    """A LOOP inside a body, END inside a body, a body of 0 or 17, a count of 0, a LOOP with
    semaphores: ILLEGAL_INSTRUCTION at the offending word, nothing after it dispatched."""
    tb = TB(dut)
    await tb.reset()
    tb.start_models()
    load = encode(Opcode.LOAD)
    good = encode(Opcode.LOOP, **loop(2, 3))
    cases = [
        ([good, load, good, load, load], 2),                                   # nested
        ([good, load, encode(Opcode.END)], 2),                                  # END in the body
        ([encode(Opcode.LOOP, **dict(loop(1, 1), flags=0)), load], 0),          # empty body
        ([encode(Opcode.LOOP, **dict(loop(1, 1), flags=17)), load], 0),         # body too long
        ([encode(Opcode.LOOP, **dict(loop(1, 1), imm=0)), load], 0),            # never
        ([encode(Opcode.LOOP, **dict(loop(1, 2), wait=1)), load], 0),           # semaphores
    ]
    for words, bad in cases:
        base = 0x4000
        tb.load_program([load] + words + [encode(Opcode.STORE), encode(Opcode.END)], base)
        tb.new_job()
        assert await tb.run(base) == ("ILLEGAL_INSTRUCTION", base + (1 + bad) * INSTRUCTION_BYTES), words
        await ClockCycles(dut.clk, 20)
        assert not tb.released["store"], "an instruction after the illegal one was dispatched"
        await tb.reset()


@cocotb.test()
async def illegal_instruction_stops_with_its_address(dut):
    tb = TB(dut)
    await tb.reset()
    tb.start_models()
    words = [encode(Opcode.LOAD), encode(Opcode.MATMUL), bytes([0xEE]) + bytes(INSTRUCTION_BYTES - 1),
             encode(Opcode.STORE), encode(Opcode.END)]
    tb.load_program(words, 0x2000)
    assert await tb.run(0x2000) == ("ILLEGAL_INSTRUCTION", 0x2000 + 2 * INSTRUCTION_BYTES)
    await ClockCycles(dut.clk, 20)
    assert not tb.released["store"], "an instruction after the illegal one was dispatched"


@cocotb.test(skip=not BOUNDED)
async def an_operand_past_an_sram_stops_before_its_instruction_is_queued(dut):
    tb = TB(dut)
    await tb.reset()
    tb.start_models()
    size = design_params()["spad_bytes"]
    # B is 16 x 8 with rows 8 apart: its last byte is the scratchpad's last; one further does not fit
    fits = dict(addr0=0, addr1=size - 15 * 8 - 8, rows=2, cols=8, imm=16, stride0=16, stride1=8)
    words = [encode(Opcode.LOAD), encode(Opcode.MATMUL, **fits),
             encode(Opcode.MATMUL, **dict(fits, addr1=fits["addr1"] + 1)), encode(Opcode.STORE), encode(Opcode.END)]
    tb.load_program(words, 0x2000)
    assert await tb.run(0x2000) == ("SRAM_BOUNDS", 0x2000 + 2 * INSTRUCTION_BYTES)
    await ClockCycles(dut.clk, 20)
    assert len(tb.released["matrix"]) == 1 and not tb.released["store"], tb.released


@cocotb.test()
async def fetch_bus_error_reports_the_faulting_address(dut):
    tb = TB(dut)
    await tb.reset()
    tb.start_models()
    tb.load_program([encode(Opcode.NOP)] * 8 + [encode(Opcode.END)], 0x3000)
    tb.bad_range = (0x3000 + 5 * INSTRUCTION_BYTES, 0x4000)
    status, addr = await tb.run(0x3000)
    assert status == "FETCH_BUS_ERROR" and addr == 0x3000 + 5 * INSTRUCTION_BYTES, (status, hex(addr))


@cocotb.test()
async def watchdog_catches_a_wait_that_is_never_signalled(dut):
    tb = TB(dut)
    await tb.reset()
    tb.start_models()
    tb.load_program([encode(Opcode.MATMUL, wait=1 << 3), encode(Opcode.END)], 0x5000)
    status, _ = await tb.run(0x5000, limit=5000)
    assert status == "TIMEOUT"


@cocotb.test()
async def unit_error_stops_the_core_and_the_next_job_runs_after_reset(dut):
    tb = TB(dut)
    await tb.reset()
    tb.start_models()
    tb.load_program([encode(Opcode.LOAD)] * 30 + [encode(Opcode.END)], 0x6000)
    await tb.start(0x6000)
    await ClockCycles(dut.clk, 30)
    dut.unit_error.value = 1
    dut.unit_error_code.value = ErrorCode.OUT_OF_WINDOW.value
    dut.unit_error_addr.value = 0xDEAD0
    await RisingEdge(dut.clk)
    dut.unit_error.value = 0
    await ClockCycles(dut.clk, 2)
    assert ErrorCode(int(dut.error.value)) is ErrorCode.OUT_OF_WINDOW and int(dut.error_addr.value) == 0xDEAD0
    # the host resets the core, then the next job runs normally
    await tb.reset()
    words = random_program(tb.rng, 40)
    tb.load_program(words, 0x7000)
    await ClockCycles(dut.clk, 40)  # let the unit models finish what they held
    tb.new_job()
    assert await tb.run(0x7000) == ("finished", 0)
    await ClockCycles(dut.clk, 2)
    tb.check_dispatch(words)
