"""Snakemake adapter: write the input VCF with INFO/DNALM scores, bgzipped + tabix (rule
annotate_vcf)."""

from dnalm.logs import run_script
from dnalm.score.run import annotate_from_table


def main(sm) -> None:
    annotate_from_table(sm.input.table, sm.input.variants, sm.output.vcf)


run_script(snakemake, main)
