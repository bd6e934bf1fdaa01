"""Make chr20_sites_3kb.fa.gz: GRCh37 chr20 with every base farther than 3 kb from a site of
clinvar_pathogenic_vs_gnomad_common_chr20.vcf replaced by N (coordinates and the contig name
``20`` kept), so the demo model can score those sites from a file of a few hundred kB.

    python data/clinvar_chr20/make_genome.py path/to/20.fa.gz   # bgzipped, with .fai and .gzi

Source: GRCh37 chr20 from the Debian package vt-examples (MIT). Written bgzipped; running it
again gives the same bytes (the sha256 in config/genomes.tsv).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pysam

HERE = Path(__file__).resolve().parent
VCF = HERE / "clinvar_pathogenic_vs_gnomad_common_chr20.vcf"
OUT = HERE / "chr20_sites_3kb.fa.gz"
FLANK = 3000
CONTIG = "20"
WIDTH = 60


def main(source: str) -> None:
    with pysam.VariantFile(str(VCF)) as vcf:
        sites = sorted({rec.pos for rec in vcf})
    with pysam.FastaFile(source) as fasta:
        length = fasta.get_reference_length(CONTIG)
        kept = bytearray(b"N" * length)
        for pos in sites:
            start, end = max(0, pos - 1 - FLANK), min(length, pos + FLANK)
            kept[start:end] = fasta.fetch(CONTIG, start, end).upper().encode()
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "genome.fa"
        with open(plain, "wb") as out:
            out.write(f">{CONTIG}\n".encode())
            for i in range(0, length, WIDTH):
                out.write(bytes(kept[i:i + WIDTH]) + b"\n")
        pysam.tabix_compress(str(plain), str(OUT), force=True)
    print(f"{OUT}: {length} bp, {len(sites)} sites, "
          f"{length - kept.count(b'N')} bp kept ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
