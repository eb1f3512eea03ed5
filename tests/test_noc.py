"""The network-on-chip on Verilator: routers, meshes, the request + response pair."""

import pytest

from rtl.noc.mesh import Mesh, NoC
from rtl.noc.router import Router
from scoville.flow import Design, run_cocotb


def request_response_noc(networks, **params):
    """The NoC; ``networks`` only tells the testbench the port prefixes."""
    return NoC(**params)


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
