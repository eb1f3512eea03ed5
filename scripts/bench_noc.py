"""Network-on-chip figures, measured in RTL simulation (Verilator) of a 4 x 4 mesh, 64-bit flits,
8-flit input FIFOs (the default).

* ``noc.zero_load_latency_per_hop``: cycles per hop of a single-flit packet in an empty mesh,
  the slope of latency (inject handshake to eject handshake) against Manhattan distance, from
  tile (0, 0) to all 16 tiles (Python-driven testbench). ``noc.zero_load_latency_intercept`` is
  the latency at distance 0 (the one router a packet always crosses). FIFO depth does not
  matter here; the build is the testbench's (4-flit FIFOs).
* ``noc.saturation.<pattern>.4x4``: accepted flits per tile per cycle when every tile offers one
  flit per cycle (Bernoulli packet creation, lengths uniform in 1..8 flits, 16-packet source
  queues, ejection always ready), over 10,000 cycles after 2,000 of warm-up, with the hardware
  traffic generators and checkers of ``rtl/noc/traffic.py``. ``transpose``: tiles on the diagonal
  send nothing and are still counted in the average; ``hotspot``: 20 % of packets to tile (1, 1),
  whose ejection port then bounds every tile to 1 / (16 * 0.2 + 0.8) = 0.25.
  ``noc.saturation.uniform.4x4.depth<D>``: the uniform figure with other FIFO depths.
* ``noc.latency.<pattern>.load<L>``: mean latency in cycles (creation to head ejection, source
  queueing included) at offered load L flits/tile/cycle; the same sweep is plotted into
  ``build/noc_latency.png``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rtl.noc.mesh import Mesh
from rtl.noc.traffic import TrafficMesh
from scoville.flow import BUILD_ROOT, Design, run_cocotb

SEED = 1
LOADS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
MESH = {"width": 4, "height": 4, "flit_width": 64, "depth": 8}
OTHER_DEPTHS = (4, 16)


def zero_load() -> list[dict]:
    design = Design("mesh_4x4_f64_d4", Mesh, MESH | {"depth": 4})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "points.json"
        run_cocotb(design, "testbench.test_noc", testcase="bench_zero_load", seed=SEED, test_name="bench",
                   extra_env={"SCOVILLE_BENCH_OUT": str(out), "SCOVILLE_SEED": str(SEED)})
        return json.loads(out.read_text())


def load_sweep(loads=LOADS, window: int = 10000, depth: int = MESH["depth"], patterns="") -> list[dict]:
    design = Design(f"traffic_mesh_4x4_f64_d{depth}", TrafficMesh, MESH | {"depth": depth})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "points.json"
        run_cocotb(design, "testbench.test_noc_traffic", testcase="bench", seed=SEED, test_name="bench",
                   extra_env={"SCOVILLE_BENCH_OUT": str(out), "SCOVILLE_SEED": str(SEED),
                              "SCOVILLE_NOC_LOADS": ",".join(str(v) for v in loads),
                              "SCOVILLE_NOC_WINDOW": str(window), "SCOVILLE_NOC_PATTERNS": patterns})
        return json.loads(out.read_text())


def slope(points: list[dict]) -> tuple[float, float]:
    """Least-squares line latency = intercept + per_hop * hops."""
    n = len(points)
    mean_h = sum(p["hops"] for p in points) / n
    mean_l = sum(p["latency"] for p in points) / n
    cov = sum((p["hops"] - mean_h) * (p["latency"] - mean_l) for p in points)
    var = sum((p["hops"] - mean_h) ** 2 for p in points)
    per_hop = cov / var
    return per_hop, mean_l - per_hop * mean_h


def plot(sweep: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for pattern in sorted({p["pattern"] for p in sweep}):
        points = [p for p in sweep if p["pattern"] == pattern]
        ax.plot([p["accepted"] for p in points], [p["latency"] for p in points], "o-", label=pattern)
    ax.set_xlabel("accepted load (flits / tile / cycle)")
    ax.set_ylabel("mean latency (cycles, source queue included)")
    ax.set_title("4x4 mesh, XY wormhole, 64-bit flits, packets of 1-8 flits")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figures() -> dict[str, float]:
    per_hop, intercept = slope(zero_load())
    result = {"noc.zero_load_latency_per_hop": round(per_hop, 3),
              "noc.zero_load_latency_intercept": round(intercept, 3)}
    sweep = load_sweep()
    for point in sweep:
        if point["offered"] == max(LOADS):
            result[f"noc.saturation.{point['pattern']}.4x4"] = round(point["accepted"], 4)
    for point in sweep:
        result[f"noc.latency.{point['pattern']}.load{point['offered']:g}"] = round(point["latency"], 2)
    plot(sweep, BUILD_ROOT / "noc_latency.png")
    for depth in OTHER_DEPTHS:
        (point,) = load_sweep((1.0,), depth=depth, patterns="uniform")
        result[f"noc.saturation.uniform.4x4.depth{depth}"] = round(point["accepted"], 4)
    return result


if __name__ == "__main__":
    for key, value in figures().items():
        print(f"{key}: {value}")
