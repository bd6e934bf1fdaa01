"""What the workflow fine-tunes: the runs and tasks of the ``finetune`` config section.

``rules/finetune.smk`` only wires files; the decisions (which files a task reads, which genome a
BED task needs, which model and method a run uses) live here, where they are tested.

A run entry of ``finetune.models`` is either a model name (a model the pipeline pre-trains into
``results/models/{name}``, or an ``external_models`` entry, resolved by ``rules/common.smk``'s
``model_dir``) or a mapping ``{name, model, method}``: ``name`` labels the run (its directory
``results/finetune/{task}/{name}`` and its row in the summary), ``model`` is the model it
fine-tunes (default: ``name``), and ``method`` and ``learning_rate`` override the section's. The
mapping form puts LoRA and full fine-tuning of one model side by side in one summary, each at
its own learning rate (a LoRA adapter needs a larger one), e.g.
``[{name: demo, learning_rate: 0.005}, {name: demo_full, model: demo, method: full}]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dnalm import paths
from dnalm.errors import ConfigError
from dnalm.finetune.baseline import BASELINE_NAME
from dnalm.finetune.settings import METHODS
from dnalm.finetune.tasks import SPLITS, check_spec

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_WHERE = "config key finetune.models"


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"{what} name {name!r} must be letters, digits and _ . - (no slash)",
                          where="config key finetune")
    return name


_RUN_KEYS = ("name", "model", "method", "learning_rate")


def _run_entry(entry: Any) -> tuple[str, str, str | None, Any]:
    """(run name, model name, method override, learning-rate override) of one
    ``finetune.models`` entry."""
    if isinstance(entry, str):
        return entry, entry, None, None
    if not isinstance(entry, Mapping):
        raise ConfigError(f"entry {entry!r} must be a model name or a mapping", where=_WHERE)
    unknown = sorted(set(entry) - set(_RUN_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} (valid: {', '.join(_RUN_KEYS)})",
                          where=_WHERE)
    name = entry.get("name")
    model = entry.get("model") or name
    _check_name(model, "model")
    return name, model, entry.get("method"), entry.get("learning_rate")


def finetune_runs(section: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{run name: {"model": model name, "method": override or None, "learning_rate":
    override or None}}`` in config order."""
    out: dict[str, dict[str, Any]] = {}
    for entry in section.get("models", []) or []:
        name, model, method, learning_rate = _run_entry(entry)
        _check_name(name, "run")
        if name == BASELINE_NAME:
            raise ConfigError(f"name {BASELINE_NAME!r} is reserved for the k-mer baseline",
                              where=_WHERE)
        if name in out:
            raise ConfigError(f"run {name!r} is listed twice", where=_WHERE)
        if method is not None and method not in METHODS:
            raise ConfigError(f"run {name!r}: method {method!r} is not one of "
                              f"{', '.join(METHODS)}", where=_WHERE)
        if learning_rate is not None and (isinstance(learning_rate, bool) or not isinstance(
                learning_rate, (int, float)) or not learning_rate > 0):
            raise ConfigError(f"run {name!r}: learning_rate {learning_rate!r} must be a number "
                              "> 0", where=_WHERE)
        out[name] = {"model": model, "method": method, "learning_rate": learning_rate}
    return out


def run_settings(section: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """The section's training settings for one run (its ``method`` and ``learning_rate``
    overrides applied)."""
    settings = {k: v for k, v in section.items() if k not in ("tasks", "models", "baseline")}
    if run.get("method"):
        settings["method"] = run["method"]
    if run.get("learning_rate") is not None:
        settings["learning_rate"] = run["learning_rate"]
    return settings


def finetune_tasks(section: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: checked task spec}`` for every task of the section."""
    tasks = section.get("tasks", {}) or {}
    if not isinstance(tasks, Mapping):
        raise ConfigError("'tasks' must map task names to task specs",
                          where="config key finetune.tasks")
    return {_check_name(name, "task"): check_spec(spec, name) for name, spec in tasks.items()}


def is_genome_path(genome: str) -> bool:
    """Whether a BED task's ``genome`` is a file path rather than a genome id."""
    return genome.endswith((".fa.gz", ".fasta.gz", ".fa", ".fasta", ".fna.gz", ".fna"))


def task_genome_fasta(spec: Mapping[str, Any]) -> str | None:
    """The prepared genome a BED task cuts its sequences from (None for other formats).

    A genome id means the pipeline's ``results/genomes/{id}/genome.fa.gz``; a value ending in
    ``.fa.gz``/``.fasta.gz``/``.fa`` is taken as the path of an already prepared genome.
    """
    if spec.get("format") != "bed":
        return None
    genome = str(spec["genome"])
    if is_genome_path(genome):
        return genome
    return paths.genome_fasta(genome)


def task_input_files(spec: Mapping[str, Any]) -> list[str]:
    """Every file a task reads (its splits, per-class FASTAs and, for BED, the genome + index)."""
    files: list[str] = []
    mappings = [spec.get("fasta")] + [spec.get(s) for s in SPLITS]
    for value in mappings:
        if isinstance(value, Mapping):
            files += [str(v) for v in value.values()]
        elif value:
            files.append(str(value))
    genome = task_genome_fasta(spec)
    if genome is not None:
        files += [genome, genome + ".fai"]
        if genome.endswith(".gz"):
            files.append(genome + ".gzi")
    return files


def run_dirs(runs: Mapping[str, Any], tasks: Mapping[str, Any]) -> list[str]:
    """Run directories of every task × (run + k-mer baseline)."""
    names = [*runs, BASELINE_NAME]
    return [paths.finetune_run(task, model) for task in tasks for model in names]
