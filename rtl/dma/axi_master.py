"""AXI4 master adapter for the generic memory port."""

from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.axi import Axi4Signature, Burst
from rtl.dma.port import BEATS_BITS, MemoryPortSignature, Resp

__all__ = ["AxiMaster"]

MAX_BURST = 256
PAGE = 4096


class _BurstSplitter(Elaboratable):
    """Cuts one port request into INCR bursts of at most 256 beats that never cross 4 KiB.

    ``issue`` pulses when a burst enters the address channel registers; ``issue_addr``,
    ``issue_beats`` and ``issue_last`` (last burst of the request) describe it that cycle.
    """

    def __init__(self, addr_width: int, bytes_per_beat: int):
        self.addr_width, self.bytes_per_beat = addr_width, bytes_per_beat
        self.shift = bytes_per_beat.bit_length() - 1
        # the port request
        self.req_valid, self.req_ready = Signal(), Signal()
        self.req_addr, self.req_beats = Signal(addr_width), Signal(BEATS_BITS)
        # the address channel
        self.ax_valid, self.ax_ready = Signal(), Signal()
        self.ax_addr, self.ax_len = Signal(addr_width), Signal(8)
        # tracking
        self.room = Signal()
        self.issue = Signal()
        self.issue_addr, self.issue_beats, self.issue_last = Signal(addr_width), Signal(9), Signal()

    def elaborate(self, platform):
        m = Module()
        busy = Signal()
        addr = Signal(self.addr_width)
        left = Signal(BEATS_BITS)
        words_to_page = Signal(range(PAGE // self.bytes_per_beat + 1))
        burst = Signal(9)

        m.d.comb += [
            words_to_page.eq((PAGE - addr[:12]) >> self.shift),
            burst.eq(Mux((left < MAX_BURST) & (left < words_to_page), left,
                         Mux(words_to_page < MAX_BURST, words_to_page, MAX_BURST))),
            self.issue.eq(busy & self.room & (~self.ax_valid | self.ax_ready)),
            # the next request is taken in the cycle the last burst of this one is issued
            self.req_ready.eq(~busy | (self.issue & self.issue_last)),
            self.issue_addr.eq(addr),
            self.issue_beats.eq(burst),
            self.issue_last.eq(left == burst),
        ]
        with m.If(self.issue):
            m.d.sync += [
                self.ax_valid.eq(1), self.ax_addr.eq(addr), self.ax_len.eq(burst - 1),
                addr.eq(addr + (burst << self.shift)), left.eq(left - burst), busy.eq(left != burst),
            ]
        with m.Elif(self.ax_ready):
            m.d.sync += self.ax_valid.eq(0)
        with m.If(self.req_valid & self.req_ready):
            m.d.sync += [busy.eq(1), addr.eq(self.req_addr & ~(self.bytes_per_beat - 1)),
                         left.eq(self.req_beats)]
        return m


class AxiMaster(wiring.Component):
    """Turns a generic memory port into an AXI4 master.

    Every request becomes INCR bursts of at most 256 beats, split where they would cross a 4 KiB
    boundary. One AXI ID (0) is used, so responses come back in request order. Up to
    ``max_outstanding`` read bursts and as many write bursts are in flight at once.
    Read beats pass through with their RRESP; ``fault_addr`` is the address of the beat.
    Write responses are merged into one per port request: the first SLVERR/DECERR among its
    bursts wins, with the address of that burst. Write data follows its burst's address
    (a burst's W beats are offered once its AW has been issued).

    Parameters
    ----------
    addr_width : int
    data_width : int
        Bus width in bits (64, 128, ...).
    max_outstanding : int
        Bursts in flight per direction, at least 1.

    Ports
    -----
    port : In(MemoryPortSignature(addr_width, data_width))
    m_axi : Out(Axi4Signature(addr_width, data_width))

    Latency: a request reaches AR/AW two cycles after it is offered; R beats pass combinationally.
    """

    def __init__(self, addr_width: int = 32, data_width: int = 64, max_outstanding: int = 8):
        if not isinstance(max_outstanding, int) or max_outstanding < 1:
            raise ValueError(f"max_outstanding must be a positive integer, got {max_outstanding!r}")
        self.addr_width, self.data_width, self.max_outstanding = addr_width, data_width, max_outstanding
        super().__init__({
            "port": In(MemoryPortSignature(addr_width, data_width)),
            "m_axi": Out(Axi4Signature(addr_width, data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        port, axi = self.port, self.m_axi
        bytes_per_beat = self.data_width // 8
        shift = bytes_per_beat.bit_length() - 1
        depth = self.max_outstanding

        for ch in ("aw", "ar"):
            m.d.comb += [
                getattr(axi, f"{ch}id").eq(0),
                getattr(axi, f"{ch}size").eq(shift),
                getattr(axi, f"{ch}burst").eq(Burst.INCR),
                getattr(axi, f"{ch}cache").eq(0b0011),  # normal, non-cacheable, bufferable
            ]

        # ---- reads
        m.submodules.read_split = rs = _BurstSplitter(self.addr_width, bytes_per_beat)
        m.submodules.read_track = rtrack = fifo.SyncFIFO(width=self.addr_width, depth=depth)
        read_beat = Signal(8)
        m.d.comb += [
            rs.req_valid.eq(port.read_request.valid), port.read_request.ready.eq(rs.req_ready),
            rs.req_addr.eq(port.read_request.payload.addr), rs.req_beats.eq(port.read_request.payload.beats),
            axi.arvalid.eq(rs.ax_valid), rs.ax_ready.eq(axi.arready),
            axi.araddr.eq(rs.ax_addr), axi.arlen.eq(rs.ax_len),
            rs.room.eq(rtrack.w_rdy), rtrack.w_en.eq(rs.issue), rtrack.w_data.eq(rs.issue_addr),

            port.read_response.valid.eq(axi.rvalid),
            axi.rready.eq(port.read_response.ready),
            port.read_response.payload.data.eq(axi.rdata),
            port.read_response.payload.resp.eq(axi.rresp),
            port.read_response.payload.fault_addr.eq(rtrack.r_data + (read_beat << shift)),
        ]
        with m.If(axi.rvalid & axi.rready):
            m.d.sync += read_beat.eq(Mux(axi.rlast, 0, read_beat + 1))
            m.d.comb += rtrack.r_en.eq(axi.rlast)

        # ---- writes
        m.submodules.write_split = ws = _BurstSplitter(self.addr_width, bytes_per_beat)
        track_layout = data.StructLayout({"addr": self.addr_width, "last": 1})
        m.submodules.write_track = wtrack = fifo.SyncFIFO(width=track_layout.size, depth=depth)
        m.submodules.write_lengths = wlens = fifo.SyncFIFO(width=8, depth=depth)
        m.d.comb += [
            ws.req_valid.eq(port.write_request.valid), port.write_request.ready.eq(ws.req_ready),
            ws.req_addr.eq(port.write_request.payload.addr), ws.req_beats.eq(port.write_request.payload.beats),
            axi.awvalid.eq(ws.ax_valid), ws.ax_ready.eq(axi.awready),
            axi.awaddr.eq(ws.ax_addr), axi.awlen.eq(ws.ax_len),
            ws.room.eq(wtrack.w_rdy & wlens.w_rdy),
            wtrack.w_en.eq(ws.issue), wlens.w_en.eq(ws.issue),
            data.View(track_layout, wtrack.w_data).addr.eq(ws.issue_addr),
            data.View(track_layout, wtrack.w_data).last.eq(ws.issue_last),
            wlens.w_data.eq(ws.issue_beats - 1),
        ]

        write_beat = Signal(8)
        m.d.comb += [
            axi.wvalid.eq(port.write_data.valid & wlens.r_rdy),
            port.write_data.ready.eq(axi.wready & wlens.r_rdy),
            axi.wdata.eq(port.write_data.payload.data),
            axi.wstrb.eq(port.write_data.payload.strb),
            axi.wlast.eq(write_beat == wlens.r_data),
        ]
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += write_beat.eq(Mux(axi.wlast, 0, write_beat + 1))
            m.d.comb += wlens.r_en.eq(axi.wlast)

        head = data.View(track_layout, wtrack.r_data)
        error_seen = Signal()
        error_resp = Signal(Resp)
        error_addr = Signal(self.addr_width)
        bresp_error = axi.bresp[1]
        m.d.comb += [
            axi.bready.eq(wtrack.r_rdy & (~head.last | port.write_response.ready)),
            port.write_response.valid.eq(axi.bvalid & wtrack.r_rdy & head.last),
            port.write_response.payload.resp.eq(Mux(error_seen, error_resp, axi.bresp)),
            port.write_response.payload.fault_addr.eq(Mux(error_seen, error_addr, head.addr)),
        ]
        with m.If(axi.bvalid & axi.bready):
            m.d.comb += wtrack.r_en.eq(1)
            with m.If(head.last):
                m.d.sync += error_seen.eq(0)
            with m.Elif(bresp_error & ~error_seen):
                m.d.sync += [error_seen.eq(1), error_resp.eq(axi.bresp), error_addr.eq(head.addr)]
        return m
