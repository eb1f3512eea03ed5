"""The chip (one core, the network-on-chip, the memory tile, the host registers) on Verilator:
programs from the DRAM model against the functional simulator, fault handling and the host
interface (testbench/test_core.py)."""

import pytest

from rtl.sim.core_system import chip_with_dram
from scoville.flow import Design, run_cocotb

CONFIGS = {
    # partial sums for MATMULs of up to 16 rows: the random GEMMs (up to 40) take both paths
    "8x8": {"rows": 8, "columns": 8, "lanes": 8, "spad_bytes": 16 * 1024, "acc_words": 4096, "bus_bytes": 8,
            "dram_bytes": 1 << 16, "watchdog": 4096, "partial_rows": 16},
    # two 8x8 cores (a 3 x 1 mesh with the memory tile)
    "two_8x8": {"rows": 8, "columns": 8, "lanes": 8, "spad_bytes": 16 * 1024, "acc_words": 4096, "bus_bytes": 8,
                "dram_bytes": 1 << 16, "watchdog": 4096, "mesh_width": 2},
    # two RoPE pairs a cycle (the 8x8 FPGA chip computes one); requantization through the 2-lane
    # vector unit (the 8x8 core's goes through the wide requantizer); no partial sums in the
    # matrix unit; instructions fetched two at a time (the chip's default is eight)
    "4x4": {"rows": 4, "columns": 4, "lanes": 4, "spad_bytes": 16 * 1024, "acc_words": 4096, "bus_bytes": 8,
            "dram_bytes": 1 << 16, "watchdog": 4096, "rope_pairs": 2, "wide_requant": False, "partial_rows": 0,
            "fetch_burst": 2},
}


def core_design(name: str) -> Design:
    # the testbench reaches only the ports and the DRAM backdoor, so the internals stay private
    # (about three times faster in Verilator)
    return Design(f"core_{name}", chip_with_dram, CONFIGS[name])


# the 4x4 core (a second Verilator build) runs in make test-full
CORES = ["8x8", pytest.param("4x4", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", CORES)
def test_core_gemm_programs(name):
    run_cocotb(core_design(name), "testbench.test_core",
               testcase=["load_store_round_trip", "gather_rows", "gemm_programs", "back_to_back_matmuls",
                         "back_to_back_loads", "back_to_back_gather_rows", "one_row_tiles"],
               test_name="programs")


@pytest.mark.parametrize("name", CORES)
def test_core_vector_instructions(name):
    run_cocotb(core_design(name), "testbench.test_core",
               testcase=["vector_instructions", "vector_chains", "rope_chunks", "attn_scale_rows", "scale_mul_rows",
                         "requant_rows", "fold_in_the_softmax", "causal_softmax_skips_masked_keys"],
               test_name="vector")


def test_core_rope_pairs_and_unit_requantization():
    """The 4x4 core: V_ROPE two pairs a cycle (the 8x8 FPGA chip's computes one), random heads
    against the functional simulator and the chunks' cost (``rope_chunks``); and the requantizing
    instructions through the vector unit, which has no wide requantizer beside it there. The rest
    of the 4x4 core's vector tests run in make test-full."""
    run_cocotb(core_design("4x4"), "testbench.test_core",
               testcase=["rope_chunks", "vector_instructions", "requant_rows"],
               test_name="rope", extra_env={"SCOVILLE_OPCODE": "V_ROPE,V_REQUANT,V_DEQUANT,V_FOLD_V,V_ADD",
                                            "SCOVILLE_ROUNDS": "4"})


def test_core_faults():
    run_cocotb(core_design("8x8"), "testbench.test_core", testcase=["faults_stop_the_core", "host_registers"],
               test_name="faults")


@pytest.mark.slow   # a third Verilator build of the chip, about 3 minutes: make test-full
def test_two_cores_run_at_once():
    run_cocotb(core_design("two_8x8"), "testbench.test_core", testcase=["cores_run_at_once", "host_registers"],
               test_name="cores")


def test_partial_rows_must_be_zero_or_a_power_of_two():
    """The matrix unit's partial sums (``ChipConfig.partial_rows``) are 0 (none) or a power of two
    of rows; anything else is refused with the field's name, by the config and by the unit."""
    from rtl.core.matrix_unit import MatrixUnit
    from scoville.config import ChipConfig

    for bad in (3, -1, 1 << 17, 2.0):
        with pytest.raises(ValueError, match="partial_rows"):
            ChipConfig(partial_rows=bad)
    for bad in (3, -2):
        with pytest.raises(ValueError, match="partial_rows"):
            MatrixUnit(partial_rows=bad)
    assert ChipConfig(partial_rows=0).partial_rows == 0 and MatrixUnit(partial_rows=0).partial_rows == 0


def test_fetch_burst_must_fit_the_controller():
    """``ChipConfig.fetch_burst`` (instructions per fetch request) is an integer from 1 to 64, as
    the controller takes it; anything else is refused with the field's name."""
    from scoville.config import ChipConfig

    for bad in (0, 65, -1, 8.0):
        with pytest.raises(ValueError, match="fetch_burst"):
            ChipConfig(fetch_burst=bad)
    assert ChipConfig(fetch_burst=1).fetch_burst == 1 and ChipConfig().fetch_burst == 8
