"""Snakemake adapter: saturation mutagenesis of one job's share of a BED set (rule
saturation_region)."""

import torch

from dnalm.logs import run_script
from dnalm.score.run import saturate_job
from dnalm.score.settings import score_config


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    saturate_job(
        sm.params.model_dir,
        sm.input.fasta,
        sm.input.bed,
        sm.output[0],
        cfg=score_config(sm.params.scoring),
        job=int(sm.wildcards.region),
        bases_per_job=sm.params.bases_per_job,
        match_chr_prefix=sm.params.match_chr_prefix,
        gpus=int(sm.resources.get("gpu", 0)),
        trust_remote_code=sm.params.trust_remote_code,
    )


run_script(snakemake, main)
