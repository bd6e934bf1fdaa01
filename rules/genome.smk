# Genome download, preparation (bgzip + faidx + statistics) and chunking into Parquet.


rule download_genome:
    output:
        "resources/downloads/{genome}/source.fa.gz",
    params:
        source=lambda wc: genome_entry(wc).source.original,
        sha256=lambda wc: genome_entry(wc).sha256 or "",
        md5=lambda wc: genome_entry(wc).md5 or "",
        download=config["download"],
    log:
        "logs/genome/download_{genome}.log",
    benchmark:
        "results/benchmarks/genome/download_{genome}.tsv"
    threads: 1
    resources:
        mem_mb=mem_for("download_genome"),
        runtime=runtime_for("download_genome"),
    script:
        "../scripts/download_genome.py"


rule prepare_genome:
    input:
        source=genome_source_input,
    output:
        fasta="results/genomes/{genome}/genome.fa.gz",
        fai="results/genomes/{genome}/genome.fa.gz.fai",
        gzi="results/genomes/{genome}/genome.fa.gz.gzi",
        stats="results/genomes/{genome}/genome_stats.parquet",
    params:
        local=lambda wc: not genome_entry(wc).source.is_remote,
        sha256=lambda wc: genome_entry(wc).sha256 or "",
        md5=lambda wc: genome_entry(wc).md5 or "",
        include=lambda wc: list(genome_entry(wc).include),
        exclude=lambda wc: list(genome_entry(wc).exclude),
    log:
        "logs/genome/prepare_{genome}.log",
    benchmark:
        "results/benchmarks/genome/prepare_{genome}.tsv"
    threads: 1
    resources:
        mem_mb=mem_for("prepare_genome"),
        runtime=runtime_for("prepare_genome"),
    script:
        "../scripts/prepare_genome.py"


rule chunk_genome:
    input:
        fasta="results/genomes/{genome}/genome.fa.gz",
        fai="results/genomes/{genome}/genome.fa.gz.fai",
        gzi="results/genomes/{genome}/genome.fa.gz.gzi",
    output:
        directory("results/genomes/{genome}/chunks"),
    params:
        chunking=config["chunking"],
        split=config["split"],
        seed=config["seed"],
    log:
        "logs/genome/chunk_{genome}.log",
    benchmark:
        "results/benchmarks/genome/chunk_{genome}.tsv"
    threads: threads_for("chunk_genome")
    resources:
        mem_mb=mem_for("chunk_genome"),
        runtime=runtime_for("chunk_genome"),
    script:
        "../scripts/chunk_genome.py"
