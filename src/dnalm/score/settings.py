"""Zero-shot scoring settings (no torch: the workflow reads them while Snakemake parses it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dnalm.errors import ConfigError

MODES = ("masked-marginal", "wt-marginal", "pll")
WINDOW_STRATEGIES = ("centred", "tiled")
#: ``scoring`` keys that wire the workflow (which models, variant sets, region jobs), not scores.
WORKFLOW_KEYS = ("models", "variants", "saturation", "regions")


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
    values.update({k: v for k, v in (overrides or {}).items() if k not in ("genome", "bed")})
    return settings_from(ScoreConfig, values, where="scoring")
