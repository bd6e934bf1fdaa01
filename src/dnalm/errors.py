"""User-facing errors.

Every problem caused by input (a bad FASTA, a wrong checksum, an unknown source scheme) is raised
as :class:`DnalmError`. The command line prints it as one line and exits non-zero, without a
traceback; Snakemake scripts let it propagate so the job fails and its outputs are removed.
"""

from __future__ import annotations

import os


class DnalmError(Exception):
    """An error caused by the user's input or configuration, reported as one line.

    ``where`` names the file or record (genome id, contig, path) so the user knows what to fix.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        self.reason = message
        super().__init__(f"{where}: {message}" if where else message)


class DownloadError(DnalmError):
    """A download failed after all retries, or its checksum did not match."""


class InputFormatError(DnalmError):
    """An input file is malformed (not FASTA, truncated, duplicated records...)."""


class ConfigError(DnalmError):
    """The configuration or a sample sheet is invalid."""


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def os_error_reason(exc: OSError) -> str:
    """The reason of an ``OSError`` in the system's words (``No space left on device``).

    Libraries wrap the system message in their own (pyarrow: ``Error writing bytes to file.
    Detail: [errno 28] No space left on device``); the errno's own text is what a user acts on.
    """
    if exc.errno and exc.strerror and os.strerror(exc.errno) in exc.strerror:
        return os.strerror(exc.errno)
    return _first_line(exc.strerror or "") or _first_line(str(exc)) or type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """One line for any exception, after ``dnalm: error: ``: ``<file or record>: <reason>``.

    A :class:`DnalmError` already says where and why; an ``OSError`` (a read-only directory, a
    full disk, a permission) names its file and the system's reason; anything else is not
    expected, so the line names the exception type, which is what a bug report needs.
    """
    if isinstance(exc, DnalmError):
        return str(exc)
    if isinstance(exc, OSError):
        names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        reason = os_error_reason(exc)
        return f"{' -> '.join(names)}: {reason}" if names else reason
    message = _first_line(str(exc))
    return f"unexpected {type(exc).__name__}" + (f": {message}" if message else "")
