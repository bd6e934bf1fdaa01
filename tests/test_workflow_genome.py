"""The genome stage through Snakemake: demo run, HTTP download, incremental reruns, errors."""

from __future__ import annotations

import gzip
import hashlib
import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pysam
import pytest

from dnalm.fasta import read_all_sequences
from dnalm.io import list_parts
from tests.conftest import DEMO_FASTA, LAMBDA_FASTA
from tests.workflow_utils import make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.workflow

GENOME_TARGETS = ["results/genomes/{g}/genome_stats.parquet", "results/genomes/{g}/chunks"]


def _targets(*genomes: str) -> list[str]:
    return [t.format(g=g) for g in genomes for t in GENOME_TARGETS]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    workdir = make_workdir(tmp_path_factory.mktemp("wf") / "run", {"demo": str(DEMO_FASTA)})
    snakemake(workdir, *_targets("demo"))
    return workdir


def test_demo_outputs(demo_run: Path) -> None:
    base = demo_run / "results" / "genomes" / "demo"
    stats = pq.read_table(base / "genome_stats.parquet").to_pylist()
    assert stats[0]["length"] == 2_000_000
    assert stats[0]["n_count"] == 0
    contig = stats[0]["contig"]
    with pysam.FastaFile(str(base / "genome.fa.gz")) as fa:
        assert fa.fetch(contig) == read_all_sequences(DEMO_FASTA)[contig]
        for split in ("train", "validation", "test"):
            parts = list_parts(base / "chunks" / split)
            table = pq.read_table(parts[0]).to_pylist()
            assert table, split
            for row in table[:20]:
                assert row["sequence"] == fa.fetch(contig, row["start"], row["end"])
    assert (demo_run / "logs" / "genome" / "chunk_demo.log").read_text().count("chunks") >= 3
    assert (demo_run / "results" / "benchmarks" / "genome" / "chunk_demo.tsv").exists()


def test_nothing_to_do_after_run(demo_run: Path) -> None:
    assert planned_jobs(demo_run, *_targets("demo")) == []


def test_adding_a_genome_runs_only_its_jobs(demo_run: Path) -> None:
    make_workdir(demo_run, {"demo": str(DEMO_FASTA), "lambda": str(LAMBDA_FASTA)})
    jobs = planned_jobs(demo_run, *_targets("demo", "lambda"))
    assert sorted(jobs) == [("chunk_genome", "genome=lambda"), ("prepare_genome", "genome=lambda")]


def test_changing_chunking_reruns_chunking_only(demo_run: Path) -> None:
    make_workdir(demo_run, {"demo": str(DEMO_FASTA)}, chunking={"length": 500})
    jobs = planned_jobs(demo_run, *_targets("demo"))
    assert jobs == [("chunk_genome", "genome=demo")]
    make_workdir(demo_run, {"demo": str(DEMO_FASTA)})  # restore for other tests


def test_download_through_workflow(http_server, tmp_path: Path) -> None:
    data = LAMBDA_FASTA.read_bytes()
    (http_server.root / "lambda.fa.gz").write_bytes(data)
    http_server.fail_next["/lambda.fa.gz"] = 1
    source = {"source": http_server.url("lambda.fa.gz"),
              "sha256": hashlib.sha256(data).hexdigest()}
    workdir = make_workdir(tmp_path / "run", {"phage": source},
                           download={"retries": 2, "backoff_seconds": 0.01})
    snakemake(workdir, *_targets("phage"))
    with pysam.FastaFile(str(workdir / "results/genomes/phage/genome.fa.gz")) as fa:
        assert fa.lengths[0] == 48_502
    log = (workdir / "logs" / "genome" / "download_phage.log").read_text()
    assert "retrying" in log


def test_bad_checksum_fails_cleanly(http_server, tmp_path: Path) -> None:
    (http_server.root / "g.fa.gz").write_bytes(LAMBDA_FASTA.read_bytes())
    workdir = make_workdir(tmp_path / "run", {"phage": {"source": http_server.url("g.fa.gz"),
                                                        "md5": "0" * 32}})
    proc = snakemake(workdir, *_targets("phage"), check=False)
    assert proc.returncode != 0
    assert "md5 checksum mismatch" in (workdir / "logs/genome/download_phage.log").read_text()
    assert not (workdir / "resources" / "downloads" / "phage" / "source.fa.gz").exists()
    assert not (workdir / "results").exists() or not any((workdir / "results").rglob("*.fa.gz"))


def test_truncated_local_gzip_fails_cleanly(tmp_path: Path) -> None:
    rng = random.Random(0)
    data = gzip.compress(b">c\n" + "".join(rng.choices("ACGT", k=400_000)).encode() + b"\n")
    bad = tmp_path / "cut.fa.gz"
    bad.write_bytes(data[: len(data) // 2])
    workdir = make_workdir(tmp_path / "run", {"cut": str(bad)})
    proc = snakemake(workdir, *_targets("cut"), check=False)
    assert proc.returncode != 0
    log = (workdir / "logs" / "genome" / "prepare_cut.log").read_text()
    assert "truncated gzip" in log
    assert not (workdir / "results" / "genomes" / "cut" / "genome.fa.gz").exists()


@pytest.mark.parametrize(
    ("sheet", "config", "message"),
    [
        ({"demo": "s3x:bucket/key"}, {}, "unknown source scheme 's3x'"),
        ({"demo": str(DEMO_FASTA), "x": "ncbi:GCF_1"}, {}, "invalid NCBI accession"),
        ({"demo": str(DEMO_FASTA)}, {"seed": -1}, "config key seed: -1 is less than the minimum"),
        ({"demo": str(DEMO_FASTA)}, {"chunking": {"lenght": 5}},
         "'lenght' was unexpected"),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, sheet, config, message) -> None:
    workdir = make_workdir(tmp_path / "run", sheet, **config)
    proc = snakemake(workdir, "--dry-run", check=False)
    assert proc.returncode != 0
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("dnalm: error:")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_duplicate_genome_id(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "run", {"demo": str(DEMO_FASTA)})
    sheet = workdir / "genomes.tsv"
    sheet.write_text(sheet.read_text() + sheet.read_text().splitlines()[1] + "\n")
    proc = snakemake(workdir, "--dry-run", check=False)
    assert "genome id 'demo' is used twice" in proc.stderr


def test_local_source_checksum(tmp_path: Path) -> None:
    src = tmp_path / "lambda.fa.gz"
    shutil.copy(LAMBDA_FASTA, src)
    workdir = make_workdir(tmp_path / "run", {"lam": {"source": str(src), "sha256": "a" * 64}})
    proc = snakemake(workdir, *_targets("lam"), check=False)
    assert proc.returncode != 0
    assert "sha256 checksum mismatch" in (workdir / "logs/genome/prepare_lam.log").read_text()
