"""One owner per default: every schema default equals its settings dataclass's default.

The settings dataclasses own the defaults (the command line takes its argparse defaults from
them, the rules and scripts build them from the validated config); the JSON schema repeats them
for users. This test holds the two together and checks that every config key is described, so
changing a default is one edit in the dataclass plus the schema.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dnalm.chunks import ChunkConfig, SplitConfig
from dnalm.coding.settings import WORKFLOW_KEYS as CODING_WORKFLOW_KEYS
from dnalm.coding.settings import CodingSettings
from dnalm.config import field_default, settings_from
from dnalm.errors import ConfigError
from dnalm.evaluate import EvaluationSettings
from dnalm.finetune.settings import (
    EFFECT_WORKFLOW_KEYS,
    TRACK_WORKFLOW_KEYS,
    BaselineSettings,
    EffectSettings,
    FinetuneSettings,
    LoraSettings,
    PredictSettings,
    TrackSettings,
)
from dnalm.score.settings import WORKFLOW_KEYS as SCORE_WORKFLOW_KEYS
from dnalm.score.settings import ScoreConfig

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "config" / "config.schema.json").read_text())

#: schema section (``*`` = every entry of a map) -> (dataclass, keys that only wire the workflow)
OWNERS: dict[str, tuple[type, tuple[str, ...]]] = {
    "chunking": (ChunkConfig, ()),
    "split": (SplitConfig, ()),
    "scoring": (ScoreConfig, SCORE_WORKFLOW_KEYS),
    "tracks.*": (TrackSettings, TRACK_WORKFLOW_KEYS),
    "finetune": (FinetuneSettings, ("tasks", "models", "baseline")),
    "finetune.lora": (LoraSettings, ()),
    "finetune.baseline": (BaselineSettings, ()),
    "coding": (CodingSettings, CODING_WORKFLOW_KEYS),
    "predictions": (PredictSettings, ("inputs", "runs")),
    "effects": (EffectSettings, EFFECT_WORKFLOW_KEYS),
    "evaluation": (EvaluationSettings, ("sets", "models", "runs")),
}


def schema_node(path: str) -> dict[str, Any]:
    node = SCHEMA
    for part in path.split("."):
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
    return node


def all_keys(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, child in node.get("properties", {}).items():
        yield f"{path}{key}", child
        yield from all_keys(child, f"{path}{key}.")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from all_keys(extra, f"{path}*.")


def _same(schema_value: Any, dataclass_value: Any) -> bool:
    if isinstance(dataclass_value, tuple):
        dataclass_value = list(dataclass_value)
    if dataclasses.is_dataclass(dataclass_value):
        return schema_value == {} or schema_value is None
    if isinstance(dataclass_value, dict) and not dataclass_value:
        return schema_value in ({}, None)
    return schema_value == dataclass_value


@pytest.mark.parametrize("section", sorted(OWNERS))
def test_schema_defaults_equal_the_dataclass_defaults(section: str) -> None:
    cls, workflow_keys = OWNERS[section]
    fields = {f.name for f in dataclasses.fields(cls)}
    properties = schema_node(section)["properties"]
    for key, node in properties.items():
        if key in workflow_keys:
            continue
        assert key in fields, f"{section}.{key}: no field of {cls.__name__} owns it"
        try:
            default = field_default(cls, key)
        except ConfigError:  # a required field: the schema must not invent a default
            assert "default" not in node, f"{section}.{key}: required, but the schema has one"
            continue
        assert "default" in node, f"{section}.{key}: the schema lacks the default {default!r}"
        assert _same(node["default"], default), \
            f"{section}.{key}: schema {node['default']!r} != {cls.__name__} {default!r}"


def test_every_config_key_is_described() -> None:
    undescribed = [path for path, node in all_keys(SCHEMA) if not node.get("description")]
    assert not undescribed, f"config keys without a description: {undescribed}"


def test_settings_are_built_from_a_section_and_refuse_unknown_keys() -> None:
    built = settings_from(ScoreConfig, {"mode": "wt-marginal", "regions": 4}, where="scoring",
                          ignore=SCORE_WORKFLOW_KEYS)
    assert built == ScoreConfig(mode="wt-marginal")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) scoring\.window_sise"):
        settings_from(ScoreConfig, {"window_sise": 10}, where="scoring")
    with pytest.raises(ConfigError, match=r"missing config key\(s\) tracks\.t\.stride_bp"):
        settings_from(TrackSettings, {"window_bp": 100}, where="tracks.t")
    assert settings_from(SplitConfig, {"test_contigs": ["10"]}, where="split").test_contigs == (
        "10",)


def test_settings_modules_do_not_import_torch() -> None:
    """The Snakefile builds settings while Snakemake parses the workflow: no torch there."""
    code = ("import sys\n"
            "import dnalm.config, dnalm.chunks, dnalm.score.settings, dnalm.coding.settings\n"
            "import dnalm.finetune.settings, dnalm.cli\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_command_line_defaults_come_from_the_dataclasses() -> None:
    from dnalm.cli import build_parser

    parser = build_parser()
    chunk = parser.parse_args(["chunk", "g.fa.gz", "out", "--genome-id", "g"])
    assert (chunk.min_length, chunk.shard_bp, chunk.region_size) == (
        ChunkConfig.min_length, ChunkConfig.shard_bp, SplitConfig.region_size)
    tune = parser.parse_args(["finetune", "task", "model", "out"])
    assert (tune.epochs, tune.batch_size, tune.lora_r) == (
        FinetuneSettings.epochs, FinetuneSettings.batch_size, LoraSettings.r)
    score = parser.parse_args(["score-variants", "--model", "m", "--genome", "g", "--vcf", "v",
                               "--out", "o"])
    assert (score.mode, score.batch_size) == (ScoreConfig.mode, ScoreConfig.batch_size)
