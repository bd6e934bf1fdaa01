"""The embeddings: and predictions: sections in the workflow: jobs planned, bad sets refused.

Running them is part of the demo (tests/test_workflow_demo.py); here only dry runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import DEMO_FASTA
from tests.workflow_utils import (
    REPO,
    assert_dry_run_fails_in_one_line,
    default_config,
    make_workdir,
    planned_jobs,
)

pytestmark = pytest.mark.workflow


def test_demo_config_plans_embedding_and_prediction_jobs(tmp_path: Path) -> None:
    finetune = default_config()["finetune"]
    tasks = {name: {**task, "train": str(REPO / task["train"]), "test": str(REPO / task["test"])}
             for name, task in finetune["tasks"].items()}
    workdir = make_workdir(tmp_path / "run", {"demo": str(DEMO_FASTA)},
                           finetune={**finetune, "tasks": tasks})
    targets = ["results/embeddings/promoters/demo_pca.png",
               "results/embeddings/promoters/finetune/human_promoters_chr20/demo_full_report.html",
               "results/predictions/promoters/human_promoters_chr20/demo_full.html"]
    jobs = planned_jobs(workdir, *targets)
    assert ("embed_model", "seqset=promoters, model=demo") in jobs
    assert ("embed_run", "seqset=promoters, task=human_promoters_chr20, run=demo_full") in jobs
    assert ("predict", "seqset=promoters, task=human_promoters_chr20, run=demo_full") in jobs
    reports = sorted(wc for rule, wc in jobs if rule == "embedding_report")
    assert reports == ["seqset=promoters, encoder=demo",
                       "seqset=promoters, encoder=finetune/human_promoters_chr20/demo_full"]
    assert ("prediction_report",
            "seqset=promoters, task=human_promoters_chr20, run=demo_full") in jobs


@pytest.mark.parametrize(("change", "message"), [
    ({"embeddings": {"inputs": {"x": {"fasta": "a.fa", "table": "b.csv"}}}},
     "embeddings.inputs.x: name exactly one of fasta, table or bed (got fasta, table)"),
    ({"predictions": {"runs": ["human_enhancers_cohn/nope"]}},
     "predictions.runs: 'human_enhancers_cohn/nope' is not a task/run under finetune"),
    ({"embeddings": {"inputs": {"x": {"bed": "a.bed", "genome": "mars"}}}},
     "embeddings.inputs.x: genome 'mars' is not in the genome sheet"),
    ({"embeddings": {"pooling": "max"}}, "config key embeddings.pooling: 'max' is not one of"),
])
def test_bad_sets_are_one_line_errors(tmp_path: Path, change: dict, message: str) -> None:
    workdir = make_workdir(tmp_path / "run", {"demo": str(DEMO_FASTA)})
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    for section, values in change.items():
        config[section] = {**config[section], **values}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert_dry_run_fails_in_one_line(workdir, message)
