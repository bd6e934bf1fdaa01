"""Where every stage writes: one function per output, used by the rules, the planning code and
``python -m dnalm.results``.

Each function's arguments default to the Snakemake wildcard of the same name, so a rule writes
``paths.genome_fasta()`` for ``results/genomes/{genome}/genome.fa.gz`` and an input function
writes ``paths.genome_fasta(wc.genome)``; with ``"*"`` they give the glob that
:data:`STAGES` lists. Changing where a stage writes is one edit here.
"""

from __future__ import annotations

RESULTS = "results"
LOGS = "logs"


# --- genomes ----------------------------------------------------------------------------------


def genome_dir(genome: str = "{genome}") -> str:
    return f"{RESULTS}/genomes/{genome}"


def genome_fasta(genome: str = "{genome}") -> str:
    """The prepared genome: bgzipped, with ``.fai`` and ``.gzi`` beside it."""
    return f"{genome_dir(genome)}/genome.fa.gz"


def genome_files(genome: str = "{genome}") -> dict[str, str]:
    """The prepared genome and its two indexes, as rule inputs (remote storage fetches all)."""
    fasta = genome_fasta(genome)
    return {"fasta": fasta, "fai": f"{fasta}.fai", "gzi": f"{fasta}.gzi"}


def genome_index_files(genome: str = "{genome}") -> dict[str, str]:
    """The two indexes of the prepared genome (rules that read only the contig lengths)."""
    files = genome_files(genome)
    return {"fai": files["fai"], "gzi": files["gzi"]}


def genome_stats(genome: str = "{genome}", ext: str = "parquet") -> str:
    return f"{genome_dir(genome)}/genome_stats.{ext}"


def chunks(genome: str = "{genome}") -> str:
    return f"{genome_dir(genome)}/chunks"


def download(genome: str = "{genome}") -> str:
    return f"resources/downloads/{genome}/source.fa.gz"


# --- tokenizers and models ----------------------------------------------------------------------


def tokenizer_dir(tokenizer: str = "{tokenizer}") -> str:
    return f"{RESULTS}/tokenizers/{tokenizer}"


def tokens(genome: str = "{genome}", tokenizer: str = "{tokenizer}") -> str:
    return f"{genome_dir(genome)}/tokens/{tokenizer}"


def model_dir(model: str = "{model}") -> str:
    """A pipeline-pretrained model (external checkpoints live where the config says)."""
    return f"{RESULTS}/models/{model}"


def segment_dir(model: str = "{model}", segment: str | int = "{segment}") -> str:
    return f"{model_dir(model)}/segments/{segment}"


def protein_model_dir(name: str = "{pmodel}") -> str:
    return f"{RESULTS}/protein_models/{name}"


# --- fine-tuning and tracks ---------------------------------------------------------------------


def finetune_run(task: str = "{task}", run: str = "{model}") -> str:
    return f"{RESULTS}/finetune/{task}/{run}"


def finetune_summary(ext: str = "parquet") -> str:
    return f"{RESULTS}/finetune/summary.{ext}"


def track(genome: str = "{genome}", name: str = "{track}") -> str:
    """Base of a track's outputs (``.parquet``, ``.bedgraph``, ``.bw``, ``.png``, ``/regions``)."""
    return f"{RESULTS}/tracks/{genome}/{name}"


# --- scores -------------------------------------------------------------------------------------


def variant_partition(genome: str = "{genome}", variants: str = "{vcf}") -> str:
    """A variant set read once, checked against the genome and cut into region jobs
    (``bin=NNNNN/part-NNNNN.parquet`` + ``manifest.json``; :mod:`dnalm.partition`)."""
    return f"{RESULTS}/variants/{genome}/{variants}"



def scores(genome: str = "{genome}", model: str = "{model}", variants: str = "{vcf}") -> str:
    """Base of a variant set's scores (``.parquet``, ``.vcf.gz``, ``_summary``, ``/regions``)."""
    return f"{RESULTS}/scores/{genome}/{model}/{variants}"


def saturation(genome: str = "{genome}", model: str = "{model}", name: str = "{name}") -> str:
    return f"{RESULTS}/scores/{genome}/{model}/saturation_{name}"


def coding(genome: str = "{genome}", variants: str = "{vcf}") -> str:
    return f"{RESULTS}/coding/{genome}/{variants}"


# --- using models: embeddings and predictions ---------------------------------------------------


def embeddings(seqset: str = "{seqset}", encoder: str = "{model}") -> str:
    """Base of one sequence set's embeddings by one model (``.parquet``; reports beside)."""
    return f"{RESULTS}/embeddings/{seqset}/{encoder}"


def finetuned_embeddings(seqset: str = "{seqset}", task: str = "{task}",
                         run: str = "{run}") -> str:
    """Base of one sequence set's embeddings by a fine-tuned run's encoder."""
    return f"{RESULTS}/embeddings/{seqset}/finetune/{task}/{run}"


def predictions(seqset: str = "{seqset}", task: str = "{task}", run: str = "{run}") -> str:
    """Base of a fine-tuned run's predictions on one sequence set (``.parquet``, ``.html``)."""
    return f"{RESULTS}/predictions/{seqset}/{task}/{run}"


# --- fine-tuned variant effects and evaluation against labels ------------------------------------


def effects(genome: str = "{genome}", task: str = "{task}", run: str = "{run}",
            variants: str = "{vcf}") -> str:
    """Base of a fine-tuned run's variant effects on one variant set (``.parquet``, ``.vcf.gz``,
    ``/regions``)."""
    return f"{RESULTS}/effects/{genome}/{task}/{run}/{variants}"


def effects_saturation(genome: str = "{genome}", task: str = "{task}", run: str = "{run}",
                       name: str = "{name}") -> str:
    """Base of a fine-tuned run's saturation mutagenesis of one BED set (``.parquet``, ``.bw``,
    ``_map.png``)."""
    return f"{RESULTS}/effects/{genome}/{task}/{run}/saturation/{name}"


def evaluation(name: str = "{evalset}") -> str:
    """Base of one labelled variant set's evaluation (``.parquet``, ``.html``, ``_curves.png``)."""
    return f"{RESULTS}/evaluation/{name}"


# --- bookkeeping --------------------------------------------------------------------------------


def benchmark(stage: str, name: str) -> str:
    """A rule's Snakemake ``benchmark:`` TSV."""
    return f"{RESULTS}/benchmarks/{stage}/{name}.tsv"


def log(stage: str, name: str) -> str:
    """A rule's ``log:`` file."""
    return f"{LOGS}/{stage}/{name}.log"


#: Every stage's outputs, as globs with what they are (``python -m dnalm.results``).
STAGES: list[tuple[str, str]] = [
    (genome_fasta("*"), "prepared genomes (bgzip + .fai/.gzi)"),
    (genome_stats("*"), "per-contig statistics"),
    (chunks("*"), "training chunks (train/validation/test Parquet shards)"),
    (tokens("*", "*"), "tokenized shards"),
    (tokenizer_dir("*"), "tokenizers (load with dnalm or AutoTokenizer)"),
    (model_dir("*"), "pretrained models (load with AutoModelForMaskedLM)"),
    (finetune_run("*", "*"), "fine-tuned adapters, metrics and predictions"),
    (finetune_summary("md"), "fine-tuning summary beside the k-mer baseline"),
    (variant_partition("*", "*") + "/manifest.json",
     "variant sets checked against the genome and cut into region jobs"),
    (scores("*", "*", "*") + ".parquet", "variant scores"),
    (scores("*", "*", "*") + ".vcf.gz", "annotated, tabix-indexed VCFs"),
    (saturation("*", "*", "*") + ".bw", "saturation mutagenesis (bigWig)"),
    (track("*", "*") + ".bw", "fine-tuned tracks (bigWig; bedGraph and Parquet beside)"),
    (coding("*", "*") + "/*.parquet", "coding consequences and protein-LM scores"),
    (embeddings("*", "*") + ".parquet",
     "embeddings of sequence sets (Parquet, a float32 vector per row)"),
    (predictions("*", "*", "*") + ".parquet", "fine-tuned runs' predictions on sequence sets"),
    (effects("*", "*", "*", "*") + ".parquet",
     "fine-tuned runs' variant effects (alt - ref; annotated VCF beside)"),
    (effects_saturation("*", "*", "*", "*") + ".bw",
     "fine-tuned saturation mutagenesis (bigWig of max |effect|; mutation maps beside)"),
    (evaluation("*") + ".parquet", "scores evaluated against variant labels (AUROC, AUPRC)"),
    (LOGS, "one log per job"),
]
