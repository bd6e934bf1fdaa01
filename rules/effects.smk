# Variant effects of fine-tuned runs (alt - ref in the run's prediction) on the scoring
# variant sets, in the region jobs of their partitions (rules/score.smk), gathered into one
# table + annotated VCF; mutation maps of the scoring saturation sets.
# Logic: dnalm.finetune.effects; settings: EffectSettings (checked here at parse time).
from dnalm.finetune.settings import EFFECT_WORKFLOW_KEYS, effect_settings

EFFECTS = config.get("effects", {})
try:
    effect_settings(EFFECTS)
except DnalmError as _error:
    sys.exit(f"dnalm: error: {_error}")

for _run in EFFECTS.get("runs", []):
    _task, _, _name = _run.partition("/")
    if _task not in FINETUNE_TASKS or _name not in FINETUNE_RUNS:
        sys.exit(f"dnalm: error: effects.runs: {_run!r} is not a task/run under finetune")
for _key in ("variants", "saturation"):
    for _set in EFFECTS.get(_key, []):
        if _set not in SCORING.get(_key, {}):
            sys.exit(f"dnalm: error: effects.{_key}: {_set!r} is not a scoring.{_key} set")


def effects_targets():
    targets = []
    for run in EFFECTS.get("runs", []):
        task, _, name = run.partition("/")
        for vcf in EFFECTS.get("variants", []):
            spec = SCORING["variants"][vcf]
            base = paths.effects(spec["genome"], task, name, vcf)
            targets += [f"{base}.parquet", f"{base}.html"]
            if is_vcf(spec["path"]):
                targets.append(f"{base}.vcf.gz")
        for sat in EFFECTS.get("saturation", []):
            base = paths.effects_saturation(SCORING["saturation"][sat]["genome"], task, name, sat)
            targets += [f"{base}.parquet", f"{base}.bw", f"{base}_map.png"]
    return targets


rule effects_region:
    input:
        run=paths.finetune_run(run="{run}"),
        **paths.genome_files(),
        partition=paths.variant_partition(),
    output:
        paths.effects() + "/regions/{region}.parquet",
    params:
        settings={k: v for k, v in EFFECTS.items() if k not in EFFECT_WORKFLOW_KEYS},
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    wildcard_constraints:
        run=r"[^/]+",
    log:
        paths.log("effects", "{genome}_{task}_{run}_{vcf}_{region}"),
    benchmark:
        paths.benchmark("effects", "{genome}_{task}_{run}_{vcf}_{region}")
    threads: threads_for("effects_region")
    resources:
        mem_mb=mem_for("effects_region"),
        runtime=runtime_for("effects_region"),
        **gpu_resources("effects_region"),
    script:
        "../scripts/effects_region.py"


rule gather_effects:
    input:
        regions=lambda wc: [f"{paths.effects(wc.genome, wc.task, wc.run, wc.vcf)}/regions/{r}"
                            ".parquet" for r in variant_jobs(wc.genome, wc.vcf)],
    output:
        table=paths.effects() + ".parquet",
    wildcard_constraints:
        run=r"[^/]+",
    log:
        paths.log("effects", "{genome}_{task}_{run}_{vcf}_gather"),
    benchmark:
        paths.benchmark("effects", "{genome}_{task}_{run}_{vcf}_gather")
    threads: 1
    resources:
        mem_mb=mem_for("gather_scores"),
        runtime=runtime_for("gather_scores"),
    script:
        "../scripts/gather_effects.py"


rule annotate_effects_vcf:
    input:
        table=paths.effects() + ".parquet",
        variants=lambda wc: SCORING["variants"][wc.vcf]["path"],
    output:
        vcf=paths.effects() + ".vcf.gz",
        tbi=paths.effects() + ".vcf.gz.tbi",
    wildcard_constraints:
        run=r"[^/]+",
    log:
        paths.log("effects", "{genome}_{task}_{run}_{vcf}_annotate"),
    benchmark:
        paths.benchmark("effects", "{genome}_{task}_{run}_{vcf}_annotate")
    threads: 1
    resources:
        mem_mb=mem_for("annotate_vcf"),
        runtime=runtime_for("annotate_vcf"),
    script:
        "../scripts/annotate_effects.py"


rule effects_report:
    input:
        paths.effects() + ".parquet",
    output:
        report(paths.effects() + ".html", category="Fine-tuned variant effects",
               labels={"run": "{task}/{run}", "variants": "{vcf}", "table": "largest effects"}),
    wildcard_constraints:
        run=r"[^/]+",
    log:
        paths.log("report", "effects_{genome}_{task}_{run}_{vcf}"),
    benchmark:
        paths.benchmark("report", "effects_{genome}_{task}_{run}_{vcf}")
    threads: 1
    script:
        "../scripts/report_effects.py"


rule effects_saturation:
    input:
        run=paths.finetune_run(run="{run}"),
        **paths.genome_files(),
        bed=lambda wc: SCORING["saturation"][wc.name]["bed"],
    output:
        table=paths.effects_saturation() + ".parquet",
        bigwig=paths.effects_saturation() + ".bw",
        picture=report(paths.effects_saturation() + "_map.png",
                       category="Fine-tuned variant effects",
                       labels={"run": "{task}/{run}", "variants": "{name}",
                               "table": "mutation map"}),
    params:
        settings={k: v for k, v in EFFECTS.items() if k not in EFFECT_WORKFLOW_KEYS},
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    wildcard_constraints:
        run=r"[^/]+",
    log:
        paths.log("effects", "{genome}_{task}_{run}_saturation_{name}"),
    benchmark:
        paths.benchmark("effects", "{genome}_{task}_{run}_saturation_{name}")
    threads: threads_for("effects_saturation")
    resources:
        mem_mb=mem_for("effects_saturation"),
        runtime=runtime_for("effects_saturation"),
        **gpu_resources("effects_saturation"),
    script:
        "../scripts/effects_saturation.py"
