"""Masked-LM validation loss and perplexity on held-out token shards."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from dnalm.errors import ConfigError
from dnalm.models.directory import load_masked_lm, read_model_meta
from dnalm.models.presets import TokenizerInfo, load_tokenizer_info
from dnalm.runtime import pick_device
from dnalm.train import distributed
from dnalm.train.checkpoint import preserved_rng
from dnalm.train.collator import IGNORE_INDEX
from dnalm.train.components import (
    autocast_context,
    derived_seed,
    forward_loss,
    make_masker,
    restore_block_sparse,
    stream_config,
)
from dnalm.train.config import PretrainConfig
from dnalm.train.data import TokenStream, list_shards
from dnalm.train.distributed import DistEnv


@torch.no_grad()
def evaluate(
    model: PreTrainedModel,
    shards: Sequence[Path],
    config: PretrainConfig,
    tok: TokenizerInfo,
    env: DistEnv,
    autocast: Callable[[], Any] = contextlib.nullcontext,
) -> dict[str, float]:
    """Masked-LM loss and perplexity on held-out shards (at most ``val_max_batches`` batches).

    The stream and the masks are the same at every call (fixed order, masking seeded from the
    run's seed), so validation losses of different segments are directly comparable, and no
    training RNG is consumed.
    """
    was_training = model.training
    model.eval()
    stream = TokenStream(shards, stream_config(config, tok, env, training=False))
    masker = make_masker(config, tok, seed=derived_seed(config.seed, env.rank, 2))
    total, count = 0.0, 0
    try:
        with preserved_rng(env.device):
            for index, batch in enumerate(stream):
                if index >= config.val_max_batches:
                    break
                ids, labels = masker(batch["input_ids"], batch["attention_mask"])
                n_targets = int((labels != IGNORE_INDEX).sum())
                with autocast():
                    loss = forward_loss(model, ids, batch["attention_mask"], labels, env.device)
                total += float(loss) * n_targets
                count += n_targets
    finally:
        restore_block_sparse(model)
        model.train(was_training)
    total, count = distributed.all_reduce_sum([total, float(count)], env)
    if count == 0:
        raise ConfigError("the validation shards produced no tokens to evaluate")
    loss = total / count
    return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 700.0)), "val_tokens": count}


def evaluate_model_dir(
    model_dir: str | Path,
    token_dirs: Sequence[str | Path],
    *,
    batch_size: int = 16,
    max_batches: int = 100,
    seed: int = 42,
    gpus: int = 0,
) -> dict[str, float]:
    """Masked-LM loss/perplexity of a saved dnalm model on token shards (e.g. the test split).

    The model directory carries its tokenizer and ``dnalm_model.json`` (preset, length), so only
    the shards are needed. Same masking and packing as during training.
    """
    meta = read_model_meta(model_dir)
    if not meta.get("preset"):
        raise ConfigError("not a dnalm model directory (no dnalm_model.json)", where=str(model_dir))
    config = PretrainConfig.from_dict({
        "preset": meta["preset"], "size": meta.get("size", "tiny"),
        "max_length": meta["max_length"], "batch_size": batch_size,
        "val_max_batches": max_batches, "seed": seed, "rmt": meta.get("rmt") or None,
    }, where=str(model_dir))
    tok = load_tokenizer_info(model_dir)
    device = pick_device(gpus)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    model = load_masked_lm(model_dir).to(device)
    shards = list_shards(token_dirs, what="evaluation token")
    return evaluate(model, shards, config, tok, env, autocast_context(config, device))
