"""Execution profiles and environment files: they parse, dry-run, document their placeholders,
and pin the same versions as pyproject.toml (conda and docker cannot run here, so the pins are
the part of envs/ and the Dockerfile a test can hold to account)."""

from __future__ import annotations

import csv
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster.harness import MotoServer, moto_server, run_snakemake
from tests.workflow_utils import REPO, make_workdir

PROFILES = REPO / "profiles"
NAMES = ["local", "slurm", "kubernetes", "googlebatch", "awsbatch"]
PLACEHOLDER = re.compile(r"<([a-z_]+)>")
GPU_RULES = ["pretrain_segment", "score_variants_region", "saturation_region", "finetune"]


def pyproject_pins() -> dict[str, str]:
    """name (lower case, extras dropped) -> version for every ``name==version`` in pyproject."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return dict(split_pin(s) for s in specs)


def split_pin(spec: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)\s*", spec)
    assert match, f"not an exact pin: {spec!r}"
    return match.group(1).lower(), match.group(2)


def profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


@pytest.mark.parametrize("env_file", ["dnalm-cpu.yaml", "dnalm-cuda.yaml"])
def test_conda_envs_pin_exactly_what_pyproject_pins(env_file: str) -> None:
    env = yaml.safe_load((REPO / "envs" / env_file).read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = dict(split_pin(s) for s in pip if not s.startswith("--"))
    runtime = dict(split_pin(s) for s in tomllib.loads(
        (REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    assert pins == runtime


def test_dockerfile_pins_agree_with_pyproject() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.splitlines()[[ln.startswith("FROM") for ln in text.splitlines()].index(True)] \
        == "FROM python:3.11-slim"
    pins = pyproject_pins()
    found = re.findall(r"([A-Za-z0-9_.\-]+)==([0-9][^\s\\]*)", text)
    assert ("torch", pins["torch"]) in found
    for name, version in found:
        assert pins.get(name.lower()) == version, f"Dockerfile pins {name}=={version}"
    assert "pip install ." in text          # the project with pyproject's own pins


@pytest.mark.parametrize("name", NAMES)
def test_profile_placeholders_are_documented(name: str) -> None:
    text = (PROFILES / name / "config.yaml").read_text()
    readme = (PROFILES / "README.md").read_text()
    section = readme.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
    for placeholder in set(PLACEHOLDER.findall(text)):
        assert f"<{placeholder}>" in section, f"profiles/README.md `{name}` lacks <{placeholder}>"
    header = "".join(ln for ln in text.splitlines(keepends=True) if ln.startswith("#"))
    active = [p for ln in text.splitlines() if not ln.lstrip().startswith("#")
              for p in PLACEHOLDER.findall(ln)]
    for placeholder in set(active):
        assert f"<{placeholder}>" in header, f"{name}/config.yaml header lacks <{placeholder}>"


def test_profiles_use_their_executor_and_remote_storage() -> None:
    assert "executor" not in profile("local")
    assert profile("slurm")["executor"] == "slurm"
    assert profile("kubernetes")["executor"] == "kubernetes"
    assert profile("googlebatch")["executor"] == "googlebatch"
    assert profile("awsbatch")["executor"] == "aws-batch"
    assert profile("kubernetes")["default-storage-provider"] == "s3"
    assert profile("awsbatch")["default-storage-provider"] == "s3"
    assert profile("googlebatch")["default-storage-provider"] == "gcs"
    for name in NAMES:   # GPUs come from the config (rules/common.smk), never from a profile
        assert "gpu" not in str(profile(name).get("set-resources", {}))


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo config in a scratch directory, with the GPU rules given one GPU each. The demo
    names its data by relative paths (``data/...``): a link makes them resolve locally, and the
    cloud dry-runs find the same relative keys in the bucket (see ``bucket_with_demo_data``)."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    resources = {k: ({**v, "gpu": 1} if k in GPU_RULES else v)
                 for k, v in config["resources"].items()}
    work = tmp_path_factory.mktemp("profiles") / "demo"
    work.mkdir()
    (work / "data").symlink_to(REPO / "data")
    with open(REPO / "config/genomes.tsv") as handle:   # the demo's own sheet, every genome
        sheet = {row["genome_id"]: {k: v or "" for k, v in row.items() if k != "genome_id"}
                 for row in csv.DictReader(handle, delimiter="\t")}
    assert "demo" in sheet
    return make_workdir(work, sheet, resources=resources)


def bucket_with_demo_data(s3: MotoServer, bucket: str, prefix: str) -> str:
    """Upload data/ under ``prefix`` (as a user uploads inputs); return the storage prefix."""
    client = s3.client()
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    for path in (REPO / "data").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(REPO)}")
    return f"s3://{bucket}/{prefix}"


def dry_run_jobs(text: str) -> dict[str, str]:
    """rule -> its `resources:` line, from a dry run's job listing."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        res = re.search(r"resources: (.*)", block)
        if match and res:
            jobs[match.group(1)] = res.group(1)
    return jobs


def check_gpu_requests(text: str, keys: list[str]) -> None:
    jobs = dry_run_jobs(text)
    assert "pretrain_segment" in jobs and "prepare_genome" in jobs, sorted(jobs)
    for rule, resources in jobs.items():
        for key in keys:
            asked = re.search(rf"(?:^|, ){key}=(\w+)", resources)
            if rule in GPU_RULES:
                assert asked and asked.group(1) in {"1", "nvidia"}, (rule, key, resources)
            else:
                assert not asked, (rule, key, resources)


def test_local_profile_dry_runs(demo_dir: Path) -> None:
    proc = run_snakemake(demo_dir, "--profile", str(PROFILES / "local"), "--dry-run",
                         timeout=300)
    check_gpu_requests(proc.stdout, ["gpu"])


def test_slurm_profile_dry_runs(demo_dir: Path) -> None:
    proc = run_snakemake(demo_dir, "--profile", str(PROFILES / "slurm"), "--dry-run",
                         timeout=300)
    out = proc.stdout
    check_gpu_requests(out, ["gpu"])
    assert "slurm_partition=<partition>" in out and "slurm_account=<account>" in out


def test_kubernetes_profile_dry_runs(demo_dir: Path, s3: MotoServer) -> None:
    proc = run_snakemake(
        demo_dir, "--profile", str(PROFILES / "kubernetes"), "--dry-run",
        "--container-image", "registry.example/dnalm:0.1.0", "--kubernetes-namespace", "dnalm",
        "--default-storage-prefix", bucket_with_demo_data(s3, "dnalm-dry", "k8s"),
        f"--storage-s3-endpoint-url={s3.endpoint}", env=s3.env, timeout=300)
    check_gpu_requests(proc.stdout, ["gpu", "gpu_manufacturer"])
    assert "s3://dnalm-dry/k8s/results/" in proc.stdout


def test_awsbatch_profile_dry_runs(demo_dir: Path, s3: MotoServer) -> None:
    proc = run_snakemake(
        demo_dir, "--profile", str(PROFILES / "awsbatch"), "--dry-run",
        "--aws-batch-region", "us-east-1",
        "--aws-batch-job-queue", "arn:aws:batch:us-east-1:000000000000:job-queue/dnalm",
        "--aws-batch-job-role", "arn:aws:iam::000000000000:role/dnalm",
        "--container-image", "registry.example/dnalm:0.1.0",
        "--default-storage-prefix", bucket_with_demo_data(s3, "dnalm-dry", "aws"),
        f"--storage-s3-endpoint-url={s3.endpoint}", env=s3.env, timeout=300)
    check_gpu_requests(proc.stdout, ["_gpus"])
    assert "s3://dnalm-dry/aws/results/" in proc.stdout


def test_googlebatch_profile_dry_runs(demo_dir: Path, s3: MotoServer) -> None:
    """Everything from the profile but the storage backend: the GCS plugin needs Google
    credentials and storage.googleapis.com even to dry-run (google.auth.default() raises
    DefaultCredentialsError here) and no GCS emulator is available, so the S3 plugin on moto
    stands in for it; the Google Batch settings and GPU mapping are the profile's."""
    proc = run_snakemake(
        demo_dir, "--profile", str(PROFILES / "googlebatch"), "--dry-run",
        "--googlebatch-project", "dnalm-test", "--googlebatch-region", "us-central1",
        "--googlebatch-container", "registry.example/dnalm:0.1.0",
        "--storage-gcs-project", "dnalm-test",
        "--default-storage-provider", "s3",
        "--default-storage-prefix", bucket_with_demo_data(s3, "dnalm-dry", "gb"),
        f"--storage-s3-endpoint-url={s3.endpoint}", env=s3.env, timeout=300)
    check_gpu_requests(proc.stdout, ["nvidia_gpu"])
    assert "s3://dnalm-dry/gb/results/" in proc.stdout
