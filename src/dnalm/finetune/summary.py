"""The GUE-style summary over every task × model run (fine-tuned models and k-mer baselines).

DNABERT-2 reports fine-tuning as one table: a row per model with its parameter count, trainable
parameters, a score per task (MCC × 100) and the average. :func:`write_summary` builds that
table from the ``metrics.json`` of each run and writes it as Markdown, next to a long-format
Parquet table holding every test metric of every run (one row per run) for further analysis.
Each task's k-mer baseline is a row like any model, and the long table adds each run's difference
to its task's baseline, so no score is read without its reference point.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dnalm.errors import InputFormatError
from dnalm.finetune.baseline import BASELINE_NAME
from dnalm.finetune.metrics import CLASSIFICATION_KEYS, REGRESSION_KEYS
from dnalm.io import atomic_file, write_table

log = logging.getLogger(__name__)

METRIC_COLUMNS = (*CLASSIFICATION_KEYS, *REGRESSION_KEYS)


def _metrics_path(path: str | Path) -> Path:
    p = Path(path)
    return p / "metrics.json" if p.is_dir() else p


def read_run(path: str | Path) -> dict[str, Any]:
    """One summary row from a run directory (or its ``metrics.json``)."""
    file = _metrics_path(path)
    try:
        doc = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFormatError(f"cannot read fine-tuning metrics ({exc})", where=str(file)) from exc
    test = doc.get("test", {})
    params = doc.get("parameters", {})
    training = doc.get("training", {})
    primary = doc.get("primary_metric", "mcc")
    row: dict[str, Any] = {
        "task": doc["task"], "model": doc["model"], "method": doc["method"],
        "problem": doc.get("problem"), "primary_metric": primary, "score": test.get(primary),
        **{m: test.get(m) for m in METRIC_COLUMNS},
        "n_test": test.get("n"),
        "parameters_total": params.get("total"), "parameters_base": params.get("base"),
        "parameters_trainable": params.get("trainable"),
        "epochs_run": training.get("epochs_run"),
        "seconds_per_epoch": training.get("seconds_per_epoch"),
        "peak_rss_mb": doc.get("resources", {}).get("peak_rss_mb"),
        "run_dir": str(file.parent),
    }
    return row


def collect_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Long table, one row per run, with ``delta_vs_baseline`` (score minus the task's k-mer)."""
    rows = [read_run(p) for p in paths]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    base = frame[frame["model"] == BASELINE_NAME].set_index("task")["score"]
    frame["delta_vs_baseline"] = [
        (s - base[t]) if t in base.index and s is not None and base[t] is not None
        and not (isinstance(s, float) and math.isnan(s)) else None
        for t, s in zip(frame["task"], frame["score"], strict=True)]
    return frame.sort_values(["task", "model"], kind="stable").reset_index(drop=True)


def _human(n: float | None) -> str:
    """Parameter counts as DNABERT-2's table writes them (117M, 2.1K)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def _range(values: Sequence[float]) -> str:
    clean = sorted({int(v) for v in values if v is not None and not pd.isna(v)})
    if not clean:
        return "–"
    return _human(clean[0]) if len(clean) == 1 else f"{_human(clean[0])}–{_human(clean[-1])}"


def gue_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Wide table: a row per (model, method), parameters, a score × 100 per task, the average.

    Trainable parameters differ between tasks by the head's size, so they are shown as a range.
    The average is over the tasks the row has; a row missing tasks is marked in ``tasks``.
    """
    tasks = sorted(runs["task"].unique())
    rows = []
    for (model, method), group in runs.groupby(["model", "method"], sort=True):
        scores = {t: group.loc[group["task"] == t, "score"].iloc[0]
                  if (group["task"] == t).any() else None for t in tasks}
        present = [100 * float(v) for v in scores.values() if v is not None and not pd.isna(v)]
        rows.append({
            "model": model, "method": method,
            "parameters": _range(group["parameters_base" if method != BASELINE_NAME
                                       else "parameters_total"].tolist()),
            "trainable": _range(group["parameters_trainable"].tolist()),
            **{t: None if v is None or pd.isna(v) else 100 * float(v) for t, v in scores.items()},
            "average": float(np.mean(present)) if present else None,
            "tasks": f"{len(present)}/{len(tasks)}",
        })
    table = pd.DataFrame(rows)
    # baseline first, then models by average score (best last, as a reader scans downwards)
    order = table["model"].ne(BASELINE_NAME).astype(int) * 1000 + table["average"].fillna(
        -1e9).rank(method="first")
    return table.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def _cell(value: Any, digits: int = 2) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(frame: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub Markdown table (no ``tabulate`` dependency)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    lines = [header, rule]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, digits) for v in row) + " |")
    return "\n".join(lines)


def summary_markdown(runs: pd.DataFrame) -> str:
    """The Markdown report: the GUE-style table, then all test metrics per run."""
    if runs.empty:
        return "# Fine-tuning summary\n\nNo runs.\n"
    primary = {t: g["primary_metric"].iloc[0] for t, g in runs.groupby("task")}
    notes = ", ".join(f"{t}: {m}" for t, m in sorted(primary.items()))
    detail = runs[["task", "model", "method", *[c for c in METRIC_COLUMNS
                                                if runs[c].notna().any()],
                   "delta_vs_baseline", "parameters_trainable", "epochs_run",
                   "seconds_per_epoch"]].copy()
    for column in ("parameters_trainable", "epochs_run"):
        detail[column] = detail[column].astype("Int64")
    return "\n".join([
        "# Fine-tuning summary", "",
        "Test-split score × 100 per task (primary metric: " + notes + "), as in DNABERT-2's "
        "GUE table. `parameters`: the encoder without its task head (for the k-mer baseline: "
        "its coefficients); `trainable`: parameters updated by fine-tuning, head included "
        "(a range when heads differ between tasks). `average` is over the tasks a row has.",
        "", markdown_table(gue_table(runs)), "",
        "## All test metrics", "",
        "`delta_vs_baseline`: primary metric minus the task's k-mer baseline.", "",
        markdown_table(detail, digits=3), "",
    ])


def write_summary(run_dirs: Iterable[str | Path], out_parquet: str | Path,
                  out_markdown: str | Path) -> pd.DataFrame:
    """Collect runs, write the long table (Parquet) and the report (Markdown); return the table."""
    runs = collect_runs(run_dirs)
    write_table(pa.Table.from_pandas(runs, preserve_index=False), out_parquet)
    with atomic_file(out_markdown) as tmp:
        tmp.write_text(summary_markdown(runs))
    log.info("summary of %d runs over %d tasks written to %s", len(runs),
             runs["task"].nunique() if not runs.empty else 0, out_markdown)
    return runs
