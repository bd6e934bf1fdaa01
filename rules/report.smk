# HTML tables and pictures for `snakemake --report report.html` (categories follow the stages).


rule genome_report:
    input:
        "results/genomes/{genome}/genome_stats.parquet",
    output:
        report("results/genomes/{genome}/genome_stats.html", category="Genomes",
               labels={"genome": "{genome}"}),
    log:
        "logs/report/genome_{genome}.log",
    benchmark:
        "results/benchmarks/report/genome_{genome}.tsv"
    threads: 1
    script:
        "../scripts/report_genome.py"


rule score_report:
    input:
        "results/scores/{genome}/{model}/{vcf}_summary",
    output:
        top=report("results/scores/{genome}/{model}/{vcf}_report/top_variants.html",
                   category="Variant scores", labels={"model": "{model}", "variants": "{vcf}",
                                                      "table": "top variants"}),
        plot=report("results/scores/{genome}/{model}/{vcf}_report/distribution.png",
                    category="Variant scores", labels={"model": "{model}", "variants": "{vcf}",
                                                       "table": "distribution"}),
    log:
        "logs/report/score_{genome}_{model}_{vcf}.log",
    benchmark:
        "results/benchmarks/report/score_{genome}_{model}_{vcf}.tsv"
    threads: 1
    script:
        "../scripts/report_scores.py"


rule finetune_report:
    input:
        "results/finetune/summary.md",
    output:
        report("results/finetune/summary.html", category="Fine-tuning",
               labels={"table": "tasks x models"}),
    log:
        "logs/report/finetune.log",
    benchmark:
        "results/benchmarks/report/finetune.tsv"
    threads: 1
    script:
        "../scripts/report_finetune.py"


def report_targets():
    targets = [f"results/genomes/{g}/genome_stats.html" for g in GENOMES]
    for model in SCORING.get("models", []):
        for name, spec in SCORING.get("variants", {}).items():
            targets.append(f"results/scores/{spec['genome']}/{model}/{name}_report/top_variants.html")
    if FINETUNE_TASKS:
        targets.append("results/finetune/summary.html")
    return targets
