"""The synthesis flow's own logic (no Yosys or nextpnr run): the chip target, its LUT multipliers,
the committed figures record."""

import dataclasses
import fnmatch
import json
import re

import pytest

from scoville.config import CONFIGS, ChipConfig
from synth import run


def _chip_target():
    return next(target for target in run.TARGETS if target.name == "chip.8x8.ecp5")


#: the array's last two rows in LUTs, as the chip had them while its vector unit was 8 lanes wide
LAST_TWO_ROWS = "top.inner.core_*.matrix.array.pe_[67]_*"


def _soft_target():
    return dataclasses.replace(_chip_target(), soft_multipliers=LAST_TWO_ROWS)


def test_chip_target_is_the_simulated_configuration():
    target = _chip_target()
    assert run._chip(**target.params).config == ChipConfig() == CONFIGS["8x8"]


def test_soft_multipliers_are_mapped_before_synthesis(tmp_path):
    assert not _chip_target().soft_multipliers   # its DSP blocks suffice since vector_lanes <= 4
    target = _soft_target()
    script = run.yosys_script(target, run.DEVICES["ecp5"], tmp_path)
    commands = [command.strip() for command in script.split(";")]
    booth = commands.index(f"booth {target.soft_multipliers}/t:$mul")
    synth = next(n for n, command in enumerate(commands) if command.startswith("synth_ecp5"))
    assert booth < synth
    plain = next(t for t in run.TARGETS if t.name == "matrix.8x8.ecp5")
    assert "booth" not in run.yosys_script(plain, run.DEVICES["ecp5"], tmp_path)


@pytest.mark.slow   # 40 s: the 2x2 chip's RTLIL
def test_soft_multiplier_pattern_names_processing_elements():
    """The pattern selects array rows by Amaranth's hierarchical module names (2x2 chip: quick)."""
    from amaranth.back import rtlil

    from rtl.chip import Chip
    from synth.wrapper import ShiftWrapper

    text = rtlil.convert(ShiftWrapper(Chip(CONFIGS["2x2"])), name="top")
    modules = re.findall(r"^module \\(\S+)$", text, re.M)
    every_pe = [name for name in modules if fnmatch.fnmatchcase(name, "top.inner.core_*.matrix.array.pe_*")]
    assert len(every_pe) == 4
    pattern = LAST_TWO_ROWS
    assert [name for name in every_pe if fnmatch.fnmatchcase(name, pattern)] == []   # rows 6, 7 only
    assert fnmatch.fnmatchcase("top.inner.core_x0_y0.matrix.array.pe_7_3", pattern)


def test_figures_are_recorded_for_a_fresh_clone(tmp_path, monkeypatch):
    record = tmp_path / "figures.json"
    record.write_text(json.dumps({"synth.matrix.8x8.ecp5.fmax_mhz": 159.85}))
    monkeypatch.setattr(run, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(run, "FIGURES_RECORD", record)
    monkeypatch.setattr(run, "synthesise",
                        lambda target, reuse_placement=False, seed=run.SEED: {f"synth.{target.name}.fmax_mhz": 50.0})
    run.main(["chip"])
    figures = json.loads(record.read_text())
    assert figures == {"synth.matrix.8x8.ecp5.fmax_mhz": 159.85, "synth.chip.8x8.ecp5.fmax_mhz": 50.0}
    assert json.loads((tmp_path / "build" / "synth.json").read_text()) == {"synth.chip.8x8.ecp5.fmax_mhz": 50.0}


def test_unknown_target_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(run, "FIGURES_RECORD", tmp_path / "figures.json")
    monkeypatch.setattr(run, "synthesise",
                        lambda target, reuse_placement=False, seed=run.SEED: pytest.fail("ran a target"))
    with pytest.raises(SystemExit) as exit_info:
        run.main(["no-such-block"])
    assert exit_info.value.code == 2 and "no target matches no-such-block" in capsys.readouterr().err
    assert not (tmp_path / "figures.json").exists() and not (tmp_path / "build").exists()


def test_chip_routing_starts_from_the_kept_placement(tmp_path):
    """Placement writes the placed netlist; routing reads it without packing or placing again."""
    place, route = run.nextpnr_commands(_chip_target(), run.DEVICES["ecp5"], tmp_path)
    placed = str(tmp_path / "placed.json")
    assert "--no-route" in place[0] and place[0][place[0].index("--write") + 1] == placed
    assert route[0][route[0].index("--json") + 1] == placed
    assert {"--no-pack", "--no-place", "--report"} <= set(route[0])
    plain = next(t for t in run.TARGETS if t.name == "matrix.8x8.ecp5")
    [(single, _)] = run.nextpnr_commands(plain, run.DEVICES["ecp5"], tmp_path)
    assert "--no-route" not in single and "--report" in single
    # both runs place with the seed asked for (another seed is another placement)
    for command, _ in run.nextpnr_commands(_chip_target(), run.DEVICES["ecp5"], tmp_path, seed=7):
        assert command[command.index("--seed") + 1] == "7"


def test_routing_run_gets_the_router_it_names(tmp_path):
    """nextpnr takes the settings saved in a placed netlist over its command line: the flow
    writes the routing run's router into the netlist first."""
    placed = tmp_path / "placed.json"
    placed.write_text(json.dumps({"modules": {"top": {"settings": {"router": "router1", "seed": "1"}}}}))
    _, route = run.nextpnr_commands(_chip_target(), run.DEVICES["ecp5"], tmp_path)
    command = [c for c in route[0] if c not in ("--router", "router1", "router2")]
    assert not run.set_router(placed, command)                  # router1 unless named
    assert run.set_router(placed, [*command, "--router", "router2"])
    assert json.loads(placed.read_text())["modules"]["top"]["settings"] == {"router": "router2", "seed": "1"}
    assert not run.set_router(placed, [*command, "--router", "router2"])


def _netlist(lsr_of_ffs: dict[int, int]) -> dict:
    """A placed netlist with ``count`` flip-flops whose LSR is net bit ``bit``."""
    cells, n = {}, 0
    for bit, count in lsr_of_ffs.items():
        for _ in range(count):
            cells[f"ff{n}"] = {"type": "TRELLIS_FF", "connections": {"LSR": [bit], "Q": [1000 + n]}}
            n += 1
    cells["lut"] = {"type": "LUT4", "connections": {"A": [3], "Z": [4]}}
    return {"modules": {"top": {"cells": cells, "netnames": {
        "rst": {"bits": [2]}, "core.flush": {"bits": [3]}, "core.other": {"bits": [5]}, "$auto": {"bits": [4]}}}}}


def test_heavy_lsr_nets_move_to_global_networks(tmp_path):
    placed = tmp_path / "placed.json"
    placed.write_text(json.dumps(_netlist({2: 10, 3: 30, 5: 2})))
    assert run.lsr_nets(placed) == [("core.flush", 30), ("rst", 10), ("core.other", 2)]
    assert run.promote_reset(placed, "X67/Y0/TDCC2", reset="core.flush") == 30
    assert run.promote_reset(placed, "X67/Y0/TDCC2", reset="core.flush") == 0     # once
    top = json.loads(placed.read_text())["modules"]["top"]
    dcca = top["cells"]["$gbuf$core.flush"]
    assert dcca["type"] == "DCCA" and dcca["connections"]["CLKI"] == [3]
    (glb,) = dcca["connections"]["CLKO"]
    moved = [c for c in top["cells"].values() if c["type"] == "TRELLIS_FF" and c["connections"]["LSR"] == [glb]]
    assert len(moved) == 30
    assert top["cells"]["lut"]["connections"]["A"] == [3]     # a LUT input of the net stays on the fabric
    assert top["netnames"]["$glbnet$core.flush"]["bits"] == [glb]
    assert run.lsr_nets(placed)[0] == ("$glbnet$core.flush", 30)
