"""The systolic array on Verilator against golden.ops.matmul (cocotb module testbench.test_matrix)."""

import pytest

from rtl.matrix.systolic import SystolicArray
from scoville.flow import Design, run_cocotb

CONFIGS = [(2, 2), (4, 4), (8, 8), (4, 8), (8, 4), (1, 3)]


def array_design(rows: int, columns: int) -> Design:
    return Design(f"systolic_{rows}x{columns}", SystolicArray, {"rows": rows, "columns": columns})


@pytest.mark.parametrize("rows,columns", CONFIGS, ids=[f"{r}x{c}" for r, c in CONFIGS])
def test_systolic_array(rows, columns):
    run_cocotb(array_design(rows, columns), "testbench.test_matrix",
               testcase=["small_gemm", "random_shapes_with_stalls", "extreme_values",
                         "weight_reload_between_short_tiles", "utilization_bar"],
               test_name="default")


@pytest.mark.slow
@pytest.mark.parametrize("rows,columns,gemm", [(8, 8, "256x256x256"), (3, 5, "128x255x255"),
                                               (16, 16, "256x256x256")], ids=["8x8", "3x5", "16x16"])
def test_systolic_array_big_shapes(rows, columns, gemm):
    """Shapes up to a few hundred per dimension and the utilization bar (256^3 on 8x8 and 16x16)
    (K and N multiples of R and C: padding is not counted as a stall)."""
    run_cocotb(array_design(rows, columns), "testbench.test_matrix",
               testcase=["random_shapes_with_stalls", "utilization_bar"], test_name="big",
               extra_env={"SCOVILLE_MAX_DIM": "300", "SCOVILLE_GEMM": gemm})


@pytest.mark.filterwarnings("ignore:.*created but never used")
@pytest.mark.parametrize("bad", [{"rows": 0}, {"columns": 65}, {"rows": 2.0}, {"columns": True}])
def test_systolic_array_rejects_bad_parameters(bad):
    with pytest.raises(ValueError, match="rows|columns"):
        SystolicArray(**bad)
