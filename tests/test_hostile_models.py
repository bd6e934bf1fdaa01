"""Hostile inputs of issue 19 around models, fine-tuning tables and gene annotations.

Three classes, each held to "refused in one line, or handled right, never silently wrong":

* model directories (:mod:`dnalm.models.directory`): a checkpoint without a masked-LM head or a
  causal LM is refused where a masked LM is needed and accepted where only the encoder is;
  broken weights, configs and tokenizers give one line in every command that loads a model;
* fine-tuning tables (:mod:`dnalm.finetune.tasks`): ``NaN`` labels and sequences that are not
  DNA are refused naming file, row and value, or dropped with a count under ``drop_invalid``;
* annotations (:mod:`dnalm.coding.annotation`): a coding row without a transcript, multiple
  GFF3 parents, GTF syntax in a ``.gff`` file, a ``##FASTA`` section, start 0, truncated gzip.

Models are tiny random BERTs (hidden size 32) with dnalm's char tokenizer: seconds in all.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertLMHeadModel,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
)

from dnalm.coding.annotation import AnnotationError, load_transcripts, read_annotation
from dnalm.embed import EmbeddingEncoder
from dnalm.errors import DnalmError
from dnalm.finetune import finetune_from_paths, load_classifier, load_task
from dnalm.genome import Genome
from dnalm.score.lm import MaskedLM
from tests.conftest import write_fasta
from tests.scoring_utils import make_model, make_tokenizer

# --------------------------------------------------------------------------------------------
# Model directories

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 64, "pad_token_id": 0}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``tok/`` (char tokenizer) and ``mlm/`` (a tiny BERT masked LM + tokenizer)."""
    root = tmp_path_factory.mktemp("hostile_models")
    genome = write_fasta(root / "g.fa", {"c": "ACGT" * 50})
    tok = make_tokenizer("char", root, genome)
    make_model(tok, root / "mlm")
    return root


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile_task")
    for split, n in (("train", 24), ("test", 8)):
        rows = "".join(f"{'ACGT' * 5}{'ACGT'[i % 4]},{i % 2}\n" for i in range(n))
        (folder / f"{split}.csv").write_text("sequence,label\n" + rows)
    return folder


def _variant(models: Path, name: str, change: Callable[[Path], None]) -> Path:
    """A copy of the good masked-LM directory with one thing broken."""
    out = models / name
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(models / "mlm", out)
    change(out)
    return out


def _save_as(model_class: type, **extra: object) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        vocab = json.loads((d / "config.json").read_text())["vocab_size"]
        (d / "model.safetensors").unlink()
        torch.manual_seed(1)
        model_class(BertConfig(vocab_size=vocab, **TINY, **extra)).save_pretrained(d)
    return change


def _one_line(call: Callable[[], object]) -> str:
    with pytest.raises(DnalmError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def _score(d: Path) -> object:
    return MaskedLM(d, device="cpu")


def _classifier(d: Path) -> object:
    return load_classifier(d, num_labels=2, problem="classification")


def _embed(d: Path) -> object:
    return EmbeddingEncoder.load(d, gpus=0)


def test_classifier_checkpoint_is_no_masked_lm_but_keeps_its_encoder(models: Path) -> None:
    """A sequence classifier (or bare encoder) has no masked-LM head: scoring with a random head
    would give noise, so it is refused; fine-tuning and embeddings need only the encoder."""
    for name, cls in (("seqcls", BertForSequenceClassification), ("encoder", BertModel)):
        d = _variant(models, name, _save_as(cls))
        text = _one_line(lambda d=d: _score(d))
        assert "no masked-LM head" in text and cls.__name__ in text, text
        assert _classifier(d).model is not None
        assert _embed(d).module is not None


def test_causal_lm_is_refused_where_a_masked_lm_is_needed(models: Path) -> None:
    """BERT's causal LM has the masked LM's weight names: only the config tells them apart."""
    d = _variant(models, "causal_bert", _save_as(BertLMHeadModel, is_decoder=True))
    assert "causal (left-to-right) language model" in _one_line(lambda: _score(d))

    def gpt2(d: Path) -> None:
        (d / "model.safetensors").unlink()
        GPT2LMHeadModel(GPT2Config(vocab_size=10, n_embd=32, n_layer=1, n_head=2,
                                   n_positions=64, bos_token_id=2,
                                   eos_token_id=3)).save_pretrained(d)

    d = _variant(models, "gpt2", gpt2)
    for use in (_score, _classifier, _embed):
        assert "causal (left-to-right) language model" in _one_line(lambda u=use: u(d))


def _truncate(d: Path) -> None:
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def _random(d: Path) -> None:
    (d / "model.safetensors").write_bytes(os.urandom(4096))


def _edit_config(**values: object) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        config = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**config, **values}))
    return change


def _edit_state(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        state = load_file(d / "model.safetensors")
        edit(state)
        save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    return change


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated safetensors": (_truncate, "truncated or not a safetensors file"),
    "random bytes": (_random, "truncated or not a safetensors file"),
    "no weights": (lambda d: (d / "model.safetensors").unlink(), "no weights"),
    "config not JSON": (lambda d: (d / "config.json").write_text("{bad"), "not valid JSON"),
    "unknown model_type": (_edit_config(model_type="zzz"), "model type 'zzz'"),
    "missing weight": (_edit_state(lambda s: s.pop("bert.encoder.layer.1.output.dense.weight")),
                       "1 weight(s) missing"),
    "unexpected weight": (_edit_state(lambda s: s.update({"bert.extra": torch.zeros(2)})),
                          "1 unexpected weight(s)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_model_directory_is_one_line_in_every_command(models: Path, case: str) -> None:
    """Scoring, the fine-tuning classifier and the embeddings encoder all refuse it alike."""
    change, message = BROKEN[case]
    d = _variant(models, case.replace(" ", "_"), change)
    for use in (_score, _classifier, _embed):
        text = _one_line(lambda u=use: u(d))
        assert message in text and str(d) in text, (use.__name__, text)


def test_tokenizer_problems_give_the_same_line_to_scoring_finetuning_and_embeddings(
        models: Path, task_dir: Path, tmp_path: Path) -> None:
    def no_tokenizer(d: Path) -> None:
        for f in ("tokenizer.json", "tokenizer_config.json", "dnalm_tokenizer.json"):
            (d / f).unlink(missing_ok=True)

    def small_vocab(d: Path) -> None:
        (d / "model.safetensors").unlink()
        BertForMaskedLM(BertConfig(vocab_size=5, **TINY)).save_pretrained(d)

    for name, change, message in (("no_tok", no_tokenizer, "no tokenizer found"),
                                  ("vocab", small_vocab, "only 5 embeddings")):
        d = _variant(models, name, change)
        lines = {_one_line(lambda d=d: _score(d)), _one_line(lambda d=d: _embed(d)),
                 _one_line(lambda d=d, n=name: finetune_from_paths(
                     task_dir, d, tmp_path / n, epochs=1, threads=1, gpus=0))}
        assert len(lines) == 1 and message in lines.pop()
        assert not (tmp_path / name).exists()


def test_memory_pretrained_model_fine_tunes_only_from_complete_weights(models: Path) -> None:
    """The RMT classifier built from a memory-pretrained masked LM loads it strictly too."""
    from tests.test_rmt import _rmt_masked_lm

    rmt = _rmt_masked_lm(models / "tok_char", models / "rmt")
    state = load_file(rmt / "model.safetensors")
    state.pop(next(k for k in sorted(state) if "encoder.layer.1" in k))
    save_file(state, rmt / "model.safetensors", metadata={"format": "pt"})
    assert "1 weight(s) missing" in _one_line(lambda: _classifier(rmt))


# --------------------------------------------------------------------------------------------
# Fine-tuning tables

OK_ROWS = "".join(f"ACGTACGT{'ACGT'[i % 4]},{i % 2}\n" for i in range(20))


def _table(tmp_path: Path, name: str, extra_rows: str) -> str:
    path = tmp_path / name
    path.write_text("sequence,label\n" + OK_ROWS + extra_rows)
    return str(path)


@pytest.mark.parametrize(("row", "message"), [
    ("ACGTA,NaN\n", "row 21 (id train_20) label 'NaN' marks a missing value"),
    ("ACGTA,null\n", "label 'null' marks a missing value"),
    ("MKVLAAGIVE,1\n", "sequence 'MKVLAAGIVE': character 'L' at position 4 is not a nucleotide"),
    ("12345,0\n", "sequence '12345': character '1' at position 1 is not a nucleotide"),
    ("ACG-TA,0\n", "character '-' at position 4"),
])
def test_bad_table_rows_are_refused_naming_file_row_and_value(tmp_path: Path, row: str,
                                                              message: str) -> None:
    train = _table(tmp_path, "train.csv", row)
    test = _table(tmp_path, "test.csv", "")
    text = _one_line(lambda: load_task({"name": "t", "train": train, "test": test}))
    assert text.startswith(train) and message in text and "drop_invalid" in text, text


def test_regression_targets_must_be_finite(tmp_path: Path) -> None:
    train = _table(tmp_path, "train.csv", "ACGTA,inf\n")
    text = _one_line(lambda: load_task({"name": "t", "train": train, "test": train,
                                        "problem": "regression"}))
    assert "row 21" in text and "not a number" in text


def test_drop_invalid_drops_bad_rows_with_a_count(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    train = _table(tmp_path, "train.csv", "ACGTA,NaN\nMKVLAEEF,1\n")
    test = _table(tmp_path, "test.csv", "")
    with caplog.at_level(logging.WARNING, logger="dnalm.finetune.tasks"):
        task = load_task({"name": "t", "train": train, "test": test, "drop_invalid": True})
    assert task.label_names == ["0", "1"]  # no third class from NaN
    assert sum(task.sizes()[s] for s in ("train", "dev")) == 20
    assert "dropped 2 of 22 rows" in caplog.text
    assert "not a nucleotide" not in "".join(task.train["sequence"])


# --------------------------------------------------------------------------------------------
# Annotations

PLUS = "ATGAAATGGCAGTAA"  # M K W Q *, split over two exons below


@pytest.fixture(scope="module")
def toy_genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    seq = list("C" * 60)
    seq[10:16] = PLUS[:6]
    seq[16:20] = "GTCC"
    seq[20:29] = PLUS[6:]
    return write_fasta(tmp_path_factory.mktemp("ann") / "toy.fa", {"t1": "".join(seq)})


GTF_ROWS = ('t1\tx\tCDS\t11\t16\t.\t+\t0\tgene_id "G"; transcript_id "P1";\n'
            't1\tx\tCDS\t21\t29\t.\t+\t0\tgene_id "G"; transcript_id "P1";\n')


def _proteins(path: Path, genome: Path) -> dict[str, str]:
    with Genome(genome) as g:
        return {t.transcript_id: t.protein for t in load_transcripts(path, g)}


def test_coding_row_without_transcript_is_refused_with_its_line(tmp_path: Path) -> None:
    """Skipping it would drop an exon and renumber every later residue (T253I as T207I)."""
    path = tmp_path / "a.gtf"
    first, second = GTF_ROWS.splitlines(keepends=True)
    path.write_text("#!genome-build toy\n" + first + second.replace(' transcript_id "P1";', ""))
    text = _one_line(lambda: read_annotation(path))
    assert f"{path} line 3" in text and "CDS row has no transcript_id" in text


def test_gff3_row_with_two_parents_belongs_to_both(tmp_path: Path, toy_genome: Path) -> None:
    path = tmp_path / "a.gff3"
    path.write_text("##gff-version 3\n"
                    "t1\tx\tCDS\t11\t16\t.\t+\t0\tID=c1;Parent=rna1,rna2\n"
                    "t1\tx\tCDS\t21\t29\t.\t+\t0\tID=c1;Parent=rna1,rna2\n")
    assert _proteins(path, toy_genome) == {"rna1": "MKWQ", "rna2": "MKWQ"}


def test_gtf_syntax_in_a_gff_file_and_a_fasta_section_are_read(tmp_path: Path,
                                                               toy_genome: Path) -> None:
    gtf_as_gff = tmp_path / "genes.gff"
    gtf_as_gff.write_text(GTF_ROWS)
    assert _proteins(gtf_as_gff, toy_genome) == {"P1": "MKWQ"}
    with_fasta = tmp_path / "with_fasta.gff3"
    with_fasta.write_text("##gff-version 3\n"
                          "t1\tx\tCDS\t11\t16\t.\t+\t0\tParent=rna1\n"
                          "t1\tx\tCDS\t21\t29\t.\t+\t0\tParent=rna1\n"
                          "##FASTA\n>t1\nCCCCCCCCCC\n")
    assert _proteins(with_fasta, toy_genome) == {"rna1": "MKWQ"}


def test_start_zero_and_truncated_gzip_are_one_line(tmp_path: Path) -> None:
    zero = tmp_path / "zero.gtf"
    zero.write_text(GTF_ROWS.replace("\t11\t16\t", "\t0\t16\t"))
    text = _one_line(lambda: read_annotation(zero))
    assert f"{zero} line 1" in text and "start 0" in text
    data = gzip.compress((GTF_ROWS * 3000).encode())
    cut = tmp_path / "cut.gtf.gz"
    cut.write_bytes(data[: len(data) // 2])
    text = _one_line(lambda: read_annotation(cut))
    assert "truncated or corrupt gzip" in text
    with pytest.raises(AnnotationError):
        read_annotation(cut)
