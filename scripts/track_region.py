"""Snakemake adapter: predict one region of a fine-tuned track (rule track_region)."""

import torch

from dnalm.logs import run_script
from dnalm.score.tracks import predict_track_region


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    spec = sm.params.spec
    predict_track_region(
        sm.input.run, sm.input.fasta, sm.output[0], window=spec["window_bp"],
        stride=spec["stride_bp"], region=int(sm.wildcards.region),
        n_regions=int(spec.get("regions", 2)), class_index=int(spec.get("class_index", 1)),
        batch_size=int(spec.get("batch_size", 64)), gpus=int(sm.resources.get("gpu", 0)),
    )


run_script(snakemake, main)
