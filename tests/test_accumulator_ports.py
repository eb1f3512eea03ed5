"""The accumulator's shared bank ports (``rtl/memory/accumulator.py``): two read clients behind one
read port and two write clients behind one write port, first client first, every word to the
client that asked for it, nothing lost or duplicated under random contention and stalls.

Amaranth's Python simulator around a model SRAM port (no Verilator build)."""

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.sim import Simulator

from rtl.memory.accumulator import _share_read, _share_write
from rtl.memory.bridge import SramReadSignature, write_request_layout

ADDR, WIDTH = 6, 16


class Harness(wiring.Component):
    def __init__(self):
        read = SramReadSignature(ADDR, WIDTH)
        write = stream.Signature(write_request_layout(ADDR, WIDTH))
        super().__init__({"read0": wiring.In(read), "read1": wiring.In(read), "port_read": wiring.Out(read),
                          "write0": wiring.In(write), "write1": wiring.In(write), "port_write": wiring.Out(write)})

    def elaborate(self, platform):
        m = Module()
        _share_read(m, self.port_read, [self.read0, self.read1])
        _share_write(m, self.port_write, [self.write0, self.write1])
        return m


def test_shared_ports_route_every_word_to_its_client():
    rng = np.random.default_rng(5)
    dut = Harness()
    memory = {a: int(rng.integers(0, 1 << WIDTH)) for a in range(1 << ADDR)}
    cycles = 400
    # each client asks about half the cycles; the port takes about two requests in three
    asks = rng.random((cycles, 4)) < 0.5
    port_ready = rng.random((cycles, 2)) < 0.67
    got = {0: [], 1: [], "writes": []}
    sent = {0: [], 1: [], "writes": []}

    async def bench(ctx):
        pending = {0: None, 1: None}            # read requests offered and not yet taken
        pending_w = {0: None, 1: None}
        port_data = None
        for cycle in range(cycles):
            for n, client in ((0, dut.read0), (1, dut.read1)):
                if pending[n] is None and asks[cycle, n]:
                    pending[n] = int(rng.integers(0, 1 << ADDR))
                ctx.set(client.request.valid, pending[n] is not None)
                ctx.set(client.request.payload, pending[n] or 0)
            for n, client in ((0, dut.write0), (1, dut.write1)):
                if pending_w[n] is None and asks[cycle, 2 + n]:
                    pending_w[n] = {"addr": int(rng.integers(0, 1 << ADDR)), "data": int(rng.integers(0, 1 << WIDTH)),
                                    "strb": 3}
                ctx.set(client.valid, pending_w[n] is not None)
                if pending_w[n] is not None:
                    ctx.set(client.payload, pending_w[n])
            ctx.set(dut.port_read.request.ready, bool(port_ready[cycle, 0]))
            ctx.set(dut.port_write.ready, bool(port_ready[cycle, 1]))
            # the model SRAM answers the request it took in the cycle before
            ctx.set(dut.port_read.data_valid, port_data is not None)
            ctx.set(dut.port_read.data, memory[port_data] if port_data is not None else 0)
            taken_r = [ctx.get(c.request.valid) and ctx.get(c.request.ready) for c in (dut.read0, dut.read1)]
            taken_w = [ctx.get(c.valid) and ctx.get(c.ready) for c in (dut.write0, dut.write1)]
            for n, client in ((0, dut.read0), (1, dut.read1)):
                if ctx.get(client.data_valid):
                    got[n].append(ctx.get(client.data))
            port_taken = ctx.get(dut.port_read.request.valid) and ctx.get(dut.port_read.request.ready)
            port_data = ctx.get(dut.port_read.request.payload) if port_taken else None
            assert sum(taken_r) == port_taken, cycle
            # first client first: the second is taken only when the first does not ask
            assert not (taken_r[1] and pending[0] is not None), cycle
            assert not (taken_w[1] and pending_w[0] is not None), cycle
            if ctx.get(dut.port_write.valid) and ctx.get(dut.port_write.ready):
                got["writes"].append(dict(addr=ctx.get(dut.port_write.payload.addr),
                                          data=ctx.get(dut.port_write.payload.data)))
            for n in (0, 1):
                if taken_r[n]:
                    sent[n].append(memory[pending[n]])
                    pending[n] = None
                if taken_w[n]:
                    sent["writes"].append({"addr": pending_w[n]["addr"], "data": pending_w[n]["data"]})
                    pending_w[n] = None
            await ctx.tick()
        # the last answer
        for n, client in ((0, dut.read0), (1, dut.read1)):
            ctx.set(dut.port_read.data_valid, port_data is not None)
            ctx.set(dut.port_read.data, memory[port_data] if port_data is not None else 0)
            if ctx.get(client.data_valid):
                got[n].append(ctx.get(client.data))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(sent[0]) > 50 and len(sent[1]) > 20 and len(sent["writes"]) > 50
    assert got[0] == sent[0] and got[1] == sent[1]
    assert got["writes"] == sent["writes"]


def test_a_stored_row_leaves_the_read_port_to_the_vector_unit():
    """The matrix engine writing a bank every cycle takes its read port only to add (a
    read-modify-write): while it stores rows (the matrix unit's partial sums leave each result row
    so), the vector unit reads that bank every cycle; while it adds them, the two take turns."""
    from rtl.memory.accumulator import Accumulator

    lanes, cycles = 2, 24
    for accumulate in (False, True):
        dut = Accumulator(depth=64, lanes=lanes, dma_width=64, banks=2)
        counts = {"matrix": 0, "vector": 0}

        async def bench(ctx, accumulate=accumulate, dut=dut, counts=counts):
            row = 0
            ctx.set(dut.vector_read.request.valid, 1)
            ctx.set(dut.vector_read.request.payload, 31)          # the bank the matrix writes
            for _ in range(cycles):
                ctx.set(dut.matrix_write.valid, 1)
                ctx.set(dut.matrix_write.payload, {"addr": row, "data": [row + 1, -row], "accumulate": accumulate,
                                                   "mask": (1 << lanes) - 1})
                matrix = ctx.get(dut.matrix_write.ready)
                counts["matrix"] += matrix
                counts["vector"] += ctx.get(dut.vector_read.request.ready)
                row += matrix
                await ctx.tick()
            ctx.set(dut.matrix_write.valid, 0)
            ctx.set(dut.vector_read.request.valid, 0)
            await ctx.tick().repeat(3)
            counts["rows"] = row

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        if accumulate:
            assert counts["vector"] < cycles and counts["matrix"] < cycles, counts
        else:
            assert counts == {"matrix": cycles, "vector": cycles, "rows": cycles}, counts
