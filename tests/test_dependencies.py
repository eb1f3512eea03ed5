"""Dependency-exact semaphores (``compiler/dependencies.py``) under the schedule-randomising
executor (``compiler/concurrent.py``): every interleaving the semaphores allow ends with the DRAM
of the in-order functional simulator, no schedule deadlocks or overflows a semaphore, and
dropping one needed dependency is caught."""

import itertools

import numpy as np
import pytest

from compiler.concurrent import Deadlock, read_program, run_concurrent, write_program
from compiler.dependencies import (
    GROUP_OF,
    PAIR_SEMAPHORE,
    Access,
    apply_edges,
    conflicts,
    dependency_edges,
    footprint,
    hoist_loads,
    list_schedule,
    overlap,
    split_rows,
)
from compiler.funcsim import ExecutionError, Machine, run_program
from compiler.lower import Compiler
from golden.checkpoint import load_checkpoint
from golden.synthetic import write_llama
from scoville.config import ChipConfig
from scoville.isa import QUEUE_OF, Flag, Opcode
from scoville.models import load_model

SEEDS = range(6)


def in_order(compiler, job):
    return run_program(Machine(compiler.config, job.dram.copy()), job.program_addr)


def check_schedules(compiler, job, seeds=SEEDS, priorities=()):
    """Random interleavings (and fixed queue priorities) all end with the in-order DRAM."""
    want = in_order(compiler, job).dram
    for seed in seeds:
        machine = Machine(compiler.config, job.dram.copy())
        report = run_concurrent(machine, job.program_addr, seed=seed)
        assert report.executed == job.instructions - 1  # END is not queued
        bad = np.flatnonzero(machine.dram != want)
        assert not len(bad), f"seed {seed}: DRAM differs at {bad[:4].tolist()}"
    for priority in priorities:
        machine = Machine(compiler.config, job.dram.copy())
        run_concurrent(machine, job.program_addr, priority=priority)
        assert np.array_equal(machine.dram, want), f"priority {priority}"
    return want


@pytest.fixture(scope="module")
def tiny_llama():
    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def odd_gqa(tmp_path_factory):
    path = write_llama(tmp_path_factory.mktemp("odd") / "odd", vocab_size=101, hidden_size=40, intermediate_size=77,
                       num_layers=2, num_heads=5, num_kv_heads=1, max_positions=32, tie_word_embeddings=True,
                       tokenizer=False)
    return load_checkpoint(path)


def test_tiny_llama_prefill_and_decode_in_any_schedule(tiny_llama):
    compiler = Compiler(tiny_llama)
    prefill = compiler.job(np.arange(1, 17) * 7 % 512)
    orders = list(itertools.permutations(("load", "matrix", "vector", "store")))
    dram = check_schedules(compiler, prefill, priorities=orders)
    for step in range(2):
        decode = compiler.job(np.array([5 + step]), 16 + step, dram.copy())
        dram = check_schedules(compiler, decode, priorities=orders[::5])


@pytest.mark.parametrize("tokens", [1, 13])
def test_odd_gqa_llama_in_any_schedule(odd_gqa, tokens):
    compiler = Compiler(odd_gqa)
    check_schedules(compiler, compiler.job(np.arange(3, 3 + tokens)))


def test_small_scratchpad_tiles_in_any_schedule(tiny_llama):
    """Weight tiles over columns: several loads, matmuls and requantizations per linear layer."""
    compiler = Compiler(tiny_llama, ChipConfig(spad_bytes=6 * 1024))
    check_schedules(compiler, compiler.job(tiny_llama.encode("tiling")))


def test_token_blocks_in_any_schedule(tiny_llama):
    """Blocks of a long prompt pass the residual stream and the queries through DRAM, and read
    the keys and values earlier blocks wrote: every such DRAM dependency must be a semaphore."""
    compiler = Compiler(tiny_llama, ChipConfig(acc_words=4096, spad_bytes=16 * 1024))
    job = compiler.job(np.arange(1, 21) * 7 % 512)
    assert job.block < 20
    check_schedules(compiler, job)


def test_minilm_in_any_schedule():
    ckpt = load_model("minilm")
    compiler = Compiler(ckpt)
    check_schedules(compiler, compiler.job(ckpt.encode("A man is eating food.")), seeds=range(3))


def test_program_order_is_still_available(tiny_llama):
    compiler = Compiler(tiny_llama, synchronisation="program_order")
    job = compiler.job(np.arange(1, 5))
    check_schedules(compiler, job, seeds=range(2))
    with pytest.raises(ValueError, match="synchronisation"):
        Compiler(tiny_llama, synchronisation="none")


def test_pair_edges_are_increasing_on_both_sides(tiny_llama):
    """What makes a counting semaphore match each wait with its own signal (docs/isa.md)."""
    compiler = Compiler(tiny_llama)
    job = compiler.job(np.arange(1, 17))
    program = read_program(job.dram, job.program_addr)
    edges = dependency_edges(program, compiler.config)
    assert {e.semaphore for e in edges} <= set(range(8))
    for semaphore in range(8):
        mine = [e for e in edges if e.semaphore == semaphore]
        assert all(e.producer < e.consumer for e in mine)
        assert [e.producer for e in mine] == sorted({e.producer for e in mine})
        assert [e.consumer for e in mine] == sorted({e.consumer for e in mine})
        for side in ("producer", "consumer"):  # one group each: a queue, or load and store together
            assert len({GROUP_OF[QUEUE_OF[program[getattr(e, side)][0]]] for e in mine}) <= 1


def _mutated(compiler, job, drop):
    """``job``'s program with its semaphores recomputed and edge ``drop`` (an index) left out."""
    program = [(op, {**fields, "wait": 0, "signal": 0}) for op, fields in read_program(job.dram, job.program_addr)]
    edges = dependency_edges(program, compiler.config)
    kept = [e for n, e in enumerate(edges) if n != drop]
    dram = job.dram.copy()
    write_program(dram, job.program_addr, apply_edges(program, kept))
    return edges, dram


def _caught(compiler, job, dram, want, seeds):
    """The first seed whose schedule fails or leaves different data (the program area aside: the
    mutated program is written there, unfolded)."""
    program = slice(job.program_addr, job.program_addr + compiler.program_bytes)
    for seed in seeds:
        machine = Machine(compiler.config, dram.copy())
        try:
            run_concurrent(machine, job.program_addr, seed=seed)
        except ExecutionError:
            return seed
        got, expected = machine.dram.copy(), want.copy()
        got[program] = expected[program] = 0
        if not np.array_equal(got, expected):
            return seed
    return None


@pytest.mark.parametrize("kind", ["raw", "war"])
def test_a_dropped_dependency_is_caught(tiny_llama, kind):
    """Mutation: leave out one edge (a weight load before its matmul, or a matmul before the load
    that overwrites its weights: one weight buffer, no double buffering); some schedule then
    gives a different DRAM. Loads stay where the layer emits them (no hoisting), so that the
    dropped edge's load is still right in front of its matmul."""
    compiler = Compiler(tiny_llama, double_buffer=False, hoist_loads=False)
    job = compiler.job(np.arange(1, 9))
    want = in_order(compiler, job).dram
    program = read_program(job.dram, job.program_addr)
    edges = dependency_edges([(op, {**f, "wait": 0, "signal": 0}) for op, f in program], compiler.config)
    pair = ("transfer", "matrix") if kind == "raw" else ("matrix", "transfer")
    drop = next(n for n, e in enumerate(edges) if e.semaphore == PAIR_SEMAPHORE[pair]
                and program[e.producer][0] in (Opcode.LOAD, Opcode.MATMUL)
                and program[e.consumer][0] in (Opcode.LOAD, Opcode.MATMUL))
    _, dram = _mutated(compiler, job, drop)
    assert _caught(compiler, job, dram, want, range(50)) is not None
    _, intact = _mutated(compiler, job, None)
    assert _caught(compiler, job, intact, want, range(10)) is None


def test_backward_and_unmatched_waits_deadlock():
    config = ChipConfig(spad_bytes=1024, acc_words=1024, dram_bytes=1 << 16)
    dram = np.zeros(config.dram_bytes, dtype=np.uint8)
    load = (Opcode.LOAD, dict(addr0=0x8000, addr1=0, rows=1, cols=8))
    matmul = (Opcode.MATMUL, dict(addr0=0, addr1=0, addr2=0, addr3=1, rows=1, cols=1, imm=8))
    # the load waits for the matmul that comes after it and waits for it: a cycle
    write_program(dram, 0, [(load[0], {**load[1], "wait": 1 << 2, "signal": 1 << 0}),
                            (matmul[0], {**matmul[1], "wait": 1 << 0, "signal": 1 << 2}), (Opcode.END, {})])
    with pytest.raises(Deadlock, match="LOAD"):
        run_concurrent(Machine(config, dram.copy()), 0)
    # a wait nobody signals
    write_program(dram, 0, [load, (matmul[0], {**matmul[1], "wait": 1 << 5}), (Opcode.END, {})])
    with pytest.raises(Deadlock, match="MATMUL"):
        run_concurrent(Machine(config, dram.copy()), 0)


def test_footprints_cover_what_each_instruction_touches(tiny_llama):
    """Per instruction of a program: what the functional simulator changes lies in the write
    footprint, and scrambling the SRAMs outside the read footprint changes none of the result."""
    compiler = Compiler(tiny_llama)
    job = compiler.job(np.arange(1, 6))
    machine = Machine(compiler.config, job.dram.copy())
    rng = np.random.default_rng(1)
    for opcode, fields in read_program(job.dram, job.program_addr)[:-1]:
        reads, writes = footprint(opcode, fields)
        ins = {"opcode": opcode, **fields}
        spaces = ("spad", "acc", "dram") if opcode is Opcode.STORE else ("spad", "acc")
        # a copy of the state with the SRAMs scrambled outside what the instruction reads
        scrambled = Machine(compiler.config, machine.dram.copy() if opcode is Opcode.STORE else machine.dram)
        for space in ("spad", "acc"):
            old = getattr(machine, space)
            noise = rng.integers(-100, 100, size=old.size).astype(old.dtype)
            noise[_elements(reads, space)] = old[_elements(reads, space)]
            setattr(scrambled, space, noise)
        before = {space: getattr(machine, space).copy() for space in spaces}
        machine.step(ins)
        scrambled.step(ins)
        for space in spaces:
            new, inside = getattr(machine, space), _elements(writes, space)
            outside = np.ones(new.size, dtype=bool)
            outside[inside] = False
            assert not np.any(outside & (new != before[space])), f"{opcode.name} writes {space} outside its footprint"
            assert np.array_equal(getattr(scrambled, space)[inside], new[inside]), \
                f"{opcode.name} reads {space} outside its footprint"


def _elements(accesses: list[Access], space: str) -> np.ndarray:
    ranges = [np.arange(lo, hi) for a in accesses if a.space == space for lo, hi in a.intervals()]
    return np.concatenate(ranges) if ranges else np.zeros(0, dtype=np.int64)


def test_gather_reads_its_whole_table():
    reads, writes = footprint(Opcode.GATHER, dict(flags=Flag.DST_ACC, addr0=1000, addr1=8, addr2=0, rows=3, cols=1,
                                                  stride0=1, stride1=1, imm=10))
    assert Access("dram", 1000, 10, 4, 4) in reads and Access("acc", 0, 1, 3, 3) in reads
    assert writes == [Access("acc", 8, 3, 1, 1)]


def test_loads_move_ahead_of_what_they_do_not_touch():
    """``hoist_loads``: a LOAD moves in front of up to six instructions it shares no memory
    with, but not in front of one it conflicts with, another LOAD, a control instruction or one
    of another part."""
    load = (Opcode.LOAD, dict(addr0=0x8000, addr1=64, rows=1, cols=8))
    reads_there = (Opcode.MATMUL, dict(addr0=64, addr1=0, addr2=0, addr3=1, rows=1, cols=1, imm=8))
    elsewhere = (Opcode.MATMUL, dict(addr0=128, addr1=0, addr2=0, addr3=1, rows=1, cols=1, imm=8))
    vector = (Opcode.V_ADD, dict(addr0=512, addr1=512, addr2=600, rows=1, cols=8, imm=8))
    assert hoist_loads([elsewhere, vector, load]) == [2, 0, 1]
    assert hoist_loads([reads_there, vector, load]) == [0, 2, 1]          # WAR with the matmul
    assert hoist_loads([load, vector, elsewhere, load]) == [0, 3, 1, 2]   # not past the first load
    assert hoist_loads([elsewhere] * 8 + [load]) == [0, 1, 8, 2, 3, 4, 5, 6, 7]    # six at most
    assert hoist_loads([elsewhere] * 5 + [load], window=3) == [0, 1, 5, 2, 3, 4]
    assert hoist_loads([vector, (Opcode.END, {}), load]) == [0, 1, 2]
    # nor out of its part of the model
    assert hoist_loads([elsewhere, vector, load], parts=["qkv", "attention", "attention"]) == [0, 2, 1]


def test_list_schedule_overlaps_the_units():
    """``list_schedule``: an instruction independent of the ones before it in its queue starts
    with the first of them (the vector unit takes V2 while MM1, whose result V1 reads, runs;
    MM2 follows MM1); a conflicting pair keeps its order; control instructions stay put."""
    mm1 = (Opcode.MATMUL, dict(addr0=0, addr1=64, addr2=0, addr3=8, rows=1, cols=8, imm=8))
    v1 = (Opcode.V_ADD, dict(addr0=0, addr1=0, addr2=16, rows=1, cols=8, imm=8))
    mm2 = (Opcode.MATMUL, dict(addr0=0, addr1=64, addr2=100, addr3=8, rows=1, cols=8, imm=8))
    v2 = (Opcode.V_ADD, dict(addr0=500, addr1=500, addr2=520, rows=1, cols=8, imm=8))
    durations = [100, 50, 100, 50]
    assert list_schedule([mm1, v1, mm2, v2], durations, [0] * 4) == [0, 3, 1, 2]
    # V2 writing what MM2 reads keeps it behind MM2 (WAR)
    v2_there = (Opcode.V_ADD, dict(addr0=500, addr1=0, addr2=520, rows=1, cols=8, imm=8))
    order = list_schedule([mm1, v1, mm2, v2_there], durations, [0] * 4)
    assert order.index(3) > order.index(2) > order.index(0)
    # a control instruction closes a run; so does another layer
    end = (Opcode.END, {})
    assert list_schedule([mm1, v1, end, mm2, v2], [100, 50, 0, 100, 50], [0] * 5) == [0, 1, 2, 3, 4]
    assert list_schedule([mm1, v1, v2], [100, 50, 50], [0, 0, 1]) == [0, 1, 2]


def test_list_schedule_short_first():
    """Of two transfers ready at once, the longest path takes the long one whose result nothing
    reads (1 000 cycles) before the short one that a vector chain waits for (100 + 2 x 300);
    ``short_first`` ranks by the path after each less its own duration, and takes the short one
    first, the long one beside the chain."""
    long = (Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=0, addr1=1000, rows=1, cols=8))
    short = (Opcode.LOAD, dict(flags=Flag.DST_ACC, addr0=64, addr1=0, rows=1, cols=8))
    v1 = (Opcode.V_ADD, dict(addr0=0, addr1=0, addr2=16, rows=1, cols=8, imm=8))
    v2 = (Opcode.V_ADD, dict(addr0=0, addr1=0, addr2=32, rows=1, cols=8, imm=8))
    program, durations = [long, short, v1, v2], [1000, 100, 300, 300]
    assert list_schedule(program, durations, [0] * 4) == [0, 1, 2, 3]
    assert list_schedule(program, durations, [0] * 4, short_first=True) == [1, 0, 2, 3]


@pytest.mark.parametrize("window,short_first", [(8, False), (96, False), (96, True)])
def test_list_schedule_keeps_every_conflict_in_order(tiny_llama, window, short_first):
    """Every pair of a real program that conflicts (RAW, WAR or WAW in any memory) keeps its
    order, also when it is further apart than the window conflicts are looked for in."""
    from compiler.perfmodel import duration

    compiler = Compiler(tiny_llama, ChipConfig(), hoist_loads=False, list_schedule=False)
    job = compiler.job(np.arange(1, 25) * 7 % tiny_llama.config.vocab_size)
    program = [(op, {k: v for k, v in f.items() if k not in ("wait", "signal")}) for op, f in job.program]
    durations = [duration(op, f, compiler.config) if QUEUE_OF[op] != "control" else 0 for op, f in program]
    order = list_schedule(program, durations, job.layers, window=window, short_first=short_first)
    assert sorted(order) == list(range(len(program))) and order != list(range(len(program)))
    place = np.argsort(order)
    prints = [footprint(op, f) if QUEUE_OF[op] != "control" else ([], []) for op, f in program]
    moved = 0
    for b in range(len(program)):
        for a in range(b):
            if place[a] > place[b]:
                moved += 1
                (ra, wa), (rb, wb) = prints[a], prints[b]
                # hoist_loads's pairwise test, not the scheduler's merged ranges
                conflict = overlap(wa, rb) or overlap(ra, wb) or overlap(wa, wb)
                assert not conflict, (a, program[a], b, program[b])
                assert b - a < window, (a, b)
    assert moved


def test_conflicts_are_exact_on_strided_rows():
    """``conflicts`` (what list scheduling keeps in order) equals a test of every element on
    random instructions whose operands are rows apart, with one stride or with different ones,
    one or two operands a memory, overlapping or not: it finds a pair's meeting by bounding
    boxes, by the rows of one stride (the grids), or by the merged ranges."""
    rng = np.random.default_rng(8)
    program = []
    for _ in range(300):
        rows, cols = int(rng.integers(1, 7)), int(rng.integers(1, 9))
        strides = [int(rng.choice([cols, cols + 1, 12, 16, int(rng.integers(1, 20))])) for _ in range(3)]
        addrs = rng.integers(0, 160, 3).tolist()
        if rng.random() < 0.8:   # V_ADD: two sources and a destination in the accumulator
            program.append((Opcode.V_ADD, dict(addr0=addrs[0], addr1=addrs[1], addr2=addrs[2], rows=rows, cols=cols,
                                               stride0=strides[0], stride1=strides[1], imm=strides[2])))
        else:                    # a STORE: the accumulator's words to DRAM bytes
            program.append((Opcode.STORE, dict(flags=Flag.DST_ACC, addr0=addrs[0], addr1=4 * addrs[1], rows=rows,
                                               cols=cols, stride0=strides[0], stride1=strides[1])))

    def elements(accesses):
        return {(a.space, e) for a in accesses for lo, hi in a.intervals() for e in range(lo, hi)}

    prints = [[elements(part) for part in footprint(op, f)] for op, f in program]
    window = 40
    found = conflicts(program, window)
    for b, (reads_b, writes_b) in enumerate(prints):
        want = [a for a in range(max(0, b - window), b)
                if writes_b & prints[a][0] or reads_b & prints[a][1] or writes_b & prints[a][1]]
        assert found[b] == want, (b, program[b])
    assert sum(map(len, found)) > 100


def test_the_compiler_keeps_the_faster_order(tiny_llama):
    """The compiler keeps the list-scheduled order only where the performance model predicts it
    faster: the 64-token prompt on the FPGA chip (its blocks of 32 overlap), not a decode."""
    from compiler.perfmodel import predict

    ids = np.arange(1, 65) * 7 % tiny_llama.config.vocab_size
    cycles = {}
    for listed in (False, True):
        compiler = Compiler(tiny_llama, ChipConfig(), list_schedule=listed)
        cycles[listed] = [predict(job.program, compiler.config)[1]
                          for job in (compiler.job(ids), compiler.job(np.array([5]), start=64))]
    assert cycles[True][0] < 0.97 * cycles[False][0]
    assert cycles[True][1] <= cycles[False][1]


@pytest.mark.parametrize("opcode", [Opcode.MATMUL, Opcode.V_QUANT, Opcode.V_REQUANT, Opcode.V_DEQUANT, Opcode.V_ADD,
                                    Opcode.V_MUL, Opcode.V_SILU, Opcode.V_GELU, Opcode.V_RMSNORM, Opcode.V_LAYERNORM,
                                    Opcode.V_SOFTMAX_EXP, Opcode.V_ATTN_SCALE])
def test_split_rows_covers_the_same_elements(opcode):
    """``split_rows``: the pieces read and write, together, exactly what the instruction does, each
    piece its own rows (the compiler's bit-exact tests run the split programs)."""
    fields = dict(flags=Flag.HAS_BIAS | Flag.FOLD_V | Flag.CAUSAL, addr0=64, addr1=4096, addr2=9000, addr3=24,
                  stride0=24, stride1=40, rows=32, cols=20, imm=30)
    if opcode is Opcode.MATMUL:
        fields.update(flags=0, addr1=2048, stride1=20, addr3=40, imm=16)

    def elements(accesses):
        return {(a.space, e) for a in accesses for lo, hi in a.intervals() for e in range(lo, hi)}

    pieces = split_rows(opcode, fields, 2)
    assert len(pieces) == 2 and all(f["rows"] == 16 for _, f in pieces)
    for kind in (0, 1):
        whole = elements(footprint(opcode, fields)[kind])
        parts = [elements(footprint(op, f)[kind]) for op, f in pieces]
        assert parts[0] | parts[1] == whole
    assert not elements(footprint(*pieces[0])[1]) & elements(footprint(*pieces[1])[1])
    if opcode is Opcode.V_SOFTMAX_EXP:   # the causal mask's first position moves with the rows
        assert pieces[1][1]["imm"] == fields["imm"] + 16
    assert split_rows(opcode, dict(fields, rows=7), 2) == [(opcode, dict(fields, rows=7))]
    assert split_rows(Opcode.V_ROPE, fields, 2) == [(Opcode.V_ROPE, fields)]


def test_only_halves_worth_their_cost_are_cut():
    """The compiler cuts an instruction in halves for list scheduling only where the halves cost
    at most ``SPLIT_COST`` more than the whole: on the 8x8 chip a 32-row requantization is cut, a
    32-row quantization of one head's queries (the vector unit's fixed cost twice) is not, nor
    anything under ``SPLIT_ROWS`` rows; attention's 32-row scores matmul (every key tile loaded
    twice) is cut or not by the same rule."""
    from compiler.lower import SPLIT_COST, SPLIT_ROWS, halves_worth_it
    from compiler.perfmodel import duration

    config = ChipConfig()
    requant = dict(addr0=0, stride0=64, addr1=0, stride1=64, addr2=4096, addr3=8192, rows=32, cols=64)
    scores = dict(flags=Flag.B_TRANSPOSED, addr0=0, stride0=8, addr1=1024, stride1=16, addr2=0, addr3=64,
                  rows=32, cols=64, imm=16)
    queries = dict(addr0=0, stride0=64, addr1=0, stride1=16, addr2=4096, rows=32, cols=16)
    assert [f["rows"] for _, f in halves_worth_it(Opcode.V_REQUANT, requant, config)] == [16, 16]
    for opcode, fields in ((Opcode.V_QUANT, queries), (Opcode.V_REQUANT, dict(requant, rows=SPLIT_ROWS - 1)),
                           (Opcode.MATMUL, dict(scores, rows=SPLIT_ROWS - 1))):
        assert halves_worth_it(opcode, fields, config) == [(opcode, fields)]
    for opcode, fields in ((Opcode.V_REQUANT, requant), (Opcode.MATMUL, scores), (Opcode.V_QUANT, queries)):
        whole = duration(opcode, fields, config)
        halves = sum(duration(op, f, config) for op, f in split_rows(opcode, fields, 2))
        assert (halves - whole <= SPLIT_COST * whole) == (len(halves_worth_it(opcode, fields, config)) == 2)
