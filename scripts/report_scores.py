"""Snakemake adapter: score distribution and top variants for the report."""

import shutil
from pathlib import Path

from dnalm.logs import run_script
from dnalm.report import top_variants_html


def main(sm) -> None:
    title = f"Top variants: {sm.wildcards.vcf} scored by {sm.wildcards.model}"
    top_variants_html(sm.input[0], sm.output.top, title=title)
    shutil.copyfile(Path(sm.input[0]) / "distribution.png", sm.output.plot)


run_script(snakemake, main)
