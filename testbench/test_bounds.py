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
from scoville.isa import QUEUE_OF, Opcode, decode, encode

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


@cocotb.test()
async def matches_the_functional_simulator(dut):
    params = design_params()
    spad, acc = params["spad_bytes"], params["acc_words"]
    seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
    dut._log.info(f"seed {seed} (replay with SCOVILLE_SEED={seed})")
    rng = random.Random(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    opcodes = [op for op in Opcode if QUEUE_OF[op] != "control"] + [Opcode.NOP, Opcode.END]
    seen = {True: 0, False: 0}
    for n in range(4000):
        opcode = opcodes[n % len(opcodes)]
        fields = random_fields(rng, spad, acc)
        word = encode(opcode, **fields)
        ins = decode(word)
        want = sram_overrun(opcode, ins, spad, acc)
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
        seen[ok] += 1
        assert ok == (want is None), (
            f"instruction {n} {opcode.name} {fields}: the check says {'fits' if ok else 'does not fit'}, "
            f"the functional simulator {'agrees' if ok == (want is None) else f'finds {want}'}")
        await RisingEdge(dut.clk)
    dut._log.info(f"{seen[True]} instructions fit, {seen[False]} did not")
    assert min(seen.values()) > 500, seen
