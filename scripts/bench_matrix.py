"""Matrix-engine figures: utilization of GEMMs on the systolic array, and simulation speed.

Utilization = useful MACs (M * K * N of the unpadded GEMM) / (cycles * R * C), with cycles
counted in RTL simulation (Verilator) from the clock edge that accepts the first input beat
(the first weight row) to the edge that hands over the last result row, both included. So the
figure pays for the first weight-tile load and for the pipeline fill and drain. "Always valid /
always ready": the testbench offers a new beat on the weight and activation ports in every cycle
and keeps ``results.ready`` high; ``.bubbles25`` withholds each input beat with probability 0.25
in each cycle (both input ports, fixed seed), results still always ready.

``sim.cycles_per_s.matrix8x8`` is simulated cycles per wall-clock second of the 256^3 GEMM on
the 8x8 array, with the Python testbench driving all three streams every cycle.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rtl.matrix.systolic import SystolicArray
from scoville.flow import Design, run_cocotb

SEED = 1

#: (M, K, N, R, C, input bubble probability)
RUNS = [
    (256, 256, 256, 8, 8, 0.0),
    (64, 64, 64, 8, 8, 0.0),
    (256, 256, 256, 16, 16, 0.0),
    (256, 256, 256, 8, 8, 0.25),
    (64, 64, 64, 8, 8, 0.25),
    (256, 256, 256, 16, 16, 0.25),
]


def measure(m: int, k: int, n: int, rows: int, columns: int, bubbles: float = 0.0) -> dict:
    design = Design(f"systolic_{rows}x{columns}", SystolicArray, {"rows": rows, "columns": columns})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        run_cocotb(design, "testbench.test_matrix", testcase="bench", seed=SEED, test_name="bench",
                   extra_env={"SCOVILLE_GEMM": f"{m}x{k}x{n}", "SCOVILLE_BUBBLES": str(bubbles),
                              "SCOVILLE_BENCH_OUT": str(out), "SCOVILLE_SEED": str(SEED)})
        return json.loads(out.read_text())


def figures() -> dict[str, float]:
    result: dict[str, float] = {}
    for m, k, n, rows, columns, bubbles in RUNS:
        measured = measure(m, k, n, rows, columns, bubbles)
        name = f"matrix.util.{m}x{k}x{n}.{rows}x{columns}"
        if bubbles:
            name += f".bubbles{round(bubbles * 100)}"
        result[name] = round(measured["utilization"], 6)
        result[name.replace(".util.", ".cycles.", 1)] = measured["cycles"]
        if (m, k, n, rows, columns, bubbles) == (256, 256, 256, 8, 8, 0.0):
            result["sim.cycles_per_s.matrix8x8"] = round(measured["cycles_per_s"])
    return result
