"""Save dnalm models as plain Hugging Face directories.

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

from transformers import AutoTokenizer, PreTrainedModel

from dnalm.models.directory import MODEL_META
from dnalm.models.presets import TOKENIZER_META


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
