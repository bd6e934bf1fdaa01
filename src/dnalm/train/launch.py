"""Starting one pretraining job: in this process, or under torchrun with one process per GPU.

A job given ``gpus > 1`` needs one process per GPU. Outside ``torchrun`` (the Snakemake job on one
node, or ``dnalm pretrain-segment --gpus 4`` typed by hand) :func:`train_segment` starts
``torchrun --standalone --nproc_per_node=N -m dnalm pretrain-segment ...`` with the resolved
settings in a temporary file and waits for it; inside torchrun (each process of that command, or
of a multi-node ``srun torchrun ... -m dnalm pretrain-segment``) the job trains in the process.
Both the rule's script and the command line come through here, so they start jobs the same way.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dnalm.errors import DnalmError
from dnalm.train.config import PretrainConfig

log = logging.getLogger(__name__)


def train_segment(
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
    """Train job ``segment`` of the run ``config`` into ``out_dir`` (see
    :func:`dnalm.train.pretrain.run_segment`, whose summary this returns), under torchrun when
    :func:`needs_torchrun`."""
    common = dict(tokenizer_dir=tokenizer_dir, train_dirs=train_dirs,
                  validation_dirs=validation_dirs, segment=int(segment),
                  previous_checkpoint=previous_checkpoint, out_dir=out_dir, threads=int(threads),
                  gpus=int(gpus))
    if needs_torchrun(int(gpus)):
        summary = _under_torchrun(config, **common)
    else:
        from dnalm.train.pretrain import run_segment

        summary = run_segment(config, **common)
    log.info("job %d done: steps %d..%d, training loss %s, validation loss %s", int(segment),
             summary["start_step"], summary["end_step"], _number(summary.get("loss")),
             _number(summary.get("val_loss")))
    return summary


def needs_torchrun(gpus: int) -> bool:
    """True when ``gpus > 1`` GPUs are visible but this process was not started by torchrun.

    Without CUDA, or with fewer GPUs than asked for, the job runs in this process, where
    :func:`dnalm.train.distributed.setup` falls back to the CPU or refuses with one line.
    """
    if gpus <= 1:
        return False
    import torch

    from dnalm.train.distributed import launched_by_torchrun

    return (not launched_by_torchrun() and torch.cuda.is_available()
            and torch.cuda.device_count() >= gpus)


def torchrun_command(settings_file: str | Path, *, tokenizer_dir: str | Path,
                     train_dirs: Sequence[str | Path], validation_dirs: Sequence[str | Path],
                     segment: int, previous_checkpoint: str | Path | None,
                     out_dir: str | Path, threads: int, gpus: int) -> list[str]:
    """``torchrun --standalone`` running ``dnalm pretrain-segment`` once per GPU."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={gpus}", "-m", "dnalm", "pretrain-segment",
               "--config", str(settings_file), "--tokenizer", str(tokenizer_dir),
               "--train", *map(str, train_dirs), "--validation", *map(str, validation_dirs),
               "--segment", str(segment), "--out", str(out_dir), "--threads", str(threads),
               "--gpus", str(gpus)]
    if previous_checkpoint is not None:
        command += ["--previous", str(previous_checkpoint)]
    return command


def _under_torchrun(config: PretrainConfig, **job: Any) -> dict[str, Any]:
    import yaml

    from dnalm.train.finalize import read_segment_info

    with tempfile.TemporaryDirectory(prefix="dnalm-pretrain-") as tmp:
        settings = Path(tmp) / "settings.yaml"
        settings.write_text(yaml.safe_dump(config.to_dict()))
        command = torchrun_command(settings, **job)
        log.info("starting %d processes: %s", job["gpus"], " ".join(command))
        # the processes print their summary on stdout; it is read back from segment.json
        proc = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
    if proc.returncode:
        raise DnalmError(f"the {job['gpus']} training processes under torchrun failed (exit "
                         f"status {proc.returncode}); their errors are in the lines above",
                         where=str(job["out_dir"]))
    return {**read_segment_info(job["out_dir"]), "out_dir": str(job["out_dir"])}


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
