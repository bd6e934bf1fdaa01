"""Streaming pre-tokenized Parquet shards into full-length training sequences.

Memory is independent of genome size: shards are read one *window* of rows at a time (only the
Parquet row groups that cover the window), and the stream's position is a small cursor.

Order. Each epoch draws a permutation of the shards, then of the windows inside a shard, then of
the rows inside a window, all from ``numpy`` generators seeded by ``(seed, epoch, shard, window)``.
This windowed shuffle is a bounded shuffle buffer whose content can be rebuilt from the cursor
alone, so a checkpoint never has to store buffered rows. With several processes (DDP), rank ``r``
of ``w`` keeps rows ``r, r + w, ...`` of every shuffled window: every rank reads the same windows
(cheap) and sees a disjoint share of the data.

Sequences. A chunk longer than ``max_length - 2`` content tokens is either cut into consecutive
pieces starting at a random phase (``long_chunks="split"``, the default: every token is used and
piece boundaries move between epochs) or randomly cropped once (``"crop"``, as DNABERT). With
``packing`` (default) pieces are concatenated as ``[CLS] a [SEP] b [SEP] c...`` until the sequence
holds exactly ``max_length`` tokens; a piece that does not fit is split and its tail opens the next
sequence, so there is no padding at all (at most one pad token when a single slot is left).
Without packing each piece is one ``[CLS] piece [SEP]`` sequence and batches are padded.

Resume. :meth:`TokenStream.state_dict` returns the epoch, shard, window and row position, the
pieces of the current chunk not yet emitted and the crop generator's state; loading it into a
fresh stream over the same shards continues with exactly the batches an uninterrupted stream would
have produced.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dnalm.errors import ConfigError
from dnalm.io import list_parts
from dnalm.train.config import LONG_CHUNK_POLICIES

TOKEN_COLUMN = "input_ids"


def list_shards(dirs: Sequence[str | Path], *, what: str = "token") -> list[Path]:
    """All ``part-*.parquet`` shards of ``dirs`` (several genomes), in a stable order."""
    shards: list[Path] = []
    for directory in dirs:
        path = Path(directory)
        if not path.is_dir():
            raise ConfigError(f"{what} shard directory does not exist", where=str(path))
        shards.extend(list_parts(path))
    if not shards:
        where = ", ".join(str(d) for d in dirs) or "(no directories given)"
        raise ConfigError(f"no {what} shards (part-*.parquet) found", where=where)
    return shards


def shards_fingerprint(shards: Sequence[Path]) -> str:
    """Digest of the shard list (last path components), to detect changed inputs on resume."""
    digest = hashlib.sha256()
    for shard in shards:
        digest.update("/".join(shard.parts[-5:]).encode() + b"\n")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class StreamConfig:
    """How shards become batches; see the module docstring for the semantics."""

    max_length: int
    batch_size: int
    cls_id: int
    sep_id: int
    pad_id: int
    vocab_size: int | None = None
    packing: bool = True
    long_chunks: str = "split"
    shuffle: bool = True
    shuffle_window: int = 1024
    repeat: bool = True
    pad_to_max_length: bool = False
    min_piece: int = 4
    seed: int = 0
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.max_length < 3:
            raise ConfigError(f"max_length must be at least 3, got {self.max_length}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.long_chunks not in LONG_CHUNK_POLICIES:
            raise ConfigError(
                f"long_chunks must be one of {', '.join(LONG_CHUNK_POLICIES)}, "
                f"got {self.long_chunks!r}"
            )
        if self.shuffle_window < 1:
            raise ConfigError(f"shuffle_window must be >= 1, got {self.shuffle_window}")
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank {self.rank} outside world size {self.world_size}")


class _Shard:
    """Random access to windows of rows of one shard; caches only the row groups in use."""

    def __init__(self, path: Path, window_rows: int, vocab_size: int | None) -> None:
        self.path = path
        self.window_rows = window_rows
        self.vocab_size = vocab_size
        try:
            self._file = pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ConfigError(f"cannot read token shard ({exc})", where=str(path)) from None
        if TOKEN_COLUMN not in self._file.schema_arrow.names:
            raise ConfigError(f"token shard has no {TOKEN_COLUMN!r} column", where=str(path))
        meta = self._file.metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.num_rows = int(self.group_starts[-1])
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_windows(self) -> int:
        return math.ceil(self.num_rows / self.window_rows)

    def _group(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._cache:
            column = self._file.read_row_group(index, columns=[TOKEN_COLUMN]).column(0)
            array = column.combine_chunks()
            offsets = array.offsets.to_numpy()
            values = array.values.to_numpy(zero_copy_only=False)
            self._check_ids(values)
            self._cache[index] = (offsets, values)
        return self._cache[index]

    def _check_ids(self, values: np.ndarray) -> None:
        """Out-of-vocabulary ids crash deep inside the embedding (CUDA: device assert)."""
        if values.size == 0 or self.vocab_size is None:
            return
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= self.vocab_size:
            bad = high if high >= self.vocab_size else low
            raise ConfigError(
                f"token id {bad} is outside the tokenizer's vocabulary ({self.vocab_size} "
                "tokens); were these shards made with another tokenizer?",
                where=str(self.path),
            )

    def window(self, index: int) -> list[np.ndarray]:
        """Rows ``[index * window_rows, ...)`` as int arrays (views into cached row groups)."""
        lo = index * self.window_rows
        hi = min(lo + self.window_rows, self.num_rows)
        first = int(np.searchsorted(self.group_starts, lo, side="right") - 1)
        last = int(np.searchsorted(self.group_starts, hi - 1, side="right") - 1)
        needed = range(first, last + 1)
        for stale in [g for g in self._cache if g not in needed]:
            del self._cache[stale]
        rows: list[np.ndarray] = []
        for group in needed:
            offsets, values = self._group(group)
            start = int(self.group_starts[group])
            for row in range(max(lo, start), min(hi, int(self.group_starts[group + 1]))):
                i = row - start
                rows.append(values[offsets[i] : offsets[i + 1]])
        return rows


class TokenStream:
    """Deterministic, resumable stream of MLM-ready batches from token shards.

    Iterate it (or call :meth:`next_batch`) to get dicts of ``input_ids`` and ``attention_mask``
    LongTensors of shape ``(batch_size, length)``. With ``repeat=False`` (validation) the stream
    ends after one pass; the last batch may be smaller.
    """

    def __init__(self, shards: Sequence[str | Path], config: StreamConfig) -> None:
        if not shards:
            raise ConfigError("no token shards given")
        self.shards = [Path(s) for s in shards]
        self.config = config
        self.fingerprint = shards_fingerprint(self.shards)
        self._rng = np.random.default_rng([config.seed, config.rank, 7919])
        self.epoch = 0
        self.shard_pos = 0
        self.window_pos = 0
        self.row_pos = 0
        self.exhausted = False
        self._rows_this_epoch = 0
        self._pieces: deque[np.ndarray] = deque()
        self._shard: _Shard | None = None
        self._shard_id = -1
        self._rows: list[np.ndarray] | None = None

    # -- order -------------------------------------------------------------------------------
    def _shard_order(self) -> np.ndarray:
        n = len(self.shards)
        if not self.config.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.config.seed, self.epoch]).permutation(n)

    def _current_shard(self) -> tuple[int, _Shard]:
        shard_id = int(self._shard_order()[self.shard_pos])
        if self._shard is None or self._shard_id != shard_id:
            path = self.shards[shard_id]
            self._shard = _Shard(path, self.config.shuffle_window, self.config.vocab_size)
            self._shard_id = shard_id
        return shard_id, self._shard

    def _window_rows(self, shard_id: int, shard: _Shard) -> list[np.ndarray]:
        """This rank's rows of the current window, in shuffled order."""
        cfg = self.config
        window_id = self.window_pos
        if cfg.shuffle:
            order = np.random.default_rng([cfg.seed, self.epoch, shard_id, 1 << 20])
            window_id = int(order.permutation(shard.num_windows)[self.window_pos])
        rows = shard.window(window_id)
        if cfg.shuffle:
            perm = np.random.default_rng([cfg.seed, self.epoch, shard_id, window_id])
            rows = [rows[i] for i in perm.permutation(len(rows))]
        return rows[cfg.rank :: cfg.world_size]

    def _next_row(self) -> np.ndarray | None:
        """The next row for this rank, advancing windows, shards and epochs as needed."""
        while not self.exhausted:
            if self._rows is None:
                shard_id, shard = self._current_shard()
                if self.window_pos < shard.num_windows:
                    self._rows = self._window_rows(shard_id, shard)
                else:
                    self._advance_shard()
                    continue
            if self.row_pos < len(self._rows):
                row = self._rows[self.row_pos]
                self.row_pos += 1
                self._rows_this_epoch += 1
                return row
            self._rows = None
            self.row_pos = 0
            self.window_pos += 1
        return None

    def _advance_shard(self) -> None:
        self.window_pos = 0
        self.row_pos = 0
        self.shard_pos += 1
        if self.shard_pos < len(self.shards):
            return
        if not self.config.repeat:
            self.exhausted = True
            return
        if self._rows_this_epoch == 0:
            raise ConfigError(
                f"the token shards hold no rows for rank {self.config.rank} of "
                f"{self.config.world_size}",
                where=str(self.shards[0].parent),
            )
        self.epoch += 1
        self.shard_pos = 0
        self._rows_this_epoch = 0

    # -- pieces and sequences ----------------------------------------------------------------
    def _cut(self, row: np.ndarray) -> list[np.ndarray]:
        """Pieces of at most ``max_length - 2`` tokens (random crop or random-phase split)."""
        width = self.config.max_length - 2
        if len(row) <= width:
            pieces = [row]
        elif self.config.long_chunks == "crop":
            start = int(self._rng.integers(0, len(row) - width + 1))
            pieces = [row[start : start + width]]
        else:
            phase = int(self._rng.integers(0, width))
            starts = ([0] if phase else []) + list(range(phase, len(row), width))
            ends = [*starts[1:], len(row)]
            pieces = [row[a:b] for a, b in zip(starts, ends, strict=True)]
        return [p for p in pieces if len(p) >= self.config.min_piece]

    def _next_piece(self) -> np.ndarray | None:
        while not self._pieces:
            row = self._next_row()
            if row is None:
                return None
            self._pieces.extend(self._cut(row))
        return self._pieces.popleft()

    def next_sequence(self) -> np.ndarray | None:
        """One ``[CLS] ... [SEP]`` sequence (int64), or None when a finite stream has ended."""
        cfg = self.config
        cls = np.array([cfg.cls_id], dtype=np.int64)
        sep = np.array([cfg.sep_id], dtype=np.int64)
        if not cfg.packing:
            piece = self._next_piece()
            return None if piece is None else np.concatenate([cls, piece, sep])
        parts: list[np.ndarray] = [cls]
        room = cfg.max_length - 1
        while room > 0:
            piece = self._next_piece()
            if piece is None:
                break
            if room >= 2:
                take = min(len(piece), room - 1)
                parts += [piece[:take], sep]
                room -= take + 1
            else:  # one slot left: one more content token instead of a pad
                take = 1
                parts.append(piece[:1])
                room = 0
            tail = piece[take:]
            if len(tail) >= cfg.min_piece:
                self._pieces.appendleft(tail)
        if len(parts) == 1:
            return None
        return np.concatenate(parts).astype(np.int64, copy=False)

    def next_batch(self) -> dict[str, torch.Tensor] | None:
        """Up to ``batch_size`` sequences, padded; None once a finite stream is exhausted."""
        sequences: list[np.ndarray] = []
        while len(sequences) < self.config.batch_size:
            seq = self.next_sequence()
            if seq is None:
                break
            sequences.append(seq)
        if not sequences:
            return None
        width = self.config.max_length if self.config.pad_to_max_length else None
        return collate(sequences, pad_id=self.config.pad_id, width=width)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while (batch := self.next_batch()) is not None:
            yield batch

    # -- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Cursor: positions, pending pieces and crop-generator state (plain Python types)."""
        return {
            "fingerprint": self.fingerprint,
            "epoch": self.epoch,
            "shard_pos": self.shard_pos,
            "window_pos": self.window_pos,
            "row_pos": self.row_pos,
            "rows_this_epoch": self._rows_this_epoch,
            "exhausted": self.exhausted,
            "pieces": [p.astype(np.int64).tolist() for p in self._pieces],
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a cursor saved by :meth:`state_dict` over the same shards."""
        if state["fingerprint"] != self.fingerprint:
            raise ConfigError(
                "the token shards differ from those the previous segment was trained on; "
                "finish the run with the same shards or start a new model"
            )
        self.epoch = int(state["epoch"])
        self.shard_pos = int(state["shard_pos"])
        self.window_pos = int(state["window_pos"])
        self.row_pos = int(state["row_pos"])
        self._rows_this_epoch = int(state["rows_this_epoch"])
        self.exhausted = bool(state["exhausted"])
        self._pieces = deque(np.asarray(p, dtype=np.int64) for p in state["pieces"])
        self._rng.bit_generator.state = state["rng"]
        self._rows = None
        self._shard = None


def collate(
    sequences: Sequence[np.ndarray], *, pad_id: int, width: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad sequences to ``width`` (default: the longest) with an attention mask."""
    longest = max(len(s) for s in sequences)
    width = max(width or 0, longest)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        input_ids[i, : len(seq)] = torch.from_numpy(np.asarray(seq, dtype=np.int64))
        attention_mask[i, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
