"""Scoring through Snakemake with an external (local) checkpoint: regions, gather, VCF, bigWig."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import pysam
import pytest

from dnalm.regions import plan_regions
from tests.conftest import DEMO_FASTA
from tests.scoring_utils import make_model, make_tokenizer
from tests.workflow_utils import REPO, make_workdir, planned_jobs, snakemake

AXIN1 = REPO / "data/hg38_chr16_axin1_slice"

pytestmark = pytest.mark.workflow

DEMO_VCF = REPO / "data" / "demo_chr20_hnf4a" / "1kg_pilot_sites.vcf"
GENES = REPO / "data" / "demo_chr20_hnf4a" / "genes.bed"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("model")
    from dnalm.fasta import prepare_genome

    fa = tmp / "genome.fa.gz"
    prepare_genome(DEMO_FASTA, fa, tmp / "stats.parquet", genome_id="demo")
    return make_model(make_tokenizer("char", tmp, fa), tmp / "tiny", max_positions=130)


@pytest.fixture(scope="module")
def score_run(tmp_path_factory, tiny_model: Path) -> Path:
    workdir = tmp_path_factory.mktemp("wf") / "run"
    workdir.mkdir()
    table = workdir / "extra.tsv"
    table.write_text("contig\tpos\tref\talt\nchr20_42000001_44000000\t1000\tA\tC,G\n"
                     "20\t5\tN\tA\nchr9\t10\tA\tC\n")
    bed = workdir / "sat.bed"
    bed.write_text("chr20_42000001_44000000\t100000\t100300\tregionA\n")
    make_workdir(
        workdir, {"demo": str(DEMO_FASTA), "axin1": str(AXIN1 / "chr16_186964_397118.fa")},
        external_models={"tiny": {"path": str(tiny_model)},
                         # a published DNABERT-2 layout, as its authors' code writes it
                         "dnabert2": {"path": str(REPO / "tests/data/published/dnabert2")}},
        scoring={"models": ["tiny", "dnabert2"], "regions": 2, "batch_size": 8,
                 "variants": {"kg": {"genome": "demo", "path": str(DEMO_VCF),
                                     "genes_bed": str(GENES)},
                              "extra": {"genome": "demo", "path": str(table)},
                              "coding": {"genome": "axin1",
                                         "path": str(AXIN1 / "demo_coding.vcf")}},
                 "saturation": {"sat": {"genome": "demo", "bed": str(bed),
                                        "mode": "wt-marginal", "bases_per_job": 200}}},
        tokenizers={}, pretraining={"models": {}}, finetune={"tasks": {}, "models": []},
        tracks={},
        coding={"variants": ["coding"],
                "annotations": {"axin1": str(AXIN1 / "refseq_chr16_slice.gtf")}},
    )
    snakemake(workdir)
    return workdir


def test_coding_variants_annotated_beside_the_dna_score(score_run: Path) -> None:
    """The coding stage of the workflow: consequences per transcript, the (placeholder) protein
    model's score of each missense change, and both scores in one annotated VCF."""
    base = score_run / "results/coding/axin1/coding"
    consequences = pd.read_parquet(base / "consequences.parquet")
    assert {"missense", "synonymous"} <= set(consequences["consequence"])
    protein = pd.read_parquet(base / "esm-placeholder.parquet")
    missense = protein[protein["consequence"] == "missense"]
    assert len(missense) and missense["score"].notna().all()
    with gzip.open(base / "esm-placeholder_tiny.vcf.gz", "rt") as handle:
        text = handle.read()
    assert "##INFO=<ID=DNALM_CODING" in text
    records = [line for line in text.splitlines() if not line.startswith("#")]
    assert any("DNALM=" in r and "DNALM_CODING=" in r for r in records)
    assert (base / "esm-placeholder_tiny.vcf.gz.tbi").is_file()


def test_scores_gathered_from_regions(score_run: Path) -> None:
    base = score_run / "results" / "scores" / "demo" / "tiny"
    assert len(list((base / "kg" / "regions").glob("*.parquet"))) == 2
    table = pd.read_parquet(base / "kg.parquet")
    assert len(table) == 16
    assert table["score"].notna().all()
    assert (table["reason"] == "").all()
    vcf = list(pysam.VariantFile(str(base / "kg.vcf.gz")))
    assert len(vcf) == 16
    assert all(rec.info["DNALM"][0] is not None for rec in vcf)
    assert (base / "kg.vcf.gz.tbi").exists()
    summary = base / "kg_summary"
    assert (summary / "distribution.png").exists()
    top = pd.read_parquet(summary / "top_variants.parquet")
    assert top["score"].is_monotonic_increasing
    assert len(pd.read_parquet(summary / "genes.parquet")) > 0
    log = (score_run / "logs" / "score" / "demo_tiny_kg_gather.log").read_text()
    assert "16 scored" in log


def test_published_checkpoint_scores_through_the_workflow(score_run: Path) -> None:
    """An external_models entry pointing at a published DNABERT-2 directory (no remote code)."""
    table = pd.read_parquet(score_run / "results/scores/demo/dnabert2/kg.parquet")
    assert len(table) == 16 and table["score"].notna().all()
    logs = [p.read_text() for p in (score_run / "logs" / "score").glob("demo_dnabert2_kg_*.log")]
    assert any("DNABERT-2 (published layout, loaded natively)" in text for text in logs)


def test_every_variant_has_a_score_or_a_reason(score_run: Path) -> None:
    table = pd.read_parquet(score_run / "results/scores/demo/tiny/extra.parquet")
    assert len(table) == 4  # the multi-allelic record is split
    keys = zip(table["contig"], table["pos"], table["alt"], strict=True)
    reasons = dict(zip(keys, table["reason"], strict=True))
    assert reasons[("chr9", 10, "C")] == "contig chr9 not in genome"
    # "20" is not a chr-prefix spelling of the demo's one contig (chr20_42000001_44000000)
    assert reasons[("20", 5, "A")] == "contig 20 not in genome"
    ok = table[table["reason"] == ""]
    assert ok["score"].notna().all()
    assert table.loc[table["reason"] != "", "score"].isna().all()


def test_saturation_bigwig(score_run: Path, tiny_model: Path, tmp_path: Path) -> None:
    base = score_run / "results/scores/demo/tiny"
    sat = pd.read_parquet(base / "saturation_sat.parquet")
    assert len(sat) == 300 * 3
    assert sat["score"].notna().all()
    assert set(sat["mode"]) == {"wt-marginal"}
    bw = pyBigWig.open(str(base / "saturation_sat.bw"))
    values = bw.values("chr20_42000001_44000000", 100000, 100300)
    expected = sat.groupby("pos")["score"].mean().to_numpy()
    assert values == pytest.approx(expected, abs=1e-5)
    # two jobs of 200 + 100 bases (the interval cut between them) equal one job over all 300
    assert sorted(p.name for p in (base / "saturation_sat/regions").glob("*.parquet")) == [
        "0.parquet", "1.parquet"]
    from dnalm.score.run import saturate_regions
    from dnalm.score.settings import ScoreConfig

    one = saturate_regions(tiny_model, score_run / "results/genomes/demo/genome.fa.gz",
                           score_run / "sat.bed", tmp_path / "one.parquet", tmp_path / "one.bw",
                           cfg=ScoreConfig(mode="wt-marginal", batch_size=8), gpus=0)
    np.testing.assert_allclose(sat["score"], one["score"], atol=1e-5)
    assert sat["window"].tolist() == one["window"].tolist()


def test_changing_a_scoring_option_reruns_only_scoring(score_run: Path, tiny_model) -> None:
    import yaml

    config = yaml.safe_load((score_run / "config.yaml").read_text())
    config["scoring"]["average_strands"] = True
    (score_run / "config.yaml").write_text(yaml.safe_dump(config))
    rules = {rule for rule, _ in planned_jobs(score_run)}
    # the coding table and VCF carry the DNA score beside the protein score
    assert rules <= {"score_variants_region", "gather_scores", "summarize_scores", "annotate_vcf",
                     "saturation_region", "saturation_mutagenesis", "score_report",
                     "join_coding_dna",
                     "annotate_coding_vcf"}
    assert not rules & {"coding_consequences", "score_coding", "coding_placeholder_model"}
    assert "score_variants_region" in rules


def test_whole_human_genome_is_plannable(tmp_path: Path) -> None:
    """Before anything is downloaded, a dry run for hg38 plans the download, the one
    partitioning job per variant set and everything up to it."""
    model = tmp_path / "model"
    model.mkdir()
    workdir = make_workdir(
        tmp_path / "run", {"hg38": "ucsc:hg38"},
        tokenizers={}, pretraining={"models": {}}, finetune={"tasks": {}, "models": []},
        external_models={"m": {"path": str(model)}},
        scoring={"models": ["m"], "regions": 200,
                 "variants": {"clinvar": {"genome": "hg38", "path": str(DEMO_VCF)}}},
    )
    jobs = planned_jobs(workdir)
    assert ("download_genome", "genome=hg38") in jobs
    assert ("partition_variants", "genome=hg38, vcf=clinvar") in jobs
    hg38 = [("chr1", 248_956_422), ("chr2", 242_193_529), ("chr21", 46_709_983),
            ("chrX", 156_040_895), ("chrM", 16_569)]
    plan = plan_regions(hg38, 200)
    sizes = [sum(p.end - p.start for p in region) for region in plan]
    assert sum(sizes) == sum(length for _, length in hg38)
    assert max(sizes) - min(sizes) <= 1


def test_genome_scale_partition_plans_a_thousand_jobs(tmp_path: Path) -> None:
    """hg38-sized contigs (a synthetic .fai) and 50 million variants' worth of partition
    metadata with variants_per_job 50,000: the dry run after partitioning lists all 1,000
    region jobs of every model and the gather (no real data is read)."""
    import json
    import time

    from dnalm.partition import plan_jobs
    from dnalm.score.settings import PartitionSettings

    model = tmp_path / "model"
    model.mkdir()
    source = tmp_path / "hg38_source.fa"
    source.write_text(">chr1\nACGT\n")
    workdir = make_workdir(
        tmp_path / "run", {"hg38": str(source)},
        tokenizers={}, pretraining={"models": {}}, finetune={"tasks": {}, "models": []},
        external_models={"m": {"path": str(model)}},
        scoring={"models": ["m"], "variants_per_job": 50_000, "partition_bins": 4096,
                 "variants": {"big": {"genome": "hg38", "path": str(DEMO_VCF)}}},
    )
    genome = workdir / "results/genomes/hg38"
    genome.mkdir(parents=True)
    contigs = [(f"chr{i}", 250_000_000 - i * 8_000_000) for i in range(1, 23)]
    contigs += [("chrX", 156_040_895), ("chrY", 57_227_415), ("chrM", 16_569)]
    for name in ("genome.fa.gz", "genome.fa.gz.gzi", "genome_stats.parquet"):
        (genome / name).write_bytes(b"")
    (genome / "genome.fa.gz.fai").write_text(
        "".join(f"{c}\t{n}\t0\t60\t61\n" for c, n in contigs))
    (genome / "chunks").mkdir()
    settings = PartitionSettings(variants_per_job=50_000, partition_bins=4096)
    rng = np.random.default_rng(0)
    per_bin = rng.multinomial(50_000_000, np.full(4096, 1 / 4096))
    jobs = plan_jobs(per_bin, settings)
    part = workdir / "results/variants/hg38/big"
    part.mkdir(parents=True)
    (part / "manifest.json").write_text(json.dumps({
        "n_bins": 4096, "n_rows": 50_000_000, "n_scorable": 50_000_000,
        "rows_per_bin": per_bin.tolist(), "scorable_per_bin": per_bin.tolist(),
        "jobs": [list(j) for j in jobs]}))
    assert len(jobs) == 1000
    began = time.perf_counter()
    planned = planned_jobs(workdir)
    seconds = time.perf_counter() - began
    regions = [wc for rule, wc in planned if rule == "score_variants_region"]
    assert len(regions) == 1000 and len(set(regions)) == 1000
    assert ("gather_scores", "genome=hg38, model=m, vcf=big") in planned
    assert not any(rule in ("partition_variants", "prepare_genome") for rule, _ in planned)
    print(f"dry run of 1,000 region jobs: {seconds:.1f} s")


def test_score_variants_command(tiny_model: Path, tmp_path: Path) -> None:
    from dnalm.fasta import prepare_genome

    fa = tmp_path / "g" / "genome.fa.gz"
    prepare_genome(DEMO_FASTA, fa, tmp_path / "g" / "stats.parquet", genome_id="demo")
    out = tmp_path / "scores.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "dnalm", "score-variants", "--model", str(tiny_model), "--genome",
         str(fa), "--vcf", str(DEMO_VCF), "--out", str(out), "--annotated-vcf",
         str(tmp_path / "ann.vcf.gz")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "16 of 16 variants scored" in proc.stdout
    assert len(list(pysam.VariantFile(str(tmp_path / "ann.vcf.gz")))) == 16
    bad = subprocess.run(
        [sys.executable, "-m", "dnalm", "score-variants", "--model", str(tmp_path), "--genome",
         str(fa), "--vcf", str(DEMO_VCF), "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "not a Hugging Face model directory" in bad.stderr
    assert "Traceback" not in bad.stderr
