"""The genome and tokenizer stages with S3 as Snakemake's default storage (moto on 127.0.0.1).

This is how the cloud profiles run (kubernetes and awsbatch jobs share no file system): every
input and output path is mapped into the bucket by snakemake-storage-plugin-s3. The genome FASTA
exists only in the bucket, so the run can only have read it from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.cluster.harness import MotoServer, moto_server, run_snakemake
from tests.conftest import DEMO_FASTA
from tests.workflow_utils import make_workdir

pytestmark = pytest.mark.workflow

BUCKET = "dnalm-test"
TARGETS = [
    "results/genomes/demo/genome_stats.parquet",
    "results/genomes/demo/chunks",
    "results/tokenizers/char/tokenizer.json",
]
@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def storage_args(server: MotoServer) -> list[str]:
    return ["--default-storage-provider", "s3", "--default-storage-prefix", f"s3://{BUCKET}",
            f"--storage-s3-endpoint-url={server.endpoint}"]


@pytest.fixture(scope="module")
def s3_run(s3: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run into the bucket; the FASTA is uploaded first and is not in the working dir."""
    workdir = make_workdir(tmp_path_factory.mktemp("s3") / "run",
                           {"demo": "inputs/demo.fa.gz"},
                           tokenizers={"char": {"kind": "char"}},
                           scoring={"variants": {"demo_1kg": {
                               "genome": "demo", "path": "inputs/1kg_pilot_sites.vcf"}}},
                           coding={"variants": []})
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    client.upload_file(str(DEMO_FASTA), BUCKET, "inputs/demo.fa.gz")
    assert not (workdir / "inputs").exists()
    proc = run_snakemake(workdir, "--cores", "2", *storage_args(s3), *TARGETS, env=s3.env,
                         timeout=400)
    return workdir, proc.stdout + proc.stderr


def test_inputs_read_from_and_outputs_written_to_the_bucket(
    s3: MotoServer, s3_run: tuple[Path, str]
) -> None:
    workdir, log = s3_run
    assert f"s3://{BUCKET}/inputs/demo.fa.gz (retrieve from storage)" in log
    keys = set(s3.keys(BUCKET))
    for key in ("results/genomes/demo/genome.fa.gz", "results/genomes/demo/genome.fa.gz.fai",
                "results/genomes/demo/genome_stats.parquet",
                "results/tokenizers/char/tokenizer.json",
                "results/tokenizers/char/dnalm_tokenizer.json"):
        assert key in keys, key
    # directory outputs are uploaded file by file under their prefix
    for split in ("train", "validation", "test"):
        prefix = f"results/genomes/demo/chunks/{split}/"
        assert any(k.startswith(prefix) and k.endswith(".parquet") for k in keys), prefix
    assert "results/genomes/demo/chunks/summary.json" in keys
    # nothing was left behind locally: results live in the bucket only
    assert not (workdir / "results/genomes/demo/genome_stats.parquet").exists()


def test_bucket_outputs_are_readable_tables(s3: MotoServer, s3_run: tuple[Path, str],
                                            tmp_path: Path) -> None:
    client = s3.client()
    stats = tmp_path / "stats.parquet"
    client.download_file(BUCKET, "results/genomes/demo/genome_stats.parquet", str(stats))
    table = pq.read_table(stats).to_pylist()
    assert table and table[0]["length"] == 2_000_000
    key = next(k for k in s3.keys(BUCKET)
               if k.startswith("results/genomes/demo/chunks/train/") and k.endswith(".parquet"))
    part = tmp_path / "part.parquet"
    client.download_file(BUCKET, key, str(part))
    assert pq.read_table(part).num_rows > 0


def test_second_run_finds_everything_in_the_bucket(
    s3: MotoServer, s3_run: tuple[Path, str]
) -> None:
    workdir, _ = s3_run
    proc = run_snakemake(workdir, "--cores", "2", "--dry-run", *storage_args(s3), *TARGETS,
                         env=s3.env, timeout=200)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_tokenized_shards_and_tokenizer_stats_in_the_bucket(
    s3: MotoServer, s3_run: tuple[Path, str]
) -> None:
    workdir, _ = s3_run
    run_snakemake(workdir, "--cores", "2", *storage_args(s3),
                  "results/tokenizers/char/stats.parquet", "results/genomes/demo/tokens/char",
                  env=s3.env, timeout=300)
    keys = set(s3.keys(BUCKET))
    assert "results/tokenizers/char/stats.parquet" in keys
    assert any(k.startswith("results/genomes/demo/tokens/char/train/") for k in keys)
