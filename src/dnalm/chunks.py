"""Genome → training chunks in Parquet, with held-out validation/test regions.

The plan (which bases go to which split, where every chunk starts and ends) is computed up front
from the ``.fai`` index alone and a seed, so it is deterministic and independent of how many
workers run it. The work is then cut into blocks of at most ``shard_bp`` bases; each block is read
from the bgzipped FASTA by random access, turned into chunks with vectorised numpy/Arrow code and
written as one Parquet shard. Memory therefore depends on the block size, not the genome size.

Chunk table columns: ``genome``, ``contig``, ``start`` (0-based), ``end`` (exclusive), ``strand``
(``+``, or ``-`` for reverse-complement copies; coordinates are always forward-strand), and
``sequence``.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pysam

from dnalm.errors import ConfigError, InputFormatError
from dnalm.genome import read_fai
from dnalm.io import PARQUET_COMPRESSION, PARQUET_COMPRESSION_LEVEL, atomic_dir, part_name

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")

CHUNK_SCHEMA = pa.schema(
    [
        ("genome", pa.dictionary(pa.int32(), pa.string())),
        ("contig", pa.dictionary(pa.int32(), pa.string())),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("strand", pa.dictionary(pa.int8(), pa.string())),
        ("sequence", pa.string()),
    ]
)

# Byte translation tables (``bytes.translate`` runs at memory speed): IUPAC ambiguity codes other
# than ACGTN become N (lowercase ones n), U becomes T, optional upper-casing, and the complement
# used for reverse-complement copies.
_ACGTN_MAP = {**{c: "N" for c in "RYKMSWBDHV"}, **{c: "n" for c in "rykmswbdhv"},
              "U": "T", "u": "t"}
TO_ACGTN = bytes.maketrans(
    "".join(_ACGTN_MAP).encode(), "".join(_ACGTN_MAP.values()).encode()
)
TO_ACGTN_UPPER = bytes(TO_ACGTN).translate(bytes.maketrans(b"acgtn", b"ACGTN"))
_COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _b in ("AT", "TA", "CG", "GC", "NN", "at", "ta", "cg", "gc", "nn"):
    _COMPLEMENT[ord(_a)] = ord(_b)


SPLIT_MODES = ("regions", "contigs")


@dataclass(frozen=True)
class SplitConfig:
    """How bases are assigned to train/validation/test.

    ``mode="regions"`` cuts every contig into ``region_size`` blocks and draws each block's split
    (so even a one-contig genome gets all three); ``mode="contigs"`` assigns whole contigs.
    Contigs named in ``validation_contigs``/``test_contigs`` always go wholly to that split.
    """

    mode: str = "regions"
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    region_size: int = 100_000
    validation_contigs: tuple[str, ...] = ()
    test_contigs: tuple[str, ...] = ()
    seed: int = 42

    def __post_init__(self) -> None:
        if self.mode not in SPLIT_MODES:
            raise ConfigError(f"split mode must be 'regions' or 'contigs', not {self.mode!r}")
        if self.validation_fraction < 0 or self.test_fraction < 0:
            raise ConfigError("split fractions must be >= 0")
        if self.validation_fraction + self.test_fraction >= 1:
            raise ConfigError("validation_fraction + test_fraction must be below 1")
        if self.region_size < 1:
            raise ConfigError("split region_size must be >= 1")


@dataclass(frozen=True)
class ChunkConfig:
    """How each split interval is cut into chunks.

    ``length`` is a fixed length or a ``(min, max)`` range drawn uniformly per chunk with ``seed``.
    Consecutive chunks overlap by ``overlap`` bases. A final chunk shorter than ``min_length`` is
    dropped; so is any chunk whose N fraction exceeds ``max_n_fraction``. ``softmask`` is ``keep``
    (lowercase stays lowercase) or ``upper``.
    """

    length: int | tuple[int, int] = 1000
    overlap: int = 0
    min_length: int = 50
    max_n_fraction: float = 0.1
    softmask: str = "keep"
    reverse_complement: bool = False
    seed: int = 42
    shard_bp: int = 8_000_000
    row_group_bp: int = 1_000_000

    def __post_init__(self) -> None:
        lo, hi = self.length_range
        if lo < 1 or hi < lo:
            raise ConfigError(f"invalid chunk length {self.length!r}")
        if not 0 <= self.overlap < lo:
            raise ConfigError(f"overlap must be >= 0 and below the minimum chunk length ({lo})")
        if self.min_length > lo:
            # every chunk (fixed length) or every draw below it (a range) would be cut only to
            # be dropped: a run that "succeeds" with no or fewer chunks than it asked for
            raise ConfigError(f"min_length {self.min_length} is longer than the shortest chunk "
                              f"({lo} bp): it drops only tails shorter than a chunk, so it must "
                              f"be at most {lo}")
        if self.softmask not in {"keep", "upper"}:
            raise ConfigError(f"softmask must be 'keep' or 'upper', not {self.softmask!r}")
        if not 0 <= self.max_n_fraction <= 1:
            raise ConfigError("max_n_fraction must be between 0 and 1")
        if self.shard_bp < hi:
            raise ConfigError("shard_bp must be at least the maximum chunk length")

    @property
    def length_range(self) -> tuple[int, int]:
        if isinstance(self.length, int):
            return self.length, self.length
        lo, hi = self.length
        return int(lo), int(hi)


@dataclass(frozen=True)
class Interval:
    contig: str
    start: int
    end: int
    split: str


@dataclass
class Block:
    """Chunks of one contig region, read from the FASTA in one random access."""

    contig: str
    starts: np.ndarray
    ends: np.ndarray


@dataclass
class Shard:
    """One unit of work and one output file: blocks of one split, at most ``shard_bp`` bases."""

    split: str
    part: int
    blocks: list[Block] = field(default_factory=list)
    bases: int = 0


@dataclass
class SplitSummary:
    chunks: int = 0
    bases: int = 0
    shards: int = 0
    dropped_n: int = 0
    dropped_short: int = 0
    planned_bases: int = 0
    contigs: list[str] = field(default_factory=list)


def _stable_seed(*parts: object) -> int:
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def assign_splits(contigs: Sequence[tuple[str, int]], cfg: SplitConfig) -> list[Interval]:
    """Assign every base of every contig to a split; adjacent same-split regions are merged."""
    fixed = dict.fromkeys(cfg.validation_contigs, "validation") | dict.fromkeys(
        cfg.test_contigs, "test"
    )
    units: list[tuple[str, int, int]] = []
    for name, length in contigs:
        if name in fixed or cfg.mode == "contigs":
            units.append((name, 0, length))
        else:
            units.extend(
                (name, s, min(s + cfg.region_size, length))
                for s in range(0, length, cfg.region_size)
            )
    rng = np.random.default_rng(cfg.seed)
    draws = rng.random(len(units))
    labels = np.where(
        draws < cfg.validation_fraction,
        "validation",
        np.where(draws < cfg.validation_fraction + cfg.test_fraction, "test", "train"),
    ).astype(object)
    free = np.array([u[0] not in fixed for u in units])
    for i, unit in enumerate(units):
        if unit[0] in fixed:
            labels[i] = fixed[unit[0]]
    _ensure_each_split(labels, free, cfg, rng)
    intervals: list[Interval] = []
    for (name, start, end), label in zip(units, labels, strict=True):
        last = intervals[-1] if intervals else None
        if last and last.contig == name and last.split == label and last.end == start:
            intervals[-1] = Interval(name, last.start, end, label)
        else:
            intervals.append(Interval(name, start, end, str(label)))
    return intervals


def _ensure_each_split(
    labels: np.ndarray, free: np.ndarray, cfg: SplitConfig, rng: np.random.Generator
) -> None:
    """Give validation and test at least one unit each when enough free units exist."""
    wanted = [s for s, f in (("validation", cfg.validation_fraction), ("test", cfg.test_fraction))
              if f > 0]
    for split in wanted:
        if (labels == split).any():
            continue
        candidates = np.flatnonzero(free & (labels == "train"))
        if len(candidates) > 1:
            labels[rng.choice(candidates)] = split


def plan_chunks(interval: Interval, cfg: ChunkConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Start/end coordinates of one interval's chunks, and how many short tails were dropped."""
    lo, hi = cfg.length_range
    span = interval.end - interval.start
    if lo == hi:
        step = lo - cfg.overlap
        starts = np.arange(interval.start, interval.end, step, dtype=np.int64)
        if cfg.overlap:
            # the last full window already covers the end: drop starts whose window adds nothing new
            keep = (starts == interval.start) | (starts + cfg.overlap < interval.end)
            starts = starts[keep]
        ends = np.minimum(starts + lo, interval.end)
    else:
        rng = np.random.default_rng([cfg.seed, _stable_seed(interval.contig, interval.start)])
        n_draw = span // max(1, lo - cfg.overlap) + 2
        lengths = rng.integers(lo, hi + 1, size=n_draw, dtype=np.int64)
        steps = lengths - cfg.overlap
        starts = interval.start + np.concatenate([[0], np.cumsum(steps[:-1])])
        inside = starts < interval.end
        if cfg.overlap:
            inside &= (starts == interval.start) | (starts + cfg.overlap < interval.end)
        starts, lengths = starts[inside], lengths[inside]
        ends = np.minimum(starts + lengths, interval.end)
    long_enough = (ends - starts) >= cfg.min_length
    return starts[long_enough], ends[long_enough], int((~long_enough).sum())


def plan_shards(
    intervals: Sequence[Interval], cfg: ChunkConfig
) -> tuple[list[Shard], dict[str, SplitSummary]]:
    """Pack the planned chunks into shards of at most ``shard_bp`` bases, numbered per split.

    A shard may hold several blocks (held-out regions are small: one file each would make
    thousands of tiny files on a large genome); a long interval is cut into several blocks.
    """
    summaries = {s: SplitSummary() for s in SPLITS}
    open_shard: dict[str, Shard] = {}
    shards: list[Shard] = []
    next_part = dict.fromkeys(SPLITS, 0)

    def shard_for(split: str, size: int) -> Shard:
        current = open_shard.get(split)
        if current is None or (current.bases + size > cfg.shard_bp and current.blocks):
            current = Shard(split, next_part[split])
            next_part[split] += 1
            open_shard[split] = current
            shards.append(current)
        return current

    for interval in intervals:
        starts, ends, short = plan_chunks(interval, cfg)
        summary = summaries[interval.split]
        summary.dropped_short += short
        summary.planned_bases += interval.end - interval.start
        if interval.contig not in summary.contigs:
            summary.contigs.append(interval.contig)
        first = 0
        while first < len(starts):
            current = shard_for(interval.split, 0)
            room = max(cfg.shard_bp - current.bases, 0)
            last = int(np.searchsorted(ends, starts[first] + room, side="right"))
            if last <= first:
                current = shard_for(interval.split, cfg.shard_bp + 1)  # start a fresh shard
                last = max(first + 1, int(np.searchsorted(ends, starts[first] + cfg.shard_bp,
                                                          side="right")))
            block = Block(interval.contig, starts[first:last], ends[first:last])
            current.blocks.append(block)
            current.bases += int(block.ends[-1] - block.starts[0])
            first = last
    return shards, summaries


def _np_array(values: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """numpy → Arrow without ``pa.array`` (which imports pandas: ~0.3 s per worker)."""
    values = np.ascontiguousarray(values, dtype=dtype.to_pandas_dtype())
    return pa.Array.from_buffers(dtype, len(values), [None, pa.py_buffer(values)])


def _constant_dictionary(value: str, n: int, index_type: pa.DataType) -> pa.DictionaryArray:
    indices = _np_array(np.zeros(n, dtype=index_type.to_pandas_dtype()), index_type)
    return pa.DictionaryArray.from_arrays(indices, _string_array(
        np.frombuffer(value.encode(), np.uint8), np.array([0]), np.array([len(value.encode())])))


def _block_table(fasta: pysam.FastaFile, genome: str, block: Block,
                 cfg: ChunkConfig) -> tuple[pa.Table, int, int]:
    """Read one block's sequence and build its chunk table (vectorised)."""
    region_start, region_end = int(block.starts[0]), int(block.ends.max())
    raw = fasta.fetch(block.contig, region_start, region_end).encode("ascii")
    if len(raw) != region_end - region_start:
        raise ConfigError(f"contig {block.contig} shorter than its index says")
    _refuse_gaps(raw, block.contig, region_start, fasta.filename)
    raw = raw.translate(TO_ACGTN_UPPER if cfg.softmask == "upper" else TO_ACGTN)
    arr = np.frombuffer(raw, dtype=np.uint8)
    rel_starts = block.starts - region_start
    rel_ends = block.ends - region_start
    lengths = rel_ends - rel_starts
    if b"N" in raw or b"n" in raw:
        n_positions = np.flatnonzero((arr == ord("N")) | (arr == ord("n")))
        n_counts = np.searchsorted(n_positions, rel_ends) - np.searchsorted(n_positions, rel_starts)
    else:
        n_counts = np.zeros(len(rel_starts), dtype=np.int64)
    keep = n_counts <= cfg.max_n_fraction * lengths
    dropped_n = int((~keep).sum())
    rel_starts, rel_ends = rel_starts[keep], rel_ends[keep]
    n = len(rel_starts)
    starts = _np_array(rel_starts + region_start, pa.int64())
    ends = _np_array(rel_ends + region_start, pa.int64())
    parts = [(_string_array(arr, rel_starts, rel_ends), "+")]
    if cfg.reverse_complement and n:
        rc = _COMPLEMENT[arr[::-1]]
        total = len(arr)
        reverse = _string_array(rc, (total - rel_ends)[::-1], (total - rel_starts)[::-1])
        parts.append((reverse.take(_np_array(np.arange(n - 1, -1, -1), pa.int64())), "-"))
    tables = [
        pa.Table.from_arrays(
            [
                _constant_dictionary(genome, n, pa.int32()),
                _constant_dictionary(block.contig, n, pa.int32()),
                starts,
                ends,
                _constant_dictionary(strand, n, pa.int8()),
                sequences,
            ],
            schema=CHUNK_SCHEMA,
        )
        for sequences, strand in parts
    ]
    bases = int((rel_ends - rel_starts).sum()) * len(parts)
    return (pa.concat_tables(tables) if len(tables) > 1 else tables[0]), dropped_n, bases


def _refuse_gaps(raw: bytes, contig: str, offset: int, path: bytes | str) -> None:
    """A FASTA indexed by hand (``samtools faidx``, not ``dnalm prepare-genome``) may hold gaps
    or stops; chunks must not count them as bases (:data:`dnalm.fasta.GAP_CHARACTERS`)."""
    from dnalm.fasta import GAP_CHARACTERS, invalid_base_message

    found = [i for i in (raw.find(c) for c in GAP_CHARACTERS) if i >= 0]
    if found:
        at = min(found)
        where = path.decode() if isinstance(path, bytes) else str(path)
        raise InputFormatError(invalid_base_message(chr(raw[at]), contig, offset + at + 1),
                               where=where)


def _string_array(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """Arrow strings ``buf[starts[i]:ends[i]]``; zero-copy when the pieces are contiguous.

    Otherwise runs of adjacent pieces are copied slice by slice (a per-base gather index would
    cost 8 bytes per base).
    """
    lengths = np.asarray(ends - starts, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    if len(starts) == 0:
        data = np.zeros(0, np.uint8)
    elif np.array_equal(starts[1:], ends[:-1]):
        data = buf[starts[0] : ends[-1]]
    else:
        breaks = np.flatnonzero(starts[1:] != ends[:-1]) + 1
        run_starts = starts[np.concatenate([[0], breaks])]
        run_ends = ends[np.concatenate([breaks - 1, [len(ends) - 1]])]
        data = np.concatenate([buf[a:b] for a, b in zip(run_starts, run_ends, strict=True)])
    return pa.StringArray.from_buffers(
        len(lengths), pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))
    )


_SMALL_COLUMNS = ["genome", "contig", "start", "end", "strand"]


def _write_shard(args: tuple[str, str, Shard, ChunkConfig, str]) -> tuple[str, int, int, int]:
    fasta_path, genome, shard, cfg, out_dir = args
    path = Path(out_dir) / shard.split / part_name(shard.part)
    rows = bases = dropped = 0
    mean_len = max(1, int(np.mean([np.mean(b.ends - b.starts) for b in shard.blocks])))
    with pysam.FastaFile(fasta_path) as fasta, pq.ParquetWriter(
        path, CHUNK_SCHEMA, compression=PARQUET_COMPRESSION,
        compression_level=PARQUET_COMPRESSION_LEVEL,
        use_dictionary=["genome", "contig", "strand"], write_statistics=_SMALL_COLUMNS,
    ) as writer:
        for block in shard.blocks:
            table, dropped_n, block_bases = _block_table(fasta, genome, block, cfg)
            writer.write_table(table, row_group_size=max(1, cfg.row_group_bp // mean_len))
            rows += table.num_rows
            bases += block_bases
            dropped += dropped_n
    return shard.split, rows, bases, dropped


def chunk_genome(
    fasta_path: str | Path,
    out_dir: str | Path,
    *,
    genome_id: str,
    chunk_cfg: ChunkConfig,
    split_cfg: SplitConfig,
    threads: int = 1,
) -> dict[str, SplitSummary]:
    """Write ``out_dir/{train,validation,test}/part-NNNNN.parquet`` and ``out_dir/summary.json``.

    The directory appears only when complete. Every split directory holds at least one shard
    (an empty one when the split has no chunks), so readers need no special case.
    """
    contigs = read_fai(fasta_path)
    missing = [c for c in (*split_cfg.validation_contigs, *split_cfg.test_contigs)
               if c not in dict(contigs)]
    if missing:
        raise ConfigError(f"genome {genome_id}: held-out contigs not in the genome: {missing}")
    intervals = assign_splits(contigs, split_cfg)
    shards, summaries = plan_shards(intervals, chunk_cfg)
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            (tmp / split).mkdir()
        jobs = [(str(fasta_path), genome_id, s, chunk_cfg, str(tmp)) for s in shards]
        from dnalm.logs import progress

        if threads > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=threads) as pool:
                results = list(progress(pool.map(_write_shard, jobs, chunksize=1),
                                        total=len(jobs), desc=f"chunking {genome_id}",
                                        logger=log, unit="shard"))
        else:
            results = [_write_shard(j) for j in progress(jobs, desc=f"chunking {genome_id}",
                                                          logger=log, unit="shard")]
        for split, rows, bases, dropped_n in results:
            summary = summaries[split]
            summary.chunks += rows
            summary.bases += bases
            summary.shards += 1
            summary.dropped_n += dropped_n
        for split in SPLITS:
            if summaries[split].shards == 0:
                pq.write_table(CHUNK_SCHEMA.empty_table(), tmp / split / part_name(0))
                summaries[split].shards = 1
        report = {
            "genome": genome_id,
            "chunking": asdict(chunk_cfg),
            "split": asdict(split_cfg),
            "splits": {s: asdict(v) for s, v in summaries.items()},
            "intervals": [asdict(i) for i in intervals],
        }
        (tmp / "summary.json").write_text(json.dumps(report, indent=1, default=list) + "\n")
    for split, s in summaries.items():
        log.info(
            "genome %s %s: %d chunks, %d bp in %d shards; dropped %d for N > %.0f%%, "
            "%d short tails",
            genome_id, split, s.chunks, s.bases, s.shards, s.dropped_n,
            100 * chunk_cfg.max_n_fraction, s.dropped_short,
        )
    return summaries


def worker_count(requested: int | None) -> int:
    """Threads to use: the rule's ``threads``, else the machine's cores."""
    return max(1, requested or os.cpu_count() or 1)
