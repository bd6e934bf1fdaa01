"""Snakemake adapter: genome statistics as an HTML table for the report."""

from dnalm.logs import run_script
from dnalm.report import genome_stats_html


def main(sm) -> None:
    genome_stats_html(sm.input[0], sm.output[0])


run_script(snakemake, main)
