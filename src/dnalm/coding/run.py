"""Stage functions of the coding rules and the ``dnalm score-coding`` command.

The workflow rules and the command call the same functions, so both give the same files. The
per-(variant, transcript) table has one row per ALT allele and coding transcript it touches; its
``record`` column is the VCF record index, as in the DNA score table, so the two join on
``(record, alt)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dnalm.coding.annotation import CodingTranscript, load_transcripts
from dnalm.coding.consequence import MISSENSE, CodingIndex, consequence, variant_span
from dnalm.coding.protein_lm import (
    MutantError,
    load_models,
    parse_mutant,
    saturation_mutants,
    score_mutations,
)
from dnalm.coding.settings import CodingSettings
from dnalm.errors import InputFormatError
from dnalm.genome import Genome
from dnalm.io import atomic_file
from dnalm.runtime import pick_device
from dnalm.variants import annotate_vcf, check_against_genome, read_variants

log = logging.getLogger(__name__)

CODING_COLUMNS = ["record", "contig", "pos", "ref", "alt", "id", "transcript", "gene", "strand",
                  "consequence", "protein_change", "score", "reason", "mode"]
PROTEIN_FIELD = "DNALM_PROTEIN"
CODING_FIELD = "DNALM_CODING"


def _write(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_file(path) as tmp:
        frame.to_parquet(tmp, index=False)


def consequences_for(variants: pd.DataFrame, transcripts: Sequence[CodingTranscript]
                     ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per (variant, overlapping transcript) consequences, and the proteins by transcript id.

    ``variants`` is a :func:`check_against_genome` frame; a variant with a skip reason that still
    lies in a CDS gets a row with consequence ``not_scored`` and that reason.
    """
    index = CodingIndex(transcripts)
    rows = []
    for v in variants.itertuples(index=False):
        if not isinstance(v.genome_contig, str):
            continue
        start, end = variant_span(int(v.start), v.ref, v.alt) if not v.reason else (
            int(v.start), int(v.start) + max(len(v.ref), 1))
        for t in index.overlapping(v.genome_contig, start, end):
            c = ("not_scored", "", v.reason) if v.reason else consequence(
                t, int(v.start), v.ref, v.alt).__dict__.values()
            rows.append((v.record, v.contig, v.pos, v.ref, v.alt, v.id, t.transcript_id, t.gene,
                         t.strand, *c))
    frame = pd.DataFrame(rows, columns=[*CODING_COLUMNS[:11], "reason"])
    frame["score"] = np.nan
    frame["mode"] = ""
    return frame[CODING_COLUMNS], {t.transcript_id: t.protein for t in transcripts if t.protein}


def score_missense(frame: pd.DataFrame, proteins: Mapping[str, str], model_dirs: Sequence[str],
                   *, mode: str = CodingSettings.mode,
                   batch_size: int = CodingSettings.batch_size,
                   device: str = "cpu") -> pd.DataFrame:
    """Fill ``score`` for the missense rows with the protein-LM ensemble."""
    frame = frame.copy()
    missense = frame.index[frame["consequence"] == MISSENSE]
    if len(missense) == 0:
        log.info("no missense variant to score")
        return frame
    names = sorted({frame.at[i, "transcript"] for i in missense})
    number = {n: k for k, n in enumerate(names)}
    requests = [(number[frame.at[i, "transcript"]],
                 parse_mutant(frame.at[i, "protein_change"], proteins[frame.at[i, "transcript"]]))
                for i in missense]
    lms = load_models(model_dirs, device=device)
    scores, reasons = score_mutations(lms, [proteins[n] for n in names], requests, mode=mode,
                                      batch_size=batch_size)
    frame.loc[missense, "score"] = scores
    frame.loc[missense, "reason"] = reasons
    frame.loc[missense, "mode"] = mode
    return frame


def score_coding(
    genome_path: str | Path,
    annotation_path: str | Path,
    variants_path: str | Path,
    model_dirs: Sequence[str | Path],
    out_parquet: str | Path,
    *,
    settings: CodingSettings | None = None,
    match_chr_prefix: bool = True,
    gpus: int | None = 0,
) -> pd.DataFrame:
    """Genome + GTF/GFF3 + VCF (or table) → per (variant, transcript) Parquet with protein scores.

    With no ``model_dirs`` only consequences are written (rule ``coding_consequences``). The
    protein models run on a GPU when ``gpus`` asks for one (:func:`dnalm.runtime.pick_device`).
    """
    settings = settings or CodingSettings()
    device = pick_device(gpus)
    with Genome(genome_path, match_chr_prefix=match_chr_prefix) as genome:
        transcripts = load_transcripts(annotation_path, genome, dict(settings.codon_tables))
        variants = check_against_genome(read_variants(variants_path), genome)
    frame, proteins = consequences_for(variants, transcripts)
    if model_dirs:
        frame = score_missense(frame, proteins, [str(d) for d in model_dirs],
                               mode=settings.mode, batch_size=settings.batch_size,
                               device=device)
    _write(frame, out_parquet)
    counts = frame["consequence"].value_counts().to_dict()
    log.info("%d variants, %d (variant, transcript) rows: %s; %d scored", len(variants),
             len(frame), counts, int(frame["score"].notna().sum()))
    return frame


def join_with_dna(coding_parquet: str | Path, dna_parquet: str | Path,
                  out_parquet: str | Path) -> pd.DataFrame:
    """The coding table with the DNA-model ``dna_score``/``dna_reason`` of the same allele."""
    coding = pd.read_parquet(coding_parquet)
    dna = pd.read_parquet(dna_parquet, columns=["record", "alt", "score", "reason"]).rename(
        columns={"score": "dna_score", "reason": "dna_reason"})
    joined = coding.merge(dna.drop_duplicates(["record", "alt"]), on=["record", "alt"],
                          how="left", validate="many_to_one")
    _write(joined, out_parquet)
    return joined


def _fmt(value: float) -> str:
    return "." if value is None or math.isnan(value) else f"{float(value):.6g}"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_.:+-*" else "_" for c in str(text)) or "."


def coding_info_fields(coding: pd.DataFrame, variants: pd.DataFrame
                       ) -> list[tuple[str, str, str, str, dict[int, str]]]:
    """``extra_fields`` for :func:`dnalm.variants.annotate_vcf`.

    ``DNALM_PROTEIN`` (Number=A): the most damaging (lowest) protein score per ALT, ``.`` when
    none; ``DNALM_CODING`` (Number=.): ``transcript|consequence|change|score`` per transcript
    and ALT. ``variants`` (from :func:`read_variants` on the same VCF) gives each record's ALTs.
    """
    alts = variants.groupby("record", sort=False)["alt"].apply(lambda s: [a.upper() for a in s])
    best = coding.groupby(["record", "alt"])["score"].min()
    protein: dict[int, str] = {}
    entries: dict[int, str] = {}
    for record, group in coding.groupby("record", sort=True):
        record = int(record)
        protein[record] = ",".join(_fmt(best.get((record, a), np.nan))
                                   for a in alts.get(record, []))
        entries[record] = ",".join(
            "|".join([_safe(r.transcript), _safe(r.consequence), _safe(r.protein_change or "."),
                      _fmt(r.score)]) for r in group.itertuples(index=False))
    return [
        (PROTEIN_FIELD, "A", "Float", "dnalm protein-LM score (lowest = most damaging over "
         "transcripts) per ALT allele, missense only", protein),
        (CODING_FIELD, ".", "String", "dnalm coding consequences: "
         "transcript|consequence|change|score", entries),
    ]


def annotate_coding_vcf(vcf_in: str | Path, coding_parquet: str | Path, vcf_out: str | Path,
                        dna_parquet: str | Path | None = None) -> Path:
    """The input VCF with DNA scores (if given) and the coding INFO fields, bgzip + tabix."""
    coding = pd.read_parquet(coding_parquet)
    if dna_parquet is not None:
        dna = pd.read_parquet(dna_parquet, columns=["record", "alt", "score", "reason"])
    else:
        dna = pd.DataFrame({"record": [], "alt": [], "score": [], "reason": []})
    fields = coding_info_fields(coding, read_variants(vcf_in))
    return annotate_vcf(vcf_in, dna.sort_values("record", kind="stable"), vcf_out,
                        extra_fields=fields)


def read_protein_table(path: str | Path, sequence: str | None = None) -> pd.DataFrame:
    """A deep-mutational-scanning table: ``mutant`` and (a ``sequence`` column or ``sequence``)."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="," if path.suffix == ".csv" else "\t", dtype=str)
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"cannot read protein table ({exc})", where=str(path)) from exc
    if "mutant" not in frame.columns:
        raise InputFormatError("missing column mutant", where=str(path))
    if sequence is not None:
        frame["sequence"] = sequence
    elif "sequence" not in frame.columns:
        raise InputFormatError("no sequence column and no sequence given", where=str(path))
    return frame


def score_mutant_frame(frame: pd.DataFrame, model_dirs: Sequence[str | Path], *,
                       mode: str = CodingSettings.mode,
                       batch_size: int = CodingSettings.batch_size,
                       device: str = "cpu", where: str = "") -> pd.DataFrame:
    """Score every ``mutant`` of ``frame`` on its ``sequence``; adds ``score``, ``reason``."""
    sequences = list(dict.fromkeys(frame["sequence"].astype(str).str.upper()))
    number = {s: i for i, s in enumerate(sequences)}
    requests = []
    for line, (seq, mutant) in enumerate(zip(frame["sequence"].astype(str).str.upper(),
                                             frame["mutant"], strict=True)):
        try:
            requests.append((number[seq], parse_mutant(mutant, seq)))
        except MutantError as exc:
            raise MutantError(f"row {line + 1}: {exc}", where=where or None) from None
    scores, reasons = score_mutations(load_models([str(d) for d in model_dirs], device=device),
                                      sequences, requests, mode=mode, batch_size=batch_size)
    out = frame.copy()
    out["score"], out["reason"], out["mode"] = scores, reasons, mode
    return out


def score_protein_table(table: str | Path, model_dirs: Sequence[str | Path],
                        out_parquet: str | Path, *, sequence: str | None = None,
                        **kwargs: object) -> pd.DataFrame:
    """A ``mutant`` table scored directly (ESM's DMS examples) → Parquet."""
    scored = score_mutant_frame(read_protein_table(table, sequence), model_dirs,
                                where=str(table), **kwargs)
    _write(scored, out_parquet)
    return scored


def saturate_protein(sequence: str, model_dirs: Sequence[str | Path], out_parquet: str | Path,
                     **kwargs: object) -> pd.DataFrame:
    """Every residue × 19 substitutions of ``sequence`` → Parquet (``mutant``, ``score``...)."""
    sequence = sequence.upper().rstrip("*")
    frame = pd.DataFrame({"mutant": saturation_mutants(sequence)})
    frame["sequence"] = sequence
    scored = score_mutant_frame(frame, model_dirs, **kwargs)
    scored = scored.drop(columns="sequence")
    scored.insert(1, "position", scored["mutant"].str[1:-1].astype(int))
    _write(scored, out_parquet)
    return scored
