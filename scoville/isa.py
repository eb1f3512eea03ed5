"""The Scoville instruction set: formats shared by the RTL decoder and the compiler's encoder.

One instruction is a 256-bit word (:data:`Instruction`, a ``data.StructLayout``): an opcode, a
flag byte, dependency-token masks and generic operand fields whose meaning each opcode defines
(``docs/isa.md``). Instructions are tile-level: one ``MATMUL`` multiplies whole SRAM-resident
matrices (the matrix engine's sequencer tiles them for the array), one vector instruction
processes ``rows`` x ``cols`` elements.

Queues: ``LOAD``/``GATHER`` go to the load queue, ``STORE`` to the store queue, ``MATMUL`` to the
matrix queue, every ``V_*`` to the vector queue. Queues run concurrently; an instruction first
waits for every semaphore in its ``wait`` mask (each must be non-zero, then is decremented), and
after completing increments every semaphore in its ``signal`` mask.

Memory spaces: ``DRAM`` (bytes, 32-bit addresses), ``SPAD`` (scratchpad, int8, byte addresses)
and ``ACC`` (accumulator SRAM, int32 words, word addresses). A *scale* (``m``, ``e``) is stored
in one ACC word: ``m`` in the low 16 bits, ``e`` in the high 16 bits, both signed.
"""

from __future__ import annotations

from amaranth.hdl import Shape
from amaranth.lib import data, enum

from scoville.bits import pack, unpack

__all__ = ["Opcode", "Flag", "Instruction", "INSTRUCTION_BYTES", "encode", "decode",
           "pack_scale", "unpack_scale", "QUEUE_OF", "in_program_order", "LOOP_BODY_MAX", "loop", "loop_steps",
           "Fetcher"]

INSTRUCTION_BITS = 256
INSTRUCTION_BYTES = INSTRUCTION_BITS // 8
SEMAPHORES = 8


class Opcode(enum.Enum, shape=8):
    """What an instruction does (its unit is implied by the opcode)."""

    NOP = 0x00
    END = 0x01           # the program is finished once every queue has drained
    LOOP = 0x02          # repeat the next `flags` instructions `imm` times, stepping addresses
    # load queue
    LOAD = 0x10          # DRAM -> SPAD/ACC, 2D
    GATHER = 0x11        # DRAM rows picked by int32 ids in ACC -> SPAD/ACC
    # store queue
    STORE = 0x20         # SPAD/ACC -> DRAM, 2D
    # matrix queue
    MATMUL = 0x30        # SPAD int8 A[M,K] @ B[K,N] (or B^T) -> ACC int32 C[M,N]
    # vector queue (each is one function of golden.ops)
    V_QUANT = 0x40       # quantize_rows: ACC wide -> SPAD int8 + ACC row scales
    V_REQUANT = 0x41     # requantize(acc, row x col scales) + bias -> ACC wide
    V_DEQUANT = 0x42     # SPAD int8 rows x ACC row scales -> ACC wide (embedding rows)
    V_ADD = 0x43         # saturating add
    V_MUL = 0x44         # wide product
    V_GELU = 0x45
    V_SILU = 0x46
    V_RMSNORM = 0x47
    V_LAYERNORM = 0x48
    V_ROPE = 0x49
    V_SOFTMAX_EXP = 0x4A  # exp(s - rowmax) with causal mask, and row sums
    V_FOLD_V = 0x4B      # P'_j = e_j * m_vj >> (sh_max - sh_vj)
    V_ATTN_SCALE = 0x4C  # row scales of P@V: P scale x 2**sh_max x recip(total) x const
    V_SCALE_MUL = 0x4D   # scales x constant scale
    V_REQUANT8 = 0x4E    # requantize(acc, row scales) to int8: ACC wide -> SPAD int8 (after V_QUANT ROW_SCALE)


class Flag(enum.IntFlag):
    """Bits of the ``flags`` byte."""

    DST_ACC = 0x01       # LOAD/GATHER destination, STORE source: ACC (else SPAD)
    ACCUMULATE = 0x02    # MATMUL adds into C (else overwrites)
    B_TRANSPOSED = 0x04  # MATMUL: B is stored [N, K]
    HAS_BIAS = 0x08      # V_REQUANT / norms: add a per-column bias
    NO_COL_SCALE = 0x10  # V_REQUANT: row scales only
    CAUSAL = 0x20        # V_SOFTMAX_EXP: key j allowed for query row i iff j <= imm + i
    FOLD_V = 0x40        # V_SOFTMAX_EXP: fold the value scales at addr3 into e (V_FOLD_V's result)
    ROW_SCALE = 0x80     # V_RMSNORM: write each row's scale (golden.ops.rms_scale) to addr1, not the row;
    #                      V_QUANT: each row's requantization scale (golden.ops.quant_scales) to addr1 (ACC);
    #                      V_REQUANT: also each row's largest |result| to imm (ACC, a word a row)


#: The 256-bit instruction word.
Instruction = data.StructLayout({
    "opcode": Opcode,
    "flags": 8,
    "wait": SEMAPHORES,
    "signal": SEMAPHORES,
    "addr0": 32,
    "addr1": 32,
    "addr2": 32,
    "addr3": 32,
    "rows": 16,
    "cols": 16,
    "stride0": 16,
    "stride1": 16,
    "imm": 32,
})
assert Instruction.size == INSTRUCTION_BITS

QUEUE_OF = {
    Opcode.LOAD: "load", Opcode.GATHER: "load", Opcode.STORE: "store", Opcode.MATMUL: "matrix",
    Opcode.NOP: "control", Opcode.END: "control", Opcode.LOOP: "control",
}
for _op in Opcode:
    if _op.name.startswith("V_"):
        QUEUE_OF[_op] = "vector"

#: The semaphore each queue waits on when its instructions are chained in program order.
ORDER_SEMAPHORE = {"load": 0, "matrix": 1, "vector": 2, "store": 3}


def in_program_order(program: list[tuple[Opcode, dict]]) -> list[tuple[Opcode, dict]]:
    """Semaphores that make the queues execute ``program`` (``(opcode, fields)`` pairs) in program
    order: where an instruction's successor goes to another queue, the instruction signals that
    queue's semaphore and the successor waits for it. Instructions in one queue already run in
    order (the matrix unit overlaps two MATMULs, but each sees what the one before wrote).
    ``wait``/``signal`` masks given in ``program`` are kept (or-ed).
    """
    chained = [(op, dict(fields)) for op, fields in program]
    queued = [(n, QUEUE_OF[op]) for n, (op, _) in enumerate(chained) if QUEUE_OF[op] != "control"]
    for (before, queue_before), (after, queue_after) in zip(queued, queued[1:], strict=False):
        if queue_before != queue_after:
            bit = 1 << ORDER_SEMAPHORE[queue_after]
            chained[before][1]["signal"] = chained[before][1].get("signal", 0) | bit
            chained[after][1]["wait"] = chained[after][1].get("wait", 0) | bit
    return chained


FIELDS = ("flags", "wait", "signal", "addr0", "addr1", "addr2", "addr3", "rows", "cols", "stride0", "stride1", "imm")
_LIMITS = {name: 1 << Shape.cast(field.shape).width for name, field in Instruction if name != "opcode"}


def encode(opcode: Opcode, **fields: int) -> bytes:
    """One instruction word, little-endian; unknown fields or values that do not fit raise."""
    for name, value in fields.items():
        if name not in _LIMITS:
            raise ValueError(f"{opcode.name}: no instruction field {name!r}")
        if not 0 <= int(value) < _LIMITS[name]:
            raise ValueError(f"{opcode.name}: {name}={value} does not fit {_LIMITS[name].bit_length() - 1} bits")
    word = {"opcode": Opcode(opcode).value, **{name: int(fields.get(name, 0)) for name in FIELDS}}
    return pack(Instruction, word).to_bytes(INSTRUCTION_BYTES, "little")


def decode(word: bytes) -> dict:
    """Inverse of :func:`encode`: a dict with ``opcode`` as an :class:`Opcode`.

    Raises ``ValueError`` for an opcode that is not defined (an illegal instruction).
    """
    if len(word) != INSTRUCTION_BYTES:
        raise ValueError(f"an instruction is {INSTRUCTION_BYTES} bytes, got {len(word)}")
    fields = unpack(Instruction, int.from_bytes(word, "little"))
    try:
        fields["opcode"] = Opcode(fields["opcode"])
    except ValueError:
        raise ValueError(f"illegal instruction: opcode 0x{fields['opcode']:02x}") from None
    return fields


def pack_scale(m: int, e: int) -> int:
    """A scale as one unsigned 32-bit ACC word (``m`` low half, ``e`` high half, signed)."""
    if not -(1 << 15) <= m < (1 << 15) or not -(1 << 15) <= e < (1 << 15):
        raise ValueError(f"scale ({m}, {e}) does not fit 16-bit halves")
    return (m & 0xFFFF) | ((e & 0xFFFF) << 16)


def unpack_scale(word: int) -> tuple[int, int]:
    m, e = word & 0xFFFF, (word >> 16) & 0xFFFF
    return (m - (1 << 16) if m >= 1 << 15 else m), (e - (1 << 16) if e >= 1 << 15 else e)


# ---------------------------------------------------------------------------- loops

#: Instructions a ``LOOP`` body may hold (its step mask has four bits per body instruction).
LOOP_BODY_MAX = 16


def loop(body: int, count: int, increments: tuple[int, int, int, int] = (0, 0, 0, 0), steps: int = 0) -> dict:
    """The fields of a ``LOOP``: the next ``body`` instructions run ``count`` times; in iteration
    ``k`` (from 0) field ``addr<f>`` of body instruction ``j`` is increased by
    ``k * increments[f]`` (mod 2**32) when bit ``4 * j + f`` of ``steps`` is set."""
    if not 1 <= body <= LOOP_BODY_MAX:
        raise ValueError(f"a loop body holds 1 to {LOOP_BODY_MAX} instructions, got {body}")
    if not 1 <= count < 1 << 32:
        raise ValueError(f"a loop runs 1 to 2**32 - 1 times, got {count}")
    if steps >> (4 * body):
        raise ValueError(f"steps 0x{steps:x} name instructions past the body of {body}")  # ignored by the chip
    return {"flags": body, "imm": count, **{f"addr{f}": increments[f] % (1 << 32) for f in range(4)},
            "rows": steps & 0xFFFF, "cols": steps >> 16 & 0xFFFF, "stride0": steps >> 32 & 0xFFFF,
            "stride1": steps >> 48 & 0xFFFF}


def loop_steps(fields: dict) -> int:
    """The step mask of a ``LOOP``'s fields (:func:`loop`)."""
    return (fields.get("rows", 0) | fields.get("cols", 0) << 16 | fields.get("stride0", 0) << 32
            | fields.get("stride1", 0) << 48)


class Fetcher:
    """The instruction stream the controller sees: decoded words from ``read(addr)`` (32 bytes)
    from ``pc`` on, with every ``LOOP`` expanded (the ``LOOP`` itself is not returned). Each
    instruction carries its address as ``pc``. A malformed loop raises ``ValueError``, as an
    undefined opcode does: a body of 0 or more than :data:`LOOP_BODY_MAX`, a count of 0, a
    ``LOOP`` with semaphores, a ``LOOP`` or ``END`` inside a body (step bits past the body are
    ignored)."""

    def __init__(self, read, pc: int):
        self.read, self.pc = read, pc
        self.loop: dict | None = None

    def next(self) -> dict:
        while True:
            pc = self.pc
            ins = decode(self.read(pc))
            ins["pc"] = pc
            if ins["opcode"] is Opcode.LOOP:
                if self.loop is not None:
                    raise ValueError("illegal instruction: a LOOP inside a loop body")
                if not 1 <= ins["flags"] <= LOOP_BODY_MAX or ins["imm"] == 0 or ins["wait"] or ins["signal"]:
                    raise ValueError(f"illegal instruction: LOOP of {ins['flags']} instructions x {ins['imm']} "
                                     f"with semaphores 0x{ins['wait']:x}/0x{ins['signal']:x} (1 to {LOOP_BODY_MAX} "
                                     f"instructions, at least once, no semaphores)")
                self.loop = {"start": pc + INSTRUCTION_BYTES, "body": ins["flags"], "left": ins["imm"] - 1,
                             "position": 0, "steps": loop_steps(ins), "offset": [0] * 4,
                             "increment": [ins[f"addr{f}"] for f in range(4)]}
                self.pc = pc + INSTRUCTION_BYTES
                continue
            self.pc = pc + INSTRUCTION_BYTES
            current = self.loop
            if current is not None:
                if ins["opcode"] is Opcode.END:
                    raise ValueError("illegal instruction: END inside a loop body")
                position = current["position"]
                for f in range(4):
                    if current["steps"] >> (4 * position + f) & 1:
                        ins[f"addr{f}"] = (ins[f"addr{f}"] + current["offset"][f]) % (1 << 32)
                if position + 1 < current["body"]:
                    current["position"] = position + 1
                elif current["left"]:
                    current["left"] -= 1
                    current["position"] = 0
                    current["offset"] = [(o + i) % (1 << 32) for o, i in zip(current["offset"], current["increment"],
                                                                             strict=True)]
                    self.pc = current["start"]
                else:
                    self.loop = None
            return ins
