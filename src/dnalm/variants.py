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

import itertools
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pysam

from dnalm.errors import InputFormatError
from dnalm.fasta import open_maybe_gzip
from dnalm.genome import Genome
from dnalm.io import atomic_files, scratch_dir

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
    """VCF or table, by file name; ``fields``: INFO fields of a VCF, columns of a table.

    Without ``fields`` the rows come from the streaming reader (:func:`iter_variants`)."""
    if not fields:
        frames = list(iter_variants(path))
        if not frames:  # a header and no records: an empty table, as the workflow gives
            return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("record", "pos") else object)
                                 for c in VARIANT_COLUMNS})
        return (pd.concat(frames, ignore_index=True) if len(frames) != 1 else frames[0])
    if is_vcf(path):
        return read_vcf(path, info=fields)
    return read_table(path, keep=fields)


def check_against_genome(frame: pd.DataFrame, genome: Genome) -> pd.DataFrame:
    """Add ``genome_contig``, ``start`` (0-based) and ``reason`` (empty = scorable).

    Vectorised: contig names are resolved once per distinct name, the allele checks are Arrow
    string kernels, REF is compared with the genome a block of :data:`REF_BLOCK_BP` at a time
    (single bases as byte codes, not one fetch or string per variant), and reason texts are
    built only for the rows that get one. Reasons, first that applies: unknown contig,
    unsupported ALT, unsupported REF, REF equals ALT, position outside the contig, REF mismatch.
    """
    frame = frame.copy()
    ref = frame["ref"].astype("str").str.upper()
    alt = frame["alt"].astype("str").str.upper()
    frame["ref"], frame["alt"] = ref, alt
    codes, names = pd.factorize(frame["contig"].astype("str"), use_na_sentinel=False)
    resolved = np.array([genome.contigs.resolve(str(c)) for c in names] + [None], dtype=object)
    sizes = np.array([genome.lengths.get(c, -1) if c else -1 for c in resolved], dtype=np.int64)
    frame["genome_contig"] = resolved[codes]
    frame["start"] = frame["pos"].astype("int64") - 1
    n = len(frame)
    placed = resolved[codes] != None  # noqa: E711 - elementwise on an object array
    alt_ok = alt.str.fullmatch("[ACGTN]+").to_numpy(dtype=bool, na_value=False)
    ref_ok = ref.str.fullmatch("[ACGTN]+").to_numpy(dtype=bool, na_value=False)
    same = (ref == alt).to_numpy(dtype=bool, na_value=False)
    lengths = sizes[codes]
    starts = frame["start"].to_numpy()
    ref_len = ref.str.len().to_numpy(dtype=np.int64, na_value=0)
    inside = (starts >= 0) & (starts + ref_len <= lengths)
    reason = np.full(n, "", dtype=object)
    done = np.zeros(n, dtype=bool)
    contig_col, alt_col, ref_col = frame["contig"], alt, ref
    checks = [
        (~placed, lambda i: f"contig {contig_col.iat[i]} not in genome"),
        (~alt_ok, lambda i: f"unsupported allele {alt_col.iat[i]} (symbolic, missing or not "
                            "ACGTN)"),
        (~ref_ok, lambda i: f"unsupported REF {ref_col.iat[i]}"),
        (same, lambda i: "REF equals ALT"),
        (~inside, lambda i: f"position outside contig (length {lengths[i]})"),
    ]
    for mask, text in checks:
        rows = np.flatnonzero(mask & ~done)
        if len(rows):
            reason[rows] = [text(int(i)) for i in rows]
            done[rows] = True
    candidates = np.flatnonzero(~done)
    single = candidates[ref_len[candidates] == 1]
    if len(single):
        got = genome_codes(genome, resolved, codes[single], starts[single])
        wrong = got != _single_bytes(ref.iloc[single])
        reason[single[wrong]] = [f"REF mismatch: genome has {chr(c)}" for c in got[wrong]]
    longer = candidates[ref_len[candidates] != 1]
    if len(longer):
        actual = genome_bases(genome, resolved[codes[longer]], starts[longer], ref_len[longer])
        wrong = actual != ref.iloc[longer].to_numpy(dtype=object)
        reason[longer[wrong]] = "REF mismatch: genome has " + actual[wrong]
    frame["reason"] = reason
    return frame


def _single_bytes(values: pd.Series) -> np.ndarray:
    """Byte codes of one-character strings, straight from their Arrow buffers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pc.cast(pa.array(values, type=pa.string()), pa.binary())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + len(arr)]
    return np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets]


#: Bases fetched at once when checking REF alleles against the genome.
REF_BLOCK_BP = 1 << 20


def genome_codes(genome: Genome, names: np.ndarray, codes: np.ndarray,
                 starts: np.ndarray) -> np.ndarray:
    """Upper-case byte codes of the genome base at each ``(names[code], start)``, fetched a
    block of :data:`REF_BLOCK_BP` at a time, rows in any order."""
    out = np.zeros(len(starts), dtype=np.uint8)
    blocks = starts // REF_BLOCK_BP
    order = np.lexsort((blocks, codes))
    keys = np.stack([codes[order], blocks[order]], axis=1)
    cuts = np.concatenate([[0], np.flatnonzero((np.diff(keys, axis=0) != 0).any(axis=1)) + 1,
                           [len(order)]])
    for lo_i, hi_i in itertools.pairwise(cuts):
        rows = order[lo_i:hi_i]
        contig, lo = str(names[codes[rows[0]]]), int(blocks[rows[0]]) * REF_BLOCK_BP
        hi = min(genome.lengths[contig], int(starts[rows].max()) + 1)
        seq = np.frombuffer(genome.fetch(contig, lo, hi).upper().encode("ascii"), dtype=np.uint8)
        out[rows] = seq[starts[rows] - lo]
    return out


def genome_bases(genome: Genome, contigs: np.ndarray, starts: np.ndarray,
                 lengths: np.ndarray) -> np.ndarray:
    """Upper-case genome bases ``[start, start + length)`` of each row (multi-base alleles,
    rarer than SNVs: one fetch each)."""
    return np.array([genome.fetch(str(c), int(a), int(a) + int(n)).upper()
                     for c, a, n in zip(contigs, starts, lengths, strict=True)], dtype=object)


# --- streaming: variant files of any size in bounded memory ----------------------------------

#: Bytes of variant text parsed per batch (about 80,000 sites-only VCF records): peak memory
#: of partitioning is set by it (about 0.5 GiB at 4 MiB, whatever the file size).
BATCH_BYTES = 4 << 20
VARIANT_COLUMNS = ["record", "contig", "pos", "ref", "alt", "id"]


def iter_variants(path: str | Path, *, batch_bytes: int = BATCH_BYTES) -> Iterator[pd.DataFrame]:
    """The rows of :func:`read_variants` (no extra fields), a batch at a time.

    VCF bodies and CSV/TSV tables are parsed by pyarrow's streaming CSV reader (multi-threaded,
    columnar: no Python loop per record), Parquet tables a row group at a time; BCF goes
    through htslib. ``record`` numbers the input records across batches, as
    :func:`read_variants` does.
    """
    name = str(path)
    if name.endswith(".bcf"):
        yield read_vcf(path)
    elif is_vcf(path):
        yield from _iter_vcf_text(path, batch_bytes)
    elif name.endswith(".parquet"):
        yield from _iter_parquet_table(path)
    else:
        yield from _iter_text_table(path, batch_bytes)


def _split_alts(record: np.ndarray, columns: dict[str, Any], alt: Any) -> pd.DataFrame:
    """One row per (record, ALT) from arrow columns; ``alt`` comma-separated."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # a missing ALT (null in Parquet, empty in a table) is the VCF's "." and keeps its row:
    # split_pattern gives null lists no item, which would drop the record without a word
    alt = pc.fill_null(pc.cast(alt, pa.string()), ".")
    lists = pc.split_pattern(pc.utf8_trim_whitespace(alt), ",")
    flat = pc.list_flatten(lists)
    flat = pc.if_else(pc.equal(flat, ""), ".", flat)
    parents = pc.list_parent_indices(lists).to_numpy()
    table = pa.table({"contig": pc.take(columns["contig"], parents),
                      "pos": pc.take(columns["pos"], parents),
                      "ref": pc.take(columns["ref"], parents),
                      "alt": flat,
                      "id": pc.take(columns["id"], parents)})
    frame = table.to_pandas()
    frame.insert(0, "record", record[parents])
    return frame


def _vcf_header(path: str | Path) -> tuple[int, list[str]]:
    """Lines before the body and the ``#CHROM`` line's column names."""
    with open_maybe_gzip(path) as handle:
        for count, raw in enumerate(handle, start=1):
            if raw.startswith(b"#CHROM"):
                return count, raw.decode("utf-8", "replace").rstrip("\r\n").lstrip("#").split("\t")
            if not raw.startswith(b"##"):
                break
    raise InputFormatError("no #CHROM header line before the records", where=str(path))


def _arrow_error(exc: Exception, path: str | Path, what: str) -> InputFormatError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputFormatError(f"cannot read {what} ({first})", where=str(path))


def _iter_vcf_text(path: str | Path, batch_bytes: int) -> Iterator[pd.DataFrame]:
    """VCF records as whole lines (pyarrow's CSV reader with no delimiter in VCF text), split
    into their first five fields by a vectorised kernel: records may have fewer columns than
    the header (sites without genotypes), and genotype columns are never parsed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    skip, _ = _vcf_header(path)
    handle = open_maybe_gzip(path)
    try:
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(skip_rows=skip, column_names=["line"],
                                           block_size=batch_bytes),
            parse_options=pacsv.ParseOptions(delimiter="\x01", quote_char=False,
                                             double_quote=False, escape_char=False),
            convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()},
                                                 strings_can_be_null=False))
        offset = 0
        for batch in reader:
            fields = pc.split_pattern(pc.utf8_rtrim(batch.column(0), characters="\r"), "\t",
                                      max_splits=5)
            short = pc.less(pc.list_value_length(fields), 5)
            if pc.any(short).as_py():
                row = int(np.flatnonzero(short.to_numpy(zero_copy_only=False))[0])
                raise InputFormatError(f"record {offset + row + 1} has fewer than 5 "
                                       "tab-separated columns", where=str(path))
            columns = {key: pc.list_element(fields, i)
                       for i, key in enumerate(("contig", "pos", "id", "ref"))}
            try:
                columns["pos"] = pc.cast(columns["pos"], pa.int64())
            except pa.ArrowInvalid as exc:
                raise InputFormatError(f"POS is not an integer in a record of lines "
                                       f"{skip + offset + 1}-{skip + offset + batch.num_rows} "
                                       f"({str(exc).splitlines()[0]})", where=str(path)) from exc
            record = np.arange(offset, offset + batch.num_rows, dtype=np.int64)
            offset += batch.num_rows
            yield _split_alts(record, columns, pc.list_element(fields, 4))
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise _arrow_error(exc, path, "VCF") from exc
    finally:
        handle.close()


def _table_columns(path: str | Path, names: Sequence[str]) -> None:
    missing = [c for c in TABLE_COLUMNS if c not in names]
    if missing:
        raise InputFormatError(f"missing column(s) {', '.join(missing)}", where=str(path))


def _iter_text_table(path: str | Path, batch_bytes: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    delimiter = "," if str(path).removesuffix(".gz").endswith(".csv") else "\t"
    with open_maybe_gzip(path) as probe:
        header = probe.readline().decode("utf-8", "replace").rstrip("\r\n").split(delimiter)
    _table_columns(path, header)
    wanted = [c for c in (*TABLE_COLUMNS, "id") if c in header]
    handle = open_maybe_gzip(path)
    try:
        reader = pacsv.open_csv(
            handle, read_options=pacsv.ReadOptions(block_size=batch_bytes),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={"contig": pa.string(), "pos": pa.int64(), "ref": pa.string(),
                              "alt": pa.string(), "id": pa.string()}))
        offset = 0
        for batch in reader:
            yield _table_batch(batch, offset)
            offset += batch.num_rows
    except pa.ArrowInvalid as exc:
        if "pos" in str(exc) or "int64" in str(exc):
            raise InputFormatError(f"column pos must hold integers ({str(exc).splitlines()[0]})",
                                   where=str(path)) from exc
        raise _arrow_error(exc, path, "variant table") from exc
    finally:
        handle.close()


def _table_batch(batch: Any, offset: int) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.compute as pc

    names = batch.schema.names
    column = {c: batch.column(c) for c in names}
    ids = column.get("id", pa.array(["."] * batch.num_rows, pa.string()))
    record = np.arange(offset, offset + batch.num_rows, dtype=np.int64)
    return _split_alts(record, {"contig": pc.cast(column["contig"], pa.string()),
                                "pos": column["pos"], "ref": pc.cast(column["ref"], pa.string()),
                                "id": pc.cast(ids, pa.string())},
                       pc.cast(column["alt"], pa.string()))


def _iter_parquet_table(path: str | Path) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise _arrow_error(exc, path, "variant table") from exc
    names = handle.schema_arrow.names
    _table_columns(path, names)
    offset = 0
    for batch in handle.iter_batches(columns=[c for c in (*TABLE_COLUMNS, "id") if c in names]):
        pos = batch.column("pos")
        if not pa.types.is_integer(pos.type):
            whole = pc.all(pc.equal(pos, pc.floor(pos))).as_py() if len(pos) else True
            if not whole:
                raise InputFormatError("column pos must hold integers", where=str(path))
        columns = {c: batch.column(c) for c in batch.schema.names}
        columns["pos"] = pc.cast(pos, pa.int64())
        yield _table_batch(pa.RecordBatch.from_pydict(columns), offset)
        offset += batch.num_rows


# --- sort order: what the annotated VCF's tabix index needs ----------------------------------


class SortCheck:
    """Refuses, batch by batch, variants out of VCF order: each contig's records in one run,
    positions non-decreasing within it (what ``tabix`` needs; contigs in any order).

    The annotated VCF is the input rewritten and tabix-indexed, so an unsorted input would
    fail at the very end, after hours of scoring; checking while the variants are first read
    (partitioning, or before ``dnalm score-variants`` scores) refuses it before any work, with
    one line naming the first record out of order.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.seen: set[str] = set()
        self.last: tuple[str, int] | None = None

    def update(self, batch: pd.DataFrame) -> None:
        """Check the next batch (rows of :func:`iter_variants`, in file order)."""
        if not len(batch):
            return
        contig = batch["contig"].astype(str).to_numpy(dtype=object)
        pos = batch["pos"].to_numpy(dtype=np.int64)
        record = batch["record"].to_numpy(dtype=np.int64)
        prev_contig = np.concatenate([[self.last[0] if self.last else None], contig[:-1]])
        prev_pos = np.concatenate([[self.last[1] if self.last else 0], pos[:-1]])
        starts = np.flatnonzero(contig != prev_contig)
        back = np.flatnonzero((contig == prev_contig) & (pos < prev_pos))
        first_back = int(back[0]) if len(back) else len(contig)
        for i in starts:
            if i > first_back:
                break
            if contig[i] in self.seen:
                self._refuse(int(record[i]), contig[i], int(pos[i]),
                             f"returns to contig {contig[i]} after records on {prev_contig[i]}")
            self.seen.add(contig[i])
        if len(back):
            self._refuse(int(record[first_back]), contig[first_back], int(pos[first_back]),
                         f"comes after {prev_contig[first_back]}:{prev_pos[first_back]}")
        self.last = (contig[-1], int(pos[-1]))

    def _refuse(self, record: int, contig: str, pos: int, what: str) -> None:
        raise InputFormatError(f"not sorted: record {record + 1} ({contig}:{pos}) {what}; "
                               "the annotated VCF is tabix-indexed, which needs each "
                               "contig's records together and by position: sort it first "
                               "(`bcftools sort`)", where=self.where)


def check_annotatable(path: str | Path) -> None:
    """Refuse, before any scoring, an input that no annotated VCF can be written for: a table
    or BCF (the VCF is rewritten as text) or records out of tabix order (:class:`SortCheck`,
    streamed). A command that would fail only after writing its table leaves no output."""
    if not is_vcf(path) or str(path).endswith(".bcf"):
        raise InputFormatError("an annotated VCF needs a VCF input (.vcf, .vcf.gz), not a table "
                               "or BCF (`bcftools view` converts a BCF)", where=str(path))
    check = SortCheck(str(path))
    for batch in iter_variants(path):
        check.update(batch)


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
    fields = fields or ((SCORE_FIELD, description, "score"),)
    entries = info_entries(scores, tuple(column for _, _, column in fields))
    return _annotate(vcf_in, entries, vcf_out, fields, reason_field, extra_fields)


def annotate_vcf_streaming(
    vcf_in: str | Path,
    scores_path: str | Path,
    vcf_out: str | Path,
    *,
    description: str = "dnalm zero-shot score log p(alt) - log p(ref), per ALT allele",
    fields: tuple[tuple[str, str, str], ...] | None = None,
    reason_field: str = REASON_FIELD,
    bucket_records: int = 1 << 18,
) -> Path:
    """:func:`annotate_vcf` for a score table of any size, in bounded memory.

    The table (Parquet, in any row order) is first cut into buckets of ``bucket_records``
    consecutive record numbers (temporary Parquet files, one row group at a time); the VCF is
    then rewritten in one pass, loading each bucket when its first record comes up. Memory is
    one row group plus one bucket, whatever the number of variants; time is linear.
    """
    fields = fields or ((SCORE_FIELD, description, "score"),)
    columns = ["record", "alt", "reason", *dict.fromkeys(c for _, _, c in fields)]
    out_dir = Path(vcf_out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with scratch_dir(out_dir, f"{Path(vcf_out).name}.buckets") as tmp:
        entries = _BucketedEntries(_bucket_scores(scores_path, columns, Path(tmp),
                                                  bucket_records),
                                   bucket_records, tuple(c for _, _, c in fields))
        return _annotate(vcf_in, entries, vcf_out, fields, reason_field, ())


def _bucket_scores(scores_path: str | Path, columns: list[str], tmp: Path,
                   bucket_records: int) -> dict[int, list[Path]]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    buckets: dict[int, list[Path]] = {}
    handle = pq.ParquetFile(scores_path)
    for group in range(handle.num_row_groups):
        table = handle.read_row_group(group, columns=columns)
        keys = pc.divide(table["record"], bucket_records).to_numpy()
        for key in np.unique(keys):
            path = tmp / f"{int(key):08d}-{group:06d}.parquet"
            pq.write_table(table.filter(keys == key), path)
            buckets.setdefault(int(key), []).append(path)
    return buckets


class _BucketedEntries:
    """``info_entries`` of one bucket of records at a time (records are asked for in order)."""

    def __init__(self, buckets: dict[int, list[Path]], bucket_records: int,
                 columns: tuple[str, ...]) -> None:
        self.buckets, self.size, self.columns = buckets, bucket_records, columns
        self.loaded: int | None = None
        self.current: dict[int, dict[str, tuple[tuple[str, ...], str]]] = {}

    def get(self, record: int, default: dict) -> dict:
        key = record // self.size
        if key != self.loaded:
            import pyarrow as pa
            import pyarrow.parquet as pq

            files = self.buckets.get(key, [])
            frame = (pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()
                     if files else None)
            self.current = info_entries(frame, self.columns) if frame is not None else {}
            self.loaded = key
        return self.current.get(record, default)


def _annotate(vcf_in: str | Path, entries: Any, vcf_out: str | Path,
              fields: tuple[tuple[str, str, str], ...], reason_field: str,
              extra_fields: Sequence[tuple[str, str, str, str, dict[int, str]]]) -> Path:
    """Write ``vcf_in`` with the per-allele ``entries`` (anything with ``.get(record,
    default)``) as INFO fields, bgzip and tabix-index it, atomically."""
    vcf_out = Path(vcf_out)
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
    """The VCF text with the INFO column of each record extended.

    Lines are copied as bytes, never decoded: a header or record in Latin-1 (or any other
    encoding; VCF headers come from many tools) comes out byte-identical, and only the added
    INFO entries (ASCII) are written by dnalm.
    """
    field_ids, reason_field = names
    missing = ((".",) * len(field_ids), "not_scored")
    record = -1
    with open_maybe_gzip(vcf_in) as src, open(plain, "wb") as out:
        for raw in src:
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if line.startswith(b"##"):
                out.write(line + b"\n")
                continue
            if line.startswith(b"#"):
                out.write("\n".join(declarations).encode() + b"\n" + line + b"\n")
                continue
            if not line.strip():
                continue
            record += 1
            cols = line.split(b"\t")
            if len(cols) < 8:
                raise InputFormatError(f"record {record + 1} has fewer than 8 columns",
                                       where=str(vcf_in))
            alts = cols[4].decode("latin-1").split(",")
            found = entries.get(record, {})
            values = [found.get(a.upper() or ".", missing) for a in alts]
            added = [f"{field_id}={','.join(v[j] for v, _ in values)}"
                     for j, field_id in enumerate(field_ids)]
            if any(r != "." for _, r in values):
                added.append(f"{reason_field}={','.join(r for _, r in values)}")
            for field_id, _, _, _, by_record in extra_fields:
                if record in by_record:
                    added.append(f"{field_id}={by_record[record]}")
            info = [] if cols[7] in (b"", b".") else [cols[7]]
            cols[7] = b";".join(info + [a.encode() for a in added])
            out.write(b"\t".join(cols) + b"\n")
