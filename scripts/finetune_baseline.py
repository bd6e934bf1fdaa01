"""Snakemake adapter: k-mer logistic-regression baseline for one task (rule finetune_baseline)."""

from dnalm.finetune import baseline_settings, kmer_baseline
from dnalm.logs import run_script


def main(sm) -> None:
    kmer_baseline(
        sm.params.spec,
        sm.output[0],
        settings=baseline_settings(sm.params.baseline, seed=sm.params.seed),
        genome_fasta=sm.params.genome_fasta or None,
    )


run_script(snakemake, main)
