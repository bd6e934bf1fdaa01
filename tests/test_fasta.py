"""Genome preparation: bgzip + faidx + statistics, and one-line errors for bad FASTA."""

import gzip
from pathlib import Path

import pyarrow.parquet as pq
import pysam
import pytest

from dnalm.errors import InputFormatError
from dnalm.fasta import prepare_genome, read_all_sequences
from tests.conftest import DEMO_FASTA, LAMBDA_FASTA, write_fasta


def _prepare(src: Path, tmp_path: Path, **kwargs):
    out = tmp_path / "out" / "genome.fa.gz"
    rows = prepare_genome(src, out, tmp_path / "out" / "stats.parquet", genome_id="g", **kwargs)
    return out, rows


def test_roundtrip_and_index(tmp_path: Path) -> None:
    records = {"c1": "ACGTNacgtn" * 13 + "A", "c2": "GGGCCCAAAT" * 50, "c3": "T"}
    src = write_fasta(tmp_path / "in.fa", records, width=7)
    out, rows = _prepare(src, tmp_path)
    with pysam.FastaFile(str(out)) as fa:
        assert list(fa.references) == ["c1", "c2", "c3"]
        for name, seq in records.items():
            assert fa.fetch(name) == seq
        assert fa.fetch("c2", 5, 17) == records["c2"][5:17]
    assert Path(f"{out}.fai").exists() and Path(f"{out}.gzi").exists()
    c1 = rows[0]
    assert c1["length"] == 131
    assert c1["n_count"] == 26
    assert c1["softmasked_fraction"] == pytest.approx(13 * 5 / 131)
    assert c1["gc_fraction"] == pytest.approx(52 / 105)
    stats = pq.read_table(tmp_path / "out" / "stats.parquet").to_pylist()
    assert [r["contig"] for r in stats] == ["c1", "c2", "c3"]


def test_single_line_contig_and_gzip_source(tmp_path: Path) -> None:
    seq = "ACGT" * 3_000_000  # 12 Mbp on one line: longer than a read block
    src = tmp_path / "one.fa.gz"
    src.write_bytes(gzip.compress(f">big\n{seq}\n>small\nAC".encode(), compresslevel=1))
    out, rows = _prepare(src, tmp_path)
    assert [r["length"] for r in rows] == [12_000_000, 2]
    with pysam.FastaFile(str(out)) as fa:
        assert fa.fetch("big", 11_999_990, 12_000_000) == seq[-10:]
        assert fa.fetch("small") == "AC"


def test_demo_and_lambda_are_read_exactly(tmp_path: Path) -> None:
    for src in (DEMO_FASTA, LAMBDA_FASTA):
        expected = read_all_sequences(src)
        out, _ = _prepare(src, tmp_path)
        with pysam.FastaFile(str(out)) as fa:
            for name, seq in expected.items():
                assert fa.fetch(name) == seq


def test_include_exclude(tmp_path: Path) -> None:
    src = write_fasta(tmp_path / "in.fa", {"chr1": "ACGT", "chr1_alt": "AAAA", "chrUn_x": "CC",
                                           "chr2": "GG"})
    _, rows = _prepare(src, tmp_path, exclude=["*_alt", "chrUn*"])
    assert [r["contig"] for r in rows] == ["chr1", "chr2"]
    _, rows = _prepare(src, tmp_path, include=["chr2"])
    assert [r["contig"] for r in rows] == ["chr2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\n\n", "empty file"),
        (b"ACGT\n>c1\nACGT\n", "not a FASTA file"),
        (b"<html>not found</html>\n", "not a FASTA file"),
        (b">c1\nACGT\n>c1\nACGT\n", "duplicate contig name 'c1'"),
        (b">c1\nACGT\n>c2\nAC1T\n", "contig 'c2': invalid character '1' at position 3"),
        (b">c1\n\n>c2\nACGT\n", "contig 'c1' has no sequence"),
        (b">\nACGT\n", "FASTA header without a name"),
    ],
)
def test_bad_fasta(tmp_path: Path, content: bytes, message: str) -> None:
    src = tmp_path / "bad.fa"
    src.write_bytes(content)
    with pytest.raises(InputFormatError, match=message) as info:
        _prepare(src, tmp_path)
    assert "genome g" in str(info.value) or "bad.fa" in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "genome.fa.gz").exists()
    assert not (tmp_path / "out" / "stats.parquet").exists()


def test_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress((">c1\n" + "ACGT" * 50_000 + "\n").encode())
    src = tmp_path / "cut.fa.gz"
    src.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFormatError, match="truncated gzip"):
        _prepare(src, tmp_path)
    assert not any((tmp_path / "out").glob("*"))


def test_no_contig_left(tmp_path: Path) -> None:
    src = write_fasta(tmp_path / "in.fa", {"chr1": "ACGT"})
    with pytest.raises(InputFormatError, match="no contigs left"):
        _prepare(src, tmp_path, include=["chrX"])
