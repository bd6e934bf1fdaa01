"""Snakemake adapter: a fine-tuned run's predictions on one sequence set (rule predict)."""

import torch

from dnalm.finetune.predict import predict_set
from dnalm.finetune.settings import predict_settings
from dnalm.logs import run_script


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    predict_set(sm.input.run, sm.params.spec, sm.output[0],
                settings=predict_settings(sm.params.settings),
                match_chr_prefix=sm.params.match_chr_prefix,
                gpus=int(sm.resources.get("gpu", 0)),
                name=f"predictions.inputs.{sm.wildcards.seqset}")


run_script(snakemake, main)
