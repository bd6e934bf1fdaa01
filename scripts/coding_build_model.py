"""Snakemake adapter: build the demo's RANDOM, UNTRAINED placeholder ESM model (rule
coding_placeholder_model). Its protein scores are meaningless; it only exercises the code path."""

import logging

from dnalm.coding.protein_lm import build_random_esm
from dnalm.logs import run_script


def main(sm) -> None:
    build_random_esm(sm.output[0], seed=int(sm.params.seed))
    logging.getLogger("dnalm").warning(
        "built %s: a RANDOM, UNTRAINED placeholder protein model (scores are meaningless)",
        sm.output[0])


run_script(snakemake, main)
