"""Building blocks of the training loop: optimizer, schedule, masking, data and precision.

Kept apart from :mod:`dnalm.train.pretrain` so that evaluation, benchmarks and tests assemble
exactly the pieces the loop uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dnalm.models.presets import TokenizerInfo
from dnalm.runtime import autocast
from dnalm.train.collator import MaskingConfig, MlmMasker
from dnalm.train.config import PretrainConfig
from dnalm.train.data import StreamConfig
from dnalm.train.distributed import DistEnv


def make_optimizer(model: torch.nn.Module, config: PretrainConfig) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and normalisation weights (tensors of rank < 2).

    The fused kernel is used on CPU and CUDA: PyTorch's default on CPU is a per-tensor Python
    loop, which costs more than the forward pass of a small model.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    device = next(model.parameters()).device
    return torch.optim.AdamW(
        groups,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_epsilon,
        fused=device.type in ("cpu", "cuda"),
    )


def lr_factor(step: int, config: PretrainConfig) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps: linear warmup, then the schedule.

    A pure function of the step and ``total_steps`` (not stored in the scheduler state), so every
    segment computes the same schedule and an extended run follows its new length.
    """
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    remaining = config.total_steps - step
    return max(0.0, remaining / max(1, config.total_steps - config.warmup_steps))


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: PretrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    # A closure (not a callable object) so LambdaLR.state_dict() does not freeze total_steps.
    def factor(step: int) -> float:
        return lr_factor(step, config)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_masker(
    config: PretrainConfig, tok: TokenizerInfo, *, seed: int
) -> MlmMasker:
    """Token masking, or DNABERT span masking of ``k`` tokens for overlapping k-mers."""
    span_masking = config.span_masking
    if span_masking is None:
        span_masking = config.preset_spec.span_masking
    span = int(tok.k) if span_masking and tok.k else 1
    masking = MaskingConfig(
        mlm_probability=config.mlm_probability,
        mask_replace_prob=config.mask_replace_prob,
        random_replace_prob=config.random_replace_prob,
        span=span,
    )
    return MlmMasker(
        masking,
        mask_id=tok.mask_id,
        special_ids=tok.special_ids,
        content_ids=tok.content_ids,
        seed=seed,
    )


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers, so ranks and purposes get independent random streams."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


def stream_config(
    config: PretrainConfig,
    tok: TokenizerInfo,
    env: DistEnv,
    *,
    training: bool,
) -> StreamConfig:
    """Training streams repeat and shuffle; validation streams do one fixed-order pass."""
    batch = config.batch_size if training else (config.val_batch_size or config.batch_size)
    return StreamConfig(
        max_length=config.row_length,
        batch_size=batch,
        cls_id=tok.cls_id,
        sep_id=tok.sep_id,
        pad_id=tok.pad_id,
        vocab_size=tok.vocab_size,
        packing=config.packing,
        long_chunks=config.long_chunks,
        shuffle=training,
        shuffle_window=max(1, config.shuffle_window),
        repeat=training,
        # BigBird falls back to full attention on short batches (and stays there): keep them long.
        pad_to_max_length=config.preset_spec.block_sparse,
        seed=config.seed,
        rank=env.rank,
        world_size=env.world_size,
    )


def autocast_context(config: PretrainConfig, device: torch.device) -> Callable[[], Any]:
    """A factory of the run's autocast context (:func:`dnalm.runtime.autocast` under the run's
    ``precision``), checked once here so a GPU without bf16 fails before training starts."""
    autocast(device, config.precision)
    return functools.partial(autocast, device, config.precision)


def restore_block_sparse(model: torch.nn.Module) -> None:
    """Undo BigBird's sticky fallback to full attention after a short input (see presets)."""
    model = getattr(model, "mlm", model)  # the masked LM inside an RMTForMaskedLM
    base = getattr(model, "bert", None)
    wanted = getattr(getattr(model, "config", None), "attention_type", None)
    if base is not None and wanted and getattr(base, "attention_type", wanted) != wanted:
        base.set_attention_type(wanted)


def forward_loss(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """Mean masked-LM loss of one micro-batch.

    Packed batches have no padding; the attention mask is then dropped so that sdpa can use its
    fastest (mask-free) kernels.
    """
    mask = None if bool(attention_mask.all()) else attention_mask.to(device, non_blocking=True)
    out = model(
        input_ids=input_ids.to(device, non_blocking=True),
        attention_mask=mask,
        labels=labels.to(device, non_blocking=True),
    )
    return out.loss
