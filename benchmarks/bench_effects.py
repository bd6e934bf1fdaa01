"""Fine-tuned variant effects: ``dnalm variant-effects`` against a naive one-variant-at-a-time loop.

Run by hand (results go to benchmarks/RESULTS.md):

    .venv/bin/python benchmarks/bench_effects.py --variants 2000 --repeats 3 --threads 1

Same fine-tuned run, same variants, same windows and the same scores for both, in one run:

* ``naive``: the base model and the LoRA adapter loaded with transformers + peft
  (``AutoModelForSequenceClassification`` + ``PeftModel.from_pretrained``) and
  ``AutoTokenizer`` from the run's ``adapter/`` folder; for each variant, the centred window cut
  from the genome with pysam, the reference and alternate windows tokenized with
  ``padding="max_length", max_length=128, truncation=True`` and run alone (batch of one),
  softmax, score = alt − ref log-odds of class 1: the loop a user writes by hand.
* ``dnalm``: :func:`dnalm.finetune.effects.effects_region` on every variant of the VCF: reading
  and checking the variants, one tokenization of all windows, distinct inputs sorted by length and
  batched (the run's evaluation batch size), the Parquet write — what ``dnalm variant-effects``
  does. The run is loaded before the timer and handed to the call (``load_finetuned`` patched to
  return it), so the time covers everything but loading, as for the naive loop.

The model is the demo's: the ``dnabert2`` preset (ModernBERT) at size ``tiny``, 128-token
inputs, a 4,096-token BPE tokenizer trained (seeded) on the demo genome's training chunks, random
weights, then a LoRA run of one epoch on 64 rows of ``human_enhancers_cohn`` (speed does not
depend on the weights). Variants are random SNVs of the demo contig (seeded; REF from the
genome, ALT another base, positions with N skipped), written as a VCF. Each variant runs in a
fresh subprocess (so its peak RSS, ``VmHWM``, is its own), the repeats go round-robin over the
variants, and loading is timed apart. The two variants' scores are compared on the rows whose
windows fit the model's input untruncated (BPE windows are chosen a little longer than the input;
dnalm crops the tokens around the variant, the naive tokenizer cuts the right end).
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
TASK = REPO / "data" / "tasks" / "human_enhancers_cohn"
MAX_LENGTH = 128


def prepare(work: Path, n: int, seed: int, threads: int) -> dict[str, object]:
    """Prepared demo genome, the demo-size model, a LoRA run on it and a VCF of random SNVs."""
    import pandas as pd
    import pysam

    from dnalm.chunks import ChunkConfig, SplitConfig, chunk_genome
    from dnalm.fasta import prepare_genome
    from dnalm.finetune import finetune
    from dnalm.finetune.train import load_finetuned
    from dnalm.genome import Genome
    from dnalm.io import list_parts
    from dnalm.models.presets import build_model
    from dnalm.models.saving import save_model_dir
    from dnalm.score.vep import window_bases
    from dnalm.tokenizers import build_tokenizer

    genome = work / "genome.fa.gz"
    prepare_genome(DEMO, genome, work / "stats.parquet", genome_id="demo")
    chunk_genome(genome, work / "chunks", genome_id="demo", chunk_cfg=ChunkConfig(length=1000),
                 split_cfg=SplitConfig())
    build_tokenizer({"kind": "bpe", "vocab_size": 4096, "min_frequency": 2,
                     "sample_bp": 3_000_000}, work / "bpe",
                    train_parts=list_parts(work / "chunks" / "train"), seed=42)
    model = build_model("dnabert2", "tiny", work / "bpe", max_length=MAX_LENGTH, seed=0)
    save_model_dir(model, work / "bpe", work / "model",
                   {"preset": "dnabert2", "size": "tiny", "max_length": MAX_LENGTH})
    train = pd.read_csv(TASK / "train.csv").sample(64, random_state=seed)
    test = pd.read_csv(TASK / "test.csv").sample(32, random_state=seed)
    train.to_csv(work / "task_train.csv", index=False)
    test.to_csv(work / "task_test.csv", index=False)
    run = work / "run"
    finetune({"name": "enhancers", "format": "table", "train": str(work / "task_train.csv"),
              "test": str(work / "task_test.csv")}, work / "model", run, model_name="tiny",
             method="lora", epochs=1, batch_size=16, max_length=MAX_LENGTH, threads=threads,
             gpus=0, seed=42)
    loaded = load_finetuned(run, gpus=0)
    with Genome(genome) as g:
        window = window_bases(loaded.encoder.tokenizer, g, MAX_LENGTH - loaded.encoder.n_special)
    rng = np.random.default_rng(seed)
    fasta = pysam.FastaFile(str(genome))
    contig = fasta.references[0]
    length = fasta.get_reference_length(contig)
    rows: dict[int, tuple[str, str]] = {}
    while len(rows) < n:
        pos = int(rng.integers(1, length + 1))
        ref = fasta.fetch(contig, pos - 1, pos).upper()
        if ref not in "ACGT" or pos in rows:
            continue
        rows[pos] = (ref, str(rng.choice([b for b in "ACGT" if b != ref])))
    vcf = work / "variants.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n"
                   f"##contig=<ID={contig},length={length}>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   + "".join(f"{contig}\t{pos}\tv{i}\t{ref}\t{alt}\t.\t.\t.\n"
                             for i, (pos, (ref, alt)) in enumerate(sorted(rows.items()))))
    return {"genome": str(genome), "base": str(work / "model"), "run": str(run),
            "vcf": str(vcf), "window_bp": int(window),
            "eval_batch_size": int(loaded.meta.get("eval_batch_size", 64))}


def _peak_rss_mb() -> float:
    from dnalm.finetune.report import peak_memory_mb

    return float(peak_memory_mb()["peak_rss_mb"])


def run_dnalm(paths: dict, out: Path, average_strands: bool) -> dict[str, object]:
    import peft  # noqa: F401  # imports outside the timers, as for the naive loop
    import transformers  # noqa: F401

    import dnalm.finetune.effects as effects
    import dnalm.finetune.train as train
    from dnalm.finetune.settings import EffectSettings

    t0 = time.perf_counter()
    run = train.load_finetuned(paths["run"], gpus=0)
    setup = time.perf_counter() - t0
    train.load_finetuned = lambda *_a, **_k: run  # effects_region loads the run through this
    t0 = time.perf_counter()
    table = effects.effects_region(paths["run"], paths["genome"], paths["vcf"], out,
                                   settings=EffectSettings(average_strands=average_strands),
                                   gpus=0)
    seconds = time.perf_counter() - t0
    table[["record", "pos", "window", "score"]].to_parquet(out.with_suffix(".scores.parquet"))
    return {"seconds": seconds, "setup_seconds": setup, "variants": len(table),
            "scored": int(table["score"].notna().sum())}


def _read_vcf(path: str) -> list[tuple[str, int, str, str]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            contig, pos, _id, ref, alt = line.split("\t")[:5]
            rows.append((contig, int(pos), ref, alt))
    return rows


_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def run_naive(paths: dict, out: Path, average_strands: bool) -> dict[str, object]:
    import pandas as pd
    import pysam
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    t0 = time.perf_counter()
    adapter = str(Path(paths["run"]) / "adapter")
    classifier = AutoModelForSequenceClassification.from_pretrained(paths["base"], num_labels=2)
    model = PeftModel.from_pretrained(classifier, adapter).eval()
    tok = AutoTokenizer.from_pretrained(adapter)
    fasta = pysam.FastaFile(paths["genome"])
    window = int(paths["window_bp"])
    setup = time.perf_counter() - t0

    def prob1(seq: str) -> float:
        enc = tok(seq, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                  return_tensors="pt")
        with torch.inference_mode():
            logits = model(input_ids=enc["input_ids"],
                           attention_mask=enc["attention_mask"]).logits[0]
        return float(torch.softmax(logits.double(), -1)[1])

    t0 = time.perf_counter()
    variants = _read_vcf(paths["vcf"])
    scores, windows, pairs = [], [], []
    for contig, pos, ref, alt in variants:
        start = pos - 1
        n = fasta.get_reference_length(contig)
        ws = min(max(start + len(ref) // 2 - window // 2, 0), max(n - window, 0))
        ref_w = fasta.fetch(contig, ws, min(ws + window, n)).upper()
        p = start - ws
        alt_w = ref_w[:p] + alt + ref_w[p + len(ref):]
        if average_strands:
            p_ref = (prob1(ref_w) + prob1(ref_w[::-1].translate(_COMPLEMENT))) / 2
            p_alt = (prob1(alt_w) + prob1(alt_w[::-1].translate(_COMPLEMENT))) / 2
        else:
            p_ref, p_alt = prob1(ref_w), prob1(alt_w)
        scores.append((np.log(p_alt) - np.log1p(-p_alt)) - (np.log(p_ref) - np.log1p(-p_ref)))
        windows.append(f"{contig}:{ws}-{min(ws + window, n)}")
        pairs.append((ref_w, alt_w))
        if average_strands:
            pairs[-1] += (ref_w[::-1].translate(_COMPLEMENT), alt_w[::-1].translate(_COMPLEMENT))
    seconds = time.perf_counter() - t0
    # untruncated content tokens of each window, both alleles (and strands), outside the timer:
    # which rows fit the input
    room = MAX_LENGTH - 2
    fits = [max(len(tok(s, add_special_tokens=False)["input_ids"]) for s in pair) <= room
            for pair in pairs]
    pd.DataFrame({"pos": [v[1] for v in variants], "window": windows, "score": scores,
                  "fits": fits}).to_parquet(out.with_suffix(".scores.parquet"))
    return {"seconds": seconds, "setup_seconds": setup, "variants": len(variants),
            "scored": len(scores)}


def worker(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    paths = json.loads(Path(args.paths).read_text())
    out = Path(args.out)
    run = run_dnalm if args.variant == "dnalm" else run_naive
    result = run(paths, out, args.average_strands)
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def compare(work: Path) -> dict[str, object]:
    """Scores of the first repeat of both variants, on the rows that fit the input."""
    import pandas as pd

    naive = pd.read_parquet(work / "naive_0.scores.parquet")
    mine = pd.read_parquet(work / "dnalm_0.scores.parquet").sort_values("record")
    same_windows = bool((naive["window"].to_numpy() == mine["window"].to_numpy()).all()
                        and (naive["pos"].to_numpy() == mine["pos"].to_numpy()).all())
    fits = naive["fits"].to_numpy()
    diff = np.abs(naive["score"].to_numpy() - mine["score"].to_numpy())
    return {"same_windows": same_windows, "rows_fitting_input": int(fits.sum()),
            "max_abs_difference": float(diff[fits].max()) if fits.any() else None,
            "max_abs_difference_all_rows": float(np.nanmax(diff)),
            "median_abs_difference_truncated_rows": float(np.median(diff[~fits]))
            if (~fits).any() else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--average-strands", action="store_true",
                        help="score the mean of the forward and reverse-complement windows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--variant", choices=["dnalm", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        worker(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench_effects.") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        paths = prepare(work, args.variants, args.seed, args.threads)
        print(f"prepared genome, tokenizer, model, LoRA run and {args.variants} SNVs in "
              f"{time.perf_counter() - t0:.0f} s (window {paths['window_bp']} bp)",
              file=sys.stderr)
        (work / "paths.json").write_text(json.dumps(paths))
        runs: dict[str, list[dict]] = {"naive": [], "dnalm": []}
        for repeat in range(args.repeats):
            for variant in runs:
                out = work / f"{variant}_{repeat}.parquet"
                command = [sys.executable, __file__, "--variant", variant, "--paths",
                           str(work / "paths.json"), "--out", str(out), "--threads",
                           str(args.threads)]
                if args.average_strands:
                    command.append("--average-strands")
                proc = subprocess.run(command, capture_output=True, text=True, check=False,
                                      env={**os.environ, "PYTHONPATH": str(REPO / "src")})
                if proc.returncode:
                    sys.exit(f"{variant} failed:\n{proc.stderr[-4000:]}")
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                runs[variant].append(result)
                print(f"{variant} #{repeat + 1}: {result['seconds']:.2f} s", file=sys.stderr)
        check = compare(work)
        summary = {}
        for variant, results in runs.items():
            seconds = [r["seconds"] for r in results]
            best = min(seconds)
            summary[variant] = {
                "best_seconds": best, "median_seconds": statistics.median(seconds),
                "variants_per_s": results[0]["variants"] / best,
                "scored": results[0]["scored"],
                "setup_seconds": min(r["setup_seconds"] for r in results),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}
        speed = summary["naive"]["best_seconds"] / summary["dnalm"]["best_seconds"]
        report = {"variants": runs["dnalm"][0]["variants"], "window_bp": paths["window_bp"],
                  "average_strands": args.average_strands, "threads": args.threads,
                  "batch_size": paths["eval_batch_size"], "repeats": args.repeats,
                  **check, "speedup": speed, "results": summary,
                  "python": platform.python_version()}
        print(json.dumps(report, indent=1))
        names = {"naive": "naive loop, full padding", "dnalm": "`dnalm variant-effects`"}
        what = f"{report['variants']:,} SNVs" + (", both strands" if args.average_strands
                                                 else "")
        print("\n| variants | variant | best s | median s | variants/s | peak RSS MiB | "
              "speed vs naive |\n|---|---|---|---|---|---|---|")
        for variant, s in summary.items():
            ratio = summary["naive"]["best_seconds"] / s["best_seconds"]
            print(f"| {what} | {names[variant]} | {s['best_seconds']:.2f} | "
                  f"{s['median_seconds']:.2f} | {s['variants_per_s']:.1f} | "
                  f"{s['peak_rss_mb']:.0f} | {ratio:.2f}x |")
        if args.out:
            args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
