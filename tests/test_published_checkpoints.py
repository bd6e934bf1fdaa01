"""Published checkpoint directories, as their authors lay them out, through every dnalm stage.

The fixtures in ``tests/data/published/`` are tiny random-weight checkpoints written by the
authors' own code under the transformers 4.x it needs (provenance beside each), with what that
code computed on real GRCh37 sequences (``<family>.reference.npz``). Here they are read by
dnalm's one model-directory loader under the pinned transformers 5, with no remote code:

* recognised as the right family;
* dnalm's tokenizer gives the authors' input ids;
* the scorer's log-probabilities equal the authors' (1e-4);
* zero-shot variant scores equal a brute-force recomputation with plain forward passes;
* ``score-variants``, ``saturate``, ``finetune`` (LoRA and full), ``embed``, ``predict``,
  ``variant-effects``, ``mutation-map`` and ``import-checkpoint`` run on each directory as it
  is, and the native copy loads with plain ``AutoModelForMaskedLM``.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dnalm.cli import main
from dnalm.errors import DnalmError
from dnalm.genome import Genome
from dnalm.models.directory import inspect_model_dir, load_masked_lm
from dnalm.score.lm import MaskedLM
from dnalm.score.vep import ScoreConfig, score_variants
from dnalm.variants import check_against_genome, read_variants
from tests.scoring_utils import brute_force_masked_marginal

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "tests" / "data" / "published"
DEMO = ROOT / "data" / "demo_chr20_hnf4a"
FASTA = DEMO / "chr20_42000001_44000000.fa.gz"
VCF = DEMO / "1kg_pilot_sites.vcf"

#: fixture directory → (family dnalm must recognise, layout)
FAMILIES = {
    "dnabert1": ("dnabert1", "published"),
    "dnabert2": ("dnabert2", "published"),
    "ntv1": ("ntv1", "transformers"),
    "ntv2": ("ntv2", "published"),
    "gena_bert": ("gena_bert", "published"),
    "gena_bigbird": ("gena_bigbird", "published"),
}

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@cache
def demo_record() -> str:
    with gzip.open(FASTA, "rt") as handle:
        return "".join(line.strip() for line in handle if not line.startswith(">"))


@cache
def references(name: str) -> list[dict]:
    """The saved reference computations of one fixture, in one shape whatever its writer.

    Each entry: ``sequence``, ``input_ids`` (authors' tokenizer), ``positions`` (token
    indices), ``cols`` (vocabulary ids) and ``log_probs`` (positions x cols, from the authors'
    logits).
    """
    z = np.load(PUBLISHED / f"{name}.reference.npz")
    out = []
    if "names" in z and str(z["names"][0]).startswith("chr20"):  # NT v1/v2, DNABERT v1
        for i, label in enumerate(z["names"]):
            logits = torch.from_numpy(z[f"logits_{i}"]).double()
            out.append({"sequence": str(label).split("sequence=")[1],
                        "input_ids": z[f"input_ids_{i}"], "positions": z[f"positions_{i}"],
                        "cols": np.arange(logits.shape[1]),
                        "log_probs": torch.log_softmax(logits, -1).numpy()})
    elif "cols" in z:  # GENA-LM: logits at some vocabulary columns, plus the log-sum-exp
        record = demo_record()
        for label in z["names"]:
            region = z[f"{label}_region"]
            seq = record[int(region[0]) : int(region[1])]
            if len(region) > 2 and int(region[2]) >= 0:
                seq = seq[: int(region[2])] + "N" + seq[int(region[2]) + 1 :]
            ids = z[f"{label}_input_ids"]
            out.append({"sequence": seq, "input_ids": ids, "positions": np.arange(len(ids)),
                        "cols": z["cols"],
                        "log_probs": z[f"{label}_logits"] - z[f"{label}_lse"][:, None]})
    else:  # DNABERT-2
        for label in z["names"]:
            logits = torch.from_numpy(z[f"{label}.logits"]).double()
            out.append({"sequence": str(z[f"{label}.sequence"]),
                        "input_ids": z[f"{label}.input_ids"],
                        "positions": z[f"{label}.logit_positions"],
                        "cols": np.arange(logits.shape[1]),
                        "log_probs": torch.log_softmax(logits, -1).numpy()})
    return out


@cache
def scorer(name: str) -> MaskedLM:
    return MaskedLM(PUBLISHED / name, device="cpu")


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("genome") / "genome.fa.gz"
    assert main(["prepare-genome", str(FASTA), str(out), "--genome-id", "demo"]) == 0
    return out


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_directory_is_recognised(name: str) -> None:
    md = inspect_model_dir(PUBLISHED / name)
    assert (md.family.name, md.layout) == FAMILIES[name]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_tokenizer_gives_the_authors_ids(name: str) -> None:
    tokenizer = scorer(name).tokenizer
    for ref in references(name):
        ids = tokenizer.wrap(tokenizer.encode(ref["sequence"]).ids)
        assert ids.tolist() == ref["input_ids"].tolist()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_scorer_reproduces_the_authors_log_probabilities(name: str) -> None:
    lm = scorer(name)
    worst = 0.0
    for ref in references(name):
        got = lm.log_probs_at([ref["input_ids"]], [ref["positions"]])[0].numpy()
        worst = max(worst, float(np.abs(got[:, ref["cols"]] - ref["log_probs"]).max()))
    assert worst < 1e-4, f"{name}: max |Δ log p| {worst:.2e}"


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_variant_scores_equal_brute_force(name: str, genome: Path) -> None:
    lm = scorer(name)
    window = 300
    with Genome(genome) as g:
        variants = check_against_genome(read_variants(VCF), g).head(4)
        table = score_variants(lm, g, variants, ScoreConfig(window_bp=window))
        record = g.fetch(variants["genome_contig"].iloc[0], 0, g.lengths[
            variants["genome_contig"].iloc[0]]).upper()
    assert table["score"].notna().all(), table["reason"].tolist()
    for row in table.itertuples():
        ws = int(row.window.split(":")[1].split("-")[0])
        ref_w = record[ws : ws + window]
        p = int(row.start) - ws
        alt_w = ref_w[:p] + row.alt + ref_w[p + len(row.ref):]
        assert row.score == pytest.approx(brute_force_masked_marginal(lm, ref_w, alt_w), abs=1e-4)


def _task(tmp: Path) -> Path:
    """A 2-class task of 150-bp demo-genome sequences (label: GC-rich or not), 24 + 8 rows."""
    record = demo_record()
    rows = []
    for i in range(32):
        seq = record[20_000 + i * 9_000 : 20_150 + i * 9_000]
        gc = (seq.count("G") + seq.count("C")) / len(seq)
        rows.append({"sequence": seq, "label": int(gc > 0.42)})
    frame = pd.DataFrame(rows)
    tmp.mkdir(parents=True, exist_ok=True)
    frame.iloc[:24].to_csv(tmp / "train.csv", index=False)
    frame.iloc[24:].to_csv(tmp / "test.csv", index=False)
    return tmp


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_command_runs_on_the_published_directory(name: str, genome: Path,
                                                       tmp_path: Path) -> None:
    model = str(PUBLISHED / name)
    scores, vcf_out = tmp_path / "scores.parquet", tmp_path / "scores.vcf.gz"
    assert main(["score-variants", "--model", model, "--genome", str(genome), "--vcf", str(VCF),
                 "--out", str(scores), "--annotated-vcf", str(vcf_out), "--cpu",
                 "--window-bp", "400"]) == 0
    table = pd.read_parquet(scores)
    assert table["score"].notna().sum() == len(table) and vcf_out.is_file()
    bed = tmp_path / "region.bed"
    bed.write_text("chr20_42000001_44000000\t219300\t219320\tp\n")
    sat = tmp_path / "sat.parquet"
    assert main(["saturate", "--model", model, "--genome", str(genome), "--bed", str(bed),
                 "--out", str(sat), "--bigwig", str(tmp_path / "sat.bw"), "--cpu",
                 "--mode", "wt-marginal"]) == 0
    assert len(pd.read_parquet(sat)) == 60
    task = _task(tmp_path / "task")
    for method in ("lora", "full"):
        out = tmp_path / method
        assert main(["finetune", str(task), model, str(out), "--method", method, "--epochs",
                     "1", "--batch-size", "8", "--max-length", "64"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert np.isfinite(metrics["test"]["auroc"]) and metrics["parameters"]["trainable"] > 0
    # using the model (issue 16): embeddings of the base and the run, the run's predictions,
    # its variant effects and mutation map, on the directory as published
    lora = tmp_path / "lora"
    for which in (model, str(lora)):
        emb = tmp_path / f"emb_{Path(which).name}.parquet"
        assert main(["embed", which, str(task / "test.csv"), "--out", str(emb), "--cpu"]) == 0
        assert len(pd.read_parquet(emb)) == 8
    pred = tmp_path / "pred.parquet"
    assert main(["predict", str(lora), str(task / "test.csv"), "--out", str(pred), "--cpu"]) == 0
    assert np.allclose(pd.read_parquet(pred)[["prob_0", "prob_1"]].sum(axis=1), 1.0)
    fx = tmp_path / "fx.parquet"
    assert main(["variant-effects", "--run", str(lora), "--genome", str(genome), "--vcf",
                 str(VCF), "--out", str(fx), "--cpu"]) == 0
    assert pd.read_parquet(fx)["score"].notna().sum() == len(table)
    assert main(["mutation-map", "--run", str(lora), "--genome", str(genome), "--bed", str(bed),
                 "--out", str(tmp_path / "map.parquet"), "--bigwig", str(tmp_path / "map.bw"),
                 "--cpu"]) == 0


def test_native_copies_load_with_plain_transformers(tmp_path: Path) -> None:
    """``import-checkpoint`` writes a copy that dnalm reads back identically and that plain
    ``AutoModelForMaskedLM`` loads after ``import dnalm`` (in a fresh interpreter)."""
    probes = {}
    for name in sorted(FAMILIES):
        copy = tmp_path / name
        assert main(["import-checkpoint", str(PUBLISHED / name), str(copy)]) == 0
        short = references(name)[0]
        probes[name] = short["input_ids"].tolist()
        x = torch.tensor([probes[name]])
        with torch.no_grad():
            want = scorer(name).model(input_ids=x).logits
            again = load_masked_lm(copy).eval()(input_ids=x).logits
        assert torch.allclose(want, again, atol=1e-6), name
        np.save(tmp_path / f"{name}.npy", want.numpy())
    script = (
        "import json, sys, numpy as np, torch\n"
        "import dnalm\n"
        "from transformers import AutoModelForMaskedLM, AutoTokenizer\n"
        "root, probes = sys.argv[1], json.loads(sys.argv[2])\n"
        "for name, ids in probes.items():\n"
        "    model = AutoModelForMaskedLM.from_pretrained(f'{root}/{name}').eval()\n"
        "    AutoTokenizer.from_pretrained(f'{root}/{name}')\n"
        "    with torch.no_grad():\n"
        "        got = model(input_ids=torch.tensor([ids])).logits.numpy()\n"
        "    want = np.load(f'{root}/{name}.npy')\n"
        "    assert np.abs(got - want).max() < 1e-5, (name, np.abs(got - want).max())\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), json.dumps(probes)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_unrecognised_and_broken_directories_are_refused_in_one_line(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    shutil.copytree(PUBLISHED / "dnabert2", remote)
    config = json.loads((remote / "config.json").read_text())
    config.pop("alibi_starting_size")
    config["auto_map"] = {"AutoModelForMaskedLM": "my_code.MyModel"}
    (remote / "config.json").write_text(json.dumps(config))
    with pytest.raises(DnalmError, match=r"needs its own code|not recognised") as err:
        inspect_model_dir(remote)
    assert "\n" not in str(err.value)
    renamed = tmp_path / "renamed"
    shutil.copytree(PUBLISHED / "gena_bert", renamed)
    state = torch.load(renamed / "pytorch_model.bin", weights_only=True)
    key = next(k for k in state if "pre_attention_ln" in k)
    state[key.replace("pre_attention_ln", "attention_ln")] = state.pop(key)
    torch.save(state, renamed / "pytorch_model.bin")
    with pytest.raises(DnalmError) as err:
        load_masked_lm(renamed)
    assert "\n" not in str(err.value) and "renamed" in str(err.value)
