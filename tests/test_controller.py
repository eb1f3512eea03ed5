"""The core controller on Verilator: fetch, decode, queues, semaphores, errors, watchdog."""

import pytest

from rtl.core.controller import Controller
from scoville.flow import Design, run_cocotb


@pytest.mark.parametrize("data_width", [64, 128])
def test_controller(data_width):
    design = Design(f"controller_d{data_width}", Controller,
                    {"data_width": data_width, "queue_depth": 4, "burst": 2, "watchdog": 500})
    run_cocotb(design, "testbench.test_controller")


@pytest.mark.parametrize("bad", [{"data_width": 96}, {"queue_depth": 3}, {"burst": 0}, {"watchdog": 1},
                                 {"shared_units": (("load", "fetch"),)}, {"shared_units": (("load",), ("load",))}])
def test_controller_rejects_bad_parameters(bad):
    with pytest.raises(ValueError):
        Controller(**bad)
