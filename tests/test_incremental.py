"""A job killed mid-way (SIGKILL: no chance to clean up) leaves no output that Snakemake or a later
job could take for finished, and the rerun resumes from the last finished checkpoint.

The other incremental cases (new genome, BPE vocabulary, scoring option, more pretraining steps)
are in tests/test_workflow_{genome,demo,score}.py. Here: a pretraining segment, whose checkpoint
unit is the segment (segment n resumes from segment n-1), and a scoring region job."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tests.conftest import DEMO_FASTA
from tests.workflow_utils import REPO, default_config, make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.workflow

MODEL = "results/models/demo"
SCORES = "results/scores/demo/demo/demo_1kg"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Char tokens, 3 pretraining segments of 40 steps, 2 scoring regions; segment 0 finished."""
    config = default_config()
    model = dict(config["pretraining"]["models"]["demo"], tokenizer="char", total_steps=120,
                 steps_per_job=40, warmup_steps=2, log_every=1, val_max_batches=2,
                 max_length=64)
    variants = {"demo_1kg": {"genome": "demo",
                             "path": str(REPO / "data/demo_chr20_hnf4a/1kg_pilot_sites.vcf")}}
    work = make_workdir(
        tmp_path_factory.mktemp("incremental") / "run", {"demo": str(DEMO_FASTA)},
        tokenizers={"char": {"kind": "char"}}, pretraining={"models": {"demo": model}},
        scoring={**config["scoring"], "models": ["demo"], "variants": variants,
                 "saturation": {}, "regions": 2},
        coding={"variants": []})   # no coding-variant stage here
    snakemake(work, f"{MODEL}/segments/0")
    return work


def log_mentions(log: Path, word: str) -> Callable[[psutil.Process], bool]:
    """Ready once the job's log mentions ``word`` (training logs every step)."""
    return lambda _: log.exists() and word in log.read_text()


def script_running_for(name: str, seconds: float) -> Callable[[psutil.Process], bool]:
    """Ready once a process running the rule's script has been alive ``seconds``: scoring the demo
    variants takes milliseconds after seconds of loading the model, so mid-way means mid-load,
    before any output is written."""
    def ready(snakemake_proc: psutil.Process) -> bool:
        for child in snakemake_proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if any(name in arg for arg in child.cmdline()) and \
                        time.time() - child.create_time() > seconds:
                    return True
        return False
    return ready


def kill_when(work: Path, target: str, ready: Callable[[psutil.Process], bool], *,
              timeout: float = 240) -> None:
    """Run Snakemake for ``target``; as soon as ``ready`` says its job is working, SIGKILL
    Snakemake and every process it started, by pid."""
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(work), "--configfile", str(work / "config.yaml"), "--cores", "1",
           target]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    main = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    victims = [main]
    try:
        while True:
            assert proc.poll() is None, "snakemake finished before the job could be killed"
            victims = [main, *main.children(recursive=True)]
            if ready(main):
                break
            assert time.monotonic() < deadline, f"the job for {target} never got going"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            victims = [main, *main.children(recursive=True)]
        for victim in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                victim.send_signal(signal.SIGKILL)
        proc.wait()
        psutil.wait_procs(victims, timeout=10)
    # A killed Snakemake leaves its lock (it had no chance to release it): what a user does
    # after a crash is `snakemake --unlock`, which removes only the lock, not any output.
    snakemake(work, "--unlock")


def test_killed_pretraining_segment_resumes_from_the_last_finished_segment(workdir: Path) -> None:
    seg0 = workdir / MODEL / "segments/0"
    seg0_state = {p: p.stat().st_mtime_ns for p in seg0.rglob("*")}
    # the log is written by the job as it trains: segment 1 is mid-way when it mentions a step
    kill_when(workdir, f"{MODEL}/segments/1",
              log_mentions(workdir / "logs/pretrain/demo_segment1.log", "step"))

    segments = workdir / MODEL / "segments"
    assert not (segments / "1").exists(), "a killed segment left a (partial) output directory"
    assert sorted(p.name for p in segments.iterdir() if not p.name.startswith(".")) == ["0"]
    # the rerun plans the killed segment and what follows it, never the finished one
    jobs = planned_jobs(workdir, f"{MODEL}/model.safetensors")
    assert ("pretrain_segment", "model=demo, segment=0") not in jobs
    assert [j for j in jobs if j[0] == "pretrain_segment"] == [
        ("pretrain_segment", "model=demo, segment=1"),
        ("pretrain_segment", "model=demo, segment=2"),
    ]
    snakemake(workdir, f"{MODEL}/model.safetensors")
    assert {p: p.stat().st_mtime_ns for p in seg0.rglob("*")} == seg0_state
    metrics = pd.read_parquet(workdir / MODEL / "metrics.parquet")
    assert metrics["step"].max() == 120
    # the resumed run continued the step count: no step trained twice
    train = metrics.dropna(subset=["loss"]) if "loss" in metrics else metrics
    assert not train["step"].duplicated().any()


def test_killed_scoring_region_leaves_no_table_and_reruns_alone(workdir: Path) -> None:
    snakemake(workdir, f"{MODEL}/model.safetensors", f"{SCORES}/regions/0.parquet")
    region0 = workdir / SCORES / "regions/0.parquet"
    before = region0.stat().st_mtime_ns
    kill_when(workdir, f"{SCORES}/regions/1.parquet", script_running_for("score_region", 3))
    regions = workdir / SCORES / "regions"
    assert sorted(p.name for p in regions.iterdir() if not p.name.startswith(".")) == \
        ["0.parquet"]
    jobs = planned_jobs(workdir, f"{SCORES}.parquet")
    assert [j for j in jobs if j[0] == "score_variants_region"] == [
        ("score_variants_region", "genome=demo, model=demo, vcf=demo_1kg, region=1")]
    snakemake(workdir, f"{SCORES}.parquet")
    assert region0.stat().st_mtime_ns == before
    table = pd.read_parquet(workdir / f"{SCORES}.parquet")
    assert len(table) == 16 and table["score"].notna().all()
