"""Chunking: exact coordinates, splits, filters, reverse complements, determinism."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pysam
import pytest

from dnalm.chunks import SPLITS, ChunkConfig, SplitConfig, assign_splits, chunk_genome
from dnalm.errors import ConfigError
from dnalm.fasta import prepare_genome
from dnalm.io import list_parts
from tests.conftest import DEMO_FASTA, write_fasta

COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def _genome(tmp_path: Path, records: dict[str, str]) -> Path:
    src = write_fasta(tmp_path / "src.fa", records)
    out = tmp_path / "genome.fa.gz"
    prepare_genome(src, out, tmp_path / "stats.parquet", genome_id="g")
    return out


def _read(out_dir: Path, split: str | None = None):
    splits = [split] if split else list(SPLITS)
    tables = [pq.read_table(p) for s in splits for p in list_parts(out_dir / s)]
    return pa.concat_tables(tables).to_pandas()


@pytest.fixture(scope="module")
def demo_genome(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("demo")
    out = tmp / "genome.fa.gz"
    prepare_genome(DEMO_FASTA, out, tmp / "stats.parquet", genome_id="demo")
    return out


@pytest.mark.parametrize("threads", [1, 2])
def test_concatenation_reproduces_fasta(demo_genome: Path, tmp_path: Path, threads: int) -> None:
    """Fixed-length, non-overlapping, unfiltered chunks of a contig concatenate to the contig."""
    cfg = ChunkConfig(length=997, min_length=1, max_n_fraction=1.0, shard_bp=300_000)
    summary = chunk_genome(demo_genome, tmp_path / "c", genome_id="demo", chunk_cfg=cfg,
                           split_cfg=SplitConfig(region_size=50_000), threads=threads)
    df = _read(tmp_path / "c").sort_values("start")
    with pysam.FastaFile(str(demo_genome)) as fa:
        contig = fa.references[0]
        assert "".join(df["sequence"]) == fa.fetch(contig)
    assert (df["start"].to_numpy()[1:] == df["end"].to_numpy()[:-1]).all()
    assert all(summary[s].chunks > 0 for s in SPLITS)
    assert sum(s.bases for s in summary.values()) == 2_000_000


def test_every_chunk_equals_the_genome(demo_genome: Path, tmp_path: Path) -> None:
    cfg = ChunkConfig(length=(70, 1000), overlap=20, reverse_complement=True, seed=3)
    chunk_genome(demo_genome, tmp_path / "c", genome_id="demo", chunk_cfg=cfg,
                 split_cfg=SplitConfig(), threads=2)
    df = _read(tmp_path / "c")
    lengths = df["end"] - df["start"]
    assert lengths.between(50, 1000).all()
    with pysam.FastaFile(str(demo_genome)) as fa:
        contig = fa.references[0]
        for row in df.sample(300, random_state=0).itertuples():
            ref = fa.fetch(contig, row.start, row.end)
            expected = ref if row.strand == "+" else ref.translate(COMPLEMENT)[::-1]
            assert row.sequence == expected
    assert (df["strand"] == "-").sum() == (df["strand"] == "+").sum()


def test_splits_do_not_overlap_and_cover(demo_genome: Path, tmp_path: Path) -> None:
    chunk_genome(demo_genome, tmp_path / "c", genome_id="demo",
                 chunk_cfg=ChunkConfig(length=500, min_length=1),
                 split_cfg=SplitConfig(validation_fraction=0.1, test_fraction=0.1), threads=1)
    covered = np.zeros(2_000_000, dtype=np.int8)
    for split in SPLITS:
        for row in _read(tmp_path / "c", split).itertuples():
            covered[row.start : row.end] += 1
    assert (covered == 1).all()
    report = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert report["splits"]["validation"]["chunks"] > 0


def test_deterministic(demo_genome: Path, tmp_path: Path) -> None:
    cfg = ChunkConfig(length=(100, 3000), seed=7)
    for name, threads in (("a", 1), ("b", 2)):
        chunk_genome(demo_genome, tmp_path / name, genome_id="demo", chunk_cfg=cfg,
                     split_cfg=SplitConfig(seed=7), threads=threads)
    a, b = _read(tmp_path / "a"), _read(tmp_path / "b")
    assert a.equals(b)


def test_n_filter_iupac_and_softmask(tmp_path: Path) -> None:
    seq = "ACGT" * 25 + "N" * 100 + "acgtRYKM" * 12 + "ACGT"  # 100 ok, 100 N, 100 lower+IUPAC
    genome = _genome(tmp_path, {"c": seq})
    split = SplitConfig(mode="contigs", validation_fraction=0, test_fraction=0)
    summary = chunk_genome(genome, tmp_path / "keep", genome_id="g",
                           chunk_cfg=ChunkConfig(length=100, min_length=1, max_n_fraction=0.5),
                           split_cfg=split)
    df = _read(tmp_path / "keep", "train").sort_values("start")
    assert list(df["start"]) == [0, 200]
    assert summary["train"].dropped_n == 1
    assert df["sequence"].iloc[1] == "acgtNNNN" * 12 + "ACGT"
    chunk_genome(genome, tmp_path / "up", genome_id="g",
                 chunk_cfg=ChunkConfig(length=100, min_length=1, max_n_fraction=0.5,
                                       softmask="upper"), split_cfg=split)
    up = _read(tmp_path / "up", "train").sort_values("start")
    assert up["sequence"].iloc[1] == "ACGTNNNN" * 12 + "ACGT"
    assert len(pq.read_table(list_parts(tmp_path / "up" / "test")[0])) == 0


def test_short_tails_dropped_and_counted(tmp_path: Path) -> None:
    genome = _genome(tmp_path, {"c1": "A" * 1030, "c2": "C" * 1080})
    split = SplitConfig(mode="contigs", validation_fraction=0, test_fraction=0)
    summary = chunk_genome(genome, tmp_path / "c", genome_id="g",
                           chunk_cfg=ChunkConfig(length=100, min_length=50), split_cfg=split)
    assert summary["train"].chunks == 10 + 11
    assert summary["train"].dropped_short == 1


def test_contig_mode_whitelists(tmp_path: Path) -> None:
    records = {f"chr{i}": "ACGT" * 500 for i in range(1, 6)}
    genome = _genome(tmp_path, records)
    split = SplitConfig(mode="contigs", validation_contigs=("chr2",), test_contigs=("chr5",))
    chunk_genome(genome, tmp_path / "c", genome_id="g",
                 chunk_cfg=ChunkConfig(length=100), split_cfg=split)
    assert set(_read(tmp_path / "c", "validation")["contig"]) == {"chr2"}
    assert set(_read(tmp_path / "c", "test")["contig"]) == {"chr5"}
    assert set(_read(tmp_path / "c", "train")["contig"]) == {"chr1", "chr3", "chr4"}
    with pytest.raises(ConfigError, match=r"held-out contigs not in the genome: \['chrX'\]"):
        chunk_genome(genome, tmp_path / "d", genome_id="g", chunk_cfg=ChunkConfig(length=100),
                     split_cfg=SplitConfig(test_contigs=("chrX",)))
    assert not (tmp_path / "d").exists()


def test_one_contig_gets_all_splits() -> None:
    intervals = assign_splits([("c", 400_000)], SplitConfig(region_size=100_000))
    assert {i.split for i in intervals} == set(SPLITS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length": 0}, "invalid chunk length"),
        ({"length": (500, 100)}, "invalid chunk length"),
        ({"length": 100, "overlap": 100}, "overlap must be"),
        ({"softmask": "lower"}, "softmask must be"),
        ({"max_n_fraction": 2}, "max_n_fraction"),
    ],
)
def test_bad_chunk_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ChunkConfig(**kwargs)
