"""Python side of the test harness: services the cluster/storage tests start and stop.

The services are real (a Slurm cluster from Debian's packages, a moto S3 server) so the tests
exercise the executor and storage plugins exactly as a user would; they are skipped where they
cannot exist (not root, no apt), except in CI (``CI=true``), where a missing service is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: CI must not pass by silently skipping the cluster tests."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SlurmCluster:
    """A running private cluster: clients need ``env`` (SLURM_CONF points at its config)."""

    root: Path
    env: dict[str, str]

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (finished ones for MinJobAge = 600 s), as the
        key=value fields of ``scontrol show job --oneliner``."""
        out = subprocess.run(["scontrol", "show", "job", "--oneliner"], env=self.env,
                             capture_output=True, text=True, check=True).stdout
        records = []
        for line in out.splitlines():
            if not line.startswith("JobId="):
                continue
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            records.append(fields)
        return records


@contextmanager
def slurm_cluster(root: Path) -> Iterator[SlurmCluster]:
    """Start tests/cluster/start_slurm.sh in ``root``, yield it, always stop it."""
    if os.geteuid() != 0:
        unavailable("the Slurm test cluster needs root (slurmd runs jobs as their user)")
    installed = shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()
    if not installed and not shutil.which("apt-get"):
        unavailable("Slurm is not installed and apt-get is not available to install it")
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"),
           "CTLD_PORT": str(free_port()), "SLURMD_PORT": str(free_port())}
    root.mkdir(parents=True, exist_ok=True)
    start = subprocess.run([str(HERE / "start_slurm.sh"), str(root)], env=env,
                           capture_output=True, text=True, timeout=300)
    try:
        if start.returncode != 0:
            logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}"
                           for p in sorted((root / "log").glob("*.log")))
            unavailable(f"the Slurm test cluster did not start:\n{start.stderr}{logs}")
        yield SlurmCluster(root=root, env=env)
    finally:
        subprocess.run([str(HERE / "stop_slurm.sh"), str(root)], env=env,
                       capture_output=True, timeout=120)


@dataclass
class MotoServer:
    """A moto S3 server on 127.0.0.1 with fixed test credentials."""

    endpoint: str
    env: dict[str, str]

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket`` (paginated: a run writes more than 1000 parts)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@contextmanager
def moto_server(log: Path) -> Iterator[MotoServer]:
    """``moto_server`` from this virtualenv on a free port; stopped (by its pid) afterwards."""
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        unavailable("moto_server is not installed (pip install -e '.[dev]')")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log, "w") as handle:
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    unavailable(f"moto_server did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.2)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
        yield MotoServer(endpoint=endpoint, env=env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None,
                  timeout: int = 600) -> subprocess.CompletedProcess:
    """The repo's Snakefile in ``workdir`` (like tests.workflow_utils.snakemake) under a hard
    time limit: a cluster-side hang (e.g. a status command that never answers) must fail the
    test, not stall the suite. Raises AssertionError with the log on failure."""
    cmd = ["timeout", "-k", "10", str(timeout), str(Path(sys.executable).with_name("snakemake")),
           "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    full_env = {**(env or os.environ), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n"
                             f"{proc.stdout[-6000:]}\n{proc.stderr[-12000:]}")
    return proc
