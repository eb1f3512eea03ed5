"""The DMA subsystem on Verilator: engine, AXI4 master, SRAMs, against a numpy model of transfers."""

import pytest

from rtl.dma.subsystem import DmaSubsystem
from scoville.flow import Design, run_cocotb
from testbench.dma_model import BACKDOOR

CONFIGS = {
    64: {"data_width": 64, "spad_depth": 1024, "acc_depth": 128, "lanes": 8, "banks": 2,
         "max_outstanding": 8, "rows_in_flight": 16},
    128: {"data_width": 128, "spad_depth": 512, "acc_depth": 64, "lanes": 16, "banks": 4,
          "max_outstanding": 4, "rows_in_flight": 8},
}


def dma_design(width: int) -> Design:
    return Design(f"dma_{width}b", DmaSubsystem, CONFIGS[width], public=BACKDOOR)


@pytest.mark.parametrize("width", [64, 128])
def test_dma_directed(width):
    run_cocotb(dma_design(width), "testbench.test_dma",
               testcase=["long_transfers_cross_pages", "bus_errors_stop_cleanly", "out_of_window_makes_no_access",
                         "bursts_in_flight", "descriptors_back_to_back"],
               test_name="directed")


@pytest.mark.parametrize("width", [64, 128])
def test_dma_fuzz(width):
    run_cocotb(dma_design(width), "testbench.test_dma", testcase="fuzz_descriptors", test_name="fuzz",
               extra_env={"SCOVILLE_DESCRIPTORS": "150", "SCOVILLE_SEED": "7"})


@pytest.mark.slow
@pytest.mark.parametrize("width,latency", [(64, 0), (64, 120), (128, 60)])
def test_dma_fuzz_thousands(width, latency):
    run_cocotb(dma_design(width), "testbench.test_dma", testcase="fuzz_descriptors",
               test_name=f"fuzz_long_lat{latency}",
               extra_env={"SCOVILLE_DESCRIPTORS": "2000", "SCOVILLE_LATENCY": str(latency)})


def model_design(width: int) -> Design:
    from rtl.sim.dma_system import DmaWithDram

    # as large as the AxiRam of the testbench, so one seed gives the same descriptors on both
    return Design(f"dma_dram_{width}b", DmaWithDram, {**CONFIGS[width], "dram_bytes": 1 << 18}, public=BACKDOOR)


@pytest.mark.parametrize("width", [64])
def test_dram_model_matches_axi_ram(width, tmp_path):
    """The hardware DRAM model and AxiRam run the same 100 random descriptors (one seed, no
    injected errors) to the same memory contents, each checked against the numpy model after
    every descriptor; DECERR beyond the model's memory."""
    import json

    runs = {}
    for name, design in (("axi_ram", dma_design(width)), ("model", model_design(width))):
        out = tmp_path / f"{name}.json"
        run_cocotb(design, "testbench.test_dma", testcase="fuzz_descriptors", test_name=f"same_{name}",
                   extra_env={"SCOVILLE_DESCRIPTORS": "100", "SCOVILLE_LATENCY": "40", "SCOVILLE_SEED": "7",
                              "SCOVILLE_BUS_ERRORS": "0", "SCOVILLE_FUZZ_OUT": str(out)})
        runs[name] = json.loads(out.read_text())
    assert runs["axi_ram"] == runs["model"], runs
    run_cocotb(model_design(width), "testbench.test_dma", testcase="dram_model_decode_error", test_name="decerr")


def test_bus_efficiency_bar():
    """Contiguous 64 KiB transfers at memory latency 64 reach >= 0.95 of the 64-bit bus."""
    import json
    import tempfile
    from pathlib import Path

    from scripts.bench_dma import bench_design

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        run_cocotb(bench_design(64), "testbench.test_dma", testcase="bench", test_name="bar",
                   extra_env={"SCOVILLE_BENCH_OUT": str(out), "SCOVILLE_LATENCIES": "64"})
        figures = json.loads(out.read_text())
    for direction in ("read", "write"):
        assert figures[f"dma.bus_efficiency.{direction}.64b.lat64"] >= 0.95, figures


def test_srams_shared_and_accumulating():
    """Scratchpad double buffering with DMA, matrix and vector at once; accumulator RMW."""
    run_cocotb(dma_design(64), "testbench.test_sram", test_name="sram")
