"""Streaming FASTA reading, validation and conversion to bgzip + faidx.

The source FASTA (plain or gzipped, possibly several GB) is read in blocks, never as a whole:
sequence bytes are validated, counted for the statistics table and re-wrapped at a fixed line
width into a BGZF file that ``pysam.faidx`` indexes (``.fai`` + ``.gzi``), so every later stage
has random access to any region.
"""

from __future__ import annotations

import fnmatch
import gzip
import logging
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pysam

from dnalm.errors import InputFormatError
from dnalm.io import atomic_files, write_table

log = logging.getLogger(__name__)

BLOCK_BYTES = 4 << 20
LINE_WIDTH = 60
#: IUPAC nucleotide codes accepted in input FASTA (either case); anything else is an error.
IUPAC = b"ACGTNRYKMSWBDHVU"
#: Alignment gaps and stops: not bases. Counted as bases they would shift every coordinate after
#: them (a VCF's POS, a BED interval), so a genome holding them is refused, never rewritten.
GAP_CHARACTERS = b"-*."
_VALID = np.zeros(256, dtype=bool)
for _c in IUPAC + IUPAC.lower():
    _VALID[_c] = True


def invalid_base_message(char: str, contig: str, position: int) -> str:
    """The one line for a character that is not a base (``position`` 1-based)."""
    if char.encode("latin-1", "replace") in GAP_CHARACTERS:
        return (f"contig {contig!r}: gap or stop character {char!r} at position {position} is "
                "not a base (it would shift every coordinate after it); remove it, or write N "
                "for unknown bases")
    return (f"contig {contig!r}: invalid character {char!r} at position {position} (not an "
            "IUPAC nucleotide code)")
_HEADER_RE = re.compile(rb"(?m)^>[^\n]*(?:\n|$)")


@dataclass
class ContigStats:
    """Per-contig base counts gathered while streaming."""

    name: str
    counts: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))

    @property
    def length(self) -> int:
        return int(self.counts.sum())

    def row(self, genome: str) -> dict[str, object]:
        c = self.counts
        upper = {b: int(c[ord(b)] + c[ord(b.lower())]) for b in "ACGTN"}
        acgt = upper["A"] + upper["C"] + upper["G"] + upper["T"]
        lower = int(c[ord("a") : ord("z") + 1].sum())
        length = self.length
        return {
            "genome": genome,
            "contig": self.name,
            "length": length,
            "n_count": upper["N"],
            "other_iupac_count": length - acgt - upper["N"],
            "gc_fraction": (upper["G"] + upper["C"]) / acgt if acgt else float("nan"),
            "softmasked_fraction": lower / length if length else 0.0,
        }


STATS_SCHEMA = pa.schema(
    [
        ("genome", pa.string()),
        ("contig", pa.string()),
        ("length", pa.int64()),
        ("n_count", pa.int64()),
        ("other_iupac_count", pa.int64()),
        ("gc_fraction", pa.float64()),
        ("softmasked_fraction", pa.float64()),
    ]
)


def open_maybe_gzip(path: str | Path) -> BinaryIO:
    """Open a file for binary reading, decompressing gzip/bgzip transparently."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def _read_blocks(handle: BinaryIO, where: str) -> Iterator[bytes]:
    try:
        while block := handle.read(BLOCK_BYTES):
            yield block
    except EOFError as exc:
        raise InputFormatError("truncated gzip file (compressed stream ended early)",
                               where=where) from exc
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise InputFormatError(f"corrupt gzip file ({exc})", where=where) from exc


def iter_records(path: str | Path) -> Iterator[tuple[str, Iterator[bytes]]]:
    """Yield ``(contig_name, sequence_pieces)`` for each record, streaming.

    ``sequence_pieces`` yields the record's sequence bytes without line breaks; it must be
    consumed before the next record is requested. Raises ``InputFormatError`` for a file that is
    empty or does not start with a FASTA header.
    """
    where = str(path)
    with open_maybe_gzip(path) as handle:
        events = _events(_read_blocks(handle, where), where)
        pending: tuple[str, str] | None = None
        for kind, value in events:
            if kind != "header":
                raise InputFormatError("not a FASTA file (no '>' header before sequence)",
                                       where=where)
            pending = ("header", value)
            break
        else:
            raise InputFormatError("empty file (no FASTA records)", where=where)
        while pending is not None:
            name = pending[1]
            pending = None

            def pieces() -> Iterator[bytes]:
                nonlocal pending
                for kind, value in events:
                    if kind == "header":
                        pending = ("header", value)
                        return
                    yield value

            body = pieces()
            yield name, body
            for _ in body:  # drain whatever the caller did not read
                pass


def _events(blocks: Iterator[bytes], where: str) -> Iterator[tuple[str, object]]:
    """Split a byte stream into ``("header", name)`` and ``("seq", bytes)`` events."""
    leftover = b""
    for block in blocks:
        data = leftover + block
        cut = data.rfind(b"\n")
        if cut == -1:
            if data.startswith(b">"):
                leftover = data  # an unfinished header line
                continue
            leftover = b""
            complete = data
        else:
            complete, leftover = data[: cut + 1], data[cut + 1 :]
            if leftover and not leftover.startswith(b">"):
                # an unfinished sequence line: emit it now so single-line contigs stream too
                complete, leftover = data, b""
        yield from _split_complete(complete, where)
    if leftover:
        yield from _split_complete(leftover + b"\n" if leftover.startswith(b">") else leftover,
                                   where)


def _split_complete(data: bytes, where: str) -> Iterator[tuple[str, object]]:
    pos = 0
    for m in _HEADER_RE.finditer(data):
        if m.start() > pos and (seq := _clean(data[pos : m.start()])):
            yield "seq", seq
        header = m.group().decode("utf-8", "replace").strip()[1:]
        name = header.split(maxsplit=1)[0] if header.strip() else ""
        if not name:
            raise InputFormatError("FASTA header without a name", where=where)
        yield "header", name
        pos = m.end()
    if pos < len(data) and (seq := _clean(data[pos:])):
        yield "seq", seq


def _clean(seq: bytes) -> bytes:
    return seq.translate(None, b"\r\n\t ")


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_contig(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a contig passes the sheet's include/exclude glob patterns."""
    if include and not _matches(name, include):
        return False
    return not (exclude and _matches(name, exclude))


class _Wrapper:
    """Re-wrap a contig's sequence at a fixed line width while writing to BGZF."""

    def __init__(self, out: pysam.BGZFile, width: int) -> None:
        self.out, self.width, self.carry = out, width, b""

    def write(self, piece: bytes) -> None:
        data = self.carry + piece
        full = len(data) // self.width * self.width
        if full:
            rows = np.frombuffer(data, dtype=np.uint8, count=full).reshape(-1, self.width)
            nl = np.full((rows.shape[0], 1), ord("\n"), dtype=np.uint8)
            self.out.write(np.hstack([rows, nl]).tobytes())
        self.carry = data[full:]

    def close_record(self) -> None:
        if self.carry:
            self.out.write(self.carry + b"\n")
        self.carry = b""


def _refuse_overwriting_input(source: str | Path, outputs: Sequence[Path], where: str) -> None:
    """Outputs replace their targets when complete: one that is the input (by any path: a
    symlink, ``./x.fa``) would destroy the only copy of the genome."""
    source = Path(source)
    for out in outputs:
        same = out.resolve() == source.resolve() or (
            out.exists() and source.exists() and out.samefile(source))
        if same:
            raise InputFormatError(f"output {out} is the input FASTA itself: name another "
                                   "output path", where=where)


def prepare_genome(
    source_path: str | Path,
    fasta_out: str | Path,
    stats_out: str | Path,
    *,
    genome_id: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    line_width: int = LINE_WIDTH,
) -> list[dict[str, object]]:
    """Validate a FASTA, write it bgzipped + faidx-indexed, and write per-contig statistics.

    Contig names are kept as in the source (first word of the header). Outputs appear together
    or not at all. Returns the statistics rows.
    """
    fasta_out = Path(fasta_out)
    where = f"genome {genome_id} ({source_path})"
    outputs = [fasta_out, Path(f"{fasta_out}.fai"), Path(f"{fasta_out}.gzi")]
    _refuse_overwriting_input(source_path, [*outputs, Path(stats_out)], where)
    stats: list[ContigStats] = []
    seen: set[str] = set()
    with atomic_files(*outputs) as (tmp_fa, tmp_fai, tmp_gzi):
        out = pysam.BGZFile(str(tmp_fa), "wb")
        try:
            wrapper = _Wrapper(out, line_width)
            for name, pieces in iter_records(source_path):
                if name in seen:
                    raise InputFormatError(f"duplicate contig name {name!r}", where=where)
                seen.add(name)
                if not select_contig(name, include, exclude):
                    continue
                st = ContigStats(name)
                out.write(f">{name}\n".encode())
                for piece in pieces:
                    arr = np.frombuffer(piece, dtype=np.uint8)
                    counts = np.bincount(arr, minlength=256)
                    bad = counts[~_VALID]
                    if bad.any():
                        offset = int(np.flatnonzero(~_VALID[arr])[0])
                        char = chr(arr[offset])
                        raise InputFormatError(
                            invalid_base_message(char, name, st.length + offset + 1),
                            where=where,
                        )
                    st.counts += counts
                    wrapper.write(piece)
                wrapper.close_record()
                if st.length == 0:
                    raise InputFormatError(f"contig {name!r} has no sequence", where=where)
                stats.append(st)
        finally:
            out.close()
        if not stats:
            raise InputFormatError(
                "no contigs left after include/exclude filters" if seen else "no FASTA records",
                where=where,
            )
        pysam.faidx(str(tmp_fa))
        Path(f"{tmp_fa}.fai").replace(tmp_fai)
        Path(f"{tmp_fa}.gzi").replace(tmp_gzi)
    rows = [s.row(genome_id) for s in stats]
    write_table(pa.Table.from_pylist(rows, schema=STATS_SCHEMA), stats_out)
    total = sum(int(r["length"]) for r in rows)
    log.info("genome %s: %d contigs, %d bp written to %s", genome_id, len(rows), total, fasta_out)
    return rows


def read_all_sequences(path: str | Path) -> dict[str, str]:
    """Whole FASTA in memory (tests and small inputs only)."""
    return {name: b"".join(pieces).decode() for name, pieces in iter_records(path)}
