"""The host CSR block on Verilator, driven by cocotbext-axi's AXI4-Lite master."""

from rtl.core.csr import HostCsr
from scoville.flow import Design, run_cocotb


def test_host_csr():
    run_cocotb(Design("host_csr", HostCsr, {"addr_width": 12}), "testbench.test_csr")
