# Wiring helpers only: config validation, the genome sheet, resources and input functions.
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dnalm import paths
from dnalm.config import describe_config_error
from dnalm.errors import DnalmError
from dnalm.sheet import parse_sheet

CONFIG_SCHEMA = workflow.source_path("../config/config.schema.json")

try:
    validate(config, "../config/config.schema.json")
except WorkflowError:
    sys.exit(f"dnalm: error: {describe_config_error(config, CONFIG_SCHEMA)}")

try:
    GENOMES = parse_sheet(config["genomes"])
except DnalmError as _error:
    sys.exit(f"dnalm: error: {_error}")


wildcard_constraints:
    genome=r"[A-Za-z0-9][A-Za-z0-9_.\-]*",
    split=r"train|validation|test",
    model=r"[^/]+",
    vcf=r"[^/]+",
    name=r"[^/]+",
    region=r"\d+",
    tokenizer=r"[^/]+",
    track=r"[^/]+",
    task=r"[^/]+",
    pmodel=r"(?!consequences\b)[^/_]+",


def genome_entry(wildcards):
    return GENOMES[wildcards.genome]


def rule_resources(rule_name):
    """threads/mem_mb/runtime for a rule from config['resources'] (falls back to 'default')."""
    table = config.get("resources", {})
    merged = {"threads": 1, "mem_mb": 2000, "runtime": 60}
    merged.update(table.get("default", {}))
    merged.update(table.get(rule_name, {}))
    return merged


def threads_for(rule_name):
    return rule_resources(rule_name)["threads"]


def mem_for(rule_name):
    return rule_resources(rule_name)["mem_mb"]


def runtime_for(rule_name):
    return rule_resources(rule_name)["runtime"]


def genome_source_input(wildcards):
    """The file prepare_genome reads: the local FASTA itself or the downloaded copy."""
    entry = genome_entry(wildcards)
    if entry.source.is_remote:
        return paths.download(wildcards.genome)
    return entry.source.location


def genome_outputs(genome):
    return [paths.genome_fasta(genome), paths.genome_stats(genome), paths.chunks(genome)]


def all_outputs():
    outputs = []
    for genome in GENOMES:
        outputs += genome_outputs(genome)
    outputs += tokenizer_targets()
    outputs += pretrain_targets()
    outputs += finetune_targets()
    outputs += score_targets()
    outputs += track_targets()
    outputs += report_targets()
    outputs += coding_targets()
    outputs += embed_targets()
    outputs += predict_targets()
    outputs += effects_targets()
    outputs += evaluate_targets()
    return outputs


def gpu_resources(rule_name):
    """GPU requests under the name every executor reads (one place, from config).

    SLURM reads ``gpu`` (+ ``gpu_model`` from the profile), Kubernetes ``gpu`` with
    ``gpu_manufacturer``, Google Batch ``nvidia_gpu``, AWS Batch ``_gpus``; CPU rules get none.
    """
    n = int(rule_resources(rule_name).get("gpu", 0))
    if n <= 0:
        return {}
    return {"gpu": n, "gpu_manufacturer": "nvidia", "nvidia_gpu": n, "_gpus": n}


def model_dir(name):
    """A model's Hugging Face directory: an external checkpoint from config, or the pipeline's."""
    external = config.get("external_models", {}).get(name)
    if external:
        return external["path"]
    return paths.model_dir(name)


def model_input(name):
    """What a rule using a model depends on: the pipeline model's weights (so Snakemake trains
    it first) or the external checkpoint's directory."""
    if name in config.get("external_models", {}):
        return model_dir(name)
    if name not in config.get("pretraining", {}).get("models", {}):
        sys.exit(f"dnalm: error: model {name!r} is neither under pretraining.models nor "
                 "external_models")
    # every file the model directory is read from, so remote storage fetches them all
    return [f"{paths.model_dir(name)}/{f}" for f in
            ("model.safetensors", "config.json", "tokenizer.json", "dnalm_tokenizer.json")]


def trusts_remote_code(name):
    return bool(config.get("external_models", {}).get(name, {}).get("trust_remote_code", False))
