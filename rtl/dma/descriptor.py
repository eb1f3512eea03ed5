"""DMA descriptors and status: the layouts shared by the engine and by whoever writes descriptors.

A descriptor moves a 3D block of ``count[2] x count[1] x count[0]`` elements of ``2**elem_log2``
bytes. The innermost dimension is contiguous on both sides (a *row* of
``count[0] << elem_log2`` bytes); rows are ``src_stride[0]`` / ``dst_stride[0]`` bytes apart and
planes ``src_stride[1]`` / ``dst_stride[1]`` bytes apart, independently on each side. Addresses,
lengths and strides need no alignment. A count of zero anywhere is an empty transfer (no access,
status OK).
"""

from amaranth.lib import data, enum

__all__ = ["Space", "DmaError", "Descriptor", "Status", "ADDR_BITS", "COUNT_BITS"]

ADDR_BITS = 32
COUNT_BITS = 16


class Space(enum.Enum, shape=2):
    """Which memory an address refers to."""

    DRAM = 0
    SPAD = 1  # scratchpad SRAM (int8 rows)
    ACC = 2  # accumulator SRAM (int32 rows)


class DmaError(enum.Enum, shape=4):
    """Completion code of a descriptor."""

    OK = 0
    SRC_WINDOW = 1  # the source would leave its window (DRAM job window or SRAM size): no access made
    DST_WINDOW = 2  # the same for the destination
    BAD_SPACE = 3  # a space code that does not exist
    READ_SLVERR = 4
    READ_DECERR = 5
    WRITE_SLVERR = 6
    WRITE_DECERR = 7


class Descriptor(data.Struct):
    src: ADDR_BITS
    dst: ADDR_BITS
    src_space: Space
    dst_space: Space
    elem_log2: 2
    count: data.ArrayLayout(COUNT_BITS, 3)
    src_stride: data.ArrayLayout(ADDR_BITS, 2)
    dst_stride: data.ArrayLayout(ADDR_BITS, 2)


class Status(data.Struct):
    """Reported once per descriptor. ``fault_addr``: for a window error, the first address of the
    offending side; for a bus error, the address the memory rejected."""

    error: DmaError
    fault_addr: ADDR_BITS
