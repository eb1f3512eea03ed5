"""Vector-unit jobs for cocotb: the beats an operation needs and the beats golden says it returns.

A *job* is one instruction: ``rows`` rows of ``length`` wide values (``x``), per-column side
operands where the operation takes them, and instruction fields. :func:`input_beats` and
:func:`side_beats` lay it out as the unit's streams expect (each row once per pass, ``lanes``
elements per beat, the last beat of a row zero-padded); :func:`expected_beats` is what
``golden.ops`` computes, in the unit's output format. With ``trim``, each does so for a unit built
with ``trim_masked``: a softmax row's beats end at its last allowed key (``isa.row_ends``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from golden import ops
from rtl.vector.isa import ELEMENTWISE, NEEDS_SIDE, Op, OutWidth, passes, row_ends
from scoville import numerics as nx

OUT_BITS = {OutWidth.INT8: 8, OutWidth.INT16: 16, OutWidth.INT32: 32}


@dataclass
class Job:
    op: Op
    x: np.ndarray  # (rows, length) int64
    side_b: np.ndarray | None = None  # (rows, length)
    side_m: np.ndarray | None = None
    side_e: np.ndarray | None = None
    fields: dict = field(default_factory=dict)  # other Instruction fields

    @property
    def rows(self) -> int:
        return self.x.shape[0]

    @property
    def length(self) -> int:
        return self.x.shape[1]

    def instruction(self) -> dict:
        ins = {"op": self.op.value, "out_width": OutWidth.INT32.value, "causal": 0, "length": self.length,
               "rows": self.rows, "allowed": 0, "position": 0, "eps": 0, "inv_len_m": 0, "inv_len_e": 0, "fold": 0}
        ins.update(self.fields)
        return ins

    @property
    def takes_side(self) -> bool:
        """Whether the unit takes a side beat with each beat of its last pass."""
        return self.op in NEEDS_SIDE or (self.op == Op.SOFTMAX_EXP and bool(self.fields.get("fold")))

    def allowed_mask(self) -> np.ndarray:
        ins = self.instruction()
        first = ins["allowed"] or self.length
        limits = first + np.arange(self.rows) * ins["causal"]
        return np.arange(self.length)[None, :] < limits[:, None]

    def beats_a_row(self, lanes: int, trim: bool = False) -> list[int]:
        """The beats of each row (of each pass): up to ``isa.row_ends`` with ``trim``."""
        ins = self.instruction()
        ends = row_ends(self.op, self.length, self.rows, ins["allowed"], ins["causal"]) if trim \
            else [self.length] * self.rows
        return [-(-end // lanes) for end in ends]


def _chunks(row: np.ndarray, lanes: int, fill: tuple[int, ...] = (0,)) -> list[list[int]]:
    pad = (-len(row)) % lanes
    padded = np.concatenate([row, np.resize(np.array(fill, dtype=np.int64), pad)])
    return padded.reshape(-1, lanes).tolist()


def input_beats(job: Job, lanes: int, fill: tuple[int, ...] = (0,), trim: bool = False) -> list[list[int]]:
    """The operand beats of ``job``, its rows' last beats filled up with ``fill`` (repeated)."""
    beats = []
    for r, count in enumerate(job.beats_a_row(lanes, trim)):
        chunks = _chunks(job.x[r], lanes, fill)[:count]
        for _ in range(passes(job.op)):
            beats.extend(chunks)
    return beats


def side_beats(job: Job, lanes: int, trim: bool = False) -> list[list[dict]]:
    if not job.takes_side:
        return []
    zeros = np.zeros_like(job.x)
    b = job.side_b if job.side_b is not None else zeros
    mm = job.side_m if job.side_m is not None else zeros
    e = job.side_e if job.side_e is not None else zeros
    beats = []
    for r, count in enumerate(job.beats_a_row(lanes, trim)):
        columns = zip(_chunks(b[r], lanes), _chunks(mm[r], lanes), _chunks(e[r], lanes), strict=True)
        for cb, cm, ce in list(columns)[:count]:
            beats.append([{"b": vb, "m": vm, "e": ve} for vb, vm, ve in zip(cb, cm, ce, strict=True)])
    return beats


def golden_rows(job: Job, head_dim: int, rope_theta: float):
    """(data (rows, length) or None, value, m, e) per row, from golden.ops."""
    x, op, ins = job.x, job.op, job.instruction()
    rows = job.rows
    zero = np.zeros(rows, dtype=np.int64)
    data, value, m, e = None, zero, zero, zero
    if op == Op.REQUANT:
        data = ops.requantize(x, job.side_m, job.side_e, job.side_b, OUT_BITS[OutWidth(ins["out_width"])])
    elif op == Op.ADD:
        data = ops.add(x, job.side_b)
    elif op == Op.MUL:
        data = ops.mul(x, job.side_b)
    elif op == Op.GELU:
        data = ops.gelu(x)
    elif op == Op.SILU:
        data = ops.silu(x)
    elif op == Op.EXP:
        data = ops.exp_neg(x)
    elif op == Op.ROPE:
        freqs = nx.rope_frequencies(head_dim, rope_theta)
        data = ops.rope(x.reshape(1, rows, -1), np.array([ins["position"]]), freqs).reshape(rows, -1)
    elif op == Op.MAX:
        value = ops.row_max(x)
    elif op == Op.SUM:
        value = ops.row_sum(x)
    elif op == Op.MAX_ABS:
        value = ops.row_max_abs(x)
    elif op == Op.SUM_SQUARES:
        value, _ = ops.row_sum_squares(x)
        m, e = ops.rms_scale(x, ins["eps"])
    elif op == Op.QUANTIZE:
        data, m, e = ops.quantize_rows(x)
    elif op == Op.QUANT_SCALE:
        recip, shift, m, e = ops.quant_scales(x)
        value = recip | (shift & 0xFFFF) << 16
        value = np.where(value >= 1 << 31, value - (1 << 32), value)   # the packed word, signed
    elif op == Op.SOFTMAX:
        data = ops.softmax(x, job.allowed_mask())
    elif op == Op.SOFTMAX_EXP:
        data, value = ops.softmax_exp(x, job.allowed_mask())
        if ins["fold"]:   # the value scales' fold: e x m, rounded, e_side <= 0
            data = ops.requantize(data, job.side_m, job.side_e)
    elif op == Op.RMSNORM:
        data = ops.rmsnorm(x, job.side_m, job.side_e, ins["eps"], bias=job.side_b)
    elif op == Op.LAYERNORM:
        data = ops.layernorm(x, ins["inv_len_m"], ins["inv_len_e"], job.side_m, job.side_e, job.side_b, ins["eps"])
    else:
        raise ValueError(op)
    return data, np.asarray(value), np.asarray(m), np.asarray(e)


def expected_beats(job: Job, lanes: int, head_dim: int = 64, rope_theta: float = 10000.0,
                   trim: bool = False) -> list[dict]:
    data, value, m, e = golden_rows(job, head_dim, rope_theta)
    beats = []
    for r, count in enumerate(job.beats_a_row(lanes, trim)):
        if job.op in ELEMENTWISE:
            chunks = _chunks(np.asarray(data[r], dtype=np.int64), lanes)[:count]
            for n, chunk in enumerate(chunks):
                # SOFTMAX_EXP's row sum rides on the row's last beat
                row_value = int(value[r]) if n == len(chunks) - 1 else 0
                beats.append({"data": chunk, "value": row_value, "m": int(m[r]), "e": int(e[r])})
        else:
            beats.append({"data": [0] * lanes, "value": int(value[r]), "m": int(m[r]), "e": int(e[r])})
    return beats


# ---------------------------------------------------------------------------- stimuli


def wide(rng: np.random.Generator, shape, max_bits: int = 31) -> np.ndarray:
    """Random int32 values of every magnitude up to ``2**max_bits``."""
    x = rng.integers(-(1 << 31), 1 << 31, size=shape, dtype=np.int64)
    return x >> rng.integers(31 - max_bits, 31, size=shape)


def norm_side(rng: np.random.Generator, rows: int, length: int):
    """gamma * sqrt(H) as per-column scales and a bias (beta), as golden's model prepares them."""
    gamma = rng.uniform(-2.0, 2.0, size=length) * np.sqrt(length)
    gm, ge = nx.scale_from_float(gamma)
    beta = ops.to_wide(rng.uniform(-1.0, 1.0, size=length))
    tile = lambda a: np.tile(np.asarray(a, dtype=np.int64), (rows, 1))  # noqa: E731
    return tile(beta), tile(gm), tile(ge)


def norm_fields(length: int, eps: float = 1e-5) -> dict:
    m, e = nx.scale_from_float(1.0 / length)
    return {"eps": int(round(eps * length * 4 ** nx.FRAC)), "inv_len_m": int(m), "inv_len_e": int(e)}


def folded(job: Job, rng: np.random.Generator) -> Job:
    """A SOFTMAX_EXP ``job`` with V's per-key scales folded into its results (``fold``): per
    column a mantissa (now and then 0, an all-zero value row's) and the exponent below the
    largest, the same for every row."""
    m = np.where(rng.random(job.length) < 0.1, 0, rng.integers(1 << 14, 1 << 15, job.length))
    e = -rng.integers(0, 40, job.length)
    return Job(job.op, job.x, side_m=np.tile(m, (job.rows, 1)), side_e=np.tile(e, (job.rows, 1)),
               fields={**job.fields, "fold": 1})


def random_job(op: Op, rng: np.random.Generator, rows: int, length: int, head_dim: int = 64) -> Job:
    """A job with random operands suited to ``op`` (its golden contract's input ranges)."""
    shape = (rows, length)
    if op == Op.REQUANT:
        return Job(op, wide(rng, shape), side_b=wide(rng, shape),
                   side_m=rng.integers(-(1 << 15) + 1, 1 << 15, size=shape),
                   side_e=rng.integers(-70, 16, size=shape),
                   fields={"out_width": int(rng.integers(0, 3))})
    if op in (Op.ADD, Op.MUL):
        return Job(op, wide(rng, shape), side_b=wide(rng, shape))
    if op in (Op.GELU, Op.SILU):
        return Job(op, wide(rng, shape, max_bits=int(rng.integers(8, 32))))
    if op == Op.EXP:
        return Job(op, -np.abs(wide(rng, shape, max_bits=int(rng.integers(8, 32)))) .clip(-(1 << 31), 0))
    if op == Op.ROPE:
        x = wide(rng, (rows, head_dim), max_bits=int(rng.integers(8, 32)))
        partner = np.concatenate([x[:, head_dim // 2:], x[:, :head_dim // 2]], axis=1)
        return Job(op, x, side_b=partner, fields={"position": int(rng.integers(0, 1 << 16))})
    if op in (Op.MAX, Op.SUM, Op.MAX_ABS, Op.QUANTIZE, Op.QUANT_SCALE):
        return Job(op, wide(rng, shape, max_bits=int(rng.integers(1, 32))))
    if op == Op.SUM_SQUARES:   # with a norm's eps, whose row scale it also gives
        return Job(op, wide(rng, shape, max_bits=int(rng.integers(1, 32))), fields=norm_fields(length))
    if op in (Op.SOFTMAX, Op.SOFTMAX_EXP):
        x = wide(rng, shape, max_bits=int(rng.integers(4, 20)))
        fields = {}
        if rng.random() < 0.5:
            fields = {"allowed": int(rng.integers(1, length + 1)), "causal": int(rng.integers(0, 2))}
        if op == Op.SOFTMAX_EXP and rng.random() < 0.5:
            return folded(Job(op, x, fields=fields), rng)
        return Job(op, x, fields=fields)
    if op in (Op.RMSNORM, Op.LAYERNORM):
        x = wide(rng, shape, max_bits=int(rng.integers(4, 32)))
        b, gm, ge = norm_side(rng, rows, length)
        return Job(op, x, side_b=b, side_m=gm, side_e=ge, fields=norm_fields(length))
    raise ValueError(op)
