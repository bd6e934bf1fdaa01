# dnalm: genomes -> chunks -> tokens -> models -> adapters -> scores.
# This file only wires stages together; every rule calls one function of the dnalm package.
from snakemake.utils import min_version

min_version("9.0")


# The embedded demo config, unless the user gives their own with --configfile (merging the two
# would leak the demo's genomes and variant sets into the user's run); the JSON schema fills in
# defaults either way.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/genome.smk"
include: "rules/tokenizer.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/report.smk"
include: "rules/score.smk"
include: "rules/tracks.smk"
include: "rules/coding.smk"
include: "rules/embed.smk"
include: "rules/predict.smk"
include: "rules/effects.smk"
include: "rules/evaluate.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
