"""Tokenize chunk shards into token shards, in parallel over shards and streaming within each.

Input: a chunk directory of :func:`dnalm.chunks.chunk_genome` (``{split}/part-NNNNN.parquet``).
Output: the same layout and part numbers, one row per chunk, with columns

* ``genome``, ``contig`` (dictionary strings), ``start``, ``end`` (int64; 0-based, end-exclusive,
  forward strand) and ``strand`` (``+``, or ``-`` for reverse-complement copies): copied from the
  chunk row;
* ``input_ids`` (``list<int32>``): content tokens only, no ``[CLS]``/``[SEP]`` (the trainer adds
  them);
* ``token_starts``, ``token_ends`` (``list<int32>``): each token's base span ``[s, e)`` as offsets
  into the chunk's stored ``sequence``.

Token offsets are relative to the chunk's ``sequence`` as stored; for ``-`` rows that is the
reverse complement of ``genome[start:end]``. The genome bases of a token with offsets
``[s, e)`` are therefore (0-based, end-exclusive, forward strand)::

    strand "+":  [start + s, start + e)
    strand "-":  [end - e,   end - s)     (the token reads the reverse complement of these bases)

so the stored base at offset ``i`` sits at genome position ``start + i`` on ``+`` rows and
``end - 1 - i`` on ``-`` rows. Overlapping k-mer tokens have ``e - s == k``; the ``bpe``,
``nt_kmer`` and ``char`` tokens tile the sequence without gaps or overlaps; a ``pretrained``
tokenizer's offsets are those its ``tokenizers`` pipeline reports.

There is no length limit: each chunk is tokenized whole however long it is. Each worker process
reads its shard in record batches of about ``batch_bp`` bases and appends each as a row group,
so memory depends on the batch size, not on the shard or genome size. The output directory
appears only when every shard is written; every split directory holds at least one shard (an
empty one with the schema when the split has no chunks), as the chunk directory does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dnalm.chunks import CHUNK_SCHEMA, SPLITS
from dnalm.errors import InputFormatError
from dnalm.io import (
    PARQUET_COMPRESSION,
    PARQUET_COMPRESSION_LEVEL,
    atomic_dir,
    list_parts,
    part_name,
)
from dnalm.logs import progress
from dnalm.tokenizers.encode import DnaTokenizer, TokenizedBatch

log = logging.getLogger(__name__)

META_COLUMNS = ("genome", "contig", "start", "end", "strand")
TOKEN_SCHEMA = pa.schema(
    [CHUNK_SCHEMA.field(name) for name in META_COLUMNS]
    + [pa.field(name, pa.list_(pa.int32()))
       for name in ("input_ids", "token_starts", "token_ends")]
)
#: Bases per record batch read from a chunk shard (one output row group each).
DEFAULT_BATCH_BP = 2_000_000
#: Parquet encodings: token ids are dictionary-encoded (a few thousand distinct values), offsets
#: increase within a row so delta encoding packs them to a few bits; measured 10-20% less CPU to
#: write than the defaults, and 30% smaller BPE shards.
WRITER_OPTIONS = {
    "compression": PARQUET_COMPRESSION,
    "compression_level": PARQUET_COMPRESSION_LEVEL,
    "use_dictionary": ["genome", "contig", "strand", "input_ids.list.element"],
    "column_encoding": {"token_starts.list.element": "DELTA_BINARY_PACKED",
                        "token_ends.list.element": "DELTA_BINARY_PACKED"},
}

#: The tokenizer of the running :func:`tokenize_shards` call. Set before the worker processes
#: are forked, so they inherit it loaded instead of each parsing the tokenizer again.
_ACTIVE: DnaTokenizer | None = None


@dataclass
class PartSummary:
    """What one tokenized shard holds."""

    split: str
    part: str
    rows: int = 0
    bases: int = 0
    tokens: int = 0
    unknown_tokens: int = 0
    seconds: float = 0.0


@contextlib.contextmanager
def _serial_tokenizers() -> Iterator[None]:
    """Keep ``tokenizers`` from starting its own thread pool (it would use every core).

    Parallelism comes from one process per shard instead, so that ``threads`` is what is used.
    The library reads ``TOKENIZERS_PARALLELISM`` at every call, so this can be switched at will.
    """
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def _worker_init() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def batch_rows(pf: pq.ParquetFile, batch_bp: int) -> int:
    """Rows per record batch so that a batch holds about ``batch_bp`` bases."""
    meta = pf.metadata
    if meta.num_rows == 0 or meta.num_row_groups == 0:
        return 1
    first = meta.row_group(0)
    column = next((j for j in range(first.num_columns)
                   if first.column(j).path_in_schema == "sequence"), None)
    if column is None:
        return 1
    size = sum(meta.row_group(i).column(column).total_uncompressed_size
               for i in range(meta.num_row_groups))
    return max(1, int(batch_bp * meta.num_rows / max(1, size)))


def token_table(batch: pa.RecordBatch | pa.Table, tokens: TokenizedBatch) -> pa.Table:
    """Token table (:data:`TOKEN_SCHEMA`): the chunks' coordinates and their tokens."""
    columns = {name: batch.column(name) for name in META_COLUMNS}
    return pa.table({**columns, **tokens.to_arrow()}).cast(TOKEN_SCHEMA)


def tokenize_table(tokenizer: DnaTokenizer, batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Token table (:data:`TOKEN_SCHEMA`) of a chunk table or record batch, in memory."""
    return token_table(batch, tokenizer.encode_batch(batch.column("sequence")))


def _check_columns(pf: pq.ParquetFile, path: Path) -> None:
    missing = [c for c in (*META_COLUMNS, "sequence") if c not in pf.schema_arrow.names]
    if missing:
        raise InputFormatError(f"not a chunk shard: missing column(s) {', '.join(missing)}",
                               where=str(path))


def tokenize_part(tokenizer: DnaTokenizer | str | Path, chunk_part: str | Path,
                  out_part: str | Path, *, batch_bp: int = DEFAULT_BATCH_BP) -> PartSummary:
    """Tokenize one chunk shard into one token shard, a record batch at a time.

    ``tokenizer`` is a loaded :class:`DnaTokenizer` or a tokenizer directory. ``out_part`` is
    written in place (not atomically): :func:`tokenize_shards` makes the whole directory atomic.
    """
    began = time.perf_counter()
    if not isinstance(tokenizer, DnaTokenizer):
        tokenizer = DnaTokenizer(tokenizer)
    path = Path(chunk_part)
    summary = PartSummary(split=path.parent.name, part=path.name)
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputFormatError(f"cannot read chunk shard: {exc}", where=str(path)) from exc
    _check_columns(pf, path)
    unk = tokenizer.unk_id
    with pq.ParquetWriter(out_part, TOKEN_SCHEMA, **WRITER_OPTIONS) as writer:
        for batch in pf.iter_batches(batch_size=batch_rows(pf, batch_bp),
                                     columns=[*META_COLUMNS, "sequence"]):
            if batch.column("sequence").null_count:
                raise InputFormatError("chunk shard has null sequences", where=str(path))
            sequences = batch.column("sequence")
            tokens = tokenizer.encode_batch(sequences)
            writer.write_table(token_table(batch, tokens))
            summary.rows += batch.num_rows
            summary.bases += int(pc.sum(pc.utf8_length(sequences)).as_py() or 0)
            summary.tokens += tokens.num_tokens
            if unk is not None:
                summary.unknown_tokens += int(np.count_nonzero(tokens.ids == unk))
    summary.seconds = round(time.perf_counter() - began, 3)
    return summary


def _run_part(args: tuple[str, str, int]) -> PartSummary:
    return tokenize_part(_ACTIVE, args[0], args[1], batch_bp=args[2])


def _run_jobs(tokenizer: DnaTokenizer, jobs: list[tuple[str, str, int]], workers: int,
              desc: str = "tokenizing") -> list[PartSummary]:
    """Run the shard jobs in ``workers`` forked processes (or in this one when 1), with
    progress (a bar on a terminal, a log line every 10 % of the shards)."""
    global _ACTIVE
    _ACTIVE = tokenizer
    try:
        if workers == 1:
            with _serial_tokenizers():
                return [_run_part(job)
                        for job in progress(jobs, desc=desc, logger=log, unit="shard")]
        # fork: workers must not re-import a Snakemake script, as spawn/forkserver would
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
            return list(progress(pool.map(_run_part, jobs, chunksize=1), total=len(jobs),
                                 desc=desc, logger=log, unit="shard"))
    finally:
        _ACTIVE = None


def _jobs(chunks_dir: Path, tmp: Path, batch_bp: int) -> list[tuple[str, str, int]]:
    splits = [s for s in SPLITS if (chunks_dir / s).is_dir()]
    if not splits:
        raise InputFormatError(f"no split directories ({', '.join(SPLITS)}) in the chunk "
                               "directory", where=str(chunks_dir))
    jobs = []
    for split in splits:
        (tmp / split).mkdir()
        parts = list_parts(chunks_dir / split)
        if not parts:
            pq.write_table(TOKEN_SCHEMA.empty_table(), tmp / split / part_name(0), **WRITER_OPTIONS)
        jobs += [(str(p), str(tmp / split / p.name), batch_bp)
                 for p in parts]
    # biggest shards first, so that no worker is left with a big one at the end
    jobs.sort(key=lambda job: -os.path.getsize(job[0]))
    return jobs


def tokenize_shards(
    tokenizer_dir: str | Path,
    chunks_dir: str | Path,
    out_dir: str | Path,
    *,
    threads: int = 1,
    batch_bp: int = DEFAULT_BATCH_BP,
) -> dict[str, dict[str, int]]:
    """Tokenize every chunk shard of ``chunks_dir`` into ``out_dir/{split}/part-NNNNN.parquet``.

    ``tokenizer_dir`` is a directory from :func:`dnalm.tokenizers.build_tokenizer`. Shards are
    processed by ``threads`` worker processes (one shard each at a time; the ``tokenizers``
    library's own thread pool is switched off so that exactly ``threads`` cores are used). See
    the module docstring for the output columns and how token offsets map to genome coordinates.
    ``out_dir/summary.json`` records rows, bases, tokens and unknown tokens per split; the same
    totals are returned.
    """
    chunks, out, tok_dir = Path(chunks_dir), Path(out_dir), Path(tokenizer_dir).resolve()
    tokenizer = DnaTokenizer(tok_dir)  # fails early, in the parent, on a bad directory
    began = time.perf_counter()
    with atomic_dir(out) as tmp:
        jobs = _jobs(chunks, tmp, batch_bp)
        workers = max(1, min(threads, len(jobs)))
        parts = _run_jobs(tokenizer, jobs, workers, desc=f"tokenizing {chunks} ({tokenizer.kind})")
        totals = _totals(parts, tmp)
        report = {"tokenizer": str(tok_dir), "kind": tokenizer.kind,
                  "vocab_size": tokenizer.vocab_size, "chunks": str(chunks.resolve()),
                  "threads": workers, "seconds": round(time.perf_counter() - began, 3),
                  "splits": totals, "parts": [asdict(p) for p in parts]}
        (tmp / "summary.json").write_text(json.dumps(report, indent=1) + "\n")
    for split, t in totals.items():
        log.info("%s %s: %d chunks, %d bp -> %d tokens (%.2f bp/token)", out, split, t["rows"],
                 t["bases"], t["tokens"], t["bases"] / max(1, t["tokens"]))
    return totals


def _totals(parts: list[PartSummary], tmp: Path) -> dict[str, dict[str, int]]:
    splits = sorted({p.name for p in tmp.iterdir() if p.is_dir()}, key=SPLITS.index)
    totals = {s: {"parts": 0, "rows": 0, "bases": 0, "tokens": 0, "unknown_tokens": 0}
              for s in splits}
    for split in splits:
        totals[split]["parts"] = len(list_parts(tmp / split))
    for p in parts:
        t = totals[p.split]
        for key in ("rows", "bases", "tokens", "unknown_tokens"):
            t[key] += getattr(p, key)
    return totals
