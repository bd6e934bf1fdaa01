"""Split a genome into ``n`` regions of about equal size, so a cluster scores them in parallel.

The region count comes from the configuration, so Snakemake knows every region job when it plans
the DAG (a dry run of a whole human genome lists them all); each job computes its own intervals
from the genome's ``.fai`` at run time with :func:`plan_regions`, which is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RegionInterval:
    contig: str
    start: int
    end: int


def plan_regions(contigs: Sequence[tuple[str, int]], n: int) -> list[list[RegionInterval]]:
    """Cut the concatenated contigs into ``n`` consecutive pieces of about equal length.

    A region may span several small contigs or part of a large one; every base belongs to
    exactly one region. Regions are empty when ``n`` exceeds the number of bases.
    """
    lengths = np.array([length for _, length in contigs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total = int(offsets[-1])
    bounds = [total * i // n for i in range(n + 1)]
    regions: list[list[RegionInterval]] = []
    for r in range(n):
        lo, hi = bounds[r], bounds[r + 1]
        pieces = []
        for i, (name, _) in enumerate(contigs):
            a, b = max(lo, int(offsets[i])), min(hi, int(offsets[i + 1]))
            if a < b:
                pieces.append(RegionInterval(name, a - int(offsets[i]), b - int(offsets[i])))
        regions.append(pieces)
    return regions


def in_region(frame: pd.DataFrame, region: list[RegionInterval]) -> np.ndarray:
    """Rows whose (genome_contig, start) lie in ``region``; rows without a contig go to region 0
    callers (they are reported, not scored)."""
    mask = np.zeros(len(frame), dtype=bool)
    contigs = frame["genome_contig"].to_numpy()
    starts = frame["start"].to_numpy()
    for piece in region:
        mask |= (contigs == piece.contig) & (starts >= piece.start) & (starts < piece.end)
    return mask
