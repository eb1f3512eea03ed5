"""A vector unit built with only some operations (``VectorUnit(ops=...)``, as the core's sequencer
builds it) computes those as golden does, with the latency of the full unit.

Amaranth's Python simulator at C = 2 (no Verilator build); the full unit's Verilator tests are
``tests/test_vector.py``.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from rtl.core.vector_sequencer import UNIT_OPS
from rtl.vector.isa import Instruction, Op, lane_input_layout, side_layout
from rtl.vector.unit import VectorUnit
from testbench.vector import expected_beats, input_beats, random_job, side_beats

LANES = 2


def _run(unit: VectorUnit, jobs) -> list[dict]:
    """Queue every job back to back; the output beats, in order."""
    instructions = [Instruction.const(job.instruction()) for job in jobs]
    inputs = [lane_input_layout(LANES).const(beat) for job in jobs for beat in input_beats(job, LANES)]
    sides = [side_layout(LANES).const(beat) for job in jobs for beat in side_beats(job, LANES)]
    expected = sum(len(expected_beats(job, LANES)) for job in jobs)
    out = []

    def put(stream, payloads):
        async def testbench(ctx):
            for payload in payloads:
                ctx.set(stream.payload, payload)
                ctx.set(stream.valid, 1)
                await ctx.tick().until(stream.ready)
            ctx.set(stream.valid, 0)
        return testbench

    async def get(ctx):
        ctx.set(unit.o.ready, 1)
        for _ in range(20 * expected + 1000):
            _, _, payload, valid = await ctx.tick().sample(unit.o.payload, unit.o.valid)
            if valid:
                out.append({"data": [payload.data[j] for j in range(LANES)], "value": payload.value,
                            "m": payload.m, "e": payload.e})
                if len(out) == expected:
                    return

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(put(unit.c, instructions))
    sim.add_testbench(put(unit.i, inputs))
    sim.add_testbench(put(unit.s, sides))
    sim.add_testbench(get)
    sim.run()
    return out


def test_sequencer_ops_only_excludes_rope_and_softmax():
    assert Op.ROPE not in UNIT_OPS and Op.SOFTMAX not in UNIT_OPS
    with pytest.raises(ValueError):
        VectorUnit(lanes=2, ops=())


def test_unit_with_the_sequencers_ops_equals_golden():
    seed = 7
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    jobs = [random_job(op, rng, rows=2, length=5) for op in sorted(UNIT_OPS, key=lambda op: op.value)]
    unit = VectorUnit(lanes=LANES, ops=UNIT_OPS)
    got = _run(unit, jobs)
    want = [beat for job in jobs for beat in expected_beats(job, LANES)]
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"beat {n}: got {g}, golden {w}"
    full = VectorUnit(lanes=LANES)
    Simulator(full)  # elaborates, which sets the latency
    assert unit.latency == full.latency
