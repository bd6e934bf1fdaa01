"""Snakemake adapter: publish the pretrained model with its metrics (rule finalize_model)."""

from pathlib import Path

from dnalm.logs import run_script
from dnalm.train.finalize import finalize


def main(sm) -> None:
    finalize(Path(sm.output.weights).parent, list(sm.input.segments))


run_script(snakemake, main)
