"""Snakemake adapter: the input VCF with INFO/DNALM_FT* effects, bgzipped + tabix (rule
annotate_effects_vcf)."""

from dnalm.finetune.effects import effects_vcf
from dnalm.logs import run_script


def main(sm) -> None:
    effects_vcf(sm.input.table, sm.input.variants, sm.output.vcf)


run_script(snakemake, main)
