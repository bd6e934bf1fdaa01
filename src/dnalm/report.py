"""Small HTML tables for ``snakemake --report``: the report shows HTML files as they are, so
Parquet results that a user reads as a table (genome statistics, fine-tuning summary, top
variants) are rendered here once, self-contained, with a title and a one-line explanation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dnalm.io import atomic_file

_STYLE = """
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; }
caption { text-align: left; font-weight: bold; margin-bottom: 6px; }
"""


def table_html(frame: pd.DataFrame, path: str | Path, *, title: str, note: str = "",
               float_format: str = "{:.4g}") -> Path:
    """Write ``frame`` as a standalone HTML page (atomically)."""
    body = frame.to_html(index=False, float_format=lambda v: float_format.format(v),
                         na_rep="", border=0)
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body><h2>{title}</h2>"
            f"<p>{note}</p>{body}</body></html>\n")
    with atomic_file(path) as tmp:
        Path(tmp).write_text(html)
    return Path(path)


def genome_stats_html(stats_parquet: str | Path, out: str | Path) -> Path:
    stats = pd.read_parquet(stats_parquet)
    total = pd.DataFrame([{
        "genome": stats["genome"].iloc[0], "contig": "(all)", "length": stats["length"].sum(),
        "n_count": stats["n_count"].sum(), "other_iupac_count": stats["other_iupac_count"].sum(),
        "gc_fraction": (stats["gc_fraction"] * (stats["length"] - stats["n_count"])).sum()
        / max(1, (stats["length"] - stats["n_count"]).sum()),
        "softmasked_fraction": (stats["softmasked_fraction"] * stats["length"]).sum()
        / max(1, stats["length"].sum()),
    }])
    frame = pd.concat([total, stats.head(200)], ignore_index=True)
    return table_html(frame, out, title=f"Genome {stats['genome'].iloc[0]}",
                      note="Per contig: length, N count, other IUPAC codes, GC fraction of "
                           "ACGT bases, soft-masked (lowercase) fraction. First row: totals.")


def top_variants_html(summary_dir: str | Path, out: str | Path, *, title: str) -> Path:
    top = pd.read_parquet(Path(summary_dir) / "top_variants.parquet")
    return table_html(top, out, title=title,
                      note="The variants with the lowest score log p(alt) - log p(ref): the "
                           "alternate allele is least expected by the model.")


def markdown_table_html(markdown: str | Path, out: str | Path, *, title: str) -> Path:
    """Fine-tuning summary (already a Markdown table) as HTML."""
    lines = Path(markdown).read_text().splitlines()
    tables, current = [], []
    for line in lines:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    frames = [pd.DataFrame(t[2:], columns=t[0]) for t in tables if len(t) > 2]
    frame = frames[0] if frames else pd.DataFrame()
    return table_html(frame, out, title=title,
                      note="Test-split primary metric x 100 per task (MCC for classification), "
                           "model against the k-mer baseline, as in DNABERT-2's GUE table.")
