"""File helpers shared by every stage: atomic outputs and Parquet conventions.

A failed job must never leave a half-written output behind, because Snakemake (and a user re-running
a ``dnalm`` command) would take it for finished work. Every writer therefore writes to a temporary
sibling and renames it into place only when the content is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: Compression for every Parquet file dnalm writes: zstd level 1 is both fast and compact for DNA.
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 1


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(target, target.suffix)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_files(*paths: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """Like :func:`atomic_file` for files that must appear together (a FASTA and its index)."""
    targets = [Path(p) for p in paths]
    for t in targets:
        t.parent.mkdir(parents=True, exist_ok=True)
    tmps = [_tmp_sibling(t, t.suffix) for t in targets]
    try:
        yield tmps
        for tmp, target in zip(tmps, targets, strict=True):
            os.replace(tmp, target)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        for target in targets:
            target.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_table(table: pa.Table, path: str | os.PathLike[str], **kwargs: object) -> None:
    """Write one Parquet file atomically with dnalm's compression settings."""
    with atomic_file(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression=PARQUET_COMPRESSION,
            compression_level=PARQUET_COMPRESSION_LEVEL,
            **kwargs,
        )


def part_name(index: int) -> str:
    """Shard file name used by every sharded stage: ``part-00000.parquet``."""
    return f"part-{index:05d}.parquet"


def list_parts(directory: str | os.PathLike[str]) -> list[Path]:
    """The Parquet shards of a sharded output directory, in order."""
    return sorted(Path(directory).glob("part-*.parquet"))
