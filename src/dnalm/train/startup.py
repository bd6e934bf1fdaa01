"""Start-up work that saves hours: unused parameters and a micro-batch that would not fit.

Everything here runs once, before the first optimizer step, with weights and random generators
left exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil
import torch
from transformers import PreTrainedModel

from dnalm.errors import ConfigError
from dnalm.models.presets import TokenizerInfo
from dnalm.models.rmt import encoder_config
from dnalm.runtime import count_parameters, position_limit
from dnalm.train.checkpoint import preserved_rng
from dnalm.train.collator import IGNORE_INDEX
from dnalm.train.components import forward_loss, restore_block_sparse
from dnalm.train.config import PretrainConfig
from dnalm.train.distributed import DistEnv


def freeze_unused_parameters(
    model: PreTrainedModel, tok: TokenizerInfo, device: torch.device, length: int
) -> list[str]:
    """Stop training parameters the masked-LM loss never reaches, and return their names.

    Some maintained classes carry heads the MLM objective does not use (ESM's contact-prediction
    head). DistributedDataParallel refuses such parameters unless ``find_unused_parameters`` is
    set, which costs an extra graph traversal every step; freezing them is free. Found with one
    forward/backward of a single sequence (RNGs and weights untouched).
    """
    ids = torch.full((1, length), tok.content_ids[0], dtype=torch.long)
    ids[0, 0], ids[0, -1] = tok.cls_id, tok.sep_id
    labels = ids.clone()
    labels[0, 0] = labels[0, -1] = IGNORE_INDEX
    with preserved_rng(device):
        forward_loss(model, ids, torch.ones_like(ids), labels, device).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    restore_block_sparse(model)
    for name, param in model.named_parameters():
        if name in unused:
            param.requires_grad_(False)
    return unused


def estimate_training_bytes(model: PreTrainedModel, batch_size: int, seq_len: int) -> int:
    """Rough peak memory of one fp32 training step: weights, grads, AdamW moments, activations.

    Activations follow Korthikanti et al. (2022), ``s b h (34 + 5 a s / h)`` bytes per layer in
    16-bit, doubled for fp32; only used to refuse batches that are grossly too large on CPU,
    where running out of memory kills the process instead of raising.
    """
    cfg = encoder_config(model)
    hidden, layers, heads = cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads
    context = min(seq_len, position_limit(cfg) or seq_len)  # RMT: one segment at a time
    if getattr(cfg, "attention_type", None) == "block_sparse":
        context = min(seq_len, (5 + 2 * cfg.num_random_blocks) * cfg.block_size)
    per_layer = seq_len * batch_size * hidden * (34 + 5 * heads * context / hidden)
    activations = 2 * layers * per_layer
    logits = 3 * 4 * batch_size * seq_len * cfg.vocab_size
    return int(16 * count_parameters(model) + activations + logits)


def probe_memory(
    model: PreTrainedModel,
    config: PretrainConfig,
    tok: TokenizerInfo,
    env: DistEnv,
    autocast: Callable[[], Any],
) -> None:
    """Fail at start-up, not hours later, when a full-length micro-batch does not fit.

    On CPU the estimate is compared with available memory; on CUDA one real forward/backward of a
    ``batch_size x max_length`` batch is run (weights and RNGs untouched) and its peak, plus the
    AdamW moments not yet allocated, is compared with the device's memory.
    """
    length = config.row_length
    hint = "lower batch_size (raise grad_accum to keep the effective batch) or max_length"
    if env.device.type == "cpu":
        need = estimate_training_bytes(model, config.batch_size, length)
        have = psutil.virtual_memory().available
        if need > have:
            raise ConfigError(
                f"a micro-batch of {config.batch_size} x {length} tokens needs about "
                f"{need / 2**30:.1f} GiB but {have / 2**30:.1f} GiB is available; {hint}"
            )
        return
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    ids = torch.full((config.batch_size, length), tok.content_ids[0], dtype=torch.long)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, 1::7] = tok.content_ids[0]
    torch.cuda.reset_peak_memory_stats(env.device)
    try:
        with preserved_rng(env.device), autocast():
            forward_loss(model, ids, torch.ones_like(ids), labels, env.device).backward()
    except torch.cuda.OutOfMemoryError:
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        raise ConfigError(
            f"a micro-batch of {config.batch_size} x {length} tokens does not fit in "
            f"{env.device} memory; {hint}"
        ) from None
    model.zero_grad(set_to_none=True)
    restore_block_sparse(model)
    peak = torch.cuda.max_memory_allocated(env.device)
    total = torch.cuda.get_device_properties(env.device).total_memory
    extra = 2 * param_bytes + (param_bytes if env.distributed else 0)
    torch.cuda.empty_cache()
    if peak + extra > 0.95 * total:
        raise ConfigError(
            f"a training step needs about {(peak + extra) / 2**30:.1f} GiB of the "
            f"{total / 2**30:.1f} GiB on {env.device}; {hint}"
        )
