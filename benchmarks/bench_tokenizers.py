"""Benchmark tokenization of the chr20 training split: dnalm vs per-sequence Python loops.

Run by hand, e.g.::

    .venv/bin/python benchmarks/bench_tokenizers.py --threads 1 2 --repeats 3 \
        --out benchmarks/results_tokenizers.json

The FASTA (default: whole GRCh37 chr20, already bgzipped and faidx'd) is chunked once into a
temporary directory with ``dnalm.chunks.chunk_genome`` (1000 bp chunks, default splits), unless
``--chunks DIR`` gives a chunk directory. Only its ``train`` split is tokenized.

Tokenizers: ``bpe`` (4096 tokens trained with ``build_tokenizer`` on a 3 Mbp sample of the same
training split), ``kmer`` (k=6, overlapping), ``nt_kmer`` (6-mers) and ``char``.

Variants, all on the same sequences, interleaved within each repeat so that load from other
processes hits them alike:

* ``tokenize_shards``: dnalm end to end (Parquet read, tokens, offsets, Parquet write) with 1 and
  2 worker processes;
* ``loop``: one Python call per sequence, sequences already in memory, ids only (no offsets, no
  writing). BPE: ``tokenizers.Tokenizer.encode(seq).ids``; kmer: a list comprehension of
  ``vocab.get(seq[i:i+k], UNK)``; nt_kmer: ``re.finditer`` on the NT pattern + ``vocab.get``;
  char: ``[vocab.get(c, UNK) for c in seq]``;
* ``dnalm encode_batch in memory``: ``DnaTokenizer.encode_batch`` (ids *and* offsets) on the
  in-memory Arrow arrays, 2,000 sequences per call, one thread: the tokenization part of
  ``tokenize_shards`` without Parquet reading and writing;
* BPE only, ``encode_batch`` / ``encode_batch_fast``: the bare ``tokenizers`` library on the saved
  tokenizer, sequences in memory, 2,000 sequences per call, ids only; ``serial`` with
  ``TOKENIZERS_PARALLELISM=false`` (compare with 1 dnalm worker), ``parallel`` with the library's
  own thread pool on every core (compare with 2 dnalm workers).

BPE training time is ``build_tokenizer`` (sampling + training) and the trainer's share of it.
Times are wall-clock seconds; the table reports the best and the median of the repeats, and the
bases per CPU-second (this process's threads plus its reaped worker processes), which is less
sensitive than wall time to other processes competing for the cores.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from dnalm.chunks import ChunkConfig, SplitConfig, chunk_genome
from dnalm.io import list_parts
from dnalm.tokenizers import UNK_ID, build_tokenizer, load_tokenizer, tokenize_shards

DEFAULT_FASTA = "/work/shared/data/human_chr20_grch37/20.fa.gz"
KINDS = {
    "bpe": {"kind": "bpe", "vocab_size": 4096, "sample_bp": 3_000_000},
    "kmer": {"kind": "kmer", "k": 6},
    "nt_kmer": {"kind": "nt_kmer", "k": 6},
    "char": {"kind": "char"},
}
BATCH_SEQUENCES = 2000


@contextlib.contextmanager
def tokenizers_parallelism(enabled: bool) -> Iterator[None]:
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if enabled else "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM")
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its reaped children (pool workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds and result of ``fn()``."""
    cpu = cpu_seconds()
    wall, result = timed(fn)
    return wall, cpu_seconds() - cpu, result


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle
                    if line.startswith("model name")), cpu)
    versions = {p: importlib.metadata.version(p)
                for p in ("tokenizers", "transformers", "pyarrow", "numpy")}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


def prepare_chunks(args: argparse.Namespace, tmp: Path) -> Path:
    """A chunk directory holding only the train split (symlinked from the real one)."""
    source = args.chunks
    if source is None:
        source = tmp / "chunks"
        seconds, _ = timed(lambda: chunk_genome(args.fasta, source, genome_id="chr20",
                                                chunk_cfg=ChunkConfig(), split_cfg=SplitConfig(),
                                                threads=2))
        print(f"chunked {args.fasta} in {seconds:.1f} s", flush=True)
    train_only = tmp / "train_only"
    train_only.mkdir()
    (train_only / "train").symlink_to(Path(source).resolve() / "train")
    return train_only


def load_sequences(chunks: Path) -> pa.Array:
    tables = [pq.read_table(p, columns=["sequence"]) for p in list_parts(chunks / "train")]
    return pa.concat_tables(tables)["sequence"].combine_chunks()


def dnalm_in_memory(tokenizer_dir: Path, arrays: list[pa.Array]) -> Callable[[list[str]], int]:
    """dnalm's ``DnaTokenizer.encode_batch`` (ids and offsets) on in-memory Arrow batches."""
    tokenizer = load_tokenizer(tokenizer_dir)

    def run(_: list[str]) -> int:
        return sum(tokenizer.encode_batch(a).num_tokens for a in arrays)
    return run


def kmer_loop(vocab: dict[str, int], k: int) -> Callable[[list[str]], int]:
    def run(sequences: list[str]) -> int:
        tokens = 0
        for seq in sequences:
            seq = seq.upper()
            ids = [vocab.get(seq[i : i + k], UNK_ID) for i in range(len(seq) - k + 1)]
            tokens += len(ids)
        return tokens
    return run


def nt_loop(vocab: dict[str, int], k: int) -> Callable[[list[str]], int]:
    pattern = re.compile(rf"[ACGT]{{{k}}}|[ACGT]|N|.", re.S)

    def run(sequences: list[str]) -> int:
        tokens = 0
        for seq in sequences:
            ids = [vocab.get(m.group(), UNK_ID) for m in pattern.finditer(seq.upper())]
            tokens += len(ids)
        return tokens
    return run


def char_loop(vocab: dict[str, int]) -> Callable[[list[str]], int]:
    def run(sequences: list[str]) -> int:
        tokens = 0
        for seq in sequences:
            ids = [vocab.get(c, UNK_ID) for c in seq.upper()]
            tokens += len(ids)
        return tokens
    return run


def hf_loop(tokenizer: Tokenizer) -> Callable[[list[str]], int]:
    def run(sequences: list[str]) -> int:
        return sum(len(tokenizer.encode(s, add_special_tokens=False).ids) for s in sequences)
    return run


def hf_batch(tokenizer: Tokenizer, method: str) -> Callable[[list[str]], int]:
    def run(sequences: list[str]) -> int:
        encode = getattr(tokenizer, method)
        tokens = 0
        for i in range(0, len(sequences), BATCH_SEQUENCES):
            encodings = encode(sequences[i : i + BATCH_SEQUENCES], add_special_tokens=False)
            tokens += sum(len(e.ids) for e in encodings)
        return tokens
    return run


def baselines(kind: str, tokenizer_dir: Path, arrays: list[pa.Array],
              ) -> dict[str, tuple[Callable[[list[str]], int], bool]]:
    """Name → (function of the sequences returning the token count, use the library's threads)."""
    hf = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    vocab = hf.get_vocab()
    ours = {"dnalm encode_batch in memory, 1 thread": (dnalm_in_memory(tokenizer_dir, arrays),
                                                       False)}
    if kind == "bpe":
        return {**ours, "loop": (hf_loop(hf), False),
                "encode_batch serial": (hf_batch(hf, "encode_batch"), False),
                "encode_batch parallel": (hf_batch(hf, "encode_batch"), True),
                "encode_batch_fast serial": (hf_batch(hf, "encode_batch_fast"), False),
                "encode_batch_fast parallel": (hf_batch(hf, "encode_batch_fast"), True)}
    if kind == "kmer":
        return {**ours, "loop": (kmer_loop(vocab, 6), False)}
    if kind == "nt_kmer":
        return {**ours, "loop": (nt_loop(vocab, 6), False)}
    return {**ours, "loop": (char_loop(vocab), False)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench_tokenizers_", dir=args.tmp))
    try:
        chunks = prepare_chunks(args, tmp)
        array = load_sequences(chunks)
        arrays = [array.slice(i, BATCH_SEQUENCES) for i in range(0, len(array), BATCH_SEQUENCES)]
        sequences = array.to_pylist()
        bases = sum(map(len, sequences))
        print(f"train split: {len(sequences)} chunks, {bases:,} bp", flush=True)
        timings: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        tokens: dict[str, int] = {}
        training: list[dict[str, Any]] = []
        tok_dirs = {}
        for repeat in range(args.repeats):
            for kind in args.kinds:
                tok_dir = tmp / "tokenizers" / kind
                if kind == "bpe" or kind not in tok_dirs:
                    seconds, meta = timed(lambda k=kind, d=tok_dir: build_tokenizer(
                        KINDS[k], d, train_parts=list_parts(chunks / "train"), seed=42))
                    tok_dirs[kind] = tok_dir
                    if kind == "bpe":
                        training.append({"build_seconds": seconds, **meta["training"]})
                for threads in args.threads:
                    name = f"{kind} | tokenize_shards {threads} thread(s)"
                    out = tmp / "tokens" / kind
                    seconds, cpu_s, totals = timed_cpu(lambda d=tok_dir, o=out, t=threads:
                                                       tokenize_shards(d, chunks, o, threads=t))
                    timings.setdefault(name, []).append(seconds)
                    cpu.setdefault(name, []).append(cpu_s)
                    tokens[name] = totals["train"]["tokens"]
                    shutil.rmtree(out)
                for label, (fn, parallel) in baselines(kind, tok_dir, arrays).items():
                    name = f"{kind} | {label}"
                    with tokenizers_parallelism(parallel):
                        seconds, cpu_s, count = timed_cpu(lambda f=fn: f(sequences))
                    timings.setdefault(name, []).append(seconds)
                    cpu.setdefault(name, []).append(cpu_s)
                    tokens[name] = count
                print(f"repeat {repeat + 1}/{args.repeats}: {kind} done; load average "
                      f"{os.getloadavg()[0]:.2f}", flush=True)
        return {"machine": machine(), "command": " ".join(sys.argv), "bases": bases,
                "chunks": len(sequences), "timings": timings, "cpu_seconds": cpu, "tokens": tokens,
                "bpe_training": training, "load_average_end": os.getloadavg()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table(result: dict[str, Any]) -> str:
    """Markdown table: Mbp/s best and median, tokens, bp/token, ratios to the bare library."""
    mbp = result["bases"] / 1e6
    rows = ["| tokenizer | variant | Mbp/s (best) | Mbp/s (median) | Mbp per CPU-s (best) "
            "| tokens | bp/token |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, seconds in result["timings"].items():
        kind, variant = name.split(" | ")
        count = result["tokens"][name]
        rows.append(f"| {kind} | {variant} | {mbp / min(seconds):.2f} | "
                    f"{mbp / statistics.median(seconds):.2f} | "
                    f"{mbp / max(1e-9, min(result['cpu_seconds'][name])):.2f} | {count:,} | "
                    f"{result['bases'] / max(1, count):.2f} |")
    timings = result["timings"]
    for threads, bare in ((1, "serial"), (2, "parallel")):
        ours = timings.get(f"bpe | tokenize_shards {threads} thread(s)")
        for method in ("encode_batch", "encode_batch_fast"):
            base = timings.get(f"bpe | {method} {bare}")
            if ours and base:
                rows.append(f"\nBPE tokenize_shards ({threads} worker(s)) / bare {method} "
                            f"{bare}: {min(base) / min(ours):.2f} (best), "
                            f"{statistics.median(base) / statistics.median(ours):.2f} (median)")
    for t in result["bpe_training"]:
        rows.append(f"\nBPE training: build_tokenizer {t['build_seconds']:.1f} s "
                    f"(trainer {t['train_seconds']:.1f} s) on {t['sample_bases']:,} bp")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fasta", default=DEFAULT_FASTA)
    parser.add_argument("--chunks", type=Path, help="an existing chunk directory (skip chunking)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tmp", default=None, help="where temporary files go")
    parser.add_argument("--out", type=Path, help="write the raw results as JSON here")
    args = parser.parse_args()
    result = run(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["machine"], indent=1))
    print(table(result))


if __name__ == "__main__":
    main()
