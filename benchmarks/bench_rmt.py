"""Benchmark the Recurrent Memory Transformer against full attention over the same length.

Run by hand from the repository root::

    .venv/bin/python benchmarks/bench_rmt.py --out /tmp/bench_rmt.json --write-results

Encoder: a randomly initialised BERT (hidden 128, 4 layers, 4 heads, intermediate 512; dropout
0) whose window, the *base length*, is 512 tokens (GENA-LM's RMT ``input_size``). For 1x, 4x and
8x the base length one training step (forward + backward of a classification loss, batch 1) is
timed for:

* ``full (eager)``: one BERT whose position table covers the whole input, eager attention (the
  attention matrix is materialised and kept for backward, as in BigBird/GENA's eager kernel);
* ``full (sdpa)``: the same with PyTorch's fused scaled-dot-product attention, whose CPU
  flash kernel keeps only row statistics for backward (memory no longer quadratic, time still);
* ``RMT (sdpa)``: :class:`dnalm.models.rmt.RMTForSequenceClassification` over the base encoder,
  10 memory tokens, 499 content tokens per 512-token segment, full BPTT.

All three see the same number of content tokens (``n x 499``). Each configuration runs in a fresh
subprocess (``--one``) so its peak memory is its own. Reported: content tokens per second
(median of ``--steps`` timed steps after one warm-up), the child's resident-set high-water mark
(``VmHWM``) and the bytes autograd saved for backward (deterministic, allocator-independent;
weights excluded). With ``--write-results`` the section ``## Long context: RMT vs full attention
(issue 9)`` of ``benchmarks/RESULTS.md`` is replaced or appended; the file is re-read just
before writing and other sections are left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Long context: RMT vs full attention (issue 9)"
BASE = 512
MEM = 10
CONTENT = BASE - MEM - 3
ENCODER = {"vocab_size": 16, "hidden_size": 128, "num_hidden_layers": 4,
           "num_attention_heads": 4, "intermediate_size": 512, "hidden_dropout_prob": 0.0,
           "attention_probs_dropout_prob": 0.0, "type_vocab_size": 1, "pad_token_id": 0}
METHODS = ("full_eager", "full_sdpa", "rmt")
LABELS = {"full_eager": "full attention (eager)", "full_sdpa": "full attention (sdpa)",
          "rmt": "RMT (sdpa), 10 memory tokens"}


def _vm_hwm_mib() -> float:
    """Peak resident set of this process (Linux ``VmHWM``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_one(method: str, factor: int, steps: int, threads: int) -> dict[str, Any]:
    """Time ``steps`` training steps of one configuration (in this process)."""
    import torch
    from memory import saved_activation_bytes  # benchmarks/memory.py, beside this script
    from transformers import BertConfig, BertForSequenceClassification

    from dnalm.models.rmt import RMTConfig, RMTForSequenceClassification

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    content = factor * CONTENT
    ids = torch.cat([torch.tensor([[2]]), torch.randint(5, 9, (1, content)),
                     torch.tensor([[3]])], dim=1)
    labels = torch.tensor([1])
    if method == "rmt":
        encoder = BertConfig(max_position_embeddings=BASE, **ENCODER)
        model = RMTForSequenceClassification(RMTConfig(
            encoder=encoder.to_dict(), num_mem_tokens=MEM, segment_length=CONTENT,
            max_n_segments=factor, cls_token_id=2, sep_token_id=3, pad_token_id=0))
    else:
        config = BertConfig(max_position_embeddings=content + 2, **ENCODER)
        impl = "eager" if method == "full_eager" else "sdpa"
        model = BertForSequenceClassification(config)
        model.set_attn_implementation(impl)
    model.train()

    def step() -> torch.Tensor:
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        return loss

    _, saved = saved_activation_bytes(lambda: model(input_ids=ids, labels=labels).loss,
                                      model=model)
    model.zero_grad(set_to_none=True)
    step()  # warm-up
    times = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    seconds = statistics.median(times)
    return {"method": method, "factor": factor, "content_tokens": content,
            "seconds_per_step": seconds, "tokens_per_s": content / seconds,
            "saved_mib": saved / 2**20, "peak_rss_mib": _vm_hwm_mib(),
            "n_segments": factor if method == "rmt" else 1}


def _child(method: str, factor: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", method, str(factor), "--steps", str(args.steps),
           "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _versions() -> str:
    import peft
    import torch
    import transformers

    return (f"Python {platform.python_version()}, torch {torch.__version__}, transformers "
            f"{transformers.__version__}, peft {peft.__version__}")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The RESULTS.md section for a finished run."""
    by = {(r["method"], r["factor"]): r for r in rows}
    lines = [
        SECTION, "",
        f"`benchmarks/bench_rmt.py`: one training step (forward + backward, batch 1) of a "
        f"randomly initialised BERT (hidden 128, 4 layers, 4 heads, intermediate 512) over n x "
        f"{CONTENT} content tokens. Full attention: one encoder whose positions cover the whole "
        f"input. RMT: the {BASE}-token encoder over n segments ({MEM} memory + 3 special + "
        f"{CONTENT} content tokens each), full BPTT. Median of {meta['steps']} timed steps after "
        f"a warm-up, each configuration in a fresh process, {meta['threads']} torch thread(s).",
        "",
        "| length | method | segments | tokens / s | s / step | saved for backward MiB "
        "| peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for factor in meta["factors"]:
        for method in METHODS:
            r = by.get((method, factor))
            if r is None:
                continue
            lines.append(
                f"| {factor}x ({r['content_tokens']:,} tokens) | {LABELS[method]} | "
                f"{r['n_segments']} | {r['tokens_per_s']:,.0f} | {r['seconds_per_step']:.2f} | "
                f"{r['saved_mib']:.1f} | {r['peak_rss_mib']:,.0f} |")
    lines += ["", meta["reading"], "",
              f"Machine: {meta['cpu']}, {meta['cores']} cores shared with other jobs (load "
              f"average {meta['load']:.1f} at start: wall-clock timings are noisy, the saved-"
              f"bytes column is exact). {meta['versions']}. Whole benchmark: "
              f"{meta['seconds']:.0f} s.", "",
              f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def _reading(rows: list[dict[str, Any]], factors: list[int]) -> str:
    by = {(r["method"], r["factor"]): r for r in rows}
    lo, hi = min(factors), max(factors)

    def ratio(method: str, key: str) -> float:
        return by[(method, hi)][key] / by[(method, lo)][key]

    return (
        f"Reading: from {lo}x to {hi}x the length, the memory saved for backward grows "
        f"{ratio('rmt', 'saved_mib'):.1f}x for RMT (linear: {hi // lo}x), "
        f"{ratio('full_eager', 'saved_mib'):.1f}x for full eager attention (the n^2 attention "
        f"matrices) and {ratio('full_sdpa', 'saved_mib'):.1f}x for sdpa (its flash kernel keeps "
        f"no attention matrix). Time per step grows {ratio('rmt', 'seconds_per_step'):.1f}x for "
        f"RMT against {ratio('full_eager', 'seconds_per_step'):.1f}x (eager) and "
        f"{ratio('full_sdpa', 'seconds_per_step'):.1f}x (sdpa) for full attention. RMT pays "
        f"{MEM + 3} extra tokens per segment and runs segments one after another (no "
        f"parallelism across segments); at 1x all three run one {BASE}-token pass, so their "
        f"spread there is the noise of the shared machine. RMT wins where attention cost "
        f"dominates, and it is the only option once the length "
        f"exceeds what the pretrained position table covers (full attention here needs a "
        f"model whose positions span the whole input, i.e. retraining).")


def write_section(text: str) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, re-reading the file first."""
    path = REPO / "benchmarks" / "RESULTS.md"
    current = path.read_text() if path.is_file() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text, current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "FACTOR"))
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.steps, args.threads)))
        return
    began = time.perf_counter()
    load = os.getloadavg()[0]
    rows = []
    for factor in args.factors:
        for method in METHODS:
            row = _child(method, factor, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    meta = {"steps": args.steps, "threads": args.threads, "factors": args.factors,
            "cpu": _cpu(), "cores": os.cpu_count(), "load": load, "versions": _versions(),
            "seconds": time.perf_counter() - began,
            "command": "python benchmarks/bench_rmt.py " + " ".join(sys.argv[1:]),
            "reading": _reading(rows, args.factors)}
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "meta": meta}, indent=2))
    text = markdown(rows, meta)
    print(text)
    if args.write_results:
        write_section(text)


if __name__ == "__main__":
    main()
