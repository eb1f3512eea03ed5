"""The matrix unit of a core: executes ``MATMUL`` instructions with the systolic array.

``C (+)= A @ B`` with A ``[M, K]`` and B ``[K, N]`` (or ``[N, K]`` with ``B_TRANSPOSED``) int8 in
the scratchpad at any element address and row stride, C ``[M, N]`` int32 in the accumulator at
any word address and row stride (``addr3``). The product is cut into weight tiles of R x C (K and
N padded with zeros); for each N-tile and each K-tile the unit loads the tile's R weight rows
(two a cycle with an even R when B and its row stride are on scratchpad rows, the second through
the scratchpad's pair port; read as C columns into one of two tile buffers and transposed when B
is transposed: one buffer fills while the other's rows enter the array), then streams the M
activation rows
``A[:, K-tile]``. An N-tile's result rows add up over its K-tiles in the unit's partial sums (a
block RAM of ``partial_rows`` rows of C int32), and its last K-tile's rows go to the accumulator:
stored over C, or added into it with ``ACCUMULATE`` (the accumulator's read-modify-write path),
with element masks for tiles that stop before a row's end or straddle two accumulator rows. The
accumulator's bank so sees one write per result row, not a read-modify-write per K-tile, and the
vector unit and the DMA wait for it that much less (tiny-llama's 64-token prompt on the 8x8 chip:
199 156 -> 179 455 cycles). A MATMUL of more than ``partial_rows`` rows sends every K-tile's rows
to the accumulator instead, stored on the first and added on the others.

Accumulation wraps at int32, as in the ISA (``docs/isa.md``): sums of int8 products over
``K < 2**17`` never wrap.

Two instructions overlap: the unit takes the next ``MATMUL`` as soon as it has sent every read of
the one it holds, so the next one's first weight tile loads, and its rows stream, while the last
tile's results of the one before still cross the array and the accumulator (about R + C + 10
cycles; in a decode, where every tile has one row, that was most of a short instruction's fixed
cost). Results leave the array in order, so each instruction's ``done`` comes in order, once its
own last result is written: an instruction's results are walked against its own fields, kept in
a two-entry queue from the moment it is taken until its last result row is written.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.core.chunks import ChunkReader, ChunkSplitter
from rtl.matrix.systolic import SystolicArray, counters_layout
from rtl.memory.accumulator import matrix_write_layout
from rtl.memory.bridge import SramReadSignature
from scoville.isa import Flag, Instruction

__all__ = ["MatrixUnit"]


#: an activation read: the result row's accumulate flag, the tile's last row
_activation_tag = data.StructLayout({"accumulate": 1, "last": 1})
#: a weight read: row i of a tile, or column j (B transposed); ``pair``: rows i and i + 1 at once
_weight_tag = data.StructLayout({"column": 1, "pair": 1, "index": 7})


class MatrixUnit(wiring.Component):
    """``MATMUL`` sequencer, systolic array and result writer.

    Parameters
    ----------
    rows, columns : int
        The systolic array R x C; ``columns`` is also the accumulator's lanes per row.
    spad_row_bytes : int
        Bytes per scratchpad row (at least ``max(rows, columns)``, a power of two).
    spad_row_bits, acc_row_bits : int
        Row-address widths of the scratchpad and accumulator.
    partial_rows : int
        Rows of partial sums (0 or a power of two; ``ChipConfig.partial_rows``): a MATMUL of up to
        this many rows adds its K-tiles up in the unit.

    Ports
    -----
    instruction : In(stream.Signature(Instruction)), ``MATMUL`` s; ``ready`` once every read of the
        previous one is sent, with at most two instructions in the unit.
    done : Out(1), one-cycle strobe per instruction, in order, once every result of it is in the
        accumulator.
    spad : Out(SramReadSignature(spad_row_bits, 8 * spad_row_bytes)), the activation rows.
    spad_weights : Out(SramReadSignature(spad_row_bits, 8 * spad_row_bytes)), the weight tiles: a
        second read port, so the next tile's weights load while the current tile's activations
        stream (in parallel when the two are in different scratchpad banks).
    spad_pair : Out(SramReadSignature(spad_row_bits, 8 * spad_row_bytes)), with an even R: the
        second weight row of each cycle, on a scratchpad port that is always ready.
    acc : Out(stream.Signature(matrix_write_layout(acc_row_bits, columns)))
    busy : Out(1), an instruction is in the unit.
    overlap : Out(1), the unit holds one instruction and would take the next (``instruction.ready``
        while one is in flight), so that the controller can offer it without waiting for ``done``.
    counters : Out(the systolic array's counters)
    """

    def __init__(self, *, rows: int = 8, columns: int = 8, spad_row_bytes: int = 8, spad_row_bits: int = 15,
                 acc_row_bits: int = 13, partial_rows: int = 512):
        if spad_row_bytes < max(rows, columns) or spad_row_bytes & (spad_row_bytes - 1):
            raise ValueError(f"spad_row_bytes must be a power of two >= max(rows, columns), got {spad_row_bytes!r}")
        if columns & (columns - 1):
            raise ValueError(f"columns must be a power of two (accumulator lanes), got {columns!r}")
        if max(rows, columns) > 64:
            raise ValueError("rows and columns must be at most 64")
        if not isinstance(partial_rows, int) or partial_rows < 0 or partial_rows & (partial_rows - 1):
            raise ValueError(f"partial_rows must be 0 or a power of two, got {partial_rows!r}")
        self.rows, self.columns, self.partial_rows = rows, columns, partial_rows
        self.spad_row_bytes, self.spad_row_bits, self.acc_row_bits = spad_row_bytes, spad_row_bits, acc_row_bits
        #: weight rows a cycle into the array: two when R is even
        self.weight_rows = 2 if rows % 2 == 0 else 1
        self.array = SystolicArray(rows, columns, weight_rows=self.weight_rows)
        super().__init__({
            "instruction": In(stream.Signature(Instruction)),
            "done": Out(1),
            "busy": Out(1),
            "overlap": Out(1),
            "spad": Out(SramReadSignature(spad_row_bits, 8 * spad_row_bytes)),
            "spad_weights": Out(SramReadSignature(spad_row_bits, 8 * spad_row_bytes)),
            "spad_pair": Out(SramReadSignature(spad_row_bits, 8 * spad_row_bytes)),
            "acc": Out(stream.Signature(matrix_write_layout(acc_row_bits, columns))),
            "counters": Out(counters_layout),
        })

    def elaborate(self, platform):
        m = Module()
        R, C, P = self.rows, self.columns, self.weight_rows
        chunk = max(R, C)
        m.submodules.array = array = self.array
        m.submodules.reader = reader = ChunkReader(row_bits=self.spad_row_bits, row_elems=self.spad_row_bytes,
                                                   elem_bits=8, chunk=chunk, depth=4, tag_bits=_activation_tag.size)
        wiring.connect(m, reader.sram, wiring.flipped(self.spad))
        m.submodules.weight_reader = weight_reader = ChunkReader(
            row_bits=self.spad_row_bits, row_elems=self.spad_row_bytes, elem_bits=8, chunk=chunk, depth=4,
            tag_bits=_weight_tag.size, pair=P == 2)
        wiring.connect(m, weight_reader.sram, wiring.flipped(self.spad_weights))
        if P == 2:
            wiring.connect(m, weight_reader.pair_sram, wiring.flipped(self.spad_pair))
        m.d.comb += self.counters.eq(array.counters)
        spad_mask = (1 << reader.addr_bits) - 1
        acc_addr_bits = self.acc_row_bits + (C.bit_length() - 1)

        ins = Signal(Instruction)   # the instruction whose reads are being sent
        m_rows, n_cols, k_len = ins.rows, ins.cols, ins.imm[:24]
        transposed = ins.flags[Flag.B_TRANSPOSED.bit_length() - 1]
        accumulate_all = ins.flags[Flag.ACCUMULATE.bit_length() - 1]
        empty = Signal()
        m.d.comb += empty.eq((ins.rows == 0) | (ins.cols == 0))

        # ------------------------------------------------------------ issue: reads in array order
        # Two issuers walk the same tiles (N-tiles outer, K-tiles inner): the weight issuer runs
        # ahead (the array loads a tile into its idle bank while the previous one computes; its
        # weights port stalls while both banks are taken), the activation issuer sends each
        # tile's M rows. A tile's activations wait in the array until its weights are loaded.
        n0 = Signal(16)
        k0 = Signal(24)
        index = Signal(16)        # activation row m
        pointer = Signal(32)      # element address of the next activation read
        wk = Signal(range(R + 1))  # rows of K in this K-tile
        m.d.comb += wk.eq(Mux(k_len - k0 < R, (k_len - k0)[:8], R))
        last_k = Signal()
        last_n = Signal()
        m.d.comb += [last_k.eq(k0 + R >= k_len), last_n.eq(n0 + C >= n_cols)]
        request = reader.request.payload
        tag = data.View(_activation_tag, request.tag)
        accepted = self.instruction.valid & self.instruction.ready

        # What the result walker needs of each instruction, from its acceptance until its last
        # result row is taken: the one whose results are arriving, and the one whose reads are
        # being sent (a result row of the later one is at least R + C cycles behind its reads).
        out_layout = data.StructLayout({"rows": 16, "cols": 16, "k": 24, "base": 32, "stride": 32, "accumulate": 1})
        m.submodules.outstanding = outstanding = fifo.SyncFIFO(width=out_layout.size, depth=2)
        payload = self.instruction.payload
        m.d.comb += [outstanding.w_data.eq(Cat(payload.rows, payload.cols, payload.imm[:24], payload.addr2,
                                               payload.addr3, payload.flags[Flag.ACCUMULATE.bit_length() - 1])),
                     outstanding.w_en.eq(accepted)]
        head = data.View(out_layout, outstanding.r_data)
        done_pipe = Signal(4)   # a strobe per instruction: its last result row taken, then written
        weights_idle = Signal()

        with m.FSM(name="issue") as issue:
            with m.State("IDLE"):
                m.d.comb += self.instruction.ready.eq(weights_idle & outstanding.w_rdy)
                with m.If(accepted):
                    m.d.sync += [ins.eq(payload), n0.eq(0), k0.eq(0), index.eq(0), pointer.eq(payload.addr0)]
                    m.next = "START"
            with m.State("START"):
                with m.If(empty):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "ACTIVATIONS"
            with m.State("ACTIVATIONS"):
                last_row = index == m_rows - 1
                m.d.comb += [
                    reader.request.valid.eq(1),
                    request.addr.eq(pointer & spad_mask),
                    request.count.eq(wk),
                    tag.accumulate.eq(accumulate_all | (k0 != 0)),
                    tag.last.eq(last_row),
                ]
                with m.If(reader.request.ready):
                    m.d.sync += [index.eq(index + 1), pointer.eq(pointer + ins.stride0)]
                    with m.If(last_row):
                        m.d.sync += index.eq(0)
                        with m.If(~last_k):
                            m.d.sync += [k0.eq(k0 + R), pointer.eq(ins.addr0 + k0 + R)]
                        with m.Elif(~last_n):
                            m.d.sync += [k0.eq(0), n0.eq(n0 + C), pointer.eq(ins.addr0)]
                        with m.Else():
                            m.next = "IDLE"

        w_n0 = Signal(16)
        w_k0 = Signal(24)
        w_index = Signal(16)      # weight row i / weight column j
        w_pointer = Signal(32)
        b_k_base = Signal(32)     # B[k0, 0] (plain) ; B^T[n0, 0] (transposed)
        w_wn = Signal(range(C + 1))  # columns in the weight issuer's N-tile
        w_wk = Signal(range(R + 1))  # rows of K in its K-tile
        m.d.comb += [
            w_wn.eq(Mux(n_cols - w_n0 < C, n_cols - w_n0, C)),
            w_wk.eq(Mux(k_len - w_k0 < R, (k_len - w_k0)[:8], R)),
        ]
        w_request = weight_reader.request.payload
        w_tag = data.View(_weight_tag, w_request.tag)
        # B's rows two at a time when every tile row is one scratchpad row (B and its row stride on
        # row boundaries, as the compiler lays out weights): row i + 1 through the pair port
        row_mask = self.spad_row_bytes - 1
        pairing = Signal()
        if P == 2:
            m.d.comb += pairing.eq(~transposed & ((ins.addr1 & row_mask) == 0) & ((ins.stride1 & row_mask) == 0))
        with m.FSM(name="weights") as weights:
            with m.State("IDLE"):
                with m.If(accepted):
                    m.d.sync += [w_n0.eq(0), w_k0.eq(0), b_k_base.eq(self.instruction.payload.addr1)]
                    m.next = "START_TILE"
            with m.State("START_TILE"):   # the instruction's first tile
                with m.If(empty):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [w_index.eq(0), w_pointer.eq(b_k_base + Mux(transposed, w_k0, w_n0))]
                    m.next = "ROWS"
            with m.State("ROWS"):
                # plain: row i = B[k0 + i, n0 : n0 + wn]; transposed: column j = B^T[n0 + j, k0 : k0 + wk]
                count = Mux(transposed, Mux(w_index < w_wn, w_wk, 0), Mux(w_index < w_wk, w_wn, 0))
                m.d.comb += [
                    weight_reader.request.valid.eq(1),
                    w_request.addr.eq(w_pointer & spad_mask),
                    w_request.count.eq(count),
                    w_tag.index.eq(w_index),
                    w_tag.column.eq(transposed),
                    w_tag.pair.eq(pairing),
                ]
                step = Mux(pairing, 2, 1)
                if P == 2:
                    m.d.comb += [w_request.addr2.eq((w_pointer + ins.stride1) & spad_mask),
                                 w_request.count2.eq(Mux(pairing & (w_index + 1 < w_wk), w_wn, 0))]
                with m.If(weight_reader.request.ready):
                    m.d.sync += [w_index.eq(w_index + step), w_pointer.eq(w_pointer + Mux(pairing, ins.stride1 << 1,
                                                                                          ins.stride1))]
                    # the next tile's first read follows this tile's last in the next cycle (a
                    # decode's tiles are R reads each, so a cycle between them was 1/R of its time)
                    with m.If(w_index == Mux(transposed, C - 1, R - step)):
                        m.d.sync += w_index.eq(0)
                        with m.If(w_k0 + R < k_len):
                            next_base = Mux(transposed, b_k_base, b_k_base + ins.stride1 * R)
                            m.d.sync += [w_k0.eq(w_k0 + R), b_k_base.eq(next_base),
                                         w_pointer.eq(next_base + Mux(transposed, w_k0 + R, w_n0))]
                        with m.Elif(w_n0 + C < n_cols):
                            next_base = Mux(transposed, b_k_base + ins.stride1 * C, ins.addr1)
                            m.d.sync += [w_k0.eq(0), w_n0.eq(w_n0 + C), b_k_base.eq(next_base),
                                         w_pointer.eq(next_base + Mux(transposed, 0, w_n0 + C))]
                        with m.Else():
                            m.next = "IDLE"

        # ------------------------------------------------------------ responses into the array
        response = reader.response.payload
        rtag = data.View(_activation_tag, response.tag)
        w_response = weight_reader.response.payload
        w_rtag = data.View(_weight_tag, w_response.tag)
        # B transposed: a tile's C columns fill one of two tile buffers while the other's R rows
        # enter the array (row i is byte i of every column), so a tile costs max(C, R) cycles, not
        # C + R. A plain weight row passes straight through once no buffered tile is waiting.
        # With two rows a beat (even R) the buffer's rows go in two at a time, and plain rows read
        # one at a time (B off row boundaries) wait in `half` for the next.
        tiles = [Array(Signal(8 * R, name=f"tile{b}_column{j}") for j in range(C)) for b in range(2)]
        full = Signal(2)        # the buffer holds a whole tile not yet sent into the array
        fill = Signal()         # the buffer the next column goes into
        emit = Signal()         # the buffer whose rows go into the array next
        emit_row = Signal(range(R))
        half = Signal(8 * C)    # an even plain row read alone, waiting for the odd one
        half_valid = Signal()
        m.d.comb += [
            array.activations.payload.data.eq(response.data[:8 * R]),
            array.activations.payload.accumulate.eq(rtag.accumulate),
            array.activations.payload.last.eq(rtag.last),
            array.activations.valid.eq(reader.response.valid),
            reader.response.ready.eq(array.activations.ready),
        ]
        with m.If(full.bit_select(emit, 1)):
            buffered = [Mux(emit, tiles[1][j], tiles[0][j]) for j in range(C)]
            m.d.comb += [array.weights.valid.eq(1),
                         array.weights.payload.data.eq(Cat(buffered[j].word_select(emit_row + p, 8)
                                                           for p in range(P) for j in range(C)))]
            with m.If(array.weights.ready):
                m.d.sync += emit_row.eq(emit_row + P)
                with m.If(emit_row == R - P):
                    m.d.sync += [emit_row.eq(0), full.bit_select(emit, 1).eq(0), emit.eq(~emit)]
        with m.Elif(weight_reader.response.valid & ~w_rtag.column & (full == 0)):
            if P == 1:
                m.d.comb += [array.weights.valid.eq(1), array.weights.payload.data.eq(w_response.data[:8 * C]),
                             weight_reader.response.ready.eq(array.weights.ready)]
            else:
                with m.If(w_rtag.pair):
                    second = w_response.data[8 * chunk:8 * chunk + 8 * C]
                    m.d.comb += [array.weights.valid.eq(1),
                                 array.weights.payload.data.eq(Cat(w_response.data[:8 * C], second)),
                                 weight_reader.response.ready.eq(array.weights.ready)]
                with m.Elif(~half_valid):
                    m.d.comb += weight_reader.response.ready.eq(1)
                    m.d.sync += [half.eq(w_response.data[:8 * C]), half_valid.eq(1)]
                with m.Else():
                    m.d.comb += [array.weights.valid.eq(1),
                                 array.weights.payload.data.eq(Cat(half, w_response.data[:8 * C])),
                                 weight_reader.response.ready.eq(array.weights.ready)]
                    with m.If(array.weights.ready):
                        m.d.sync += half_valid.eq(0)
        with m.If(weight_reader.response.valid & w_rtag.column & ~full.bit_select(fill, 1)):
            column = w_rtag.index[:max(1, (C - 1).bit_length())]
            m.d.comb += weight_reader.response.ready.eq(1)
            with m.If(fill):
                m.d.sync += tiles[1][column].eq(w_response.data[:8 * R])
            with m.Else():
                m.d.sync += tiles[0][column].eq(w_response.data[:8 * R])
            with m.If(w_rtag.index == C - 1):
                m.d.sync += [full.bit_select(fill, 1).eq(1), fill.eq(~fill)]

        # ------------------------------------------------------------ results into the accumulator
        # An N-tile's result rows add up over its K-tiles in the unit's own partial sums (a block
        # RAM of ``partial_rows`` rows), and only the last K-tile's rows go to the accumulator: stored,
        # or added to C with ACCUMULATE. The accumulator's bank then sees one write per result row
        # instead of a read-modify-write per K-tile, which the vector unit and the DMA waited for.
        # An instruction of more rows than that sends every K-tile's rows, as a read-modify-write.
        m.submodules.splitter = splitter = ChunkSplitter(row_bits=self.acc_row_bits, row_elems=C, elem_bits=32,
                                                         chunk=C, flags=1)
        row_layout = data.ArrayLayout(signed(32), C)
        if self.partial_rows:
            m.submodules.partial = partial = memory.Memory(shape=row_layout, depth=self.partial_rows, init=[])
            partial_write = partial.write_port()
            partial_read = partial.read_port(transparent_for=(partial_write,))
        else:   # no partial sums (``partial_rows`` 0): every row goes to the accumulator as it comes
            partial_write = partial_read = None
        # the walker's place in the head instruction's result, relative to its C address (addr2)
        out_n0 = Signal(16)
        out_k0 = Signal(24)
        out_m = Signal(16)
        out_offset = Signal(32)
        out_wn = Signal(range(C + 1))
        m.d.comb += out_wn.eq(Mux(head.cols - out_n0 < C, head.cols - out_n0, C))
        final = Signal()
        m.d.comb += final.eq((out_m == head.rows - 1) & (out_k0 + R >= head.k) & (out_n0 + C >= head.cols))
        out_pointer = Signal(32)
        m.d.comb += out_pointer.eq(head.base + out_offset)
        # a result row taken from the array waits a cycle for its partial sum (the block RAM's
        # read), with what its write needs
        held = Signal(data.StructLayout({
            "valid": 1, "data": row_layout, "addr": acc_addr_bits, "count": range(C + 1), "accumulate": 1,
            "first": 1,      # the N-tile's first K-tile: the partial sum is this row
            "last": 1,       # its last K-tile: the sum goes to the accumulator
            "partial": 1,    # the instruction's rows fit the partial sums
            "final": 1}))    # the instruction's last result row
        summed = Signal(row_layout)
        if partial_read is not None:
            for j in range(C):
                m.d.comb += summed[j].eq(Mux(held.first, held.data[j], held.data[j] + partial_read.data[j]))
        sends = Signal()
        m.d.comb += sends.eq(~held.partial | held.last)
        leaves = Signal()       # the held row is through this cycle
        m.d.comb += leaves.eq(held.valid & (~sends | splitter.request.ready))
        advance = Signal()
        m.d.comb += advance.eq(~held.valid | leaves)
        m.d.comb += [
            splitter.request.valid.eq(held.valid & sends),
            splitter.request.payload.addr.eq(held.addr),
            splitter.request.payload.count.eq(held.count),
            splitter.request.payload.data.eq(Mux(held.partial, summed, held.data)),
            splitter.request.payload.flags.eq(held.accumulate),
            array.results.ready.eq(advance),
        ]
        # the held row's partial-sum address: the row the walker was at when it took it
        held_m = Signal(16)
        if partial_read is not None:
            m.d.comb += [partial_read.addr.eq(out_m), partial_read.en.eq(advance),
                         partial_write.addr.eq(held_m), partial_write.data.eq(summed),
                         partial_write.en.eq(leaves & held.partial & ~held.last)]
        taken = array.results.valid & advance
        fits = (head.rows <= self.partial_rows) if self.partial_rows else Const(0, 1)
        with m.If(advance):
            m.d.sync += held.valid.eq(taken)
        with m.If(taken):
            m.d.sync += [
                held.data.eq(array.results.payload.data),
                held.addr.eq(out_pointer[:acc_addr_bits]),
                held.count.eq(out_wn),
                held.accumulate.eq(Mux(fits, head.accumulate, array.results.payload.accumulate)),
                held.first.eq(out_k0 == 0),
                held.last.eq(out_k0 + R >= head.k),
                held.partial.eq(fits),
                held.final.eq(final),
                held_m.eq(out_m),
            ]
        head_empty = (head.rows == 0) | (head.cols == 0)
        walked = Signal()       # the head instruction's last result row is taken (or it has none)
        finished = Signal()     # ... and has left for the accumulator
        # an instruction without results finishes once the one before has (done strobes in order)
        with m.If(outstanding.r_rdy & head_empty & ~held.valid):
            m.d.comb += [walked.eq(1), finished.eq(1)]
        with m.Elif(taken):
            m.d.sync += [out_m.eq(out_m + 1), out_offset.eq(out_offset + head.stride)]
            with m.If(out_m == head.rows - 1):
                m.d.sync += out_m.eq(0)
                with m.If(out_k0 + R < head.k):
                    m.d.sync += [out_k0.eq(out_k0 + R), out_offset.eq(out_n0)]
                with m.Else():
                    m.d.sync += [out_k0.eq(0), out_n0.eq(out_n0 + C), out_offset.eq(out_n0 + C)]
            with m.If(final):
                m.d.comb += walked.eq(1)
        with m.If(leaves & held.final):
            m.d.comb += finished.eq(1)
        with m.If(walked):
            m.d.sync += [out_n0.eq(0), out_k0.eq(0), out_m.eq(0), out_offset.eq(0)]
        m.d.comb += outstanding.r_en.eq(walked)
        row = splitter.rows.payload
        m.d.comb += [
            self.acc.valid.eq(splitter.rows.valid),
            self.acc.payload.addr.eq(row.row),
            self.acc.payload.data.eq(row.data),
            self.acc.payload.mask.eq(row.mask),
            self.acc.payload.accumulate.eq(row.flags[0]),
            splitter.rows.ready.eq(self.acc.ready),
        ]

        # done: the last result row has left the splitter (taken by the accumulator in the cycle
        # `finished` is set: the splitter is combinational), and the accumulator's read-modify-write
        # pipeline (two cycles) has written it
        m.d.sync += done_pipe.eq(Cat(finished, done_pipe[:-1]))
        m.d.comb += [
            self.done.eq(done_pipe[-1]),
            weights_idle.eq(weights.ongoing("IDLE")),
            self.busy.eq(~issue.ongoing("IDLE") | ~weights_idle | outstanding.r_rdy | held.valid | done_pipe.any()),
            self.overlap.eq(self.instruction.ready & outstanding.r_rdy),
        ]
        return m
