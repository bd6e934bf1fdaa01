"""Benchmark fine-tuning: LoRA against full fine-tuning, beside the k-mer baseline.

Run by hand from the repository root::

    .venv/bin/python benchmarks/bench_finetune.py \
        --task /work/shared/data/genomic_benchmarks_chr20/human_enhancers_cohn \
        --out /tmp/bench_finetune.json --write-results

What it does, each step in a fresh subprocess (``--one STEP``) so that its peak memory is its own:

1. ``pretrain``: builds a small BERT (the ``tiny`` preset's shape: hidden 64, 2 layers, 4 heads,
   intermediate 256; attention dropout 0 as DNABERT-2) with a non-overlapping 4-mer tokenizer
   (``dnalm.tokenizers.build_tokenizer``, kind ``nt_kmer``: a 500 bp sequence is 125 tokens, so
   the task's sequences fit whole in 128 positions), then trains it with masked-LM (15 % of
   tokens, 80/10/10) for ``--pretrain-steps`` steps on random 500 bp windows of the 2 Mb chr20
   demo slice shipped in ``data/`` (``--pretrain-steps 0`` keeps the random initialisation). The
   MLM uses no labels; some task sequences lie in that slice.
2. ``lora`` and ``full``: :func:`dnalm.finetune.finetune` on the task folder (train/test, dev
   carved from train with the seed), same epochs, patience, batch size and seed; each method
   with its own learning rate (LoRA trains fewer, freshly initialised weights and takes a larger
   step).
3. ``baseline``: :func:`dnalm.finetune.kmer_baseline` (k in 4-6, C grid, chosen on dev).
4. ``lora_wide``, ``lora_wide_nodrop``, ``full_wide``: a speed and memory probe with a wider,
   randomly initialised BERT (the ``small`` preset's shape, 3.3M parameters) for
   ``--wide-epochs`` epochs: LoRA with and without adapter dropout, and full fine-tuning.

Reported per method: seconds per training epoch (mean over epochs, dev evaluation excluded),
epochs run, peak memory (``VmHWM`` of the child: resident set high-water mark; on CUDA also
``torch.cuda.max_memory_allocated``), trainable and total parameters, test MCC/AUROC/AUPRC.
With ``--write-results`` the section ``## Fine-tuning (issue 5)`` of ``benchmarks/RESULTS.md``
is replaced (other sections are left as they are; the file is re-read just before writing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEMO_FASTA = REPO / "data" / "demo_chr20_hnf4a" / "chr20_42000001_44000000.fa.gz"
DEFAULT_TASK = Path("/work/shared/data/genomic_benchmarks_chr20/human_enhancers_cohn")
SECTION = "## Fine-tuning (issue 5)"


# --------------------------------------------------------------------------------------------
# Child steps


def _pretrain(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Build tokenizer + small BERT, run a short MLM on the demo slice, save to work/model."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from dnalm.fasta import read_all_sequences
    from dnalm.tokenizers import build_tokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model_dir = work / "model"
    build_tokenizer({"kind": "nt_kmer", "k": 4}, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=256,
                        max_position_embeddings=128, attention_probs_dropout_prob=0.0,
                        pad_token_id=tokenizer.pad_token_id)
    model = BertForMaskedLM(config)
    genome = "".join(read_all_sequences(DEMO_FASTA).values()).upper()
    rng = np.random.default_rng(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    losses, began = [], time.perf_counter()
    model.train()
    for _ in range(args.pretrain_steps):
        starts = rng.integers(0, len(genome) - 500, size=args.batch_size)
        batch = tokenizer([genome[s : s + 500] for s in starts], return_tensors="pt",
                          padding=True, truncation=True, max_length=128)
        inputs, labels = _mask(batch["input_ids"], tokenizer, rng)
        loss = model(input_ids=inputs, attention_mask=batch["attention_mask"],
                     labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    model.save_pretrained(str(model_dir))
    _wide_model(work / "model_wide", len(tokenizer), tokenizer.pad_token_id)
    window = max(1, min(20, len(losses)))
    return {"steps": args.pretrain_steps, "seconds": time.perf_counter() - began,
            "mlm_loss_first": float(np.mean(losses[:window])) if losses else None,
            "mlm_loss_last": float(np.mean(losses[-window:])) if losses else None,
            "parameters": sum(p.numel() for p in model.parameters())}


def _wide_model(out: Path, vocab_size: int, pad_id: int) -> None:
    """The ``small`` preset's shape (hidden 256, 4 layers), random init: a speed/memory probe."""
    from transformers import BertConfig, BertForMaskedLM

    from dnalm.tokenizers import build_tokenizer

    build_tokenizer({"kind": "nt_kmer", "k": 4}, out)
    BertForMaskedLM(BertConfig(
        vocab_size=vocab_size, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=1024, max_position_embeddings=128, attention_probs_dropout_prob=0.0,
        pad_token_id=pad_id)).save_pretrained(str(out))


def _mask(ids: Any, tokenizer: Any, rng: Any) -> tuple[Any, Any]:
    """BERT masking: 15 % of content tokens; of those 80 % [MASK], 10 % random, 10 % kept."""
    import torch

    content = ids > max(tokenizer.all_special_ids)  # dnalm tokenizers: specials are ids 0-4
    draw = torch.from_numpy(rng.random(ids.shape)).float()
    chosen = content & (draw < 0.15)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    inputs = ids.clone()
    kind = torch.from_numpy(rng.random(ids.shape)).float()
    inputs[chosen & (kind < 0.8)] = tokenizer.mask_token_id
    randomise = chosen & (kind >= 0.8) & (kind < 0.9)
    low = max(tokenizer.all_special_ids) + 1
    inputs[randomise] = torch.from_numpy(
        rng.integers(low, len(tokenizer), size=int(randomise.sum()))).long()
    return inputs, labels


def _finetune(args: argparse.Namespace, work: Path, method: str, wide: bool = False,
              lora_dropout: float = 0.05) -> dict[str, Any]:
    from dnalm.finetune import finetune, load_task, task_spec_from_dir

    task = load_task(task_spec_from_dir(args.task), seed=args.seed)
    lr = args.lora_lr if method == "lora" else args.full_lr
    began = time.perf_counter()
    metrics = finetune(task, work / ("model_wide" if wide else "model"),
                       work / "runs" / f"{method}{'_wide' if wide else ''}{lora_dropout}",
                       model_name="bench",
                       method=method, lora={"r": 8, "alpha": 32, "dropout": lora_dropout},
                       epochs=args.wide_epochs if wide else args.epochs,
                       batch_size=args.batch_size, learning_rate=lr, max_length=128,
                       patience=0 if wide else args.patience, seed=args.seed,
                       threads=args.threads, gpus=None)
    metrics["wall_seconds"] = time.perf_counter() - began
    weights = Path(metrics["outputs"]["adapter" if method == "lora" else "model"])
    metrics["weights_bytes"] = sum(f.stat().st_size for f in weights.glob("*.safetensors"))
    return metrics


def _baseline(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from dnalm.finetune import kmer_baseline, load_task, task_spec_from_dir

    task = load_task(task_spec_from_dir(args.task), seed=args.seed)
    return kmer_baseline(task, work / "runs" / "kmer_baseline", seed=args.seed)


def run_one(args: argparse.Namespace) -> None:
    work = Path(args.work)
    steps = {"pretrain": lambda: _pretrain(args, work),
             "lora": lambda: _finetune(args, work, "lora"),
             "full": lambda: _finetune(args, work, "full"),
             "lora_wide": lambda: _finetune(args, work, "lora", wide=True),
             "lora_wide_nodrop": lambda: _finetune(args, work, "lora", wide=True,
                                                   lora_dropout=0.0),
             "full_wide": lambda: _finetune(args, work, "full", wide=True),
             "baseline": lambda: _baseline(args, work)}
    result = steps[args.one]()
    (work / f"{args.one}.json").write_text(json.dumps(result, indent=1, default=str))


# --------------------------------------------------------------------------------------------
# Parent: orchestration and report


def _child(args: argparse.Namespace, step: str, work: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", step, "--work", str(work), "--task", str(args.task),
           "--threads", str(args.threads), "--epochs", str(args.epochs),
           "--patience", str(args.patience), "--batch-size", str(args.batch_size),
           "--pretrain-steps", str(args.pretrain_steps), "--lora-lr", str(args.lora_lr),
           "--full-lr", str(args.full_lr), "--seed", str(args.seed),
           "--wide-epochs", str(args.wide_epochs)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    began = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{proc.stderr[-4000:]}")
    print(f"{step}: {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return json.loads((work / f"{step}.json").read_text())


def _machine() -> dict[str, Any]:
    import importlib.metadata

    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as handle:
        cpu = next(line.split(":", 1)[1].strip() for line in handle
                   if line.startswith("model name"))
    versions = {p: importlib.metadata.version(p) for p in
                ("torch", "transformers", "peft", "scikit-learn")}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()[0], **versions}


def _reading(results: dict[str, Any]) -> str:
    """The interpretation paragraph, with the ratios of this run filled in."""
    lora, nodrop, full = (results[k] for k in ("lora_wide", "lora_wide_nodrop", "full_wide"))

    def cpu(m: dict[str, Any]) -> float:
        return m["training"]["cpu_seconds_per_epoch"]

    def mem(m: dict[str, Any]) -> float:
        return m["resources"]["peak_rss_mb"]

    return (
        f"Reading (wider model): per epoch LoRA used {cpu(lora) / cpu(full):.2f}x the CPU time of "
        f"full fine-tuning with adapter dropout 0.05 and {cpu(nodrop) / cpu(full):.2f}x without, "
        f"and peaked {mem(lora) - mem(full):+,.0f} MiB and {mem(nodrop) - mem(full):+,.0f} MiB "
        "against it. The backward pass still runs through every frozen layer (only weight "
        "gradients are skipped), and what LoRA saves, weight gradients plus AdamW's two moment "
        "buffers (12 bytes per trained parameter in float32: "
        f"{_mib(12 * full['parameters']['trainable'])} MiB for full fine-tuning here against "
        f"{_mib(12 * lora['parameters']['trainable'])} MiB for LoRA), is small next to the "
        "activations at this size; with dropout each adapted matrix also keeps its own dropped-"
        "out copy of its input for the backward pass. The saving grows with the parameter count "
        "(about 1.3 GiB of gradients and optimizer state for DNABERT-2's 117M parameters). "
        "LoRA's other gain is storage: the saved weights are "
        f"{_mib(lora['weights_bytes'])} MiB per task as an adapter (head included) against "
        f"{_mib(full['weights_bytes'])} MiB as a fully fine-tuned model. Wall seconds varied up "
        "to about 2x between runs on this shared machine; CPU seconds count only the time this "
        "process was running, so other jobs' load inflates them less.")


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f}"


def _speed_row(name: str, m: dict[str, Any]) -> str:
    params, training, res = m["parameters"], m["training"], m["resources"]
    mem = res.get("peak_cuda_mb") or res.get("peak_rss_mb")
    return (f"| {name} | {params['trainable']:,} | {params['total']:,} | "
            f"{training['seconds_per_epoch']:.1f} | {training['cpu_seconds_per_epoch']:.1f} | "
            f"{mem:,.0f} |")


def _row(name: str, m: dict[str, Any]) -> str:
    test, params, training = m["test"], m["parameters"], m.get("training", {})
    res = m.get("resources", {})
    spe, cpu = training.get("seconds_per_epoch"), training.get("cpu_seconds_per_epoch")
    mem = res.get("peak_cuda_mb") or res.get("peak_rss_mb")
    return (f"| {name} | {params['trainable']:,} | {params['total']:,} | "
            f"{'–' if spe is None else f'{spe:.1f}'} | {'–' if cpu is None else f'{cpu:.1f}'} | "
            f"{training.get('epochs_run', '–')} | "
            f"{'–' if mem is None else f'{mem:,.0f}'} | {test['mcc']:.3f} | "
            f"{test['auroc']:.3f} | {test['auprc']:.3f} |")


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    m, pre = results["machine"], results["pretrain"]
    lora, full = results["lora"], results["full"]
    device = lora["resources"]["device"]
    pre_text = (f"MLM-pretrained for {pre['steps']} steps (batch {args.batch_size}, 500 bp windows "
                f"of the chr20 demo slice; loss {pre['mlm_loss_first']:.2f} → "
                f"{pre['mlm_loss_last']:.2f}, {pre['seconds']:.0f} s)"
                if pre["steps"] else "random initialisation (no pretraining)")
    return "\n".join([
        SECTION, "",
        f"`benchmarks/bench_finetune.py` on `{Path(args.task).name}` "
        f"(genomic_benchmarks, chr20 only: {lora['n_sequences']['train']} train / "
        f"{lora['n_sequences']['dev']} dev carved from train / {lora['n_sequences']['test']} "
        "test, 500 bp). Model: small BERT (hidden 64, 2 layers, 4 heads, "
        f"{pre['parameters']:,} MLM parameters), non-overlapping 4-mer tokens (whole sequences, "
        f"127 tokens), {pre_text}. Both methods: up to {args.epochs} epochs, patience "
        f"{args.patience} on dev loss, batch {args.batch_size}, seed {args.seed}; LoRA r=8 "
        f"alpha=32 dropout 0.05 on query/key/value/attention-output (8 matrices) + pooler and "
        f"classifier trained in full, lr {args.lora_lr:g}; full fine-tuning lr "
        f"{args.full_lr:g}. Device: {device}, {args.threads} torch "
        f"thread{'' if args.threads == 1 else 's'}.", "",
        "| method | trainable params | total params | s / epoch | CPU s / epoch | epochs run "
        "| peak memory MiB | test MCC | test AUROC | test AUPRC |",
        "|---|---|---|---|---|---|---|---|---|---|",
        _row("LoRA", lora), _row("full fine-tuning", full),
        _row(f"k-mer baseline (k={results['baseline']['baseline']['k']}, "
             f"C={results['baseline']['baseline']['C']:g})", results["baseline"]), "",
        f"Speed and memory with a wider model (the `small` preset's shape: hidden 256, 4 layers, "
        f"4 heads, intermediate 1024; random initialisation, {args.wide_epochs} epoch, same "
        "data and settings; test scores of an untrained model are not reported):", "",
        "| method | trainable params | total params | s / epoch | CPU s / epoch "
        "| peak memory MiB |",
        "|---|---|---|---|---|---|",
        _speed_row("LoRA (dropout 0.05)", results["lora_wide"]),
        _speed_row("LoRA (dropout 0)", results["lora_wide_nodrop"]),
        _speed_row("full fine-tuning", results["full_wide"]), "",
        "Peak memory is the child process's resident-set high-water mark (`VmHWM`; on CUDA "
        "`torch.cuda.max_memory_allocated` instead); about 500-600 MiB of it is the Python, "
        "torch and transformers runtime itself. Seconds per epoch count the training steps only "
        "(dev evaluation excluded).", "",
        _reading(results), "",
        f"Machine: {m['cpu']}, {m['cores']} cores shared with other jobs (load average "
        f"{m['load_average_at_start']:.1f} at start, so timings are noisy), Python {m['python']}, "
        f"torch {m['torch']}, transformers {m['transformers']}, peft {m['peft']}, scikit-learn "
        f"{m['scikit-learn']}. Whole benchmark: {results['seconds']:.0f} s.", "",
        "Command: `.venv/bin/python benchmarks/bench_finetune.py --task "
        f"{args.task} --pretrain-steps {args.pretrain_steps} --epochs {args.epochs} "
        f"--threads {args.threads} --write-results`", "",
    ])


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving the others alone."""
    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=str(DEFAULT_TASK), help="task folder (train/test CSV)")
    parser.add_argument("--out", default=None, help="write all results as JSON here")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a loaded, shared machine)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--full-lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--wide-epochs", type=int, default=1,
                        help="epochs of the speed/memory probe with the wider random model")
    parser.add_argument("--write-results", action="store_true",
                        help="replace this benchmark's section of benchmarks/RESULTS.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_finetune_") as tmp:
        work = Path(tmp)
        results: dict[str, Any] = {"machine": _machine()}
        for step in ("pretrain", "lora", "full", "baseline", "lora_wide", "lora_wide_nodrop",
                     "full_wide"):
            results[step] = _child(args, step, work)
    results["seconds"] = time.perf_counter() - began
    section = render(results, args)
    print(section)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    if args.write_results:
        write_section(REPO / "benchmarks" / "RESULTS.md", section)


if __name__ == "__main__":
    main()
