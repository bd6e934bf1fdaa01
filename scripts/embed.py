"""Snakemake adapter: embed one sequence set with a model or fine-tuned run (rules embed_*)."""

import torch

from dnalm.embed import EmbedSettings, embed_set
from dnalm.logs import run_script


def main(sm) -> None:
    torch.set_num_threads(sm.threads)
    embed_set(sm.params.model_dir, sm.params.spec, sm.output[0],
              settings=EmbedSettings.from_config(sm.params.settings),
              match_chr_prefix=sm.params.match_chr_prefix,
              gpus=int(sm.resources.get("gpu", 0)),
              trust_remote_code=sm.params.trust_remote_code,
              name=f"embeddings.inputs.{sm.wildcards.seqset}")


run_script(snakemake, main)
