"""Benchmark pretraining throughput: dnalm's training loop vs a plain Hugging Face Trainer.

Run by hand, e.g.::

    .venv/bin/python benchmarks/bench_pretrain.py --sizes tiny small --repeats 3 \
        --out /tmp/bench_pretrain.json
    # on a GPU machine (tokens/s and MFU for base):
    .venv/bin/python benchmarks/bench_pretrain.py --sizes base --gpus 1 --batch-size 32

Data: the demo genome (chr20:42-44 Mbp, 2 Mbp) cut into consecutive chunks of uniformly random
length 100-1,200 bp (the first 1.8 Mbp), tokenized with a 4,096-token BPE trained on those chunks
(``dnalm.train.toydata.write_bpe_tokenizer``, about 5 bp per token), written as token shards.

Model: the ``dnabert2`` preset (ModernBERT, the preset meant for BPE and the one dnalm recommends
by default), built by ``dnalm.models.build_model`` with the same seed for every variant.

Variants, same model, same chunks, same micro-batch size (sequences), same number of optimizer
steps, same AdamW/linear-warmup settings, 15 % masking with 80/10/10, interleaved in every repeat
so that load from other processes hits them alike:

* ``hf-trainer``: ``transformers.Trainer`` + ``DataCollatorForLanguageModeling``, each chunk one
  sequence ``[CLS] chunk [SEP]`` truncated to ``max_length`` and padded to the longest sequence of
  its batch, i.e. what a typical user writes;
* ``hf-trainer-sparse``: the same with ``sparse_prediction=True`` in the ModernBERT config (the
  decoder and the loss only see the masked positions), the switch dnalm's loop turns on, so that
  its share of the gain is visible;
* ``dnalm``: ``dnalm.train.pretrain.run_segment`` with packing (every sequence exactly
  ``max_length`` tokens);
* ``dnalm-nopack``: the same loop with packing off (padded like the baseline) to separate the
  gain of packing from the rest of the loop.

Throughput counts only non-padding tokens ([CLS]/[SEP] included), over the steps after
``--warmup-steps`` (wall-clock time between the end of the warm-up step and the end of the last
step, data loading, masking and optimizer included). Padding waste is the fraction of positions
in the model's input that are padding. On CUDA, MFU = 6N + 12LHT FLOPs per useful token (see
``dnalm.train.metrics.flops_per_token``) x tokens/s / peak bf16 FLOP/s, and every result also
records ``peak_cuda_mib`` (``torch.cuda.max_memory_allocated`` over that run, dnalm's start-up
memory probe included).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from tokenizers import Tokenizer
from transformers import (
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

from dnalm.fasta import read_all_sequences
from dnalm.models import build_model, count_parameters, load_tokenizer_info
from dnalm.train import toydata
from dnalm.train.components import stream_config
from dnalm.train.config import PretrainConfig
from dnalm.train.data import TokenStream, list_shards
from dnalm.train.distributed import DistEnv
from dnalm.train.metrics import flops_per_token, peak_flops
from dnalm.train.pretrain import run_segment

DEMO = Path(__file__).resolve().parents[1] / "data/demo_chr20_hnf4a/chr20_42000001_44000000.fa.gz"
PRESET = "dnabert2"


def prepare_data(workdir: Path, *, min_bp: int, max_bp: int, vocab: int) -> dict[str, Any]:
    """BPE tokenizer + token shards of the demo genome's first 1.8 Mbp in random-length chunks."""
    seq = next(iter(read_all_sequences(DEMO).values()))[:1_800_000]
    chunks = toydata.random_chunks(len(seq), min_bp, max_bp, seed=0)
    texts = [seq[a:b] for a, b in chunks]
    tok_dir = toydata.write_bpe_tokenizer(workdir / "bpe", texts, vocab_size=vocab)
    encoder = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    ids = [e.ids for e in encoder.encode_batch(texts)]
    rows = [("chr20", a, b, i) for (a, b), i in zip(chunks, ids, strict=True)]
    toydata.write_token_shards(workdir / "train", rows, rows_per_shard=2000)
    lengths = [len(i) for i in ids]
    return {
        "tokenizer": tok_dir,
        "train": workdir / "train",
        "ids": ids,
        "chunks": len(chunks),
        "tokens": sum(lengths),
        "bp_per_token": len(seq) / sum(lengths),
        "median_tokens_per_chunk": statistics.median(lengths),
    }


def _reset_peak(args: argparse.Namespace) -> None:
    if args.gpus and torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(0)


def _peak_mib(args: argparse.Namespace) -> float | None:
    """Peak GPU memory allocated by torch since the last reset (None on the CPU)."""
    if args.gpus and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(0) / 2**20
    return None


def _rate(tokens: list[float], times: list[float], warmup: int) -> float:
    """Tokens per second over steps ``warmup+1..n`` from cumulative per-step counts/times."""
    return (tokens[-1] - tokens[warmup - 1]) / (times[-1] - times[warmup - 1])


def run_dnalm(data: dict, args: argparse.Namespace, size: str, packing: bool,
              workdir: Path) -> dict[str, float]:
    config = PretrainConfig(
        preset=PRESET, size=size, max_length=args.max_length, batch_size=args.batch_size,
        total_steps=args.steps, steps_per_job=args.steps, learning_rate=args.lr,
        warmup_steps=args.lr_warmup, log_every=1, val_max_batches=0, packing=packing,
        seed=args.seed,
    )
    out = workdir / f"dnalm-{size}-{packing}"
    _reset_peak(args)
    run_segment(config, tokenizer_dir=data["tokenizer"], train_dirs=[data["train"]],
                validation_dirs=[], segment=0, previous_checkpoint=None,
                out_dir=out, threads=args.threads, gpus=args.gpus)
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    rate = _rate([r["tokens"] for r in rows], [r["elapsed_s"] for r in rows], args.warmup_steps)
    mfus = [r["mfu"] for r in rows[args.warmup_steps:] if r["mfu"] is not None]
    return {"tokens_per_s": rate, "padding_waste": _dnalm_waste(data, config, args.steps),
            "mfu": statistics.median(mfus) if mfus else None, "peak_cuda_mib": _peak_mib(args)}


def _dnalm_waste(data: dict, config: PretrainConfig, steps: int) -> float:
    """Padding fraction of the batches dnalm's stream gives the model (no model needed)."""
    tok = load_tokenizer_info(data["tokenizer"])
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    stream = TokenStream(list_shards([data["train"]]),
                         stream_config(config, tok, env, training=True))
    real = total = 0
    for _ in range(steps):
        mask = stream.next_batch()["attention_mask"]
        real, total = real + int(mask.sum()), total + mask.numel()
    return 1 - real / total


class _Counting:
    """Wraps the HF collator to record real and padded token counts of every batch."""

    def __init__(self, inner: DataCollatorForLanguageModeling) -> None:
        self.inner, self.real, self.padded = inner, [], []

    def __call__(self, features: list[dict]) -> dict:
        batch = self.inner(features)
        self.real.append(int(batch["attention_mask"].sum()))
        self.padded.append(batch["input_ids"].numel())
        return batch


class _StepTimes(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available() and args.use_cpu is False:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def run_trainer(data: dict, args: argparse.Namespace, size: str, workdir: Path,
                sparse: bool = False) -> dict[str, float]:
    tokenizer = AutoTokenizer.from_pretrained(str(data["tokenizer"]))
    overrides = {"sparse_prediction": True} if sparse else None
    model = build_model(PRESET, size, data["tokenizer"], max_length=args.max_length,
                        seed=args.seed, overrides=overrides)
    cls, sep, width = tokenizer.cls_token_id, tokenizer.sep_token_id, args.max_length - 2
    dataset = [{"input_ids": [cls, *ids[:width], sep]} for ids in data["ids"]]
    collator = _Counting(DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15,
                                                         seed=args.seed))
    timer = _StepTimes()
    training = TrainingArguments(
        output_dir=str(workdir / f"hf-{size}"), per_device_train_batch_size=args.batch_size,
        max_steps=args.steps, learning_rate=args.lr, warmup_steps=args.lr_warmup,
        weight_decay=0.01, adam_beta2=0.98, adam_epsilon=1e-6, max_grad_norm=1.0,
        lr_scheduler_type="linear", logging_steps=10_000, save_strategy="no", report_to="none",
        use_cpu=args.gpus == 0, bf16=args.gpus > 0, dataloader_num_workers=0,
        disable_tqdm=True, seed=args.seed,
    )
    _reset_peak(args)
    trainer = Trainer(model=model, args=training, train_dataset=dataset,
                      data_collator=collator, callbacks=[timer])
    trainer.train()
    real = [sum(collator.real[: i + 1]) for i in range(len(timer.times))]
    rate = _rate(real, timer.times, args.warmup_steps)
    waste = 1 - sum(collator.real[: args.steps]) / sum(collator.padded[: args.steps])
    mfu = None
    if args.gpus:
        peak = peak_flops(torch.cuda.get_device_name(0))
        if peak:
            mfu = flops_per_token(model.config, args.max_length) * rate / peak
    return {"tokens_per_s": rate, "padding_waste": waste, "mfu": mfu,
            "peak_cuda_mib": _peak_mib(args)}


def _versions() -> dict[str, str]:
    names = ("torch", "transformers", "tokenizers", "pyarrow", "numpy")
    return {"python": platform.python_version(),
            **{n: importlib.metadata.version(n) for n in names}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps left out of timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--min-bp", type=int, default=100)
    parser.add_argument("--max-bp", type=int, default=1200)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--lr-warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write all measurements as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as tmp:
        workdir = Path(tmp)
        data = prepare_data(workdir, min_bp=args.min_bp, max_bp=args.max_bp, vocab=args.vocab)
        print(f"data: {data['chunks']} chunks, {data['tokens']} tokens, "
              f"{data['bp_per_token']:.2f} bp/token, median {data['median_tokens_per_chunk']} "
              "tokens per chunk", file=sys.stderr)
        runners = {
            "hf-trainer": lambda size: run_trainer(data, args, size, workdir),
            "hf-trainer-sparse": lambda size: run_trainer(data, args, size, workdir, True),
            "dnalm": lambda size: run_dnalm(data, args, size, True, workdir),
            "dnalm-nopack": lambda size: run_dnalm(data, args, size, False, workdir),
        }
        for repeat in range(args.repeats):
            for size in args.sizes:
                for variant, runner in runners.items():
                    with contextlib.redirect_stdout(sys.stderr):
                        measured = runner(size)
                    load = os.getloadavg()[0]
                    results.append({"repeat": repeat, "size": size, "variant": variant,
                                    "load_1min": load, **measured})
                    print(json.dumps(results[-1]), file=sys.stderr)
        params = {s: count_parameters(build_model(PRESET, s, data["tokenizer"],
                                                  max_length=args.max_length)) for s in args.sizes}
        summary = {k: data[k] for k in ("chunks", "tokens", "bp_per_token",
                                         "median_tokens_per_chunk")}
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "versions": _versions(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "device": torch.cuda.get_device_name(0) if args.gpus else "cpu"},
              "data": summary, "parameters": params, "results": results}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(results, params))
    return 0


def markdown_table(results: list[dict[str, Any]], params: dict[str, int]) -> str:
    """Median tokens/s per (size, variant) and the median of the paired per-repeat ratios."""
    lines = ["| size | params | variant | tokens/s (median) | tokens/s (min-max) | "
             "vs hf-trainer (median of paired ratios) | padding waste | MFU |",
             "|---|---|---|---|---|---|---|---|"]
    for size in dict.fromkeys(r["size"] for r in results):
        base = {r["repeat"]: r["tokens_per_s"] for r in results
                if r["size"] == size and r["variant"] == "hf-trainer"}
        for variant in dict.fromkeys(r["variant"] for r in results):
            runs = [r for r in results if r["size"] == size and r["variant"] == variant]
            speeds = [r["tokens_per_s"] for r in runs]
            ratios = [r["tokens_per_s"] / base[r["repeat"]] for r in runs]
            mfus = [r["mfu"] for r in runs if r["mfu"] is not None]
            lines.append(
                f"| {size} | {params[size] / 1e6:.2f}M | {variant} | "
                f"{statistics.median(speeds):,.0f} | {min(speeds):,.0f}-{max(speeds):,.0f} | "
                f"{statistics.median(ratios):.2f}x | {runs[0]['padding_waste']:.1%} | "
                f"{f'{statistics.median(mfus):.1%}' if mfus else 'n/a'} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
