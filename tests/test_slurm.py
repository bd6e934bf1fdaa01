"""The demo pipeline's stages through the `slurm` profile on a real single-node Slurm cluster.

tests/cluster/start_slurm.sh brings the cluster up from Debian's packages (munge, slurmctld,
slurmd; no slurmdbd, so Snakemake polls with `squeue`) with one fake GPU. The same reduced config
then runs through Slurm and locally, and the outputs must be identical: the profile changes where
jobs run, never what they compute.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.cluster.harness import SlurmCluster, run_snakemake, slurm_cluster
from tests.conftest import DEMO_FASTA
from tests.workflow_utils import REPO, default_config, make_workdir

pytestmark = [pytest.mark.workflow, pytest.mark.timeout(1200)]  # cluster start + two runs

GPU_RULES = {"pretrain_segment", "score_variants_region"}
# The plugin polls Slurm at growing intervals (2 s, then +10 s per round without a finished job),
# so each job costs ~30-60 s of wall time however short it is. The CPU stages before pretraining
# therefore share one Slurm job (a Snakemake group) and so do the two pretraining segments:
# 4 Slurm jobs instead of 8 (the score gathering, a table concatenation, is left out), each
# still either all-CPU or all-GPU. tokenizer_stats is not run here: jobs of a group that
# can run side by side add up their threads, and more CPUs than the node has (3 > 2) left the job
# pending for ever (Reason=PartitionConfig).
GROUPS = {
    "prepare_genome": "cpu_prep", "chunk_genome": "cpu_prep", "build_tokenizer": "cpu_prep",
    "tokenize_genome": "cpu_prep",
    "pretrain_segment": "gpu_pretrain",
}
GPU_JOBS = {"gpu_pretrain", "score_variants_region"}
TARGETS = [
    "results/genomes/demo/genome_stats.parquet",
    "results/models/demo/model.safetensors",
    "results/scores/demo/demo/demo_1kg/regions/0.parquet",
]


def reduced_demo(workdir: Path) -> Path:
    """Genome → chunks → char tokenizer → tokens → 2 × 10 pretraining steps → 1 scoring region.

    Every rule gets 1 thread and 1 GB (the CI node has 2 cores; identical thread counts in both
    runs keep the weights bit-identical); the GPU rules ask for one GPU, the way a user enables
    GPUs, through ``resources`` in the config."""
    config = default_config()
    model = dict(config["pretraining"]["models"]["demo"], tokenizer="char", total_steps=20,
                 steps_per_job=10, warmup_steps=2, log_every=5, val_max_batches=2, max_length=64)
    cpu = {"threads": 1, "mem_mb": 1000, "runtime": 10}
    resources = {"default": cpu, **{rule: {**cpu, "gpu": 1} for rule in GPU_RULES}}
    variants = {"demo_1kg": {"genome": "demo",
                             "path": str(REPO / "data/demo_chr20_hnf4a/1kg_pilot_sites.vcf")}}
    return make_workdir(
        workdir, {"demo": str(DEMO_FASTA)},
        tokenizers={"char": {"kind": "char"}},
        pretraining={"models": {"demo": model}},
        scoring={**config["scoring"], "models": ["demo"], "variants": variants,
                 "saturation": {}, "regions": 1},
        resources=resources,
        coding={"variants": []},   # the coding-variant stage is not part of this run
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


@pytest.fixture(scope="module")
def runs(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same workflow through the slurm profile and locally."""
    base = tmp_path_factory.mktemp("slurm_runs")
    on_slurm = reduced_demo(base / "slurm")
    # The profile unchanged except what this cluster lacks: it has a `debug` partition and no
    # accounts (no slurmdbd, hence squeue for status) and answers within seconds.
    run_snakemake(on_slurm, "--profile", str(REPO / "profiles/slurm"),
                  "--default-resources", "slurm_partition=debug",
                  "--slurm-status-command", "squeue",
                  "--slurm-init-seconds-before-status-checks", "2",
                  "--groups", *(f"{rule}={group}" for rule, group in GROUPS.items()),
                  "--jobs", "2", *TARGETS, env=cluster.env, timeout=600)
    local = reduced_demo(base / "local")
    run_snakemake(local, "--profile", str(REPO / "profiles/local"), "--cores", "2", *TARGETS)
    return {"slurm": on_slurm, "local": local}


def rule_of(record: dict[str, str]) -> str:
    """The rule or group a Slurm job ran. The plugin's --comment is ``rule_<rule>`` (plus
    ``_wildcards_...``) for a job, ``rule_<group>_<its rules>`` for a group job."""
    comment = record.get("Comment", "")
    for group in set(GROUPS.values()):
        if comment.startswith(f"rule_{group}_"):
            return group
    match = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", comment)
    assert match, record
    return match.group(1)


def test_jobs_ran_through_slurm_and_only_gpu_rules_asked_for_a_gpu(
    cluster: SlurmCluster, runs: dict[str, Path]
) -> None:
    records = cluster.jobs()
    by_rule: dict[str, list[dict[str, str]]] = {}
    for record in records:
        by_rule.setdefault(rule_of(record), []).append(record)
    # partition_variants: the checkpoint that reads the variant set once, a CPU job
    expected = {"cpu_prep", "gpu_pretrain", "finalize_model", "partition_variants",
                "score_variants_region"}
    assert set(by_rule) == expected, sorted(by_rule)
    for rule, jobs in by_rule.items():
        for job in jobs:
            assert job["JobState"] == "COMPLETED", job
            assert job["Partition"] == "debug"
            gres = job.get("TresPerJob", "") + job.get("TresPerNode", "")
            if rule in GPU_JOBS:
                assert "gpu:1" in gres, (rule, job)
            else:
                assert "gpu" not in gres, (rule, job)
    # every step ran inside the allocation (the jobstep executor writes the outputs there)
    assert (runs["slurm"] / "results/models/demo/segments/1").is_dir()


def test_slurm_outputs_equal_a_local_run(runs: dict[str, Path]) -> None:
    slurm, local = runs["slurm"], runs["local"]
    tables = sorted(p.relative_to(slurm) for p in (slurm / "results").rglob("*.parquet")
                    if "benchmarks" not in p.parts)
    assert len(tables) >= 6
    for rel in tables:
        left, right = pd.read_parquet(slurm / rel), pd.read_parquet(local / rel)
        # training metrics carry wall-clock timings; everything else must match exactly
        timing = [c for c in left.columns if re.search(r"time|second|elapsed|per_s", c)]
        pd.testing.assert_frame_equal(left.drop(columns=timing), right.drop(columns=timing),
                                      obj=str(rel))
    for rel in ("results/models/demo/model.safetensors",
                "results/tokenizers/char/tokenizer.json"):
        assert (slurm / rel).read_bytes() == (local / rel).read_bytes(), rel
    config = yaml.safe_load((slurm / "config.yaml").read_text())
    assert config["resources"]["pretrain_segment"]["gpu"] == 1
