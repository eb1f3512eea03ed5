"""The vector unit on Verilator against golden.ops: every operation, 2/4/8/16 lanes."""

import pytest

from rtl.vector.isa import PASSES, Op
from rtl.vector.unit import VectorUnit
from scoville.flow import run_cocotb
from scripts.bench_vector import OPS, bar, measure, vector_design


def test_vector_unit():
    """Four lanes in the default run (one Verilator build, about two minutes here)."""
    run_cocotb(vector_design(4), "testbench.test_vector")


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [2, 8, 16])
def test_vector_unit_other_widths(lanes):
    run_cocotb(vector_design(lanes), "testbench.test_vector")


@pytest.mark.parametrize("bad", [{"lanes": 0}, {"lanes": 2.5}, {"head_dim": 7}, {"rope_theta": 0.0},
                                 {"queue_depth": 3}, {"divide_bits_per_stage": 5}])
def test_vector_unit_rejects_bad_parameters(bad):
    with pytest.raises(ValueError, match="lanes|head_dim|rope_theta|queue_depth|divide_bits"):
        VectorUnit(**bad)


def test_pass_counts():
    assert {op.name: PASSES[op] for op in Op if PASSES[op] > 1} == {
        "SUM_SQUARES": 2, "QUANTIZE": 2, "SOFTMAX_EXP": 2, "SOFTMAX": 3, "RMSNORM": 3, "LAYERNORM": 3}


@pytest.mark.parametrize("lanes", [4])
def test_vector_throughput_bars(lanes):
    """Every benchmarked operation meets its elements-per-cycle bar on rows of 1024 and of 64
    (cycle counts are deterministic: no stalls)."""
    measured = measure(lanes)
    for name, op in OPS.items():
        for length in (1024, 64):
            rate = measured[f"{op.name}.{length}"]["elems_per_cycle"]
            assert rate >= bar(op, lanes), f"{name} rows of {length}: {rate:.3f} elements/cycle < {bar(op, lanes):.3f}"


def test_golden_row_reductions():
    """The reductions the unit exposes, against plain numpy (their golden contract)."""
    import numpy as np

    from golden import ops

    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 31), 1 << 31, size=(5, 37)) >> rng.integers(0, 31, size=(5, 37))
    x[0] = -(1 << 31)
    assert (ops.row_max(x) == x.max(-1)).all() and (ops.row_sum(x) == x.sum(-1)).all()
    assert (ops.row_max_abs(x) == np.abs(x).max(-1)).all() and ops.row_max_abs(x)[0] == 1 << 31
    v, s = ops.row_sum_squares(x)
    for r in range(len(x)):
        shift = max(int(np.abs(x[r]).max()).bit_length() - 15, 0)
        assert s[r] == shift and v[r] == sum((int(e) >> shift) ** 2 for e in x[r])
