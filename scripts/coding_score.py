"""Snakemake adapter: coding consequences per (variant, transcript), scored with a protein LM
when model directories are given (rules coding_consequences and score_coding)."""

import torch

from dnalm.coding.run import score_coding
from dnalm.logs import run_script


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    score_coding(
        sm.input.fasta,
        sm.input.annotation,
        sm.input.variants,
        list(sm.params.model_dirs),
        sm.output.table,
        mode=sm.params.coding.get("mode", "masked-marginal"),
        batch_size=int(sm.params.coding.get("batch_size", 8)),
        codon_tables=sm.params.coding.get("codon_tables") or {},
        match_chr_prefix=sm.params.match_chr_prefix,
    )


run_script(snakemake, main)
