"""Snakemake adapter: cut one prepared genome into train/validation/test Parquet chunks."""

from dnalm.chunks import chunk_genome
from dnalm.config import chunk_config, split_config
from dnalm.logs import run_script


def main(sm) -> None:
    chunk_genome(
        sm.input.fasta,
        sm.output[0],
        genome_id=sm.wildcards.genome,
        chunk_cfg=chunk_config(sm.params.chunking, sm.params.seed),
        split_cfg=split_config(sm.params.split, sm.params.seed),
        threads=sm.threads,
    )


run_script(snakemake, main)
