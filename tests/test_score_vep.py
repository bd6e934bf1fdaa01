"""Variant scoring equals a brute-force ESM-1v recomputation, for every tokenizer kind and mode."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dnalm.fasta import prepare_genome
from dnalm.genome import Genome
from dnalm.score.lm import MaskedLM
from dnalm.score.vep import ScoreConfig, score_variants
from dnalm.variants import check_against_genome
from tests.conftest import write_fasta
from tests.scoring_utils import brute_force, make_model, make_tokenizer, random_genome, rc, windows

GENOME_LEN = 4000


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("score")
    seq = random_genome(GENOME_LEN)
    src = write_fasta(tmp / "g.fa", {"chr7": seq})
    fa = tmp / "genome.fa.gz"
    prepare_genome(src, fa, tmp / "stats.parquet", genome_id="g")
    return tmp, seq, fa


def _variants(seq: str) -> pd.DataFrame:
    rows = [
        ("chr7", 1000, seq[999], "A" if seq[999] != "A" else "C"),  # SNV
        ("chr7", 1000, seq[999], "G" if seq[999] != "G" else "T"),  # second allele, same pos
        ("chr7", 2000, seq[1999:2001], "".join("T" if b != "T" else "A" for b in seq[1999:2001])),
        ("chr7", 2500, seq[2499], seq[2499] + "GA"),  # insertion
        ("chr7", 3000, seq[2999:3003], seq[2999]),  # deletion
        ("chr7", 1, seq[0], "C" if seq[0] != "C" else "G"),  # contig start: shifted window
        ("chr7", GENOME_LEN, seq[-1], "C" if seq[-1] != "C" else "G"),  # contig end
        ("chr7", 1490, seq[1489], "A" if seq[1489] != "A" else "T"),  # N in the window
        ("7", 1200, seq[1199], "A" if seq[1199] != "A" else "C"),  # alias
        ("chr7", 1100, "A" if seq[1099] != "A" else "C", "G"),  # REF mismatch
        ("chrX", 10, "A", "C"),  # unknown contig
    ]
    frame = pd.DataFrame(rows, columns=["contig", "pos", "ref", "alt"])
    frame["record"] = range(len(frame))
    frame["id"] = "."
    return frame


@pytest.mark.parametrize("kind", ["char", "kmer3", "nt3", "bpe"])
@pytest.mark.parametrize("mode", ["masked-marginal", "wt-marginal"])
def test_equals_brute_force(setup, kind: str, mode: str) -> None:
    tmp, seq, fa = setup
    model_dir = tmp / f"model_{kind}"
    if not model_dir.exists():
        make_model(make_tokenizer(kind, tmp, fa), model_dir)
    lm = MaskedLM(model_dir, device="cpu")
    window = {"char": 60, "kmer3": 60, "nt3": 120, "bpe": 80}[kind]
    with Genome(fa) as genome:
        checked = check_against_genome(_variants(seq), genome)
        table = score_variants(lm, genome, checked, ScoreConfig(mode=mode, window_bp=window,
                                                                batch_size=3))
    assert table.loc[9, "reason"].startswith("REF mismatch")
    assert table.loc[10, "reason"] == "contig chrX not in genome"
    assert table.loc[[9, 10], "score"].isna().all()
    assert bool(table.loc[5, "window_shifted"]) and bool(table.loc[6, "window_shifted"])
    for i in range(9):
        row = table.loc[i]
        ref_w, alt_w = windows(seq, int(row.pos) - 1, row.ref, row.alt, window)
        effective = row["mode"]
        expected = brute_force(model_dir, ref_w, alt_w, effective)
        assert row.score == pytest.approx(expected, abs=1e-4), (kind, mode, i, row.reason)
        if effective != mode:
            assert "wt-marginal needs equal token spans" in row.reason


@pytest.mark.parametrize("kind", ["char", "kmer3", "nt3", "bpe"])
def test_pll_equals_brute_force(setup, kind: str) -> None:
    tmp, seq, fa = setup
    model_dir = tmp / f"model_{kind}"
    if not model_dir.exists():
        make_model(make_tokenizer(kind, tmp, fa), model_dir)
    lm = MaskedLM(model_dir, device="cpu")
    frame = _variants(seq).iloc[[0, 3, 4]].reset_index(drop=True)  # SNV, insertion, deletion
    with Genome(fa) as genome:
        pll = score_variants(lm, genome, check_against_genome(frame, genome),
                             ScoreConfig(mode="pll", window_bp=30))
    for _, row in pll.iterrows():
        ref_w, alt_w = windows(seq, int(row.pos) - 1, row.ref, row.alt, 30)
        assert row.score == pytest.approx(brute_force(model_dir, ref_w, alt_w, "pll"), abs=1e-4)


def test_strand_average(setup) -> None:
    tmp, seq, fa = setup
    model_dir = tmp / "model_char"
    if not model_dir.exists():
        make_model(make_tokenizer("char", tmp, fa), model_dir)
    lm = MaskedLM(model_dir, device="cpu")
    frame = _variants(seq).iloc[[0, 3]].reset_index(drop=True)
    with Genome(fa) as genome:
        checked = check_against_genome(frame, genome)
        both = score_variants(lm, genome, checked,
                              ScoreConfig(window_bp=40, average_strands=True))
    for _, row in both.iterrows():
        ref_w, alt_w = windows(seq, int(row.pos) - 1, row.ref, row.alt, 40)
        fwd = brute_force(model_dir, ref_w, alt_w, "masked-marginal")
        rev = brute_force(model_dir, rc(ref_w), rc(alt_w), "masked-marginal")
        assert row.score_fwd == pytest.approx(fwd, abs=1e-4)
        assert row.score_rev == pytest.approx(rev, abs=1e-4)
        assert row.score == pytest.approx((fwd + rev) / 2, abs=1e-4)


def test_mnv_is_the_sum_over_jointly_masked_positions(setup) -> None:
    """ESM-1v additivity: an MNV's score is the sum of per-position terms, all masked together."""
    tmp, seq, fa = setup
    model_dir = tmp / "model_char"
    if not model_dir.exists():
        make_model(make_tokenizer("char", tmp, fa), model_dir)
    lm = MaskedLM(model_dir, device="cpu")
    start, alt = 2199, "".join("A" if b != "A" else "C" for b in seq[2199:2202])
    frame = pd.DataFrame({"contig": ["chr7"], "pos": [start + 1], "ref": [seq[start:start + 3]],
                          "alt": [alt], "record": [0], "id": ["."]})
    with Genome(fa) as genome:
        table = score_variants(lm, genome, check_against_genome(frame, genome),
                               ScoreConfig(window_bp=50))
    assert table.loc[0, "masked_ref_tokens"] == 3
    ref_w, _ = windows(seq, start, seq[start:start + 3], alt, 50)
    p = start - (start + 1 - 25)
    import torch

    ids = [2] + [{"A": 5, "C": 6, "G": 7, "T": 8, "N": 9}[b] for b in ref_w] + [3]
    x = torch.tensor([ids])
    x[0, [p + 1, p + 2, p + 3]] = 4
    lp = torch.log_softmax(lm.model(input_ids=x).logits[0], -1)
    base = {"A": 5, "C": 6, "G": 7, "T": 8}
    terms = [float(lp[p + 1 + j, base[alt[j]]] - lp[p + 1 + j, base[seq[start + j]]])
             for j in range(3)]
    assert table.loc[0, "score"] == pytest.approx(sum(terms), abs=1e-4)
    assert np.isfinite(terms).all()


@pytest.mark.parametrize(("kind", "mode"), [("char", "masked-marginal"), ("bpe", "wt-marginal")])
def test_tiled_saturation_windows_equal_brute_force(setup, kind: str, mode: str) -> None:
    """Saturation mutagenesis shares tiled windows between nearby variants; every score still
    equals the brute-force recomputation on the window its row names (contig ends included)."""
    from dnalm.score.saturation import saturation_variants

    tmp, seq, fa = setup
    model_dir = tmp / f"model_{kind}"
    if not model_dir.exists():
        make_model(make_tokenizer(kind, tmp, fa), model_dir)
    lm = MaskedLM(model_dir, device="cpu")
    regions = pd.DataFrame({"contig": ["chr7", "chr7"], "start": [0, 2210], "end": [3, 2222],
                            "name": ["start", "middle"]})
    window = 60
    with Genome(fa) as genome:
        variants = saturation_variants(genome, regions)
        table = score_variants(lm, genome, variants,
                               ScoreConfig(mode=mode, window_bp=window, windows="tiled"))
    assert len(table) == 3 * (3 + 12) and table["score"].notna().all()
    assert table["window"].nunique() < len(table) // 3  # windows are shared
    for row in table.itertuples():
        start, end = (int(x) for x in row.window.split(":")[1].split("-"))
        assert start <= row.start < end and end - start == window
        ref_w = seq[start:end]
        p = int(row.start) - start
        alt_w = ref_w[:p] + row.alt + ref_w[p + len(row.ref):]
        expected = brute_force(model_dir, ref_w, alt_w, row.mode)
        assert row.score == pytest.approx(expected, abs=1e-4), row
