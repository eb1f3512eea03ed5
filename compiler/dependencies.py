"""Dependency-exact semaphores: which instructions of a program must wait for which, and the
``wait``/``signal`` masks that make the chip's concurrent queues respect exactly that.

Each instruction reads and writes rectangles of the scratchpad (bytes), the accumulator (words)
and DRAM (bytes), as :mod:`compiler.funcsim` defines (:func:`footprint`). Two instructions in
different queues conflict when one writes what the other reads or writes (RAW, WAR, WAW); the
later one in program order must then start after the earlier one completes.

The scheme (:func:`synchronise`, argued in ``docs/isa.md``): the load and store queues share the
core's one transfer unit, so they are chained in program order (semaphores ``LOAD_TO_STORE`` and
``STORE_TO_LOAD``) and form one *transfer* group; between the three groups (transfer, matrix,
vector) each ordered pair has its own semaphore. A consumer waits once per pair on the latest
instruction of the producer group it conflicts with, unless what it already knows to be
complete (through its own queue and earlier edges) covers it; so the edges of a pair are
increasing on both sides and a counting semaphore matches them in order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scoville.config import ChipConfig
from scoville.isa import QUEUE_OF, Flag, Opcode

__all__ = ["Access", "footprint", "sram_overrun", "synchronise", "dependency_edges", "apply_edges", "Edge",
           "hoist_loads", "conflicts", "list_schedule", "split_rows", "GROUP_OF", "GROUPS", "PAIR_SEMAPHORE",
           "LOAD_TO_STORE", "STORE_TO_LOAD"]

SPAD, ACC, DRAM = "spad", "acc", "dram"
SPACES = (SPAD, ACC, DRAM)
#: (kind of the later access, kind of the earlier) that conflict, 0 a read and 1 a write: WAR,
#: RAW, WAW
_CONFLICTING = ((1, 0), (0, 1), (1, 1))

#: Synchronisation groups: load and store form one (chained in program order).
GROUPS = ("transfer", "matrix", "vector")
GROUP_OF = {"load": "transfer", "store": "transfer", "matrix": "matrix", "vector": "vector"}

#: One semaphore per ordered pair of groups (producer, consumer).
PAIR_SEMAPHORE = {
    ("transfer", "matrix"): 0, ("transfer", "vector"): 1,
    ("matrix", "transfer"): 2, ("matrix", "vector"): 3,
    ("vector", "transfer"): 4, ("vector", "matrix"): 5,
}
#: The program-order chain between the load and store queues.
LOAD_TO_STORE = 6
STORE_TO_LOAD = 7


@dataclass(frozen=True)
class Access:
    """``rows`` runs of ``cols`` elements, ``stride`` apart, from ``addr`` in one memory space."""

    space: str
    addr: int
    rows: int
    cols: int
    stride: int

    def intervals(self) -> list[tuple[int, int]]:
        """Half-open element ranges, contiguous rows merged."""
        if self.rows <= 0 or self.cols <= 0:
            return []
        if self.rows == 1 or self.stride == self.cols:
            return [(self.addr, self.addr + (self.rows - 1) * self.stride + self.cols)]
        if self.stride < self.cols:  # overlapping rows: cover the whole span
            return [(self.addr, self.addr + (self.rows - 1) * self.stride + self.cols)]
        return [(self.addr + r * self.stride, self.addr + r * self.stride + self.cols) for r in range(self.rows)]


def footprint(opcode: Opcode, ins: dict) -> tuple[list[Access], list[Access]]:
    """What one instruction reads and what it writes (``ins``: its fields; missing ones are 0).

    Mirrors :class:`compiler.funcsim.Machine`. A ``GATHER`` reads its whole table (the ids are
    only known at run time).
    """
    f = {name: int(ins.get(name, 0)) for name in ("flags", "addr0", "addr1", "addr2", "addr3", "rows", "cols",
                                                  "stride0", "stride1", "imm")}
    flags, rows, cols = f["flags"], f["rows"], f["cols"]
    reads: list[Access] = []
    writes: list[Access] = []
    if opcode is Opcode.LOAD:
        width = 4 if flags & Flag.DST_ACC else 1
        reads.append(Access(DRAM, f["addr0"], rows, cols * width, f["stride0"] * width))
        writes.append(Access(ACC if flags & Flag.DST_ACC else SPAD, f["addr1"], rows, cols, f["stride1"]))
    elif opcode is Opcode.GATHER:
        width = 4 if flags & Flag.DST_ACC else 1
        reads.append(Access(ACC, f["addr2"], 1, rows, rows))
        reads.append(Access(DRAM, f["addr0"], f["imm"], cols * width, f["stride0"] * width))
        writes.append(Access(ACC if flags & Flag.DST_ACC else SPAD, f["addr1"], rows, cols, f["stride1"]))
    elif opcode is Opcode.STORE:
        width = 4 if flags & Flag.DST_ACC else 1
        reads.append(Access(ACC if flags & Flag.DST_ACC else SPAD, f["addr0"], rows, cols, f["stride0"]))
        writes.append(Access(DRAM, f["addr1"], rows, cols * width, f["stride1"] * width))
    elif opcode is Opcode.MATMUL:
        m, n, k = rows, cols, f["imm"]
        reads.append(Access(SPAD, f["addr0"], m, k, f["stride0"]))
        if flags & Flag.B_TRANSPOSED:
            reads.append(Access(SPAD, f["addr1"], n, k, f["stride1"]))
        else:
            reads.append(Access(SPAD, f["addr1"], k, n, f["stride1"]))
        if flags & Flag.ACCUMULATE:
            reads.append(Access(ACC, f["addr2"], m, n, f["addr3"]))
        writes.append(Access(ACC, f["addr2"], m, n, f["addr3"]))
    elif QUEUE_OF[opcode] == "vector":
        _vector_footprint(opcode, f, reads, writes)
    return reads, writes


def _vector_footprint(opcode: Opcode, f: dict, reads: list, writes: list) -> None:
    flags, rows, cols = f["flags"], f["rows"], f["cols"]
    src = Access(ACC, f["addr0"], rows, cols, f["stride0"])
    dst = Access(ACC, f["addr1"], rows, cols, f["stride1"])

    def words(addr: int, count: int) -> Access:
        return Access(ACC, addr, 1, count, count)

    if opcode is Opcode.V_QUANT:
        reads.append(src)
        if flags & Flag.ROW_SCALE:   # each row's requantization scale, one word a row
            writes += [Access(ACC, f["addr1"], rows, 1, f["stride1"]), words(f["addr2"], rows)]
        else:
            writes += [Access(SPAD, f["addr1"], rows, cols, f["stride1"]), words(f["addr2"], rows)]
    elif opcode is Opcode.V_REQUANT8:
        reads += [src, words(f["addr2"], rows)]
        writes.append(Access(SPAD, f["addr1"], rows, cols, f["stride1"]))
    elif opcode is Opcode.V_REQUANT:
        reads += [src, words(f["addr2"], rows)]
        if not flags & Flag.NO_COL_SCALE:
            reads.append(words(f["addr3"], cols))
        if flags & Flag.HAS_BIAS:
            reads.append(words(f["addr3"] + cols, cols))
        writes.append(dst)
        if flags & Flag.ROW_SCALE:   # each row's largest |result|, a word a row
            writes.append(words(f["imm"], rows))
    elif opcode is Opcode.V_DEQUANT:
        reads += [Access(SPAD, f["addr0"], rows, cols, f["stride0"]), words(f["addr2"], rows)]
        writes.append(dst)
    elif opcode in (Opcode.V_ADD, Opcode.V_MUL):
        reads += [src, Access(ACC, f["addr2"], rows, cols, f["imm"])]
        writes.append(dst)
    elif opcode in (Opcode.V_GELU, Opcode.V_SILU):
        reads.append(src)
        writes.append(dst)
    elif opcode is Opcode.V_RMSNORM and flags & Flag.ROW_SCALE:
        reads.append(src)
        writes.append(Access(ACC, f["addr1"], rows, 1, f["stride1"]))
    elif opcode in (Opcode.V_RMSNORM, Opcode.V_LAYERNORM):
        reads += [src, words(f["addr2"], cols)]
        if flags & Flag.HAS_BIAS:
            reads.append(words(f["addr2"] + cols, cols))
        writes.append(dst)
    elif opcode is Opcode.V_ROPE:
        reads += [src, words(f["addr2"], f["addr3"] // 2)]
        writes.append(dst)
    elif opcode is Opcode.V_SOFTMAX_EXP:
        reads.append(src)
        if flags & Flag.FOLD_V:
            reads.append(words(f["addr3"], cols))
        writes += [dst, words(f["addr2"], rows)]
    elif opcode is Opcode.V_FOLD_V:
        reads += [src, words(f["addr2"], cols)]
        writes.append(dst)
    elif opcode is Opcode.V_ATTN_SCALE:
        reads += [words(f["addr0"], rows), words(f["addr2"], rows), words(f["imm"], cols)]
        writes.append(words(f["addr1"], rows))
    elif opcode is Opcode.V_SCALE_MUL:
        reads.append(words(f["addr0"], rows))
        writes.append(words(f["addr1"], rows))
    else:
        raise ValueError(f"no footprint for {opcode.name}")


def sram_overrun(opcode: Opcode, ins: dict, spad_bytes: int, acc_words: int) -> Access | None:
    """The first scratchpad or accumulator operand of an instruction that reaches past its memory
    (None: all fit), as :mod:`compiler.funcsim` refuses it and the core's bounds check
    (:mod:`rtl.core.bounds`) stops on it. Empty rectangles always fit."""
    reads, writes = footprint(opcode, ins)
    for access in reads + writes:
        size = {SPAD: spad_bytes, ACC: acc_words}.get(access.space)
        if size is None or access.rows <= 0 or access.cols <= 0:
            continue
        if access.addr + (access.rows - 1) * access.stride + access.cols > size:
            return access
    return None


class _Shadow:
    """Per element of one memory space and per group: the last instruction of the group that
    read it and that wrote it (-1: none), as ``read[group, element]`` and ``write[group, element]``.
    DRAM is tracked in ``granule``-byte blocks (conservative)."""

    def __init__(self, size: int, granule: int = 1):
        self.granule = granule
        blocks = -(-size // granule)
        self.read = np.full((len(GROUPS), blocks), -1, dtype=np.int32)
        self.write = np.full((len(GROUPS), blocks), -1, dtype=np.int32)

    def select(self, accesses: list[Access]) -> list[tuple]:
        """The blocks ``accesses`` touch, an item per access: ``(lo, hi)`` for one run of them,
        ``(addr, rows, cols, stride)`` for rows of elements apart (read and marked as a view of the
        table), else an array of block numbers (repeats allowed)."""
        g = self.granule
        size = self.read.shape[1]
        out: list = []
        for access in accesses:
            if access.rows <= 0 or access.cols <= 0:
                continue
            if access.rows == 1 or access.stride <= access.cols:
                lo, hi = access.intervals()[0]
                out.append((lo // g, -(-hi // g)))
            elif g == 1 and access.addr + access.rows * access.stride <= size:
                out.append((access.addr, access.rows, access.cols, access.stride))
            else:
                # each row's blocks, padded with its own last block to equal width
                lo = access.addr + access.stride * np.arange(access.rows, dtype=np.int64)
                first, end = lo // g, -(-(lo + access.cols) // g)
                width = int((end - first).max())
                out.append(np.minimum(first[:, None] + np.arange(width), end[:, None] - 1).ravel())
        return out

    @staticmethod
    def _view(table: np.ndarray, item: tuple) -> np.ndarray:
        """``table`` (groups x blocks, or one group's blocks) at a :meth:`select` item that is not
        an array: a view, so that it can be marked."""
        if len(item) == 2:
            return table[..., item[0]:item[1]]
        addr, rows, cols, stride = item
        rows_view = table[..., addr:addr + rows * stride]
        return rows_view.reshape(rows_view.shape[:-1] + (rows, stride))[..., :cols]

    def latest(self, table: np.ndarray, selected: list) -> np.ndarray:
        """Per group, the latest instruction in ``table`` at the ``selected`` blocks (-1: none)."""
        best = np.full(len(GROUPS), -1, dtype=np.int64)
        for item in selected:
            part = table[:, item] if isinstance(item, np.ndarray) else self._view(table, item)
            best = np.maximum(best, part.max(axis=tuple(range(1, part.ndim))))
        return best

    def mark(self, table: np.ndarray, group: int, selected: list, index: int) -> None:
        for item in selected:
            if isinstance(item, np.ndarray):
                table[group, item] = index
            else:
                self._view(table[group], item)[...] = index


@dataclass(frozen=True)
class Edge:
    """``consumer`` (a program index) must start after ``producer`` completes."""

    producer: int
    consumer: int
    semaphore: int


def _after(current: list[int], producer_known: tuple[int, ...], group: str, producer: int) -> list[int]:
    """What a consumer knows complete once it has also waited for ``producer`` of ``group``."""
    after = [max(a, b) for a, b in zip(current, producer_known, strict=True)]
    gi = GROUPS.index(group)
    after[gi] = max(after[gi], producer)
    return after


def _edges_needed(need: dict[str, int], current: list[int], known: list) -> list[tuple[int, str]]:
    """The (producer, group) edges still needed for ``need`` (group -> latest conflicting
    instruction), given ``current``; an edge whose producer already covers the other group's
    need is taken alone."""
    chosen = []
    while True:
        missing = [g for g, p in need.items() if p > current[GROUPS.index(g)]]
        if not missing:
            return chosen

        def covered(g, current=current, missing=missing):
            after = _after(current, known[need[g]], g, need[g])
            return sum(need[h] <= after[GROUPS.index(h)] for h in missing), -need[g]

        group = max(missing, key=covered)
        chosen.append((need[group], group))
        current = _after(current, known[need[group]], group, need[group])


def dependency_edges(program: list[tuple[Opcode, dict]], config: ChipConfig) -> list[Edge]:
    """The edges :func:`synchronise` turns into semaphores, in program order of their consumers."""
    sizes = {SPAD: config.spad_bytes, ACC: config.acc_words, DRAM: config.dram_bytes}
    shadows = {SPAD: _Shadow(sizes[SPAD]), ACC: _Shadow(sizes[ACC]), DRAM: _Shadow(sizes[DRAM], granule=64)}
    # known[i][g]: the latest instruction of group g that is complete whenever i is released
    known: list[tuple[int, ...]] = []
    last_of_group = {g: -1 for g in GROUPS}
    last_transfer_queue = None
    edges: list[Edge] = []
    nothing = (-1,) * len(GROUPS)
    for index, (opcode, fields) in enumerate(program):
        queue = QUEUE_OF[opcode]
        if queue == "control":
            known.append(nothing)
            continue
        group = GROUP_OF[queue]
        gi = GROUPS.index(group)
        before = last_of_group[group]
        current = list(known[before]) if before >= 0 else list(nothing)
        if group == "transfer" and before >= 0 and last_transfer_queue != queue:
            # the chain: this instruction waits for the previous transfer, which ran in the other queue
            semaphore = LOAD_TO_STORE if queue == "store" else STORE_TO_LOAD
            edges.append(Edge(before, index, semaphore))
            current[gi] = max(current[gi], before)
        reads, writes = footprint(opcode, fields)
        touched = []   # per space: the blocks read and those written
        latest = np.full(len(GROUPS), -1, dtype=np.int64)
        for space in SPACES:
            shadow = shadows[space]
            read = shadow.select([a for a in reads if a.space == space])
            written = shadow.select([a for a in writes if a.space == space])
            # RAW and WAW: the last writer of anything touched; WAR: the last reader of anything written
            if read or written:
                latest = np.maximum(latest, shadow.latest(shadow.write, read + written))
            if written:
                latest = np.maximum(latest, shadow.latest(shadow.read, written))
            touched.append((shadow, read, written))
        need = {other: int(latest[oi]) for oi, other in enumerate(GROUPS) if other != group}
        for producer, producer_group in _edges_needed(need, current, known):
            edges.append(Edge(producer, index, PAIR_SEMAPHORE[(producer_group, group)]))
            current = _after(current, known[producer], producer_group, producer)
        known.append(tuple(current))
        for shadow, read, written in touched:
            shadow.mark(shadow.read, gi, read, index)
            shadow.mark(shadow.write, gi, written, index)
        last_of_group[group] = index
        if group == "transfer":
            last_transfer_queue = queue
    return edges


def synchronise(program: list[tuple[Opcode, dict]], config: ChipConfig) -> list[tuple[Opcode, dict]]:
    """``program`` with ``wait``/``signal`` masks for exactly its cross-queue dependencies
    (masks already in ``program`` are or-ed in)."""
    return apply_edges(program, dependency_edges(program, config))


def apply_edges(program: list[tuple[Opcode, dict]], edges: list[Edge]) -> list[tuple[Opcode, dict]]:
    """``program`` with each edge's producer signalling and its consumer waiting on its semaphore."""
    out = [(op, dict(fields)) for op, fields in program]
    for edge in edges:
        bit = 1 << edge.semaphore
        producer, consumer = out[edge.producer][1], out[edge.consumer][1]
        if producer.get("signal", 0) & bit or consumer.get("wait", 0) & bit:
            raise AssertionError(f"semaphore {edge.semaphore} used twice by one instruction: {edge}")
        producer["signal"] = producer.get("signal", 0) | bit
        consumer["wait"] = consumer.get("wait", 0) | bit
    return out


def overlap(a: list[Access], b: list[Access]) -> bool:
    """Whether an access of ``a`` and one of ``b`` share an element of one memory."""
    for x in a:
        for y in b:
            if x.space == y.space and any(lo < y_hi and y_lo < hi for lo, hi in x.intervals()
                                          for y_lo, y_hi in y.intervals()):
                return True
    return False


def hoist_loads(program: list[tuple[Opcode, dict]], window: int = 6, parts: list | None = None) -> list[int]:
    """An order of ``program`` in which each LOAD comes before the instructions in front of it
    that it does not conflict with (RAW, WAR or WAW in any memory), up to ``window`` of them,
    but never before another LOAD, a control instruction or, given ``parts`` (a label per
    instruction: the compiler's layer and section), one of another part, so that each part of
    the model stays one run of instructions for the profile. The controller fetches in program
    order and stops while the next instruction's queue is full, so a LOAD behind a run of
    vector instructions is not even fetched until they drain; earlier in the program, it runs
    while they do (the next weight tile during a layer's vector work). Every pair that conflicts
    keeps its order, so the program computes the same.

    The window was picked with the performance model (tiny-llama, 64-token prompt and a decode
    token after 64, 8x8 and 16x16 / 128-bit). With 4-deep queues 2 to 5 instructions shortened
    both jobs (decode by 2-6 %, prefill by 1-2 %) and 8 or more made the decode slower than no
    hoisting at all: the hoisted loads filled the load queue ahead of their turn and stopped the
    fetch. With the chip's 16-deep queues, 6 (and 12) take the 16x16 decode from 12 711 cycles
    (3) to 12 596 and leave the 8x8 one at 25 517; across parts, 12 takes the 8x8 decode to
    27 308. Keeping loads within their part costs the 8x8 prompt about 1 %."""
    found: dict[int, dict] = {}

    def ranges(index: int) -> dict[str, tuple[_Ranges, _Ranges]]:
        """Per space, the ranges instruction ``index`` reads and those it writes (found once)."""
        if index not in found:
            reads, writes = footprint(*program[index])
            found[index] = {space: (_merged(reads, space), _merged(writes, space)) for space in SPACES}
        return found[index]

    order: list[int] = []
    for index, (opcode, _) in enumerate(program):
        position = len(order)
        if opcode is Opcode.LOAD:
            while position > 0 and len(order) - position < window:
                other = order[position - 1]
                other_op = program[other][0]
                if other_op is Opcode.LOAD or QUEUE_OF[other_op] == "control":
                    break
                if parts is not None and parts[other] != parts[index]:
                    break
                if any(_meet(ranges(index)[space][mine], ranges(other)[space][theirs])
                       for space in SPACES for mine, theirs in _CONFLICTING):
                    break
                position -= 1
        order.insert(position, index)
    return order


class _Ranges:
    """Merged, sorted element ranges of one memory space (``starts``, ``ends``: lists or ranges),
    and ``grid``: (addr, rows, cols, stride) where they are one access's rows apart (rows > 1,
    stride > cols)."""

    __slots__ = ("starts", "ends", "grid")

    def __init__(self, starts: Sequence[int], ends: Sequence[int], grid: tuple[int, int, int, int] | None = None):
        self.starts, self.ends, self.grid = starts, ends, grid


def _merged(accesses: list[Access], space: str) -> _Ranges:
    """The element ranges ``accesses`` cover in ``space``, merged and sorted."""
    mine = [access for access in accesses if access.space == space and access.rows > 0 and access.cols > 0]
    if len(mine) == 1:   # one access's ranges are sorted and apart already
        access = mine[0]
        if access.rows > 1 and access.stride > access.cols:
            span = access.rows * access.stride
            return _Ranges(range(access.addr, access.addr + span, access.stride),
                           range(access.addr + access.cols, access.addr + access.cols + span, access.stride),
                           (access.addr, access.rows, access.cols, access.stride))
        ((lo, hi),) = access.intervals()
        return _Ranges([lo], [hi])
    starts: list[int] = []
    ends: list[int] = []
    for lo, hi in sorted(r for access in mine for r in access.intervals()):
        if ends and lo <= ends[-1]:
            ends[-1] = max(ends[-1], hi)
        else:
            starts.append(lo)
            ends.append(hi)
    return _Ranges(starts, ends)


def _grids_meet(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two accesses' rows with one stride (each cols < stride) share an element: b's rows
    seen in a's frame start at row ``q``, column ``rem``, and run on into the next row where
    ``rem + cols`` passes the stride."""
    a_addr, a_rows, a_cols, stride = a
    b_addr, b_rows, b_cols, _ = b
    q, rem = divmod(b_addr - a_addr, stride)
    return ((rem < a_cols and q < a_rows and q + b_rows > 0)
            or (rem + b_cols > stride and q + 1 < a_rows and q + 1 + b_rows > 0))


def _meet(a: _Ranges, b: _Ranges) -> bool:
    """Whether two merged range sets (:func:`_merged`) share an element."""
    if a.grid is not None and b.grid is not None and a.grid[3] == b.grid[3]:
        return _grids_meet(a.grid, b.grid)
    if len(a.starts) > len(b.starts):
        a, b = b, a
    starts, ends = b.starts, b.ends
    for lo, hi in zip(a.starts, a.ends, strict=True):
        # the first range of b that ends after lo
        at = bisect_right(ends, lo)
        if at < len(starts) and starts[at] < hi:
            return True
    return False


def _conflicts(footprints: list[tuple[list[Access], list[Access]]], window: int) -> list[list[int]]:
    """For each instruction of a run, the earlier ones among the ``window`` before it that it
    conflicts with (RAW, WAR or WAW in any memory): exact, with each pair first tested on the
    bounding boxes of its accesses per space (which is the test itself where both are one range)."""
    n = len(footprints)
    ranges = [{(space, kind): _merged(accesses[kind], space) for space in SPACES for kind in (0, 1)}
              for accesses in footprints]
    # per space, the bounding box [lo, hi) of each instruction's reads and of its writes (empty: 0, 0)
    boxes = {key: np.zeros((n, 2), dtype=np.int64) for key in ranges[0]} if n else {}
    single = {key: np.zeros(n, dtype=bool) for key in ranges[0]} if n else {}   # one range: exact box
    for i, mine in enumerate(ranges):
        for key, merged in mine.items():
            if merged.starts:
                boxes[key][i] = (merged.starts[0], merged.ends[-1])
                single[key][i] = len(merged.starts) == 1
    before: list[list[int]] = []
    for b in range(n):
        first = max(0, b - window)
        exact = np.zeros(b - first, dtype=bool)     # the boxes meet and are the ranges
        maybe: dict[int, list[tuple]] = {}          # the boxes meet: the range lists to compare
        for space in SPACES:
            for mine, theirs in _CONFLICTING:
                lo, hi = boxes[space, mine][b]
                if hi <= lo:
                    continue
                other = boxes[space, theirs][first:b]
                hits = (other[:, 0] < hi) & (lo < other[:, 1])
                if single[space, mine][b]:
                    exact |= hits & single[space, theirs][first:b]
                    hits &= ~single[space, theirs][first:b]
                for a in (first + np.flatnonzero(hits)).tolist():
                    maybe.setdefault(a, []).append((ranges[b][space, mine], ranges[a][space, theirs]))
        found = set((first + np.flatnonzero(exact)).tolist())
        found.update(a for a, tests in maybe.items() if a not in found and any(_meet(x, y) for x, y in tests))
        before.append(sorted(found))
    return before


#: How far back (in program order) :func:`list_schedule` looks for an instruction's conflicts; an
#: instruction further back is placed before it whatever the two touch.
SCHEDULE_WINDOW = 96


def conflicts(program: list[tuple[Opcode, dict]], window: int = SCHEDULE_WINDOW) -> list[list[int]]:
    """For each instruction of ``program``, the earlier ones among the ``window`` before it that it
    conflicts with (RAW, WAR or WAW in any memory; control instructions conflict with none), as
    :func:`list_schedule` needs them: several schedules of one program can share them."""
    return _conflicts([footprint(op, fields) if QUEUE_OF[op] != "control" else ([], [])
                       for op, fields in program], window)


def list_schedule(program: list[tuple[Opcode, dict]], durations: list[float], runs: list,
                  window: int = SCHEDULE_WINDOW, short_first: bool = False,
                  before: list[list[int]] | None = None) -> list[int]:
    """An order of ``program`` from list scheduling each run of instructions with the same label in
    ``runs`` (the compiler's layers) on the core's three units (transfer, matrix, vector), with
    ``durations`` their cycles: whenever a unit is free it takes, of the instructions whose
    conflicting predecessors (RAW, WAR or WAW in any memory, :func:`footprint`) have completed,
    the one with the longest path of durations to the run's end; with ``short_first``, the one
    whose path after it, less its own duration, is longest (a short instruction ahead of a long
    chain goes before a long one: the 64-token prompt's first norm parameters before the second
    block's GATHERs, whose wait held back the first matmul). The order is that of the start
    cycles. Every conflicting pair keeps its order, so the program computes the same: conflicts
    are looked for among the ``window`` instructions before each one, and an instruction further
    back is placed before it in any case (which also bounds how far one moves, and the work:
    a MiniLM layer of 64 tokens is about 2 000 instructions). Control instructions stay where
    they are and close a run.

    Within a layer this lets independent work overlap that program order serialises: the
    blocks of a prompt run in blocks share no buffers of one pass, so one block's vector work
    can run beside another's matmuls. ``before``: :func:`conflicts` of ``program`` with ``window``,
    if already found."""
    if before is None:
        before = conflicts(program, window)
    order: list[int] = []
    start = 0
    while start < len(program):
        if QUEUE_OF[program[start][0]] == "control":
            order.append(start)
            start += 1
            continue
        end = start
        while (end < len(program) and runs[end] == runs[start]
               and QUEUE_OF[program[end][0]] != "control"):
            end += 1
        # the run's conflicts: those within it (the window is the same)
        run_before = [[a - start for a in producers if a >= start] for producers in before[start:end]]
        order += [start + k for k in _schedule_run(program[start:end], durations[start:end], run_before, window,
                                                   short_first)]
        start = end
    return order


def _schedule_run(program: list[tuple[Opcode, dict]], durations: list[float], before: list[list[int]],
                  window: int, short_first: bool) -> list[int]:
    n = len(program)
    after: list[list[int]] = [[] for _ in range(n)]
    for b, producers in enumerate(before):
        for a in producers:
            after[a].append(b)
    path = [0.0] * n   # the longest path of durations from each instruction to the run's end
    for a in reversed(range(n)):
        path[a] = durations[a] + max((path[b] for b in after[a]), default=0.0)
    # by that path, or (short_first) by the path after the instruction less its own duration
    rank = [path[a] - 2 * durations[a] for a in range(n)] if short_first else path
    units = [GROUP_OF[QUEUE_OF[op]] for op, _ in program]   # the unit: load and store share one
    waiting = [len(producers) for producers in before]
    earliest = [0.0] * n
    free = dict.fromkeys(GROUPS, 0.0)
    starts = [0.0] * n
    placed = [False] * n
    prefix = 0          # instructions 0 .. prefix - 1 are placed
    floor = [0.0]       # floor[k]: the latest start among instructions 0 .. k - 1
    ready: list[int] = []
    released = 0        # instructions whose window rule has been checked for readiness

    def release() -> None:
        # b may go once every instruction up to b - window is placed (then it starts no earlier)
        nonlocal released
        while released < n and released - window < prefix:
            if not waiting[released]:
                ready.append(released)
            released += 1

    def begin(a: int) -> float:
        return max(earliest[a], free[units[a]], floor[max(0, a - window + 1)])

    release()
    while ready:
        # the instruction that can start first; among those, the one ranked highest
        pick = min(ready, key=lambda a: (begin(a), -rank[a], a))
        ready.remove(pick)
        starts[pick] = begin(pick)
        placed[pick] = True
        finish = starts[pick] + durations[pick]
        free[units[pick]] = finish
        for b in after[pick]:
            earliest[b] = max(earliest[b], finish)
            waiting[b] -= 1
            if not waiting[b] and b < released:
                ready.append(b)
        while prefix < n and placed[prefix]:
            floor.append(max(floor[-1], starts[prefix]))
            prefix += 1
        release()
    assert prefix == n, "list scheduling left instructions out"
    return sorted(range(n), key=lambda a: (starts[a], a))


#: Per opcode whose rows are independent (each result row depends on its own source rows only),
#: how a range of rows starting at row ``r`` moves its fields: (field, what one row adds to it);
#: the addend is a field's value ("stride0", ...) or 1. V_SOFTMAX_EXP's ``imm`` is the position of
#: its first query row (the causal mask), one more a row.
_ROW_FIELDS = {
    Opcode.MATMUL: (("addr0", "stride0"), ("addr2", "addr3")),
    Opcode.V_QUANT: (("addr0", "stride0"), ("addr1", "stride1"), ("addr2", 1)),
    Opcode.V_REQUANT: (("addr0", "stride0"), ("addr1", "stride1"), ("addr2", 1)),
    Opcode.V_DEQUANT: (("addr0", "stride0"), ("addr1", "stride1"), ("addr2", 1)),
    Opcode.V_REQUANT8: (("addr0", "stride0"), ("addr1", "stride1"), ("addr2", 1)),
    Opcode.V_ADD: (("addr0", "stride0"), ("addr1", "stride1"), ("addr2", "imm")),
    Opcode.V_MUL: (("addr0", "stride0"), ("addr1", "stride1"), ("addr2", "imm")),
    Opcode.V_GELU: (("addr0", "stride0"), ("addr1", "stride1")),
    Opcode.V_SILU: (("addr0", "stride0"), ("addr1", "stride1")),
    Opcode.V_RMSNORM: (("addr0", "stride0"), ("addr1", "stride1")),
    Opcode.V_LAYERNORM: (("addr0", "stride0"), ("addr1", "stride1")),
    Opcode.V_SOFTMAX_EXP: (("addr0", "stride0"), ("addr1", "stride1"), ("addr2", 1), ("imm", 1)),
    Opcode.V_ATTN_SCALE: (("addr0", 1), ("addr1", 1), ("addr2", 1)),
}


def split_rows(opcode: Opcode, fields: dict, pieces: int) -> list[tuple[Opcode, dict]]:
    """The instruction as ``pieces`` instructions over consecutive equal ranges of its rows, which
    together compute what it does (a MATMUL's A rows and result rows, a row-wise vector
    operation's rows), for :func:`list_schedule` to overlap the first range's successors with the
    second range; itself alone if its opcode's rows are not independent or its rows do not
    divide."""
    rows = fields.get("rows", 0)
    moves = _ROW_FIELDS.get(opcode)
    if moves is None or pieces < 2 or rows < pieces or rows % pieces:
        return [(opcode, fields)]
    if opcode is Opcode.V_REQUANT and fields.get("flags", 0) & Flag.ROW_SCALE:
        moves += (("imm", 1),)   # its rows' largest results, a word a row
    size = rows // pieces
    out = []
    for piece in range(pieces):
        part = dict(fields, rows=size)
        for name, step in moves:
            per_row = step if isinstance(step, int) else fields.get(step, 0)
            part[name] = fields.get(name, 0) + piece * size * per_row
        out.append((opcode, part))
    return out
