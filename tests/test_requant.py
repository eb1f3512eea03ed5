"""The requantizer on Verilator, against the golden model (proves the hardware flow)."""

import pytest

from rtl.vector.requant import Requantizer
from scoville.flow import Design, run_cocotb


@pytest.mark.parametrize("lanes,out_bits", [(1, 8), (4, 8), (8, 16), (3, 32)])
def test_requantizer(lanes, out_bits):
    design = Design(f"requant_l{lanes}_b{out_bits}", Requantizer, {"lanes": lanes, "out_bits": out_bits})
    run_cocotb(design, "testbench.test_requant")


@pytest.mark.parametrize("bad", [{"lanes": 0}, {"lanes": 2.5}, {"out_bits": 12}])
def test_requantizer_rejects_bad_parameters(bad):
    with pytest.raises(ValueError, match="lanes|out_bits"):
        Requantizer(**bad)
