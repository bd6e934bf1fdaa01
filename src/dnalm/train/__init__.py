"""Masked-language-model pretraining: streaming data, masking, segmented training loop.

Names are imported lazily: the settings (:mod:`dnalm.train.config`) are read while Snakemake
parses the workflow, which must not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MaskingConfig": "dnalm.train.collator",
    "MlmMasker": "dnalm.train.collator",
    "PretrainConfig": "dnalm.train.config",
    "PretrainMemory": "dnalm.train.config",
    "pretrain_settings": "dnalm.train.config",
    "StreamConfig": "dnalm.train.data",
    "TokenStream": "dnalm.train.data",
    "list_shards": "dnalm.train.data",
    "evaluate": "dnalm.train.evaluation",
    "evaluate_model_dir": "dnalm.train.evaluation",
    "existing_segments": "dnalm.train.finalize",
    "finalize": "dnalm.train.finalize",
    "run_segment": "dnalm.train.pretrain",
    "train_segment": "dnalm.train.launch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dnalm.train' has no attribute {name!r}")
