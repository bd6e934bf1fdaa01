"""The whole demo pipeline through Snakemake (what `make run` does), on a shortened schedule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pysam
import pytest
import yaml
from transformers import AutoModelForMaskedLM, AutoTokenizer

from dnalm.io import list_parts
from tests.conftest import DEMO_FASTA
from tests.workflow_utils import REPO, default_config, make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.workflow
DEMO_CONTIG = "chr20_42000001_44000000"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    config = default_config()
    workdir = tmp_path_factory.mktemp("demo") / "run"
    model = dict(config["pretraining"]["models"]["demo"], total_steps=40, steps_per_job=20,
                 warmup_steps=5, val_max_batches=5)
    tokenizers = dict(config["tokenizers"])
    tokenizers["bpe"] = dict(tokenizers["bpe"], vocab_size=512)
    clinvar = REPO / "data/clinvar_chr20"
    variants = {"demo_1kg": {"genome": "demo",
                             "path": str(REPO / "data/demo_chr20_hnf4a/1kg_pilot_sites.vcf")},
                "clinvar_chr20": {"genome": "clinvar20", "path": str(
                    clinvar / "clinvar_pathogenic_vs_gnomad_common_chr20.vcf")}}
    workdir.mkdir(parents=True)
    (workdir / "tss60.bed").write_text(f"{DEMO_CONTIG}\t219290\t219350\ttss60\n")
    saturation = {"tss60": {"genome": "demo", "bed": str(workdir / "tss60.bed"),
                            "mode": "wt-marginal"}}
    make_workdir(workdir, {"demo": str(DEMO_FASTA),
                           "clinvar20": str(clinvar / "chr20_sites_3kb.fa.gz")},
                 tokenizers=tokenizers,
                 pretraining={"models": {"demo": model}},
                 scoring={"variants": variants, "regions": 1, "saturation": saturation},
                 effects={**config["effects"], "saturation": ["tss60"]},
                 coding={"variants": [], "annotations": {}},
                 finetune={**config["finetune"], "epochs": 1, "max_length": 64,
                           "tasks": {name: {**task, "train": str(REPO / task["train"]),
                                            "test": str(REPO / task["test"])}
                                     for name, task in config["finetune"]["tasks"].items()}})
    snakemake(workdir)
    return workdir


def test_every_tokenizer_loads_and_tokenizes_every_split(demo: Path) -> None:
    with pysam.FastaFile(str(demo / "results/genomes/demo/genome.fa.gz")) as fa:
        for name in ("bpe", "kmer6", "nt6", "char"):
            tok = AutoTokenizer.from_pretrained(demo / "results/tokenizers" / name)
            assert tok.mask_token == "[MASK]"
            stats = pq.read_table(demo / f"results/tokenizers/{name}/stats.parquet").to_pylist()
            assert stats[0]["mean_token_length_bp"] > 0
            for split in ("train", "validation", "test"):
                parts = list_parts(demo / f"results/genomes/demo/tokens/{name}/{split}")
                row = pq.read_table(parts[0]).slice(0, 1).to_pylist()[0]
                assert len(row["input_ids"]) == len(row["token_starts"]) > 0
                s, e = row["token_starts"][-1], row["token_ends"][-1]
                text = tok.convert_ids_to_tokens([row["input_ids"][-1]])[0]
                bases = fa.fetch(row["contig"], row["start"] + s, row["start"] + e).upper()
                assert text == bases, (name, text, bases)


def test_model_pretrained_in_segments_and_loss_falls(demo: Path) -> None:
    model_dir = demo / "results/models/demo"
    assert sorted(p.name for p in (model_dir / "segments").iterdir()) == ["0", "1"]
    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    assert model.config.model_type == "modernbert"
    metrics = pd.read_parquet(model_dir / "metrics.parquet")
    val = metrics.dropna(subset=["val_loss"]).sort_values("step")["val_loss"].to_numpy()
    assert len(val) >= 3
    assert val[-1] < val[0]
    assert (model_dir / "loss_curve.png").stat().st_size > 1000


def test_demo_variants_scored_with_the_pretrained_model(demo: Path) -> None:
    """The workflow's scores equal a brute-force masked-marginal recomputation with the
    pretrained model on the windows the table names (BPE re-segmentation included)."""
    from dnalm.genome import Genome
    from dnalm.score.lm import MaskedLM
    from tests.scoring_utils import brute_force_masked_marginal, windows_of

    table = pd.read_parquet(demo / "results/scores/demo/demo/demo_1kg.parquet")
    assert len(table) == 16 and table["score"].notna().all()
    assert (table["mode"] == "masked-marginal").all()
    assert (demo / "results/scores/demo/demo/demo_1kg.vcf.gz.tbi").exists()
    lm = MaskedLM(demo / "results/models/demo", device="cpu")
    with Genome(demo / "results/genomes/demo/genome.fa.gz") as genome:
        contig = table["contig"].iloc[0]
        record = genome.fetch(contig, 0, genome.lengths[contig])
    table["start"] = table["pos"] - 1
    for row in table.head(4).itertuples():
        ref_w, alt_w = windows_of(row, record)
        assert row.score == pytest.approx(brute_force_masked_marginal(lm, ref_w, alt_w),
                                          abs=1e-4), row


def test_raising_total_steps_adds_segments_only(demo: Path) -> None:
    config = yaml.safe_load((demo / "config.yaml").read_text())
    config["pretraining"]["models"]["demo"]["total_steps"] = 60
    (demo / "config.yaml").write_text(yaml.safe_dump(config))
    try:
        jobs = planned_jobs(demo)
    finally:
        config["pretraining"]["models"]["demo"]["total_steps"] = 40
        (demo / "config.yaml").write_text(yaml.safe_dump(config))
    segments = sorted(wc for rule, wc in jobs if rule == "pretrain_segment")
    assert segments == ["model=demo, segment=2"]
    rules = {rule for rule, _ in jobs}
    assert not rules & {"prepare_genome", "chunk_genome", "build_tokenizer", "tokenize_genome"}


def test_changing_bpe_vocabulary_reruns_tokenizer_and_dependents(demo: Path) -> None:
    config = yaml.safe_load((demo / "config.yaml").read_text())
    config["tokenizers"]["bpe"]["vocab_size"] = 256
    (demo / "config.yaml").write_text(yaml.safe_dump(config))
    try:
        jobs = planned_jobs(demo)
    finally:
        config["tokenizers"]["bpe"]["vocab_size"] = 512
        (demo / "config.yaml").write_text(yaml.safe_dump(config))
    rules = {rule for rule, _ in jobs}
    assert ("build_tokenizer", "tokenizer=bpe") in jobs
    assert ("build_tokenizer", "tokenizer=kmer6") not in jobs
    assert "pretrain_segment" in rules  # the demo model uses the BPE tokenizer
    assert not rules & {"prepare_genome", "chunk_genome", "download_genome"}


def test_lora_and_full_finetuning_beside_the_kmer_baseline(demo: Path) -> None:
    import json

    base = demo / "results/finetune/human_enhancers_cohn"
    lora = json.loads((base / "demo" / "metrics.json").read_text())
    full = json.loads((base / "demo_full" / "metrics.json").read_text())
    assert (base / "demo" / "adapter" / "adapter_config.json").exists()
    assert lora["method"] == "lora" and full["method"] == "full"
    assert set(lora["test"]) >= {"mcc", "f1", "accuracy", "auroc", "auprc"}
    assert lora["parameters"]["trainable"] < full["parameters"]["trainable"]
    predictions = pd.read_parquet(base / "demo" / "predictions.parquet")
    assert len(predictions) == 141
    summary = (demo / "results/finetune/summary.md").read_text()
    assert "kmer_baseline" in summary and "demo_full" in summary


def test_finetuned_track_over_the_genome(demo: Path) -> None:
    import pyBigWig

    (name, spec), = default_config()["tracks"].items()
    base = demo / "results/tracks/demo" / name
    table = pd.read_parquet(f"{base}.parquet")
    last = 2_000_000 - spec["window_bp"]  # windows every stride, plus one flush with the end
    assert len(table) == last // spec["stride_bp"] + 1 + (last % spec["stride_bp"] != 0)
    assert table["end"].max() == 2_000_000
    assert table["value"].between(0, 1).all()
    bedgraph = pd.read_csv(f"{base}.bedgraph", sep="\t", header=None,
                           names=["contig", "start", "end", "value"])
    assert (bedgraph["start"].to_numpy()[1:] >= bedgraph["end"].to_numpy()[:-1]).all()
    bw = pyBigWig.open(f"{base}.bw")
    row = bedgraph.iloc[100]
    assert bw.stats(row.contig, int(row.start), int(row.end))[0] == pytest.approx(row.value,
                                                                                  rel=1e-5)


def test_embeddings_and_predictions_of_the_promoters(demo: Path) -> None:
    """The demo's 9 BED regions (5 on the - strand, one 3 kb long) embedded by the model and by
    its LoRA run, and predicted by that run, in the BED's order with its names."""
    import numpy as np

    from dnalm.embed import embedding_matrix

    names = [line.split("\t")[3] for line in
             (REPO / "data/demo_chr20_hnf4a/promoters.bed").read_text().splitlines()]
    base = demo / "results/embeddings/promoters"
    vectors = {}
    for name, path in (("model", base / "demo.parquet"),
                       ("run", base / "finetune/human_promoters_chr20/demo_full.parquet")):
        frame = pd.read_parquet(path)
        assert frame["id"].tolist() == names and frame["strand"].tolist().count("-") == 5
        assert frame.set_index("id").loc["HNF4A_upstream_3kb", "n_windows"] > 1
        vectors[name] = embedding_matrix(path)
        assert vectors[name].shape == (9, 64) and np.isfinite(vectors[name]).all()
        assert Path(str(path).replace(".parquet", "_report.html")).is_file()
        assert Path(str(path).replace(".parquet", "_pca.png")).stat().st_size > 1000
    assert np.abs(vectors["model"] - vectors["run"]).max() > 1e-4  # the adapter changes them
    pred = pd.read_parquet(
        demo / "results/predictions/promoters/human_promoters_chr20/demo_full.parquet")
    assert pred["id"].tolist() == names
    assert np.allclose(pred["prob_0"] + pred["prob_1"], 1.0)
    assert set(pred["prediction_name"]) <= {"negative", "positive"}
    assert pred.set_index("id").loc["HNF4A_upstream_3kb", "n_windows"] > 1
    assert not pred["truncated"].any()
    assert (demo / "results/predictions/promoters/human_promoters_chr20/demo_full.html").is_file()


def test_finetuned_variant_effects_and_mutation_map(demo: Path, tmp_path: Path) -> None:
    """Every demo SNV gets the LoRA run's effect (the partition's region job, gathered), equal
    to the effects computed in one process; the annotated VCF carries them; the 60-bp mutation map
    has 3 rows a position, a bigWig and a picture."""
    import gzip

    import numpy as np

    from dnalm.finetune.effects import effects_region
    from dnalm.finetune.settings import EffectSettings

    base = demo / "results/effects/demo/human_promoters_chr20/demo_full"
    table = pd.read_parquet(base / "demo_1kg.parquet")
    vcf = REPO / "data/demo_chr20_hnf4a/1kg_pilot_sites.vcf"
    assert len(table) == 16 and table["score"].notna().all()
    again = effects_region(demo / "results/finetune/human_promoters_chr20/demo_full",
                           demo / "results/genomes/demo/genome.fa.gz", vcf,
                           tmp_path / "fx.parquet", settings=EffectSettings(), gpus=0)
    np.testing.assert_allclose(table.sort_values("record")["score"],
                               again.sort_values("record")["score"], atol=1e-5)
    with gzip.open(base / "demo_1kg.vcf.gz", "rt") as handle:
        records = [line for line in handle if not line.startswith("#")]
    assert len(records) == 16 and all("DNALM_FT=" in r and "DNALM_FT_DP=" in r for r in records)
    assert (base / "demo_1kg.html").is_file()
    sat = pd.read_parquet(base / "saturation/tss60.parquet")
    assert len(sat) == 180 and sat["score"].notna().all()
    assert (base / "saturation/tss60.bw").stat().st_size > 0
    assert (base / "saturation/tss60_map.png").stat().st_size > 5000


def test_clinvar_sites_evaluated_beside_chance(demo: Path) -> None:
    """The 48 labelled ClinVar/gnomAD SNVs scored zero-shot by the model and by the LoRA run's
    effects, evaluated against their labels with intervals and chance levels."""
    table = pd.read_parquet(demo / "results/evaluation/clinvar_chr20.parquet")
    overall = table[table["stratum"] == "(all)"].set_index(["model", "kind"])
    assert {("demo", "zero-shot"),
            ("human_promoters_chr20/demo_full", "effects")} <= set(overall.index)
    for _, row in overall.iterrows():
        assert row["n"] == 48 and row["n_positive"] == 27 and row["n_unscored"] == 0
        assert row["auroc_low"] <= row["auroc"] <= row["auroc_high"]
        assert row["auroc_chance"] == 0.5 and row["auprc_chance"] == pytest.approx(27 / 48)
    assert (demo / "results/evaluation/clinvar_chr20.html").is_file()
    assert (demo / "results/evaluation/clinvar_chr20_curves.png").stat().st_size > 5000


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--virtual-time-budget=8000"]
REPORT_SECTIONS = ["Genomes", "Tokenizers", "Pretraining", "Fine-tuning", "Variant scores",
                   "Tracks", "Embeddings", "Predictions", "Fine-tuned variant effects",
                   "Evaluation"]


def test_report_renders_in_headless_chromium(demo: Path, tmp_path: Path) -> None:
    """`snakemake --report` after the run; Chromium loads it and shows every section."""
    import os
    import re
    import shutil
    import subprocess

    snakemake(demo, "--report", str(demo / "report.html"))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed: apt-get install chromium")
    url = (demo / "report.html").as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, *profile, "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = re.sub(r"<(script|style)\b.*?</\1>", "", dom.stdout, flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", rendered))
    assert "Snakemake Report" in text
    for section in REPORT_SECTIONS:
        assert section in text, f"report section {section!r} not rendered"
    assert "dnalm" in text  # the workflow description
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = subprocess.run([chromium, *CHROMIUM_FLAGS, *profile, "--window-size=1400,1000",
                           f"--screenshot={artifacts / 'report.png'}", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0
    assert (artifacts / "report.png").stat().st_size > 10_000
