"""The core's SRAM bounds check on Verilator, against the functional simulator's rule
(testbench/test_bounds.py)."""

import pytest

from rtl.core.bounds import BoundsCheck
from scoville.flow import Design, run_cocotb


@pytest.mark.parametrize("spad_bytes,acc_words", [(32 * 1024, 32 * 1024), (16 * 1024, 4096)])
def test_bounds_check(spad_bytes, acc_words):
    design = Design(f"bounds_s{spad_bytes}_a{acc_words}", BoundsCheck,
                    {"spad_bytes": spad_bytes, "acc_words": acc_words})
    run_cocotb(design, "testbench.test_bounds")


@pytest.mark.parametrize("bad", [{"spad_bytes": 0, "acc_words": 16}, {"spad_bytes": 16, "acc_words": 1.5}])
def test_bounds_check_rejects_bad_parameters(bad):
    with pytest.raises(ValueError, match="spad_bytes|acc_words"):
        BoundsCheck(**bad)
