"""A schedule-randomising executor: runs a program the way the core's controller does, as four
in-order queues that only the semaphores order, in an interleaving chosen by a seeded random
generator (or a fixed queue priority), so a missing dependency shows up as a different DRAM.

The model follows ``rtl/core/controller.py``: instructions are fetched in program order into one
FIFO per queue (``queue_depth`` deep, the chip's by default; fetch waits while the target is full; ``END`` stops it); a
queue's head is released when every semaphore in its ``wait`` mask is non-zero (each is then
decremented), up to ``inflight`` released instructions per queue; a queue's released
instructions complete in order, and completing increments the ``signal`` semaphores (8-bit
counters: going past 255 raises). Each instruction executes atomically when it completes, by
:class:`compiler.funcsim.Machine`. No enabled step before the program has drained raises
:class:`Deadlock`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from compiler.funcsim import ExecutionError, Machine, fetch_word
from scoville.isa import INSTRUCTION_BYTES, QUEUE_OF, SEMAPHORES, Fetcher, Opcode, encode

__all__ = ["Deadlock", "ScheduleReport", "run_concurrent", "read_program", "write_program", "QUEUES"]

QUEUES = ("load", "matrix", "vector", "store")
SEMAPHORE_MAX = 255


class Deadlock(ExecutionError):
    """No queue can proceed and the program has not drained."""


@dataclass
class ScheduleReport:
    """What one interleaving did."""

    steps: int = 0
    executed: int = 0
    max_semaphore: list[int] = field(default_factory=lambda: [0] * SEMAPHORES)
    max_overlap: int = 0  # most queues with a released, unfinished instruction at once


def read_program(dram, program_addr: int) -> list[tuple[Opcode, dict]]:
    """The ``(opcode, fields)`` pairs of the program at ``program_addr`` as the controller sees
    them (loops expanded), ``END`` included."""
    program = []
    fetcher = Fetcher(lambda pc: bytes(dram[pc:pc + INSTRUCTION_BYTES]), program_addr)
    while True:
        fields = fetcher.next()
        opcode = fields.pop("opcode")
        del fields["pc"]
        program.append((opcode, fields))
        if opcode is Opcode.END:
            return program


def write_program(dram, program_addr: int, program: list[tuple[Opcode, dict]]) -> None:
    """Encode ``program`` into ``dram`` at ``program_addr``."""
    raw = b"".join(encode(opcode, **fields) for opcode, fields in program)
    dram[program_addr:program_addr + len(raw)] = np.frombuffer(raw, dtype=np.uint8)


def _bits(mask: int) -> list[int]:
    return [n for n in range(SEMAPHORES) if mask >> n & 1]


def run_concurrent(machine: Machine, program_addr: int, *, seed: int | None = 0,
                   priority: tuple[str, ...] | None = None, queue_depth: int | None = None, inflight: int = 4,
                   max_steps: int = 50_000_000) -> ScheduleReport:
    """Run the program at ``program_addr`` on ``machine`` in one interleaving.

    ``seed`` picks uniformly among the enabled steps (fetch, a release, a completion); with
    ``priority`` (queue names, first preferred) the first enabled queue step in that order is
    taken and fetching comes last, which lets the preferred queues run as far ahead as the
    semaphores allow (the worst case for semaphore counts).
    """
    queue_depth = queue_depth or machine.config.queue_depth
    rng = random.Random(seed)
    fifos = {q: deque() for q in QUEUES}
    running = {q: deque() for q in QUEUES}
    semaphores = [0] * SEMAPHORES
    report = ScheduleReport()
    fetching = True
    fetcher = Fetcher(lambda pc: fetch_word(machine, pc), program_addr)
    upcoming: list[dict] = []   # the next instruction of the stream (loops expanded), once read

    def peek() -> dict:
        if not upcoming:
            try:
                upcoming.append(fetcher.next())
            except ValueError as exc:
                raise ExecutionError(f"at 0x{fetcher.pc:x}: {exc}") from None
        return upcoming[0]

    def fetch() -> None:
        nonlocal fetching
        ins = upcoming.pop()
        queue = QUEUE_OF[ins["opcode"]]
        if ins["opcode"] is Opcode.END:
            fetching = False
        elif queue != "control":
            fifos[queue].append(ins)

    def release(queue: str) -> None:
        ins = fifos[queue].popleft()
        for n in _bits(ins["wait"]):
            semaphores[n] -= 1
        running[queue].append(ins)
        report.max_overlap = max(report.max_overlap, sum(1 for q in QUEUES if running[q]))

    def complete(queue: str) -> None:
        ins = running[queue].popleft()
        try:
            machine.step(ins)
        except ExecutionError as exc:
            raise ExecutionError(f"at 0x{ins['pc']:x} ({ins['opcode'].name}): {exc}") from None
        report.executed += 1
        for n in _bits(ins["signal"]):
            semaphores[n] += 1
            if semaphores[n] > SEMAPHORE_MAX:
                raise ExecutionError(f"semaphore {n} exceeds {SEMAPHORE_MAX} after 0x{ins['pc']:x}")
            report.max_semaphore[n] = max(report.max_semaphore[n], semaphores[n])

    for _ in range(max_steps):
        steps = []
        if fetching:
            queue = QUEUE_OF[peek()["opcode"]]
            if queue == "control" or len(fifos[queue]) < queue_depth:
                steps.append(("fetch", None))
        for queue in QUEUES:
            head = fifos[queue][0] if fifos[queue] else None
            if head is not None and len(running[queue]) < inflight \
                    and all(semaphores[n] > 0 for n in _bits(head["wait"])):
                steps.append(("release", queue))
            if running[queue]:
                steps.append(("complete", queue))
        if not steps:
            if not fetching and not any(fifos[q] or running[q] for q in QUEUES):
                return report
            heads = {q: (f"{fifos[q][0]['opcode'].name}@0x{fifos[q][0]['pc']:x} waits "
                         f"{_bits(fifos[q][0]['wait'])}") for q in QUEUES if fifos[q]}
            raise Deadlock(f"deadlock after {report.executed} instructions: heads {heads}, semaphores "
                           f"{semaphores}, fetch at 0x{fetcher.pc:x}")
        if priority is None:
            kind, queue = rng.choice(steps)
        else:
            rank = {q: n for n, q in enumerate(priority)}
            kind, queue = min(steps, key=lambda s: (s[0] == "fetch", rank.get(s[1], 99), s[0] == "release"))
        report.steps += 1
        {"fetch": lambda q: fetch(), "release": release, "complete": complete}[kind](queue)
    raise ExecutionError(f"no END after {max_steps} steps")
