"""File helpers shared by every stage: atomic outputs and Parquet conventions.

A failed job must never leave a half-written output behind, because Snakemake (and a user re-running
a ``dnalm`` command) would take it for finished work. Every writer therefore writes to a temporary
sibling and renames it into place only when the content is complete.

Two more promises hold for every output on a shared file system:

* **modes**: ``tempfile`` creates its files 0600 and directories 0700, which a rename would carry
  onto the result, so group members could not read results under ``umask 022``. Finished outputs
  get the mode the umask implies (``0666 & ~umask``, directories ``0777 & ~umask``), as a plain
  ``open`` would have given them.
* **leftovers**: a process killed with ``kill -9`` cannot remove its temporary sibling. A new
  write of the same target removes the stale ones (see :func:`clean_stale_temps`): a temporary
  name records the host and process id of its writer, so a sibling whose writer is gone on this
  host, or an old-style one older than this process, is known to be abandoned.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

#: Compression for every Parquet file dnalm writes: zstd level 1 is both fast and compact for DNA.
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 1

#: When this process started (as far as the stale-temporary rule needs to know): a temporary
#: sibling last modified before it cannot belong to a write this process began.
_PROCESS_START = time.time()
#: Host part of temporary names: letters, digits and '-' only, so a name parses back.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:40] or "host"


#: errno values only a write produces: an ``OSError`` with one of these and no file name, raised
#: while an output is written (pyarrow says "Error writing bytes to file"), is that output's.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _umask() -> int:
    """The process umask (from /proc where possible: setting it to read it is not
    thread-safe)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_mode(path: Path) -> None:
    """Give a finished temporary output the mode a plain ``open``/``mkdir`` would have given it."""
    base = 0o777 if path.is_dir() else 0o666
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, base & ~_umask())


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}-{_HOST}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


#: Hidden temporary names per directory, listed once per process: leftovers of killed writers
#: are older than this process, and listing a folder of 10,000 shards before each write would
#: make writing them quadratic.
_TEMPS_SEEN: dict[str, set[str]] = {}


def _hidden_temps(directory: Path) -> set[str]:
    key = os.path.abspath(directory)
    if key not in _TEMPS_SEEN:
        try:
            names = os.listdir(key)
        except OSError:
            names = []
        _TEMPS_SEEN[key] = {n for n in names if n.startswith(".") and ".tmp" in n}
    return _TEMPS_SEEN[key]


def clean_stale_temps(target: str | os.PathLike[str]) -> int:
    """Remove abandoned temporary siblings of ``target`` (left by a killed writer); returns how
    many.

    Only names of ``target``'s own temporary pattern (``.{name}.{tag}.tmp...``) are looked at,
    and only those that cannot belong to a live write: the tag names this host and a process that
    no longer exists, or (another host's tag, or an old-style random tag) the file was last
    modified before this process started. A concurrent writer of the same target on this host
    keeps its file.
    """
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?P<tag>[^./]+)\.tmp")
    removed = 0
    candidates = _hidden_temps(target.parent)
    for name in [n for n in candidates if pattern.match(n)]:
        candidates.discard(name)
        sibling = target.parent / name
        m = pattern.match(name)
        parts = re.fullmatch(r"(?P<pid>\d+)-(?P<host>[A-Za-z0-9-]+)-[^-]*", m["tag"])
        try:
            if parts and parts["host"] == _HOST:
                stale = not _alive(int(parts["pid"]))
            else:
                stale = sibling.lstat().st_mtime < _PROCESS_START
            if not stale:
                continue
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling)
            else:
                sibling.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.debug("cannot remove stale temporary %s: %s", sibling, exc)
            continue
        removed += 1
    if removed:
        log.info("%s: removed %d temporary file(s) left by an interrupted earlier write",
                 target, removed)
    return removed


def _naming(exc: OSError, pairs: list[tuple[Path, Path]]) -> OSError:
    """``exc`` naming the output instead of its hidden temporary name (``pairs``: temporary,
    target), or naming the first target when it names no file but is a write error."""
    if type(exc).__module__ != "builtins" or not pairs:
        return exc
    if exc.filename is None:
        if exc.errno not in _WRITE_ERRNOS:
            return exc
        return type(exc)(exc.errno, exc.strerror, str(pairs[0][1]))
    name = str(exc.filename)
    for tmp, target in pairs:
        if name == str(tmp) or name.startswith(f"{tmp}{os.sep}"):
            return type(exc)(exc.errno, exc.strerror, str(target) + name[len(str(tmp)):])
    return exc


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    clean_stale_temps(path)
    try:
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=f".tmp{suffix}",
                                    dir=path.parent)
    except OSError as exc:  # name the output, not the hidden temporary name
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
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
        _publish_mode(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        named = _naming(exc, [(tmp, target)])
        if named is exc:
            raise
        raise named from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_files(*paths: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """Like :func:`atomic_file` for files that must appear together (a FASTA and its index)."""
    targets = [Path(p) for p in paths]
    for t in targets:
        t.parent.mkdir(parents=True, exist_ok=True)
    tmps: list[Path] = []
    try:
        for t in targets:
            tmps.append(_tmp_sibling(t, t.suffix))
        yield tmps
        for tmp, target in zip(tmps, targets, strict=True):
            _publish_mode(tmp)
            os.replace(tmp, target)
    except BaseException as exc:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        for target in targets:
            with contextlib.suppress(OSError):  # a read-only folder: nothing was written
                target.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            named = _naming(exc, list(zip(tmps, targets, strict=False)))
            if named is not exc:
                raise named from exc
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp",
                                    dir=target.parent))
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(target)) from None
    try:
        yield tmp
        _publish_mode(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        named = _naming(exc, [(tmp, target)])
        if named is exc:
            raise
        raise named from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def scratch_dir(directory: str | os.PathLike[str], name: str) -> Iterator[Path]:
    """A temporary working directory ``directory/.{name}.{tag}.tmp`` removed on exit.

    For intermediate files written beside an output (buckets, one-job parts): it follows the
    temporary-name rule of the atomic writers, so one left by a killed process is removed by the
    next run's :func:`clean_stale_temps`.
    """
    parent = Path(directory)
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(parent / name)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(parent / name), suffix=".tmp", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
