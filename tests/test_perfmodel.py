"""The performance model's replay of the controller (compiler/perfmodel.py) on small programs
whose schedule is known; its accuracy against the RTL is checked in tests/test_rtl_backend.py."""

import numpy as np
import pytest

from compiler.lower import Compiler
from compiler.perfmodel import duration, predict, schedule
from scoville.config import ChipConfig
from scoville.isa import Opcode
from scoville.models import load_model

LOAD, MATMUL, VADD, STORE, END = Opcode.LOAD, Opcode.MATMUL, Opcode.V_ADD, Opcode.STORE, Opcode.END


def test_independent_units_overlap_and_semaphores_order():
    program = [(LOAD, {}), (MATMUL, {}), (VADD, {}), (END, {})]
    issue, done = schedule(program, [10, 20, 30, 0], contention=0.0)
    assert list(issue[:3]) == [0, 1, 2] and list(done[:3]) == [10, 21, 32]
    # the vector instruction waits for the matrix one (semaphore 1)
    program = [(LOAD, {}), (MATMUL, {"signal": 2}), (VADD, {"wait": 2}), (END, {})]
    issue, done = schedule(program, [10, 20, 30, 0], contention=0.0)
    assert issue[2] == done[1] == 21 and done[2] == 51


def test_load_and_store_share_the_transfer_unit():
    program = [(LOAD, {}), (STORE, {}), (END, {})]
    issue, done = schedule(program, [10, 10, 0], contention=0.0)
    assert issue[1] == done[0] == 10 and done[1] == 20


def test_a_full_queue_stops_fetch_in_program_order():
    # one load runs and four fill the 4-deep load queue; the sixth waits for the queue, and the
    # MATMUL behind it for the fetch
    program = [(LOAD, {})] * 6 + [(MATMUL, {}), (END, {})]
    issue, _ = schedule(program, [100] * 6 + [1, 0], queue_depth=4)
    assert issue[6] == 102   # the second load leaves at 100; the sixth is fetched at 101, the MATMUL at 102
    issue_deep, _ = schedule(program, [100] * 6 + [1, 0], queue_depth=8)
    assert issue_deep[6] == 6


def test_the_chip_queue_depth_is_the_models():
    """``predict`` replays the controller with the chip's ``queue_depth``; the RTL's core is built
    with it (``rtl/core/core.py``), and a depth the controller cannot build is refused."""
    program = [(LOAD, {"rows": 1, "cols": 4096})] * 6 + [(MATMUL, {}), (END, {})]
    _, deep = predict(program, ChipConfig())
    _, shallow = predict(program, ChipConfig(queue_depth=4))
    assert ChipConfig().queue_depth == 16 and deep == shallow   # the MATMUL waits for nothing either way
    trace, _ = predict(program, ChipConfig(queue_depth=4))
    assert trace.issue["matrix"][0] > trace.issue["load"][1]    # fetched behind the fifth load
    trace, _ = predict(program, ChipConfig())
    assert trace.issue["matrix"][0] < trace.issue["load"][1]
    for bad in (3, 1, 128, "8"):
        with pytest.raises(ValueError, match="queue_depth"):
            ChipConfig(queue_depth=bad)
    from rtl.core.core import Core
    assert Core(ChipConfig(queue_depth=8)).controller.queue_depth == 8


def test_the_matrix_unit_takes_the_next_matmul_in_its_drain():
    """With a tail, the matrix unit takes a second MATMUL that many cycles before the first one is
    done, never a third before the first is done, and they complete in order."""
    program = [(MATMUL, {})] * 3 + [(END, {})]
    issue, done = schedule(program, [100, 100, 100, 0], contention=0.0)
    assert list(issue[:3]) == [0, 100, 200]
    issue, done = schedule(program, [100, 100, 100, 0], contention=0.0, tails={"matrix": 30})
    assert list(issue[:3]) == [0, 70, 140] and list(done[:3]) == [100, 170, 240]
    # a long tail: still two at most, the third waits for the first's completion
    issue, done = schedule(program, [100, 100, 100, 0], contention=0.0, tails={"matrix": 1000})
    assert list(issue[:3]) == [0, 1, 100] and list(done[:3]) == [100, 101, 200]


def test_the_transfer_unit_overlaps_descriptors_reading_the_same_memory():
    """A LOAD starts in the tail of a LOAD into either SRAM (both read DRAM: the DMA engine
    issues its rows right behind), a STORE in the tail of a STORE from the same SRAM; not a STORE
    from the other SRAM, a LOAD behind a STORE or the other way round, or a GATHER (whose first
    row waits for every descriptor before it); a LOAD in the tail of a GATHER (its rows are LOAD
    descriptors)."""
    from scoville.isa import Flag

    load, load_acc = (Opcode.LOAD, {}), (Opcode.LOAD, {"flags": Flag.DST_ACC})
    store, store_acc = (Opcode.STORE, {}), (Opcode.STORE, {"flags": Flag.DST_ACC})
    gather = (Opcode.GATHER, {})
    tails = {"transfer": 40}
    cases = [(load, load, True), (load, load_acc, True), (load_acc, load, True), (store, store, True),
             (store, store_acc, False), (load, store, False), (store, load, False), (load, gather, False),
             (gather, load, True), (gather, store, False)]
    for first, second, overlaps in cases:
        program = [first, second, (END, {})]
        issue, done = schedule(program, [100, 100, 0], contention=0.0, tails=tails)
        assert issue[1] == (60 if overlaps else 100), (second, issue)
        assert list(done[:2]) == ([100, 160] if overlaps else [100, 200])


def test_the_vector_sequencer_takes_the_next_instruction_in_the_last_ones_tail():
    """A vector instruction starts in the tail of the one before (:func:`vector_tail`, by that
    one's path) unless it reads what that one writes, runs on the scalar path, scans value scales
    or is empty; one on the scalar path holds the sequencer to its end."""
    from compiler.perfmodel import tails as unit_tails
    from compiler.perfmodel import vector_tail
    from scoville.config import ChipConfig
    from scoville.isa import Flag

    config = ChipConfig()
    rect = {"rows": 4, "cols": 32, "stride0": 32, "stride1": 32}
    quant = (Opcode.V_QUANT, {**rect, "addr0": 0, "addr1": 0, "addr2": 1000})   # int8 into the scratchpad
    gelu = (Opcode.V_GELU, {**rect, "addr0": 2000, "addr1": 3000})
    tail = vector_tail(*quant, config)
    assert tail == vector_tail(Opcode.V_SOFTMAX_EXP, {}, config) > vector_tail(*gelu, config) > 0
    cases = [(quant, gelu, True),
             (quant, (Opcode.V_GELU, {**rect, "addr0": 1000 - 4 * 32, "addr1": 3000}), True),   # just below
             (quant, (Opcode.V_GELU, {**rect, "addr0": 1001 - 4 * 32, "addr1": 3000}), False),   # its row scales
             (quant, (Opcode.V_DEQUANT, {**rect, "addr0": 100, "addr1": 3000, "addr2": 4000}), False),   # its int8
             (gelu, (Opcode.V_ADD, {**rect, "addr0": 0, "addr2": 3000 + 3 * 32 + 31, "imm": 32}), False),
             (quant, (Opcode.V_SCALE_MUL, {"rows": 4, "addr0": 2000, "addr1": 3000}), False),
             (quant, (Opcode.V_SOFTMAX_EXP, {**rect, "flags": Flag.FOLD_V, "addr0": 2000, "addr1": 3000}), False),
             (quant, (Opcode.V_GELU, {"rows": 0, "cols": 32}), False),
             ((Opcode.V_ROPE, {**rect, "addr3": 16}), gelu, False)]
    for first, second, overlaps in cases:
        program = [first, second, (END, {})]
        issue, done = schedule(program, [500, 300, 0], contention=0.0, tails=unit_tails(config))
        held = vector_tail(*first, config) if overlaps else 0
        assert issue[1] == 500 - held and done[1] == 800 - held, (first[0], second, issue, done)


def test_row_scales_alone_skip_the_last_pass_and_have_their_own_coefficients():
    """A ``V_QUANT`` or ``V_RMSNORM`` with ``ROW_SCALE`` makes one pass fewer than the plain
    instruction (the sequencer's QUANT_SCALE and SUM_SQUARES), writes a word a row at ``addr1``
    in the accumulator instead of the rows, and is timed by its own coefficient row where the
    table has one; ``fit`` fits that row from its samples apart from the plain instruction's."""
    from compiler.perfmodel import COEFFICIENTS, coefficient_key, duration, fit, passes_of, vector_ranges
    from rtl.vector.isa import PASSES as UNIT_PASSES
    from rtl.vector.isa import Op
    from scoville.config import ChipConfig
    from scoville.isa import Flag

    config = ChipConfig()
    rect = {"rows": 16, "cols": 64, "stride0": 64, "addr0": 0, "addr1": 5000, "addr2": 9000}
    plain = (Opcode.V_QUANT, {**rect, "stride1": 64})
    scales = (Opcode.V_QUANT, {**rect, "stride1": 1, "flags": Flag.ROW_SCALE})
    assert (passes_of(*plain), passes_of(*scales)) == (UNIT_PASSES[Op.QUANTIZE], UNIT_PASSES[Op.QUANT_SCALE])
    assert passes_of(Opcode.V_RMSNORM, {"flags": Flag.ROW_SCALE}) == UNIT_PASSES[Op.SUM_SQUARES]
    assert coefficient_key(*scales) == "V_QUANT_ROW_SCALE" and coefficient_key(*plain) == "V_QUANT"
    assert duration(*scales, config) < duration(*plain, config)
    _, writes = vector_ranges(*scales)
    assert (False, 5000, 5016) in writes and (False, 9000, 9016) in writes   # a word a row, row scales
    assert (True, 5000, 5000 + 15 * 64 + 64) in vector_ranges(*plain)[1]    # the int8 rows
    shapes = [{**scales[1], "rows": rows, "cols": cols} for rows in (4, 8, 16, 32) for cols in (16, 40, 64)]
    samples = [(Opcode.V_QUANT, f, 129.0 + f["rows"] * -(-f["cols"] // config.lanes), config) for f in shapes]
    fitted = fit(samples + [(*plain, 700.0, config)] * 8)
    assert np.allclose(fitted["V_QUANT_ROW_SCALE"], [129.0, 0.0, 1.0], atol=1e-6)
    assert "V_QUANT" not in fitted   # one shape: its terms are not determined
    assert set(COEFFICIENTS) >= {"V_QUANT_ROW_SCALE", "V_REQUANT8"}


def test_a_dma_transfer_into_a_bank_a_matmul_writes_waits_for_its_writes():
    """A LOAD into an accumulator bank a MATMUL writes gets the port when the MATMUL does not
    write it, and one cycle in DMA_YIELD when it always does; another bank is not slowed."""
    from compiler.perfmodel import DMA_YIELD, write_duty
    from rtl.memory.accumulator import YIELD_AFTER
    from scoville.config import ChipConfig

    assert DMA_YIELD == YIELD_AFTER   # the accumulator's arbitration, which the model mirrors
    program = [(MATMUL, {}), (LOAD, {}), (END, {})]
    for duty, bank, rate in ((1.0, 0, 1 / DMA_YIELD), (0.25, 0, 0.75), (1.0, 1, 1.0)):
        banks = [(set(), {0}), (set(), {bank}), (set(), set())]
        _, done = schedule(program, [1000, 100, 0], contention=0.0, banks=banks, duties=[duty, 0.0, 0.0])
        assert abs(done[1] - (1 + 100 / rate)) <= 2, (duty, bank, done)
    # two LOADs in the DMA at once: only the one into the bank the MATMUL writes is slowed, not
    # the one beside it into the scratchpad (a tile's column scales beside the next weight tile)
    program = [(MATMUL, {}), (LOAD, {}), (LOAD, {}), (END, {})]
    banks = [(set(), {0}), (set(), {0}), (set(), set()), (set(), set())]
    _, done = schedule(program, [5000, 100, 100, 0], contention=0.0, banks=banks, duties=[1.0, 0.0, 0.0, 0.0],
                       tails={"transfer": 100})
    assert done[1] > 1 + 100 * DMA_YIELD - 5 and done[2] <= 2 + 100 + 2, done
    # a decode's one-row tiles write one cycle in 4.5 on 8x8 (weights two rows a cycle, a bank
    # turning round in R + 1), one in eight with B off scratchpad rows (a row a cycle); a 64-row
    # prefill's every cycle
    config = ChipConfig()
    assert write_duty(MATMUL, {"rows": 1}, config) == 2 / 9 and write_duty(MATMUL, {"rows": 64}, config) == 1.0
    assert write_duty(MATMUL, {"rows": 1, "stride1": 3}, config) == 1 / 8


def test_merged_vector_stages_save_their_latency():
    """A chip whose vector unit merges stages predicts each vector instruction shorter by the
    latency the unit saves on its path (the elaborated unit's), and nothing else."""
    from dataclasses import replace

    from compiler.perfmodel import merge_saving, vector_latencies

    merged, full = ChipConfig(), replace(ChipConfig(), vector_stage_merge=1)
    (long_m, short_m), (long_f, short_f) = vector_latencies(2, merged.vector_stage_merge), vector_latencies(2, 1)
    assert long_m < long_f - 50 and short_m < short_f - 8
    fields = {"rows": 4, "cols": 64}
    assert duration(Opcode.V_QUANT, fields, full) - duration(Opcode.V_QUANT, fields, merged) == long_f - long_m
    assert duration(Opcode.V_MUL, fields, full) - duration(Opcode.V_MUL, fields, merged) == short_f - short_m
    assert merge_saving(MATMUL, merged) == merge_saving(Opcode.V_ROPE, merged) == merge_saving(Opcode.V_MUL, full) == 0
    # V_ADD runs on the wide requantizer, whose latency the merge does not change
    assert duration(VADD, fields, full) == duration(VADD, fields, merged)


def test_contention_slows_the_vector_unit_while_the_matrix_engine_runs():
    program = [(MATMUL, {}), (VADD, {}), (END, {})]
    _, done = schedule(program, [100, 20, 0], contention=1.0)
    assert done[1] == 1 + 40   # half speed beside the matmul


def test_durations_grow_with_the_work():
    config = ChipConfig()
    small = duration(MATMUL, {"rows": 8, "cols": 8, "imm": 8}, config)
    big = duration(MATMUL, {"rows": 64, "cols": 64, "imm": 64}, config)
    assert 0 < small < big
    assert duration(LOAD, {"rows": 1, "cols": 64}, config) < duration(LOAD, {"rows": 1, "cols": 6400}, config)


def test_whole_jobs_predict():
    ckpt = load_model("tiny-llama")
    job = Compiler(ckpt).job(np.arange(1, 17))
    trace, cycles = predict(job.program, ChipConfig())
    issue, done, _ = trace.per_instruction(job)
    assert cycles == done.max() > 0 and (issue[done >= 0] < done[done >= 0]).all()


@pytest.mark.parametrize("bus", [8, 32])
def test_a_wider_bus_is_not_slower(bus):
    """Not slower beyond what the schedule moves: with wider bus words the loads finish at other
    times, and which instruction the in-order fetch reaches first can cost a few hundred cycles
    either way (a 32-byte bus: 27 884 cycles against 27 621 for 8 bytes, 27 136 for 16)."""
    ckpt = load_model("tiny-llama")
    narrow = predict(Compiler(ckpt).job(np.array([3]), 0).program, ChipConfig())[1]
    config = ChipConfig(bus_bytes=bus)
    assert predict(Compiler(ckpt, config).job(np.array([3]), 0).program, config)[1] <= 1.02 * narrow


def test_each_overhead_the_limits_table_removes_makes_the_job_faster(monkeypatch):
    """``scripts.limits`` (in ``make sweep``): taking an overhead away never costs cycles, each one
    reaches the prediction it names (decode on the default chip), and all of them at once gain
    more than any one."""
    from compiler import perfmodel
    from scripts import limits

    monkeypatch.setattr(limits, "PROMPT", 16)
    ckpt = load_model("tiny-llama")
    config = ChipConfig()
    base = limits.predict_jobs(ckpt, config, perfmodel.COEFFICIENTS)
    gains = {}
    for name, (change_c, change_cfg) in limits.OVERHEADS.items():
        figures = limits.predict_jobs(ckpt, change_cfg(config), change_c(perfmodel.COEFFICIENTS))
        for phase in ("prefill", "decode"):
            assert figures[phase][0] <= base[phase][0], (name, phase)
        gains[name] = base["decode"][0] - figures["decode"][0]
    assert all(gains[name] > 0 for name in ("vector latency", "DMA per-instruction", "array weight load")), gains
    coefficients, lifted = limits._all(perfmodel.COEFFICIENTS, config)
    everything = limits.predict_jobs(ckpt, lifted, coefficients)
    assert base["decode"][0] - everything["decode"][0] > max(gains.values())
    assert perfmodel.COEFFICIENTS["vector"][0] > 0   # the table's changes work on copies


def test_passes_are_the_sequencers():
    """The model streams each row of a vector instruction as many times as the hardware does (it
    once had V_RMSNORM at two passes against the unit's three, and every norm came out short)."""
    from compiler.perfmodel import PASSES
    from rtl.core.vector_sequencer import _UNIT_JOBS
    from rtl.vector.isa import PASSES as UNIT_PASSES

    for opcode, (unit_op, _, _) in _UNIT_JOBS.items():
        assert PASSES.get(opcode, 1) == UNIT_PASSES[unit_op], opcode


def test_short_path_opcodes_are_the_units():
    """The model's short-path opcodes (a fixed cost about a hundred cycles lower) are the
    instructions whose vector-unit operation takes the unit's short path."""
    from compiler.perfmodel import SHORT_PATH
    from rtl.core.vector_sequencer import _UNIT_JOBS
    from rtl.vector.isa import SHORT_PATH as UNIT_SHORT_PATH

    assert SHORT_PATH == {opcode for opcode, (unit_op, _, _) in _UNIT_JOBS.items() if unit_op in UNIT_SHORT_PATH}


def test_wide_requant_opcodes_are_the_sequencers():
    """The opcodes the model runs a beat a cycle on the wide requantizer are the instructions the
    sequencer sends there: those whose unit operation is REQUANT or ADD."""
    from compiler.perfmodel import WIDE_REQUANT
    from rtl.core.vector_sequencer import _UNIT_JOBS, WIDE_OPS

    assert WIDE_REQUANT == {opcode for opcode, (unit_op, _, _) in _UNIT_JOBS.items() if unit_op in WIDE_OPS}


def test_max_first_opcodes_are_the_units():
    """The opcodes whose first pass the model counts at a beat a cycle on a narrow vector unit
    are the instructions whose unit operation the narrow unit reduces so."""
    from compiler.perfmodel import MAX_FIRST
    from rtl.core.vector_sequencer import _UNIT_JOBS
    from rtl.vector.isa import MAX_ABS_FIRST
    from rtl.vector.isa import MAX_FIRST as UNIT_MAX_FIRST

    reduced = set(UNIT_MAX_FIRST) | set(MAX_ABS_FIRST)
    assert MAX_FIRST == {opcode for opcode, (unit_op, _, _) in _UNIT_JOBS.items() if unit_op in reduced}
