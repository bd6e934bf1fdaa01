"""The user's sequences for embed/predict: FASTA, tables, strand-aware BED; one-line errors."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pysam
import pytest

from dnalm.errors import DnalmError
from dnalm.inputs import read_sequences
from tests.conftest import write_fasta

COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
GENOME_SEQ = "ACGTTGCA" * 50 + "GGGCCCAT" * 50  # 800 bp


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bgzipped, faidx-indexed genome with contigs ``chr1`` and ``2``."""
    folder = tmp_path_factory.mktemp("genome")
    plain = write_fasta(folder / "g.fa", {"chr1": GENOME_SEQ, "2": GENOME_SEQ[::-1]})
    out = folder / "g.fa.gz"
    pysam.tabix_compress(str(plain), str(out), force=True)
    pysam.faidx(str(out))
    return out


def test_fasta_plain_and_gzip_keep_ids_and_sequences(tmp_path: Path) -> None:
    records = {"first": "ACGTN" * 3, "second": "ttaacc", "third_dup": "G" * 70}
    for gz in (False, True):
        path = write_fasta(tmp_path / f"in{int(gz)}.fa{'.gz' if gz else ''}", records, width=7,
                           gz=gz)
        read = read_sequences(path)
        assert read.format == "fasta"
        assert read.ids == list(records) and read.sequences == list(records.values())
        keys = read.keys()
        assert keys["record"].tolist() == [0, 1, 2] and "contig" not in keys


def test_table_with_and_without_an_id_column(tmp_path: Path) -> None:
    frame = pd.DataFrame({"name": ["a", "b"], "sequence": ["ACGT", "GG CC"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    read = read_sequences(tmp_path / "t.csv", id_column="name")
    assert read.ids == ["a", "b"] and read.sequences == ["ACGT", "GGCC"]
    frame.drop(columns="name").to_parquet(tmp_path / "t.parquet")
    assert read_sequences(tmp_path / "t.parquet").ids == ["row_1", "row_2"]
    frame.rename(columns={"sequence": "seq"}).to_csv(tmp_path / "t.tsv.gz", sep="\t",
                                                     index=False, compression="gzip")
    read = read_sequences(tmp_path / "t.tsv.gz", sequence_column="seq", id_column="name")
    assert read.sequences == ["ACGT", "GGCC"]


def test_bed_is_strand_aware_and_keeps_names(genome: Path, tmp_path: Path) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\n# comment\n"
                   "chr1\t10\t30\tfwd\t0\t+\n"
                   "chr1\t10\t30\trev\t0\t-\n"
                   "1\t100\t120\n"            # chr-prefix matching: 1 -> chr1
                   "chr2\t5\t9\t.\t0\t-\n")   # chr2 -> 2; no name
    read = read_sequences(bed, genome=genome)
    assert read.ids == ["fwd", "rev", "1:100-120", "chr2:5-9(-)"]
    assert read.sequences[0] == GENOME_SEQ[10:30]
    assert read.sequences[1] == GENOME_SEQ[10:30].translate(COMPLEMENT)[::-1]
    assert read.sequences[2] == GENOME_SEQ[100:120]
    assert read.sequences[3] == GENOME_SEQ[::-1][5:9].translate(COMPLEMENT)[::-1]
    keys = read.keys()
    assert keys[["contig", "start", "end", "strand"]].values.tolist() == [
        ["chr1", 10, 30, "+"], ["chr1", 10, 30, "-"], ["1", 100, 120, "."], ["chr2", 5, 9, "-"]]
    gz = tmp_path / "r.bed.gz"
    gz.write_bytes(gzip.compress(bed.read_bytes()))
    assert read_sequences(gz, genome=genome).sequences == read.sequences


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.fa", ">a\n\n>b\nACGT\n", "record 1 (id a) has an empty sequence"),
    ("bad.fa", ">a\nACGT\n>b\nAC-T\n", "record 2 (id b): character '-' at position 3"),
    ("x.txt.fa", "no header\n", "not a FASTA file"),
    ("noseq.csv", "id,seq\na,ACGT\n", "no 'sequence' column (columns are: id, seq)"),
    ("na.csv", "id,sequence\na,ACGT\nb,\n", "row 2 (id b) has no sequence"),
    ("what.xyz", "ACGT\n", "cannot tell the input format"),
    ("short.bed", "chr1\t5\n", "line 1: expected chrom, start, end"),
    ("int.bed", "chr1\tfive\t9\n", "line 1: start/end 'five'/'9' are not integers"),
    ("off.bed", "\nchr1\t700\t900\n", "line 2: interval 700-900 is empty or outside chr1"),
    ("contig.bed", "chrX\t1\t9\n", "line 1: contig 'chrX' is not in genome"),
    ("strand.bed", "chr1\t1\t9\tn\t0\t*\n", "line 1: strand '*' is not +, - or ."),
])
def test_bad_input_is_one_line_naming_file_and_record(genome: Path, tmp_path: Path, name: str,
                                                      content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DnalmError) as info:
        read_sequences(path, genome=genome)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_bed_without_genome_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "r.bed").write_text("chr1\t1\t9\n")
    with pytest.raises(DnalmError, match="needs the genome"):
        read_sequences(tmp_path / "r.bed")
    with pytest.raises(DnalmError, match="file not found"):
        read_sequences(tmp_path / "nope.fa")


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    bad = write_fasta(tmp_path / "bad.fa", {"ok": "ACGT", "broken": "AC1T"})
    out = tmp_path / "out.parquet"
    proc = subprocess.run([sys.executable, "-m", "dnalm", "embed", str(tmp_path), str(bad),
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "dnalm: error:" in line]
    assert len(lines) == 1 and "record 2 (id broken): character '1'" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
