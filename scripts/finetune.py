"""Snakemake adapter: fine-tune one model on one task (rule finetune)."""

from dnalm.finetune import finetune_settings, run_finetune
from dnalm.logs import run_script


def main(sm) -> None:
    settings = finetune_settings(
        sm.params.settings,
        seed=sm.params.seed,
        threads=sm.threads,
        gpus=int(sm.resources.get("gpu", 0)),
        trust_remote_code=sm.params.trust_remote_code,
    )
    run_finetune(
        sm.params.spec,
        sm.params.model_dir,
        sm.output[0],
        settings,
        model_name=sm.wildcards.model,
        genome_fasta=sm.params.genome_fasta or None,
    )


run_script(snakemake, main)
