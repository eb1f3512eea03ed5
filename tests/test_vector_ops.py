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
from testbench.vector import expected_beats, folded, input_beats, random_job, side_beats

LANES = 2


def _run(unit: VectorUnit, jobs, stall: float = 0.0, seed: int = 0) -> list[dict]:
    """Queue every job back to back; the output beats, in order. ``stall``: the share of cycles
    the output is not taken."""
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
        rng = np.random.default_rng(seed)
        ready = 1
        ctx.set(unit.o.ready, ready)
        for _ in range(40 * expected + 1000):
            _, _, payload, valid = await ctx.tick().sample(unit.o.payload, unit.o.valid)
            if valid and ready:
                out.append({"data": [payload.data[j] for j in range(LANES)], "value": payload.value,
                            "m": payload.m, "e": payload.e})
                if len(out) == expected:
                    return
            ready = int(rng.random() >= stall)
            ctx.set(unit.o.ready, ready)

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
    jobs.append(folded(random_job(Op.SOFTMAX_EXP, rng, rows=3, length=7), rng))   # attention's V fold
    unit = VectorUnit(lanes=LANES, ops=UNIT_OPS)
    got = _run(unit, jobs)
    want = [beat for job in jobs for beat in expected_beats(job, LANES)]
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"beat {n}: got {g}, golden {w}"
    full = VectorUnit(lanes=LANES)
    Simulator(full)  # elaborates, which sets the latency
    assert unit.latency == full.latency


def _first_output_cycle(unit: VectorUnit, job) -> int:
    """Cycles from the first input beat of ``job`` on an idle unit to its first output beat."""
    instruction = Instruction.const(job.instruction())
    inputs = [lane_input_layout(LANES).const(beat) for beat in input_beats(job, LANES)]
    sides = [side_layout(LANES).const(beat) for beat in side_beats(job, LANES)]
    cycles = {}

    async def drive(ctx):
        ctx.set(unit.c.payload, instruction)
        ctx.set(unit.c.valid, 1)
        await ctx.tick().until(unit.c.ready)
        ctx.set(unit.c.valid, 0)
        ctx.set(unit.o.ready, 1)
        for n, beat in enumerate(inputs):
            ctx.set(unit.i.payload, beat)
            ctx.set(unit.i.valid, 1)
            if sides:
                ctx.set(unit.s.payload, sides[n])
                ctx.set(unit.s.valid, 1)
            await ctx.tick().until(unit.i.ready)
        ctx.set(unit.i.valid, 0)
        ctx.set(unit.s.valid, 0)

    async def watch(ctx):
        count = 0
        async for _, _, i_valid, i_ready, o_valid in ctx.tick().sample(
                unit.i.valid, unit.i.ready, unit.o.valid):
            if "start" not in cycles and i_valid and i_ready:
                cycles["start"] = count
            if o_valid:
                cycles["out"] = count
                return
            count += 1
            if count > 1000:
                raise AssertionError("no output")

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(watch)
    sim.run()
    return cycles["out"] - cycles["start"]


def test_single_pass_operations_take_the_short_path():
    """REQUANT, ADD, MUL, GELU and SILU go from issue straight to the output segment: their first
    output comes ``short_latency`` cycles after their first input, about a hundred fewer than a
    multi-pass operation's. A short-path job queued right behind a long-path one (and the other
    way round) still comes out after it and equal to golden, with the output stalling."""
    from rtl.vector.isa import SHORT_PATH

    rng = np.random.default_rng(11)
    unit = VectorUnit(lanes=LANES, ops=UNIT_OPS)
    Simulator(unit)
    assert unit.latency - unit.short_latency >= 90, (unit.short_latency, unit.latency)
    measured = {op: _first_output_cycle(VectorUnit(lanes=LANES, ops=UNIT_OPS),
                                        random_job(op, rng, rows=1, length=LANES))
                for op in (Op.REQUANT, Op.SILU, Op.QUANTIZE)}
    # the output FIFO and the handshakes add the same two cycles to each; QUANTIZE streams its
    # one-beat row twice, so its output follows the second pass
    assert measured[Op.REQUANT] == measured[Op.SILU] == unit.short_latency + 2, measured
    assert measured[Op.QUANTIZE] == unit.latency + 1 + 2, measured
    long_ops = [op for op in UNIT_OPS if op not in SHORT_PATH]
    short_ops = [op for op in UNIT_OPS if op in SHORT_PATH]
    ops = [op for pair in zip(long_ops * 2, short_ops * 2, strict=False) for op in pair]
    jobs = [random_job(op, rng, rows=int(rng.integers(1, 3)), length=int(rng.integers(1, 7))) for op in ops]
    got = _run(VectorUnit(lanes=LANES, ops=UNIT_OPS), jobs, stall=0.3, seed=5)
    want = [beat for job in jobs for beat in expected_beats(job, LANES)]
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"beat {n}: got {g}, golden {w}"


@pytest.mark.parametrize("merge", [2, 3])
def test_merged_stages_equal_golden_with_less_latency(merge):
    """``stage_merge``: the same pipeline with a register stage for every ``merge`` stages (the
    ROM's and the issue's kept) gives golden's results for every operation, long and short path
    jobs mixed, the output stalling, with about ``1 / merge`` of the latency."""
    rng = np.random.default_rng(merge)
    jobs = [random_job(op, rng, rows=2, length=5) for op in sorted(Op, key=lambda op: op.value)]
    jobs += [random_job(op, rng, rows=1, length=3) for op in (Op.QUANTIZE, Op.REQUANT, Op.RMSNORM, Op.ADD,
                                                              Op.SOFTMAX, Op.ROPE, Op.MUL)]
    unit = VectorUnit(lanes=LANES, stage_merge=merge)
    got = _run(unit, jobs, stall=0.3, seed=merge)
    want = [beat for job in jobs for beat in expected_beats(job, LANES)]
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"stage_merge {merge}, beat {n}: got {g}, golden {w}"
    full = VectorUnit(lanes=LANES)
    Simulator(full)
    assert unit.latency <= full.latency // merge + 4 and unit.short_latency <= full.short_latency // merge + 4, \
        (unit.latency, unit.short_latency, full.latency, full.short_latency)
    with pytest.raises(ValueError, match="stage_merge"):
        VectorUnit(lanes=LANES, stage_merge=4)
