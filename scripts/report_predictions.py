"""Snakemake adapter: a fine-tuned run's predictions as an HTML table for the report."""

from dnalm.finetune.predict import predictions_report
from dnalm.logs import run_script


def main(sm) -> None:
    title = (f"Predictions: {sm.wildcards.seqset} by "
             f"{sm.wildcards.task}/{sm.wildcards.run}")
    predictions_report(sm.input[0], sm.output[0], title=title)


run_script(snakemake, main)
