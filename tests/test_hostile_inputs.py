"""Hostile inputs (issue 19): nothing silently wrong, nothing dropped, one line for bad input.

Classes covered here: variants longer than the scoring window, stale FASTA indexes, altered
input (BED intervals off their contig, gaps in a genome, contradictory chunk settings, an
output that is its own input) and partial output (unsorted or odd VCFs, empty inputs).
"""

from __future__ import annotations

import gzip
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pysam
import pytest

from dnalm import genome as genome_module
from dnalm.chunks import ChunkConfig, SplitConfig, chunk_genome
from dnalm.cli import main
from dnalm.errors import ConfigError, DnalmError, InputFormatError
from dnalm.fasta import prepare_genome
from dnalm.genome import Genome, read_fai
from dnalm.score.saturation import read_bed, saturation_variants
from dnalm.score.settings import PartitionSettings, ScoreConfig
from dnalm.score.vep import score_variants, too_long_for_window
from dnalm.variants import annotate_vcf, check_against_genome, read_variants
from tests.conftest import REPO, write_fasta
from tests.scoring_utils import make_model, make_tokenizer, random_genome

GENOME_LEN = 4000
HEADER = ("##fileformat=VCFv4.2\n##contig=<ID=c1>\n"
          "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A plain indexed genome, its sequence and a tiny single-base masked LM."""
    tmp = tmp_path_factory.mktemp("hostile")
    seq = random_genome(GENOME_LEN)
    fa = write_fasta(tmp / "g.fa", {"c1": seq})
    pysam.faidx(str(fa))
    model = make_model(make_tokenizer("char", tmp, fa), tmp / "model", max_positions=64)
    return tmp, seq, fa, model


def _snv(seq: str, pos: int) -> str:
    ref = seq[pos - 1]
    return f"c1\t{pos}\t.\t{ref}\t{'A' if ref != 'A' else 'C'}\t.\t.\t.\n"


def _age(path: Path, seconds: float = 3600) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


# --- (a) variants longer than the window ---------------------------------------------------


def test_deletion_longer_than_the_window_is_skipped_naming_the_window(world) -> None:
    from dnalm.score.lm import MaskedLM

    _, seq, fa, model = world
    rows = [("c1", 1000, seq[999:999 + 2001], seq[999]),  # 2,001-bp deletion
            ("c1", 3500, seq[3499], "A" if seq[3499] != "A" else "C")]
    frame = pd.DataFrame(rows, columns=["contig", "pos", "ref", "alt"])
    frame["record"], frame["id"] = range(len(frame)), "."
    with Genome(fa) as genome:
        checked = check_against_genome(frame, genome)
        table = score_variants(MaskedLM(model, device="cpu"), genome, checked,
                               ScoreConfig(window_bp=62))
    assert np.isnan(table.loc[0, "score"]) and table.loc[0, "window"] == ""
    assert "62-bp window" in table.loc[0, "reason"]
    assert np.isfinite(table.loc[1, "score"])


def test_one_window_rule_for_zero_shot_and_fine_tuned_effects() -> None:
    import inspect

    from dnalm.finetune import effects

    ref = pd.Series(["A" * 31, "A" * 32, "A"])
    alt = pd.Series(["A", "A", "A" * 32])
    skip, reason = too_long_for_window(ref, alt, 62)
    assert skip.tolist() == [False, True, True] and "62-bp window" in reason
    assert "too_long_for_window" in inspect.getsource(effects.effect_table)


# --- (b) stale FASTA indexes ---------------------------------------------------------------


def _genome_pair(tmp: Path, seq: str, *, bgzip: bool) -> Path:
    """A FASTA indexed, then rewritten with a different layout (the index left stale)."""
    plain = write_fasta(tmp / "x.fa", {"c1": seq[:3000], "c2": seq[3000:]})
    path = plain
    if bgzip:
        path = tmp / "x.fa.gz"
        pysam.tabix_compress(str(plain), str(path), force=True)
    pysam.faidx(str(path))
    write_fasta(plain, {"c1": "ACGT" * 50 + seq[:3000], "c2": seq[3000:]})
    if bgzip:
        pysam.tabix_compress(str(plain), str(path), force=True)
    return path


@pytest.mark.parametrize("bgzip", [False, True])
def test_stale_index_is_rebuilt_when_writable(world, tmp_path, caplog, bgzip) -> None:
    _, seq, _, _ = world
    path = _genome_pair(tmp_path, seq, bgzip=bgzip)
    with caplog.at_level(logging.WARNING), Genome(path) as genome:
        assert genome.lengths["c1"] == 3200
        assert genome.fetch("c2", 0, 50) == seq[3000:3050]
    assert "rebuilt" in caplog.text
    assert read_fai(path)[0] == ("c1", 3200)


@pytest.mark.parametrize("bgzip", [False, True])
def test_stale_index_is_refused_when_read_only(world, tmp_path, monkeypatch, bgzip) -> None:
    _, seq, _, _ = world
    path = _genome_pair(tmp_path, seq, bgzip=bgzip)
    monkeypatch.setattr(genome_module.os, "access", lambda *a, **k: False)
    with pytest.raises(InputFormatError, match=r"stale index.*samtools faidx"):
        Genome(path)
    with pytest.raises(InputFormatError, match="stale index"):
        read_fai(path)


def test_index_older_than_its_fasta_is_stale(world, tmp_path, monkeypatch) -> None:
    _, seq, _, _ = world
    fa = write_fasta(tmp_path / "y.fa", {"c1": seq})
    pysam.faidx(str(fa))
    _age(Path(f"{fa}.fai"))
    monkeypatch.setattr(genome_module.os, "access", lambda *a, **k: False)
    with pytest.raises(InputFormatError, match=r"older than y\.fa"):
        Genome(fa)


def test_a_matching_index_is_left_alone() -> None:
    slice_fa = REPO / "data" / "hg38_chr16_axin1_slice" / "chr16_186964_397118.fa"
    before = Path(f"{slice_fa}.fai").stat().st_mtime_ns
    with Genome(slice_fa) as genome:
        assert genome.lengths == {"chr16": 210155}
    assert Path(f"{slice_fa}.fai").stat().st_mtime_ns == before


# --- (c) altered input ---------------------------------------------------------------------


def test_bed_interval_past_the_contig_end_is_refused_not_clipped(world, tmp_path) -> None:
    _, _, fa, _ = world
    bed = tmp_path / "past.bed"
    bed.write_text(f"c1\t{GENOME_LEN - 100}\t{GENOME_LEN + 200}\tr1\n")
    with Genome(fa) as genome:
        with pytest.raises(InputFormatError, match=r"line 1: interval .* outside c1"):
            read_bed(bed, genome)
        regions = read_bed(bed)
        with pytest.raises(InputFormatError, match=r"region r1: interval .* outside c1"):
            saturation_variants(genome, regions)


def test_negative_bed_start_is_one_line(tmp_path) -> None:
    bed = tmp_path / "neg.bed"
    bed.write_text("c1\t-5\t10\n")
    with pytest.raises(InputFormatError, match="line 1: start -5 is negative"):
        read_bed(bed)


@pytest.mark.parametrize("char", ["-", "*"])
def test_gaps_in_a_genome_are_refused_at_prepare_and_chunk(tmp_path, char) -> None:
    src = write_fasta(tmp_path / "gap.fa", {"c1": "ACGT" * 30 + char + "ACGT" * 30})
    with pytest.raises(InputFormatError, match=f"{'[*]' if char == '*' else char}' at "
                                               "position 121 is not a base"):
        prepare_genome(src, tmp_path / "out" / "g.fa.gz", tmp_path / "out" / "s.parquet",
                       genome_id="g")
    assert not (tmp_path / "out" / "g.fa.gz").exists()
    pysam.faidx(str(src))  # indexed by hand: chunking reads it directly
    with pytest.raises(InputFormatError, match="position 121 is not a base"):
        chunk_genome(src, tmp_path / "chunks", genome_id="g",
                     chunk_cfg=ChunkConfig(length=60, min_length=1),
                     split_cfg=SplitConfig(validation_fraction=0, test_fraction=0))
    assert not (tmp_path / "chunks").exists()


def test_min_length_longer_than_the_chunks_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="min_length 500 is longer than the shortest chunk"):
        ChunkConfig(length=100, min_length=500)
    with pytest.raises(ConfigError, match="min_length"):
        ChunkConfig(length=(70, 1000), min_length=100)
    assert main(["chunk", str(tmp_path / "g.fa"), str(tmp_path / "c"), "--genome-id", "g",
                 "--length", "100", "--min-length", "500"]) == 1


def test_prepare_genome_refuses_to_overwrite_its_input(tmp_path) -> None:
    src = write_fasta(tmp_path / "x.fa", {"c1": "ACGT" * 40})
    before = src.read_bytes()
    (tmp_path / "link.fa").symlink_to(src)
    for out in (src, tmp_path / "." / "x.fa", tmp_path / "link.fa"):
        with pytest.raises(InputFormatError, match="is the input FASTA itself"):
            prepare_genome(src, out, tmp_path / "s.parquet", genome_id="g")
    assert main(["prepare-genome", str(src), str(src), "--genome-id", "g"]) == 1
    assert src.read_bytes() == before


# --- (d) partial output, unsorted and odd VCFs ---------------------------------------------


def _score_cli(world, vcf: Path, out: Path, *extra: str) -> int:
    _, _, fa, model = world
    return main(["score-variants", "--model", str(model), "--genome", str(fa), "--vcf",
                 str(vcf), "--out", str(out), "--cpu", *extra])


def test_unsorted_vcf_is_refused_before_scoring_leaving_nothing(world, tmp_path,
                                                                capsys) -> None:
    _, seq, _, _ = world
    vcf = tmp_path / "unsorted.vcf"
    vcf.write_text(HEADER + _snv(seq, 200) + _snv(seq, 100))
    out = tmp_path / "o.parquet"
    assert _score_cli(world, vcf, out, "--annotated-vcf", str(tmp_path / "o.vcf.gz")) == 1
    err = capsys.readouterr().err
    assert "not sorted: record 2 (c1:100) comes after c1:200" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unsorted.vcf"]


def test_unsorted_vcf_is_refused_when_partitioned(world, tmp_path) -> None:
    from dnalm.partition import partition_variants

    _, seq, fa, _ = world
    vcf = tmp_path / "split.vcf"
    vcf.write_text(HEADER.replace("##contig=<ID=c1>\n", "") + _snv(seq, 100)
                   + _snv(seq, 200).replace("c1", "c2") + _snv(seq, 300))
    with pytest.raises(InputFormatError, match=r"record 3 .* returns to contig c1"):
        partition_variants(vcf, fa, tmp_path / "part", settings=PartitionSettings())
    assert not (tmp_path / "part").exists()


def test_latin1_vcf_header_is_copied_byte_identical(world, tmp_path) -> None:
    _, seq, _, _ = world
    header = HEADER.replace("##contig", "##source=Ba\xf1os caf\xe9\n##contig")
    vcf = tmp_path / "latin.vcf"
    vcf.write_bytes((header + _snv(seq, 100)).encode("latin-1"))
    scores = pd.DataFrame({"record": [0], "alt": [_snv(seq, 100).split("\t")[4]],
                           "reason": [""], "score": [1.5]})
    out = annotate_vcf(vcf, scores, tmp_path / "a.vcf.gz")
    text = gzip.decompress(out.read_bytes())
    assert "##source=Ba\xf1os caf\xe9\n".encode("latin-1") in text
    assert b"DNALM=1.5" in text and Path(f"{out}.tbi").is_file()


def test_vcf_with_no_records_gives_empty_outputs(world, tmp_path) -> None:
    vcf = tmp_path / "empty.vcf"
    vcf.write_text(HEADER)
    out, annotated = tmp_path / "o.parquet", tmp_path / "o.vcf.gz"
    assert _score_cli(world, vcf, out, "--annotated-vcf", str(annotated)) == 0
    assert pq.read_table(out).num_rows == 0
    assert gzip.decompress(annotated.read_bytes()).decode().endswith(
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


def test_annotated_vcf_of_a_table_is_refused_before_scoring(world, tmp_path) -> None:
    table = tmp_path / "v.csv"
    table.write_text("contig,pos,ref,alt\nc1,10,A,C\n")
    assert _score_cli(world, table, tmp_path / "o.parquet", "--annotated-vcf",
                      str(tmp_path / "o.vcf.gz")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.csv"]


def test_empty_alt_in_a_table_keeps_its_row_with_a_reason(world, tmp_path) -> None:
    _, _, fa, _ = world
    csv = tmp_path / "v.csv"
    csv.write_text("contig,pos,ref,alt\nc1,10,A,\nc1,12,A,G\n")
    parquet = tmp_path / "v.parquet"
    pd.DataFrame({"contig": ["c1"], "pos": [10], "ref": ["A"], "alt": [None]}).to_parquet(parquet)
    with Genome(fa) as genome:
        for path, n in ((csv, 2), (parquet, 1)):
            checked = check_against_genome(read_variants(path), genome)
            assert len(checked) == n and checked.loc[0, "alt"] == "."
            assert checked.loc[0, "reason"].startswith("unsupported allele .")


def test_annotation_with_no_records_is_one_line(tmp_path) -> None:
    from dnalm.coding.annotation import read_annotation

    gtf = tmp_path / "empty.gtf"
    gtf.write_text("#!genome-build test\n")
    with pytest.raises(DnalmError, match="no CDS rows"):
        read_annotation(gtf)
