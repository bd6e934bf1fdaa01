"""Snakemake adapter: saturation mutagenesis of BED regions (rule saturation_mutagenesis)."""

import torch

from dnalm.logs import run_script
from dnalm.score.run import saturate_regions
from dnalm.score.settings import score_config


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    saturate_regions(
        sm.params.model_dir,
        sm.input.fasta,
        sm.input.bed,
        sm.output.table,
        sm.output.bigwig,
        cfg=score_config(sm.params.scoring),
        match_chr_prefix=sm.params.match_chr_prefix,
        gpus=int(sm.resources.get("gpu", 0)),
        trust_remote_code=sm.params.trust_remote_code,
    )


run_script(snakemake, main)
