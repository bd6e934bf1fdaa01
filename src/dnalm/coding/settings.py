"""Coding-variant settings (no torch: the workflow reads them while Snakemake parses it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dnalm.errors import ConfigError

#: Protein-LM scoring strategies (ESM-1v's ``predict.py`` names).
MODES = ("masked-marginal", "wt-marginal")
#: ``coding`` keys that wire the workflow (which annotations, variants, models), not scores.
WORKFLOW_KEYS = ("annotations", "variants", "protein_models", "models")


@dataclass(frozen=True)
class CodingSettings:
    """How coding variants are scored with protein language models.

    ``codon_tables`` maps contig names to NCBI translation table ids (e.g. ``chrM: 2``); other
    contigs use the standard code.
    """

    mode: str = "masked-marginal"
    batch_size: int = 8
    codon_tables: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown protein scoring mode {self.mode!r}; choose one of "
                              f"{MODES}")
        if self.batch_size < 1:
            raise ConfigError("coding batch_size must be >= 1")


def coding_settings(section: Mapping[str, Any]) -> CodingSettings:
    """``CodingSettings`` from the ``coding`` config section."""
    from dnalm.config import settings_from

    return settings_from(CodingSettings, section, where="coding", ignore=WORKFLOW_KEYS)
