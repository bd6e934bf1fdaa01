"""Snakemake adapter: validate + bgzip + faidx one genome and write its statistics."""

from dnalm.download import verify_local
from dnalm.fasta import prepare_genome
from dnalm.logs import run_script


def main(sm) -> None:
    if sm.params.local:  # downloads were verified while streaming
        verify_local(sm.input.source, sha256=sm.params.sha256 or None, md5=sm.params.md5 or None)
    prepare_genome(
        sm.input.source,
        sm.output.fasta,
        sm.output.stats,
        genome_id=sm.wildcards.genome,
        include=sm.params.include,
        exclude=sm.params.exclude,
    )


run_script(snakemake, main)
