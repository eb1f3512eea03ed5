"""The generic memory port: what the DMA engine sees of any memory (DRAM, scratchpad, accumulator).

Five streams, written from the initiator's side (the DMA):

* ``read_request``  {addr, beats}: read ``beats`` consecutive bus words from word address ``addr``;
* ``read_response`` {data, resp, fault_addr}: one beat per word, in request order;
* ``write_request`` {addr, beats}: write ``beats`` consecutive words from ``addr``;
* ``write_data``    {data, strb}: the words, in request order, byte strobes per word;
* ``write_response`` {resp, fault_addr}: one per write request, in request order, after its data.

Addresses are byte addresses aligned to the bus word (the low bits are ignored). ``beats`` is a
word count from 1. ``resp`` is the AXI response code; ``fault_addr`` is the byte address of the
first word (reads) or burst (writes) that failed when ``resp`` is SLVERR or DECERR.

An adapter turns this port into AXI4 (:mod:`rtl.dma.axi_master`), into SRAM accesses
(:mod:`rtl.memory`), or later into NoC packets; the DMA does not know which.
"""

from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Resp", "MemoryPortSignature", "BEATS_BITS"]

#: Width of the ``beats`` field: enough for the longest row a descriptor can describe.
BEATS_BITS = 20


class Resp(enum.Enum, shape=2):
    """AXI response codes, used on every memory port."""

    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


def request_layout(addr_width: int) -> data.StructLayout:
    return data.StructLayout({"addr": addr_width, "beats": BEATS_BITS})


def read_response_layout(addr_width: int, data_width: int) -> data.StructLayout:
    return data.StructLayout({"data": data_width, "resp": Resp, "fault_addr": addr_width})


def write_data_layout(data_width: int) -> data.StructLayout:
    return data.StructLayout({"data": data_width, "strb": data_width // 8})


def write_response_layout(addr_width: int) -> data.StructLayout:
    return data.StructLayout({"resp": Resp, "fault_addr": addr_width})


class MemoryPortSignature(wiring.Signature):
    """The generic memory port, from the initiator's side.

    Parameters
    ----------
    addr_width : int
        Byte-address width.
    data_width : int
        Word width in bits: a power of two, at least 8.
    """

    def __init__(self, addr_width: int, data_width: int):
        if not isinstance(addr_width, int) or not 8 <= addr_width <= 64:
            raise ValueError(f"addr_width must be an integer in 8..64, got {addr_width!r}")
        if not isinstance(data_width, int) or data_width < 8 or data_width & (data_width - 1):
            raise ValueError(f"data_width must be a power of two >= 8, got {data_width!r}")
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "read_request": Out(stream.Signature(request_layout(addr_width))),
            "read_response": In(stream.Signature(read_response_layout(addr_width, data_width))),
            "write_request": Out(stream.Signature(request_layout(addr_width))),
            "write_data": Out(stream.Signature(write_data_layout(data_width))),
            "write_response": In(stream.Signature(write_response_layout(addr_width))),
        })

    def __eq__(self, other):
        return (isinstance(other, MemoryPortSignature) and other.addr_width == self.addr_width
                and other.data_width == self.data_width)

    def __repr__(self):
        return f"MemoryPortSignature({self.addr_width}, {self.data_width})"
