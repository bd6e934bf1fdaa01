"""The evaluation: section in the workflow: the demo's ClinVar set scored on its masked chr20 and
evaluated (with a tiny external model, so no pretraining), the demo config's plan, and bad sets
refused in one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import DEMO_FASTA
from tests.scoring_utils import make_model, make_tokenizer
from tests.workflow_utils import (
    REPO,
    assert_dry_run_fails_in_one_line,
    make_workdir,
    planned_jobs,
    snakemake,
)

pytestmark = pytest.mark.workflow

CLINVAR = REPO / "data/clinvar_chr20"
VCF = CLINVAR / "clinvar_pathogenic_vs_gnomad_common_chr20.vcf"
GENOME = CLINVAR / "chr20_sites_3kb.fa.gz"
TARGETS = [f"results/evaluation/clinvar_chr20{ext}" for ext in (".parquet", ".html",
                                                                 "_curves.png")]


def _workdir(path: Path, model: Path | str = "/nonexistent", **overrides: object) -> Path:
    scoring = {"models": ["tiny"], "regions": 1, "saturation": {},
               "variants": {"clinvar_chr20": {"genome": "clinvar20", "path": str(VCF)}}}
    return make_workdir(path, {"clinvar20": str(GENOME)},
                        external_models={"tiny": {"path": str(model)}}, scoring=scoring,
                        tokenizers={}, pretraining={"models": {}},
                        finetune={"tasks": {}, "models": []}, tracks={},
                        coding={"variants": [], "annotations": {}}, **overrides)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("eval")
    model = make_model(make_tokenizer("char", tmp, DEMO_FASTA), tmp / "tiny", max_positions=130)
    workdir = _workdir(tmp / "run", model, evaluation={"models": ["tiny"], "n_bootstrap": 200})
    snakemake(workdir, *TARGETS)
    return workdir


def test_clinvar_set_scored_on_the_masked_genome_and_evaluated(evaluated: Path) -> None:
    table = pd.read_parquet(evaluated / TARGETS[0])
    (row,) = table.to_dict("records")
    assert (row["set"], row["model"], row["score"], row["direction"]) == (
        "clinvar_chr20", "tiny", "score", "lower")
    # every site is on the masked genome (REF matches), so all 48 are scored
    assert (row["n"], row["n_positive"], row["n_negative"], row["n_unscored"]) == (48, 27, 21, 0)
    assert row["auroc_low"] <= row["auroc"] <= row["auroc_high"]
    assert row["auprc_chance"] == pytest.approx(27 / 48) and row["n_bootstrap"] == 200
    html = (evaluated / TARGETS[1]).read_text()
    assert "AUROC" in html and "−score" in html
    assert (evaluated / TARGETS[2]).read_bytes()[:4] == b"\x89PNG"
    assert "AUROC" in (evaluated / "logs/evaluation/clinvar_chr20.log").read_text()
    assert (evaluated / "results/benchmarks/evaluation/clinvar_chr20.tsv").is_file()


def test_demo_config_plans_the_evaluation(tmp_path: Path) -> None:
    """The demo (its own sheet, with clinvar20) evaluates the demo model's zero-shot scores;
    the demo's tokenizers and model do not learn from clinvar20."""
    sheet = {"demo": str(DEMO_FASTA), "clinvar20": str(GENOME),
             "axin1": str(REPO / "data/hg38_chr16_axin1_slice/chr16_186964_397118.fa")}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "data").symlink_to(REPO / "data")   # the demo names data/... paths
    workdir = make_workdir(tmp_path / "run", sheet)
    jobs = planned_jobs(workdir, TARGETS[0])
    assert ("evaluate", "evalset=clinvar_chr20") in jobs
    assert ("gather_scores", "genome=clinvar20, model=demo, vcf=clinvar_chr20") in jobs
    assert not any(wc.startswith("genome=clinvar20, tokenizer=") for _, wc in jobs)


@pytest.mark.parametrize(("change", "message"), [
    ({"sets": {"x": {"variants": "nope", "label": {"info": "LABEL"}}}},
     "evaluation.sets.x.variants: 'nope' is not a scoring.variants set"),
    ({"models": ["ghost"]}, "evaluation.models: 'ghost' is not under scoring.models"),
    ({"runs": ["enh/demo"]}, "evaluation.runs: 'enh/demo' is not under effects.runs"),
    ({"sets": {"x": {"variants": "clinvar_chr20", "label": {"info": "LABEL", "column": "c"}}}},
     "evaluation.sets.x.label: name exactly one of info"),
    ({"sets": {"x": {"variants": "clinvar_chr20", "label": {"column": "LABEL"}}}},
     "column 'LABEL', but clinvar_chr20 is a VCF"),
    ({"zero_shot_direction": "down"},
     "config key evaluation.zero_shot_direction: 'down' is not one of"),
])
def test_bad_sets_are_one_line_errors(tmp_path: Path, change: dict, message: str) -> None:
    workdir = _workdir(tmp_path / "run")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["evaluation"] = {**config["evaluation"], **change}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert_dry_run_fails_in_one_line(workdir, message)
