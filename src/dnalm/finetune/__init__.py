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
"""

from dnalm.finetune.baseline import BASELINE_NAME, kmer_baseline, kmer_frequencies
from dnalm.finetune.metrics import classification_metrics, primary_metric, regression_metrics
from dnalm.finetune.modeling import default_target_modules, load_classifier
from dnalm.finetune.settings import (
    BaselineSettings,
    FinetuneSettings,
    LoraSettings,
    RMTSettings,
    baseline_settings,
    finetune_settings,
)
from dnalm.finetune.summary import collect_runs, gue_table, write_summary
from dnalm.finetune.tasks import TaskData, check_spec, load_task, task_spec_from_dir
from dnalm.finetune.train import (
    FinetunedModel,
    FineTuner,
    finetune,
    finetune_from_paths,
    load_finetuned,
    run_finetune,
)

__all__ = [
    "BASELINE_NAME",
    "BaselineSettings",
    "FineTuner",
    "FinetuneSettings",
    "FinetunedModel",
    "LoraSettings",
    "RMTSettings",
    "TaskData",
    "baseline_settings",
    "check_spec",
    "classification_metrics",
    "collect_runs",
    "default_target_modules",
    "finetune",
    "finetune_from_paths",
    "finetune_settings",
    "gue_table",
    "kmer_baseline",
    "kmer_frequencies",
    "load_classifier",
    "load_finetuned",
    "load_task",
    "primary_metric",
    "regression_metrics",
    "run_finetune",
    "task_spec_from_dir",
    "write_summary",
]
