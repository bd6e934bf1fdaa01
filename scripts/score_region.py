"""Snakemake adapter: score the variants of one genome region (rule score_variants_region)."""

import torch

from dnalm.logs import run_script
from dnalm.score.run import score_vcf_region
from dnalm.score.settings import score_config


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    score_vcf_region(
        sm.params.model_dir,
        sm.input.fasta,
        sm.input.variants,
        sm.output[0],
        cfg=score_config(sm.params.scoring),
        region=int(sm.wildcards.region),
        n_regions=int(sm.params.regions),
        match_chr_prefix=sm.params.match_chr_prefix,
        gpus=int(sm.resources.get("gpu", 0)),
        trust_remote_code=sm.params.trust_remote_code,
    )


run_script(snakemake, main)
