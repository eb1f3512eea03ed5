"""The network-on-chip on Verilator: routers, meshes, the request + response pair."""

import pytest

from rtl.noc.interface import NetworkInterface
from rtl.noc.mesh import Mesh, NoC
from rtl.noc.router import Router
from rtl.noc.system import MemoryNoC
from rtl.noc.traffic import TrafficLoopback, TrafficMesh
from scoville.flow import Design, run_cocotb


def request_response_noc(networks, **params):
    """The NoC; ``networks`` only tells the testbench the port prefixes."""
    return NoC(**params)


@pytest.mark.slow   # make test keeps the same testbench on the 3 x 3 NoC, and the 4 x 4 mesh in the soak
def test_mesh_python_traffic():
    """4 x 4 mesh, 64-bit flits: every pattern from Python at every port, scoreboarded."""
    params = {"width": 4, "height": 4, "flit_width": 64, "depth": 4}
    run_cocotb(Design("mesh_4x4_f64_d4", Mesh, params), "testbench.test_noc")


def test_noc_request_and_response_networks_with_chosen_tiles():
    """Both networks of a 3 x 3 NoC with tiles at four coordinates, 32-bit flits, 2-flit FIFOs."""
    params = {"width": 3, "height": 3, "flit_width": 32, "depth": 2, "networks": list(NoC.NETWORKS),
              "tiles": [[0, 0], [2, 1], [1, 2], [2, 2]]}
    run_cocotb(Design("noc_3x3_sparse_f32_d2", request_response_noc, params), "testbench.test_noc")


@pytest.mark.parametrize("bad", [{"x": 16}, {"y": -1}, {"depth": 1}, {"flit_width": 16}])
def test_router_rejects_bad_parameters(bad):
    params = {"x": 0, "y": 0} | bad
    with pytest.raises(ValueError, match="x|y|depth|flit_width"):
        Router(**params)


@pytest.mark.parametrize("bad", [{"width": 0}, {"height": 17}, {"tiles": [(3, 0)]}, {"tiles": [(0, 0), (0, 0)]}])
def test_mesh_rejects_bad_parameters(bad):
    params = {"width": 2, "height": 2} | bad
    with pytest.raises(ValueError, match="width|height|tile"):
        Mesh(**params)


@pytest.mark.parametrize("bad", [{"buffer_beats": 0}, {"packet_beats": 0}, {"buffer_beats": 8, "packet_beats": 9},
                                 {"flit_width": 64}])
def test_network_interface_rejects_bad_parameters(bad):
    with pytest.raises(ValueError, match="buffer_beats|packet_beats|flit_width"):
        NetworkInterface(0, 0, 1, 0, **bad)


def traffic_mesh_design(width: int = 4, height: int = 4, flit_width: int = 64, depth: int = 8) -> Design:
    params = {"width": width, "height": height, "flit_width": flit_width, "depth": depth}
    return Design(f"traffic_mesh_{width}x{height}_f{flit_width}_d{depth}", TrafficMesh, params)


def test_mesh_soak_hardware_traffic():
    """4 x 4 mesh: 25,000 packets of 1-16 flits, every pattern at and past saturation, checked in
    hardware; and the uniform-random saturation bar (>= 0.5 flits/tile/cycle)."""
    run_cocotb(traffic_mesh_design(), "testbench.test_noc_traffic",
               testcase=["short_clean_run", "soak", "saturation_bar"], test_name="soak")


@pytest.mark.slow
def test_mesh_long_soak_hardware_traffic():
    """The same with 500,000 packets."""
    run_cocotb(traffic_mesh_design(), "testbench.test_noc_traffic", testcase="soak", test_name="long_soak",
               extra_env={"SCOVILLE_SOAK_PACKETS": "500000"})


def test_cores_reach_axi_memory_through_the_noc():
    """Three cores of a 3 x 2 NoC write and read AxiRam through the memory tile, byte for byte, and
    write into and read from the scratchpad of one of them."""
    params = {"width": 3, "height": 2, "cores": [[0, 0], [1, 1], [0, 1]], "memory": [2, 0],
              "scratchpads": [[1, 1]], "spad_depth": 256}
    run_cocotb(Design("memory_noc_3x2", MemoryNoC, params), "testbench.test_noc_memory")


def test_traffic_checker_catches_faults():
    """A dropped, duplicated or corrupted flit anywhere in a packet is always flagged."""
    run_cocotb(Design("traffic_loopback_f64", TrafficLoopback, {"flit_width": 64}), "testbench.test_noc_faults")


def dma_noc_design(**interface) -> Design:
    from rtl.sim.dma_noc import DmaNoC
    from testbench.dma_model import BACKDOOR, NOC_STATE

    params = {"width": 3, "height": 2, "cores": [[0, 0], [1, 1], [0, 1]], "memory": [2, 0],
              "spad_depth": 256, "acc_depth": 32, "lanes": 8} | interface
    name = "_".join(["dma_noc_3x2", *(f"{key}{value}" for key, value in interface.items())])
    return Design(name, DmaNoC, params, public=BACKDOOR + NOC_STATE)


def test_dma_engines_reach_axi_memory_through_the_noc():
    """Real DMA engines on three cores of a 3 x 2 NoC, random descriptors (DRAM to DRAM among them)
    from all of them at once into AxiRam through the memory tile, every byte checked against the
    numpy model."""
    run_cocotb(dma_noc_design(), "testbench.test_noc_dma")


@pytest.mark.slow
def test_dma_engines_through_the_noc_thousands():
    """The same with 2000 descriptors per core."""
    run_cocotb(dma_noc_design(), "testbench.test_noc_dma", testcase="descriptors_from_every_core",
               test_name="thousands", extra_env={"SCOVILLE_DESCRIPTORS": "2000"})


@pytest.mark.slow
@pytest.mark.parametrize("seed", [353253793, 824759864])
def test_dma_dram_to_dram_through_the_noc(seed):
    """Seeds whose DRAM-to-DRAM descriptors hung the memory path before the network interface
    buffered read and write data (docs/noc.md, "Known limits"). Both hang that interface within
    150 descriptors (a core's interface mid-write-packet waiting for data that needs the read
    queued behind it, the memory tile inside that packet); 824759864 was also reported to hang a
    variant that held writes back only until their first beat (memory tile with reads pending,
    its read data waiting for the engine, the engine for its write packet)."""
    run_cocotb(dma_noc_design(), "testbench.test_noc_dma", testcase="descriptors_from_every_core",
               test_name=f"dram_to_dram_{seed}", extra_env={"SCOVILLE_SEED": str(seed)})


@pytest.mark.slow
def test_dma_engines_through_the_noc_with_one_packet_buffers():
    """The same fuzz with network-interface buffers of 4 beats and packets as large as the buffer:
    nearly every row is split, a read waits for the whole buffer to drain, and a full write
    buffer holds exactly one packet (the tightest case of the deadlock argument)."""
    run_cocotb(dma_noc_design(buffer_beats=4, packet_beats=4), "testbench.test_noc_dma",
               testcase="descriptors_from_every_core", test_name="one_packet_buffers")
