"""Packets that carry the generic memory port (:mod:`rtl.dma.port`) across the NoC.

Shared by the network interface at a core (:mod:`rtl.noc.interface`) and the memory tile
(:mod:`rtl.noc.memory_tile`). Data layouts of the flits, least significant bits first:

=================  ==================  =========================================================
packet (network)   flit                data
=================  ==================  =========================================================
MEM_READ (req)     head                ``Header``, ``beats``, ``last`` (0)
                   2nd (tail)          ``addr``
MEM_WRITE (req)    head                ``Header``, ``beats``, ``last``
                   2nd                 ``addr``
                   3rd... (last tail)  ``data``, ``strb``: one per beat
MEM_READ_DATA      head                ``Header``, ``beats``, ``last`` (0)
(resp)             2nd... (last tail)  ``data``, ``resp``: one per beat; on SLVERR/DECERR the
                                       ``data`` field carries the beat's fault address instead
MEM_WRITE_ACK      head (tail)         ``Header``, ``resp``, ``fault_addr``, ``last``
(resp)
=================  ==================  =========================================================

A network interface splits a port request into packets of at most its ``packet_beats`` beats
(:class:`rtl.noc.interface.NetworkInterface`), so that it can buffer a packet's read data or
write data whole. Read data needs no reassembly: the beats of successive packets are the
request's beats in order. A write needs one response per port request, so ``last`` marks the
packet that ends its request; the memory tile returns it in that packet's acknowledgement, and
the interface merges the acknowledgements up to the one with ``last`` into one response (the
first error wins). The memory tile serves a packet of any length as one request on its port;
``Header.length`` is the flit count when it fits in 8 bits and 0 ("long packet: the tail flag
ends it") otherwise. Packets between one core and one memory tile follow one XY path and the
memory tile answers in order, so responses return in request order, as the memory port requires.
"""

from amaranth.hdl import Mux, unsigned
from amaranth.lib import data

from rtl.dma.port import BEATS_BITS, Resp
from rtl.noc.flit import LENGTH_BITS, Header

__all__ = ["memory_flit_width", "head_layout", "ack_layout", "read_data_layout", "write_data_layout",
           "packet_length"]


def memory_flit_width(addr_width: int, data_width: int) -> int:
    """The narrowest flit that carries every memory packet of this port."""
    return max(head_layout().size, ack_layout(addr_width).size, addr_width, data_width + 2,
               data_width + data_width // 8)


def head_layout() -> data.StructLayout:
    """The head flit of every packet but the acknowledgement; ``last`` only means something in
    ``MEM_WRITE`` (this packet ends its port request)."""
    return data.StructLayout({"header": Header, "beats": unsigned(BEATS_BITS), "last": 1})


def ack_layout(addr_width: int) -> data.StructLayout:
    """``MEM_WRITE_ACK``: ``last`` is that of the ``MEM_WRITE`` it acknowledges."""
    return data.StructLayout({"header": Header, "resp": Resp, "fault_addr": unsigned(addr_width), "last": 1})


def read_data_layout(data_width: int) -> data.StructLayout:
    return data.StructLayout({"data": unsigned(data_width), "resp": Resp})


def write_data_layout(data_width: int) -> data.StructLayout:
    return data.StructLayout({"data": unsigned(data_width), "strb": unsigned(data_width // 8)})


def packet_length(flits):
    """``Header.length`` for a packet of ``flits`` flits (0 when it does not fit)."""
    limit = (1 << LENGTH_BITS) - 1
    return Mux(flits > limit, 0, flits[:LENGTH_BITS])
