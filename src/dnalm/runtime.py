"""Torch runtime helpers every model stage shares: device, mixed precision, seeding, sizes.

One owner each, so that pretraining, fine-tuning, scoring, tracks and coding cannot disagree:

* :func:`pick_device` — CUDA when the job was given a GPU (or, with ``gpus=None``, when one is
  visible), else the CPU, with one warning when a GPU was asked for and none is there;
* :func:`autocast` — the mixed-precision policy: bf16 autocast on CUDA devices that support it
  (``auto``), forced bf16 (an error on a GPU without bf16; on the CPU only when forced), or
  float32; weights always stay float32 (autocast never stores low-precision master weights);
* :func:`seed_everything` — Python, NumPy and torch (every device) generators from one seed;
* :func:`count_parameters` — distinct parameters (tied weights once), optionally trainable only;
* :func:`position_limit` — the longest input a model config's positions allow.
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Any

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")


def pick_device(gpus: int | None = None) -> Any:
    """CUDA when asked for (``gpus > 0``) or, with ``gpus=None``, when present; else the CPU."""
    import torch

    available = torch.cuda.is_available()
    if gpus is None:
        return torch.device("cuda" if available else "cpu")
    if gpus > 0 and not available:
        log.warning("%d GPU(s) requested but CUDA is not available: running on the CPU", gpus)
    return torch.device("cuda" if gpus > 0 and available else "cpu")


def bf16_supported(device: Any) -> bool:
    """Whether ``device`` computes in bf16 natively (CUDA compute capability 8.0 and newer)."""
    import torch

    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def autocast(device: Any, precision: str = "auto") -> contextlib.AbstractContextManager:
    """A fresh autocast context for ``device`` under ``precision`` (``auto``, ``bf16``, ``fp32``).

    ``auto``: bf16 on CUDA devices that support it, float32 elsewhere (CPU bf16 is slower than
    float32 on most CPUs). ``bf16``: bf16 on CUDA (an error where unsupported) and on the CPU.
    """
    import torch

    from dnalm.errors import ConfigError

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda":
        if bf16_supported(device):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if precision == "bf16":
            raise ConfigError(f"precision bf16 requested but {device} does not support it")
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a rerun draws the same numbers."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def count_parameters(model: Any, *, trainable: bool = False) -> int:
    """Number of distinct parameters (shared tensors counted once), optionally trainable only."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def position_limit(config: Any) -> int | None:
    """Longest input (tokens, specials included) a model config accepts; None when unbounded.

    Learned position tables bound the input (ESM numbers positions from ``pad_token_id + 1``
    and has that many fewer usable rows); a native config states its own limit through a
    ``position_limit`` attribute; ALiBi (DNABERT-2) has none.
    """
    own = getattr(config, "position_limit", None)
    if own is not None and not callable(own):
        return int(own)
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return None
    limit = int(limit)
    if getattr(config, "model_type", "") == "esm" and getattr(
            config, "position_embedding_type", "absolute") == "absolute":
        limit -= int(getattr(config, "pad_token_id", 0) or 0) + 1
    return limit
