"""Packing Python values into the bits of Amaranth shapes and ``data`` layouts, and back.

Shared by the testbenches (stream payloads) and the compiler (instruction words), so both read
a layout the way the RTL does: first field in the least significant bits.
"""

from __future__ import annotations

from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["pack", "unpack"]


def _shape(field_shape) -> Any:
    return field_shape if isinstance(field_shape, data.Layout) else Shape.cast(field_shape)


def pack(layout, value) -> int:
    """Pack nested dicts/lists/ints into the integer bits of an Amaranth shape or layout."""
    shape = _shape(layout)
    if isinstance(shape, data.ArrayLayout):
        out = 0
        elem_width = Shape.cast(shape.elem_shape).width
        for n, item in enumerate(value):
            out |= pack(shape.elem_shape, item) << (n * elem_width)
        return out
    if isinstance(shape, data.StructLayout):
        out = 0
        for name, field in shape:
            out |= pack(field.shape, value[name]) << field.offset
        return out
    return int(value) & ((1 << shape.width) - 1)


def unpack(layout, bits: int):
    """Inverse of :func:`pack`: nested dicts/lists of Python ints (signed where the shape is)."""
    shape = _shape(layout)
    if isinstance(shape, data.ArrayLayout):
        elem_width = Shape.cast(shape.elem_shape).width
        return [unpack(shape.elem_shape, (bits >> (n * elem_width)) & ((1 << elem_width) - 1))
                for n in range(shape.length)]
    if isinstance(shape, data.StructLayout):
        return {name: unpack(field.shape, (bits >> field.offset) & ((1 << Shape.cast(field.shape).width) - 1))
                for name, field in shape}
    bits &= (1 << shape.width) - 1
    if shape.signed and bits >> (shape.width - 1):
        bits -= 1 << shape.width
    return bits
