"""Loops: a program's repeated runs of instructions folded into ``LOOP`` instructions.

A run of ``count`` copies of a body of up to :data:`scoville.isa.LOOP_BODY_MAX` instructions, where
copy ``k`` equals the first with some address fields increased by ``k`` times a per-field increment
(the same increment for every body instruction that steps that field), becomes one ``LOOP`` and the
body (:func:`scoville.isa.loop`). The controller fetches the body again for each iteration and
steps the addresses as it decodes them, so the chip runs exactly the instructions of the unfolded
program, semaphores included: :func:`fold` is applied after synchronisation and changes nothing
but the program's size (and the fetch traffic). Greedy, from the front: at each instruction the
body length that saves the most words wins.
"""

from __future__ import annotations

from scoville.isa import FIELDS, LOOP_BODY_MAX, QUEUE_OF, Opcode, loop

__all__ = ["fold", "unfold"]

_ADDRESSES = ("addr0", "addr1", "addr2", "addr3")
_OTHERS = tuple(name for name in FIELDS if name not in _ADDRESSES)
_MASK = (1 << 32) - 1


def _shape(opcode: Opcode, fields: dict) -> tuple:
    """What must be equal in every iteration: the opcode and every field but the addresses."""
    return (opcode, *(int(fields.get(name, 0)) for name in _OTHERS))


def _addresses(fields: dict) -> tuple[int, ...]:
    return tuple(int(fields.get(name, 0)) for name in _ADDRESSES)


def _increments(addrs: list, first: int, body: int) -> tuple[list[int], int] | None:
    """Per-field increments and the step mask that turn copy 0 of the body at ``first`` into copy
    1, or None when two instructions would need different increments for one field."""
    increments = [0, 0, 0, 0]
    steps = 0
    for j in range(body):
        for f, (a, b) in enumerate(zip(addrs[first + j], addrs[first + body + j], strict=True)):
            delta = (b - a) & _MASK
            if delta:
                if increments[f] and increments[f] != delta:
                    return None
                increments[f] = delta
                steps |= 1 << (4 * j + f)
    return increments, steps


def fold(program: list[tuple[Opcode, dict]], max_body: int = LOOP_BODY_MAX) -> list[tuple[Opcode, dict]]:
    """``program`` with its repeated runs folded into loops; :func:`unfold` gives it back."""
    shapes = [_shape(op, fields) for op, fields in program]
    addrs = [_addresses(fields) for _, fields in program]
    movable = [QUEUE_OF[op] != "control" for op, _ in program]
    n = len(program)
    out: list[tuple[Opcode, dict]] = []
    i = 0
    while i < n:
        best = None   # (words saved, body, count, increments, steps)
        for body in range(1, max_body + 1):
            if i + 2 * body > n or not movable[i + body - 1]:
                break
            if shapes[i:i + body] != shapes[i + body:i + 2 * body]:
                continue
            found = _increments(addrs, i, body)
            if found is None:
                continue
            increments, steps = found
            count = 2
            while i + (count + 1) * body <= n and shapes[i:i + body] == shapes[i + count * body:i + (count + 1) * body]:
                start = i + count * body
                if any(addrs[start + j][f] != (addrs[i + j][f] + (count * increments[f] if steps >> (4 * j + f) & 1
                                                                      else 0)) & _MASK
                       for j in range(body) for f in range(4)):
                    break
                count += 1
            saved = (count - 1) * body - 1
            if saved > 0 and (best is None or saved > best[0]):
                best = (saved, body, count, increments, steps)
        if best is None:
            out.append(program[i])
            i += 1
            continue
        _, body, count, increments, steps = best
        out.append((Opcode.LOOP, loop(body, count, tuple(increments), steps)))
        out.extend(program[i:i + body])
        i += body * count
    return out


def unfold(program: list[tuple[Opcode, dict]]) -> list[tuple[Opcode, dict]]:
    """The instructions a folded program runs (the controller's view, :class:`scoville.isa.Fetcher`)."""
    from scoville.isa import INSTRUCTION_BYTES, Fetcher, encode

    words = [encode(op, **fields) for op, fields in program]
    fetcher = Fetcher(lambda pc: words[pc // INSTRUCTION_BYTES], 0)
    out = []
    while fetcher.pc < len(words) * INSTRUCTION_BYTES or fetcher.loop is not None:
        fields = fetcher.next()
        opcode = fields.pop("opcode")
        del fields["pc"]
        out.append((opcode, fields))
    return out
