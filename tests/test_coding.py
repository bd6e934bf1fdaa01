"""Coding variants (issue 10): annotation, consequences on both strands, protein-LM scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import torch

from dnalm.coding.annotation import AnnotationError, load_transcripts
from dnalm.coding.consequence import consequence
from dnalm.coding.protein_lm import (
    AMINO_ACIDS,
    MutantError,
    ProteinLM,
    ProteinModelError,
    build_random_esm,
    parse_mutant,
    saturation_mutants,
    score_mutations,
)
from dnalm.coding.run import (
    annotate_coding_vcf,
    join_with_dna,
    saturate_protein,
    score_coding,
    score_protein_table,
)
from dnalm.genome import Genome
from tests.conftest import write_fasta

REPO = Path(__file__).resolve().parents[1]
SLICE = REPO / "data" / "hg38_chr16_axin1_slice"
FASTA = SLICE / "chr16_186964_397118.fa"
GTF = SLICE / "refseq_chr16_slice.gtf"
DEMO_VCF = SLICE / "demo_coding.vcf"

# A hand-made genome: '+' gene ATG AAA TGG CAG TAA at 10..25 (one intron 16..20),
# '-' gene whose coding strand reads ATG GCT TGC TAA.
PLUS_EXON1 = "ATGAAA"       # contig 10..16
PLUS_EXON2 = "TGGCAGTAA"    # contig 20..29
MINUS_CODING = "ATGGCTTGCTAA"


def _revcomp(s: str) -> str:
    return s.translate(str.maketrans("ACGT", "TGCA"))[::-1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 80-bp contig with one '+' gene (two exons) and one '-' gene, and its GTF (CDS only)."""
    d = tmp_path_factory.mktemp("toy")
    seq = list("C" * 80)
    seq[10:16] = PLUS_EXON1
    seq[16:20] = "GTCC"
    seq[20:29] = PLUS_EXON2
    seq[50:62] = _revcomp(MINUS_CODING)
    fasta = write_fasta(d / "toy.fa", {"t1": "".join(seq)})
    gtf = d / "toy.gtf"
    gtf.write_text(
        't1\tx\tCDS\t11\t16\t.\t+\t0\ttranscript_id "P1"; gene_id "GP";\n'
        't1\tx\tCDS\t21\t29\t.\t+\t0\ttranscript_id "P1"; gene_id "GP";\n'
        't1\tx\tCDS\t51\t62\t.\t-\t0\ttranscript_id "M1"; gene_id "GM";\n')
    with Genome(fasta) as genome:
        ts = {t.transcript_id: t for t in load_transcripts(gtf, genome)}
    return fasta, gtf, ts


@pytest.fixture(scope="module")
def esm_dir(tmp_path_factory) -> Path:
    return build_random_esm(tmp_path_factory.mktemp("esm") / "tiny", hidden_size=32, layers=2,
                            heads=2, max_residues=60, seed=1)


@pytest.fixture(scope="module")
def lm(esm_dir) -> ProteinLM:
    return ProteinLM(esm_dir)


def test_all_slice_transcripts_translate():
    with Genome(FASTA) as genome:
        ts = load_transcripts(GTF, genome)
    assert len(ts) == 14
    for t in ts:
        assert t.reason == "", (t.transcript_id, t.reason)
        assert t.protein.startswith("M") and "*" not in t.protein
        assert t.table.is_stop(t.cds[-3:]) and len(t.cds) == 3 * (len(t.protein) + 1)
    lengths = {t.transcript_id: len(t.protein) for t in ts}
    assert lengths["NM_003502"] == 862 and lengths["NM_181050"] == 826  # AXIN1 isoforms
    assert {t.strand for t in ts} == {"+", "-"}


def test_toy_transcripts(toy):
    _, _, ts = toy
    assert ts["P1"].protein == "MKWQ" and ts["M1"].protein == "MAC"
    assert list(ts["M1"].positions[:3]) == [61, 60, 59]


@pytest.mark.parametrize("tid,pos0,ref,alt,kind,change", [
    # '+' gene P1: ATG(10-12) AAA(13-15) | intron GTCC (16-19) | TGG(20-22) CAG(23-25) TAA(26-28)
    ("P1", 13, "A", "G", "missense", "K2E"),                 # AAA>GAA
    ("P1", 15, "A", "G", "synonymous", ""),                  # AAA>AAG
    ("P1", 22, "G", "A", "stop_gained", "W3*"),              # TGG>TGA
    ("P1", 27, "A", "C", "stop_lost", "*5S"),                # TAA>TCA
    ("P1", 10, "A", "C", "start_lost", "M1L"),               # ATG>CTG (no Met start left)
    ("P1", 14, "AA", "A", "frameshift", "p.2fs"),            # deletes c.6
    ("P1", 22, "GCAG", "G", "inframe_deletion", "p.4"),      # deletes CAG (codon 4)
    ("P1", 15, "AGTCCT", "CGTCCG", "missense", "K2N:W3G"),   # MNV across the intron
    # '-' gene M1: coding ATG GCT TGC TAA = genome 61..50 reversed; c.(i+1) at 61 - i,
    # the genome base is the complement of the coding base
    ("M1", 58, "C", "T", "missense", "A2T"),                 # c.4 G>A: GCT>ACT
    ("M1", 56, "A", "G", "synonymous", ""),                  # c.6 T>C: GCT>GCC
    ("M1", 53, "G", "T", "stop_gained", "C3*"),              # c.9 C>A: TGC>TGA
    ("M1", 50, "T", "G", "stop_lost", "*4Y"),                # c.12 A>C: TAA>TAC
    ("M1", 59, "C", "A", "start_lost", "M1I"),               # c.3 G>T: ATG>ATT
    ("M1", 53, "GC", "G", "frameshift", "p.3fs"),            # deletes c.8
    ("M1", 54, "CAAG", "C", "inframe_deletion", "p.2"),      # deletes c.5-7 (CTT)
    ("M1", 55, "AAG", "CAC", "missense", "A2G:C3G"),         # MNV: c.5 C>G and c.7 T>G
])
def test_consequences_both_strands(toy, tid, pos0, ref, alt, kind, change):
    fasta, _, ts = toy
    with Genome(fasta) as genome:
        assert genome.fetch("t1", pos0, pos0 + len(ref)) == ref  # the case is on the genome
    c = consequence(ts[tid], pos0, ref, alt)
    assert (c.consequence, c.protein_change) == (kind, change)
    assert (c.reason == "") == (kind == "missense")


def _brute_masked(lm: ProteinLM, seq: str, mutations) -> float:
    """One unbatched pass per mutant with its residues masked together (the definition)."""
    ids = lm.encode(seq)
    x = ids.copy()
    for m in mutations:
        x[m.pos] = lm.mask
    inp = torch.tensor([[lm.cls, *x.tolist(), lm.eos]])
    with torch.no_grad():
        lp = torch.log_softmax(lm.model(input_ids=inp).logits[0].float(), -1).numpy()
    return float(sum(lp[m.pos + 1, lm.aa_ids[m.mt]] - lp[m.pos + 1, lm.aa_ids[m.wt]]
                     for m in mutations))


SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ"  # 66 > 60 limit


def test_masked_marginal_equals_brute_force_with_windows(lm):
    mutants = ["K2A", "A4G:Y5W", f"{SEQ[62]}63L", "S13P:F14D", f"{SEQ[64]}65R", "M1V"]
    requests = [(0, parse_mutant(m, SEQ)) for m in mutants]
    scores, reasons = score_mutations([lm], [SEQ], requests, batch_size=4)
    assert reasons == [""] * len(mutants)
    for (_, muts), got in zip(requests, scores, strict=True):
        positions = [m.pos for m in muts]
        start = min(max((min(positions) + max(positions) + 1) // 2 - 30, 0), len(SEQ) - 60)
        shifted = [type(m)(m.wt, m.pos - start, m.mt) for m in muts]
        assert got == pytest.approx(_brute_masked(lm, SEQ[start:start + 60], shifted), abs=1e-4)


def test_wt_marginal_is_additive_and_matches_an_unmasked_pass(lm):
    seq = SEQ[:50]
    singles = [(0, parse_mutant(m, seq)) for m in ("K2A", "A4G", "Y5W")]
    joint = [(0, parse_mutant("K2A:A4G:Y5W", seq))]
    s, _ = score_mutations([lm], [seq], singles + joint, mode="wt-marginal")
    assert s[3] == pytest.approx(s[:3].sum(), abs=1e-5)
    inp = torch.tensor([[lm.cls, *lm.encode(seq).tolist(), lm.eos]])
    with torch.no_grad():
        lp = torch.log_softmax(lm.model(input_ids=inp).logits[0], -1).numpy()
    assert s[0] == pytest.approx(lp[2, lm.aa_ids["A"]] - lp[2, lm.aa_ids["K"]], abs=1e-5)


def test_joint_masking_differs_from_sum_of_singles(lm):
    """Masked-marginal masks T together, so a multi-residue score is not the sum of singles."""
    seq = SEQ[:50]
    reqs = [(0, parse_mutant(m, seq)) for m in ("K2A", "A4G", "K2A:A4G")]
    s, _ = score_mutations([lm], [seq], reqs)
    assert s[2] == pytest.approx(_brute_masked(lm, seq, reqs[2][1]), abs=1e-4)
    assert abs(s[2] - (s[0] + s[1])) > 1e-6


def test_ensemble_is_the_mean(esm_dir, tmp_path):
    other = build_random_esm(tmp_path / "other", hidden_size=32, layers=2, heads=2,
                             max_residues=60, seed=2)
    req = [(0, parse_mutant("K2A", SEQ[:40]))]
    a, _ = score_mutations([ProteinLM(esm_dir)], [SEQ[:40]], req)
    b, _ = score_mutations([ProteinLM(other)], [SEQ[:40]], req)
    both, _ = score_mutations([ProteinLM(esm_dir), ProteinLM(other)], [SEQ[:40]], req)
    assert both[0] == pytest.approx((a[0] + b[0]) / 2, abs=1e-6)


def test_protein_table_and_saturation(esm_dir, tmp_path):
    seq = SEQ[:30]
    table = tmp_path / "dms.csv"
    pd.DataFrame({"mutant": ["K2A", "T3G:A4C"], "sequence": [seq, seq]}).to_csv(table, index=False)
    scored = score_protein_table(table, [esm_dir], tmp_path / "dms.parquet")
    lm = ProteinLM(esm_dir)
    assert scored["score"].iloc[1] == pytest.approx(
        _brute_masked(lm, seq, parse_mutant("T3G:A4C", seq)), abs=1e-4)
    sat = saturate_protein(seq, [esm_dir], tmp_path / "sat.parquet", mode="wt-marginal")
    assert len(sat) == 30 * 19 == len(saturation_mutants(seq))
    assert set(sat["mutant"].str[-1]) == set(AMINO_ACIDS)
    assert pd.read_parquet(tmp_path / "sat.parquet")["score"].notna().all()


def test_score_protein_command_equals_the_library(esm_dir, tmp_path):
    """`dnalm score-protein` (table and saturation) writes what the library functions compute."""
    from dnalm.cli import main

    seq = SEQ[:30]
    table = tmp_path / "dms.csv"
    pd.DataFrame({"mutant": ["K2A", "T3G:A4C"]}).to_csv(table, index=False)
    assert main(["score-protein", "--model", str(esm_dir), "--table", str(table), "--sequence",
                 seq, "--out", str(tmp_path / "cli.parquet")]) == 0
    direct = score_protein_table(table, [esm_dir], tmp_path / "lib.parquet", sequence=seq)
    pd.testing.assert_series_equal(pd.read_parquet(tmp_path / "cli.parquet")["score"],
                                   direct["score"], check_names=False)
    assert main(["score-protein", "--model", str(esm_dir), "--sequence", seq, "--saturate",
                 "--mode", "wt-marginal", "--out", str(tmp_path / "sat.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "sat.parquet")) == 30 * 19
    assert main(["score-protein", "--model", str(esm_dir), "--out",
                 str(tmp_path / "none.parquet")]) == 1


def test_bad_mutant_wild_type(esm_dir, tmp_path):
    table = tmp_path / "bad.tsv"
    pd.DataFrame({"mutant": ["K2A", "W3A"], "sequence": [SEQ, SEQ]}).to_csv(table, sep="\t",
                                                                           index=False)
    with pytest.raises(MutantError, match=r"row 2: .*W3 does not match the sequence, which has T"):
        score_protein_table(table, [esm_dir], tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_non_protein_vocabulary(esm_dir, tmp_path):
    dna = tmp_path / "dna_model"
    shutil.copytree(esm_dir, dna)
    (dna / "vocab.txt").write_text("\n".join(["<cls>", "<pad>", "<eos>", "<unk>", "A", "C", "G",
                                              "T", "N", "<mask>"]) + "\n")
    with pytest.raises(ProteinModelError, match="not a protein vocabulary") as err:
        ProteinLM(dna)
    assert "\n" not in str(err.value)


def test_annotation_contigs_not_in_genome(toy, tmp_path):
    fasta, gtf, _ = toy
    other = tmp_path / "other.gtf"
    other.write_text(gtf.read_text().replace("t1\t", "scaffold9\t"))
    with Genome(fasta) as genome, pytest.raises(AnnotationError, match="none of the annotation"):
        load_transcripts(other, genome)


def test_cds_length_not_multiple_of_three(toy, tmp_path):
    fasta, gtf, _ = toy
    bad = tmp_path / "bad.gtf"
    bad.write_text(gtf.read_text().replace("\t51\t62\t", "\t51\t63\t"))
    with Genome(fasta) as genome:
        ts = {t.transcript_id: t for t in load_transcripts(bad, genome)}
        assert ts["M1"].reason == "CDS length 13 is not a multiple of 3" and not ts["M1"].protein
        assert consequence(ts["M1"], 58, "C", "T").consequence == "transcript_not_translated"
        with pytest.raises(AnnotationError, match="CDS length 13 is not a multiple of 3"):
            load_transcripts(bad, genome, strict=True)


def test_gff3_cds_only(toy, tmp_path):
    fasta, _, ts = toy
    gff = tmp_path / "toy.gff3"
    gff.write_text("##gff-version 3\n"
                   "t1\tx\tCDS\t11\t16\t.\t+\t0\tID=cds1;Parent=rna1\n"
                   "t1\tx\tCDS\t21\t29\t.\t+\t0\tID=cds1;Parent=rna1\n")
    with Genome(fasta) as genome:
        (t,) = load_transcripts(gff, genome)
    assert t.transcript_id == "rna1" and t.protein == ts["P1"].protein


def test_score_coding_end_to_end_on_the_slice(esm_dir, tmp_path):
    out = tmp_path / "coding.parquet"
    frame = score_coding(FASTA, GTF, DEMO_VCF, [esm_dir], out)
    stored = pd.read_parquet(out)
    assert {"contig", "pos", "ref", "alt", "transcript", "consequence", "protein_change",
            "score", "reason"} <= set(stored.columns)
    missense = stored[stored["consequence"] == "missense"]
    assert len(missense) >= 5 and missense["score"].notna().all()
    assert set(missense["strand"]) == {"+", "-"}
    assert (stored.loc[stored["consequence"] != "missense", "score"].isna()).all()
    assert {"stop_gained", "frameshift", "synonymous", "inframe_deletion"} <= set(
        frame["consequence"])
    # the same missense change scored by hand on the AXIN1 protein (window around residue 24)
    with Genome(FASTA) as genome:
        axin1 = {t.transcript_id: t for t in load_transcripts(GTF, genome)}["NM_003502"].protein
    row = missense[missense["transcript"] == "NM_003502"].iloc[0]
    muts = parse_mutant(row["protein_change"], axin1)
    s, _ = score_mutations([ProteinLM(esm_dir)], [axin1], [(0, muts)])
    assert row["score"] == pytest.approx(s[0], abs=1e-6)

    dna = tmp_path / "dna.parquet"
    pd.DataFrame({"record": [0, 2], "alt": ["T", "A"], "score": [-1.5, 0.25],
                  "reason": ["", ""]}).to_parquet(dna)
    joined = join_with_dna(out, dna, tmp_path / "joined.parquet")
    assert joined.loc[joined["record"] == 0, "dna_score"].eq(-1.5).all()
    vcf = annotate_coding_vcf(DEMO_VCF, out, tmp_path / "out.vcf.gz", dna)
    with pysam.VariantFile(str(vcf)) as f:
        records = list(f)
    first = records[0]
    assert first.info["DNALM"] == (-1.5,)
    best = stored.loc[stored["record"] == 0, "score"].min()
    assert first.info["DNALM_PROTEIN"][0] == pytest.approx(best, abs=1e-5)
    assert all(len(e.split("|")) == 4 for e in first.info["DNALM_CODING"])
    assert "DNALM_PROTEIN" not in records[1].info  # the intergenic SNV
    assert Path(f"{vcf}.tbi").exists()
    assert np.isfinite(best)
