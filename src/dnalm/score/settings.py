"""Zero-shot scoring settings (no torch: the workflow reads them while Snakemake parses it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dnalm.errors import ConfigError

MODES = ("masked-marginal", "wt-marginal", "pll")
WINDOW_STRATEGIES = ("centred", "tiled")
#: ``scoring.saturation.<name>`` keys that wire the jobs, not the scores.
SATURATION_JOB_KEYS = ("genome", "bed", "bases_per_job")
#: ``scoring`` keys that wire the workflow (which models, variant sets, region jobs), not scores.
WORKFLOW_KEYS = ("models", "variants", "saturation", "regions", "variants_per_job",
                 "partition_bins")


@dataclass(frozen=True)
class ScoreConfig:
    """How variants are scored (see :mod:`dnalm.score.vep`).

    ``window_bp`` None fills the model's input as its tokenizer reads the genome; ``windows``
    ``tiled`` lets nearby variants share a window (saturation mutagenesis uses it).
    """

    mode: str = "masked-marginal"
    window_bp: int | None = None
    average_strands: bool = False
    batch_size: int = 16
    pll_flank: int | None = None
    windows: str = "centred"

    def __post_init__(self) -> None:
        if self.windows not in WINDOW_STRATEGIES:
            raise ConfigError(f"windows must be 'centred' or 'tiled', not {self.windows!r}")
        if self.mode not in MODES:
            raise ConfigError(f"unknown scoring mode {self.mode!r}; choose one of {MODES}")
        if self.window_bp is not None and self.window_bp < 1:
            raise ConfigError("window_bp must be >= 1")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")


def score_config(section: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
                 ) -> ScoreConfig:
    """``ScoreConfig`` from the ``scoring`` section, with a saturation entry's ``overrides``."""
    from dnalm.config import settings_from

    values = {k: v for k, v in section.items() if k not in WORKFLOW_KEYS}
    values.update({k: v for k, v in (overrides or {}).items() if k not in SATURATION_JOB_KEYS})
    return settings_from(ScoreConfig, values, where="scoring")


@dataclass(frozen=True)
class PartitionSettings:
    """How a variant set is cut into region jobs (:mod:`dnalm.partition`).

    ``regions`` jobs of equal genome length; or, with ``variants_per_job``, as many jobs as it
    takes to give each about that many scorable variants, formed from ``bins`` consecutive
    stretches of the genome (``partition_bins``, the most jobs there can be).
    """

    regions: int = 2
    variants_per_job: int | None = None
    partition_bins: int = 4096

    def __post_init__(self) -> None:
        if self.regions < 1 or self.partition_bins < 1:
            raise ConfigError("regions and partition_bins must be >= 1")
        if self.variants_per_job is not None and self.variants_per_job < 1:
            raise ConfigError("variants_per_job must be >= 1")


def partition_settings(section: Mapping[str, Any]) -> PartitionSettings:
    """``PartitionSettings`` from the ``scoring`` section's job-planning keys."""
    from dnalm.config import settings_from

    keys = ("regions", "variants_per_job", "partition_bins")
    return settings_from(PartitionSettings, {k: section[k] for k in keys if k in section},
                         where="scoring")
