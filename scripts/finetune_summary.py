"""Snakemake adapter: GUE-style summary over all fine-tuning runs (rule finetune_summary)."""

from dnalm.finetune import write_summary
from dnalm.logs import run_script


def main(sm) -> None:
    write_summary(list(sm.input), sm.output.parquet, sm.output.markdown)


run_script(snakemake, main)
