"""Genetic codes by NCBI translation-table id, and translation of coding sequences.

Mitochondria and plastids do not use the standard code (vertebrate mitochondria read TGA as Trp
and AGA/AGG as stops), so the table is chosen per contig: :func:`table_for_contig` picks table 2
for the usual mitochondrial names unless the configuration says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dnalm.errors import ConfigError

_BASES = "TCAG"
# NCBI tables as 64-letter strings in TCAG order (https://www.ncbi.nlm.nih.gov/Taxonomy/Utils/wprintgc.cgi)
_AA = {
    1: "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
    2: "FFLLSSSSYY**CCWWLLLLPPPPHHQQRRRRIIMMTTTTNNKKSS**VVVVAAAADDEEGGGG",
    11: "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
}
_STARTS = {
    1: "---M------**--*----M---------------M----------------------------",
    2: "----------**--------------------MMMM----------**---M------------",
    11: "---M------**--*----M------------MMMM---------------M------------",
}
_MITO_NAMES = {"chrM", "chrMT", "M", "MT", "mitochondrion"}


@dataclass(frozen=True)
class CodonTable:
    """One NCBI genetic code: codon → amino acid (``*`` = stop) and the start codons."""

    table_id: int
    codons: Mapping[str, str]
    starts: frozenset[str]

    def translate(self, cds: str) -> str:
        """Amino acids of the complete codons of ``cds``; ``X`` for codons with non-ACGT bases."""
        cds = cds.upper()
        return "".join(self.codons.get(cds[i : i + 3], "X") for i in range(0, len(cds) - 2, 3))

    def is_stop(self, codon: str) -> bool:
        return self.codons.get(codon.upper()) == "*"


def codon_table(table_id: int) -> CodonTable:
    """The NCBI genetic code ``table_id`` (1 standard, 2 vertebrate mitochondrial, 11 plastid)."""
    if table_id not in _AA:
        raise ConfigError(f"codon table {table_id} is not supported; choose one of {sorted(_AA)}")
    codons = [a + b + c for a in _BASES for b in _BASES for c in _BASES]
    return CodonTable(
        table_id,
        dict(zip(codons, _AA[table_id], strict=True)),
        frozenset(c for c, s in zip(codons, _STARTS[table_id], strict=True) if s == "M"),
    )


def table_for_contig(contig: str, overrides: Mapping[str, int] | None = None) -> CodonTable:
    """The code for ``contig``: ``overrides[contig]``, else 2 for mitochondria, else 1."""
    overrides = overrides or {}
    if contig in overrides:
        return codon_table(int(overrides[contig]))
    return codon_table(2 if contig in _MITO_NAMES else 1)
