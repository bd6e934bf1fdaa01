"""Saturation mutagenesis: every position of BED regions × its three alternative bases.

The SNVs are generated for each region and scored by :func:`dnalm.score.vep.score_variants` with
tiled windows, so in ``wt-marginal`` mode one unmasked pass scores every position of a window (the
ESM-1v table lookup), and in ``masked-marginal`` mode one masked pass per position serves its
three alternatives. Results go to Parquet (one row per position × alternative) and to a bigWig of
the per-position mean score over the three alternatives.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dnalm.errors import InputFormatError
from dnalm.genome import Genome

log = logging.getLogger(__name__)
BASES = "ACGT"


def read_bed(path: str | Path, genome: Genome | None = None) -> pd.DataFrame:
    """The first three columns of a BED file (optional name in the fourth).

    A negative start is refused here; with ``genome``, every interval is checked against it
    (:meth:`dnalm.genome.Genome.interval`: unknown contigs and intervals off their contig are
    refused, naming the line, as sequence sets refuse them) before any job starts.
    """
    rows = []
    with open(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            cols = line.rstrip("\n").split("\t")
            try:
                start, end = int(cols[1]), int(cols[2])
            except (IndexError, ValueError) as exc:
                raise InputFormatError(f"line {line_no}: expected contig, start, end",
                                       where=str(path)) from exc
            if start < 0:
                raise InputFormatError(f"line {line_no}: start {start} is negative (BED starts "
                                       "are 0-based)", where=str(path))
            if end <= start:
                raise InputFormatError(f"line {line_no}: end must be greater than start",
                                       where=str(path))
            if genome is not None:
                genome.interval(cols[0], start, end, where=f"{path} line {line_no}")
            name = cols[3] if len(cols) > 3 else f"{cols[0]}:{start}-{end}"
            rows.append((cols[0], start, end, name))
    if not rows:
        raise InputFormatError("no regions", where=str(path))
    return pd.DataFrame(rows, columns=["contig", "start", "end", "name"])


def bed_jobs(regions: pd.DataFrame, bases_per_job: int | None) -> list[pd.DataFrame]:
    """The BED regions cut into jobs of about ``bases_per_job`` bases (one job if None), in BED
    order; an interval that crosses a job boundary is cut there. Each piece keeps its region's
    name, so a job's rows name the region they belong to. Saturation windows are tiled on the
    genome (:func:`dnalm.score.vep.place_windows`), so cutting changes no score."""
    if bases_per_job is None:
        return [regions]
    lengths = (regions["end"] - regions["start"]).to_numpy()
    before = np.concatenate([[0], np.cumsum(lengths)])
    n_jobs = max(1, int(np.ceil(before[-1] / bases_per_job)))
    jobs = []
    for job in range(n_jobs):
        lo, hi = job * bases_per_job, min((job + 1) * bases_per_job, int(before[-1]))
        rows = []
        for i, region in enumerate(regions.itertuples(index=False)):
            a, b = max(lo, int(before[i])), min(hi, int(before[i + 1]))
            if a < b:
                offset = int(region.start) - int(before[i])
                rows.append((region.contig, a + offset, b + offset, region.name))
        jobs.append(pd.DataFrame(rows, columns=["contig", "start", "end", "name"]))
    return jobs


def count_bed_jobs(bed_path: str | Path, bases_per_job: int | None) -> int:
    """How many jobs :func:`bed_jobs` makes of a BED file (the workflow asks when it plans)."""
    if bases_per_job is None:
        return 1
    regions = read_bed(bed_path)
    return max(1, int(np.ceil(int((regions["end"] - regions["start"]).sum()) / bases_per_job)))


def saturation_variants(genome: Genome, regions: pd.DataFrame) -> pd.DataFrame:
    """All SNVs of the regions, already checked (``genome_contig``, ``start``, ``reason``).

    A region off its contig is refused (:meth:`dnalm.genome.Genome.interval`), not clipped."""
    frames = []
    for record, region in enumerate(regions.itertuples(index=False)):
        end = int(region.end)
        contig = genome.interval(str(region.contig), int(region.start), end,
                                 where=f"region {region.name}")
        seq = genome.fetch(contig, int(region.start), end).upper()
        positions = np.arange(int(region.start), end)
        ref = np.array(list(seq))
        alts = np.array([[b for b in BASES if b != r] if r in BASES else ["N"] * 3 for r in ref])
        frame = pd.DataFrame({
            "record": record,
            "contig": region.contig,
            "pos": np.repeat(positions + 1, 3),
            "ref": np.repeat(ref, 3),
            "alt": alts.ravel(),
            "id": region.name,
            "genome_contig": contig,
            "start": np.repeat(positions, 3),
        })
        frame["reason"] = np.where(frame["ref"].isin(list(BASES)), "",
                                   "reference base is not A, C, G or T")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def write_position_bigwig(scores: pd.DataFrame, genome: Genome, path: str | Path, *,
                          reduce: str = "mean") -> None:
    """bigWig of the score over the alternatives at each position, reduced by ``reduce``
    (``mean``; fine-tuned mutation maps draw the ``max`` |effect|), IGV/UCSC ready."""
    import pyBigWig

    from dnalm.io import atomic_file

    per_pos = (scores.dropna(subset=["score"])
               .groupby(["genome_contig", "start"], sort=True)["score"].agg(reduce).reset_index())
    order = {name: i for i, name in enumerate(genome.lengths)}
    per_pos["order"] = per_pos["genome_contig"].map(order)
    per_pos = per_pos.sort_values(["order", "start"])
    with atomic_file(path) as tmp:
        bw = pyBigWig.open(str(tmp), "w")
        try:
            bw.addHeader([(name, int(length)) for name, length in genome.lengths.items()])
            for contig, group in per_pos.groupby("genome_contig", sort=False):
                starts = group["start"].to_numpy(dtype=np.int64)
                bw.addEntries(str(contig), starts.tolist(), values=group["score"].astype(float)
                              .tolist(), span=1)
        finally:
            bw.close()
