"""Activation memory of a training step, measured deterministically (benchmarks and tests)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def saved_activation_bytes(fn: Any, *args: Any, model: nn.Module | None = None,
                           **kwargs: Any) -> tuple[Any, int]:
    """Run ``fn`` and count the bytes autograd keeps for backward (distinct storages).

    A deterministic measure of training memory that does not depend on the allocator or on
    other processes: what grows with the input in a training step is exactly these saved
    activations (attention probabilities: quadratic in the segment length; hidden states:
    linear). Weights that layers save for backward are not activations; pass ``model`` to leave
    its parameters out of the count.
    """
    seen: set[int] = set()
    if model is not None:
        seen |= {p.untyped_storage().data_ptr() for p in model.parameters()}
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args, **kwargs)
    return out, total
