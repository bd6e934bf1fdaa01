"""Segment checkpoints: everything besides the weights that a resumed run needs.

Layout of ``results/models/{model}/segments/{n}/``::

    config.json, model.safetensors        the model (save_pretrained), loadable on its own
    tokenizer.json, tokenizer_config.json  the tokenizer (save_pretrained)
    dnalm_tokenizer.json, dnalm_model.json dnalm metadata (tokenizer kind, preset, length)
    trainer_state.pt                       optimizer, scheduler, step, RNGs, data cursors,
                                           masking generators, resolved config
    metrics.parquet                        this segment's training log and validation result
    segment.json                           steps [start, end), tokens, throughput, validation

``trainer_state.pt`` contains only tensors and plain Python values, so it is read with
``torch.load(weights_only=True)`` (no arbitrary unpickling).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnalm.errors import ConfigError

TRAINER_STATE = "trainer_state.pt"
STATE_FORMAT = 1


def capture_rng(device: torch.device) -> dict[str, Any]:
    """Python, NumPy (legacy global) and torch (CPU and, if used, CUDA) RNG states.

    The NumPy global state matters even though dnalm uses its own generators: BigBird's
    block-sparse attention reseeds ``np.random`` in every training forward pass.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Run a block (a memory probe, an evaluation) without disturbing any training RNG."""
    state = capture_rng(device)
    try:
        yield
    finally:
        restore_rng(state, device)


def save_trainer_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus a format tag) with ``torch.save``."""
    torch.save({"format": STATE_FORMAT, **state}, path)


def load_trainer_state(segment_dir: str | Path) -> dict[str, Any]:
    """Read a segment's ``trainer_state.pt``; ConfigError if missing or from another format."""
    path = Path(segment_dir) / TRAINER_STATE
    if not path.is_file():
        raise ConfigError(f"no {TRAINER_STATE}: not a finished segment", where=str(segment_dir))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise ConfigError(
            f"{TRAINER_STATE} has format {state.get('format')}, expected {STATE_FORMAT}",
            where=str(segment_dir),
        )
    return state
