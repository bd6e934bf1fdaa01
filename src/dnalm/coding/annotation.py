"""Gene annotations (GTF or GFF3) → checked coding transcripts with their proteins.

Only ``CDS`` rows are needed (grouped by ``transcript_id`` in GTF, by ``Parent`` in GFF3), so an
annotation with CDS rows only works; ``start_codon``/``stop_codon`` rows are used when present.
RefSeq/UCSC GTFs leave the stop codon out of the last CDS row and give it as a ``stop_codon`` row,
so stop-codon intervals are added to the coding intervals. A transcript that fails a check (length
not a multiple of 3, internal stop, missing start or stop codon where annotated) is kept with its
``reason`` and never translated, so no variant is ever scored on a wrong protein.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dnalm.coding.translate import CodonTable, table_for_contig
from dnalm.errors import DnalmError
from dnalm.genome import Genome

log = logging.getLogger(__name__)

_GTF_ATTR = re.compile(r'(\S+)\s+"([^"]*)"')
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


def _open_text(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rt") if magic == b"\x1f\x8b" else open(path)


def _attributes(text: str, gff3: bool) -> dict[str, str]:
    if not gff3:
        return dict(_GTF_ATTR.findall(text))
    out = {}
    for item in text.strip().strip(";").split(";"):
        if "=" in item:
            key, value = item.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _is_gff3(path: Path, first_rows: list[str]) -> bool:
    if path.name.lower().removesuffix(".gz").endswith((".gff3", ".gff")):
        return True
    return any("=" in row.split("\t")[8] and '"' not in row.split("\t")[8] for row in first_rows)


def read_annotation(path: str | Path) -> list[Transcript]:
    """Transcripts with CDS rows from a GTF or GFF3 file (plain or gzipped), in file order."""
    path = Path(path)
    try:
        with _open_text(path) as fh:
            rows = [line.rstrip("\n") for line in fh if line.strip() and not line.startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"cannot read annotation ({exc})", where=str(path)) from exc
    rows = [r for r in rows if not r.startswith(">")]
    bad = next((i for i, r in enumerate(rows) if len(r.split("\t")) != 9), None)
    if bad is not None:
        raise AnnotationError(f"line {bad + 1} does not have the 9 tab-separated GTF/GFF3 columns",
                              where=str(path))
    gff3 = _is_gff3(path, rows[:50])
    transcripts: dict[str, Transcript] = {}
    for row in rows:
        _add_row(transcripts, row.split("\t"), gff3, path)
    found = [t for t in transcripts.values() if t.cds]
    if not found:
        raise AnnotationError("no CDS rows with a transcript id (GTF transcript_id, GFF3 Parent)",
                              where=str(path))
    return found


def _add_row(transcripts: dict[str, Transcript], cols: list[str], gff3: bool, path: Path) -> None:
    kind = cols[2]
    if kind not in ("CDS", "start_codon", "stop_codon"):
        return
    attrs = _attributes(cols[8], gff3)
    tid = (attrs.get("Parent", "").split(",")[0] or attrs.get("ID")) if gff3 else (
        attrs.get("transcript_id"))
    if not tid:
        return
    if cols[6] not in "+-" or not cols[6]:
        raise AnnotationError(f"transcript {tid}: strand {cols[6]!r} is not + or -",
                              where=str(path))
    try:
        start, end = int(cols[3]) - 1, int(cols[4])
    except ValueError as exc:
        raise AnnotationError(f"transcript {tid}: start/end are not integers", where=str(path)) \
            from exc
    gene = attrs.get("gene_name") or attrs.get("gene") or attrs.get("gene_id") or tid
    t = transcripts.setdefault(tid, Transcript(tid, gene, cols[0], cols[6]))
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
