"""Protein consequences of genomic variants, per overlapping coding transcript.

A variant is first trimmed of the bases REF and ALT share (VCF pads indels with one base), then
mapped onto each transcript's coding coordinates (:attr:`CodingTranscript.positions`). On the
minus strand the coding base at genomic position ``p`` is the complement of the genome's base, so
substitutions are complemented and coding indices run against the genome; every consequence is
computed on the coding strand, where both strands are alike.

Only missense changes get a protein notation for scoring (``A24G``, several joined by ``:``, the
layout of ESM's mutation tables); the other classes carry a ``reason`` instead of a score.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from dnalm.coding.annotation import CodingTranscript

_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")

SYNONYMOUS = "synonymous"
MISSENSE = "missense"
STOP_GAINED = "stop_gained"
STOP_LOST = "stop_lost"
START_LOST = "start_lost"
FRAMESHIFT = "frameshift"
INFRAME_INSERTION = "inframe_insertion"
INFRAME_DELETION = "inframe_deletion"
SPLICE_CROSSING = "coding_splice_crossing"
NOT_TRANSLATED = "transcript_not_translated"


@dataclass(frozen=True)
class Consequence:
    """The effect of one ALT allele on one transcript."""

    consequence: str
    protein_change: str  # ESM notation for missense; a description (or "") otherwise
    reason: str  # why there is no protein score ("" for missense)


def trim(pos0: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Drop shared leading then trailing bases; ``pos0`` moves with the leading ones."""
    while ref and alt and ref[0] == alt[0]:
        ref, alt, pos0 = ref[1:], alt[1:], pos0 + 1
    while ref and alt and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    return pos0, ref, alt


class CodingIndex:
    """Find the transcripts whose coding bases a genomic span touches (sorted-interval search)."""

    def __init__(self, transcripts: Iterable[CodingTranscript]) -> None:
        self.by_contig: dict[str, tuple[np.ndarray, np.ndarray, list[CodingTranscript], int]] = {}
        rows: dict[str, list[tuple[int, int, CodingTranscript]]] = {}
        for t in transcripts:
            if len(t.positions):
                lo, hi = int(t.positions.min()), int(t.positions.max()) + 1
                rows.setdefault(t.contig, []).append((lo, hi, t))
        for contig, items in rows.items():
            items.sort(key=lambda r: r[0])
            starts = np.array([r[0] for r in items])
            ends = np.array([r[1] for r in items])
            longest = int((ends - starts).max())
            self.by_contig[contig] = (starts, ends, [r[2] for r in items], longest)

    def overlapping(self, contig: str, start: int, end: int) -> list[CodingTranscript]:
        """Transcripts with a coding base in ``[start, end)`` (``end > start``)."""
        if contig not in self.by_contig:
            return []
        starts, ends, items, longest = self.by_contig[contig]
        lo = int(np.searchsorted(starts, start - longest, side="left"))
        hi = int(np.searchsorted(starts, end, side="left"))
        out = []
        for i in range(lo, hi):
            if ends[i] > start and _touches(items[i], start, end):
                out.append(items[i])
        return out


def _touches(t: CodingTranscript, start: int, end: int) -> bool:
    return bool(np.any((t.positions >= start) & (t.positions < end)))


def variant_span(pos0: int, ref: str, alt: str) -> tuple[int, int]:
    """The genomic span whose coding bases decide overlap (insertions: both flanking bases)."""
    pos0, r, _ = trim(pos0, ref, alt)
    return (pos0 - 1, pos0 + 1) if not r else (pos0, pos0 + len(r))


def consequence(t: CodingTranscript, pos0: int, ref: str, alt: str) -> Consequence:
    """The consequence of replacing ``ref`` at 0-based ``pos0`` by ``alt`` on transcript ``t``."""
    if t.reason:
        return Consequence(NOT_TRANSLATED, "", f"transcript skipped: {t.reason}")
    pos0, ref, alt = trim(pos0, ref.upper(), alt.upper())
    if len(ref) == len(alt):
        return _substitution(t, pos0, ref, alt)
    return _indel(t, pos0, ref, alt)


def _coding_index(t: CodingTranscript) -> dict[int, int]:
    index = getattr(t, "_index", None)
    if index is None:
        index = {int(p): i for i, p in enumerate(t.positions)}
        t._index = index  # type: ignore[attr-defined]  # cached genomic → coding map
    return index


def _substitution(t: CodingTranscript, pos0: int, ref: str, alt: str) -> Consequence:
    index = _coding_index(t)
    cds = list(t.cds)
    changed = []
    for offset, base in enumerate(alt):
        i = index.get(pos0 + offset)
        if i is not None:
            cds[i] = base if t.strand == "+" else base.translate(_COMPLEMENT)
            changed.append(i)
    if not changed:  # only intronic bases of an MNV between coding bases
        return Consequence(SYNONYMOUS, "", "no coding base changed")
    return _classify_codons(t, "".join(cds), sorted({i // 3 for i in changed}))


def _classify_codons(t: CodingTranscript, new_cds: str, codons: list[int]) -> Consequence:
    table = t.table
    last = len(t.cds) // 3 - 1
    wt = [table.translate(t.cds[3 * c : 3 * c + 3]) for c in codons]
    mt = [table.translate(new_cds[3 * c : 3 * c + 3]) for c in codons]
    changes = [f"{w}{c + 1}{m}" for c, w, m in zip(codons, wt, mt, strict=True) if w != m]
    # a start kept only if the new codon still reads Met (CTG is a rare table-1 start: lost)
    if t.has_start and codons[0] == 0 and table.translate(new_cds[:3]) != "M":
        return Consequence(START_LOST, f"M1{mt[0]}", f"start codon {t.cds[:3]}>{new_cds[:3]}")
    if t.has_stop and codons[-1] == last and mt[-1] != "*":
        return Consequence(STOP_LOST, f"*{last + 1}{mt[-1]}", "stop codon lost: protein "
                           "extends into the 3' UTR")
    if any(m == "*" and w != "*" for w, m in zip(wt, mt, strict=True)):
        return Consequence(STOP_GAINED, ":".join(changes), "premature stop codon")
    if not changes:
        return Consequence(SYNONYMOUS, "", "no amino-acid change")
    return Consequence(MISSENSE, ":".join(changes), "")


def _indel(t: CodingTranscript, pos0: int, ref: str, alt: str) -> Consequence:
    index = _coding_index(t)
    if ref:
        idx = [index.get(p) for p in range(pos0, pos0 + len(ref))]
        if any(i is None for i in idx):
            return Consequence(SPLICE_CROSSING, "", "indel crosses a CDS boundary")
        first = min(idx)
        if max(idx) - first != len(ref) - 1:
            return Consequence(SPLICE_CROSSING, "", "indel crosses a CDS boundary")
        end_codon = max(idx) // 3
    else:
        left, right = index.get(pos0 - 1), index.get(pos0)
        if left is None or right is None or abs(left - right) != 1:
            return Consequence(SPLICE_CROSSING, "", "insertion at a CDS boundary")
        first = max(left, right)  # coding index of the base after the insertion
        end_codon = min(left, right) // 3
    return _classify_indel(t, first, len(alt) - len(ref), first // 3, end_codon)


def _classify_indel(t: CodingTranscript, first: int, delta: int, start_codon: int,
                    end_codon: int) -> Consequence:
    last = len(t.cds) // 3 - 1
    where = f"c.{first + 1}"
    if t.has_start and min(start_codon, end_codon) == 0:
        return Consequence(START_LOST, "", f"indel at the start codon ({where})")
    if t.has_stop and max(start_codon, end_codon) == last:
        return Consequence(STOP_LOST, "", f"indel in the stop codon ({where})")
    if delta % 3:
        return Consequence(FRAMESHIFT, f"p.{first // 3 + 1}fs", f"frameshift ({delta:+d} bp at "
                           f"{where})")
    kind = INFRAME_INSERTION if delta > 0 else INFRAME_DELETION
    return Consequence(kind, f"p.{first // 3 + 1}", f"in-frame {abs(delta) // 3} residue(s) "
                       f"{'inserted' if delta > 0 else 'deleted'} at {where}")
