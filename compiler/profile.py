"""Where a job's cycles go: roofline bounds per part of the model, measured cycles per part from
the RTL's instruction trace, and a per-unit timeline picture.

The compiler labels every instruction with the part of the model it belongs to
(:data:`compiler.lower.SECTIONS`); a job is a sequence of *segments*, runs of instructions with
one label (layer 0's ``qkv``, its ``attention``, ...). Units overlap segments, so cycles are
attributed by completion: a segment ends when its last instruction is done (or when the segment
before it ended, if later), and owns the cycles since the previous segment's end. The segments'
cycles therefore add up to the job's.

The roofline bound of a segment is ``max(MACs / (R x C), DRAM bytes / bus bytes per cycle)``:
the cycles it would take if the systolic array or the DRAM bus were busy all the time. A
section's ``fraction`` is its segments' bounds over their measured cycles (1.0 is the limit);
``model`` is the whole job's bound (over all its MACs and bytes) over the job's cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.lower import SECTIONS, Job
from rtl.core.controller import QUEUES
from scoville.config import ChipConfig
from scoville.isa import QUEUE_OF, Flag, Opcode

__all__ = ["Segment", "Trace", "instruction_work", "plot_timeline", "profile", "segments"]


@dataclass
class Trace:
    """One job's instruction events from the RTL (cycles from the job's start), per queue in
    program order: release, completion, and the unit's stalled-cycle count at completion."""

    issue: dict[str, np.ndarray]
    done: dict[str, np.ndarray]
    stalled: dict[str, np.ndarray]

    def per_instruction(self, job: Job) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Release cycle, completion cycle and stalled cycles of each instruction of ``job``
        (-1 for control instructions)."""
        n = len(job.program)
        issue, done, stalled = (np.full(n, -1, dtype=np.int64) for _ in range(3))
        index = {q: [i for i, (op, _) in enumerate(job.program) if QUEUE_OF[op] == q] for q in QUEUES}
        for q in QUEUES:
            ids = index[q]
            if len(self.issue[q]) != len(ids) or len(self.done[q]) != len(ids):
                raise ValueError(f"the trace has {len(self.issue[q])} releases and {len(self.done[q])} completions "
                                 f"on the {q} queue; the program has {len(ids)} {q} instructions")
            issue[ids], done[ids] = self.issue[q], self.done[q]
            # a unit runs one instruction at a time: the stalls between completions are this one's
            stalled[ids] = np.diff(np.concatenate([[0], self.stalled[q]]))
        return issue, done, stalled


def instruction_work(opcode: Opcode, fields: dict) -> tuple[int, int]:
    """(multiply-accumulates, DRAM bytes moved) of one instruction."""
    rows, cols = fields.get("rows", 0), fields.get("cols", 0)
    if opcode is Opcode.MATMUL:
        return rows * cols * fields.get("imm", 0), 0
    if opcode in (Opcode.LOAD, Opcode.STORE, Opcode.GATHER):
        elem = 4 if fields.get("flags", 0) & Flag.DST_ACC else 1
        return 0, rows * cols * elem
    return 0, 0


def bound_cycles(macs: int, dram_bytes: int, config: ChipConfig) -> float:
    """The roofline: cycles if the array or the DRAM bus were the only limit."""
    return max(macs / (config.rows * config.columns), dram_bytes / config.bus_bytes)


@dataclass
class Segment:
    """A run of instructions ``first .. last`` (program indices) with one section label."""

    section: str
    first: int
    last: int
    macs: int = 0
    dram_bytes: int = 0
    start: int = 0       # cycles (attributed, see the module docstring)
    end: int = 0

    @property
    def cycles(self) -> int:
        return self.end - self.start


def segments(job: Job) -> list[Segment]:
    """The job's segments with their work (control instructions join the segment around them)."""
    out: list[Segment] = []
    for i, ((opcode, fields), section) in enumerate(zip(job.program, job.sections, strict=True)):
        if not out or out[-1].section != section:
            out.append(Segment(section, i, i))
        seg = out[-1]
        seg.last = i
        macs, moved = instruction_work(opcode, fields)
        seg.macs += macs
        seg.dram_bytes += moved
    return out


def profile(job: Job, trace: Trace, total_cycles: int, config: ChipConfig) -> tuple[list[Segment], dict]:
    """Segments with attributed cycles, and per section (plus ``model``): MACs, DRAM bytes, bound
    cycles, measured cycles and the fraction of the roofline reached."""
    _, done, _ = trace.per_instruction(job)
    segs = segments(job)
    previous = 0
    for seg in segs:
        finished = done[seg.first:seg.last + 1]
        end = int(finished.max()) if (finished >= 0).any() else previous
        seg.start, seg.end = previous, min(max(end, previous), total_cycles)
        previous = seg.end
    if segs:
        segs[-1].end = max(segs[-1].end, total_cycles)
    table: dict[str, dict] = {}
    for name in SECTIONS:
        mine = [s for s in segs if s.section == name]
        if not mine:
            continue
        bound = sum(bound_cycles(s.macs, s.dram_bytes, config) for s in mine)
        cycles = sum(s.cycles for s in mine)
        table[name] = {"macs": sum(s.macs for s in mine), "dram_bytes": sum(s.dram_bytes for s in mine),
                       "bound": bound, "cycles": cycles, "fraction": bound / cycles if cycles else 0.0}
    macs, moved = sum(s.macs for s in segs), sum(s.dram_bytes for s in segs)
    bound = bound_cycles(macs, moved, config)
    table["model"] = {"macs": macs, "dram_bytes": moved, "bound": bound, "cycles": total_cycles,
                      "fraction": bound / total_cycles if total_cycles else 0.0}
    return segs, table


#: Colours of the sections in the timeline.
_COLOURS = {"embed": "#8c564b", "qkv": "#1f77b4", "attention": "#d62728", "out_proj": "#9467bd",
            "mlp": "#2ca02c", "norm": "#ff7f0e", "head": "#7f7f7f"}


def plot_timeline(job: Job, trace: Trace, path, *, layer: int | None = 0, title: str = "") -> None:
    """Per-unit activity (load, matrix, vector, store) as bars from release to completion,
    coloured by section, with the share of each instruction's cycles its unit stalled hatched (the
    trace counts stalls per instruction, not where in it they fell); ``layer`` picks one
    transformer layer (``None``: the whole job)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    issue, done, stalled = trace.per_instruction(job)
    if layer is not None and layer not in job.layers:
        raise ValueError(f"layer {layer} is not in this job ({max(job.layers) + 1} layers)")
    chosen = [i for i in range(len(job.program)) if issue[i] >= 0 and (layer is None or job.layers[i] == layer)]
    t0 = min(issue[i] for i in chosen)
    t1 = max(done[i] for i in chosen)
    fig, ax = plt.subplots(figsize=(14, 4.2))
    rows = {q: n for n, q in enumerate(reversed(QUEUES))}
    for i in chosen:
        queue = QUEUE_OF[job.program[i][0]]
        y = rows[queue]
        start, length = issue[i], max(done[i] - issue[i], 1)
        colour = _COLOURS[job.sections[i]]
        ax.broken_barh([(start, length)], (y - 0.35, 0.7), facecolors=colour, edgecolor="none")
        if stalled[i] > 0:
            share = min(stalled[i], length)
            ax.broken_barh([(start + length - share, share)], (y - 0.35, 0.7), facecolors="none",
                           edgecolor="black", hatch="////", linewidth=0)
    ax.set_yticks(range(len(QUEUES)), [q for q in reversed(QUEUES)])
    ax.set_xlim(t0, t1)
    ax.set_xlabel("cycle")
    ax.set_title(title or "per-unit activity")
    sections = [s for s in SECTIONS if any(job.sections[i] == s for i in chosen)]
    handles = [Patch(facecolor=_COLOURS[s], label=s) for s in sections]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="////", label="stalled (busy, no data moved)"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(handles), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
