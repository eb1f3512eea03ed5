"""Hugging Face transformers reference outputs for a checkpoint directory.

The float backend must match transformers to float32 rounding. This script is the transformers
side of that comparison, kept free of project imports so that it runs in any Python that has
``torch``, ``transformers`` and ``numpy`` (the test suite calls it in a subprocess when the
project's own environment has no torch)::

    python scripts/hf_reference.py CHECKPOINT_DIR OUT.npz --ids 1,2,3 --ids 5,6 --generate 4

For every ``--ids`` sequence ``i`` the npz holds:

- ``hidden_i``: float32 ``[seq, hidden]``, the final hidden states (Llama: after the final
  RMSNorm; BERT: ``last_hidden_state``);
- ``layers_i``: float32 ``[layers + 1, seq, hidden]``, transformers' ``hidden_states`` (for
  locating a divergence);
- ``logits_i``: float32 ``[seq, vocab]`` (Llama only);
- ``pooled_i``: float32 ``[hidden]``, the mean of ``hidden_i`` over tokens (BERT only);
- ``generated_i``: int64 ``[n]``, ``n`` greedy tokens after the sequence (Llama, ``--generate n``;
  recomputed from scratch each step, never stopping at eos).

The model runs in float32 with eager attention, in evaluation mode.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def _load(path: Path):
    import torch
    from transformers import AutoConfig, BertModel, LlamaForCausalLM

    config = AutoConfig.from_pretrained(path)
    common = dict(dtype=torch.float32, attn_implementation="eager")
    if config.model_type == "llama":
        model = LlamaForCausalLM.from_pretrained(path, **common)
    elif config.model_type == "bert":
        # BertModel.from_pretrained also takes task-head checkpoints (it strips the `bert.` prefix).
        model = BertModel.from_pretrained(path, add_pooling_layer=False, **common)
    else:
        raise SystemExit(f"{path}: model_type {config.model_type!r} has no reference here (llama, bert)")
    return model.eval(), config.model_type


def reference(path: Path | str, sequences: list[list[int]], generate: int = 0) -> dict[str, np.ndarray]:
    """Run transformers on each token sequence and collect its outputs.

    Parameters
    ----------
    path : Path or str
        Hugging Face checkpoint directory.
    sequences : list of list of int
        Token id sequences, run one at a time (batch of one, no padding).
    generate : int
        Greedy tokens to generate after each sequence (Llama only).

    Returns
    -------
    dict of str to numpy.ndarray
        The arrays described in the module docstring.
    """
    import torch

    model, model_type = _load(Path(path))
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for i, ids in enumerate(sequences):
            input_ids = torch.tensor([ids], dtype=torch.long)
            if model_type == "llama":
                base = model.model(input_ids=input_ids, output_hidden_states=True, use_cache=False)
                hidden = base.last_hidden_state
                out[f"logits_{i}"] = model.lm_head(hidden)[0].numpy().astype(np.float32)
            else:
                base = model(input_ids=input_ids, output_hidden_states=True)
                hidden = base.last_hidden_state
                out[f"pooled_{i}"] = hidden[0].mean(dim=0).numpy().astype(np.float32)
            out[f"hidden_{i}"] = hidden[0].numpy().astype(np.float32)
            out[f"layers_{i}"] = torch.stack([h[0] for h in base.hidden_states]).numpy().astype(np.float32)
            if generate and model_type == "llama":
                tokens = list(ids)
                for _ in range(generate):
                    logits = model(input_ids=torch.tensor([tokens], dtype=torch.long), use_cache=False).logits
                    tokens.append(int(torch.argmax(logits[0, -1])))
                out[f"generated_{i}"] = np.asarray(tokens[len(ids) :], dtype=np.int64)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="Hugging Face checkpoint directory")
    parser.add_argument("output", type=Path, help="npz file to write")
    parser.add_argument(
        "--ids", action="append", required=True, help="comma-separated token ids; repeat for more sequences"
    )
    parser.add_argument("--generate", type=int, default=0, help="greedy tokens to generate (llama)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local directories only, never the network
    sequences = [[int(t) for t in text.split(",") if t.strip()] for text in args.ids]
    np.savez(args.output, **reference(args.checkpoint, sequences, args.generate))


if __name__ == "__main__":
    main()
