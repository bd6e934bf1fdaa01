# Evaluation of zero-shot scores and fine-tuned variant effects against variant labels: one job
# per labelled set (the table, its report page and the ROC/precision-recall picture). Reading
# labels, joining and the metrics live in dnalm.evaluate.

from dnalm.evaluate import evaluation_settings, label_spec

EVALUATION = config.get("evaluation", {})


def _evaluation_error(message):
    sys.exit(f"dnalm: error: {message}")


def _effects_section():
    """The fine-tuned effects section (rules/effects.smk), absent in older configs."""
    return config.get("effects") or {}


try:
    evaluation_settings(EVALUATION, seed=config["seed"])
except DnalmError as _error:
    _evaluation_error(_error)
for _model in EVALUATION.get("models", []):
    if _model not in SCORING["models"]:
        _evaluation_error(f"evaluation.models: {_model!r} is not under scoring.models (its "
                          "zero-shot scores are not computed)")
for _run in EVALUATION.get("runs", []):
    if _run not in _effects_section().get("runs", []):
        _evaluation_error(f"evaluation.runs: {_run!r} is not under effects.runs (its variant "
                          "effects are not computed)")
for _name, _spec in EVALUATION.get("sets", {}).items():
    _where = f"evaluation.sets.{_name}"
    if _spec["variants"] not in SCORING["variants"]:
        _evaluation_error(f"{_where}.variants: {_spec['variants']!r} is not a scoring.variants "
                          "set")
    if EVALUATION.get("runs") and _spec["variants"] not in _effects_section().get("variants", []):
        _evaluation_error(f"{_where}.variants: {_spec['variants']!r} is not under "
                          "effects.variants (fine-tuned effects of evaluation.runs are computed "
                          "there)")
    try:
        _label = label_spec(_spec["label"], _spec.get("strata"), where=f"{_where}.label")
    except DnalmError as _error:
        _evaluation_error(_error)
    _path = SCORING["variants"][_spec["variants"]]["path"]
    if _label.info and not is_vcf(_path):
        _evaluation_error(f"{_where}.label: info {_label.info!r} needs a VCF, and "
                          f"{_spec['variants']} is a table ({_path}): name a column")
    if _label.column and not _label.table and is_vcf(_path):
        _evaluation_error(f"{_where}.label: column {_label.column!r}, but {_spec['variants']} "
                          f"is a VCF ({_path}): name an INFO field (info:) or a label table")


def evaluation_tables(name):
    """[(name, path, kind)] of every table the set is evaluated on: the zero-shot scores of
    evaluation.models, then the effects of evaluation.runs."""
    spec = EVALUATION["sets"][name]
    variants = spec["variants"]
    genome = SCORING["variants"][variants]["genome"]
    tables = [(model, paths.scores(genome, model, variants) + ".parquet", "zero-shot")
              for model in EVALUATION.get("models", [])]
    for run in EVALUATION.get("runs", []):
        task, _, run_name = run.partition("/")
        tables.append((run, paths.effects(genome, task, run_name, variants) + ".parquet",
                       "effects"))
    return tables


def evaluate_targets():
    if not (EVALUATION.get("models") or EVALUATION.get("runs")):
        return []
    return [paths.evaluation(name) + ext for name in EVALUATION.get("sets", {})
            for ext in (".parquet", ".html", "_curves.png")]


def evaluation_inputs(wildcards):
    spec = EVALUATION["sets"][wildcards.evalset]
    inputs = {"tables": [path for _, path, _ in evaluation_tables(wildcards.evalset)],
              "variants": SCORING["variants"][spec["variants"]]["path"]}
    if spec["label"].get("table"):
        inputs["labels"] = spec["label"]["table"]
    return inputs


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        table=paths.evaluation() + ".parquet",
        html=report(paths.evaluation() + ".html", category="Evaluation",
                    labels={"set": "{evalset}", "figure": "table"}),
        curves=report(paths.evaluation() + "_curves.png", category="Evaluation",
                      labels={"set": "{evalset}", "figure": "ROC and precision-recall"}),
    wildcard_constraints:
        evalset=r"[^/]+",
    params:
        spec=lambda wc: EVALUATION["sets"][wc.evalset],
        tables=lambda wc: evaluation_tables(wc.evalset),
        settings={k: v for k, v in EVALUATION.items() if k not in ("sets", "models", "runs")},
        seed=config["seed"],
    log:
        paths.log("evaluation", "{evalset}"),
    benchmark:
        paths.benchmark("evaluation", "{evalset}")
    threads: 1
    resources:
        mem_mb=mem_for("evaluate"),
        runtime=runtime_for("evaluate"),
    script:
        "../scripts/evaluate.py"
