"""Save and load dnalm models as plain Hugging Face directories.

A model directory holds what ``save_pretrained`` writes for the model and for its tokenizer (so
``AutoModelForMaskedLM`` and ``AutoTokenizer`` load it without ``trust_remote_code``), the
tokenizer's ``dnalm_tokenizer.json``, and ``dnalm_model.json``: the preset, size and training
length, which downstream stages (scoring, fine-tuning) need and which a bare config does not say.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel

from dnalm.errors import ConfigError
from dnalm.models.presets import TOKENIZER_META, get_preset
from dnalm.models.rmt import is_rmt_masked_lm

MODEL_META = "dnalm_model.json"


def save_model_dir(
    model: PreTrainedModel,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    meta: Mapping[str, Any],
) -> None:
    """Write ``model`` + its tokenizer + dnalm metadata into ``out_dir`` (created if needed).

    Callers that need atomicity write into a temporary directory (``dnalm.io.atomic_dir``).
    ``meta`` should hold at least ``preset``, ``size`` and ``max_length``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if "max_length" in meta:
        tokenizer.model_max_length = int(meta["max_length"])
    tokenizer.save_pretrained(out)
    src_meta = Path(tokenizer_dir) / TOKENIZER_META
    if src_meta.is_file():
        shutil.copyfile(src_meta, out / TOKENIZER_META)
    (out / MODEL_META).write_text(json.dumps(dict(meta), indent=2, sort_keys=True) + "\n")


def read_model_meta(model_dir: str | Path) -> dict[str, Any]:
    """The ``dnalm_model.json`` of a model directory ({} for a foreign Hugging Face model)."""
    path = Path(model_dir) / MODEL_META
    return json.loads(path.read_text()) if path.is_file() else {}


def load_model_dir(
    model_dir: str | Path,
    *,
    attn_implementation: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> PreTrainedModel:
    """Load a model directory written by :func:`save_model_dir` (or any masked-LM directory).

    The attention kernel defaults to the preset's, so a resumed segment computes exactly what an
    uninterrupted run would; weights are loaded in float32 (mixed precision is applied by
    autocast, never by storing low-precision master weights).
    """
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ConfigError("not a model directory (no config.json)", where=str(path))
    meta = read_model_meta(path)
    impl = attn_implementation
    if impl is None and meta.get("preset"):
        impl = get_preset(meta["preset"]).attn_implementation
    kwargs: dict[str, Any] = {"dtype": dtype}
    if impl is not None and not is_rmt_masked_lm(path):  # RMT: the kernel is in its config
        kwargs["attn_implementation"] = impl
    return AutoModelForMaskedLM.from_pretrained(str(path), **kwargs)
