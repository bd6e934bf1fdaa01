"""Snakemake adapter: score the variants of one region job (rule score_variants_region)."""

import torch

from dnalm.logs import run_script
from dnalm.score.run import score_vcf_region
from dnalm.score.settings import score_config


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    score_vcf_region(
        sm.params.model_dir,
        sm.input.fasta,
        None,
        sm.output[0],
        cfg=score_config(sm.params.scoring),
        partition=sm.input.partition,
        job=int(sm.wildcards.region),
        match_chr_prefix=sm.params.match_chr_prefix,
        gpus=int(sm.resources.get("gpu", 0)),
        trust_remote_code=sm.params.trust_remote_code,
    )


run_script(snakemake, main)
