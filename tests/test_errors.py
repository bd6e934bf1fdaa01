"""Every bad input named in the issues gives one line naming the file or record and the reason.

``BAD_INPUTS`` lists them, issue by issue, with the tests that check the message (and that it is
one line); the named tests must exist. The cases no other test held to one line are checked
here, as a user meets them: through the ``dnalm`` command (exit status 1, one
``dnalm: error:`` line, no traceback, nothing written) or the Snakemake start-up.
"""

from __future__ import annotations

import ast
import contextlib
import gzip
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from dnalm.coding.annotation import AnnotationError, load_transcripts
from dnalm.coding.protein_lm import MutantError
from dnalm.coding.run import score_protein_table
from dnalm.errors import ConfigError, DnalmError
from dnalm.genome import Genome
from dnalm.sheet import parse_sheet
from tests.conftest import DEMO_FASTA, LAMBDA_FASTA, write_fasta
from tests.workflow_utils import REPO, make_workdir, snakemake

HERE = "tests/test_errors.py"
DNALM = [sys.executable, "-m", "dnalm"]
SLICE = REPO / "data" / "hg38_chr16_axin1_slice"

#: Bad input named in an issue -> the tests that check its one-line message.
BAD_INPUTS: dict[str, tuple[str, ...]] = {
    # issue 2: genome download and preparation
    "not FASTA": ("tests/test_cli.py::test_errors_are_one_line_without_traceback",
                  "tests/test_fasta.py::test_bad_fasta"),
    "empty file": ("tests/test_fasta.py::test_bad_fasta", f"{HERE}::test_dnalm_command_errors"),
    "truncated gzip": (f"{HERE}::test_dnalm_command_errors",
                       "tests/test_workflow_genome.py::test_truncated_local_gzip_fails_cleanly"),
    "duplicate contig names": ("tests/test_fasta.py::test_bad_fasta",
                               f"{HERE}::test_dnalm_command_errors"),
    "unknown source scheme": ("tests/test_cli.py::test_errors_are_one_line_without_traceback",
                              "tests/test_workflow_genome.py::test_config_errors_are_one_line"),
    "unreachable URL": ("tests/test_cli.py::test_errors_are_one_line_without_traceback",
                        f"{HERE}::test_download_errors"),
    "checksum mismatch": ("tests/test_cli.py::test_errors_are_one_line_without_traceback",
                          f"{HERE}::test_download_errors",
                          "tests/test_workflow_genome.py::test_bad_checksum_fails_cleanly"),
    "a genome id used twice": (f"{HERE}::test_genome_id_used_twice",),
    "an invalid config": ("tests/test_workflow_genome.py::test_config_errors_are_one_line",),
    # issue 4: pretraining
    "unknown preset": ("tests/test_pretrain_loop.py::test_command_line_entry",
                       "tests/test_models_presets.py::test_bad_inputs_raise_one_line_config_errors"),
    "a tokenizer whose vocabulary does not fit the model": (
        "tests/test_models_presets.py::test_bad_inputs_raise_one_line_config_errors",),
    "a sequence length above the model's limit": (
        "tests/test_models_presets.py::test_bad_inputs_raise_one_line_config_errors",),
    "an out-of-memory batch": (f"{HERE}::test_out_of_memory_batch",
                               "tests/test_pretrain_loop.py::test_bad_inputs_fail_at_start_up"),
    # issue 5: fine-tuning tasks
    "a bad task table": ("tests/test_finetune.py::test_task_errors_are_one_line",),
    "an unknown LoRA target module": (
        "tests/test_finetune.py::test_unknown_target_module_is_a_one_line_error",),
    # issue 6: scoring (a REF mismatch is a per-variant reason, not an error)
    "a REF mismatch": ("tests/test_workflow_score.py::test_every_variant_has_a_score_or_a_reason",),
    "not a model directory": ("tests/test_workflow_score.py::test_score_variants_command",),
    # issue 10: coding variants
    "an annotation whose contigs are not in the genome": (
        f"{HERE}::test_dnalm_command_errors",
        "tests/test_coding.py::test_annotation_contigs_not_in_genome"),
    "a CDS whose length is not a multiple of 3": (
        f"{HERE}::test_cds_length_not_a_multiple_of_three",
        "tests/test_coding.py::test_cds_length_not_multiple_of_three"),
    "a model whose vocabulary is not a protein vocabulary": (
        "tests/test_coding.py::test_non_protein_vocabulary",),
    "a mutant whose wild-type residue does not match": (
        f"{HERE}::test_mutant_wild_type_mismatch",
        "tests/test_coding.py::test_bad_mutant_wild_type"),
}


def test_every_named_bad_input_has_a_test() -> None:
    for bad_input, nodes in BAD_INPUTS.items():
        assert nodes, bad_input
        for node in nodes:
            file, _, name = node.partition("::")
            tree = ast.parse((REPO / file).read_text())
            names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            assert name in names, f"{bad_input}: {node} does not exist"


def one_line(text: str, message: str, where: str) -> None:
    assert "\n" not in text.strip(), text
    assert message in text and where in text, (message, where, text)


def dnalm_fails(argv: list[str], message: str, where: str, *, nothing_at: Path | None = None,
                cwd: Path | None = None) -> None:
    """``dnalm argv`` exits 1 with one ``dnalm: error:`` line, naming ``where`` and the reason,
    no traceback, and leaves nothing at ``nothing_at``."""
    proc = subprocess.run([*DNALM, *argv], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "dnalm: error:" in line]
    assert len(lines) == 1, proc.stderr[-2000:]
    one_line(lines[0], message, where)
    assert "Traceback" not in proc.stderr
    if nothing_at is not None:
        assert not nothing_at.exists(), nothing_at


def test_dnalm_command_errors(tmp_path: Path) -> None:
    out = tmp_path / "out" / "genome.fa.gz"
    empty = tmp_path / "empty.fa"
    empty.write_bytes(b"")
    dnalm_fails(["prepare-genome", str(empty), str(out), "--genome-id", "g"], "empty file",
                "empty.fa", nothing_at=out)
    cut = tmp_path / "cut.fa.gz"
    data = gzip.compress(gzip.decompress(LAMBDA_FASTA.read_bytes()))
    cut.write_bytes(data[: len(data) // 2])
    dnalm_fails(["prepare-genome", str(cut), str(out), "--genome-id", "g"], "truncated gzip",
                "cut.fa.gz", nothing_at=out)
    twice = write_fasta(tmp_path / "twice.fa", {"c1": "ACGT" * 10})
    twice.write_text(twice.read_text() * 2)
    dnalm_fails(["prepare-genome", str(twice), str(out), "--genome-id", "g"],
                "duplicate contig name 'c1'", "twice.fa)", nothing_at=out)
    gtf = tmp_path / "other.gtf"
    gtf.write_text("".join("scaffold9" + line[line.index("\t"):] for line in
                           (SLICE / "refseq_chr16_slice.gtf").read_text().splitlines(True)))
    table = tmp_path / "coding.parquet"
    dnalm_fails(["score-coding", "--genome", str(SLICE / "chr16_186964_397118.fa"),
                 "--annotation", str(gtf), "--vcf", str(SLICE / "demo_coding.vcf"),
                 "--out", str(table)], "none of the annotation's contigs (scaffold9)",
                "other.gtf", nothing_at=table)


def test_download_errors(http_server, tmp_path: Path) -> None:
    (http_server.root / "g.fa.gz").write_bytes(LAMBDA_FASTA.read_bytes())
    out = tmp_path / "g.fa.gz"
    dnalm_fails(["download", http_server.url("g.fa.gz"), str(out), "--sha256", "0" * 64,
                 "--retries", "0"], "sha256 checksum mismatch", "g.fa.gz", nothing_at=out)
    dnalm_fails(["download", http_server.url("missing.fa.gz"), str(out), "--retries", "0"],
                "HTTP 404", "missing.fa.gz", nothing_at=out)


def test_genome_id_used_twice(tmp_path: Path) -> None:
    """At Snakemake start-up, before any job: one line naming the sheet and the id."""
    workdir = make_workdir(tmp_path / "run", {"demo": str(DEMO_FASTA)})
    sheet = workdir / "genomes.tsv"
    sheet.write_text(sheet.read_text() + sheet.read_text().splitlines()[1] + "\n")
    with pytest.raises(ConfigError) as info:
        parse_sheet(sheet)
    one_line(str(info.value), "genome id 'demo' is used twice", str(sheet))
    proc = snakemake(workdir, "--dry-run", check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("dnalm: error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    one_line(lines[0], "genome id 'demo' is used twice", "genomes.tsv")
    assert "Traceback" not in proc.stderr


def test_out_of_memory_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A micro-batch that cannot fit stops at start-up with one line saying what to lower."""
    from dnalm.models.presets import build_model, load_tokenizer_info
    from dnalm.train import toydata
    from dnalm.train.config import PretrainConfig
    from dnalm.train.distributed import DistEnv
    from dnalm.train.startup import probe_memory

    tokenizer = toydata.write_char_tokenizer(tmp_path / "tok")
    model = build_model("nt", "tiny", tokenizer, max_length=64, seed=0)

    class _TinyMemory:
        available = 1 << 20

    monkeypatch.setattr("dnalm.train.startup.psutil.virtual_memory", lambda: _TinyMemory)
    with pytest.raises(ConfigError) as info:
        probe_memory(model, PretrainConfig(preset="nt", max_length=64, batch_size=8),
                     load_tokenizer_info(tokenizer), DistEnv(0, 1, 0, torch.device("cpu")),
                     contextlib.nullcontext)
    one_line(str(info.value), "a micro-batch of 8 x 64 tokens needs about", "lower batch_size")


def test_cds_length_not_a_multiple_of_three(tmp_path: Path) -> None:
    lines = (SLICE / "refseq_chr16_slice.gtf").read_text().splitlines(True)
    first = next(i for i, line in enumerate(lines) if line.split("\t")[2] == "CDS")
    fields = lines[first].split("\t")
    fields[4] = str(int(fields[4]) + 1)
    lines[first] = "\t".join(fields)
    bad = tmp_path / "bad.gtf"
    bad.write_text("".join(lines))
    with Genome(SLICE / "chr16_186964_397118.fa") as genome, \
            pytest.raises(AnnotationError) as info:
        load_transcripts(bad, genome, strict=True)
    one_line(str(info.value), "is not a multiple of 3", "bad.gtf: transcript ")


def test_mutant_wild_type_mismatch(tmp_path: Path) -> None:
    """Checked before any model is loaded, so no model is needed to see it."""
    table = tmp_path / "dms.tsv"
    pd.DataFrame({"mutant": ["M1A", "K2A"], "sequence": ["MTKL", "MTKL"]}).to_csv(
        table, sep="\t", index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(MutantError) as info:
        score_protein_table(table, [tmp_path / "no_model"], out)
    assert isinstance(info.value, DnalmError)
    one_line(str(info.value), "row 2: mutant 'K2A': wild type K2 does not match", "dms.tsv")
    assert not out.exists()
