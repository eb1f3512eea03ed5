"""numpy model of a DMA descriptor, and random descriptors for the fuzz test."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from rtl.dma.descriptor import DmaError, Space

#: What the DMA testbenches reach inside the design, kept visible in their Verilator builds
#: (``Design.public``; the rest stays private): the SRAM banks and the DRAM model's array, read and
#: written by backdoor; in the NoC, each interface's requests (which the out-of-window test
#: counts) and the interface's and memory tile's state that a timeout names.
BACKDOOR = ("spad_bank*", "acc_bank*", "storage")
NOC_STATE = ("request__valid", "port__*__valid", "request_fsm_state", "response_fsm_state", "credits",
             "w_level", "reads_owed", "writes_owed")


def row_starts(base: int, count1: int, count2: int, stride0: int, stride1: int) -> list[int]:
    return [base + p * stride1 + r * stride0 for p in range(count2) for r in range(count1)]


def extent(desc: dict, side: str) -> tuple[int, int]:
    """First and last byte a descriptor touches on ``side`` ('src' or 'dst')."""
    c0, c1, c2 = desc["count"]
    row = c0 << desc["elem_log2"]
    stride = desc[f"{side}_stride"]
    start = desc[side]
    return start, start + (c1 - 1) * stride[0] + (c2 - 1) * stride[1] + row - 1


def expected_error(desc: dict, window: tuple[int, int], sizes: dict[int, int]) -> DmaError:
    """The completion code the window check must give (bus errors aside)."""
    if desc["src_space"] == 3 or desc["dst_space"] == 3:
        return DmaError.BAD_SPACE
    if 0 in desc["count"]:
        return DmaError.OK
    for side, code in (("src", DmaError.SRC_WINDOW), ("dst", DmaError.DST_WINDOW)):
        first, last = extent(desc, side)
        space = desc[f"{side}_space"]
        if space == Space.DRAM.value:
            ok = first >= window[0] and last < window[1]
        else:
            ok = last < sizes[space]
        if not ok:
            return code
    return DmaError.OK


def apply(desc: dict, memories: dict[int, np.ndarray]) -> None:
    """Perform the transfer on byte arrays, one per space, row by row in issue order."""
    c0, c1, c2 = desc["count"]
    row = c0 << desc["elem_log2"]
    src = memories[desc["src_space"]]
    dst = memories[desc["dst_space"]]
    srcs = row_starts(desc["src"], c1, c2, *desc["src_stride"])
    dsts = row_starts(desc["dst"], c1, c2, *desc["dst_stride"])
    rows = [src[s:s + row].copy() for s in srcs]  # all reads before writes: no overlap in tests
    for d, data in zip(dsts, rows, strict=True):
        dst[d:d + row] = data


def stray_bytes(desc: dict, before: dict[int, np.ndarray], after: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """After a transfer stopped by an error: where a byte holds neither its old value nor a value
    one of the descriptor's rows writes there (rows may overlap on the destination, so a byte
    may legitimately keep an earlier row's value when a later row was cut off)."""
    c0, c1, c2 = desc["count"]
    row = c0 << desc["elem_log2"]
    src = before[desc["src_space"]]
    stray = {space: after[space] != before[space] for space in after}
    dst_space = desc["dst_space"]
    got = after[dst_space]
    srcs = row_starts(desc["src"], c1, c2, *desc["src_stride"])
    dsts = row_starts(desc["dst"], c1, c2, *desc["dst_stride"])
    for s, d in zip(srcs, dsts, strict=True):
        stray[dst_space][d:d + row] &= got[d:d + row] != src[s:s + row]
    return stray


def descriptor(src: int, dst: int, src_space: Space, dst_space: Space, count, elem_log2: int = 0,
               src_stride=(0, 0), dst_stride=(0, 0)) -> dict:
    count = list(count) + [1] * (3 - len(count))
    return {"src": src, "dst": dst, "src_space": src_space.value, "dst_space": dst_space.value,
            "elem_log2": elem_log2, "count": count, "src_stride": list(src_stride),
            "dst_stride": list(dst_stride)}


@dataclass
class Region:
    lo: int
    hi: int  # exclusive


def random_side(rng: random.Random, row: int, c1: int, c2: int, region: Region) -> tuple[int, list[int]] | None:
    """A start and strides so that the block fits in ``region`` (None if it cannot)."""
    for _ in range(20):
        kind = rng.random()
        if kind < 0.3:
            s0 = row
        elif kind < 0.6:
            s0 = row + rng.randrange(0, 64)
        elif kind < 0.8:
            s0 = rng.randrange(0, 2 * row + 1)
        else:
            s0 = rng.randrange(0, 4096)
        s1 = s0 * c1 + rng.choice([0, 0, rng.randrange(0, 512)])
        if rng.random() < 0.1:
            s1 = rng.randrange(0, 4096)
        span = (c1 - 1) * s0 + (c2 - 1) * s1 + row
        if span <= region.hi - region.lo:
            return rng.randrange(region.lo, region.hi - span + 1), [s0, s1]
    return None


def random_descriptor(rng: random.Random, regions: dict[int, Region], max_row: int = 300) -> dict:
    """A random in-bounds descriptor; within one space, source and destination take different
    halves of the region (the engine does not order a row's writes after later rows' reads)."""
    while True:
        src_space, dst_space = rng.choice(list(regions)), rng.choice(list(regions))
        src_region, dst_region = regions[src_space], regions[dst_space]
        if src_space == dst_space:
            middle = (src_region.lo + src_region.hi) // 2
            low, high = Region(src_region.lo, middle), Region(middle, src_region.hi)
            src_region, dst_region = (low, high) if rng.random() < 0.5 else (high, low)
        elem_log2 = rng.randrange(4)
        c0 = rng.randrange(1, max(2, (max_row >> elem_log2) + 1))
        if rng.random() < 0.2:
            c0 = rng.randrange(1, 4)
        c1 = rng.choice([1, 1, rng.randrange(1, 8)])
        c2 = rng.choice([1, 1, rng.randrange(1, 4)])
        row = c0 << elem_log2
        src = random_side(rng, row, c1, c2, src_region)
        dst = random_side(rng, row, c1, c2, dst_region)
        if src is None or dst is None:
            continue
        return {"src": src[0], "dst": dst[0], "src_space": src_space, "dst_space": dst_space,
                "elem_log2": elem_log2, "count": [c0, c1, c2], "src_stride": src[1], "dst_stride": dst[1]}
