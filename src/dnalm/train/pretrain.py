"""Masked-language-model pretraining, cut into resumable jobs.

A run of ``total_steps`` optimizer steps is trained as a chain of Snakemake jobs of
``steps_per_job`` steps; job ``n`` runs steps ``[n * steps_per_job, min((n + 1) * steps_per_job,
total_steps))`` and writes its checkpoint to ``segments/n`` (weights, optimizer, scheduler, step,
every RNG, each process's data cursor and masking generator), starting from job ``n - 1``'s.
Because all randomness is either restored or derived from the seed, a run cut into jobs
reproduces the uncut run bit for bit on the same hardware and thread count. Raising
``total_steps`` later adds jobs after the finished ones; if the old last job was short
(``total_steps`` not a multiple of ``steps_per_job``), the next one starts where it ended. With
the ``linear`` schedule the decay then follows the new length from the next job on; use
``schedule: constant`` for runs that will be extended (an extended constant-schedule run equals a
run planned that long from the start).

Public API::

    run_segment(config, tokenizer_dir=..., train_dirs=[...], validation_dirs=[...], segment=n,
                previous_checkpoint=dir_or_None, out_dir=".../segments/n", threads=8, gpus=1)
    finalize(model_dir, [segment_dir, ...])
    evaluate_model_dir(model_dir, [test_token_dir, ...])

Devices: ``gpus=0`` trains on CPU, ``gpus=1`` on ``cuda:0``; ``gpus>1`` needs one process per GPU:
``dnalm pretrain-segment --gpus 4 ...`` (and the workflow's job) starts ``torchrun --standalone
--nproc_per_node=4`` (:mod:`dnalm.train.launch`; DistributedDataParallel, data sharded by rank,
only rank 0 writes). bf16 autocast is used on CUDA (``precision: auto``), float32 on CPU.

Multi-node on SLURM (one task per node, torchrun starts the per-GPU processes; ``--gpus`` is the
number of GPUs *per node*)::

    #!/bin/bash
    #SBATCH --nodes=4 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=64
    head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    srun torchrun --nnodes="$SLURM_NNODES" --nproc_per_node=8 \\
        --rdzv_id="$SLURM_JOB_ID" --rdzv_backend=c10d --rdzv_endpoint="$head:29500" \\
        -m dnalm pretrain-segment --config pretrain.yaml --tokenizer TOK \\
        --train T1 T2 --validation V1 --segment 3 --previous SEG2 --out SEG3 \\
        --threads 64 --gpus 8

The effective batch is ``batch_size * grad_accum * world_size`` sequences; resuming a segment
with a different world size is refused (the data cursors are per process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.utils import logging as hf_logging

from dnalm.errors import ConfigError, DnalmError
from dnalm.io import atomic_dir
from dnalm.logs import Progress
from dnalm.models.directory import load_masked_lm
from dnalm.models.presets import (
    TokenizerInfo,
    build_model,
    check_tokenizer,
    load_tokenizer_info,
    resolve_max_length,
)
from dnalm.models.rmt import RMTForMaskedLM, encoder_config
from dnalm.models.saving import save_model_dir
from dnalm.runtime import count_parameters, seed_everything
from dnalm.train import distributed
from dnalm.train.checkpoint import (
    TRAINER_STATE,
    capture_rng,
    load_trainer_state,
    restore_rng,
    save_trainer_state,
)
from dnalm.train.collator import IGNORE_INDEX, MlmMasker
from dnalm.train.components import (
    autocast_context,
    derived_seed,
    forward_loss,
    make_masker,
    make_optimizer,
    make_scheduler,
    stream_config,
)
from dnalm.train.config import PretrainConfig, incompatible_keys
from dnalm.train.data import TokenStream, list_shards
from dnalm.train.distributed import DistEnv
from dnalm.train.evaluation import evaluate, evaluate_model_dir
from dnalm.train.finalize import METRICS_FILE, SEGMENT_INFO, existing_segments, finalize
from dnalm.train.metrics import flops_per_token, peak_flops, write_metrics
from dnalm.train.startup import freeze_unused_parameters, probe_memory

# Re-exported: the public API of the training stage lives in this module.
__all__ = [
    "PretrainConfig",
    "evaluate",
    "evaluate_model_dir",
    "existing_segments",
    "finalize",
    "run_segment",
]

log = logging.getLogger(__name__)
#: progress of processes other than rank 0 (DDP) goes nowhere: one line per step is enough
_QUIET = logging.getLogger(f"{__name__}.other_ranks")
_QUIET.propagate = False
_QUIET.addHandler(logging.NullHandler())


# -- the segment --------------------------------------------------------------------------------
@dataclass
class _Progress:
    """Running counters between two log rows (the loss stays on the device until logged)."""

    loss_sum: torch.Tensor | float = 0.0
    targets: float = 0.0
    tokens: float = 0.0
    last_time: float = field(default_factory=time.perf_counter)


def _load_previous(
    previous: Path | None,
    segment: int,
    start: int,
    config: PretrainConfig,
    env: DistEnv,
) -> tuple[dict[str, Any] | None, int]:
    """The previous segment's trainer state, checked against this segment's config, and the
    step this segment starts from.

    Normally that is ``segment * steps_per_job``. When ``total_steps`` was raised after a run
    whose last job was shorter than ``steps_per_job`` (e.g. 100 steps in jobs of 30: segment 3
    ended at step 100), the next job starts where that one ended (step 100), so finished jobs are
    reused instead of redone.
    """
    if previous is None:
        if segment != 0:
            raise ConfigError(f"segment {segment} needs the previous segment's checkpoint")
        return None, start
    state = load_trainer_state(previous)
    if state["segment"] != segment - 1:
        raise ConfigError(
            f"the previous checkpoint is segment {state['segment']}, segment {segment} needs "
            f"segment {segment - 1}",
            where=str(previous),
        )
    ended_a_shorter_run = state["step"] == state["config"]["total_steps"]
    if state["step"] != start and not (ended_a_shorter_run and state["step"] < start):
        raise ConfigError(
            f"the previous checkpoint ends at step {state['step']} but segment {segment} starts "
            f"at step {start}; was steps_per_job changed?",
            where=str(previous),
        )
    changed = incompatible_keys(state["config"], config)
    if changed:
        raise ConfigError(
            f"the config differs from the checkpoint's in {', '.join(changed)}; only "
            "total_steps and logging/validation options may change between jobs",
            where=str(previous),
        )
    if state["world_size"] != env.world_size:
        raise ConfigError(
            f"the checkpoint was written by {state['world_size']} process(es) but this segment "
            f"runs {env.world_size}; resume with the same number of GPUs",
            where=str(previous),
        )
    return state, int(state["step"])


def _prepare_model(
    config: PretrainConfig, tokenizer_dir: Path, previous: Path | None, tok: TokenizerInfo
) -> PreTrainedModel:
    if previous is None:
        model = build_model(
            config.preset,
            config.size,
            tokenizer_dir,
            max_length=config.max_length,
            overrides=config.model_overrides,
            seed=config.seed,
            attn_implementation=config.attn_implementation,
        )
    else:
        model = load_masked_lm(previous, attn_implementation=config.attn_implementation)
    vocab = encoder_config(model).vocab_size
    if vocab < tok.vocab_size:
        raise ConfigError(
            f"the model's vocabulary ({vocab}) is smaller than the tokenizer's ({tok.vocab_size})"
        )
    rmt = config.rmt
    if rmt is not None and not isinstance(model, RMTForMaskedLM):
        model = RMTForMaskedLM.wrap(
            model, num_mem_tokens=rmt.num_mem_tokens, max_n_segments=rmt.max_n_segments,
            bptt_depth=rmt.bptt_depth, cls_token_id=tok.cls_id, sep_token_id=tok.sep_id,
            pad_token_id=tok.pad_id,
            attn_implementation=config.attn_implementation
            or config.preset_spec.attn_implementation,
            seed=derived_seed(config.seed, 7))
        log.info("recurrent memory: %d memory tokens, rows of %d segments x %d tokens (%d "
                 "content tokens per row)", rmt.num_mem_tokens, rmt.max_n_segments,
                 model.config.segment_size, model.config.max_content_tokens)
    return model


def _configure_determinism(deterministic: bool) -> None:
    """Deterministic kernels everywhere (cuBLAS needs its workspace fixed before first use)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)


def _configure_threads(threads: int) -> None:
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, int(threads) // max(1, local)))


@dataclass(frozen=True)
class _Wrapped:
    """The module the training step calls, and its DDP wrapper (for ``no_sync``) if any."""

    forward: torch.nn.Module
    ddp: torch.nn.parallel.DistributedDataParallel | None


def _wrap(model: PreTrainedModel, env: DistEnv, compile_model: bool) -> _Wrapped:
    """DDP when there are several processes, then ``torch.compile`` if asked.

    The plain ``model`` stays the one that is evaluated and saved (no ``module.``/``_orig_mod.``
    prefixes in the checkpoint).
    """
    ddp = None
    forward: torch.nn.Module = model
    if env.distributed:
        device_ids = [env.device.index] if env.device.type == "cuda" else None
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        forward = ddp
    if compile_model:
        forward = torch.compile(forward)
    return _Wrapped(forward=forward, ddp=ddp)


def _micro_batches(
    stream: TokenStream, masker: MlmMasker, count: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    out = []
    for _ in range(count):
        batch = stream.next_batch()
        if batch is None:  # a repeating stream never ends; guard against empty shards anyway
            raise ConfigError("the training stream ended unexpectedly")
        ids, labels = masker(batch["input_ids"], batch["attention_mask"])
        out.append((ids, batch["attention_mask"], labels))
    return out


def _train_step(
    train_model: _Wrapped,
    model: PreTrainedModel,
    micro: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: PretrainConfig,
    env: DistEnv,
    autocast: Callable[[], Any],
) -> tuple[torch.Tensor, float, float, torch.Tensor]:
    """One optimizer step over ``grad_accum`` micro-batches.

    Each micro-batch's mean loss is weighted by its share of the step's masked tokens (over all
    processes), so the gradient is that of the mean over every target of the step regardless of
    how targets fall into micro-batches; DDP's gradient averaging is undone by ``world_size``.
    Returns (loss sum, targets, non-pad tokens, grad norm) of this process; the loss sum and
    gradient norm stay device tensors so a GPU is not synchronised on every step.
    """
    counts = [float((labels != IGNORE_INDEX).sum()) for _, _, labels in micro]
    global_targets = distributed.all_reduce_sum([sum(counts)], env)[0]
    loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
    for index, (ids, mask, labels) in enumerate(micro):
        last = index == len(micro) - 1
        sync = contextlib.nullcontext()
        if train_model.ddp is not None and not last:
            sync = train_model.ddp.no_sync()  # all-reduce gradients once, after the last
        with sync:
            with autocast():
                loss = forward_loss(train_model.forward, ids, mask, labels, env.device)
            weight = counts[index] * env.world_size / max(global_targets, 1.0)
            (loss * weight).backward()
        loss_sum += loss.detach().double() * counts[index]
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    tokens = float(sum(int(mask.sum()) for _, mask, _ in micro))
    return loss_sum, sum(counts), tokens, grad_norm


def _log_row(
    step: int,
    segment: int,
    progress: _Progress,
    totals: dict[str, float],
    optimizer: torch.optim.Optimizer,
    grad_norm: torch.Tensor | float,
    env: DistEnv,
    flops_token: float,
) -> dict[str, Any]:
    """A metrics row for the steps since the previous row (global over processes).

    Raises DnalmError when the loss is no longer finite: continuing would only waste the
    remaining compute.
    """
    loss_sum, targets, tokens = distributed.all_reduce_sum(
        [float(progress.loss_sum), progress.targets, progress.tokens], env
    )
    if not math.isfinite(loss_sum):
        raise DnalmError(
            f"training loss became {loss_sum} by step {step}; lower the learning_rate or check "
            "the data"
        )
    now = time.perf_counter()
    seconds = max(now - progress.last_time, 1e-9)
    totals["tokens"] += tokens
    totals["seconds"] += seconds
    speed = tokens / seconds
    mfu = None
    if env.device.type == "cuda":
        peak = peak_flops(torch.cuda.get_device_name(env.device))
        if peak:
            mfu = flops_token * speed / (peak * env.world_size)
    progress.loss_sum = progress.targets = progress.tokens = 0.0
    progress.last_time = time.perf_counter()
    return {
        "segment": segment,
        "step": step,
        "loss": loss_sum / max(targets, 1.0),
        "learning_rate": optimizer.param_groups[0]["lr"],
        "grad_norm": float(grad_norm),
        "tokens_per_s": speed,
        "tokens": int(totals["tokens"]),
        "elapsed_s": totals["seconds"],
        "mfu": mfu,
    }


def _save_segment(
    out_dir: Path,
    model: PreTrainedModel,
    tokenizer_dir: Path,
    config: PretrainConfig,
    tok: TokenizerInfo,
    trainer_state: dict[str, Any],
    rows: list[dict[str, Any]],
    info: dict[str, Any],
) -> None:
    meta = {
        "preset": config.preset,
        "size": config.size,
        "max_length": config.max_length,
        "tokenizer_kind": tok.kind,
        "k": tok.k,
        "step": info["end_step"],
        "parameters": count_parameters(model),
    }
    if config.rmt is not None:
        meta["rmt"] = dataclasses.asdict(config.rmt)
    with atomic_dir(out_dir) as tmp:
        save_model_dir(model, tokenizer_dir, tmp, meta)
        save_trainer_state(tmp / TRAINER_STATE, trainer_state)
        write_metrics(rows, tmp / METRICS_FILE)
        (tmp / SEGMENT_INFO).write_text(json.dumps(info, indent=2) + "\n")


def run_segment(
    config: PretrainConfig,
    *,
    tokenizer_dir: str | Path,
    train_dirs: Sequence[str | Path],
    validation_dirs: Sequence[str | Path],
    segment: int,
    previous_checkpoint: str | Path | None,
    out_dir: str | Path,
    threads: int = 1,
    gpus: int = 0,
) -> dict[str, Any]:
    """Train segment ``segment`` and write its checkpoint directory ``out_dir`` atomically.

    ``train_dirs``/``validation_dirs`` are token-shard directories (one per genome).
    ``previous_checkpoint`` is segment ``segment - 1``'s directory (None for segment 0).
    ``threads`` and ``gpus`` are what the Snakemake rule was given. Returns a summary dict
    (steps, final training loss, validation loss/perplexity, throughput, device).
    Raises ConfigError for every problem detectable before training starts.
    """
    config.validate()
    env = distributed.setup(int(gpus))
    try:
        return _run_segment(
            config,
            tokenizer_dir=Path(tokenizer_dir),
            train_dirs=[Path(d) for d in train_dirs],
            validation_dirs=[Path(d) for d in validation_dirs],
            segment=int(segment),
            previous=Path(previous_checkpoint) if previous_checkpoint is not None else None,
            out_dir=Path(out_dir),
            threads=int(threads),
            env=env,
        )
    finally:
        distributed.cleanup(env)


@dataclass
class _Segment:
    """Everything one segment works with, assembled by :func:`_setup`."""

    config: PretrainConfig
    tok: TokenizerInfo
    env: DistEnv
    segment: int
    start: int
    end: int
    model: PreTrainedModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    masker: MlmMasker
    stream: TokenStream
    val_shards: list[Path]
    autocast: Callable[[], Any]
    state: dict[str, Any] | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)


def _setup(
    config: PretrainConfig,
    *,
    tokenizer_dir: Path,
    train_dirs: list[Path],
    validation_dirs: list[Path],
    segment: int,
    previous: Path | None,
    env: DistEnv,
) -> _Segment:
    """All start-up checks, then model, optimizer, data and masking, restored if resuming."""
    tok = load_tokenizer_info(tokenizer_dir)
    spec = config.preset_spec
    check_tokenizer(spec, tok)
    config = config.replace(max_length=resolve_max_length(spec, config.size, config.max_length))
    start, end = config.segment_range(segment)
    train_shards = list_shards(train_dirs, what="training token")
    val_shards = (
        list_shards(validation_dirs, what="validation token") if config.val_max_batches else []
    )
    state, start = _load_previous(previous, segment, start, config, env)

    model = _prepare_model(config, tokenizer_dir, previous, tok)
    seed_everything(derived_seed(config.seed, env.rank, 0))
    model.to(env.device)
    model.train()
    if hasattr(model, "sparse_prediction"):
        # ModernBERT: run the decoder only on masked positions (~7x less decoder work). This is an
        # attribute of the instance; the saved config keeps dense logits for downstream use.
        model.sparse_prediction = True
    unused = freeze_unused_parameters(model, tok, env.device, config.row_length)
    if unused:
        log.info("not trained (unused by the masked-LM loss): %s", ", ".join(unused))
    optimizer = make_optimizer(model, config)
    run = _Segment(
        config=config, tok=tok, env=env, segment=segment, start=start, end=end, model=model,
        optimizer=optimizer, scheduler=make_scheduler(optimizer, config),
        masker=make_masker(config, tok, seed=derived_seed(config.seed, env.rank, 1)),
        stream=TokenStream(train_shards, stream_config(config, tok, env, training=True)),
        val_shards=val_shards, autocast=autocast_context(config, env.device), state=state,
        totals={"tokens": float(state["tokens"]) if state else 0.0,
                "seconds": float(state["train_seconds"]) if state else 0.0},
    )
    if state is not None:
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.stream.load_state_dict(state["data"][env.rank])
        run.masker.load_state_dict(state["masking"][env.rank])
    if config.probe_memory:
        probe_memory(model, config, tok, env, run.autocast)
    return run


def _validate(run: _Segment) -> dict[str, float]:
    return evaluate(run.model, run.val_shards, run.config, run.tok, run.env, run.autocast)


def _train(run: _Segment) -> dict[str, Any]:
    """The optimizer steps of the segment; returns every process's RNG state at the end."""
    train_model = _wrap(run.model, run.env, run.config.compile)
    flops_token = flops_per_token(encoder_config(run.model), int(run.config.max_length or 0))
    if run.state is not None:  # last, so nothing above can shift the random streams
        restore_rng(run.state["rng"][run.env.rank], run.env.device)
    log.info("job %d: steps %d..%d on %s x%d", run.segment, run.start, run.end,
             run.env.device, run.env.world_size)
    progress = _Progress()
    grad_norm: torch.Tensor | float = float("nan")
    # steps on the terminal (tqdm) and in the job log every 10 %; metrics at every log_every
    bar = Progress(run.end - run.start, desc=f"job {run.segment} steps",
                   logger=log if run.env.rank == 0 else _QUIET,
                   unit="step")
    with bar:
        for step in range(run.start, run.end):
            micro = _micro_batches(run.stream, run.masker, run.config.grad_accum)
            loss_sum, targets, tokens, grad_norm = _train_step(
                train_model, run.model, micro, run.optimizer, run.scheduler, run.config,
                run.env, run.autocast,
            )
            progress.loss_sum = progress.loss_sum + loss_sum
            progress.targets += targets
            progress.tokens += tokens
            done = step + 1
            if done % run.config.log_every == 0 or done == run.end:
                row = _log_row(done, run.segment, progress, run.totals, run.optimizer,
                               grad_norm, run.env, flops_token)
                run.rows.append(row)
                if run.env.rank == 0:
                    log.info("step %d: loss %.4f, learning rate %.3g, %.0f tokens/s", done,
                             row["loss"], row["learning_rate"], row["tokens_per_s"])
            bar.update()
    return distributed.gather_objects(capture_rng(run.env.device), run.env)


def _trainer_state(run: _Segment, rng_states: list[Any]) -> dict[str, Any]:
    """What the next segment restores (cursors and generators of every process)."""
    return {
        "step": run.end,
        "segment": run.segment,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng_states,
        "data": distributed.gather_objects(run.stream.state_dict(), run.env),
        "masking": distributed.gather_objects(run.masker.state_dict(), run.env),
        "config": run.config.to_dict(),
        "world_size": run.env.world_size,
        "tokens": int(run.totals["tokens"]),
        "train_seconds": run.totals["seconds"],
    }


def _segment_info(run: _Segment, validation: Mapping[str, float]) -> dict[str, Any]:
    """The ``segment.json`` summary (also run_segment's return value)."""
    before = run.state or {"train_seconds": 0.0, "tokens": 0}
    seconds = run.totals["seconds"] - float(before["train_seconds"])
    tokens = int(run.totals["tokens"]) - int(before["tokens"])
    last = run.rows[-1] if run.rows else {}
    return {
        "segment": run.segment,
        "start_step": run.start,
        "end_step": run.end,
        "total_steps": run.config.total_steps,
        "loss": last.get("loss"),
        "tokens": tokens,
        "train_seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else None,
        **{k: validation[k] for k in ("val_loss", "val_perplexity", "val_loss_per_base")
           if k in validation},
        "device": str(run.env.device),
        "world_size": run.env.world_size,
    }


def _run_segment(
    config: PretrainConfig,
    *,
    tokenizer_dir: Path,
    train_dirs: list[Path],
    validation_dirs: list[Path],
    segment: int,
    previous: Path | None,
    out_dir: Path,
    threads: int,
    env: DistEnv,
) -> dict[str, Any]:
    _configure_threads(threads)
    _configure_determinism(config.deterministic)
    hf_logging.disable_progress_bar()
    run = _setup(config, tokenizer_dir=tokenizer_dir, train_dirs=train_dirs,
                 validation_dirs=validation_dirs, segment=segment, previous=previous, env=env)
    if run.state is None and run.val_shards and run.config.validate_at_start:
        run.rows.append({"segment": segment, "step": 0, "tokens": 0, "elapsed_s": 0.0,
                         **_val_fields(_validate(run))})
    rng_states = _train(run)
    validation = _validate(run) if run.val_shards else {}
    if validation:
        run.rows[-1].update(_val_fields(validation))
    trainer_state = _trainer_state(run, rng_states)
    info = _segment_info(run, validation)
    error = None
    if env.is_main:
        try:
            _save_segment(out_dir, run.model, tokenizer_dir, run.config, run.tok, trainer_state,
                          run.rows, info)
        except Exception as exc:  # shared with the other ranks so none waits forever
            error = f"saving {out_dir} failed: {exc}"
    error = distributed.broadcast_error(error, env)
    if error:
        raise DnalmError(error)
    return {**info, "out_dir": str(out_dir)}


def _val_fields(result: Mapping[str, float]) -> dict[str, float | None]:
    return {"val_loss": result["val_loss"], "val_perplexity": result["val_perplexity"],
            "val_loss_per_base": result.get("val_loss_per_base")}
