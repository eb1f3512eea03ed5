"""A five-port wormhole mesh router with XY routing, input FIFOs and round-robin output arbiters."""

from amaranth.hdl import Assert, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.noc.flit import HEADER_BITS, MAX_MESH, Header, flit_layout

__all__ = ["Port", "Router", "legal_turns"]


class Port(enum.Enum):
    """Router ports: the four neighbours and the local tile."""

    NORTH = 0
    EAST = 1
    SOUTH = 2
    WEST = 3
    LOCAL = 4

    @property
    def port_name(self) -> str:
        return self.name.lower()


def legal_turns(port_in: Port) -> tuple[Port, ...]:
    """Outputs that a flit entering through ``port_in`` may leave by under XY routing.

    A flit arriving from the west travels east: it goes on east, turns north or south (X is
    done), or ejects. One arriving from the north or south has finished X already. No U-turns.
    The crossbar and the arbiters are built for these pairs only.
    """
    if port_in is Port.LOCAL:
        return tuple(Port)
    if port_in is Port.WEST:
        return (Port.EAST, Port.NORTH, Port.SOUTH, Port.LOCAL)
    if port_in is Port.EAST:
        return (Port.WEST, Port.NORTH, Port.SOUTH, Port.LOCAL)
    if port_in is Port.NORTH:
        return (Port.SOUTH, Port.LOCAL)
    return (Port.NORTH, Port.LOCAL)


class Router(wiring.Component):
    """Wormhole router at mesh position (``x``, ``y``) with dimension-order (XY) routing.

    Each input has a FIFO of ``depth`` flits. A head flit's output port (X first, then Y, then
    local) is computed as it enters and stored with it (body flits inherit it); at the FIFO's
    output, an output that is free is granted by a round-robin
    arbiter among the head flits that want it and then stays with that input until the packet's
    tail has left (wormhole switching: packets never interleave on a link). The grant is taken as
    soon as the head flit is offered, so an output's ``valid`` and payload hold until accepted.

    ``ready`` of every input is "its FIFO is not full", a register: no combinational path runs
    from one router to the next through ``ready``, and meshes of any size close timing like one
    router. The crossbar is combinational from the FIFO's output to the output port.

    Parameters
    ----------
    x, y : int
        Position of this router (0 <= x, y < 16).
    flit_width : int
        Data bits of a flit (see :func:`rtl.noc.flit.flit_layout`).
    depth : int
        Flits per input FIFO, at least 2 (2 sustain one flit per cycle on a free path).

    Ports
    -----
    in_north, in_east, in_south, in_west, in_local : In(stream.Signature(flit_layout(flit_width)))
    out_north, out_east, out_south, out_west, out_local : Out(stream.Signature(flit_layout(flit_width)))

    Latency: one cycle per router (a flit written into a FIFO at one clock edge is written into
    the next router's FIFO at the next). Throughput: one flit per cycle per output.
    """

    def __init__(self, x: int, y: int, flit_width: int = 64, depth: int = 8):
        for name, value in (("x", x), ("y", y)):
            if not isinstance(value, int) or not 0 <= value < MAX_MESH:
                raise ValueError(f"{name} must be an integer in [0, {MAX_MESH}), got {value!r}")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be an integer of at least 2, got {depth!r}")
        self.x, self.y, self.depth = x, y, depth
        self.flit_width = flit_width
        self.flit = flit_layout(flit_width)
        members = {}
        for port in Port:
            members[f"in_{port.port_name}"] = In(stream.Signature(self.flit))
        for port in Port:
            members[f"out_{port.port_name}"] = Out(stream.Signature(self.flit))
        super().__init__(members)

    def port_in(self, port: Port):
        return getattr(self, f"in_{port.port_name}")

    def port_out(self, port: Port):
        return getattr(self, f"out_{port.port_name}")

    def elaborate(self, platform):
        m = Module()
        ports = list(Port)

        # Input side: the route is computed as a flit is written (from the head's header; body
        # flits take their head's) and stored beside it, so the arbiters start from a FIFO output
        # and a 3-to-5 decoder rather than from address comparisons: a shorter critical path.
        heads = {}  # port -> View of the flit at the FIFO output
        valids = {}
        route = {}  # port -> one-hot Signal(5): the output its current flit wants
        pops, queues = {}, {}
        index_bits = 3
        for port in ports:
            queue = fifo.SyncFIFO(width=self.flit.size + index_bits, depth=self.depth)
            m.submodules[f"fifo_{port.port_name}"] = queue
            inp = self.port_in(port)
            computed = Signal(index_bits, name=f"route_computed_{port.port_name}")
            self._xy_route(m, Header(inp.payload.data[:HEADER_BITS]), computed)
            packet_route = Signal(index_bits, name=f"route_of_packet_{port.port_name}")
            with m.If(inp.valid & inp.ready & inp.payload.head):
                m.d.sync += packet_route.eq(computed)
            m.d.comb += [
                queue.w_data.eq(Cat(inp.payload.as_value(), Mux(inp.payload.head, computed, packet_route))),
                queue.w_en.eq(inp.valid),
                inp.ready.eq(queue.w_rdy),
            ]
            flit = data.View(self.flit, queue.r_data[:self.flit.size])
            stored = queue.r_data[self.flit.size:]
            heads[port], valids[port] = flit, queue.r_rdy
            # Outputs outside XY's legal turns are never requested: a header that would need one
            # (a protocol error upstream) is routed nowhere and stalls its input, visibly.
            current = Signal(len(ports), name=f"route_{port.port_name}")
            m.d.comb += current.eq(Cat((stored == p.value) if p in legal_turns(port) else Const(0) for p in Port))
            pop = Signal(name=f"pop_{port.port_name}")
            m.d.comb += queue.r_en.eq(pop)
            route[port], pops[port], queues[port] = current, pop, queue

        # Output side: one arbiter and one crossbar column per output.
        pop_terms = {port: [] for port in ports}
        feeds = {}  # output -> [(input, "this output takes a flit from that input now")]
        for out_port in ports:
            out = self.port_out(out_port)
            sources = [p for p in ports if out_port in legal_turns(p)]
            n = len(sources)
            requests = Signal(n, name=f"requests_{out_port.port_name}")
            m.d.comb += requests.eq(Cat(valids[p] & route[p][out_port.value] for p in sources))

            locked = Signal(name=f"locked_{out_port.port_name}")
            owner = Signal(range(n), name=f"owner_{out_port.port_name}")
            last = Signal(range(n), name=f"last_{out_port.port_name}", init=n - 1)
            pick = Signal(range(n), name=f"pick_{out_port.port_name}")
            self._round_robin(m, requests, last, pick)
            chosen = Signal(range(n), name=f"chosen_{out_port.port_name}")
            m.d.comb += chosen.eq(Mux(locked, owner, pick))

            with m.Switch(chosen):
                for index, p in enumerate(sources):
                    with m.Case(index):
                        m.d.comb += [out.payload.eq(heads[p]), out.valid.eq(requests[index])]
            feeds[out_port] = []
            for index, p in enumerate(sources):
                term = Signal(name=f"take_{p.port_name}_to_{out_port.port_name}")
                m.d.comb += term.eq((chosen == index) & requests[index] & out.ready)
                pop_terms[p].append(term)
                feeds[out_port].append((p, term))

            transfer = out.valid & out.ready
            with m.If(~locked):
                with m.If(requests.any()):
                    m.d.sync += last.eq(pick)
                    # A single-flit packet taken at once never locks the output.
                    with m.If(~(transfer & out.payload.tail)):
                        m.d.sync += [locked.eq(1), owner.eq(pick)]
            with m.Elif(transfer & out.payload.tail):
                m.d.sync += locked.eq(0)

        for port in ports:
            m.d.comb += pops[port].eq(Cat(pop_terms[port]).any())

        if platform == "formal":
            self._formal(m, ports, heads, queues, pop_terms, feeds)
        return m

    def _formal(self, m, ports, heads, queues, pop_terms, feeds):
        """Safety properties, proved by k-induction in ``tests/test_noc_formal.py``.

        * no output is given to two inputs in a cycle, and no input's flit goes to two outputs;
        * an output transfers exactly when one input hands it its flit, and that flit unchanged;
        * conservation: flits in - flits out = flits buffered (counters mod 256), so no flit is
          ever dropped or duplicated.
        """
        for out_port, terms in feeds.items():
            out = self.port_out(out_port)
            takes = Cat(term for _, term in terms)
            m.d.comb += Assert(_at_most_one(takes), f"output {out_port.port_name} granted to two inputs")
            m.d.comb += Assert((out.valid & out.ready) == takes.any(),
                               f"output {out_port.port_name} transfer without exactly one source")
            for p, term in terms:
                with m.If(term):
                    m.d.comb += Assert(out.payload.as_value() == heads[p].as_value(),
                                       f"flit from {p.port_name} altered on {out_port.port_name}")
        for port in ports:
            m.d.comb += Assert(_at_most_one(Cat(pop_terms[port])), f"input {port.port_name} sent to two outputs")

        flits_in, flits_out = Signal(8), Signal(8)
        count_in = sum((self.port_in(p).valid & self.port_in(p).ready).as_unsigned() for p in ports)
        count_out = sum((self.port_out(p).valid & self.port_out(p).ready).as_unsigned() for p in ports)
        m.d.sync += [flits_in.eq(flits_in + count_in), flits_out.eq(flits_out + count_out)]
        buffered = sum(queues[p].level for p in ports)
        m.d.comb += Assert((flits_in - flits_out)[:8] == buffered[:8], "flits in - out != flits buffered")

    def _xy_route(self, m, header, want):
        """Dimension order: X until the column matches, then Y, then the local port."""
        dest_x, dest_y = header.dest_x, header.dest_y
        # Comparisons that are constant at the mesh edge are left out (Verilator's lint flags them,
        # and a priority chain with constant arms becomes overlapping case arms).
        west = (dest_x < self.x) if self.x > 0 else Const(0)
        north = (dest_y < self.y) if self.y > 0 else Const(0)
        m.d.comb += want.eq(
            Mux(dest_x > self.x, Port.EAST.value,
                Mux(west, Port.WEST.value,
                    Mux(dest_y > self.y, Port.SOUTH.value,
                        Mux(north, Port.NORTH.value, Port.LOCAL.value)))))

    @staticmethod
    def _round_robin(m, requests, last, pick):
        """``pick`` = the first requester after ``last`` (cyclically); ``requests`` non-zero."""
        n = len(requests)
        with m.Switch(last):
            for previous in range(n):
                with m.Case(previous):
                    order = [(previous + 1 + k) % n for k in range(n)]
                    # One-hot grant without a priority chain of `if`s (which Verilator's lint
                    # reads as overlapping case arms), then its binary index.
                    grants = {}
                    for k, index in enumerate(order):
                        earlier = [requests[j] for j in order[:k]]
                        grants[index] = requests[index] & ~Cat(earlier).any() if earlier else requests[index]
                    bits = [Cat(grants[i] for i in range(n) if (i >> b) & 1).any() for b in range(len(pick))]
                    m.d.comb += pick.eq(Cat(bits))


def _at_most_one(bits):
    """True when at most one bit of ``bits`` is set."""
    return (bits & (bits - 1)[:len(bits)]) == 0
