"""Meshes of routers: one network (:class:`Mesh`) and the request + response pair (:class:`NoC`)."""

from collections.abc import Iterable

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.noc.flit import MAX_MESH, flit_layout
from rtl.noc.router import Port, Router

__all__ = ["Mesh", "NoC", "tile_name"]


def tile_name(x: int, y: int) -> str:
    """The suffix of a tile's port names: ``x1_y2``."""
    return f"x{x}_y{y}"


def _check_mesh(width, height, tiles):
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or not 1 <= value <= MAX_MESH:
            raise ValueError(f"{name} must be an integer in [1, {MAX_MESH}], got {value!r}")
    if tiles is None:
        return [(x, y) for y in range(height) for x in range(width)]
    tiles = [tuple(t) for t in tiles]
    for x, y in tiles:
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"tile {(x, y)!r} lies outside the {width} x {height} mesh")
    if len(set(tiles)) != len(tiles):
        raise ValueError(f"tiles must be distinct, got {tiles!r}")
    return tiles


class Mesh(wiring.Component):
    """A ``width`` x ``height`` mesh of :class:`Router` s with the local ports of ``tiles`` exposed.

    Neighbouring routers are joined by a link in each direction; links that would leave the mesh
    and the local ports of coordinates without a tile are tied off (never valid, never ready).
    A packet addressed outside the mesh or to a coordinate without a tile stalls; senders only
    address tiles.

    Parameters
    ----------
    width, height : int
        Routers in x and in y (1 to 16 each).
    flit_width : int
        Data bits of a flit.
    depth : int
        Flits per router input FIFO.
    tiles : iterable of (x, y), optional
        Coordinates with a tile attached; all of them by default.

    Ports
    -----
    inject_x{x}_y{y} : In(stream.Signature(flit_layout(flit_width)))
        Flits from the tile into the network, one port per tile.
    eject_x{x}_y{y} : Out(stream.Signature(flit_layout(flit_width)))
        Flits from the network to the tile.

    Latency: one cycle per router on the path (Manhattan distance + 1 cycles from ``inject`` to
    ``eject``, with no contention).
    """

    def __init__(self, width: int, height: int, flit_width: int = 64, depth: int = 8,
                 tiles: Iterable[tuple[int, int]] | None = None):
        self.tiles = _check_mesh(width, height, tiles)
        self.width, self.height = width, height
        self.flit_width, self.depth = flit_width, depth
        flit = flit_layout(flit_width)
        members = {}
        for x, y in self.tiles:
            members[f"inject_{tile_name(x, y)}"] = In(stream.Signature(flit))
            members[f"eject_{tile_name(x, y)}"] = Out(stream.Signature(flit))
        super().__init__(members)

    def inject(self, x: int, y: int):
        return getattr(self, f"inject_{tile_name(x, y)}")

    def eject(self, x: int, y: int):
        return getattr(self, f"eject_{tile_name(x, y)}")

    def elaborate(self, platform):
        m = Module()
        routers = {}
        for y in range(self.height):
            for x in range(self.width):
                router = Router(x, y, self.flit_width, self.depth)
                routers[x, y] = m.submodules[f"router_{tile_name(x, y)}"] = router

        steps = {Port.NORTH: (0, -1), Port.EAST: (1, 0), Port.SOUTH: (0, 1), Port.WEST: (-1, 0)}
        opposite = {Port.NORTH: Port.SOUTH, Port.SOUTH: Port.NORTH, Port.EAST: Port.WEST, Port.WEST: Port.EAST}
        for (x, y), router in routers.items():
            for port, (dx, dy) in steps.items():
                neighbour = routers.get((x + dx, y + dy))
                if neighbour is not None:
                    wiring.connect(m, router.port_out(port), neighbour.port_in(opposite[port]))
                else:
                    m.d.comb += [router.port_in(port).valid.eq(0), router.port_out(port).ready.eq(0)]
            if (x, y) in self.tiles:
                wiring.connect(m, wiring.flipped(self.inject(x, y)), router.in_local)
                wiring.connect(m, router.out_local, wiring.flipped(self.eject(x, y)))
            else:
                m.d.comb += [router.in_local.valid.eq(0), router.out_local.ready.eq(0)]
        return m


class NoC(wiring.Component):
    """The chip's network: a request mesh and a response mesh of the same shape.

    Requests (reads, writes) travel on one physical network and responses (read data, write
    acknowledgements) on the other, so a response never waits behind a request that waits for a
    response: together with XY routing this makes the NoC deadlock-free (``docs/noc.md``).

    Parameters are those of :class:`Mesh`.

    Ports
    -----
    request_inject_x{x}_y{y}, response_inject_x{x}_y{y} : In(stream.Signature(flit_layout(flit_width)))
    request_eject_x{x}_y{y}, response_eject_x{x}_y{y} : Out(stream.Signature(flit_layout(flit_width)))
    """

    NETWORKS = ("request", "response")

    def __init__(self, width: int, height: int, flit_width: int = 64, depth: int = 8,
                 tiles: Iterable[tuple[int, int]] | None = None):
        self.tiles = _check_mesh(width, height, tiles)
        self.width, self.height = width, height
        self.flit_width, self.depth = flit_width, depth
        flit = flit_layout(flit_width)
        members = {}
        for network in self.NETWORKS:
            for x, y in self.tiles:
                members[f"{network}_inject_{tile_name(x, y)}"] = In(stream.Signature(flit))
                members[f"{network}_eject_{tile_name(x, y)}"] = Out(stream.Signature(flit))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for network in self.NETWORKS:
            mesh = Mesh(self.width, self.height, self.flit_width, self.depth, self.tiles)
            m.submodules[network] = mesh
            for x, y in self.tiles:
                name = tile_name(x, y)
                wiring.connect(m, wiring.flipped(getattr(self, f"{network}_inject_{name}")), mesh.inject(x, y))
                wiring.connect(m, mesh.eject(x, y), wiring.flipped(getattr(self, f"{network}_eject_{name}")))
        return m
