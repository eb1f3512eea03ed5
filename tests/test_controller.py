"""The core controller on Verilator: fetch, decode, queues, semaphores, errors, watchdog."""

import pytest

from rtl.core.controller import Controller
from scoville.flow import Design, run_cocotb


@pytest.mark.parametrize("data_width,bounds", [(64, False), (128, False), (64, True)])
def test_controller(data_width, bounds):
    params = {"data_width": data_width, "queue_depth": 4, "burst": 2, "watchdog": 500}
    if bounds:   # with the SRAM bounds check
        params.update(spad_bytes=1 << 16, acc_words=1 << 16)
    design = Design(f"controller_d{data_width}{'_bounds' if bounds else ''}", Controller, params)
    run_cocotb(design, "testbench.test_controller")


@pytest.mark.parametrize("bad", [{"data_width": 96}, {"queue_depth": 3}, {"burst": 0}, {"watchdog": 1},
                                 {"shared_units": (("load", "fetch"),)}, {"shared_units": (("load",), ("load",))},
                                 {"spad_bytes": 1024}])
def test_controller_rejects_bad_parameters(bad):
    with pytest.raises(ValueError):
        Controller(**bad)
