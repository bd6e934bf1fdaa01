# Tokenizers (BPE trained on training chunks, k-mer, NT k-mer, single nucleotide, pretrained),
# their statistics on the validation split, and tokenized shards per genome.

from dnalm.tokenizers.spec import parse_spec

TOKENIZERS = config["tokenizers"]


def tokenizer_genomes(name):
    """Genomes whose training chunks a tokenizer learns from (default: every genome)."""
    return TOKENIZERS[name].get("genomes") or list(GENOMES)


def tokenizer_spec(name):
    return {k: v for k, v in TOKENIZERS[name].items() if k != "genomes"}


for _name in TOKENIZERS:
    try:  # every kind-specific setting checked now, not when build_tokenizer runs
        parse_spec(tokenizer_spec(_name), seed=config["seed"])
    except DnalmError as _error:
        sys.exit(f"dnalm: error: tokenizers.{_name}: {_error}")
    for _genome in tokenizer_genomes(_name):
        if _genome not in GENOMES:
            sys.exit(f"dnalm: error: tokenizers.{_name}.genomes: {_genome!r} is not in the genome "
                     f"sheet ({config['genomes']})")


def tokenizer_targets():
    targets = []
    for name in TOKENIZERS:
        targets += [paths.tokenizer_dir(name) + "/tokenizer.json",
                    paths.tokenizer_dir(name) + "/stats.parquet"]
        targets += [paths.tokens(g, name) for g in GENOMES]
    return targets


rule build_tokenizer:
    input:
        chunks=lambda wc: expand(paths.chunks(),
                                 genome=tokenizer_genomes(wc.tokenizer)),
    output:
        hf=paths.tokenizer_dir() + "/tokenizer.json",
        meta=paths.tokenizer_dir() + "/dnalm_tokenizer.json",
    params:
        spec=lambda wc: tokenizer_spec(wc.tokenizer),
        seed=config["seed"],
    log:
        paths.log("tokenizer", "build_{tokenizer}"),
    benchmark:
        paths.benchmark("tokenizer", "build_{tokenizer}")
    threads: threads_for("build_tokenizer")
    resources:
        mem_mb=mem_for("build_tokenizer"),
        runtime=runtime_for("build_tokenizer"),
    script:
        "../scripts/build_tokenizer.py"


rule tokenizer_stats:
    input:
        meta=paths.tokenizer_dir() + "/dnalm_tokenizer.json",
        hf=paths.tokenizer_dir() + "/tokenizer.json",
        chunks=lambda wc: expand(paths.chunks(),
                                 genome=tokenizer_genomes(wc.tokenizer)),
    output:
        table=paths.tokenizer_dir() + "/stats.parquet",
        plot=report(paths.tokenizer_dir() + "/stats.png", category="Tokenizers",
                    caption="../report/tokenizer.rst", labels={"tokenizer": "{tokenizer}"}),
    log:
        paths.log("tokenizer", "stats_{tokenizer}"),
    benchmark:
        paths.benchmark("tokenizer", "stats_{tokenizer}")
    threads: 1
    resources:
        mem_mb=mem_for("tokenizer_stats"),
        runtime=runtime_for("tokenizer_stats"),
    script:
        "../scripts/tokenizer_stats.py"


rule tokenize_genome:
    input:
        meta=paths.tokenizer_dir() + "/dnalm_tokenizer.json",
        hf=paths.tokenizer_dir() + "/tokenizer.json",
        chunks=paths.chunks(),
    output:
        directory(paths.tokens()),
    log:
        paths.log("tokenizer", "tokenize_{genome}_{tokenizer}"),
    benchmark:
        paths.benchmark("tokenizer", "tokenize_{genome}_{tokenizer}")
    threads: threads_for("tokenize_genome")
    resources:
        mem_mb=mem_for("tokenize_genome"),
        runtime=runtime_for("tokenize_genome"),
    script:
        "../scripts/tokenize_genome.py"
