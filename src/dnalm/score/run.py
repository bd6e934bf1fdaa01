"""Stage functions of the scoring rules and the ``dnalm score-*`` commands.

Both call these, so a rule and a command with the same settings give the same files.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dnalm.genome import Genome
from dnalm.io import atomic_file
from dnalm.partition import job_variants
from dnalm.score.saturation import (
    bed_jobs,
    read_bed,
    saturation_variants,
    write_position_bigwig,
)
from dnalm.score.settings import ScoreConfig
from dnalm.variants import annotate_vcf_streaming

# torch (about 0.5 GiB) is imported by the functions that run a model, not by the model-free
# steps of this module (gather, annotation), which run as their own jobs.

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["contig", "pos", "ref", "alt", "id", "score", "mode", "reason", "window",
                 "window_shifted", "score_fwd", "score_rev", "masked_ref_tokens",
                 "masked_alt_tokens", "record"]


#: Rows per Parquet row group of a job's table: the gather holds one row group at a time.
ROW_GROUP_ROWS = 65_536


def _write(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_file(path) as tmp:
        frame.to_parquet(tmp, index=False, row_group_size=ROW_GROUP_ROWS)


def score_vcf_region(
    model_dir: str | Path,
    genome_path: str | Path,
    variants_path: str | Path | None,
    out_parquet: str | Path,
    *,
    cfg: ScoreConfig,
    partition: str | Path | None = None,
    job: int = 0,
    match_chr_prefix: bool = True,
    gpus: int | None = None,
    trust_remote_code: bool = False,
) -> pd.DataFrame:
    """Score one job's variants: job ``job`` of a partition (:mod:`dnalm.partition`, what the
    workflow's region jobs read), or every variant of ``variants_path`` (``dnalm
    score-variants``). Rows that cannot be scored keep their reason; no model is loaded when
    nothing is scorable."""
    from dnalm.runtime import pick_device
    from dnalm.score.lm import MaskedLM
    from dnalm.score.vep import score_variants, unscored

    with Genome(genome_path, match_chr_prefix=match_chr_prefix) as genome:
        subset = job_variants(genome, variants_path=variants_path, partition=partition, job=job)
        if subset["reason"].eq("").any():
            lm = MaskedLM(model_dir, device=pick_device(gpus), trust_remote_code=trust_remote_code)
            table = score_variants(lm, genome, subset, cfg)
        else:
            table = unscored(subset, cfg.mode)  # nothing to score: no model loaded
    table = table.reindex(columns=SCORE_COLUMNS)
    _write(table, out_parquet)
    log.info("job %d: %d variants, %d scored", job, len(table), int(table["score"].notna().sum()))
    return table


def gather_scores(region_parquets: list[str | Path], out_parquet: str | Path) -> int:
    """Merge region tables into one Parquet file, streamed: one row group at a time, so memory
    does not grow with the table; skipped variants are counted by reason on the way."""
    rows, skipped = 0, {}
    with atomic_file(out_parquet) as tmp:
        writer = None
        try:
            for part in region_parquets:
                handle = pq.ParquetFile(part)
                for group in range(handle.num_row_groups):
                    table = handle.read_row_group(group)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                    writer.write_table(table.cast(writer.schema))
                    rows += table.num_rows
                    unscored_rows = table.filter(pc.is_null(table["score"], nan_is_null=True))
                    for item in pc.value_counts(unscored_rows["reason"]).to_pylist():
                        skipped[item["values"]] = skipped.get(item["values"], 0) + item["counts"]
            if writer is None:
                raise ValueError("no region tables to gather")
        finally:
            if writer is not None:
                writer.close()
    n_skipped = sum(skipped.values())
    log.info("gathered %d variants from %d regions: %d scored, %d skipped", rows,
             len(region_parquets), rows - n_skipped, n_skipped)
    for reason, count in sorted(skipped.items(), key=lambda kv: -kv[1]):
        log.info("  skipped %d: %s", count, reason)
    return rows


def annotate_from_table(table: str | Path, vcf_in: str | Path, vcf_out: str | Path) -> Path:
    """The input VCF with the gathered scores as INFO fields (``.vcf.gz`` + ``.tbi``), in one
    streaming pass (:func:`dnalm.variants.annotate_vcf_streaming`)."""
    return annotate_vcf_streaming(vcf_in, table, vcf_out)


SATURATION_COLUMNS = ["id", "contig", "pos", "ref", "alt", "score", "mode", "reason", "window"]


def saturate_job(
    model_dir: str | Path,
    genome_path: str | Path,
    bed_path: str | Path,
    out_parquet: str | Path,
    *,
    cfg: ScoreConfig,
    job: int = 0,
    bases_per_job: int | None = None,
    match_chr_prefix: bool = True,
    gpus: int | None = None,
    trust_remote_code: bool = False,
) -> pd.DataFrame:
    """Saturation mutagenesis of job ``job``'s share of the BED regions
    (:func:`dnalm.score.saturation.bed_jobs`) → Parquet, a row per position × alternative."""
    from dnalm.runtime import pick_device
    from dnalm.score.lm import MaskedLM
    from dnalm.score.vep import score_variants

    tiled = dataclasses.replace(cfg, windows="tiled")
    with Genome(genome_path, match_chr_prefix=match_chr_prefix) as genome:
        regions = read_bed(bed_path, genome)  # the whole file checked before the model loads
        variants = saturation_variants(genome, bed_jobs(regions, bases_per_job)[job])
        lm = MaskedLM(model_dir, device=pick_device(gpus), trust_remote_code=trust_remote_code)
        table = score_variants(lm, genome, variants, tiled)
    frame = table[SATURATION_COLUMNS].rename(columns={"id": "region"})
    _write(frame, out_parquet)
    return frame


def gather_saturation(parts: list[str | Path], genome_path: str | Path, out_parquet: str | Path,
                      out_bigwig: str | Path, *, match_chr_prefix: bool = True) -> int:
    """Saturation job tables → one Parquet (streamed, :func:`gather_scores`) and the bigWig of
    the per-position mean score over the alternatives."""
    rows = gather_scores(parts, out_parquet)
    scores = pd.read_parquet(out_parquet, columns=["contig", "pos", "score"])
    with Genome(genome_path, match_chr_prefix=match_chr_prefix) as genome:
        names = {c: genome.contigs.resolve(str(c)) for c in scores["contig"].unique()}
        scores["genome_contig"] = scores["contig"].map(names)
        scores["start"] = scores["pos"] - 1
        write_position_bigwig(scores, genome, out_bigwig)
    return rows


def saturate_regions(
    model_dir: str | Path,
    genome_path: str | Path,
    bed_path: str | Path,
    out_parquet: str | Path,
    out_bigwig: str | Path,
    *,
    cfg: ScoreConfig,
    match_chr_prefix: bool = True,
    gpus: int | None = None,
    trust_remote_code: bool = False,
) -> pd.DataFrame:
    """Saturation mutagenesis of BED regions in one job (``dnalm saturate``) → Parquet
    (position × alternative) and bigWig."""
    from dnalm.io import scratch_dir

    with scratch_dir(Path(out_parquet).parent, f"{Path(out_parquet).name}.parts") as tmp:
        part = Path(tmp) / "0.parquet"
        frame = saturate_job(model_dir, genome_path, bed_path, part, cfg=cfg,
                             match_chr_prefix=match_chr_prefix, gpus=gpus,
                             trust_remote_code=trust_remote_code)
        gather_saturation([part], genome_path, out_parquet, out_bigwig,
                          match_chr_prefix=match_chr_prefix)
    return frame
