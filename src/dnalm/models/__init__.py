"""DNA language models: presets of maintained ``transformers`` classes, native classes for the
published architectures transformers does not maintain (DNABERT-2, Nucleotide Transformer v2,
GENA-LM BERT), recurrent memory, and the one reader of model directories
(:mod:`dnalm.models.directory`). Importing this package registers every native class with the
``transformers`` Auto classes."""

from dnalm.models.directory import (
    MODEL_META,
    import_checkpoint,
    inspect_model_dir,
    load_masked_lm,
    read_model_meta,
    register_native_classes,
)
from dnalm.models.presets import (
    PRESETS,
    SIZES,
    TOKENIZER_KINDS,
    Preset,
    TokenizerInfo,
    build_model,
    get_preset,
    load_tokenizer_info,
    preset_config,
)
from dnalm.models.rmt import (
    RMTConfig,
    RMTForMaskedLM,
    RMTForSequenceClassification,
)
from dnalm.models.saving import save_model_dir
from dnalm.runtime import count_parameters, position_limit

register_native_classes()

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
    "import_checkpoint",
    "inspect_model_dir",
    "load_masked_lm",
    "load_tokenizer_info",
    "position_limit",
    "preset_config",
    "read_model_meta",
    "save_model_dir",
]
