"""The ``dnalm`` command line: run any stage by hand, outside Snakemake.

Each subcommand calls the same package function as the workflow's rule. Every error prints one
line (``dnalm: error: <file/record>: <reason>``) and exits with status 1: user errors and system
ones (a read-only folder, a full disk) say what to fix, an unexpected one names its type and
points at ``--debug``, which shows the traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from dnalm import __version__
from dnalm.chunks import SPLIT_MODES, ChunkConfig, SplitConfig
from dnalm.coding.settings import MODES as CODING_MODES
from dnalm.coding.settings import CodingSettings
from dnalm.config import field_default
from dnalm.errors import DnalmError, describe_error
from dnalm.finetune.settings import (
    DEFAULT_LEARNING_RATE,
    METHODS,
    PREDICT_LONG_POLICIES,
    EffectSettings,
    FinetuneSettings,
    LoraSettings,
    PredictSettings,
)
from dnalm.score.settings import MODES as SCORE_MODES
from dnalm.score.settings import ScoreConfig

log = logging.getLogger("dnalm")

Handler = Callable[[argparse.Namespace], int | None]


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _subparser(
    subparsers: argparse._SubParsersAction, name: str, help_text: str, examples: Sequence[str]
) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=_examples(*examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# --- genome -------------------------------------------------------------------------------


def _add_download(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "download",
        "Download a genome source (ucsc:, ensembl:, ncbi:, URL) to a file, with retries and "
        "checksum verification.",
        [
            "dnalm download ucsc:hg38 resources/hg38.fa.gz",
            "dnalm download ncbi:GCF_000001405.40 grch38.fna.gz --md5 0123...",
            "dnalm download https://example.org/genome.fa.gz out.fa.gz --sha256 ab12...",
        ],
    )
    p.add_argument("source", help="genome source (see README: Genome sources)")
    p.add_argument("out", type=Path, help="destination file")
    p.add_argument("--sha256", help="expected SHA-256 of the downloaded file")
    p.add_argument("--md5", help="expected MD5 of the downloaded file")
    p.add_argument("--retries", type=int, default=5, help="retries after transient failures")
    p.add_argument("--backoff", type=float, default=2.0, help="first back-off in seconds")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds a connection or read may wait; an attempt that brings less "
                   "than 1 KiB/s over this period is cut and retried")
    p.set_defaults(handler=_run_download)


def _run_download(args: argparse.Namespace) -> None:
    from dnalm.download import fetch_source
    from dnalm.errors import ConfigError
    from dnalm.sources import resolve

    source = resolve(args.source)
    if not source.is_remote:
        raise ConfigError(f"{args.source!r} is a local path: nothing to download")
    fetch_source(source, args.out, sha256=args.sha256, md5=args.md5, retries=args.retries,
                 backoff_seconds=args.backoff, timeout_seconds=args.timeout)
    print(args.out)


def _add_prepare(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "prepare-genome",
        "Validate a FASTA (plain or gzipped) and write it bgzipped with .fai/.gzi indexes and "
        "per-contig statistics (length, N, GC, soft-masked fraction).",
        [
            "dnalm prepare-genome hg38.fa.gz results/genomes/hg38/genome.fa.gz --genome-id hg38",
            "dnalm prepare-genome asm.fa out/genome.fa.gz --genome-id asm --exclude 'chrUn*' "
            "--exclude '*_alt'",
        ],
    )
    p.add_argument("fasta", type=Path, help="input FASTA (plain, gzip or bgzip)")
    p.add_argument("out", type=Path, help="output genome.fa.gz (bgzip); .fai/.gzi written beside")
    p.add_argument("--genome-id", required=True, help="genome name recorded in the statistics")
    p.add_argument("--stats", type=Path, help="statistics Parquet (default: beside the output)")
    p.add_argument("--include", action="append", default=[], help="glob of contigs to keep")
    p.add_argument("--exclude", action="append", default=[], help="glob of contigs to drop")
    p.add_argument("--sha256", help="expected SHA-256 of the input file")
    p.add_argument("--md5", help="expected MD5 of the input file")
    p.set_defaults(handler=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> None:
    from dnalm.download import verify_local
    from dnalm.errors import InputFormatError
    from dnalm.fasta import prepare_genome

    if not args.fasta.is_file():
        raise InputFormatError("file not found", where=str(args.fasta))
    verify_local(args.fasta, sha256=args.sha256, md5=args.md5)
    stats = args.stats or args.out.parent / "genome_stats.parquet"
    rows = prepare_genome(args.fasta, args.out, stats, genome_id=args.genome_id,
                          include=args.include, exclude=args.exclude)
    total = sum(int(r["length"]) for r in rows)
    print(f"{args.out}: {len(rows)} contigs, {total:,} bp; statistics in {stats}")


def _length(text: str) -> int | tuple[int, int]:
    if "," in text or "-" in text:
        lo, hi = text.replace("-", ",").split(",", 1)
        return int(lo), int(hi)
    return int(text)


def _add_chunk(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "chunk",
        "Cut a prepared genome into train/validation/test chunks as Parquet shards.",
        [
            "dnalm chunk results/genomes/demo/genome.fa.gz chunks/ --genome-id demo",
            "dnalm chunk genome.fa.gz chunks/ --genome-id hg38 --length 70-10000 "
            "--split-mode contigs --validation-contig chr7 --test-contig chr10 --threads 8",
        ],
    )
    p.add_argument("fasta", type=Path, help="bgzipped FASTA with .fai (from prepare-genome)")
    p.add_argument("out_dir", type=Path, help="output directory (train/, validation/, test/)")
    chunk = functools.partial(field_default, ChunkConfig)
    split = functools.partial(field_default, SplitConfig)
    p.add_argument("--genome-id", required=True)
    p.add_argument("--length", type=_length, default=chunk("length"),
                   help=f"bp, or MIN-MAX (default {chunk('length')})")
    p.add_argument("--overlap", type=int, default=chunk("overlap"))
    p.add_argument("--min-length", type=int, default=chunk("min_length"))
    p.add_argument("--max-n-fraction", type=float, default=chunk("max_n_fraction"))
    p.add_argument("--softmask", choices=["keep", "upper"], default=chunk("softmask"))
    p.add_argument("--reverse-complement", action="store_true")
    p.add_argument("--shard-bp", type=int, default=chunk("shard_bp"))
    p.add_argument("--split-mode", choices=SPLIT_MODES, default=split("mode"))
    p.add_argument("--region-size", type=int, default=split("region_size"))
    p.add_argument("--validation-fraction", type=float, default=split("validation_fraction"))
    p.add_argument("--test-fraction", type=float, default=split("test_fraction"))
    p.add_argument("--validation-contig", action="append", default=[])
    p.add_argument("--test-contig", action="append", default=[])
    p.add_argument("--seed", type=int, default=split("seed"))
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(handler=_run_chunk)


def _run_chunk(args: argparse.Namespace) -> None:
    from dnalm.chunks import chunk_genome
    from dnalm.errors import InputFormatError

    if not Path(f"{args.fasta}.fai").is_file():
        raise InputFormatError("no .fai index beside it: run `dnalm prepare-genome` first",
                               where=str(args.fasta))
    chunk_cfg = ChunkConfig(
        length=args.length, overlap=args.overlap, min_length=args.min_length,
        max_n_fraction=args.max_n_fraction, softmask=args.softmask,
        reverse_complement=args.reverse_complement, seed=args.seed, shard_bp=args.shard_bp,
    )
    split_cfg = SplitConfig(
        mode=args.split_mode, validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction, region_size=args.region_size,
        validation_contigs=tuple(args.validation_contig), test_contigs=tuple(args.test_contig),
        seed=args.seed,
    )
    summaries = chunk_genome(args.fasta, args.out_dir, genome_id=args.genome_id,
                             chunk_cfg=chunk_cfg, split_cfg=split_cfg, threads=args.threads)
    for split, s in summaries.items():
        print(f"{split}: {s.chunks} chunks, {s.bases:,} bp, {s.shards} shards "
              f"(dropped {s.dropped_n} N-rich, {s.dropped_short} short)")


# --- tokenizers ---------------------------------------------------------------------------


def _add_build_tokenizer(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "build-tokenizer",
        "Build a tokenizer directory (loadable with transformers.AutoTokenizer): BPE trained on "
        "training chunks, overlapping k-mers, non-overlapping k-mers, single nucleotides, or a "
        "copy of an existing Hugging Face tokenizer.",
        [
            "dnalm build-tokenizer bpe results/tokenizers/bpe --vocab-size 4096 "
            "--chunks results/genomes/demo/chunks",
            "dnalm build-tokenizer kmer results/tokenizers/kmer6 --k 6",
            "dnalm build-tokenizer pretrained results/tokenizers/dnabert2 --path ~/DNABERT-2-117M",
        ],
    )
    p.add_argument("kind", choices=["bpe", "kmer", "nt_kmer", "char", "pretrained"])
    p.add_argument("out", type=Path, help="output tokenizer directory")
    p.add_argument("--chunks", type=Path, action="append", default=[],
                   help="chunk directory of a genome (its train/ shards feed BPE); repeatable")
    p.add_argument("--vocab-size", type=int, help="BPE vocabulary size (default 4096)")
    p.add_argument("--min-frequency", type=int, help="BPE minimum pair frequency")
    p.add_argument("--sample-bp", type=int, help="bp of training chunks sampled for BPE")
    p.add_argument("--k", type=int, help="k for kmer (3-6) and nt_kmer (default 6)")
    p.add_argument("--path", help="existing Hugging Face tokenizer directory (pretrained)")
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(handler=_run_build_tokenizer)


def _run_build_tokenizer(args: argparse.Namespace) -> None:
    from dnalm.io import list_parts
    from dnalm.tokenizers import build_tokenizer

    spec = {"kind": args.kind}
    for key in ("vocab_size", "min_frequency", "sample_bp", "k", "path"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    parts = [p for d in args.chunks for p in list_parts(d / "train")]
    meta = build_tokenizer(spec, args.out, train_parts=parts, seed=args.seed)
    print(f"{args.out}: {meta['kind']} tokenizer, {meta['vocab_size']} tokens")


def _add_tokenize(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "tokenize",
        "Tokenize a genome's chunk shards into token shards (input_ids + per-token base offsets).",
        ["dnalm tokenize results/tokenizers/bpe results/genomes/demo/chunks "
         "results/genomes/demo/tokens/bpe --threads 4"],
    )
    p.add_argument("tokenizer", type=Path, help="tokenizer directory (dnalm build-tokenizer)")
    p.add_argument("chunks", type=Path, help="chunk directory (dnalm chunk)")
    p.add_argument("out", type=Path, help="output token directory")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(handler=_run_tokenize)


def _run_tokenize(args: argparse.Namespace) -> None:
    from dnalm.tokenizers import tokenize_shards

    _check_inputs(args.tokenizer, args.chunks)
    totals = tokenize_shards(args.tokenizer, args.chunks, args.out, threads=args.threads)
    for split, t in totals.items():
        print(f"{split}: {t['rows']} chunks, {t['bases']:,} bp -> {t['tokens']:,} tokens")


def _add_tokenizer_stats(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "tokenizer-stats",
        "Measure a tokenizer on validation chunks: mean token length, tokens per bp, vocabulary "
        "use, longest tokens (Parquet + PNG).",
        ["dnalm tokenizer-stats results/tokenizers/bpe results/genomes/demo/chunks "
         "--out stats.parquet --plot stats.png"],
    )
    p.add_argument("tokenizer", type=Path)
    p.add_argument("chunks", type=Path, nargs="+", help="chunk directories (validation/ is used)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--plot", type=Path, required=True)
    p.set_defaults(handler=_run_tokenizer_stats)


def _run_tokenizer_stats(args: argparse.Namespace) -> None:
    from dnalm.io import list_parts
    from dnalm.tokenizers import tokenizer_stats

    _check_inputs(args.tokenizer, *args.chunks)
    parts = [p for d in args.chunks for p in list_parts(d / "validation")]
    stats = tokenizer_stats(args.tokenizer, parts, args.out, args.plot)
    print({k: v for k, v in stats.items() if not isinstance(v, list)})


# --- pretraining --------------------------------------------------------------------------


def _add_pretrain_segment(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "pretrain-segment",
        "Train one job of a masked-LM pretraining run (steps n x steps_per_job onwards, from job "
        "n-1's checkpoint) and write its checkpoint directory; with --gpus N > 1 outside "
        "torchrun, start torchrun with one process per GPU.",
        [
            "dnalm pretrain-segment --config config/config.yaml --model demo "
            "--tokenizer results/tokenizers/bpe --train results/genomes/demo/tokens/bpe/train "
            "--validation results/genomes/demo/tokens/bpe/validation --segment 0 "
            "--out results/models/demo/segments/0",
            "dnalm pretrain-segment --config run.yaml --set total_steps=20000 --tokenizer tok "
            "--train tokens/train --segment 1 --previous run/segments/0 --out run/segments/1 "
            "--threads 32 --gpus 4",
        ],
    )
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="YAML/JSON with one run's settings (the keys of a pretraining.models "
                   "entry, optionally under 'pretrain:'), or a workflow config with --model")
    p.add_argument("--model", metavar="NAME",
                   help="the run to read from a workflow config (pretraining.models)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change one setting (the value is read as YAML); repeatable")
    p.add_argument("--tokenizer", required=True, type=Path, metavar="DIR",
                   help="tokenizer directory (dnalm build-tokenizer)")
    p.add_argument("--train", nargs="+", required=True, type=Path, metavar="DIR",
                   help="training token-shard directories (tokens/<tokenizer>/train, one per "
                   "genome)")
    p.add_argument("--validation", nargs="*", default=[], type=Path, metavar="DIR",
                   help="validation token-shard directories")
    p.add_argument("--segment", type=int, required=True, metavar="N",
                   help="job number n (0 starts the run)")
    p.add_argument("--previous", type=Path, metavar="DIR",
                   help="job n-1's checkpoint directory (n > 0)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="this job's checkpoint directory (written whole or not at all)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (shared by the processes)")
    p.add_argument("--gpus", type=int, default=0,
                   help="GPUs per node: 0 trains on the CPU, N > 1 one process per GPU")
    p.set_defaults(handler=_run_pretrain_segment)


def _run_pretrain_segment(args: argparse.Namespace) -> None:
    import json
    import os

    from dnalm.train.config import load_settings
    from dnalm.train.launch import train_segment

    config = load_settings(args.config, args.set, model=args.model)
    _check_inputs(args.tokenizer, *args.train, *args.validation,
                  *([args.previous] if args.previous else []))
    summary = train_segment(config, tokenizer_dir=args.tokenizer, train_dirs=args.train,
                            validation_dirs=args.validation, segment=args.segment,
                            previous_checkpoint=args.previous, out_dir=args.out,
                            threads=args.threads, gpus=args.gpus)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary for all processes of a torchrun
        print(json.dumps(summary, indent=2))


def _add_finalize_model(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "finalize-model",
        "Publish a finished pretraining run: the last job's model as a Hugging Face directory, "
        "with the metrics of all jobs (metrics.parquet) and the loss curve (loss_curve.png).",
        ["dnalm finalize-model results/models/demo results/models/demo/segments/0 "
         "results/models/demo/segments/1"],
    )
    p.add_argument("model_dir", type=Path, help="the run's directory (results/models/<name>)")
    p.add_argument("segments", nargs="+", type=Path,
                   help="the checkpoint directories of every job, from job 0 on")
    p.add_argument("--chunks", nargs="+", type=Path, metavar="DIR",
                   help="chunk directories (results/genomes/<g>/chunks) of the pretraining "
                        "genomes: adds the order-0..5 Markov baselines (markov.parquet)")
    p.set_defaults(handler=_run_finalize_model)


def _run_finalize_model(args: argparse.Namespace) -> None:
    import json

    from dnalm.train.finalize import finalize

    print(json.dumps(finalize(args.model_dir, args.segments, chunk_dirs=args.chunks),
                     indent=2))


# --- fine-tuning --------------------------------------------------------------------------


def _add_finetune(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "finetune",
        "Fine-tune a model on a GUE-style folder of sequence,label tables (train/dev/test "
        ".csv/.tsv/.parquet; no dev file: a seeded 10%% of train) with LoRA or in full; write "
        "the adapter, metrics.json and predictions.parquet, and optionally a k-mer baseline.",
        [
            "dnalm finetune data/tasks/human_enhancers_cohn results/models/demo out/cohn_demo",
            "dnalm finetune GUE/prom_300_all ~/DNABERT-2-117M out/prom "
            "--method lora --lora-r 8 --epochs 3 --baseline-dir out/prom_kmer",
        ],
    )
    p.add_argument("task_dir", type=Path, help="folder with train, test (and dev) tables")
    p.add_argument("model", type=Path, help="Hugging Face model directory (with tokenizer)")
    p.add_argument("out", type=Path, help="output run directory")
    tune = functools.partial(field_default, FinetuneSettings)
    lora = functools.partial(field_default, LoraSettings)
    p.add_argument("--problem", choices=["classification", "regression"],
                   default="classification")
    p.add_argument("--method", choices=METHODS, default=tune("method"))
    p.add_argument("--lora-r", type=int, default=lora("r"))
    p.add_argument("--lora-alpha", type=float, default=lora("alpha"))
    p.add_argument("--lora-dropout", type=float, default=lora("dropout"))
    p.add_argument("--target-modules", help="comma-separated module names (default: per model)")
    p.add_argument("--epochs", type=int, default=tune("epochs"))
    p.add_argument("--batch-size", type=int, default=tune("batch_size"))
    p.add_argument("--learning-rate", type=float,
                   help="default: " + ", ".join(f"{m} {lr:g}"
                                                for m, lr in DEFAULT_LEARNING_RATE.items()))
    p.add_argument("--max-length", type=int, default=tune("max_length"))
    p.add_argument("--patience", type=int, default=tune("patience"))
    p.add_argument("--merge", action="store_true", help="also write a merged model")
    p.add_argument("--seed", type=int, default=tune("seed"))
    p.add_argument("--threads", type=int, default=tune("threads"))
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the checkpoint's own code, for a directory dnalm does not recognise")
    p.add_argument("--baseline-dir", type=Path, help="also train the k-mer baseline here")
    p.add_argument("--drop-invalid", action="store_true",
                   help="drop rows that cannot train (no or NaN label, a sequence that is not "
                   "DNA) with a warning counting them, instead of refusing the first")
    p.set_defaults(handler=_run_finetune)


def _run_finetune(args: argparse.Namespace) -> None:
    from dnalm.finetune import finetune_from_paths

    _check_inputs(args.task_dir, args.model)
    lora = {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout,
            "target_modules": args.target_modules.split(",") if args.target_modules else None}
    metrics = finetune_from_paths(
        args.task_dir, args.model, args.out, problem=args.problem,
        baseline_dir=args.baseline_dir, drop_invalid=args.drop_invalid, method=args.method,
        lora=lora, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate,
        max_length=args.max_length, patience=args.patience, seed=args.seed,
        threads=args.threads, trust_remote_code=args.trust_remote_code, merge=args.merge,
    )
    test = metrics.get("test", {})
    shown = ", ".join(f"{k} {v:.3f}" for k, v in test.items() if isinstance(v, float))
    print(f"{args.out}: test {shown}")
    spans = metrics.get("intervals") or {}
    bounds = ", ".join(f"{k} {v[0]:.3f}-{v[1]:.3f}" for k, v in spans.items()
                       if isinstance(v, list))
    chance = metrics.get("chance") or {}
    if chance.get("accuracy") is not None:
        bounds += f"; chance (majority class {chance['label']}): accuracy {chance['accuracy']:.3f}"
    if bounds:
        print(f"{args.out}: 95% intervals {bounds}")
    if metrics.get("collapsed"):
        print(f"{args.out}: COLLAPSED, not a result: {metrics.get('collapse_reason')}")


# --- scoring ------------------------------------------------------------------------------


def _add_runtime_options(p: argparse.ArgumentParser, *,
                         chr_match: str = "do not match chr20 to 20 (and chrM to MT)") -> None:
    """``--no-chr-match``, ``--threads`` and ``--cpu``: every command that runs a model on a
    genome's sequences takes them the same way."""
    p.add_argument("--no-chr-match", action="store_true", help=chr_match)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--cpu", action="store_true", help="use the CPU even when a GPU is visible")


def _add_score_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path,
                   help="Hugging Face masked-LM directory (with its tokenizer)")
    p.add_argument("--genome", required=True, type=Path,
                   help="genome FASTA: bgzipped with .fai/.gzi (dnalm prepare-genome) or plain; "
                   "a plain-gzip one is copied bgzipped once, to dnalm-genome-cache/")
    score = functools.partial(field_default, ScoreConfig)
    p.add_argument("--mode", choices=SCORE_MODES, default=score("mode"))
    p.add_argument("--window-bp", type=int, help="window in bp (default: fill the model input)")
    p.add_argument("--average-strands", action="store_true",
                   help="average forward and reverse-complement scores")
    p.add_argument("--batch-size", type=int, default=score("batch_size"))
    p.add_argument("--pll-flank", type=int, help="pll mode: tokens each side of the change")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the checkpoint's own model code (off by default)")
    _add_runtime_options(p)


def _score_cfg(args: argparse.Namespace):
    return ScoreConfig(mode=args.mode, window_bp=args.window_bp,
                       average_strands=args.average_strands, batch_size=args.batch_size,
                       pll_flank=args.pll_flank)


def _torch_threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _add_score_variants(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "score-variants",
        "Score the variants of a VCF (or contig,pos,ref,alt table) with a masked language model "
        "(ESM-1v masked marginals by default); write a Parquet table and an annotated, "
        "tabix-indexed VCF.",
        [
            "dnalm score-variants --model results/models/demo --genome "
            "results/genomes/demo/genome.fa.gz --vcf data/demo_chr20_hnf4a/1kg_pilot_sites.vcf "
            "--out scores.parquet",
            "dnalm score-variants --model ~/nt-v2-50m --genome hg38.fa.gz --vcf clinvar.vcf.gz "
            "--out clinvar.parquet --annotated-vcf clinvar.dnalm.vcf.gz --average-strands",
        ],
    )
    _add_score_options(p)
    p.add_argument("--vcf", required=True, type=Path, help="VCF/BCF or .csv/.tsv/.parquet table")
    p.add_argument("--out", required=True, type=Path, help="output Parquet table")
    p.add_argument("--annotated-vcf", type=Path,
                   help="also write the VCF with INFO/DNALM scores (.vcf.gz + .tbi)")
    p.set_defaults(handler=_run_score_variants)


def _check_inputs(*paths: Path) -> None:
    from dnalm.errors import InputFormatError

    for path in paths:
        if not path.exists():
            raise InputFormatError("not found", where=str(path))


def _run_score_variants(args: argparse.Namespace) -> None:
    from dnalm.score.run import score_vcf_region
    from dnalm.variants import annotate_vcf, check_annotatable

    _check_inputs(args.model, args.genome, args.vcf)
    if args.annotated_vcf:
        check_annotatable(args.vcf)  # before scoring: a failed command leaves no output
    _torch_threads(args)
    table = score_vcf_region(args.model, args.genome, args.vcf, args.out, cfg=_score_cfg(args),
                             match_chr_prefix=not args.no_chr_match,
                             gpus=0 if args.cpu else None,
                             trust_remote_code=args.trust_remote_code)
    if args.annotated_vcf:
        try:
            annotate_vcf(args.vcf, table.sort_values("record", kind="stable"),
                         args.annotated_vcf)
        except BaseException:
            args.out.unlink(missing_ok=True)
            raise
    scored = int(table["score"].notna().sum())
    print(f"{args.out}: {scored} of {len(table)} variants scored")
    for reason, count in table.loc[table["score"].isna(), "reason"].value_counts().items():
        print(f"  skipped {count}: {reason}")


def _add_saturate(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "saturate",
        "Saturation mutagenesis: score every position of BED regions x 3 alternative bases; "
        "write Parquet and a bigWig of the per-position mean score.",
        [
            "dnalm saturate --model results/models/demo --genome "
            "results/genomes/demo/genome.fa.gz --bed promoters.bed --out sat.parquet "
            "--bigwig sat.bw --mode wt-marginal",
        ],
    )
    _add_score_options(p)
    p.add_argument("--bed", required=True, type=Path, help="regions (contig, start, end[, name])")
    p.add_argument("--out", required=True, type=Path, help="output Parquet table")
    p.add_argument("--bigwig", required=True, type=Path, help="output bigWig")
    p.set_defaults(handler=_run_saturate)


def _run_saturate(args: argparse.Namespace) -> None:
    from dnalm.score.run import saturate_regions

    _check_inputs(args.model, args.genome, args.bed)
    _torch_threads(args)
    table = saturate_regions(args.model, args.genome, args.bed, args.out, args.bigwig,
                             cfg=_score_cfg(args), match_chr_prefix=not args.no_chr_match,
                             gpus=0 if args.cpu else None,
                             trust_remote_code=args.trust_remote_code)
    print(f"{args.out}: {int(table['score'].notna().sum())} substitutions scored; {args.bigwig}")


# --- using a model: embeddings, predictions -----------------------------------------------


def _add_sequence_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="FASTA (plain/gzip), table with a sequence column "
                   "(.csv/.tsv/.parquet) or BED intervals (with --genome)")
    p.add_argument("--out", required=True, type=Path, help="output Parquet table")
    p.add_argument("--genome", type=Path,
                   help="genome of BED input (bgzipped + .fai, or plain; plain gzip is copied "
                   "bgzipped once, to dnalm-genome-cache/)")
    p.add_argument("--format", choices=["fasta", "table", "bed"],
                   help="input format (default: from the file name)")
    p.add_argument("--sequence-column", default="sequence", help="table input: sequence column")
    p.add_argument("--id-column", default="id", help="table input: id column")
    _add_runtime_options(p, chr_match="BED input: do not match chr20 to 20 (and chrM to MT)")


def _input_options(args: argparse.Namespace) -> dict:
    return {"fmt": args.format, "genome": args.genome, "sequence_column": args.sequence_column,
            "id_column": args.id_column, "match_chr_prefix": not args.no_chr_match,
            "gpus": 0 if args.cpu else None}


def _add_embed(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "embed",
        "Embed sequences (FASTA, a sequence table, or strand-aware BED intervals on a genome) "
        "with a model directory or a fine-tuned run (LoRA applied): mean over content tokens, "
        "the [CLS] vector, or one row per token; any hidden layer; long inputs in windows. "
        "Writes Parquet with a fixed-size float32 'embedding' column "
        "(dnalm.embed.embedding_matrix(path) reads it as one NumPy array).",
        [
            "dnalm embed results/models/demo data/demo_chr20_hnf4a/promoters.bed "
            "--genome results/genomes/demo/genome.fa.gz --out promoters_emb.parquet",
            "dnalm embed tests/data/published/dnabert2 seqs.fa --out emb.parquet --pooling cls "
            "--layer -2",
            "dnalm embed results/finetune/human_enhancers_cohn/demo seqs.csv --out emb.parquet "
            "--pooling tokens",
        ],
    )
    p.add_argument("model", type=Path, help="model directory (pipeline or published "
                   "checkpoint) or fine-tuned run directory")
    _add_sequence_input(p)
    from dnalm.embed import LONG_POLICIES, POOLINGS, EmbedSettings

    embed = functools.partial(field_default, EmbedSettings)
    p.add_argument("--pooling", choices=POOLINGS, default=embed("pooling"))
    p.add_argument("--layer", type=int, default=embed("layer"),
                   help="hidden state: 0 embeddings, i block i; negative from the end (-1 last)")
    p.add_argument("--long", choices=LONG_POLICIES, default=embed("long"),
                   help="inputs longer than the model's: token-weighted mean over windows, or "
                   "one row per window")
    p.add_argument("--window-tokens", type=int,
                   help="content tokens per window (default: the model's input length)")
    p.add_argument("--batch-size", type=int, default=embed("batch_size"))
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the checkpoint's own code, for a directory dnalm does not recognise")
    p.set_defaults(handler=_run_embed)


def _run_embed(args: argparse.Namespace) -> None:
    from dnalm.embed import EmbedSettings, embed_file

    _check_inputs(args.input, args.model)
    _torch_threads(args)
    settings = EmbedSettings(pooling=args.pooling, layer=args.layer, long=args.long,
                             batch_size=args.batch_size, window_tokens=args.window_tokens)
    table = embed_file(args.model, args.input, args.out, settings=settings,
                       trust_remote_code=args.trust_remote_code, **_input_options(args))
    dim = table.schema.field("embedding").type.list_size
    print(f"{args.out}: {table.num_rows} rows of {dim}-dimensional {args.pooling} embeddings")


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "predict",
        "Apply a fine-tuned run (LoRA adapter or full model) to FASTA, a sequence table or "
        "strand-aware BED intervals: class probabilities (or regression values) per sequence "
        "in Parquet, with the input's ids. Longer inputs than the run's: windows averaged "
        "(RMT runs read each window as their segments), or --long truncate as fine-tuning did.",
        [
            "dnalm predict out/cohn_demo data/demo_chr20_hnf4a/promoters.bed "
            "--genome results/genomes/demo/genome.fa.gz --out promoters_pred.parquet",
            "dnalm predict results/finetune/human_enhancers_cohn/demo candidates.fa "
            "--out candidates.parquet --long truncate",
        ],
    )
    p.add_argument("run", type=Path, help="fine-tuning run directory (adapter/ or model/)")
    _add_sequence_input(p)
    p.add_argument("--long", choices=PREDICT_LONG_POLICIES,
                   default=field_default(PredictSettings, "long"),
                   help="inputs longer than the run's: average over windows, or read the "
                   "first window only (counted in 'truncated')")
    p.add_argument("--batch-size", type=int, help="default: the run's evaluation batch size")
    p.set_defaults(handler=_run_predict)


def _run_predict(args: argparse.Namespace) -> None:
    from dnalm.finetune.predict import predict_file

    _check_inputs(args.input, args.run)
    _torch_threads(args)
    table = predict_file(args.run, args.input, args.out, long=args.long,
                         batch_size=args.batch_size, **_input_options(args))
    truncated = sum(table.column("truncated").to_pylist())
    print(f"{args.out}: {table.num_rows} sequences predicted"
          + (f" ({truncated} truncated)" if truncated else ""))


# --- fine-tuned variant effects and mutation maps ------------------------------------------


def _add_effect_options(p: argparse.ArgumentParser) -> None:
    effect = functools.partial(field_default, EffectSettings)
    p.add_argument("--run", required=True, type=Path,
                   help="fine-tuning run directory (adapter/, model/ or merged/)")
    p.add_argument("--genome", required=True, type=Path,
                   help="genome FASTA: bgzipped with .fai/.gzi (dnalm prepare-genome) or plain; "
                   "a plain-gzip one is copied bgzipped once, to dnalm-genome-cache/")
    p.add_argument("--class-index", type=int, default=effect("class_index"),
                   help="class whose log-odds change is the score (default %(default)s); "
                   "every class's changes are in the table")
    p.add_argument("--window-bp", type=int,
                   help="window in bp (default: the run's input as its tokenizer reads the genome)")
    p.add_argument("--average-strands", action="store_true",
                   help="average the forward and reverse-complement windows' outputs")
    p.add_argument("--batch-size", type=int, help="default: the run's evaluation batch size")
    _add_runtime_options(p)


def _effect_settings(args: argparse.Namespace, **extra: object) -> EffectSettings:
    return EffectSettings(class_index=args.class_index, window_bp=args.window_bp,
                          average_strands=args.average_strands, batch_size=args.batch_size,
                          **extra)


def _add_variant_effects(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "variant-effects",
        "Variant effects of a fine-tuned run (DNABERT's functional-variant analysis): a window "
        "centred on each variant is predicted with the reference and the alternate allele; per "
        "class the change alt - ref in log-odds and in probability. Parquet and an annotated, "
        "tabix-indexed VCF (INFO/DNALM_FT, DNALM_FT_DP, DNALM_FT_SKIP).",
        [
            "dnalm variant-effects --run results/finetune/human_enhancers_cohn/demo --genome "
            "results/genomes/demo/genome.fa.gz --vcf data/demo_chr20_hnf4a/1kg_pilot_sites.vcf "
            "--out effects.parquet --annotated-vcf effects.vcf.gz",
            "dnalm variant-effects --run runs/promoter_lora --genome hg38.fa.gz --vcf gwas.vcf.gz "
            "--out gwas_effects.parquet --average-strands --class-index 1",
        ],
    )
    _add_effect_options(p)
    p.add_argument("--vcf", required=True, type=Path, help="VCF/BCF or .csv/.tsv/.parquet table")
    p.add_argument("--out", required=True, type=Path, help="output Parquet table")
    p.add_argument("--annotated-vcf", type=Path,
                   help="also write the VCF with INFO/DNALM_FT* (.vcf.gz + .tbi)")
    p.set_defaults(handler=_run_variant_effects)


def _run_variant_effects(args: argparse.Namespace) -> None:
    from dnalm.finetune.effects import effects_region, effects_vcf
    from dnalm.variants import check_annotatable

    _check_inputs(args.run, args.genome, args.vcf)
    if args.annotated_vcf:
        check_annotatable(args.vcf)  # before scoring: a failed command leaves no output
    _torch_threads(args)
    table = effects_region(args.run, args.genome, args.vcf, args.out,
                           settings=_effect_settings(args),
                           match_chr_prefix=not args.no_chr_match, gpus=0 if args.cpu else None)
    if args.annotated_vcf:
        try:
            effects_vcf(args.out, args.vcf, args.annotated_vcf)
        except BaseException:
            args.out.unlink(missing_ok=True)
            raise
    print(f"{args.out}: {int(table['score'].notna().sum())} of {len(table)} variants scored")
    for reason, count in table.loc[table["score"].isna(), "reason"].value_counts().items():
        print(f"  skipped {count}: {reason}")


def _add_mutation_map(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "mutation-map",
        "Saturation mutagenesis with a fine-tuned run: every position of BED regions x 3 "
        "alternative bases, the change alt - ref in the run's prediction. Parquet, a bigWig of "
        "the per-position maximum |change| and a mutation-map picture (position x base).",
        [
            "dnalm mutation-map --run results/finetune/human_enhancers_cohn/demo --genome "
            "results/genomes/demo/genome.fa.gz --bed data/demo_chr20_hnf4a/saturation.bed "
            "--out map.parquet --bigwig map.bw --png map.png",
        ],
    )
    _add_effect_options(p)
    p.add_argument("--bed", required=True, type=Path, help="regions (contig, start, end[, name])")
    p.add_argument("--out", required=True, type=Path, help="output Parquet table")
    p.add_argument("--bigwig", required=True, type=Path, help="output bigWig")
    p.add_argument("--png", type=Path, help="also draw the mutation map (regions up to "
                   "--map-max-bp long)")
    p.add_argument("--map-max-bp", type=int,
                   default=field_default(EffectSettings, "map_max_bp"))
    p.set_defaults(handler=_run_mutation_map)


def _run_mutation_map(args: argparse.Namespace) -> None:
    from dnalm.finetune.effects import saturate_effects

    _check_inputs(args.run, args.genome, args.bed)
    _torch_threads(args)
    table = saturate_effects(args.run, args.genome, args.bed, args.out, args.bigwig, args.png,
                             settings=_effect_settings(args, map_max_bp=args.map_max_bp),
                             match_chr_prefix=not args.no_chr_match,
                             gpus=0 if args.cpu else None)
    print(f"{args.out}: {int(table['score'].notna().sum())} substitutions scored; {args.bigwig}"
          + (f"; {args.png}" if args.png else ""))


# --- evaluation against labels ------------------------------------------------------------


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "evaluate",
        "Evaluate score tables against variant labels: per model x score x stratum, n, AUROC "
        "and AUPRC (or Spearman's rho for a numeric label) with seeded bootstrap intervals, "
        "beside chance (AUROC 0.5, AUPRC the positive fraction). Labels are an INFO field of "
        "the scored VCF or a column of the scored table (joined on record and ALT), or a "
        "column of a separate table (joined on contig,pos,ref,alt). Zero-shot scores are read "
        "as -score (lower = more damaging), fine-tuned effects as |score|.",
        [
            "dnalm evaluate --scores results/scores/clinvar20/demo/clinvar_chr20.parquet "
            "--variants data/clinvar_chr20/clinvar_pathogenic_vs_gnomad_common_chr20.vcf "
            "--label-info LABEL --positive Pathogenic --out clinvar_eval.parquet",
            "dnalm evaluate --scores nt=nt.parquet --scores demo=demo.parquet "
            "--effects results/effects/clinvar20/enh/demo/clinvar_chr20.parquet "
            "--variants sites.vcf --label-info LABEL --positive Pathogenic --strata CSQ "
            "--out eval.parquet --html eval.html --curves eval.png",
            "dnalm evaluate --scores scores.parquet --labels mpra.tsv --label-column "
            "log2_effect --direction higher --out eval.parquet",
        ],
    )
    from dnalm.evaluate import DIRECTIONS, EvaluationSettings

    default = functools.partial(field_default, EvaluationSettings)
    p.add_argument("--scores", action="append", default=[], metavar="[NAME=]PATH",
                   help="zero-shot score table (repeatable; NAME defaults to its folder, the "
                   "model)")
    p.add_argument("--effects", action="append", default=[], metavar="[NAME=]PATH",
                   help="fine-tuned effects table (repeatable; NAME defaults to task/run)")
    p.add_argument("--variants", type=Path, help="the variant file that was scored (VCF or "
                   "contig,pos,ref,alt table), holding the labels")
    p.add_argument("--labels", type=Path, help="or: a separate contig,pos,ref,alt table "
                   "holding the labels (--label-column)")
    label = p.add_mutually_exclusive_group(required=True)
    label.add_argument("--label-info", metavar="FIELD", help="VCF INFO field with the label")
    label.add_argument("--label-column", metavar="COLUMN", help="table column with the label")
    p.add_argument("--positive", action="append", default=[], metavar="VALUE",
                   help="label value counted positive (repeatable; others are negative); "
                   "none: the label is a number, evaluated by Spearman's rho")
    p.add_argument("--strata", metavar="FIELD", help="INFO field or column splitting the set "
                   "(metrics overall and per value)")
    p.add_argument("--out", required=True, type=Path, help="output Parquet table")
    p.add_argument("--html", type=Path, help="also write the table as an HTML page")
    p.add_argument("--curves", type=Path, help="also write ROC and precision-recall curves "
                   "(PNG)")
    p.add_argument("--name", help="name of the labelled set (default: the label file's name)")
    p.add_argument("--direction", choices=DIRECTIONS, default=default("zero_shot_direction"),
                   help="zero-shot predictor: lower (-score, masked marginals), higher or abs")
    p.add_argument("--effects-direction", choices=DIRECTIONS,
                   default=default("effects_direction"), help="fine-tuned effects predictor")
    p.add_argument("--effects-score", action="append", metavar="COLUMN",
                   help="effects table column to evaluate (repeatable; default: score, the "
                   "run's chosen class; or delta_prob_<c>, delta_logodds_<c>)")
    p.add_argument("--n-bootstrap", type=int, default=default("n_bootstrap"))
    p.add_argument("--confidence", type=float, default=default("confidence"))
    p.add_argument("--seed", type=int, default=default("seed"))
    p.set_defaults(handler=_run_evaluate)


def _score_tables(values: Sequence[str], kind: str) -> list:
    from dnalm.evaluate import ScoreTable

    tables = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or Path(value).exists():   # a path holding "=" is a path
            path = value
            parent = Path(path).parent
            name = f"{parent.parent.name}/{parent.name}" if kind == "effects" else parent.name
        _check_inputs(Path(path))
        tables.append(ScoreTable(name or Path(path).stem, path, kind))
    return tables


def _run_evaluate(args: argparse.Namespace) -> None:
    from dnalm.errors import ConfigError
    from dnalm.evaluate import ALL, EvaluationSettings, LabelSpec, evaluate_set

    tables = (_score_tables(args.scores, "zero-shot")
              + _score_tables(args.effects, "effects"))
    if not tables:
        raise ConfigError("give at least one --scores or --effects table")
    names = [t.name for t in tables]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"two tables are named {', '.join(twice)}: name them NAME=PATH")
    if (args.variants is None) == (args.labels is None):
        raise ConfigError("give the labels as --variants (the scored file) or --labels "
                          "(a separate table), one of them")
    source = args.labels or args.variants
    _check_inputs(source)
    spec = LabelSpec(info=args.label_info, column=args.label_column,
                     table=str(args.labels) if args.labels else None,
                     positive=tuple(args.positive), strata=args.strata)
    settings = EvaluationSettings(
        n_bootstrap=args.n_bootstrap, confidence=args.confidence, seed=args.seed,
        zero_shot_direction=args.direction, effects_direction=args.effects_direction,
        effects_scores=tuple(args.effects_score or ("score",)))
    name = args.name or source.name.split(".")[0]
    frame = evaluate_set(args.variants, tables, spec, args.out, settings=settings,
                         set_name=name, out_html=args.html, out_png=args.curves)
    for row in frame[frame["stratum"] == ALL].itertuples(index=False):
        if spec.binary:
            metric = (f"AUROC {row.auroc:.3f} ({row.auroc_low:.3f}-{row.auroc_high:.3f}; "
                      f"chance 0.5), AUPRC {row.auprc:.3f} (chance {row.auprc_chance:.3f})")
        else:
            metric = f"Spearman {row.spearman:.3f} ({row.spearman_low:.3f}-{row.spearman_high:.3f})"
        print(f"{row.model} {row.score} [{row.direction}]: n {row.n} "
              f"({row.n_unscored} unscored), {metric}")
    print(f"{args.out}: {len(frame)} rows")


# --- coding variants ----------------------------------------------------------------------


def _add_score_coding(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "score-coding",
        "Protein consequences of variants per transcript (GTF/GFF3 CDS rows), scored with "
        "protein language models (ESM-1v style masked marginals; several --model are averaged).",
        [
            "dnalm score-coding --genome data/hg38_chr16_axin1_slice/chr16_186964_397118.fa "
            "--annotation data/hg38_chr16_axin1_slice/refseq_chr16_slice.gtf "
            "--vcf data/hg38_chr16_axin1_slice/demo_coding.vcf --model ~/esm1v_1 "
            "--out coding.parquet",
        ],
    )
    p.add_argument("--genome", required=True, type=Path, help="FASTA (plain, bgzipped, or gzip: "
                   "copied bgzipped once, to dnalm-genome-cache/)")
    p.add_argument("--annotation", required=True, type=Path, help="GTF or GFF3 with CDS rows")
    p.add_argument("--vcf", required=True, type=Path, help="VCF or contig,pos,ref,alt table")
    p.add_argument("--model", action="append", type=Path, default=[],
                   help="EsmForMaskedLM directory; repeat for an ensemble "
                   "(none: consequences only)")
    p.add_argument("--out", required=True, type=Path, help="output Parquet")
    coding = functools.partial(field_default, CodingSettings)
    p.add_argument("--mode", choices=CODING_MODES, default=coding("mode"))
    p.add_argument("--batch-size", type=int, default=coding("batch_size"))
    p.add_argument("--no-chr-match", action="store_true")
    p.set_defaults(handler=_run_score_coding)


def _run_score_coding(args: argparse.Namespace) -> None:
    from dnalm.coding.run import score_coding

    _check_inputs(args.genome, args.annotation, args.vcf, *args.model)
    table = score_coding(args.genome, args.annotation, args.vcf, args.model, args.out,
                         settings=CodingSettings(mode=args.mode, batch_size=args.batch_size),
                         match_chr_prefix=not args.no_chr_match)
    counts = table["consequence"].value_counts()
    print(f"{args.out}: {len(table)} variant-transcript rows; "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _add_score_protein(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "score-protein",
        "Score protein mutants directly with protein language models (ESM-1v's deep-mutational-"
        "scanning setting): a table with a `mutant` column (A24G, or A24G:C30T for multiple "
        "mutations) on its `sequence` column or on --sequence, or every substitution of "
        "--sequence (saturation).",
        [
            "dnalm score-protein --model ~/esm1v_1 --table dms.csv --out dms_scores.parquet",
            "dnalm score-protein --model ~/esm1v_1 --sequence MKTAYIAKQR --saturate "
            "--out saturation.parquet",
        ],
    )
    p.add_argument("--model", action="append", type=Path, required=True,
                   help="EsmForMaskedLM directory; repeat for an ensemble (scores averaged)")
    p.add_argument("--table", type=Path, help="CSV/TSV/Parquet with a mutant column")
    p.add_argument("--sequence", help="wild-type protein sequence (if the table has none)")
    p.add_argument("--saturate", action="store_true",
                   help="score every residue x 19 substitutions of --sequence")
    p.add_argument("--out", required=True, type=Path, help="output Parquet")
    coding = functools.partial(field_default, CodingSettings)
    p.add_argument("--mode", choices=CODING_MODES, default=coding("mode"))
    p.add_argument("--batch-size", type=int, default=coding("batch_size"))
    p.set_defaults(handler=_run_score_protein)


def _run_score_protein(args: argparse.Namespace) -> None:
    from dnalm.coding.run import saturate_protein, score_protein_table
    from dnalm.errors import ConfigError

    _check_inputs(*args.model, *([args.table] if args.table else []))
    options = {"mode": args.mode, "batch_size": args.batch_size}
    if args.saturate:
        if not args.sequence or args.table:
            raise ConfigError("--saturate needs --sequence and no --table")
        table = saturate_protein(args.sequence, args.model, args.out, **options)
    elif args.table:
        table = score_protein_table(args.table, args.model, args.out, sequence=args.sequence,
                                    **options)
    else:
        raise ConfigError("give --table (mutants) or --sequence with --saturate")
    print(f"{args.out}: {int(table['score'].notna().sum())} of {len(table)} mutants scored")


# --- models -------------------------------------------------------------------------------


def _add_import_checkpoint(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "import-checkpoint",
        "Recognise a published checkpoint directory (DNABERT, DNABERT-2, Nucleotide Transformer "
        "v1/v2, GENA-LM) and write a dnalm-native copy (safetensors, native config, tokenizer "
        "files, dnalm_tokenizer.json) that AutoModelForMaskedLM loads after `import dnalm`, "
        "without trust_remote_code.",
        [
            "dnalm import-checkpoint ~/hf/DNABERT-2-117M models/dnabert2",
            "dnalm import-checkpoint tests/data/published/gena_bert /tmp/gena_native",
        ],
    )
    p.add_argument("src", type=Path, help="model directory as published (config.json, weights, "
                   "tokenizer files)")
    p.add_argument("dst", type=Path, help="directory to write (must not exist or be replaceable)")
    p.set_defaults(handler=_run_import_checkpoint)


def _run_import_checkpoint(args: argparse.Namespace) -> None:
    from dnalm.models.directory import import_checkpoint

    _check_inputs(args.src)
    md = import_checkpoint(args.src, args.dst)
    print(f"{args.dst}: {md.describe()}")


# --- environment --------------------------------------------------------------------------


def _add_doctor(subparsers: argparse._SubParsersAction) -> None:
    p = _subparser(
        subparsers,
        "doctor",
        "Check the environment: package versions, GPUs, Snakemake plugins; print what is missing.",
        ["dnalm doctor"],
    )
    p.set_defaults(handler=_run_doctor)


def _run_doctor(args: argparse.Namespace) -> int:
    from dnalm.doctor import run_checks

    return run_checks(print)


COMMANDS = [_add_download, _add_prepare, _add_chunk, _add_build_tokenizer, _add_tokenize,
            _add_tokenizer_stats, _add_pretrain_segment, _add_finalize_model, _add_finetune,
            _add_score_variants, _add_saturate, _add_score_coding, _add_score_protein,
            _add_embed, _add_predict, _add_variant_effects, _add_mutation_map,
            _add_evaluate, _add_import_checkpoint, _add_doctor]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnalm",
        description=textwrap.dedent(
            """\
            dnalm: genomes to genome-wide scores with DNA language models.
            Each subcommand runs one stage of the Snakemake workflow by hand."""
        ),
        epilog=_examples("dnalm doctor", "dnalm chunk --help"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dnalm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug-level logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def _random_access_genome(args: argparse.Namespace) -> None:
    """Point ``--genome`` at a bgzipped, indexed copy when the file given cannot be read at
    random (a plain-gzip download from UCSC or Ensembl): every command that takes ``--genome``
    fetches regions from it. The copy is made once and reused
    (:func:`dnalm.genome.random_access_genome`)."""
    genome = getattr(args, "genome", None)
    if not isinstance(genome, Path) or not genome.is_file():
        return  # absent: the command says so
    from dnalm.genome import random_access_genome

    out = getattr(args, "out", None)
    args.genome = random_access_genome(genome, cache_dirs=[out.parent] if out else [])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dnalm`` script."""
    from dnalm.logs import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    setup_logging(verbose=args.verbose)
    try:
        _random_access_genome(args)
        status = args.handler(args)
    except KeyboardInterrupt:
        print("dnalm: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # one line for every failure (a traceback helps only a developer: --debug shows it)
        if args.debug:
            raise
        line = describe_error(exc)
        if not isinstance(exc, DnalmError | OSError):
            line += f" (run `dnalm --debug {args.command} ...` for the traceback)"
        print(f"dnalm: error: {line}", file=sys.stderr)
        return 1
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
