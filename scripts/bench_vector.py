"""Vector-unit figures: steady-state elements per cycle of every operation, from RTL simulation.

``vector.elems_per_cycle.<op>.C<lanes>``: rows of 1024 elements; ``...C<lanes>.row64``: rows of
64. Each run streams several rows of one instruction back to back with every stream always valid
and always ready, and counts cycles (Verilator) between the last output beat of the first row and
the last output beat of the last row: the rate at which rows follow each other, the figure that
matters for a layer of many rows. ``vector.latency.<op>.C<lanes>`` is the cycles from the start
of the run to the first output beat (pipeline depth plus, for a row operation, its first passes).

Bars (``tests/test_vector.py`` asserts them): an operation that reads each row ``p`` times
(``rtl.vector.isa.PASSES``: softmax, RMSNorm, LayerNorm 3; everything here else 1) reaches at least
``0.9 * C / p`` elements per cycle, elementwise operations at least ``0.95 * C``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rtl.vector.isa import PASSES, Op
from rtl.vector.unit import VectorUnit
from scoville.flow import Design, run_cocotb

SEED = 1
LANES = (8, 16)
HEAD_DIM, ROPE_THETA = 64, 10000.0
#: Figure name -> operation.
OPS = {"requant": Op.REQUANT, "add": Op.ADD, "mul": Op.MUL, "max": Op.MAX, "sum": Op.SUM,
       "softmax": Op.SOFTMAX, "layernorm": Op.LAYERNORM, "rmsnorm": Op.RMSNORM, "gelu": Op.GELU,
       "silu": Op.SILU, "rope": Op.ROPE}
#: (row length, rows per run)
SHAPES = ((1024, 4), (64, 16))
ELEMENTWISE_BAR = 0.95
ROW_BAR = 0.9


def vector_design(lanes: int) -> Design:
    return Design(f"vector_c{lanes}", VectorUnit, {"lanes": lanes, "head_dim": HEAD_DIM, "rope_theta": ROPE_THETA})


def bar(op: Op, lanes: int) -> float:
    """The elements-per-cycle bar of an operation."""
    if op in (Op.MAX, Op.SUM, Op.MAX_ABS) or PASSES[op] > 1:
        return ROW_BAR * lanes / PASSES[op]
    return ELEMENTWISE_BAR * lanes


def measure(lanes: int, ops: dict[str, Op] = OPS, shapes=SHAPES) -> dict:
    """Run the throughput test; returns ``{"<OP>.<length>": {"elems_per_cycle", "latency", ...}}``."""
    spec = [[op.name, length, rows] for op in ops.values() for length, rows in shapes]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        run_cocotb(vector_design(lanes), "testbench.test_vector", testcase="throughput", seed=SEED,
                   test_name="bench", extra_env={"SCOVILLE_BENCH": json.dumps(spec),
                                                 "SCOVILLE_BENCH_OUT": str(out), "SCOVILLE_SEED": str(SEED)})
        return json.loads(out.read_text())


def figures() -> dict[str, float]:
    result: dict[str, float] = {}
    for lanes in LANES:
        measured = measure(lanes)
        for name, op in OPS.items():
            for length, _ in SHAPES:
                run = measured[f"{op.name}.{length}"]
                suffix = "" if length == 1024 else f".row{length}"
                result[f"vector.elems_per_cycle.{name}.C{lanes}{suffix}"] = round(run["elems_per_cycle"], 4)
                if length == 1024:
                    result[f"vector.latency.{name}.C{lanes}"] = run["latency"]
    return result
