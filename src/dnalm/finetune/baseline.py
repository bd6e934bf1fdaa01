"""k-mer count baseline: logistic regression (ridge for regression) on the same splits.

A language model earns its cost only if it beats what k-mer composition alone predicts, so every
task gets this baseline beside the models, written in the same layout
(``results/finetune/{task}/kmer_baseline/metrics.json`` and ``predictions.parquet``).

Features: for each k, the counts of the ``4**k`` ACGT k-mers of a sequence (k-mers with other
characters skipped), divided by the number of counted k-mers so that sequence length does not
leak into the features, then standardised with the train mean and standard deviation. The k and
the regularisation strength C are chosen on the dev split by the task's primary metric (MCC or
Spearman), the same split the language models use for early stopping; the chosen model is the
one fitted on train, so the baseline sees exactly the data the models see. Its ``metrics.json``
carries the same yardsticks as a fine-tuned run (chance, bootstrap intervals, and a flag when
its test predictions are constant).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from dnalm.finetune.metrics import primary_metric, task_metrics
from dnalm.finetune.report import (
    json_ready,
    peak_memory_mb,
    predictions_table,
    versions,
    write_json,
)
from dnalm.finetune.settings import BaselineSettings
from dnalm.finetune.tasks import SPLITS, TaskData, load_task
from dnalm.finetune.yardsticks import chance_level, check_collapse, intervals
from dnalm.io import atomic_dir, write_table

log = logging.getLogger(__name__)

BASELINE_NAME = "kmer_baseline"

_CODES = np.full(256, 4, dtype=np.int64)
for _i, _base in enumerate("ACGT"):
    _CODES[ord(_base)] = _CODES[ord(_base.lower())] = _i


def kmer_frequencies(sequences: list[str], k: int) -> np.ndarray:
    """Per-sequence k-mer frequencies (n × 4**k, float32); all zero for sequences shorter than k.

    K-mer indices are built with a rolling base-4 sum over a numpy view of each sequence; any
    window that holds a non-ACGT character is dropped.
    """
    out = np.zeros((len(sequences), 4**k), dtype=np.float32)
    powers = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
    for row, seq in enumerate(sequences):
        codes = _CODES[np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)]
        if codes.size < k:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(codes, k)
        valid = (windows < 4).all(axis=1)
        index = windows[valid] @ powers
        counts = np.bincount(index, minlength=4**k)
        total = counts.sum()
        if total:
            out[row] = counts / total
    return out


def _fit(problem: str, x: np.ndarray, y: np.ndarray, c: float, settings: BaselineSettings
         ) -> Any:
    if problem == "regression":
        return Ridge(alpha=1.0 / c).fit(x, y)
    return LogisticRegression(C=c, max_iter=settings.max_iter,
                              random_state=settings.seed).fit(x, y)


def _outputs(problem: str, model: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all task classes (columns in class-id order) or values."""
    if problem == "regression":
        return model.predict(x).astype(np.float64)
    probs = np.zeros((x.shape[0], n_classes))
    probs[:, model.classes_.astype(np.int64)] = model.predict_proba(x)
    return probs


def _features(task: TaskData, k: int) -> dict[str, np.ndarray]:
    raw = {s: kmer_frequencies(task.split(s)["sequence"].tolist(), k) for s in SPLITS}
    scaler = StandardScaler().fit(raw["train"])
    return {s: scaler.transform(x).astype(np.float32) for s, x in raw.items()}


def _score(metrics: Mapping[str, float | None], primary: str) -> float:
    value = metrics.get(primary)
    return -np.inf if value is None else float(value)


def select_and_fit(task: TaskData, settings: BaselineSettings) -> dict[str, Any]:
    """Grid over k × C, pick by dev primary metric; return the chosen model's outputs."""
    primary = primary_metric(task.problem)
    labels = {s: task.split(s)["label"].to_numpy() for s in SPLITS}
    grid, best = [], None
    for k in settings.k:
        features = _features(task, k)
        for c in settings.C:
            model = _fit(task.problem, features["train"], labels["train"], c, settings)
            dev_out = _outputs(task.problem, model, features["dev"], task.num_labels)
            dev_metrics = task_metrics(task.problem, labels["dev"], dev_out)
            grid.append({"k": k, "C": c, f"dev_{primary}": dev_metrics.get(primary)})
            score = _score(dev_metrics, primary)
            if best is None or score > best["score"]:
                best = {"score": score, "k": k, "C": c, "model": model, "dev": dev_metrics,
                        "test_out": _outputs(task.problem, model, features["test"],
                                             task.num_labels)}
    log.info("k-mer baseline: chose k=%d C=%g (dev %s %s)", best["k"], best["C"], primary,
             best["dev"].get(primary))
    best["grid"] = grid
    return best


def _parameter_count(model: Any) -> int:
    coef = np.asarray(model.coef_)
    intercept = np.atleast_1d(np.asarray(model.intercept_))
    return int(coef.size + intercept.size)


def _yardsticks(task: TaskData, outputs: np.ndarray, seed: int) -> dict[str, Any]:
    """Chance, bootstrap intervals and the constant-prediction check, as for a fine-tuned run
    (:mod:`dnalm.finetune.yardsticks`), so the reference row is read with the same care."""
    labels = task.test["label"].to_numpy()
    spans = intervals(task.problem, labels, outputs, seed=seed)
    collapse = check_collapse(task.problem, outputs, labels, label_names=task.label_names,
                              mcc_interval=spans.get("mcc"))
    if collapse["collapsed"]:
        log.warning("%s/%s: constant predictions, not a result: %s", task.name, BASELINE_NAME,
                    collapse["reason"])
    return {"chance": chance_level(task.problem, task.train["label"].to_numpy(), labels,
                                   task.label_names),
            "intervals": spans,
            "collapsed": collapse.pop("collapsed"), "collapse_reason": collapse.pop("reason"),
            "collapse": collapse}


def kmer_baseline(task: TaskData | Mapping[str, Any], out_dir: str | Path, *,
                  settings: BaselineSettings | None = None, seed: int = 42,
                  genome_fasta: str | Path | None = None) -> dict[str, Any]:
    """Train the k-mer baseline on ``task`` and write ``metrics.json`` + ``predictions.parquet``.

    ``task`` is a loaded task or a spec dict. Returns the metrics document.
    """
    settings = settings or BaselineSettings(seed=seed)
    if not isinstance(task, TaskData):
        task = load_task(task, genome_fasta=genome_fasta, seed=settings.seed)
    began = time.perf_counter()
    best = select_and_fit(task, settings)
    seconds = time.perf_counter() - began
    labels = task.test["label"].to_numpy()
    test_metrics = task_metrics(task.problem, labels, best["test_out"])
    n_params = _parameter_count(best["model"])
    primary = primary_metric(task.problem)
    document = {
        "task": task.name, "model": BASELINE_NAME, "method": BASELINE_NAME,
        "problem": task.problem, "primary_metric": primary,
        "test": {"n": len(task.test), **test_metrics},
        "dev": dict(best["dev"]),
        "label_names": task.label_names, "label_mapping": task.label_mapping,
        "n_sequences": task.sizes(), "dev_source": task.dev_source, "sources": task.sources,
        "parameters": {"total": n_params, "base": 0, "head": n_params, "trainable": n_params,
                       "trainable_fraction": 1.0},
        "baseline": {"k": best["k"], "C": best["C"], "grid": best["grid"],
                     "estimator": "Ridge" if task.problem == "regression"
                     else "LogisticRegression",
                     "features": "per-sequence k-mer frequencies, standardised on train"},
        "training": {"seconds": seconds, "seed": settings.seed},
        "resources": {"device": "cpu", **peak_memory_mb()},
        "versions": versions(),
        **_yardsticks(task, best["test_out"], settings.seed),
    }
    log.info("k-mer baseline test %s: %s", primary, test_metrics.get(primary))
    with atomic_dir(out_dir) as tmp:
        write_table(predictions_table(task, best["test_out"]), tmp / "predictions.parquet")
        write_json(tmp / "metrics.json", document)
    return json_ready(document)

