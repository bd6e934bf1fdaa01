"""User-facing errors.

Every problem caused by input (a bad FASTA, a wrong checksum, an unknown source scheme) is raised
as :class:`DnalmError`. The command line prints it as one line and exits non-zero, without a
traceback; Snakemake scripts let it propagate so the job fails and its outputs are removed.
"""

from __future__ import annotations


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
