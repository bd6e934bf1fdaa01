"""Snakemake adapter: out-of-core score summaries with dask (rule summarize_scores)."""

from dnalm.logs import run_script
from dnalm.score.summary import summarize_scores


def main(sm) -> None:
    summarize_scores([sm.input.table], sm.output[0], genes_bed=sm.params.genes)


run_script(snakemake, main)
