# Zero-shot variant scoring split into region jobs, gathered into one table + annotated VCF;
# saturation mutagenesis of BED regions; out-of-core summaries.

from dnalm.partition import n_jobs
from dnalm.score.saturation import count_bed_jobs
from dnalm.score.settings import SATURATION_JOB_KEYS
from dnalm.score.settings import WORKFLOW_KEYS as SCORE_WORKFLOW_KEYS
from dnalm.score.settings import partition_settings

SCORING = config["scoring"]
try:
    PARTITION = partition_settings(SCORING)
except DnalmError as _error:
    sys.exit(f"dnalm: error: {_error}")


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


checkpoint partition_variants:
    input:
        **paths.genome_files(),
        variants=lambda wc: variant_set(wc)["path"],
    output:
        directory(paths.variant_partition()),
    params:
        settings={k: SCORING[k] for k in ("regions", "variants_per_job", "partition_bins")
                  if k in SCORING},
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    log:
        paths.log("variants", "{genome}_{vcf}_partition"),
    benchmark:
        paths.benchmark("variants", "{genome}_{vcf}_partition")
    threads: 1
    resources:
        mem_mb=mem_for("partition_variants"),
        runtime=runtime_for("partition_variants"),
    script:
        "../scripts/partition_variants.py"


def variant_jobs(genome, vcf):
    """Region jobs of a variant set: read from its partition once that job has run."""
    return range(n_jobs(checkpoints.partition_variants.get(genome=genome, vcf=vcf).output[0]))


rule score_variants_region:
    input:
        model=lambda wc: model_input(wc.model),
        **paths.genome_files(),
        partition=paths.variant_partition(),
    output:
        paths.scores() + "/regions/{region}.parquet",
    params:
        scoring={k: v for k, v in SCORING.items() if k not in SCORE_WORKFLOW_KEYS},
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
                            for r in variant_jobs(wc.genome, wc.vcf)],
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


def saturation_jobs(wc):
    """Jobs of a saturation set: its BED cut into bases_per_job pieces (read when planning)."""
    spec = SCORING["saturation"][wc.name]
    return range(count_bed_jobs(spec["bed"], spec.get("bases_per_job")))


rule saturation_region:
    input:
        model=lambda wc: model_input(wc.model),
        **paths.genome_files(),
        bed=lambda wc: SCORING["saturation"][wc.name]["bed"],
    output:
        paths.saturation() + "/regions/{region}.parquet",
    params:
        scoring=lambda wc: {
            **{k: v for k, v in SCORING.items() if k not in SCORE_WORKFLOW_KEYS},
            **{k: v for k, v in SCORING["saturation"][wc.name].items()
               if k not in SATURATION_JOB_KEYS},
        },
        bases_per_job=lambda wc: SCORING["saturation"][wc.name].get("bases_per_job"),
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
        trust_remote_code=lambda wc: trusts_remote_code(wc.model),
        model_dir=lambda wc: model_dir(wc.model),
    log:
        paths.log("score", "{genome}_{model}_saturation_{name}_{region}"),
    benchmark:
        paths.benchmark("score", "{genome}_{model}_saturation_{name}_{region}")
    threads: threads_for("saturation_region")
    resources:
        mem_mb=mem_for("saturation_region"),
        runtime=runtime_for("saturation_region"),
        **gpu_resources("saturation_region"),
    script:
        "../scripts/saturate.py"


rule saturation_mutagenesis:
    input:
        parts=lambda wc: [f"{paths.saturation(wc.genome, wc.model, wc.name)}/regions/{r}.parquet"
                          for r in saturation_jobs(wc)],
        **paths.genome_files(),
    output:
        table=paths.saturation() + ".parquet",
        bigwig=paths.saturation() + ".bw",
    params:
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    log:
        paths.log("score", "{genome}_{model}_saturation_{name}"),
    benchmark:
        paths.benchmark("score", "{genome}_{model}_saturation_{name}")
    threads: 1
    resources:
        mem_mb=mem_for("gather_scores"),
        runtime=runtime_for("gather_scores"),
    script:
        "../scripts/gather_saturation.py"
