"""The simulation build cache stays bounded: least recently used builds and old run dirs go."""

import os
import time
from pathlib import Path

import pytest
from amaranth.hdl import ClockSignal, Instance, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from scoville import flow


def _fake_build(root: Path, name: str, size: int, age_s: float) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "blob").write_bytes(b"\0" * size)
    stamp = path / "last-used"
    stamp.touch()
    used = time.time() - age_s
    os.utime(stamp, (used, used))
    return path


@pytest.fixture
def sim_root(tmp_path, monkeypatch):
    monkeypatch.setattr(flow, "BUILD_ROOT", tmp_path)
    root = tmp_path / "sim"
    root.mkdir()
    return root


def test_evicts_least_recently_used_until_under_the_bound(sim_root, monkeypatch):
    monkeypatch.setenv("SCOVILLE_SIM_CACHE_GB", str(2500 / 2**30))
    oldest = _fake_build(sim_root, "a-1", 1000, age_s=4 * 3600)
    older = _fake_build(sim_root, "a-2", 1000, age_s=3 * 3600)
    recent = _fake_build(sim_root, "b-1", 1000, age_s=2 * 3600)
    new = _fake_build(sim_root, "c-1", 1000, age_s=0)
    flow._evict_builds(keep=new)
    assert not oldest.exists() and not older.exists()
    assert recent.exists() and new.exists()


def test_never_evicts_a_build_used_within_the_hour(sim_root, monkeypatch):
    monkeypatch.setenv("SCOVILLE_SIM_CACHE_GB", "0")
    in_use = _fake_build(sim_root, "a-1", 1000, age_s=600)
    new = _fake_build(sim_root, "b-1", 1000, age_s=0)
    flow._evict_builds(keep=new)
    assert in_use.exists() and new.exists()


def test_run_dirs_are_pruned_to_the_newest_finished_ones(sim_root):
    build_dir = sim_root / "d-1"
    runs = build_dir / "runs"
    ended = []
    for i in range(flow.KEEP_RUNS + 3):
        path = runs / f"model-{999_999_000 + i}"  # no such process
        path.mkdir(parents=True)
        t = time.time() - 100 + i
        os.utime(path, (t, t))
        ended.append(path)
    alive = runs / f"model-{os.getppid()}"
    alive.mkdir()
    os.utime(alive, (0, 0))  # the oldest, but its process is running
    result = flow.Build(design=None, verilog=Path(), build_dir=build_dir, waves=False)
    mine = flow.run_dir(result, "model")
    assert mine.exists() and alive.exists()
    kept = [p for p in ended if p.exists()]
    assert kept == ended[-(flow.KEEP_RUNS - 1):]


def test_a_failed_cocotb_test_is_reported_by_its_traceback_and_seed(tmp_path):
    """A failure names the test, its traceback from the results file and the seed to replay it
    with, not only the log's tail (bus traffic, mostly)."""
    xml = tmp_path / "results.xml"
    xml.write_text(
        '<testsuites><testsuite name="tb"><testcase name="passes"/>'
        '<testcase name="chains"><failure message="too large">Traceback (most recent call last):\n'
        '  File "tb.py", line 9, in chains\nAssertionError: test image too large</failure></testcase>'
        "</testsuite></testsuites>")
    log = ["0.00ns INFO seed 2 (replay with SCOVILLE_SEED=2)"] + [f"bus read {n}" for n in range(100)]
    report = flow._failures(xml, log)
    assert "--- chains:" in report and "AssertionError: test image too large" in report
    assert "passes" not in report
    assert "replay with SCOVILLE_SEED=2" in report
    assert report.endswith("bus read 99") and "bus read 79" not in report


# a blocking assignment in a clocked block: Verilator's BLKSEQ, which no waiver covers
_BLOCKING = """
module scoville_lint_probe (input clk, input a, output reg y);
    always @(posedge clk) y = a;
endmodule
"""


class _LintProbe(wiring.Component):
    a: In(1)
    y: Out(1)
    verilog_sources = (_BLOCKING,)

    def elaborate(self, platform):
        m = Module()
        m.submodules.probe = Instance("scoville_lint_probe", i_clk=ClockSignal(), i_a=self.a, o_y=self.y)
        return m


def test_a_warning_outside_the_waivers_fails_the_build(tmp_path, monkeypatch):
    """The build's Verilator pass is the lint: -Wall, and a warning no waiver names stops it with
    the warning in the message."""
    monkeypatch.setattr(flow, "BUILD_ROOT", tmp_path)
    with pytest.raises(flow.LintError, match="BLKSEQ"):
        flow.build(flow.Design("lint_probe", _LintProbe, {}))


def test_a_failed_cxx_compile_is_not_reported_as_lint(tmp_path):
    """A build whose log has no Verilator message failed in the C++ compile: BuildError, not
    LintError; with a Verilator warning or error in it, LintError. Both carry the log's tail."""
    source = tmp_path / "top.v"
    log = tmp_path / "build.log"
    log.write_text("make: Entering directory\nVtop.cpp:12:5: error: 'x' was not declared in this scope\n"
                   "make: *** [Vtop.mk:1: Vtop.o] Error 1\n")
    error = flow.build_failure(source, "top", log)
    assert type(error) is flow.BuildError and "was not declared" in str(error)
    log.write_text("%Warning-BLKSEQ: top.v:3:7: Blocking assignment '=' in sequential logic process\n"
                   "%Error: Exiting due to 1 warning(s)\n")
    error = flow.build_failure(source, "top", log)
    assert isinstance(error, flow.LintError) and "BLKSEQ" in str(error)
