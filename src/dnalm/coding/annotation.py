"""Gene annotations (GTF or GFF3) → checked coding transcripts with their proteins.

Only ``CDS`` rows are needed (grouped by ``transcript_id`` in GTF, by ``Parent`` in GFF3), so an
annotation with CDS rows only works; ``start_codon``/``stop_codon`` rows are used when present.
RefSeq/UCSC GTFs leave the stop codon out of the last CDS row and give it as a ``stop_codon`` row,
so stop-codon intervals are added to the coding intervals. A transcript that fails a check (length
not a multiple of 3, internal stop, missing start or stop codon where annotated) is kept with its
``reason`` and never translated, so no variant is ever scored on a wrong protein.

The attribute syntax (GTF ``key "value";`` or GFF3 ``key=value``) is read from the content, not
the file name. A coding row that names no transcript is refused with its line number rather than
skipped (a lost exon would renumber every later residue); a GFF3 row with ``Parent=a,b`` belongs
to both transcripts; reading stops at a GFF3 ``##FASTA`` section.
"""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote

import numpy as np

from dnalm.coding.translate import CodonTable, table_for_contig
from dnalm.errors import DnalmError
from dnalm.genome import Genome

log = logging.getLogger(__name__)

#: GTF attributes: ``key "value";`` (unquoted ``key value;`` too, as some tools write).
_GTF_ATTR = re.compile(r'([^\s;"]+)\s+(?:"([^"]*)"|([^\s;"]+))')
#: How column 9 starts in each syntax: ``key=`` (GFF3) or ``key value`` (GTF).
_GFF3_FIRST = re.compile(r'\s*[^\s=;"]+=')
_GTF_FIRST = re.compile(r'\s*[^\s=;"]+\s+("|[^\s=;"]+\s*(;|$))')
_CODING_KINDS = ("CDS", "start_codon", "stop_codon")
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


class AnnotationError(DnalmError):
    """The gene annotation cannot be read or does not match the genome."""


@dataclass
class Transcript:
    """CDS rows of one transcript, as read (0-based half-open genomic intervals)."""

    transcript_id: str
    gene: str
    contig: str
    strand: str
    cds: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, phase)
    start_codon: list[tuple[int, int]] = field(default_factory=list)
    stop_codon: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class CodingTranscript:
    """A transcript on the genome: coding sequence (5'→3'), protein and CDS→genome map.

    ``positions[i]`` is the 0-based genomic position of coding base ``i`` (descending on the minus
    strand). ``protein`` leaves out the terminal stop. ``reason`` is empty when the transcript
    passed every check; otherwise it says why it is skipped and ``protein`` is empty.
    """

    transcript_id: str
    gene: str
    contig: str  # the genome's contig name
    strand: str
    positions: np.ndarray
    cds: str
    protein: str
    table: CodonTable
    has_start: bool
    has_stop: bool
    reason: str = ""

    @property
    def intervals(self) -> list[tuple[int, int]]:
        """Merged ascending genomic intervals of the coding bases."""
        pos = np.sort(self.positions)
        breaks = np.flatnonzero(np.diff(pos) != 1)
        starts = np.concatenate([[0], breaks + 1])
        ends = np.concatenate([breaks, [len(pos) - 1]])
        return [(int(pos[a]), int(pos[b]) + 1) for a, b in zip(starts, ends, strict=True)]


def _open_text(path: Path) -> TextIO:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rt") if magic == b"\x1f\x8b" else open(path)


def _attributes(text: str, gff3: bool) -> dict[str, str]:
    """Column 9 as a dict. GFF3 values are percent-decoded only after the caller splits
    multi-valued ones (``Parent=a,b``) on commas, so an encoded ``%2C`` stays inside a name."""
    if not gff3:
        return {k: (quoted if quoted or not bare else bare)
                for k, quoted, bare in _GTF_ATTR.findall(text)}
    out = {}
    for item in text.strip().strip(";").split(";"):
        if "=" in item:
            key, value = item.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _syntax(attributes: str) -> str | None:
    """``gff3`` (``key=value``) or ``gtf`` (``key "value";``) from one row's column 9, None when
    the column says neither (``.``, a lone word).

    Judged from the content, never the file name: aligners and gene finders write GTF syntax
    into files named ``.gff``, and a GFF3 saved as ``.gtf`` exists too.
    """
    if _GFF3_FIRST.match(attributes):
        return "gff3"
    if _GTF_FIRST.match(attributes):
        return "gtf"
    return None


def _data_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, 9 columns)`` of each feature line (1-based numbers count every physical
    line, so they point into the file); stops at a GFF3 ``##FASTA`` section or a bare FASTA
    header, which may follow the features."""
    try:
        with _open_text(path) as fh:
            for number, line in enumerate(fh, 1):
                if line.startswith("##FASTA") or line.startswith(">"):
                    return
                if not line.strip() or line.startswith("#"):
                    continue
                cols = line.rstrip("\r\n").split("\t")
                if len(cols) != 9:
                    raise AnnotationError(f"{len(cols)} tab-separated column(s), not the 9 of "
                                          "GTF/GFF3", where=f"{path} line {number}")
                yield number, cols
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        what = ("truncated or corrupt gzip file" if isinstance(exc, EOFError | zlib.error
                                                               | gzip.BadGzipFile)
                else "not UTF-8 text" if isinstance(exc, UnicodeDecodeError)
                else f"cannot read ({exc.strerror or exc})")
        raise AnnotationError(f"cannot read annotation: {what}", where=str(path)) from None


def read_annotation(path: str | Path) -> list[Transcript]:
    """Transcripts with CDS rows from a GTF or GFF3 file (plain or gzipped), in file order.

    The attribute syntax is read from the first feature line that shows one. A CDS,
    start_codon or stop_codon row that names no transcript is an error (skipping it would drop
    an exon and renumber every later residue of the protein); a GFF3 row with several parents
    (``Parent=a,b``) belongs to each of them.
    """
    path = Path(path)
    transcripts: dict[str, Transcript] = {}
    gff3: bool | None = None
    for number, cols in _data_lines(path):
        if gff3 is None:
            syntax = _syntax(cols[8])
            if syntax is None and cols[2] not in _CODING_KINDS:
                continue
            gff3 = syntax == "gff3" if syntax else _gff3_by_name(path)
            if syntax and gff3 != _gff3_by_name(path):
                log.info("%s: attributes are %s syntax (read as such, whatever the file name)",
                         path, syntax.upper())
        _add_row(transcripts, cols, gff3, f"{path} line {number}")
    found = [t for t in transcripts.values() if t.cds]
    if not found:
        raise AnnotationError("no CDS rows with a transcript id (GTF transcript_id, GFF3 Parent)",
                              where=str(path))
    return found


def _gff3_by_name(path: Path) -> bool:
    """The file name's guess, used only when no attribute column shows its syntax."""
    return path.name.lower().removesuffix(".gz").endswith((".gff3", ".gff"))


def _add_row(transcripts: dict[str, Transcript], cols: list[str], gff3: bool, where: str
             ) -> None:
    kind = cols[2]
    if kind not in _CODING_KINDS:
        return
    attrs = _attributes(cols[8], gff3)
    if gff3:
        parents = [unquote(p.strip()) for p in attrs.get("Parent", "").split(",") if p.strip()]
        tids = parents or ([unquote(attrs["ID"])] if attrs.get("ID") else [])
    else:
        tids = [attrs["transcript_id"]] if attrs.get("transcript_id") else []
    if not tids:
        need = "Parent (or ID)" if gff3 else "transcript_id"
        raise AnnotationError(f"{kind} row has no {need}: the transcript it belongs to is "
                              "unknown", where=where)
    if cols[6] not in ("+", "-"):
        raise AnnotationError(f"transcript {tids[0]}: strand {cols[6]!r} is not + or -",
                              where=where)
    try:
        start, end = int(cols[3]) - 1, int(cols[4])
    except ValueError:
        raise AnnotationError(f"transcript {tids[0]}: start/end {cols[3]!r}/{cols[4]!r} are not "
                              "integers", where=where) from None
    if start < 0 or end <= start:
        raise AnnotationError(f"transcript {tids[0]}: start {cols[3]}, end {cols[4]}: "
                              "coordinates are 1-based with start <= end", where=where)
    gene = attrs.get("gene_name") or attrs.get("gene") or attrs.get("gene_id")
    for tid in tids:
        t = transcripts.setdefault(tid, Transcript(tid, gene or tid, cols[0], cols[6]))
        if kind == "CDS":
            t.cds.append((start, end, int(cols[7]) if cols[7] in ("0", "1", "2") else 0))
        elif kind == "start_codon":
            t.start_codon.append((start, end))
        else:
            t.stop_codon.append((start, end))


def _coding_positions(t: Transcript) -> tuple[np.ndarray, int]:
    """Genomic positions of CDS ∪ stop-codon bases in 5'→3' order, and the 5' phase."""
    cds = sorted(t.cds)
    bases = set()
    for start, end, _ in cds:
        bases.update(range(start, end))
    for start, end in t.stop_codon:
        bases.update(range(start, end))
    ordered = np.array(sorted(bases), dtype=np.int64)
    five_prime = cds[0] if t.strand == "+" else cds[-1]
    return (ordered if t.strand == "+" else ordered[::-1].copy()), five_prime[2]


def build_transcript(t: Transcript, genome: Genome, contig: str,
                     table: CodonTable) -> CodingTranscript:
    """Splice, translate and check one transcript (see the module docstring)."""
    positions, phase = _coding_positions(t)
    positions = positions[phase:]  # an incomplete 5' codon (phase > 0) is not translated
    lo, hi = int(positions.min()), int(positions.max()) + 1
    if hi > genome.lengths[contig]:
        return _failed(t, contig, positions, "", table, f"CDS ends past the contig end ({hi})")
    region = genome.fetch(contig, lo, hi).upper()
    seq = "".join(region[p - lo] for p in positions)
    if t.strand == "-":
        seq = seq.translate(_COMPLEMENT)
    transcript = _failed(t, contig, positions, seq, table, "")
    transcript.reason = _check(transcript, t, phase)
    if not transcript.reason:
        transcript.protein = table.translate(seq)[: -1 if transcript.has_stop else None]
    return transcript


def _failed(t: Transcript, contig: str, positions: np.ndarray, seq: str, table: CodonTable,
            reason: str) -> CodingTranscript:
    has_stop = len(seq) >= 3 and len(seq) % 3 == 0 and table.is_stop(seq[-3:])
    return CodingTranscript(t.transcript_id, t.gene, contig, t.strand, positions, seq, "", table,
                            has_start=bool(seq) and seq[:3] in table.starts, has_stop=has_stop,
                            reason=reason)


def _check(ct: CodingTranscript, t: Transcript, phase: int) -> str:
    if len(ct.cds) % 3:
        return f"CDS length {len(ct.cds)} is not a multiple of 3"
    protein = ct.table.translate(ct.cds)
    body = protein[:-1] if ct.has_stop else protein
    if "*" in body:
        return f"internal stop codon at residue {body.index('*') + 1}"
    if t.start_codon and (phase or not ct.has_start):
        return f"annotated start codon is {ct.cds[:3]}, not a start codon of table " \
               f"{ct.table.table_id}"
    if t.stop_codon and not ct.has_stop:
        return f"annotated stop codon is {ct.cds[-3:]}, not a stop codon"
    if not body:
        return "no complete codon"
    return ""


def load_transcripts(
    annotation: str | Path,
    genome: Genome,
    codon_tables: Mapping[str, int] | None = None,
    *,
    strict: bool = False,
) -> list[CodingTranscript]:
    """Every transcript of ``annotation`` built on ``genome``; failures keep their ``reason``.

    Raises :class:`AnnotationError` when none of the annotation's contigs is in the genome (the
    usual sign of a wrong genome build or naming); transcripts on other missing contigs are
    skipped with a reason. A transcript that fails its checks is skipped and logged; with
    ``strict`` (or when no transcript at all passes) the first failure is raised instead.
    """
    raw = read_annotation(annotation)
    contigs = {t.contig: genome.contigs.resolve(t.contig) for t in raw}
    if not any(contigs.values()):
        shown = ", ".join(sorted(contigs)[:5])
        raise AnnotationError(f"none of the annotation's contigs ({shown}) is in the genome "
                              f"{genome.path}", where=str(annotation))
    out = []
    for t in raw:
        contig = contigs[t.contig]
        if contig is None:
            out.append(CodingTranscript(t.transcript_id, t.gene, t.contig, t.strand,
                                        np.zeros(0, np.int64), "", "", table_for_contig(t.contig),
                                        False, False, f"contig {t.contig} not in genome"))
            continue
        out.append(build_transcript(t, genome, contig, table_for_contig(contig, codon_tables)))
    bad = [t for t in out if t.reason]
    log.info("annotation %s: %d coding transcripts, %d translated, %d skipped", annotation,
             len(out), len(out) - len(bad), len(bad))
    for t in bad:
        log.warning("transcript %s skipped: %s", t.transcript_id, t.reason)
    if bad and (strict or len(bad) == len(out)):
        raise AnnotationError(bad[0].reason, where=f"{annotation}: transcript "
                              f"{bad[0].transcript_id}")
    return out
