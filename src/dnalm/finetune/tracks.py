"""Genome-wide tracks of a fine-tuned model: a window slides over the genome, each window gets
the model's prediction, and the values become Parquet, bedGraph and bigWig (IGV/UCSC ready).

The genome is cut into ``n_regions`` regions (:mod:`dnalm.regions`); each region is one
job, which predicts the windows whose start lies in it, so region jobs never overlap. Windows
overlap when ``stride < window``; in the bedGraph/bigWig each window's value is drawn on its
central ``stride`` bases so that the intervals tile the genome without overlap.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dnalm.errors import ConfigError
from dnalm.finetune.settings import TrackSettings
from dnalm.genome import Genome, read_fai
from dnalm.io import atomic_file
from dnalm.regions import plan_regions

log = logging.getLogger(__name__)


def plan_windows(
    contigs: list[tuple[str, int]], window: int, stride: int, region: int, n_regions: int
) -> pd.DataFrame:
    """Windows ``[start, start + window)`` whose start lies in region ``region``."""
    if window < 1 or stride < 1:
        raise ConfigError("track window and stride must be >= 1")
    lengths = dict(contigs)
    rows = []
    for piece in plan_regions(contigs, n_regions)[region]:
        length = lengths[piece.contig]
        last_start = max(length - window, 0)
        starts = np.arange(piece.start - piece.start % stride, piece.end, stride)
        starts = starts[(starts >= piece.start) & (starts <= last_start)]
        if piece.start <= last_start < piece.end and (len(starts) == 0 or starts[-1] != last_start):
            starts = np.append(starts, last_start)  # the contig's tail gets a window too
        rows.append(pd.DataFrame({"contig": piece.contig, "start": starts,
                                  "end": np.minimum(starts + window, length)}))
    if not rows:
        return pd.DataFrame({"contig": pd.Series(dtype=str), "start": pd.Series(dtype="int64"),
                             "end": pd.Series(dtype="int64")})
    return pd.concat(rows, ignore_index=True)


def predict_track_region(
    run_dir: str | Path,
    genome_path: str | Path,
    out_parquet: str | Path,
    *,
    settings: TrackSettings,
    region: int = 0,
    gpus: int | None = None,
) -> pd.DataFrame:
    """Predict every window of one region with a fine-tuned run; write Parquet atomically.

    The value is the probability of class ``settings.class_index`` (classification) or the
    predicted value (regression). Windows with more than ``settings.max_n_fraction`` N get no
    value (NaN).
    """
    from dnalm.finetune.train import load_finetuned

    began = time.perf_counter()
    model = load_finetuned(run_dir, gpus=gpus)
    n_regions, class_index = settings.regions, settings.class_index
    windows = plan_windows(read_fai(genome_path), settings.window_bp, settings.stride_bp, region,
                           n_regions)
    values = np.full(len(windows), np.nan)
    with Genome(genome_path) as genome:
        seqs = [genome.fetch(c, int(s), int(e)).upper() for c, s, e in
                zip(windows["contig"], windows["start"], windows["end"], strict=True)]
    n_frac = np.array([s.count("N") / max(1, len(s)) for s in seqs])
    keep = np.flatnonzero(n_frac <= settings.max_n_fraction)
    if len(keep):
        outputs = model.predict([seqs[i] for i in keep], batch_size=settings.batch_size)
        if outputs.ndim == 2:
            if not 0 <= class_index < outputs.shape[1]:
                raise ConfigError(f"class_index {class_index} out of range for "
                                  f"{outputs.shape[1]} classes")
            outputs = outputs[:, class_index]
        values[keep] = outputs
    windows["value"] = values
    with atomic_file(out_parquet) as tmp:
        windows.to_parquet(tmp, index=False)
    elapsed = time.perf_counter() - began
    bases = int((windows["end"] - windows["start"]).sum())
    log.info("region %d/%d: %d windows (%d skipped for N), %.0f bp/s", region + 1, n_regions,
             len(windows), len(windows) - len(keep), bases / max(elapsed, 1e-9))
    return windows


def gather_track(
    parts: list[str | Path],
    genome_path: str | Path,
    out_parquet: str | Path,
    out_bedgraph: str | Path,
    out_bigwig: str | Path,
    *,
    stride: int,
    out_png: str | Path | None = None,
) -> pd.DataFrame:
    """Merge region tables; write the track as Parquet, bedGraph, bigWig (and a PNG picture)."""
    import pyBigWig

    table = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    order = {name: i for i, (name, _) in enumerate(read_fai(genome_path))}
    table = table.sort_values(["contig", "start"], key=lambda s: s.map(order)
                              if s.name == "contig" else s).reset_index(drop=True)
    with atomic_file(out_parquet) as tmp:
        table.to_parquet(tmp, index=False)
    bins = _central_bins(table, stride)
    with atomic_file(out_bedgraph) as tmp:
        bins.to_csv(tmp, sep="\t", header=False, index=False, float_format="%.6g")
    lengths = read_fai(genome_path)
    with atomic_file(out_bigwig) as tmp:
        bw = pyBigWig.open(str(tmp), "w")
        try:
            bw.addHeader([(name, int(length)) for name, length in lengths])
            for contig in [c for c, _ in lengths if c in set(bins["contig"])]:
                sub = bins[bins["contig"] == contig]
                bw.addEntries([contig] * len(sub), sub["start"].tolist(),
                              ends=sub["end"].tolist(), values=sub["value"].astype(float).tolist())
        finally:
            bw.close()
    if out_png is not None:
        plot_track(bins, out_png)
    log.info("track: %d windows, %d drawn intervals", len(table), len(bins))

    return table


def tss_enrichment(table: pd.DataFrame, tss_bed: str | Path, *, flank: int = 1000,
                   match_chr_prefix: bool = True) -> dict[str, float | int | str]:
    """How much higher the track is near annotated TSSs than on average: the mean value of the
    windows whose centre lies within ``flank`` bp of a TSS divided by the mean of all windows
    (1 = no enrichment), with the two means and window counts. A yardstick for a promoter- or
    enhancer-like track that needs no labels beyond an annotation."""
    from dnalm.genome import ContigNames
    from dnalm.score.saturation import read_bed

    tss = read_bed(tss_bed)
    valued = table.dropna(subset=["value"])
    names = ContigNames(list(valued["contig"].unique()), match_chr_prefix=match_chr_prefix)
    centre = ((valued["start"] + valued["end"]) // 2).to_numpy()
    near = np.zeros(len(valued), dtype=bool)
    contigs = valued["contig"].to_numpy()
    for contig, group in tss.groupby("contig"):
        resolved = names.resolve(str(contig))
        if resolved is None:
            continue
        sites = np.sort(group["start"].to_numpy())
        mine = contigs == resolved
        idx = np.searchsorted(sites, centre[mine])
        lo = np.abs(centre[mine] - sites[np.clip(idx - 1, 0, len(sites) - 1)])
        hi = np.abs(sites[np.clip(idx, 0, len(sites) - 1)] - centre[mine])
        near[mine] = np.minimum(lo, hi) <= flank
    overall = float(valued["value"].mean()) if len(valued) else float("nan")
    at_tss = float(valued.loc[near, "value"].mean()) if near.any() else float("nan")
    return {"tss_bed": str(tss_bed), "flank_bp": flank, "n_windows": len(valued),
            "n_windows_near_tss": int(near.sum()), "mean_near_tss": at_tss,
            "mean_genome_wide": overall, "enrichment": at_tss / overall if overall else math.nan}


def write_tss_enrichment(track_parquet: str | Path, tss_bed: str | Path,
                         out_json: str | Path) -> dict[str, float | int | str]:
    """:func:`tss_enrichment` of a gathered track, as JSON (and one log line)."""
    enrichment = tss_enrichment(pd.read_parquet(track_parquet), tss_bed)
    with atomic_file(out_json) as tmp:
        Path(tmp).write_text(json.dumps(enrichment, indent=1) + "\n")
    log.info("track mean within %d bp of the %d TSS windows: %.4g, genome-wide %.4g: enrichment "
             "%.3f (1 = none)", enrichment["flank_bp"], enrichment["n_windows_near_tss"],
             enrichment["mean_near_tss"], enrichment["mean_genome_wide"],
             enrichment["enrichment"])
    return enrichment


def plot_track(bins: pd.DataFrame, path: str | Path, max_bp: int = 2_000_000) -> None:
    """A picture of the track over the first ``max_bp`` of its first contig, genes-browser style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 2.6))
    if len(bins):
        contig = bins["contig"].iloc[0]
        sub = bins[(bins["contig"] == contig) & (bins["start"] < bins["start"].min() + max_bp)]
        ax.fill_between(sub["start"], sub["value"], step="post", color="#228833", alpha=0.8)
        ax.set_xlabel(f"{contig} position (bp)")
    ax.set_ylabel("prediction")
    ax.set_title("fine-tuned model track")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _central_bins(table: pd.DataFrame, stride: int) -> pd.DataFrame:
    """Non-overlapping intervals: each window's central ``stride`` bases (clipped to neighbours)."""
    rows = []
    for contig, group in table.dropna(subset=["value"]).groupby("contig", sort=False):
        group = group.sort_values("start")
        centre = (group["start"].to_numpy() + group["end"].to_numpy()) // 2
        lo = np.maximum(centre - stride // 2, group["start"].to_numpy())
        hi = np.minimum(lo + stride, group["end"].to_numpy())
        hi[:-1] = np.minimum(hi[:-1], lo[1:])  # never overlap the next interval
        ok = hi > lo
        rows.append(pd.DataFrame({"contig": contig, "start": lo[ok], "end": hi[ok],
                                  "value": group["value"].to_numpy()[ok]}))
    if not rows:
        return pd.DataFrame(columns=["contig", "start", "end", "value"])
    return pd.concat(rows, ignore_index=True)
