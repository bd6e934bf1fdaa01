"""Snakemake adapter: merge a track's regions into Parquet, bedGraph and bigWig."""

from pathlib import Path

from dnalm.finetune.tracks import gather_track
from dnalm.logs import run_script


def main(sm) -> None:
    fasta = str(Path(sm.input.fai).with_suffix(""))
    gather_track(list(sm.input.parts), fasta, sm.output.table, sm.output.bedgraph,
                 sm.output.bigwig, stride=int(sm.params.stride), out_png=sm.output.picture)


run_script(snakemake, main)
