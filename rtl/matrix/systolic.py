"""R x C int8 weight-stationary systolic array with double-buffered weights and stream ports."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.matrix.pe import ProcessingElement

__all__ = [
    "SystolicArray", "weight_row_layout", "activation_row_layout", "result_row_layout",
    "counters_layout", "psum_width", "MAX_DIM",
]

#: Largest R or C accepted (the issue's scaling studies go to 32x32).
MAX_DIM = 64
RESULT_BITS = 32
COUNTER_BITS = 32


def weight_row_layout(columns: int, rows: int = 1) -> data.StructLayout:
    """A weight beat: ``rows`` consecutive rows of a weight tile, ``columns`` int8 weights each
    (rows k, k + 1, ... of the R x C tile; row k in ``data[0 : columns]``)."""
    return data.StructLayout({"data": data.ArrayLayout(signed(8), columns * rows)})


def activation_row_layout(rows: int) -> data.StructLayout:
    """One activation row: ``rows`` int8 values (a K-slice of one row of A) and two flags.

    ``accumulate`` is carried to the result row unchanged (add into the accumulator instead of
    overwriting it); ``last`` marks the last row that uses the current weight tile.
    """
    return data.StructLayout({
        "data": data.ArrayLayout(signed(8), rows),
        "accumulate": 1,
        "last": 1,
    })


def result_row_layout(columns: int) -> data.StructLayout:
    """One result row: ``columns`` int32 dot products and the flags of its activation row."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(RESULT_BITS), columns),
        "accumulate": 1,
        "last": 1,
    })


#: Performance counters (cycles since reset, saturating is not needed at 32 bits for tests).
counters_layout = data.StructLayout({
    "busy": COUNTER_BITS,            # an activation row entered the array
    "stall_weights": COUNTER_BITS,   # an activation row waited for its weight tile
    "stall_output": COUNTER_BITS,    # an activation row waited for room on the result side
    "idle": COUNTER_BITS,            # no activation row offered
})


def psum_width(rows: int) -> int:
    """Bits that hold any sum of ``rows`` int8 x int8 products (largest: rows * 128 * 128)."""
    return (rows * 128 * 128).bit_length() + 1


def _check_dim(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DIM:
        raise ValueError(f"{name} must be an integer from 1 to {MAX_DIM}, got {value!r}")


class SystolicArray(wiring.Component):
    """``rows`` x ``columns`` int8 weight-stationary systolic array, int32 results.

    A weight tile ``W`` (``rows`` x ``columns``, K x N) stays in the array while activation rows
    ``a`` (length ``rows``) stream through; each produces the result row ``a @ W`` (length
    ``columns``, exact int32). Every processing element holds two weights: the next tile loads
    into the idle bank while the current one computes, and a bank tag that travels with each
    activation selects the bank, so consecutive tiles follow each other without a bubble.

    Parameters
    ----------
    rows : int
        R, the K extent of a weight tile (activation row length), 1 to :data:`MAX_DIM`.
    columns : int
        C, the N extent of a weight tile (result row length), 1 to :data:`MAX_DIM`.
    weight_rows : int
        Tile rows per weight beat, 1 or 2 (a divisor of ``rows``): with 2 a tile loads in R / 2
        beats, so back-to-back tiles whose activations are one row (a decode) cost about
        R / 2 cycles each (R / 2 + 1 with R = 2), not R, and the matrix engine outruns a DRAM
        that brings one tile row a cycle.

    Ports
    -----
    weights : In(stream.Signature(weight_row_layout(columns, weight_rows)))
        Weight tiles, ``rows / weight_rows`` beats each, tile row 0 first. A tile may load while
        the previous one computes; the port stalls while both banks are taken.
    activations : In(stream.Signature(activation_row_layout(rows)))
        Activation rows for the oldest loaded tile; the row with ``last`` set releases the tile.
    results : Out(stream.Signature(result_row_layout(columns)))
        One result row per activation row, in order, with its ``accumulate`` and ``last`` flags.
    counters : Out(counters_layout)
        Cycle counters since reset: busy, stalled on weights, stalled on output room, idle.

    Latency: an activation row accepted in cycle t writes its result row into the output FIFO in
    cycle t + rows + columns + 1, and it is offered on ``results`` from cycle t + rows + columns
    + 2 (:attr:`latency`). Throughput: one row per cycle. Back-pressure on ``results`` does not
    stop the array: rows are admitted only while the output FIFO has room reserved for every row
    in flight (credit counting), so no enable signal fans out to the processing elements.
    Weight rows reach the columns with the same skew as the activations (column j is written j
    cycles after column 0), so a bank is rewritten column by column right behind the last
    activation row that reads it: the next tile's first weight row is taken the cycle after the
    row that releases the bank, with no drain. A tile whose activations are one row (a decode)
    therefore costs its R weight rows and nothing more; with two rows a beat a released bank
    takes its first beat :attr:`cooldown` (R / 2 - 2) cycles late (see ``elaborate``), and while
    it waits the other bank loads, so such tiles cost about R / 2 cycles each.
    """

    def __init__(self, rows: int = 8, columns: int = 8, weight_rows: int = 1):
        _check_dim("rows", rows)
        _check_dim("columns", columns)
        if weight_rows not in (1, 2) or rows % weight_rows:
            raise ValueError(f"weight_rows must be 1 or 2 and divide rows ({rows}), got {weight_rows!r}")
        self.rows = rows
        self.columns = columns
        self.weight_rows = weight_rows
        self.psum_width = psum_width(rows)
        #: With two rows a beat: cycles a released bank waits, after the cycle that frees it,
        #: before it takes its next tile's first beat (``elaborate`` says why R / 2 - 2).
        self.cooldown = max(rows // 2 - 2, 0) if weight_rows == 2 else 0
        #: Cycles from acceptance of an activation row to its result row being written to the FIFO.
        self.pipeline_depth = rows + columns + 1
        #: Cycles from acceptance of an activation row to its result row being offered.
        self.latency = self.pipeline_depth + 1
        # Rows in flight in steady state are pipeline_depth + FIFO latency + credit return; the
        # margin makes the array run at one row per cycle with an always-ready sink.
        self.fifo_depth = self.pipeline_depth + 4
        super().__init__({
            "weights": In(stream.Signature(weight_row_layout(columns, weight_rows))),
            "activations": In(stream.Signature(activation_row_layout(rows))),
            "results": Out(stream.Signature(result_row_layout(columns))),
            "counters": Out(counters_layout),
        })

    def elaborate(self, platform):
        m = Module()
        R, C, P = self.rows, self.columns, self.weight_rows

        # ---- control: which bank holds which tile --------------------------------------------
        loaded = Signal(2)                     # bank holds a complete tile not yet released
        compute_bank = Signal()                # bank the next activation row uses
        load_bank = Signal()                   # bank the next weight beat writes
        load_row = Signal(range(max(R, 2)))
        reserved = Signal(range(self.fifo_depth + 1))   # FIFO entries promised to rows in flight

        # When a bank may be rewritten: the releasing activation row, accepted in cycle t, reads
        # row k of column j in cycle t + k + j (the input skew), and a weight beat taken in cycle
        # tau writes column j at the end of cycle tau + 1 + j (the write register, then the
        # weights' skew). So row k may be written by a beat taken from t + k - 1 on. With one
        # row a beat, beat k comes no earlier than t + 1 + k (the bank frees the cycle after its
        # release). With two, beat b writes rows 2b and 2b + 1 and must wait for t + 2b: the last,
        # b = R / 2 - 1, for t + R - 2, so the first beat waits for t + R / 2 - 1, `cooldown`
        # cycles after the cycle that frees the bank. Each row is then rewritten right behind the
        # last activation that reads it (one cycle less and the last tiles of tests/test_matrix.py
        # with two rows on 8x8 meet the next tile's weights). The other bank's tile loads
        # meanwhile, so back to back one-row tiles take about R / 2 cycles.
        cooldown = [Signal(range(self.cooldown + 1), name=f"cooldown{bank}") for bank in range(2)] \
            if self.cooldown else []
        free = ~loaded.bit_select(load_bank, 1)
        if cooldown:
            free = free & (Mux(load_bank, cooldown[1], cooldown[0]) == 0)
        m.d.comb += self.weights.ready.eq(free)
        has_room = Signal()
        m.d.comb += has_room.eq(reserved < self.fifo_depth)
        m.d.comb += self.activations.ready.eq(loaded.bit_select(compute_bank, 1) & has_room)

        weight_accept = Signal()
        row_accept = Signal()
        m.d.comb += [
            weight_accept.eq(self.weights.valid & self.weights.ready),
            row_accept.eq(self.activations.valid & self.activations.ready),
        ]

        # Weight beats are registered once before they fan out to a row of the array, then reach
        # column j j cycles later, as the activations do: column j of a bank is still read by the
        # releasing row's activations j cycles after column 0, so it is rewritten j cycles later.
        write_valid = Signal()
        write_row = Signal(range(max(R, 2)))
        write_bank = Signal()
        write_data = Signal(weight_row_layout(C, P))
        m.d.sync += [
            write_valid.eq(weight_accept),
            write_row.eq(load_row),
            write_bank.eq(load_bank),
            write_data.eq(self.weights.payload),
        ]
        column_write = []   # per column: (valid, first row of the beat, bank, its P weights), skewed
        valid, row_index, bank_index = write_valid, write_row, write_bank
        for j in range(C):
            weights = []
            for p in range(P):
                weight = write_data.data[p * C + j]
                for stage in range(j):
                    delayed = Signal(signed(8), name=f"skew_w{j}_{p}_{stage}", reset_less=True)
                    m.d.sync += delayed.eq(weight)
                    weight = delayed
                weights.append(weight)
            column_write.append((valid, row_index, bank_index, weights))
            if j < C - 1:
                next_valid = Signal(name=f"skew_wv{j}")
                next_row = Signal(range(max(R, 2)), name=f"skew_wr{j}", reset_less=True)
                next_bank = Signal(name=f"skew_wb{j}", reset_less=True)
                m.d.sync += [next_valid.eq(valid), next_row.eq(row_index), next_bank.eq(bank_index)]
                valid, row_index, bank_index = next_valid, next_row, next_bank

        with m.If(weight_accept):
            with m.If(load_row == R - P):
                m.d.sync += [load_row.eq(0), load_bank.eq(~load_bank)]
            with m.Else():
                m.d.sync += load_row.eq(load_row + P)

        release = Signal()
        m.d.comb += release.eq(row_accept & self.activations.payload.last)
        with m.If(release):
            m.d.sync += compute_bank.eq(~compute_bank)
        for bank in range(2):
            # A tile counts as loaded once its last row is written (one cycle after the beat), so
            # even a one-row array reads the new weights and not the old ones.
            set_loaded = write_valid & (write_row == R - P) & (write_bank == bank)
            clear_loaded = release & (compute_bank == bank)
            with m.If(set_loaded):
                m.d.sync += loaded[bank].eq(1)
            with m.Elif(clear_loaded):
                m.d.sync += loaded[bank].eq(0)
            if cooldown:
                with m.If(clear_loaded):
                    m.d.sync += cooldown[bank].eq(self.cooldown)
                with m.Elif(cooldown[bank] != 0):
                    m.d.sync += cooldown[bank].eq(cooldown[bank] - 1)

        # ---- the array -----------------------------------------------------------------------
        pes = [[ProcessingElement(self.psum_width) for _ in range(C)] for _ in range(R)]
        for k in range(R):
            for j in range(C):
                m.submodules[f"pe_{k}_{j}"] = pe = pes[k][j]
                # a beat's first row is a multiple of P, so row k takes weight k % P of the beat
                valid, row_index, bank_index, weights = column_write[j]
                first = k - k % P
                m.d.comb += [
                    pe.weight.eq(weights[k % P]),
                    pe.weight_write.eq(Cat(valid & (row_index == first) & (bank_index == 0),
                                           valid & (row_index == first) & (bank_index == 1))),
                ]
                if j > 0:
                    m.d.comb += [pe.activation_in.eq(pes[k][j - 1].activation_out),
                                 pe.bank_in.eq(pes[k][j - 1].bank_out)]
                if k > 0:
                    m.d.comb += pe.psum_in.eq(pes[k - 1][j].psum_out)
                else:
                    m.d.comb += pe.psum_in.eq(0)

        # Input skew: element k of a row meets row k of the array k cycles late, so it arrives at
        # each cell together with the partial sum of the same row from the cell above.
        for k in range(R):
            activation = self.activations.payload.data[k]
            bank = compute_bank
            for stage in range(k):
                delayed_activation = Signal(signed(8), name=f"skew_a{k}_{stage}", reset_less=True)
                delayed_bank = Signal(name=f"skew_b{k}_{stage}", reset_less=True)
                m.d.sync += [delayed_activation.eq(activation), delayed_bank.eq(bank)]
                activation, bank = delayed_activation, delayed_bank
            m.d.comb += [pes[k][0].activation_in.eq(activation), pes[k][0].bank_in.eq(bank)]

        # Output de-skew: column j leaves the bottom row j cycles after column 0; delay it by
        # C - 1 - j so a whole result row is ready in one cycle.
        result_columns = []
        for j in range(C):
            value = pes[R - 1][j].psum_out
            for stage in range(C - 1 - j):
                delayed = Signal(signed(self.psum_width), name=f"deskew{j}_{stage}", reset_less=True)
                m.d.sync += delayed.eq(value)
                value = delayed
            result_columns.append(value)

        # Row bookkeeping travels beside the data: valid and flags, pipeline_depth stages.
        flags = Signal(3)
        m.d.comb += flags.eq(Cat(row_accept, self.activations.payload.accumulate,
                                 self.activations.payload.last))
        for stage in range(self.pipeline_depth):
            delayed = Signal(3, name=f"row_flags{stage}")
            m.d.sync += delayed.eq(flags)
            flags = delayed

        # ---- output FIFO with credits --------------------------------------------------------
        entry = data.StructLayout({
            "data": data.ArrayLayout(signed(self.psum_width), C),
            "accumulate": 1,
            "last": 1,
        })
        m.submodules.output_fifo = output_fifo = fifo.SyncFIFOBuffered(
            width=entry.size, depth=self.fifo_depth)
        fifo_in = data.View(entry, output_fifo.w_data)
        fifo_out = data.View(entry, output_fifo.r_data)
        m.d.comb += [
            output_fifo.w_en.eq(flags[0]),
            fifo_in.accumulate.eq(flags[1]),
            fifo_in.last.eq(flags[2]),
        ]
        for j in range(C):
            m.d.comb += fifo_in.data[j].eq(result_columns[j])
        m.d.comb += [
            self.results.valid.eq(output_fifo.r_rdy),
            output_fifo.r_en.eq(self.results.ready),
            self.results.payload.accumulate.eq(fifo_out.accumulate),
            self.results.payload.last.eq(fifo_out.last),
        ]
        for j in range(C):
            m.d.comb += self.results.payload.data[j].eq(fifo_out.data[j])   # sign-extends

        result_taken = Signal()
        m.d.comb += result_taken.eq(self.results.valid & self.results.ready)
        m.d.sync += reserved.eq(reserved + row_accept - result_taken)

        # ---- performance counters ------------------------------------------------------------
        with m.If(row_accept):
            m.d.sync += self.counters.busy.eq(self.counters.busy + 1)
        with m.Elif(~self.activations.valid):
            m.d.sync += self.counters.idle.eq(self.counters.idle + 1)
        with m.Elif(~loaded.bit_select(compute_bank, 1)):
            m.d.sync += self.counters.stall_weights.eq(self.counters.stall_weights + 1)
        with m.Else():
            m.d.sync += self.counters.stall_output.eq(self.counters.stall_output + 1)
        return m
