"""Write the input VCF back with dnalm's scores as INFO fields, bgzipped and tabix-indexed.

The VCF is rewritten as text (header lines copied, two INFO declarations added, the INFO column of
each record extended), so records survive exactly as they were, whatever keys their header forgot
to declare (htslib refuses to write those), and then bgzipped and indexed with pysam.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pysam

from dnalm.errors import InputFormatError
from dnalm.fasta import open_maybe_gzip
from dnalm.io import atomic_files

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
    scores: pd.DataFrame, score_field: str = SCORE_FIELD, reason_field: str = REASON_FIELD
) -> dict[int, dict[str, tuple[str, str]]]:
    """record index → {ALT: (formatted score, INFO-safe reason)}."""
    by_record: dict[int, dict[str, tuple[str, str]]] = {}
    for rec, alt, score, reason in zip(scores["record"], scores["alt"], scores["score"],
                                       scores["reason"], strict=True):
        by_record.setdefault(int(rec), {})[str(alt).upper()] = (
            _format_score(score), _info_text(reason) if reason else ".")
    return by_record


def annotate_vcf(
    vcf_in: str | Path,
    scores: pd.DataFrame,
    vcf_out: str | Path,
    *,
    description: str = "dnalm zero-shot score log p(alt) - log p(ref), per ALT allele",
    extra_fields: list[tuple[str, str, str, str, dict[int, str]]] = (),
) -> Path:
    """Copy ``vcf_in`` to ``vcf_out`` (.vcf.gz + .tbi) with per-allele score and skip reason.

    ``scores`` has ``record`` (0-based record index in the VCF), ``alt``, ``score`` and
    ``reason``. ``extra_fields`` adds more INFO fields: (id, Number, Type, description,
    {record index: value}).
    """
    vcf_out = Path(vcf_out)
    entries = info_entries(scores)
    declarations = [
        f'##INFO=<ID={SCORE_FIELD},Number=A,Type=Float,Description="{description}">',
        f'##INFO=<ID={REASON_FIELD},Number=A,Type=String,'
        'Description="Why dnalm did not score the ALT allele">',
    ] + [f'##INFO=<ID={i},Number={n},Type={t},Description="{d}">'
         for i, n, t, d, _ in extra_fields]
    with atomic_files(vcf_out, f"{vcf_out}.tbi") as (tmp_gz, tmp_tbi):
        plain = tmp_gz.with_suffix(".vcf")
        try:
            _write_text(vcf_in, plain, entries, declarations, extra_fields)
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


def _write_text(vcf_in, plain: Path, entries, declarations, extra_fields) -> None:
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
            values = [found.get(a.upper(), (".", "not_scored")) for a in alts]
            added = [f"{SCORE_FIELD}={','.join(v for v, _ in values)}"]
            if any(r != "." for _, r in values):
                added.append(f"{REASON_FIELD}={','.join(r for _, r in values)}")
            for field_id, _, _, _, by_record in extra_fields:
                if record in by_record:
                    added.append(f"{field_id}={by_record[record]}")
            info = [] if cols[7] in ("", ".") else [cols[7]]
            cols[7] = ";".join(info + added)
            out.write("\t".join(cols) + "\n")
