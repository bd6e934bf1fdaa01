"""Turn the validated workflow configuration into the library's typed settings.

The JSON schema (``config/config.schema.json``) is the single source of defaults; these helpers
only convert the already validated dictionaries into the dataclasses the stages take, so that a
``dnalm`` command and a Snakemake rule run exactly the same code with the same settings.
"""

from __future__ import annotations

from typing import Any

from dnalm.chunks import ChunkConfig, SplitConfig


def chunk_config(cfg: dict[str, Any], seed: int = 42) -> ChunkConfig:
    """``ChunkConfig`` from the ``chunking`` section."""
    length = cfg.get("length", 1000)
    return ChunkConfig(
        length=tuple(length) if isinstance(length, list) else int(length),
        overlap=int(cfg.get("overlap", 0)),
        min_length=int(cfg.get("min_length", 50)),
        max_n_fraction=float(cfg.get("max_n_fraction", 0.1)),
        softmask=str(cfg.get("softmask", "keep")),
        reverse_complement=bool(cfg.get("reverse_complement", False)),
        seed=seed,
        shard_bp=int(cfg.get("shard_bp", 8_000_000)),
    )


def split_config(cfg: dict[str, Any], seed: int = 42) -> SplitConfig:
    """``SplitConfig`` from the ``split`` section."""
    return SplitConfig(
        mode=str(cfg.get("mode", "regions")),
        validation_fraction=float(cfg.get("validation_fraction", 0.05)),
        test_fraction=float(cfg.get("test_fraction", 0.05)),
        region_size=int(cfg.get("region_size", 100_000)),
        validation_contigs=tuple(cfg.get("validation_contigs", ())),
        test_contigs=tuple(cfg.get("test_contigs", ())),
        seed=seed,
    )


def describe_config_error(config: dict[str, Any], schema_path: str) -> str:
    """One line saying which config key is wrong and why (for a failed schema validation).

    Snakemake's own message dumps the whole schema; users need the key and the reason.
    """
    import json

    import jsonschema

    with open(schema_path) as handle:
        schema = json.load(handle)
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(config)
    )
    if error is None:
        return "invalid configuration"
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"config key {where}: {error.message}"
