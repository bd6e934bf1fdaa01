"""`dnalm predict`: a fine-tuned run on the user's sequences equals the run rebuilt by hand.

LoRA runs are checked against transformers' ``AutoModelForSequenceClassification`` on the base
directory plus peft's ``PeftModel.from_pretrained`` on ``adapter/`` (no dnalm code), full runs
against ``model/`` loaded by transformers; tokens come from ``AutoTokenizer``. Long inputs are
checked window by window; a run with recurrent memory reads each window as its segments.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from dnalm.cli import main
from dnalm.errors import DnalmError
from dnalm.finetune import finetune, load_finetuned
from dnalm.finetune.predict import predict_file, predictions_report
from tests.conftest import write_fasta
from tests.scoring_utils import make_model, make_tokenizer

ROOM = 32  # content tokens of a 34-token input ([CLS] + 32 + [SEP])
MOTIF = "TATAAGGC"


def _random(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random character-level BERT and a labelled motif task (train/test CSVs)."""
    folder = tmp_path_factory.mktemp("predict")
    rng = random.Random(4)
    genome = write_fasta(folder / "g.fa", {"chrA": _random(rng, 3000)})
    pysam.faidx(str(genome))
    model = make_model(make_tokenizer("char", folder, genome), folder / "base", max_positions=40)
    rows = []
    for i in range(80):
        seq = _random(rng, 30)
        if i % 2:
            at = rng.randrange(0, 22)
            seq = seq[:at] + MOTIF + seq[at + 8 :]
        rows.append({"id": f"r{i}", "sequence": seq, "label": ["neg", "pos"][i % 2],
                     "value": float(seq.count("G"))})
    frame = pd.DataFrame(rows)
    frame.iloc[:60].to_csv(folder / "train.csv", index=False)
    frame.iloc[60:].to_csv(folder / "test.csv", index=False)
    return model


def _task(base: Path, **extra) -> dict:
    return {"name": "motif", "train": str(base.parent / "train.csv"),
            "test": str(base.parent / "test.csv"), **extra}


FAST = {"epochs": 2, "batch_size": 16, "max_length": 34, "threads": 1, "gpus": 0,
        "learning_rate": 0.01}


@pytest.fixture(scope="module")
def lora_run(base: Path) -> Path:
    out = base.parent / "runs" / "lora"
    finetune(_task(base), base, out, **FAST)
    return out


@pytest.fixture(scope="module")
def full_regression_run(base: Path) -> Path:
    out = base.parent / "runs" / "full"
    finetune(_task(base, problem="regression", label_column="value"), base, out,
             method="full", **FAST)
    return out


def _candidates(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    rng = random.Random(9)
    seqs = {"short": _random(rng, 20), "exact": _random(rng, ROOM), "long": _random(rng, 80),
            "motif": _random(rng, 5) + MOTIF + _random(rng, 10)}
    return write_fasta(tmp_path / "c.fa", seqs), seqs


def _by_hand_windows(ids: list[int], forward) -> tuple[np.ndarray, int]:
    """Token-weighted mean of the outputs of consecutive 32-token windows, and their count."""
    pieces = [ids[i : i + ROOM] for i in range(0, len(ids), ROOM)]
    outs = [forward([2, *p, 3]) * len(p) for p in pieces]
    return sum(outs) / len(ids), len(pieces)


def test_lora_run_equals_base_plus_adapter_by_hand(base: Path, lora_run: Path,
                                                   tmp_path: Path) -> None:
    from peft import PeftModel

    fasta, seqs = _candidates(tmp_path)
    out = tmp_path / "pred.parquet"
    predict_file(lora_run, fasta, out, gpus=0)
    got = pd.read_parquet(out)
    classifier = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    model = PeftModel.from_pretrained(classifier, str(lora_run / "adapter")).eval()
    tok = AutoTokenizer.from_pretrained(lora_run / "adapter")

    def forward(ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        return torch.softmax(logits.double(), -1).numpy()

    assert got["id"].tolist() == list(seqs) and got["record"].tolist() == [0, 1, 2, 3]
    for row, seq in enumerate(seqs.values()):
        ids = tok(seq, add_special_tokens=False)["input_ids"]
        want, n_windows = _by_hand_windows(ids, forward)
        np.testing.assert_allclose(got.loc[row, ["prob_0", "prob_1"]].to_numpy(float), want,
                                   atol=1e-5)
        assert got["n_windows"][row] == n_windows and got["n_tokens"][row] == len(seq)
        assert got["prediction"][row] == int(np.argmax(want))
        assert got["prediction_name"][row] == ["neg", "pos"][int(np.argmax(want))]
    assert not got["truncated"].any()
    # truncation, as fine-tuning read its inputs: the first window only, counted
    predict_file(lora_run, fasta, out, gpus=0, long="truncate")
    cut = pd.read_parquet(out)
    assert cut["truncated"].tolist() == [False, False, True, False]
    ids = tok(seqs["long"], add_special_tokens=False)["input_ids"][:ROOM]
    np.testing.assert_allclose(cut.loc[2, ["prob_0", "prob_1"]].to_numpy(float),
                               forward([2, *ids, 3]), atol=1e-5)
    # the run's own predictions.parquet is reproduced on its test split
    test = pd.read_csv(base.parent / "test.csv")
    table = tmp_path / "test.csv"
    test[["id", "sequence"]].to_csv(table, index=False)
    predict_file(lora_run, table, out, gpus=0)
    mine = pd.read_parquet(out)
    theirs = pd.read_parquet(lora_run / "predictions.parquet")
    assert mine["id"].tolist() == theirs["id"].tolist()
    np.testing.assert_allclose(mine[["prob_0", "prob_1"]], theirs[["prob_0", "prob_1"]],
                               atol=1e-6)


def test_full_regression_run_equals_model_dir_by_hand(full_regression_run: Path,
                                                      tmp_path: Path) -> None:
    fasta, seqs = _candidates(tmp_path)
    out = tmp_path / "pred.parquet"
    assert main(["predict", str(full_regression_run), str(fasta), "--out", str(out),
                 "--cpu"]) == 0
    got = pd.read_parquet(out)
    model = AutoModelForSequenceClassification.from_pretrained(full_regression_run / "model")
    tok = AutoTokenizer.from_pretrained(full_regression_run / "model")
    meta = json.loads((full_regression_run / "model" / "dnalm_finetune.json").read_text())

    def forward(ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            value = model.eval()(input_ids=torch.tensor([ids])).logits[0, 0].double()
        return np.array([float(value) * meta["target_std"] + meta["target_mean"]])

    assert "prob_0" not in got and "prediction_name" not in got
    for row, seq in enumerate(seqs.values()):
        want, _ = _by_hand_windows(tok(seq, add_special_tokens=False)["input_ids"], forward)
        assert got["prediction"][row] == pytest.approx(float(want[0]), abs=1e-4)


def test_bed_input_keeps_its_id_columns(lora_run: Path, base: Path, tmp_path: Path) -> None:
    bed = tmp_path / "c.bed"
    bed.write_text("chrA\t10\t40\tfirst\t0\t+\nchrA\t10\t40\tfirst_rc\t0\t-\nchrA\t100\t300\n")
    out = tmp_path / "bed.parquet"
    predict_file(lora_run, bed, out, genome=base.parent / "g.fa", gpus=0)
    got = pd.read_parquet(out)
    assert got.columns.tolist()[:6] == ["record", "id", "contig", "start", "end", "strand"]
    assert got["id"].tolist() == ["first", "first_rc", "chrA:100-300"]
    assert got["n_windows"].tolist() == [1, 1, 7]
    with pysam.FastaFile(str(base.parent / "g.fa")) as fa:
        seq = fa.fetch("chrA", 10, 40)
    rc = seq.translate(str.maketrans("ACGT", "TGCA"))[::-1]
    expected = load_finetuned(lora_run).predict([seq, rc])
    np.testing.assert_allclose(got.loc[:1, ["prob_0", "prob_1"]].to_numpy(float), expected,
                               atol=1e-6)
    predictions_report(out, tmp_path / "r.html", title="predictions")
    html = (tmp_path / "r.html").read_text()
    assert "first_rc" in html and "prob_1 = pos" in html


def test_rmt_run_reads_long_inputs_as_segments(base: Path, tmp_path: Path) -> None:
    """Memory over 3 segments of 16 tokens: up to 48 tokens are one input, read whole."""
    out = tmp_path / "rmt"
    finetune(_task(base), base, out, rmt={"enabled": True, "num_mem_tokens": 2,
                                         "segment_length": 16, "max_n_segments": 3}, **FAST)
    run = load_finetuned(out)
    assert run.encoder.max_length == 50
    rng = random.Random(12)
    seqs = {"one": _random(rng, 45), "two": _random(rng, 70)}
    fasta = write_fasta(tmp_path / "c.fa", seqs)
    predict_file(out, fasta, tmp_path / "p.parquet", gpus=0)
    got = pd.read_parquet(tmp_path / "p.parquet")
    tok = run.encoder.tokenizer

    def forward(ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(run.model(input_ids=torch.tensor([ids])).logits[0].double(),
                                 -1).numpy()

    for row, seq in enumerate(seqs.values()):
        ids = tok.encode(seq).ids.tolist()
        pieces = [ids[i : i + 48] for i in range(0, len(ids), 48)]
        want = sum(forward([2, *p, 3]) * len(p) for p in pieces) / len(ids)
        np.testing.assert_allclose(got.loc[row, ["prob_0", "prob_1"]].to_numpy(float), want,
                                   atol=1e-5)
    assert got["n_windows"].tolist() == [1, 2]


def test_not_a_run_is_a_one_line_error(base: Path, tmp_path: Path) -> None:
    fasta, _ = _candidates(tmp_path)
    with pytest.raises(DnalmError, match="not a fine-tuning run"):
        predict_file(base, fasta, tmp_path / "p.parquet")
    with pytest.raises(DnalmError, match="policy 'windows' is not one of mean, truncate"):
        predict_file(base, fasta, tmp_path / "p.parquet", long="windows")
    assert not (tmp_path / "p.parquet").exists()
