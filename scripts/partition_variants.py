"""Snakemake adapter: read a variant set once, check it and cut it into region jobs
(checkpoint partition_variants)."""

from dnalm.logs import run_script
from dnalm.partition import partition_variants
from dnalm.score.settings import partition_settings


def main(sm) -> None:
    partition_variants(sm.input.variants, sm.input.fasta, sm.output[0],
                       settings=partition_settings(sm.params.settings),
                       match_chr_prefix=sm.params.match_chr_prefix)


run_script(snakemake, main)
