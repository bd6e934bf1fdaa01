# Zero-shot variant scoring split into region jobs, gathered into one table + annotated VCF;
# saturation mutagenesis of BED regions; out-of-core summaries.

from dnalm.score.settings import WORKFLOW_KEYS as SCORE_WORKFLOW_KEYS

SCORING = config["scoring"]


def variant_set(wildcards):
    return SCORING["variants"][wildcards.vcf]


def is_vcf(path):
    return str(path).endswith((".vcf", ".vcf.gz", ".vcf.bgz", ".bcf"))


for _name, _spec in {**SCORING["variants"], **SCORING["saturation"]}.items():
    if SCORING["models"] and _spec["genome"] not in GENOMES:
        sys.exit(f"dnalm: error: scoring set {_name}: genome {_spec['genome']!r} is not in "
                 f"the genome sheet ({config['genomes']})")


def score_targets():
    targets = []
    for model in SCORING.get("models", []):
        for name, spec in SCORING.get("variants", {}).items():
            base = paths.scores(spec["genome"], model, name)
            targets += [f"{base}.parquet", f"{base}_summary"]
            if is_vcf(spec["path"]):
                targets.append(f"{base}.vcf.gz")
        for name, spec in SCORING.get("saturation", {}).items():
            base = paths.saturation(spec["genome"], model, name)
            targets += [f"{base}.parquet", f"{base}.bw"]
    return targets


rule score_variants_region:
    input:
        model=lambda wc: model_input(wc.model),
        **paths.genome_files(),
        variants=lambda wc: variant_set(wc)["path"],
    output:
        paths.scores() + "/regions/{region}.parquet",
    params:
        scoring={k: v for k, v in SCORING.items() if k not in SCORE_WORKFLOW_KEYS},
        regions=SCORING["regions"],
        model_dir=lambda wc: model_dir(wc.model),
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
        trust_remote_code=lambda wc: trusts_remote_code(wc.model),
    log:
        paths.log("score", "{genome}_{model}_{vcf}_{region}"),
    benchmark:
        paths.benchmark("score", "{genome}_{model}_{vcf}_{region}")
    threads: threads_for("score_variants_region")
    resources:
        mem_mb=mem_for("score_variants_region"),
        runtime=runtime_for("score_variants_region"),
        **gpu_resources("score_variants_region"),
    script:
        "../scripts/score_region.py"


rule gather_scores:
    input:
        regions=lambda wc: [f"{paths.scores(wc.genome, wc.model, wc.vcf)}/regions/{r}.parquet"
                            for r in range(SCORING["regions"])],
    output:
        table=paths.scores() + ".parquet",
    log:
        paths.log("score", "{genome}_{model}_{vcf}_gather"),
    benchmark:
        paths.benchmark("score", "{genome}_{model}_{vcf}_gather")
    threads: 1
    resources:
        mem_mb=mem_for("gather_scores"),
        runtime=runtime_for("gather_scores"),
    script:
        "../scripts/gather_scores.py"


rule annotate_vcf:
    input:
        table=paths.scores() + ".parquet",
        variants=lambda wc: variant_set(wc)["path"],
    output:
        vcf=paths.scores() + ".vcf.gz",
        tbi=paths.scores() + ".vcf.gz.tbi",
    log:
        paths.log("score", "{genome}_{model}_{vcf}_annotate"),
    benchmark:
        paths.benchmark("score", "{genome}_{model}_{vcf}_annotate")
    threads: 1
    resources:
        mem_mb=mem_for("annotate_vcf"),
        runtime=runtime_for("annotate_vcf"),
    script:
        "../scripts/annotate_vcf.py"


rule summarize_scores:
    input:
        table=paths.scores() + ".parquet",
    output:
        directory(paths.scores() + "_summary"),
    params:
        genes=lambda wc: variant_set(wc).get("genes_bed"),
    log:
        paths.log("score", "{genome}_{model}_{vcf}_summary"),
    benchmark:
        paths.benchmark("score", "{genome}_{model}_{vcf}_summary")
    threads: 1
    resources:
        mem_mb=mem_for("summarize_scores"),
        runtime=runtime_for("summarize_scores"),
    script:
        "../scripts/summarize_scores.py"


rule saturation_mutagenesis:
    input:
        model=lambda wc: model_input(wc.model),
        **paths.genome_files(),
        bed=lambda wc: SCORING["saturation"][wc.name]["bed"],
    output:
        table=paths.saturation() + ".parquet",
        bigwig=paths.saturation() + ".bw",
    params:
        scoring=lambda wc: {
            **{k: v for k, v in SCORING.items() if k not in SCORE_WORKFLOW_KEYS},
            **{k: v for k, v in SCORING["saturation"][wc.name].items() if k not in ("genome", "bed")},
        },
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
        trust_remote_code=lambda wc: trusts_remote_code(wc.model),
        model_dir=lambda wc: model_dir(wc.model),
    log:
        paths.log("score", "{genome}_{model}_saturation_{name}"),
    benchmark:
        paths.benchmark("score", "{genome}_{model}_saturation_{name}")
    threads: threads_for("saturation_mutagenesis")
    resources:
        mem_mb=mem_for("saturation_mutagenesis"),
        runtime=runtime_for("saturation_mutagenesis"),
        **gpu_resources("saturation_mutagenesis"),
    script:
        "../scripts/saturate.py"
