"""Out-of-core summaries of score tables with dask: distribution, top variants, per-gene extremes.

Score tables of a whole genome can be far larger than memory; dask reads the Parquet shards
partition by partition, so only the summaries are ever materialised.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd

from dnalm.io import atomic_file

log = logging.getLogger(__name__)


def _genes(path: str | Path) -> pd.DataFrame:
    genes = pd.read_csv(path, sep="\t", header=None, comment="#", usecols=[0, 1, 2, 3],
                        names=["contig", "start", "end", "gene"], dtype={0: str})
    return genes.sort_values(["contig", "start"]).reset_index(drop=True)


def _assign_genes(part: pd.DataFrame, genes: pd.DataFrame) -> pd.DataFrame:
    """Each variant with every gene overlapping it (a variant in two genes appears twice)."""
    rows = []
    for contig, group in part.groupby("contig", sort=False):
        g = genes[genes["contig"] == str(contig)]
        if g.empty:
            continue
        pos0 = group["pos"].to_numpy() - 1
        for gene in g.itertuples(index=False):
            hit = (pos0 >= gene.start) & (pos0 < gene.end)
            if hit.any():
                sel = group[hit][["contig", "pos", "ref", "alt", "score"]].copy()
                sel["gene"] = gene.gene
                rows.append(sel)
    if not rows:
        return pd.DataFrame({"contig": pd.Series(dtype=str), "pos": pd.Series(dtype="int64"),
                             "ref": pd.Series(dtype=str), "alt": pd.Series(dtype=str),
                             "score": pd.Series(dtype=float), "gene": pd.Series(dtype=str)})
    return pd.concat(rows, ignore_index=True)


def summarize_scores(
    parquets: list[str | Path],
    out_dir: str | Path,
    *,
    genes_bed: str | Path | None = None,
    top: int = 20,
    bins: int = 50,
) -> dict[str, object]:
    """Write ``distribution.parquet``, ``top_variants.parquet``, ``genes.parquet`` (when genes are
    given) and ``distribution.png`` into ``out_dir``; return headline numbers."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["contig", "pos", "ref", "alt", "score", "reason"]
    ddf = dd.read_parquet([str(p) for p in parquets], columns=columns)
    ddf["contig"] = ddf["contig"].astype(str)
    scored = ddf[ddf["score"].notnull()]
    n_total, n_scored = int(ddf.shape[0].compute()), int(scored.shape[0].compute())
    lo, hi = (float(x) for x in dd.compute(scored["score"].min(), scored["score"].max()))
    if n_scored == 0:
        lo, hi = -1.0, 1.0
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    counts = scored["score"].map_partitions(
        lambda s: pd.Series([np.histogram(s.to_numpy(), bins=edges)[0]]), meta=(None, "object")
    ).compute()
    hist = np.sum(np.stack(counts.to_list()), axis=0) if len(counts) else np.zeros(bins)
    distribution = pd.DataFrame({"bin_start": edges[:-1], "bin_end": edges[1:], "count": hist})
    top_variants = scored.nsmallest(top, "score").compute()
    with atomic_file(out_dir / "distribution.parquet") as tmp:
        distribution.to_parquet(tmp, index=False)
    with atomic_file(out_dir / "top_variants.parquet") as tmp:
        top_variants.to_parquet(tmp, index=False)
    if genes_bed is not None:
        genes = _genes(genes_bed)
        meta = _assign_genes(pd.DataFrame(columns=columns[:5]), genes)
        per_gene = (scored.map_partitions(_assign_genes, genes, meta=meta)
                    .groupby("gene")["score"].agg(["min", "max", "count"]).compute()
                    .rename(columns={"min": "min_score", "max": "max_score",
                                     "count": "variants"})
                    .sort_values("min_score").reset_index())
        with atomic_file(out_dir / "genes.parquet") as tmp:
            per_gene.to_parquet(tmp, index=False)
    _plot(distribution, out_dir / "distribution.png", n_scored, n_total)
    log.info("summary: %d variants, %d scored, score range [%.3g, %.3g]", n_total, n_scored, lo,
             hi)
    return {"variants": n_total, "scored": n_scored, "min": lo, "max": hi}


def _plot(distribution: pd.DataFrame, path: Path, n_scored: int, n_total: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = distribution["bin_end"] - distribution["bin_start"]
    ax.bar(distribution["bin_start"], distribution["count"], width=width, align="edge",
           color="#4477aa")
    ax.set_xlabel("score: log p(alt) - log p(ref)")
    ax.set_ylabel("variants")
    ax.set_title(f"{n_scored} of {n_total} variants scored")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
