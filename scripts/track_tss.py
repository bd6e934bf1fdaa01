"""Snakemake adapter: a track's enrichment at annotated TSSs (rule track_tss_enrichment)."""

from dnalm.finetune.tracks import write_tss_enrichment
from dnalm.logs import run_script


def main(sm) -> None:
    write_tss_enrichment(sm.input.track, sm.input.tss, sm.output[0])


run_script(snakemake, main)
