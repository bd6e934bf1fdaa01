"""Masked-LM validation loss and perplexity on held-out token shards, per token and per base.

The loss per masked token depends on the tokenizer (a BPE token holds several bases, a character
token one), so it is also reported in nats per base, comparable across tokenizers and with the
Markov baselines of :mod:`dnalm.train.markov`: the nats summed over the masked tokens divided by
the bases those tokens stand for.

Bases per token. A token stands for the bases it adds to its chunk beyond the previous token
(``token_ends - max(token_starts, previous token_ends)``). For tokenizers that tile the sequence
(single nucleotides, BPE, non-overlapping NT k-mers) that is its whole span
``token_ends - token_starts``. Overlapping k-mers (DNABERT) add one new base each (the first of a
chunk ``k``); counting all ``k`` bases of every masked k-mer would divide the same hidden base by
up to ``k`` tokens that all contain it and flatter the model ``k``-fold. With DNABERT's span
masking a run of ``k`` masked k-mers hides one base that no visible neighbour shows, and each of
those ``k`` tokens costs about the entropy of that base, so one base per token is the honest
rate (an approximation: the marginal token losses are not a joint likelihood).

The bases per token id are averaged over the tokens the validation stream reads (the first rows
of the shards, in the stream's fixed order); for every tokenizer above the span is a function of
the token id, so the result is exact up to a chunk's first k-mer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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
    budget = config.val_max_batches * stream.config.batch_size * config.row_length
    per_token = bases_per_token(shards, tok.vocab_size, max_tokens=budget * env.world_size)
    total, count, bases = 0.0, 0, 0.0
    try:
        with preserved_rng(env.device):
            for index, batch in enumerate(stream):
                if index >= config.val_max_batches:
                    break
                ids, labels = masker(batch["input_ids"], batch["attention_mask"])
                targets = labels[labels != IGNORE_INDEX]
                n_targets = int(targets.numel())
                if per_token is not None:
                    bases += float(per_token[targets.numpy()].sum())
                with autocast():
                    loss = forward_loss(model, ids, batch["attention_mask"], labels, env.device)
                total += float(loss) * n_targets
                count += n_targets
    finally:
        restore_block_sparse(model)
        model.train(was_training)
    total, count, bases = distributed.all_reduce_sum([total, float(count), bases], env)
    if count == 0:
        raise ConfigError("the validation shards produced no tokens to evaluate")
    loss = total / count
    result = {"val_loss": loss, "val_perplexity": math.exp(min(loss, 700.0)), "val_tokens": count}
    if per_token is not None and bases > 0:
        result.update(val_loss_per_base=total / bases, val_bases=bases)
    return result


def bases_per_token(
    shards: Sequence[Path], vocab_size: int, *, max_tokens: int | None = None
) -> np.ndarray | None:
    """Mean number of new bases each token id stands for (see the module docstring).

    Reads ``input_ids``, ``token_starts`` and ``token_ends`` of the shards' row groups in order
    until ``max_tokens`` tokens are seen (the validation stream reads the shards in this order,
    so these are the tokens it evaluates). Ids never seen get the mean over all tokens. None when
    the shards carry no offsets (then no per-base loss is reported).
    """
    columns = ["input_ids", "token_starts", "token_ends"]
    weights = np.zeros(vocab_size, dtype=np.float64)
    counts = np.zeros(vocab_size, dtype=np.int64)
    seen = 0
    for shard in shards:
        parquet = pq.ParquetFile(shard)
        if not set(columns) <= set(parquet.schema_arrow.names):
            return None
        for group in range(parquet.metadata.num_row_groups):
            if max_tokens is not None and seen >= max_tokens:
                break
            table = parquet.read_row_group(group, columns=columns)
            ids, starts, ends, first = _flat_tokens(table)
            previous_end = np.where(first, starts, np.roll(ends, 1))
            new = np.clip(ends - np.maximum(starts, previous_end), 0, None)
            ids = np.clip(ids, 0, vocab_size - 1)
            weights += np.bincount(ids, weights=new, minlength=vocab_size)
            counts += np.bincount(ids, minlength=vocab_size)
            seen += len(ids)
    if not counts.sum():
        return None
    mean = weights.sum() / counts.sum()
    return np.where(counts > 0, weights / np.maximum(counts, 1), mean)


def _flat_tokens(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat ids, starts, ends (int64) and a mask of each row's first token."""
    arrays = [table.column(name).combine_chunks() for name in table.column_names]
    offsets = arrays[0].offsets.to_numpy()
    flat = [np.asarray(a.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)
            for a in arrays]
    first = np.zeros(len(flat[0]), dtype=bool)
    lengths = np.diff(offsets)
    first[offsets[:-1][lengths > 0] - offsets[0]] = True
    return flat[0], flat[1], flat[2], first


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
