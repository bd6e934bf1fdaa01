"""The dnalm command line: help with examples, stages by hand, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dnalm.cli import build_parser, main
from tests.conftest import LAMBDA_FASTA, write_fasta

DNALM = [sys.executable, "-m", "dnalm"]


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help_with_an_example(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert f"dnalm {command}" in out


def test_prepare_and_chunk_by_hand(tmp_path: Path, capsys) -> None:
    out = tmp_path / "g" / "genome.fa.gz"
    assert main(["prepare-genome", str(LAMBDA_FASTA), str(out), "--genome-id", "lambda"]) == 0
    assert "48,502 bp" in capsys.readouterr().out
    assert main(["chunk", str(out), str(tmp_path / "chunks"), "--genome-id", "lambda",
                 "--length", "200-400", "--region-size", "5000", "--threads", "2"]) == 0
    text = capsys.readouterr().out
    assert "validation:" in text and "test:" in text
    rows = pq.read_table(tmp_path / "chunks" / "train" / "part-00000.parquet").num_rows
    assert rows > 50


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare-genome", "{missing}", "{out}", "--genome-id", "x"], "file not found"),
        (["prepare-genome", "{notfasta}", "{out}", "--genome-id", "x"], "not a FASTA file"),
        (["prepare-genome", "{fasta}", "{out}", "--genome-id", "x", "--md5", "0" * 32],
         "md5 checksum mismatch"),
        (["chunk", "{fasta}", "{out}", "--genome-id", "x"], "no .fai index"),
        (["chunk", "{prepared}", "{out}", "--genome-id", "x", "--overlap", "5000"],
         "overlap must be"),
        (["download", "s3x:foo", "{out}"], "unknown source scheme"),
        (["download", "http://127.0.0.1:9/x.fa", "{out}", "--retries", "0"], "unreachable"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path: Path, args, message) -> None:
    fasta = write_fasta(tmp_path / "g.fa", {"c": "ACGT" * 100})
    notfasta = tmp_path / "page.html"
    notfasta.write_text("<html></html>\n")
    prepared = tmp_path / "p" / "genome.fa.gz"
    subprocess.run([*DNALM, "prepare-genome", str(fasta), str(prepared), "--genome-id", "x"],
                   check=True, capture_output=True)
    values = {"missing": tmp_path / "nope.fa", "out": tmp_path / "out", "fasta": fasta,
              "notfasta": notfasta, "prepared": prepared}
    argv = [a.format(**values) for a in args]
    proc = subprocess.run([*DNALM, *argv], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "dnalm: error:" in line]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_debug_flag_shows_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([*DNALM, "--debug", "download", "s3x:foo", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_doctor_runs() -> None:
    proc = subprocess.run([*DNALM, "doctor"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "torch" in proc.stdout and "accelerators:" in proc.stdout
