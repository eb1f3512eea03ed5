"""The vector unit: every non-matrix operation of a transformer layer on ``lanes`` lanes.

One lockstep pipeline serves every operation (see ``docs/architecture.md``, "Vector unit"):

=========  ==================================================================================
segment    what happens there
=========  ==================================================================================
issue      instruction queue; tags each input beat with (op, pass, first, last, lane mask)
R1         per-beat lane trees (max, min, sum) and the row accumulators of pass 0
S1         per-row scalars from pass 0: max|x|, LayerNorm mean, norm shift, quantize divider
T2         per-lane: exp (softmax, EXP), x - mean and squares (norms), quantize; lane tree and
           row accumulator of pass 1
S2         per-row scalars from pass 1: softmax reciprocal (divider), rsqrt (integer Newton)
F          per-lane: GELU/SiLU tables, RoPE phase and sine tables, then one shared
           ``saturate(round_shift(x*M + x2, -E) + B)`` datapath for every output
=========  ==================================================================================

A per-row result is left in a register by the last beat of a pass when that beat passes a
segment boundary; the beats of the next pass (which follow it in the pipeline) read it there.
So rows follow each other without gaps, whatever their length: a row of ``n`` beats and ``p``
passes takes ``n * p`` cycles in steady state.

Per-beat values that only ride along through a segment (the lane values across R1+S1 and across
the pass-1 reduction + S2, the row results and operands across F) wait in block-RAM delay lines
(``Lockstep.park``/``unpark``) rather than in a register per bit per stage.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data as data_lib
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from scoville import numerics as nx

from .arith import (
    Lockstep,
    any_of,
    bit_length,
    clamp,
    const_multiply,
    maximum,
    pwl_lookup,
    round_shift,
    saturate,
    saturate_narrow,
    shift_add_multiply,
    shift_right_low,
)
from .isa import (
    ELEMENTWISE,
    NEEDS_SIDE,
    PASSES,
    ROW_VALUE_BITS,
    Instruction,
    Op,
    OutWidth,
    lane_input_layout,
    output_layout,
    side_layout,
)

__all__ = ["VectorUnit"]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ACC_BITS = ROW_VALUE_BITS
#: (127 << 30) // a15 has 23 quotient bits; (2**29 - 1) // n15 has 15.
QUANT_DIVIDEND, QUANT_QUOTIENT_BITS = nx.QMAX << nx.RECIP_FRAC, 23
RECIP_DIVIDEND, RECIP_QUOTIENT_BITS = (1 << 29) - 1, 15
#: Per-beat fields that only ride along through the per-row scalar segments (parked there).
LANE_FIELDS = ("x", "on", "base", "final", "emit", "ilast")
#: Width of the output shifter's result: enough that a clamped value saturates as the exact one.
WINDOW_BITS = 35


def _rsqrt_seed() -> list[int]:
    # the same table as golden.ops._RSQRT_SEED (the RTL does not import the golden model)
    return [0 if i < 4 else int(round(2**29 / (((i + 0.5) * 2**26) ** 0.5))) for i in range(16)]


class VectorUnit(wiring.Component):
    """C-lane vector unit, bit-exact with ``golden.ops``.

    Parameters
    ----------
    lanes : int
        Elements per beat (C), at least 1.
    head_dim : int
        RoPE head dimension (even): the frequency table has ``head_dim // 2`` entries.
    rope_theta : float
        RoPE base.
    queue_depth : int
        Instructions in flight (a power of two).
    divide_bits_per_stage : int
        Quotient bits per pipeline stage of the two dividers (fewer: higher Fmax, more latency).

    Ports
    -----
    c : In(stream.Signature(Instruction))
        Instructions.
    i : In(stream.Signature(lane_input_layout(lanes)))
        Operand rows, each streamed once per pass (``isa.PASSES``).
    s : In(stream.Signature(side_layout(lanes)))
        Per-column operands, one beat per beat of the last pass of ``isa.NEEDS_SIDE`` operations.
    o : Out(stream.Signature(output_layout(lanes)))
        Results: one beat per input beat of the last pass, or one per row for reductions.

    Latency: :attr:`latency` cycles from an input beat to its output beat. Throughput: one beat
    per cycle on ``i``; every port tolerates stalls in every cycle.
    """

    def __init__(self, lanes: int = 4, head_dim: int = 64, rope_theta: float = 10000.0,
                 queue_depth: int = 8, divide_bits_per_stage: int = 2):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
        if not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
            raise ValueError(f"head_dim must be a positive even integer, got {head_dim!r}")
        if rope_theta <= 0:
            raise ValueError(f"rope_theta must be positive, got {rope_theta!r}")
        if not isinstance(queue_depth, int) or queue_depth < 2 or queue_depth & (queue_depth - 1):
            raise ValueError(f"queue_depth must be a power of two >= 2, got {queue_depth!r}")
        if divide_bits_per_stage not in (1, 2, 3, 4):
            raise ValueError(f"divide_bits_per_stage must be 1..4, got {divide_bits_per_stage!r}")
        self.lanes = lanes
        self.head_dim = head_dim
        self.rope_theta = float(rope_theta)
        self.queue_depth = queue_depth
        self.divide_bits_per_stage = divide_bits_per_stage
        self.latency = None  # known after elaboration
        super().__init__({
            "c": In(stream.Signature(Instruction)),
            "i": In(stream.Signature(lane_input_layout(lanes))),
            "s": In(stream.Signature(side_layout(lanes))),
            "o": Out(stream.Signature(output_layout(lanes))),
        })

    # ------------------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        advance = Signal()
        pipe = Lockstep(m, advance)

        # ---------------------------------------------------------------- instruction queue
        depth = self.queue_depth
        ring = Array(Signal(Instruction.as_shape().size, name=f"queue{n}") for n in range(depth))
        write_ptr = Signal(range(depth))
        issue_ptr = Signal(range(depth))
        occupied = Signal(range(depth + 1))
        unissued = Signal(range(depth + 1))
        freeing = Signal()
        issue_done = Signal()

        incoming = self.c.payload
        empty_job = (incoming.rows == 0) | (incoming.length == 0)
        m.d.comb += self.c.ready.eq((occupied < depth) | empty_job)
        write = Signal()
        m.d.comb += write.eq(self.c.valid & self.c.ready & ~empty_job)
        with m.If(write):
            m.d.sync += [ring[write_ptr].eq(incoming.as_value()), write_ptr.eq(write_ptr + 1)]
        m.d.sync += [occupied.eq(occupied + write - freeing), unissued.eq(unissued + write - issue_done)]

        def instruction(tag):
            return Instruction(ring[tag])

        # ---------------------------------------------------------------- issue
        cur = instruction(issue_ptr)
        active = unissued != 0
        row = Signal(16)
        pass_ = Signal(2)
        base = Signal(17)
        passes_cur = Signal(2)
        with m.Switch(cur.op):
            for op in Op:
                with m.Case(op):
                    m.d.comb += passes_cur.eq(PASSES[op])
        last_beat = base + lanes >= cur.length
        last_pass = pass_ == passes_cur - 1
        last_row = row == cur.rows - 1
        accept = Signal()
        # The pipeline never stops (no enable on its registers): a beat is admitted only when the
        # output FIFO has room for it (credits) and, if its operation needs one, with its side
        # beat, which waits in the side FIFO until the beat reaches the side stage.
        credit = Signal()
        side_room = Signal()
        needs_side_now = last_pass & any_of(cur.op.as_value(), NEEDS_SIDE)
        m.d.comb += [
            self.i.ready.eq(active & credit & (~needs_side_now | (self.s.valid & side_room))),
            accept.eq(self.i.valid & self.i.ready),
            self.s.ready.eq(self.i.valid & active & credit & needs_side_now & side_room),
        ]
        m.d.comb += issue_done.eq(accept & last_beat & last_pass & last_row)
        with m.If(accept):
            with m.If(last_beat):
                m.d.sync += base.eq(0)
                with m.If(last_pass):
                    m.d.sync += pass_.eq(0)
                    with m.If(last_row):
                        m.d.sync += [row.eq(0), issue_ptr.eq(issue_ptr + 1)]
                    with m.Else():
                        m.d.sync += row.eq(row + 1)
                with m.Else():
                    m.d.sync += pass_.eq(pass_ + 1)
            with m.Else():
                m.d.sync += base.eq(base + lanes)
        is_softmax = (cur.op == Op.SOFTMAX) | (cur.op == Op.SOFTMAX_EXP)
        limit = Mux(cur.allowed == 0, cur.length, cur.allowed) + Mux(cur.causal, row, 0)
        lane_on = [(base + j < cur.length) & (~is_softmax | (base + j < limit)) for j in range(lanes)]
        op_now = cur.op.as_value()
        slot = {
            "valid": accept, "op": op_now, "tag": issue_ptr, "pass_": pass_,
            "first": base == 0, "last": last_beat, "final": last_pass,
            "emit": last_pass & (any_of(op_now, ELEMENTWISE) | last_beat),
            "ilast": last_pass & last_row & last_beat, "base": base,
            "on": lane_on, "x": [self.i.payload[j] for j in range(lanes)],
        }
        slot = pipe.stage(slot)

        def is_op(s, *ops):
            return any_of(s["op"], ops)

        def token(s, pass_index):
            """The last beat of pass ``pass_index`` of a row (it carries the row's results)."""
            return s["valid"] & s["last"] & (s["pass_"] == pass_index)

        def row_reduce(s, leaves: dict, combine: dict, pass_index: int, acc_shapes: dict):
            """Lane trees (one stage per level) then the row accumulators; returns the slot with
            the row-so-far values (final on the pass's last beat) as fields."""
            level = dict(leaves)
            while len(next(iter(level.values()))) > 1:
                nxt = {}
                for key, values in level.items():
                    pairs = [combine[key](values[n], values[n + 1]) for n in range(0, len(values) - 1, 2)]
                    if len(values) % 2:
                        pairs.append(values[-1])
                    nxt[key] = pairs
                s = pipe.stage({**s, **{f"tree_{k}": v for k, v in nxt.items()}})
                level = {k: s.pop(f"tree_{k}") for k in nxt}
            take = s["valid"] & (s["pass_"] == pass_index)
            out = {}
            for key, values in level.items():
                beat = values[0]
                acc = Signal(acc_shapes[key], name=f"row_{key}")
                so_far = Mux(s["first"], beat, combine[key](acc, beat))
                with m.If(advance & take):
                    m.d.sync += acc.eq(so_far)
                out[key] = so_far
            return pipe.stage({**s, **out})

        # ---------------------------------------------------------------- R1: pass-0 reductions
        x, on = slot["x"], slot["on"]
        leaves = {"rmax": [Mux(on[j], x[j], INT32_MIN) for j in range(lanes)],
                  "rmin": [Mux(on[j], x[j], INT32_MAX) for j in range(lanes)],
                  "rsum": [Mux(on[j], x[j], 0) for j in range(lanes)]}
        # the lane values wait in a delay line while the row scalars of pass 0 are worked out
        parked = pipe.park({k: slot.pop(k) for k in LANE_FIELDS})
        slot = row_reduce(
            slot,
            leaves=leaves,
            combine={"rmax": maximum, "rmin": lambda a, b: Mux(a < b, a, b), "rsum": lambda a, b: a + b},
            pass_index=0,
            acc_shapes={"rmax": signed(32), "rmin": signed(32), "rsum": signed(ACC_BITS)})

        # ---------------------------------------------------------------- S1: row scalars of pass 0
        ins = instruction(slot["tag"])
        neg_min = -slot["rmin"]
        amax = Mux(slot["rmax"] > neg_min, slot["rmax"], neg_min).as_unsigned()[:32]
        value = Signal(signed(ROW_VALUE_BITS))
        with m.Switch(slot["op"]):
            with m.Case(Op.MAX):
                m.d.comb += value.eq(slot["rmax"])
            with m.Case(Op.SUM):
                m.d.comb += value.eq(slot["rsum"])
            with m.Case(Op.MAX_ABS):
                m.d.comb += value.eq(amax)
        mean_shift = clamp(-ins.inv_len_e, 0, 62).as_unsigned()[:6]
        rsum = slot.pop("rsum")
        slot = pipe.stage({**slot, "amax": amax, "value": value, "mean_product": rsum * ins.inv_len_m,
                           "mean_shift": mean_shift})
        parked_value = pipe.park({"value": slot.pop("value")})
        # round_shift(sum * m, -e) in two stages: shift by s - 1, then ((.) + 1) >> 1
        mean_shift = slot.pop("mean_shift")
        mean_product = slot.pop("mean_product")
        slot = pipe.stage({**slot, "mean_round": mean_shift != 0,
                           "mean_partial": Mux(mean_shift == 0, mean_product,
                                               mean_product >> (mean_shift - 1).as_unsigned()[:6])})
        partial = slot.pop("mean_partial")
        mean = clamp(Mux(slot.pop("mean_round"), (partial + 1) >> 1, partial), -(1 << 33), 1 << 33)
        mean = Mux(is_op(slot, Op.LAYERNORM), mean, 0)
        slot = pipe.stage({**slot, "mean": mean.as_signed()[:35].as_signed()})
        # LayerNorm's max|x - mean| from the row's max and min: saturate(x - mean) is monotone
        centred_max = saturate(slot["rmax"] - slot["mean"])
        centred_min = saturate(slot.pop("rmin") - slot["mean"])
        amax_ln = maximum(centred_max, -centred_min).as_unsigned()[:32]
        amax = slot.pop("amax")
        amax_norm = Mux(is_op(slot, Op.LAYERNORM), amax_ln, amax)
        quant_zero = amax == 0
        quant_amax = Mux(quant_zero, 1, amax)
        slot = pipe.stage({**slot, "amax_norm": amax_norm, "quant_zero": quant_zero, "quant_amax": quant_amax})
        norm_bits = bit_length(m, slot.pop("amax_norm"))
        quant_bits = bit_length(m, slot["quant_amax"])
        slot = pipe.stage({**slot, "norm_shift": Mux(norm_bits > nx.NORM_BITS, norm_bits - nx.NORM_BITS, 0)[:5],
                           "quant_shift": (quant_bits - nx.SCALE_BITS).as_signed()[:6].as_signed()})
        qsh = slot["quant_shift"]
        quant_amax = slot.pop("quant_amax")
        a15 = Mux(qsh >= 0, quant_amax >> qsh.as_unsigned(), quant_amax << (-qsh).as_unsigned()[:4])[:15]
        slot = pipe.stage({**slot, "a15": a15})
        slot = self._divide(pipe, slot, "a15", "recip", QUANT_DIVIDEND, QUANT_QUOTIENT_BITS)

        # ---------------------------------------------------------------- T2: pass 1 (and later)
        row1 = pipe.latch(token(slot, 0), {k: slot.pop(k) for k in (
            "rmax", "mean", "norm_shift", "quant_shift", "a15", "recip", "quant_zero")}, "row1")
        slot = pipe.stage({**slot, **pipe.unpark(parked), **pipe.unpark(parked_value)})
        x, on = slot["x"], slot["on"]
        softmax = is_op(slot, Op.SOFTMAX, Op.SOFTMAX_EXP)
        quantize = is_op(slot, Op.QUANTIZE)
        t_exp, centred = [], []
        for j in range(lanes):
            d = Mux(on[j], Mux(softmax, x[j] - row1["rmax"], x[j]), 0)
            # from -d = 2**15 on, z = t >> 24 > EXP_MAX_SHIFT and exp is 0: clamp before the multiply
            minus_d = (-d).as_unsigned()[:33]
            minus_d = Mux(minus_d[15:].any(), 1 << 15, minus_d[:15])
            t_exp.append(const_multiply(minus_d, nx.LOG2E_Q))
            centred.append(saturate(x[j] - row1["mean"]))
        slot = pipe.stage({
            **slot, "t_exp": t_exp, "centred": centred,
            "norm_shift": row1["norm_shift"], "quant_shift": row1["quant_shift"], "recip": row1["recip"],
            "om": Mux(quantize & ~row1["quant_zero"], row1["a15"], Const(0, signed(16))),
            "oe": Mux(quantize, Mux(row1["quant_zero"], nx.ZERO_ROW_EXP, row1["quant_shift"]), Const(0, signed(8))),
        })
        exp2 = nx.exp2_table()
        z, k0, slope_frac, square = [], [], [], []
        for j in range(lanes):
            t = slot["t_exp"][j]
            frac = t[nx.FRAC:nx.FRAC + nx.LOG2E_FRAC]
            knot, slope = pwl_lookup(exp2, frac[exp2.frac_bits:])
            z.append(t[nx.FRAC + nx.LOG2E_FRAC:])
            k0.append(knot)
            slope_frac.append(shift_add_multiply(slope, frac[:exp2.frac_bits]))
            scaled = (slot["centred"][j] >> slot["norm_shift"])[:17].as_signed()
            square.append((scaled * scaled).as_unsigned()[:34])
        slot.pop("t_exp")
        slot = pipe.stage({**slot, "z": z, "k0": k0, "slope_frac": slope_frac, "square": square})
        v_exp = [slot["k0"][j] + (slot["slope_frac"][j] >> exp2.frac_bits) for j in range(lanes)]
        slot.pop("k0")
        slot.pop("slope_frac")
        slot = pipe.stage({**slot, "v_exp": v_exp})
        exp_value, lane_value, leaves = [], [], []
        norm_like = is_op(slot, Op.RMSNORM, Op.LAYERNORM, Op.SUM_SQUARES)
        for j in range(lanes):
            zj = slot["z"][j]
            e = Mux((zj > nx.EXP_MAX_SHIFT) | ~slot["on"][j], 0, round_shift(slot["v_exp"][j], zj[:5]))
            exp_value.append(e)
            # e <= 2**15 and the others are int32: the lane value fits in 32 bits
            lane_value.append(Mux(is_op(slot, Op.SOFTMAX, Op.SOFTMAX_EXP, Op.EXP), e,
                                  Mux(norm_like, slot["centred"][j], slot["x"][j]))[:32].as_signed())
            leaves.append(Mux(slot["on"][j], Mux(is_op(slot, Op.SOFTMAX, Op.SOFTMAX_EXP), e, slot["square"][j]), 0))
        for key in ("z", "v_exp", "centred", "square"):
            slot.pop(key)
        slot = pipe.stage({**slot, "x": lane_value, "leaf": leaves})
        leaves = slot.pop("leaf")
        # and again across the pass-1 reduction and the row scalars of pass 1
        parked = pipe.park({k: slot.pop(k) for k in LANE_FIELDS + ("value", "om", "oe", "quant_shift", "recip")})
        slot = row_reduce(slot, leaves={"sum2": leaves}, combine={"sum2": lambda a, b: a + b},
                          pass_index=1, acc_shapes={"sum2": unsigned(ACC_BITS)})

        # ---------------------------------------------------------------- S2: row scalars of pass 1
        ins = instruction(slot["tag"])
        eps_shift = (slot["norm_shift"] << 1)
        slot = pipe.stage({**slot, "sum_bits": bit_length(m, slot["sum2"][:34]),
                           "eps_rounded": round_shift(ins.eps, eps_shift)})
        sum_bits = slot.pop("sum_bits")
        recip_shift = Mux(sum_bits > nx.SCALE_BITS, sum_bits - nx.SCALE_BITS, 0)[:5]
        eps_rounded = slot.pop("eps_rounded")
        slot = pipe.stage({**slot, "n15": (slot["sum2"] >> recip_shift)[:15], "recip_shift": recip_shift,
                           "v": slot["sum2"] + eps_rounded})
        v_bits = bit_length(m, slot["v"])
        slot = pipe.stage({**slot, "v_bits": v_bits})
        k = ((slot.pop("v_bits") - 29).as_signed() >> 1)
        v = slot.pop("v")
        u = Mux(v == 0, 1 << 28, Mux(k >= 0, v >> (k << 1).as_unsigned()[:6], v << (-(k << 1)).as_unsigned()[:6]))
        slot = pipe.stage({**slot, "rsqrt_k": k.as_signed()[:6].as_signed(), "u": u[:30], "v_zero": v == 0})
        seed = Array(Const(s, unsigned(16)) for s in _rsqrt_seed())
        slot = pipe.stage({**slot, "y": Cat(seed[slot["u"][26:30]], Const(0, 2)).as_signed()})
        # the softmax reciprocal's divider runs alongside the Newton steps; each step is
        # t = u*(y*y) >> 29, y = y*(3*2**29 - t) >> 30, a multiply per stage (y*y first keeps the
        # widest product at 30 x 33 bits)
        rsqrt_stages = []
        for _ in range(3):  # golden.ops.RSQRT_ITERATIONS
            rsqrt_stages.append(lambda s: {"yy": s["y"] * s["y"]})
            rsqrt_stages.append(lambda s: {"uyy": s["u"] * s.pop("yy")})
            rsqrt_stages.append(lambda s: {"newton": (3 << 29) - (s.pop("uyy") >> 29)})
            rsqrt_stages.append(lambda s: {"y": ((s["y"] * s.pop("newton")) >> 30)[:18].as_signed()})
        divide_stages = self._divide_stages("n15", "recip_m", RECIP_DIVIDEND, RECIP_QUOTIENT_BITS)
        for n in range(max(len(rsqrt_stages), len(divide_stages))):
            update = {}
            if n < len(rsqrt_stages):
                update.update(rsqrt_stages[n](slot))
            if n < len(divide_stages):
                update.update(divide_stages[n](slot))
            slot = pipe.stage({**slot, **update})
        y = Mux(slot["y"] > (1 << 15) - 1, (1 << 15) - 1, slot["y"])
        rm = Mux(is_op(slot, Op.SOFTMAX), slot["recip_m"],
                 Mux(slot["v_zero"], (1 << 15) - 1, y))
        re = Mux(is_op(slot, Op.SOFTMAX), -29 - slot["recip_shift"],
                 Mux(slot["v_zero"], 0, -29 - slot["rsqrt_k"]))
        lane = pipe.unpark(parked)
        sum_squares = is_op(slot, Op.SUM_SQUARES)
        row_sum = is_op(slot, Op.SOFTMAX_EXP) & slot["last"]
        lane["value"] = Mux(sum_squares | row_sum, slot["sum2"], lane["value"])
        lane["oe"] = Mux(sum_squares, slot["norm_shift"], lane["oe"])
        for key in ("y", "u", "recip_m", "recip_shift", "rsqrt_k", "v_zero", "n15", "sum2", "recip_m_r"):
            slot.pop(key, None)
        slot = pipe.stage({**slot, **lane, "rm": rm[:16], "re": re.as_signed()[:8].as_signed()})

        # ---------------------------------------------------------------- F: per-lane outputs
        x = slot["x"]
        # the lane value waits for the output multiply, the beat's row results for the output
        to_multiply = pipe.park({k: slot.pop(k) for k in ("x", "final", "quant_shift", "recip")})
        to_output = pipe.park({k: slot.pop(k) for k in ("value", "om", "oe", "on", "emit", "ilast")})
        gelu = is_op(slot, Op.GELU)
        half = self.head_dim // 2
        freqs = Array(Const(int(f), unsigned(32)) for f in nx.rope_frequencies(self.head_dim, self.rope_theta))
        gelu_t, silu_t = nx.gelu_table(), nx.silu_table()
        assert gelu_t.frac_bits == silu_t.frac_bits
        act_k0, act_slope, act_frac, act_big, act_neg, freq, rotate_sub = [], [], [], [], [], [], []
        # base is a multiple of the lanes: with its low bits known to be 0, each lane's frequency
        # table keeps only the entries that lane can see
        base = slot.pop("base")
        known_zero = (lanes & -lanes).bit_length() - 1
        beat_base = Cat(Const(0, known_zero), base[known_zero:])
        for j in range(lanes):
            a = abs(x[j])
            limit = Mux(gelu, int(nx.GELU_RANGE) << nx.FRAC, int(nx.SILU_RANGE) << nx.FRAC)
            big = a >= limit
            u = Mux(big, limit - 1, a)[:13]
            gk, gs = pwl_lookup(gelu_t, u[gelu_t.frac_bits:gelu_t.frac_bits + gelu_t.index_bits])
            sk, ss = pwl_lookup(silu_t, u[silu_t.frac_bits:silu_t.frac_bits + silu_t.index_bits])
            act_k0.append(Mux(gelu, gk, sk))
            act_slope.append(Mux(gelu, gs, ss)[:12].as_signed())
            act_frac.append(u[:gelu_t.frac_bits])
            act_big.append(big)
            act_neg.append(x[j] < 0)
            element = beat_base + j
            pair = Mux(element >= half, element - half, element)
            freq.append(freqs[pair])
            rotate_sub.append(element < half)
        slot = pipe.stage({**slot, "act_k0": act_k0, "act_slope": act_slope, "act_frac": act_frac,
                           "act_big": act_big, "act_neg": act_neg, "freq": freq, "rotate_sub": rotate_sub})
        ins = instruction(slot["tag"])
        act_prod = [shift_add_multiply(s, f) for s, f in zip(slot.pop("act_slope"), slot.pop("act_frac"), strict=True)]
        # (position * freq) mod 2**32: one 16 x 17 DSP product, the top 15 bits of freq on adders
        phase = [(ins.position * f[:17] + (shift_add_multiply(ins.position, f[17:], width=15) << 17))[:32]
                 for f in slot.pop("freq")]
        slot = pipe.stage({**slot, "phase": phase, "act_prod": act_prod})

        # sine table: one ROM (block RAM) per lane, read twice (sin, and cos = a quarter turn on)
        sine = nx.sine_table()
        one = 1 << nx.PROB_FRAC
        phi, sin_rom, cos_rom, sin_frac, cos_frac = [], [], [], [], []
        rom_init = [(k & 0xFFFF) | (((sine.knots[i + 1] - k) & 0x3FF) << 16)
                    for i, k in enumerate(sine.knots[:-1])]
        for j in range(lanes):
            g = slot["act_k0"][j] + (slot["act_prod"][j] >> gelu_t.frac_bits)
            g = Mux(slot["act_big"][j], one, g)
            phi.append(Mux(slot["act_neg"][j], one - g, g))
            rom = Memory(shape=unsigned(26), depth=sine.segments, init=rom_init)
            m.submodules[f"sine_rom{j}"] = rom
            for phase, data, frac in ((slot["phase"][j], sin_rom, sin_frac),
                                      ((slot["phase"][j] + (1 << 30))[:32], cos_rom, cos_frac)):
                port = rom.read_port(domain="sync")
                m.d.comb += [port.addr.eq(phase[sine.frac_bits:]), port.en.eq(advance)]
                data.append(port.data)
                frac.append(phase[:sine.frac_bits])
        for key in ("act_k0", "act_prod", "act_big", "act_neg", "phase"):
            slot.pop(key)
        slot = pipe.stage({**slot, "phi": phi, "sin_frac": sin_frac, "cos_frac": cos_frac})

        def interpolation(rom_data, frac):
            # slope (10 bits) x frac (24 bits): one DSP for the top 17 bits of frac, adders for the rest
            slope = rom_data[16:26].as_signed()
            return ((slope * frac[7:]) << 7) + shift_add_multiply(slope, frac[:7])

        sin_sf = [interpolation(d, f) for d, f in zip(sin_rom, slot.pop("sin_frac"), strict=True)]
        cos_sf = [interpolation(d, f) for d, f in zip(cos_rom, slot.pop("cos_frac"), strict=True)]
        slot = pipe.stage({**slot, "sin_k0": [d[:16].as_signed() for d in sin_rom],
                           "cos_k0": [d[:16].as_signed() for d in cos_rom], "sin_sf": sin_sf, "cos_sf": cos_sf})
        # |sin|, |cos| <= 2**14: a linear interpolation stays between its two knots
        sin = [(slot["sin_k0"][j] + (slot["sin_sf"][j] >> sine.frac_bits))[:16].as_signed() for j in range(lanes)]
        cos = [(slot["cos_k0"][j] + (slot["cos_sf"][j] >> sine.frac_bits))[:16].as_signed() for j in range(lanes)]
        for key in ("sin_k0", "sin_sf", "cos_k0", "cos_sf"):
            slot.pop(key)
        row2 = pipe.latch(token(slot, 1), {k: slot.pop(k) for k in ("rm", "re", "norm_shift")}, "row2")
        slot = pipe.stage({**slot, **pipe.unpark(to_multiply), "sin": sin, "cos": cos})

        # the side beat taken with this beat at admission leaves the side FIFO here
        side_needed = Signal()
        m.d.comb += side_needed.eq(slot["valid"] & slot["final"] & is_op(slot, *NEEDS_SIDE))
        side_depth = 1 << (pipe.depth + 2).bit_length()
        m.submodules.side_fifo = side_fifo = SyncFIFOBuffered(width=side_layout(lanes).size, depth=side_depth)
        m.d.comb += [
            side_fifo.w_data.eq(self.s.payload.as_value()),
            side_fifo.w_en.eq(self.s.valid & self.s.ready),
            side_room.eq(side_fifo.w_rdy),
            side_fifo.r_en.eq(side_needed),
        ]
        side_beat = data_lib.View(side_layout(lanes), side_fifo.r_data)
        ins = instruction(slot["tag"])
        mult, expo, bias, partner, partner_sin = [], [], [], [], []
        for j in range(lanes):
            side = side_beat[j]
            mj = Signal(signed(33), name=f"mult{j}")
            ej = Signal(signed(10), name=f"expo{j}")
            bj = Signal(signed(32), name=f"bias{j}")
            m.d.comb += [mj.eq(1), ej.eq(0), bj.eq(0)]
            with m.Switch(slot["op"]):
                with m.Case(Op.ADD):
                    m.d.comb += bj.eq(side.b)
                with m.Case(Op.MUL):
                    m.d.comb += [mj.eq(side.b), ej.eq(-nx.FRAC)]
                with m.Case(Op.REQUANT):
                    m.d.comb += [mj.eq(side.m), ej.eq(side.e), bj.eq(side.b)]
                with m.Case(Op.GELU, Op.SILU):
                    m.d.comb += [mj.eq(slot["phi"][j]), ej.eq(-nx.PROB_FRAC)]
                with m.Case(Op.ROPE):
                    m.d.comb += [mj.eq(slot["cos"][j]), ej.eq(-nx.TRIG_FRAC)]
                with m.Case(Op.QUANTIZE):
                    m.d.comb += [mj.eq(slot["recip"]), ej.eq(-nx.RECIP_FRAC - slot["quant_shift"])]
                with m.Case(Op.SOFTMAX):
                    m.d.comb += [mj.eq(row2["rm"]), ej.eq(row2["re"] + nx.PROB_FRAC)]
                with m.Case(Op.RMSNORM, Op.LAYERNORM):
                    m.d.comb += [mj.eq((row2["rm"] * side.m) >> nx.SCALE_BITS),
                                 ej.eq(row2["re"] + side.e + nx.SCALE_BITS + nx.FRAC - row2["norm_shift"]),
                                 bj.eq(side.b)]
            mult.append(mj)
            expo.append(ej)
            bias.append(bj)
            partner.append(Mux(is_op(slot, Op.ROPE), side.b, 0))
            partner_sin.append(Mux(slot["rotate_sub"][j], -slot["sin"][j], slot["sin"][j])[:16].as_signed())
        # saturation: int8/16/32, or quantize_rows' symmetric [-127, 127]
        out_width = Mux(is_op(slot, Op.REQUANT), ins.out_width.as_value(),
                        Mux(is_op(slot, Op.QUANTIZE), 3, OutWidth.INT32.value))
        for key in ("phi", "sin", "cos", "rotate_sub", "recip", "quant_shift", "final"):
            slot.pop(key)
        # the bias waits in a delay line until the sum
        to_sum = pipe.park({"bias": bias, "out_width": out_width})
        slot = pipe.stage({**slot, "mult": mult, "expo": expo, "partner": partner, "partner_sin": partner_sin})
        # A positive exponent (REQUANT, the norms; at most 15, low 4 bits as before) shifts M
        # instead of the product: M * 2**e still fits in 33 bits (|M| < 2**17 for those operations),
        # and the output shifter only ever shifts right.
        left = [e > 0 for e in slot["expo"]]
        mult = [Mux(up, mj << e.as_unsigned()[:4], mj)[:33].as_signed()
                for up, mj, e in zip(left, slot.pop("mult"), slot["expo"], strict=True)]
        expo = [Mux(up, 0, e) for up, e in zip(left, slot.pop("expo"), strict=True)]
        slot = pipe.stage({**slot, "mult": mult, "right": [clamp(-e, 0, 62).as_unsigned()[:6] for e in expo]})
        to_shift = pipe.park({"right": slot.pop("right")})

        # x * M + partner * sin, from 18 x 18 pieces: one DSP each, the products registered
        # before the adders (x = xh * 2**16 + xl, M = mh * 2**17 + ml, partner = ph * 2**16 + pl)
        pieces = {"xl_ml": [], "xh_ml": [], "xl_mh": [], "xh_mh": [], "pl_s": [], "ph_s": []}
        for xj, mj, pj, sj in zip(slot.pop("x"), slot.pop("mult"), slot.pop("partner"), slot.pop("partner_sin"),
                                  strict=True):
            xl, xh = xj[:16], xj[16:32].as_signed()
            ml, mh = mj[:17], mj[17:33].as_signed()
            pl, ph = pj[:16], pj[16:32].as_signed()
            for key, product in (("xl_ml", xl * ml), ("xh_ml", xh * ml), ("xl_mh", xl * mh), ("xh_mh", xh * mh),
                                 ("pl_s", pl * sj), ("ph_s", ph * sj)):
                pieces[key].append(product)
        slot = pipe.stage({**slot, **pieces})
        # x * ml, x * mh and partner * sin: one add each
        x_ml = [a + b.shift_left(16) for a, b in zip(slot.pop("xl_ml"), slot.pop("xh_ml"), strict=True)]
        x_mh = [a + b.shift_left(16) for a, b in zip(slot.pop("xl_mh"), slot.pop("xh_mh"), strict=True)]
        p_s = [a + b.shift_left(16) for a, b in zip(slot.pop("pl_s"), slot.pop("ph_s"), strict=True)]
        slot = pipe.stage({**slot, "x_ml": x_ml, "x_mh": x_mh, "p_s": p_s})
        low = [a + b for a, b in zip(slot.pop("x_ml"), slot.pop("p_s"), strict=True)]
        slot = pipe.stage({**slot, "low": low, "x_mh": slot.pop("x_mh")})
        # |x * M| <= 2**63 and |partner * sin| <= 2**45: 65 bits hold the sum
        product = [(a + b.shift_left(17))[:65].as_signed()
                   for a, b in zip(slot.pop("low"), slot.pop("x_mh"), strict=True)]
        slot = pipe.stage({**slot, **pipe.unpark(to_shift), "product": product})
        # round_shift(product, right) in two stages: p >> (right - 1), then ((.) + 1) >> 1. Every
        # output saturates to 32 bits at most after adding a 32-bit bias, so p >> (right - 1) is
        # clamped to 35 bits: a value beyond still saturates the same way, and the shifter, the
        # rounding, the bias adder and the saturation all stay 35-36 bits wide.
        partial, rounds = [], []
        for product, right in zip(slot.pop("product"), slot.pop("right"), strict=True):
            shift = Mux(right == 0, 0, right - 1)[:6]
            # bits of the product at and above shift + 34 must all equal its sign
            sign = product[-1]
            beyond = Cat(*[(product[i] ^ sign) & (shift <= i - (WINDOW_BITS - 1))
                           for i in range(WINDOW_BITS - 1, len(product) - 1)]).any()
            window = shift_right_low(product, shift, WINDOW_BITS)
            limit = Mux(sign, -(1 << (WINDOW_BITS - 1)), (1 << (WINDOW_BITS - 1)) - 1)
            partial.append(Mux(beyond, limit, window)[:WINDOW_BITS].as_signed())
            rounds.append(right != 0)
        slot = pipe.stage({**slot, "partial": partial, "round": rounds})
        shifted = [Mux(r, (p + 1).shift_right(1), p)
                   for p, r in zip(slot.pop("partial"), slot.pop("round"), strict=True)]
        slot = pipe.stage({**slot, **pipe.unpark(to_sum), "shifted": shifted})
        total = [a + b for a, b in zip(slot.pop("shifted"), slot.pop("bias"), strict=True)]
        slot = pipe.stage({**slot, **pipe.unpark(to_output), "total": total})
        data = []
        out_width = slot["out_width"]
        for j in range(lanes):
            total = slot["total"][j]
            int8 = saturate_narrow(total, 8)
            # quantize_rows: symmetric [-127, 127]
            symmetric = Mux(int8 == -128, -127, int8)
            sat = Mux(out_width == OutWidth.INT8.value, int8,
                      Mux(out_width == OutWidth.INT16.value, saturate_narrow(total, 16),
                          Mux(out_width == 3, symmetric, saturate_narrow(total, 32))))
            data.append(Mux(slot["on"][j] & is_op(slot, *ELEMENTWISE), sat, 0)[:32].as_signed())
        out = pipe.stage({"valid": slot["valid"], "emit": slot["emit"], "ilast": slot["ilast"], "data": data,
                          "value": slot["value"], "om": slot["om"], "oe": slot["oe"]})

        # ---------------------------------------------------------------- output FIFO and credits
        out_depth = 1 << (pipe.depth + 2).bit_length()
        beat = Signal(output_layout(lanes))
        m.d.comb += [beat.value.eq(out["value"]), beat.m.eq(out["om"]), beat.e.eq(out["oe"])]
        for j in range(lanes):
            m.d.comb += beat.data[j].eq(out["data"][j])
        m.submodules.out_fifo = out_fifo = SyncFIFOBuffered(width=output_layout(lanes).size, depth=out_depth)
        m.d.comb += [
            out_fifo.w_data.eq(beat.as_value()),
            out_fifo.w_en.eq(out["valid"] & out["emit"]),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
            advance.eq(1),
            freeing.eq(out["valid"] & out["ilast"]),
        ]
        # beats admitted that will be output, and not yet taken from the FIFO: never more than
        # the FIFO holds, so it cannot overflow however long `o` stalls
        pending = Signal(range(out_depth + 1))
        emitting = Signal()
        m.d.comb += [emitting.eq(accept & last_pass & (any_of(op_now, ELEMENTWISE) | last_beat)),
                     credit.eq(pending < out_depth)]
        m.d.sync += pending.eq(pending + emitting - (self.o.valid & self.o.ready))
        self.latency = pipe.depth
        return m

    # ------------------------------------------------------------------------------------------

    def _divide_stages(self, divisor: str, quotient: str, dividend: int, quotient_bits: int):
        """Restoring division of a constant by a slot field in [2**14, 2**15), a few quotient bits
        per stage. Returns one slot-update function per stage."""
        per_stage = self.divide_bits_per_stage
        remainder = f"{quotient}_r"
        stages = []
        done = 0
        while done < quotient_bits:
            bits = list(range(quotient_bits - 1 - done, max(quotient_bits - done - per_stage, 0) - 1, -1))

            def update(s, bits=bits, first=(done == 0)):
                d = s[divisor]
                r = Const(dividend >> quotient_bits, unsigned(16)) if first else s[remainder]
                q = Const(0, unsigned(quotient_bits)) if first else s[quotient]
                for bit in bits:
                    r = Cat(Const((dividend >> bit) & 1, 1), r[:16])
                    difference = r - d
                    # the sign of the difference, not `r >= d`: r is a constant in the first step
                    ge = ~difference[-1]
                    r = Mux(ge, difference, r)[:16]
                    q = Cat(ge, q)[:quotient_bits]
                return {remainder: r, quotient: q}

            stages.append(update)
            done += len(bits)
        return stages

    def _divide(self, pipe: Lockstep, slot: dict, divisor: str, quotient: str, dividend: int, bits: int) -> dict:
        for update in self._divide_stages(divisor, quotient, dividend, bits):
            slot = pipe.stage({**slot, **update(slot)})
        slot.pop(f"{quotient}_r")
        return slot
