"""One configuration object per chip: the RTL, the compiler, the golden model, the performance
model and the reports all read it, so nothing is sized twice."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ChipConfig:
    """Sizes of a Scoville chip.

    Parameters
    ----------
    rows, columns : int
        Systolic array R x C (R is the K extent of a weight tile, C the N extent).
    lanes : int
        Elements per vector beat and int32 words per accumulator row (equal to ``columns``).
    vector_lanes : int or None
        Lanes the vector unit computes per cycle: a divisor of ``lanes`` (a unit that takes each
        beat in ``lanes // vector_lanes`` cycles, with the same results), or None for ``lanes``.
        The default, 2, is the FPGA chip's: at 8 lanes its vector unit alone would take 44 % of
        the LFE5U-85F's logic, and with 4 lanes the chip placed at 78 % but did not route in
        hours (docs/architecture.md, "The FPGA chip"). Set it to None for a chip of full-width
        beats (every configuration in :data:`CONFIGS` but the default does).
    vector_stage_merge : int
        The vector unit's pipeline stages per register stage (1 to 3,
        ``rtl.vector.unit.VectorUnit``'s ``stage_merge``): 1 registers every stage, as the unit
        is built for 100 MHz and more; 2 halves its latency (64 cycles instead of 123 on the long
        path, 17 instead of 29 on the short one at 2 lanes) with paths about twice as long; the
        default, 3, takes it to 44 and 12, for the FPGA chip clocked near 30 MHz, where a decode
        waits on that latency.
    wide_requant : bool
        Requantize (``V_REQUANT``, ``V_DEQUANT``, ``V_FOLD_V``) on a full-width
        ``rtl.vector.requant.Requantizer`` beside the vector unit, a beat a cycle, instead of
        through the unit, which is narrower on the FPGA chip (``vector_lanes``): a 32 x 16
        product per lane, two DSP blocks each on the ECP5. With the default, True, tiny-llama's
        64-token prompt on the FPGA chip takes about a tenth fewer cycles (docs/architecture.md,
        "Vector sequencer"); with a full-width unit it only saves the unit's short-path latency.
    spad_bytes : int
        Scratchpad capacity (int8 activations and weights).
    acc_words : int
        Accumulator SRAM capacity in int32 words (accumulators, wide tensors, scales).
    acc_banks : int
        Banks of the accumulator SRAM (power of two), each an equal slice of its address range
        with one read and one write port: the matrix engine's read-modify-write and the vector
        unit's reads and writes only take turns within a bank.
    bus_bytes : int
        Data width of the DRAM port (AXI4 data bus) in bytes.
    dram_bytes : int
        Size of the external memory window a job may use.
    mesh_width, mesh_height : int
        Network-on-chip mesh; a single-core chip is 1 x 1 (core) plus its memory tile.
    queue_depth : int
        Instructions each of the controller's four queues holds (power of two, at least 2). It
        fetches in program order and stops while the next instruction's queue is full, so a LOAD
        behind a run of vector instructions is not fetched until they drain. With the performance
        model, tiny-llama's decode after 64 tokens on 16x16 / 128-bit takes 13 374 cycles at 4,
        12 995 at 8 and 12 711 at 16 (no gain beyond); on 8x8, 25 594 at 4 and 25 516 at 8 or
        more. On the ECP5 a queue of up to 16 instructions takes the same distributed RAM as one
        of 4 (16-word LUT RAMs).
    partial_rows : int
        Result rows of a ``MATMUL`` whose K-tiles the matrix unit adds up in partial sums of its
        own (a block RAM of ``partial_rows`` x ``columns`` int32), so that the accumulator sees
        one write per result row instead of a read-modify-write per K-tile; a MATMUL of more rows
        reads-modifies-writes the accumulator per K-tile. 0: no partial sums. A power of two.
    rope_pairs : int
        ``V_ROPE`` rotation pairs the vector sequencer's scalar path computes per cycle (a power
        of two up to ``lanes``). Each costs a 32 x 32 phase product, two sine interpolations and
        four 32 x 18 products (about eleven DSP blocks on the ECP5): the FPGA chip keeps 1 (a
        chunk of eight pairs takes 8 cycles and its three reads hide behind them); with 4, a
        chunk takes about 3 cycles, its reads' (docs/architecture.md, "Vector sequencer").
    fetch_burst : int
        Instructions the controller fetches per read request (1 to 64; one request in flight,
        its beats buffered in the core's read arbiter). Fetch shares the core's memory port with
        the DMA, whose responses come in request order, so behind a long LOAD (a decode's weight
        tile or KV cache, 4 KiB and more in one request) the fetch waits for all of it and then
        gets one burst. RTL, tiny-llama decode after 64 tokens: 8x8 21 851 cycles at 4, 21 544 at
        8, 21 647 at 16, 21 742 at 32 (a longer burst holds the DRAM from the DMA longer); 16x16 /
        128-bit 11 563 at 4, 11 211 at 8. The 64-token prompts moved by under 0.1 %.
    """

    rows: int = 8
    columns: int = 8
    lanes: int = 8
    vector_lanes: int | None = 2
    vector_stage_merge: int = 3
    wide_requant: bool = True
    # The 8x8 default is the FPGA chip (synth.chip.8x8.ecp5): 32 KiB + 128 KiB of SRAM (80 of the
    # LFE5U-85F's 208 block RAMs; the whole chip takes 119); tiny-llama fits 32 tokens,
    # a MiniLM sentence 10 (docs/architecture.md, "Chip").
    spad_bytes: int = 32 * 1024
    acc_words: int = 32 * 1024
    # four: the compiler's two tile rings sit at the two ends, in banks of their own whenever a
    # ring fits a quarter; eight (the other configurations') cost the FPGA chip about 5 000 more
    # LUTs and save 0.5 % of tiny-llama's prefill 64 (docs/architecture.md, "The FPGA chip")
    acc_banks: int = 4
    bus_bytes: int = 8
    dram_bytes: int = 64 * 1024 * 1024
    mesh_width: int = 1
    mesh_height: int = 1
    queue_depth: int = 16
    partial_rows: int = 512
    rope_pairs: int = 1
    fetch_burst: int = 8

    def __post_init__(self) -> None:
        for name in ("rows", "columns", "lanes"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be an integer from 1 to 64, got {value!r}")
        if self.vector_lanes is not None and (not isinstance(self.vector_lanes, int) or self.vector_lanes < 1
                                              or self.lanes % self.vector_lanes):
            raise ValueError(f"vector_lanes must be a positive divisor of lanes ({self.lanes}), "
                             f"got {self.vector_lanes!r}")
        if not isinstance(self.wide_requant, bool):
            raise ValueError(f"wide_requant must be True or False, got {self.wide_requant!r}")
        if self.vector_stage_merge not in (1, 2, 3):
            raise ValueError(f"vector_stage_merge must be 1, 2 or 3, got {self.vector_stage_merge!r}")
        for name in ("spad_bytes", "acc_words", "dram_bytes", "mesh_width", "mesh_height"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.acc_banks, int) or not 1 <= self.acc_banks <= 64 \
                or self.acc_banks & (self.acc_banks - 1):
            raise ValueError(f"acc_banks must be a power of two from 1 to 64, got {self.acc_banks!r}")
        if self.bus_bytes not in (4, 8, 16, 32, 64):
            raise ValueError(f"bus_bytes must be 4, 8, 16, 32 or 64, got {self.bus_bytes!r}")
        if not isinstance(self.queue_depth, int) or not 2 <= self.queue_depth <= 64 \
                or self.queue_depth & (self.queue_depth - 1):
            raise ValueError(f"queue_depth must be a power of two from 2 to 64, got {self.queue_depth!r}")
        if not isinstance(self.partial_rows, int) or not 0 <= self.partial_rows <= 1 << 16 \
                or self.partial_rows & (self.partial_rows - 1):
            raise ValueError(f"partial_rows must be 0 or a power of two up to 65536, got {self.partial_rows!r}")
        if not isinstance(self.rope_pairs, int) or not 1 <= self.rope_pairs <= self.lanes \
                or self.rope_pairs & (self.rope_pairs - 1):
            raise ValueError(f"rope_pairs must be a power of two from 1 to lanes ({self.lanes}), "
                             f"got {self.rope_pairs!r}")
        if not isinstance(self.fetch_burst, int) or not 1 <= self.fetch_burst <= 64:
            raise ValueError(f"fetch_burst must be an integer from 1 to 64, got {self.fetch_burst!r}")
        if self.dram_bytes > 1 << 32:
            raise ValueError(f"dram_bytes must fit 32-bit addresses, got {self.dram_bytes}")

    @property
    def unit_lanes(self) -> int:
        """Lanes of the vector unit's datapath."""
        return self.vector_lanes or self.lanes

    @property
    def name(self) -> str:
        return f"{self.rows}x{self.columns}"

    def as_dict(self) -> dict:
        return asdict(self)


#: Configurations used by tests, the FPGA and scaling studies. Only the default, "8x8" (the FPGA
#: chip), has a vector unit narrower than its beats; the others keep eight accumulator banks, and
#: from 16 lanes on compute a quarter of a chunk's RoPE pairs a cycle.
_FULL = {"vector_lanes": None, "acc_banks": 8}
CONFIGS = {
    "2x2": ChipConfig(rows=2, columns=2, lanes=2, spad_bytes=64 * 1024, acc_words=16 * 1024, **_FULL),
    "8x8": ChipConfig(),
    "16x16": ChipConfig(rows=16, columns=16, lanes=16, spad_bytes=512 * 1024, acc_words=128 * 1024, bus_bytes=16,
                        rope_pairs=4, **_FULL),
    "32x32": ChipConfig(rows=32, columns=32, lanes=32, spad_bytes=1024 * 1024, acc_words=256 * 1024, bus_bytes=32,
                        rope_pairs=8, **_FULL),
    # the performance issue's second configuration (make bench's chip16x16.*): 16x16 on a 128-bit
    # bus, SRAMs of 64 KiB and 64K words
    "16x16-128b": ChipConfig(rows=16, columns=16, lanes=16, bus_bytes=16, spad_bytes=64 * 1024,
                             acc_words=64 * 1024, rope_pairs=4, **_FULL),
}
