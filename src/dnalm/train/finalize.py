"""Publishing a finished run: the last segment's model, all metrics and the loss curve."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dnalm.errors import ConfigError
from dnalm.io import atomic_file, write_table
from dnalm.models.saving import MODEL_META
from dnalm.train.checkpoint import TRAINER_STATE
from dnalm.train.markov import MARKOV_FILE, markov_baselines, write_markov
from dnalm.train.metrics import plot_loss_curve, read_metrics

SEGMENT_INFO = "segment.json"
METRICS_FILE = "metrics.parquet"
LOSS_CURVE = "loss_curve.png"
_SEGMENT_ONLY_FILES = {TRAINER_STATE, METRICS_FILE, SEGMENT_INFO}

log = logging.getLogger(__name__)


def read_segment_info(segment_dir: str | Path) -> dict[str, Any]:
    """A finished segment's ``segment.json`` (steps, tokens, throughput, validation)."""
    path = Path(segment_dir) / SEGMENT_INFO
    if not path.is_file():
        raise ConfigError(f"no {SEGMENT_INFO}: not a finished segment", where=str(segment_dir))
    return json.loads(path.read_text())


def finalize(
    model_dir: str | Path,
    segment_dirs: Sequence[str | Path],
    *,
    plot: bool = True,
    chunk_dirs: Sequence[str | Path] | None = None,
) -> dict[str, Any]:
    """Publish the last segment's model in ``model_dir`` with all metrics and a loss curve.

    ``segment_dirs`` must be consecutive segments starting at step 0 (checked from their
    ``segment.json``). Files are written one by one, atomically, into ``model_dir`` (which also
    holds ``segments/``, so the directory itself is not replaced): the Hugging Face model and
    tokenizer files, ``dnalm_*.json``, ``metrics.parquet`` and ``loss_curve.png``.

    ``chunk_dirs`` are the chunk directories (``results/genomes/{g}/chunks``) of the genomes the
    model was pretrained on: given, the order-0..5 Markov baselines of their train/validation
    split (:mod:`dnalm.train.markov`, seconds for megabases) are written to ``markov.parquet``,
    stored in ``metrics.parquet``'s metadata (key ``dnalm.markov``), drawn on the loss curve and
    returned under ``markov``, the yardstick for ``final_val_loss_per_base``.
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
    markov = markov_baselines(chunk_dirs) if chunk_dirs else None  # fails before any copy
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    for item in sorted(last.iterdir()):
        if item.is_file() and item.name not in _SEGMENT_ONLY_FILES:
            with atomic_file(out / item.name) as tmp:
                shutil.copyfile(item, tmp)
    table = read_metrics([path / METRICS_FILE for _, path in infos])
    markov_rows = markov.to_pylist() if markov is not None else None
    if markov is not None:
        write_markov(markov, out / MARKOV_FILE)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"dnalm.markov": json.dumps(markov_rows).encode()}
        )
    write_table(table, out / METRICS_FILE)
    meta = json.loads((last / MODEL_META).read_text()) if (last / MODEL_META).is_file() else {}
    if plot:
        title = f"{meta.get('preset', '')} {meta.get('size', '')} - {out.name}".strip()
        plot_loss_curve(table, out / LOSS_CURVE, title=title, markov=markov)
    val = [v for v in table.column("val_loss").to_pylist() if v is not None]
    per_base = [v for v in table.column("val_loss_per_base").to_pylist() if v is not None]
    summary: dict[str, Any] = {
        "model_dir": str(out),
        "steps": last_info["end_step"],
        "segments": len(infos),
        "final_val_loss": val[-1] if val else None,
        "initial_val_loss": val[0] if len(val) > 1 else None,
        "final_val_loss_per_base": per_base[-1] if per_base else None,
        "initial_val_loss_per_base": per_base[0] if len(per_base) > 1 else None,
    }
    if markov_rows is not None:
        summary["markov"] = markov_rows
        levels = ", ".join(f"{r['k']}: {r['nats_per_base']:.4f}" for r in markov_rows)
        model = summary["final_val_loss_per_base"]
        measured = (f"validation loss {model:.4f} nats/base" if model is not None else
                    "validation loss per base not recorded (segments older than the metric)")
        log.info("%s; Markov baselines (order: nats/base) %s", measured, levels)
    return summary


def existing_segments(model_dir: str | Path) -> list[Path]:
    """Finished segment directories under ``model_dir/segments``, in order.

    Useful to a workflow deciding what to reuse after ``total_steps`` was raised.
    """
    segments = Path(model_dir) / "segments"
    if not segments.is_dir():
        return []
    found = [p for p in segments.iterdir() if p.name.isdigit() and (p / SEGMENT_INFO).is_file()]
    return sorted(found, key=lambda p: int(p.name))
