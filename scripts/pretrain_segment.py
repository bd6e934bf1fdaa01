"""Snakemake adapter: train one pretraining job (rule pretrain_segment).

The run's settings come from ``snakemake.config`` through the same function the rules use
(``pretrain_settings``): ``total_steps`` is deliberately not among the rule's params, since
Snakemake reruns a finished job whose params change and raising ``total_steps`` must only append
jobs to a run.
"""

from pathlib import Path

from dnalm.logs import run_script
from dnalm.train.config import pretrain_settings
from dnalm.train.launch import train_segment


def main(sm) -> None:
    train_segment(
        pretrain_settings(sm.config, sm.wildcards.model),
        tokenizer_dir=Path(sm.input.tokenizer).parent,
        train_dirs=[Path(d) / "train" for d in sm.input.tokens],
        validation_dirs=[Path(d) / "validation" for d in sm.input.tokens],
        segment=int(sm.wildcards.segment),
        previous_checkpoint=sm.input.get("previous"),
        out_dir=sm.output[0],
        threads=sm.threads,
        gpus=int(sm.resources.get("gpu", 0)),
    )


run_script(snakemake, main)
