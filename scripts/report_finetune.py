"""Snakemake adapter: the fine-tuning summary table as HTML for the report."""

from dnalm.logs import run_script
from dnalm.report import markdown_table_html


def main(sm) -> None:
    markdown_table_html(sm.input[0], sm.output[0], title="Fine-tuning: tasks x models")


run_script(snakemake, main)
