"""DNA language-model presets built from maintained ``transformers`` classes."""

from dnalm.models.presets import (
    PRESETS,
    SIZES,
    TOKENIZER_KINDS,
    Preset,
    TokenizerInfo,
    build_model,
    count_parameters,
    get_preset,
    load_tokenizer_info,
    model_max_length,
    preset_config,
)
from dnalm.models.rmt import (
    RMTConfig,
    RMTForMaskedLM,
    RMTForSequenceClassification,
    long_context_embeddings,
)
from dnalm.models.saving import MODEL_META, load_model_dir, read_model_meta, save_model_dir

__all__ = [
    "MODEL_META",
    "PRESETS",
    "SIZES",
    "TOKENIZER_KINDS",
    "Preset",
    "RMTConfig",
    "RMTForMaskedLM",
    "RMTForSequenceClassification",
    "TokenizerInfo",
    "build_model",
    "count_parameters",
    "get_preset",
    "load_model_dir",
    "load_tokenizer_info",
    "long_context_embeddings",
    "model_max_length",
    "preset_config",
    "read_model_meta",
    "save_model_dir",
]
