"""What a fine-tuning score is read beside: chance, its own interval, and whether it is a result.

A test MCC of 0.000 is what a model that predicts the majority class for every sequence scores,
and an MCC of 0.1 on 141 test sequences is within noise of it; neither should be read as a
model's skill. Every run's ``metrics.json`` (fine-tuned and k-mer baseline) therefore carries:

* ``chance``: the constant predictor fitted on the training split (the majority class; for
  regression the training mean) scored on the test split: its accuracy, MCC 0, AUROC 0.5, the
  class prevalence as AUPRC (for regression its MSE and R², correlations 0);
* ``intervals``: seeded percentile-bootstrap 95 % intervals over the test rows of AUROC and MCC
  (Spearman for regression), from the vectorised bootstrap of :mod:`dnalm.evaluate`, so one
  sort serves all 1,000 resamples and runs of the same seed on the same test split are compared
  on the same resamples;
* ``collapsed`` / ``collapse_reason``: the run is flagged when its test predictions are (nearly)
  constant: one class for at least :data:`MAJORITY_FRACTION` of the test rows while the MCC
  interval does not exclude 0 (no better than predicting that class for every row: the demo's
  full fine-tuning predicted "positive" for 138 of 141 rows, MCC -0.111, interval [-0.17, 0]),
  or, for regression, a prediction spread below :data:`REGRESSION_STD_RATIO` of the labels';
  or when its dev loss never fell below the loss before training (a fine-tuned run only). Such a
  run learned the class prior, not the task: the summary marks it and leaves it out of averages,
  and the log says what to change (:func:`collapse_advice`). The MCC condition keeps a good
  classifier of a rare class (97 % of rows predicted negative, rightly) from being flagged.

Thresholds are module constants rather than settings: they define what "collapsed" means in the
summary, which should not differ between configurations that are compared in one table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Bootstrap resamples and confidence of the test-metric intervals.
N_BOOTSTRAP = 1000
CONFIDENCE = 0.95
#: A classifier predicting one class for at least this fraction of test rows, with an MCC
#: interval that reaches 0, has collapsed.
MAJORITY_FRACTION = 0.97
#: A regressor whose predictions' standard deviation is below this fraction of the test labels'
#: standard deviation has collapsed onto a constant.
REGRESSION_STD_RATIO = 0.01
#: The best dev loss must be at least this much below the loss before training to count as a
#: fall (float noise of an unchanged model is far smaller; real learning far larger).
MIN_DEV_IMPROVEMENT = 1e-4


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# --------------------------------------------------------------------------------------------
# Chance


def chance_level(problem: str, train_labels: np.ndarray, test_labels: np.ndarray,
                 label_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Test metrics of the constant predictor fitted on train: majority class, or train mean."""
    if problem == "regression":
        train = np.asarray(train_labels, dtype=np.float64)
        test = np.asarray(test_labels, dtype=np.float64)
        mean = float(train.mean()) if train.size else math.nan
        mse = float(np.mean((test - mean) ** 2)) if test.size else math.nan
        var = float(test.var()) if test.size else math.nan
        return {"predictor": "train mean", "value": _clean(mean), "mse": _clean(mse),
                "r2": _clean(1 - mse / var) if var > 0 else None,
                "spearman": 0.0, "pearson": 0.0}
    train = np.asarray(train_labels, dtype=np.int64)
    test = np.asarray(test_labels, dtype=np.int64)
    n_classes = len(label_names) if label_names else int(
        max(train.max(initial=0), test.max(initial=0)) + 1)
    majority = int(np.bincount(train, minlength=n_classes).argmax())  # ties: the lowest id
    present = np.unique(test)
    # AUPRC of an uninformative score is the prevalence (binary: of class 1; else the macro
    # mean over the classes present); undefined with one class, as in .metrics
    auprc = None
    if present.size >= 2:
        auprc = (float(np.mean(test == 1)) if n_classes == 2
                 else float(np.mean([np.mean(test == c) for c in present])))
    return {"predictor": "majority class", "class": majority,
            "label": str(label_names[majority]) if label_names else str(majority),
            "accuracy": float(np.mean(test == majority)) if test.size else None,
            "mcc": 0.0, "auroc": 0.5, "auprc": auprc}


# --------------------------------------------------------------------------------------------
# Bootstrap intervals (the vectorised resampling of dnalm.evaluate)


def _weight_rows(weights: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones((1, n)) if weights is None else np.atleast_2d(weights).astype(float)


def auroc_rows(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
               ) -> np.ndarray:
    """AUROC per row of bootstrap ``weights``: binary, or the one-vs-rest macro average over
    the classes present in the resample (scikit-learn's convention in :mod:`.metrics`)."""
    from dnalm.evaluate import auroc_rows as binary_rows

    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.shape[1] == 2:
        return binary_rows(probs[:, 1], labels == 1, weights)
    per_class = np.stack([binary_rows(probs[:, c], labels == c, weights)
                          for c in range(probs.shape[1])])
    present = ~np.isnan(per_class)
    total = np.where(present, per_class, 0.0).sum(axis=0)
    count = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= 2, total / count, np.nan)


def mcc_rows(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
             ) -> np.ndarray:
    """Matthews correlation of argmax predictions per row of ``weights`` (Gorodkin's multiclass
    form, which is scikit-learn's ``matthews_corrcoef``; 0 where it is undefined, as there)."""
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    eye = np.eye(k)
    truth, pred = eye[np.asarray(labels, dtype=np.int64)], eye[probs.argmax(axis=1)]
    w = _weight_rows(weights, len(probs))
    confusion = np.einsum("bn,ni,nj->bij", w, truth, pred)
    t, p = confusion.sum(axis=2), confusion.sum(axis=1)
    s = confusion.sum(axis=(1, 2))
    c = np.trace(confusion, axis1=1, axis2=2)
    numerator = c * s - (t * p).sum(axis=1)
    denominator = np.sqrt(s**2 - (p**2).sum(axis=1)) * np.sqrt(s**2 - (t**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, 0.0)


def _interval(metric: Any, outputs: np.ndarray, labels: np.ndarray, *, seed: int,
              n_bootstrap: int, confidence: float) -> list[float | None] | None:
    from dnalm.evaluate import bootstrap

    low, high = bootstrap(metric, outputs, labels, n_bootstrap=n_bootstrap, seed=seed,
                          confidence=confidence)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return [float(low), float(high)]


def intervals(problem: str, labels: np.ndarray, outputs: np.ndarray, *, seed: int,
              n_bootstrap: int = N_BOOTSTRAP, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Percentile-bootstrap intervals of the test metrics: AUROC and MCC, or Spearman.

    An interval is None where the metric is undefined (one class in the test split, constant
    predictions for Spearman).
    """
    out: dict[str, Any] = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed,
                           "method": "percentile bootstrap over test rows"}
    if problem == "regression":
        from dnalm.evaluate import spearman_rows

        values = np.asarray(outputs, dtype=np.float64).reshape(-1)
        y = np.asarray(labels, dtype=np.float64)
        constant = len(y) < 3 or np.ptp(values) == 0 or np.ptp(y) == 0
        out["spearman"] = None if constant else _interval(
            spearman_rows, values, y, seed=seed, n_bootstrap=n_bootstrap, confidence=confidence)
        return out
    probs = np.asarray(outputs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    out["auroc"] = None if np.unique(y).size < 2 else _interval(
        auroc_rows, probs, y, seed=seed, n_bootstrap=n_bootstrap, confidence=confidence)
    out["mcc"] = _interval(mcc_rows, probs, y, seed=seed, n_bootstrap=n_bootstrap,
                           confidence=confidence)
    return out


# --------------------------------------------------------------------------------------------
# Collapse


def check_collapse(problem: str, outputs: np.ndarray, labels: np.ndarray, *,
                   initial_dev_loss: float | None = None, best_dev_loss: float | None = None,
                   trained: bool = False, label_names: Sequence[str] | None = None,
                   mcc_interval: Sequence[float] | None = None) -> dict[str, Any]:
    """Whether a run's test predictions are (nearly) constant, or (``trained``: a fine-tuned
    run with a dev-loss history) its dev loss never fell below the loss before training.

    ``mcc_interval`` (from :func:`intervals`): nearly constant predictions whose MCC interval
    lies above 0 are a classifier of a rare class, not a collapse; None counts as reaching 0.

    Returns ``collapsed``, ``reason`` (None, or the reasons joined by "; ") and the measured
    quantities, which go to ``metrics.json`` as they are.
    """
    reasons: list[str] = []
    detail: dict[str, Any] = {}
    if problem == "regression":
        values = np.asarray(outputs, dtype=np.float64).reshape(-1)
        y = np.asarray(labels, dtype=np.float64)
        label_std = float(y.std()) if y.size else 0.0
        ratio = float(values.std()) / label_std if label_std > 0 else None
        detail["prediction_std_ratio"] = _clean(ratio)
        if ratio is not None and ratio < REGRESSION_STD_RATIO:
            reasons.append(f"test predictions are nearly constant (spread {ratio:.2%} of the "
                           "labels')")
    elif len(outputs):
        predicted = np.asarray(outputs).argmax(axis=1)
        counts = np.bincount(predicted)
        top = int(counts.argmax())
        fraction = float(counts[top] / len(predicted))
        detail["majority_prediction_fraction"] = fraction
        detail["majority_prediction"] = (str(label_names[top]) if label_names else str(top))
        skill = mcc_interval is not None and mcc_interval[0] > 0
        if fraction >= MAJORITY_FRACTION and not skill:
            reasons.append(f"{fraction:.1%} of test predictions are one class "
                           f"({detail['majority_prediction']})")
    if trained:
        detail["initial_dev_loss"] = _clean(initial_dev_loss)
        detail["best_dev_loss"] = _clean(best_dev_loss)
        best, initial = detail["best_dev_loss"], detail["initial_dev_loss"]
        if best is None:
            reasons.append("the dev loss was never finite")
        elif initial is not None and not best < initial - MIN_DEV_IMPROVEMENT:
            reasons.append(f"the dev loss never fell below its initial {initial:.4f} "
                           f"(best {best:.4f})")
    return {"collapsed": bool(reasons), "reason": "; ".join(reasons) or None, **detail}


def collapse_advice(history: Sequence[Mapping[str, Any]], *, method: str, learning_rate: float,
                    epochs: int) -> str:
    """What to change after a collapse, read from the loss curves.

    The training loss barely falling means too little training (learning rate, epochs); the
    training loss falling while the dev loss does not means the encoder's features do not carry
    the signal at this size, which a recipe change of the fine-tuning cannot fix.
    """
    train = [float(h["train_loss"]) for h in history if h.get("train_loss") is not None]
    fell = len(train) >= 2 and train[-1] < 0.8 * train[0]
    if fell:
        return ("the training loss fell but the dev loss did not: the encoder's features do "
                "not separate the classes; pretrain longer or use a larger pretrained model"
                + (", or lower finetune.learning_rate" if method == "full"
                   else ", or try method: full"))
    more = ", or train the whole model (method: full)" if method == "lora" else ""
    return (f"the training loss barely fell: raise finetune.learning_rate (now {learning_rate:g}) "
            f"or finetune.epochs (now {epochs}){more}")
