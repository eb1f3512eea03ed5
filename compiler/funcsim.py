"""Functional simulator of the Scoville instruction set: the executable definition of each opcode.

It runs a program in program order on a DRAM image, a scratchpad and an accumulator SRAM, each
vector opcode by the :mod:`golden.ops` function it names. The RTL core must produce the same DRAM
contents; the compiler is checked by comparing this simulator's outputs with the ``golden``
backend bit for bit. Addresses outside a memory, undefined opcodes and malformed operands raise
:class:`ExecutionError` naming the instruction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from golden import ops
from scoville.config import ChipConfig
from scoville.isa import INSTRUCTION_BYTES, Fetcher, Flag

__all__ = ["Machine", "ExecutionError", "run_program", "fetch_word"]


class ExecutionError(RuntimeError):
    """The program did something the chip stops on (the RTL reports an error code)."""


def _scales(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = words.astype(np.int64) & 0xFFFFFFFF
    m = w & 0xFFFF
    e = (w >> 16) & 0xFFFF
    return np.where(m >= 1 << 15, m - (1 << 16), m), np.where(e >= 1 << 15, e - (1 << 16), e)


def _pack_scales(m: np.ndarray, e: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    if np.any(np.abs(m) >= 1 << 15) or np.any(e < -(1 << 15)) or np.any(e >= 1 << 15):
        raise ExecutionError("scale out of the 16-bit range")
    return ((m & 0xFFFF) | ((e & 0xFFFF) << 16)).astype(np.uint32).view(np.int32)


@dataclass
class Machine:
    """The architectural state: DRAM bytes, scratchpad bytes, accumulator words, semaphores."""

    config: ChipConfig
    dram: np.ndarray
    spad: np.ndarray = field(init=False)
    acc: np.ndarray = field(init=False)
    executed: int = 0
    counts: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spad = np.zeros(self.config.spad_bytes, dtype=np.int8)
        self.acc = np.zeros(self.config.acc_words, dtype=np.int32)

    # ------------------------------------------------------------------ memory access

    @staticmethod
    def _index(addr: int, rows: int, cols: int, stride: int, size: int, what: str) -> np.ndarray:
        if rows == 0 or cols == 0:
            return np.zeros((rows, cols), dtype=np.int64)
        last = addr + (rows - 1) * stride + cols - 1
        if addr < 0 or last >= size:
            raise ExecutionError(f"{what} access [{addr}, {last}] outside [0, {size})")
        return addr + np.arange(rows, dtype=np.int64)[:, None] * stride + np.arange(cols, dtype=np.int64)[None, :]

    def spad_read(self, addr, rows, cols, stride) -> np.ndarray:
        return self.spad[self._index(addr, rows, cols, stride, self.spad.size, "SPAD")]

    def spad_write(self, addr, stride, values: np.ndarray) -> None:
        rows, cols = values.shape
        self.spad[self._index(addr, rows, cols, stride, self.spad.size, "SPAD")] = values.astype(np.int8)

    def acc_read(self, addr, rows, cols, stride) -> np.ndarray:
        return self.acc[self._index(addr, rows, cols, stride, self.acc.size, "ACC")].astype(np.int64)

    def acc_write(self, addr, stride, values: np.ndarray) -> None:
        values = np.asarray(values)
        if values.ndim == 1:
            values = values[None, :]
        rows, cols = values.shape
        v = np.asarray(values, dtype=np.int64)
        if np.any(v < -(1 << 31)) or np.any(v >= 1 << 32):
            raise ExecutionError("value does not fit an ACC word")
        self.acc[self._index(addr, rows, cols, stride, self.acc.size, "ACC")] = (v & 0xFFFFFFFF).astype(
            np.uint32).view(np.int32)

    def dram_index(self, addr, rows, cols, stride) -> np.ndarray:
        return self._index(addr, rows, cols, stride, self.dram.size, "DRAM")

    # ------------------------------------------------------------------ execution

    def step(self, ins: dict) -> bool:
        """Execute one decoded instruction; False once the program ends."""
        op = ins["opcode"]
        self.executed += 1
        self.counts[op.name] = self.counts.get(op.name, 0) + 1
        handler = getattr(self, f"_op_{op.name.lower()}", None)
        if handler is None:
            raise ExecutionError(f"opcode {op.name} is not implemented")
        return handler(ins) is not False

    def _op_nop(self, ins) -> None:
        pass

    def _op_end(self, ins) -> bool:
        return False

    def _op_loop(self, ins) -> None:
        raise ExecutionError("LOOP reached the machine (run_program expands loops)")

    def _op_load(self, ins) -> None:
        rows, cols, to_acc = ins["rows"], ins["cols"], ins["flags"] & Flag.DST_ACC
        width = 4 if to_acc else 1
        src = self.dram_index(ins["addr0"], rows, cols * width, ins["stride0"] * width if to_acc else ins["stride0"])
        raw = self.dram[src]
        if to_acc:
            words = raw.reshape(rows, cols, 4).copy().view(np.int32)[..., 0]
            self.acc[self._index(ins["addr1"], rows, cols, ins["stride1"], self.acc.size, "ACC")] = words
        else:
            self.spad_write(ins["addr1"], ins["stride1"], raw.view(np.int8))

    def _op_gather(self, ins) -> None:
        rows, cols, to_acc = ins["rows"], ins["cols"], ins["flags"] & Flag.DST_ACC
        ids = self.acc_read(ins["addr2"], 1, rows, rows)[0]
        width = 4 if to_acc else 1
        for r, row_id in enumerate(ids):
            if row_id < 0 or row_id >= ins["imm"]:
                raise ExecutionError(f"GATHER id {row_id} outside the table of {ins['imm']} rows")
            src = self.dram_index(ins["addr0"] + int(row_id) * ins["stride0"] * width, 1, cols * width, 0)
            raw = self.dram[src]
            if to_acc:
                self.acc[self._index(ins["addr1"] + r * ins["stride1"], 1, cols, 0, self.acc.size, "ACC")] = \
                    raw.reshape(1, cols, 4).copy().view(np.int32)[..., 0]
            else:
                self.spad_write(ins["addr1"] + r * ins["stride1"], 0, raw.view(np.int8))

    def _op_store(self, ins) -> None:
        rows, cols, from_acc = ins["rows"], ins["cols"], ins["flags"] & Flag.DST_ACC
        if from_acc:
            words = self.acc[self._index(ins["addr0"], rows, cols, ins["stride0"], self.acc.size, "ACC")]
            raw = words.astype(np.int32).view(np.uint8).reshape(rows, cols * 4)
            dst = self.dram_index(ins["addr1"], rows, cols * 4, ins["stride1"] * 4)
        else:
            raw = self.spad_read(ins["addr0"], rows, cols, ins["stride0"]).view(np.uint8)
            dst = self.dram_index(ins["addr1"], rows, cols, ins["stride1"])
        self.dram[dst] = raw

    def _op_matmul(self, ins) -> None:
        m, n, k = ins["rows"], ins["cols"], ins["imm"]
        a = self.spad_read(ins["addr0"], m, k, ins["stride0"])
        if ins["flags"] & Flag.B_TRANSPOSED:
            b = self.spad_read(ins["addr1"], n, k, ins["stride1"]).T
        else:
            b = self.spad_read(ins["addr1"], k, n, ins["stride1"])
        result = ops.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b)).astype(np.int64)
        c_stride = ins["addr3"]
        if ins["flags"] & Flag.ACCUMULATE:  # wraps at int32, like the accumulator SRAM
            result = (result + self.acc_read(ins["addr2"], m, n, c_stride)).astype(np.int32).astype(np.int64)
        self.acc_write(ins["addr2"], c_stride, result)

    # vector: src addr0 (stride0), dst addr1 (stride1), aux addr2, addr3; rows x cols

    def _src(self, ins) -> np.ndarray:
        return self.acc_read(ins["addr0"], ins["rows"], ins["cols"], ins["stride0"])

    def _op_v_quant(self, ins) -> None:
        if ins["flags"] & Flag.ROW_SCALE:   # the scales only; a V_REQUANT8 by the first quantizes
            recip, shift, m, e = ops.quant_scales(self._src(ins))
            self.acc_write(ins["addr1"], ins["stride1"], _pack_scales(recip, shift).astype(np.int64)[:, None])
        else:
            q, m, e = ops.quantize_rows(self._src(ins))
            self.spad_write(ins["addr1"], ins["stride1"], q)
        self.acc_write(ins["addr2"], 1, _pack_scales(m, e).astype(np.int64))

    def _op_v_requant8(self, ins) -> None:
        rm, re = _scales(self.acc_read(ins["addr2"], 1, ins["rows"], ins["rows"])[0])
        q = ops.requantize(self._src(ins), rm[:, None], re[:, None], out_bits=8)
        self.spad_write(ins["addr1"], ins["stride1"], q.astype(np.int8))

    def _op_v_requant(self, ins) -> None:
        rows, cols = ins["rows"], ins["cols"]
        acc = self._src(ins)
        rm, re = _scales(self.acc_read(ins["addr2"], 1, rows, rows)[0])
        if ins["flags"] & Flag.NO_COL_SCALE:
            m, e = rm[:, None], re[:, None]
        else:
            cm, ce = _scales(self.acc_read(ins["addr3"], 1, cols, cols)[0])
            m, e = ops.scale_mul(rm[:, None], re[:, None], cm[None, :], ce[None, :])
        bias = self.acc_read(ins["addr3"] + cols, 1, cols, cols)[0] if ins["flags"] & Flag.HAS_BIAS else 0
        result = ops.requantize(acc, m, e, bias)
        self.acc_write(ins["addr1"], ins["stride1"], result)
        if ins["flags"] & Flag.ROW_SCALE and result.size:   # each row's largest |result| (2**31 as -2**31)
            self.acc_write(ins["imm"], 1, np.max(np.abs(result), axis=-1))

    def _op_v_dequant(self, ins) -> None:
        rows, cols = ins["rows"], ins["cols"]
        q = self.spad_read(ins["addr0"], rows, cols, ins["stride0"]).astype(np.int64)
        m, e = _scales(self.acc_read(ins["addr2"], 1, rows, rows)[0])
        self.acc_write(ins["addr1"], ins["stride1"], ops.requantize(q, m[:, None], e[:, None]))

    def _op_v_add(self, ins) -> None:
        other = self.acc_read(ins["addr2"], ins["rows"], ins["cols"], ins["imm"])
        self.acc_write(ins["addr1"], ins["stride1"], ops.add(self._src(ins), other))

    def _op_v_mul(self, ins) -> None:
        other = self.acc_read(ins["addr2"], ins["rows"], ins["cols"], ins["imm"])
        self.acc_write(ins["addr1"], ins["stride1"], ops.mul(self._src(ins), other))

    def _op_v_gelu(self, ins) -> None:
        self.acc_write(ins["addr1"], ins["stride1"], ops.gelu(self._src(ins)))

    def _op_v_silu(self, ins) -> None:
        self.acc_write(ins["addr1"], ins["stride1"], ops.silu(self._src(ins)))

    def _norm_params(self, ins):
        cols = ins["cols"]
        gm, ge = _scales(self.acc_read(ins["addr2"], 1, cols, cols)[0])
        bias = self.acc_read(ins["addr2"] + cols, 1, cols, cols)[0] if ins["flags"] & Flag.HAS_BIAS else 0
        return gm, ge, bias

    def _op_v_rmsnorm(self, ins) -> None:
        if ins["flags"] & Flag.ROW_SCALE:   # the rows' scales only; a V_REQUANT applies them
            m, e = ops.rms_scale(self._src(ins), ins["imm"])
            self.acc_write(ins["addr1"], ins["stride1"], _pack_scales(m, e).astype(np.int64)[:, None])
            return
        gm, ge, bias = self._norm_params(ins)
        self.acc_write(ins["addr1"], ins["stride1"], ops.rmsnorm(self._src(ins), gm, ge, ins["imm"], bias))

    def _op_v_layernorm(self, ins) -> None:
        gm, ge, bias = self._norm_params(ins)
        inv_m, inv_e = _scales(np.array([ins["addr3"]]))
        y = ops.layernorm(self._src(ins), int(inv_m[0]), int(inv_e[0]), gm, ge, bias, ins["imm"])
        self.acc_write(ins["addr1"], ins["stride1"], y)

    def _op_v_rope(self, ins) -> None:
        rows, cols, head_dim = ins["rows"], ins["cols"], ins["addr3"]
        if head_dim == 0 or cols % head_dim or head_dim % 2:
            raise ExecutionError(f"V_ROPE: head_dim {head_dim} does not divide {cols} evenly into pairs")
        freqs = self.acc_read(ins["addr2"], 1, head_dim // 2, head_dim // 2)[0] & 0xFFFFFFFF
        x = self._src(ins).reshape(rows, cols // head_dim, head_dim)
        positions = ins["imm"] + np.arange(rows)
        self.acc_write(ins["addr1"], ins["stride1"], ops.rope(x, positions, freqs).reshape(rows, cols))

    def _op_v_softmax_exp(self, ins) -> None:
        rows, cols = ins["rows"], ins["cols"]
        allowed = None
        if ins["flags"] & Flag.CAUSAL:
            allowed = np.arange(cols)[None, :] <= (ins["imm"] + np.arange(rows))[:, None]
        e, total = ops.softmax_exp(self._src(ins), allowed)
        if ins["flags"] & Flag.FOLD_V:   # the row sums stay e's
            e = self._fold(e, ins["addr3"], cols)
        self.acc_write(ins["addr1"], ins["stride1"], e)
        self.acc_write(ins["addr2"], 1, total)

    def _fold(self, e: np.ndarray, scales: int, cols: int) -> np.ndarray:
        """``P'_j = round_shift(e_j * m_vj, sh_max - sh_vj)`` with the value scales at ``scales``."""
        vm, ve = _scales(self.acc_read(scales, 1, cols, cols)[0])
        return ops.round_shift(e * vm[None, :], (np.max(ve) - ve)[None, :])

    def _op_v_fold_v(self, ins) -> None:
        self.acc_write(ins["addr1"], ins["stride1"], self._fold(self._src(ins), ins["addr2"], ins["cols"]))

    def _op_v_attn_scale(self, ins) -> None:
        rows, cols = ins["rows"], ins["cols"]
        total = self.acc_read(ins["addr0"], 1, rows, rows)[0]
        pm, pe = _scales(self.acc_read(ins["addr2"], 1, rows, rows)[0])
        _, ve = _scales(self.acc_read(ins["imm"], 1, cols, cols)[0])
        cm, ce = _scales(np.array([ins["addr3"]]))
        rm, re = ops.reciprocal(total)
        rm, re = ops.scale_mul(rm, re, cm[0], ce[0])
        m, e = ops.scale_mul(pm, pe + np.max(ve), rm, re)
        self.acc_write(ins["addr1"], 1, _pack_scales(m, e).astype(np.int64))

    def _op_v_scale_mul(self, ins) -> None:
        rows = ins["rows"]
        sm, se = _scales(self.acc_read(ins["addr0"], 1, rows, rows)[0])
        cm, ce = _scales(np.array([ins["addr3"]]))
        m, e = ops.scale_mul(sm, se, cm[0], ce[0])
        self.acc_write(ins["addr1"], 1, _pack_scales(m, e).astype(np.int64))


def fetch_word(machine: Machine, pc: int) -> bytes:
    """The instruction word at ``pc`` (``ExecutionError`` past the end of DRAM)."""
    if pc + INSTRUCTION_BYTES > machine.dram.size:
        raise ExecutionError(f"instruction fetch at 0x{pc:x} outside DRAM")
    return machine.dram[pc:pc + INSTRUCTION_BYTES].tobytes()


def run_program(machine: Machine, program_addr: int, max_instructions: int = 10_000_000) -> Machine:
    """Fetch and execute instructions from DRAM at ``program_addr`` until ``END`` (loops expanded,
    :class:`scoville.isa.Fetcher`)."""
    fetcher = Fetcher(lambda pc: fetch_word(machine, pc), program_addr)
    for _ in range(max_instructions):
        try:
            ins = fetcher.next()
        except ValueError as exc:
            raise ExecutionError(f"at 0x{fetcher.pc:x}: {exc}") from None
        try:
            if not machine.step(ins):
                return machine
        except ExecutionError as exc:
            raise ExecutionError(f"at 0x{ins['pc']:x} ({ins['opcode'].name}): {exc}") from None
    raise ExecutionError(f"no END after {max_instructions} instructions")
