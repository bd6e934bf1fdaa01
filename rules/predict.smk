# Predictions of fine-tuned runs on the user's sequence sets (FASTA, tables, BED on a genome),
# and their report section. Reading a set and predicting it live in dnalm.inputs and
# dnalm.finetune.predict; sets are checked as in rules/embed.smk.

PREDICTIONS = config.get("predictions", {})

_check_sequence_sets(PREDICTIONS, "predictions")


def predict_targets():
    targets = []
    for name in PREDICTIONS.get("inputs", {}):
        for run in PREDICTIONS.get("runs", []):
            task, _, run_name = run.partition("/")
            base = paths.predictions(name, task, run_name)
            targets += [f"{base}.parquet", f"{base}.html"]
    return targets


rule predict:
    input:
        run=paths.finetune_run(run="{run}"),
        sequences=lambda wc: sequence_inputs.spec_files(PREDICTIONS["inputs"][wc.seqset]),
    output:
        paths.predictions() + ".parquet",
    wildcard_constraints:
        seqset=r"[^/]+",
    params:
        spec=lambda wc: PREDICTIONS["inputs"][wc.seqset],
        settings={k: v for k, v in PREDICTIONS.items() if k not in ("inputs", "runs")},
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    log:
        paths.log("predictions", "{seqset}_{task}_{run}"),
    benchmark:
        paths.benchmark("predictions", "{seqset}_{task}_{run}")
    threads: threads_for("predict")
    resources:
        mem_mb=mem_for("predict"),
        runtime=runtime_for("predict"),
        **gpu_resources("predict"),
    script:
        "../scripts/predict.py"


rule prediction_report:
    input:
        paths.predictions() + ".parquet",
    output:
        report(paths.predictions() + ".html", category="Predictions",
               labels={"sequences": "{seqset}", "run": "{task}/{run}"}),
    wildcard_constraints:
        seqset=r"[^/]+",
    log:
        paths.log("report", "predictions_{seqset}_{task}_{run}"),
    benchmark:
        paths.benchmark("report", "predictions_{seqset}_{task}_{run}")
    threads: 1
    script:
        "../scripts/report_predictions.py"
