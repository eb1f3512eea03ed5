"""The systolic array on Verilator against golden.ops.matmul (cocotb module testbench.test_matrix)."""

import pytest

from rtl.matrix.systolic import SystolicArray
from scoville.flow import Design, run_cocotb

#: rows, columns, weight rows per beat (the last two, one more Verilator build each, in make test-full)
CONFIGS = [(2, 2, 1), (4, 4, 1), (8, 8, 1), (4, 8, 1), (8, 4, 1), (1, 3, 1), (2, 2, 2), (8, 8, 2),
           pytest.param(4, 8, 2, marks=pytest.mark.slow), pytest.param(16, 4, 2, marks=pytest.mark.slow)]


def _config_id(config) -> str:
    r, c, w = config.values if hasattr(config, "values") else config
    return f"{r}x{c}" + (f"-w{w}" if w > 1 else "")


def array_design(rows: int, columns: int, weight_rows: int = 1) -> Design:
    name = f"systolic_{rows}x{columns}" + (f"_w{weight_rows}" if weight_rows > 1 else "")
    return Design(name, SystolicArray, {"rows": rows, "columns": columns, "weight_rows": weight_rows})


@pytest.mark.parametrize("rows,columns,weight_rows", CONFIGS, ids=[_config_id(c) for c in CONFIGS])
def test_systolic_array(rows, columns, weight_rows):
    run_cocotb(array_design(rows, columns, weight_rows), "testbench.test_matrix",
               testcase=["small_gemm", "random_shapes_with_stalls", "extreme_values",
                         "weight_reload_between_short_tiles", "utilization_bar"],
               test_name="default")


@pytest.mark.slow
@pytest.mark.parametrize("rows,columns,weight_rows,gemm",
                         [(8, 8, 1, "256x256x256"), (3, 5, 1, "128x255x255"), (16, 16, 1, "256x256x256"),
                          (8, 8, 2, "256x256x256")], ids=["8x8", "3x5", "16x16", "8x8-w2"])
def test_systolic_array_big_shapes(rows, columns, weight_rows, gemm):
    """Shapes up to a few hundred per dimension and the utilization bar (256^3 on 8x8 and 16x16)
    (K and N multiples of R and C: padding is not counted as a stall)."""
    run_cocotb(array_design(rows, columns, weight_rows), "testbench.test_matrix",
               testcase=["random_shapes_with_stalls", "utilization_bar"], test_name="big",
               extra_env={"SCOVILLE_MAX_DIM": "300", "SCOVILLE_GEMM": gemm})


@pytest.mark.filterwarnings("ignore:.*created but never used")
@pytest.mark.parametrize("bad", [{"rows": 0}, {"columns": 65}, {"rows": 2.0}, {"columns": True},
                                 {"weight_rows": 3}, {"rows": 3, "weight_rows": 2}])
def test_systolic_array_rejects_bad_parameters(bad):
    with pytest.raises(ValueError, match="rows|columns"):
        SystolicArray(**bad)
