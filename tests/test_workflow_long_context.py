"""GENA-LM's long-context recipe through the workflow (issue 9): the ``gena`` preset pretrained
with recurrent memory in two resumable segment jobs, then scoring the demo VCF with it, each
window reading its upstream segment through memory."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.workflow_utils import REPO, make_workdir, snakemake

pytestmark = pytest.mark.workflow

DEMO = REPO / "data/demo_chr20_hnf4a"


def test_gena_with_memory_pretrains_and_scores(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "run", {"demo": str(DEMO / "chr20_42000001_44000000.fa.gz")},
                           tracks={})
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["tokenizers"] = {"char": {"kind": "char"}}
    config["pretraining"] = {"models": {"long": {
        "tokenizer": "char", "preset": "gena", "size": "tiny", "max_length": 160,
        "batch_size": 4, "total_steps": 6, "steps_per_job": 3, "warmup_steps": 1,
        "log_every": 3, "val_max_batches": 2, "rmt": {"num_mem_tokens": 4, "max_n_segments": 2}}}}
    config["finetune"] = {"tasks": {}, "models": []}
    config["embeddings"] = config["predictions"] = config["effects"] = config["evaluation"] = {}
    config["coding"] = {**config["coding"], "variants": [], "annotations": {}}
    config["scoring"] = {**config["scoring"], "models": ["long"], "regions": 1,
                         "saturation": {},
                         "variants": {"kg": {"genome": "demo",
                                             "path": str(DEMO / "1kg_pilot_sites.vcf")}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir)

    model = workdir / "results/models/long"
    saved = json.loads((model / "config.json").read_text())
    assert saved["model_type"] == "dnalm_rmt" and saved["architectures"] == ["RMTForMaskedLM"]
    assert saved["encoder"]["model_type"] == "big_bird"
    assert saved["encoder"]["attention_type"] == "block_sparse"
    assert sorted(p.name for p in (model / "segments").iterdir()) == ["0", "1"]
    scores = pd.read_parquet(workdir / "results/scores/demo/long/kg.parquet")
    scored = scores[scores["reason"] == ""]
    assert len(scored) >= 10 and scored["score"].notna().all()
    # the workflow computed what the scorer computes in-process (whose memory arithmetic
    # tests/test_rmt.py checks against the model's own forward over [context | window])
    from dnalm.genome import Genome
    from dnalm.score.lm import MaskedLM
    from dnalm.score.vep import ScoreConfig, score_variants
    from dnalm.variants import check_against_genome, read_variants

    lm = MaskedLM(model, device="cpu")
    assert lm.rmt is not None and lm.context_tokens > 0
    with Genome(workdir / "results/genomes/demo/genome.fa.gz") as genome:
        again = score_variants(lm, genome, check_against_genome(
            read_variants(DEMO / "1kg_pilot_sites.vcf"), genome), ScoreConfig())
    assert again["score"].tolist() == pytest.approx(scores["score"].tolist(), abs=1e-5,
                                                    nan_ok=True)
