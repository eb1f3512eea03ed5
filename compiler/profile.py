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

from compiler.lower import SECTIONS, Compiler, Job
from rtl.core.controller import QUEUES
from scoville.config import ChipConfig
from scoville.isa import QUEUE_OF, Flag, Opcode

__all__ = ["Segment", "Trace", "instruction_work", "layer_table", "plot_roofline", "phases", "plot_timeline",
           "profile", "segments"]


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


def layer_table(job: Job, segs: list[Segment], config: ChipConfig) -> list[dict]:
    """One row per (layer, section) of an attributed job (the segments of :func:`profile`; a job
    in token blocks has several segments per layer and section, summed here): ``layer`` (-1 for
    the embedding and the head), ``section``, ``macs``, ``dram_bytes``, ``bound`` and ``cycles``,
    in program order."""
    rows: dict[tuple[int, str], dict] = {}
    for seg in segs:
        key = (job.layers[seg.first], seg.section)
        row = rows.setdefault(key, {"layer": key[0], "section": key[1], "macs": 0, "dram_bytes": 0,
                                    "bound": 0.0, "cycles": 0})
        row["macs"] += seg.macs
        row["dram_bytes"] += seg.dram_bytes
        row["bound"] += bound_cycles(seg.macs, seg.dram_bytes, config)
        row["cycles"] += seg.cycles
    return list(rows.values())


def phases(ckpt, ids, run) -> dict[str, tuple[Job, list[Segment], dict]]:
    """The traced jobs of an :class:`compiler.rtl_runner.RtlRun` of ``ids``, profiled: ``prefill``
    (the prompt) and, when the run generated tokens, ``decode`` (the first token after the prompt,
    a KV cache of ``len(ids)``); each as (job, segments, :func:`profile` table)."""
    if not run.traces:
        raise ValueError("the run was not traced (run_rtl(..., trace=True))")
    compiler = Compiler(ckpt, run.config)
    jobs = [("prefill", compiler.job(ids))]
    if run.tokens is not None and len(run.traces) > 1:
        jobs.append(("decode", compiler.job(run.tokens[:1], len(ids))))
    out = {}
    for n, (phase, job) in enumerate(jobs):
        segs, table = profile(job, run.traces[n], run.cycles[n], run.config)
        out[phase] = (job, segs, table)
    return out


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


_MARKERS = {"prefill": "o", "decode": "^"}


def plot_roofline(phases: dict[str, list[dict]], config: ChipConfig, path, *, title: str = "") -> None:
    """The roofline of ``config`` with every layer's parts as points, and each part's fraction of
    the roofline per layer.

    ``phases`` maps a phase name (``prefill``, ``decode``) to its :func:`layer_table`. Left: the
    classic roofline, MACs per cycle over operational intensity (MACs per DRAM byte), the roof
    ``min(R x C, intensity x bus bytes per cycle)``; a point per (layer, part) with MACs and DRAM
    traffic. Right: bound / measured cycles per layer, one line per part and phase, every part
    included (the norms, whose bound is their DRAM traffic alone, too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if not phases or not any(phases.values()):
        raise ValueError("no layers to plot")
    peak, bus = config.rows * config.columns, config.bus_bytes
    fig, (roof, per_layer) = plt.subplots(1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [1.1, 1]})
    points = [(row["macs"] / row["dram_bytes"], row["macs"] / row["cycles"])
              for rows in phases.values() for row in rows
              if row["macs"] and row["dram_bytes"] and row["cycles"]]
    low = min([x for x, _ in points] + [peak / bus]) / 4
    high = max([x for x, _ in points] + [peak / bus]) * 4
    xs = np.geomspace(low, high, 200)
    roof.plot(xs, np.minimum(peak, xs * bus), color="black", linewidth=2,
              label=f"roof: {config.rows}x{config.columns} MACs, {bus} B/cycle")
    roof.axvline(peak / bus, color="grey", linestyle=":", linewidth=1)
    for phase, rows in phases.items():
        for row in rows:
            if not (row["macs"] and row["dram_bytes"] and row["cycles"]):
                continue
            roof.scatter(row["macs"] / row["dram_bytes"], row["macs"] / row["cycles"], s=36,
                         marker=_MARKERS.get(phase, "s"), color=_COLOURS[row["section"]], edgecolor="black",
                         linewidth=0.4, zorder=3)
    roof.set_xscale("log")
    roof.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (roof.xaxis, roof.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    roof.set_xlabel("operational intensity (MACs per DRAM byte)")
    roof.set_ylabel("MACs per cycle")
    roof.set_title("roofline: one point per layer and part")
    for phase, rows in phases.items():
        for section in SECTIONS:
            mine = [r for r in rows if r["section"] == section and r["layer"] >= 0 and r["cycles"]]
            if not mine:
                continue
            per_layer.plot([r["layer"] for r in mine], [r["bound"] / r["cycles"] for r in mine],
                           marker=_MARKERS.get(phase, "s"), color=_COLOURS[section],
                           linestyle="-" if phase == "prefill" else "--")
    per_layer.axhline(1.0, color="black", linewidth=1)
    per_layer.set_ylim(0, 1.05)
    per_layer.set_xlabel("layer")
    per_layer.set_ylabel("roofline bound / measured cycles")
    per_layer.set_title("fraction of the roofline per layer")
    per_layer.xaxis.get_major_locator().set_params(integer=True)
    sections = [s for s in SECTIONS if any(r["section"] == s for rows in phases.values() for r in rows)]
    handles = [Line2D([], [], color=_COLOURS[s], marker="s", linestyle="", label=s) for s in sections]
    handles += [Line2D([], [], color="black", marker=_MARKERS.get(p, "s"), linestyle="-" if p == "prefill" else "--",
                       label=p) for p in phases]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
