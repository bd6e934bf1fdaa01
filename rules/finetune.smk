# Fine-tuning on labelled tasks (LoRA or full), the k-mer baseline, and the GUE-style summary.
# Decisions (which files a task reads, which model and method a run uses) live in
# dnalm.finetune.plan; model names resolve through model_dir/trusts_remote_code (common.smk).
import dnalm.finetune.plan as finetune_plan

FINETUNE = config.get("finetune", {})

try:
    FINETUNE_RUNS = finetune_plan.finetune_runs(FINETUNE)
    FINETUNE_TASKS = finetune_plan.finetune_tasks(FINETUNE)
except DnalmError as _error:
    sys.exit(f"dnalm: error: {_error}")

for _name, _spec in FINETUNE_TASKS.items():
    if (
        _spec["format"] == "bed"
        and not finetune_plan.is_genome_path(_spec["genome"])
        and _spec["genome"] not in GENOMES
    ):
        sys.exit(
            f"dnalm: error: finetune.tasks.{_name}: genome {_spec['genome']!r} is not in the "
            f"genome sheet ({config['genomes']})"
        )


def finetune_model_input(wildcards):
    """What the run depends on: the pipeline model's weights or the external checkpoint."""
    return model_input(FINETUNE_RUNS[wildcards.model]["model"])


def finetune_task_input(wildcards):
    """The task's split files (and, for BED tasks, the prepared genome and its indexes)."""
    return finetune_plan.task_input_files(FINETUNE_TASKS[wildcards.task])


def finetune_genome(wildcards):
    """Prepared genome of a BED task, '' for other formats."""
    return finetune_plan.task_genome_fasta(FINETUNE_TASKS[wildcards.task]) or ""


def finetune_targets():
    """Every fine-tuning run, each task's k-mer baseline and the summary (for rule all)."""
    if not FINETUNE_TASKS:
        return []
    return finetune_plan.run_dirs(FINETUNE_RUNS, FINETUNE_TASKS) + [
        paths.finetune_summary(),
        paths.finetune_summary("md"),
    ]


rule finetune:
    input:
        model=finetune_model_input,
        task=finetune_task_input,
    output:
        directory(paths.finetune_run()),
    wildcard_constraints:
        task=r"[A-Za-z0-9][A-Za-z0-9_.\-]*",
        model=r"(?!kmer_baseline$)[A-Za-z0-9][A-Za-z0-9_.\-]*",
    params:
        spec=lambda wc: FINETUNE_TASKS[wc.task],
        settings=lambda wc: finetune_plan.run_settings(FINETUNE, FINETUNE_RUNS[wc.model]),
        seed=config["seed"],
        trust_remote_code=lambda wc: trusts_remote_code(FINETUNE_RUNS[wc.model]["model"]),
        genome_fasta=finetune_genome,
        model_dir=lambda wc: model_dir(FINETUNE_RUNS[wc.model]["model"]),
    log:
        paths.log("finetune", "{task}/{model}"),
    benchmark:
        paths.benchmark("finetune", "{task}/{model}")
    threads: threads_for("finetune")
    resources:
        mem_mb=mem_for("finetune"),
        runtime=runtime_for("finetune"),
        **gpu_resources("finetune"),
    script:
        "../scripts/finetune.py"


rule finetune_baseline:
    input:
        task=finetune_task_input,
    output:
        directory(paths.finetune_run(run="kmer_baseline")),
    wildcard_constraints:
        task=r"[A-Za-z0-9][A-Za-z0-9_.\-]*",
    params:
        spec=lambda wc: FINETUNE_TASKS[wc.task],
        baseline=FINETUNE.get("baseline", {}),
        seed=config["seed"],
        genome_fasta=finetune_genome,
    log:
        paths.log("finetune", "{task}/kmer_baseline"),
    benchmark:
        paths.benchmark("finetune", "{task}/kmer_baseline")
    threads: 1
    resources:
        mem_mb=mem_for("finetune_baseline"),
        runtime=runtime_for("finetune_baseline"),
    script:
        "../scripts/finetune_baseline.py"


rule finetune_summary:
    input:
        lambda wc: finetune_plan.run_dirs(FINETUNE_RUNS, FINETUNE_TASKS),
    output:
        parquet=paths.finetune_summary(),
        markdown=paths.finetune_summary("md"),
    log:
        paths.log("finetune", "summary"),
    benchmark:
        paths.benchmark("finetune", "summary")
    threads: 1
    resources:
        mem_mb=mem_for("finetune_summary"),
        runtime=runtime_for("finetune_summary"),
    script:
        "../scripts/finetune_summary.py"
