"""Lowering a checkpoint to a Scoville program and DRAM image.

:class:`Compiler` quantizes the weights exactly as the ``golden`` backend does (it calls the same
``GoldenOps.prepare_*`` functions), lays them out in a DRAM image together with the constants,
a KV cache, the input and output buffers and a program area, and emits, per job, a program for
``T`` tokens at positions ``p0 .. p0+T-1`` (prefill: ``p0 = 0``; decode: one token after the
cache). Linear layers are tiled over output columns so a weight tile fits the scratchpad.

What does not fit is refused with :class:`FitError` naming the buffer, its size and what is left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from compiler.dependencies import (
    ACC,
    Access,
    conflicts,
    footprint,
    hoist_loads,
    list_schedule,
    overlap,
    split_rows,
    synchronise,
)
from compiler.loops import fold
from golden.checkpoint import Checkpoint
from golden.model import Llama, build_model
from golden.quant_ops import QEmbedding, QLinear, QNorm
from scoville import numerics as nx
from scoville.config import ChipConfig
from scoville.isa import INSTRUCTION_BYTES, QUEUE_OF, Flag, Opcode, encode, in_program_order, pack_scale

__all__ = ["Compiler", "FitError", "Job"]

ALIGN = 64


class FitError(ValueError):
    """The model or sequence does not fit the configured chip (one line, names what)."""


#: V_ATTN_SCALE's constant factor 1/127², as a packed scale (both attention paths use it)
_PROBABILITY_SCALE = pack_scale(*(int(v) for v in nx.scale_from_float(1.0 / (nx.QMAX * nx.QMAX))))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _fit_rows(width: int, k: int, budget: int, columns: int, bus: int) -> int:
    """``width`` less whole ``columns`` until a [k, width] int8 tile with rows of whole bus words
    fits ``budget`` bytes (never below ``columns``)."""
    while width > columns and k * _round_up(width, bus) > budget:
        width -= columns
    return width


def _one_run(fields: dict) -> dict:
    """A LOAD/STORE whose rows follow each other on both sides as one long row: the DMA pays a
    few cycles per row (a 65-row key load of 16-byte rows: 270 cycles for 130 bus beats)."""
    rows, cols = fields.get("rows", 0), fields.get("cols", 0)
    contiguous = fields.get("stride0") == cols == fields.get("stride1")
    if rows > 1 and contiguous and rows * cols < 1 << 16:
        return {**fields, "rows": 1, "cols": rows * cols}
    return fields


class _Region:
    """A bump allocator over ``[start, end)`` of one memory, with marks to free a layer's temporaries.

    Two stacks share the region: ``alloc`` grows one up from ``start``, ``alloc(high=True)`` the
    other down from ``end``, so buffers that two instructions use at once can be put in different
    banks (the accumulator's banks are equal slices of its address range; two reads of one bank
    take turns). Either stack may use all the space the other leaves.
    """

    def __init__(self, name: str, end: int, unit: str, align: int = 1, start: int = 0):
        self.name, self.unit, self.align = name, unit, align
        self.size = end - start
        self.top, self.bottom = start, end     # the low stack's top, the high stack's bottom

    def alloc(self, amount: int, what: str, align: int | None = None, high: bool = False) -> int:
        align = align or self.align
        base = (self.bottom - amount) // align * align if high else _round_up(self.top, align)
        if (base < self.top) if high else (base + amount > self.bottom):
            raise FitError(f"{what} needs {amount} {self.unit} of {self.name} but only {self.free()} of "
                           f"{self.size} are free")
        if high:
            self.bottom = base
        else:
            self.top = base + amount
        return base

    def free(self) -> int:
        """The largest buffer the region can still take."""
        return max(self.bottom - _round_up(self.top, self.align), 0)

    def mark(self) -> tuple[int, int]:
        return self.top, self.bottom

    def release(self, mark: tuple[int, int]) -> None:
        self.top, self.bottom = mark


#: Cycles of pieces a V_QUANT must save on a vector unit narrower than a beat for the compiler to
#: split it into V_QUANT with ROW_SCALE and V_REQUANT8 (:meth:`_Emitter.quant`). The second
#: instruction adds its latency to a chain of dependent ones: in tiny-llama's decode after 64
#: tokens on the 8x8 chip (queries 4 x 16 and probabilities 4 x 65: 24 and 96 cycles of pieces)
#: the split cost 135 cycles (22 334 against 22 199, RTL); its prompt's smallest (16 x 32 and
#: 32 x 16: 192 cycles) are split.
QUANT_SPLIT_PIECES = 128


def quant_split_saving(rows: int, cols: int, config: ChipConfig) -> int:
    """Cycles of pieces a V_QUANT of ``rows`` x ``cols`` saves split in two: its second pass in
    pieces of the unit's lanes against a beat a cycle on the wide requantizer."""
    return rows * (math.ceil(cols / config.unit_lanes) - math.ceil(cols / config.lanes))

#: How much faster (a fraction) the performance model must predict a job in its list-scheduled
#: order for the compiler to keep that order instead of program order.
LIST_MARGIN = 0.02

#: Instructions of this many rows or more are split in two halves (:func:`compiler.dependencies.
#: split_rows`) for list scheduling: the next instruction's first half then starts while this
#: one's second half runs, on another unit.
SPLIT_ROWS = 16
#: ... where the halves, by the performance model, take at most this fraction longer than the
#: whole (each half pays the fixed cost; a MATMUL's halves each load every weight tile). Splitting
#: every one, tiny-llama's 64-token prompt took 314 514 cycles on the 8x8 chip and 79 500 on
#: 16x16 / 128-bit (RTL); with this bound, which keeps attention's short matmuls and the
#: queries' and new keys' V_QUANT whole, 304 619 and 79 036 (0.05: 306 221 and -; 0.08: 303 991
#: and 79 915; 0.15: 313 864 and 79 558).
SPLIT_COST = 0.1


def halves_worth_it(opcode: Opcode, fields: dict, config: ChipConfig) -> list[tuple[Opcode, dict]]:
    """The instruction cut in two halves of its rows (:func:`compiler.dependencies.split_rows`)
    where it has :data:`SPLIT_ROWS` rows or more and the halves take at most :data:`SPLIT_COST`
    longer than the whole by the performance model; else the instruction alone."""
    from compiler.perfmodel import duration

    if fields.get("rows", 0) < SPLIT_ROWS:
        return [(opcode, fields)]
    halves = split_rows(opcode, fields, 2)
    whole = duration(opcode, fields, config)
    extra = sum(duration(op, f, config) for op, f in halves) - whole
    return halves if extra <= SPLIT_COST * whole else [(opcode, fields)]


@dataclass(frozen=True)
class _Slot:
    """One attention pass's buffers (:meth:`_Emitter._attention_slot`): int8 queries and
    probabilities in the scratchpad, the rest in the accumulator."""

    qq: int
    qs: int
    scores: int
    totals: int
    pq: int
    ps: int
    os: int
    pv: int


class _Ring:
    """Tiles that are loaded, used and dropped (weights, cached keys and values, their scales),
    placed one after the other in ``[base, base + size)`` and wrapping around: a tile's space is
    reused only after about ``size`` of later tiles, so the load queue can fetch the next tiles
    while the matrix engine still reads earlier ones (the semaphores order any overlap)."""

    def __init__(self, name: str, base: int, size: int, unit: str, align: int = 1):
        self.name, self.base, self.size, self.unit, self.next = name, base, size, unit, base
        self.align = align

    def alloc(self, amount: int, what: str, room: int = 0) -> int:
        """``amount`` in one piece, with ``room`` more free right after it for the allocations
        that follow (they take it without a wrap)."""
        if amount + room > self.size:
            raise FitError(f"{what} needs {amount + room} {self.unit} but the {self.name} tile ring holds {self.size}")
        self.next = self.base + _round_up(self.next - self.base, self.align)
        if self.next + amount + room > self.base + self.size:
            self.next = self.base
        addr, self.next = self.next, self.next + amount
        return addr


def _packed_scales(m, e) -> np.ndarray:
    return np.array([pack_scale(int(a), int(b)) for a, b in zip(np.ravel(m), np.ravel(e), strict=True)],
                    dtype=np.uint32)


@dataclass
class _Linear:
    """A linear layer's DRAM image. The int8 weights [K, N] are stored in column panels of
    ``panel`` columns (the last one narrower), each panel [K, its width rounded up to a bus word]
    contiguous: a tile as wide as a panel is one run of DRAM (one DMA row, where [K, N] rows would
    be K rows), and every row of it lands on whole scratchpad rows."""

    weight: int  # DRAM: the panels, one after the other
    #: DRAM: the packed column scales [N] then the int32 bias [N]: any tile's two rows of them
    #: come in one LOAD
    scales: int
    #: DRAM: the same per panel, its scales then its bias ([2, width], panel after panel): a
    #: layer whose tiles are its panels loads every tile's in one DMA row
    panel_scales: int
    k: int
    n: int
    panel: int
    bus: int

    def at(self, n0: int) -> tuple[int, int]:
        """DRAM address of weight (0, n0) and the row stride of its panel."""
        p = n0 // self.panel
        base = self.weight + p * self.k * _round_up(self.panel, self.bus)
        return base + n0 - p * self.panel, _round_up(min(self.panel, self.n - p * self.panel), self.bus)



@dataclass
class _Norm:
    params: int  # DRAM: packed gamma scales [H] then beta [H]
    eps_q: int
    inv_h: int  # packed scale 1/H
    h: int


@dataclass
class Job:
    """One program ready to run: the DRAM image, where the program starts, where outputs land."""

    dram: np.ndarray
    program_addr: int
    instructions: int   # executed, END included (the length of ``program``)
    tokens: int
    start: int
    hidden_addr: int
    logits_addr: int | None
    hidden_size: int
    vocab_size: int
    #: the instructions as emitted (with their semaphores), and what part of the model each
    #: belongs to (:data:`SECTIONS`), for profiles and timelines
    program: list = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    #: the transformer layer of each instruction (-1: embedding and head)
    layers: list[int] = field(default_factory=list)
    #: tokens per block (:class:`_Emitter`): the job's tokens when its tensors fit the SRAMs at once
    block: int = 0
    #: 32-byte words of the program in DRAM (loops folded; ``instructions`` counts them expanded)
    words: int = 0


#: The parts of a model an instruction can belong to: the embedding lookup, the layers' QKV
#: projections (with RoPE), attention (KV cache writes, scores, softmax, P@V), the output
#: projection with its residual add, the MLP with its residual add, the norms, and the head
#: (the final hidden states and the LM head).
SECTIONS = ("embed", "qkv", "attention", "out_proj", "mlp", "norm", "head")


@dataclass
class Compiler:
    """Compiles one checkpoint for one chip configuration."""

    ckpt: Checkpoint
    config: ChipConfig = field(default_factory=ChipConfig)
    program_bytes: int = 4 * 1024 * 1024
    #: ``"dependencies"``: semaphores for exactly the cross-queue dependencies
    #: (:mod:`compiler.dependencies`); ``"program_order"``: every instruction waits for its predecessor.
    synchronisation: str = "dependencies"
    #: Load weights and cached keys/values into rings of tiles (half the scratchpad, a quarter of
    #: the accumulator) so loads run ahead of compute; falls back to one tile per layer when a job
    #: does not fit that way.
    double_buffer: bool = True
    #: Move each LOAD ahead of the instructions before it that it does not conflict with
    #: (:func:`compiler.dependencies.hoist_loads`), so that it is fetched, and runs, earlier.
    hoist_loads: bool = True
    #: Also order each layer's instructions by list scheduling on the core's units
    #: (:func:`compiler.dependencies.list_schedule`), and keep that order when the performance
    #: model predicts the job faster with it: a prompt's blocks, and attention's passes, share
    #: no buffers, so one's vector work can run beside another's matmuls, which program order
    #: (the queues are in order) kept apart. A decode's one block gains little, and its layers'
    #: loads lose their place ahead of the vector work.
    list_schedule: bool = True
    #: Weight tiles the scratchpad ring holds (each a ring's fraction wide, and the DRAM panels as
    #: wide): three for decoders, whose decode jobs stream weights with a matmul per tile as long
    #: as its load, so a third tile keeps the DMA busy while the matrix engine works on one and
    #: the vector unit on another; two for encoders, whose wider tiles span fewer panels (tiles
    #: too long for a share are cut along K, :meth:`_Emitter.linear`). None: by architecture.
    weight_tiles: int | None = None
    #: Fold repeated runs of instructions into ``LOOP`` instructions (:mod:`compiler.loops`): a
    #: smaller program and less fetch traffic, the same instructions executed.
    loops: bool = True

    def __post_init__(self) -> None:
        if self.synchronisation not in ("dependencies", "program_order"):
            raise ValueError(f"synchronisation must be 'dependencies' or 'program_order', got {self.synchronisation!r}")
        cfg = self.ckpt.config
        self.arch = cfg.arch
        if self.weight_tiles is None:
            self.weight_tiles = 3 if self.arch == "llama" else 2
        if not isinstance(self.weight_tiles, int) or self.weight_tiles < 2:
            raise ValueError(f"weight_tiles must be an integer >= 2, got {self.weight_tiles!r}")
        self.model = build_model(self.ckpt, "golden")  # the golden backend's prepared weights
        self._image = bytearray()
        self._layout()

    # ------------------------------------------------------------------ DRAM image

    def _put(self, data: np.ndarray | bytes, what: str) -> int:
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        base = -(-len(self._image) // ALIGN) * ALIGN
        self._image.extend(b"\0" * (base - len(self._image)))
        self._image.extend(raw)
        if len(self._image) > self.config.dram_bytes:
            raise FitError(f"{what} does not fit the {self.config.dram_bytes}-byte DRAM window")
        return base

    def _reserve(self, size: int, what: str) -> int:
        return self._put(np.zeros(size, dtype=np.uint8), what)

    def _linear(self, q: QLinear, what: str) -> _Linear:
        k, n = q.weight_t.shape
        for name, value in (("input features", k), ("output features", n)):
            if value >= 1 << 16:
                raise FitError(f"{what}: {value} {name} exceed the 16-bit size fields")
        # panels as wide as a double-buffered tile (a fraction of the ring; _Emitter.linear),
        # rows padded to a whole bus word: a tile's rows land on whole scratchpad rows, where the
        # matrix engine reads each weight row in one access (two when it straddles a row)
        bus, columns = self.config.bus_bytes, self.config.columns
        budget = self.config.spad_bytes // 2 // self.weight_tiles
        panel = _fit_rows(max(columns, min(n, budget // max(k, 1) // columns * columns)), k, budget, columns, bus)
        parts = []
        for p0 in range(0, n, panel):
            width = min(panel, n - p0)
            block = np.zeros((k, _round_up(width, bus)), dtype=np.int8)
            block[:, :width] = q.weight_t[:, p0:p0 + width]
            parts.append(block.ravel())
        weight = self._put(np.concatenate(parts), what)
        # column scales, then the bias: a tile's two rows of them come in one LOAD; and the same
        # per panel (its scales, then its bias), for a layer whose tiles are its panels
        col = _packed_scales(q.col_m, q.col_e).view(np.int32)
        bias = q.bias.astype(np.int32)
        scales = self._put(np.stack([col, bias]), what)
        panel_scales = self._put(np.concatenate([np.concatenate([col[p0:p0 + panel], bias[p0:p0 + panel]])
                                                 for p0 in range(0, n, panel)]), what)
        return _Linear(weight, scales, panel_scales, k, n, panel, bus)

    def _norm(self, q: QNorm, what: str) -> _Norm:
        params = np.concatenate([_packed_scales(q.gamma_m, q.gamma_e).view(np.int32), q.beta.astype(np.int32)])
        return _Norm(self._put(params, what), q.eps_q, pack_scale(q.inv_h_m, q.inv_h_e), len(q.beta))

    def _embedding(self, q: QEmbedding, what: str) -> tuple[int, int, int]:
        return (self._put(q.table, what), self._put(_packed_scales(q.row_m, q.row_e), what), q.table.shape[0])

    def _layout(self) -> None:
        cfg, p = self.ckpt.config, self.model.params
        self.program_addr = self._reserve(self.program_bytes, "program area")
        self.max_tokens = cfg.max_positions
        self.ids_addr = self._reserve(4 * self.max_tokens * 3, "input ids")
        self.hidden_addr = self._reserve(4 * self.max_tokens * cfg.hidden_size, "output hidden states")
        self.layers = []
        if isinstance(self.model, Llama):
            self.embed = self._embedding(p["embed"], "embedding table")
            self.freqs = self._put(p["rope"].astype(np.uint32), "RoPE frequencies")
            for i, lp in enumerate(p["layers"]):
                self.layers.append({name: (self._norm(v, f"layer {i} {name}") if isinstance(v, QNorm)
                                           else self._linear(v, f"layer {i} {name}")) for name, v in lp.items()})
            self.final_norm = self._norm(p["final_norm"], "final norm")
            self.lm_head = self._linear(p["lm_head"], "LM head")
            self.logits_addr = self._reserve(4 * self.max_tokens * cfg.vocab_size, "output logits")
            kv_heads = cfg.num_kv_heads
        else:
            self.word = self._embedding(p["word"], "word embeddings")
            self.position = self._embedding(p["position"], "position embeddings")
            self.token_type = self._embedding(p["token_type"], "token-type embeddings")
            self.emb_norm = self._norm(p["emb_norm"], "embedding LayerNorm")
            for i, lp in enumerate(p["layers"]):
                self.layers.append({name: (self._norm(v, f"layer {i} {name}") if isinstance(v, QNorm)
                                           else self._linear(v, f"layer {i} {name}")) for name, v in lp.items()})
            self.logits_addr = None
            kv_heads = cfg.num_heads
        d = cfg.head_dim
        self.kv_heads = kv_heads
        # a layer's cache: a row per position of every group's key then value (``kv_row`` bytes),
        # then a slot's scales, a word a position, slot by slot (:meth:`kv_slot`)
        self.kv_row = 2 * kv_heads * d
        self.kv_layer = self.max_tokens * (self.kv_row + 4 * 2 * kv_heads)
        self.kv_addr = self._reserve(cfg.num_layers * self.kv_layer, "KV cache")
        # between the blocks of a long job (see _Emitter): the residual stream and the queries
        self.x_addr = self._reserve(4 * self.max_tokens * cfg.hidden_size, "residual stream")
        self.q_addr = self._reserve(cfg.num_heads * self.max_tokens * (d + 4), "queries")

    def kv_slot(self, layer: int, head: int, which: int) -> tuple[int, int]:
        """DRAM addresses of one cache slot (KV group ``head``'s keys, ``which`` 0, or values):
        its first int8 row (of ``max_tokens``, :attr:`kv_row` bytes apart) and its scales
        (``max_tokens`` words). A position's keys and values of every group are one row, so that
        a decode loads the cache, and stores a new position, in one transfer."""
        slot = 2 * head + which
        base = self.kv_addr + layer * self.kv_layer
        return base + slot * self.ckpt.config.head_dim, base + self.max_tokens * (self.kv_row + 4 * slot)

    # ------------------------------------------------------------------ programs

    def job(self, ids: np.ndarray, start: int = 0, dram: np.ndarray | None = None) -> Job:
        """A program for ``ids`` at positions ``start ..``, in ``dram`` (a fresh image by default).

        Pass the DRAM of the previous job to decode with its KV cache.
        """
        cfg = self.ckpt.config
        ids = np.asarray(ids, dtype=np.int64)
        t = len(ids)
        if t < 1 or start + t > self.max_tokens:
            raise FitError(f"positions {start}..{start + t - 1} exceed the model's {self.max_tokens} positions")
        if dram is None:
            dram = np.zeros(self.config.dram_bytes, dtype=np.uint8)
            dram[:len(self._image)] = np.frombuffer(bytes(self._image), dtype=np.uint8)
        inputs = np.concatenate([ids, np.zeros(t, dtype=np.int64), np.arange(t)]).astype(np.int32)
        dram[self.ids_addr:self.ids_addr + inputs.nbytes] = inputs.view(np.uint8)
        # the largest block of tokens that fits (all of them resident in the SRAMs first; then, for
        # each block size, every block's residual stream and queries kept in the SRAMs (keep 2),
        # the residual stream only (1), neither (0): through DRAM), with double buffering if it
        # fits that way
        plans = [(t, True, 0)]
        block = t
        while True:
            plans += [(block, False, 2), (block, False, 1), (block, False, 0)]
            if block == 1:
                break
            block = (block + 1) // 2
        program = emitter = failure = None
        for block, resident, keep in plans:
            for double_buffer in ((True, False) if self.double_buffer else (False,)):
                try:
                    emitter = _Emitter(self, t, start, double_buffer, block, resident, keep >= 1, keep >= 2)
                    program = emitter.emit()
                    break
                except FitError as exc:
                    failure = exc  # the last: what does not fit even one token at a time
            if program is not None:
                break
        if program is None:
            raise failure
        if len(program) > self.program_bytes:
            raise FitError(f"the program needs {len(program)} bytes; the program area holds {self.program_bytes}")
        dram[self.program_addr:self.program_addr + len(program)] = np.frombuffer(program, dtype=np.uint8)
        return Job(dram, self.program_addr, len(emitter.synchronised), t, start, self.hidden_addr,
                   self.logits_addr, cfg.hidden_size, cfg.vocab_size, emitter.synchronised, emitter.sections,
                   emitter.layers, emitter.block, len(program) // INSTRUCTION_BYTES)

    def read_outputs(self, job: Job, dram: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The wide (int32) hidden states and logits a finished job left in DRAM."""
        t, h = job.tokens, job.hidden_size
        hidden = dram[job.hidden_addr:job.hidden_addr + 4 * t * h].view(np.int32).reshape(t, h).copy()
        logits = None
        if job.logits_addr is not None:
            v = job.vocab_size
            logits = dram[job.logits_addr:job.logits_addr + 4 * t * v].view(np.int32).reshape(t, v).copy()
        return hidden, logits


class _Emitter:
    """Emits the instructions of one job; SPAD and ACC are allocated per layer.

    The job's tokens are processed in blocks of ``block`` rows. With one block (``block`` equal
    to the job's tokens) and ``resident``, the residual stream stays in the accumulator SRAM from
    the embedding to the head. Otherwise every block of every layer goes through DRAM: the residual
    stream (int32 rows, ``Compiler.x_addr``), and the quantized queries (``Compiler.q_addr``)
    between the first part of a layer (norm, Q/K/V projections, RoPE, KV cache writes, for every
    block) and the second (attention over the cache, output projection, MLP), so the SRAMs hold
    one block's tensors whatever the sequence length; with ``keep_x`` every block's residual
    rows stay in an accumulator buffer of the whole job's instead, and with ``keep_q`` (and
    ``keep_x``) every block's quantized queries in the SRAMs too. Every operation is row-wise (attention by
    query row), so the result is the same bit for bit.
    """

    def __init__(self, compiler: Compiler, tokens: int, start: int, double_buffer: bool = False,
                 block: int | None = None, resident: bool = True, keep_x: bool = False, keep_q: bool = False):
        self.c = compiler
        self.cfg = compiler.ckpt.config
        self.t, self.p0 = tokens, start
        self.block = block or tokens
        self.blocks = [(b0, min(self.block, tokens - b0)) for b0 in range(0, tokens, self.block)]
        self.resident = resident and len(self.blocks) == 1
        self.rows = tokens  # rows of the block being emitted
        # the attention scores' constant 1 / (127^2 sqrt(D) 2^FRAC), which the cache's key scales carry
        c_m, c_e = nx.scale_from_float(1.0 / (nx.QMAX * nx.QMAX * math.sqrt(self.cfg.head_dim) * (1 << nx.FRAC)))
        self.score_scale = pack_scale(int(c_m), int(c_e))
        config = compiler.config
        self.double_buffer = double_buffer
        spad_ring = config.spad_bytes // 2 if double_buffer else 0
        self.spad = _Region("scratchpad", config.spad_bytes - spad_ring, "bytes")
        self.spad_ring = _Ring("scratchpad", config.spad_bytes - spad_ring, spad_ring, "bytes")
        # The accumulator's banks (``acc_banks``) are equal slices of its address range. Its tile
        # ring (a quarter) is two rings of an eighth, at the bottom and at the top (with eight
        # banks, two banks of their own), which the tiles take in turn: the matrix engine writes
        # one tile's accumulators while the vector unit requantizes the last tile's from the other
        # bank and writes the layer's output to a third (in one bank they take turns for its
        # ports). Buffers start on a row (``lanes`` words): a matrix result row written at an
        # unaligned address spans two rows, two read-modify-write cycles instead of one.
        lanes, words = config.lanes, config.acc_words
        ring = _round_up(words // 8, lanes) if double_buffer else 0
        self.acc = _Region("accumulator SRAM", words - ring, "words", align=lanes, start=ring)
        self.acc_rings = (_Ring("accumulator", 0, ring, "words", align=lanes),
                          _Ring("accumulator", words - ring, ring, "words", align=lanes))
        self.turn = 0   # the ring the next tile takes
        self.program: list[tuple[Opcode, dict]] = []
        self.sections: list[str] = []
        self.layers: list[int] = []
        self.section, self.layer = "embed", -1
        self.x = self.queries = self.freqs = None   # resident tensors (ACC addresses)
        self.layer_mark = (0, 0)
        self.preloaded: dict[int, list] = {}   # layer -> decode attention's buffers (_decode_cache)
        self.new_kv: dict[int, tuple[int, int, int]] = {}   # layer -> its new (keys, values, position)
        # every block's residual rows, kept in the accumulator between the blocks: a block's
        # store and the next one's load went one after the other on the DMA, and the next block's
        # norm waited for both (about 2 400 cycles a layer of the 64-token prompt on 8x8)
        self.keep_x = keep_x and not self.resident
        self.x_all = (self.acc.alloc(tokens * self.cfg.hidden_size, "residual stream (every block)")
                      if self.keep_x else None)
        # and with ``keep_q`` every block's quantized queries between a layer's passes (head h's
        # row r at q_all + (h * tokens + r) * row8(D), its scale at q_scales + h * tokens + r),
        # instead of a STORE of each head's rows and scales and two LOADs in each attention pass
        self.keep_q = keep_q and self.keep_x
        heads = self.cfg.num_heads
        self.q_all = (self.spad.alloc(heads * tokens * self.row8(self.cfg.head_dim), "queries (every block)")
                      if self.keep_q else None)
        self.q_scales = self.acc.alloc(heads * tokens, "query scales (every block)") if self.keep_q else None
        # rows whose largest |value| a V_REQUANT with ROW_SCALE wrote beside them, until either is
        # written again: (rows, cols, stride) at an address -> the words (:meth:`quant` reads them)
        self.row_max: dict[int, tuple[tuple[int, int, int], int]] = {}

    def op(self, opcode: Opcode, **fields) -> None:
        if opcode in (Opcode.LOAD, Opcode.STORE):
            fields = _one_run(fields)
        encode(opcode, **fields)  # fields that do not fit fail here, where the caller is known
        if self.row_max:
            _, writes = footprint(opcode, fields)
            for addr, ((rows, cols, stride), maxes) in list(self.row_max.items()):
                if overlap(writes, [Access(ACC, addr, rows, cols, stride), Access(ACC, maxes, 1, rows, rows)]):
                    del self.row_max[addr]
        self.program.append((opcode, fields))
        self.sections.append(self.section)
        self.layers.append(self.layer)

    def emit(self) -> bytes:
        if self.c.arch == "llama":
            self._llama()
        else:
            self._bert()
        self.op(Opcode.END)
        candidates = [(self.program, self.layers, self.sections)]
        if self.c.list_schedule:
            from compiler.perfmodel import duration

            program, layers, sections = [], [], []
            for (opcode, fields), layer, section in zip(self.program, self.layers, self.sections, strict=True):
                pieces = halves_worth_it(opcode, fields, self.c.config)
                program += pieces
                layers += [layer] * len(pieces)
                sections += [section] * len(pieces)
            durations = [duration(op, fields, self.c.config) if QUEUE_OF[op] != "control" else 0
                         for op, fields in program]
            # each layer on its own, then the whole job as one: a layer's first blocks may then
            # start while the layer before finishes its last (the residual stream's rows are
            # independent until attention), and the head's while the last layer finishes; and the
            # whole job with short instructions ahead of long chains first (``short_first``: the
            # 64-token prompt 2.7 % faster on 8x8 by the model, 3.0 % on 16x16; the 16- and
            # 100-token prompts not by LIST_MARGIN, so it is a candidate; each layer on its own
            # so, never the best of those six jobs, is not)
            before = conflicts(program)
            for runs, short_first in ((layers, False), ([0] * len(layers), False), ([0] * len(layers), True)):
                order = list_schedule(program, durations, runs, short_first=short_first, before=before)
                candidates.append(tuple([column[k] for k in order] for column in (program, layers, sections)))
        best = None
        for program, layers, sections in candidates:
            if self.c.hoist_loads:
                order = hoist_loads(program, parts=list(zip(layers, sections, strict=True)))
                program, layers, sections = ([column[k] for k in order] for column in (program, layers, sections))
            synchronised = (in_program_order(program) if self.c.synchronisation == "program_order"
                            else synchronise(program, self.c.config))
            cycles = self._predicted(synchronised) if len(candidates) > 1 else 0
            # the list order only where the model's gain is beyond its own error on a job (about
            # 2 %): MiniLM's sentence, predicted 0.03 % faster so, ran 1.7 % slower
            if best is None or cycles < (1 - LIST_MARGIN) * best[0]:
                best = (cycles, program, layers, sections, synchronised)
        _, self.program, self.layers, self.sections, self.synchronised = best
        words = fold(self.synchronised) if self.c.loops else self.synchronised
        return b"".join(encode(opcode, **fields) for opcode, fields in words)

    # ------------------------------------------------------------------ building blocks

    def _predicted(self, program: list[tuple[Opcode, dict]]) -> int:
        """The performance model's cycles for a synchronised ``program`` on this chip."""
        from compiler.perfmodel import predict

        return predict(program, self.c.config)[1]

    def marks(self) -> tuple[int, int]:
        return self.spad.mark(), self.acc.mark()

    def release(self, marks: tuple[int, int]) -> None:
        self.spad.release(marks[0])
        self.acc.release(marks[1])

    def acc_ring(self) -> _Ring:
        """The accumulator ring the next tile takes (they alternate between the banks)."""
        self.turn ^= 1
        return self.acc_rings[self.turn ^ 1]

    def load_acc(self, dram: int, words: int, what: str, ring: bool = False, high: bool = False) -> int:
        addr = (self.acc_ring().alloc(words, what) if ring and self.double_buffer
                else self.acc.alloc(words, what, high=high))
        self.op(Opcode.LOAD, flags=Flag.DST_ACC, addr0=dram, addr1=addr, rows=1, cols=words,
                stride0=0, stride1=0)
        return addr

    def load_x(self, b0: int, what: str) -> int:
        """The residual stream's rows of the block at ``b0`` from DRAM -> wide [rows, H]."""
        h = self.cfg.hidden_size
        x = self.acc.alloc(self.rows * h, what)
        self.op(Opcode.LOAD, flags=Flag.DST_ACC, addr0=self.c.x_addr + 4 * b0 * h, addr1=x, rows=self.rows, cols=h,
                stride0=h, stride1=h)
        return x

    def store_x(self, x: int, b0: int) -> None:
        h = self.cfg.hidden_size
        if self.keep_x:   # the block's rows are already where they stay (:meth:`x_block`)
            assert x == self.x_block(b0)
            return
        self.op(Opcode.STORE, flags=Flag.DST_ACC, addr0=x, stride0=h, addr1=self.c.x_addr + 4 * b0 * h,
                stride1=h, rows=self.rows, cols=h)

    def gather(self, table: tuple[int, int, int], ids_offset: int, what: str, high: bool = False,
               dst: int | None = None) -> int:
        """Embedding rows for the ids at ``ids_offset`` (in words) of the input buffer -> wide [rows, H]."""
        t, h = self.rows, self.cfg.hidden_size
        table_addr, scales_addr, rows = table
        ids = self.load_acc(self.c.ids_addr + 4 * ids_offset, t, f"{what} ids")
        rows_sp = self.spad.alloc(t * h, f"{what} rows")
        scales = self.acc.alloc(t, f"{what} scales")
        self.op(Opcode.GATHER, addr0=table_addr, addr1=rows_sp, addr2=ids, rows=t, cols=h, stride0=h,
                stride1=h, imm=rows)
        self.op(Opcode.GATHER, flags=Flag.DST_ACC, addr0=scales_addr, addr1=scales, addr2=ids, rows=t, cols=1,
                stride0=1, stride1=1, imm=rows)
        out = dst if dst is not None else self.acc.alloc(t * h, what, high=high)
        self.op(Opcode.V_DEQUANT, addr0=rows_sp, stride0=h, addr1=out, stride1=h, addr2=scales, rows=t, cols=h)
        return out

    def norm(self, x: int, norm: _Norm, kind: Opcode, what: str, dst: int | None = None) -> int:
        t, h = self.rows, norm.h
        params = self.load_acc(norm.params, 2 * h, f"{what} parameters")
        out = dst if dst is not None else self.acc.alloc(t * h, what)
        config = self.c.config
        if kind is Opcode.V_RMSNORM and config.wide_requant and config.unit_lanes < config.lanes and t > 1:
            # a vector unit narrower than a beat takes the norm's last pass in pieces: it gives the
            # rows' scales instead (two passes), and the wide requantizer applies them with gamma,
            # a beat a cycle (golden.ops.rms_scale). Not for one row (a decode's): there the
            # V_REQUANT's first row, which reads gamma and beta a chunk each per beat, costs more
            # than the pass it saves (tiny-llama decode on 8x8: 93 + 35 cycles against 123).
            # Every norm's rows are quantized next: when :meth:`quant` takes them in two
            # instructions, the V_REQUANT also writes each row's largest |result| (ROW_SCALE), from
            # which the first takes the rows' scales without another pass over them.
            scales = self.acc.alloc(t, f"{what} row scales")
            self.op(kind, flags=Flag.ROW_SCALE, addr0=x, stride0=h, addr1=scales, stride1=1, rows=t, cols=h,
                    imm=norm.eps_q)
            if quant_split_saving(t, h, config) >= QUANT_SPLIT_PIECES:
                maxes = self.acc.alloc(t, f"{what} largest results")
                self.op(Opcode.V_REQUANT, flags=Flag.HAS_BIAS | Flag.ROW_SCALE, addr0=x, stride0=h, addr1=out,
                        stride1=h, addr2=scales, addr3=params, rows=t, cols=h, imm=maxes)
                self.row_max[out] = ((t, h, h), maxes)
            else:
                self.op(Opcode.V_REQUANT, flags=Flag.HAS_BIAS, addr0=x, stride0=h, addr1=out, stride1=h,
                        addr2=scales, addr3=params, rows=t, cols=h)
            return out
        self.op(kind, flags=Flag.HAS_BIAS, addr0=x, stride0=h, addr1=out, stride1=h, addr2=params,
                addr3=norm.inv_h, rows=t, cols=h, imm=norm.eps_q)
        return out

    def row8(self, cols: int) -> int:
        """The scratchpad row stride of ``cols`` int8 values: whole bus words, so that the matrix
        engine reads each row in one access (a row straddling two scratchpad rows takes two)."""
        return _round_up(cols, self.c.config.bus_bytes)

    def quantize(self, x: int, rows: int, cols: int, stride: int, what: str, high: bool = False,
                 into: tuple[int, int] | None = None) -> tuple[int, int]:
        """``rows`` int8 rows of ``cols`` values in the scratchpad, :meth:`row8` apart, and their
        scales in the accumulator (at ``into``, or in new buffers)."""
        if into is not None:
            q, scales = into
        else:
            q = self.spad.alloc(rows * self.row8(cols), f"{what} (int8)")
            scales = self.acc.alloc(rows, f"{what} scales", high=high)
        self.quant(x, stride, q, self.row8(cols), scales, rows, cols, what)
        return q, scales

    def quant(self, x: int, stride: int, q: int, q_stride: int, scales: int, rows: int, cols: int,
              what: str) -> None:
        """``V_QUANT`` of ``rows`` x ``cols`` wide values at ``x`` into int8 rows at ``q`` and their
        scales at ``scales``. A vector unit narrower than a beat takes V_QUANT's second pass in
        pieces; with the wide requantizer the rows go in two instructions instead: ``V_QUANT``
        with ``ROW_SCALE`` (its one max-abs pass a beat a cycle) gives each row's requantization
        scale, and ``V_REQUANT8`` applies them a beat a cycle (golden.ops.quant_scales), when that
        saves at least :data:`QUANT_SPLIT_PIECES` cycles of pieces."""
        config = self.c.config
        if config.wide_requant and quant_split_saving(rows, cols, config) >= QUANT_SPLIT_PIECES:
            by = self.acc.alloc(rows, f"{what} requantization scales")
            # the rows' largest |value|, where the V_REQUANT that wrote them left them, give the
            # same scales (golden.ops.quant_scales takes nothing else) from a word a row
            found = self.row_max.get(x)
            if found is not None and found[0] == (rows, cols, stride):
                self.op(Opcode.V_QUANT, flags=Flag.ROW_SCALE, addr0=found[1], stride0=1, addr1=by, stride1=1,
                        addr2=scales, rows=rows, cols=1)
            else:
                self.op(Opcode.V_QUANT, flags=Flag.ROW_SCALE, addr0=x, stride0=stride, addr1=by, stride1=1,
                        addr2=scales, rows=rows, cols=cols)
            self.op(Opcode.V_REQUANT8, addr0=x, stride0=stride, addr1=q, stride1=q_stride, addr2=by, rows=rows,
                    cols=cols)
            return
        self.op(Opcode.V_QUANT, addr0=x, stride0=stride, addr1=q, stride1=q_stride, addr2=scales, rows=rows,
                cols=cols)

    def linear(self, *args, **kwargs) -> int:
        """:meth:`linear_tiles` emitted whole: its output buffer."""
        return self.side_by_side(self.linear_tiles(*args, **kwargs))[0]

    def side_by_side(self, *linears) -> list[int]:
        """Emit :meth:`linear_tiles` generators a tile of each in turn; their output buffers. Each
        gives the regions back as it found them between its tiles, so they share the free space."""
        outs: list[int | None] = [None] * len(linears)
        live = list(enumerate(linears))
        while live:
            for entry in list(live):
                try:
                    next(entry[1])
                except StopIteration as stop:
                    outs[entry[0]] = stop.value
                    live.remove(entry)
        return outs

    def linear_tiles(self, xq: int, xs: int, lin: _Linear, what: str, dst: int | None = None, high: bool = False,
                     stride: int | None = None, each_tile=None, ring: int | None = None):
        """``requant(xq @ W) + bias`` into a wide [rows, N] buffer (rows ``stride`` words apart, N
        by default), tiled over N to fit the scratchpad; ``high``: the buffer from the top of the
        accumulator (the other bank than the operand it is added to or multiplied with);
        ``each_tile(n0, nc)`` emits what follows each tile's requantization (its columns
        ``n0 .. n0 + nc`` of the buffer are then final). A generator: it yields after each tile
        and returns the buffer (:meth:`linear` runs it whole, :meth:`side_by_side` several in
        turn). With double buffering the tiles' accumulators take the two accumulator rings in
        turn, or with ``ring`` that one alone (linears side by side each take their own)."""
        t, k, n = self.rows, lin.k, lin.n
        stride = stride or n
        out = dst if dst is not None else self.acc.alloc(t * stride, what, high=high)
        mark = self.marks()
        columns = self.c.config.columns
        bus = self.c.config.bus_bytes
        kc = k   # rows of K a weight tile holds
        if self.double_buffer:  # weight_tiles tiles in the scratchpad ring, one in each accumulator ring
            budget = self.spad_ring.size // self.c.weight_tiles
            # a tile too long for its share of the ring (MiniLM's down projection, K = 1536, on
            # the 8x8 chip) is cut along K into pieces that fit, whole array tiles and scratchpad
            # rows each: the pieces' MATMULs accumulate, so loads still run ahead of the matrix
            # engine instead of the job falling back to one buffer and loading between matmuls
            step = math.lcm(self.c.config.rows, bus)
            longest = budget // _round_up(columns, bus) // step * step
            if k * _round_up(columns, bus) > budget and longest:
                kc = _round_up(-(-k // -(-k // longest)), step)   # pieces of about equal length
            chunk = min(n, budget // max(kc, 1) // columns * columns,
                        self.acc_rings[0].size // (t + 2) // columns * columns)
        else:  # a tile's weights must fit the free scratchpad, its accumulators the free accumulator
            budget = self.spad.free()
            chunk = min(n, (budget // max(k, 1)) // columns * columns,
                        self.acc.free() // (t + 2) // columns * columns)
        if chunk < 1:
            raise FitError(f"{what}: a {k} x {columns} weight tile does not fit the {budget} free bytes of "
                           f"scratchpad")
        chunk = _fit_rows(chunk, kc, budget, columns, bus)   # a tile's rows are whole bus words in the scratchpad too
        spad_tile = self.spad_ring.alloc if self.double_buffer else self.spad.alloc
        lanes = self.c.config.lanes
        # When every tile is a whole panel (a decode's are), every tile's scales and bias come in
        # one LOAD (one DMA row) before the first: one descriptor's fixed cost instead of one per
        # tile, on the DMA a decode waits on. Panel p's [scales | bias] lands 2 p0 words on. They
        # go into the ring the first tile takes, as its scales would: space the vector unit
        # finished with long ago, so that this LOAD, and the weight loads behind it in the load
        # queue, need not wait for it (from the bump allocator it waited on the last layer's
        # requantization, and the decode took 10 % longer)
        layer_scales = None
        first = self.acc_rings[self.turn if ring is None else ring]
        # the scales, and after them every tile this ring takes (the even ones, or all with
        # ``ring``), without a wrap that would put a tile's accumulators over the scales while
        # later tiles still read them
        tiles = -(-n // chunk)
        scales_words = _round_up(2 * n, lanes)
        room = (tiles if ring is not None else -(-tiles // 2)) * t * _round_up(chunk, lanes)
        if self.double_buffer and chunk == lin.panel and n > chunk and scales_words + room <= first.size // 2:
            layer_scales = first.alloc(scales_words, f"{what} scales", room=room)
            self.op(Opcode.LOAD, flags=Flag.DST_ACC, addr0=lin.panel_scales, addr1=layer_scales, rows=1, cols=2 * n)
        tile_mark = self.marks()
        for n0 in range(0, n, chunk):
            nc = min(chunk, n - n0)
            ws = _round_up(nc, bus)
            acc_tile = ((self.acc_ring() if ring is None else self.acc_rings[ring]).alloc if self.double_buffer
                        else self.acc.alloc)
            ncs = _round_up(nc, lanes)
            for k0 in range(0, k, kc):
                kk = min(kc, k - k0)
                w = spad_tile(kk * ws, f"{what} weights")
                # one LOAD per panel the tile touches; a tile that is a whole panel is one DMA row
                p0 = n0
                while p0 < n0 + nc:
                    end = min(n0 + nc, (p0 // lin.panel + 1) * lin.panel)
                    addr, pstride = lin.at(p0)
                    whole = p0 % lin.panel == 0 and end - p0 == min(lin.panel, n - p0) and pstride == ws
                    self.op(Opcode.LOAD, addr0=addr + k0 * pstride, addr1=w + p0 - n0, rows=kk,
                            cols=ws if whole else end - p0, stride0=pstride, stride1=ws)
                    p0 = end
                if k0 == 0:
                    # the tile's column scales and bias, then its accumulators (rows start on a
                    # row), in one piece of the ring (two could wrap apart and overlap)
                    if layer_scales is not None:
                        cs = layer_scales + 2 * n0
                        tmp = acc_tile(t * ncs, f"{what} accumulators")
                    else:
                        cs = acc_tile(_round_up(2 * nc, lanes) + t * ncs, f"{what} scales and accumulators")
                        tmp = cs + _round_up(2 * nc, lanes)
                        self.op(Opcode.LOAD, flags=Flag.DST_ACC, addr0=lin.scales + 4 * n0, addr1=cs, rows=2,
                                cols=nc, stride0=n, stride1=nc)
                self.op(Opcode.MATMUL, flags=Flag.ACCUMULATE if k0 else 0, addr0=xq + k0, stride0=self.row8(k),
                        addr1=w, stride1=ws, addr2=tmp, addr3=ncs, rows=t, cols=nc, imm=kk)
            self.op(Opcode.V_REQUANT, flags=Flag.HAS_BIAS, addr0=tmp, stride0=ncs, addr1=out + n0, stride1=stride,
                    addr2=xs, addr3=cs, rows=t, cols=nc)
            if each_tile is not None:
                each_tile(n0, nc)
            self.release(tile_mark)
            yield
        self.release(mark)
        return out

    def store_kv(self, layer: int, k: int, v: int, b0: int) -> None:
        """Quantize the block's new keys and values and write them to the KV cache (positions
        ``p0 + b0 ..``)."""
        d, t, pos = self.cfg.head_dim, self.rows, self.p0 + b0
        kv_heads = self.c.kv_heads
        if t == 1 and self.resident and self._decode_cache(layer, k, v, pos):
            return
        mark = self.marks()
        # one token: every group's row at once (one V_QUANT, one STORE of the rows and one of the
        # scales, each a row per group, a slot apart), where the slot distance fits a stride
        first, second = self.c.kv_slot(layer, 0, 0), self.c.kv_slot(layer, min(1, kv_heads - 1), 0)
        apart, scales_apart = second[0] - first[0], second[1] - first[1]
        if t == 1 and kv_heads > 1 and scales_apart < 1 << 18:
            for which, src in ((0, k), (1, v)):
                rows_addr, scales_addr = self.c.kv_slot(layer, 0, which)
                # group g's row is at src + g * d
                qz, sc = self.quantize(src, kv_heads, d, d, f"layer {layer} new keys/values")
                if which == 0:
                    self.op(Opcode.V_SCALE_MUL, addr0=sc, addr1=sc, addr3=self.score_scale, rows=kv_heads)
                self.op(Opcode.STORE, addr0=qz, stride0=self.row8(d), addr1=rows_addr + pos * self.c.kv_row,
                        stride1=apart, rows=kv_heads, cols=d)
                # accumulator transfers count DRAM strides in words too
                self.op(Opcode.STORE, flags=Flag.DST_ACC, addr0=sc, stride0=1, addr1=scales_addr + 4 * pos,
                        stride1=scales_apart // 4, rows=kv_heads, cols=1)
                if which == 1 or not self.double_buffer:
                    self.release(mark)
            return
        # the block's rows as the cache lays them out (every group's key then value a row, where
        # that fits half the free scratchpad, else a group at a time): one STORE of the rows and
        # one of the scales, instead of one each per group and key or value
        width, apart = self.c.kv_row, (self.c.kv_slot(layer, 0, 1)[1] - self.c.kv_slot(layer, 0, 0)[1]) // 4
        together = kv_heads if t * width <= self.spad.free() // 2 else 1
        for g0 in range(0, kv_heads, together):
            cols, slots = 2 * d * together, 2 * together
            rows = self.spad.alloc(t * cols, f"layer {layer} new keys and values (int8)")
            scales = self.acc.alloc(slots * t, f"layer {layer} new keys' and values' scales")
            for g in range(g0, g0 + together):
                for which, src in ((0, k), (1, v)):
                    slot = 2 * (g - g0) + which
                    self.quant(src + g * d, kv_heads * d, rows + slot * d, cols, scales + slot * t, t, d,
                               f"layer {layer} new keys/values")
                    if which == 0:
                        # a key's scale is only ever used times the scores' constant: the cache keeps
                        # the product, worked out once per key here instead of once per key per query
                        # block in attention (golden's scale_mul per key, the same values)
                        self.op(Opcode.V_SCALE_MUL, addr0=scales + slot * t, addr1=scales + slot * t,
                                addr3=self.score_scale, rows=t)
            rows_addr, scales_addr = self.c.kv_slot(layer, g0, 0)
            self.op(Opcode.STORE, addr0=rows, stride0=cols, addr1=rows_addr + pos * width, stride1=width, rows=t,
                    cols=cols)
            self.op(Opcode.STORE, flags=Flag.DST_ACC, addr0=scales, stride0=t, addr1=scales_addr + 4 * pos,
                    stride1=apart, rows=slots, cols=t)
            self.release(mark)

    def query_slot(self, head: int) -> tuple[int, int]:
        """DRAM addresses of (int8 rows [max_tokens, D], scales [max_tokens]) of one head's queries."""
        d = self.cfg.head_dim
        base = self.c.q_addr + head * self.c.max_tokens * (d + 4)
        return base, base + self.c.max_tokens * d

    def store_queries(self, q: int, b0: int) -> None:
        """Quantize the block's queries per head and write them to DRAM (between a layer's parts),
        or with ``keep_q`` into their buffer of the whole job's (:meth:`kept_queries`)."""
        cfg, t, d = self.cfg, self.rows, self.cfg.head_dim
        mark = self.marks()
        for h in range(cfg.num_heads):
            if self.keep_q:
                self.quantize(q + h * d, t, d, cfg.num_heads * d, "queries", into=self.kept_queries(h, b0))
                continue
            qq, qs = self.quantize(q + h * d, t, d, cfg.num_heads * d, "queries")
            rows_addr, scales_addr = self.query_slot(h)
            self.op(Opcode.STORE, addr0=qq, stride0=self.row8(d), addr1=rows_addr + b0 * d, stride1=d, rows=t, cols=d)
            self.op(Opcode.STORE, flags=Flag.DST_ACC, addr0=qs, addr1=scales_addr + 4 * b0, rows=1, cols=t)
            self.release(mark)

    def kept_queries(self, h: int, b0: int) -> tuple[int, int]:
        """With ``keep_q``: where head ``h``'s int8 queries of the block's rows and their scales stay."""
        return self.q_all + (h * self.t + b0) * self.row8(self.cfg.head_dim), self.q_scales + h * self.t + b0

    def attention(self, layer: int, q: int | None, b0: int, causal: bool) -> int:
        """Attention of the block's queries (rows ``b0 ..`` of the job) over the cache, whose
        keys and values for these positions are already stored. ``q``: the block's wide queries
        in ACC, or None for the quantized ones :meth:`store_queries` left (loaded from DRAM, or
        read where ``keep_q`` keeps them)."""
        cfg, t = self.cfg, self.rows
        d, heads, kv_heads = cfg.head_dim, cfg.num_heads, self.c.kv_heads
        p0 = self.p0 + b0   # position of the block's first query
        s = p0 + t if causal else self.p0 + self.t   # keys it may see
        out = self.acc.alloc(t * heads * d, f"layer {layer} attention output")
        mark = self.marks()
        group = heads // kv_heads
        if t == 1 and q is not None and kv_heads > 1 and self._every_group_at_once(layer, q, out, s, p0, causal):
            self.release(mark)
            return out
        if layer in self.new_kv:   # left by _decode_cache, but attention takes the groups one at a time
            for which in (0, 1):
                self._quantize_new(layer, which)
            self._store_new(layer)
            del self.new_kv[layer], self.preloaded[layer]
        # One query row (decode): a group's heads share the keys and values and need no causal
        # offset of their own, so their rows go through the attention instructions together (every
        # one of them is row-wise). Otherwise one head at a time.
        together = group if t == 1 and q is not None else 1
        rows = t * together
        q_stride = heads * d if together == 1 else d   # head h's row r is at q + h*d + r*heads*d
        # score rows start on accumulator rows, so each matrix result row is one write
        ss = _round_up(s, self.c.config.lanes)
        slots = [self._attention_slot(layer, rows, s, ss, n) for n in range(2 if self.double_buffer else 1)]
        groups: dict[int, tuple[int, int, int, int]] = {}
        passes = [(g, h) for g in range(kv_heads) for h in range(g * group, (g + 1) * group, together)]

        def queries(n: int) -> None:
            """Pass ``n``'s int8 queries and their scales into its slot (its group's keys and
            values loaded first, if not yet)."""
            g, h = passes[n]
            if g not in groups:
                groups[g] = self._attention_group(layer, g, s)
            slot = slots[n % len(slots)]
            if q is not None:
                self.quant(q + h * d, q_stride, slot.qq, self.row8(d), slot.qs, rows, d, "queries")
            elif not self.keep_q:
                rows_addr, scales_addr = self.query_slot(h)
                self.op(Opcode.LOAD, addr0=rows_addr + b0 * d, addr1=slot.qq, rows=t, cols=d, stride0=d,
                        stride1=self.row8(d))
                self.op(Opcode.LOAD, flags=Flag.DST_ACC, addr0=scales_addr + 4 * b0, addr1=slot.qs, rows=1, cols=t,
                        stride0=0, stride1=0)

        def query_buffers(n: int) -> tuple[int, int]:
            """Pass ``n``'s int8 queries and their scales."""
            if q is None and self.keep_q:
                return self.kept_queries(passes[n][1], b0)
            slot = slots[n % len(slots)]
            return slot.qq, slot.qs

        def scores(n: int) -> None:
            slot = slots[n % len(slots)]
            kb, _, _, _, kv_stride = groups[passes[n][0]]
            self.op(Opcode.MATMUL, flags=Flag.B_TRANSPOSED, addr0=query_buffers(n)[0], stride0=self.row8(d),
                    addr1=kb, stride1=kv_stride, addr2=slot.scores, addr3=ss, rows=rows, cols=s, imm=d)

        # With two slots, the passes form a pipeline: pass n + 2's queries are quantized once pass
        # n's scores are requantized (its query scales read), and its scores computed once pass n's
        # probabilities are quantized (its scores read), so the matrix engine computes the next
        # scores while the vector unit works on this pass, and the vector unit finds the next
        # pass's scores ready (in one pass after the other, pass n + 1's scores waited in the
        # matrix queue behind pass n's P@V, which waits for its probabilities, and its queries in
        # the vector queue behind pass n's output).
        ahead = len(slots)
        for n in range(min(ahead, len(passes))):
            queries(n)
            scores(n)
        for n in range(len(passes)):
            g, h = passes[n]
            _, vb, kc, vs, kv_stride = groups[g]
            slot = slots[n % len(slots)]
            self.op(Opcode.V_REQUANT, addr0=slot.scores, stride0=ss, addr1=slot.scores, stride1=ss,
                    addr2=query_buffers(n)[1], addr3=kc, rows=rows, cols=s)
            if ahead > 1 and n + ahead < len(passes):
                queries(n + ahead)
            # the exponentials leave with V's per-key scales folded in (FOLD_V: V_FOLD_V's result,
            # on the softmax's output stage instead of another pass over the scores)
            self.op(Opcode.V_SOFTMAX_EXP, flags=Flag.FOLD_V | (Flag.CAUSAL if causal else 0), addr0=slot.scores,
                    stride0=ss, addr1=slot.scores, stride1=ss, addr2=slot.totals, addr3=vs, rows=rows, cols=s, imm=p0)
            self.quant(slot.scores, ss, slot.pq, self.row8(s), slot.ps, rows, s, "probabilities")
            self.op(Opcode.V_ATTN_SCALE, addr0=slot.totals, addr1=slot.os, addr2=slot.ps, addr3=_PROBABILITY_SCALE,
                    rows=rows, cols=s, imm=vs)
            self.op(Opcode.MATMUL, addr0=slot.pq, stride0=self.row8(s), addr1=vb, stride1=kv_stride, addr2=slot.pv,
                    addr3=d, rows=rows, cols=d, imm=s)
            if n + ahead < len(passes):
                if ahead == 1:
                    queries(n + ahead)
                scores(n + ahead)
            self.op(Opcode.V_REQUANT, flags=Flag.NO_COL_SCALE, addr0=slot.pv, stride0=d, addr1=out + h * d,
                    stride1=q_stride, addr2=slot.os, rows=rows, cols=d)
        self.release(mark)
        return out

    def _attention_group(self, layer: int, g: int, s: int) -> tuple[int, int, int, int, int]:
        """KV group ``g``'s keys and values (the cache's first ``s`` positions, in the scratchpad
        ring, a position's key and value one row) and their scales (in the accumulator ring),
        loaded, a transfer each: (keys, values, key scales, value scales, row stride)."""
        k_rows, k_scales = self.c.kv_slot(layer, g, 0)
        v_scales = self.c.kv_slot(layer, g, 1)[1]
        d = self.cfg.head_dim
        spad_tile = self.spad_ring.alloc if self.double_buffer else self.spad.alloc
        kb = spad_tile(s * 2 * d, f"layer {layer} keys and values")
        self.op(Opcode.LOAD, addr0=k_rows, addr1=kb, rows=s, cols=2 * d, stride0=self.c.kv_row, stride1=2 * d)
        apart = _round_up(s, self.c.config.lanes)
        acc_tile = self.acc_ring().alloc if self.double_buffer else self.acc.alloc
        kc = acc_tile(2 * apart, f"layer {layer} key and value scales")   # keys' x the constant
        self.op(Opcode.LOAD, flags=Flag.DST_ACC, addr0=k_scales, addr1=kc, rows=2, cols=s,
                stride0=(v_scales - k_scales) // 4, stride1=apart)
        return kb, kb + d, kc, kc + apart, 2 * d

    def _attention_slot(self, layer: int, rows: int, s: int, ss: int, n: int) -> _Slot:
        """The buffers of one attention pass over ``rows`` query rows and ``s`` keys (score rows
        ``ss`` apart); passes take turns in two slots with double buffering. Slot ``n``'s scores,
        softmax sums, probability and output scales are on one side of the accumulator (the low
        stack for slot 0, the high for slot 1, so the next pass's matmuls write other banks than
        this pass's vector instructions use) and its query scales and P@V accumulators on the other:
        V_REQUANT reads a row scale per row beside the score rows (in the scores' bank, they took
        2.2 cycles a beat instead of 1.3 on 16x16), and V_ATTN_SCALE reads and writes its row
        scales while the P@V matmul writes (in one bank, 15-22 cycles a row instead of 8)."""
        d, what = self.cfg.head_dim, f"layer {layer}"
        side = self.double_buffer and n == 1
        other = self.double_buffer and not side
        small = (self.acc_rings[0] if self.double_buffer else self.acc).alloc
        return _Slot(qq=self.spad.alloc(rows * self.row8(d), f"{what} queries (int8)"),
                     qs=small(rows, f"{what} query scales"),
                     scores=self.acc.alloc(rows * ss, f"{what} scores", high=side),
                     totals=small(rows, f"{what} softmax sums"),
                     pq=self.spad.alloc(rows * self.row8(s), f"{what} probabilities (int8)"),
                     ps=small(rows, f"{what} probabilities scales"),
                     os=small(rows, f"{what} output scales"),
                     pv=self.acc.alloc(rows * d, f"{what} P@V accumulators", high=other))

    def _every_group_fits(self, s: int) -> bool:
        """Whether decode attention over ``s`` keys can take every KV group at once
        (:meth:`_every_group_at_once`): double buffering, every group's keys, values and their
        scales in the tile rings together (no ring wraps onto a group still in use), and every
        head's buffers in the SRAMs."""
        cfg, c = self.cfg, self.c
        d, heads, kv_heads, lanes = cfg.head_dim, cfg.num_heads, c.kv_heads, c.config.lanes
        if not self.double_buffer:
            return False
        ring = self.acc_rings[0]
        ss = _round_up(s, lanes)
        # every allocation of attention, each with its alignment's worth of slack
        acc_words = sum(_round_up(n, lanes) + lanes for n in (heads, heads * ss, heads, heads, heads, heads * d))
        spad_bytes = heads * (self.row8(d) + self.row8(s))
        return (s * self.c.kv_row + self.spad_ring.align <= self.spad_ring.size
                and 2 * kv_heads * _round_up(s, ring.align) + ring.align <= ring.size
                and acc_words <= self.acc.free() and spad_bytes <= self.spad.free())

    def _group_buffers(self, layer: int, s: int, cached: int) -> list[tuple[int, int, int, int, int]]:
        """Every KV group's (keys, values, key scales, value scales, row stride) buffers for ``s``
        keys, in the tile rings, laid out as the cache is (:meth:`Compiler.kv_slot`), with the
        cache's first ``cached`` positions loaded into them: one transfer of the rows and one of
        the scales."""
        d, kv_heads, width = self.cfg.head_dim, self.c.kv_heads, self.c.kv_row
        ring = self.acc_ring()
        rows = self.spad_ring.alloc(s * width, f"layer {layer} keys and values")
        apart = _round_up(s, ring.align)   # between the slots' scales (key then value, group by group)
        scales = ring.alloc(2 * kv_heads * apart, f"layer {layer} key and value scales")
        if cached:
            first, second = self.c.kv_slot(layer, 0, 0), self.c.kv_slot(layer, 0, 1)
            self.op(Opcode.LOAD, addr0=first[0], addr1=rows, rows=cached, cols=width, stride0=width, stride1=width)
            self.op(Opcode.LOAD, flags=Flag.DST_ACC, addr0=first[1], addr1=scales, rows=2 * kv_heads, cols=cached,
                    stride0=(second[1] - first[1]) // 4, stride1=apart)
        return [(rows + 2 * g * d, rows + (2 * g + 1) * d, scales + 2 * g * apart, scales + (2 * g + 1) * apart, width)
                for g in range(kv_heads)]

    def _decode_cache(self, layer: int, k: int, v: int, pos: int) -> bool:
        """One token whose attention follows in this job (:meth:`_every_group_at_once`): load
        the cache's earlier positions into attention's buffers at once (they wait for nothing,
        so the loads run during the Q/K/V projections), and leave the new keys and values for
        attention to quantize straight into the buffers' last row (:meth:`_quantize_new`) and
        store from there (:meth:`_store_new`), instead of storing them and loading the whole
        cache after the stores. False, having emitted nothing, where attention will not take
        every group at once."""
        kv_heads, s = self.c.kv_heads, pos + 1
        if kv_heads == 1 or not self._every_group_fits(s):
            return False
        groups = self._group_buffers(layer, s, pos)
        self.preloaded[layer] = groups
        self.new_kv[layer] = (k, v, pos)
        return True

    def _quantize_new(self, layer: int, which: int, scale_mul: bool = True) -> None:
        """The new token's keys (``which`` 0) or values (1) of every group, left by
        :meth:`_decode_cache`, quantized into the last row of attention's buffers (and a key's
        scale times the scores' constant, unless ``scale_mul`` is False: then
        :meth:`_scale_new_key` does it later)."""
        k, v, pos = self.new_kv[layer]
        d, src = self.cfg.head_dim, (k, v)[which]
        for g, buffers in enumerate(self.preloaded[layer]):
            self.op(Opcode.V_QUANT, addr0=src + g * d, stride0=d, addr1=buffers[which] + pos * buffers[4],
                    stride1=self.row8(d), addr2=buffers[2 + which] + pos, rows=1, cols=d)
            if which == 0 and scale_mul:
                self._scale_new_key(layer, g)

    def _scale_new_key(self, layer: int, g: int) -> None:
        pos = self.new_kv[layer][2]
        scale = self.preloaded[layer][g][2] + pos
        self.op(Opcode.V_SCALE_MUL, addr0=scale, addr1=scale, addr3=self.score_scale, rows=1)

    def _store_new(self, layer: int) -> None:
        """Write the new token's quantized keys and values and their scales
        (:meth:`_quantize_new`) to the cache: its row of every group's, and the scales of every
        slot, a transfer each (the buffers are laid out as the cache is)."""
        pos = self.new_kv[layer][2]
        kb, _, kc, vs, width = self.preloaded[layer][0]
        first, second = self.c.kv_slot(layer, 0, 0), self.c.kv_slot(layer, 0, 1)
        self.op(Opcode.STORE, addr0=kb + pos * width, addr1=first[0] + pos * width, rows=1, cols=width)
        self.op(Opcode.STORE, flags=Flag.DST_ACC, addr0=kc + pos, stride0=vs - kc, addr1=first[1] + 4 * pos,
                stride1=(second[1] - first[1]) // 4, rows=2 * self.c.kv_heads, cols=1)

    def _every_group_at_once(self, layer: int, q: int, out: int, s: int, p0: int, causal: bool) -> bool:
        """Decode attention (one query row per head) of every KV group at once: each group's keys
        and values are loaded first, and the instructions without a per-group operand (the
        queries' and the probabilities' V_QUANT, V_SOFTMAX_EXP) run once over every head's row
        instead of once per group, each paying the vector pipeline's latency once. The matrix
        engine works on the next group while the vector unit requantizes the last one's scores
        or outputs. Row-wise, so the results are those of one group at a time bit for bit.
        Needs double buffering, every group's keys, values and their scales in the tile rings at
        once (no ring wraps onto a group still in use) and every head's buffers in the SRAMs;
        returns False, having emitted nothing, where they do not fit."""
        cfg, c = self.cfg, self.c
        d, heads, kv_heads = cfg.head_dim, cfg.num_heads, c.kv_heads
        group = heads // kv_heads
        lanes = c.config.lanes
        ss = _round_up(s, lanes)
        if not self._every_group_fits(s):
            return False
        # every group's keys, values and scales: loaded with the new token's (_decode_cache), or here
        if layer not in self.preloaded:
            self.preloaded[layer] = self._group_buffers(layer, s, s)
        groups = self.preloaded[layer]
        new = layer in self.new_kv
        if new:
            self._quantize_new(layer, 0, scale_mul=False)
        # head h's query row is at q + h * d; row h of every buffer below is head h's
        qq, qs = self.quantize(q, heads, d, d, f"layer {layer} queries")
        if new:
            # the new keys and the queries first (the scores wait for both), then the values and
            # the keys' scale products (the scalar path, which nothing overlaps) while the cache
            # loads, and the new position's STOREs right after: behind them in the load queue
            # waits the out-projection's weight LOAD
            self._quantize_new(layer, 1)
            for g in range(kv_heads):
                self._scale_new_key(layer, g)
            self._store_new(layer)
        scores = self.acc.alloc(heads * ss, f"layer {layer} scores")
        rows = [g * group for g in range(kv_heads)]   # each group's first row
        for (kb, _, _, _, width), r in zip(groups, rows, strict=True):
            self.op(Opcode.MATMUL, flags=Flag.B_TRANSPOSED, addr0=qq + r * self.row8(d), stride0=self.row8(d),
                    addr1=kb, stride1=width, addr2=scores + r * ss, addr3=ss, rows=group, cols=s, imm=d)
        for (_, _, kc, _, _), r in zip(groups, rows, strict=True):
            self.op(Opcode.V_REQUANT, addr0=scores + r * ss, stride0=ss, addr1=scores + r * ss, stride1=ss,
                    addr2=qs + r, addr3=kc, rows=group, cols=s)
        totals = self.acc.alloc(heads, f"layer {layer} softmax sums")
        # the causal limit of row i is p0 + i >= s - 1: every key of the cache, for every head
        self.op(Opcode.V_SOFTMAX_EXP, flags=Flag.CAUSAL if causal else 0, addr0=scores, stride0=ss, addr1=scores,
                stride1=ss, addr2=totals, rows=heads, cols=s, imm=p0)
        for (_, _, _, vs, _), r in zip(groups, rows, strict=True):
            self.op(Opcode.V_FOLD_V, addr0=scores + r * ss, stride0=ss, addr1=scores + r * ss, stride1=ss,
                    addr2=vs, rows=group, cols=s)
        pq, ps = self.quantize(scores, heads, s, ss, f"layer {layer} probabilities")
        os_ = self.acc.alloc(heads, f"layer {layer} output scales")
        for (_, _, _, vs, _), r in zip(groups, rows, strict=True):
            self.op(Opcode.V_ATTN_SCALE, addr0=totals + r, addr1=os_ + r, addr2=ps + r,
                    addr3=_PROBABILITY_SCALE, rows=group, cols=s, imm=vs)
        pv = self.acc.alloc(heads * d, f"layer {layer} P@V accumulators", high=True)
        for (_, vb, _, _, width), r in zip(groups, rows, strict=True):
            self.op(Opcode.MATMUL, addr0=pq + r * self.row8(s), stride0=self.row8(s), addr1=vb, stride1=width,
                    addr2=pv + r * d, addr3=d, rows=group, cols=d, imm=s)
        for r in rows:
            self.op(Opcode.V_REQUANT, flags=Flag.NO_COL_SCALE, addr0=pv + r * d, stride0=d, addr1=out + r * d,
                    stride1=d, addr2=os_ + r, rows=group, cols=d)
        del self.preloaded[layer]
        self.new_kv.pop(layer, None)
        return True

    def binary(self, opcode: Opcode, a: int, b: int, cols: int, dst: int | None = None, what: str = "",
               stride: int | None = None) -> int:
        stride = stride or cols
        out = dst if dst is not None else self.acc.alloc(self.rows * stride, what)
        self.op(opcode, addr0=a, stride0=stride, addr1=out, stride1=stride, addr2=b, imm=stride, rows=self.rows,
                cols=cols)
        return out

    def unary(self, opcode: Opcode, a: int, cols: int, stride: int | None = None) -> int:
        stride = stride or cols
        self.op(opcode, addr0=a, stride0=stride, addr1=a, stride1=stride, rows=self.rows, cols=cols)
        return a

    def wide(self, cols: int) -> int:
        """The accumulator row stride of an intermediate [rows, cols] buffer: whole accumulator
        rows, so that every row of it starts on one (a row that does not is two SRAM accesses per
        beat for the vector unit)."""
        return _round_up(cols, self.c.config.lanes)

    def x_block(self, b0: int) -> int | None:
        """Where the block's residual rows stay with ``keep_x``; else None."""
        return self.x_all + b0 * self.cfg.hidden_size if self.keep_x else None

    def residual(self, x: int | None, b0: int) -> int:
        """The block's residual stream: resident in ACC (``x``, or every block's with
        ``keep_x``), or loaded from DRAM."""
        if self.resident:
            return x
        return self.x_block(b0) if self.keep_x else self.load_x(b0, "residual stream")

    def blockwise(self, part):
        """Run ``part(b0)`` for every block, its temporaries freed after each block (they live
        on when there is only one block)."""
        for b0, rows in self.blocks:
            self.rows = rows
            mark = self.marks()
            part(b0)
            if not self.resident:
                self.release(mark)

    # ------------------------------------------------------------------ architectures

    def emit_layers(self, embed, projections, rest, head) -> None:
        """The model: ``embed`` per block, then per layer ``projections(i, params, b0)`` for
        every block and ``rest(i, params, b0)`` for every block, then ``head`` per block."""
        self.blockwise(embed)
        for i, lp in enumerate(self.c.layers):
            self.layer = i
            self.layer_mark = self.marks()
            self.blockwise(partial(projections, i, lp))
            self.blockwise(partial(rest, i, lp))
            self.release(self.layer_mark)
        self.layer = -1
        self.blockwise(head)

    def keys_values_queries(self, layer: int, q: int, k: int, v: int, b0: int) -> None:
        """The end of a layer's first pass: the block's keys and values to the KV cache, and its
        queries kept resident or written to DRAM for the second pass."""
        self.section = "attention"
        self.store_kv(layer, k, v, b0)
        if self.resident:
            self.queries = q
        else:
            self.store_queries(q, b0)

    def _llama(self) -> None:
        self.freqs = self.load_acc(self.c.freqs, self.cfg.head_dim // 2, "RoPE frequencies")
        self.emit_layers(self._llama_embed, self._llama_projections, self._llama_rest, self._llama_head)

    def _llama_embed(self, b0: int) -> None:
        self.x = self.gather(self.c.embed, b0, "embeddings", dst=self.x_block(b0))
        if not self.resident:
            self.store_x(self.x, b0)

    def _llama_projections(self, i: int, lp: dict, b0: int) -> None:
        h, d = self.cfg.hidden_size, self.cfg.head_dim
        xb = self.residual(self.x, b0)
        self.section = "norm"
        hn = self.norm(xb, lp["attn_norm"], Opcode.V_RMSNORM, f"layer {i} attention norm")
        self.section = "qkv"
        xq, xs = self.quantize(hn, self.rows, h, h, f"layer {i} attention input")
        q = self.linear(xq, xs, lp["q"], f"layer {i} q_proj")
        k = self.linear(xq, xs, lp["k"], f"layer {i} k_proj")
        v = self.linear(xq, xs, lp["v"], f"layer {i} v_proj")
        for buf, lin in ((q, lp["q"]), (k, lp["k"])):
            self.op(Opcode.V_ROPE, addr0=buf, stride0=lin.n, addr1=buf, stride1=lin.n, addr2=self.freqs, addr3=d,
                    rows=self.rows, cols=lin.n, imm=self.p0 + b0)
        self.keys_values_queries(i, q, k, v, b0)

    def _llama_rest(self, i: int, lp: dict, b0: int) -> None:
        cfg = self.cfg
        h, d = cfg.hidden_size, cfg.head_dim
        xb = self.residual(self.x, b0)
        attention_mark = self.layer_mark if self.resident else self.marks()
        self.section = "attention"
        a = self.attention(i, self.queries if self.resident else None, b0, causal=True)
        self.section = "out_proj"
        aq, as_ = self.quantize(a, self.rows, cfg.num_heads * d, cfg.num_heads * d, f"layer {i} attention output")
        o = self.linear(aq, as_, lp["o"], f"layer {i} o_proj", high=True)
        self.binary(Opcode.V_ADD, xb, o, h, dst=xb)
        # the queries, keys, values and attention buffers are dead once o is in x: the MLP
        # reuses their space, which halves the layer's peak
        self.release(attention_mark)
        self.section = "norm"
        hn = self.norm(xb, lp["mlp_norm"], Opcode.V_RMSNORM, f"layer {i} MLP norm")
        self.section = "mlp"
        mq, ms = self.quantize(hn, self.rows, h, h, f"layer {i} MLP input")
        f, fw = lp["up"].n, self.wide(lp["up"].n)
        gate = self.acc.alloc(self.rows * fw, f"layer {i} gate_proj")
        up = self.acc.alloc(self.rows * fw, f"layer {i} up_proj", high=True)
        # gate's and up's tiles in turn, each gate tile's SiLU and each up tile's product with it
        # as soon as the tile is requantized: the narrow unit's two passes over the row (a piece
        # of 2 lanes a cycle on the FPGA chip) run beside the next tiles' matmuls instead of
        # after the last (tiny-llama's 64-token prompt on the 8x8 chip, RTL: 205 244 -> 199 156
        # cycles)
        silu_done = [0]

        def silu(n0: int, nc: int) -> None:
            self.unary(Opcode.V_SILU, gate + n0, nc, fw)
            silu_done[0] = n0 + nc

        def times_up(n0: int, nc: int) -> None:
            assert silu_done[0] >= n0 + nc, "gate and up tile alike"
            self.binary(Opcode.V_MUL, gate + n0, up + n0, nc, dst=gate + n0, stride=fw)

        # each in a ring of its own (a tile's neighbours in the matrix queue are the other's)
        self.side_by_side(
            self.linear_tiles(mq, ms, lp["gate"], f"layer {i} gate_proj", dst=gate, stride=fw, each_tile=silu,
                              ring=self.turn),
            self.linear_tiles(mq, ms, lp["up"], f"layer {i} up_proj", dst=up, stride=fw, each_tile=times_up,
                              ring=1 - self.turn))
        gq, gs = self.quantize(gate, self.rows, f, fw, f"layer {i} down_proj input")
        down = self.linear(gq, gs, lp["down"], f"layer {i} down_proj", high=True)
        self.binary(Opcode.V_ADD, xb, down, h, dst=xb)
        if not self.resident:
            self.store_x(xb, b0)

    def _llama_head(self, b0: int) -> None:
        c, h = self.c, self.cfg.hidden_size
        xb = self.residual(self.x, b0)
        self.section = "norm"
        hn = self.norm(xb, c.final_norm, Opcode.V_RMSNORM, "final norm")
        self.section = "head"
        self.op(Opcode.STORE, flags=Flag.DST_ACC, addr0=hn, stride0=h, addr1=c.hidden_addr + 4 * b0 * h,
                stride1=h, rows=self.rows, cols=h)
        hq, hs = self.quantize(hn, self.rows, h, h, "LM head input")
        n = c.lm_head.n
        logits = self.acc.alloc(self.rows * n, "logits")

        def store(n0: int, nc: int) -> None:
            self.op(Opcode.STORE, flags=Flag.DST_ACC, addr0=logits + n0, stride0=n,
                    addr1=c.logits_addr + 4 * (b0 * n + n0), stride1=n, rows=self.rows, cols=nc)

        # a prompt's logits leave a tile at a time, behind the next tiles' matmuls (at the end
        # they took the DMA alone: 64 KiB, 8 500 cycles, per 32-token block on the 8x8 chip); a
        # decode's in one STORE, on the DMA it waits on, one descriptor instead of one a tile
        tiles = self.rows > 1
        self.linear(hq, hs, c.lm_head, "LM head", dst=logits, each_tile=store if tiles else None)
        if not tiles:
            store(0, n)

    def _bert(self) -> None:
        self.emit_layers(self._bert_embed, self._bert_projections, self._bert_rest, self._bert_head)

    def _bert_embed(self, b0: int) -> None:
        c, t, h = self.c, self.t, self.cfg.hidden_size
        # only the LayerNorm's output lives on: the gathered rows are temporaries
        out = self.x_block(b0)
        if out is None:
            out = self.acc.alloc(self.rows * h, "embedding LayerNorm")
        mark = self.marks()
        x = self.gather(c.word, b0, "word embeddings")
        types = self.gather(c.token_type, t + b0, "token-type embeddings", high=True)
        self.binary(Opcode.V_ADD, x, types, h, dst=x)
        pos = self.gather(c.position, 2 * t + b0, "position embeddings", high=True)
        self.binary(Opcode.V_ADD, x, pos, h, dst=x)
        self.section = "norm"
        self.x = self.norm(x, c.emb_norm, Opcode.V_LAYERNORM, "embedding LayerNorm", dst=out)
        self.release(mark)
        self.section = "embed"
        if not self.resident:
            self.store_x(self.x, b0)

    def _bert_projections(self, i: int, lp: dict, b0: int) -> None:
        h = self.cfg.hidden_size
        xb = self.residual(self.x, b0)
        self.section = "qkv"
        xq, xs = self.quantize(xb, self.rows, h, h, f"layer {i} input")
        q = self.linear(xq, xs, lp["q"], f"layer {i} query")
        k = self.linear(xq, xs, lp["k"], f"layer {i} key")
        v = self.linear(xq, xs, lp["v"], f"layer {i} value")
        self.keys_values_queries(i, q, k, v, b0)

    def _bert_rest(self, i: int, lp: dict, b0: int) -> None:
        # x is dead once added to a sublayer's output, so each LayerNorm writes back into it
        h = self.cfg.hidden_size
        xb = self.residual(self.x, b0)
        attention_mark = self.layer_mark if self.resident else self.marks()
        self.section = "attention"
        a = self.attention(i, self.queries if self.resident else None, b0, causal=False)
        self.section = "out_proj"
        aq, as_ = self.quantize(a, self.rows, h, h, f"layer {i} attention output")
        o = self.linear(aq, as_, lp["o"], f"layer {i} attention dense", high=True)
        self.binary(Opcode.V_ADD, xb, o, h, dst=o)
        self.section = "norm"
        self.norm(o, lp["ln1"], Opcode.V_LAYERNORM, f"layer {i} attention LayerNorm", dst=xb)
        # the attention's buffers are dead once its LayerNorm is in x: the MLP reuses their space
        self.release(attention_mark)
        self.section = "mlp"
        yq, ys = self.quantize(xb, self.rows, h, h, f"layer {i} intermediate input")
        f, fw = lp["in"].n, self.wide(lp["in"].n)
        # each tile's GELU as soon as the tile is requantized, beside the next tiles' matmuls
        inter = self.acc.alloc(self.rows * fw, f"layer {i} intermediate")
        self.linear(yq, ys, lp["in"], f"layer {i} intermediate", dst=inter, stride=fw,
                    each_tile=lambda n0, nc: self.unary(Opcode.V_GELU, inter + n0, nc, fw))
        iq, is_ = self.quantize(inter, self.rows, f, fw, f"layer {i} output input")
        out = self.linear(iq, is_, lp["out"], f"layer {i} output dense", high=True)
        self.binary(Opcode.V_ADD, xb, out, h, dst=out)
        self.section = "norm"
        self.norm(out, lp["ln2"], Opcode.V_LAYERNORM, f"layer {i} output LayerNorm", dst=xb)
        if not self.resident:
            self.store_x(xb, b0)

    def _bert_head(self, b0: int) -> None:
        h = self.cfg.hidden_size
        xb = self.residual(self.x, b0)
        self.section = "head"
        self.op(Opcode.STORE, flags=Flag.DST_ACC, addr0=xb, stride0=h, addr1=self.c.hidden_addr + 4 * b0 * h,
                stride1=h, rows=self.rows, cols=h)
