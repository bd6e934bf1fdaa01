"""Random access to a prepared genome and contig-name matching.

A prepared genome is ``genome.fa.gz`` (bgzip) with ``.fai`` and ``.gzi``; :class:`Genome` wraps
``pysam.FastaFile`` so callers fetch regions without reading the whole genome. VCFs and BED files
often disagree with the genome on the ``chr`` prefix (``chr20`` vs ``20``, ``chrM`` vs ``MT``):
:class:`ContigNames` maps a foreign name to the genome's own name, or says clearly that it cannot.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pysam

from dnalm.errors import InputFormatError

log = logging.getLogger(__name__)

_MITO = {"chrM", "chrMT", "M", "MT"}

#: An index older than its FASTA by more than this is stale. Copies (``cp -r``, a git checkout,
#: a sync) write a FASTA and its indexes moments apart in any order, so a smaller gap is no
#: evidence; an edit within it that moved the layout is caught by :func:`_index_problem`'s read.
INDEX_MTIME_SLACK_S = 2.0
#: Bytes read before a contig's first base to find its header line (longer headers: unchecked).
_HEADER_PROBE = 4096
#: BGZF blocks a ``.gzi``'s last entry may be followed by (its data block and the EOF block).
_TAIL_BLOCKS = 16


def check_index(fasta_path: str | Path) -> None:
    """Make sure the ``.fai`` (and a bgzipped FASTA's ``.gzi``) still describe the FASTA.

    An index describes a layout (byte offset and line width of every contig); once the FASTA is
    replaced or edited, a stale one silently returns other bases (false REF mismatches, scores of
    the wrong sequence) or fails deep inside htslib. Checked cheaply on every open: the index is
    not older than the FASTA (beyond :data:`INDEX_MTIME_SLACK_S`), the first and last contigs'
    header lines sit right before their offsets, and the last contig ends where the file does
    (for bgzip: where the ``.gzi``'s last block does). A stale index is rebuilt when its
    directory is writable (a warning says so); otherwise one line says what to run. A missing
    ``.fai`` is left to htslib, which builds one.
    """
    path = Path(fasta_path)
    fai = Path(f"{path}.fai")
    if not path.is_file() or not fai.is_file():
        return
    problem = _index_problem(path, fai)
    if problem is None:
        return
    command = f"samtools faidx {path}"
    if not os.access(path.parent, os.W_OK):
        raise InputFormatError(f"stale index: {problem}; rebuild it with `{command}` (or run "
                               "`dnalm prepare-genome`)", where=str(fai))
    try:
        _rebuild_index(path)
    except (OSError, pysam.utils.SamtoolsError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise InputFormatError(f"stale index: {problem}, and rebuilding it failed ({detail}); "
                               "run `dnalm prepare-genome` on the FASTA", where=str(fai)) from exc
    log.warning("%s: stale index (%s): rebuilt it", fai, problem)


def _rebuild_index(path: Path) -> None:
    """``samtools faidx`` into temporary siblings, renamed into place (concurrent jobs that
    rebuild the same index each replace it with identical content)."""
    bgzf = _is_bgzf(path)
    targets = [Path(f"{path}.fai")] + ([Path(f"{path}.gzi")] if bgzf else [])
    from dnalm.io import atomic_files

    # atomic_files: the modes the umask gives (not mkstemp's 0600), leftovers of a kill removed
    with atomic_files(*targets) as tmps:
        args = ["--fai-idx", str(tmps[0])] + (["--gzi-idx", str(tmps[1])] if bgzf else [])
        pysam.faidx(str(path), *args)


def _is_bgzf(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(16)
    return head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def _index_problem(path: Path, fai: Path) -> str | None:
    """Why the index does not describe ``path`` (None when it does, as far as a cheap read
    can tell)."""
    slack = INDEX_MTIME_SLACK_S
    fasta_mtime = path.stat().st_mtime
    if fai.stat().st_mtime < fasta_mtime - slack:
        return f"{fai.name} is older than {path.name}"
    try:
        entries = _fai_entries(fai)
    except (ValueError, IndexError):
        return f"{fai.name} is not a FASTA index (expected name, length, offset, line bases, " \
               "line width per line)"
    if not entries:
        return f"{fai.name} lists no contigs"
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        if not _is_bgzf(path):
            return None  # plain gzip: not indexable at all, Genome says so
        gzi = Path(f"{path}.gzi")
        if not gzi.is_file():
            return None  # htslib reports it
        if gzi.stat().st_mtime < fasta_mtime - slack:
            return f"{gzi.name} is older than {path.name}"
        try:
            read_at, total = _bgzf_reader(path, gzi)
        except (ValueError, OSError, zlib.error, struct.error) as exc:
            return f"{gzi.name} does not match {path.name} ({exc})"
    else:
        total = path.stat().st_size

        def read_at(a: int, b: int) -> bytes:
            with open(path, "rb") as handle:
                handle.seek(a)
                return handle.read(b - a)

    name, length, offset, line_bases, line_width = entries[-1]
    full, rest = divmod(length, line_bases) if line_bases else (0, 0)
    end = offset + full * line_width + rest
    if end > total or total - end > 256 or read_at(end, total).strip():
        return (f"{fai.name} says contig {name} ends at byte {end:,} but {path.name} holds "
                f"{total:,} bytes of FASTA text")
    for contig, _, start, _, _ in (entries[0], entries[-1]):
        try:
            header = _header_before(read_at, start)
        except (ValueError, OSError, zlib.error) as exc:
            return f"{fai.name}: cannot read {path.name} at contig {contig}'s offset ({exc})"
        if header is not None and header != contig:
            return (f"{fai.name} places contig {contig} at byte {start:,}, where {path.name} has "
                    + (f"contig {header}" if header else "no header line before it"))
    return None


def _fai_entries(fai: Path) -> list[tuple[str, int, int, int, int]]:
    with open(fai) as handle:
        rows = [line.rstrip("\r\n").split("\t") for line in handle if line.strip()]
    return [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


def _header_before(read_at: Callable[[int, int], bytes], offset: int) -> str | None:
    """The first word of the header line that ends right before byte ``offset`` ('' when
    there is none; None when it is longer than the probe and cannot be checked cheaply)."""
    lo = max(0, offset - _HEADER_PROBE)
    chunk = read_at(lo, offset)
    if len(chunk) != offset - lo or not chunk.endswith(b"\n"):
        return ""
    body = chunk[:-1].rstrip(b"\r")
    cut = body.rfind(b"\n")
    if cut < 0 and lo > 0:
        return None
    line = body[cut + 1:]
    if not line.startswith(b">"):
        return ""
    words = line[1:].split()
    return words[0].decode("utf-8", "replace") if words else ""


def _bgzf_reader(path: Path, gzi: Path) -> tuple[Callable[[int, int], bytes], int]:
    """Random reads of uncompressed bytes through the ``.gzi`` (block starts, compressed and
    uncompressed), and the uncompressed size; ValueError where the ``.gzi`` does not fit."""
    data = gzi.read_bytes()
    (count,) = struct.unpack_from("<Q", data, 0)
    if len(data) != 8 + 16 * count:
        raise ValueError("truncated index")
    pairs = struct.unpack_from(f"<{2 * count}Q", data, 8)
    coffs, uoffs = [0, *pairs[0::2]], [0, *pairs[1::2]]
    size = path.stat().st_size

    def blocks(coff: int, limit: int | None = None):
        """(compressed offset, uncompressed bytes) of the blocks from ``coff`` on."""
        with open(path, "rb") as handle:
            n = 0
            while coff < size and (limit is None or n < limit):
                handle.seek(coff)
                head = handle.read(18)
                if head[:4] != b"\x1f\x8b\x08\x04" or head[12:14] != b"BC":
                    raise ValueError(f"no BGZF block at byte {coff:,}")
                block_size = struct.unpack_from("<H", head, 16)[0] + 1
                handle.seek(coff)
                yield coff, zlib.decompress(handle.read(block_size), 31)
                coff += block_size
                n += 1

    if coffs[-1] >= size:
        raise ValueError(f"it points past the end of the file, at byte {coffs[-1]:,}")
    tail = list(blocks(coffs[-1], _TAIL_BLOCKS + 1))
    if len(tail) > _TAIL_BLOCKS:
        raise ValueError("it lists only part of the file's blocks")
    total = uoffs[-1] + sum(len(b) for _, b in tail)

    def read_at(a: int, b: int) -> bytes:
        i = bisect.bisect_right(uoffs, a) - 1
        out, pos = [], uoffs[i]
        for _, block in blocks(coffs[i]):
            out.append(block)
            pos += len(block)
            if pos >= b:
                break
        joined = b"".join(out)
        return joined[a - uoffs[i]:b - uoffs[i]]

    return read_at, total


def read_fai(fasta_path: str | Path) -> list[tuple[str, int]]:
    """Contig names and lengths, in file order, from the FASTA's ``.fai`` index.

    The plan of every genome-wide job (chunk shards, scoring and track regions) comes from the
    index alone, so no job has to read the genome to know its share; the index is checked
    against the FASTA first (:func:`check_index`).
    """
    check_index(fasta_path)
    with open(f"{fasta_path}.fai") as handle:
        return [(line.split("\t")[0], int(line.split("\t")[1])) for line in handle if line.strip()]


class ContigNames:
    """Map contig names from other files to the genome's names.

    With ``match_chr_prefix`` a name matches the genome's name that differs only by a leading
    ``chr`` (and mitochondrial ``chrM``/``MT`` spellings match each other), provided exactly one
    such name exists in the genome.
    """

    def __init__(self, names: list[str], *, match_chr_prefix: bool = True) -> None:
        self.names = list(names)
        self._exact = set(names)
        self._alias: dict[str, str] = {}
        if match_chr_prefix:
            for name in names:
                for alias in self._aliases(name):
                    if alias not in self._exact:
                        # an alias shared by two genome contigs is ambiguous: keep neither
                        self._alias[alias] = "" if alias in self._alias else name

    @staticmethod
    def _aliases(name: str) -> list[str]:
        out = [name[3:]] if name.startswith("chr") else [f"chr{name}"]
        if name in _MITO:
            out += sorted(_MITO - {name})
        return out

    def resolve(self, name: str) -> str | None:
        """The genome's contig for ``name``, or ``None`` when there is none."""
        if name in self._exact:
            return name
        return self._alias.get(name) or None


class Genome:
    """A prepared (bgzipped, faidx-indexed) genome."""

    def __init__(self, path: str | Path, *, match_chr_prefix: bool = True) -> None:
        self.path = Path(path)
        check_index(self.path)
        try:
            self._fasta = pysam.FastaFile(str(self.path))
        except (OSError, ValueError) as exc:
            raise InputFormatError(
                f"cannot open as an indexed FASTA ({exc}); a gzipped genome must be bgzipped: "
                "run `dnalm prepare-genome` first", where=str(path)) from exc
        self.lengths = dict(zip(self._fasta.references, self._fasta.lengths, strict=True))
        self.contigs = ContigNames(list(self._fasta.references), match_chr_prefix=match_chr_prefix)

    def interval(self, chrom: str, start: int, end: int, *, where: str) -> str:
        """The genome's contig of a BED interval ``[start, end)`` on ``chrom`` (0-based).

        One rule for every BED input (sequence sets, saturation regions): an unknown contig, an
        empty interval or one reaching off its contig is refused with one line naming ``where``,
        never clipped, so no output silently covers less than the file asked for.
        """
        contig = self.contigs.resolve(chrom)
        if contig is None:
            raise InputFormatError(f"contig {chrom!r} is not in genome {self.path}", where=where)
        length = self.lengths[contig]
        if not 0 <= start < end <= length:
            raise InputFormatError(f"interval {start}-{end} is empty or outside {contig} "
                                   f"(length {length:,})", where=where)
        return contig

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Bases ``[start, end)`` (0-based) of ``contig``, as stored (case kept)."""
        return self._fasta.fetch(contig, start, end)

    def close(self) -> None:
        self._fasta.close()

    def __enter__(self) -> Genome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Folder of the bgzipped, indexed copies that :func:`random_access_genome` makes.
GENOME_CACHE_DIR = "dnalm-genome-cache"


def _copy_reason(path: Path) -> str | None:
    """Why ``path`` cannot be opened for random access as it is (None when it can)."""
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b" and not _is_bgzf(path):
        return "plain gzip, not bgzip"
    if not Path(f"{path}.fai").is_file() and not os.access(path.parent, os.W_OK):
        return "no .fai index, and its folder is read-only"
    return None


def random_access_genome(path: str | Path, *, cache_dirs: list[Path] | tuple[Path, ...] = ()
                         ) -> Path:
    """``path``, or a bgzipped, faidx-indexed copy of it when it cannot be read at random.

    UCSC and Ensembl ship genomes gzipped, not bgzipped; htslib cannot seek in those, and
    asking the user to run ``dnalm prepare-genome`` first only delays the same work. The copy
    (:func:`dnalm.fasta.prepare_genome`: validated, bgzipped, ``.fai`` + ``.gzi``) goes to a
    ``dnalm-genome-cache`` folder beside the input when that folder is writable, else in the
    first writable of ``cache_dirs`` (a command's output folder). A ``.source.json`` beside it
    records the input's path, size and mtime, so the next call reuses the copy until the input
    changes. One log line says which copy is made or reused.
    """
    import hashlib
    import json

    from dnalm.io import atomic_file

    path = Path(path)
    reason = _copy_reason(path)
    if reason is None:
        return path
    stat = path.stat()
    source = {"source": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stem = path.name
    for suffix in (".gz", ".bgz", ".fa", ".fasta", ".fna", ".fas"):
        stem = stem.removesuffix(suffix)
    tag = hashlib.sha256(source["source"].encode()).hexdigest()[:8]
    name = f"{stem or 'genome'}-{tag}.fa.gz"
    folders = [path.parent / GENOME_CACHE_DIR, *(Path(d) / GENOME_CACHE_DIR for d in cache_dirs)]
    for folder in folders:
        copy, meta = folder / name, folder / f"{name}.source.json"
        try:
            if json.loads(meta.read_text()) == source and all(
                    Path(f"{copy}{ext}").is_file() for ext in ("", ".fai", ".gzi")):
                log.info("%s: %s; reusing its bgzipped, indexed copy %s", path, reason, copy)
                return copy
        except (OSError, ValueError):
            continue
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if not os.access(folder, os.W_OK):
            continue
        copy, meta = folder / name, folder / f"{name}.source.json"
        log.info("%s: %s; writing a bgzipped, indexed copy %s (once: later calls reuse it)",
                 path, reason, copy)
        from dnalm.fasta import prepare_genome

        fasta_log = logging.getLogger("dnalm.fasta")
        level = fasta_log.level
        fasta_log.setLevel(logging.WARNING)  # the line above says what happens
        try:
            prepare_genome(path, copy, folder / f"{name}.stats.parquet", genome_id=stem)
        finally:
            fasta_log.setLevel(level)
        with atomic_file(meta) as tmp:
            tmp.write_text(json.dumps(source) + "\n")
        return copy
    raise InputFormatError(f"{reason}, and no writable folder for a bgzipped copy: run "
                           "`dnalm prepare-genome` on it", where=str(path))
