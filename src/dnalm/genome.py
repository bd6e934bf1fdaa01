"""Random access to a prepared genome and contig-name matching.

A prepared genome is ``genome.fa.gz`` (bgzip) with ``.fai`` and ``.gzi``; :class:`Genome` wraps
``pysam.FastaFile`` so callers fetch regions without reading the whole genome. VCFs and BED files
often disagree with the genome on the ``chr`` prefix (``chr20`` vs ``20``, ``chrM`` vs ``MT``):
:class:`ContigNames` maps a foreign name to the genome's own name, or says clearly that it cannot.
"""

from __future__ import annotations

from pathlib import Path

import pysam

from dnalm.errors import InputFormatError

_MITO = {"chrM", "chrMT", "M", "MT"}


def read_fai(fasta_path: str | Path) -> list[tuple[str, int]]:
    """Contig names and lengths, in file order, from the FASTA's ``.fai`` index.

    The plan of every genome-wide job (chunk shards, scoring and track regions) comes from the
    index alone, so no job has to read the genome to know its share.
    """
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
        try:
            self._fasta = pysam.FastaFile(str(self.path))
        except (OSError, ValueError) as exc:
            raise InputFormatError(
                f"cannot open as an indexed FASTA ({exc}); a gzipped genome must be bgzipped: "
                "run `dnalm prepare-genome` first", where=str(path)) from exc
        self.lengths = dict(zip(self._fasta.references, self._fasta.lengths, strict=True))
        self.contigs = ContigNames(list(self._fasta.references), match_chr_prefix=match_chr_prefix)

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Bases ``[start, end)`` (0-based) of ``contig``, as stored (case kept)."""
        return self._fasta.fetch(contig, start, end)

    def close(self) -> None:
        self._fasta.close()

    def __enter__(self) -> Genome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
