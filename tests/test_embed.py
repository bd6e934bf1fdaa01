"""Embeddings equal a plain forward pass per sequence, pooled by hand.

The reference for each model is computed independently of dnalm's batching, windowing and
pooling: pipeline models (a k-mer BERT as the ``dnabert`` preset builds, a ModernBERT as the
demo's ``dnabert2`` preset) through ``transformers.AutoModel`` and ``AutoTokenizer`` one
sequence at a time; the published DNABERT, DNABERT-2 and Nucleotide Transformer v1/v2 fixtures
against the hidden states their authors' own code computed
(``tests/data/published/*.reference.npz``); a
fine-tuned LoRA run against peft's ``PeftModel`` on the base classifier, built by hand.
"""

from __future__ import annotations

import random
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pysam
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from dnalm.cli import main
from dnalm.embed import (
    EmbeddingEncoder,
    EmbedSettings,
    embed_file,
    embed_records,
    embedding_matrix,
    embeddings_metadata,
    embeddings_report,
)
from dnalm.errors import DnalmError
from dnalm.inputs import SequenceRecords
from dnalm.tokenizers import kmer_text
from tests.conftest import write_fasta
from tests.scoring_utils import make_model, make_tokenizer

PUBLISHED = Path(__file__).parent / "data" / "published"
ATOL = 2e-5
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def _random(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 6 kb genome (bgzipped + indexed) and tokenizers trained on it."""
    folder = tmp_path_factory.mktemp("embed")
    rng = random.Random(1)
    plain = write_fasta(folder / "g.fa", {"chrA": _random(rng, 6000)})
    pysam.tabix_compress(str(plain), str(folder / "g.fa.gz"), force=True)
    pysam.faidx(str(folder / "g.fa.gz"))
    pysam.faidx(str(plain))
    return folder


@pytest.fixture(scope="module")
def kmer_bert(work: Path) -> Path:
    """A tiny random BERT over overlapping 3-mers, 40 positions (38 content tokens)."""
    return make_model(make_tokenizer("kmer3", work, work / "g.fa"), work / "kmer_bert",
                      max_positions=40)


@pytest.fixture(scope="module")
def modernbert(work: Path) -> Path:
    """The demo's architecture: a tiny ``dnabert2`` preset (ModernBERT) on a BPE tokenizer."""
    from dnalm.models.presets import build_model
    from dnalm.models.saving import save_model_dir

    tokenizer = make_tokenizer("bpe", work, work / "g.fa")
    model = build_model("dnabert2", "tiny", tokenizer, max_length=48, seed=3)
    out = work / "modernbert"
    save_model_dir(model, tokenizer, out, {"preset": "dnabert2", "size": "tiny",
                                           "max_length": 48})
    return out


def _records(sequences: dict[str, str]) -> SequenceRecords:
    return SequenceRecords("test", "fasta", list(sequences), list(sequences.values()))


@cache
def _hf(model_dir: Path) -> tuple[Any, Any]:
    return AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()


def _hf_hidden(model_dir: Path, text: str) -> tuple[list[int], tuple[torch.Tensor, ...]]:
    """One sequence through transformers' own tokenizer and AutoModel: ids and every layer."""
    tok, model = _hf(model_dir)
    ids = tok(text)["input_ids"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return ids, tuple(h[0] for h in out.hidden_states)


@cache
def _encoder(model_dir: Path) -> EmbeddingEncoder:
    return EmbeddingEncoder.load(model_dir, gpus=0)


def _embed(model_dir: Path, sequences: dict[str, str], **settings) -> tuple[pd.DataFrame,
                                                                          np.ndarray]:
    encoder = _encoder(model_dir)
    table = embed_records(encoder, _records(sequences), EmbedSettings(batch_size=3, **settings))
    return table.drop_columns(["embedding"]).to_pandas(), _matrix(table)


def _matrix(table: pa.Table) -> np.ndarray:
    column = table.column("embedding").combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)


@pytest.mark.parametrize("layer", [-1, 0, 1, -3])
def test_pipeline_kmer_bert_mean_and_cls_equal_plain_forward(kmer_bert: Path,
                                                             layer: int) -> None:
    rng = random.Random(layer + 10)
    sequences = {f"s{i}": _random(rng, n) for i, n in enumerate([5, 40, 12, 39, 25])}
    for pooling in ("mean", "cls"):
        frame, got = _embed(kmer_bert, sequences, pooling=pooling, layer=layer)
        assert frame["layer"].tolist() == [layer % 3] * 5
        assert frame["id"].tolist() == list(sequences)
        for row, seq in enumerate(sequences.values()):
            ids, hidden = _hf_hidden(kmer_bert, kmer_text(seq, 3))
            states = hidden[layer]
            want = states[1:-1].mean(0) if pooling == "mean" else states[0]
            np.testing.assert_allclose(got[row], want.numpy(), atol=ATOL)
            assert frame["n_tokens"][row] == len(ids) - 2 == len(seq) - 2


def test_pipeline_modernbert_equals_plain_forward(modernbert: Path) -> None:
    rng = random.Random(5)
    sequences = {f"m{i}": _random(rng, n) for i, n in enumerate([30, 90, 60, 9])}
    frame, got = _embed(modernbert, sequences, pooling="mean")
    _, cls = _embed(modernbert, sequences, pooling="cls", layer=1)
    for row, seq in enumerate(sequences.values()):
        ids, hidden = _hf_hidden(modernbert, seq)
        assert len(ids) <= 48 and frame["n_windows"][row] == 1
        np.testing.assert_allclose(got[row], hidden[-1][1:-1].mean(0).numpy(), atol=ATOL)
        np.testing.assert_allclose(cls[row], hidden[1][0].numpy(), atol=ATOL)


def test_published_dnabert2_equals_the_authors_hidden_states() -> None:
    """Every layer of DNABERT-2's own code (reference.npz), pooled by hand."""
    with np.load(PUBLISHED / "dnabert2.reference.npz") as data:
        ref = {k: data[k] for k in data.files}
    names = [str(n) for n in ref["names"]]
    sequences = {n: str(ref[f"{n}.sequence"]) for n in names}
    for layer in (0, 1, 2, -1):
        for pooling in ("mean", "cls"):
            frame, got = _embed(PUBLISHED / "dnabert2", sequences, pooling=pooling, layer=layer)
            for row, name in enumerate(names):
                states = ref[f"{name}.hidden_states"][layer]  # [CLS] content [SEP]
                want = states[1:-1].mean(0) if pooling == "mean" else states[0]
                np.testing.assert_allclose(got[row], want, atol=1e-4)
                assert frame["n_tokens"][row] == len(ref[f"{name}.input_ids"]) - 2


@pytest.mark.parametrize("family", ["ntv2", "ntv1", "dnabert1"])
def test_published_checkpoints_equal_the_authors_last_hidden_state(family: str) -> None:
    """NT puts <cls> before the 6-mers and nothing after, DNABERT [CLS] ... [SEP] around its
    overlapping 6-mers; the mean leaves them out, tokens rows are the content positions."""
    with np.load(PUBLISHED / f"{family}.reference.npz") as data:
        ref = {k: data[k] for k in data.files}
    sequences = {f"n{i}": str(name).split("sequence=")[1]
                 for i, name in enumerate(ref["names"])}
    suffix = 1 if family == "dnabert1" else 0
    frame, mean = _embed(PUBLISHED / family, sequences)
    _, cls = _embed(PUBLISHED / family, sequences, pooling="cls")
    frame_t, tokens = _embed(PUBLISHED / family, sequences, pooling="tokens")
    for i in range(len(sequences)):
        states = ref[f"last_hidden_state_{i}"]
        content = states[1 : len(states) - suffix]
        np.testing.assert_allclose(mean[i], content.mean(0), atol=1e-4)
        np.testing.assert_allclose(cls[i], states[0], atol=1e-4)
        rows = (frame_t["record"] == i).to_numpy()
        np.testing.assert_allclose(tokens[rows], content, atol=1e-4)
        np.testing.assert_array_equal(frame_t.loc[rows, "token_id"],
                                      ref[f"input_ids_{i}"][1 : len(states) - suffix])
        assert frame["n_tokens"][i] == len(content) and frame["n_windows"][i] == 1


def test_tokens_carry_their_base_offsets(kmer_bert: Path) -> None:
    rng = random.Random(7)
    sequences = {"a": _random(rng, 20), "b": _random(rng, 90)}  # b: 88 tokens in 3 windows
    frame, got = _embed(kmer_bert, sequences, pooling="tokens")
    tok = _hf(kmer_bert)[0]
    for (record, seq) in enumerate(sequences.values()):
        rows = frame[frame["record"] == record]
        assert rows["token"].tolist() == list(range(len(seq) - 2))
        spans = [seq[s:e] for s, e in zip(rows["token_start"], rows["token_end"], strict=True)]
        assert spans == tok.convert_ids_to_tokens(rows["token_id"].tolist())
    b = frame[frame["record"] == 1]
    assert b["window"].tolist() == [0] * 38 + [1] * 38 + [2] * 12
    # every token vector is what its own window computes in a plain forward pass
    ids = tok(kmer_text(sequences["b"], 3), add_special_tokens=False)["input_ids"]
    model = _hf(kmer_bert)[1]
    for w in range(3):
        window = [2, *ids[38 * w : 38 * (w + 1)], 3]
        with torch.no_grad():
            states = model(input_ids=torch.tensor([window])).last_hidden_state[0, 1:-1]
        np.testing.assert_allclose(got[b.index[b["window"] == w]], states.numpy(), atol=ATOL)


def test_long_inputs_in_windows_mean_and_per_window(kmer_bert: Path) -> None:
    """A 100 bp sequence (98 3-mers) in windows of 38 tokens: 38 + 38 + 22."""
    rng = random.Random(3)
    sequences = {"short": _random(rng, 30), "long": _random(rng, 100)}
    tok, model = _hf(kmer_bert)
    ids = tok(kmer_text(sequences["long"], 3), add_special_tokens=False)["input_ids"]
    pieces = [ids[0:38], ids[38:76], ids[76:98]]
    with torch.no_grad():
        means = [model(input_ids=torch.tensor([[2, *p, 3]])).last_hidden_state[0, 1:-1].mean(0)
                 for p in pieces]
    frame, windows = _embed(kmer_bert, sequences, long="windows")
    assert frame["id"].tolist() == ["short", "long", "long", "long"]
    rows = frame[frame["id"] == "long"]
    assert rows["window"].tolist() == [0, 1, 2] and rows["n_tokens"].tolist() == [38, 38, 22]
    assert rows["window_start"].tolist() == [0, 38, 76]
    assert rows["window_end"].tolist() == [40, 78, 100]  # a 3-mer covers 3 bases
    for w, mean in enumerate(means):
        np.testing.assert_allclose(windows[rows.index[w]], mean.numpy(), atol=ATOL)
    frame, pooled = _embed(kmer_bert, sequences, long="mean")
    assert frame["n_windows"].tolist() == [1, 3] and frame["n_tokens"].tolist() == [28, 98]
    weighted = sum(len(p) * m for p, m in zip(pieces, means, strict=True)) / 98
    np.testing.assert_allclose(pooled[1], weighted.numpy(), atol=ATOL)
    _, small = _embed(kmer_bert, sequences, long="windows", window_tokens=10)
    assert len(small) == 3 + 10  # 28 tokens: 3 windows; 98: 10


def test_bed_input_is_embedded_on_its_strand(kmer_bert: Path, work: Path) -> None:
    bed = work / "r.bed"
    bed.write_text("chrA\t100\t130\tplus\t0\t+\nchrA\t100\t130\tminus\t0\t-\n")
    out = work / "bed_emb.parquet"
    embed_file(kmer_bert, bed, out, genome=work / "g.fa.gz", gpus=0)
    frame = pd.read_parquet(out)
    with pysam.FastaFile(str(work / "g.fa.gz")) as fa:
        seq = fa.fetch("chrA", 100, 130)
    _, direct = _embed(kmer_bert, {"plus": seq, "minus": seq.translate(COMPLEMENT)[::-1]})
    np.testing.assert_allclose(np.stack(frame["embedding"].to_numpy()), direct, atol=1e-6)
    assert frame[["contig", "start", "end", "strand"]].values.tolist() == [
        ["chrA", 100, 130, "+"], ["chrA", 100, 130, "-"]]


def test_output_is_fixed_size_float32_readable_in_one_call(kmer_bert: Path, work: Path,
                                                           tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path / "s.fa", {"x": "ACGTACGTAC" * 3, "y": "GGATCCA" * 9})
    out = tmp_path / "emb.parquet"
    assert main(["embed", str(kmer_bert), str(fasta), "--out", str(out), "--cpu"]) == 0
    field = pq.read_schema(out).field("embedding")
    assert field.type == pa.list_(pa.float32(), 32)
    matrix = embedding_matrix(out)
    assert matrix.shape == (2, 32) and matrix.dtype == np.float32
    frame = pd.read_parquet(out)
    assert frame.columns.tolist() == ["record", "id", "pooling", "layer", "n_tokens",
                                      "n_windows", "embedding"]
    np.testing.assert_array_equal(np.stack(frame["embedding"].to_numpy()), matrix)
    meta = embeddings_metadata(out)
    assert meta["dimension"] == 32 and meta["pooling"] == "mean" and meta["layer"] == 2
    embeddings_report(out, tmp_path / "r.html", tmp_path / "r.png", title="t")
    assert "pc1" in (tmp_path / "r.html").read_text()
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_polars_and_duckdb_read_the_vectors(kmer_bert: Path, tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path / "s.fa", {"x": "ACGTACGTAC" * 3, "y": "GGATCCA" * 9})
    out = tmp_path / "emb.parquet"
    embed_file(kmer_bert, fasta, out, gpus=0)
    matrix = embedding_matrix(out)
    pl = pytest.importorskip("polars")
    np.testing.assert_array_equal(pl.read_parquet(out)["embedding"].to_numpy(), matrix)
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"SELECT embedding FROM '{out}' ORDER BY record").fetchall()
    np.testing.assert_allclose(np.array([r[0] for r in rows]), matrix)


def test_finetuned_runs_embed_with_their_weights(kmer_bert: Path, work: Path,
                                                  tmp_path: Path) -> None:
    """A LoRA run's encoder as peft builds it by hand (it differs from the base model's); a
    full run's ``model/`` as transformers' AutoModel loads it."""
    from peft import PeftModel

    from dnalm.finetune import finetune

    rng = random.Random(2)
    rows = [{"sequence": _random(rng, 30), "label": i % 2} for i in range(40)]
    for split in ("train", "test"):
        pd.DataFrame(rows).to_csv(tmp_path / f"{split}.csv", index=False)
    run = tmp_path / "run"
    finetune({"name": "t", "train": str(tmp_path / "train.csv"),
              "test": str(tmp_path / "test.csv")}, kmer_bert, run, epochs=1, batch_size=8,
             max_length=40, threads=1, gpus=0, learning_rate=0.05)
    sequences = {"p": _random(rng, 30), "q": _random(rng, 12)}
    _, got = _embed(run, sequences)
    _, base = _embed(kmer_bert, sequences)
    classifier = AutoModelForSequenceClassification.from_pretrained(kmer_bert, num_labels=2)
    peft = PeftModel.from_pretrained(classifier, str(run / "adapter")).eval()
    tok = AutoTokenizer.from_pretrained(run / "adapter")
    for row, seq in enumerate(sequences.values()):
        ids = torch.tensor([tok(kmer_text(seq, 3))["input_ids"]])
        with torch.no_grad():
            states = peft.base_model.model.bert(input_ids=ids).last_hidden_state[0]
        np.testing.assert_allclose(got[row], states[1:-1].mean(0).numpy(), atol=ATOL)
    assert np.abs(got - base).max() > 1e-3
    full = tmp_path / "full"
    finetune({"name": "t", "train": str(tmp_path / "train.csv"),
              "test": str(tmp_path / "test.csv")}, kmer_bert, full, method="full", epochs=1,
             batch_size=8, max_length=40, threads=1, gpus=0, learning_rate=0.01)
    _, got = _embed(full, sequences, pooling="cls")
    for row, seq in enumerate(sequences.values()):
        _, hidden = _hf_hidden(full / "model", kmer_text(seq, 3))
        np.testing.assert_allclose(got[row], hidden[-1][0].numpy(), atol=ATOL)


@pytest.mark.parametrize(("settings", "message"), [
    ({"layer": 3}, "layer 3 does not exist: the model has hidden states 0..2"),
    ({"layer": -4}, "layer -4 does not exist"),
])
def test_bad_settings_are_one_line_errors(kmer_bert: Path, settings: dict,
                                          message: str) -> None:
    with pytest.raises(DnalmError, match=message):
        _embed(kmer_bert, {"a": "ACGTACGT"}, **settings)
    with pytest.raises(DnalmError, match="pooling 'max' is not one of mean, cls, tokens"):
        EmbedSettings(pooling="max")
    with pytest.raises(DnalmError, match=r"record 2 \(id b, 2 bp\) gives no tokens"):
        _embed(kmer_bert, {"a": "ACGTACGT", "b": "AC"})


def test_rmt_models_are_refused_in_one_line(tmp_path: Path, kmer_bert: Path) -> None:
    shutil.copytree(kmer_bert, tmp_path / "m")
    config = (tmp_path / "m" / "config.json").read_text()
    (tmp_path / "m" / "config.json").write_text(config.replace('"model_type": "bert"',
                                                               '"model_type": "dnalm_rmt"'))
    with pytest.raises(DnalmError, match="recurrent-memory"):
        EmbeddingEncoder.load(tmp_path / "m", gpus=0)
