"""Evaluation against labels (dnalm.evaluate, ``dnalm evaluate``): the vectorised metrics equal
scikit-learn's and scipy's, intervals are seeded and cover the estimate, chance is chance, the
sign convention is applied, labels join the scores by record and ALT (multi-allelic records
split, unscored variants counted), strata, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from dnalm.cli import main
from dnalm.errors import DnalmError
from dnalm.evaluate import (
    ALL,
    EvaluationSettings,
    LabelSpec,
    ScoreTable,
    auroc_rows,
    average_precision_rows,
    binary_metrics,
    bootstrap,
    evaluate,
    evaluate_set,
    label_spec,
    quantitative_metrics,
    read_labels,
    resample_weights,
    spearman_rows,
)
from dnalm.variants import read_variants, read_vcf

FAST = EvaluationSettings(n_bootstrap=200)

HEADER = """##fileformat=VCFv4.2
##INFO=<ID=LABEL,Number=A,Type=String,Description="label per ALT">
##INFO=<ID=CSQ,Number=1,Type=String,Description="consequence">
##INFO=<ID=EFFECT,Number=1,Type=Float,Description="measured effect">
##contig=<ID=chr1,length=100000>
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO
"""


def write_vcf(path: Path, records: list[tuple[int, str, str, str]]) -> Path:
    """(pos, ref, alt, info) rows on chr1."""
    lines = [f"chr1\t{pos}\tv{i}\t{ref}\t{alt}\t.\t.\t{info}"
             for i, (pos, ref, alt, info) in enumerate(records)]
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return path


def scores_for(vcf: Path, values: dict[tuple[int, str], float], out: Path,
               reasons: dict[tuple[int, str], str] | None = None, absent: int | None = None
               ) -> Path:
    """A zero-shot score table as scoring writes it: one row per (record, ALT) of the VCF
    (record ``absent`` left out, as if no region job had scored it)."""
    table = read_vcf(vcf)
    table = table[table["record"] != absent].reset_index(drop=True)
    table["score"] = [values.get((r, a), np.nan) for r, a in zip(table["record"], table["alt"],
                                                                strict=True)]
    table["reason"] = [(reasons or {}).get((r, a), "") for r, a in
                       zip(table["record"], table["alt"], strict=True)]
    table.to_parquet(out)
    return out


def _random(n: int, seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 6, n).astype(float) if ties else rng.normal(size=n)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    return pred, y


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_and_auprc_equal_scikit_learn(ties: bool) -> None:
    """On the vectors, and on every bootstrap resample (weights = draw counts) against
    scikit-learn on the resampled vectors written out."""
    for seed, n in enumerate((7, 40, 500)):
        pred, y = _random(n, seed, ties)
        assert auroc_rows(pred, y)[0] == pytest.approx(roc_auc_score(y, pred), abs=1e-12)
        assert average_precision_rows(pred, y)[0] == pytest.approx(
            average_precision_score(y, pred), abs=1e-12)
        weights = next(resample_weights(n, 20, seed))
        aurocs, aps = auroc_rows(pred, y, weights), average_precision_rows(pred, y, weights)
        for row, w in enumerate(weights):
            idx = np.repeat(np.arange(n), w)
            if len(set(y[idx])) == 2:
                assert aurocs[row] == pytest.approx(roc_auc_score(y[idx], pred[idx]), abs=1e-12)
                assert aps[row] == pytest.approx(average_precision_score(y[idx], pred[idx]),
                                                 abs=1e-12)
            else:
                assert np.isnan(aurocs[row])


def test_spearman_equals_scipy() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, 60).astype(float), rng.normal(size=60)
    assert spearman_rows(x, y)[0] == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    weights = next(resample_weights(60, 5, 1))
    for row, w in zip(spearman_rows(x, y, weights), weights, strict=True):
        idx = np.repeat(np.arange(60), w)
        assert row == pytest.approx(spearmanr(x[idx], y[idx]).statistic, abs=1e-9)


def test_bootstrap_intervals_cover_the_estimate_and_are_seeded() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    pred = y + rng.normal(scale=1.5, size=300)
    metrics = binary_metrics(pred, y, EvaluationSettings(n_bootstrap=500, seed=7))
    for name in ("auroc", "auprc"):
        assert metrics[f"{name}_low"] < metrics[name] < metrics[f"{name}_high"]
    assert 0.05 < metrics["auroc_high"] - metrics["auroc_low"] < 0.2
    same = bootstrap(auroc_rows, pred, y, n_bootstrap=500, seed=7)
    assert same == (metrics["auroc_low"], metrics["auroc_high"])
    assert bootstrap(auroc_rows, pred, y, n_bootstrap=500, seed=8) != same
    rho = quantitative_metrics(pred, y + rng.normal(size=300), FAST)
    assert rho["spearman_low"] < rho["spearman"] < rho["spearman_high"]


def test_a_random_score_is_at_chance_on_a_large_set() -> None:
    rng = np.random.default_rng(11)
    n = 20_000
    y = (rng.random(n) < 0.2).astype(int)
    metrics = binary_metrics(rng.normal(size=n), y, FAST)
    assert metrics["auroc"] == pytest.approx(0.5, abs=0.03)
    assert metrics["auroc_chance"] == 0.5
    assert metrics["auprc_chance"] == pytest.approx(y.mean())
    assert metrics["auprc"] == pytest.approx(y.mean(), abs=0.03)
    assert metrics["auroc_low"] < 0.5 + 0.03 and metrics["auroc_high"] > 0.5 - 0.03


def _labelled_set(tmp_path: Path) -> tuple[Path, Path]:
    """12 records, one multi-allelic (two ALTs, two labels), one unlabelled; pathogenic ones
    score low (as masked marginals do), two labelled ALTs are not scored."""
    records = []
    for i in range(10):
        label = "Pathogenic" if i % 2 else "Benign"
        csq = "missense" if i < 6 else "intron"
        records.append((100 * (i + 1), "A", "G", f"LABEL={label};CSQ={csq};EFFECT={i}"))
    records.append((2000, "C", "A,T", "LABEL=Pathogenic,Benign;CSQ=missense;EFFECT=3.5"))
    records.append((2100, "G", "C", "CSQ=intron"))   # no label
    vcf = write_vcf(tmp_path / "set.vcf", records)
    values = {(i, "G"): (-3.0 - i if i % 2 else 0.5 + i / 10) for i in range(10)}
    values.update({(10, "A"): -4.0, (11, "C"): -1.0})
    reasons = {(10, "T"): "REF mismatch: genome has G"}
    return vcf, scores_for(vcf, values, tmp_path / "scores.parquet", reasons, absent=2)


def test_labels_join_by_record_and_alt_and_unscored_variants_are_counted(tmp_path: Path) -> None:
    vcf, scores = _labelled_set(tmp_path)
    spec = LabelSpec(info="LABEL", positive=("Pathogenic",))
    labels = read_labels(vcf, spec)
    assert len(labels) == 13   # 10 + 2 ALTs + 1
    assert list(labels.loc[labels["record"] == 10, "label"]) == ["Pathogenic", "Benign"]
    frame = evaluate(labels, [ScoreTable("m", str(scores))], spec, settings=FAST)
    (row,) = frame.to_dict("records")
    assert (row["n"], row["n_positive"], row["n_negative"]) == (10, 6, 4)
    assert row["n_unscored"] == 2 and row["n_unlabelled"] == 1
    assert "not in score table: 1" in row["unscored_reasons"]
    assert "REF mismatch: genome has G: 1" in row["unscored_reasons"]
    assert row["direction"] == "lower" and row["auroc"] == 1.0
    assert row["auprc_chance"] == pytest.approx(0.6)


def test_labels_are_numbered_as_scoring_numbers_the_variants(tmp_path: Path) -> None:
    """Labels are read with their INFO fields; scoring reads the same file without: both give
    the same (record, ALT) rows, multi-allelic records split alike."""
    vcf, _ = _labelled_set(tmp_path)
    labels = read_labels(vcf, LabelSpec(info="LABEL", positive=("Pathogenic",)))
    scored = read_variants(vcf)
    assert labels[["record", "pos", "alt"]].values.tolist() == \
        scored[["record", "pos", "alt"]].values.tolist()


def test_direction_flips_the_auroc(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    score = y + rng.normal(size=200)
    lower = binary_metrics(-score, y, FAST)["auroc"]
    higher = binary_metrics(score, y, FAST)["auroc"]
    assert lower == pytest.approx(1 - higher)
    vcf, scores = _labelled_set(tmp_path)
    spec = LabelSpec(info="LABEL", positive=("Pathogenic",))
    labels = read_labels(vcf, spec)
    frames = {d: evaluate(labels, [ScoreTable("m", str(scores))], spec,
                          settings=EvaluationSettings(n_bootstrap=50, zero_shot_direction=d))
              for d in ("lower", "higher", "abs")}
    assert frames["higher"]["auroc"][0] == pytest.approx(1 - frames["lower"]["auroc"][0])
    assert list(frames["abs"]["direction"]) == ["abs"]


def test_metrics_per_stratum(tmp_path: Path) -> None:
    vcf, scores = _labelled_set(tmp_path)
    spec = LabelSpec(info="LABEL", positive=("Pathogenic",), strata="CSQ")
    frame = evaluate(read_labels(vcf, spec), [ScoreTable("m", str(scores))], spec,
                     settings=FAST)
    assert list(frame["stratum"]) == [ALL, "intron", "missense"]
    assert set(frame["strata"]) == {"CSQ"}
    by = frame.set_index("stratum")
    assert by.loc["missense", "n"] + by.loc["intron", "n"] == by.loc[ALL, "n"]
    assert by.loc["intron", "n_unlabelled"] == 1


def test_quantitative_label_gives_spearman(tmp_path: Path) -> None:
    vcf, scores = _labelled_set(tmp_path)
    spec = LabelSpec(info="EFFECT")
    frame = evaluate(read_labels(vcf, spec), [ScoreTable("m", str(scores))], spec,
                     settings=FAST)
    row = frame.iloc[0]
    assert np.isnan(row["auroc"]) and row["n"] == 10
    assert row["spearman_low"] <= row["spearman"] <= row["spearman_high"]


def test_label_table_joined_on_sites_and_effects_columns(tmp_path: Path) -> None:
    _, scores = _labelled_set(tmp_path)
    effects = pd.read_parquet(scores)
    effects["delta_prob_1"] = -effects["score"]
    effects.to_parquet(tmp_path / "effects.parquet")
    table = tmp_path / "labels.tsv"   # "1" for chr1: contig names match with or without chr
    table.write_text("contig\tpos\tref\talt\tclass\n1\t200\tA\tG\t1\n1\t300\tA\tG\t0\n"
                     "1\t400\tA\tG\t1\n1\t500\tA\tG\t0\n1\t9999\tA\tG\t1\n")
    spec = label_spec({"column": "class", "table": str(table), "positive": 1}, where="t")
    settings = EvaluationSettings(n_bootstrap=50, effects_scores=("score", "delta_prob_1"))
    effects_table = ScoreTable("t/r", str(tmp_path / "effects.parquet"), "effects")
    frame = evaluate(read_labels(None, spec), [effects_table], spec, settings=settings)
    assert list(frame["score"]) == ["score", "delta_prob_1"]
    assert set(frame["direction"]) == {"abs"} and set(frame["kind"]) == {"effects"}
    # 300 (record 2) and 9999 have no score; 8 scored ALTs have no label
    assert list(frame["n"]) == [3, 3] and list(frame["n_unscored"]) == [2, 2]
    assert list(frame["n_unlabelled"]) == [8, 8]


def test_outputs_written(tmp_path: Path) -> None:
    vcf, scores = _labelled_set(tmp_path)
    spec = LabelSpec(info="LABEL", positive=("Pathogenic",), strata="CSQ")
    out = tmp_path / "out"
    frame = evaluate_set(vcf, [ScoreTable("a", str(scores)), ScoreTable("b", str(scores))], spec,
                         out / "e.parquet", settings=FAST, set_name="s",
                         out_html=out / "e.html", out_png=out / "e.png")
    assert len(frame) == 6
    assert pd.read_parquet(out / "e.parquet").equals(frame)
    html = (out / "e.html").read_text()
    assert "−score" in html and "AUPRC chance" in html and "positive fraction" in html
    assert (out / "e.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["e.html", "e.parquet", "e.png"]


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vcf, scores = _labelled_set(tmp_path)
    out = tmp_path / "e.parquet"
    assert main(["evaluate", "--scores", str(scores), "--variants", str(vcf), "--label-info",
                 "LABEL", "--positive", "Pathogenic", "--out", str(out), "--n-bootstrap",
                 "50", "--curves", str(tmp_path / "c.png")]) == 0
    text = capsys.readouterr().out
    assert f"{tmp_path.name} score [lower]: n 10 (2 unscored), AUROC 1.000" in text
    assert pd.read_parquet(out)["model"].tolist() == [tmp_path.name]


@pytest.mark.parametrize(("args", "message"), [
    (["--label-info", "LABLE", "--positive", "Pathogenic"],
     "no INFO field LABLE in the header (declared: CSQ, EFFECT, LABEL)"),
    (["--label-info", "LABEL", "--positive", "Pathogenic", "--positive", "Benign"],
     "every labelled variant is positive (12 with LABEL in Pathogenic, Benign): AUROC and "
     "AUPRC are undefined with one class"),
    (["--label-info", "LABEL", "--positive", "Pathogenic", "--strata", "GENE"],
     "no INFO field GENE in the header"),
    (["--label-info", "LABEL"], "label 'Benign' is not a number"),
    (["--label-column", "LABEL", "--positive", "Pathogenic"],
     "label column 'LABEL': a VCF has INFO fields; use info"),
    (["--label-info", "LABEL", "--positive", "Pathogenic", "--effects-score", "delta_prob_9",
      "--effects", "{scores}"], "no score column delta_prob_9 (columns: score, reason)"),
    (["--label-info", "LABEL", "--positive", "Pathogenic", "--scores", "{other}"],
     "no scored variant has a label: is this the variant set that was scored?"),
    (["--label-info", "LABEL", "--positive", "Pathogenic", "--scores", "{moved}"],
     "record 0 is at position 100 in the labels but 150 in the scores"),
])
def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                             message: str) -> None:
    vcf, scores = _labelled_set(tmp_path)
    other = write_vcf(tmp_path / "other.vcf", [(5000 + i, "A", "C", "LABEL=Benign")
                                               for i in range(20)])
    other_scores = scores_for(other, {}, tmp_path / "other.parquet")
    other_scores = pd.read_parquet(other_scores)
    other_scores["record"] += 100   # records the labelled file does not have
    other_scores.to_parquet(tmp_path / "other.parquet")
    moved = pd.read_parquet(scores)
    moved.loc[0, "pos"] = 150
    moved.to_parquet(tmp_path / "moved.parquet")
    values = {"scores": str(scores), "other": str(tmp_path / "other.parquet"),
              "moved": str(tmp_path / "moved.parquet")}
    argv = [a.format(**values) for a in args]
    if "--scores" not in argv and "--effects" not in argv:
        argv += ["--scores", str(scores)]
    out = tmp_path / "e.parquet"
    assert main(["evaluate", "--variants", str(vcf), "--out", str(out), *argv]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("dnalm: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err and not out.exists()


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(DnalmError, match="zero_shot_direction 'down' is not one of"):
        EvaluationSettings(zero_shot_direction="down")
    with pytest.raises(DnalmError, match=r"evaluation\.sets\.x\.label: name exactly one of info"):
        label_spec({"info": "A", "column": "B"}, where="evaluation.sets.x.label")
    with pytest.raises(DnalmError, match="unknown key"):
        label_spec({"info": "A", "positve": "B"}, where="x")
