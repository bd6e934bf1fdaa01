# Tokenizers (BPE trained on training chunks, k-mer, NT k-mer, single nucleotide, pretrained),
# their statistics on the validation split, and tokenized shards per genome.

TOKENIZERS = config["tokenizers"]


def tokenizer_genomes(name):
    """Genomes whose training chunks a tokenizer learns from (default: every genome)."""
    return TOKENIZERS[name].get("genomes") or list(GENOMES)


def tokenizer_spec(name):
    return {k: v for k, v in TOKENIZERS[name].items() if k != "genomes"}


for _name in TOKENIZERS:
    for _genome in tokenizer_genomes(_name):
        if _genome not in GENOMES:
            sys.exit(f"dnalm: error: tokenizers.{_name}.genomes: {_genome!r} is not in the genome "
                     f"sheet ({config['genomes']})")


def tokenizer_targets():
    targets = []
    for name in TOKENIZERS:
        targets += [f"results/tokenizers/{name}/tokenizer.json",
                    f"results/tokenizers/{name}/stats.parquet"]
        targets += [f"results/genomes/{g}/tokens/{name}" for g in GENOMES]
    return targets


rule build_tokenizer:
    input:
        chunks=lambda wc: expand("results/genomes/{genome}/chunks",
                                 genome=tokenizer_genomes(wc.tokenizer)),
    output:
        hf="results/tokenizers/{tokenizer}/tokenizer.json",
        meta="results/tokenizers/{tokenizer}/dnalm_tokenizer.json",
    params:
        spec=lambda wc: tokenizer_spec(wc.tokenizer),
        seed=config["seed"],
    log:
        "logs/tokenizer/build_{tokenizer}.log",
    benchmark:
        "results/benchmarks/tokenizer/build_{tokenizer}.tsv"
    threads: threads_for("build_tokenizer")
    resources:
        mem_mb=mem_for("build_tokenizer"),
        runtime=runtime_for("build_tokenizer"),
    script:
        "../scripts/build_tokenizer.py"


rule tokenizer_stats:
    input:
        meta="results/tokenizers/{tokenizer}/dnalm_tokenizer.json",
        hf="results/tokenizers/{tokenizer}/tokenizer.json",
        chunks=lambda wc: expand("results/genomes/{genome}/chunks",
                                 genome=tokenizer_genomes(wc.tokenizer)),
    output:
        table="results/tokenizers/{tokenizer}/stats.parquet",
        plot=report("results/tokenizers/{tokenizer}/stats.png", category="Tokenizers",
                    caption="../report/tokenizer.rst", labels={"tokenizer": "{tokenizer}"}),
    log:
        "logs/tokenizer/stats_{tokenizer}.log",
    benchmark:
        "results/benchmarks/tokenizer/stats_{tokenizer}.tsv"
    threads: 1
    resources:
        mem_mb=mem_for("tokenizer_stats"),
        runtime=runtime_for("tokenizer_stats"),
    script:
        "../scripts/tokenizer_stats.py"


rule tokenize_genome:
    input:
        meta="results/tokenizers/{tokenizer}/dnalm_tokenizer.json",
        hf="results/tokenizers/{tokenizer}/tokenizer.json",
        chunks="results/genomes/{genome}/chunks",
    output:
        directory("results/genomes/{genome}/tokens/{tokenizer}"),
    log:
        "logs/tokenizer/tokenize_{genome}_{tokenizer}.log",
    benchmark:
        "results/benchmarks/tokenizer/tokenize_{genome}_{tokenizer}.tsv"
    threads: threads_for("tokenize_genome")
    resources:
        mem_mb=mem_for("tokenize_genome"),
        runtime=runtime_for("tokenize_genome"),
    script:
        "../scripts/tokenize_genome.py"
