"""The NoC flit: one definition shared by the routers, the network interfaces and the testbenches.

A flit is ``flit_width`` data bits plus two framing bits, ``head`` and ``tail`` (a one-flit packet
has both). The data of a head flit starts with a :class:`Header` in its least significant bits;
the bits above it (``flit_width - HEADER_BITS``) belong to the packet type. Routers read only the
destination and the framing bits.

Coordinates: ``x`` grows to the east, ``y`` to the south; tile (0, 0) is the north-west corner.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data, enum

__all__ = ["COORD_BITS", "HEADER_BITS", "LENGTH_BITS", "MAX_MESH", "Header", "PacketKind", "flit_layout"]

#: Bits of one mesh coordinate: meshes up to 16 x 16.
COORD_BITS = 4
MAX_MESH = 1 << COORD_BITS
#: Bits of the packet length (in flits, head included): packets of 1 to 255 flits.
LENGTH_BITS = 8


class PacketKind(enum.Enum, shape=4):
    """What a packet carries; the request network carries requests, the response network responses."""

    MEM_READ = 0  #: read request: address and beat count (request network)
    MEM_WRITE = 1  #: write request: address then data flits (request network)
    MEM_READ_DATA = 2  #: read response: data flits (response network)
    MEM_WRITE_ACK = 3  #: write acknowledgement (response network)
    TRAFFIC = 15  #: self-test traffic (rtl/noc/traffic.py)


class Header(data.Struct):
    """The routing header in the low bits of every head flit."""

    dest_x: unsigned(COORD_BITS)
    dest_y: unsigned(COORD_BITS)
    src_x: unsigned(COORD_BITS)
    src_y: unsigned(COORD_BITS)
    kind: PacketKind
    length: unsigned(LENGTH_BITS)


HEADER_BITS = Header.as_shape().size


def flit_layout(flit_width: int) -> data.StructLayout:
    """The layout of one flit with ``flit_width`` data bits (at least :data:`HEADER_BITS`)."""
    if not isinstance(flit_width, int) or flit_width < HEADER_BITS:
        raise ValueError(f"flit_width must be an integer of at least {HEADER_BITS}, got {flit_width!r}")
    return data.StructLayout({"data": unsigned(flit_width), "head": 1, "tail": 1})
