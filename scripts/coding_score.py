"""Snakemake adapter: coding consequences per (variant, transcript), scored with a protein LM
when model directories are given (rules coding_consequences and score_coding)."""

import torch

from dnalm.coding.run import score_coding
from dnalm.coding.settings import coding_settings
from dnalm.logs import run_script


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    score_coding(
        sm.input.fasta,
        sm.input.annotation,
        sm.input.variants,
        list(sm.params.model_dirs),
        sm.output.table,
        settings=coding_settings(sm.params.coding),
        match_chr_prefix=sm.params.match_chr_prefix,
        gpus=int(sm.resources.get("gpu", 0)),
    )


run_script(snakemake, main)
