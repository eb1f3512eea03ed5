"""Whole-program simulation tops: a core with its AXI4 master and the fast DRAM model, and the
whole chip (NoC, memory tile, CSRs) with the same DRAM model."""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.core.controller import QUEUES
from rtl.core.core import Core
from rtl.dma.axi_master import AxiMaster
from rtl.dma.descriptor import ADDR_BITS
from rtl.sim.dram import DramModel
from scoville.config import ChipConfig

__all__ = ["ChipWithDram", "CoreWithDram", "chip_with_dram", "core_with_dram"]


class CoreWithDram(wiring.Component):
    """:class:`rtl.core.core.Core` reaching a :class:`DramModel` of ``dram_bytes`` through an
    :class:`AxiMaster`. Ports: the core's host-side ports, and the DRAM model's ``latency`` and
    ``beat_interval``; the DRAM contents are loaded and read through the model's backdoor
    (``dram.storage.mem``: a plain Verilog array, so images of many MiB build quickly)."""

    def __init__(self, config: ChipConfig | None = None, dram_bytes: int = 1 << 20, watchdog: int = 1 << 20,
                 max_outstanding: int = 8):
        config = config or ChipConfig()
        self.core = Core(config, watchdog=watchdog)
        self.axi_master = AxiMaster(ADDR_BITS, 8 * config.bus_bytes, max_outstanding)
        self.dram = DramModel(size_bytes=dram_bytes, data_width=8 * config.bus_bytes, verilog_storage=True)
        #: Verilog the design needs besides its own (the DRAM storage array).
        self.verilog_sources = self.dram.verilog_sources
        #: the core's ports other than its memory port, passed through
        self.host_ports = {name: member for name, member in self.core.signature.members.items()
                           if name != "memory"}
        super().__init__({**self.host_ports, "latency": In(16), "beat_interval": In(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.axi_master = axi_master = self.axi_master
        m.submodules.dram = dram = self.dram
        wiring.connect(m, core.memory, axi_master.port)
        wiring.connect(m, axi_master.m_axi, dram.s_axi)
        for name, member in self.host_ports.items():
            if member.flow == In:
                m.d.comb += getattr(core, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(core, name))
        m.d.comb += [dram.latency.eq(self.latency), dram.beat_interval.eq(self.beat_interval)]
        return m


def core_with_dram(*, dram_bytes: int = 1 << 20, watchdog: int = 1 << 20, **config) -> CoreWithDram:
    """:class:`CoreWithDram` from flat parameters (the :class:`ChipConfig` fields), as the flow's
    :class:`scoville.flow.Design` passes them."""
    return CoreWithDram(ChipConfig(**config), dram_bytes=dram_bytes, watchdog=watchdog)


class ChipWithDram(wiring.Component):
    """The whole :class:`rtl.chip.Chip` (cores, NoC, memory tile, CSRs) with a :class:`DramModel`
    of ``dram_bytes`` on its AXI4 master: what the ``rtl`` backend simulates. Ports: the chip's
    ``s_axil`` and ``irq``, and the DRAM model's ``latency`` and ``beat_interval``; the DRAM is
    loaded and read through the model's backdoor (``dram.storage.mem``).

    Trace ports of core 0, for instruction timelines (:mod:`testbench.chip_run`): per queue
    (load, matrix, vector, store, bit ``n`` of each), ``trace_issue`` and ``trace_done`` toggle
    when the controller releases an instruction to the unit and when the unit reports it done,
    ``trace_start`` when the host starts a job;
    ``trace_stalled`` holds four 32-bit counts of the unit's stalled cycles (busy, no data
    moved). They are registered, so every event shows one cycle late; a testbench that does not
    watch them costs nothing."""

    def __init__(self, config: ChipConfig | None = None, dram_bytes: int = 1 << 20, watchdog: int = 1 << 20):
        from rtl.chip import CSR_ADDR_BITS, Chip
        from rtl.core.csr import AxiLiteSignature

        config = config or ChipConfig()
        self.chip = Chip(config, watchdog=watchdog)
        self.dram = DramModel(size_bytes=dram_bytes, data_width=8 * config.bus_bytes, verilog_storage=True)
        self.verilog_sources = self.dram.verilog_sources
        super().__init__({"s_axil": In(AxiLiteSignature(CSR_ADDR_BITS)), "irq": Out(1),
                          "latency": In(16), "beat_interval": In(8),
                          "trace_start": Out(1), "trace_issue": Out(len(QUEUES)), "trace_done": Out(len(QUEUES)),
                          "trace_stalled": Out(32 * len(QUEUES))})

    def elaborate(self, platform):
        m = Module()
        # The chip and the DRAM model run in a domain whose reset is a register: with the reset
        # pin wired straight in, every register's next-state logic depends on a top-level input,
        # and Verilator re-evaluates all of it on each input change (twice per clock cycle), about
        # a third of the simulation time. The reset therefore ends one cycle after the pin's.
        m.domains.chip = ClockDomain("chip")
        reset = Signal(init=1)
        m.d.sync += reset.eq(ResetSignal("sync"))
        m.d.comb += [ClockSignal("chip").eq(ClockSignal("sync")), ResetSignal("chip").eq(reset)]
        m.submodules.chip = chip = DomainRenamer("chip")(self.chip)
        m.submodules.dram = dram = DomainRenamer("chip")(self.dram)
        # the DRAM model's timing inputs are held in registers for the same reason
        latency, beat_interval = Signal.like(self.latency), Signal.like(self.beat_interval)
        m.d.sync += [latency.eq(self.latency), beat_interval.eq(self.beat_interval)]
        wiring.connect(m, wiring.flipped(self.s_axil), chip.s_axil)
        wiring.connect(m, chip.m_axi, dram.s_axi)
        m.d.comb += [self.irq.eq(chip.irq), dram.latency.eq(latency), dram.beat_interval.eq(beat_interval)]

        core = self.chip.cores[0]
        controller = core.controller
        issued = Cat(getattr(controller, queue).valid & getattr(controller, queue).ready for queue in QUEUES)
        done = Cat(getattr(controller, f"{queue}_done") for queue in QUEUES)
        m.d.chip += [self.trace_start.eq(self.trace_start ^ core.start),
                     self.trace_issue.eq(self.trace_issue ^ issued), self.trace_done.eq(self.trace_done ^ done)]
        for n in range(len(QUEUES)):
            count = self.trace_stalled[32 * n:32 * (n + 1)]
            with m.If(core.unit_stalled[n]):
                m.d.chip += count.eq(count + 1)
        return m


def chip_with_dram(*, dram_bytes: int = 1 << 20, watchdog: int = 1 << 20, **config) -> ChipWithDram:
    """:class:`ChipWithDram` from flat parameters (the :class:`ChipConfig` fields)."""
    return ChipWithDram(ChipConfig(**config), dram_bytes=dram_bytes, watchdog=watchdog)
