"""Model presets: DNABERT, DNABERT-2, Nucleotide Transformer and GENA-LM shapes in three sizes.

Every preset is built from a model class that ``transformers`` itself maintains, so a trained
model is an ordinary Hugging Face directory that ``AutoModelForMaskedLM.from_pretrained`` loads
without ``trust_remote_code``:

- ``dnabert``: ``BertForMaskedLM``; ``kmer`` (overlapping k-mer) tokenizers. DNABERT: BERT with
  absolute positions, masking of contiguous k-token spans.
- ``dnabert2``: ``ModernBertForMaskedLM``; ``bpe``, ``char``, ``nt_kmer`` or ``pretrained``.
  DNABERT-2 in spirit: a modern encoder (rotary positions, GLU, fused sdpa attention); dnalm's
  sequence packing removes padding, which is what ModernBERT's unpadding was for.
- ``nt``: ``EsmForMaskedLM``; ``nt_kmer`` (non-overlapping 6-mers), ``char`` or ``pretrained``.
  Nucleotide Transformer v1: ESM encoder with learned absolute positions.
- ``gena``: ``BigBirdForMaskedLM``; ``bpe``, ``char``, ``nt_kmer`` or ``pretrained``. GENA-LM's
  long models: BigBird block-sparse attention over 4,096-token inputs.

Why these tokenizer rules: overlapping k-mers make plain 15 % token masking trivial (a masked
k-mer is spelled out by its neighbours), so they are only accepted by ``dnabert``, whose training
masks contiguous spans of ``k`` tokens. Conversely ``dnabert`` refuses non-overlapping tokenizers
because its span masking would then hide ``k`` times more sequence than intended. A
``pretrained`` tokenizer (copied from an existing model) is accepted by the non-overlapping
presets; ``dnabert`` accepts it only when ``dnalm_tokenizer.json`` records its ``k``.

Sizes: ``tiny`` (< 1M parameters, for CPU tests), ``small`` (a few million) and ``base`` (about
100M with a 4k-token vocabulary, the size of the published models).

Everything that can be checked before training starts is checked in :func:`preset_config` and
raised as :class:`dnalm.errors.ConfigError` with one line: unknown preset or size, tokenizer kind
incompatible with the preset, vocabulary that does not fit, sequence length above the preset's
position limit (or too short for BigBird's block-sparse attention), unknown config overrides.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import (
    AutoModelForMaskedLM,
    BertConfig,
    BertForMaskedLM,
    BigBirdConfig,
    BigBirdForMaskedLM,
    EsmConfig,
    EsmForMaskedLM,
    ModernBertConfig,
    ModernBertForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
)

from dnalm.errors import ConfigError
from dnalm.model_settings import SIZES

log = logging.getLogger(__name__)

#: Name of the metadata file a tokenizer directory carries next to the Hugging Face files.
TOKENIZER_META = "dnalm_tokenizer.json"
#: Tokenizer kinds that dnalm's tokenizer stage produces.
TOKENIZER_KINDS = ("bpe", "kmer", "nt_kmer", "char", "pretrained")


@dataclass(frozen=True)
class TokenizerInfo:
    """What a model needs to know about its tokenizer (read once, from disk)."""

    path: Path
    kind: str
    k: int | None
    vocab_size: int
    pad_id: int
    unk_id: int | None
    cls_id: int
    sep_id: int
    mask_id: int
    special_ids: tuple[int, ...]

    @property
    def content_ids(self) -> list[int]:
        """Ids of ordinary tokens: what a random MLM replacement may draw."""
        special = set(self.special_ids)
        return [i for i in range(self.vocab_size) if i not in special]


@dataclass(frozen=True)
class Preset:
    """One model family: its classes, accepted tokenizers, sizes and length limits."""

    name: str
    model_class: type[PreTrainedModel]
    config_class: type[PretrainedConfig]
    tokenizer_kinds: frozenset[str]
    #: Largest ``max_length`` (tokens, [CLS] and [SEP] included) the preset accepts.
    position_limit: int
    default_max_length: Mapping[str, int]
    sizes: Mapping[str, Mapping[str, Any]]
    #: Keyword arguments the config class accepts besides its dataclass fields.
    extra_config_keys: frozenset[str] = field(default_factory=frozenset)
    #: DNABERT masks spans of ``k`` tokens; the others mask single tokens.
    span_masking: bool = False
    #: Attention kernel: "sdpa" is PyTorch's fused scaled-dot-product attention.
    attn_implementation: str = "sdpa"
    #: BigBird block-sparse attention: ``max_length`` is checked against its full-attention
    #: bound, and training batches are padded to ``max_length`` (BigBird falls back to full
    #: attention on a shorter batch and stays there).
    block_sparse: bool = False
    description: str = ""


_BERT_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 256},
    "small": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
              "intermediate_size": 1024},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072},
}

PRESETS: dict[str, Preset] = {
    "dnabert": Preset(
        name="dnabert",
        model_class=BertForMaskedLM,
        config_class=BertConfig,
        tokenizer_kinds=frozenset({"kmer", "pretrained"}),
        position_limit=512,
        default_max_length={"tiny": 128, "small": 512, "base": 512},
        sizes=_BERT_SIZES,
        span_masking=True,
        description="BERT encoder, overlapping k-mers, k-token span masking (DNABERT)",
    ),
    "dnabert2": Preset(
        name="dnabert2",
        model_class=ModernBertForMaskedLM,
        config_class=ModernBertConfig,
        tokenizer_kinds=frozenset({"bpe", "char", "nt_kmer", "pretrained"}),
        position_limit=8192,
        default_max_length={"tiny": 128, "small": 512, "base": 1024},
        sizes={
            # ModernBERT: rotary positions, GLU MLP (Wi is 2 x intermediate), pre-norm, no biases,
            # a global-attention layer every third layer and 128-token local windows otherwise.
            "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "intermediate_size": 128},
            "small": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
                      "intermediate_size": 512},
            "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                     "intermediate_size": 2304},
        },
        extra_config_keys=frozenset(
            {"global_attn_every_n_layers", "global_rope_theta", "local_rope_theta"}
        ),
        description="ModernBERT encoder (rotary, GLU, fused sdpa attention), BPE (DNABERT-2)",
    ),
    "nt": Preset(
        name="nt",
        model_class=EsmForMaskedLM,
        config_class=EsmConfig,
        tokenizer_kinds=frozenset({"nt_kmer", "char", "pretrained"}),
        position_limit=2048,
        default_max_length={"tiny": 128, "small": 1000, "base": 1000},
        sizes=_BERT_SIZES,
        description="ESM encoder, non-overlapping 6-mers (Nucleotide Transformer v1)",
    ),
    "gena": Preset(
        name="gena",
        model_class=BigBirdForMaskedLM,
        config_class=BigBirdConfig,
        tokenizer_kinds=frozenset({"bpe", "char", "nt_kmer", "pretrained"}),
        position_limit=4096,
        default_max_length={"tiny": 4096, "small": 4096, "base": 4096},
        sizes={
            "tiny": {**_BERT_SIZES["tiny"], "block_size": 16, "num_random_blocks": 2},
            "small": {**_BERT_SIZES["small"], "block_size": 64, "num_random_blocks": 3},
            "base": {**_BERT_SIZES["base"], "block_size": 64, "num_random_blocks": 3},
        },
        # BigBird's block-sparse attention has no sdpa kernel in transformers.
        attn_implementation="eager",
        block_sparse=True,
        description="BigBird block-sparse attention for 4,096-token inputs (GENA-LM)",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or a ConfigError that lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None


def load_tokenizer_info(tokenizer_dir: str | Path) -> TokenizerInfo:
    """What a model built on ``tokenizer_dir`` needs to know (read by :mod:`dnalm.tokenizers`).

    The kind is the one the tokenizer stage recorded (``pretrained`` for a copied published
    tokenizer, whose ``k`` is read from its vocabulary). Special ids are taken from the
    tokenizer itself rather than assumed; a tokenizer without pad, cls, sep or mask tokens
    cannot feed a masked LM's training rows.
    """
    from dnalm.errors import DnalmError
    from dnalm.tokenizers import load_tokenizer

    path = Path(tokenizer_dir)
    meta_path = path / TOKENIZER_META
    if not meta_path.is_file():
        raise ConfigError(f"no {TOKENIZER_META} in tokenizer directory", where=str(path))
    try:
        tok = load_tokenizer(path)
    except DnalmError as exc:
        raise ConfigError(f"cannot load tokenizer ({exc.reason})",
                          where=exc.where or str(path)) from None
    kind = tok.metadata.get("kind", tok.kind)
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(
            f"tokenizer kind {kind!r} is not one of {', '.join(TOKENIZER_KINDS)}", where=str(path)
        )
    ids = {}
    for name in ("pad", "cls", "sep", "mask"):
        value = tok.special_ids.get(name)
        if value is None and name in ("cls", "sep"):
            value = tok.special_ids.get("bos" if name == "cls" else "eos")
        if value is None:
            raise ConfigError(f"tokenizer has no {name} token", where=str(path))
        ids[name] = int(value)
    special = {int(v) for v in tok.special_ids.values() if v is not None}
    special |= set(tok.special_tokens.values())
    return TokenizerInfo(
        path=path,
        kind=kind,
        k=int(tok.k) if tok.k is not None else None,
        vocab_size=tok.vocab_size,
        pad_id=ids["pad"],
        unk_id=tok.unk_id,
        cls_id=ids["cls"],
        sep_id=ids["sep"],
        mask_id=ids["mask"],
        special_ids=tuple(sorted(special)),
    )


def check_tokenizer(preset: Preset, tok: TokenizerInfo) -> None:
    """Refuse tokenizer kinds whose masking would be meaningless for ``preset`` (see module doc)."""
    if tok.kind not in preset.tokenizer_kinds:
        hint = (
            " (overlapping k-mers need the dnabert preset's span masking)"
            if tok.kind == "kmer"
            else ""
        )
        raise ConfigError(
            f"preset {preset.name!r} does not accept a {tok.kind!r} tokenizer; it needs "
            f"{' or '.join(sorted(preset.tokenizer_kinds))}{hint}",
            where=str(tok.path),
        )
    if preset.span_masking and tok.k is None:
        raise ConfigError(
            f"preset {preset.name!r} masks spans of k tokens but {TOKENIZER_META} has no k",
            where=str(tok.path),
        )


def resolve_max_length(preset: Preset, size: str, max_length: int | None) -> int:
    """The training length in tokens ([CLS] and [SEP] included), checked against the preset."""
    value = preset.default_max_length[size] if max_length is None else int(max_length)
    if value > preset.position_limit:
        raise ConfigError(
            f"max_length {value} is above the {preset.name} preset's limit of "
            f"{preset.position_limit} tokens"
        )
    if value < 8:
        raise ConfigError(f"max_length {value} is too short; use at least 8 tokens")
    return value


def _check_block_sparse(config: PretrainedConfig, max_length: int) -> None:
    """BigBird silently falls back to full attention for short inputs; refuse them instead.

    ``BigBirdModel.forward`` switches to ``original_full`` when the sequence has at most
    ``(5 + 2 * num_random_blocks) * block_size`` tokens, logs a warning, and *stays* switched for
    every later call. A GENA model trained that way would not be block-sparse at all, so the
    length must exceed that bound and be a multiple of the block size (otherwise BigBird pads
    every batch, which is wasted compute).
    """
    if config.attention_type != "block_sparse":
        return
    block, rand = config.block_size, config.num_random_blocks
    minimum = (5 + 2 * rand) * block
    if max_length <= minimum:
        raise ConfigError(
            f"gena block-sparse attention needs max_length > (5 + 2 x {rand}) x {block} = "
            f"{minimum} tokens, got {max_length}; raise max_length or lower block_size"
        )
    if max_length % block:
        raise ConfigError(
            f"gena max_length {max_length} must be a multiple of block_size {block}"
        )


def _config_kwargs(preset: Preset, size: str, tok: TokenizerInfo, max_length: int) -> dict:
    """Preset defaults + tokenizer-derived ids + length, before user overrides."""
    kwargs: dict[str, Any] = dict(preset.sizes[size])
    kwargs.update(vocab_size=tok.vocab_size, pad_token_id=tok.pad_id)
    if preset.name == "dnabert":
        kwargs.update(max_position_embeddings=max_length, type_vocab_size=1)
    elif preset.name == "dnabert2":
        kwargs.update(
            max_position_embeddings=max_length,
            cls_token_id=tok.cls_id,
            sep_token_id=tok.sep_id,
            bos_token_id=tok.cls_id,
            eos_token_id=tok.sep_id,
        )
    elif preset.name == "nt":
        # ESM numbers positions from pad_token_id + 1 (see create_position_ids_from_input_ids),
        # so the table needs pad_id + 1 extra rows; NT v1 has 1002 rows for 1000 tokens.
        kwargs.update(
            max_position_embeddings=max_length + tok.pad_id + 1,
            mask_token_id=tok.mask_id,
            eos_token_id=tok.sep_id,
            position_embedding_type="absolute",
            token_dropout=False,
            emb_layer_norm_before=False,
        )
    elif preset.name == "gena":
        kwargs.update(
            max_position_embeddings=max_length,
            attention_type="block_sparse",
            bos_token_id=tok.cls_id,
            eos_token_id=tok.sep_id,
            sep_token_id=tok.sep_id,
            type_vocab_size=1,
        )
    return kwargs


def _check_overrides(preset: Preset, overrides: Mapping[str, Any], tok: TokenizerInfo) -> None:
    """Typos in overrides would otherwise be stored silently as unused config attributes."""
    known = {f.name for f in dataclasses.fields(preset.config_class)} | preset.extra_config_keys
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"unknown {preset.config_class.__name__} override(s): {', '.join(unknown)}"
        )
    vocab = overrides.get("vocab_size")
    if vocab is not None and int(vocab) < tok.vocab_size:
        raise ConfigError(
            f"the tokenizer has {tok.vocab_size} tokens but the model's vocab_size override is "
            f"{vocab}: token ids would index past the embedding table"
        )
    for key in ("pad_token_id", "mask_token_id", "cls_token_id", "sep_token_id"):
        if key in overrides:
            raise ConfigError(f"{key} is read from the tokenizer and cannot be overridden")


def preset_config(
    preset: str,
    size: str,
    tokenizer_dir: str | Path,
    *,
    max_length: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> PretrainedConfig:
    """The ``transformers`` config for ``preset`` at ``size``, fitted to the tokenizer.

    ``max_length`` is the training length in tokens, [CLS] and [SEP] included (default: the
    preset's default for the size). ``overrides`` are config fields to change (for example
    ``{"num_hidden_layers": 6}``). Raises :class:`ConfigError` for anything that would fail later.
    """
    spec = get_preset(preset)
    if size not in spec.sizes:
        raise ConfigError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    tok = load_tokenizer_info(tokenizer_dir)
    check_tokenizer(spec, tok)
    length = resolve_max_length(spec, size, max_length)
    overrides = dict(overrides or {})
    _check_overrides(spec, overrides, tok)
    kwargs = _config_kwargs(spec, size, tok, length)
    kwargs.update(overrides)
    try:
        config = spec.config_class(**kwargs)
    except (TypeError, ValueError, StrictDataclassError) as exc:
        # transformers 5 configs are strict dataclasses: wrong types raise StrictDataclassError.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ConfigError(f"invalid {spec.name} config: {' '.join(lines[:2])}") from None
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(
            f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads "
            f"{config.num_attention_heads}"
        )
    if spec.block_sparse:
        _check_block_sparse(config, length)
    config.architectures = [spec.model_class.__name__]
    return config


def build_model(
    preset: str,
    size: str,
    tokenizer_dir: str | Path,
    *,
    max_length: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """A freshly initialised masked-LM for ``preset``/``size`` whose vocabulary is the tokenizer's.

    ``seed`` makes the initial weights reproducible without touching the caller's global RNG.
    ``attn_implementation`` overrides the preset's kernel (``"sdpa"``, ``"eager"``, or
    ``"flash_attention_2"`` where that package is installed).
    """
    spec = get_preset(preset)
    config = preset_config(
        preset, size, tokenizer_dir, max_length=max_length, overrides=overrides
    )
    impl = attn_implementation or spec.attn_implementation
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            model = AutoModelForMaskedLM.from_config(config, attn_implementation=impl)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"cannot build {preset} with attention {impl!r}: {exc}") from None
    return model


