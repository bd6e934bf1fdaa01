"""Helpers to run the real workflow (the repo's Snakefile) in a scratch working directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def default_config() -> dict:
    with open(REPO / "config" / "config.yaml") as handle:
        return yaml.safe_load(handle)


def write_sheet(path: Path, genomes: dict[str, str | dict[str, str]]) -> Path:
    """Write a genome sheet; values are a source string or a dict of columns."""
    columns = ["genome_id", "source", "sha256", "md5", "include_contigs", "exclude_contigs"]
    lines = ["\t".join(columns)]
    for gid, value in genomes.items():
        row = {"source": value} if isinstance(value, str) else dict(value)
        lines.append("\t".join([gid] + [str(row.get(c, "")) for c in columns[1:]]))
    path.write_text("\n".join(lines) + "\n")
    return path


def make_workdir(
    workdir: Path, genomes: dict[str, str | dict[str, str]], **overrides: object
) -> Path:
    """A working directory with config.yaml + genomes.tsv (absolute paths to repo data)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = default_config()
    config["genomes"] = str(write_sheet(workdir / "genomes.tsv", genomes))
    for key, value in overrides.items():
        if isinstance(value, dict) and value and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    _drop_unknown_genomes(config, set(genomes), workdir)
    _keep_defined_sequence_sets(config, set(genomes), workdir)
    _keep_evaluated_sets(config)
    with open(workdir / "config.yaml", "w") as handle:
        yaml.safe_dump(config, handle)
    return workdir


def _drop_unknown_genomes(config: dict, genomes: set[str], workdir: Path) -> None:
    """Keep the demo's scoring/coding/track sets only for genomes this test's sheet has (the
    workflow rightly refuses a set on a genome it does not know)."""
    scoring = config.get("scoring", {})
    for key in ("variants", "saturation"):
        scoring[key] = {k: v for k, v in scoring.get(key, {}).items() if v["genome"] in genomes}
    coding = config.get("coding", {})
    coding["variants"] = [v for v in coding.get("variants", []) if v in scoring["variants"]]
    coding["annotations"] = {g: a for g, a in coding.get("annotations", {}).items()
                             if g in genomes}
    config["tracks"] = {k: v for k, v in config.get("tracks", {}).items()
                        if v["genome"] in genomes}
    for spec in config["tracks"].values():  # the demo's TSS yardstick: absolute unless the
        tss = spec.get("tss_bed")            # workdir links data/ (cloud dry runs)
        if tss and not Path(tss).is_absolute() and not (workdir / tss).exists():
            spec["tss_bed"] = str(REPO / tss)
    # tokenizers and models that name the demo's genomes learn from those on this sheet
    # (none left: every genome, the default)
    def kept(spec: dict) -> dict:
        listed = [g for g in spec.get("genomes") or [] if g in genomes]
        return {**{k: v for k, v in spec.items() if k != "genomes"},
                **({"genomes": listed} if listed else {})}

    config["tokenizers"] = {k: kept(v) for k, v in config.get("tokenizers", {}).items()}
    pretraining = config.get("pretraining", {})
    pretraining["models"] = {k: kept(v) for k, v in pretraining.get("models", {}).items()}


def _keep_defined_sequence_sets(config: dict, genomes: set[str], workdir: Path) -> None:
    """Keep the demo's embedding/prediction sets on this sheet's genomes, and only the models
    and fine-tuned runs this config defines; demo data paths are made absolute."""
    from dnalm.finetune.plan import finetune_runs

    models = set(config.get("pretraining", {}).get("models", {})) | set(
        config.get("external_models", {}))
    finetune = config.get("finetune", {})
    tasks, runs = set(finetune.get("tasks", {})), set(finetune_runs(finetune))
    for key in ("embeddings", "predictions"):
        section = config.get(key) or {}
        inputs = {}
        for name, spec in section.get("inputs", {}).items():
            if spec.get("bed") and spec.get("genome") not in genomes:
                continue
            # relative demo paths stay relative where the workdir links data/ (the cloud
            # profiles find them under the storage prefix), absolute otherwise
            inputs[name] = {k: str(REPO / v) if k in ("fasta", "table", "bed")
                            and not Path(v).is_absolute() and (REPO / v).exists()
                            and not (workdir / v).exists() else v
                            for k, v in spec.items()}
        section["inputs"] = inputs
        section["runs"] = [r for r in section.get("runs", [])
                           if r.partition("/")[0] in tasks and r.partition("/")[2] in runs]
        if "models" in section:
            section["models"] = [m for m in section["models"] if m in models]
        config[key] = section
    effects = config.get("effects") or {}
    effects["runs"] = [r for r in effects.get("runs", [])
                       if r.partition("/")[0] in tasks and r.partition("/")[2] in runs]
    scoring = config.get("scoring", {})
    for key in ("variants", "saturation"):
        effects[key] = [v for v in effects.get(key, []) if v in scoring.get(key, {})]
    config["effects"] = effects


def _keep_evaluated_sets(config: dict) -> None:
    """Keep the demo's labelled sets whose variants this config scores, the models it scores
    them with and the fine-tuned runs whose effects it computes there; label tables made
    absolute."""
    section = config.get("evaluation") or {}
    scoring = config.get("scoring", {})
    effects = config.get("effects") or {}
    sets = {}
    for name, spec in section.get("sets", {}).items():
        if spec.get("variants") not in scoring.get("variants", {}):
            continue
        label = dict(spec.get("label") or {})
        if label.get("table") and not Path(label["table"]).is_absolute() \
                and (REPO / label["table"]).exists():
            label["table"] = str(REPO / label["table"])
        sets[name] = {**spec, "label": label}
    section["sets"] = sets
    section["models"] = [m for m in section.get("models", [])
                         if m in scoring.get("models", [])]
    section["runs"] = [r for r in section.get("runs", []) if r in effects.get("runs", [])
                       and all(s["variants"] in effects.get("variants", [])
                               for s in sets.values())]
    config["evaluation"] = section


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repo's Snakefile in ``workdir`` with its config.yaml."""
    cmd = [
        str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(workdir: Path, *args: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run would execute, 'all' excluded."""
    proc = snakemake(workdir, "--dry-run", *args)
    text = proc.stdout + proc.stderr
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", text):
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block.strip())
        if not m or m.group(1) == "all":
            continue
        wc = re.search(r"wildcards: (.*)", block)
        jobs.append((m.group(1), wc.group(1).strip() if wc else ""))
    return jobs


def assert_dry_run_fails_in_one_line(workdir: Path, message: str) -> None:
    """A dry run of ``workdir`` stops with exactly one ``dnalm: error:`` line holding
    ``message``, and no traceback."""
    proc = snakemake(workdir, "--dry-run", check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("dnalm: error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
