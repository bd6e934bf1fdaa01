"""Variants: reading a VCF or table, checking it against the genome, writing it back annotated.

One module for every stage that handles variants (zero-shot scoring, coding consequences,
evaluation):

* **Reading** — a VCF (plain, bgzipped or plain-gzipped) or a ``contig,pos,ref,alt`` table (CSV,
  TSV, Parquet). Multi-allelic records are split into one row per alternate allele; ``record``
  numbers the input records so results can be written back in input order.
* **Checking** — contig names are matched to the genome's with
  :class:`dnalm.genome.ContigNames` (``chr20`` ↔ ``20``). Every row keeps a ``reason``: empty when
  the variant can be scored, otherwise why not (REF mismatch, unknown contig, symbolic
  allele...), so no variant ever disappears silently.
* **Writing** — the input VCF copied with dnalm's per-allele scores as INFO fields, bgzipped and
  tabix-indexed. The VCF is rewritten as text (header lines copied, INFO declarations added, the
  INFO column of each record extended), so records survive exactly as they were, whatever keys
  their header forgot to declare (htslib refuses to write those).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pysam

from dnalm.errors import InputFormatError
from dnalm.fasta import open_maybe_gzip
from dnalm.genome import Genome
from dnalm.io import atomic_files

_BASES = re.compile(r"^[ACGTNacgtn]+$")
TABLE_COLUMNS = ("contig", "pos", "ref", "alt")


def read_vcf(path: str | Path, info: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (record, alternate allele) of a VCF; ``record`` numbers the VCF records.

    Plain, bgzipped and plain-gzipped VCFs are accepted (htslib cannot read the last kind, so it
    is decompressed to a temporary file first). ``info`` adds a column per INFO field (labels,
    strata for evaluation), read in the same pass so its rows are the scored rows: the allele's
    own value of a ``Number=A`` field, the record's value otherwise, None where unset.
    """
    try:
        return _read_vcf_records(path, info=info)
    except NotImplementedError:
        import gzip
        import shutil
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".vcf") as tmp:
            with gzip.open(path, "rb") as src:
                shutil.copyfileobj(src, tmp)
            tmp.flush()
            return _read_vcf_records(tmp.name, where=str(path), info=info)


def _read_vcf_records(path: str | Path, where: str | None = None,
                      info: Sequence[str] = ()) -> pd.DataFrame:
    rows = []
    try:
        with pysam.VariantFile(str(path)) as vcf:
            for record_index, rec in enumerate(vcf):
                alts = rec.alts or (".",)
                # a field neither declared nor on the record is unset (pysam would raise)
                values = [rec.info.get(f) if f in rec.header.info else None for f in info]
                for i, alt in enumerate(alts):
                    rows.append((record_index, rec.chrom, rec.pos, rec.ref, alt, rec.id or ".",
                                 *(_allele_value(v, i, len(alts)) for v in values)))
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"cannot read VCF ({str(exc).splitlines()[0]})",
                               where=where or str(path)) from exc
    return pd.DataFrame(rows, columns=["record", "contig", "pos", "ref", "alt", "id", *info])


def _allele_value(value: object, index: int, n_alts: int) -> object:
    """The value of an INFO field for ALT ``index``: per-allele lists (``Number=A``) give the
    allele's own item, other lists are joined by commas."""
    if isinstance(value, tuple):
        if len(value) == n_alts:
            return value[index]
        return value[0] if len(value) == 1 else ",".join(str(v) for v in value)
    return value


def read_table(path: str | Path, keep: Sequence[str] = ()) -> pd.DataFrame:
    """A ``contig,pos,ref,alt`` table (CSV, TSV or Parquet); ``pos`` 1-based; ALT may hold
    comma-separated alleles. ``keep`` names more columns to return (labels, strata)."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            sep = "," if path.suffix == ".csv" else "\t"
            frame = pd.read_csv(path, sep=sep, dtype={"contig": str, "ref": str, "alt": str})
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"cannot read variant table ({exc})", where=str(path)) from exc
    missing = [c for c in (*TABLE_COLUMNS, *keep) if c not in frame.columns]
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
    return frame[["record", "contig", "pos", "ref", "alt", "id", *keep]]


def is_vcf(path: str | Path) -> bool:
    return str(path).endswith((".vcf", ".vcf.gz", ".bcf", ".vcf.bgz"))


def read_variants(path: str | Path, fields: Sequence[str] = ()) -> pd.DataFrame:
    """VCF or table, by file name; ``fields``: INFO fields of a VCF, columns of a table."""
    if is_vcf(path):
        return read_vcf(path, info=fields)
    return read_table(path, keep=fields)


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


# --- writing the annotated VCF -------------------------------------------------------------

SCORE_FIELD = "DNALM"
REASON_FIELD = "DNALM_SKIP"


def _info_text(text: str) -> str:
    """INFO strings may not hold spaces, commas, semicolons or '='."""
    return re.sub(r"[^A-Za-z0-9_.:+-]+", "_", text).strip("_") or "."


def _format_score(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "."
    return f"{float(value):.6g}"


def info_entries(
    scores: pd.DataFrame, columns: tuple[str, ...] = ("score",)
) -> dict[int, dict[str, tuple[tuple[str, ...], str]]]:
    """record index → {ALT: (formatted values of ``columns``, INFO-safe reason)}."""
    by_record: dict[int, dict[str, tuple[tuple[str, ...], str]]] = {}
    values = zip(*(scores[c] for c in columns), strict=True)
    for rec, alt, reason, row in zip(scores["record"], scores["alt"], scores["reason"], values,
                                     strict=True):
        by_record.setdefault(int(rec), {})[str(alt).upper()] = (
            tuple(_format_score(v) for v in row), _info_text(reason) if reason else ".")
    return by_record


def annotate_vcf(
    vcf_in: str | Path,
    scores: pd.DataFrame,
    vcf_out: str | Path,
    *,
    description: str = "dnalm zero-shot score log p(alt) - log p(ref), per ALT allele",
    extra_fields: list[tuple[str, str, str, str, dict[int, str]]] = (),
    fields: tuple[tuple[str, str, str], ...] | None = None,
    reason_field: str = REASON_FIELD,
) -> Path:
    """Copy ``vcf_in`` to ``vcf_out`` (.vcf.gz + .tbi) with per-allele scores and skip reason.

    ``scores`` has ``record`` (0-based record index in the VCF), ``alt``, ``reason`` and the
    score columns. ``fields`` names the per-allele Float INFO fields as (INFO id, description,
    column); by default ``DNALM`` from ``score`` with ``description``. Each stage writes its own
    keys (zero-shot ``DNALM``, fine-tuned effects ``DNALM_FT*``), so annotations of one VCF by
    several stages can be merged (``bcftools annotate``) without clashing. ``extra_fields``
    adds per-record INFO fields: (id, Number, Type, description, {record index: value}).
    """
    vcf_out = Path(vcf_out)
    fields = fields or ((SCORE_FIELD, description, "score"),)
    entries = info_entries(scores, tuple(column for _, _, column in fields))
    declarations = [
        f'##INFO=<ID={field_id},Number=A,Type=Float,Description="{text}">'
        for field_id, text, _ in fields
    ] + [
        f'##INFO=<ID={reason_field},Number=A,Type=String,'
        'Description="Why dnalm did not score the ALT allele">',
    ] + [f'##INFO=<ID={i},Number={n},Type={t},Description="{d}">'
         for i, n, t, d, _ in extra_fields]
    names = (tuple(field_id for field_id, _, _ in fields), reason_field)
    with atomic_files(vcf_out, f"{vcf_out}.tbi") as (tmp_gz, tmp_tbi):
        plain = tmp_gz.with_suffix(".vcf")
        try:
            _write_text(vcf_in, plain, entries, declarations, extra_fields, names)
            pysam.tabix_compress(str(plain), str(tmp_gz), force=True)
        finally:
            plain.unlink(missing_ok=True)
        try:
            pysam.tabix_index(str(tmp_gz), preset="vcf", force=True)
        except OSError as exc:
            raise InputFormatError(f"cannot index the annotated VCF (is the input sorted?): "
                                   f"{exc}", where=str(vcf_in)) from exc
        Path(f"{tmp_gz}.tbi").replace(tmp_tbi)
    return vcf_out


def _write_text(vcf_in, plain: Path, entries, declarations, extra_fields, names) -> None:
    field_ids, reason_field = names
    missing = ((".",) * len(field_ids), "not_scored")
    record = -1
    with open_maybe_gzip(vcf_in) as src, open(plain, "w") as out:
        for raw in src:
            line = raw.decode().rstrip("\n").rstrip("\r")
            if line.startswith("##"):
                out.write(line + "\n")
                continue
            if line.startswith("#"):
                out.write("\n".join(declarations) + "\n" + line + "\n")
                continue
            if not line.strip():
                continue
            record += 1
            cols = line.split("\t")
            if len(cols) < 8:
                raise InputFormatError(f"record {record + 1} has fewer than 8 columns",
                                       where=str(vcf_in))
            alts = cols[4].split(",")
            found = entries.get(record, {})
            values = [found.get(a.upper(), missing) for a in alts]
            added = [f"{field_id}={','.join(v[j] for v, _ in values)}"
                     for j, field_id in enumerate(field_ids)]
            if any(r != "." for _, r in values):
                added.append(f"{reason_field}={','.join(r for _, r in values)}")
            for field_id, _, _, _, by_record in extra_fields:
                if record in by_record:
                    added.append(f"{field_id}={by_record[record]}")
            info = [] if cols[7] in ("", ".") else [cols[7]]
            cols[7] = ";".join(info + added)
            out.write("\t".join(cols) + "\n")
