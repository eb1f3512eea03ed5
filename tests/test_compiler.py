"""The compiler and the instruction set, checked by the functional simulator against golden.

The functional simulator executes each opcode by the golden function it names; a compiled
program must therefore reproduce the ``golden`` backend bit for bit. This pins down the
compiler (tiling, memory plan, KV cache layout, attention decomposition) before the RTL core.
"""

import numpy as np
import pytest

from compiler.dependencies import footprint, overlap
from compiler.funcsim import ExecutionError, Machine, run_program
from compiler.lower import Compiler, FitError
from golden import ops
from golden.model import build_model
from scoville import accuracy
from scoville.config import ChipConfig
from scoville.isa import INSTRUCTION_BYTES, Flag, Opcode, decode, encode, pack_scale, unpack_scale
from scoville.models import load_model


def run_job(compiler, ids, start=0, dram=None):
    job = compiler.job(ids, start, dram)
    machine = run_program(Machine(compiler.config, job.dram), job.program_addr)
    hidden, logits = compiler.read_outputs(job, machine.dram)
    return machine, hidden, logits


def assert_same(got_wide, want_float, what):
    got = ops.from_wide(got_wide)
    bad = np.argwhere(got != want_float)
    if len(bad):
        where = tuple(bad[0])
        raise AssertionError(f"{what}: first mismatch at {where}: {got[where]} vs golden {want_float[where]}")


def assert_prompt_and_decode_bit_exact(compiler, ids):
    """A decoder's prompt ``ids`` (hidden states and logits) and one greedy token after it, with
    the KV cache in DRAM, equal golden's."""
    model = build_model(compiler.ckpt, "golden")
    cache = model.new_cache()
    machine, hidden, logits = run_job(compiler, ids)
    want = model.forward(ids, cache)
    assert_same(hidden, want.hidden, "prompt hidden")
    assert_same(logits, want.logits, "prompt logits")
    token = np.array([int(np.argmax(want.logits[-1]))])
    _, _, logits = run_job(compiler, token, len(ids), machine.dram)
    assert_same(logits, model.forward(token, cache).logits, "decode after the prompt")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return accuracy.synthetic_checkpoints(tmp_path_factory.mktemp("synthetic"))


@pytest.mark.parametrize("config", ["8x8", "2x2"])
def test_tiny_llama_prefill_and_decode_bit_exact(config):
    from scoville.config import CONFIGS

    ckpt = load_model("tiny-llama")
    compiler = Compiler(ckpt, CONFIGS[config])
    model = build_model(ckpt, "golden")
    cache = model.new_cache()
    ids = ckpt.encode("Once upon a time there was")
    machine, hidden, logits = run_job(compiler, ids)
    want = model.forward(ids, cache)
    assert_same(hidden, want.hidden, "prefill hidden")
    assert_same(logits, want.logits, "prefill logits")
    dram = machine.dram
    for step in range(3):  # greedy decode with the KV cache in DRAM
        token = np.array([int(np.argmax(want.logits[-1]))])
        start = len(ids) + step
        machine, hidden, logits = run_job(compiler, token, start, dram)
        dram = machine.dram
        want = model.forward(token, cache)
        assert_same(logits, want.logits, f"decode step {step}")


@pytest.mark.parametrize("name", ["llama-odd-40x5h-1kv", "llama-gqa-tied-96x6h-2kv", "bert-odd-60x5h"])
@pytest.mark.parametrize("length", [1, 3, 16, 32])
def test_odd_shapes_bit_exact(synthetic, name, length):
    ckpt = synthetic[name]
    ids = accuracy.sample_ids(ckpt.config.vocab_size, length, length)
    _, hidden, logits = run_job(Compiler(ckpt, ChipConfig(rows=4, columns=8, lanes=8)), ids)
    model = build_model(ckpt, "golden")
    want = model.forward(ids, model.new_cache()) if ckpt.config.arch == "llama" else model.forward(ids)
    assert_same(hidden, want.hidden, "hidden")
    if logits is not None:
        assert_same(logits, want.logits, "logits")


def test_minilm_bit_exact():
    ckpt = load_model("minilm")
    ids = ckpt.encode("A man is eating food.")
    _, hidden, _ = run_job(Compiler(ckpt), ids)
    assert_same(hidden, build_model(ckpt, "golden").forward(ids).hidden, "minilm hidden")


@pytest.mark.parametrize("length, config, blocks, x_in_dram", [
    (127, ChipConfig(spad_bytes=256 * 1024, acc_words=64 * 1024), 2, False),  # the longest prompt (128 positions)
    (64, ChipConfig(spad_bytes=256 * 1024, acc_words=64 * 1024), 1, False),   # all resident
    (64, ChipConfig(), 2, False),                                        # the FPGA-sized default
    (20, ChipConfig(acc_words=4096, spad_bytes=16 * 1024), 4, True),     # SRAMs that hold 5 tokens at a time
])
def test_long_prompts_run_in_token_blocks(length, config, blocks, x_in_dram):
    """Prompts in blocks of tokens, bit-exact. The blocks' residual rows, and their quantized
    queries between a layer's passes, stay in the SRAMs where every block's fit beside one
    block's work (``keep_x``, ``keep_q``), else go through DRAM between the blocks."""
    ckpt = load_model("tiny-llama")
    compiler = Compiler(ckpt, config)
    ids = np.arange(1, length + 1) * 7 % ckpt.config.vocab_size
    job = compiler.job(ids)
    assert -(-length // job.block) == blocks
    cfg = ckpt.config

    def moves_through(start: int, size: int) -> bool:
        """Whether a LOAD reads or a STORE writes DRAM in ``start .. start + size``."""
        region = range(start, start + size)
        return any((op is Opcode.LOAD and f["addr0"] in region) or (op is Opcode.STORE and f["addr1"] in region)
                   for op, f in job.program)

    assert moves_through(compiler.x_addr, 4 * compiler.max_tokens * cfg.hidden_size) == x_in_dram
    assert moves_through(compiler.q_addr, cfg.num_heads * compiler.max_tokens * (cfg.head_dim + 4)) == x_in_dram
    assert_prompt_and_decode_bit_exact(compiler, ids)


def test_bert_in_token_blocks(synthetic):
    ckpt = synthetic["bert-odd-60x5h"]
    compiler = Compiler(ckpt, ChipConfig(rows=4, columns=8, lanes=8, acc_words=4096, spad_bytes=8 * 1024))
    ids = accuracy.sample_ids(ckpt.config.vocab_size, 32, 32)
    assert compiler.job(ids).block < 32
    _, hidden, _ = run_job(compiler, ids)
    assert_same(hidden, build_model(ckpt, "golden").forward(ids).hidden, "hidden")


def test_weight_tiles_split_over_columns_when_the_scratchpad_is_small():
    ckpt = load_model("tiny-llama")
    small = Compiler(ckpt, ChipConfig(spad_bytes=6 * 1024))
    ids = ckpt.encode("tiling")
    machine, _, logits = run_job(small, ids)
    model = build_model(ckpt, "golden")
    assert_same(logits, model.forward(ids, model.new_cache()).logits, "tiled logits")
    # (against a large scratchpad: the default one's ring of three tiles splits them finely too)
    large = Compiler(ckpt, ChipConfig(spad_bytes=256 * 1024))
    assert machine.counts["MATMUL"] > run_job(large, ids)[0].counts["MATMUL"]


def test_weight_tiles_longer_than_the_ring_share_are_cut_along_k():
    """A weight tile of K rows that does not fit its share of the scratchpad ring is loaded and
    multiplied in pieces along K, whose MATMULs accumulate, instead of the job falling back to
    one buffer (MiniLM's K = 1536 down projection on the 8x8 chip): still bit-exact, prefill and
    decode, with every piece whole array tiles and within the ring's share."""
    ckpt = load_model("tiny-llama")
    config = ChipConfig(spad_bytes=6 * 1024)   # a ring share of 1 KiB: 128 rows of 8 columns (K is 172)
    compiler = Compiler(ckpt, config)
    ids = ckpt.encode("Once upon a time")
    job = compiler.job(ids)
    pieces = [f for op, f in job.program if op is Opcode.MATMUL and f.get("flags", 0) & Flag.ACCUMULATE]
    assert pieces, "no MATMUL accumulates a piece of K"
    share = config.spad_bytes // 2 // compiler.weight_tiles
    matmuls = [f for op, f in job.program if op is Opcode.MATMUL]
    for n, f in enumerate(matmuls):
        assert f["imm"] * f["stride1"] <= share, f
        if f.get("flags", 0) & Flag.ACCUMULATE:   # the piece before is whole array tiles and bus words
            # (the latest MATMUL into the same accumulators: list scheduling may put others between)
            before = next(g for g in reversed(matmuls[:n]) if g["addr2"] == f["addr2"])
            assert before["imm"] % config.rows == 0 and before["imm"] % config.bus_bytes == 0, before
            assert f["addr0"] == before["addr0"] + before["imm"], (before, f)
    assert_prompt_and_decode_bit_exact(compiler, ids)
    # MiniLM's sentence on the default chip runs double-buffered this way
    minilm = Compiler(load_model("minilm")).job(load_model("minilm").encode("A man is eating food."))
    assert any(op is Opcode.MATMUL and f.get("flags", 0) & Flag.ACCUMULATE for op, f in minilm.program)


def test_prompt_logits_leave_a_tile_at_a_time():
    """A prompt's logits are stored a vocabulary tile at a time, each STORE behind its tile's
    requantization and before the last tile's, so they leave while the matrix engine
    works on the next tiles (not all at the end, on the DMA alone); a decode's in one STORE.
    Together the STOREs write every logit once (bit-exact: the compiler tests above)."""
    ckpt = load_model("tiny-llama")
    compiler = Compiler(ckpt)
    vocab = ckpt.config.vocab_size
    ids = np.arange(1, 65) * 7 % vocab
    for job, tokens in ((compiler.job(ids), 64), (compiler.job(np.array([5]), 64), 1)):
        logits = compiler.logits_addr, compiler.logits_addr + 4 * tokens * vocab   # the job's rows
        head = [(op, f) for (op, f), section in zip(job.program, job.sections, strict=True) if section == "head"]
        stores = [n for n, (op, f) in enumerate(head) if op is Opcode.STORE and logits[0] <= f["addr1"] < logits[1]]
        written = np.zeros(tokens * vocab, dtype=int)   # [token, vocab] flat: a run may span rows
        for n in stores:
            f = head[n][1]
            first = (f["addr1"] - compiler.logits_addr) // 4
            for r in range(f["rows"]):
                start = first + r * f["stride1"]
                written[start:start + f["cols"]] += 1
        assert (written == 1).all()
        requants = [n for n, (op, _) in enumerate(head) if op is Opcode.V_REQUANT]
        if tokens == 1:
            assert len(stores) == 1
        else:
            # one STORE per tile, behind a V_REQUANT that writes its rows (the tiles' buffers
            # are reused), and every one but the last before the last V_REQUANT (list scheduling
            # may put a tile's STORE after the next tile's requantization, but not all of them
            # at the end)
            assert len(stores) > 1
            for n in stores:
                source = footprint(*head[n])[0]
                assert any(r < n and overlap(footprint(*head[r])[1], source) for r in requants)
                assert n == stores[-1] or n < requants[-1]


@pytest.mark.parametrize("model, activation, tokens", [("tiny-llama", Opcode.V_SILU, 64),
                                                       ("minilm", Opcode.V_GELU, 16)])
def test_mlp_activations_follow_each_weight_tile(model, activation, tokens):
    """The MLP's activation (and a gated MLP's product with up) runs on each weight tile's columns
    once the tile is requantized, so the vector unit works beside the next tiles' matmuls: each
    instruction covers a tile's columns, together every element of the layer once, and the first
    comes before the last tile's MATMUL (bit-exact: the compiler tests above)."""
    ckpt = load_model(model)
    job = Compiler(ckpt).job(np.arange(1, tokens + 1) * 7 % ckpt.config.vocab_size)
    f = ckpt.config.intermediate_size
    for layer in range(ckpt.config.num_layers):
        mlp = [(op, fields) for (op, fields), section, at in zip(job.program, job.sections, job.layers, strict=True)
               if section == "mlp" and at == layer]
        # the up projections' (gate and up) matmuls: K is the hidden size, not f
        ups = [n for n, (op, fields) in enumerate(mlp) if op is Opcode.MATMUL and fields["imm"] != f]
        for opcode in (activation, Opcode.V_MUL) if activation is Opcode.V_SILU else (activation,):
            runs = [n for n, (op, _) in enumerate(mlp) if op is opcode]
            assert all(mlp[n][1]["cols"] < f for n in runs), opcode
            assert sum(mlp[n][1]["rows"] * mlp[n][1]["cols"] for n in runs) == tokens * f, opcode
            assert runs[0] < ups[-1], opcode


@pytest.mark.parametrize("model", ["tiny-llama", "minilm"])
def test_prompt_attention_folds_v_in_the_softmax(model):
    """A prompt's attention folds V's scales on each head's softmax (``FOLD_V``, the head group's
    value scales at addr3): no V_FOLD_V pass. A decode's attention of every group at once keeps
    one V_FOLD_V per group after its one softmax (bit-exact either way: the compiler tests
    above)."""
    ckpt = load_model(model)
    compiler = Compiler(ckpt)
    cfg = ckpt.config
    jobs = [(compiler.job(np.arange(1, 33) * 7 % cfg.vocab_size), "prompt")]
    if cfg.arch == "llama":
        jobs.append((compiler.job(np.array([5]), 32), "decode"))
    for job, kind in jobs:
        ops = [(op, f) for op, f in job.program]
        softmaxes = [f for op, f in ops if op is Opcode.V_SOFTMAX_EXP]
        folds = [f for op, f in ops if op is Opcode.V_FOLD_V]
        if kind == "prompt":
            # one per head, layer and block of tokens
            assert softmaxes and len(softmaxes) % (cfg.num_layers * cfg.num_heads) == 0 and not folds
            assert all(f.get("flags", 0) & Flag.FOLD_V for f in softmaxes)
            # each reads a value-scale buffer that a LOAD filled (a row of a LOAD of the group's
            # key and value scales)
            loaded = {f["addr1"] + r * f.get("stride1", 0) for op, f in ops
                      if op is Opcode.LOAD and f.get("flags", 0) & Flag.DST_ACC for r in range(f["rows"])}
            assert all(f["addr3"] in loaded for f in softmaxes)
        else:
            assert not any(f.get("flags", 0) & Flag.FOLD_V for f in softmaxes)
            assert len(folds) == cfg.num_layers * compiler.kv_heads

def test_norms_on_a_narrow_unit_are_row_scales_then_a_requantization():
    """On a chip whose vector unit is narrower than a beat and that has the wide requantizer (the
    default 8x8 FPGA chip), each RMSNorm is a ``V_RMSNORM`` with ``ROW_SCALE`` (the rows' scales,
    a word a row) and a ``V_REQUANT`` of the same rows by those scales and gamma, with the bias;
    with a full-width unit (16x16) it stays one ``V_RMSNORM``. Both are bit-exact (the tests above).
    When the rows' quantization is split (``V_QUANT`` with ``ROW_SCALE``, then ``V_REQUANT8``), the
    V_REQUANT also writes each row's largest result (``ROW_SCALE``, at imm), and the V_QUANT reads
    those, a word a row, instead of the rows."""
    from scoville.config import CONFIGS

    ckpt = load_model("tiny-llama")
    ids = np.arange(1, 17) * 7 % ckpt.config.vocab_size
    program = Compiler(ckpt).job(ids).program
    norms = [n for n, (op, _) in enumerate(program) if op is Opcode.V_RMSNORM]
    fused = 0
    # every token's row in each of the norms (a prompt may run in blocks of tokens)
    assert sum(program[n][1]["rows"] for n in norms) == (2 * ckpt.config.num_layers + 1) * len(ids)
    for n in norms:
        norm = program[n][1]
        assert norm["flags"] == Flag.ROW_SCALE
        requant = [f for op, f in program[n + 1:] if op is Opcode.V_REQUANT and f["addr2"] == norm["addr1"]][0]
        assert requant["addr0"] == norm["addr0"] and requant["flags"] & ~Flag.ROW_SCALE == Flag.HAS_BIAS
        assert (requant["rows"], requant["cols"]) == (norm["rows"], norm["cols"])
        # the V_QUANT whose rows cover the V_REQUANT's (the list scheduler may take either in halves)
        first = requant["imm"] if requant["flags"] & Flag.ROW_SCALE else requant["addr1"]
        quant = [f for op, f in program[n + 1:] if op is Opcode.V_QUANT and f.get("flags", 0) & Flag.ROW_SCALE
                 and f["addr0"] <= first < f["addr0"] + f["rows"] * f["stride0"]][0]
        if requant["flags"] & Flag.ROW_SCALE:
            fused += 1
            assert (quant["cols"], quant["stride0"], quant["flags"]) == (1, 1, Flag.ROW_SCALE)
            assert first + requant["rows"] <= quant["addr0"] + quant["rows"]
    assert fused == len(norms)   # 16 rows of 64 are split
    wide = Compiler(ckpt, CONFIGS["16x16-128b"]).job(ids).program
    assert all(f.get("flags", 0) == Flag.HAS_BIAS for op, f in wide if op is Opcode.V_RMSNORM)


def test_quantizations_on_a_narrow_unit_are_scales_then_a_requantization():
    """On the default 8x8 FPGA chip (narrow vector unit, wide requantizer) a prompt's ``V_QUANT``
    is a ``V_QUANT`` with ``ROW_SCALE`` (each row's requantization scale at ``addr1``, its row scale
    at ``addr2``) and ``V_REQUANT8``s of the same rows by those scales into the int8 rows; a
    decode's small quantizations (under ``QUANT_SPLIT_PIECES`` of pieces) and every one on a
    full-width unit (16x16) stay one ``V_QUANT``. Both are bit-exact (the tests above)."""
    from compiler.lower import QUANT_SPLIT_PIECES, quant_split_saving
    from scoville.config import CONFIGS

    ckpt = load_model("tiny-llama")
    ids = np.arange(1, 17) * 7 % ckpt.config.vocab_size
    compiler = Compiler(ckpt)
    program = compiler.job(ids).program
    config = compiler.config
    quants = [n for n, (op, f) in enumerate(program) if op is Opcode.V_QUANT and f.get("flags", 0) == Flag.ROW_SCALE]
    whole = [f for op, f in program if op is Opcode.V_QUANT and not f.get("flags", 0)]
    assert quants and whole   # the 16-token prompt's 16 x 16 queries save 96 cycles: one V_QUANT
    for f in whole:
        assert quant_split_saving(f["rows"], f["cols"], config) < QUANT_SPLIT_PIECES
    for n in quants:
        quant = program[n][1]
        # the requantizations of its rows (the list scheduler may cut them in row ranges)
        # (the buffer of those scales is taken again later: the first ones after it)
        parts, rows = [], 0
        for op, f in program[n + 1:]:
            if op is Opcode.V_REQUANT8 and quant["addr1"] <= f["addr2"] < quant["addr1"] + quant["rows"]:
                parts.append(f)
                rows += f["rows"]
                if rows >= quant["rows"]:
                    break
        assert rows == quant["rows"]
        for f in parts:
            r = f["addr2"] - quant["addr1"]
            if quant["cols"] == 1 < f["cols"]:
                # from the rows' largest results, which the V_REQUANT that wrote the rows left
                # (test_norms_on_a_narrow_unit_are_row_scales_then_a_requantization)
                word = quant["addr0"] + r * quant["stride0"]
                writer = [g for op, g in program[:n] if op is Opcode.V_REQUANT and g.get("flags", 0) & Flag.ROW_SCALE
                          and g["imm"] <= word < g["imm"] + g["rows"]][-1]
                assert f["addr0"] == writer["addr1"] + (word - writer["imm"]) * writer["stride1"]
                assert f["cols"] == writer["cols"]
            else:
                assert f["addr0"] == quant["addr0"] + r * quant["stride0"] and f["cols"] == quant["cols"]
    decode = compiler.job(np.array([3]), len(ids)).program
    assert all(f.get("flags", 0) == 0 for op, f in decode if op is Opcode.V_QUANT)
    assert not any(op is Opcode.V_REQUANT8 for op, _ in decode)
    wide = Compiler(ckpt, CONFIGS["16x16-128b"]).job(ids).program
    assert not any(op is Opcode.V_REQUANT8 for op, _ in wide)


def test_attention_passes_form_a_pipeline():
    """With double buffering a prompt's attention passes take turns in two slots: in program
    order pass n + 1's scores come before pass n's P@V (the matrix engine computes them while
    the vector unit works on pass n), and the per-row buffers the vector instructions read
    beside the scores and write beside the P@V matmul (query, probability and output scales,
    softmax sums) lie in banks neither the scores nor the P@V accumulators use."""
    ckpt = load_model("tiny-llama")
    config = ChipConfig(rows=16, columns=16, lanes=16, bus_bytes=16, spad_bytes=64 * 1024, acc_words=64 * 1024,
                        vector_lanes=None, acc_banks=8, rope_pairs=4)
    compiler = Compiler(ckpt, config, hoist_loads=False, list_schedule=False)
    job = compiler.job(np.arange(1, 65) * 7 % ckpt.config.vocab_size)
    bank = config.acc_words // config.acc_banks
    for layer in range(ckpt.config.num_layers):
        ops = [(op, f) for (op, f), n, section in zip(job.program, job.layers, job.sections, strict=True)
               if n == layer and section == "attention"]
        matmuls = ["scores" if f.get("flags", 0) & Flag.B_TRANSPOSED else "pv" for op, f in ops if op is Opcode.MATMUL]
        heads = ckpt.config.num_heads
        assert matmuls == ["scores", "scores"] + ["pv", "scores"] * (heads - 2) + ["pv", "pv"]
        big = set()   # the banks of the scores and P@V accumulators
        for op, f in ops:
            if op is Opcode.MATMUL:
                big |= set(range(f["addr2"] // bank, (f["addr2"] + f["rows"] * f["addr3"] - 1) // bank + 1))
        small = [f["addr2"] for op, f in ops if op is Opcode.V_REQUANT]
        small += [f[a] for op, f in ops if op is Opcode.V_ATTN_SCALE for a in ("addr0", "addr1", "addr2")]
        assert small and not {addr // bank for addr in small} & big


def test_what_does_not_fit_is_named():
    ckpt = load_model("tiny-llama")
    with pytest.raises(FitError, match="scratchpad|accumulator"):
        Compiler(ckpt, ChipConfig(acc_words=512)).job(np.arange(20))
    with pytest.raises(FitError, match="positions"):
        Compiler(ckpt).job(np.zeros(200, dtype=np.int64))
    with pytest.raises(FitError, match="DRAM"):
        Compiler(ckpt, ChipConfig(dram_bytes=1 << 20))


def test_instruction_words_round_trip_and_reject_bad_fields():
    word = encode(Opcode.MATMUL, flags=Flag.ACCUMULATE | Flag.B_TRANSPOSED, wait=0x81, signal=2,
                  addr0=1, addr1=(1 << 32) - 1, addr2=3, addr3=4, rows=5, cols=65535, stride0=7, stride1=8, imm=9)
    assert len(word) == INSTRUCTION_BYTES
    fields = decode(word)
    assert fields["opcode"] is Opcode.MATMUL and fields["addr1"] == (1 << 32) - 1 and fields["cols"] == 65535
    assert fields["wait"] == 0x81 and fields["flags"] == Flag.ACCUMULATE | Flag.B_TRANSPOSED
    with pytest.raises(ValueError, match="rows"):
        encode(Opcode.LOAD, rows=1 << 16)
    with pytest.raises(ValueError, match="no instruction field"):
        encode(Opcode.LOAD, rowz=1)
    with pytest.raises(ValueError, match="illegal instruction"):
        decode(bytes([0xEE]) + bytes(INSTRUCTION_BYTES - 1))
    assert unpack_scale(pack_scale(-12345, -64)) == (-12345, -64)


def test_illegal_instruction_and_out_of_range_access_stop_the_program():
    config = ChipConfig(spad_bytes=1024, acc_words=1024, dram_bytes=1 << 16)
    dram = np.zeros(config.dram_bytes, dtype=np.uint8)
    dram[:INSTRUCTION_BYTES] = 0xEE
    with pytest.raises(ExecutionError, match="illegal instruction"):
        run_program(Machine(config, dram.copy()), 0)
    dram[:INSTRUCTION_BYTES] = np.frombuffer(encode(Opcode.LOAD, addr0=0, addr1=1000, rows=1, cols=100), np.uint8)
    with pytest.raises(ExecutionError, match="SPAD access"):
        run_program(Machine(config, dram.copy()), 0)
    dram[:INSTRUCTION_BYTES] = np.frombuffer(encode(Opcode.NOP), np.uint8)
    dram[INSTRUCTION_BYTES:2 * INSTRUCTION_BYTES] = np.frombuffer(encode(Opcode.END), np.uint8)
    assert run_program(Machine(config, dram.copy()), 0).executed == 2


def _decode_jobs(ckpt):
    """For double buffering on and off: (double_buffer, compiler, job) of the decode token after
    "Once upon a time" on the default chip, once the prompt and that decode have run on the
    functional simulator and given golden's logits bit for bit."""
    from dataclasses import replace

    model = build_model(ckpt, "golden")
    cache = model.new_cache()
    ids = ckpt.encode("Once upon a time")
    prompt = model.forward(ids, cache)
    token = np.array([int(np.argmax(prompt.logits[-1]))])
    want = model.forward(token, cache)
    for double_buffer in (True, False):
        compiler = replace(Compiler(ckpt, ChipConfig()), double_buffer=double_buffer)
        machine, _, _ = run_job(compiler, ids)
        job = compiler.job(token, len(ids))
        _, _, logits = run_job(compiler, token, len(ids), machine.dram)
        assert_same(logits, want.logits, f"decode, double_buffer={double_buffer}")
        yield double_buffer, compiler, job


def test_decode_loads_a_layers_scales_once():
    """In a decode (every tile a whole weight panel) each linear layer of more than one tile loads
    every tile's column scales and bias with one LOAD of their per-panel copy (without double
    buffering, a LOAD per tile), and the logits stay golden's bit for bit."""
    for double_buffer, compiler, job in _decode_jobs(load_model("tiny-llama")):
        linears = [lin for layer in compiler.layers for lin in layer.values() if hasattr(lin, "panel")]
        linears.append(compiler.lm_head)
        several = [lin for lin in linears if lin.n > lin.panel]
        assert several, "no layer of several tiles"
        for lin in several:
            loads = [f for op, f in job.program if op is Opcode.LOAD and f.get("flags", 0) & Flag.DST_ACC
                     and any(base <= f["addr0"] < base + 8 * lin.n for base in (lin.scales, lin.panel_scales))]
            whole = [f for f in loads if f["addr0"] == lin.panel_scales and f["cols"] == 2 * lin.n]
            # without double buffering the tiles are not panels: a LOAD per tile of its scales
            assert (loads == whole and len(whole) == 1) if double_buffer else not whole, (lin, loads)


def test_decode_attention_takes_every_kv_group_at_once():
    """A decode token's attention runs every KV group's rows through one V_SOFTMAX_EXP and one
    V_QUANT per layer (without double buffering, one group at a time). A position's keys and
    values of every group are one row of the cache (``Compiler.kv_slot``), so with double
    buffering a layer loads the cache with one LOAD of the rows and one of the scales, and writes
    the new position with one STORE of its row and one of its scales (without, a STORE of the
    keys' rows, one of their scales, and the same for the values). Both give golden's logits bit
    for bit."""
    ckpt = load_model("tiny-llama")
    kv_heads, layers = ckpt.config.num_kv_heads, ckpt.config.num_layers
    assert kv_heads > 1
    counts = {}
    for double_buffer, compiler, job in _decode_jobs(ckpt):
        ops_ = [op for op, _ in job.program]
        kv_stores = sum(op is Opcode.STORE and section == "attention"
                        for (op, _), section in zip(job.program, job.sections, strict=True))
        cache = range(compiler.kv_addr, compiler.kv_addr + layers * compiler.kv_layer)
        kv_loads = sum(op is Opcode.LOAD and f["addr0"] in cache for op, f in job.program)
        counts[double_buffer] = (ops_.count(Opcode.V_SOFTMAX_EXP), kv_stores, kv_loads)
    assert counts[True][0] == layers
    assert counts[False][0] == layers * kv_heads
    assert counts[True][1:] == (layers * 2, layers * 2)
    # without double buffering: a group's keys and values one LOAD, their scales one more
    assert counts[False][1:] == (layers * 4, layers * kv_heads * 2)


def test_a_prompt_stores_the_kv_cache_a_block_at_a_time():
    """The KV cache is a row per position of every KV group's key then value, then each slot's
    scales (``Compiler.kv_slot``): a prompt stores each block's keys and values of every group
    with one STORE of the rows, one DMA row, and one of their scales per layer, which together
    write every cache row and scale of the prompt's positions once and nothing else."""
    ckpt = load_model("tiny-llama")
    compiler = Compiler(ckpt)
    cfg = ckpt.config
    tokens = 64
    job = compiler.job(np.arange(1, tokens + 1) * 7 % cfg.vocab_size)
    assert job.block < tokens, "the prompt should run in blocks"
    base, end = compiler.kv_addr, compiler.kv_addr + cfg.num_layers * compiler.kv_layer
    stores = [f for op, f in job.program if op is Opcode.STORE and base <= f["addr1"] < end]
    assert len(stores) == 2 * cfg.num_layers * -(-tokens // job.block)
    written = np.zeros(end - base, dtype=int)
    for f in stores:
        word = 4 if f.get("flags", 0) & Flag.DST_ACC else 1   # accumulator transfers count words
        if word == 1:
            assert f["rows"] == 1, f   # a block's rows are contiguous: one DMA row
        for r in range(f["rows"]):
            start = f["addr1"] - base + r * f.get("stride1", 0) * word
            written[start:start + f["cols"] * word] += 1
    expected = np.zeros_like(written)
    for layer in range(cfg.num_layers):
        for g in range(compiler.kv_heads):
            for which in (0, 1):
                rows, scales = (a - base for a in compiler.kv_slot(layer, g, which))
                for pos in range(tokens):
                    expected[rows + pos * compiler.kv_row:rows + pos * compiler.kv_row + cfg.head_dim] = 1
                expected[scales:scales + 4 * tokens] = 1
    assert (written == expected).all()
