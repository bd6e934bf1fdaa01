"""Snakemake adapter: an embeddings table and its principal-component picture for the report."""

from dnalm.embed import embeddings_report
from dnalm.logs import run_script


def main(sm) -> None:
    title = f"Embeddings: {sm.wildcards.seqset} by {sm.wildcards.encoder}"
    embeddings_report(sm.input[0], sm.output.table, sm.output.picture, title=title)


run_script(snakemake, main)
