"""Small tokenizers and token shards for tests, benchmarks and smoke runs of the training code.

These stand in for the outputs of dnalm's tokenizer stage (``dnalm.tokenizers``) with the same
on-disk contract: a Hugging Face tokenizer directory with special tokens [PAD] [UNK] [CLS] [SEP]
[MASK] (ids 0-4) plus ``dnalm_tokenizer.json``, and Parquet token shards with the columns
``genome, contig, start, end, strand, input_ids, token_starts, token_ends``. They are deliberately
simple (pure-Python k-mer encoding) and meant for megabases, not genomes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from dnalm.io import part_name, write_table

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

TOKEN_SCHEMA = pa.schema(
    [
        ("genome", pa.string()),
        ("contig", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("strand", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("token_starts", pa.list_(pa.int32())),
        ("token_ends", pa.list_(pa.int32())),
    ]
)


def _save(tokenizer: Tokenizer, out_dir: str | Path, kind: str, k: int | None) -> Path:
    out = Path(out_dir)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(out)
    meta = {"kind": kind, "k": k, "vocab_size": len(fast)}
    (out / "dnalm_tokenizer.json").write_text(json.dumps(meta) + "\n")
    return out


def write_char_tokenizer(out_dir: str | Path) -> Path:
    """One token per base (A C G T N): kind ``char``, 10 tokens."""
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, "A", "C", "G", "T", "N"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return _save(tok, out_dir, "char", None)


def write_kmer_tokenizer(out_dir: str | Path, k: int, *, overlapping: bool = True) -> Path:
    """All ACGT k-mers as a word-level vocabulary: kind ``kmer`` or ``nt_kmer``.

    Encoding is done by :func:`encode_kmers` (the vocabulary is what the model needs).
    """
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *kmers])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return _save(tok, out_dir, "kmer" if overlapping else "nt_kmer", k)


def write_bpe_tokenizer(
    out_dir: str | Path, sequences: Iterable[str], vocab_size: int = 512
) -> Path:
    """A byte-pair-encoding tokenizer trained on ``sequences``: kind ``bpe``."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=list("ACGTN"),
        show_progress=False,
    )
    tok.train_from_iterator(sequences, trainer=trainer)
    return _save(tok, out_dir, "bpe", None)


def encode_char(seq: str) -> list[int]:
    """Ids of the char tokenizer (A=5 C=6 G=7 T=8, anything else N=9)."""
    table = {"A": 5, "C": 6, "G": 7, "T": 8}
    return [table.get(base, 9) for base in seq.upper()]


def encode_kmers(seq: str, k: int, *, overlapping: bool = True) -> list[int]:
    """Ids of :func:`write_kmer_tokenizer`'s vocabulary; k-mers with non-ACGT bases are [UNK]."""
    index = {"".join(p): i + len(SPECIAL_TOKENS)
             for i, p in enumerate(itertools.product("ACGT", repeat=k))}
    step = 1 if overlapping else k
    seq = seq.upper()
    return [index.get(seq[i : i + k], 1) for i in range(0, len(seq) - k + 1, step)]


def random_chunks(
    length: int, min_len: int, max_len: int, *, seed: int = 0
) -> list[tuple[int, int]]:
    """Consecutive ``(start, end)`` chunks of uniformly random length covering ``[0, length)``."""
    rng = np.random.default_rng(seed)
    chunks, start = [], 0
    while start + min_len <= length:
        end = min(length, start + int(rng.integers(min_len, max_len + 1)))
        chunks.append((start, end))
        start = end
    return chunks


def write_token_shards(
    out_dir: str | Path,
    rows: Sequence[tuple[str, int, int, Sequence[int]]],
    *,
    genome: str = "demo",
    rows_per_shard: int = 1000,
    row_group_size: int = 256,
) -> list[Path]:
    """Write ``(contig, start, end, input_ids)`` rows as ``part-NNNNN.parquet`` token shards.

    Token coordinates are not meaningful here (each token is given its index); training only
    reads ``input_ids``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for part, first in enumerate(range(0, max(len(rows), 1), rows_per_shard)):
        batch = rows[first : first + rows_per_shard]
        positions = [list(range(len(ids))) for *_, ids in batch]
        table = pa.table(
            {
                "genome": [genome] * len(batch),
                "contig": [r[0] for r in batch],
                "start": [r[1] for r in batch],
                "end": [r[2] for r in batch],
                "strand": ["+"] * len(batch),
                "input_ids": [list(map(int, r[3])) for r in batch],
                "token_starts": positions,
                "token_ends": [[p + 1 for p in pos] for pos in positions],
            },
            schema=TOKEN_SCHEMA,
        )
        path = out / part_name(part)
        write_table(table, path, row_group_size=row_group_size)
        paths.append(path)
    return paths
