"""Turn the validated workflow configuration into the library's typed settings.

Every stage's settings are a frozen dataclass in the stage's own torch-free settings place
(:class:`dnalm.chunks.ChunkConfig`/:class:`~dnalm.chunks.SplitConfig`,
:class:`dnalm.score.settings.ScoreConfig`, :mod:`dnalm.finetune.settings` for fine-tuning, the
k-mer baseline and tracks, :class:`dnalm.coding.settings.CodingSettings`,
:class:`dnalm.train.config.PretrainConfig`). The dataclass owns each default: the ``dnalm``
command line takes its argparse defaults from it (:func:`field_default`), Snakemake rules and
scripts build the dataclass from the validated config (:func:`settings_from`), and the JSON
schema repeats the default for users to read — ``tests/test_settings.py`` asserts that every
schema default equals its dataclass default and that every key is described, so changing a
default is one edit plus the schema.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from dnalm.chunks import ChunkConfig, SplitConfig
from dnalm.errors import ConfigError


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass field ``name`` (for argparse defaults and documentation)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise ConfigError(f"{cls.__name__}.{name} has no default")
    raise ConfigError(f"{cls.__name__} has no field {name!r}")


def _is_tuple_field(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith("tuple") or "tuple[" in annotation
    origin = typing.get_origin(annotation)
    return origin is tuple or any(typing.get_origin(a) is tuple
                                  for a in typing.get_args(annotation))


def settings_from(cls: type, section: Mapping[str, Any] | None, *, where: str,
                  ignore: tuple[str, ...] = (), **fixed: Any) -> Any:
    """``cls`` built from a config section: its keys override the dataclass defaults.

    Keys in ``ignore`` belong to the workflow, not to the settings (e.g. ``regions``); any
    other key the dataclass does not have is an error naming ``where.key`` (a misspelt key must
    not fall back to a default silently). YAML lists become tuples for tuple-typed fields;
    ``None`` values mean "the default". ``fixed`` values (a seed, a thread count) are passed
    as they are.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = dict(section or {})
    unknown = sorted(set(values) - set(fields) - set(ignore))
    if unknown:
        keys = ", ".join(f"{where}.{k}" for k in unknown)
        raise ConfigError(f"unknown config key(s) {keys}")
    required = [name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                and values.get(name) is None and name not in fixed]
    if required:
        raise ConfigError(f"missing config key(s) {', '.join(f'{where}.{k}' for k in required)}")
    kwargs = {}
    for name, value in values.items():
        if name in ignore or value is None:
            continue
        if isinstance(value, list) and _is_tuple_field(fields[name].type):
            value = tuple(value)
        kwargs[name] = value
    kwargs.update(fixed)
    return cls(**kwargs)


def chunk_config(cfg: Mapping[str, Any], seed: int = 42) -> ChunkConfig:
    """``ChunkConfig`` from the ``chunking`` section."""
    return settings_from(ChunkConfig, cfg, where="chunking", seed=seed)


def split_config(cfg: Mapping[str, Any], seed: int = 42) -> SplitConfig:
    """``SplitConfig`` from the ``split`` section."""
    return settings_from(SplitConfig, cfg, where="split", seed=seed)


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
