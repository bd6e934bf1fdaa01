"""Snakemake adapter: merge a saturation set's job tables; write the bigWig (rule
saturation_mutagenesis)."""

from dnalm.logs import run_script
from dnalm.score.run import gather_saturation


def main(sm) -> None:
    gather_saturation(list(sm.input.parts), sm.input.fasta, sm.output.table, sm.output.bigwig,
                      match_chr_prefix=sm.params.match_chr_prefix)


run_script(snakemake, main)
