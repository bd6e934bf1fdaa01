"""Evaluation metrics, computed the way GUE/DNABERT-2 report them.

Classification metrics use argmax predictions (MCC, macro F1, accuracy, as DNABERT-2's
``compute_metrics``) and class probabilities (AUROC, AUPRC: one-vs-rest macro averages for more
than two classes). MCC is the primary metric, as in the GUE table, because it stays meaningful on
unbalanced tasks where accuracy does not. Regression reports Spearman (primary), Pearson, MSE and
R². A metric that is undefined (AUROC with one class in the test split, a correlation of a
constant prediction) is ``None`` rather than a misleading number.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats
from sklearn import metrics as skm

CLASSIFICATION_KEYS = ("mcc", "f1", "accuracy", "precision", "recall", "auroc", "auprc")
REGRESSION_KEYS = ("spearman", "pearson", "mse", "r2")


def primary_metric(problem: str) -> str:
    """The metric a task is ranked by: MCC for classification, Spearman for regression."""
    return "mcc" if problem == "classification" else "spearman"


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _ranking_metrics(labels: np.ndarray, probs: np.ndarray) -> tuple[float | None, float | None]:
    """AUROC and AUPRC (one-vs-rest macro for several classes); None when undefined."""
    n_classes = probs.shape[1]
    present = np.unique(labels)
    if present.size < 2:
        return None, None
    if n_classes == 2:
        return (_finite(skm.roc_auc_score(labels, probs[:, 1])),
                _finite(skm.average_precision_score(labels, probs[:, 1])))
    aurocs, auprcs = [], []
    for c in present:  # classes absent from the test split have no defined curve
        positive = labels == c
        aurocs.append(skm.roc_auc_score(positive, probs[:, c]))
        auprcs.append(skm.average_precision_score(positive, probs[:, c]))
    return _finite(np.mean(aurocs)), _finite(np.mean(auprcs))


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """MCC, macro F1/precision/recall, accuracy (argmax), AUROC and AUPRC (probabilities)."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    preds = probs.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on degenerate inputs; we return None/0
        auroc, auprc = _ranking_metrics(labels, probs)
        return {
            "mcc": _finite(skm.matthews_corrcoef(labels, preds)),
            "f1": _finite(skm.f1_score(labels, preds, average="macro", zero_division=0)),
            "accuracy": _finite(skm.accuracy_score(labels, preds)),
            "precision": _finite(skm.precision_score(labels, preds, average="macro",
                                                     zero_division=0)),
            "recall": _finite(skm.recall_score(labels, preds, average="macro", zero_division=0)),
            "auroc": auroc,
            "auprc": auprc,
        }


def regression_metrics(labels: np.ndarray, preds: np.ndarray) -> dict[str, float | None]:
    """Spearman, Pearson, mean squared error and R² of predicted values."""
    labels = np.asarray(labels, dtype=np.float64)
    preds = np.asarray(preds, dtype=np.float64)
    constant = np.ptp(preds) == 0 or np.ptp(labels) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "spearman": None if constant else _finite(stats.spearmanr(labels, preds).statistic),
            "pearson": None if constant else _finite(stats.pearsonr(labels, preds).statistic),
            "mse": _finite(skm.mean_squared_error(labels, preds)),
            "r2": _finite(skm.r2_score(labels, preds)) if labels.size > 1 else None,
        }


def task_metrics(problem: str, labels: np.ndarray, outputs: np.ndarray) -> dict[str, float | None]:
    """Metrics for ``problem``: ``outputs`` are class probabilities or predicted values."""
    if problem == "classification":
        return classification_metrics(labels, outputs)
    return regression_metrics(labels, np.asarray(outputs).reshape(-1))
