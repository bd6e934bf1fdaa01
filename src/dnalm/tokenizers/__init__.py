"""Tokenizers for DNA language models: build, save, tokenize shards, measure.

Kinds (``spec["kind"]``): ``bpe`` (trained with Hugging Face ``tokenizers`` on a sample of
training chunks), ``kmer`` (overlapping, DNABERT), ``nt_kmer`` (non-overlapping, Nucleotide
Transformer), ``char`` (single nucleotide) and ``pretrained`` (a local Hugging Face tokenizer
directory). Every tokenizer is a directory that ``transformers.AutoTokenizer.from_pretrained``
loads; :mod:`~dnalm.tokenizers.build` documents case, N and unknown-character handling, and
:mod:`~dnalm.tokenizers.shards` the token shard schema and the token → genome coordinate formula.

Typical use (what the workflow rules do)::

    build_tokenizer({"kind": "bpe", "vocab_size": 4096}, "results/tokenizers/bpe4096",
                    train_parts=list_parts("results/genomes/hg/chunks/train"), seed=42)
    tokenize_shards("results/tokenizers/bpe4096", "results/genomes/hg/chunks",
                    "results/genomes/hg/tokens/bpe4096", threads=4)
    tokenizer_stats("results/tokenizers/bpe4096",
                    list_parts("results/genomes/hg/chunks/validation"),
                    "results/tokenizers/bpe4096/stats.parquet",
                    "results/tokenizers/bpe4096/stats.png")
"""

from __future__ import annotations

import importlib
from typing import Any

# the specification is cheap and read while Snakemake parses the workflow (every tokenizer entry
# is checked then); the builders import Hugging Face ``tokenizers`` and load on first use
from dnalm.tokenizers.spec import (
    CLS_ID,
    KINDS,
    MASK_ID,
    METADATA_FILE,
    PAD_ID,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    TokenizerSpec,
    parse_spec,
)

_LAZY = {
    "build_tokenizer": "build", "kmer_vocabulary": "build",
    "DnaTokenizer": "encode", "TokenizedBatch": "encode", "kmer_text": "encode",
    "load_tokenizer": "encode",
    "TOKEN_SCHEMA": "shards", "tokenize_part": "shards", "tokenize_shards": "shards",
    "tokenize_table": "shards",
    "tokenizer_stats": "stats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLS_ID",
    "KINDS",
    "MASK_ID",
    "METADATA_FILE",
    "PAD_ID",
    "SEP_ID",
    "SPECIAL_TOKENS",
    "TOKEN_SCHEMA",
    "UNK_ID",
    "DnaTokenizer",
    "TokenizedBatch",
    "TokenizerSpec",
    "build_tokenizer",
    "kmer_text",
    "kmer_vocabulary",
    "load_tokenizer",
    "parse_spec",
    "tokenize_part",
    "tokenize_shards",
    "tokenize_table",
    "tokenizer_stats",
]
