# HTML tables and pictures for `snakemake --report report.html` (categories follow the stages).


rule genome_report:
    input:
        paths.genome_stats(),
    output:
        report(paths.genome_stats(ext="html"), category="Genomes",
               labels={"genome": "{genome}"}),
    log:
        paths.log("report", "genome_{genome}"),
    benchmark:
        paths.benchmark("report", "genome_{genome}")
    threads: 1
    script:
        "../scripts/report_genome.py"


rule score_report:
    input:
        paths.scores() + "_summary",
    output:
        top=report(paths.scores() + "_report/top_variants.html",
                   category="Variant scores", labels={"model": "{model}", "variants": "{vcf}",
                                                      "table": "top variants"}),
        plot=report(paths.scores() + "_report/distribution.png",
                    category="Variant scores", labels={"model": "{model}", "variants": "{vcf}",
                                                       "table": "distribution"}),
    log:
        paths.log("report", "score_{genome}_{model}_{vcf}"),
    benchmark:
        paths.benchmark("report", "score_{genome}_{model}_{vcf}")
    threads: 1
    script:
        "../scripts/report_scores.py"


rule finetune_report:
    input:
        paths.finetune_summary("md"),
    output:
        report(paths.finetune_summary("html"), category="Fine-tuning",
               labels={"table": "tasks x models"}),
    log:
        paths.log("report", "finetune"),
    benchmark:
        paths.benchmark("report", "finetune")
    threads: 1
    script:
        "../scripts/report_finetune.py"


def report_targets():
    targets = [paths.genome_stats(g, "html") for g in GENOMES]
    for model in SCORING.get("models", []):
        for name, spec in SCORING.get("variants", {}).items():
            targets.append(paths.scores(spec["genome"], model, name) + "_report/top_variants.html")
    if FINETUNE_TASKS:
        targets.append(paths.finetune_summary("html"))
    return targets
