"""``dnalm doctor``: what this environment has, and what is missing for each part of dnalm."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import shutil
from collections.abc import Callable

#: (distribution, needed for)
PACKAGES = [
    ("snakemake", "the workflow"),
    ("torch", "models"),
    ("transformers", "models"),
    ("tokenizers", "tokenizers"),
    ("peft", "LoRA fine-tuning"),
    ("pysam", "FASTA/VCF access"),
    ("pyarrow", "Parquet"),
    ("pandas", "tables"),
    ("dask", "out-of-core summaries"),
    ("pyBigWig", "bigWig tracks"),
    ("scikit-learn", "metrics and k-mer baseline"),
    ("matplotlib", "plots"),
    ("pygments", "snakemake --report"),
]
PLUGINS = [
    ("snakemake-executor-plugin-slurm", "the slurm profile"),
    ("snakemake-executor-plugin-kubernetes", "the kubernetes profile"),
    ("snakemake-executor-plugin-googlebatch", "the googlebatch profile"),
    ("snakemake-executor-plugin-aws-batch", "the awsbatch profile"),
    ("snakemake-storage-plugin-s3", "S3 default storage"),
    ("snakemake-storage-plugin-gcs", "GCS default storage"),
]


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def run_checks(say: Callable[[str], None]) -> int:
    """Print one line per check; return 1 when a required package is missing."""
    missing_required = 0
    say("packages:")
    for dist, purpose in PACKAGES:
        version = _version(dist)
        say(f"  {'ok ' if version else 'MISSING'} {dist} {version or ''} ({purpose})")
        missing_required += version is None
    say("optional executor/storage plugins:")
    for dist, purpose in PLUGINS:
        version = _version(dist)
        hint = "" if version else f"  -> pip install {dist}"
        say(f"  {'ok ' if version else 'absent'} {dist} {version or ''} ({purpose}){hint}")
    say("accelerators:")
    try:
        torch = importlib.import_module("torch")
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                say(f"  ok  cuda:{i} {torch.cuda.get_device_name(i)}")
        else:
            say("  none: GPU rules run on the CPU (slowly)")
    except ImportError:
        say("  unknown: torch is not installed")
    say("tools:")
    for tool in ("sbatch", "squeue", "chromium"):
        say(f"  {'ok ' if shutil.which(tool) else 'absent'} {tool}")
    return 1 if missing_required else 0
