"""Snakemake adapter: predict one region of a fine-tuned track (rule track_region)."""

import torch

from dnalm.finetune.settings import track_settings
from dnalm.finetune.tracks import predict_track_region
from dnalm.logs import run_script


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    predict_track_region(
        sm.input.run, sm.input.fasta, sm.output[0],
        settings=track_settings(sm.params.spec, name=sm.wildcards.track),
        region=int(sm.wildcards.region), gpus=int(sm.resources.get("gpu", 0)),
    )


run_script(snakemake, main)
