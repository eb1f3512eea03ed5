"""The ``rtl`` backend: a model on the generated Verilog of the chip (Verilator, cocotb).

Compiles the checkpoint for the chip configuration, generates and builds the Verilog of the chip
(:class:`rtl.chip.Chip`: cores, network-on-chip, memory tile, host CSRs) with its DRAM model
(cached by the flow), and runs :mod:`testbench.chip_run` in the simulator:
the prompt job, then one decode job per generated token on the same DRAM. Returns the same
outputs as the other backends, plus cycle counts and matrix-engine utilization per job.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.lower import Compiler, Job
from golden import ops
from golden.checkpoint import Checkpoint
from golden.model import Outputs
from rtl.core.controller import QUEUES
from rtl.core.csr import UNIT_COUNTERS
from scoville.config import ChipConfig

__all__ = ["RtlRun", "run_rtl", "chip_design"]

#: Smallest DRAM model: every model up to this size shares one Verilator build (tiny-llama's
#: image and MiniLM's, 31.7 MB).
MIN_DRAM_BYTES = 32 << 20


@dataclass
class RtlRun:
    """Outputs of the prompt job, generated tokens, and per-job cycle counts."""

    outputs: Outputs
    tokens: np.ndarray | None
    hidden_wide: np.ndarray
    logits_wide: np.ndarray | None
    config: ChipConfig
    cycles: list[int] = field(default_factory=list)          # prefill, then each decode job
    matrix_busy: list[int] = field(default_factory=list)     # cycles an activation row entered the array
    #: per job, per unit (load, matrix, vector, store): busy, waiting and stalled cycles
    unit_counters: list[dict[str, dict[str, int]]] = field(default_factory=list)
    instructions: list[int] = field(default_factory=list)
    sim_wall: list[float] = field(default_factory=list)      # seconds of simulation per job
    log: Path | None = None
    #: with ``trace``: per job, per queue, the release and completion cycle of each instruction
    #: and the unit's stalled-cycle count at each completion (:class:`compiler.profile.Trace`)
    traces: list = field(default_factory=list)

    def matrix_utilization(self, job: int = 0) -> float:
        return self.matrix_busy[job] / self.cycles[job] if self.cycles[job] else 0.0


def _prompt_job(ckpt: Checkpoint, config: ChipConfig, ids: np.ndarray) -> tuple[ChipConfig, Job]:
    """The configuration with the DRAM model's size for this model, and the prompt job compiled
    for it here, on the host: a job that does not fit raises :class:`compiler.lower.FitError`
    before any simulation, and the simulation runs this job instead of compiling it again."""
    image = len(Compiler(ckpt, config)._image)
    size = MIN_DRAM_BYTES
    while size < image:
        size *= 2
    config = dataclasses.replace(config, dram_bytes=size)
    return config, Compiler(ckpt, config).job(ids)


def chip_design(config: ChipConfig):
    """The chip of ``config`` with a DRAM model of ``config.dram_bytes``, for the flow to build."""
    from rtl.sim.core_system import chip_with_dram
    from scoville.flow import Design

    return Design(f"chip_{config.name}", chip_with_dram, dataclasses.asdict(config))


def _follow(log: Path, jobs: int, stop: threading.Event) -> None:
    """A progress bar from the simulation log's one line per finished job."""
    from tqdm import tqdm

    with tqdm(total=jobs, desc="rtl", unit="job", leave=False) as bar:
        done = 0
        while not stop.wait(0.5):
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            finished = text.count(" instructions, ")
            if finished > done:
                bar.update(finished - done)
                done = finished


def run_rtl(ckpt: Checkpoint, ids: np.ndarray, generate: int | None = None, config: ChipConfig | None = None,
            *, waves: bool | None = None, latency: int = 20, progress: bool = False,
            trace: bool = False) -> RtlRun:
    """Run ``ids`` (and ``generate`` greedy tokens) on the simulated chip; ``progress`` shows a bar
    of finished jobs on the terminal; ``trace`` records every instruction's release and completion
    (slower: a Python callback per event)."""
    from scoville.flow import build, run_cocotb, run_dir

    config = config or ChipConfig()
    ids = ckpt.check_ids(ids)
    config, job = _prompt_job(ckpt, config, ids)
    design = chip_design(config)
    with tempfile.TemporaryDirectory() as tmp:
        out, prompt = Path(tmp) / "run.npz", Path(tmp) / "prompt.pickle"
        prompt.write_bytes(pickle.dumps(job))
        spec = {"checkpoint": str(ckpt.path), "ids": [int(i) for i in ids], "generate": generate or 0,
                "config": dataclasses.asdict(config), "prompt": str(prompt), "out": str(out), "latency": latency,
                "trace": trace}
        stop = threading.Event()
        if progress:
            log = run_dir(build(design, waves=waves), "model") / "sim.log"
            log.unlink(missing_ok=True)
            threading.Thread(target=_follow, args=(log, max(1, generate or 1), stop), daemon=True).start()
        try:
            test_dir = run_cocotb(design, "testbench.chip_run", testcase="run_jobs", waves=waves, test_name="model",
                                  extra_env={"SCOVILLE_RUN": json.dumps(spec)})
        finally:
            stop.set()
        result = dict(np.load(out))
    hidden = result["hidden_wide"]
    logits = result.get("logits_wide")
    outputs = Outputs(hidden=ops.from_wide(hidden), logits=None if logits is None else ops.from_wide(logits))
    if ckpt.config.arch == "bert":
        outputs.pooled = outputs.hidden.mean(axis=0).astype(np.float32)
    tokens = result["tokens"] if generate else None
    units = [{unit: dict(zip(UNIT_COUNTERS, (int(v) for v in counts), strict=True))
              for unit, counts in zip(QUEUES, job, strict=True)} for job in result["units"]]
    traces = []
    if trace:
        from compiler.profile import Trace

        for n in range(len(result["cycles"])):
            traces.append(Trace({q: result[f"trace{n}_{q}_issue"] for q in QUEUES},
                                {q: result[f"trace{n}_{q}_done"] for q in QUEUES},
                                {q: result[f"trace{n}_{q}_stalled"] for q in QUEUES}))
    return RtlRun(outputs, tokens, hidden, logits, config, result["cycles"].tolist(), result["matrix_busy"].tolist(),
                  units, result["instructions"].tolist(), result["wall"].tolist(), test_dir / "sim.log", traces)
