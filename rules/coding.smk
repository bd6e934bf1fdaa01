# Coding variants: consequences per transcript from a GTF/GFF3 annotation, protein-LM (ESM) scores
# of missense changes, joined to the DNA-model scores and written into the annotated VCF.
# Config section `coding` (see the schema fragment): annotations {genome: GTF/GFF3}, variants
# [names of scoring.variants sets], protein_models {name: {paths: [...]} | {random_placeholder:
# true}}, models [protein model names, without "_"], mode, batch_size, codon_tables {contig: NCBI id}.

CODING = config.get("coding", {})


def protein_model_dirs(name):
    spec = CODING["protein_models"][name]
    if spec.get("random_placeholder"):
        return [f"results/protein_models/{name}"]
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
        base = f"results/coding/{spec['genome']}/{vcf}"
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
        directory("results/protein_models/{pmodel}"),
    params:
        seed=config["seed"],
    log:
        "logs/coding/placeholder_model_{pmodel}.log",
    benchmark:
        "results/benchmarks/coding/placeholder_model_{pmodel}.tsv"
    threads: 1
    script:
        "../scripts/coding_build_model.py"


rule coding_consequences:
    input:
        fasta="results/genomes/{genome}/genome.fa.gz",
        fai="results/genomes/{genome}/genome.fa.gz.fai",
        gzi="results/genomes/{genome}/genome.fa.gz.gzi",
        annotation=coding_annotation,
        variants=lambda wc: SCORING["variants"][wc.vcf]["path"],
    output:
        table="results/coding/{genome}/{vcf}/consequences.parquet",
    params:
        model_dirs=[],
        coding=CODING,
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    log:
        "logs/coding/{genome}_{vcf}_consequences.log",
    benchmark:
        "results/benchmarks/coding/{genome}_{vcf}_consequences.tsv"
    threads: 1
    resources:
        mem_mb=mem_for("coding_consequences"),
        runtime=runtime_for("coding_consequences"),
    script:
        "../scripts/coding_score.py"


rule score_coding:
    input:
        fasta="results/genomes/{genome}/genome.fa.gz",
        fai="results/genomes/{genome}/genome.fa.gz.fai",
        gzi="results/genomes/{genome}/genome.fa.gz.gzi",
        annotation=coding_annotation,
        variants=lambda wc: SCORING["variants"][wc.vcf]["path"],
        models=protein_model_inputs,
    output:
        table="results/coding/{genome}/{vcf}/{pmodel}.parquet",
    wildcard_constraints:
        pmodel=r"(?!consequences\b)[^/_]+",
    params:
        model_dirs=lambda wc: protein_model_dirs(wc.pmodel),
        coding=CODING,
        match_chr_prefix=config["contigs"]["match_chr_prefix"],
    log:
        "logs/coding/{genome}_{vcf}_{pmodel}_score.log",
    benchmark:
        "results/benchmarks/coding/{genome}_{vcf}_{pmodel}_score.tsv"
    threads: threads_for("score_coding")
    resources:
        mem_mb=mem_for("score_coding"),
        runtime=runtime_for("score_coding"),
        **gpu_resources("score_coding"),
    script:
        "../scripts/coding_score.py"


rule join_coding_dna:
    input:
        coding="results/coding/{genome}/{vcf}/{pmodel}.parquet",
        dna="results/scores/{genome}/{model}/{vcf}.parquet",
    output:
        table="results/coding/{genome}/{vcf}/{pmodel}_{model}.parquet",
    wildcard_constraints:
        pmodel=r"(?!consequences\b)[^/_]+",
    log:
        "logs/coding/{genome}_{vcf}_{pmodel}_{model}_join.log",
    benchmark:
        "results/benchmarks/coding/{genome}_{vcf}_{pmodel}_{model}_join.tsv"
    threads: 1
    script:
        "../scripts/coding_join.py"


rule annotate_coding_vcf:
    input:
        coding="results/coding/{genome}/{vcf}/{pmodel}.parquet",
        dna="results/scores/{genome}/{model}/{vcf}.parquet",
        variants=lambda wc: SCORING["variants"][wc.vcf]["path"],
    output:
        vcf="results/coding/{genome}/{vcf}/{pmodel}_{model}.vcf.gz",
        tbi="results/coding/{genome}/{vcf}/{pmodel}_{model}.vcf.gz.tbi",
    wildcard_constraints:
        pmodel=r"(?!consequences\b)[^/_]+",
    log:
        "logs/coding/{genome}_{vcf}_{pmodel}_{model}_annotate.log",
    benchmark:
        "results/benchmarks/coding/{genome}_{vcf}_{pmodel}_{model}_annotate.tsv"
    threads: 1
    script:
        "../scripts/coding_annotate_vcf.py"
