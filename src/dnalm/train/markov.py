"""Order-k Markov baselines in nats per base: the yardstick beside a pretrained model's loss.

A masked LM that has learnt nothing beyond base composition and short-range correlations should
not be credited with more. For each order ``k = 0 .. max_order`` a Markov chain
``p(base | previous k bases)`` is fitted on the *training* chunks of the genomes a model was
pretrained on and evaluated on their *validation* chunks (the same split the model's validation
loss uses), as ``-mean log p`` in nats per base, comparable with the model's
``val_loss_per_base`` (:mod:`dnalm.train.evaluation`).

Counting. Bases are upper-cased (soft-masked repeats count as bases) and coded A C G T → 0..3;
any other character (N, IUPAC codes) is a break: it is never predicted and never part of a
context, and contexts never cross chunk boundaries. Probabilities are smoothed with add-``alpha``
(Laplace, ``alpha = 1``) pseudocounts, so unseen (context, base) pairs keep a finite cost. The
training counts of order ``k`` use every ACGT base with ``k`` ACGT bases before it in its chunk;
the validation bases are the same for every order (those with ``max_order`` ACGT bases before
them), so the rows of the table differ only in the model, not in the bases scored.

Caveat: a Markov chain predicts left to right from the bases *before* a position, whereas a
masked LM sees the context on both sides of the masked token (and for BPE also predicts several
bases at once). The baseline is therefore not the same task; it is the floor the issue asks the
model to beat, and a model below it has learnt more than k-mer frequencies.

Memory and time: chunk shards are streamed in slices of at most :data:`BATCH_BASES` bases, each
counted with a handful of numpy operations (a rolling base-4 index of the last ``max_order + 1``
bases and one ``np.bincount``; lower orders are its marginals), so memory depends on the slice,
not on the genome. About 15 Mb/s on one core: the 2 Mb demo in 0.2 s, chr20 (57 Mb) in 4 s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dnalm.errors import ConfigError
from dnalm.io import list_parts, write_table
from dnalm.tokenizers.encode import sequence_buffer

#: Orders fitted by default (k = 0 is base composition alone).
MAX_ORDER = 5
#: Chunk rows per record batch read from a shard, and the most bases counted at once (a batch
#: of long chunks is cut into slices): about 4 Mb, so a few tens of MB of int arrays.
BATCH_ROWS = 4096
BATCH_BASES = 4_000_000
MARKOV_FILE = "markov.parquet"
SEQUENCE_COLUMN = "sequence"

MARKOV_SCHEMA = pa.schema(
    [
        ("k", pa.int32()),
        ("nats_per_base", pa.float64()),
        ("bits_per_base", pa.float64()),
        ("n_train_bases", pa.int64()),
        ("n_val_bases", pa.int64()),
    ]
)

#: Byte → code: A C G T (either case) → 0..3, anything else → 4 (a break).
_CODES = np.full(256, 4, dtype=np.uint8)
for _i, _c in enumerate("ACGT"):
    _CODES[ord(_c)] = _CODES[ord(_c.lower())] = _i
_BREAK = 4


def encode(sequences: pa.Array | Sequence[str]) -> np.ndarray:
    """Base codes of a batch of sequences, concatenated with one break before every sequence.

    The leading break keeps every context inside its own sequence (a window that would reach
    into the previous sequence contains it).
    """
    array = sequences if isinstance(sequences, pa.Array) else pa.array(list(sequences), pa.string())
    data, offsets = sequence_buffer(array)
    codes = _CODES[data]
    starts = offsets[:-1]
    return np.insert(codes, starts, _BREAK)


def count_transitions(
    batches: Iterable[pa.Array | Sequence[str]],
    max_order: int = MAX_ORDER,
    *,
    common_positions: bool = False,
) -> list[np.ndarray]:
    """Counts ``c[k][context, base]`` (shape ``(4 ** k, 4)``) for ``k = 0 .. max_order``.

    ``context`` is the base-4 number of the ``k`` preceding bases (oldest most significant).
    With ``common_positions`` every order counts only the bases that have ``max_order`` ACGT bases
    before them (the evaluation set, identical for all orders); otherwise order ``k`` counts every
    base with ``k`` ACGT bases before it (the most training data per order).

    One pass per batch: the base-4 index of the last ``max_order + 1`` bases is built once (a
    rolling sum of shifted codes); order ``k``'s index is its lowest ``k + 1`` digits. Bases with
    a full ``max_order`` context are counted once at the top order and the lower orders are its
    marginals; only the few bases near a chunk start or an N are counted per order.
    """
    if max_order < 0:
        raise ConfigError(f"the Markov order must be >= 0, got {max_order}")
    top = max_order + 1  # bases in the top order's window
    full = np.zeros(4**top, dtype=np.int64)
    partial = [np.zeros(4 ** (k + 1), dtype=np.int64) for k in range(max_order)]
    for batch in batches:
        codes = encode(batch)
        if codes.size == 0:
            continue
        bad = codes == _BREAK
        # run[i]: ACGT bases in the window ending at i, capped at the window size
        positions = np.arange(codes.size, dtype=np.int32)
        last_break = np.maximum.accumulate(np.where(bad, positions, -1))
        run = np.minimum(positions - last_break, top)
        digits = np.where(bad, 0, codes).astype(np.int32)
        index = digits.copy()
        for j in range(1, top):  # codes[i - j] enters as digit j
            index[j:] += digits[:-j] << (2 * j)
        full += np.bincount(index[run == top], minlength=4**top)
        if common_positions:
            continue
        for k in range(max_order):
            near = index[(run >= k + 1) & (run < top)] & (4 ** (k + 1) - 1)
            partial[k] += np.bincount(near, minlength=4 ** (k + 1))
    counts = []
    for k in range(max_order + 1):
        # marginalise the top order over its max_order - k oldest bases
        marginal = full.reshape(4 ** (max_order - k), 4 ** (k + 1)).sum(axis=0)
        if k < max_order and not common_positions:
            marginal = marginal + partial[k]
        counts.append(marginal.reshape(4**k, 4))
    return counts


def cross_entropy(
    train: Sequence[np.ndarray], validation: Sequence[np.ndarray], *, alpha: float = 1.0
) -> list[float]:
    """Nats per validation base of each order: ``-sum c_val * log p_train / sum c_val``.

    ``p_train(base | context) = (c + alpha) / (sum_b c + 4 alpha)`` (add-alpha smoothing).
    """
    if alpha <= 0:
        raise ConfigError(f"the Markov pseudocount must be > 0, got {alpha}")
    result = []
    for fit, held_out in zip(train, validation, strict=True):
        probs = (fit + alpha) / (fit.sum(axis=1, keepdims=True) + 4 * alpha)
        n = int(held_out.sum())
        result.append(float(-(held_out * np.log(probs)).sum() / n) if n else math.nan)
    return result


def markov_table(
    train_batches: Iterable[pa.Array | Sequence[str]],
    validation_batches: Iterable[pa.Array | Sequence[str]],
    *,
    max_order: int = MAX_ORDER,
    alpha: float = 1.0,
) -> pa.Table:
    """The baseline table (k, nats_per_base, bits_per_base, n_train_bases, n_val_bases)."""
    train = count_transitions(train_batches, max_order)
    held_out = count_transitions(validation_batches, max_order, common_positions=True)
    nats = cross_entropy(train, held_out, alpha=alpha)
    return pa.table(
        {
            "k": list(range(max_order + 1)),
            "nats_per_base": nats,
            "bits_per_base": [v / math.log(2) for v in nats],
            "n_train_bases": [int(c.sum()) for c in train],
            "n_val_bases": [int(c.sum()) for c in held_out],
        },
        schema=MARKOV_SCHEMA,
    )


def chunk_batches(
    dirs: Sequence[str | Path], *, batch_rows: int = BATCH_ROWS
) -> Iterator[pa.Array]:
    """The ``sequence`` column of every chunk shard (``part-*.parquet``) of ``dirs``, streamed."""
    for directory in dirs:
        path = Path(directory)
        if not path.is_dir():
            raise ConfigError("chunk directory does not exist", where=str(path))
        for part in list_parts(path):
            try:
                parquet = pq.ParquetFile(part)
            except (OSError, pa.ArrowInvalid) as exc:
                raise ConfigError(f"cannot read chunk shard ({exc})", where=str(part)) from None
            if SEQUENCE_COLUMN not in parquet.schema_arrow.names:
                raise ConfigError(f"chunk shard has no {SEQUENCE_COLUMN!r} column",
                                  where=str(part))
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=[SEQUENCE_COLUMN]):
                yield from _slices(batch.column(0))


def _slices(sequences: pa.Array, max_bases: int = BATCH_BASES) -> Iterator[pa.Array]:
    """Consecutive row slices of at most ``max_bases`` bases (at least one row each)."""
    lengths = np.asarray(pc.fill_null(pc.binary_length(sequences), 0), dtype=np.int64)
    ends = np.cumsum(lengths)
    start = 0
    while start < len(sequences):
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + max_bases, side="right")))
        yield sequences.slice(start, stop - start)
        start = stop


def markov_baselines(
    chunk_dirs: Sequence[str | Path],
    *,
    max_order: int = MAX_ORDER,
    alpha: float = 1.0,
) -> pa.Table:
    """Markov baselines of the genomes whose chunk directories (``.../chunks``) are given.

    Fitted on every ``train`` split, evaluated on every ``validation`` split, pooled over the
    genomes (as the model is pretrained and validated on all of them together).
    """
    dirs = [Path(d) for d in chunk_dirs]
    if not dirs:
        raise ConfigError("Markov baselines need at least one chunk directory")
    table = markov_table(
        chunk_batches([d / "train" for d in dirs]),
        chunk_batches([d / "validation" for d in dirs]),
        max_order=max_order,
        alpha=alpha,
    )
    if table.column("n_val_bases")[0].as_py() == 0:
        where = ", ".join(str(d / "validation") for d in dirs)
        raise ConfigError("the validation chunks hold no ACGT bases to evaluate Markov "
                          "baselines on", where=where)
    return table


def write_markov(table: pa.Table, path: str | Path) -> None:
    write_table(table.cast(MARKOV_SCHEMA), path)


def read_markov(path: str | Path) -> pa.Table:
    return pq.read_table(path, schema=MARKOV_SCHEMA)
