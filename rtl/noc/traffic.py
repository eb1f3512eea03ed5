"""Self-test traffic in hardware: a packet generator and a checker per tile, and a mesh harness.

Driving every port of a mesh from Python costs about 50 k cycles/s; these blocks run the same
traffic patterns at Verilator speed (and would run on an FPGA). Every packet carries its source,
a sequence number per (source, destination) pair and its creation time; body flits carry a word
computed from (source, destination, sequence, index), so the checker at the destination can tell
a lost, duplicated, reordered, misrouted or corrupted packet from a good one without a copy of
what was sent.

Head flit data (``flit_width`` >= 64): :class:`rtl.noc.flit.Header` in bits 0-27, the sequence
number in bits 28-43, the creation time (mod 2**:data:`TIME_BITS`) in bits 44-63.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.noc.flit import HEADER_BITS, Header, PacketKind, flit_layout
from rtl.noc.mesh import Mesh, tile_name

__all__ = ["COUNTERS", "Fault", "TrafficChecker", "TrafficGenerator", "TrafficLoopback", "TrafficMesh",
           "TrafficPattern"]

SEQ_BITS = 16
TIME_BITS = 20
TIME_OFFSET = HEADER_BITS + SEQ_BITS
MIN_FLIT_WIDTH = TIME_OFFSET + TIME_BITS
#: Creation times wait here until their packet is injected (the source queue).
SOURCE_QUEUE_DEPTH = 16
#: A probability p is the 17-bit integer round(p * 2**16); 2**16 means "always".
PROBABILITY = unsigned(17)


class TrafficPattern(enum.Enum, shape=2):
    UNIFORM = 0  #: every tile equally likely (the source itself included)
    TRANSPOSE = 1  #: (x, y) sends to (y, x); tiles on the diagonal send nothing
    HOTSPOT = 2  #: a fraction of packets to one tile, the rest uniform
    NEIGHBOUR = 3  #: to one of the adjacent tiles, at random


def _xorshift64(m, state):
    """Advance a 64-bit xorshift generator every cycle (never reaches 0 from a non-zero seed)."""
    a = state ^ (state << 13)[:64]
    b = a ^ (a >> 7)
    m.d.sync += state.eq(b ^ (b << 17)[:64])


def _seed_of(x: int, y: int, salt: int) -> int:
    return ((x * 0x9E3779B1 + y * 0x85EBCA77 + salt * 0xC2B2AE3D) ^ 0x165667B19E3779F9) & ((1 << 64) - 1) | 1


def body_word(flit_width: int, src_x, src_y, dest_x, dest_y, seq, index):
    """The expected data of body flit ``index`` of packet ``seq`` from src to dest."""
    tag = Cat(index[:8], seq[:SEQ_BITS], src_x, src_y, dest_x, dest_y)
    copies = -(-flit_width // len(tag))
    scramble = Const(0x9E3779B97F4A7C15F39CC0605CEDC834 & ((1 << flit_width) - 1), flit_width)
    return Cat(*([tag] * copies))[:flit_width] ^ scramble


class _Config(wiring.Signature):
    """The run-time configuration shared by every generator and checker."""

    def __init__(self):
        super().__init__({
            "clear": Out(1),  # reset counters, sequence numbers and random state
            "enable": Out(1),  # create packets
            "pattern": Out(TrafficPattern),
            "rate": Out(PROBABILITY),  # packets created per cycle per tile
            "min_length": Out(8),
            "max_length": Out(8),
            "hotspot_x": Out(4),
            "hotspot_y": Out(4),
            "hot_fraction": Out(PROBABILITY),
            "eject_stall": Out(PROBABILITY),  # probability that a checker is not ready
            "seed": Out(32),
            "now": Out(32),
        })


#: Counters of a tile, with their widths: read at the end of a run.
COUNTERS = {
    "created": 32,  # packets created (creation time queued)
    "refused": 32,  # creations refused because the source queue was full
    "sent_packets": 32,
    "sent_flits": 32,
    "received_packets": 32,
    "received_flits": 32,
    "errors": 32,
    "latency_sum": 48,  # creation to head ejection, summed over received packets
    "latency_max": TIME_BITS,
    "first_error": 4,  # code of the first check that failed (0: none)
}


class TrafficGenerator(wiring.Component):
    """Creates packets of ``pattern`` traffic at tile (x, y) and injects them into ``out``.

    A packet is created with probability ``rate`` per cycle while ``enable``; its creation time
    waits in a 16-entry source queue (creations that find it full are counted as ``refused``),
    so latencies include source queueing. Packets leave back to back, one flit per cycle when
    ``out`` is ready; destination and length (uniform in [min_length, max_length]) are drawn when
    the packet starts.
    """

    def __init__(self, x: int, y: int, width: int, height: int, flit_width: int = 64):
        if flit_width < MIN_FLIT_WIDTH:
            raise ValueError(f"traffic flits need at least {MIN_FLIT_WIDTH} bits, got {flit_width!r}")
        self.x, self.y, self.width, self.height, self.flit_width = x, y, width, height, flit_width
        super().__init__({
            "config": In(_Config()),
            "out": Out(stream.Signature(flit_layout(flit_width))),
            "created": Out(32), "refused": Out(32), "sent_packets": Out(32), "sent_flits": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, out = self.config, self.out
        x, y, width, height = self.x, self.y, self.width, self.height
        # Two generators: one decides creations, the other draws destination and length (the two
        # happen in the same cycle, and must not be correlated).
        state, draw = Signal(64, init=_seed_of(x, y, 1)), Signal(64, init=_seed_of(x, y, 3))
        for salt, register in ((1, state), (3, draw)):
            with m.If(cfg.clear):
                m.d.sync += register.eq(Cat(cfg.seed, Const(0, 32)) ^ _seed_of(x, y, salt))
            with m.Else():
                _xorshift64(m, register)

        active = Signal()
        transpose_ok = x != y and y < width and x < height
        m.d.comb += active.eq((cfg.pattern != TrafficPattern.TRANSPOSE) | transpose_ok)

        queue = m.submodules.source_queue = fifo.SyncFIFO(width=TIME_BITS, depth=SOURCE_QUEUE_DEPTH)
        create = Signal()
        m.d.comb += [
            create.eq(cfg.enable & active & (state[0:16] < cfg.rate)),
            queue.w_data.eq(cfg.now[:TIME_BITS]),
            queue.w_en.eq(create & ~cfg.clear),
        ]

        # Destination and length of the next packet, from bits the creation test does not use.
        dest_x, dest_y = Signal(4), Signal(4)
        uniform_x = ((draw[0:16] * width) >> 16)[:4]
        uniform_y = ((draw[16:32] * height) >> 16)[:4]
        options = [(x + dx, y + dy) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))
                   if 0 <= x + dx < width and 0 <= y + dy < height] or [(x, y)]
        neighbour = Array(Const((ny << 4) | nx, 8)
                          for nx, ny in (options[d % len(options)] for d in range(4)))[draw[48:50]]
        with m.Switch(cfg.pattern):
            with m.Case(TrafficPattern.UNIFORM):
                m.d.comb += [dest_x.eq(uniform_x), dest_y.eq(uniform_y)]
            with m.Case(TrafficPattern.TRANSPOSE):
                m.d.comb += [dest_x.eq(y if transpose_ok else x), dest_y.eq(x if transpose_ok else y)]
            with m.Case(TrafficPattern.HOTSPOT):
                hot = draw[32:48] < cfg.hot_fraction
                m.d.comb += [dest_x.eq(Mux(hot, cfg.hotspot_x, uniform_x)),
                             dest_y.eq(Mux(hot, cfg.hotspot_y, uniform_y))]
            with m.Case(TrafficPattern.NEIGHBOUR):
                m.d.comb += [dest_x.eq(neighbour[:4]), dest_y.eq(neighbour[4:])]
        span = Signal(9)
        length = Signal(8)
        m.d.comb += [
            span.eq(cfg.max_length - cfg.min_length + 1),
            length.eq(cfg.min_length + ((draw[56:64] * span) >> 8)),
        ]

        # The packet being sent.
        busy = Signal()
        cur_x, cur_y, cur_len, cur_index = Signal(4), Signal(4), Signal(8), Signal(8)
        cur_seq, cur_time = Signal(SEQ_BITS), Signal(TIME_BITS)
        seqs = Array(Signal(SEQ_BITS, name=f"seq_to_{tile_name(i % width, i // width)}")
                     for i in range(width * height))

        header = Signal(Header)
        m.d.comb += [
            header.dest_x.eq(cur_x), header.dest_y.eq(cur_y), header.src_x.eq(x), header.src_y.eq(y),
            header.kind.eq(PacketKind.TRAFFIC), header.length.eq(cur_len),
        ]
        is_head = cur_index == 0
        m.d.comb += [
            out.valid.eq(busy),
            out.payload.head.eq(is_head),
            out.payload.tail.eq(cur_index == cur_len - 1),
            out.payload.data.eq(Mux(is_head, Cat(header.as_value(), cur_seq, cur_time),
                                    body_word(self.flit_width, Const(x, 4), Const(y, 4), cur_x, cur_y,
                                              cur_seq, cur_index))),
        ]
        transfer = out.valid & out.ready
        finishing = transfer & out.payload.tail
        with m.If(transfer):
            m.d.sync += [cur_index.eq(cur_index + 1), self.sent_flits.eq(self.sent_flits + 1)]
        with m.If(finishing):
            m.d.sync += [busy.eq(0), self.sent_packets.eq(self.sent_packets + 1)]

        start = Signal()
        m.d.comb += [start.eq((~busy | finishing) & queue.r_rdy & ~cfg.clear), queue.r_en.eq(start)]
        with m.If(start):
            dest_id = dest_y * width + dest_x
            m.d.sync += [
                busy.eq(1), cur_x.eq(dest_x), cur_y.eq(dest_y), cur_len.eq(length), cur_index.eq(0),
                cur_seq.eq(seqs[dest_id]), cur_time.eq(queue.r_data), seqs[dest_id].eq(seqs[dest_id] + 1),
            ]

        with m.If(create & queue.w_rdy):
            m.d.sync += self.created.eq(self.created + 1)
        with m.If(create & ~queue.w_rdy):
            m.d.sync += self.refused.eq(self.refused + 1)

        with m.If(cfg.clear):
            m.d.sync += [busy.eq(0), self.created.eq(0), self.refused.eq(0), self.sent_packets.eq(0),
                         self.sent_flits.eq(0)]
            m.d.sync += [s.eq(0) for s in seqs]
        return m


class CheckError(enum.Enum, shape=4):
    NONE = 0
    NOT_HEAD = 1  #: a packet did not start with a head flit
    WRONG_TILE = 2  #: delivered to a tile other than its destination
    BAD_HEADER = 3  #: wrong kind, zero length or source outside the mesh
    SEQUENCE = 4  #: sequence number not the next one from that source (loss, duplicate, reorder)
    HEAD_IN_BODY = 5  #: a head flit inside a packet (interleaving)
    BODY_DATA = 6  #: body flit corrupted or from another packet
    LENGTH = 7  #: tail flag not on the packet's last flit


class TrafficChecker(wiring.Component):
    """Accepts packets at tile (x, y), withholding ``ready`` with probability ``eject_stall``,
    and checks each one: see :class:`CheckError` for what is checked."""

    def __init__(self, x: int, y: int, width: int, height: int, flit_width: int = 64):
        if flit_width < MIN_FLIT_WIDTH:
            raise ValueError(f"traffic flits need at least {MIN_FLIT_WIDTH} bits, got {flit_width!r}")
        self.x, self.y, self.width, self.height, self.flit_width = x, y, width, height, flit_width
        super().__init__({
            "config": In(_Config()),
            "inp": In(stream.Signature(flit_layout(flit_width))),
            "received_packets": Out(32), "received_flits": Out(32), "errors": Out(32),
            "latency_sum": Out(48), "latency_max": Out(TIME_BITS), "first_error": Out(CheckError),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, inp = self.config, self.inp
        x, y, width, height = self.x, self.y, self.width, self.height
        state = Signal(64, init=_seed_of(x, y, 2))
        with m.If(cfg.clear):
            m.d.sync += state.eq(Cat(cfg.seed, Const(0, 32)) ^ _seed_of(x, y, 2))
        with m.Else():
            _xorshift64(m, state)
        m.d.comb += inp.ready.eq(~(state[0:16] < cfg.eject_stall) & ~cfg.clear)

        in_packet = Signal()
        src_x, src_y, seq, length, index = Signal(4), Signal(4), Signal(SEQ_BITS), Signal(8), Signal(8)
        expect = Array(Signal(SEQ_BITS, name=f"expect_from_{tile_name(i % width, i // width)}")
                       for i in range(width * height))

        flit = inp.payload
        header = Header(flit.data[:HEADER_BITS])
        head_seq = flit.data[HEADER_BITS:TIME_OFFSET]
        head_time = flit.data[TIME_OFFSET:TIME_OFFSET + TIME_BITS]
        latency = Signal(TIME_BITS)
        m.d.comb += latency.eq(cfg.now[:TIME_BITS] - head_time)
        source_id = header.src_y * width + header.src_x

        error = Signal(CheckError)
        with m.If(~in_packet):
            with m.If(~flit.head):
                m.d.comb += error.eq(CheckError.NOT_HEAD)
            with m.Elif((header.dest_x != x) | (header.dest_y != y)):
                m.d.comb += error.eq(CheckError.WRONG_TILE)
            with m.Elif((header.kind != PacketKind.TRAFFIC) | (header.length == 0) |
                        (header.src_x >= width) | (header.src_y >= height)):
                m.d.comb += error.eq(CheckError.BAD_HEADER)
            with m.Elif(head_seq != expect[source_id]):
                m.d.comb += error.eq(CheckError.SEQUENCE)
            with m.Elif(flit.tail != (header.length == 1)):
                m.d.comb += error.eq(CheckError.LENGTH)
        with m.Else():
            with m.If(flit.head):
                m.d.comb += error.eq(CheckError.HEAD_IN_BODY)
            with m.Elif(flit.data != body_word(self.flit_width, src_x, src_y, Const(x, 4), Const(y, 4), seq, index)):
                m.d.comb += error.eq(CheckError.BODY_DATA)
            with m.Elif(flit.tail != (index == length - 1)):
                m.d.comb += error.eq(CheckError.LENGTH)

        with m.If(inp.valid & inp.ready):
            m.d.sync += [self.received_flits.eq(self.received_flits + 1), index.eq(index + 1)]
            m.d.sync += in_packet.eq(~flit.tail)
            with m.If(flit.tail):
                m.d.sync += self.received_packets.eq(self.received_packets + 1)
            with m.If(~in_packet & flit.head):
                m.d.sync += [
                    src_x.eq(header.src_x), src_y.eq(header.src_y), seq.eq(head_seq),
                    length.eq(header.length), index.eq(1),
                    self.latency_sum.eq(self.latency_sum + latency),
                ]
                with m.If((header.src_x < width) & (header.src_y < height)):
                    # Resynchronise on what arrived, so one fault is counted once.
                    m.d.sync += expect[source_id].eq(head_seq + 1)
                with m.If(latency > self.latency_max):
                    m.d.sync += self.latency_max.eq(latency)
            with m.If(error != CheckError.NONE):
                m.d.sync += self.errors.eq(self.errors + 1)
                with m.If(self.first_error == CheckError.NONE):
                    m.d.sync += self.first_error.eq(error)

        with m.If(cfg.clear):
            m.d.sync += [in_packet.eq(0), self.received_packets.eq(0), self.received_flits.eq(0),
                         self.errors.eq(0), self.latency_sum.eq(0), self.latency_max.eq(0),
                         self.first_error.eq(CheckError.NONE)]
            m.d.sync += [s.eq(0) for s in expect]
        return m


class TrafficMesh(wiring.Component):
    """A :class:`Mesh` with a :class:`TrafficGenerator` and a :class:`TrafficChecker` at every tile.

    The configuration ports (``clear``, ``enable``, ``pattern``, ``rate``, ...) reach every tile;
    each tile's counters (:data:`COUNTERS`) are outputs named ``<counter>_x{x}_y{y}``; ``now``
    counts cycles since ``clear``.
    """

    def __init__(self, width: int = 4, height: int = 4, flit_width: int = 64, depth: int = 8):
        self.width, self.height, self.flit_width, self.depth = width, height, flit_width, depth
        members = {}
        for name, member in _Config().members.items():
            if name != "now":
                members[name] = In(member.shape)
        members["now"] = Out(32)
        for y in range(height):
            for x in range(width):
                for counter, bits in COUNTERS.items():
                    shape = CheckError if counter == "first_error" else bits
                    members[f"{counter}_{tile_name(x, y)}"] = Out(shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        mesh = m.submodules.mesh = Mesh(self.width, self.height, self.flit_width, self.depth)
        with m.If(self.clear):
            m.d.sync += self.now.eq(0)
        with m.Else():
            m.d.sync += self.now.eq(self.now + 1)
        for y in range(self.height):
            for x in range(self.width):
                name = tile_name(x, y)
                generator = TrafficGenerator(x, y, self.width, self.height, self.flit_width)
                checker = TrafficChecker(x, y, self.width, self.height, self.flit_width)
                m.submodules[f"generator_{name}"] = generator
                m.submodules[f"checker_{name}"] = checker
                for block in (generator, checker):
                    for field in _Config().members:
                        m.d.comb += getattr(block.config, field).eq(getattr(self, field))
                wiring.connect(m, generator.out, mesh.inject(x, y))
                wiring.connect(m, mesh.eject(x, y), checker.inp)
                for counter in COUNTERS:
                    block = generator if hasattr(generator, counter) else checker
                    m.d.comb += getattr(self, f"{counter}_{name}").eq(getattr(block, counter))
        return m


class Fault(enum.Enum, shape=2):
    NONE = 0
    DROP = 1  #: one flit vanishes
    DUPLICATE = 2  #: one flit is delivered twice
    CORRUPT = 3  #: bit 0 of one flit flips (a destination bit in a head, a data bit in a body)


class TrafficLoopback(wiring.Component):
    """A generator and a checker at tile (0, 0) of a 1 x 1 network, joined by a link that injects
    one ``fault`` into the flit numbered ``fault_at``: shows that the checker catches each kind.

    Ports: the configuration of :class:`TrafficMesh`, plus ``fault``, ``fault_at`` (In) and the
    counters of the one tile (``errors``, ``first_error``, ``received_packets``, ...).
    """

    def __init__(self, flit_width: int = 64):
        self.flit_width = flit_width
        members = {name: In(member.shape) for name, member in _Config().members.items() if name != "now"}
        members |= {"fault": In(Fault), "fault_at": In(32)}
        for counter, bits in COUNTERS.items():
            members[counter] = Out(CheckError if counter == "first_error" else bits)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        generator = m.submodules.generator = TrafficGenerator(0, 0, 1, 1, self.flit_width)
        checker = m.submodules.checker = TrafficChecker(0, 0, 1, 1, self.flit_width)
        now = Signal(32)
        m.d.sync += now.eq(Mux(self.clear, 0, now + 1))
        for block in (generator, checker):
            for field in _Config().members:
                m.d.comb += getattr(block.config, field).eq(now if field == "now" else getattr(self, field))
        for counter in COUNTERS:
            block = generator if hasattr(generator, counter) else checker
            m.d.comb += getattr(self, counter).eq(getattr(block, counter))

        src, dst = generator.out, checker.inp
        count = Signal(32)
        hit = (count == self.fault_at) & src.valid
        repeat = Signal()  # the duplicated flit's second delivery
        m.d.comb += [dst.valid.eq(src.valid), dst.payload.eq(src.payload), src.ready.eq(dst.ready)]
        with m.Switch(self.fault):
            with m.Case(Fault.DROP):
                with m.If(hit):
                    m.d.comb += [dst.valid.eq(0), src.ready.eq(1)]
            with m.Case(Fault.DUPLICATE):
                with m.If(hit & ~repeat):
                    m.d.comb += src.ready.eq(0)
                    with m.If(dst.ready):
                        m.d.sync += repeat.eq(1)
            with m.Case(Fault.CORRUPT):
                with m.If(hit):
                    m.d.comb += dst.payload.data.eq(src.payload.data ^ 1)
        with m.If(src.valid & src.ready):
            m.d.sync += count.eq(count + 1)
        with m.If(self.clear):
            m.d.sync += [count.eq(0), repeat.eq(0)]
        return m
