"""A performance model: a job's cycles from the compiler's schedule, without simulating the RTL.

Two parts:

* :func:`duration`: the cycles one instruction keeps its unit busy, from its fields and the chip
  configuration. Each opcode family has a formula in the terms the hardware works in (DMA rows
  and bus beats, weight tiles and activation rows through the array, vector beats and passes),
  with coefficients :data:`COEFFICIENTS` fitted once to instruction traces of the RTL
  (``python -m compiler.perfmodel --fit``).
* :func:`schedule`: the controller's behaviour replayed as events (``rtl/core/controller.py``):
  instructions are fetched in program order into per-queue FIFOs of ``queue_depth`` (fetch stops
  while the next instruction's queue is full), a queue's head is released when its semaphores
  are non-zero and its unit is idle (load and store share the transfer unit), or, for the matrix
  and the transfer unit, when the one instruction it holds is in its drain or overlap
  (:func:`tails`), one release per cycle, and a completion signals its semaphores.

:func:`predict` gives each instruction's release and completion cycle, in the same form as the
RTL's trace (:class:`compiler.profile.Trace`), so :func:`compiler.profile.profile` attributes
predicted cycles to the parts of the model exactly as it does measured ones. ``make sweep`` runs
it over array sizes, bus widths, SRAM sizes (``scripts/sweep.py``).
"""

from __future__ import annotations

import functools
import math
import pickle
from collections import deque
from pathlib import Path

import numpy as np

from compiler.profile import Trace
from rtl.vector.isa import Op, row_ends
from scoville.config import CONFIGS, ChipConfig
from scoville.isa import QUEUE_OF, SEMAPHORES, Flag, Opcode

__all__ = ["COEFFICIENTS", "compare", "compare_layers", "duration", "features", "merge_saving", "predict", "schedule",
           "tails", "vector_latencies", "vector_ranges", "vector_tail", "write_duty"]

QUEUES = ("load", "matrix", "vector", "store")
UNIT_OF = {"load": "transfer", "store": "transfer", "matrix": "matrix", "vector": "vector"}

#: vector opcodes run on the scalar path of the sequencer (one row at a time); V_ROPE runs there
#: too, in chunks of up to ``lanes`` rotation pairs (its own family, ``rope``)
SCALAR = {Opcode.V_SCALE_MUL, Opcode.V_ATTN_SCALE}
#: the vector sequencer's side cache of column operands, in chunks of ``lanes`` (the default of
#: ``rtl.core.vector_sequencer.VectorSequencer``)
SIDE_CACHE_CHUNKS = 16
#: column-operand chunks read per beat (scales, bias, gamma, beta, value scales), by flags
COLUMN_READS = {
    Opcode.V_REQUANT: lambda flags: (0 if flags & Flag.NO_COL_SCALE else 1) + bool(flags & Flag.HAS_BIAS),
    Opcode.V_DEQUANT: lambda flags: 0,
    Opcode.V_REQUANT8: lambda flags: 0,
    Opcode.V_RMSNORM: lambda flags: 0 if flags & Flag.ROW_SCALE else 1 + bool(flags & Flag.HAS_BIAS),
    Opcode.V_LAYERNORM: lambda flags: 1 + bool(flags & Flag.HAS_BIAS),
    Opcode.V_FOLD_V: lambda flags: 1,
    Opcode.V_SOFTMAX_EXP: lambda flags: bool(flags & Flag.FOLD_V),
}
#: cycles the exponent scan of the value scales takes besides a cycle a chunk of ``lanes`` (V_FOLD_V,
#: V_ATTN_SCALE and a V_SOFTMAX_EXP with FOLD_V scan them before their first beat): the reads' round
#: trip (``testbench/test_core.py::fold_in_the_softmax``)
SCAN_FIXED = 4
#: passes over each row of the multi-pass vector operations (the sequencer's, ``rtl/vector/isa.py``;
#: ``tests/test_perfmodel.py`` checks they agree)
PASSES = {Opcode.V_RMSNORM: 3, Opcode.V_LAYERNORM: 3, Opcode.V_SOFTMAX_EXP: 2, Opcode.V_QUANT: 2}
#: vector opcodes whose first pass only looks for each row's largest value or magnitude
#: (``rtl/vector/isa.py`` ``MAX_FIRST``, ``MAX_ABS_FIRST``): a unit narrower than a beat takes
#: that pass a beat a cycle (``rtl/vector/narrow.py``), the other passes in pieces
#: (``tests/test_perfmodel.py`` checks the set against the sequencer's jobs)
MAX_FIRST = {Opcode.V_QUANT, Opcode.V_SOFTMAX_EXP, Opcode.V_RMSNORM}
#: vector opcodes whose unit operation takes the unit's short path (``rtl/vector/isa.py``
#: ``SHORT_PATH``: issue straight to the output segment), so their fixed cost is about 100 cycles
#: less; their family's fallback coefficients are ``vector_short`` (``tests/test_perfmodel.py``
#: checks the set against the sequencer's jobs)
SHORT_PATH = {Opcode.V_REQUANT, Opcode.V_DEQUANT, Opcode.V_REQUANT8, Opcode.V_FOLD_V, Opcode.V_ADD, Opcode.V_MUL,
              Opcode.V_GELU, Opcode.V_SILU}
#: vector opcodes the wide requantizer runs when the chip has one (``ChipConfig.wide_requant``;
#: V_ADD as a requantization by 1 with the other row as its bias): a beat a cycle whatever the
#: unit's width, with the requantizer's latency (``rtl.vector.requant.Requantizer``,
#: :data:`WIDE_REQUANT_LATENCY`) instead of the unit's short path (``tests/test_perfmodel.py``
#: checks the set against the sequencer's jobs)
WIDE_REQUANT = {Opcode.V_REQUANT, Opcode.V_DEQUANT, Opcode.V_REQUANT8, Opcode.V_FOLD_V, Opcode.V_ADD}
WIDE_REQUANT_LATENCY = 3
#: vector opcodes whose second operand is a whole row per row (read for every beat, never cached)
OTHER_OPERAND = {Opcode.V_ADD, Opcode.V_MUL}
#: cycles of a MATMUL's drain beyond the array's R + C: the matrix unit takes the next MATMUL once
#: it has sent every read of the one it holds (``rtl/core/matrix_unit.py``), and that one is done
#: about R + C + this later (its last row crosses the array, the splitter, the accumulator's
#: read-modify-write and the done strobe's pipeline). In traces of tiny-llama's 16-token prompt
#: and decode on the 8x8 chip, a MATMUL released while the one before was in flight came 24-26
#: cycles (median) and at most 28 (prompt) and 35 (decode) before that one's done.
MATRIX_DRAIN = 14
#: A DMA transfer into or out of an accumulator bank a MATMUL is writing gets the bank's port one
#: cycle in ``rtl.memory.accumulator.YIELD_AFTER`` (the matrix engine's read-modify-write has
#: priority and yields after the DMA has waited that long), so it progresses at that fraction.
DMA_YIELD = 2
#: cycles before a LOAD/STORE's completion from which the transfer unit takes the next: the DMA
#: engine checks the next descriptor while one runs and issues its rows right behind (``rtl/dma/
#: engine.py``), so the next one's fixed cost (the check, the DRAM latency, the status: the
#: constant of ``LOAD``'s coefficients) passes while the one before finishes.
TRANSFER_OVERLAP = 45
#: cycles from the vector sequencer's taking the next instruction to the done strobe of the one it
#: holds, beyond the unit's latency on that one's path (:func:`vector_tail`): its last result
#: written, two cycles to the SRAM, less the controller's release. In the trace of tiny-llama's
#: 64-token prompt on the 8x8 chip: 45 cycles after the long path (44), 13 after the short (12),
#: and 2 after the wide requantizer (:data:`VECTOR_WIDE_TAIL`, its 3-cycle latency included).
VECTOR_DRAIN = 1
VECTOR_WIDE_TAIL = 2
#: the fewest cycles a V_ROPE chunk takes on the sequencer's scalar path (``rtl/core/
#: vector_sequencer.py``): chunks take turns in two output banks, and a bank is free again once
#: the chunk in it has crossed the three-stage pipeline and left as two writes (4 cycles a chunk of
#: 4 pairs on a 4-lane core computing 2 a cycle; rows on whole accumulator rows, as the compiler
#: places them: a read that straddles two rows is two reads, which a short chunk does not hide).
ROPE_CHUNK_MIN = 4
#: cycles a V_ATTN_SCALE row takes on the sequencer's scalar path once the rows follow each other:
#: its division, while the next row is picked and normalised and the one before is combined and
#: written (``testbench/test_core.py::attn_scale_rows``)
ATTN_SCALE_ROW = 4


def _row_scales_only(opcode: Opcode, fields: dict) -> bool:
    """A ``V_RMSNORM`` or ``V_QUANT`` with ``ROW_SCALE``: its rows' scales, one word a row, without
    the instruction's last pass."""
    return opcode in (Opcode.V_RMSNORM, Opcode.V_QUANT) and bool(fields.get("flags", 0) & Flag.ROW_SCALE)


def passes_of(opcode: Opcode, fields: dict) -> int:
    """The passes over each row a vector instruction makes (:data:`PASSES`; with ``ROW_SCALE`` it
    leaves out the last: a ``V_RMSNORM`` runs the unit's SUM_SQUARES, a ``V_QUANT`` its
    QUANT_SCALE)."""
    passes = PASSES.get(opcode, 1)
    return passes - 1 if _row_scales_only(opcode, fields) else passes


def rope_chunk_cycles(half: int, lanes: int, pairs_per_cycle: int = 1) -> int:
    """Cycles the chunks of one head's ``half`` rotation pairs take on the sequencer's scalar
    path: up to ``lanes`` pairs a chunk, ``pairs_per_cycle`` a cycle (``ChipConfig.rope_pairs``),
    and at least :data:`ROPE_CHUNK_MIN` a chunk."""
    full, rest = divmod(half, lanes)
    sizes = [lanes] * full + ([rest] if rest else [])
    return sum(max(-(-p // pairs_per_cycle), ROPE_CHUNK_MIN) for p in sizes)


def _banks(addr: int, words: int, config: ChipConfig) -> set[int]:
    """The accumulator banks (``ChipConfig.acc_banks``, equal slices of the address range) that
    ``words`` words from ``addr`` touch."""
    size = config.acc_words // config.acc_banks
    first, last = addr // size, (addr + max(words, 1) - 1) // size
    return set(range(max(first, 0), min(last, config.acc_banks - 1) + 1))


def _rows_banks(addr: int, rows: int, cols: int, stride: int, config: ChipConfig) -> set[int]:
    """The banks ``rows`` rows of ``cols`` words, ``stride`` apart from ``addr``, touch."""
    return _banks(addr, (rows - 1) * max(stride, cols) + cols, config)


def acc_banks(opcode: Opcode, fields: dict, config: ChipConfig) -> tuple[set[int], set[int]]:
    """The accumulator banks an instruction reads and writes (column operands, read once or
    from the side cache, are left out)."""
    rows, cols = max(fields.get("rows", 0), 1), max(fields.get("cols", 0), 1)
    a = [fields.get(f"addr{n}", 0) for n in range(4)]
    if opcode is Opcode.MATMUL:
        return set(), _banks(a[2], rows * max(fields.get("addr3", 0), cols), config)
    family = _family(opcode)
    if family == "transfer":
        # the DMA's side of a LOAD into, or a STORE from, the accumulator (word addresses)
        if not fields.get("flags", 0) & Flag.DST_ACC or opcode is Opcode.GATHER:
            return set(), set()
        if opcode is Opcode.LOAD:
            return set(), _rows_banks(a[1], rows, cols, fields.get("stride1", 0), config)
        return _rows_banks(a[0], rows, cols, fields.get("stride0", 0), config), set()
    if opcode.name[:2] != "V_":
        return set(), set()
    span = lambda addr, stride: _rows_banks(addr, rows, cols, stride, config)  # noqa: E731
    if family == "scalar":
        return _banks(a[0], rows, config), _banks(a[1], rows, config)
    reads = set() if opcode is Opcode.V_DEQUANT else span(a[0], fields.get("stride0", 0))
    if opcode in OTHER_OPERAND:
        reads |= span(a[2], fields.get("imm", 0))
    if opcode is Opcode.V_QUANT:
        writes = _banks(a[2], rows, config)
        if _row_scales_only(opcode, fields):
            writes |= _rows_banks(a[1], rows, 1, fields.get("stride1", 0), config)
    elif opcode is Opcode.V_REQUANT8:   # int8 into the scratchpad
        writes = set()
    elif _row_scales_only(opcode, fields):
        writes = _rows_banks(a[1], rows, 1, fields.get("stride1", 0), config)
    else:
        writes = span(a[1], fields.get("stride1", 0))
    return reads, writes


def _other_same_bank(opcode: Opcode, fields: dict, config: ChipConfig) -> bool:
    if opcode not in OTHER_OPERAND:
        return False
    rows, cols = max(fields.get("rows", 0), 1), max(fields.get("cols", 0), 1)
    return bool(_rows_banks(fields.get("addr0", 0), rows, cols, fields.get("stride0", 0), config)
                & _rows_banks(fields.get("addr2", 0), rows, cols, fields.get("imm", 0), config))


def _family(opcode: Opcode) -> str:
    if opcode in (Opcode.LOAD, Opcode.STORE, Opcode.GATHER):
        return "transfer"
    if opcode is Opcode.MATMUL:
        return "matmul"
    if opcode in SCALAR:
        return "scalar"
    if opcode is Opcode.V_ROPE:
        return "rope"
    return "vector"


#: Cycles from a weight tile's last row read to the array using it (see :func:`features`).
WEIGHT_SEEN = 2


def _paired(fields: dict, config: ChipConfig) -> bool:
    """Whether the matrix unit reads B two rows a cycle (the second through the scratchpad's pair
    port, ``rtl/core/matrix_unit.py``): an even R, B plain, B and its row stride on scratchpad
    rows (the core's ``spad_row_bytes`` is the bus word)."""
    row = config.bus_bytes
    return (config.rows % 2 == 0 and not fields.get("flags", 0) & Flag.B_TRANSPOSED
            and fields.get("addr1", 0) % row == 0 and fields.get("stride1", 0) % row == 0)


def weight_reads(fields: dict, config: ChipConfig) -> int:
    """Cycles a MATMUL's weight tile takes to read: its C columns when B is transposed (into a
    tile buffer, whose rows then go into the array while the next tile's columns come), R / 2
    when :func:`_paired`, R otherwise."""
    if fields.get("flags", 0) & Flag.B_TRANSPOSED:
        return config.columns
    return config.rows // 2 if _paired(fields, config) else config.rows


def _tile_cycles(rows: int, fields: dict, config: ChipConfig) -> float:
    """A MATMUL tile's cycles (:func:`features`): the longest of its ``rows``, its
    :func:`weight_reads` and half of a weight bank's turn round, ``rows`` plus
    :data:`WEIGHT_SEEN` plus the cycles from the bank's release to its next tile's last beat.
    That is the weight reads, or with an even R the array's cooldown (``SystolicArray.cooldown``,
    max(R / 2 - 2, 0) cycles: a released bank's first beat of two rows comes that late) and its
    R / 2 beats; B read a row at a time (off scratchpad rows) then comes in R / 2 more cycles."""
    reads = weight_reads(fields, config)
    turn = reads
    if config.rows % 2 == 0:   # the array takes two rows a beat
        plain_unpaired = not fields.get("flags", 0) & Flag.B_TRANSPOSED and not _paired(fields, config)
        turn = max(config.rows // 2 - 2, 0) + config.rows // 2 + (config.rows // 2 if plain_unpaired else 0)
    return max(rows, reads, (turn + WEIGHT_SEEN + rows) / 2)


def features(opcode: Opcode, fields: dict, config: ChipConfig) -> np.ndarray:
    """The terms an instruction's duration is linear in (see :data:`COEFFICIENTS`)."""
    rows, cols = max(fields.get("rows", 0), 1), max(fields.get("cols", 0), 1)
    family = _family(opcode)
    if family == "transfer":
        elem = 4 if fields.get("flags", 0) & Flag.DST_ACC else 1
        row_beats = math.ceil(cols * elem / config.bus_bytes)
        return np.array([1.0, rows, rows * row_beats])
    if family == "matmul":
        k, n = max(fields.get("imm", 0), 1), cols
        tiles = math.ceil(k / config.rows) * math.ceil(n / config.columns)
        # a tile's weights (:func:`weight_reads`) load into the array's idle bank while the
        # previous tile's activation rows stream; that bank frees the
        # cycle after the rows of the tile before it (the weights reach the columns with the
        # activations' skew) and a loaded tile is seen 2 cycles after its last weight, so a tile
        # takes the longest of its rows, its weight reads and half of rows + weight reads + 2
        # (a term for the rows, and one for what the weights add when they are longer)
        return np.array([1.0, tiles, tiles * rows, tiles * (_tile_cycles(rows, fields, config) - rows)])
    if family == "rope":
        # chunks of up to `lanes` rotation pairs, each head's half split separately
        half = max(fields.get("addr3", 0), 2) // 2
        heads = rows * math.ceil(cols / (2 * half))
        return np.array([1.0, heads * rope_chunk_cycles(half, config.lanes, config.rope_pairs)])
    if family == "scalar":
        if opcode is Opcode.V_SCALE_MUL:   # a row a cycle, its scales a chunk of `lanes` rows a read
            return np.array([1.0, rows, math.ceil(rows / config.lanes)])
        return np.array([1.0, rows, rows * cols])
    passes = passes_of(opcode, fields)
    beats = rows * math.ceil(cols / config.lanes)
    # column operands are read for the first row only when the row fits the side cache; longer
    # rows read them again for every row, each chunk one more accumulator read per beat
    side = COLUMN_READS.get(opcode, lambda flags: 0)(fields.get("flags", 0))
    if cols > SIDE_CACHE_CHUNKS * config.lanes:
        beats += side * (rows - 1) * math.ceil(cols / config.lanes) / passes
    # V_ADD and V_MUL read their second operand with every beat: in the bank of the first, the
    # two reads take turns
    if _other_same_bank(opcode, fields, config):
        beats *= 2
    # a vector unit narrower than a beat takes it in pieces of `unit_lanes`, while the reads go on;
    # the first pass of a MAX_FIRST opcode goes a beat a cycle, and the wide requantizer every beat
    pieces = max(beats, rows * math.ceil(cols / config.unit_lanes))
    if opcode in WIDE_REQUANT and config.wide_requant:
        pieces = beats
    if opcode is Opcode.V_REQUANT and fields.get("flags", 0) & Flag.ROW_SCALE:
        pieces += rows   # the writer stores each row's largest result after the row, a cycle each
    if opcode in MAX_FIRST:
        # a softmax that folds V's scales scans them first (V_FOLD_V's fit has its scan)
        scan = SCAN_FIXED + math.ceil(cols / config.lanes) if side else 0
        ends = trimmed_ends(opcode, fields)
        if ends is not None:
            # a causal row goes up to its last allowed key (the max pass a beat a cycle, then its
            # pieces), while the writer stores its every beat and its sum, a cycle each
            writes = math.ceil(cols / config.lanes) + 1
            work = sum(max(math.ceil(end / config.lanes) + math.ceil(end / config.unit_lanes) * (passes - 1), writes)
                       for end in ends)
            return np.array([1.0, rows * passes, work + scan])
        return np.array([1.0, rows * passes, beats + pieces * (passes - 1) + scan])
    return np.array([1.0, rows * passes, pieces * passes])


#: Coefficients of :func:`features` (cycles per term), per opcode where the traces determine them
#: and per family otherwise; fitted by ``python -m compiler.perfmodel --fit`` to tiny-llama (7, 16,
#: 64 and 100 tokens, prefill and decode) and MiniLM (8 tokens) on the default 8x8 chip (32 KiB
#: scratchpad, 32K-word accumulator in four banks, 2-lane vector unit, 64-bit bus), and tiny-llama
#: (64 tokens and a decode) on the 16x16 / 128-bit chip; DRAM latency 20. MATMUL's were fitted again
#: on the traces of the matrix unit with partial sums (eb0da46; the other rows kept): 37.1 cycles,
#: -0.92 a tile, 1.108 a row of a tile and 1.058 a cycle of a tile beyond its rows, about 0.8 cycles
#: more than its rows for a 16-row tile. Its row term had been set to the array's one row a cycle
#: (the fit gave 1.089 then, and the model put MiniLM's MLP 8 % long); the fit now puts MiniLM's
#: sentence 1.5 % short and every layer of the fit's eleven jobs within 4.7 % but the 100-token
#: prompt's head (-11.3 %). With the row term set to 1.0 (38.0 + 0.84 a cycle beyond the rows) that
#: head was -14.8 % and the 7-token prompt's decode compiled otherwise, 10.4 % short on a layer.
#: GATHER's are a least-squares fit to the six GATHERs of tiny-llama's 64-token prompt and the
#: decode token after it on the 8x8 chip, since its rows overlap (before: 49.4 cycles a row, one
#: descriptor at a time). V_ATTN_SCALE's are set from the 64-token prompts' traces on both chips:
#: every 32-row one took 148 cycles once its rows were pipelined (a row a division), 20 + 4 a row,
#: the row the scalar path takes (:data:`ATTN_SCALE_ROW`; one a row at a time took 17 + 8; the fit's
#: 14.0 a row and 0.08 a row and key took the bank's turns with the P@V matmul, before the compiler
#: kept them apart). V_SCALE_MUL's are set from the same traces: 10 cycles for one row, 53 for 32
#: rows on 8x8 and 85 for 64 on 16x16, a row a cycle and 4 more for each chunk of scales after the
#: first. V_REQUANT's, V_DEQUANT's and V_ADD's are a least-squares fit to those instructions in the
#: same traces on the wide requantizer (``ChipConfig.wide_requant``; V_FOLD_V's samples, all of one
#: shape, do not determine its terms), so a chip without it is modelled less closely. V_SILU's are
#: V_MUL's, one piece a cycle as in the RTL (2 790 cycles for 32 x 172 on 8x8; the fit's 0.388 a
#: beat hid under overlap).
COEFFICIENTS = {
    "transfer": np.array([52.695, 1.424, 1.038]),
    "matmul": np.array([37.088, -0.923, 1.108, 1.058]),
    "scalar": np.array([2.608, 5.524, 0.248]),
    "rope": np.array([12.000, 1.000]),
    "vector": np.array([134.000, 0.014, 1.000]),
    "vector_short": np.array([27.773, 2.225, 0.874]),
    "LOAD": np.array([53.310, 1.474, 1.008]),
    "GATHER": np.array([71.565, 20.653, 0.618]),
    "MATMUL": np.array([37.088, -0.923, 1.108, 1.058]),
    "V_QUANT": np.array([133.963, 0.035, 0.995]),
    "V_REQUANT": np.array([38.276, 0.055, 1.133]),
    "V_DEQUANT": np.array([36.871, 0.053, 1.004]),
    "V_REQUANT8": np.array([36.000, 0.625, 1.000]),
    "V_QUANT_ROW_SCALE": np.array([129.000, 0.000, 1.000]),
    "V_ADD": np.array([36.070, 0.046, 1.010]),
    "V_MUL": np.array([38.000, 0.000, 1.000]),
    "V_SILU": np.array([38.000, 0.000, 1.000]),
    "V_RMSNORM": np.array([141.743, 0.070, 0.993]),
    "V_ROPE": np.array([12.000, 1.000]),
    "V_SOFTMAX_EXP": np.array([133.266, 0.012, 0.999]),
    "V_FOLD_V": np.array([45.777, -0.079, 1.015]),
    "V_ATTN_SCALE": np.array([20.000, ATTN_SCALE_ROW, 0.000]),
    "V_SCALE_MUL": np.array([5.000, 1.000, 4.000]),
}


def trimmed_ends(opcode: Opcode, fields: dict) -> list[int] | None:
    """Where the rows of a causal V_SOFTMAX_EXP end for the vector unit (its last allowed key,
    ``imm + 1 + row``: :func:`rtl.vector.isa.row_ends`), or None for an instruction whose rows
    the unit takes whole."""
    if opcode is not Opcode.V_SOFTMAX_EXP or not fields.get("flags", 0) & Flag.CAUSAL:
        return None
    rows, cols = max(fields.get("rows", 0), 1), max(fields.get("cols", 0), 1)
    return row_ends(Op.SOFTMAX_EXP, cols, rows, fields.get("imm", 0) + 1, 1)


def coefficient_key(opcode: Opcode, fields: dict) -> str:
    """The :data:`COEFFICIENTS` row of an instruction: its opcode's, or ``<opcode>_ROW_SCALE`` for
    the scales alone (:func:`_row_scales_only`: without the last pass, on another unit operation)."""
    return f"{opcode.name}_ROW_SCALE" if _row_scales_only(opcode, fields) else opcode.name


def _coefficients(opcode: Opcode, coefficients: dict, fields: dict | None = None) -> np.ndarray:
    """The coefficients of an instruction: its :func:`coefficient_key`'s row, its opcode's, or
    its family's."""
    key = coefficient_key(opcode, fields or {})
    return coefficients.get(key, coefficients.get(opcode.name, coefficients[_fallback(opcode)]))


def _fallback(opcode: Opcode) -> str:
    """The coefficient row of an opcode without its own: its family's (the vector family's
    short-path operations have their own)."""
    return "vector_short" if opcode in SHORT_PATH else _family(opcode)


@functools.cache
def vector_latencies(unit_lanes: int, stage_merge: int) -> tuple[int, int]:
    """The latency of the core's vector unit (``unit_lanes`` lanes, the sequencer's operations) on
    its long and its short path, from its elaboration."""
    from amaranth.hdl import Fragment

    from rtl.core.vector_sequencer import UNIT_OPS
    from rtl.vector.unit import VectorUnit

    unit = VectorUnit(lanes=unit_lanes, ops=UNIT_OPS, stage_merge=stage_merge)
    Fragment.get(unit, None)
    return unit.latency, unit.short_latency


def merge_saving(opcode: Opcode, config: ChipConfig) -> int:
    """Cycles of latency a vector instruction saves on a unit with merged stages
    (``ChipConfig.vector_stage_merge``) against one with every stage registered: the
    coefficients are in the terms of the latter (their traces are converted, see
    :func:`samples_from_trace`). On the wide requantizer, the unit's short path at merge 1 against
    the requantizer's latency."""
    if opcode in WIDE_REQUANT and config.wide_requant:
        return vector_latencies(config.unit_lanes, 1)[1] - WIDE_REQUANT_LATENCY
    if config.vector_stage_merge == 1 or _family(opcode) != "vector":
        return 0
    path = 1 if opcode in SHORT_PATH else 0
    return (vector_latencies(config.unit_lanes, 1)[path]
            - vector_latencies(config.unit_lanes, config.vector_stage_merge)[path])


def duration(opcode: Opcode, fields: dict, config: ChipConfig, coefficients: dict | None = None) -> int:
    """Cycles ``opcode`` keeps its unit busy."""
    coefficients = coefficients or COEFFICIENTS
    cycles = float(features(opcode, fields, config) @ _coefficients(opcode, coefficients, fields))
    return max(1, round(cycles - merge_saving(opcode, config)))


#: The vector unit's accumulator reads and writes and the matrix engine's writes share the
#: accumulator's banks: while a MATMUL writes a bank the vector instruction reads or writes, the
#: vector unit progresses at ``1 / (1 + c d)`` of its speed, ``d`` the MATMUL's
#: :func:`write_duty` (the matrix engine has priority and is not slowed). The fit picks ``c``
#: from a grid (0 to 2 in steps of 0.25): the smallest worst error over the layers, then per part.
CONTENTION = 1.75


def write_duty(opcode: Opcode, fields: dict, config: ChipConfig) -> float:
    """The fraction of a MATMUL's cycles in which it writes a result row into the accumulator: its
    rows over a tile's cycles (:func:`features`), of its last K-tile only where the matrix unit
    adds the K-tiles up in its partial sums (``ChipConfig.partial_rows``); a decode's one row per
    tile leaves the port free most of the time, a prefill's tiles write every cycle (of their
    last K-tile)."""
    if opcode is not Opcode.MATMUL:
        return 0.0
    rows = max(fields.get("rows", 0), 1)
    duty = rows / _tile_cycles(rows, fields, config)
    if rows <= config.partial_rows:
        duty /= math.ceil(max(fields.get("imm", 0), 1) / config.rows)
    return duty


def _overlaps(held: tuple[Opcode, dict], following: tuple[Opcode, dict]) -> bool:
    """Whether ``following`` may start in ``held``'s tail. The DMA engine starts a descriptor's
    rows behind the last one's when both read the same memory and neither writes it: a LOAD
    follows a LOAD (from DRAM, into either SRAM), and a STORE a STORE from the same SRAM
    (``Flag.DST_ACC``); a GATHER's first row waits for every descriptor before it, and its rows
    are LOAD descriptors, which a LOAD may follow."""
    (op, fields), (next_op, next_fields) = held, following
    if QUEUE_OF[op] == "vector":
        return _vector_overlaps(held, following)
    if _family(op) != "transfer":
        return True
    if next_op is Opcode.GATHER:
        return False
    if op is Opcode.GATHER:
        op = Opcode.LOAD
    if op != next_op:
        return False
    same_sram = (fields.get("flags", 0) & Flag.DST_ACC) == (next_fields.get("flags", 0) & Flag.DST_ACC)
    return op is Opcode.LOAD or same_sram


def vector_ranges(opcode: Opcode, fields: dict) -> tuple[list[tuple], list[tuple]]:
    """What a vector instruction reads (its source rows, its side operands) and writes (its
    results, its row results), each as (scratchpad, first, end), the whole span of a strided
    rectangle as one range: whether one instruction reads the results of the one before
    (:func:`_vector_overlaps`)."""
    f = {name: int(fields.get(name, 0)) for name in ("flags", "addr0", "addr1", "addr2", "addr3", "rows", "cols",
                                                      "stride0", "stride1", "imm")}
    flags, rows, cols = f["flags"], f["rows"], f["cols"]
    span = lambda stride: max(rows - 1, 0) * stride  # noqa: E731
    bias = bool(flags & Flag.HAS_BIAS)
    row_scale = _row_scales_only(opcode, f)
    if opcode in OTHER_OPERAND:
        side = span(f["imm"]) + cols
    elif opcode in (Opcode.V_REQUANT, Opcode.V_DEQUANT, Opcode.V_REQUANT8):
        side = rows
    elif opcode in (Opcode.V_RMSNORM, Opcode.V_LAYERNORM) and not row_scale:
        side = cols * (2 if bias else 1)
    else:
        side = 0
    if opcode is Opcode.V_REQUANT and not flags & Flag.NO_COL_SCALE:
        columns = cols * (2 if bias else 1)
    elif opcode in (Opcode.V_REQUANT, Opcode.V_DEQUANT) and bias:
        columns = 2 * cols
    else:
        columns = 0
    reads = [(opcode is Opcode.V_DEQUANT, f["addr0"], f["addr0"] + span(f["stride0"]) + cols),
             (False, f["addr2"], f["addr2"] + side), (False, f["addr3"], f["addr3"] + columns)]
    row_results = rows if opcode in (Opcode.V_QUANT, Opcode.V_SOFTMAX_EXP) else 0
    int8 = (opcode is Opcode.V_QUANT and not row_scale) or opcode is Opcode.V_REQUANT8
    writes = [(int8, f["addr1"], f["addr1"] + span(f["stride1"]) + (1 if row_scale else cols)),
              (False, f["addr2"], f["addr2"] + row_results)]
    if opcode is Opcode.V_REQUANT and flags & Flag.ROW_SCALE:   # its rows' largest results
        writes.append((False, f["imm"], f["imm"] + rows))
    return reads, writes


def _vector_overlaps(held: tuple[Opcode, dict], following: tuple[Opcode, dict]) -> bool:
    """Whether ``following`` runs in ``held``'s tail: both run on the vector unit or the wide
    requantizer (not the scalar path), ``following`` scans no value scales, is not empty, and
    reads nothing of what ``held`` writes (:func:`vector_ranges`). The sequencer takes one that
    does read it too, but its reads follow the writer row by row, and the rows it reads come last:
    in the 8x8 prompt's trace it finished a few cycles before ``held``'s done plus its own duration
    (2 after a wide requantization, whose tail is 2 cycles; 10 after a one-row V_RMSNORM on the
    long path), which is what the model gives it by starting it at that done."""
    (op, fields), (next_op, next_fields) = held, following
    if _family(op) != "vector" or _family(next_op) != "vector" or next_op is Opcode.V_FOLD_V:
        return False
    if next_op is Opcode.V_SOFTMAX_EXP and next_fields.get("flags", 0) & Flag.FOLD_V:
        return False
    if not next_fields.get("rows", 0) or not next_fields.get("cols", 0):
        return False
    reads, _ = vector_ranges(next_op, next_fields)
    _, writes = vector_ranges(op, fields)
    return not any(r_spad == w_spad and r_lo < r_end and w_lo < w_end and r_lo < w_end and w_lo < r_end
                   for r_spad, r_lo, r_end in reads for w_spad, w_lo, w_end in writes)


def vector_tail(opcode: Opcode, fields: dict, config: ChipConfig) -> int:
    """Cycles of a vector instruction left when the sequencer has fed its every operand and takes
    the next: the unit's latency on its path (short or long) and :data:`VECTOR_DRAIN`, or, on the
    wide requantizer, :data:`VECTOR_WIDE_TAIL`."""
    if config.wide_requant and opcode in WIDE_REQUANT:
        return VECTOR_WIDE_TAIL
    return vector_latencies(config.unit_lanes, config.vector_stage_merge)[opcode in SHORT_PATH] + VECTOR_DRAIN


def tails(config: ChipConfig, coefficients: dict | None = None) -> dict:
    """Per unit, the cycles before its instruction's completion from which it takes the next
    (:func:`schedule`'s ``tails``): the matrix unit's drain, the transfer unit's overlap (no more
    than a LOAD's fixed cost in ``coefficients``: only that part passes beside the one before),
    the vector sequencer's drain (:func:`vector_tail`, by the instruction held)."""
    fixed = _coefficients(Opcode.LOAD, coefficients or COEFFICIENTS)[0]
    return {"matrix": config.rows + config.columns + MATRIX_DRAIN,
            "transfer": max(0, min(TRANSFER_OVERLAP, math.floor(fixed))),
            "vector": functools.partial(vector_tail, config=config)}


def schedule(program: list[tuple[Opcode, dict]], durations: list[float], *, queue_depth: int = 4,
             fetch_cycles: int = 1, contention: float | None = None,
             banks: list[tuple[set, set]] | None = None,
             tails: dict[str, int] | None = None,
             duties: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Release and completion cycle of each instruction (-1 for control instructions) when the
    controller runs ``program`` with these uncontended unit ``durations``. ``banks``: each
    instruction's accumulator banks (read, written; :func:`acc_banks`); without them every
    MATMUL slows every vector instruction. ``duties``: of each MATMUL, the fraction of its cycles
    in which it writes the accumulator (:func:`write_duty`; 1 without them), which a DMA transfer
    to or from one of the banks it writes has to wait for. ``tails``: per unit, the remaining cycles of the
    instruction it holds at which it takes a second one (two at most), or a function of that
    instruction's (opcode, fields) giving them; without them, one at a time."""
    contention = CONTENTION if contention is None else contention
    n = len(program)
    issue = np.full(n, -1, dtype=np.int64)
    done = np.full(n, -1, dtype=np.int64)
    fifos = {q: deque() for q in QUEUES}
    semaphores = [0] * SEMAPHORES
    tails = tails or {}

    def tail_of(unit: str, index: int) -> int:
        tail = tails.get(unit, 0)
        return tail(*program[index]) if callable(tail) else tail
    running: dict[str, list] = {}   # unit -> [[instruction, work left], ...], oldest first
    next_fetch, fetch_ready = 0, 0
    clock = 0
    finished = 0
    total = sum(QUEUE_OF[op] in QUEUES for op, _ in program)
    turn = 0

    def colliding(index: int) -> list[int]:
        """The running MATMULs that write an accumulator bank instruction ``index`` uses (for
        every vector instruction, and no transfer, without ``banks``)."""
        matmuls = [m for m, _ in running.get("matrix", [])]
        if banks is None:
            return matmuls if QUEUE_OF[program[index][0]] == "vector" else []
        reads, writes = banks[index]
        return [m for m in matmuls if banks[m][1] & (reads | writes)]

    def rate(unit: str, index: int) -> float:
        """The rate instruction ``index`` progresses at on ``unit``: a vector instruction or a DMA
        transfer slowed while a MATMUL writes a bank it uses (each transfer by its own banks: a
        LOAD into the scratchpad beside a LOAD into such a bank is not)."""
        hits = [] if unit == "matrix" else colliding(index)
        if not hits:
            return 1.0
        if unit == "transfer":
            duty = max(1.0 if duties is None else duties[m] for m, _ in running["matrix"])
            return max(1.0 - duty, 1.0 / DMA_YIELD)
        duty = max(1.0 if duties is None else duties[m] for m in hits)
        return 1.0 / (1.0 + contention * duty)

    def advance(cycles: int) -> None:
        rated = [(entry, rate(unit, entry[0])) for unit, entries in running.items() for entry in entries]
        for entry, r in rated:
            entry[1] -= r * cycles

    while finished < total:
        for unit, index in [(u, e[0]) for u, entries in running.items() for e in entries if e[1] <= 1e-9]:
            running[unit] = [e for e in running[unit] if e[0] != index]
            if not running[unit]:
                del running[unit]
            done[index] = clock
            signal = program[index][1].get("signal", 0)
            for s in range(SEMAPHORES):
                if signal >> s & 1:
                    semaphores[s] += 1
            finished += 1
        if finished == total:
            break
        # fetch, in program order, while the next instruction's queue has room
        while next_fetch < n and fetch_ready <= clock:
            opcode, _ = program[next_fetch]
            queue = QUEUE_OF[opcode]
            if queue in QUEUES:
                if len(fifos[queue]) >= queue_depth:
                    break
                fifos[queue].append(next_fetch)
            next_fetch += 1
            fetch_ready = clock + fetch_cycles
        # one release per cycle, round robin over the queues
        released = False
        for offset in range(len(QUEUES)):
            queue = QUEUES[(turn + offset) % len(QUEUES)]
            if not fifos[queue]:
                continue
            index = fifos[queue][0]
            wait = program[index][1].get("wait", 0)
            unit = UNIT_OF[queue]
            # a unit takes the next instruction once the one it holds is in its tail (``tails``:
            # the matrix unit's drain, the transfer unit's overlap), two at most
            if unit in running:
                held = running[unit][-1]
                tail = tail_of(unit, held[0]) if _overlaps(program[held[0]], program[index]) else 0
                if len(running[unit]) > 1 or held[1] > tail:
                    continue
            if any(wait >> s & 1 and semaphores[s] == 0 for s in range(SEMAPHORES)):
                continue
            for s in range(SEMAPHORES):
                if wait >> s & 1:
                    semaphores[s] -= 1
            fifos[queue].popleft()
            issue[index] = clock
            running.setdefault(unit, []).append([index, float(durations[index])])
            turn = (turn + offset + 1) % len(QUEUES)
            released = True
            break
        if released:
            advance(1)
            clock += 1
            continue
        # nothing to release: jump to the next completion or fetch
        steps = [math.ceil(left / rate(unit, index)) for unit, entries in running.items() for index, left in entries]
        steps += [math.ceil((entries[-1][1] - tail_of(unit, entries[-1][0])) / rate(unit, entries[-1][0]))
                  for unit, entries in running.items()
                  if len(entries) == 1 and entries[-1][1] > tail_of(unit, entries[-1][0]) > 0]
        if next_fetch < n and fetch_ready > clock:
            steps.append(fetch_ready - clock)
        if not steps:
            raise RuntimeError(f"the schedule is stuck at cycle {clock}: no completion, fetch or release can happen "
                               f"(queues {dict((q, list(f)[:2]) for q, f in fifos.items())}, semaphores {semaphores}, "
                               f"fetched {next_fetch} of {n}, finished {finished} of {total}, running {running})")
        step = max(1, min(steps))
        advance(step)
        clock += step
    return issue, done


def predict(program: list[tuple[Opcode, dict]], config: ChipConfig, coefficients: dict | None = None,
            **options) -> tuple[Trace, int]:
    """The predicted trace of ``program`` (as :class:`compiler.profile.Trace`, no stalls) and its
    total cycles."""
    durations = [duration(op, fields, config, coefficients) if QUEUE_OF[op] in QUEUES else 0
                 for op, fields in program]
    banks = [acc_banks(op, fields, config) for op, fields in program]
    options.setdefault("tails", tails(config, coefficients))
    options.setdefault("queue_depth", config.queue_depth)
    options.setdefault("duties", [write_duty(op, fields, config) for op, fields in program])
    issue, done = schedule(program, durations, banks=banks, **options)
    per = {q: [i for i, (op, _) in enumerate(program) if QUEUE_OF[op] == q] for q in QUEUES}
    trace = Trace({q: issue[per[q]] for q in QUEUES}, {q: done[per[q]] for q in QUEUES},
                  {q: np.zeros(len(per[q]), dtype=np.int64) for q in QUEUES})
    return trace, int(done.max()) if len(done) else 0


# ---------------------------------------------------------------------------------- fitting

def fit(samples: list[tuple[Opcode, dict, int, ChipConfig]]) -> dict[str, np.ndarray]:
    """Least-squares coefficients per family, and per opcode where the samples vary enough to
    determine them, from measured (opcode, fields, duration, chip) samples. The fit minimises
    relative error, so short instructions count as much as long ones. Samples from more than one
    chip separate terms that one chip's jobs make proportional (every V_RMSNORM of tiny-llama has
    64 columns, so on one chip its beats are a multiple of its rows)."""
    def solve(rows, fallback):
        x = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows], dtype=float)
        if len(rows) < 2 * x.shape[1] or np.linalg.matrix_rank(x) < x.shape[1]:
            return fallback
        weight = 1.0 / np.maximum(y, 1.0)
        coef, *_ = np.linalg.lstsq(x * weight[:, None], y * weight, rcond=None)
        return coef

    out = {}
    for family in ("transfer", "matmul", "scalar", "rope", "vector", "vector_short"):
        rows = [(features(op, f, config), c) for op, f, c, config in samples if _fallback(op) == family]
        out[family] = solve(rows, COEFFICIENTS[family]) if rows else COEFFICIENTS[family]
    for key in sorted({coefficient_key(op, f) for op, f, _, _ in samples}):
        rows = [(features(op, f, config), c) for op, f, c, config in samples if coefficient_key(op, f) == key]
        coef = solve(rows, None)
        if coef is not None:
            out[key] = coef
    return out


def samples_from_trace(job, trace, config: ChipConfig,
                       contention: float = 0.0) -> list[tuple[Opcode, dict, int, ChipConfig]]:
    """(opcode, fields, uncontended cycles, ``config``) of every instruction of a traced RTL job: the cycles
    it held its unit (from its release, or from the done of the vector instruction before that it
    had to wait for), and for a vector instruction less what the matrix engine's contention
    added: at ``1 / (1 + contention d)`` speed for the ``O`` cycles it overlapped a MATMUL of
    :func:`write_duty` ``d`` writing a bank it reads or writes (:func:`acc_banks`), its work is
    ``D - O * contention d / (1 + contention d)``."""
    issue, done, _ = trace.per_instruction(job)
    matrix = [i for i, (op, _) in enumerate(job.program) if op is Opcode.MATMUL and issue[i] >= 0]
    starts = np.array([issue[i] for i in matrix], dtype=np.int64)
    ends = np.array([done[i] for i in matrix], dtype=np.int64)
    written = [acc_banks(Opcode.MATMUL, job.program[i][1], config)[1] for i in matrix]
    duty = np.array([write_duty(Opcode.MATMUL, job.program[i][1], config) for i in matrix])
    share = contention * duty / (1 + contention * duty)
    # a vector instruction released beside the one before that it does not overlap
    # (:func:`_vector_overlaps`) waits for that one's done: it starts there
    start = issue.copy()
    vector = sorted((i for i, (op, _) in enumerate(job.program) if QUEUE_OF[op] == "vector" and issue[i] >= 0),
                    key=lambda i: issue[i])
    for before, i in zip(vector, vector[1:], strict=False):
        if issue[i] < done[before] and not _vector_overlaps(job.program[before], job.program[i]):
            start[i] = done[before]
    out = []
    for i, (op, fields) in enumerate(job.program):
        if issue[i] < 0:
            continue
        # in the terms of a vector unit with every stage registered, as the coefficients are
        cycles = float(done[i] - start[i]) + merge_saving(op, config)
        if _family(op) == "vector" and contention and len(starts):
            reads, writes = acc_banks(op, fields, config)
            hit = np.array([bool(w & (reads | writes)) for w in written])
            overlap = np.clip(np.minimum(ends, done[i]) - np.maximum(starts, start[i]), 0, None)
            cycles -= float((share * overlap * hit).sum())
        out.append((op, fields, cycles, config))
    return out


def compare(job, trace, cycles: int, config: ChipConfig, coefficients: dict | None = None,
            **options) -> dict[str, tuple]:
    """Per part of the model: (measured cycles, predicted cycles)."""
    from compiler.profile import profile

    predicted_trace, predicted_total = predict(job.program, config, coefficients, **options)
    _, measured = profile(job, trace, cycles, config)
    _, predicted = profile(job, predicted_trace, predicted_total, config)
    return {part: (measured[part]["cycles"], predicted[part]["cycles"]) for part in measured}


def compare_layers(job, trace, cycles: int, config: ChipConfig, coefficients: dict | None = None,
                   **options) -> dict[tuple[int, str | None], tuple[int, int]]:
    """(measured, predicted) cycles per transformer layer (``(layer, None)``; -1 is the embedding
    and the head) and per layer and part (``(layer, part)``), both attributed by completion
    (:func:`compiler.profile.profile`)."""
    from compiler.profile import layer_table, profile

    predicted_trace, predicted_total = predict(job.program, config, coefficients, **options)
    out: dict[tuple[int, str | None], list[int]] = {}
    for side, (t, total) in enumerate(((trace, cycles), (predicted_trace, predicted_total))):
        segs, _ = profile(job, t, total, config)
        for row in layer_table(job, segs, config):
            for key in ((row["layer"], None), (row["layer"], row["section"])):
                out.setdefault(key, [0, 0])[side] += row["cycles"]
    return {key: (m, p) for key, (m, p) in out.items()}


# ---------------------------------------------------------------------------------- command line

def _traced_runs():
    """RTL traces the coefficients are fitted to: on the default chip, tiny-llama with 7-, 16-, 64-
    and 100-token prompts (the last two in token blocks) and one decode token after each, and
    MiniLM on one sentence; on the 16x16 / 128-bit chip (``make bench``'s second), tiny-llama's
    64-token prompt and a decode token."""
    from compiler.lower import Compiler
    from compiler.rtl_runner import run_rtl
    from scoville.models import load_model

    runs = []
    ckpt = load_model("tiny-llama")
    chips = [("", tokens, None) for tokens in (7, 16, 64, 100)] + [("16x16 ", 64, CONFIGS["16x16-128b"])]
    for label, tokens, config in chips:
        ids = np.arange(1, tokens + 1) * 7 % ckpt.config.vocab_size
        rtl = run_rtl(ckpt, ids, generate=2, config=config, trace=True)
        compiler = Compiler(ckpt, rtl.config)
        jobs = [compiler.job(ids), compiler.job(rtl.tokens[:1], len(ids))]
        runs += [(f"{label}tiny-llama {phase} ({tokens})", job, trace, cycles, rtl.config)
                 for phase, job, trace, cycles in zip(("prefill", "decode"), jobs, rtl.traces, rtl.cycles,
                                                      strict=True)]
    minilm = load_model("minilm")
    ids = minilm.encode("A man is eating food.")
    rtl = run_rtl(minilm, ids, trace=True)
    runs.append(("minilm prefill (8)", Compiler(minilm, rtl.config).job(ids), rtl.traces[0], rtl.cycles[0],
                 rtl.config))
    return runs


def main(argv: list[str]) -> int:
    """``--fit``: fit :data:`COEFFICIENTS` to fresh RTL traces; without it, compare the model
    with them. Prints measured and predicted cycles per part of the model. ``--cache FILE``
    keeps the traces in a pickle between runs."""
    cache = argv[argv.index("--cache") + 1] if "--cache" in argv else None
    if cache and Path(cache).exists():
        with open(cache, "rb") as f:
            runs = pickle.load(f)
    else:
        runs = _traced_runs()
        if cache:
            with open(cache, "wb") as f:
                pickle.dump(runs, f)
    coefficients, contention = COEFFICIENTS, CONTENTION
    if "--fit" in argv:
        def fitted(c):
            samples = [s for _, job, trace, _, config in runs for s in samples_from_trace(job, trace, config, c)]
            return fit(samples)

        def error(c):
            # the worst layer (the performance issue's bar is per layer), then the mean per part
            coefficients = fitted(c)
            layers = [abs(p / m - 1) for _, job, trace, cycles, config in runs
                      for (_, part), (m, p) in compare_layers(job, trace, cycles, config, coefficients,
                                                              contention=c).items() if part is None and m]
            parts = [abs(p / m - 1) for _, job, trace, cycles, config in runs
                     for m, p in compare(job, trace, cycles, config, coefficients, contention=c).values() if m]
            return round(max(layers), 3), float(np.mean(parts))
        contention = float(min(np.arange(0.0, 2.01, 0.25), key=error))
        coefficients = fitted(contention)
        print(f"CONTENTION = {contention}")
        print("COEFFICIENTS = {")
        for key, values in coefficients.items():
            print(f'    "{key}": np.array([{", ".join(f"{v:.3f}" for v in values)}]),')
        print("}")
    worst = 0.0
    for name, job, trace, cycles, config in runs:
        parts = compare(job, trace, cycles, config, coefficients, contention=contention)
        cells = []
        for part, (measured, predicted) in parts.items():
            error = predicted / measured - 1 if measured else 0.0
            worst = max(worst, abs(error))
            cells.append(f"{part} {measured}/{predicted} ({error:+.1%})")
        print(f"{name}: " + ", ".join(cells))
    print(f"largest error per part: {worst:.1%} (measured/predicted cycles)")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
