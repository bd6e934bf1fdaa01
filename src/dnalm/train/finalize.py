"""Publishing a finished run: the last segment's model, all metrics and the loss curve."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dnalm.errors import ConfigError
from dnalm.io import atomic_file, write_table
from dnalm.models.saving import MODEL_META
from dnalm.train.checkpoint import TRAINER_STATE
from dnalm.train.metrics import plot_loss_curve, read_metrics

SEGMENT_INFO = "segment.json"
METRICS_FILE = "metrics.parquet"
LOSS_CURVE = "loss_curve.png"
_SEGMENT_ONLY_FILES = {TRAINER_STATE, METRICS_FILE, SEGMENT_INFO}


def read_segment_info(segment_dir: str | Path) -> dict[str, Any]:
    """A finished segment's ``segment.json`` (steps, tokens, throughput, validation)."""
    path = Path(segment_dir) / SEGMENT_INFO
    if not path.is_file():
        raise ConfigError(f"no {SEGMENT_INFO}: not a finished segment", where=str(segment_dir))
    return json.loads(path.read_text())


def finalize(
    model_dir: str | Path, segment_dirs: Sequence[str | Path], *, plot: bool = True
) -> dict[str, Any]:
    """Publish the last segment's model in ``model_dir`` with all metrics and a loss curve.

    ``segment_dirs`` must be consecutive segments starting at step 0 (checked from their
    ``segment.json``). Files are written one by one, atomically, into ``model_dir`` (which also
    holds ``segments/``, so the directory itself is not replaced): the Hugging Face model and
    tokenizer files, ``dnalm_*.json``, ``metrics.parquet`` and ``loss_curve.png``.
    """
    if not segment_dirs:
        raise ConfigError("finalize needs at least one segment directory")
    infos = sorted(
        ((read_segment_info(d), Path(d)) for d in segment_dirs), key=lambda x: x[0]["segment"]
    )
    expected = 0
    for info, path in infos:
        if info["start_step"] != expected:
            raise ConfigError(
                f"segment {info['segment']} starts at step {info['start_step']}, expected "
                f"{expected}: the segments do not form one run",
                where=str(path),
            )
        expected = info["end_step"]
    last_info, last = infos[-1]
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    for item in sorted(last.iterdir()):
        if item.is_file() and item.name not in _SEGMENT_ONLY_FILES:
            with atomic_file(out / item.name) as tmp:
                shutil.copyfile(item, tmp)
    table = read_metrics([path / METRICS_FILE for _, path in infos])
    write_table(table, out / METRICS_FILE)
    meta = json.loads((last / MODEL_META).read_text()) if (last / MODEL_META).is_file() else {}
    if plot:
        title = f"{meta.get('preset', '')} {meta.get('size', '')} - {out.name}".strip()
        plot_loss_curve(table, out / LOSS_CURVE, title=title)
    val = [v for v in table.column("val_loss").to_pylist() if v is not None]
    return {
        "model_dir": str(out),
        "steps": last_info["end_step"],
        "segments": len(infos),
        "final_val_loss": val[-1] if val else None,
        "initial_val_loss": val[0] if len(val) > 1 else None,
    }


def existing_segments(model_dir: str | Path) -> list[Path]:
    """Finished segment directories under ``model_dir/segments``, in order.

    Useful to a workflow deciding what to reuse after ``total_steps`` was raised.
    """
    segments = Path(model_dir) / "segments"
    if not segments.is_dir():
        return []
    found = [p for p in segments.iterdir() if p.name.isdigit() and (p / SEGMENT_INFO).is_file()]
    return sorted(found, key=lambda p: int(p.name))
