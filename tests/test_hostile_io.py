"""Hostile I/O (issue 19): system errors, leftovers and modes, a killed Snakemake, a trickling
server, late config errors and plain-gzip genomes each end in one line or just work."""

from __future__ import annotations

import copy
import gzip
import http.server
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dnalm import io as dio
from dnalm.cli import main
from dnalm.config import describe_config_error
from dnalm.download import download
from dnalm.errors import DnalmError, DownloadError
from dnalm.logs import run_script
from dnalm.tokenizers.spec import ALPHABET, N_SPECIAL, NT_K_RANGE, parse_spec
from dnalm.train.config import pretrain_settings
from dnalm.workflow_lock import clear_stale_lock
from tests.conftest import DEMO_FASTA, LAMBDA_FASTA
from tests.workflow_utils import REPO, SNAKEMAKE, default_config, make_workdir, snakemake

SCHEMA_PATH = REPO / "config" / "config.schema.json"
AXIN1 = REPO / "data" / "hg38_chr16_axin1_slice"


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _read_only_dir(tmp_path: Path) -> Path:
    """A folder nobody can create files in (root ignores modes: sysfs refuses even root)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.fixture(autouse=True)
def root_logging():
    """``main`` and ``run_script`` configure the root logger for their process (a handler on
    this test's captured stderr): restore it afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# --- (a) no traceback without --debug -----------------------------------------------------


def test_read_only_output_folder_is_one_line(tmp_path: Path, capsys) -> None:
    out = _read_only_dir(tmp_path) / "lambda.fa.gz"
    status = main(["prepare-genome", str(LAMBDA_FASTA), str(out), "--genome-id", "lambda"])
    err = capsys.readouterr().err
    assert status == 1
    (line,) = _error_lines(err)
    assert line.startswith(f"dnalm: error: {out}") and "denied" in line, err
    assert "Traceback" not in err and ".tmp" not in line


def test_full_disk_names_the_output(tmp_path: Path, monkeypatch, capsys) -> None:
    def full(*args, **kwargs):  # what pyarrow raises on ENOSPC
        raise OSError(28, "Error writing bytes to file. Detail: [errno 28] No space left on "
                          "device")

    monkeypatch.setattr(dio.pq, "write_table", full)
    out = tmp_path / "g" / "genome.fa.gz"
    status = main(["prepare-genome", str(LAMBDA_FASTA), str(out), "--genome-id", "lambda"])
    err = capsys.readouterr().err
    assert status == 1
    (line,) = _error_lines(err)
    assert line == f"dnalm: error: {out.parent / 'genome_stats.parquet'}: No space left on device"
    assert not [p.name for p in out.parent.iterdir() if ".tmp" in p.name]


def test_unexpected_errors_are_one_line_and_debug_raises(tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    import dnalm.fasta

    def bug(*args, **kwargs):
        raise KeyError("contig")

    monkeypatch.setattr(dnalm.fasta, "prepare_genome", bug)
    args = ["prepare-genome", str(LAMBDA_FASTA), str(tmp_path / "x.fa.gz"), "--genome-id", "x"]
    assert main(args) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert line == ("dnalm: error: unexpected KeyError: 'contig' (run `dnalm --debug "
                    "prepare-genome ...` for the traceback)")
    with pytest.raises(KeyError):
        main(["--debug", *args])


def test_snakemake_script_failures_log_one_line(tmp_path: Path, capsys) -> None:
    log = tmp_path / "job.log"
    sm = SimpleNamespace(log=[str(log)])

    def disk_full(_sm: object) -> None:
        raise OSError(28, "No space left on device", "results/x.parquet")

    with pytest.raises(SystemExit) as exit_info:
        run_script(sm, disk_full)
    assert exit_info.value.code == 1
    assert _error_lines(capsys.readouterr().err)[-1].endswith(
        "dnalm: error: results/x.parquet: No space left on device")

    def bug(_sm: object) -> None:
        raise ZeroDivisionError("division by zero")

    with pytest.raises(SystemExit):
        run_script(sm, bug)
    err = capsys.readouterr().err
    (line,) = _error_lines(err)  # the terminal: one line, pointing at the log
    assert "unexpected ZeroDivisionError: division by zero" in line and str(log) in line
    assert "Traceback" in log.read_text()  # the job log keeps it


# --- (b) leftovers and file modes ---------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_the_modes_the_umask_gives(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        dio.write_table(pa.table({"a": [1]}), tmp_path / "t.parquet")
        with dio.atomic_files(tmp_path / "a.fa", tmp_path / "a.fa.fai") as tmps:
            for tmp in tmps:
                tmp.write_text(">c\n")
        with dio.atomic_dir(tmp_path / "parts") as tmp:
            (tmp / "part-00000.parquet").write_text("x")
    finally:
        os.umask(old)
    for name in ("t.parquet", "a.fa", "a.fa.fai"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert (tmp_path / "parts").stat().st_mode & 0o777 == 0o777 & ~umask


KILLED_WRITER = """
import sys, time
from dnalm.io import atomic_dir, atomic_file
with atomic_file(sys.argv[1] + "/out.parquet") as tmp, atomic_dir(sys.argv[1] + "/chunks"):
    tmp.write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()  # kill -9
    proc.wait()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert len(leftovers) == 2 and all(".tmp" in n for n in leftovers), leftovers
    # an old-style leftover (random tag) older than this process, and files that are not ours
    old_style = tmp_path / ".out.parquet.k2j4h5l1.tmp.parquet"
    old_style.write_text("x")
    os.utime(old_style, (time.time() - 3600,) * 2)
    others = [tmp_path / ".out.parquet.fai.abc.tmp", tmp_path / ".other.parquet.k2j4h5l1.tmp"]
    for other in others:
        other.write_text("keep")
        os.utime(other, (time.time() - 3600,) * 2)
    live = tmp_path / f".out.parquet.{os.getpid()}-{dio._HOST}-abc.tmp.parquet"  # a live writer
    live.write_text("busy")
    dio._TEMPS_SEEN.pop(os.path.abspath(tmp_path), None)

    dio.write_table(pa.table({"a": [1]}), tmp_path / "out.parquet")
    with dio.atomic_dir(tmp_path / "chunks") as tmp:
        (tmp / "part-00000.parquet").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.parquet", "chunks", live.name, *(o.name for o in others)])


# --- (c) resume after kill -9 of Snakemake ------------------------------------------------


def test_make_run_clears_a_stale_lock_first() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.dnalm-installed",
                           "run"], cwd=REPO, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    assert lines[0] == ".venv/bin/python -m dnalm.workflow_lock", proc.stdout
    assert lines[1].startswith(".venv/bin/snakemake --cores")


@pytest.mark.workflow
def test_stale_lock_after_kill_is_cleared(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "run", {"demo": str(DEMO_FASTA)})
    target = "results/genomes/demo/genome_stats.parquet"
    run = subprocess.Popen([str(SNAKEMAKE), target, "--snakefile", str(REPO / "Snakefile"),
                            "--cores", "1", "--configfile", "config.yaml"], cwd=workdir,
                           env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    locks = workdir / ".snakemake" / "locks"
    deadline = time.monotonic() + 120
    while not (locks.is_dir() and any(locks.iterdir())) and run.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)  # Snakemake and its job, as a lost session would
    run.wait()
    assert any(locks.iterdir()), "the run ended before it could be killed"
    refused = snakemake(workdir, target, check=False)  # (a dry run takes no lock)
    assert refused.returncode != 0 and "cannot be locked" in refused.stdout + refused.stderr

    # a process of a live run in the directory keeps the lock
    options = {"snakemake": str(SNAKEMAKE),
               "snakemake_args": ["--snakefile", str(REPO / "Snakefile"), "--configfile",
                                  "config.yaml"]}
    busy = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); "
                             "import time; time.sleep(30)", "snakemake"], cwd=workdir,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout.readline().strip() == "up"
        assert not clear_stale_lock(workdir, **options)
    finally:
        busy.kill()
        busy.wait()
    assert any(locks.iterdir())
    # none left: what `make run` runs first (`snakemake --unlock`), then the plain rerun works
    assert clear_stale_lock(workdir, **options)
    assert not locks.is_dir() or not any(locks.iterdir())
    snakemake(workdir, target)
    assert (workdir / target).is_file()


# --- (d) a trickling server ---------------------------------------------------------------


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes and sends one every 0.1 s (with ``server.slow_headers``, the
    status line and headers too)."""

    def do_GET(self) -> None:
        self.server.gets += 1
        head = b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n"
        try:
            if self.server.slow_headers:
                body = head + b"A" * 1000
            else:
                self.wfile.write(head)
                body = b"A" * 1000
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def trickle_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    server.gets, server.slow_headers = 0, False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/genome.fa.gz"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("slow_headers", [False, True], ids=["body", "headers"])
def test_trickling_download_is_cut_retried_and_fails_in_one_line(tmp_path: Path, trickle_url,
                                                                 capsys, slow_headers) -> None:
    server, url = trickle_url
    server.slow_headers = slow_headers
    dest = tmp_path / "genome.fa.gz"
    outcome: dict[str, BaseException] = {}

    def attempt() -> None:
        try:
            download(url, dest, retries=1, backoff_seconds=0.01, timeout_seconds=0.5)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    began = time.monotonic()
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=15)
    assert not worker.is_alive(), "the download hangs on a trickling server"
    assert time.monotonic() - began < 5
    error = outcome.get("error")
    reason = "no response headers within 1 s" if slow_headers else "too slow"
    assert isinstance(error, DownloadError) and reason in str(error), error
    assert server.gets == 2  # cut, retried once, given up
    assert list(tmp_path.iterdir()) == []

    status = main(["download", url, str(dest), "--timeout", "0.3", "--retries", "0"])
    err = capsys.readouterr().err
    (line,) = [ln for ln in _error_lines(err) if ln.startswith("dnalm: error")]
    assert status == 1 and line.startswith("dnalm: error: unreachable after 1 attempts"), err
    assert "Traceback" not in err


# --- (e) config errors at start-up, not at job time ----------------------------------------

LATE_ERRORS = [
    ({"pretraining": {"max_length": 0}}, "pretraining.models.demo.max_length"),
    ({"pretraining": {"max_length": 2}}, "pretraining.models.demo.max_length"),
    ({"pretraining": {"batch_size": 0}}, "pretraining.models.demo.batch_size"),
    ({"pretraining": {"total_steps": 0}}, "pretraining.models.demo.total_steps"),
    ({"pretraining": {"segment_steps": -5}}, "pretraining.models.demo.segment_steps"),
    ({"pretraining": {"steps_per_job": -5}}, "pretraining.models.demo.steps_per_job"),
    ({"pretraining": {"learning_rate": -0.001}}, "pretraining.models.demo.learning_rate"),
    ({"pretraining": {"mlm_probability": 2}}, "pretraining.models.demo.mlm_probability"),
    ({"tokenizers": {"bpe": {"vocab_size": 3}}}, "tokenizers.bpe.vocab_size"),
    ({"tokenizers": {"bpe": {"vocab_sise": 300}}}, "'vocab_sise' was unexpected"),
    ({"tokenizers": {"kmer6": {"k": 9}}}, "tokenizers.kmer6.k"),
]


def _config_with(change: dict) -> dict:
    config = default_config()
    for key, value in change.get("tokenizers", {}).items():
        config["tokenizers"][key].update(value)
    config["pretraining"]["models"]["demo"].update(change.get("pretraining", {}))
    return config


def _startup_error(config: dict) -> str | None:
    """What the workflow says while parsing (rules/common.smk's schema check, then the settings
    the rules build)."""
    if next(jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
            .iter_errors(config), None):
        return describe_config_error(config, str(SCHEMA_PATH))
    for name in config["pretraining"]["models"]:  # as rules/pretrain.smk
        try:
            pretrain_settings(config, name)
        except DnalmError as exc:
            return f"pretraining.models.{name}: {exc}"
    for name, spec in config["tokenizers"].items():  # as rules/tokenizer.smk
        try:
            parse_spec({k: v for k, v in spec.items() if k != "genomes"})
        except DnalmError as exc:
            return f"tokenizers.{name}: {exc}"
    return None


@pytest.mark.parametrize(("change", "key"), LATE_ERRORS)
def test_invalid_values_are_refused_at_start_up(change: dict, key: str) -> None:
    message = _startup_error(_config_with(change))
    assert message is not None and key in message and "\n" not in message, message


def test_schema_bounds_agree_with_the_tokenizer_spec() -> None:
    entry = json.loads(SCHEMA_PATH.read_text())["properties"]["tokenizers"][
        "additionalProperties"]
    props = entry["properties"]
    assert props["vocab_size"]["minimum"] == N_SPECIAL + len(ALPHABET) + 1
    assert (props["k"]["minimum"], props["k"]["maximum"]) == NT_K_RANGE
    assert entry["additionalProperties"] is False
    assert _startup_error(default_config()) is None


@pytest.mark.workflow
def test_dry_run_refuses_late_config_errors_in_one_line(tmp_path: Path) -> None:
    for change, key in (LATE_ERRORS[0], LATE_ERRORS[-1]):
        config = _config_with(change)
        workdir = make_workdir(tmp_path / key, {"demo": str(DEMO_FASTA)},
                               pretraining=copy.deepcopy(config["pretraining"]),
                               tokenizers=copy.deepcopy(config["tokenizers"]))
        proc = snakemake(workdir, "--dry-run", check=False)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("dnalm: error:")]
        assert proc.returncode != 0 and len(lines) == 1 and key in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


# --- (f) plain-gzip genomes ---------------------------------------------------------------


def test_plain_gzip_genome_is_bgzipped_once_and_reused(tmp_path: Path, capsys) -> None:
    genome = tmp_path / "ucsc" / "chr16_slice.fa.gz"
    genome.parent.mkdir()
    genome.write_bytes(gzip.compress((AXIN1 / "chr16_186964_397118.fa").read_bytes()))
    args = ["score-coding", "--genome", str(genome), "--annotation",
            str(AXIN1 / "refseq_chr16_slice.gtf"), "--vcf", str(AXIN1 / "demo_coding.vcf")]
    assert main([*args, "--out", str(tmp_path / "a.parquet")]) == 0, capsys.readouterr().err
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "bgzip" in ln]
    assert "plain gzip, not bgzip; writing a bgzipped, indexed copy" in line
    (cached,) = (genome.parent / "dnalm-genome-cache").glob("*.fa.gz")
    made = cached.stat().st_mtime_ns
    assert main([*args, "--out", str(tmp_path / "b.parquet")]) == 0
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "bgzip" in ln]
    assert "reusing its bgzipped, indexed copy" in line
    assert cached.stat().st_mtime_ns == made
    a, b = (pq.read_table(tmp_path / f"{n}.parquet") for n in "ab")
    assert a.num_rows > 0 and a.equals(b)
