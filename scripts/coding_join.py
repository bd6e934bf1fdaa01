"""Snakemake adapter: the coding table joined to the DNA-model score table (rule
join_coding_dna)."""

from dnalm.coding.run import join_with_dna
from dnalm.logs import run_script


def main(sm) -> None:
    join_with_dna(sm.input.coding, sm.input.dna, sm.output.table)


run_script(snakemake, main)
