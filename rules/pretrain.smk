# Masked-LM pretraining in resumable, wall-time-bounded jobs of steps_per_job steps (job n writes
# results/models/{model}/segments/{n}), then the final Hugging Face model directory.
from dnalm.train.config import pretrain_settings

PRETRAIN = config["pretraining"]


def pretrain_model(name):
    return PRETRAIN["models"][name]


def pretrain_genomes(name):
    return pretrain_model(name).get("genomes") or list(GENOMES)


def n_segments(name):
    """How many jobs (checkpoints segments/0..n-1) the run is cut into."""
    return pretrain_settings(config, name).num_segments


for _name, _spec in PRETRAIN["models"].items():
    try:  # every setting checked now, not when its job starts
        pretrain_settings(config, _name)
    except DnalmError as _error:
        sys.exit(f"dnalm: error: pretraining.models.{_name}: {_error}")
    if _spec["tokenizer"] not in TOKENIZERS:
        sys.exit(f"dnalm: error: pretraining.models.{_name}: tokenizer {_spec['tokenizer']!r} is "
                 "not defined under tokenizers")
    for _genome in pretrain_genomes(_name):
        if _genome not in GENOMES:
            sys.exit(f"dnalm: error: pretraining.models.{_name}: genome {_genome!r} is not in "
                     f"the genome sheet ({config['genomes']})")
    if _name in config.get("external_models", {}):
        sys.exit(f"dnalm: error: model name {_name!r} is used by both pretraining.models and "
                 "external_models")


def pretrain_targets():
    # markov.parquet too: a model finalized before the Markov baselines existed gets them
    return [paths.model_dir(name) + f"/{file}" for name in PRETRAIN["models"]
            for file in ("model.safetensors", "markov.parquet")]


def pretrain_inputs(wildcards):
    name, segment = wildcards.model, int(wildcards.segment)
    tok = pretrain_model(name)["tokenizer"]
    inputs = {
        "tokenizer": paths.tokenizer_dir(tok) + "/dnalm_tokenizer.json",
        "tokenizer_hf": paths.tokenizer_dir(tok) + "/tokenizer.json",
        "tokens": [paths.tokens(g, tok) for g in pretrain_genomes(name)],
    }
    if segment > 0:
        inputs["previous"] = paths.segment_dir(name, segment - 1)
    return inputs


rule pretrain_segment:
    input:
        unpack(pretrain_inputs),
    output:
        directory(paths.segment_dir()),
    params:
        # what Snakemake compares to rerun a finished job: every setting but total_steps, which
        # the script reads through pretrain_settings (raising it appends jobs, reruns none)
        settings=lambda wc: pretrain_settings(config, wc.model).rule_params(),
    log:
        paths.log("pretrain", "{model}_segment{segment}"),
    benchmark:
        paths.benchmark("pretrain", "{model}_segment{segment}")
    threads: threads_for("pretrain_segment")
    resources:
        mem_mb=mem_for("pretrain_segment"),
        runtime=runtime_for("pretrain_segment"),
        **gpu_resources("pretrain_segment"),
    script:
        "../scripts/pretrain_segment.py"


rule finalize_model:
    input:
        segments=lambda wc: [paths.segment_dir(wc.model, n) for n in range(n_segments(wc.model))],
        # the Markov baselines' train/validation split: the chunks of the pretraining genomes
        chunks=lambda wc: [paths.chunks(g) for g in pretrain_genomes(wc.model)],
    output:
        weights=paths.model_dir() + "/model.safetensors",
        config=paths.model_dir() + "/config.json",
        tokenizer=paths.model_dir() + "/tokenizer.json",
        tokenizer_meta=paths.model_dir() + "/dnalm_tokenizer.json",
        metrics=paths.model_dir() + "/metrics.parquet",
        markov=paths.model_dir() + "/markov.parquet",
        curve=report(paths.model_dir() + "/loss_curve.png", category="Pretraining",
                     caption="../report/pretraining.rst", labels={"model": "{model}"}),
    log:
        paths.log("pretrain", "{model}_finalize"),
    benchmark:
        paths.benchmark("pretrain", "{model}_finalize")
    threads: 1
    resources:
        mem_mb=mem_for("finalize_model"),
        runtime=runtime_for("finalize_model"),
    script:
        "../scripts/finalize_model.py"
