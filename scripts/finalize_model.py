"""Snakemake adapter: publish the pretrained model with its metrics (rule finalize_model)."""

from pathlib import Path

from dnalm.logs import run_script
from dnalm.train.finalize import finalize


def main(sm) -> None:
    # chunks: the pretraining genomes' chunk directories, for the Markov baselines
    chunks = list(getattr(sm.input, "chunks", None) or []) or None
    finalize(Path(sm.output.weights).parent, list(sm.input.segments), chunk_dirs=chunks)


run_script(snakemake, main)
