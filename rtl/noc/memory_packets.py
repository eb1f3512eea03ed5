"""Packets that carry the generic memory port (:mod:`rtl.dma.port`) across the NoC.

Shared by the network interface at a core (:mod:`rtl.noc.interface`) and the memory tile
(:mod:`rtl.noc.memory_tile`). Data layouts of the flits, least significant bits first:

=================  ==================  =========================================================
packet (network)   flit                data
=================  ==================  =========================================================
MEM_READ (req)     head                ``Header``, ``beats``
                   2nd (tail)          ``addr``
MEM_WRITE (req)    head                ``Header``, ``beats``
                   2nd                 ``addr``
                   3rd... (last tail)  ``data``, ``strb``: one per beat
MEM_READ_DATA      head                ``Header``, ``beats``
(resp)             2nd... (last tail)  ``data``, ``resp``: one per beat; on SLVERR/DECERR the
                                       ``data`` field carries the beat's fault address instead
MEM_WRITE_ACK      head (tail)         ``Header``, ``resp``, ``fault_addr``
(resp)
=================  ==================  =========================================================

A request of any length is one packet (the AXI side splits bursts); ``Header.length`` is the flit
count when it fits in 8 bits and 0 ("long packet: the tail flag ends it") otherwise. Packets
between one core and one memory tile follow one XY path and the memory tile answers in order, so
responses return in request order, as the memory port requires.
"""

from amaranth.hdl import Mux, unsigned
from amaranth.lib import data

from rtl.dma.port import BEATS_BITS, Resp
from rtl.noc.flit import HEADER_BITS, LENGTH_BITS, Header

__all__ = ["memory_flit_width", "head_layout", "ack_layout", "read_data_layout", "write_data_layout",
           "packet_length"]


def memory_flit_width(addr_width: int, data_width: int) -> int:
    """The narrowest flit that carries every memory packet of this port."""
    return max(HEADER_BITS + BEATS_BITS, HEADER_BITS + 2 + addr_width, addr_width, data_width + 2,
               data_width + data_width // 8)


def head_layout() -> data.StructLayout:
    return data.StructLayout({"header": Header, "beats": unsigned(BEATS_BITS)})


def ack_layout(addr_width: int) -> data.StructLayout:
    return data.StructLayout({"header": Header, "resp": Resp, "fault_addr": unsigned(addr_width)})


def read_data_layout(data_width: int) -> data.StructLayout:
    return data.StructLayout({"data": unsigned(data_width), "resp": Resp})


def write_data_layout(data_width: int) -> data.StructLayout:
    return data.StructLayout({"data": unsigned(data_width), "strb": unsigned(data_width // 8)})


def packet_length(flits):
    """``Header.length`` for a packet of ``flits`` flits (0 when it does not fit)."""
    limit = (1 << LENGTH_BITS) - 1
    return Mux(flits > limit, 0, flits[:LENGTH_BITS])
