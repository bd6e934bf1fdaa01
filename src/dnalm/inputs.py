"""The user's own sequences: FASTA, a table with a ``sequence`` column, or BED intervals.

``dnalm embed`` and ``dnalm predict`` (and their workflow rules) read candidate sequences
through :func:`read_sequences`, so both accept the same three inputs and name records the same
way:

* **FASTA** (``.fa``, ``.fasta``, ``.fna``, ``.fas``, plain or gzip/bgzip): one record per entry;
  the id is the header's first word, as the file gives it.
* **Table** (``.csv``, ``.tsv``, ``.txt``, ``.parquet``; text may be gzipped): a ``sequence``
  column (``sequence_column``) and, if present, an id column (``id_column``, default ``id``);
  without one, rows are named ``row_1``, ``row_2``, ... in file order.
* **BED** (``.bed``, ``.bed.gz``) on a prepared genome (:class:`dnalm.genome.Genome`):
  ``chrom start end [name [score [strand]]]``, 0-based half-open; the sequence is cut from the
  genome and reverse-complemented on ``-`` rows, so a model reads every interval 5'→3' on its
  own strand. The id is the name column (``.`` or absent: ``chrom:start-end``, with ``(+)`` or
  ``(-)`` when a strand is given); ``contig``/``start``/``end``/``strand`` are kept as the file
  writes them (``contigs.match_chr_prefix`` lets ``chr20`` find the genome's ``20``).

Ids are kept as given, duplicates included (a warning says how many); every output row also
carries ``record``, the 0-based position of its record in the input, so rows map back to the
input unambiguously. Bad input stops with one line naming the file and the record: an empty
sequence, a character that is not a nucleotide code (IUPAC letters, either case), a missing
column, an interval off its contig, an unknown contig or strand.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dnalm.errors import ConfigError, InputFormatError

log = logging.getLogger(__name__)

FORMATS = ("fasta", "table", "bed")
_FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas", ".seq")
_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
#: Nucleotide codes a sequence may hold (IUPAC, either case); anything else is an error.
_NUCLEOTIDE = np.zeros(256, dtype=bool)
for _c in b"ACGTUNRYKMSWBDHV":
    _NUCLEOTIDE[_c] = _NUCLEOTIDE[_c + 32] = True
#: Interval columns, present only for BED input.
INTERVAL_COLUMNS = ("contig", "start", "end", "strand")


@dataclass
class SequenceRecords:
    """Sequences read from one input, in input order.

    ``intervals`` (BED input only) holds ``contig``, ``start``, ``end``, ``strand`` (``.`` when
    the file gives none) for each record; ``None`` for FASTA and tables.
    """

    source: str
    format: str
    ids: list[str]
    sequences: list[str]
    intervals: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.sequences)

    def keys(self) -> pd.DataFrame:
        """The identifying columns every output row starts with: ``record``, ``id`` and, for
        BED input, the interval."""
        frame = pd.DataFrame({"record": np.arange(len(self), dtype=np.int64),
                              "id": pd.array(self.ids, dtype=object)})
        if self.intervals is not None:
            for column in INTERVAL_COLUMNS:
                frame[column] = self.intervals[column].to_numpy()
        return frame

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self))


def detect_format(path: str | Path) -> str:
    """``fasta``, ``table`` or ``bed`` from the file name (compression suffixes ignored)."""
    name = Path(path).name.lower()
    for compression in (".gz", ".bgz", ".bz2", ".zst"):
        name = name.removesuffix(compression)
    suffix = Path(name).suffix
    if suffix == ".bed":
        return "bed"
    if suffix in _FASTA_SUFFIXES:
        return "fasta"
    if suffix in _TABLE_SUFFIXES:
        return "table"
    raise InputFormatError(f"cannot tell the input format from the name (suffix "
                           f"{suffix or 'none'!r}): use .fa/.fasta, .csv/.tsv/.parquet or .bed, "
                           "or name the format", where=str(path))


def read_sequences(
    path: str | Path,
    *,
    fmt: str | None = None,
    genome: str | Path | None = None,
    sequence_column: str = "sequence",
    id_column: str = "id",
    match_chr_prefix: bool = True,
) -> SequenceRecords:
    """Read the sequences of a FASTA, table or BED file (see the module docstring).

    ``fmt`` overrides the format the file name implies; ``genome`` (a prepared, indexed
    ``genome.fa.gz`` or any faidx-indexed FASTA) is required for BED input.
    """
    where = str(path)
    if not Path(path).is_file():
        raise InputFormatError("file not found", where=where)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ConfigError(f"input format {fmt!r} is not one of {', '.join(FORMATS)}",
                          where=where)
    if fmt == "fasta":
        records = _read_fasta(path)
    elif fmt == "table":
        records = _read_table(path, sequence_column, id_column)
    else:
        if genome is None:
            raise ConfigError("BED input needs the genome its intervals are on (--genome)",
                              where=where)
        records = _read_bed(path, genome, match_chr_prefix)
    if not len(records):
        raise InputFormatError("no sequences", where=where)
    _check_sequences(records)
    repeated = sum(n - 1 for n in Counter(records.ids).values() if n > 1)
    if repeated:
        log.warning("%s: %d record(s) repeat an earlier id; the record column tells them apart",
                    where, repeated)
    log.info("%s: %d sequences (%s), %d bp, %d-%d bp each", where, len(records), fmt,
             int(records.lengths.sum()), int(records.lengths.min()), int(records.lengths.max()))
    return records


def _read_fasta(path: str | Path) -> SequenceRecords:
    from dnalm.fasta import iter_records

    ids, sequences = [], []
    for name, pieces in iter_records(path):
        ids.append(name)
        sequences.append(b"".join(pieces).decode("ascii", errors="replace"))
    return SequenceRecords(str(path), "fasta", ids, sequences)


def _read_table(path: str | Path, sequence_column: str, id_column: str) -> SequenceRecords:
    from dnalm.finetune.tasks import read_table

    frame = read_table(path)
    if sequence_column not in frame.columns:
        raise InputFormatError(f"no {sequence_column!r} column (columns are: "
                               f"{', '.join(map(str, frame.columns))}); name the sequence "
                               "column", where=str(path))
    column = frame[sequence_column]
    missing = column.isna().to_numpy()
    if id_column in frame.columns:
        id_values = frame[id_column]
        if id_values.isna().any():
            row = int(np.flatnonzero(id_values.isna().to_numpy())[0])
            raise InputFormatError(f"row {row + 1}: no {id_column!r}", where=str(path))
        ids = [str(v) for v in id_values.tolist()]
    else:
        ids = [f"row_{i + 1}" for i in range(len(frame))]
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise InputFormatError(f"row {row + 1} (id {ids[row]}) has no sequence", where=str(path))
    sequences = ["".join(str(v).split()) for v in column.tolist()]
    return SequenceRecords(str(path), "table", ids, sequences)


def _bed_fields(line: str) -> list[str]:
    fields = line.rstrip("\r\n").split("\t")
    return fields if len(fields) >= 3 else line.split()


def _read_bed(path: str | Path, genome_path: str | Path,
              match_chr_prefix: bool) -> SequenceRecords:
    from dnalm.fasta import open_maybe_gzip
    from dnalm.genome import Genome
    from dnalm.score.vep import reverse_complement

    ids, sequences, rows = [], [], []
    with Genome(genome_path, match_chr_prefix=match_chr_prefix) as genome, \
            open_maybe_gzip(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8", errors="replace")
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            where = f"{path} line {line_no}"
            fields = _bed_fields(line)
            if len(fields) < 3:
                raise InputFormatError("expected chrom, start, end (tab-separated)",
                                       where=where)
            chrom, name = fields[0], fields[3] if len(fields) > 3 else "."
            strand = fields[5] if len(fields) > 5 else "."
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise InputFormatError(f"start/end {fields[1]!r}/{fields[2]!r} are not "
                                       "integers", where=where) from None
            if strand not in ("+", "-", "."):
                raise InputFormatError(f"strand {strand!r} is not +, - or .", where=where)
            contig = genome.interval(chrom, start, end, where=where)
            seq = genome.fetch(contig, start, end)
            sequences.append(reverse_complement(seq) if strand == "-" else seq)
            shown = f"{chrom}:{start}-{end}" + (f"({strand})" if strand != "." else "")
            ids.append(name if name not in ("", ".") else shown)
            rows.append((chrom, start, end, strand))
    intervals = pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS)).astype(
        {"start": np.int64, "end": np.int64})
    return SequenceRecords(str(path), "bed", ids, sequences, intervals)


def _check_sequences(records: SequenceRecords) -> None:
    """Every sequence non-empty and made of nucleotide codes (one line naming the first bad
    record otherwise)."""
    for index, seq in enumerate(records.sequences):
        what = f"record {index + 1} (id {records.ids[index]})"
        if not seq:
            raise InputFormatError(f"{what} has an empty sequence", where=records.source)
        data = np.frombuffer(seq.encode("utf-8", errors="replace"), dtype=np.uint8)
        bad = np.flatnonzero(~_NUCLEOTIDE[data])
        if bad.size:
            char = seq.encode("utf-8", errors="replace")[bad[0]:bad[0] + 1].decode(
                "utf-8", errors="replace")
            raise InputFormatError(f"{what}: character {char!r} at position {bad[0] + 1} is "
                                   "not a nucleotide code", where=records.source)


# --------------------------------------------------------------------------------------------
# Named sequence sets of the workflow config (embeddings.inputs, predictions.inputs)


def spec_source(spec: dict, *, where: str = "sequence set") -> tuple[str, str]:
    """``(path, format)`` of a config entry naming exactly one of ``fasta``/``table``/``bed``."""
    named = [fmt for fmt in FORMATS if spec.get(fmt)]
    if len(named) != 1:
        raise ConfigError(f"name exactly one of fasta, table or bed (got "
                          f"{', '.join(named) or 'none'})", where=where)
    if named[0] == "bed" and not spec.get("genome"):
        raise ConfigError("a bed set needs 'genome' (the genome its intervals are on)",
                          where=where)
    return str(spec[named[0]]), named[0]


def spec_genome_fasta(spec: dict) -> str | None:
    """The genome a BED set is cut from: ``results/genomes/{id}/genome.fa.gz`` for a genome id,
    or the path given (None for FASTA and table sets)."""
    from dnalm.finetune.plan import is_genome_path

    if not spec.get("bed"):
        return None
    genome = str(spec["genome"])
    from dnalm.paths import genome_fasta

    return genome if is_genome_path(genome) else genome_fasta(genome)


def spec_files(spec: dict) -> list[str]:
    """Every file a set reads: its own, and for BED the genome with its indexes."""
    path, _ = spec_source(spec)
    files = [path]
    genome = spec_genome_fasta(spec)
    if genome is not None:
        files += [genome, genome + ".fai"] + ([genome + ".gzi"] if genome.endswith(".gz")
                                              else [])
    return files


def read_spec(spec: dict, *, match_chr_prefix: bool = True,
              where: str = "sequence set") -> SequenceRecords:
    """Read a config entry's sequences (:func:`read_sequences` with its options)."""
    path, fmt = spec_source(spec, where=where)
    return read_sequences(path, fmt=fmt, genome=spec_genome_fasta(spec),
                          sequence_column=spec.get("sequence_column", "sequence"),
                          id_column=spec.get("id_column", "id"),
                          match_chr_prefix=match_chr_prefix)
