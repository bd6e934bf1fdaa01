"""Stage functions of the scoring rules and the ``dnalm score-*`` commands.

Both call these, so a rule and a command with the same settings give the same files.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dnalm.genome import Genome, read_fai
from dnalm.io import atomic_file
from dnalm.regions import in_region, plan_regions
from dnalm.runtime import pick_device
from dnalm.score.lm import MaskedLM
from dnalm.score.saturation import read_bed, saturation_variants, write_position_bigwig
from dnalm.score.settings import ScoreConfig
from dnalm.score.vep import score_variants, unscored
from dnalm.variants import annotate_vcf, check_against_genome, read_variants

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["contig", "pos", "ref", "alt", "id", "score", "mode", "reason", "window",
                 "window_shifted", "score_fwd", "score_rev", "masked_ref_tokens",
                 "masked_alt_tokens", "record"]


def _write(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_file(path) as tmp:
        frame.to_parquet(tmp, index=False)


def score_vcf_region(
    model_dir: str | Path,
    genome_path: str | Path,
    variants_path: str | Path,
    out_parquet: str | Path,
    *,
    cfg: ScoreConfig,
    region: int = 0,
    n_regions: int = 1,
    match_chr_prefix: bool = True,
    gpus: int | None = None,
    trust_remote_code: bool = False,
) -> pd.DataFrame:
    """Score the variants that fall in region ``region`` of ``n_regions`` (see ``regions``).

    Variants that cannot be placed on the genome (unknown contig) are reported by region 0, so
    every input row appears exactly once across the regions.
    """
    with Genome(genome_path, match_chr_prefix=match_chr_prefix) as genome:
        checked = check_against_genome(read_variants(variants_path), genome)
        pieces = plan_regions(read_fai(genome_path), n_regions)[region]
        unplaced = ~checked["genome_contig"].apply(lambda c: isinstance(c, str))
        mine = in_region(checked, pieces) | (unplaced.to_numpy() & (region == 0))
        subset = checked[mine]
        if subset["reason"].eq("").any():
            lm = MaskedLM(model_dir, device=pick_device(gpus), trust_remote_code=trust_remote_code)
            table = score_variants(lm, genome, subset, cfg)
        else:
            table = unscored(subset, cfg.mode)  # nothing to score: no model loaded
    table = table.reindex(columns=SCORE_COLUMNS)
    _write(table, out_parquet)
    log.info("region %d/%d: %d variants, %d scored", region + 1, n_regions, len(table),
             int(table["score"].notna().sum()))
    return table


def gather_scores(region_parquets: list[str | Path], out_parquet: str | Path) -> int:
    """Merge region tables (streamed, one at a time, in input order) into one Parquet file."""
    with atomic_file(out_parquet) as tmp:
        writer = None
        for part in region_parquets:
            table = pq.read_table(part)
            table = table.cast(pa.schema([f for f in table.schema]))
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table.cast(writer.schema))
        if writer is None:
            raise ValueError("no region tables to gather")
        writer.close()
    small = pd.read_parquet(out_parquet, columns=["record", "alt", "score", "reason"])
    skipped = small[small["score"].isna()]
    log.info("gathered %d variants from %d regions: %d scored, %d skipped", len(small),
             len(region_parquets), len(small) - len(skipped), len(skipped))
    for reason, count in skipped["reason"].value_counts().items():
        log.info("  skipped %d: %s", count, reason)
    return len(small)


def annotate_from_table(table: str | Path, vcf_in: str | Path, vcf_out: str | Path) -> Path:
    """The input VCF with the gathered scores as INFO fields (``.vcf.gz`` + ``.tbi``)."""
    small = pd.read_parquet(table, columns=["record", "alt", "score", "reason"])
    return annotate_vcf(vcf_in, small.sort_values("record", kind="stable"), vcf_out)


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
    """Saturation mutagenesis of BED regions → Parquet (position × alternative) and bigWig."""
    lm = MaskedLM(model_dir, device=pick_device(gpus), trust_remote_code=trust_remote_code)
    tiled = dataclasses.replace(cfg, windows="tiled")
    with Genome(genome_path, match_chr_prefix=match_chr_prefix) as genome:
        variants = saturation_variants(genome, read_bed(bed_path))
        table = score_variants(lm, genome, variants, tiled)
        write_position_bigwig(table, genome, out_bigwig)
    columns = ["id", "contig", "pos", "ref", "alt", "score", "mode", "reason", "window"]
    _write(table[columns].rename(columns={"id": "region"}), out_parquet)
    return table
