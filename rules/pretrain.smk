# Masked-LM pretraining in resumable, wall-time-bounded segments (one job each), then the final
# Hugging Face model directory.

PRETRAIN = config["pretraining"]
_PRETRAIN_KEYS = ("tokenizer", "genomes")


def pretrain_model(name):
    return PRETRAIN["models"][name]


def pretrain_genomes(name):
    return pretrain_model(name).get("genomes") or list(GENOMES)


def n_segments(name):
    spec = pretrain_model(name)
    steps = int(spec.get("total_steps", 10_000))
    per_segment = int(spec.get("segment_steps", 2_000))
    return max(1, -(-steps // per_segment))


def segment_params(name):
    """The run's settings without total_steps: raising it later must not rerun the finished
    segments (Snakemake reruns a job whose params change); the script reads it from config."""
    return {k: v for k, v in pretrain_model(name).items()
            if k not in _PRETRAIN_KEYS and k != "total_steps"}


for _name, _spec in PRETRAIN["models"].items():
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
    return [f"results/models/{name}/model.safetensors" for name in PRETRAIN["models"]]


def pretrain_inputs(wildcards):
    name, segment = wildcards.model, int(wildcards.segment)
    tok = pretrain_model(name)["tokenizer"]
    inputs = {
        "tokenizer": f"results/tokenizers/{tok}/dnalm_tokenizer.json",
        "tokenizer_hf": f"results/tokenizers/{tok}/tokenizer.json",
        "tokens": [f"results/genomes/{g}/tokens/{tok}" for g in pretrain_genomes(name)],
    }
    if segment > 0:
        inputs["previous"] = f"results/models/{name}/segments/{segment - 1}"
    return inputs


rule pretrain_segment:
    input:
        unpack(pretrain_inputs),
    output:
        directory("results/models/{model}/segments/{segment}"),
    params:
        settings=lambda wc: segment_params(wc.model),
    log:
        "logs/pretrain/{model}_segment{segment}.log",
    benchmark:
        "results/benchmarks/pretrain/{model}_segment{segment}.tsv"
    threads: threads_for("pretrain_segment")
    resources:
        mem_mb=mem_for("pretrain_segment"),
        runtime=runtime_for("pretrain_segment"),
        **gpu_resources("pretrain_segment"),
    script:
        "../scripts/pretrain_segment.py"


rule finalize_model:
    input:
        segments=lambda wc: expand("results/models/{{model}}/segments/{segment}",
                                   segment=range(n_segments(wc.model))),
    output:
        weights="results/models/{model}/model.safetensors",
        config="results/models/{model}/config.json",
        tokenizer="results/models/{model}/tokenizer.json",
        tokenizer_meta="results/models/{model}/dnalm_tokenizer.json",
        metrics="results/models/{model}/metrics.parquet",
        curve=report("results/models/{model}/loss_curve.png", category="Pretraining",
                     caption="../report/pretraining.rst", labels={"model": "{model}"}),
    log:
        "logs/pretrain/{model}_finalize.log",
    benchmark:
        "results/benchmarks/pretrain/{model}_finalize.tsv"
    threads: 1
    resources:
        mem_mb=mem_for("finalize_model"),
        runtime=runtime_for("finalize_model"),
    script:
        "../scripts/finalize_model.py"
