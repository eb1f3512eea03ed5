"""A C-lane vector unit built from a narrower one (``NarrowVectorUnit``) gives golden's results,
beat for beat as ``VectorUnit(C)`` lays them out, with stalls on every port.

Amaranth's Python simulator at C = 4 around 2- and 1-lane units (no Verilator build); the chip
runs it through the whole-model tests when its ``vector_lanes`` is below ``lanes``.
"""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from compiler.perfmodel import features
from rtl.core.vector_sequencer import UNIT_OPS
from rtl.vector.isa import PASSES, Instruction, Op, lane_input_layout, side_layout
from rtl.vector.narrow import NarrowVectorUnit
from rtl.vector.unit import VectorUnit
from scoville.config import ChipConfig
from scoville.isa import Flag, Opcode
from testbench.vector import Job, expected_beats, folded, input_beats, random_job, side_beats, wide

LANES = 4
#: the sequencer's operations, and two reductions (one beat per row)
OPS = UNIT_OPS | {Op.MAX, Op.SUM_SQUARES}


def _run(unit, jobs, rng=None, fill=(0,)) -> tuple[list[dict], int]:
    """Queue every job back to back; the output beats in order, and the cycles they took.

    With ``rng``, every producer and the consumer pause at random (about a third of the cycles).
    ``fill``: what the rows' last beats hold past their end. A unit built with ``trim_masked``
    gets and gives a softmax row's beats up to its last allowed key.
    """
    trim = unit.trim_masked
    instructions = [Instruction.const(job.instruction()) for job in jobs]
    inputs = [lane_input_layout(LANES).const(beat) for job in jobs for beat in input_beats(job, LANES, fill, trim)]
    sides = [side_layout(LANES).const(beat) for job in jobs for beat in side_beats(job, LANES, trim)]
    expected = sum(len(expected_beats(job, LANES, trim=trim)) for job in jobs)
    out = []
    cycles = [0]

    def pause(ctx):
        return ctx.tick().repeat(int(rng.integers(1, 4))) if rng is not None and rng.random() < 0.3 else None

    def put(stream, payloads):
        async def testbench(ctx):
            for payload in payloads:
                if (wait := pause(ctx)) is not None:
                    ctx.set(stream.valid, 0)
                    await wait
                ctx.set(stream.payload, payload)
                ctx.set(stream.valid, 1)
                await ctx.tick().until(stream.ready)
            ctx.set(stream.valid, 0)
        return testbench

    async def get(ctx):
        for cycle in range(60 * expected + 2000):
            ready = rng is None or rng.random() > 0.3
            ctx.set(unit.o.ready, ready)
            _, _, payload, valid = await ctx.tick().sample(unit.o.payload, unit.o.valid)
            if valid and ready:
                out.append({"data": [payload.data[j] for j in range(LANES)], "value": payload.value,
                            "m": payload.m, "e": payload.e})
                if len(out) == expected:
                    cycles[0] = cycle + 1
                    return

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    # the producers run in the background: a unit that stops taking beats ends the run when the
    # consumer gives up, rather than hanging it
    sim.add_testbench(put(unit.c, instructions), background=True)
    sim.add_testbench(put(unit.i, inputs), background=True)
    sim.add_testbench(put(unit.s, sides), background=True)
    sim.add_testbench(get)
    sim.run()
    return out, cycles[0]


def _assert_golden(got: list[dict], jobs: list[Job], trim: bool = False) -> None:
    """The output beats equal golden's, beat for beat as ``VectorUnit(LANES)`` lays them out
    (``trim``: built with ``trim_masked``)."""
    want = [beat for job in jobs for beat in expected_beats(job, LANES, trim=trim)]
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"beat {n}: got {g}, golden {w}"


def _jobs(rng) -> list[Job]:
    # lengths around the piece and beat boundaries, and an empty job the unit drops
    jobs = []
    for n, op in enumerate(sorted(OPS, key=lambda op: op.value)):
        length = (1, 2, 3, 5, 6, 7, 9)[n % 7]
        jobs.append(random_job(op, rng, rows=1 + n % 3, length=length))
    jobs.insert(3, Job(Op.ADD, np.zeros((0, 4), dtype=np.int64), side_b=np.zeros((0, 4), dtype=np.int64)))
    return jobs


@pytest.mark.parametrize("unit_lanes", [2, 1])
def test_narrow_unit_equals_golden_with_stalls(unit_lanes):
    seed = 11 + unit_lanes
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    jobs = _jobs(rng)
    got, _ = _run(NarrowVectorUnit(LANES, unit_lanes, ops=OPS), jobs, rng)
    _assert_golden(got, jobs)


def test_narrow_unit_takes_one_cycle_per_piece():
    # rows of 64 elements: the 4-lane unit streams 16 beats a pass, the 2-lane one 32
    rng = np.random.default_rng(3)
    jobs = [random_job(Op.ADD, rng, rows=8, length=64), random_job(Op.LAYERNORM, rng, rows=8, length=64)]
    beats = sum(job.rows * PASSES[job.op] * 64 // LANES for job in jobs)
    _, wide = _run(VectorUnit(lanes=LANES, ops=OPS), jobs)
    _, narrow = _run(NarrowVectorUnit(LANES, 2, ops=OPS), jobs)
    assert narrow - wide == pytest.approx(beats, abs=4)


@pytest.mark.parametrize("unit_lanes", [2, 1])
def test_narrow_unit_reduces_the_first_pass_of_max_passes(unit_lanes):
    # The max(-abs) pass of these operations goes one reduced piece a beat: each piece must take
    # the right elements (not the filler past a row's end, which would win: +-2**31; not the
    # keys past a softmax row's causal limit), whatever piece and lane holds the largest.
    rng = np.random.default_rng(40 + unit_lanes)
    jobs = []
    for n, length in enumerate((1, 3, 4, 5, 7, 8, 10, 13)):
        rows = 1 + n % 3
        jobs.append(Job(Op.MAX, -np.abs(wide(rng, (rows, length), max_bits=int(rng.integers(1, 31)))) - 1))
        jobs.append(random_job(Op.QUANTIZE, rng, rows=rows, length=length))
        jobs.append(random_job(Op.QUANT_SCALE, rng, rows=rows, length=length))
        jobs.append(random_job(Op.RMSNORM, rng, rows=rows, length=length))
        jobs.append(random_job(Op.SUM_SQUARES, rng, rows=rows, length=length))
        x = wide(rng, (rows + 1, length), max_bits=int(rng.integers(4, 20)))
        jobs.append(Job(Op.SOFTMAX_EXP, x, fields={"allowed": 1 + n % length, "causal": 1}))
        jobs.append(Job(Op.SOFTMAX_EXP, x[:, ::-1].copy()))
        jobs.append(folded(Job(Op.SOFTMAX_EXP, x, fields={"allowed": 1 + n % length, "causal": 1}), rng))
    fill = (-(1 << 31), (1 << 31) - 1)
    got, _ = _run(NarrowVectorUnit(LANES, unit_lanes, ops=OPS), jobs, rng, fill)
    _assert_golden(got, jobs)


def _masked_jobs(rng) -> list[Job]:
    """Softmax rows whose masks end in every piece and beat (causal, prefix, none, folded or
    not), between other operations (whose rows no trim touches)."""
    jobs = []
    for n, length in enumerate((1, 2, 3, 5, 8, 11, 16)):
        rows = 1 + n % 4
        x = wide(rng, (rows, length), max_bits=int(rng.integers(4, 20)))
        for allowed, causal in ((1, 1), (1 + n % length, 1), (1 + (3 * n) % length, 0), (0, 0), (length + 2, 1)):
            job = Job(Op.SOFTMAX_EXP, x, fields={"allowed": allowed, "causal": causal})
            jobs.append(folded(job, rng) if (n + allowed) % 2 else job)
        jobs.append(random_job(Op.RMSNORM, rng, rows=rows, length=length))
        jobs.append(random_job(Op.QUANT_SCALE, rng, rows=rows, length=length))
    return jobs


@pytest.mark.parametrize("unit_lanes", [4, 2, 1])
def test_a_unit_that_trims_masked_keys_equals_golden_with_stalls(unit_lanes):
    # A unit built with trim_masked takes a softmax row only up to its last allowed key, on every
    # pass, and emits only those beats: full width, or in pieces (the side beats of a fold too)
    rng = np.random.default_rng(70 + unit_lanes)
    jobs = _masked_jobs(rng)
    unit = VectorUnit(lanes=LANES, ops=OPS, trim_masked=True) if unit_lanes == LANES \
        else NarrowVectorUnit(LANES, unit_lanes, ops=OPS, trim_masked=True)
    got, _ = _run(unit, jobs, rng, fill=(-(1 << 31), (1 << 31) - 1))
    _assert_golden(got, jobs, trim=True)


def test_trimmed_causal_rows_take_their_allowed_pieces_only():
    # 16 causal rows of 64 keys from key 1: row r takes r + 1 keys, so its beats of 4 and pieces
    # of 2 up to there, on both passes of SOFTMAX_EXP (the max pass a beat a cycle)
    x = wide(np.random.default_rng(9), (16, 64), max_bits=12)
    jobs = [Job(Op.SOFTMAX_EXP, x, fields={"allowed": 1, "causal": 1})] * 4
    ends = np.arange(1, 17)
    pieces = 4 * int(np.sum(-(-ends // 4) + -(-ends // 2)))
    _, full = _run(NarrowVectorUnit(LANES, 2, ops=OPS), jobs)
    _, trimmed = _run(NarrowVectorUnit(LANES, 2, ops=OPS, trim_masked=True), jobs)
    assert full - trimmed == pytest.approx(4 * 16 * (16 + 32) - pieces, abs=4)


def test_narrow_unit_takes_the_max_passes_a_beat_a_cycle():
    # QUANTIZE's, RMSNORM's and SUM_SQUARES's max-abs pass and SOFTMAX_EXP's max pass at one cycle
    # a beat: only their other passes go in pieces (16 beats of 4 lanes a row, 32 pieces of 2)
    rng = np.random.default_rng(5)
    jobs = [random_job(op, rng, rows=8, length=64)
            for op in (Op.QUANTIZE, Op.SOFTMAX_EXP, Op.RMSNORM, Op.SUM_SQUARES)]
    _, wide_cycles = _run(VectorUnit(lanes=LANES, ops=OPS), jobs)
    _, narrow = _run(NarrowVectorUnit(LANES, 2, ops=OPS), jobs)
    assert narrow - wide_cycles == pytest.approx((1 + 1 + 2 + 1) * 8 * 16, abs=4)


def test_narrow_unit_rejects_widths_that_do_not_divide():
    for unit_lanes in (0, 3, 8):
        with pytest.raises(ValueError, match="divisor"):
            NarrowVectorUnit(LANES, unit_lanes)


def test_chip_configuration_takes_a_divisor_of_lanes():
    assert ChipConfig().unit_lanes == 2 and ChipConfig(vector_lanes=None).unit_lanes == 8
    for bad in (0, 3, 16, 2.0):
        with pytest.raises(ValueError, match="vector_lanes"):
            ChipConfig(vector_lanes=bad)


def test_performance_model_counts_the_pieces():
    # a 64-element row: 8 beats at 8 lanes, 16 pieces on a 4-lane unit, 64 on a 1-lane one;
    # V_QUANT's max-abs pass a beat a cycle on any unit
    fields = {"rows": 10, "cols": 64, "addr0": 0, "addr1": 0}
    configs = {lanes: ChipConfig(vector_lanes=lanes) for lanes in (None, 4, 1)}   # None: as wide as the beats
    beats = {lanes: features(Opcode.V_SILU, fields, config)[2] for lanes, config in configs.items()}
    assert beats == {None: 10 * 8, 4: 10 * 16, 1: 10 * 64}
    beats = {lanes: features(Opcode.V_QUANT, fields, config)[2] for lanes, config in configs.items()}
    assert beats == {None: 2 * 10 * 8, 4: 10 * 8 + 10 * 16, 1: 10 * 8 + 10 * 64}
    # V_REQUANT a beat a cycle on the wide requantizer, in pieces through the unit without it
    for beside, want in ((True, {None: 80, 4: 80, 1: 80}), (False, {None: 80, 4: 160, 1: 640})):
        beats = {lanes: features(Opcode.V_REQUANT, fields, dataclasses.replace(config, wide_requant=beside))[2]
                 for lanes, config in configs.items()}
        assert beats == want
    # V_RMSNORM with ROW_SCALE: its max-abs pass a beat a cycle, then the sum of squares in pieces,
    # and no third pass (the rows' scales; no gamma or beta read)
    scales = {lanes: features(Opcode.V_RMSNORM, dict(fields, flags=Flag.ROW_SCALE), config)[1:].tolist()
              for lanes, config in configs.items()}
    assert scales == {None: [20, 80 + 80], 4: [20, 80 + 160], 1: [20, 80 + 640]}


def test_chip_configuration_takes_wide_requant_as_a_bool():
    assert ChipConfig().wide_requant is True
    for bad in (0, 1, "yes", None):
        with pytest.raises(ValueError, match="wide_requant"):
            ChipConfig(wide_requant=bad)


def test_chip_configuration_takes_one_to_three_merged_stages():
    assert ChipConfig().vector_stage_merge == 3
    for bad in (0, 4, 1.5, None):
        with pytest.raises(ValueError, match="vector_stage_merge"):
            ChipConfig(vector_stage_merge=bad)
