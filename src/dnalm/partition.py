"""Partition a variant file once; each region job reads only its own part.

A variant set of any size (a biobank VCF of hundreds of millions of records) is read once, in
batches of bounded size (:func:`dnalm.variants.iter_variants`: pyarrow's streaming reader, no
Python loop per record), checked against the genome a block of bases at a time
(:func:`dnalm.variants.check_against_genome`), and written as region-partitioned Parquet:

    {out}/bin=00042/part-00007.parquet    rows of bin 42 from input batch 7
    {out}/manifest.json                   rows per bin, the job plan, the source

Bins are consecutive, equal-length stretches of the concatenated contigs
(:func:`dnalm.regions.plan_regions`); a variant goes to the bin of its position (clipped into
its contig, so a POS past the contig end is still reported), a variant on no contig of the
genome to bin 0. Every input row is in exactly one bin, with its skip ``reason`` if it cannot
be scored. Memory is bounded by one batch whatever the file size; time is linear.

Jobs are consecutive bins. With ``variants_per_job`` unset there is one bin per job and
``regions`` jobs, the fixed plan of earlier versions; with it set, ``partition_bins`` bins are
grouped so that each job gets about ``variants_per_job`` scorable variants: 10 variants make one
job, 10 million make hundreds. The workflow reads the job count from the manifest after the
partitioning job (a Snakemake ``checkpoint``).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dnalm.errors import ConfigError
from dnalm.genome import Genome, read_fai
from dnalm.io import atomic_dir
from dnalm.score.settings import PartitionSettings

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: Columns of a partition file: the variant rows, checked against the genome.
SCHEMA = pa.schema([("record", pa.int64()), ("contig", pa.string()), ("pos", pa.int64()),
                    ("ref", pa.string()), ("alt", pa.string()), ("id", pa.string()),
                    ("genome_contig", pa.string()), ("start", pa.int64()),
                    ("reason", pa.string())])


def bin_count(settings: PartitionSettings) -> int:
    """Bins to cut the genome into: one per job for a fixed plan, ``partition_bins`` otherwise."""
    return settings.regions if settings.variants_per_job is None else settings.partition_bins


def assign_bins(checked: pd.DataFrame, contigs: list[tuple[str, int]], n_bins: int) -> np.ndarray:
    """The bin of each checked row: bin ``b`` holds the global positions
    ``[total * b // n, total * (b + 1) // n)`` of the concatenated contigs (as
    :func:`dnalm.regions.plan_regions` cuts them); rows on no contig go to bin 0."""
    lengths = dict(contigs)
    offsets = dict(zip(lengths, np.concatenate([[0], np.cumsum(list(lengths.values()))])[:-1],
                       strict=True))
    total = sum(lengths.values())
    codes, names = pd.factorize(checked["genome_contig"], use_na_sentinel=True)
    known = np.array([offsets[n] for n in names] + [0], dtype=np.int64)  # code -1: no contig
    last = np.array([lengths[n] - 1 for n in names] + [0], dtype=np.int64)
    placed = codes >= 0
    where = known[codes] + np.clip(checked["start"].to_numpy(dtype=np.int64), 0,
                                   np.maximum(last[codes], 0))
    bounds = np.array([total * i // n_bins for i in range(n_bins + 1)], dtype=np.int64)
    bins = np.clip(np.searchsorted(bounds, where, side="right") - 1, 0, n_bins - 1)
    return np.where(placed, bins, 0)


def plan_jobs(scorable: np.ndarray, settings: PartitionSettings) -> list[tuple[int, int]]:
    """Jobs as ``[first bin, last bin + 1)``: one bin each for a fixed plan; otherwise each bin
    joins job ``floor(variants before its middle / variants_per_job)``, so that there are
    about ``scorable.sum() / variants_per_job`` jobs (at least one) of about that many
    variants each, however the variants fall into bins."""
    n = len(scorable)
    if settings.variants_per_job is None:
        return [(b, b + 1) for b in range(n)]
    counts = np.asarray(scorable, dtype=np.float64)
    middle = np.cumsum(counts) - counts / 2
    ids = np.floor(middle / settings.variants_per_job).astype(np.int64)
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1, [n]])
    return [(int(lo), int(hi)) for lo, hi in itertools.pairwise(cuts)]


def partition_variants(variants_path: str | Path, genome_path: str | Path, out_dir: str | Path,
                       *, settings: PartitionSettings, match_chr_prefix: bool = True,
                       batch_bytes: int | None = None) -> dict[str, Any]:
    """Read, check and partition a variant file (see the module docstring); returns the
    manifest. The directory appears only when complete. A VCF out of tabix order is refused
    here (:class:`dnalm.variants.SortCheck`), before any scoring: its annotated copy could not
    be indexed."""
    from dnalm.variants import BATCH_BYTES, SortCheck, check_against_genome, is_vcf, iter_variants

    began = time.perf_counter()
    contigs = read_fai(genome_path)
    n_bins = bin_count(settings)
    rows, scorable = np.zeros(n_bins, np.int64), np.zeros(n_bins, np.int64)
    reasons: dict[str, int] = {}
    n_records = 0
    order = SortCheck(str(variants_path)) if is_vcf(variants_path) else None
    with atomic_dir(out_dir) as tmp, Genome(genome_path, match_chr_prefix=match_chr_prefix) as g:
        for index, batch in enumerate(iter_variants(variants_path,
                                                    batch_bytes=batch_bytes or BATCH_BYTES)):
            if not len(batch):
                continue
            if order is not None:
                order.update(batch)
            checked = check_against_genome(batch, g)
            bins = assign_bins(checked, contigs, n_bins)
            ok = checked["reason"].to_numpy() == ""
            rows += np.bincount(bins, minlength=n_bins)
            scorable += np.bincount(bins[ok], minlength=n_bins)
            for reason, count in checked.loc[~ok, "reason"].value_counts().items():
                reasons[reason] = reasons.get(reason, 0) + int(count)
            n_records = int(checked["record"].iloc[-1]) + 1
            _write_batch(tmp, index, checked, bins)
        if not rows.sum():  # a set emptied by filtering: empty jobs and tables, not an error
            log.warning("%s: no variant records", variants_path)
        jobs = plan_jobs(scorable, settings)
        manifest = {"source": str(variants_path), "genome": str(genome_path),
                    "settings": asdict(settings), "n_bins": n_bins, "n_records": n_records,
                    "n_rows": int(rows.sum()), "n_scorable": int(scorable.sum()),
                    "rows_per_bin": rows.tolist(), "scorable_per_bin": scorable.tolist(),
                    "jobs": [list(job) for job in jobs], "skipped": reasons}
        (tmp / MANIFEST).write_text(json.dumps(manifest))
    seconds = time.perf_counter() - began
    log.info("partitioned %s: %d records, %d rows (%d scorable) into %d bins, %d jobs in %.1f s "
             "(%.0f variants/s)", variants_path, n_records, manifest["n_rows"],
             manifest["n_scorable"], n_bins, len(jobs), seconds,
             manifest["n_rows"] / max(seconds, 1e-9))
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:20]:
        log.info("  will not be scored, %d: %s", count, reason)
    return manifest


def _write_batch(out: Path, index: int, checked: pd.DataFrame, bins: np.ndarray) -> None:
    order = np.argsort(bins, kind="stable")
    table = pa.Table.from_pandas(checked.iloc[order][SCHEMA.names], schema=SCHEMA,
                                 preserve_index=False)
    sorted_bins = bins[order]
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_bins)) + 1, [len(order)]])
    for lo, hi in itertools.pairwise(cuts):
        folder = out / f"bin={int(sorted_bins[lo]):05d}"
        folder.mkdir(exist_ok=True)
        pq.write_table(table.slice(int(lo), int(hi - lo)), folder / f"part-{index:05d}.parquet")


def read_manifest(part_dir: str | Path) -> dict[str, Any]:
    path = Path(part_dir) / MANIFEST
    if not path.is_file():
        raise ConfigError("not a variant partition (no manifest.json)", where=str(part_dir))
    return json.loads(path.read_text())


def n_jobs(part_dir: str | Path) -> int:
    """How many region jobs the partition plans (what the workflow asks after the checkpoint)."""
    return len(read_manifest(part_dir)["jobs"])


def read_job(part_dir: str | Path, job: int) -> pd.DataFrame:
    """The checked variant rows of region job ``job``, in input order."""
    manifest = read_manifest(part_dir)
    if not 0 <= job < len(manifest["jobs"]):
        raise ConfigError(f"job {job} is not one of the partition's {len(manifest['jobs'])}",
                          where=str(part_dir))
    lo, hi = manifest["jobs"][job]
    files = [f for b in range(lo, hi)
             for f in sorted((Path(part_dir) / f"bin={b:05d}").glob("part-*.parquet"))]
    if not files:
        return SCHEMA.empty_table().to_pandas()
    table = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in files])
    frame = table.to_pandas()
    return frame.sort_values("record", kind="stable").reset_index(drop=True)


def job_variants(genome: Genome, *, variants_path: str | Path | None = None,
                 partition: str | Path | None = None, job: int = 0) -> pd.DataFrame:
    """The checked variants one scoring job works on: its part of a partition (the workflow),
    or a whole variant file read and checked in one go (``dnalm score-variants``)."""
    from dnalm.variants import check_against_genome, read_variants

    if partition is not None:
        return read_job(partition, job)
    if variants_path is None:
        raise ConfigError("name a variant file or a partition")
    return check_against_genome(read_variants(variants_path), genome)
