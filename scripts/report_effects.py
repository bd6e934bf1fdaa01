"""Snakemake adapter: the largest fine-tuned variant effects as an HTML table (rule
effects_report)."""

from dnalm.finetune.effects import effects_report
from dnalm.logs import run_script


def main(sm) -> None:
    w = sm.wildcards
    effects_report(sm.input[0], sm.output[0],
                   title=f"Fine-tuned variant effects: {w.task}/{w.run} on {w.vcf}")


run_script(snakemake, main)
