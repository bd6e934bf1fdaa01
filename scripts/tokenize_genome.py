"""Snakemake adapter: tokenize one genome's chunk shards (rule tokenize_genome)."""

from pathlib import Path

from dnalm.logs import run_script
from dnalm.tokenizers import tokenize_shards


def main(sm) -> None:
    tokenize_shards(Path(sm.input.meta).parent, sm.input.chunks, sm.output[0],
                    threads=sm.threads)


run_script(snakemake, main)
