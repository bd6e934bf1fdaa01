# Genome download, preparation (bgzip + faidx + statistics) and chunking into Parquet.


rule download_genome:
    output:
        paths.download(),
    params:
        source=lambda wc: genome_entry(wc).source.original,
        sha256=lambda wc: genome_entry(wc).sha256 or "",
        md5=lambda wc: genome_entry(wc).md5 or "",
        download=config["download"],
    log:
        paths.log("genome", "download_{genome}"),
    benchmark:
        paths.benchmark("genome", "download_{genome}")
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
        **paths.genome_files(),
        stats=paths.genome_stats(),
    params:
        local=lambda wc: not genome_entry(wc).source.is_remote,
        sha256=lambda wc: genome_entry(wc).sha256 or "",
        md5=lambda wc: genome_entry(wc).md5 or "",
        include=lambda wc: list(genome_entry(wc).include),
        exclude=lambda wc: list(genome_entry(wc).exclude),
    log:
        paths.log("genome", "prepare_{genome}"),
    benchmark:
        paths.benchmark("genome", "prepare_{genome}")
    threads: 1
    resources:
        mem_mb=mem_for("prepare_genome"),
        runtime=runtime_for("prepare_genome"),
    script:
        "../scripts/prepare_genome.py"


rule chunk_genome:
    input:
        **paths.genome_files(),
    output:
        directory(paths.chunks()),
    params:
        chunking=config["chunking"],
        split=config["split"],
        seed=config["seed"],
    log:
        paths.log("genome", "chunk_{genome}"),
    benchmark:
        paths.benchmark("genome", "chunk_{genome}")
    threads: threads_for("chunk_genome")
    resources:
        mem_mb=mem_for("chunk_genome"),
        runtime=runtime_for("chunk_genome"),
    script:
        "../scripts/chunk_genome.py"
