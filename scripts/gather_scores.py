"""Snakemake adapter: merge the region score tables of one variant set (rule gather_scores)."""

from dnalm.logs import run_script
from dnalm.score.run import gather_scores


def main(sm) -> None:
    gather_scores(list(sm.input.regions), sm.output.table)


run_script(snakemake, main)
