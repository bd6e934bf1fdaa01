"""Streaming downloads with retries, back-off, checksums and atomic writes.

Genomes are gigabytes: they are streamed to disk in 1 MiB pieces (never held in memory), hashed
on the fly, and renamed into place only once complete and verified. Transient failures (connection
errors, time-outs, HTTP 5xx/429, a body cut short) are retried with exponential back-off; permanent
ones (HTTP 404, a checksum mismatch) fail at once with a one-line reason.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import requests
import urllib3

from dnalm.errors import DownloadError
from dnalm.io import atomic_file
from dnalm.logs import Progress
from dnalm.sources import Source, find_ncbi_assembly_dir, ncbi_file_url

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


#: An attempt fails (and is retried) when less than this many bytes per second arrive over a
#: whole time-out period. The socket time-out alone bounds only the wait for *each* read, so a
#: server trickling a byte every half second would hold an attempt open forever.
MIN_BYTES_PER_SECOND = 1024


class _Transient(Exception):
    """A failure worth retrying."""


class _RateGuard:
    """Counts the bytes of one attempt and fails it when a period of ``timeout`` seconds brings
    fewer than :data:`MIN_BYTES_PER_SECOND` per second: a slow but steady link passes, a
    stalled or trickling one is cut after one period (plus at most one socket time-out)."""

    def __init__(self, timeout: float) -> None:
        self.period = max(float(timeout), 0.001)
        self.began = time.monotonic()
        self.bytes = 0

    def add(self, n: int) -> None:
        self.bytes += n
        elapsed = time.monotonic() - self.began
        if elapsed < self.period:
            return
        if self.bytes < MIN_BYTES_PER_SECOND * elapsed:
            raise _Transient(f"too slow: {self.bytes} bytes in {elapsed:.1f} s (the time-out "
                             f"period needs at least {MIN_BYTES_PER_SECOND} bytes/s)")
        self.began, self.bytes = time.monotonic(), 0


def _bar(url: str, length: str | None) -> Progress:
    """Download progress in bytes: a bar on a terminal, a log line every 10 %."""
    total = int(length) if length and length.isdigit() else None
    return Progress(total, desc=f"downloading {url.rsplit('/', 1)[-1]}", logger=log, unit="B",
                    unit_scale=True)


def _response(url: str, timeout: float) -> requests.Response:
    """``requests.get(url, stream=True)`` whose headers must arrive within twice ``timeout``
    seconds in all (connect, then the response).

    ``requests``' time-out bounds each socket read, so a server that trickles its status line
    and headers a byte at a time would hold the attempt open for as long as it likes. The request
    runs in a daemon thread; past the deadline the attempt is given up (a response that still
    arrives later is closed).
    """
    box: dict[str, object] = {}
    done, abandoned = threading.Event(), threading.Event()

    def get() -> None:
        try:
            response = requests.get(url, stream=True, timeout=timeout)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        else:
            box["response"] = response
            if abandoned.is_set():
                response.close()
        finally:
            done.set()

    threading.Thread(target=get, name="dnalm-download", daemon=True).start()
    if not done.wait(2 * timeout):
        abandoned.set()
        raise _Transient(f"no response headers within {2 * timeout:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["response"]  # type: ignore[return-value]


def _http_stream(url: str, dest: Path, timeout: float, on_bytes: Callable[[bytes], None]) -> int:
    try:
        with _response(url, timeout) as response:
            if response.status_code in RETRYABLE_STATUS:
                raise _Transient(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise DownloadError(f"HTTP {response.status_code} {response.reason} for {url}")
            expected = response.headers.get("Content-Length")
            written = 0
            guard = _RateGuard(timeout)
            with _bar(url, expected) as bar, open(dest, "wb") as out:
                # read1: whatever one socket read brings, so the guard sees a trickle at once
                while piece := response.raw.read1(CHUNK_BYTES, decode_content=False):
                    out.write(piece)
                    on_bytes(piece)
                    written += len(piece)
                    bar.update(len(piece))
                    guard.add(len(piece))
            if expected is not None and written != int(expected):
                raise _Transient(f"connection closed after {written} of {expected} bytes")
            return written
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Transient(str(exc).splitlines()[0][:200]) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        # a body cut short (ProtocolError, ChunkedEncodingError) is worth another attempt
        raise _Transient(f"{type(exc).__name__}: {str(exc)[:150]}") from exc


def _ftp_stream(url: str, dest: Path, timeout: float, on_bytes: Callable[[bytes], None]) -> int:
    try:
        with (urllib.request.urlopen(url, timeout=timeout) as response,
              _bar(url, response.headers.get("Content-Length")) as bar,
              open(dest, "wb") as out):
            written = 0
            guard = _RateGuard(timeout)
            read = getattr(response, "read1", response.read)
            while piece := read(CHUNK_BYTES):
                out.write(piece)
                on_bytes(piece)
                written += len(piece)
                bar.update(len(piece))
                guard.add(len(piece))
            return written
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise _Transient(str(exc)[:200]) from exc


def fetch_text(url: str, *, timeout: float = 60.0) -> str:
    """A small text document (a folder listing); errors become ``DownloadError``."""
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise DownloadError(f"cannot reach {url}: {type(exc).__name__}") from exc
    if response.status_code >= 400:
        raise DownloadError(f"HTTP {response.status_code} for {url}")
    return response.text


def resolve_url(source: Source, *, timeout: float = 60.0) -> str:
    """The final file URL of a remote source (looks up NCBI assembly folders)."""
    if source.kind == "url":
        return source.location
    if source.kind == "ncbi":
        folder, accession = source.location.split("|", 1)
        listing = fetch_text(folder + "/", timeout=timeout)
        name = find_ncbi_assembly_dir(listing, accession)
        if name is None:
            raise DownloadError(f"NCBI accession {accession} not found under {folder}/")
        return ncbi_file_url(folder, name)
    raise ValueError(f"not a remote source: {source}")


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    retries: int = 5,
    backoff_seconds: float = 2.0,
    timeout_seconds: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying a checksum when one is given.

    Raises ``DownloadError`` with the reason when every attempt failed or the checksum differs;
    ``dest`` is then absent.
    """
    dest = Path(dest)
    stream = _ftp_stream if url.startswith("ftp://") else _http_stream
    last_reason = "no attempt made"
    for attempt in range(1, retries + 2):
        hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}

        def on_bytes(piece: bytes, hashes: dict = hashes) -> None:
            if sha256:
                hashes["sha256"].update(piece)
            if md5:
                hashes["md5"].update(piece)

        try:
            with atomic_file(dest) as tmp:
                size = stream(url, tmp, timeout_seconds, on_bytes)
                _verify(hashes, sha256=sha256, md5=md5, url=url)
            log.info("downloaded %s (%d bytes, attempt %d)", url, size, attempt)
            return dest
        except _Transient as exc:
            last_reason = str(exc)
            if attempt <= retries:
                wait = backoff_seconds * 2 ** (attempt - 1)
                log.warning("attempt %d for %s failed (%s); retrying in %.1fs", attempt, url,
                            last_reason, wait)
                time.sleep(wait)
    raise DownloadError(f"unreachable after {retries + 1} attempts: {url} ({last_reason})")


def _verify(hashes: dict, *, sha256: str | None, md5: str | None, url: str) -> None:
    for name, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            actual = hashes[name].hexdigest()
            if actual.lower() != expected.strip().lower():
                raise DownloadError(
                    f"{name} checksum mismatch for {url}: expected {expected}, got {actual}"
                )


def fetch_source(
    source: Source,
    dest: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    retries: int = 5,
    backoff_seconds: float = 2.0,
    timeout_seconds: float = 60.0,
) -> Path:
    """Download a remote genome source (resolving NCBI accessions first) to ``dest``."""
    url = resolve_url(source, timeout=timeout_seconds)
    return download(url, dest, sha256=sha256, md5=md5, retries=retries,
                    backoff_seconds=backoff_seconds, timeout_seconds=timeout_seconds)


def file_digest(path: str | Path, algorithm: str) -> str:
    """Hex digest of a local file, read in pieces."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while piece := handle.read(CHUNK_BYTES):
            h.update(piece)
    return h.hexdigest()


def verify_local(path: str | Path, *, sha256: str | None = None, md5: str | None = None) -> None:
    """Check a local source file against the sheet's checksums."""
    for name, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            actual = file_digest(path, name)
            if actual.lower() != expected.strip().lower():
                raise DownloadError(
                    f"{name} checksum mismatch for {path}: expected {expected}, got {actual}"
                )


def copy_local(path: str | Path, dest: str | Path) -> Path:
    """Copy a local source atomically (used when a workflow wants the raw file under resources/)."""
    with atomic_file(dest) as tmp:
        shutil.copyfile(path, tmp)
    return Path(dest)
