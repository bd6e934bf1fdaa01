# dnalm: genomes -> chunks -> tokens -> models -> adapters -> scores.
# This file only wires stages together; every rule calls one function of the dnalm package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/genome.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
