"""Snakemake adapter: mutation map of BED regions with a fine-tuned run (rule
effects_saturation)."""

import torch

from dnalm.finetune.effects import saturate_effects
from dnalm.finetune.settings import effect_settings
from dnalm.logs import run_script


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    saturate_effects(sm.input.run, sm.input.fasta, sm.input.bed, sm.output.table,
                     sm.output.bigwig, sm.output.picture,
                     settings=effect_settings(sm.params.settings),
                     match_chr_prefix=sm.params.match_chr_prefix,
                     gpus=int(sm.resources.get("gpu", 0)))


run_script(snakemake, main)
