"""The project's benchmark runner (``make bench``).

Every block that has figures adds a module to :data:`BENCH_MODULES`; each exposes
``figures() -> dict[str, float]`` with dotted names (``matrix.util.256x256x256.8x8``). This
prints one ``name: value`` line per figure and writes them all, as one flat JSON object, to
``build/bench.json``. ``python -m scripts.bench matrix`` runs only the modules whose name
contains ``matrix``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time

from scoville.flow import BUILD_ROOT

#: Modules with a ``figures()`` function, run in this order.
BENCH_MODULES = [
    "scripts.bench_matrix",
    "scripts.bench_dma",
    "scripts.bench_vector",
    "scripts.bench_noc",
    "scripts.bench_chip",
]


def run(selection: list[str] | None = None) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name in BENCH_MODULES:
        if selection and not any(word in name for word in selection):
            continue
        start = time.perf_counter()
        module = importlib.import_module(name)
        for key, value in module.figures().items():
            figures[key] = value
            print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}", flush=True)
        print(f"# {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return figures


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    figures = run(argv or None)
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    path = BUILD_ROOT / "bench.json"
    # Keep figures of modules not run this time (a partial run updates, it does not erase).
    previous = json.loads(path.read_text()) if path.exists() and argv else {}
    previous.update(figures)
    path.write_text(json.dumps(previous, indent=1, sort_keys=True) + "\n")
    print(f"# wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
