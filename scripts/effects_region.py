"""Snakemake adapter: one region job of a fine-tuned run's variant effects (rule
effects_region)."""

import torch

from dnalm.finetune.effects import effects_region
from dnalm.finetune.settings import effect_settings
from dnalm.logs import run_script


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    effects_region(sm.input.run, sm.input.fasta, None, sm.output[0],
                   settings=effect_settings(sm.params.settings),
                   partition=sm.input.partition, job=int(sm.wildcards.region),
                   match_chr_prefix=sm.params.match_chr_prefix,
                   gpus=int(sm.resources.get("gpu", 0)))


run_script(snakemake, main)
