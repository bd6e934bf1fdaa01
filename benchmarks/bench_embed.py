"""Embedding throughput: ``dnalm embed`` against a naive one-sequence-at-a-time loop.

Run by hand (results go to benchmarks/RESULTS.md):

    .venv/bin/python benchmarks/bench_embed.py --sequences 1000 --repeats 3

Same model, same sequences, same windows and the same mean-pooled vectors for both, in one run:

* ``naive``: for every sequence, the Hugging Face tokenizer (``AutoTokenizer``), then each
  window of the model's input ([CLS] + at most ``max_length - 2`` tokens + [SEP]) padded to the
  model's full input length and run alone (batch of one), mean over its content tokens, windows
  averaged by token count: the loop a user writes from a model card's "get embeddings" snippet.
* ``dnalm``: :func:`dnalm.embed.embed_records` (one vectorised tokenization of every sequence,
  windows sorted by length and batched, padding to the longest window of a batch) followed by
  the Parquet write — what ``dnalm embed`` does after loading.

The model is the demo's: the ``dnabert2`` preset (ModernBERT) at size ``tiny``, 128-token
inputs, on a 4,096-token BPE tokenizer trained (seeded) on the demo genome's training chunks, with
random weights (speed does not depend on them). Sequences are random intervals of the demo genome
(uniform lengths in ``[min-bp, max-bp]``, both strands), read from a BED file as ``dnalm embed``
reads them. Each variant runs in a fresh subprocess (so its peak RSS, ``VmHWM``, is its own),
the repeats go round-robin over the variants, and the time covers the embedding only (model
loading and input reading are timed apart). The two variants' vectors are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo_chr20_hnf4a" / "chr20_42000001_44000000.fa.gz"


def prepare(work: Path, n: int, min_bp: int, max_bp: int, seed: int) -> dict[str, str]:
    """Prepared demo genome, the demo-size model and a BED of random intervals."""
    from dnalm.chunks import ChunkConfig, SplitConfig, chunk_genome
    from dnalm.fasta import prepare_genome
    from dnalm.io import list_parts
    from dnalm.models.presets import build_model
    from dnalm.models.saving import save_model_dir
    from dnalm.tokenizers import build_tokenizer

    genome = work / "genome.fa.gz"
    prepare_genome(DEMO, genome, work / "stats.parquet", genome_id="demo")
    chunk_genome(genome, work / "chunks", genome_id="demo", chunk_cfg=ChunkConfig(length=1000),
                 split_cfg=SplitConfig())
    build_tokenizer({"kind": "bpe", "vocab_size": 4096, "min_frequency": 2,
                     "sample_bp": 3_000_000}, work / "bpe",
                    train_parts=list_parts(work / "chunks" / "train"), seed=42)
    model = build_model("dnabert2", "tiny", work / "bpe", max_length=128, seed=0)
    save_model_dir(model, work / "bpe", work / "model",
                   {"preset": "dnabert2", "size": "tiny", "max_length": 128})
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_bp, max_bp + 1, n)
    starts = rng.integers(0, 2_000_000 - max_bp, n)
    strands = rng.choice(["+", "-"], n)
    contig = "chr20_42000001_44000000"
    bed = work / "regions.bed"
    bed.write_text("".join(f"{contig}\t{s}\t{s + length}\tr{i}\t0\t{st}\n" for i, (s, length, st)
                           in enumerate(zip(starts, lengths, strands, strict=True))))
    return {"genome": str(genome), "model": str(work / "model"), "bed": str(bed)}


def _peak_rss_mb() -> float:
    from dnalm.finetune.report import peak_memory_mb

    return float(peak_memory_mb()["peak_rss_mb"])


def run_dnalm(paths: dict[str, str], out: Path, batch_size: int) -> dict[str, object]:
    import dnalm.finetune  # imports outside the timers, as for the naive loop
    import dnalm.score.lm  # noqa: F401
    from dnalm.embed import EmbeddingEncoder, EmbedSettings, embed_records
    from dnalm.inputs import read_sequences
    from dnalm.io import write_table

    t0 = time.perf_counter()
    records = read_sequences(paths["bed"], genome=paths["genome"])
    encoder = EmbeddingEncoder.load(paths["model"], gpus=0)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = embed_records(encoder, records, EmbedSettings(batch_size=batch_size))
    write_table(table, out)
    seconds = time.perf_counter() - t0
    column = table.column("embedding").combine_chunks()
    vectors = column.flatten().to_numpy().reshape(len(column), -1)
    np.save(out.with_suffix(".npy"), vectors)
    windows = int(np.sum(table.column("n_windows").to_numpy()))
    return {"seconds": seconds, "setup_seconds": setup, "windows": windows,
            "bases": int(records.lengths.sum()), "sequences": len(records)}


def run_naive(paths: dict[str, str], out: Path) -> dict[str, object]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from dnalm.inputs import read_sequences

    t0 = time.perf_counter()
    records = read_sequences(paths["bed"], genome=paths["genome"])
    tok = AutoTokenizer.from_pretrained(paths["model"])
    model = AutoModel.from_pretrained(paths["model"]).eval()
    width = 128
    room = width - 2
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    vectors, windows = [], 0
    for seq in records.sequences:
        ids = tok(seq.upper(), add_special_tokens=False)["input_ids"]
        total = torch.zeros(model.config.hidden_size, dtype=torch.float64)
        for lo in range(0, len(ids), room):
            piece = ids[lo : lo + room]
            x = torch.full((1, width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((1, width), dtype=torch.long)
            x[0, : len(piece) + 2] = torch.tensor([tok.cls_token_id, *piece, tok.sep_token_id])
            mask[0, : len(piece) + 2] = 1
            with torch.inference_mode():
                hidden = model(input_ids=x, attention_mask=mask).last_hidden_state[0]
            total += hidden[1 : len(piece) + 1].double().sum(0)
            windows += 1
        vectors.append((total / len(ids)).float().numpy())
    seconds = time.perf_counter() - t0
    np.save(out.with_suffix(".npy"), np.stack(vectors))
    return {"seconds": seconds, "setup_seconds": setup, "windows": windows,
            "bases": int(records.lengths.sum()), "sequences": len(records)}


def worker(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    paths = json.loads(Path(args.paths).read_text())
    out = Path(args.out)
    result = (run_dnalm(paths, out, args.batch_size) if args.variant == "dnalm"
              else run_naive(paths, out))
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=1000)
    parser.add_argument("--min-bp", type=int, default=100)
    parser.add_argument("--max-bp", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--variant", choices=["dnalm", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        worker(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench_embed.") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        paths = prepare(work, args.sequences, args.min_bp, args.max_bp, args.seed)
        print(f"prepared genome, tokenizer, model and {args.sequences} intervals in "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
        (work / "paths.json").write_text(json.dumps(paths))
        runs: dict[str, list[dict]] = {"naive": [], "dnalm": []}
        for repeat in range(args.repeats):
            for variant in runs:
                out = work / f"{variant}_{repeat}.parquet"
                proc = subprocess.run(
                    [sys.executable, __file__, "--variant", variant, "--paths",
                     str(work / "paths.json"), "--out", str(out), "--threads", str(args.threads),
                     "--batch-size", str(args.batch_size)],
                    capture_output=True, text=True, check=True,
                    env={**os.environ, "PYTHONPATH": str(REPO / "src")})
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                runs[variant].append(result)
                print(f"{variant} #{repeat + 1}: {result['seconds']:.2f} s", file=sys.stderr)
        naive = np.load(work / "naive_0.npy")
        mine = np.load(work / "dnalm_0.npy")
        max_diff = float(np.abs(naive - mine).max())
        summary = {}
        for variant, results in runs.items():
            seconds = [r["seconds"] for r in results]
            best = min(seconds)
            first = results[0]
            summary[variant] = {
                "best_seconds": best, "median_seconds": statistics.median(seconds),
                "sequences_per_s": first["sequences"] / best, "bp_per_s": first["bases"] / best,
                "windows": first["windows"], "setup_seconds": min(r["setup_seconds"]
                                                                  for r in results),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}
        speed = summary["naive"]["best_seconds"] / summary["dnalm"]["best_seconds"]
        report = {"sequences": runs["dnalm"][0]["sequences"], "bases": runs["dnalm"][0]["bases"],
                  "threads": args.threads, "batch_size": args.batch_size,
                  "repeats": args.repeats, "max_abs_difference": max_diff, "speedup": speed,
                  "variants": summary, "python": platform.python_version()}
        print(json.dumps(report, indent=1))
        if args.out:
            args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
