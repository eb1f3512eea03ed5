"""Section labels of compiled programs, roofline bounds, cycle attribution and the timeline
picture (compiler.profile), on synthetic traces; the RTL's own trace is checked in
tests/test_rtl_backend.py."""

import numpy as np
import pytest

from compiler.lower import SECTIONS, Compiler
from compiler.profile import (
    Trace,
    bound_cycles,
    instruction_work,
    layer_table,
    plot_roofline,
    plot_timeline,
    profile,
    segments,
)
from rtl.core.controller import QUEUES
from scoville.config import ChipConfig
from scoville.isa import QUEUE_OF, Flag, Opcode
from scoville.models import load_model


@pytest.fixture(scope="module")
def tiny_job():
    """Program order: a part of the model is one run of instructions per layer (and block)."""
    ckpt = load_model("tiny-llama")
    return Compiler(ckpt, ChipConfig(), list_schedule=False).job(np.arange(1, 9))


def test_list_scheduled_parts_stay_in_their_layer():
    """List scheduling (``Compiler.list_schedule``) interleaves a layer's parts, and in its
    whole-job order a layer's first parts with the last parts of the layer before, but keeps the
    layers in order: each layer's segments begin and end after the layer before's, and every
    segment still has cycles of its own."""
    ckpt = load_model("tiny-llama")
    job = Compiler(ckpt, ChipConfig()).job(np.arange(1, 17))
    plain = Compiler(ckpt, ChipConfig(), list_schedule=False).job(np.arange(1, 17))
    assert job.program != plain.program   # the 16-token prompt takes the list order
    order = [(job.layers[seg.first], seg.section) for seg in segments(job)]
    assert len(order) > len(segments(plain))
    layers = [layer for layer, _ in order]
    body = [layer for layer in layers if layer >= 0]
    assert set(body) == {0, 1}
    assert body.index(0) < body.index(1) and len(body) - body[::-1].index(0) < len(body) - body[::-1].index(1)
    trace, total = fake_trace(job)
    segs, _ = profile(job, trace, total, ChipConfig())
    assert sum(s.cycles for s in segs) == total


def test_every_instruction_has_a_section_in_layer_order(tiny_job):
    job = tiny_job
    assert len(job.sections) == len(job.program) == job.instructions
    assert set(job.sections) <= set(SECTIONS)
    order = [seg.section for seg in segments(job)]
    layer = ["norm", "qkv", "attention", "out_proj", "norm", "mlp"]
    assert order == ["embed", *layer * 2, "norm", "head"], order
    # every MATMUL of the QKV segments multiplies by a q/k/v weight: K is the hidden size
    for (opcode, fields), section in zip(job.program, job.sections, strict=True):
        if opcode is Opcode.MATMUL and section == "qkv":
            assert fields["imm"] == 64


def test_work_of_instructions():
    assert instruction_work(Opcode.MATMUL, {"rows": 3, "cols": 8, "imm": 5}) == (120, 0)
    assert instruction_work(Opcode.LOAD, {"rows": 4, "cols": 10}) == (0, 40)
    assert instruction_work(Opcode.STORE, {"rows": 2, "cols": 10, "flags": Flag.DST_ACC}) == (0, 80)
    assert instruction_work(Opcode.V_ADD, {"rows": 2, "cols": 10}) == (0, 0)
    config = ChipConfig()   # 8x8, 8-byte bus
    assert bound_cycles(640, 8, config) == 10 and bound_cycles(64, 800, config) == 100


def fake_trace(job, gap=3):
    """Each unit runs its instructions back to back in program order, ``gap`` cycles each."""
    issue = {q: [] for q in QUEUES}
    done = {q: [] for q in QUEUES}
    stalled = {q: [] for q in QUEUES}
    clock = 0
    for opcode, _ in job.program:
        q = QUEUE_OF[opcode]
        if q not in QUEUES:
            continue
        issue[q].append(clock)
        clock += gap
        done[q].append(clock)
        stalled[q].append(len(done[q]))   # one stalled cycle per instruction
    return Trace(*({q: np.array(v) for q, v in d.items()} for d in (issue, done, stalled))), clock


def test_attribution_adds_up_and_follows_completions(tiny_job):
    config = ChipConfig()
    trace, total = fake_trace(tiny_job)
    segs, table = profile(tiny_job, trace, total, config)
    assert sum(seg.cycles for seg in segs) == total
    assert sum(row["cycles"] for name, row in table.items() if name != "model") == total
    # back to back, 3 cycles per non-control instruction: a segment's share is 3 x its count
    for seg in segs:
        units = sum(QUEUE_OF[op] in QUEUES for op, _ in tiny_job.program[seg.first:seg.last + 1])
        assert seg.cycles == 3 * units, seg
    model = table["model"]
    assert model["bound"] == bound_cycles(model["macs"], model["dram_bytes"], config)
    assert model["fraction"] == pytest.approx(model["bound"] / total)
    stalled_each = trace.per_instruction(tiny_job)[2]
    assert set(stalled_each[stalled_each >= 0]) == {1}


def test_a_trace_that_does_not_match_the_program_is_refused(tiny_job):
    trace, total = fake_trace(tiny_job)
    trace.done["matrix"] = trace.done["matrix"][:-1]
    with pytest.raises(ValueError, match="matrix queue"):
        profile(tiny_job, trace, total, ChipConfig())


def test_timeline_picture(tiny_job, tmp_path):
    trace, _ = fake_trace(tiny_job)
    path = tmp_path / "t.png"
    plot_timeline(tiny_job, trace, path, layer=1, title="fake")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="layer 2 is not in this job"):
        plot_timeline(tiny_job, trace, tmp_path / "u.png", layer=2)


def test_layer_table_sums_the_segments_per_layer_and_part(tiny_job):
    config = ChipConfig()
    trace, total = fake_trace(tiny_job)
    segs, table = profile(tiny_job, trace, total, config)
    rows = layer_table(tiny_job, segs, config)
    # two layers of norm (twice), qkv, attention, out_proj, mlp; the embedding and head outside
    assert [(r["layer"], r["section"]) for r in rows] == [
        (-1, "embed"), *[(n, s) for n in (0, 1) for s in ("norm", "qkv", "attention", "out_proj", "mlp")],
        (-1, "norm"), (-1, "head")]
    assert sum(r["cycles"] for r in rows) == total
    for name in ("qkv", "attention", "mlp", "norm"):
        mine = [r for r in rows if r["section"] == name]
        assert sum(r["macs"] for r in mine) == table[name]["macs"]
        assert sum(r["bound"] for r in mine) == pytest.approx(table[name]["bound"])
    # a layer's norm is its two norm segments together
    norm0 = [s for s in segs if s.section == "norm" and tiny_job.layers[s.first] == 0]
    assert len(norm0) == 2
    assert next(r for r in rows if r["layer"] == 0 and r["section"] == "norm")["cycles"] == sum(s.cycles for s in norm0)


def test_roofline_picture(tiny_job, tmp_path):
    config = ChipConfig()
    trace, total = fake_trace(tiny_job)
    rows = layer_table(tiny_job, profile(tiny_job, trace, total, config)[0], config)
    path = tmp_path / "r.png"
    plot_roofline({"prefill": rows, "decode": rows}, config, path, title="fake")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no layers"):
        plot_roofline({"prefill": []}, config, tmp_path / "s.png")
