"""cocotb tests of the SRAM bounds check (:mod:`rtl.core.bounds`) against
:func:`compiler.dependencies.sram_overrun`, the functional simulator's rule: random instructions of
every opcode whose operands end just inside, at, or just past the scratchpad and the accumulator,
with every flag combination, empty rectangles, strides wider than the memory and huge fields."""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from compiler.dependencies import sram_overrun
from rtl.core.bounds import SLOTS
from scoville.flow import design_params
from scoville.isa import QUEUE_OF, Flag, Opcode, decode, encode

FIELD_BITS = {"flags": 8, "wait": 8, "signal": 8, "rows": 16, "cols": 16, "stride0": 16, "stride1": 16}


def random_fields(rng: random.Random, spad: int, acc: int) -> dict:
    """Fields whose products and ends land around the memories' sizes more often than not."""
    size = rng.choice([spad, acc])

    def count(bits):
        return rng.choice([0, 1, 2, rng.randrange(1, 64), rng.randrange(1, size + 2),
                           rng.randrange(1 << bits), (1 << bits) - 1])

    def address(bits=32):
        return rng.choice([0, rng.randrange(size), size - rng.randrange(1, 64), size, size + rng.randrange(64),
                           rng.randrange(1 << bits)]) % (1 << bits)

    fields = {name: rng.getrandbits(bits) for name, bits in FIELD_BITS.items()}
    fields.update(rows=count(16), cols=count(16), stride0=count(16), stride1=count(16), imm=count(32))
    fields.update({f"addr{n}": address() for n in range(4)})
    if rng.random() < 0.3:   # a rectangle that ends exactly at the size, or one past it
        rows, cols = rng.randrange(1, 40), rng.randrange(1, 40)
        stride = rng.randrange(cols, cols + 20)
        end = size + rng.choice([0, 0, 1])
        addr = end - (rows - 1) * stride - cols
        if addr >= 0:
            key = rng.choice(["0", "1"])
            fields.update({"rows": rows, "cols": cols, f"addr{key}": addr, f"stride{key}": stride})
    return fields


async def start(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0


async def check(dut, opcode: Opcode, fields: dict, what: str) -> bool:
    """Run the check on one instruction: whether it fits, which must be the functional
    simulator's verdict (:func:`compiler.dependencies.sram_overrun`)."""
    params = design_params()
    spad, acc = params["spad_bytes"], params["acc_words"]
    word = encode(opcode, **fields)
    want = sram_overrun(opcode, decode(word), spad, acc)
    dut.word.value = int.from_bytes(word, "little")
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    cycles = 1
    while True:
        await ReadOnly()
        if dut.done.value:
            break
        if cycles == 2 * SLOTS + 8:
            raise AssertionError(f"{opcode.name}: no verdict after {cycles} cycles")
        await RisingEdge(dut.clk)
        cycles += 1
    assert cycles <= SLOTS + 3, (opcode.name, cycles)
    ok = bool(dut.ok.value)
    assert ok == (want is None), (
        f"{what} {opcode.name} {fields}: the check says {'fits' if ok else 'does not fit'}, "
        f"the functional simulator {'agrees' if ok == (want is None) else f'finds {want}'}")
    await RisingEdge(dut.clk)
    return ok


@cocotb.test()
async def matches_the_functional_simulator(dut):
    params = design_params()
    spad, acc = params["spad_bytes"], params["acc_words"]
    seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
    dut._log.info(f"seed {seed} (replay with SCOVILLE_SEED={seed})")
    rng = random.Random(seed)
    await start(dut)
    opcodes = [op for op in Opcode if QUEUE_OF[op] != "control"] + [Opcode.NOP, Opcode.END]
    seen = {True: 0, False: 0}
    for n in range(4000):
        opcode = opcodes[n % len(opcodes)]
        seen[await check(dut, opcode, random_fields(rng, spad, acc), f"instruction {n}")] += 1
    dut._log.info(f"{seen[True]} instructions fit, {seen[False]} did not")
    assert min(seen.values()) > 500, seen


@cocotb.test()
async def a_requantization_s_row_maxima(dut):
    """A V_REQUANT with ROW_SCALE writes a word a row at imm: it fits when the last word is the
    accumulator's last and not one further; without ROW_SCALE, imm is no operand. Its other
    operands fit (random instructions rarely have every other operand inside)."""
    acc = design_params()["acc_words"]
    await start(dut)
    rows = 5
    base = dict(rows=rows, cols=8, stride0=8, stride1=8, addr0=0, addr1=64, addr2=128, addr3=256)
    for flags, past, fits in ((Flag.ROW_SCALE, 0, True), (Flag.ROW_SCALE, 1, False),
                              (Flag.ROW_SCALE | Flag.HAS_BIAS, 1, False), (0, 1, True), (Flag.HAS_BIAS, 1, True)):
        ok = await check(dut, Opcode.V_REQUANT, dict(base, flags=flags, imm=acc - rows + past), "row maxima")
        assert ok == fits, (flags, past)
