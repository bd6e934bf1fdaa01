"""Print where the results of a workflow run are (called at the end of ``make run``)."""

from __future__ import annotations

import sys
from pathlib import Path

DESCRIPTIONS = [
    ("results/genomes/*/genome.fa.gz", "prepared genomes (bgzip + .fai/.gzi)"),
    ("results/genomes/*/genome_stats.parquet", "per-contig statistics"),
    ("results/genomes/*/chunks", "training chunks (train/validation/test Parquet shards)"),
    ("results/genomes/*/tokens/*", "tokenized shards"),
    ("results/tokenizers/*", "tokenizers (load with AutoTokenizer)"),
    ("results/models/*", "pretrained models (load with AutoModelForMaskedLM)"),
    ("results/finetune/*/*", "fine-tuned adapters, metrics and predictions"),
    ("results/scores/*/*", "variant scores"),
    ("logs", "one log per job"),
]


def main(root: str = ".") -> int:
    base = Path(root)
    print("dnalm results:")
    for pattern, what in DESCRIPTIONS:
        hits = sorted(base.glob(pattern))
        if hits:
            shown = ", ".join(str(h) for h in hits[:3]) + (" ..." if len(hits) > 3 else "")
            print(f"  {what}: {shown}")
    print("Build an HTML report with: .venv/bin/snakemake --report report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
