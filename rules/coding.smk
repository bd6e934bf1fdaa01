# Coding variants: consequences per transcript from a GTF/GFF3 annotation, protein-LM (ESM) scores
# of missense changes, joined to the DNA-model scores and written into the annotated VCF.
# Config section `coding` (see the schema fragment): annotations {genome: GTF/GFF3}, variants
# [names of scoring.variants sets], protein_models {name: {paths: [...]} | {random_placeholder:
# true}}, models [protein model names, without "_"], mode, batch_size, codon_tables {contig: NCBI id}.

CODING = config.get("coding", {})


def protein_model_dirs(name):
    spec = CODING["protein_models"][name]
    if spec.get("random_placeholder"):
        return [paths.protein_model_dir(name)]
    return list(spec["paths"])


def protein_model_inputs(wildcards):
    spec = CODING["protein_models"][wildcards.pmodel]
    return protein_model_dirs(wildcards.pmodel) if spec.get("random_placeholder") else []


def coding_annotation(wildcards):
    return CODING["annotations"][wildcards.genome]


for _vcf in CODING.get("variants", []):
    if _vcf not in SCORING.get("variants", {}):
        sys.exit(f"dnalm: error: coding.variants: {_vcf!r} is not a set under scoring.variants")
    _genome = SCORING["variants"][_vcf]["genome"]
    if _genome not in CODING.get("annotations", {}):
        sys.exit(f"dnalm: error: coding.variants: {_vcf!r} is on genome {_genome!r}, which has "
                 "no entry under coding.annotations")
    if _genome not in GENOMES:
        sys.exit(f"dnalm: error: coding.variants: {_vcf!r}: genome {_genome!r} is not in the "
                 f"genome sheet ({config['genomes']})")


def coding_targets():
    targets = []
    for vcf in CODING.get("variants", []):
        spec = SCORING["variants"][vcf]
        base = paths.coding(spec["genome"], vcf)
        targets.append(f"{base}/consequences.parquet")
        for pmodel in CODING.get("models", []):
            targets.append(f"{base}/{pmodel}.parquet")
            for model in SCORING.get("models", []):
                targets.append(f"{base}/{pmodel}_{model}.parquet")
                if is_vcf(spec["path"]):
                    targets.append(f"{base}/{pmodel}_{model}.vcf.gz")
    return targets


ruleorder: coding_consequences > score_coding


rule coding_placeholder_model:
    output:
        directory(paths.protein_model_dir()),
    params:
        seed=config["seed"],
    log:
        paths.log("coding", "placeholder_model_{pmodel}"),
    benchmark:
        paths.benchmark("coding", "placeholder_model_{pmodel}")
    threads: 1
    script:
        "../scripts/coding_build_model.py"


rule coding_consequences:
    input:
        **paths.genome_files(),
        annotation=coding_annotation,
        variants=lambda wc: SCORING["variants"][wc.vcf]["path"],
    output:
        table=paths.coding() + "/consequences.parquet",
    params:
        model_dirs=[],
        coding=CODING,
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    log:
        paths.log("coding", "{genome}_{vcf}_consequences"),
    benchmark:
        paths.benchmark("coding", "{genome}_{vcf}_consequences")
    threads: 1
    resources:
        mem_mb=mem_for("coding_consequences"),
        runtime=runtime_for("coding_consequences"),
    script:
        "../scripts/coding_score.py"


rule score_coding:
    input:
        **paths.genome_files(),
        annotation=coding_annotation,
        variants=lambda wc: SCORING["variants"][wc.vcf]["path"],
        models=protein_model_inputs,
    output:
        table=paths.coding() + "/{pmodel}.parquet",
    wildcard_constraints:
        pmodel=r"(?!consequences\b)[^/_]+",
    params:
        model_dirs=lambda wc: protein_model_dirs(wc.pmodel),
        coding=CODING,
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    log:
        paths.log("coding", "{genome}_{vcf}_{pmodel}_score"),
    benchmark:
        paths.benchmark("coding", "{genome}_{vcf}_{pmodel}_score")
    threads: threads_for("score_coding")
    resources:
        mem_mb=mem_for("score_coding"),
        runtime=runtime_for("score_coding"),
        **gpu_resources("score_coding"),
    script:
        "../scripts/coding_score.py"


rule join_coding_dna:
    input:
        coding=paths.coding() + "/{pmodel}.parquet",
        dna=paths.scores() + ".parquet",
    output:
        table=paths.coding() + "/{pmodel}_{model}.parquet",
    wildcard_constraints:
        pmodel=r"(?!consequences\b)[^/_]+",
    log:
        paths.log("coding", "{genome}_{vcf}_{pmodel}_{model}_join"),
    benchmark:
        paths.benchmark("coding", "{genome}_{vcf}_{pmodel}_{model}_join")
    threads: 1
    script:
        "../scripts/coding_join.py"


rule annotate_coding_vcf:
    input:
        coding=paths.coding() + "/{pmodel}.parquet",
        dna=paths.scores() + ".parquet",
        variants=lambda wc: SCORING["variants"][wc.vcf]["path"],
    output:
        vcf=paths.coding() + "/{pmodel}_{model}.vcf.gz",
        tbi=paths.coding() + "/{pmodel}_{model}.vcf.gz.tbi",
    wildcard_constraints:
        pmodel=r"(?!consequences\b)[^/_]+",
    log:
        paths.log("coding", "{genome}_{vcf}_{pmodel}_{model}_annotate"),
    benchmark:
        paths.benchmark("coding", "{genome}_{vcf}_{pmodel}_{model}_annotate")
    threads: 1
    script:
        "../scripts/coding_annotate_vcf.py"
