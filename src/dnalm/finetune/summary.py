"""The GUE-style summary over every task × model run (fine-tuned models and k-mer baselines).

DNABERT-2 reports fine-tuning as one table: a row per model with its parameter count, trainable
parameters, a score per task (MCC × 100) and the average. :func:`write_summary` builds that
table from the ``metrics.json`` of each run and writes it as Markdown, next to a long-format
Parquet table holding every test metric of every run (one row per run) for further analysis.
Each task's k-mer baseline is a row like any model, and the long table adds each run's difference
to its task's baseline, so no score is read without its reference point. The other yardsticks of
:mod:`dnalm.finetune.yardsticks` come along: each task's chance level (the majority class: its
accuracy, MCC 0, AUROC 0.5) and each run's bootstrap 95 % intervals of AUROC and MCC (Spearman for
regression). A collapsed run (near-constant test predictions, or a dev loss that never fell) is
not a result: the long table has a ``collapsed`` column with the reason, and the Markdown table
shows "collapsed" in place of its score and leaves it out of the row's average.
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
#: Metrics with a bootstrap interval (``<metric>_low``, ``<metric>_high`` columns).
INTERVAL_METRICS = ("auroc", "mcc", "spearman")
#: What the Markdown GUE table shows in place of a collapsed run's score.
COLLAPSED = "collapsed"


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
    spans = doc.get("intervals") or {}
    chance = doc.get("chance") or {}
    bounds = {}
    for metric in INTERVAL_METRICS:
        span = spans.get(metric) or (None, None)
        bounds[f"{metric}_low"], bounds[f"{metric}_high"] = span
    row: dict[str, Any] = {
        "task": doc["task"], "model": doc["model"], "method": doc["method"],
        "problem": doc.get("problem"), "primary_metric": primary, "score": test.get(primary),
        **{m: test.get(m) for m in METRIC_COLUMNS},
        **bounds,
        "collapsed": bool(doc.get("collapsed") or False),
        "collapse_reason": doc.get("collapse_reason"),
        "chance_label": chance.get("label"), "chance_accuracy": chance.get("accuracy"),
        "chance_mcc": chance.get("mcc"), "chance_auroc": chance.get("auroc"),
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
    A collapsed run has no score here (it is not a result) and is named in ``collapsed``. The
    average is over the tasks the row has a score for; ``tasks`` counts them.
    """
    tasks = sorted(runs["task"].unique())
    flags = runs["collapsed"] if "collapsed" in runs else pd.Series(False, index=runs.index)
    runs = runs.assign(collapsed=flags.fillna(False).astype(bool))
    rows = []
    for (model, method), group in runs.groupby(["model", "method"], sort=True):
        collapsed = sorted(group.loc[group["collapsed"], "task"])
        scores = {t: group.loc[group["task"] == t, "score"].iloc[0]
                  if (group["task"] == t).any() and t not in collapsed else None for t in tasks}
        present = [100 * float(v) for v in scores.values() if v is not None and not pd.isna(v)]
        rows.append({
            "model": model, "method": method,
            "parameters": _range(group["parameters_base" if method != BASELINE_NAME
                                       else "parameters_total"].tolist()),
            "trainable": _range(group["parameters_trainable"].tolist()),
            **{t: None if v is None or pd.isna(v) else 100 * float(v) for t, v in scores.items()},
            "average": float(np.mean(present)) if present else None,
            "tasks": f"{len(present)}/{len(tasks)}",
            "collapsed": ", ".join(collapsed) or None,
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


def _span(low: Any, high: Any) -> str | None:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return None
    return f"{low:.3f}–{high:.3f}"


def _gue_display(runs: pd.DataFrame) -> pd.DataFrame:
    """The GUE table with "collapsed" written where a collapsed run's score would be."""
    table = gue_table(runs).astype(object)
    for i, names in table["collapsed"].items():
        for task in (names if isinstance(names, str) else "").split(", "):
            if task:
                table.at[i, task] = COLLAPSED
    return table


def yardstick_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task: the chance level (majority class) and the k-mer baseline with its intervals."""
    rows = []
    for task, group in runs.groupby("task", sort=True):
        base = group[group["model"] == BASELINE_NAME]
        ref = (base if not base.empty else group).iloc[0]
        b = base.iloc[0] if not base.empty else None
        rows.append({
            "task": task, "n_test": ref.get("n_test"),
            "chance (majority class)": ref.get("chance_label"),
            "chance accuracy": ref.get("chance_accuracy"),
            "chance MCC": ref.get("chance_mcc"), "chance AUROC": ref.get("chance_auroc"),
            "k-mer MCC": None if b is None else b.get("mcc"),
            "k-mer MCC 95% CI": None if b is None else _span(b.get("mcc_low"), b.get("mcc_high")),
            "k-mer AUROC": None if b is None else b.get("auroc"),
            "k-mer AUROC 95% CI": None if b is None else _span(b.get("auroc_low"),
                                                                b.get("auroc_high")),
        })
    table = pd.DataFrame(rows)
    table["n_test"] = table["n_test"].astype("Int64")
    return table


def summary_markdown(runs: pd.DataFrame) -> str:
    """The Markdown report: the GUE-style table, the yardsticks, then all test metrics per run."""
    if runs.empty:
        return "# Fine-tuning summary\n\nNo runs.\n"
    runs = runs.copy()
    for column in ("collapsed", "collapse_reason", *(f"{m}_{e}" for m in INTERVAL_METRICS
                                                     for e in ("low", "high"))):
        if column not in runs:
            runs[column] = False if column == "collapsed" else None
    primary = {t: g["primary_metric"].iloc[0] for t, g in runs.groupby("task")}
    notes = ", ".join(f"{t}: {m}" for t, m in sorted(primary.items()))
    detail = runs[["task", "model", "method", *[c for c in METRIC_COLUMNS
                                                if runs[c].notna().any()],
                   "delta_vs_baseline", "parameters_trainable", "epochs_run",
                   "seconds_per_epoch"]].copy()
    for column in ("parameters_trainable", "epochs_run"):
        detail[column] = detail[column].astype("Int64")
    for metric in INTERVAL_METRICS:
        if runs[f"{metric}_low"].notna().any():
            detail.insert(detail.columns.get_loc(metric) + 1, f"{metric} 95% CI",
                          [_span(lo, hi) for lo, hi in zip(runs[f"{metric}_low"],
                                                           runs[f"{metric}_high"], strict=True)])
    detail["collapsed"] = [reason if flag else None for flag, reason in
                           zip(runs["collapsed"].fillna(False), runs["collapse_reason"],
                               strict=True)]
    n_collapsed = int(runs["collapsed"].fillna(False).sum())
    sections = [
        "# Fine-tuning summary", "",
        "Test-split score × 100 per task (primary metric: " + notes + "), as in DNABERT-2's "
        "GUE table. `parameters`: the encoder without its task head (for the k-mer baseline: "
        "its coefficients); `trainable`: parameters updated by fine-tuning, head included "
        "(a range when heads differ between tasks). `average` is over the tasks a row has a "
        "score for. `collapsed`: runs whose test predictions are (nearly) one class or "
        "constant, or whose dev loss never fell below its loss before training; they learned "
        "the class prior, not the task, and are not results (reason below).",
        "", markdown_table(_gue_display(runs)), "",
    ]
    if n_collapsed:
        sections += [f"**{n_collapsed} collapsed run(s)**: not results; see `collapsed` below "
                     "and the warning in the run's log for what to change.", ""]
    sections += [
        "## Yardsticks", "",
        "Chance: the majority class of the training split predicted for every test sequence "
        "(MCC 0, AUROC 0.5). Intervals: percentile bootstrap (1,000 seeded resamples of the "
        "test rows), 95 %.", "",
        markdown_table(yardstick_table(runs), digits=3), "",
        "## All test metrics", "",
        "`delta_vs_baseline`: primary metric minus the task's k-mer baseline.", "",
        markdown_table(detail, digits=3), "",
    ]
    return "\n".join(sections)


def write_summary(run_dirs: Iterable[str | Path], out_parquet: str | Path,
                  out_markdown: str | Path) -> pd.DataFrame:
    """Collect runs, write the long table (Parquet) and the report (Markdown); return the table."""
    runs = collect_runs(run_dirs)
    write_table(pa.Table.from_pandas(runs, preserve_index=False), out_parquet)
    with atomic_file(out_markdown) as tmp:
        tmp.write_text(summary_markdown(runs))
    log.info("summary of %d runs over %d tasks written to %s", len(runs),
             runs["task"].nunique() if not runs.empty else 0, out_markdown)
    if not runs.empty and runs["collapsed"].any():
        names = ", ".join(f"{t}/{m}" for t, m in
                          runs.loc[runs["collapsed"], ["task", "model"]].itertuples(index=False))
        log.warning("collapsed run(s) marked in the summary, not results: %s", names)
    return runs
