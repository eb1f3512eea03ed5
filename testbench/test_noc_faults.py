"""The hardware traffic checker catches every kind of fault (rtl/noc/traffic.py TrafficLoopback):
a clean link gives no error; a dropped, duplicated or corrupted flit always gives at least one."""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from rtl.noc.traffic import Fault

CASES = [(Fault.NONE, 0)] + [(fault, at) for fault in (Fault.DROP, Fault.DUPLICATE, Fault.CORRUPT)
                             for at in (0, 1, 2, 3, 5, 8, 13, 40, 97)]


@cocotb.test()
async def every_fault_is_caught(dut):
    seed = int(os.environ.get("SCOVILLE_SEED", random.randrange(1 << 30)))
    dut._log.info(f"seed {seed} (replay with SCOVILLE_SEED={seed})")
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.enable.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    dut.pattern.value = 0
    dut.rate.value = 1 << 14  # a packet every 4 cycles on average
    dut.min_length.value, dut.max_length.value = 1, 4
    dut.hot_fraction.value = 0
    dut.eject_stall.value = 1 << 14
    for fault, at in CASES:
        dut.fault.value, dut.fault_at.value = fault.value, at
        dut.seed.value = seed + at
        dut.clear.value = 1
        await ClockCycles(dut.clk, 1)
        dut.clear.value = 0
        dut.enable.value = 1
        await ClockCycles(dut.clk, 300)
        dut.enable.value = 0
        await ClockCycles(dut.clk, 100)
        errors, created = int(dut.errors.value), int(dut.created.value)
        received = int(dut.received_packets.value)
        if fault == Fault.NONE:
            assert errors == 0 and received == created, (errors, received, created)
        else:
            assert errors > 0, f"{fault.name} at flit {at} went unnoticed ({received} of {created} packets)"
        dut._log.info(f"{fault.name} at flit {at}: {errors} errors, first {int(dut.first_error.value)}")
