"""Variant input: a VCF (plain or bgzipped) or a ``contig,pos,ref,alt`` table, checked on a genome.

Multi-allelic records are split into one row per alternate allele. Contig names are matched to the
genome's with :class:`dnalm.genome.ContigNames` (``chr20`` ↔ ``20``). Every row keeps a ``reason``:
empty when the variant can be scored, otherwise why not (REF mismatch, unknown contig, symbolic
allele...), so no variant ever disappears silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pysam

from dnalm.errors import InputFormatError
from dnalm.genome import Genome

_BASES = re.compile(r"^[ACGTNacgtn]+$")
TABLE_COLUMNS = ("contig", "pos", "ref", "alt")


@dataclass
class VariantTable:
    """Variants as columns; ``pos`` is 1-based as in VCF, ``start`` 0-based on the genome contig."""

    frame: pd.DataFrame  # columns: record, contig, pos, ref, alt, id, genome_contig, start, reason


def read_vcf(path: str | Path) -> pd.DataFrame:
    """One row per (record, alternate allele) of a VCF; ``record`` numbers the VCF records.

    Plain, bgzipped and plain-gzipped VCFs are accepted (htslib cannot read the last kind, so it
    is decompressed to a temporary file first).
    """
    try:
        return _read_vcf_records(path)
    except NotImplementedError:
        import gzip
        import shutil
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".vcf") as tmp:
            with gzip.open(path, "rb") as src:
                shutil.copyfileobj(src, tmp)
            tmp.flush()
            return _read_vcf_records(tmp.name, where=str(path))


def _read_vcf_records(path: str | Path, where: str | None = None) -> pd.DataFrame:
    rows = []
    try:
        with pysam.VariantFile(str(path)) as vcf:
            for record_index, rec in enumerate(vcf):
                for alt in rec.alts or (".",):
                    rows.append((record_index, rec.chrom, rec.pos, rec.ref, alt, rec.id or "."))
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"cannot read VCF ({str(exc).splitlines()[0]})",
                               where=where or str(path)) from exc
    return pd.DataFrame(rows, columns=["record", "contig", "pos", "ref", "alt", "id"])


def read_table(path: str | Path) -> pd.DataFrame:
    """A ``contig,pos,ref,alt`` table (CSV, TSV or Parquet); ``pos`` 1-based; ALT may hold
    comma-separated alleles."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            sep = "," if path.suffix == ".csv" else "\t"
            frame = pd.read_csv(path, sep=sep, dtype={"contig": str, "ref": str, "alt": str})
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"cannot read variant table ({exc})", where=str(path)) from exc
    missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputFormatError(f"missing column(s) {', '.join(missing)}", where=str(path))
    frame = frame.reset_index(drop=True)
    frame["record"] = frame.index
    frame["alt"] = frame["alt"].astype(str).str.split(",")
    frame = frame.explode("alt", ignore_index=True)
    if "id" not in frame.columns:
        frame["id"] = "."
    try:
        frame["pos"] = frame["pos"].astype("int64")
    except (ValueError, TypeError) as exc:
        raise InputFormatError("column pos must hold integers", where=str(path)) from exc
    return frame[["record", "contig", "pos", "ref", "alt", "id"]]


def read_variants(path: str | Path) -> pd.DataFrame:
    """VCF or table, by file name."""
    name = str(path)
    if name.endswith((".vcf", ".vcf.gz", ".bcf", ".vcf.bgz")):
        return read_vcf(path)
    return read_table(path)


def check_against_genome(frame: pd.DataFrame, genome: Genome) -> pd.DataFrame:
    """Add ``genome_contig``, ``start`` (0-based) and ``reason`` (empty = scorable)."""
    frame = frame.copy()
    frame["ref"] = frame["ref"].astype(str).str.upper()
    frame["alt"] = frame["alt"].astype(str).str.upper()
    contigs = {c: genome.contigs.resolve(str(c)) for c in frame["contig"].unique()}
    frame["genome_contig"] = frame["contig"].map(contigs)
    frame["start"] = frame["pos"] - 1
    reasons = []
    for row in frame.itertuples(index=False):
        reasons.append(_reason(row, genome))
    frame["reason"] = reasons
    return frame


def _reason(row, genome: Genome) -> str:
    if not isinstance(row.genome_contig, str):
        return f"contig {row.contig} not in genome"
    if not _BASES.match(row.alt):
        return f"unsupported allele {row.alt} (symbolic, missing or not ACGTN)"
    if not _BASES.match(row.ref):
        return f"unsupported REF {row.ref}"
    if row.ref == row.alt:
        return "REF equals ALT"
    length = genome.lengths[row.genome_contig]
    if row.start < 0 or row.start + len(row.ref) > length:
        return f"position outside contig (length {length})"
    actual = genome.fetch(row.genome_contig, row.start, row.start + len(row.ref)).upper()
    if actual != row.ref:
        return f"REF mismatch: genome has {actual}"
    return ""
