"""The DMA engine: executes descriptors between DRAM, scratchpad and accumulator memory ports."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.dma.descriptor import ADDR_BITS, COUNT_BITS, Descriptor, DmaError, Space, Status
from rtl.dma.port import BEATS_BITS, MemoryPortSignature, Resp

__all__ = ["DmaEngine"]

EXTENT_BITS = ADDR_BITS + COUNT_BITS + 2  # the widest sum the window check forms


def _row_layout(bytes_per_beat: int) -> data.StructLayout:
    """What the realigner needs to know about one row."""
    return data.StructLayout({
        "beats_in": BEATS_BITS,   # words read
        "beats_out": BEATS_BITS,  # words written
        "prime": 1,               # the first word read makes no output word on its own
        "shift": range(bytes_per_beat),  # (dst offset - src offset) mod bytes per word
        "first_strb": bytes_per_beat,
        "last_strb": bytes_per_beat,
        "dst": 2,                 # the memory (Space) its words go to
    })


class DmaEngine(wiring.Component):
    """Moves 1D/2D/3D strided blocks between three memory ports, descriptors in order and one
    behind the other without a gap.

    A descriptor (:class:`rtl.dma.descriptor.Descriptor`) is first checked: every byte it would
    touch must lie in the job window ``[window_base, window_limit)`` for DRAM, or inside the SRAM
    for the scratchpad and accumulator. A descriptor that fails makes no access at all and
    reports ``SRC_WINDOW``/``DST_WINDOW`` with the start address of the offending side. The check
    multiplies the row and plane counts by the strides serially, least significant bit first,
    and stops when no bit is left: 4 cycles for a one-row descriptor, 4 + log2(rows) for a 2D one
    (about 20 for any descriptor when the multiplier ran over all 16 bits).

    Then each row (the contiguous innermost dimension) becomes one read request on the source
    port and one write request on the destination port; a realigner shifts the words read into
    the destination's byte alignment and sets write strobes on the partial first and last words,
    so addresses and lengths need no alignment. Rows are issued up to ``rows_in_flight`` ahead of
    the data. Full rate: one word per cycle once a row is under way (a misaligned row costs one
    extra cycle).

    Descriptors overlap: the next one is taken and checked while one runs, and its rows are issued
    as soon as the last row of the one before is, when both read the same memory and neither
    writes it (a run of LOADs from DRAM, into the scratchpad and the accumulator in any order);
    otherwise once the one before has finished. So the DRAM latency and the check are paid once
    for a run of descriptors, not once each. Every row carries its destination, and the writes
    acknowledged are counted per destination memory, so each descriptor reports its status in
    order, once its own last write is acknowledged. The engine holds up to three: two whose rows
    are issued, waiting for their writes, and one checked and waiting to start
    (``descriptor.ready`` is low from when it takes one until that one starts).

    A bus error (SLVERR/DECERR on a read beat or a write response) stops the descriptor
    cleanly: no new rows are issued, the rows already requested are drained with zero write
    strobes (so the bus protocol completes and nothing more is written), and the status reports
    the first error and its address. Every descriptor taken before the engine is empty again
    reports that error too and moves nothing; so does every one behind a descriptor that failed
    its check. Once the last status of them is taken, the engine starts afresh.

    Parameters
    ----------
    data_width : int
        Bits per word on every port (64, 128, ...).
    spad_bytes, acc_bytes : int
        Size of the scratchpad and accumulator address spaces, in bytes.
    rows_in_flight : int
        Rows issued ahead of the realigner.

    Ports
    -----
    descriptor : In(stream.Signature(Descriptor))
    status : Out(stream.Signature(Status)), one per descriptor.
    window_base, window_limit : In(ADDR_BITS), the DRAM window of the job (limit exclusive).
    busy : Out(1)
    dram, spad, acc : Out(MemoryPortSignature(ADDR_BITS, data_width))
    """

    def __init__(self, data_width: int = 64, spad_bytes: int = 1 << 16, acc_bytes: int = 1 << 16,
                 rows_in_flight: int = 16):
        if not isinstance(data_width, int) or data_width < 8 or data_width & (data_width - 1):
            raise ValueError(f"data_width must be a power of two >= 8, got {data_width!r}")
        for name, value in (("spad_bytes", spad_bytes), ("acc_bytes", acc_bytes)):
            if not isinstance(value, int) or not 0 <= value <= 1 << ADDR_BITS:
                raise ValueError(f"{name} must be an integer in 0..2**{ADDR_BITS}, got {value!r}")
        if not isinstance(rows_in_flight, int) or rows_in_flight < 2:
            raise ValueError(f"rows_in_flight must be an integer >= 2, got {rows_in_flight!r}")
        self.data_width, self.spad_bytes, self.acc_bytes = data_width, spad_bytes, acc_bytes
        self.rows_in_flight = rows_in_flight
        port = MemoryPortSignature(ADDR_BITS, data_width)
        super().__init__({
            "descriptor": In(stream.Signature(Descriptor)),
            "status": Out(stream.Signature(Status)),
            "window_base": In(ADDR_BITS),
            "window_limit": In(ADDR_BITS),
            "busy": Out(1),
            "dram": Out(port),
            "spad": Out(port),
            "acc": Out(port),
        })

    def elaborate(self, platform):
        m = Module()
        nbytes = self.data_width // 8
        shift = nbytes.bit_length() - 1
        ports = {Space.DRAM: self.dram, Space.SPAD: self.spad, Space.ACC: self.acc}

        desc = Signal(Descriptor)   # the descriptor being checked (or waiting to start)
        run = Signal(Descriptor)    # the descriptor whose rows are being issued (or were last)
        row_bytes = Signal(COUNT_BITS + 3)
        m.d.comb += row_bytes.eq(run.count[0] << run.elem_log2)
        check_row_bytes = Signal(COUNT_BITS + 3)
        m.d.comb += check_row_bytes.eq(desc.count[0] << desc.elem_log2)

        error = Signal(DmaError)
        fault_addr = Signal(ADDR_BITS)
        aborting = Signal()
        m.d.comb += aborting.eq(error != DmaError.OK)
        record_error = Signal()
        record_code = Signal(DmaError)
        record_addr = Signal(ADDR_BITS)
        with m.If(record_error & ~aborting):
            m.d.sync += [error.eq(record_code), fault_addr.eq(record_addr)]

        # ---- window check: extent = (count1-1)*stride0 + (count2-1)*stride1 + row_bytes - 1
        products = [Signal(EXTENT_BITS, name=f"product{n}") for n in range(4)]  # src0 src1 dst0 dst1
        # the strides, doubled each step while the multipliers shift right
        addends = [Signal(EXTENT_BITS, name=f"addend{n}") for n in range(4)]
        src_last = Signal(EXTENT_BITS)
        dst_last = Signal(EXTENT_BITS)
        # (count - 1) for rows and planes, shifted out least significant bit first
        row_multiplier = Signal(COUNT_BITS)
        plane_multiplier = Signal(COUNT_BITS)
        multipliers = [row_multiplier, plane_multiplier, row_multiplier, plane_multiplier]
        strides = [desc.src_stride[0], desc.src_stride[1], desc.dst_stride[0], desc.dst_stride[1]]

        def inside(space, first, last):
            return Mux(space == Space.DRAM, (first >= self.window_base) & (last < self.window_limit),
                       Mux(space == Space.SPAD, last < self.spad_bytes, last < self.acc_bytes))

        # ---- row generator
        read_requests = fifo.SyncFIFO(width=ADDR_BITS + BEATS_BITS, depth=2)
        # as deep as the row queue: a destination that takes one request at a time (an SRAM)
        # must not hold back the reads of the rows behind it
        write_requests = fifo.SyncFIFO(width=ADDR_BITS + BEATS_BITS + 2, depth=self.rows_in_flight)
        row_layout = _row_layout(nbytes)
        rows = fifo.SyncFIFOBuffered(width=row_layout.size, depth=self.rows_in_flight)
        m.submodules.read_requests = read_requests
        m.submodules.write_requests = write_requests
        m.submodules.rows = rows

        row_src, row_dst, plane_src, plane_dst = (Signal(ADDR_BITS, name=n)
                                                  for n in ("row_src", "row_dst", "plane_src", "plane_dst"))
        rows_left = Signal(COUNT_BITS)
        planes_left = Signal(COUNT_BITS)
        generating = Signal()
        generated = Signal()      # the running descriptor's last row is issued this cycle
        # per destination memory, rows issued and rows whose write was acknowledged, since reset
        # (wrapping): a descriptor is complete once its memory's acknowledged count reaches the
        # issued count at its end (the memories acknowledge independently), and no write awaits
        # its response when every pair is equal
        issued_to = Array(Signal(16, name=f"issued_to_{space.name.lower()}") for space in ports)
        acked_from = Array(Signal(16, name=f"acked_from_{space.name.lower()}") for space in ports)
        settled = Signal()
        m.d.comb += settled.eq(Cat(issued == acked for issued, acked in zip(issued_to, acked_from, strict=True)).all())

        src_offset = row_src[:shift]
        dst_offset = row_dst[:shift]
        beats_in = Signal(BEATS_BITS)
        beats_out = Signal(BEATS_BITS)
        end_offset = Signal(shift)  # offset of the last byte of the row in its destination word
        m.d.comb += [
            beats_in.eq((src_offset + row_bytes + (nbytes - 1)) >> shift),
            beats_out.eq((dst_offset + row_bytes + (nbytes - 1)) >> shift),
            end_offset.eq(dst_offset + row_bytes - 1),
        ]
        row_record = Signal(row_layout)
        m.d.comb += [
            row_record.beats_in.eq(beats_in),
            row_record.beats_out.eq(beats_out),
            row_record.prime.eq(src_offset > dst_offset),
            row_record.shift.eq(dst_offset - src_offset),
            row_record.dst.eq(run.dst_space),
        ]
        all_bytes = Const((1 << nbytes) - 1, nbytes)
        m.d.comb += [row_record.first_strb.eq(all_bytes << dst_offset),
                     row_record.last_strb.eq(all_bytes >> ~end_offset)]
        issue_row = Signal()
        m.d.comb += [
            issue_row.eq(generating & ~aborting & read_requests.w_rdy & write_requests.w_rdy & rows.w_rdy),
            read_requests.w_en.eq(issue_row),
            read_requests.w_data.eq(Cat(row_src, beats_in)),
            write_requests.w_en.eq(issue_row),
            write_requests.w_data.eq(Cat(row_dst, beats_out, run.dst_space)),
            rows.w_en.eq(issue_row),
            rows.w_data.eq(row_record),
        ]
        with m.If(issue_row):
            with m.If(rows_left > 1):
                m.d.sync += [rows_left.eq(rows_left - 1), row_src.eq(row_src + run.src_stride[0]),
                             row_dst.eq(row_dst + run.dst_stride[0])]
            with m.Elif(planes_left > 1):
                next_src = plane_src + run.src_stride[1]
                next_dst = plane_dst + run.dst_stride[1]
                m.d.sync += [planes_left.eq(planes_left - 1), rows_left.eq(run.count[1]),
                             plane_src.eq(next_src), plane_dst.eq(next_dst),
                             row_src.eq(next_src), row_dst.eq(next_dst)]
            with m.Else():
                m.d.sync += generating.eq(0)
                m.d.comb += generated.eq(1)

        # ---- port selection: reads from the running descriptor's source (one that follows it
        # without waiting for its rows to finish reads the same memory); writes to the destination
        # each row carries
        read_response = Signal(self.dram.read_response.payload.shape())
        read_response_valid = Signal()
        read_response_ready = Signal()
        write_data = Signal(self.dram.write_data.payload.shape())
        write_data_dst = Signal(2)
        write_data_valid = Signal()
        write_data_ready = Signal()
        read_requests_ready = Signal()
        write_requests_ready = Signal()
        request_bits = ADDR_BITS + BEATS_BITS
        write_request_dst = write_requests.r_data[request_bits:]
        for space, port in ports.items():
            is_src = run.src_space == space
            m.d.comb += [
                port.read_request.valid.eq(is_src & read_requests.r_rdy),
                port.read_request.payload.eq(read_requests.r_data),
                port.read_response.ready.eq(is_src & read_response_ready),
                port.write_request.valid.eq((write_request_dst == space.value) & write_requests.r_rdy),
                port.write_request.payload.eq(write_requests.r_data[:request_bits]),
                port.write_data.valid.eq((write_data_dst == space.value) & write_data_valid),
                port.write_data.payload.eq(write_data),
                port.write_response.ready.eq(1),   # one for each write request sent it
            ]
            with m.If(is_src):
                m.d.comb += [read_requests_ready.eq(port.read_request.ready),
                             read_response_valid.eq(port.read_response.valid),
                             read_response.eq(port.read_response.payload)]
            with m.If(write_request_dst == space.value):
                m.d.comb += write_requests_ready.eq(port.write_request.ready)
            with m.If(write_data_dst == space.value):
                m.d.comb += write_data_ready.eq(port.write_data.ready)
            with m.If(port.write_response.valid):
                m.d.sync += acked_from[space.value].eq(acked_from[space.value] + 1)
                with m.If(port.write_response.payload.resp.as_value()[1]):
                    m.d.comb += [record_error.eq(1), record_addr.eq(port.write_response.payload.fault_addr),
                                 record_code.eq(Mux(port.write_response.payload.resp == Resp.SLVERR,
                                                    DmaError.WRITE_SLVERR, DmaError.WRITE_DECERR))]
        m.d.comb += [read_requests.r_en.eq(read_requests_ready),
                     write_requests.r_en.eq(write_requests_ready)]

        # ---- realigner: read words of a row -> write words of the same row, shifted
        row = data.View(row_layout, rows.r_data)
        count_in = Signal(BEATS_BITS)
        count_out = Signal(BEATS_BITS)
        previous = Signal(self.data_width)
        need_input = count_in != row.beats_in
        priming = row.prime & (count_in == 0)
        # A skid register behind the output register: the realigner sees a registered "room"
        # rather than the destination's ready (which comes through the AXI master from WREADY).
        skid = Signal(self.dram.write_data.payload.shape())
        skid_dst = Signal(2)
        skid_valid = Signal()
        out_free = ~skid_valid
        current = Mux(need_input, read_response.data, 0)
        window = Cat(previous, current)
        aligned = (window >> Cat(Const(0, 3), nbytes - row.shift))[:self.data_width]
        bad_beat = read_response.resp.as_value()[1]

        take = Signal()
        emit = Signal()
        with m.If(rows.r_rdy):
            with m.If(need_input):
                m.d.comb += [take.eq(read_response_valid & (priming | out_free)),
                             emit.eq(read_response_valid & ~priming & out_free)]
            with m.Else():
                m.d.comb += emit.eq(out_free)
        m.d.comb += read_response_ready.eq(take)
        with m.If(take):
            m.d.sync += [previous.eq(read_response.data), count_in.eq(count_in + 1)]
            with m.If(bad_beat):
                m.d.comb += [record_error.eq(1), record_addr.eq(read_response.fault_addr),
                             record_code.eq(Mux(read_response.resp == Resp.SLVERR,
                                                DmaError.READ_SLVERR, DmaError.READ_DECERR))]
        strobe = Signal(nbytes)
        m.d.comb += strobe.eq(Mux(aborting | (take & bad_beat), 0,
                                  Mux(count_out == 0, row.first_strb, ~0)
                                  & Mux(count_out == row.beats_out - 1, row.last_strb, ~0)))
        sent = write_data_valid & write_data_ready
        with m.If(emit & write_data_valid & ~write_data_ready):
            m.d.sync += [skid_valid.eq(1), skid.data.eq(aligned), skid.strb.eq(strobe), skid_dst.eq(row.dst)]
        with m.Elif(emit):
            m.d.sync += [write_data_valid.eq(1), write_data.data.eq(aligned), write_data.strb.eq(strobe),
                         write_data_dst.eq(row.dst)]
        with m.Elif(sent & skid_valid):
            m.d.sync += [write_data.eq(skid), write_data_dst.eq(skid_dst), skid_valid.eq(0)]
        with m.Elif(sent):
            m.d.sync += write_data_valid.eq(0)
        with m.If(emit):
            with m.If(count_out == row.beats_out - 1):
                m.d.sync += [count_in.eq(0), count_out.eq(0)]
                m.d.comb += rows.r_en.eq(1)
            with m.Else():
                m.d.sync += count_out.eq(count_out + 1)

        with m.If(issue_row):
            m.d.sync += issued_to[run.dst_space.as_value()].eq(issued_to[run.dst_space.as_value()] + 1)

        # ---- control
        # Descriptors taken and not yet reported, in order, once their rows are issued (or at
        # once for one that moves nothing): its destination, the count of rows issued to it that
        # completes it, and the code it reports unless a bus error came first.
        entry = data.StructLayout({"dst": 2, "end": 16, "error": DmaError, "fault_addr": ADDR_BITS})
        m.submodules.reports = reports = fifo.SyncFIFO(width=entry.size, depth=2)
        head = data.View(entry, reports.r_data)
        pushed = data.View(entry, reports.w_data)
        # a descriptor failed its check: the ones taken behind it do not run and report its code
        failed = Signal()
        failed_code = Signal(DmaError)
        failed_addr = Signal(ADDR_BITS)
        stopped = Signal()
        m.d.comb += stopped.eq(aborting | failed)

        with m.If(generated | (generating & aborting)):
            # the running descriptor's rows are all issued (a bus error issues no more)
            m.d.comb += [reports.w_en.eq(1), pushed.dst.eq(run.dst_space),
                         pushed.end.eq(issued_to[run.dst_space.as_value()] + issue_row),
                         pushed.error.eq(DmaError.OK)]
        with m.If(generating & aborting):
            m.d.sync += generating.eq(0)

        complete = Signal()
        # its memory's acknowledged rows at or past the head's end (wrapping: fewer than 2**15 rows
        # in flight), as the rows of the descriptors behind it may be acknowledged before its
        # status is taken
        behind = Signal(16)
        m.d.comb += [
            behind.eq(acked_from[head.dst] - head.end),
            complete.eq(reports.r_rdy & ~behind[15]),
            self.status.valid.eq(complete),
            self.status.payload.error.eq(Mux(aborting, error, head.error)),
            self.status.payload.fault_addr.eq(Mux(aborting, fault_addr, head.fault_addr)),
        ]
        reported = Signal()
        m.d.comb += [reported.eq(complete & self.status.ready), reports.r_en.eq(reported)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.descriptor.ready.eq(1)
                with m.If(self.descriptor.valid):
                    m.d.sync += desc.eq(self.descriptor.payload)
                    m.d.sync += [p.eq(0) for p in products]
                    m.next = "PREPARE"
            with m.State("PREPARE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [row_multiplier.eq(desc.count[1] - 1), plane_multiplier.eq(desc.count[2] - 1)]
                m.d.sync += [addend.eq(stride) for addend, stride in zip(addends, strides, strict=True)]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                # least significant multiplier bit first: product += bit * (stride << step); a
                # multiplier with no bit left adds nothing more, so the check ends there
                with m.If((row_multiplier == 0) & (plane_multiplier == 0)):
                    m.next = "SUM"
                with m.Else():
                    for product, multiplier, addend in zip(products, multipliers, addends, strict=True):
                        m.d.sync += [product.eq(product + Mux(multiplier[0], addend, 0)), addend.eq(addend << 1)]
                    m.d.sync += [row_multiplier.eq(row_multiplier >> 1), plane_multiplier.eq(plane_multiplier >> 1)]
            with m.State("SUM"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [src_last.eq(products[0] + products[1] + desc.src + check_row_bytes - 1),
                             dst_last.eq(products[2] + products[3] + desc.dst + check_row_bytes - 1)]
                m.next = "DECIDE"
            with m.State("DECIDE"):
                # starts the descriptor once the one before has issued its last row (and, between
                # other memories, once it has finished), or records what it reports
                m.d.comb += self.busy.eq(1)
                empty = (desc.count[0] == 0) | (desc.count[1] == 0) | (desc.count[2] == 0)
                code = Signal(DmaError)
                code_addr = Signal(ADDR_BITS)
                with m.If((desc.src_space.as_value() == 3) | (desc.dst_space.as_value() == 3)):
                    m.d.comb += code.eq(DmaError.BAD_SPACE)
                with m.Elif(empty):
                    pass
                with m.Elif(~inside(desc.src_space, desc.src, src_last)):
                    m.d.comb += [code.eq(DmaError.SRC_WINDOW), code_addr.eq(desc.src)]
                with m.Elif(~inside(desc.dst_space, desc.dst, dst_last)):
                    m.d.comb += [code.eq(DmaError.DST_WINDOW), code_addr.eq(desc.dst)]
                runs = ~empty & (code == DmaError.OK) & ~stopped
                # reading the memory the one before reads, which neither writes: then its reads
                # cannot pass a write before it, nor its writes a read (every descriptor in flight
                # reads that memory and writes another)
                same_source = ((desc.src_space == run.src_space) & (desc.src_space != desc.dst_space)
                               & (run.src_space != run.dst_space))
                with m.If(~generating & reports.w_rdy):
                    with m.If(runs):
                        with m.If(settled | same_source):
                            m.d.sync += [run.eq(desc), generating.eq(1),
                                         row_src.eq(desc.src), plane_src.eq(desc.src), row_dst.eq(desc.dst),
                                         plane_dst.eq(desc.dst), rows_left.eq(desc.count[1]),
                                         planes_left.eq(desc.count[2])]
                            m.next = "IDLE"
                    with m.Else():
                        # reports once every descriptor before it has: its own code, or the one
                        # that stopped it
                        # (it waits for no write of its own: the ones before it report first)
                        m.d.comb += [reports.w_en.eq(1), pushed.dst.eq(Space.DRAM.value),
                                     pushed.end.eq(acked_from[Space.DRAM.value])]
                        with m.If(failed):
                            m.d.comb += [pushed.error.eq(failed_code), pushed.fault_addr.eq(failed_addr)]
                        with m.Else():
                            m.d.comb += [pushed.error.eq(code), pushed.fault_addr.eq(code_addr)]
                        with m.If((code != DmaError.OK) & ~failed):
                            m.d.sync += [failed.eq(1), failed_code.eq(code), failed_addr.eq(code_addr)]
                        m.next = "IDLE"
        with m.If(generating | reports.r_rdy):
            m.d.comb += self.busy.eq(1)
        with m.If(reported & (reports.level == 1) & ~generating & fsm.ongoing("IDLE")):
            # the last status is taken and no descriptor waits: a failure stops nothing after it
            m.d.sync += [error.eq(DmaError.OK), failed.eq(0)]
        return m
