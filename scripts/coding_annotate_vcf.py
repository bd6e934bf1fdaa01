"""Snakemake adapter: the input VCF with DNA scores and the coding INFO fields (DNALM_PROTEIN,
DNALM_CODING), bgzipped and tabix-indexed (rule annotate_coding_vcf)."""

from dnalm.coding.run import annotate_coding_vcf
from dnalm.logs import run_script


def main(sm) -> None:
    annotate_coding_vcf(sm.input.variants, sm.input.coding, sm.output.vcf, sm.input.dna)


run_script(snakemake, main)
