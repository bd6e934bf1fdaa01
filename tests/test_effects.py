"""Fine-tuned variant effects and mutation maps equal two plain forward passes per variant.

The run is rebuilt without dnalm (transformers' classifier on the base directory + peft's
adapter, ``AutoTokenizer``), each variant's window is cut from the genome by hand, and the
reference and alternate windows are run one at a time.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyBigWig
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from dnalm.cli import main
from dnalm.finetune.effects import effects_region, mutation_matrix, saturate_effects
from dnalm.finetune.settings import EffectSettings
from dnalm.score.vep import reverse_complement
from tests import test_predict

# the tiny character-level base model and its LoRA / full regression runs of test_predict
base, lora_run = test_predict.base, test_predict.lora_run
full_regression_run = test_predict.full_regression_run

HEADER = ("##fileformat=VCFv4.2\n##contig=<ID=chrA,length=3000>\n##contig=<ID=chrZ>\n"
          "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


def _genome(base: Path) -> tuple[Path, str]:
    path = base.parent / "g.fa"
    text = "".join(path.read_text().splitlines()[1:])
    return path, text


def _vcf(tmp_path: Path, seq: str) -> Path:
    """SNVs (one at the contig start, one multi-allelic), an insertion, a deletion, a REF
    mismatch and a variant on an unknown contig."""
    def ref(pos: int, n: int = 1) -> str:
        return seq[pos - 1: pos - 1 + n]

    other = "C" if ref(400) != "C" else "G"
    bad = "A" if ref(900) != "A" else "C"
    rows = [("chrA", 3, "s1", ref(3), "T" if ref(3) != "T" else "G"),
            ("chrA", 400, "s2", ref(400), f"{other},T" if other != "T" else "C,T"),
            ("chrA", 1200, "ins", ref(1200), ref(1200) + "GG"),
            ("chrA", 2000, "del", ref(2000, 3), ref(2000)),
            ("chrA", 900, "bad", bad, "G" if bad != "G" else "T"),
            ("chrZ", 10, "nowhere", "A", "C")]
    rows.sort(key=lambda r: (r[0], r[1]))
    body = "".join(f"{c}\t{p}\t{i}\t{r}\t{a}\t.\t.\t.\n" for c, p, i, r, a in rows)
    path = tmp_path / "v.vcf"
    path.write_text(HEADER + body)
    return path


def _by_hand(base: Path, run: Path):
    from peft import PeftModel

    classifier = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    model = PeftModel.from_pretrained(classifier, str(run / "adapter")).eval()
    tok = AutoTokenizer.from_pretrained(run / "adapter")

    def probs(seq: str) -> np.ndarray:
        ids = tok(seq)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        return torch.softmax(logits.double(), -1).numpy()

    return probs


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def _windows(seq: str, pos: int, ref: str, alt: str, window: int) -> tuple[str, str, bool]:
    start = pos - 1
    ws = start + len(ref) // 2 - window // 2
    clipped = min(max(ws, 0), len(seq) - window)
    ref_w = seq[clipped:clipped + window]
    p = start - clipped
    return ref_w, ref_w[:p] + alt + ref_w[p + len(ref):], clipped != ws


@pytest.mark.parametrize("average_strands", [False, True])
def test_lora_effects_equal_two_forward_passes_per_variant(base: Path, lora_run: Path,
                                                           tmp_path: Path,
                                                           average_strands: bool) -> None:
    genome, seq = _genome(base)
    vcf = _vcf(tmp_path, seq)
    settings = EffectSettings(window_bp=30, average_strands=average_strands)
    out = tmp_path / "fx.parquet"
    got = effects_region(lora_run, genome, vcf, out, settings=settings, gpus=0)
    probs = _by_hand(base, lora_run)
    assert got["record"].tolist() == [0, 1, 1, 2, 3, 4, 5]
    for row in got.itertuples():
        if row.reason:
            assert np.isnan(row.score)
            continue
        ref_w, alt_w, shifted = _windows(seq, row.pos, row.ref, row.alt, 30)
        p_ref, p_alt = probs(ref_w), probs(alt_w)
        if average_strands:
            p_ref = (p_ref + probs(reverse_complement(ref_w))) / 2
            p_alt = (p_alt + probs(reverse_complement(alt_w))) / 2
        assert row.window_shifted == shifted
        np.testing.assert_allclose([row.ref_prob_1, row.alt_prob_1], [p_ref[1], p_alt[1]],
                                   atol=1e-5)
        assert row.delta_prob_0 == pytest.approx(p_alt[0] - p_ref[0], abs=1e-5)
        assert row.score == pytest.approx(_logit(p_alt[1]) - _logit(p_ref[1]), abs=1e-4)
    reasons = dict(zip(got["id"], got["reason"], strict=True))
    assert reasons["bad"].startswith("REF mismatch") and "not in genome" in reasons["nowhere"]
    assert got["score"].notna().sum() == 5  # s1, both alleles of s2, ins, del
    meta = json.loads(pq.read_schema(out).metadata[b"dnalm"])
    assert meta["class_index"] == 1 and meta["class_name"] == "pos"


def test_regression_effect_is_the_change_in_value(base: Path, full_regression_run: Path,
                                                  tmp_path: Path) -> None:
    genome, seq = _genome(base)
    vcf = _vcf(tmp_path, seq)
    got = effects_region(full_regression_run, genome, vcf, tmp_path / "fx.parquet",
                         settings=EffectSettings(window_bp=30), gpus=0)
    model = AutoModelForSequenceClassification.from_pretrained(
        full_regression_run / "model").eval()
    tok = AutoTokenizer.from_pretrained(full_regression_run / "model")
    meta = json.loads((full_regression_run / "model" / "dnalm_finetune.json").read_text())

    def value(s: str) -> float:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([tok(s)["input_ids"]])).logits[0, 0]
        return float(out) * meta["target_std"] + meta["target_mean"]

    row = got[got["id"] == "ins"].iloc[0]
    ref_w, alt_w, _ = _windows(seq, row.pos, row.ref, row.alt, 30)
    assert row.score == pytest.approx(value(alt_w) - value(ref_w), abs=1e-4)
    assert row.ref_value == pytest.approx(value(ref_w), abs=1e-4)


def test_tokens_beyond_the_input_are_cropped_around_the_variant(base: Path, lora_run: Path,
                                                                tmp_path: Path) -> None:
    """A 60-bp window holds 60 tokens, the run reads 32: the 32 centred on the SNV."""
    genome, seq = _genome(base)
    vcf = tmp_path / "one.vcf"
    alt = "A" if seq[1499] != "A" else "C"
    vcf.write_text(HEADER + f"chrA\t1500\tx\t{seq[1499]}\t{alt}\t.\t.\t.\n")
    got = effects_region(lora_run, genome, vcf, tmp_path / "fx.parquet",
                         settings=EffectSettings(window_bp=60), gpus=0)
    probs = _by_hand(base, lora_run)
    ref_w, alt_w, _ = _windows(seq, 1500, seq[1499], alt, 60)
    p = 1499 - (1499 - 30)
    lo = p - 16
    assert got["window"][0] == f"chrA:{1499 - 30}-{1499 + 30}"
    assert got["score"][0] == pytest.approx(
        _logit(probs(alt_w[lo:lo + 32])[1]) - _logit(probs(ref_w[lo:lo + 32])[1]), abs=1e-4)


def test_partition_jobs_together_equal_one_job(base: Path, lora_run: Path,
                                               tmp_path: Path) -> None:
    """The workflow's region jobs read the variant set's partition (shared with zero-shot
    scoring); together they give every row of a whole-file run."""
    from dnalm.partition import n_jobs, partition_variants
    from dnalm.score.settings import PartitionSettings

    genome, seq = _genome(base)
    vcf = _vcf(tmp_path, seq)
    settings = EffectSettings(window_bp=30)
    whole = effects_region(lora_run, genome, vcf, tmp_path / "all.parquet", settings=settings,
                           gpus=0)
    part = tmp_path / "partition"
    partition_variants(vcf, genome, part, settings=PartitionSettings(regions=2))
    assert n_jobs(part) == 2
    parts = [effects_region(lora_run, genome, None, tmp_path / f"{r}.parquet", settings=settings,
                            partition=part, job=r, gpus=0) for r in (0, 1)]
    joined = pd.concat(parts).sort_values(["record", "alt"]).reset_index(drop=True)
    # batches are composed differently: equal up to float rounding of padded batches
    pd.testing.assert_frame_equal(joined, whole.sort_values(["record", "alt"])
                                  .reset_index(drop=True), check_exact=False, atol=1e-5)


def test_cli_writes_table_and_annotated_vcf(base: Path, lora_run: Path, tmp_path: Path) -> None:
    genome, seq = _genome(base)
    vcf = _vcf(tmp_path, seq)
    out, annotated = tmp_path / "fx.parquet", tmp_path / "fx.vcf.gz"
    assert main(["variant-effects", "--run", str(lora_run), "--genome", str(genome), "--vcf",
                 str(vcf), "--out", str(out), "--annotated-vcf", str(annotated),
                 "--window-bp", "30", "--cpu"]) == 0
    table = pd.read_parquet(out)
    with gzip.open(annotated, "rt") as handle:
        header = handle.read()
    lines = [line for line in header.splitlines() if not line.startswith("##")]
    assert len(lines) == 1 + 6 and Path(f"{annotated}.tbi").is_file()
    assert "##INFO=<ID=DNALM_FT," in header and "##INFO=<ID=DNALM_FT_DP," in header
    by_id = {line.split("\t")[2]: line.split("\t")[7] for line in lines[1:]}
    s2 = table[table["id"] == "s2"]
    assert by_id["s2"].startswith("DNALM_FT=" + ",".join(f"{v:.6g}" for v in s2["score"]))
    assert "DNALM_FT_SKIP=REF_mismatch" in by_id["bad"] and "DNALM_FT=." in by_id["nowhere"]


def test_mutation_map_equals_forward_passes_in_its_windows(base: Path, lora_run: Path,
                                                           tmp_path: Path) -> None:
    genome, seq = _genome(base)
    bed = tmp_path / "r.bed"
    bed.write_text("chrA\t100\t140\tr1\nchrA\t2990\t3000\ttail\n")
    out, bw, png = tmp_path / "sat.parquet", tmp_path / "sat.bw", tmp_path / "map.png"
    frame = saturate_effects(lora_run, genome, bed, out, bw, png,
                             settings=EffectSettings(window_bp=30), gpus=0)
    assert len(frame) == 3 * 50 and frame["score"].notna().all()
    probs = _by_hand(base, lora_run)
    for row in frame.iloc[[0, 61, 149]].itertuples():
        ws, we = map(int, row.window.split(":")[1].split("-"))
        assert ws <= row.pos - 1 < we and we - ws == 30
        ref_w = seq[ws:we]
        p = row.pos - 1 - ws
        alt_w = ref_w[:p] + row.alt + ref_w[p + 1:]
        assert row.score == pytest.approx(_logit(probs(alt_w)[1]) - _logit(probs(ref_w)[1]),
                                          abs=1e-4)
    r1 = frame[frame["region"] == "r1"]
    ref_seq, matrix = mutation_matrix(r1)
    assert ref_seq == seq[100:140] and matrix.shape == (4, 40)
    with pyBigWig.open(str(bw)) as handle:
        got = np.array(handle.values("chrA", 100, 140))
    np.testing.assert_allclose(got, np.abs(matrix).max(axis=0), rtol=1e-5)
    assert png.stat().st_size > 5000
    assert main(["mutation-map", "--run", str(lora_run), "--genome", str(genome), "--bed",
                 str(bed), "--out", str(tmp_path / "c.parquet"), "--bigwig",
                 str(tmp_path / "c.bw"), "--png", str(tmp_path / "c.png"), "--window-bp", "30",
                 "--cpu"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "c.parquet"), frame)


def test_bad_input_is_one_line(base: Path, lora_run: Path, tmp_path: Path, capsys) -> None:
    genome, seq = _genome(base)
    vcf = _vcf(tmp_path, seq)
    assert main(["variant-effects", "--run", str(base), "--genome", str(genome), "--vcf",
                 str(vcf), "--out", str(tmp_path / "x.parquet")]) == 1
    assert "not a fine-tuning run" in capsys.readouterr().err
    assert main(["variant-effects", "--run", str(lora_run), "--genome", str(genome), "--vcf",
                 str(vcf), "--out", str(tmp_path / "x.parquet"), "--class-index", "5"]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("dnalm: error:")]
    assert "Traceback" not in err and len(errors) == 1
    assert "class_index 5 is out of range for the run's 2 classes" in errors[0]
    assert not (tmp_path / "x.parquet").exists()
