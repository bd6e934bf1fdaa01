"""The pretraining settings and the recurrent-memory block: one default per key (the dataclass's,
repeated and described in the schema), one spelling (old names read with one deprecation line),
one reader of a run for the rules, the rule's script and the command line, and no torch."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnalm.errors import ConfigError
from dnalm.model_settings import PRESET_NAMES, SIZES, RMTSettings
from dnalm.train import config as settings
from dnalm.train.config import (
    DEFAULT_SEED,
    RENAMED,
    RENAMED_RMT,
    WORKFLOW_KEYS,
    PretrainConfig,
    PretrainMemory,
    incompatible_keys,
    load_settings,
    pretrain_settings,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "config/config.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
RUN = SCHEMA["properties"]["pretraining"]["properties"]["models"]["additionalProperties"]
FINETUNE_RMT = SCHEMA["properties"]["finetune"]["properties"]["rmt"]


def _defaults(cls: type) -> dict[str, Any]:
    """Each dataclass field's default (``default_factory`` called); required fields left out."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _check_section(properties: dict[str, Any], cls: type, *, required: set[str] = frozenset(),
                   renamed: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
                   ) -> None:
    """Every key described; every default the dataclass's; no field missing from the schema."""
    renamed, extra = renamed or {}, extra or {}
    defaults = {**_defaults(cls), **extra}
    fields = {f.name for f in dataclasses.fields(cls)} | set(extra)
    assert set(properties) == fields | set(renamed), set(properties) ^ (fields | set(renamed))
    for key, prop in properties.items():
        assert len(prop.get("description", "")) > 15, f"{key} has no description"
        if key in required:  # preset and tokenizer: no default anywhere
            assert "default" not in prop and key not in _defaults(cls), key
        elif key in renamed:  # an old name: no default of its own (it would shadow the new one)
            assert "default" not in prop, key
            assert renamed[key] in prop["description"], key
        else:
            assert "default" in prop, f"{key} has no schema default"
            assert prop["default"] == defaults[key], (key, prop["default"], defaults[key])
            assert type(prop["default"]) is type(defaults[key]), key


def test_every_pretraining_key_has_the_dataclass_default_and_a_description() -> None:
    assert len(RUN["properties"]) == 37  # 34 settings, tokenizer and genomes, one old name
    _check_section(RUN["properties"], PretrainConfig, required=set(RUN["required"]),
                   renamed=RENAMED, extra={"tokenizer": None, "genomes": None})
    assert set(RUN["required"]) == {"preset", "tokenizer"}
    assert set(WORKFLOW_KEYS) == {"tokenizer", "genomes"}
    rmt = RUN["properties"]["rmt"]
    assert rmt["if"] == {"type": "object"}  # Snakemake would fill defaults into a null block
    _check_section(rmt["then"]["properties"], PretrainMemory, renamed=RENAMED_RMT)


def test_every_finetune_rmt_key_has_the_dataclass_default_and_a_description() -> None:
    _check_section(FINETUNE_RMT["properties"], RMTSettings)


def test_the_model_config_and_from_encoder_take_the_finetune_rmt_defaults() -> None:
    import inspect

    from dnalm.models.rmt import RMTConfig, RMTForSequenceClassification

    own = RMTSettings()
    config = RMTConfig()
    signature = inspect.signature(RMTForSequenceClassification.from_encoder).parameters
    for key in ("num_mem_tokens", "segment_length", "max_n_segments", "bptt_depth", "pooling"):
        assert getattr(config, key) == getattr(own, key), key
        assert signature[key].default == getattr(own, key), key


def test_preset_names_sizes_and_the_seed_agree_with_the_model_code_and_the_schema() -> None:
    from dnalm.models.presets import PRESETS

    assert tuple(PRESETS) == PRESET_NAMES
    assert all(tuple(p.sizes) == SIZES for p in PRESETS.values())
    assert RUN["properties"]["preset"]["enum"] == list(PRESET_NAMES)
    assert RUN["properties"]["size"]["enum"] == list(SIZES)
    assert SCHEMA["properties"]["seed"]["default"] == DEFAULT_SEED
    assert [n for n, p in PRESETS.items() if p.block_sparse] == ["gena"]


def test_the_settings_import_without_torch() -> None:
    code = ("import sys, dnalm.train.config, dnalm.model_settings, dnalm.train; "
            "from dnalm.train import PretrainConfig, pretrain_settings; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "src")}, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


def _workflow_config(run: dict[str, Any], seed: int = 7) -> dict[str, Any]:
    return {"seed": seed, "pretraining": {"models": {"m": {"tokenizer": "char", **run}}}}


def _snakemake_validated(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the rules see it: validated by Snakemake, which fills in schema defaults."""
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    validate(config, str(SCHEMA_PATH))
    return config


@pytest.fixture(autouse=True)
def _fresh_deprecation_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "_WARNED", set())


def test_old_names_are_read_with_one_deprecation_line(caplog: pytest.LogCaptureFixture) -> None:
    new = _workflow_config({"preset": "gena", "steps_per_job": 150,
                            "rmt": {"num_mem_tokens": 4, "max_n_segments": 3}})
    old = _workflow_config({"preset": "gena", "segment_steps": 150,
                            "rmt": {"num_mem_tokens": 4, "segments": 3}})
    with caplog.at_level(logging.WARNING, logger="dnalm.train.config"):
        expected = pretrain_settings(new, "m")
        assert not caplog.records
        for _ in range(3):  # the rules read a run many times: one line per run and name
            assert pretrain_settings(old, "m") == expected
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == ("pretraining.models.m: segment_steps is now called steps_per_job; "
                    "rmt.segments is now called rmt.max_n_segments (the old names still work)")
    assert expected.steps_per_job == 150 and expected.rmt == PretrainMemory(4, 3, -1)
    # Snakemake fills steps_per_job and rmt.max_n_segments with their defaults beside the old
    # names: the old names' values still win, and the filled config reads like the sparse one
    assert pretrain_settings(_snakemake_validated(old), "m") == expected
    assert pretrain_settings(_snakemake_validated(new), "m") == expected
    with pytest.raises(ConfigError, match=r"segment_steps .* is 150 but steps_per_job is 300"):
        PretrainConfig.from_dict({"preset": "nt", "segment_steps": 150, "steps_per_job": 300})


def test_one_reader_of_a_run_resolves_defaults_and_the_top_level_seed() -> None:
    sparse = _workflow_config({"preset": "nt", "genomes": ["demo"]}, seed=7)
    filled = _snakemake_validated(sparse)
    assert len(filled["pretraining"]["models"]["m"]) == 36  # every key, old name left out
    for config in (sparse, filled):
        run = pretrain_settings(config, "m")
        assert run == PretrainConfig(preset="nt", seed=7)
        assert run.rmt is None and run.total_steps == 10_000 and run.num_segments == 5
    assert pretrain_settings(_workflow_config({"preset": "nt", "seed": 3}), "m").seed == 3
    assert PretrainConfig(preset="nt").seed == DEFAULT_SEED
    assert PretrainConfig(preset="nt", rmt={}).rmt == PretrainMemory()  # {}: memory, defaults
    with pytest.raises(ConfigError, match="no pretraining run 'x'"):
        pretrain_settings(sparse, "x")


def test_total_steps_is_not_a_rule_param() -> None:
    """Raising total_steps must add jobs, not rerun the finished ones (Snakemake reruns a job
    whose params change): the params are the settings without it, nothing else left out."""
    short = pretrain_settings(_workflow_config({"preset": "nt", "total_steps": 300,
                                                "steps_per_job": 150}), "m")
    longer = short.replace(total_steps=450)
    assert (short.num_segments, longer.num_segments) == (2, 3)
    assert short.rule_params() == longer.rule_params()
    assert set(short.rule_params()) == set(short.to_dict()) - {"total_steps"}
    assert short.replace(learning_rate=1e-3).rule_params() != short.rule_params()


def test_a_checkpoint_config_in_the_old_spelling_matches_the_current_one() -> None:
    current = PretrainConfig.from_dict({"preset": "gena", "steps_per_job": 10,
                                        "rmt": {"num_mem_tokens": 4, "max_n_segments": 3}})
    # before the renames the saved config spelled segment_steps and kept rmt as written
    saved = {("segment_steps" if k == "steps_per_job" else k): v
             for k, v in current.to_dict().items()}
    saved["rmt"] = {"num_mem_tokens": 4, "segments": 3}
    assert incompatible_keys(saved, current) == []
    assert incompatible_keys({**saved, "segment_steps": 20}, current) == ["steps_per_job"]
    assert incompatible_keys({**saved, "rmt": {"segments": 3}}, current) == ["rmt"]
    plain = PretrainConfig.from_dict({"preset": "nt"})
    assert incompatible_keys({**plain.to_dict(), "rmt": {}}, plain) == []  # old "no memory"
    assert incompatible_keys({**plain.to_dict(), "rmt": {}}, current) != []


def test_row_length_is_the_model_input_length() -> None:
    """PretrainConfig.row_length and RMTConfig.input_length are one formula: a row is exactly
    the input an RMTForMaskedLM wrapped around a ``max_length`` window takes."""
    from transformers import BertConfig

    from dnalm.models.rmt import RMTConfig

    for window, memory, segments in ((160, 4, 3), (128, 10, 2), (4096, 10, 6)):
        run = PretrainConfig(preset="gena", max_length=window,
                             rmt={"num_mem_tokens": memory, "max_n_segments": segments})
        model = RMTConfig(encoder=BertConfig(max_position_embeddings=window).to_dict(),
                          num_mem_tokens=memory, max_n_segments=segments, pooling="cls")
        assert run.row_length == model.input_length
        assert model.segment_size == window  # each segment fills the window exactly
        assert run.row_length == segments * (window - memory - 3) + 2


def test_settings_files_for_the_command_line(tmp_path: Path) -> None:
    workflow = REPO / "config/config.yaml"
    demo = pretrain_settings(yaml.safe_load(workflow.read_text()), "demo")
    assert load_settings(workflow, model="demo") == demo
    assert load_settings(workflow, ["total_steps=600"], model="demo") == \
        demo.replace(total_steps=600)
    flat = tmp_path / "run.yaml"
    flat.write_text(yaml.safe_dump({"pretrain": {"preset": "nt", "segment_steps": 3}}))
    assert load_settings(flat, ["seed=5"]) == PretrainConfig(preset="nt", steps_per_job=3, seed=5)
    with pytest.raises(ConfigError, match="name one with --model"):
        load_settings(workflow)
    with pytest.raises(ConfigError, match="--set expects key=value"):
        load_settings(flat, ["seed"])
    with pytest.raises(ConfigError, match="cannot read pretraining settings"):
        load_settings(tmp_path / "missing.yaml")


def test_a_job_on_several_gpus_restarts_itself_as_the_dnalm_command(tmp_path: Path) -> None:
    """Outside torchrun a job given N > 1 GPUs runs ``torchrun ... -m dnalm pretrain-segment``
    with its settings in a file: the command parses back to the same job and settings."""
    from dnalm.cli import build_parser
    from dnalm.train.launch import needs_torchrun, torchrun_command

    run = PretrainConfig(preset="gena", steps_per_job=3, rmt={"max_n_segments": 3}, seed=9)
    file = tmp_path / "settings.yaml"
    file.write_text(yaml.safe_dump(run.to_dict()))
    job = dict(tokenizer_dir=tmp_path / "tok", train_dirs=[tmp_path / "a", tmp_path / "b"],
               validation_dirs=[tmp_path / "v"], segment=2,
               previous_checkpoint=tmp_path / "segments/1", out_dir=tmp_path / "segments/2",
               threads=16, gpus=4)
    command = torchrun_command(file, **job)
    assert command[:8] == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=4", "-m", "dnalm", "pretrain-segment"]
    args = build_parser().parse_args(command[7:])
    assert (args.tokenizer, args.train, args.validation, args.segment, args.previous, args.out,
            args.threads, args.gpus) == tuple(job.values())
    assert load_settings(args.config, args.set, model=args.model) == run
    assert not needs_torchrun(1) and not needs_torchrun(0)
