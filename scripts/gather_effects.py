"""Snakemake adapter: merge the region tables of one run's variant effects (rule
gather_effects)."""

from dnalm.finetune.effects import gather_effects
from dnalm.logs import run_script


def main(sm) -> None:
    gather_effects(list(sm.input.regions), sm.output.table)


run_script(snakemake, main)
