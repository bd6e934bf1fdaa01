"""A seeded random sample of training-split chunks for BPE training, read without loading shards.

Pass 1 reads only the small ``start``/``end``/``strand`` columns of every training shard to learn
each forward-strand chunk's length. A seeded permutation then picks chunks until ``sample_bp``
bases are reached (the last one cut so the total is exact). Pass 2 reads the ``sequence`` column
of only the row groups that hold a picked chunk, one row group at a time, and keeps the picked
rows. The sample is uniform over chunks, so with several genomes each contributes in proportion
to its training bases; reverse-complement copies (``-`` rows) are skipped because they add no
sequence the forward copy does not have (BPE merges of a sequence and of its reverse complement
are counted alike anyway when both strands occur in the genome).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dnalm.errors import DnalmError, InputFormatError

log = logging.getLogger(__name__)


@dataclass
class TrainingSample:
    """Pieces of sequence for the BPE trainer and where they came from."""

    pieces: list[str]
    chunks: int
    bases: int
    available_bases: int
    parts: int


def _forward_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and lengths of the forward-strand chunks of one shard (no sequence read)."""
    try:
        table = pq.read_table(path, columns=["start", "end", "strand"])
    except (OSError, pa.ArrowException) as exc:
        raise InputFormatError(f"cannot read chunk shard: {exc}", where=str(path)) from exc
    forward = pc.equal(table["strand"].cast(pa.string()), "+").to_numpy(zero_copy_only=False)
    lengths = (table["end"].to_numpy() - table["start"].to_numpy())[forward]
    return np.flatnonzero(forward), lengths


def _pieces(sequence: str, max_piece_length: int) -> list[str]:
    return [sequence[i : i + max_piece_length] for i in range(0, len(sequence), max_piece_length)]


def _choose(lengths: np.ndarray, target_bp: int, seed: int) -> tuple[np.ndarray, int]:
    """Indices of chunks in seeded random order until ``target_bp``; bases kept of the last one.

    The last chunk is cut so that exactly ``target_bp`` bases are used.
    """
    order = np.random.default_rng(seed).permutation(len(lengths))
    cumulative = np.cumsum(lengths[order])
    n_take = int(np.searchsorted(cumulative, target_bp)) + 1
    keep_last = target_bp - (int(cumulative[n_take - 2]) if n_take > 1 else 0)
    return order[:n_take], keep_last


def sample_training_sequences(
    train_parts: Sequence[str | Path], *, sample_bp: int, seed: int, max_piece_length: int
) -> TrainingSample:
    """Pick forward-strand chunks at random (seeded) until ``sample_bp`` bases; cut into pieces.

    Shards are sorted by path first, so the sample depends on the seed and the set of shards,
    not on the order they are given in. Raises :class:`DnalmError` when the shards hold no
    forward-strand bases at all. If they hold fewer than ``sample_bp`` bases, all of them are used
    and a warning is logged.
    """
    parts = sorted({Path(p) for p in train_parts}, key=str)
    if not parts:
        raise DnalmError("BPE training needs training-split chunk shards; none were given")
    part_ids, rows, lengths = [], [], []
    for index, path in enumerate(parts):
        part_rows, part_lengths = _forward_rows(path)
        part_ids.append(np.full(len(part_rows), index, np.int32))
        rows.append(part_rows)
        lengths.append(part_lengths)
    all_parts, all_rows = np.concatenate(part_ids), np.concatenate(rows)
    all_lengths = np.concatenate(lengths)
    available = int(all_lengths.sum())
    if available == 0:
        raise DnalmError(f"no forward-strand training bases in {len(parts)} chunk shard(s) "
                         f"(first: {parts[0]})")
    if available < sample_bp:
        log.warning("BPE sample: only %d training bases available, fewer than sample_bp=%d; "
                    "using all of them", available, sample_bp)
    chosen, keep_last = _choose(all_lengths, min(sample_bp, available), seed)
    last = (int(all_parts[chosen[-1]]), int(all_rows[chosen[-1]]))
    pieces: list[str] = []
    bases = 0
    for part_index in np.unique(all_parts[chosen]):
        picked = chosen[all_parts[chosen] == part_index]
        for row, sequence in _read_rows(parts[part_index], all_rows[picked]):
            if (int(part_index), row) == last:
                sequence = sequence[:keep_last]
            bases += len(sequence)
            pieces.extend(_pieces(sequence, max_piece_length))
    return TrainingSample(pieces, len(chosen), bases, available, len(parts))


def _read_rows(path: Path, rows: np.ndarray) -> list[tuple[int, str]]:
    """``(row, sequence)`` for the given shard rows, reading only the row groups that hold them."""
    rows = np.sort(rows)
    pf = pq.ParquetFile(path)
    group_ends = np.cumsum([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
    groups = np.searchsorted(group_ends, rows, side="right")
    out: list[tuple[int, str]] = []
    for group in np.unique(groups):
        first_row = int(group_ends[group - 1]) if group else 0
        column = pf.read_row_group(int(group), columns=["sequence"])["sequence"]
        wanted = rows[groups == group]
        values = column.take(pa.array(wanted - first_row)).to_pylist()
        out.extend(zip(wanted.tolist(), values, strict=True))
    return out
