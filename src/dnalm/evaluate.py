"""Evaluation against labels: how well scores separate labelled variants.

Users compare models on labelled variants (ClinVar pathogenic against gnomAD common, causal
against matched controls, as TraitGym and the GPN papers do). This module joins score tables —
zero-shot (``results/scores/...``) and fine-tuned effects (``results/effects/...``) — to labels
and writes, per model x score column x stratum: n, AUROC and AUPRC (binary labels) or Spearman's
rho (quantitative labels), each with a seeded percentile bootstrap interval, beside the chance
level, so a number is never read without its yardstick.

* **Labels** come from the variant file that was scored (an INFO field of the VCF, a column of
  the table), read by :func:`dnalm.variants.read_variants` in the same pass that numbers the
  records, so they join the scores on ``(record, alt)`` exactly, multi-allelic records included;
  or from a separate table joined on ``contig,pos,ref,alt``.
* **Direction**: what counts as "more likely positive". A zero-shot masked-marginal score is
  log p(alt) - log p(ref), LOWER for a more damaging allele, so the predictor is ``-score``
  (``lower``); a fine-tuned effect is a change in either direction, so ``|score|`` (``abs``);
  ``higher`` takes the score as it is. The direction used is a column of the output.
* **Nothing silently dropped**: labelled variants without a score are counted (``n_unscored``,
  with the reasons), as are scored ones without a label (``n_unlabelled``).

The bootstrap is vectorised: each resample is a row of draw counts per variant, and the metrics
are computed for all rows at once from one sort of the scores (AUROC by the Mann-Whitney count,
average precision from cumulative counts per threshold, Spearman from weighted ranks), so 1000
resamples of 20,000 variants take about a second. The point estimates are scikit-learn's and
scipy's; ``tests/test_evaluate.py`` holds the vectorised ones equal to them on resampled
vectors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dnalm.errors import ConfigError, InputFormatError

log = logging.getLogger(__name__)

DIRECTIONS = ("lower", "higher", "abs")
KINDS = ("zero-shot", "effects")
KEY = ["record", "alt"]
SITE = ["contig", "pos", "ref", "alt"]
ALL = "(all)"
MISSING_STRATUM = "(missing)"

#: Output columns, in order (one row per set x model x score x stratum).
COLUMNS = ["set", "model", "kind", "score", "direction", "strata", "stratum", "n", "n_positive",
           "n_negative", "n_unscored", "unscored_reasons", "n_unlabelled",
           "auroc", "auroc_low", "auroc_high", "auroc_chance",
           "auprc", "auprc_low", "auprc_high", "auprc_chance",
           "spearman", "spearman_low", "spearman_high",
           "n_bootstrap", "confidence", "seed", "note"]


@dataclass(frozen=True)
class EvaluationSettings:
    """How scores are evaluated (the ``evaluation`` section; ``sets``, ``models`` and ``runs``
    wire the workflow).

    ``zero_shot_direction``/``effects_direction``: the sign convention of each kind of table
    (see the module docstring). ``effects_scores``: the columns of an effects table evaluated
    (``score`` is the run's chosen class; ``delta_prob_<c>``/``delta_logodds_<c>`` per class).
    ``seed`` is the workflow's ``seed``.
    """

    n_bootstrap: int = 1000
    confidence: float = 0.95
    zero_shot_direction: str = "lower"
    effects_direction: str = "abs"
    effects_scores: tuple[str, ...] = ("score",)
    seed: int = 42

    def __post_init__(self) -> None:
        if self.n_bootstrap < 0:
            raise ConfigError(f"n_bootstrap must be >= 0, got {self.n_bootstrap}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must be between 0 and 1, got {self.confidence}")
        for name in ("zero_shot_direction", "effects_direction"):
            if getattr(self, name) not in DIRECTIONS:
                raise ConfigError(f"{name} {getattr(self, name)!r} is not one of "
                                  f"{', '.join(DIRECTIONS)}")
        if not self.effects_scores:
            raise ConfigError("effects_scores names no column")

    def direction(self, kind: str) -> str:
        return self.zero_shot_direction if kind == "zero-shot" else self.effects_direction

    def columns(self, kind: str) -> tuple[str, ...]:
        return ("score",) if kind == "zero-shot" else self.effects_scores


def evaluation_settings(section: Mapping[str, Any] | None, *, seed: int = 42
                        ) -> EvaluationSettings:
    """``EvaluationSettings`` from the ``evaluation`` section."""
    from dnalm.config import settings_from

    return settings_from(EvaluationSettings, section, where="evaluation",
                         ignore=("sets", "models", "runs"), seed=seed)


@dataclass(frozen=True)
class LabelSpec:
    """Where a set's labels are: an INFO field (``info``) of the scored VCF, a ``column`` of the
    scored table or of a separate ``table`` (joined on contig,pos,ref,alt). ``positive``: the
    label values counted positive (every other value is negative); empty for a quantitative
    (numeric) label, evaluated by Spearman's rho. ``strata``: an INFO field or column whose
    values split the set (metrics overall and per value)."""

    info: str | None = None
    column: str | None = None
    table: str | None = None
    positive: tuple[str, ...] = ()
    strata: str | None = None

    def __post_init__(self) -> None:
        if (self.info is None) == (self.column is None):
            raise ConfigError("name exactly one of info (a VCF INFO field) or column "
                              "(a table column) for the label")
        if self.table and self.info:
            raise ConfigError("a label table is read by column, not info")

    @property
    def field(self) -> str:
        return self.info or self.column or ""

    @property
    def binary(self) -> bool:
        return bool(self.positive)


def label_spec(label: Mapping[str, Any], strata: str | None = None, *, where: str) -> LabelSpec:
    """``LabelSpec`` from a set's ``label`` mapping (``positive``: one value or a list)."""
    unknown = sorted(set(label) - {"info", "column", "table", "positive"})
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}", where=where)
    positive = label.get("positive")
    if positive is None:
        positive = ()
    elif isinstance(positive, (list, tuple)):
        positive = tuple(str(v) for v in positive)
    else:
        positive = (str(positive),)
    try:
        return LabelSpec(info=label.get("info"), column=label.get("column"),
                         table=label.get("table"), positive=positive, strata=strata)
    except ConfigError as exc:
        raise ConfigError(exc.reason, where=where) from None


@dataclass(frozen=True)
class ScoreTable:
    """One scored table: its name in the output (a model, or task/run), path and kind."""

    name: str
    path: str
    kind: str = "zero-shot"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"score table kind {self.kind!r} is not one of {', '.join(KINDS)}")


# --- labels ---------------------------------------------------------------------------------


def read_labels(variants: str | Path | None, spec: LabelSpec) -> pd.DataFrame:
    """The labelled rows: ``record, contig, pos, ref, alt, label, stratum``.

    From the scored variant file (rows numbered as scoring numbered them) or, with
    ``spec.table``, from a separate table (``record`` is then its row number, and rows join
    the scores on contig,pos,ref,alt).
    """
    from dnalm.variants import is_vcf, read_table, read_variants

    source = spec.table or variants
    if source is None:
        raise ConfigError("give the scored variant file or a label table")
    fields = [spec.field] + ([spec.strata] if spec.strata and spec.strata != spec.field else [])
    if spec.table:
        frame = _with_field_check(read_table, source, fields)
    else:
        if spec.info and not is_vcf(source):
            raise ConfigError(f"label info {spec.info!r} needs a VCF; name a column of a table",
                              where=str(source))
        if spec.column and is_vcf(source):
            raise ConfigError(f"label column {spec.column!r}: a VCF has INFO fields; use info",
                              where=str(source))
        frame = _with_field_check(read_variants, source, fields)
        if is_vcf(source):
            _check_info_declared(source, [f for f in fields if frame[f].isna().all()])
    frame = frame.rename(columns={spec.field: "label"})
    frame["stratum"] = frame[spec.strata if spec.strata != spec.field else "label"] \
        if spec.strata else ALL
    frame["alt"] = frame["alt"].astype(str).str.upper()
    frame["ref"] = frame["ref"].astype(str).str.upper()
    return frame[["record", "contig", "pos", "ref", "alt", "label", "stratum"]]


def _with_field_check(reader, source, fields: list[str]) -> pd.DataFrame:
    try:
        return reader(source, fields)
    except InputFormatError as exc:
        if "missing column" in exc.reason:
            raise InputFormatError(f"{exc.reason}: the label/strata column(s) must be in the "
                                   "table", where=str(source)) from None
        raise


def _check_info_declared(path: str | Path, fields: list[str]) -> None:
    """An INFO field neither declared nor set on any record is a misspelling: say so."""
    import pysam

    if not fields:
        return
    try:
        with pysam.VariantFile(str(path)) as vcf:
            declared = set(vcf.header.info)
    except (OSError, ValueError, NotImplementedError):
        return  # plain gzip: read_vcf read it; undeclared fields are caught below
    missing = [f for f in fields if f not in declared]
    if missing:
        raise InputFormatError(f"no INFO field {', '.join(missing)} in the header (declared: "
                               f"{', '.join(sorted(declared)) or 'none'})", where=str(path))


def label_values(labels: pd.Series, spec: LabelSpec, *, where: str) -> pd.Series:
    """Labels as 1/0 (binary: in ``positive`` or not) or floats (quantitative); NaN where the
    variant has no label."""
    missing = labels.isna() | labels.astype(str).isin(["", ".", "nan", "None"])
    if spec.binary:
        text = labels.astype(str)
        positive = text.isin(spec.positive)
        numeric = pd.to_numeric(labels, errors="coerce")
        wanted = pd.to_numeric(pd.Series(spec.positive), errors="coerce").dropna()
        if len(wanted):  # 1 and 1.0 are the same label
            positive |= numeric.isin(wanted.to_numpy())
        return positive.astype(float).mask(missing)
    numeric = pd.to_numeric(labels.mask(missing), errors="coerce")
    bad = numeric.isna() & ~missing
    if bad.any():
        example = labels[bad].iloc[0]
        raise InputFormatError(f"label {example!r} is not a number: name the positive "
                               "value(s) of a binary label (positive: in the config, "
                               "--positive on the command line)", where=where)
    return numeric


# --- joining --------------------------------------------------------------------------------


def join_scores(labels: pd.DataFrame, scores: pd.DataFrame, columns: Sequence[str], *,
                by_site: bool, where: str) -> pd.DataFrame:
    """Every labelled or scored row once, with the label, stratum, ``reason`` and the score
    ``columns`` (NaN where not scored; ``reason`` says why, or "not in score table")."""
    missing = [c for c in columns if c not in scores.columns]
    if missing:
        have = [c for c in scores.columns if c not in (*KEY, "contig", "pos", "ref", "id")]
        raise InputFormatError(f"no score column {', '.join(missing)} (columns: "
                               f"{', '.join(have)})", where=where)
    scores = scores.copy()
    scores["alt"] = scores["alt"].astype(str).str.upper()
    if "reason" not in scores.columns:
        scores["reason"] = ""
    scores["reason"] = scores["reason"].fillna("")
    if by_site:
        scores["ref"] = scores["ref"].astype(str).str.upper()
        scores["_site"] = _site_key(scores)
        labels = labels.assign(_site=_site_key(labels))
        on = ["_site"]
    else:
        on = KEY
    keep = [*on, "reason", *columns] + ([] if by_site else ["pos"])
    joined = labels.merge(scores[keep], on=on, how="outer", suffixes=("", "_scores"),
                          indicator=True)
    if not (joined["_merge"] == "both").any():
        raise InputFormatError(
            "no scored variant has a label: is this the variant set that was scored?"
            + (" (joined on contig,pos,ref,alt)" if by_site else " (joined on record, alt)"),
            where=where)
    if not by_site:
        both = joined[joined["_merge"] == "both"]
        moved = both[both["pos"] != both["pos_scores"]]
        if len(moved):
            row = moved.iloc[0]
            raise InputFormatError(
                f"record {int(row['record'])} is at position {int(row['pos'])} in the labels "
                f"but {int(row['pos_scores'])} in the scores: these scores are of another "
                "variant file", where=where)
        joined = joined.drop(columns=["pos_scores"])
    absent = joined["_merge"] == "left_only"
    joined.loc[absent, "reason"] = "not in score table"
    return joined.drop(columns=["_merge"])


def _site_key(frame: pd.DataFrame) -> pd.Series:
    contig = frame["contig"].astype(str).str.replace(r"^chr", "", regex=True)
    return (contig + ":" + frame["pos"].astype("int64").astype(str) + ":"
            + frame["ref"].astype(str) + ":" + frame["alt"].astype(str))


# --- metrics --------------------------------------------------------------------------------


def predictor(score: np.ndarray, direction: str) -> np.ndarray:
    """Higher = more likely positive: ``-score`` (lower), ``score`` (higher), ``|score|``."""
    if direction == "lower":
        return -score
    if direction == "abs":
        return np.abs(score)
    if direction == "higher":
        return score
    raise ConfigError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")


def _groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort once: the ascending order, the start of each run of tied values in it, and each
    sorted element's run number."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    return order, np.flatnonzero(new), np.cumsum(new) - 1


def _weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones((1, n)) if weights is None else np.atleast_2d(weights).astype(float)


def _class_sums(pred: np.ndarray, y: np.ndarray, weights: np.ndarray | None):
    """Per run of tied predictions (ascending), the weight of positives and of negatives in each
    row of ``weights`` (B x G each)."""
    order, starts, _ = _groups(pred)
    w = _weights(weights, len(pred))[:, order]
    positive = np.asarray(y, dtype=bool)[order]
    return (np.add.reduceat(w * positive, starts, axis=1),
            np.add.reduceat(w * ~positive, starts, axis=1))


def auroc_rows(pred: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
               ) -> np.ndarray:
    """AUROC of ``pred`` against 0/1 ``y`` for each row of ``weights`` (how many times each
    variant is drawn into a bootstrap resample; None: once each). The Mann-Whitney count with
    ties as half: per run of tied scores, positives x (negatives below + half the tied ones) —
    scikit-learn's ``roc_auc_score`` on the resampled vectors, from one sort for all resamples.
    NaN for a row of one class."""
    pos, neg = _class_sums(pred, y, weights)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + neg / 2)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def average_precision_rows(pred: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
                           ) -> np.ndarray:
    """Average precision (scikit-learn's ``average_precision_score``: the sum over thresholds of
    the recall step times the precision at that threshold) per row of ``weights``: thresholds
    are the runs of tied scores, from the highest down. NaN for a row without positives."""
    pos, neg = _class_sums(pred, y, weights)
    called_pos = np.cumsum(pos[:, ::-1], axis=1)[:, ::-1]   # at or above each threshold
    called = called_pos + np.cumsum(neg[:, ::-1], axis=1)[:, ::-1]
    n_pos = pos.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(called > 0, called_pos / called, 0.0)
        ap = (pos * precision).sum(axis=1) / n_pos
    return np.where(n_pos > 0, ap, np.nan)


def _weighted_ranks(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks of each variant within each weighted row (ties share their mean rank)."""
    order, starts, run = _groups(values)
    counts = np.add.reduceat(w[:, order], starts, axis=1)
    mid = np.cumsum(counts, axis=1) - (counts - 1) / 2
    ranks = np.empty_like(w)
    ranks[:, order] = mid[:, run]
    return ranks


def spearman_rows(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
                  ) -> np.ndarray:
    """Spearman's rho (the Pearson correlation of average ranks) per row of ``weights``."""
    w = _weights(weights, len(x))
    rx, ry = _weighted_ranks(np.asarray(x), w), _weighted_ranks(np.asarray(y), w)
    total = w.sum(axis=1, keepdims=True)
    rx = rx - (w * rx).sum(axis=1, keepdims=True) / total
    ry = ry - (w * ry).sum(axis=1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * rx * ry).sum(axis=1) / np.sqrt((w * rx * rx).sum(axis=1)
                                                   * (w * ry * ry).sum(axis=1))


#: Resample weights are drawn this many cells at a time (each block array ~32 MB).
_CELLS_PER_BLOCK = 4_000_000


def resample_weights(n: int, n_bootstrap: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap resamples as weights: row b counts how often each of the ``n``
    variants is drawn (with replacement) into resample b. Seeded: the same seed draws the same
    resamples, so models scored on the same variants are compared on the same resamples."""
    rng = np.random.default_rng(seed)
    block = max(1, _CELLS_PER_BLOCK // max(n, 1))
    for start in range(0, n_bootstrap, block):
        rows = min(block, n_bootstrap - start)
        drawn = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
        yield np.bincount(drawn.ravel(), minlength=rows * n).reshape(rows, n)


def bootstrap(metric, pred: np.ndarray, y: np.ndarray, *, n_bootstrap: int, seed: int,
              confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``metric`` over ``n_bootstrap`` resamples of the variants.
    Resamples where the metric is undefined (one class) are left out; (nan, nan) when none
    is defined."""
    n = len(pred)
    if n_bootstrap == 0 or n < 2:
        return math.nan, math.nan
    values = np.concatenate([metric(pred, y, w)
                             for w in resample_weights(n, n_bootstrap, seed)])
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def binary_metrics(pred: np.ndarray, y: np.ndarray, settings: EvaluationSettings
                   ) -> dict[str, float]:
    """AUROC and AUPRC (average precision) with intervals and chance levels; NaN when ``y`` has
    one class only."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = {"auroc_chance": 0.5, "auprc_chance": float(y.mean()) if len(y) else math.nan}
    if len(np.unique(y)) < 2:
        return {**out, **dict.fromkeys(("auroc", "auroc_low", "auroc_high", "auprc",
                                        "auprc_low", "auprc_high"), math.nan)}
    boot = {"n_bootstrap": settings.n_bootstrap, "seed": settings.seed,
            "confidence": settings.confidence}
    out["auroc"] = float(roc_auc_score(y, pred))
    out["auroc_low"], out["auroc_high"] = bootstrap(auroc_rows, pred, y, **boot)
    out["auprc"] = float(average_precision_score(y, pred))
    out["auprc_low"], out["auprc_high"] = bootstrap(average_precision_rows, pred, y, **boot)
    return out


def quantitative_metrics(pred: np.ndarray, y: np.ndarray, settings: EvaluationSettings
                         ) -> dict[str, float]:
    """Spearman's rho of predictor and label (scipy's), with its interval."""
    from scipy.stats import spearmanr

    if len(y) < 3 or np.ptp(y) == 0 or np.ptp(pred) == 0:
        return {"spearman": math.nan, "spearman_low": math.nan, "spearman_high": math.nan}
    rho = float(spearmanr(pred, y).statistic)
    low, high = bootstrap(spearman_rows, pred, y, n_bootstrap=settings.n_bootstrap,
                          seed=settings.seed, confidence=settings.confidence)
    return {"spearman": rho, "spearman_low": low, "spearman_high": high}


# --- one set --------------------------------------------------------------------------------


def _reasons(reasons: pd.Series) -> str:
    counts = reasons.value_counts()
    return "; ".join(f"{reason}: {count}" for reason, count in counts.items())


def evaluate(labels: pd.DataFrame, tables: Sequence[ScoreTable], spec: LabelSpec, *,
             settings: EvaluationSettings, set_name: str = "set", where: str = "labels",
             curves: dict | None = None) -> pd.DataFrame:
    """One row per score table x score column x stratum (overall first); see :data:`COLUMNS`.

    ``labels`` is :func:`read_labels`' frame. ``curves``, when given, receives the overall
    (predictor, label) vectors per (model, score) for the picture.
    """
    where = spec.table or where
    labels = labels.copy()
    labels["y"] = label_values(labels["label"], spec, where=where)
    labelled = labels["y"].notna()
    if not labelled.any():
        raise InputFormatError(f"no variant has a label in {spec.field!r}", where=where)
    if spec.binary:
        classes = set(labels.loc[labelled, "y"])
        if len(classes) < 2:
            which = "positive" if classes == {1.0} else "negative"
            raise InputFormatError(
                f"every labelled variant is {which} ({int(labelled.sum())} with "
                f"{spec.field} {'in' if which == 'positive' else 'not in'} "
                f"{', '.join(spec.positive)}): AUROC and AUPRC are undefined with one class",
                where=where)
    labels["stratum"] = labels["stratum"].where(labels["stratum"].notna(), MISSING_STRATUM)
    labels["stratum"] = labels["stratum"].astype(str)
    rows = []
    for table in tables:
        scores = pd.read_parquet(table.path)
        columns = settings.columns(table.kind)
        joined = join_scores(labels, scores, columns, by_site=bool(spec.table),
                             where=table.path)
        direction = settings.direction(table.kind)
        for column in columns:
            groups = [(ALL, joined)]
            if spec.strata:
                groups += [(s, g) for s, g in joined.groupby("stratum", sort=True)
                           if isinstance(s, str)]
            for stratum, group in groups:
                row = _group_row(group, column, direction, spec, settings)
                rows.append({"set": set_name, "model": table.name, "kind": table.kind,
                             "score": column, "direction": direction,
                             "strata": spec.strata or "", "stratum": stratum, **row})
                if curves is not None and stratum == ALL:
                    ok = group["y"].notna() & group[column].notna()
                    curves[(table.name, column)] = (
                        predictor(group.loc[ok, column].to_numpy(float), direction),
                        group.loc[ok, "y"].to_numpy(float))
            log.info("%s: %s %s evaluated (%s)", set_name, table.name, ", ".join(columns),
                     direction)
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def _group_row(group: pd.DataFrame, column: str, direction: str, spec: LabelSpec,
               settings: EvaluationSettings) -> dict[str, Any]:
    has_label = group["y"].notna()
    scored = group[column].notna()
    use = group[has_label & scored]
    unscored = group[has_label & ~scored]
    pred = predictor(use[column].to_numpy(float), direction)
    y = use["y"].to_numpy(float)
    row: dict[str, Any] = {
        "n": len(use), "n_unscored": len(unscored),
        "unscored_reasons": _reasons(unscored["reason"].replace("", "no score")),
        "n_unlabelled": int((~has_label & scored).sum()),
        "n_bootstrap": settings.n_bootstrap, "confidence": settings.confidence,
        "seed": settings.seed, "note": "",
    }
    if spec.binary:
        row["n_positive"] = int(y.sum())
        row["n_negative"] = len(y) - int(y.sum())
        row.update(binary_metrics(pred, y.astype(int), settings))
        if len(use) and row["n_positive"] in (0, len(use)):
            row["note"] = "one class only: AUROC and AUPRC undefined"
    else:
        row.update(quantitative_metrics(pred, y, settings))
        if len(use) < 3:
            row["note"] = "fewer than 3 variants: Spearman undefined"
    if not len(use):
        row["note"] = "no labelled variant scored"
    return row


def evaluate_set(variants: str | Path | None, tables: Sequence[ScoreTable], spec: LabelSpec,
                 out_parquet: str | Path, *, settings: EvaluationSettings,
                 set_name: str = "set", out_html: str | Path | None = None,
                 out_png: str | Path | None = None) -> pd.DataFrame:
    """Read the labels, evaluate every table, write the Parquet table (and the HTML page and
    the curves picture when asked), each atomically."""
    import pyarrow as pa

    from dnalm.io import write_table

    if not tables:
        raise ConfigError("no score table to evaluate")
    for table in tables:
        if not Path(table.path).is_file():
            raise InputFormatError("score table not found", where=table.path)
    labels = read_labels(variants, spec)
    curves: dict = {}
    frame = evaluate(labels, tables, spec, settings=settings, set_name=set_name,
                     where=str(variants), curves=curves)
    write_table(pa.Table.from_pandas(frame, preserve_index=False), out_parquet)
    if out_html:
        write_html(frame, out_html, spec=spec, settings=settings, set_name=set_name)
    if out_png:
        plot_curves(curves, out_png, binary=spec.binary, set_name=set_name)
    overall = frame[frame["stratum"] == ALL]
    for row in overall.itertuples(index=False):
        metric = (f"AUROC {row.auroc:.3f} [{row.auroc_low:.3f}, {row.auroc_high:.3f}]"
                  if spec.binary else f"Spearman {row.spearman:.3f}")
        log.info("%s %s %s (%s): n %d, %s, %d unscored", set_name, row.model, row.score,
                 row.direction, row.n, metric, row.n_unscored)
    return frame


# --- report ---------------------------------------------------------------------------------


def _interval(low: float, high: float) -> str:
    if pd.isna(low) or pd.isna(high):
        return ""
    return f"{low:.3f} – {high:.3f}"


def direction_text(direction: str) -> str:
    return {"lower": "−score (lower = more likely positive)",
            "higher": "score (higher = more likely positive)",
            "abs": "|score| (any change)"}[direction]


def write_html(frame: pd.DataFrame, out: str | Path, *, spec: LabelSpec,
               settings: EvaluationSettings, set_name: str) -> Path:
    """The table for ``snakemake --report``, with the sign convention and chance levels."""
    from dnalm.report import table_html

    shown = pd.DataFrame({
        "model": frame["model"], "score": frame["score"],
        "predictor": frame["direction"].map(direction_text),
        "stratum": frame["stratum"], "n": frame["n"],
    })
    pct = round(settings.confidence * 100)
    if spec.binary:
        shown["positive"] = frame["n_positive"]
        shown["AUROC"] = frame["auroc"]
        shown[f"AUROC {pct}% CI"] = [_interval(a, b) for a, b in
                                     zip(frame["auroc_low"], frame["auroc_high"], strict=True)]
        shown["AUROC chance"] = frame["auroc_chance"]
        shown["AUPRC"] = frame["auprc"]
        shown[f"AUPRC {pct}% CI"] = [_interval(a, b) for a, b in
                                     zip(frame["auprc_low"], frame["auprc_high"], strict=True)]
        shown["AUPRC chance"] = frame["auprc_chance"]
        label = f"{spec.field} in {{{', '.join(spec.positive)}}} is positive"
    else:
        shown["Spearman"] = frame["spearman"]
        shown[f"Spearman {pct}% CI"] = [
            _interval(a, b) for a, b in zip(frame["spearman_low"], frame["spearman_high"],
                                            strict=True)]
        label = f"{spec.field} is a quantitative label (Spearman's rho)"
    shown["unscored"] = frame["n_unscored"]
    shown["why unscored"] = frame["unscored_reasons"]
    shown["note"] = frame["note"]
    note = (f"Labels: {label}. Sign convention: a zero-shot score is log p(alt) − log p(ref) "
            "of masked marginals, lower for an allele the model finds less likely (more "
            "damaging), so its predictor is −score; fine-tuned effects (alt − ref) are read "
            "as |Δ| unless configured; the predictor column says which was used. Chance: "
            "AUROC 0.5, AUPRC the positive fraction (AUPRC chance). Intervals: "
            f"{pct}% percentile bootstrap, {settings.n_bootstrap} resamples, seed "
            f"{settings.seed}. Labelled variants without a score are not in n but counted "
            "(unscored, with the reasons).")
    return table_html(shown, out, title=f"Evaluation: {set_name}", note=note,
                      float_format="{:.3f}")


def plot_curves(curves: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
                out: str | Path, *, binary: bool, set_name: str) -> Path:
    """ROC and precision-recall curves (binary labels; chance drawn dashed) or predictor
    against label (quantitative), one line per model x score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    from dnalm.io import atomic_file

    ncols = 2 if binary else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.8), squeeze=False)
    axes = axes[0]
    base_rate = None
    for (model, column), (pred, y) in curves.items():
        name = model if column == "score" else f"{model} {column}"
        if binary:
            if len(np.unique(y)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y, pred)
            precision, recall, _ = precision_recall_curve(y, pred)
            axes[0].plot(fpr, tpr, label=f"{name} ({roc_auc_score(y, pred):.3f})")
            axes[1].plot(recall, precision, drawstyle="steps-post",
                         label=f"{name} ({average_precision_score(y, pred):.3f})")
            base_rate = float(np.mean(y))
        else:
            axes[0].scatter(pred, y, s=10, alpha=0.6, label=name)
    if binary:
        axes[0].plot([0, 1], [0, 1], "k--", lw=0.8, label="chance (0.5)")
        axes[0].set(xlabel="false positive rate", ylabel="true positive rate",
                    title="ROC (legend: AUROC)")
        if base_rate is not None:
            axes[1].axhline(base_rate, color="k", ls="--", lw=0.8,
                            label=f"chance ({base_rate:.2f})")
        axes[1].set(xlabel="recall", ylabel="precision", ylim=(0, 1.02),
                    title="precision-recall (legend: AUPRC)")
    else:
        axes[0].set(xlabel="predictor", ylabel="label")
    for ax in axes:
        if ax.has_data():
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(set_name, fontsize=11)
    fig.tight_layout()
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(out)
