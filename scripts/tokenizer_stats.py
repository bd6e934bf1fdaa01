"""Snakemake adapter: tokenizer statistics on the validation split (rule tokenizer_stats)."""

from pathlib import Path

from dnalm.io import list_parts
from dnalm.logs import run_script
from dnalm.tokenizers import tokenizer_stats


def main(sm) -> None:
    parts = [p for d in sm.input.chunks for p in list_parts(Path(d) / "validation")]
    tokenizer_stats(Path(sm.input.meta).parent, parts, sm.output.table, sm.output.plot)


run_script(snakemake, main)
