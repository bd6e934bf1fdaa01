"""Tokenizer statistics on the validation split, the figures DNABERT-2 compared vocabularies by.

Measured on the forward-strand validation chunks (reverse-complement copies are skipped so every
base counts once):

* ``mean_token_length_bp``: mean bases per token occurrence (k for overlapping k-mers, whose
  tokens overlap; for every other kind it equals ``bp_per_token``);
* ``tokens_per_bp``: tokenized length ratio, tokens / bases (1.0 for single nucleotides; how much
  shorter the model's input is than the sequence);
* ``vocab_usage``: fraction of the non-special vocabulary seen at least once;
* the longest tokens of the vocabulary, with their length and how often each occurs;
* ``token_length_counts``: occurrences by token length (index = bases).

Written as a one-row Parquet (easy to concatenate across tokenizers) and a PNG.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dnalm.errors import InputFormatError
from dnalm.io import atomic_file, write_table
from dnalm.logs import progress
from dnalm.tokenizers.encode import DnaTokenizer
from dnalm.tokenizers.shards import DEFAULT_BATCH_BP, batch_rows

log = logging.getLogger(__name__)

TOP_TOKENS = 20


class _Counter:
    """Running token counts over batches."""

    def __init__(self, vocab_size: int) -> None:
        self.ids = np.zeros(vocab_size, dtype=np.int64)
        self.lengths = np.zeros(1, dtype=np.int64)
        self.sequences = 0
        self.bases = 0

    def add(self, ids: np.ndarray, spans: np.ndarray, sequences: int, bases: int) -> None:
        self.ids += np.bincount(ids, minlength=len(self.ids))[: len(self.ids)]
        counts = np.bincount(spans)
        if len(counts) > len(self.lengths):
            self.lengths = np.pad(self.lengths, (0, len(counts) - len(self.lengths)))
        self.lengths[: len(counts)] += counts
        self.sequences += sequences
        self.bases += bases


def count_tokens(tokenizer: DnaTokenizer, parts: Sequence[str | Path], *,
                 batch_bp: int = DEFAULT_BATCH_BP) -> _Counter:
    """Tokenize the forward-strand chunks of ``parts`` batch by batch and count."""
    counter = _Counter(tokenizer.vocab_size)
    for path in progress(parts, desc="tokenizer statistics", logger=log, unit="shard"):
        try:
            pf = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise InputFormatError(f"cannot read chunk shard: {exc}", where=str(path)) from exc
        if "sequence" not in pf.schema_arrow.names or "strand" not in pf.schema_arrow.names:
            raise InputFormatError("not a chunk shard (needs sequence and strand)", where=str(path))
        for batch in pf.iter_batches(batch_size=batch_rows(pf, batch_bp),
                                     columns=["strand", "sequence"]):
            forward = pc.equal(batch.column("strand").cast(pa.string()), "+")
            sequences = pc.filter(batch.column("sequence"), forward)
            tokens = tokenizer.encode_batch(sequences)
            bases = int(pc.sum(pc.utf8_length(sequences)).as_py() or 0)
            counter.add(tokens.ids, tokens.ends - tokens.starts, len(sequences), bases)
    return counter


def _summarise(tokenizer: DnaTokenizer, counter: _Counter, name: str, n_parts: int,
               top: int) -> dict[str, Any]:
    special = np.zeros(tokenizer.vocab_size, dtype=bool)
    special[list(tokenizer.special_tokens.values())] = True
    tokens = int(counter.ids.sum())
    lengths = tokenizer.token_lengths()
    candidates = np.flatnonzero(~special)
    # longest first; ties in vocabulary order (stable sort)
    longest = candidates[np.argsort(-lengths[candidates], kind="stable")[:top]]
    spans = np.arange(len(counter.lengths))
    return {
        "tokenizer": name,
        "kind": tokenizer.kind,
        "k": tokenizer.k,
        "vocab_size": tokenizer.vocab_size,
        "content_vocab_size": int((~special).sum()),
        "split": "validation",
        "parts": n_parts,
        "sequences": counter.sequences,
        "bases": counter.bases,
        "tokens": tokens,
        "mean_token_length_bp": float((spans * counter.lengths).sum() / tokens) if tokens else None,
        "bp_per_token": counter.bases / tokens if tokens else None,
        "tokens_per_bp": tokens / counter.bases if counter.bases else None,
        "unknown_fraction": (float(counter.ids[tokenizer.unk_id] / tokens)
                             if tokens and tokenizer.unk_id is not None else None),
        "vocab_used": int(np.count_nonzero(counter.ids[~special])),
        "vocab_usage": float(np.count_nonzero(counter.ids[~special]) / max(1, (~special).sum())),
        "longest_tokens": tokenizer.id_to_token(longest),
        "longest_token_lengths": lengths[longest].tolist(),
        "longest_token_counts": counter.ids[longest].tolist(),
        "token_length_counts": counter.lengths.tolist(),
    }


STATS_SCHEMA = pa.schema([
    ("tokenizer", pa.string()), ("kind", pa.string()), ("k", pa.int32()),
    ("vocab_size", pa.int64()), ("content_vocab_size", pa.int64()), ("split", pa.string()),
    ("parts", pa.int64()), ("sequences", pa.int64()), ("bases", pa.int64()),
    ("tokens", pa.int64()), ("mean_token_length_bp", pa.float64()),
    ("bp_per_token", pa.float64()), ("tokens_per_bp", pa.float64()),
    ("unknown_fraction", pa.float64()), ("vocab_used", pa.int64()),
    ("vocab_usage", pa.float64()), ("longest_tokens", pa.list_(pa.string())),
    ("longest_token_lengths", pa.list_(pa.int64())),
    ("longest_token_counts", pa.list_(pa.int64())),
    ("token_length_counts", pa.list_(pa.int64())),
])


def _plot(stats: dict[str, Any], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    counts = np.asarray(stats["token_length_counts"], dtype=float)
    if counts.sum():
        left.bar(np.arange(len(counts)), counts / counts.sum(), width=0.8, color="#3b6ea5")
    left.set_xlabel("token length (bp)")
    left.set_ylabel("fraction of validation tokens")
    labels = [t if len(t) <= 24 else t[:21] + "..." for t in stats["longest_tokens"]]
    y = np.arange(len(labels))
    bars = right.barh(y, stats["longest_token_lengths"], color="#c9733a")
    right.bar_label(bars, labels=[f"{c:,}x" for c in stats["longest_token_counts"]], fontsize=6,
                    padding=2)
    right.set_yticks(y, labels, fontsize=7, family="monospace")
    right.invert_yaxis()
    right.set_xlabel("length (bp)")
    right.set_title(f"{len(labels)} longest vocabulary tokens (occurrences in validation)",
                    fontsize=10)

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    fig.suptitle(
        f"{stats['tokenizer']} ({stats['kind']}, vocab {stats['vocab_size']}) on "
        f"{stats['bases']:,} validation bp: mean token {fmt(stats['mean_token_length_bp'], '.2f')}"
        f" bp, tokens/bp {fmt(stats['tokens_per_bp'], '.3f')}, "
        f"vocabulary used {fmt(100 * stats['vocab_usage'], '.1f')}%",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_file(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def tokenizer_stats(
    tokenizer_dir: str | Path,
    validation_parts: Sequence[str | Path],
    out_parquet: str | Path,
    out_png: str | Path,
    *,
    top: int = TOP_TOKENS,
) -> dict[str, Any]:
    """Measure a tokenizer on validation chunk shards; write a one-row Parquet and a PNG.

    ``validation_parts`` are chunk shards (``.../chunks/validation/part-*.parquet``) of one or
    several genomes. Returns the statistics as a dict (the Parquet row; see the module
    docstring). With no validation bases the ratios are null, not an error, so a tiny genome
    whose validation split is empty still gets its report.
    """
    tokenizer = DnaTokenizer(tokenizer_dir)
    parts = [Path(p) for p in validation_parts]
    counter = count_tokens(tokenizer, parts)
    stats = _summarise(tokenizer, counter, Path(tokenizer_dir).name, len(parts), top)
    write_table(pa.Table.from_pylist([stats], schema=STATS_SCHEMA), out_parquet)
    _plot(stats, Path(out_png))
    return stats
