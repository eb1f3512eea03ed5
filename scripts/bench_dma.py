"""DMA figures: AXI bus efficiency of the DMA subsystem against the hardware DRAM model.

``dma.bus_efficiency.<read|write>.<bits>b.lat<L>`` = data beats / cycles for a 64 KiB
contiguous transfer (read: DRAM -> scratchpad, write: scratchpad -> DRAM), where data beats is
64 KiB / bus bytes and cycles run from the clock edge that hands the descriptor to the engine to
the edge that hands over its status (window check, memory latency and the last write response
included). The DRAM model (:class:`rtl.sim.dram.DramModel`) answers every burst after ``L``
cycles, pipelined, one beat per cycle. ``...lat<L>.2d64``: 64 KiB as 1024 rows of 64
bytes, 128 bytes apart in DRAM. ``dma.cycles.*`` are the cycle counts. Configuration: 32 AXI bursts
in flight, 32 rows queued in the engine, DRAM model with 32-deep burst queues.

``sim.cycles_per_s.dma<bits>b``: simulated cycles per wall-clock second of eight 64 KiB transfers
with no Python running per cycle (descriptor set by hand, the test sleeps until the status
rises): Verilator with the hardware DRAM model, as a chip-level run sees it.
``...polled``: the same during the measured runs above, where cocotb samples the ports every cycle.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rtl.sim.dma_system import DmaWithDram
from scoville.flow import Design, run_cocotb
from testbench.dma_model import BACKDOOR

SEED = 1
LATENCIES = (0, 64)


def bench_design(data_width: int) -> Design:
    word = data_width // 8
    params = {"data_width": data_width, "spad_depth": (64 * 1024) // word, "acc_depth": 64,
              "lanes": max(2, data_width // 32), "banks": 2, "max_outstanding": 32, "rows_in_flight": 32,
              "dram_bytes": 1 << 17}
    return Design(f"dma_bench_{data_width}b", DmaWithDram, params, public=BACKDOOR)


def measure(data_width: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        run_cocotb(bench_design(data_width), "testbench.test_dma", testcase="bench", seed=SEED, test_name="bench",
                   extra_env={"SCOVILLE_BENCH_OUT": str(out), "SCOVILLE_SEED": str(SEED),
                              "SCOVILLE_LATENCIES": ",".join(map(str, LATENCIES))})
        return json.loads(out.read_text())


def figures() -> dict[str, float]:
    result: dict[str, float] = {}
    for width in (64, 128):
        result.update(measure(width))
    return result
