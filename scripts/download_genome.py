"""Snakemake adapter: download one genome's source file (rule download_genome)."""

from dnalm.download import fetch_source
from dnalm.logs import run_script
from dnalm.sources import resolve


def main(sm) -> None:
    dl = sm.params.download
    fetch_source(
        resolve(sm.params.source),
        sm.output[0],
        sha256=sm.params.sha256 or None,
        md5=sm.params.md5 or None,
        retries=dl["retries"],
        backoff_seconds=dl["backoff_seconds"],
        timeout_seconds=dl["timeout_seconds"],
    )


run_script(snakemake, main)
