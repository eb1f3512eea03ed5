"""A fast DRAM model: an AXI4 slave in hardware, with latency and bandwidth set by input ports."""

from amaranth.hdl import ClockSignal, Instance, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, wiring
from amaranth.lib.wiring import In

from rtl.dma.axi import Axi4Signature
from rtl.dma.port import Resp

__all__ = ["DramModel", "LOAD_FILE", "STORAGE_VERILOG"]

TIME_BITS = 32

#: The storage array as plain Verilog, for memories of many MiB: Yosys takes minutes to turn a
#: million-word ``lib.memory.Memory`` into Verilog, Verilator compiles this in seconds. One
#: synchronous read port (old data when written in the same cycle) and one byte-strobed write
#: port, like the ``Memory`` ports it replaces. The array is ``mem``.
#:
#: A testbench's backdoor through the simulator costs a call per word (about 40 us: minutes for a
#: model's weights), so the array also loads whole files: a rising edge of ``load`` reads
#: :data:`LOAD_FILE` (``$readmemh``: hex words, ``@`` addresses skipping the rest) from the
#: simulator's working directory into ``mem``, in no simulated time.
LOAD_FILE = "scoville_dram_load.hex"
STORAGE_VERILOG = f"""
module scoville_dram_storage #(parameter WORDS = 1024, parameter WIDTH = 64, parameter ADDR = 10) (
    input wire clk,
    input wire read_en,
    input wire [ADDR-1:0] read_addr,
    output reg [WIDTH-1:0] read_data,
    input wire [WIDTH/8-1:0] write_en,
    input wire [ADDR-1:0] write_addr,
    input wire [WIDTH-1:0] write_data
);
    reg [WIDTH-1:0] mem [0:WORDS-1] /*verilator public_flat_rw*/;
    reg load /*verilator public_flat_rw*/;
    initial load = 1'b0;
    always @(posedge load) $readmemh("{LOAD_FILE}", mem);
    integer i;
    always @(posedge clk) begin
        if (read_en) read_data <= mem[read_addr];
        for (i = 0; i < WIDTH / 8; i = i + 1)
            if (write_en[i]) mem[write_addr][8 * i +: 8] <= write_data[8 * i +: 8];
    end
endmodule
"""


class DramModel(wiring.Component):
    """AXI4 slave memory for whole-chip simulation, so DRAM traffic costs no Python per cycle.

    ``size_bytes`` of memory (one ``lib.memory.Memory`` named ``storage``, one word per row,
    little-endian) that a testbench loads and dumps through the simulator (cocotb backdoor on
    ``storage``). Read bursts start ``latency`` cycles after their AR handshake; write responses
    come ``latency`` cycles after the burst's last W beat; up to ``queue_depth`` bursts of each
    kind are queued and overlap, like a pipelined memory controller. ``beat_interval`` (>= 1)
    cycles per data beat sets the bandwidth on both R and W. Beats outside the memory answer
    DECERR (reads return zero, writes are dropped). INCR bursts only (FIXED/WRAP are treated as
    INCR); the AXI ID is returned as received.

    Parameters
    ----------
    size_bytes : int
        Power of two.
    data_width, addr_width, id_width : int
    queue_depth : int

    Ports
    -----
    s_axi : In(Axi4Signature(addr_width, data_width, id_width))
    latency : In(16)
    beat_interval : In(8)
    """

    def __init__(self, size_bytes: int = 1 << 20, data_width: int = 64, addr_width: int = 32,
                 id_width: int = 1, queue_depth: int = 32, verilog_storage: bool = False):
        if not isinstance(size_bytes, int) or size_bytes < data_width // 8 or size_bytes & (size_bytes - 1):
            raise ValueError(f"size_bytes must be a power of two of at least one word, got {size_bytes!r}")
        self.size_bytes, self.data_width, self.addr_width = size_bytes, data_width, addr_width
        self.id_width, self.queue_depth = id_width, queue_depth
        #: The contents (also reachable from the Amaranth simulator), unless ``verilog_storage``:
        #: then the array is ``storage.mem`` in the Verilog module :data:`STORAGE_VERILOG`, which
        #: whoever builds the design adds (:attr:`verilog_sources`).
        self.verilog_storage = verilog_storage
        self.storage = None if verilog_storage else memory.Memory(
            shape=data_width, depth=size_bytes // (data_width // 8), init=[])
        self.verilog_sources = (STORAGE_VERILOG,) if verilog_storage else ()
        super().__init__({
            "s_axi": In(Axi4Signature(addr_width, data_width, id_width)),
            "latency": In(16),
            "beat_interval": In(8),
        })

    def elaborate(self, platform):
        m = Module()
        axi = self.s_axi
        nbytes = self.data_width // 8
        shift = nbytes.bit_length() - 1
        words = self.size_bytes // nbytes

        if self.verilog_storage:
            read_port = _Port(self.data_width, words)
            write_port = _Port(self.data_width, words, strobes=True)
            m.submodules.storage = Instance(
                "scoville_dram_storage", p_WORDS=words, p_WIDTH=self.data_width, p_ADDR=(words - 1).bit_length(),
                i_clk=ClockSignal(), i_read_en=read_port.en, i_read_addr=read_port.addr, o_read_data=read_port.data,
                i_write_en=write_port.en, i_write_addr=write_port.addr, i_write_data=write_port.data)
        else:
            m.submodules.storage = storage = self.storage
            write_port = storage.write_port(granularity=8)
            read_port = storage.read_port()

        now = Signal(TIME_BITS)
        m.d.sync += now.eq(now + 1)

        def in_range(addr):
            return (addr >> shift) < words

        # ---- reads: queued bursts, then one beat per beat_interval cycles
        burst = data.StructLayout({"addr": self.addr_width, "len": 8, "id": self.id_width, "due": TIME_BITS})
        m.submodules.read_queue = read_queue = fifo.SyncFIFOBuffered(width=burst.size, depth=self.queue_depth)
        m.d.comb += [
            axi.arready.eq(read_queue.w_rdy),
            read_queue.w_en.eq(axi.arvalid),
        ]
        incoming = data.View(burst, read_queue.w_data)
        m.d.comb += [incoming.addr.eq(axi.araddr), incoming.len.eq(axi.arlen), incoming.id.eq(axi.arid),
                     incoming.due.eq(now + self.latency)]

        head = data.View(burst, read_queue.r_data)
        read_beat = Signal(8)
        read_wait = Signal(8)
        # results queue: word, response, last, id; credits so a stalled master never loses a beat
        result = data.StructLayout({"data": self.data_width, "resp": 2, "last": 1, "id": self.id_width})
        m.submodules.results = results = fifo.SyncFIFO(width=result.size, depth=4)
        in_flight = Signal()
        flight = Signal(result)  # what the word read this cycle belongs to
        beat_addr = Signal(self.addr_width)
        m.d.comb += beat_addr.eq((head.addr & ~(nbytes - 1)) + (read_beat << shift))
        issue = Signal()
        m.d.comb += issue.eq(read_queue.r_rdy & ((now - head.due).as_signed() >= 0) & (read_wait == 0)
                             & (results.level + in_flight < 3))
        m.d.comb += [read_port.addr.eq(beat_addr >> shift), read_port.en.eq(issue)]
        m.d.sync += in_flight.eq(issue)
        with m.If(issue):
            last = read_beat == head.len
            m.d.sync += [
                flight.resp.eq(Mux(in_range(beat_addr), Resp.OKAY, Resp.DECERR)),
                flight.last.eq(last), flight.id.eq(head.id),
                read_beat.eq(Mux(last, 0, read_beat + 1)),
                read_wait.eq(self.beat_interval - 1),
            ]
            m.d.comb += read_queue.r_en.eq(last)
        with m.Elif(read_wait != 0):
            m.d.sync += read_wait.eq(read_wait - 1)
        produced = data.View(result, results.w_data)
        m.d.comb += [
            results.w_en.eq(in_flight),
            produced.data.eq(Mux(flight.resp == Resp.OKAY, read_port.data, 0)),
            produced.resp.eq(flight.resp), produced.last.eq(flight.last), produced.id.eq(flight.id),
        ]
        out = data.View(result, results.r_data)
        m.d.comb += [
            axi.rvalid.eq(results.r_rdy), axi.rdata.eq(out.data), axi.rresp.eq(out.resp),
            axi.rlast.eq(out.last), axi.rid.eq(out.id), results.r_en.eq(axi.rready),
        ]

        # ---- writes: the W beats of the oldest AW, then a response after the latency
        m.submodules.write_queue = write_queue = fifo.SyncFIFOBuffered(width=burst.size, depth=self.queue_depth)
        waw = data.View(burst, write_queue.w_data)
        m.d.comb += [
            axi.awready.eq(write_queue.w_rdy),
            write_queue.w_en.eq(axi.awvalid),
            waw.addr.eq(axi.awaddr), waw.len.eq(axi.awlen), waw.id.eq(axi.awid),
        ]
        whead = data.View(burst, write_queue.r_data)
        write_beat = Signal(8)
        write_wait = Signal(8)
        write_error = Signal()
        write_addr = Signal(self.addr_width)
        m.d.comb += write_addr.eq((whead.addr & ~(nbytes - 1)) + (write_beat << shift))
        response = data.StructLayout({"resp": 2, "id": self.id_width, "due": TIME_BITS})
        m.submodules.responses = responses = fifo.SyncFIFOBuffered(width=response.size, depth=self.queue_depth)
        m.d.comb += axi.wready.eq(write_queue.r_rdy & (write_wait == 0) & responses.w_rdy)
        beat_ok = in_range(write_addr)
        m.d.comb += [write_port.addr.eq(write_addr >> shift), write_port.data.eq(axi.wdata)]
        new_response = data.View(response, responses.w_data)
        m.d.comb += [new_response.id.eq(whead.id), new_response.due.eq(now + self.latency),
                     new_response.resp.eq(Mux(write_error | ~beat_ok, Resp.DECERR, Resp.OKAY))]
        with m.If(axi.wvalid & axi.wready):
            m.d.comb += write_port.en.eq(Mux(beat_ok, axi.wstrb, 0))
            m.d.sync += write_wait.eq(self.beat_interval - 1)
            with m.If(write_beat == whead.len):
                m.d.sync += [write_beat.eq(0), write_error.eq(0)]
                m.d.comb += [write_queue.r_en.eq(1), responses.w_en.eq(1)]
            with m.Else():
                m.d.sync += [write_beat.eq(write_beat + 1), write_error.eq(write_error | ~beat_ok)]
        with m.Elif(write_wait != 0):
            m.d.sync += write_wait.eq(write_wait - 1)
        rhead = data.View(response, responses.r_data)
        m.d.comb += [
            axi.bvalid.eq(responses.r_rdy & ((now - rhead.due).as_signed() >= 0)),
            axi.bresp.eq(rhead.resp), axi.bid.eq(rhead.id),
            responses.r_en.eq(axi.bvalid & axi.bready),
        ]
        return m


class _Port:
    """The signals of one port of the Verilog storage (named like ``lib.memory`` port fields)."""

    def __init__(self, width: int, words: int, strobes: bool = False):
        self.addr = Signal(range(words))
        self.data = Signal(width)
        self.en = Signal(width // 8 if strobes else 1)
