"""Device choice and DistributedDataParallel plumbing.

Snakemake does not set ``CUDA_VISIBLE_DEVICES`` on a local run, so the number of GPUs the rule
was given is passed in explicitly and devices are chosen from it: one process per GPU, process
``LOCAL_RANK`` using ``cuda:LOCAL_RANK``. Several processes are started by ``torchrun``, which sets
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without it there is one process. CPU-only DDP (gloo)
works too, which is how the multi-process path is tested on machines without GPUs.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dnalm.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process runs and which share of the work it does."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True inside a process started by ``torchrun`` (or any launcher that sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def setup(gpus: int) -> DistEnv:
    """Pick the device for this process and join the process group when there are several.

    ``gpus`` is what the rule was given. 0 means CPU; a positive value without CUDA falls back to
    CPU with a warning (so a GPU profile still runs on a laptop). More GPUs than the machine has,
    or ``gpus > 1`` outside ``torchrun``, raise ConfigError: silently using fewer would make the
    effective batch size differ from the configured one.
    """
    if gpus < 0:
        raise ConfigError(f"gpus must be >= 0, got {gpus}")
    world = int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1
    rank = int(os.environ.get("RANK", "0")) if world > 1 else 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else 0
    use_cuda = gpus > 0 and torch.cuda.is_available()
    if gpus > 0 and not use_cuda:
        log.warning("%d GPU(s) requested but CUDA is not available: training on CPU", gpus)
    if use_cuda:
        if gpus > torch.cuda.device_count():
            raise ConfigError(
                f"{gpus} GPUs requested but only {torch.cuda.device_count()} are visible"
            )
        if gpus > 1 and world == 1:
            raise ConfigError(
                f"{gpus} GPUs need one process each: launch with `dnalm pretrain-segment "
                f"--gpus {gpus} ...` (which starts torchrun) or `torchrun --nproc_per_node={gpus}`"
            )
        if world > 1 and local_rank >= gpus:
            raise ConfigError(f"local rank {local_rank} has no GPU among the {gpus} given")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=device)


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    """Element-wise sum of ``values`` over all processes (identity with one process)."""
    if not env.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every process's ``obj`` (tensors and plain Python values), in rank order.

    Objects travel as ``torch.save`` bytes: ``all_gather_object`` on objects that contain
    tensors fails to unpickle their storages in torch 2.13 (``UntypedStorage has no dtype``).
    """
    if not env.distributed:
        return [obj]
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, buffer.getvalue())
    return [torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True) for raw in out]


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_error(message: str | None, env: DistEnv) -> str | None:
    """Share an error raised on one rank (usually rank 0 writing files) with all ranks."""
    if not env.distributed:
        return message
    messages = gather_objects(message, env)
    return next((m for m in messages if m), None)


def cleanup(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
