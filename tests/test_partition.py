"""Variant sets at scale: the streaming reader, the vectorised REF check, partitions read by
region jobs, and the streaming annotated VCF, each against the plain computation."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from dnalm.errors import InputFormatError
from dnalm.genome import Genome
from dnalm.partition import assign_bins, n_jobs, partition_variants, plan_jobs, read_job
from dnalm.regions import in_region, plan_regions
from dnalm.score.settings import PartitionSettings
from dnalm.variants import (
    annotate_vcf,
    annotate_vcf_streaming,
    check_against_genome,
    iter_variants,
    read_variants,
)
from tests.conftest import write_fasta

CONTIGS = {"chrA": 5000, "chrB": 3000, "chrC": 800}


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    rng = random.Random(7)
    seqs = {c: "".join(rng.choice("ACGT") for _ in range(n)) for c, n in CONTIGS.items()}
    path = write_fasta(tmp_path_factory.mktemp("genome") / "g.fa", seqs)
    pysam.faidx(str(path))
    return path, seqs


def _records(seqs: dict[str, str], n: int = 400, seed: int = 3) -> list[tuple]:
    """Sorted VCF records: SNVs, MNVs, indels, multi-allelic, and every kind of bad one."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        contig = rng.choice(list(CONTIGS))
        pos = rng.randrange(1, CONTIGS[contig] - 5)
        ref = seqs[contig][pos - 1]
        kind = i % 10
        if kind == 0:
            ref = seqs[contig][pos - 1: pos + 2]
            alt = ref[0]
        elif kind == 1:
            alt = ",".join(b for b in "ACGT" if b != ref)
        elif kind == 2:
            alt = ref + "TT"
        elif kind == 3:
            alt = "<DEL>"
        elif kind == 4:
            ref = "A" if ref != "A" else "C"  # REF mismatch
            alt = "G"
        else:
            alt = rng.choice([b for b in "ACGT" if b != ref])
        rows.append((contig, pos, f"v{i}", ref, alt))
    rows += [("chrZ", 10, "nowhere", "A", "C"), ("chrC", 800, "end", seqs["chrC"][-1], "A"),
             ("chrC", 801, "past_end", "A", "C"), ("chrA", 30, "same", "A", "A"),
             ("chrA", 40, "dot", seqs["chrA"][39], ".")]
    return sorted(rows, key=lambda r: (r[0], r[1]))


def _write_vcf(path: Path, rows: list[tuple], samples: int = 0) -> Path:
    header = "##fileformat=VCFv4.2\n" + "".join(
        f"##contig=<ID={c},length={n}>\n" for c, n in {**CONTIGS, "chrZ": 100}.items())
    names = ["CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
    if samples:
        names += ["FORMAT"] + [f"s{i}" for i in range(samples)]
    body = []
    for i, (c, p, vid, r, a) in enumerate(rows):
        fields = [c, str(p), vid, r, a, ".", "PASS", f"K={i}"]
        if samples and i % 2:  # some records carry genotypes, some do not
            fields += ["GT"] + ["0/1"] * samples
        body.append("\t".join(fields))
    text = header + "#" + "\t".join(names) + "\n" + "\n".join(body) + "\n"
    if path.suffix == ".gz":
        plain = path.with_suffix("")
        plain.write_text(text)
        pysam.tabix_compress(str(plain), str(path), force=True)
    else:
        path.write_text(text)
    return path


def _by_pysam(path: Path) -> pd.DataFrame:
    """The reference reader: htslib, one record at a time."""
    rows = []
    with pysam.VariantFile(str(path)) as vcf:
        for index, rec in enumerate(vcf):
            for alt in rec.alts or (".",):
                rows.append((index, rec.chrom, rec.pos, rec.ref, alt, rec.id or "."))
    return pd.DataFrame(rows, columns=["record", "contig", "pos", "ref", "alt", "id"])


def _by_fetch(frame: pd.DataFrame, genome: Genome) -> list[str]:
    """The reference check: one fetch per variant."""
    reasons = []
    for row in frame.itertuples():
        contig = genome.contigs.resolve(str(row.contig))
        ref, alt = str(row.ref).upper(), str(row.alt).upper()
        if contig is None:
            reasons.append(f"contig {row.contig} not in genome")
        elif not set(alt) <= set("ACGTN") or not alt:
            reasons.append(f"unsupported allele {alt} (symbolic, missing or not ACGTN)")
        elif ref == alt:
            reasons.append("REF equals ALT")
        elif row.pos - 1 < 0 or row.pos - 1 + len(ref) > genome.lengths[contig]:
            reasons.append(f"position outside contig (length {genome.lengths[contig]})")
        else:
            actual = genome.fetch(contig, row.pos - 1, row.pos - 1 + len(ref)).upper()
            reasons.append("" if actual == ref else f"REF mismatch: genome has {actual}")
    return reasons


@pytest.mark.parametrize("suffix,samples", [(".vcf", 0), (".vcf.gz", 3)])
def test_streaming_reader_equals_htslib(genome, tmp_path: Path, suffix: str, samples: int):
    _, seqs = genome
    vcf = _write_vcf(tmp_path / f"v{suffix}", _records(seqs), samples)
    batches = list(iter_variants(vcf, batch_bytes=2048))  # many small batches
    assert len(batches) > 3
    got = pd.concat(batches, ignore_index=True)
    want = _by_pysam(vcf)
    for column in want.columns:
        assert got[column].astype(str).tolist() == want[column].astype(str).tolist(), column


def test_tables_are_streamed_like_vcfs(genome, tmp_path: Path) -> None:
    _, seqs = genome
    vcf = _write_vcf(tmp_path / "v.vcf", _records(seqs, 50))
    want = read_variants(vcf)
    frame = pd.DataFrame(_records(seqs, 50), columns=["contig", "pos", "id", "ref", "alt"])
    for name, write in (("t.csv", lambda p: frame.to_csv(p, index=False)),
                        ("t.tsv", lambda p: frame.to_csv(p, sep="\t", index=False)),
                        ("t.parquet", lambda p: frame.to_parquet(p))):
        got = pd.concat(list(iter_variants(_written(tmp_path / name, write), batch_bytes=512)),
                        ignore_index=True)
        for column in want.columns:
            assert got[column].astype(str).tolist() == want[column].astype(str).tolist(), name


def _written(path: Path, write) -> Path:
    write(path)
    return path


def test_vectorised_check_equals_one_fetch_per_variant(genome, tmp_path: Path) -> None:
    path, seqs = genome
    frame = read_variants(_write_vcf(tmp_path / "v.vcf", _records(seqs)))
    with Genome(path) as g:
        checked = check_against_genome(frame, g)
        assert checked["reason"].tolist() == _by_fetch(frame, g)
    assert checked["reason"].eq("").sum() > 200


@pytest.mark.parametrize("regions", [1, 3, 7])
def test_every_row_is_in_exactly_one_job(genome, tmp_path: Path, regions: int) -> None:
    """Fixed plans equal the regions of earlier versions; rows past a contig end or on no
    contig are kept (bin 0 for the latter), with their reason."""
    path, seqs = genome
    vcf = _write_vcf(tmp_path / "v.vcf", _records(seqs))
    part = tmp_path / "part"
    manifest = partition_variants(vcf, path, part, settings=PartitionSettings(regions=regions),
                                  batch_bytes=4096)
    assert n_jobs(part) == regions == len(manifest["jobs"])
    jobs = [read_job(part, j) for j in range(regions)]
    together = pd.concat(jobs).sort_values(["record", "alt"]).reset_index(drop=True)
    with Genome(path) as g:
        whole = check_against_genome(read_variants(vcf), g)
    whole = whole.sort_values(["record", "alt"]).reset_index(drop=True)
    for column in ("record", "alt", "reason", "start", "genome_contig"):
        assert together[column].astype(str).tolist() == whole[column].astype(str).tolist()
    plan = plan_regions(list(CONTIGS.items()), regions)
    for j, frame in enumerate(jobs):
        inside = frame[frame["reason"] == ""]
        assert in_region(inside, plan[j]).all()  # scorable rows: exactly the old regions
        assert frame["record"].is_monotonic_increasing
    assert "nowhere" in set(jobs[0]["id"]) and manifest["n_records"] == len(_records(seqs))
    assert any("past_end" in set(f["id"]) for f in jobs)
    assert manifest["skipped"]["contig chrZ not in genome"] == 1


def test_variants_per_job_sizes_the_jobs(genome, tmp_path: Path) -> None:
    path, seqs = genome
    vcf = _write_vcf(tmp_path / "v.vcf", _records(seqs))
    few = partition_variants(vcf, path, tmp_path / "a", settings=PartitionSettings(
        variants_per_job=10_000, partition_bins=64))
    assert len(few["jobs"]) == 1  # fewer variants than a job holds: one job
    many = partition_variants(vcf, path, tmp_path / "b", settings=PartitionSettings(
        variants_per_job=50, partition_bins=64))
    sizes = [len(read_job(tmp_path / "b", j).query("reason == ''"))
             for j in range(len(many["jobs"]))]
    assert len(sizes) == round(many["n_scorable"] / 50) and sum(sizes) == many["n_scorable"]
    assert max(sizes) < 3 * 50
    assert plan_jobs(np.zeros(8, int), PartitionSettings(variants_per_job=5)) == [(0, 8)]
    ten_million = np.full(4096, 10_000_000 // 4096)
    assert len(plan_jobs(ten_million, PartitionSettings(variants_per_job=50_000))) == 200


def test_bins_follow_the_concatenated_contigs() -> None:
    frame = pd.DataFrame({"genome_contig": ["chrA", "chrA", "chrB", "chrC", None, "chrC"],
                          "start": [0, 4999, 0, 799, 5, 10_000]})
    bins = assign_bins(frame, list(CONTIGS.items()), 4)  # 8,800 bp: 2,200 bp a bin
    assert bins.tolist() == [0, 2, 2, 3, 0, 3]


def test_bad_vcf_lines_are_one_line_errors(tmp_path: Path) -> None:
    vcf = tmp_path / "bad.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "chrA\t10\t.\tA\tC\t.\t.\t.\nchrA\t1000.7\t.\tA\tC\t.\t.\t.\n")
    with pytest.raises(InputFormatError, match="POS is not an integer"):
        read_variants(vcf)
    vcf.write_text("chrA\t10\t.\tA\tC\n")
    with pytest.raises(InputFormatError, match="no #CHROM header line"):
        read_variants(vcf)
    vcf.write_text("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchrA\t10\n")
    with pytest.raises(InputFormatError, match="record 1 has fewer than 5"):
        read_variants(vcf)


def test_streaming_annotation_equals_the_in_memory_writer(genome, tmp_path: Path) -> None:
    """Buckets of 16 records (the table shuffled, so every bucket is filled from several row
    groups) give the same VCF as the writer that holds every record."""
    path, seqs = genome
    vcf = _write_vcf(tmp_path / "v.vcf.gz", _records(seqs))
    with Genome(path) as g:
        scores = check_against_genome(read_variants(vcf), g)
    rng = np.random.default_rng(0)
    scores["score"] = np.where(scores["reason"] == "", rng.normal(size=len(scores)), np.nan)
    shuffled = scores.sample(frac=1, random_state=1)[["record", "alt", "score", "reason"]]
    table = tmp_path / "scores.parquet"
    shuffled.to_parquet(table, row_group_size=50)
    annotate_vcf(vcf, scores.sort_values("record", kind="stable"), tmp_path / "a.vcf.gz")
    annotate_vcf_streaming(vcf, table, tmp_path / "b.vcf.gz", bucket_records=16)
    with gzip.open(tmp_path / "a.vcf.gz", "rt") as a, gzip.open(tmp_path / "b.vcf.gz", "rt") as b:
        assert a.read() == b.read()
    assert (tmp_path / "b.vcf.gz.tbi").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".buckets")]


def test_partition_manifest_is_written_last(genome, tmp_path: Path) -> None:
    """A failed partitioning leaves no directory (atomic), a finished one has its manifest."""
    path, seqs = genome
    bad = tmp_path / "bad.vcf"
    bad.write_text("##x\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchrA\tx\t.\tA\tC\t.\t.\t.\n")
    with pytest.raises(InputFormatError):
        partition_variants(bad, path, tmp_path / "p", settings=PartitionSettings())
    assert not (tmp_path / "p").exists()
    good = _write_vcf(tmp_path / "v.vcf", _records(seqs, 20))
    partition_variants(good, path, tmp_path / "p", settings=PartitionSettings())
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["n_rows"] == len(read_variants(good))


def test_a_set_without_records_gives_empty_jobs_and_outputs(genome, tmp_path: Path) -> None:
    """A VCF emptied by filtering (header only): every job and the gathered table are empty,
    the annotated VCF is the header; nothing fails."""
    from dnalm.score.run import gather_scores
    from dnalm.score.settings import ScoreConfig
    from dnalm.score.vep import unscored

    path, _ = genome
    vcf = _write_vcf(tmp_path / "empty.vcf", [])
    manifest = partition_variants(vcf, path, tmp_path / "p", settings=PartitionSettings())
    assert manifest["n_rows"] == 0 and n_jobs(tmp_path / "p") == 2
    parts = []
    for job in range(2):
        frame = unscored(read_job(tmp_path / "p", job), ScoreConfig().mode)
        assert frame.empty
        frame.to_parquet(tmp_path / f"{job}.parquet")
        parts.append(tmp_path / f"{job}.parquet")
    assert gather_scores(parts, tmp_path / "all.parquet") == 0
    annotate_vcf_streaming(vcf, tmp_path / "all.parquet", tmp_path / "out.vcf.gz")
    with gzip.open(tmp_path / "out.vcf.gz", "rt") as handle:
        assert [line for line in handle if not line.startswith("#")] == []
