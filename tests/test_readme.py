"""README.md walks a new user through dnalm, and every command in it is exercised by a test.

A command is a line of a ```sh block (continuation lines joined, trailing comment dropped) or an
inline code span that starts with a program (`make run`, `python -m dnalm.results`). Each must
start with a prefix in ``COVERAGE``, which names the tests that run it; the named tests must
exist, so the map cannot rot, and a README command with no entry fails
``test_every_readme_command_is_covered``.

The commands this file runs itself are read from the README and run as written (``bash -c``, in a
scratch directory laid out like the repository), against tiny inputs: a random tiny model with a
single-nucleotide tokenizer as ``results/models/demo``, 50 rows of the enhancer task, and the
48.5 kb lambda phage served as ``ucsc:sacCer3`` by an HTTP server on 127.0.0.1
(``DNALM_UCSC_BASE_URL``): nothing is downloaded from the internet. Commands that need a full
Snakemake run, a cluster or a bucket are mapped to the workflow, profile, SLURM and S3 tests that
run them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml

from dnalm.fasta import prepare_genome
from dnalm.score.run import gather_scores, score_vcf_region
from dnalm.score.vep import ScoreConfig
from dnalm.sheet import parse_sheet
from tests.conftest import DEMO_FASTA, LAMBDA_FASTA, FileServer
from tests.scoring_utils import make_model, make_tokenizer

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
HERE = "tests/test_readme.py"
DEMO = "tests/test_workflow_demo.py"

#: Words that start a command in an inline code span (a span of one word is a name, not a command).
PROGRAMS = {"dnalm", "snakemake", "make", "python", "python3", "pytest", "pip", "source", "printf",
            "cp", "docker", "sudo", "git", "bash", "conda", "apt-get", "ruff"}

#: Command prefix -> the tests that run it. Entries of this file run the README text as written.
COVERAGE: dict[str, tuple[str, ...]] = {
    # the demo (what `make run` runs: the Snakefile on config/config.yaml, shortened schedule)
    "make run": (f"{HERE}::test_make_targets_run_what_the_tests_run",
                 f"{DEMO}::test_model_pretrained_in_segments_and_loss_falls",
                 f"{DEMO}::test_demo_variants_scored_with_the_pretrained_model",
                 f"{DEMO}::test_lora_and_full_finetuning_beside_the_kmer_baseline",
                 f"{DEMO}::test_finetuned_track_over_the_genome",
                 f"{DEMO}::test_embeddings_and_predictions_of_the_promoters",
                 f"{DEMO}::test_finetuned_variant_effects_and_mutation_map",
                 "tests/test_workflow_evaluate.py::"
                 "test_clinvar_set_scored_on_the_masked_genome_and_evaluated",
                 "tests/test_workflow_genome.py::test_demo_outputs"),
    "CORES=8 make run": (f"{HERE}::test_make_targets_run_what_the_tests_run",),
    "make test": (f"{HERE}::test_make_targets_run_what_the_tests_run",),
    "make lint": (f"{HERE}::test_make_targets_run_what_the_tests_run",),
    "pip install -e": (f"{HERE}::test_make_targets_run_what_the_tests_run",),
    ".venv/bin/pytest -m": (f"{HERE}::test_unit_test_command_leaves_out_workflow_tests",),
    "source .venv/bin/activate": (f"{HERE}::test_dnalm_commands_run_as_written",),
    # by hand: every dnalm command, run here as written
    "dnalm": (f"{HERE}::test_dnalm_commands_run_as_written",
              "tests/test_cli.py::test_every_subcommand_has_help_with_an_example"),
    # reading the outputs
    "python -m dnalm.results": (f"{HERE}::test_dnalm_commands_run_as_written",),
    "python -c": (f"{HERE}::test_dnalm_commands_run_as_written",),
    "snakemake --report": (f"{DEMO}::test_report_renders_in_headless_chromium",),
    # resuming after Snakemake itself was killed
    "snakemake --unlock": ("tests/test_hostile_io.py::test_stale_lock_after_kill_is_cleared",),
    # a custom genome
    "printf": (f"{HERE}::test_custom_genome_walkthrough",),
    "snakemake --cores 8 --dry-run": (
        f"{HERE}::test_custom_genome_walkthrough",
        "tests/test_workflow_genome.py::test_adding_a_genome_runs_only_its_jobs",
        "tests/test_workflow_genome.py::test_download_through_workflow"),
    # an external checkpoint; your own config
    "cp config/config.yaml my.yaml": (f"{HERE}::test_external_checkpoint_config",),
    "snakemake --cores 8 --configfile my.yaml": (
        f"{HERE}::test_external_checkpoint_config",
        "tests/test_workflow_score.py::test_scores_gathered_from_regions",
        "tests/test_workflow_genome.py::test_config_errors_are_one_line"),
    # a SLURM run, a cloud run
    "snakemake --profile profiles/slurm": (
        "tests/test_profiles.py::test_slurm_profile_dry_runs",
        "tests/test_slurm.py::test_jobs_ran_through_slurm_and_only_gpu_rules_asked_for_a_gpu",
        "tests/test_slurm.py::test_slurm_outputs_equal_a_local_run"),
    "snakemake --profile profiles/kubernetes": (
        "tests/test_profiles.py::test_kubernetes_profile_dry_runs",
        "tests/test_s3.py::test_inputs_read_from_and_outputs_written_to_the_bucket"),
    "snakemake --profile profiles/googlebatch": (
        "tests/test_profiles.py::test_googlebatch_profile_dry_runs",),
    "snakemake --profile profiles/awsbatch": (
        "tests/test_profiles.py::test_awsbatch_profile_dry_runs",
        "tests/test_s3.py::test_inputs_read_from_and_outputs_written_to_the_bucket"),
}

#: What a `dnalm` subcommand logs while it runs (progress on the terminal, every 10 %).
PROGRESS = {"download": "downloading sacCer3.fa.gz: ", "chunk": "chunking sacCer3: ",
            "tokenize": "tokenizing chunks", "score-variants": "forward passes: ",
            "embed": "embedding batches: ", "predict": "prediction batches: "}


@dataclass(frozen=True)
class Command:
    text: str
    line: int

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text, comments=True)


def _drop_comment(line: str) -> str:
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def fenced_blocks(language: str) -> list[tuple[int, str]]:
    """(first line number, body) of every README block fenced as ```<language>."""
    text = README.read_text()
    return [(text[: m.start(2)].count("\n") + 1, m.group(2))
            for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)
            if m.group(1) == language]


def readme_commands() -> list[Command]:
    """Every command of the README, in the order it appears."""
    commands = []
    for first, body in fenced_blocks("sh"):
        pending, start = "", 0
        for offset, raw in enumerate(body.splitlines()):
            line = _drop_comment(raw).strip()
            if not line and not pending:
                continue
            start = start if pending else first + offset
            if line.endswith("\\"):
                pending += line[:-1].rstrip() + " "
                continue
            commands.append(Command(pending + line, start))
            pending = ""
    text = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), README.read_text(),
                  flags=re.M | re.S)
    for m in re.finditer(r"`([^`]+)`", text):  # a code span may wrap onto the next line
        span = " ".join(m.group(1).split())
        words = span.split()
        program = words[1] if re.fullmatch(r"[A-Z_]+=\S*", words[0]) and len(words) > 1 \
            else words[0]
        if len(words) > 1 and (program in PROGRAMS or program.startswith(".venv/bin/")):
            commands.append(Command(span, text[: m.start()].count("\n") + 1))
    return sorted(commands, key=lambda c: c.line)


def covering(command: Command) -> str | None:
    """The longest ``COVERAGE`` prefix the command starts with (whole words)."""
    hits = [key for key in COVERAGE if command.text == key or command.text.startswith(key + " ")]
    return max(hits, key=len) if hits else None


def run_here(test: str) -> list[Command]:
    """The README commands that the test ``test`` of this file runs."""
    return [c for c in readme_commands()
            if f"{HERE}::{test}" in COVERAGE.get(covering(c) or "", ())]


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_readme_command_is_covered() -> None:
    commands = readme_commands()
    assert len(commands) > 20, "the README parser found too few commands"
    uncovered = [f"README.md:{c.line}: {c.text}" for c in commands if covering(c) is None]
    assert not uncovered, "README commands without a test (add them to COVERAGE):\n" + \
        "\n".join(uncovered)
    stale = [key for key in COVERAGE if not any(covering(c) == key for c in commands)]
    assert not stale, f"COVERAGE entries no README command uses: {stale}"
    for key, nodes in COVERAGE.items():
        assert nodes, key
        for node in nodes:
            file, _, name = node.partition("::")
            assert (REPO / file).is_file(), f"{key}: {file} does not exist"
            assert name in _test_functions(REPO / file), f"{key}: {node} does not exist"


def test_readme_walks_a_new_user_through_the_pipeline() -> None:
    """The issue's walkthrough, in this order of sections; every link of the overview resolves."""
    text = README.read_text()
    headings = re.findall(r"^#+ (.+)$", text, re.M)
    anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
    links = re.findall(r"\]\(#([\w-]+)\)", text)
    assert len(links) >= 6 and set(links) <= anchors, set(links) - anchors
    for heading in ("Two commands", "A custom genome", "Clusters and cloud batch",
                    "External checkpoints", "Reading the outputs"):
        assert heading in headings, heading
    for words in ("A SLURM run", "A cloud run"):
        assert f"**{words}**" in text


# --- commands run as written -----------------------------------------------------------------


def _tiny_task(source: Path, out: Path, per_class: dict[str, int]) -> None:
    out.mkdir(parents=True)
    for split, n in per_class.items():
        table = pd.read_csv(source / f"{split}.csv")
        table.groupby("label", group_keys=False).head(n).to_csv(out / f"{split}.csv", index=False)


def _env(**extra: str) -> dict[str, str]:
    """The environment with the test's Python first on the PATH (``dnalm``, ``snakemake``)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "PYTHONPATH": str(REPO / "src"), **extra}


def _venv() -> Path:
    return REPO / ".venv" if (REPO / ".venv" / "bin" / "activate").is_file() else Path(sys.prefix)


def run_as_written(command: Command, cwd: Path, env: dict[str, str],
                   ) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", command.text], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, (f"README.md:{command.line}: {command.text}\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A scratch directory laid out like the repository after `make run`, with tiny stand-ins:
    ``data/`` (the demo slices; 50 rows of the enhancer task), ``.venv``, the demo genome
    prepared, a random tiny ``results/models/demo`` and the demo's score tables (1000 Genomes,
    ClinVar), written by the functions the workflow's rules call; and an HTTP server for
    ``ucsc:`` downloads."""
    work = tmp_path_factory.mktemp("readme") / "repo"
    scratch = tmp_path_factory.mktemp("readme_model")
    (work / "data").mkdir(parents=True)
    (work / ".venv").symlink_to(_venv())
    for name in ("demo_chr20_hnf4a", "hg38_chr16_axin1_slice", "clinvar_chr20"):
        (work / "data" / name).symlink_to(REPO / "data" / name)
    (work / "tests" / "data").mkdir(parents=True)  # the published-checkpoint fixtures
    (work / "tests" / "data" / "published").symlink_to(REPO / "tests" / "data" / "published")
    _tiny_task(REPO / "data/tasks/human_enhancers_cohn", work / "data/tasks/human_enhancers_cohn",
               {"train": 20, "test": 5})
    genome = work / "results/genomes/demo/genome.fa.gz"
    prepare_genome(DEMO_FASTA, genome, genome.parent / "genome_stats.parquet", genome_id="demo")
    model = make_model(make_tokenizer("char", scratch, genome), work / "results/models/demo",
                       max_positions=130)
    vcf = REPO / "data/demo_chr20_hnf4a/1kg_pilot_sites.vcf"
    score_vcf_region(model, genome, vcf, scratch / "region0.parquet", cfg=ScoreConfig(), gpus=0)
    gather_scores([scratch / "region0.parquet"],
                  work / "results/scores/demo/demo/demo_1kg.parquet")
    clinvar = scratch / "clinvar20.fa.gz"   # the ClinVar set on its masked chr20 (clinvar20)
    prepare_genome(REPO / "data/clinvar_chr20/chr20_sites_3kb.fa.gz", clinvar,
                   scratch / "clinvar20_stats.parquet", genome_id="clinvar20")
    score_vcf_region(model, clinvar,
                     REPO / "data/clinvar_chr20/clinvar_pathogenic_vs_gnomad_common_chr20.vcf",
                     scratch / "clinvar0.parquet", cfg=ScoreConfig(), gpus=0)
    gather_scores([scratch / "clinvar0.parquet"],
                  work / "results/scores/clinvar20/demo/clinvar_chr20.parquet")

    server = FileServer(tmp_path_factory.mktemp("www"))
    served = server.root / "sacCer3" / "bigZips" / "sacCer3.fa.gz"
    served.parent.mkdir(parents=True)
    shutil.copy(LAMBDA_FASTA, served)
    server.thread.start()
    try:
        yield work, _env(DNALM_UCSC_BASE_URL=f"http://127.0.0.1:{server.port}")
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def _path_arguments(command: Command) -> list[str]:
    """Arguments that name files or folders (inputs and outputs), relative to the working dir."""
    return [w for w in command.words[1:]
            if not w.startswith("-") and ":" not in w and not w.startswith("~")
            and ("/" in w or re.search(r"\.(parquet|gz|bw|vcf|bed|fa|gtf|tsv|csv)$", w))]


def test_dnalm_commands_run_as_written(workspace: tuple[Path, dict[str, str]]) -> None:
    """Every `dnalm` and `python -m dnalm.results` command of the README, in README order, in one
    working directory: each exits 0, every file it names exists afterwards, and the long steps
    log their progress."""
    work, env = workspace
    commands = run_here("test_dnalm_commands_run_as_written")
    assert any(c.words[:2] == ["dnalm", "download"] for c in commands)
    ran = set()
    for command in commands:
        if command.words[0] == "source":
            proc = run_as_written(Command(f"{command.text} && command -v dnalm snakemake",
                                          command.line), work, env)
            found = proc.stdout.split()
            assert len(found) == 2 and all("/bin/" in p for p in found), proc.stdout
            continue
        proc = run_as_written(command, work, env)
        for path in _path_arguments(command):
            assert (work / path).exists(), f"README.md:{command.line}: {path} was not written"
        subcommand = command.words[1]
        if command.words[0] == "dnalm" and subcommand in PROGRESS:
            lines = [ln for ln in proc.stderr.splitlines() if PROGRESS[subcommand] in ln]
            assert lines and "%" in lines[-1], (command.text, proc.stderr[-2000:])
        ran.add(subcommand)
    assert {"download", "prepare-genome", "chunk", "build-tokenizer", "tokenize", "finetune",
            "score-variants", "saturate", "score-coding", "embed", "predict", "variant-effects",
            "mutation-map", "evaluate", "doctor"} <= ran
    scores = pd.read_parquet(work / "scores.parquet")
    assert len(scores) == 16 and scores["score"].notna().all()
    assert (work / "out/cohn_demo/metrics.json").is_file()


def test_python_blocks_run(workspace: tuple[Path, dict[str, str]]) -> None:
    work, env = workspace
    blocks = fenced_blocks("python")
    assert blocks
    for line, body in blocks:
        proc = subprocess.run([sys.executable, "-c", body], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"README.md:{line}:\n{proc.stderr[-3000:]}"
        assert proc.stdout.strip(), f"README.md:{line}: printed nothing"


def _repo_copy(dest: Path) -> Path:
    """The workflow (Snakefile, rules, scripts, report, config) with ``data/`` linked."""
    dest.mkdir(parents=True)
    shutil.copy(REPO / "Snakefile", dest)
    for name in ("rules", "scripts", "report", "config"):
        shutil.copytree(REPO / name, dest / name)
    (dest / "data").symlink_to(REPO / "data")
    return dest


def test_custom_genome_walkthrough(tmp_path: Path) -> None:
    """The sheet row is appended as written; the dry run plans the new genome's download,
    preparation and chunking (the run itself: tests/test_workflow_genome.py)."""
    work = _repo_copy(tmp_path / "repo")
    commands = run_here("test_custom_genome_walkthrough")
    assert [c.words[0] for c in commands] == ["printf", "snakemake"]
    before = set(parse_sheet(work / "config/genomes.tsv"))
    output = ""
    for command in commands:
        proc = run_as_written(command, work, _env())
        output += proc.stdout + proc.stderr
    added = set(parse_sheet(work / "config/genomes.tsv")) - before
    assert len(added) == 1
    (genome,) = added
    for rule in ("download_genome", "prepare_genome", "chunk_genome", "tokenize_genome"):
        assert re.search(rf"rule {rule}:\n(?:    .*\n)*?    wildcards: genome={genome}\b",
                         output), (rule, output[-3000:])


def _merge(base: dict, change: dict) -> dict:
    merged = dict(base)
    for key, value in change.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if both else value
    return merged


def test_external_checkpoint_config(tmp_path: Path) -> None:
    """`cp` as written, then each README YAML block applied to the copy: the result is a valid
    config whose scoring models are all defined (the workflow run with an external checkpoint:
    tests/test_workflow_score.py)."""
    work = _repo_copy(tmp_path / "repo")
    for command in run_here("test_external_checkpoint_config"):
        if command.words[0] == "cp":
            run_as_written(command, work, _env())
    config = yaml.safe_load((work / "my.yaml").read_text())
    schema = json.loads((REPO / "config/config.schema.json").read_text())
    blocks = fenced_blocks("yaml")
    assert blocks
    for line, body in blocks:
        edited = _merge(config, yaml.safe_load(body))
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(edited)]
        assert not errors, f"README.md:{line}: {errors}"
        known = set(edited["pretraining"]["models"]) | set(edited.get("external_models", {}))
        assert set(edited["scoring"]["models"]) <= known, f"README.md:{line}"
        assert any(m in edited.get("external_models", {}) for m in edited["scoring"]["models"])


def _make(*args: str, cores: str | None = None) -> str:
    """What ``make -n`` would run (``cores``: the CORES environment variable, else unset)."""
    env = {k: v for k, v in os.environ.items() if k != "CORES"}
    env.update({"CORES": cores} if cores else {})
    proc = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_targets_run_what_the_tests_run() -> None:
    """`make run` runs the Snakefile on the embedded config (what the demo workflow tests run,
    on a shortened schedule) and says where the results are; `make test` is what CI runs;
    first use installs with pip; `make lint` passes."""
    stamp = ".venv/.dnalm-installed"
    run = _make("-o", stamp, "run")
    assert ".venv/bin/snakemake --cores 2 --printshellcmds" in run
    assert "--configfile" not in run and ".venv/bin/python -m dnalm.results" in run
    assert "--cores 8 " in _make("-o", stamp, "run", cores="8")
    # the whole suite, test files spread over two pytest-xdist workers
    assert _make("-o", stamp, "test").split() == [
        ".venv/bin/pytest", "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder"]
    assert (REPO / ".ci/run").read_text().rstrip().splitlines()[-1] == "make test"
    assert "pip install --quiet --disable-pip-version-check -e '.[dev]'" in \
        _make("-W", "pyproject.toml", "run")
    lint = _make("-o", stamp, "lint").strip()
    assert lint == ".venv/bin/ruff check ."
    proc = subprocess.run([str(Path(sys.executable).with_name("ruff")), "check", "."], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_unit_test_command_leaves_out_workflow_tests() -> None:
    """The README's unit-test line, on two test files: the workflow-marked ones are left out."""
    (command,) = run_here("test_unit_test_command_leaves_out_workflow_tests")
    words = command.words
    marker = words[words.index("-m") + 1]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", marker, "--collect-only", "-q",
         "-p", "no:cacheprovider", "tests/test_cli.py", "tests/test_workflow_genome.py"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    collected = [ln for ln in proc.stdout.splitlines() if "::" in ln]
    assert any(ln.startswith("tests/test_cli.py::") for ln in collected)
    assert not any("test_workflow_genome" in ln for ln in collected)
    assert "deselected" in proc.stdout
