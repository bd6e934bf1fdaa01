"""Fine-tuning of DNA language models on labelled tasks, with a k-mer baseline and a summary.

Stages (each a rule in ``rules/finetune.smk`` and a function here):

* :func:`finetune` / :func:`run_finetune`: LoRA (peft) or full fine-tuning of a model directory
  (pipeline-pretrained or a local Hugging Face checkpoint) on a task, early stopping on the dev
  split, writing ``adapter/`` (or ``model/``), optional ``merged/``, ``metrics.json`` and
  ``predictions.parquet`` (:mod:`dnalm.finetune.train`).
* :func:`kmer_baseline`: k-mer frequency logistic/ridge regression on the same splits
  (:mod:`dnalm.finetune.baseline`).
* :func:`write_summary`: the GUE-style table over tasks × models (:mod:`dnalm.finetune.summary`).

Tasks (tables, BED intervals on a genome, or per-class FASTA) are loaded by :func:`load_task`
(:mod:`dnalm.finetune.tasks`); :func:`finetune_from_paths` fine-tunes a GUE-format folder in one
call, which is what ``dnalm finetune`` runs.

Typical use::

    metrics = finetune_from_paths("GUE/prom_300_all", "results/models/demo",
                                  "out/prom_300_all/demo", baseline_dir="out/prom_300_all/kmer",
                                  method="lora", lora={"r": 8, "alpha": 32}, epochs=5)

The names below are imported lazily, so that the torch-free parts (settings, tasks) can be
read without importing torch (the workflow reads the settings while Snakemake parses it).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BASELINE_NAME": "baseline", "kmer_baseline": "baseline", "kmer_frequencies": "baseline",
    "classification_metrics": "metrics", "primary_metric": "metrics",
    "regression_metrics": "metrics",
    "default_target_modules": "modeling", "load_classifier": "modeling",
    "BaselineSettings": "settings", "FinetuneSettings": "settings", "LoraSettings": "settings",
    "RMTSettings": "settings", "baseline_settings": "settings", "finetune_settings": "settings",
    "collect_runs": "summary", "gue_table": "summary", "write_summary": "summary",
    "TaskData": "tasks", "check_spec": "tasks", "load_task": "tasks",
    "task_spec_from_dir": "tasks",
    "FinetunedModel": "train", "FineTuner": "train", "finetune": "train",
    "finetune_from_paths": "train", "load_finetuned": "train", "run_finetune": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dnalm.finetune.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dnalm.finetune' has no attribute {name!r}")
