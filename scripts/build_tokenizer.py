"""Snakemake adapter: build or train one tokenizer (rule build_tokenizer)."""

from pathlib import Path

from dnalm.io import list_parts
from dnalm.logs import run_script
from dnalm.tokenizers import build_tokenizer


def main(sm) -> None:
    parts = [p for d in sm.input.chunks for p in list_parts(Path(d) / "train")]
    build_tokenizer(sm.params.spec, Path(sm.output.hf).parent, train_parts=parts,
                    seed=sm.params.seed)


run_script(snakemake, main)
