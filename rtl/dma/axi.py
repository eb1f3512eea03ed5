"""The AXI4 bus signature (full AXI4, one ID), with AXI's own member names.

Members are named as in the AXI specification (``awvalid``, ``awaddr``, ..., ``rlast``) so that a
port ``m_axi`` flattens to ``m_axi__awvalid`` etc., which cocotbext-axi binds with
``AxiBus.from_prefix(dut, "m_axi", bus_separator="__")``.
"""

from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Axi4Signature", "Burst"]


class Burst(enum.Enum, shape=2):
    FIXED = 0
    INCR = 1
    WRAP = 2


class Axi4Signature(wiring.Signature):
    """AXI4 from the master's side.

    Parameters
    ----------
    addr_width : int
    data_width : int
        Bits per beat: a power of two from 8 to 1024.
    id_width : int
    """

    def __init__(self, addr_width: int = 32, data_width: int = 64, id_width: int = 1):
        if not isinstance(data_width, int) or data_width < 8 or data_width > 1024 or data_width & (data_width - 1):
            raise ValueError(f"data_width must be a power of two in 8..1024, got {data_width!r}")
        if not isinstance(addr_width, int) or not 12 <= addr_width <= 64:
            raise ValueError(f"addr_width must be an integer in 12..64, got {addr_width!r}")
        if not isinstance(id_width, int) or id_width < 1:
            raise ValueError(f"id_width must be a positive integer, got {id_width!r}")
        self.addr_width, self.data_width, self.id_width = addr_width, data_width, id_width
        members = {}
        for ch in ("aw", "ar"):
            members.update({
                f"{ch}valid": Out(1), f"{ch}ready": In(1), f"{ch}id": Out(id_width),
                f"{ch}addr": Out(addr_width), f"{ch}len": Out(8), f"{ch}size": Out(3),
                f"{ch}burst": Out(2), f"{ch}lock": Out(1), f"{ch}cache": Out(4), f"{ch}prot": Out(3),
            })
        members.update({
            "wvalid": Out(1), "wready": In(1), "wdata": Out(data_width), "wstrb": Out(data_width // 8),
            "wlast": Out(1),
            "bvalid": In(1), "bready": Out(1), "bid": In(id_width), "bresp": In(2),
            "rvalid": In(1), "rready": Out(1), "rid": In(id_width), "rdata": In(data_width),
            "rresp": In(2), "rlast": In(1),
        })
        super().__init__(members)

    def __eq__(self, other):
        return (isinstance(other, Axi4Signature) and (other.addr_width, other.data_width, other.id_width)
                == (self.addr_width, self.data_width, self.id_width))

    def __repr__(self):
        return f"Axi4Signature({self.addr_width}, {self.data_width}, {self.id_width})"
