# Embeddings of the user's sequence sets (FASTA, tables, BED on a genome) by models and by
# fine-tuned runs (the encoder with its LoRA adapter), and their report sections.
# Reading a set and embedding it live in dnalm.inputs and dnalm.embed.
import dnalm.inputs as sequence_inputs

EMBEDDINGS = config.get("embeddings", {})


def _check_sequence_sets(section, name):
    """Every set names one input (and a known genome); every run is a fine-tuning run."""
    for _set, _spec in section.get("inputs", {}).items():
        try:
            sequence_inputs.spec_source(_spec, where=f"{name}.inputs.{_set}")
        except DnalmError as _error:
            sys.exit(f"dnalm: error: {_error}")
        _genome = _spec.get("genome")
        if _spec.get("bed") and not finetune_plan.is_genome_path(_genome) and _genome not in GENOMES:
            sys.exit(f"dnalm: error: {name}.inputs.{_set}: genome {_genome!r} is not in the "
                     f"genome sheet ({config['genomes']})")
    for _run in section.get("runs", []):
        _task, _, _name = _run.partition("/")
        if _task not in FINETUNE_TASKS or _name not in FINETUNE_RUNS:
            sys.exit(f"dnalm: error: {name}.runs: {_run!r} is not a task/run under finetune")


_check_sequence_sets(EMBEDDINGS, "embeddings")


def embedding_set_files(wildcards):
    return sequence_inputs.spec_files(EMBEDDINGS["inputs"][wildcards.seqset])


def embed_targets():
    targets = []
    for name in EMBEDDINGS.get("inputs", {}):
        bases = [paths.embeddings(name, m) for m in EMBEDDINGS.get("models", [])]
        bases += [paths.embeddings(name, f"finetune/{r}") for r in EMBEDDINGS.get("runs", [])]
        for base in bases:
            targets += [f"{base}.parquet", f"{base}_report.html", f"{base}_pca.png"]
    return targets


rule embed_model:
    input:
        model=lambda wc: model_input(wc.model),
        sequences=embedding_set_files,
    output:
        paths.embeddings() + ".parquet",
    wildcard_constraints:
        seqset=r"[^/]+",
    params:
        spec=lambda wc: EMBEDDINGS["inputs"][wc.seqset],
        settings={k: v for k, v in EMBEDDINGS.items() if k not in ("inputs", "models", "runs")},
        model_dir=lambda wc: model_dir(wc.model),
        trust_remote_code=lambda wc: trusts_remote_code(wc.model),
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    log:
        paths.log("embeddings", "{seqset}_{model}"),
    benchmark:
        paths.benchmark("embeddings", "{seqset}_{model}")
    threads: threads_for("embed")
    resources:
        mem_mb=mem_for("embed"),
        runtime=runtime_for("embed"),
        **gpu_resources("embed"),
    script:
        "../scripts/embed.py"


rule embed_run:
    input:
        run=paths.finetune_run(run="{run}"),
        sequences=embedding_set_files,
    output:
        paths.finetuned_embeddings() + ".parquet",
    wildcard_constraints:
        seqset=r"[^/]+",
    params:
        spec=lambda wc: EMBEDDINGS["inputs"][wc.seqset],
        settings={k: v for k, v in EMBEDDINGS.items() if k not in ("inputs", "models", "runs")},
        model_dir=lambda wc: paths.finetune_run(wc.task, wc.run),
        trust_remote_code=False,
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    log:
        paths.log("embeddings", "{seqset}_{task}_{run}"),
    benchmark:
        paths.benchmark("embeddings", "{seqset}_{task}_{run}")
    threads: threads_for("embed")
    resources:
        mem_mb=mem_for("embed"),
        runtime=runtime_for("embed"),
        **gpu_resources("embed"),
    script:
        "../scripts/embed.py"


rule embedding_report:
    input:
        paths.embeddings(encoder="{encoder}") + ".parquet",
    output:
        table=report(paths.embeddings(encoder="{encoder}") + "_report.html", category="Embeddings",
                     labels={"sequences": "{seqset}", "model": "{encoder}", "figure": "table"}),
        picture=report(paths.embeddings(encoder="{encoder}") + "_pca.png", category="Embeddings",
                       labels={"sequences": "{seqset}", "model": "{encoder}",
                               "figure": "principal components"}),
    wildcard_constraints:
        seqset=r"[^/]+",
        encoder=r"[^/]+|finetune/[^/]+/[^/]+",
    log:
        paths.log("report", "embeddings_{seqset}_{encoder}"),
    benchmark:
        paths.benchmark("report", "embeddings_{seqset}_{encoder}")
    threads: 1
    script:
        "../scripts/report_embeddings.py"
