"""Print where the results of a workflow run are (called at the end of ``make run``)."""

from __future__ import annotations

import sys
from pathlib import Path

from dnalm import paths
from dnalm.paths import STAGES


def main(root: str = ".") -> int:
    base = Path(root)
    print("dnalm results:")
    for pattern, what in STAGES:
        hits = sorted(base.glob(pattern))
        if hits:
            shown = ", ".join(str(h) for h in hits[:3]) + (" ..." if len(hits) > 3 else "")
            print(f"  {what}: {shown}")
    lines = learned(base)
    if lines:
        print("What the models learned, beside their yardsticks:")
        for line in lines:
            print(f"  {line}")
    print("Build an HTML report with: .venv/bin/snakemake --report report.html")
    return 0


def learned(base: Path) -> list[str]:
    """One line per result that has a yardstick: pretraining against Markov chains, fine-tuned
    runs against chance and the k-mer baseline (collapsed runs flagged), tracks against their
    TSS enrichment, zero-shot and fine-tuned scores against labelled variants (chance 0.5)."""
    return (_pretraining(base) + _finetuning(base) + _tracks(base) + _evaluation(base))


def _pretraining(base: Path) -> list[str]:
    import pandas as pd

    lines = []
    for markov in sorted(base.glob(f"{paths.model_dir('*')}/markov.parquet")):
        table = pd.read_parquet(markov)
        metrics = pd.read_parquet(markov.parent / "metrics.parquet")
        column = metrics.get("val_loss_per_base")
        final = column.dropna() if column is not None else []
        if not len(final):
            continue
        model = float(final.iloc[-1])
        best3 = table[table["k"] <= 3]["nats_per_base"].min()
        orders = " ".join(f"{v:.3f}" for v in table.sort_values("k")["nats_per_base"])
        verdict = "below" if model < best3 else "NOT below"
        lines.append(f"pretraining {markov.parent.name}: validation {model:.4f} nats/base, "
                     f"{verdict} the best Markov chain of order <= 3 ({best3:.4f}); "
                     f"orders 0-5: {orders}")
    return lines


def _finetuning(base: Path) -> list[str]:
    import pandas as pd

    path = base / paths.finetune_summary("parquet")
    if not path.is_file():
        return []
    frame = pd.read_parquet(path)
    if "mcc" not in frame or "task" not in frame:
        return []
    lines = []
    for task, rows in frame.groupby("task", sort=False):
        kmer = rows[rows["model"] == "kmer_baseline"]
        kmer_text = (f"k-mer baseline MCC {kmer['mcc'].iloc[0]:.3f}, AUROC "
                     f"{kmer['auroc'].iloc[0]:.3f}" if len(kmer) else "no k-mer baseline")
        lines.append(f"fine-tuning {task}: chance MCC 0, AUROC 0.5; {kmer_text}")
        for row in rows[rows["model"] != "kmer_baseline"].itertuples():
            text = f"  {row.model} ({row.method}): MCC {row.mcc:.3f}"
            if hasattr(row, "mcc_low") and pd.notna(row.mcc_low):
                text += f" [{row.mcc_low:.3f}, {row.mcc_high:.3f}]"
            text += f", AUROC {row.auroc:.3f}"
            if hasattr(row, "auroc_low") and pd.notna(row.auroc_low):
                text += f" [{row.auroc_low:.3f}, {row.auroc_high:.3f}]"
            if getattr(row, "collapsed", False):
                text += " - COLLAPSED, not a result"
            lines.append(text)
    return lines


def _tracks(base: Path) -> list[str]:
    import json

    lines = []
    for path in sorted(base.glob(f"{paths.track('*', '*')}_tss.json")):
        info = json.loads(path.read_text())
        lines.append(f"track {path.name.removesuffix('_tss.json')}: mean within "
                     f"{info['flank_bp']} bp of a TSS / genome-wide mean = "
                     f"{info['enrichment']:.3f} (1 = no enrichment; "
                     f"{info['n_windows_near_tss']} of {info['n_windows']} windows near a TSS)")
    return lines


def _evaluation(base: Path) -> list[str]:
    import pandas as pd

    lines = []
    for path in sorted(base.glob(f"{paths.evaluation('*')}.parquet")):
        frame = pd.read_parquet(path)
        frame = frame[frame["stratum"] == "(all)"] if "stratum" in frame else frame
        for row in frame.itertuples():
            if pd.isna(getattr(row, "auroc", float("nan"))):
                continue
            lines.append(f"evaluation {path.stem}: {row.model} ({row.kind}, {row.direction}) "
                         f"AUROC {row.auroc:.3f} [{row.auroc_low:.3f}, {row.auroc_high:.3f}] "
                         f"on {row.n} variants (chance 0.5)")
    return lines


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
