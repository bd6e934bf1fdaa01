"""The genome sample sheet (``config/genomes.tsv``): one row per genome.

Columns: ``genome_id``, ``source`` (see :mod:`dnalm.sources`), optional ``sha256``/``md5``, and
optional ``include_contigs``/``exclude_contigs`` (comma-separated glob patterns). The sheet is read
with every column as text so that an id such as ``1`` or a checksum with leading zeros survives.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import jsonschema

from dnalm.errors import ConfigError
from dnalm.sources import Source, resolve

COLUMNS = ("genome_id", "source", "sha256", "md5", "include_contigs", "exclude_contigs")
REQUIRED = ("genome_id", "source")


@dataclass(frozen=True)
class GenomeEntry:
    """One genome of the sheet, with its source already resolved."""

    genome_id: str
    source: Source
    sha256: str | None
    md5: str | None
    include: tuple[str, ...]
    exclude: tuple[str, ...]


def _patterns(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


@cache
def _row_validator() -> jsonschema.Draft202012Validator:
    text = resources.files("dnalm").joinpath("schemas/genomes.schema.json").read_text()
    return jsonschema.Draft202012Validator(json.loads(text))


def _check_row(path: Path, line_no: int, row: dict[str, str]) -> None:
    present = {k: v for k, v in row.items() if v != "" or k in REQUIRED}
    error = jsonschema.exceptions.best_match(_row_validator().iter_errors(present))
    if error is not None:
        column = ".".join(str(p) for p in error.absolute_path) or "row"
        raise ConfigError(f"{path} line {line_no}: {column}: {error.message}")


def read_sheet(path: str | Path) -> list[dict[str, str]]:
    """Rows of the sheet as dictionaries of strings (empty cells become "")."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"genome sheet not found: {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader((line for line in handle if not line.startswith("#")),
                                delimiter="\t")
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
        unknown = [c for c in header if c not in COLUMNS]
        if unknown:
            raise ConfigError(f"{path}: unknown column(s) {', '.join(unknown)}; allowed: "
                              f"{', '.join(COLUMNS)}")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if not any((v or "").strip() for v in row.values()):
                continue
            clean = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if None in row:
                raise ConfigError(f"{path} line {line_no}: more cells than columns")
            _check_row(path, line_no, clean)
            rows.append(clean)
    if not rows:
        raise ConfigError(f"{path}: no genomes listed")
    return rows


def parse_sheet(path: str | Path) -> dict[str, GenomeEntry]:
    """Read, check and resolve the sheet; raises ``ConfigError`` naming the row and reason."""
    entries: dict[str, GenomeEntry] = {}
    for row in read_sheet(path):
        gid = row.get("genome_id", "")
        if not gid:
            raise ConfigError(f"{path}: a row has an empty genome_id")
        if gid in entries:
            raise ConfigError(f"{path}: genome id {gid!r} is used twice")
        try:
            source = resolve(row.get("source", ""))
        except ConfigError as exc:
            raise ConfigError(f"{path}: genome {gid}: {exc.reason}") from exc
        entries[gid] = GenomeEntry(
            genome_id=gid,
            source=source,
            sha256=row.get("sha256") or None,
            md5=row.get("md5") or None,
            include=_patterns(row.get("include_contigs")),
            exclude=_patterns(row.get("exclude_contigs")),
        )
    return entries
