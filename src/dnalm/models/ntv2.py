"""Nucleotide Transformer v2 (InstaDeep), native: published checkpoints load without remote code.

NT v2 (``InstaDeepAI/nucleotide-transformer-v2-{50m,100m,250m,500m}-multi-species``) ships a
``config.json`` without ``model_type`` whose ``auto_map`` points at its own ``esm_config.py`` /
``modeling_esm.py``: a copy of transformers 4.32's ESM with one change, the feed-forward. So only
the feed-forward is written here; everything else is transformers' maintained ESM, reused where
it computes exactly what the authors' code computes:

* **Embeddings** (:class:`~transformers.models.esm.modeling_esm.EsmEmbeddings`): word embeddings,
  optional ``token_dropout`` rescaling, optional ``emb_layer_norm_before``, padded rows zeroed.
  With rotary positions transformers builds no position table; the authors' code builds a
  ``max_position_embeddings x hidden`` table it never reads (dropped on conversion).
  Unlike transformers' ``EsmModel``, :class:`NTv2Model` runs the embedding module on
  ``inputs_embeds`` too (as the authors' code does), so a caller that writes vectors into the
  word-embedding output (dnalm's recurrent memory) gets the same processing as token ids.
* **Attention** (``EsmAttention``): pre-LayerNorm, query scaled by ``head_dim ** -0.5`` *before*
  the rotary rotation (ESM's order; it matters with rotary), rotary on query and key, softmax,
  output projection + residual. Attention runs through PyTorch SDPA by default.
* **Rotary table** (``EsmRotaryEmbedding``): one ``inv_freq`` for the model, base 10000; the
  authors store a copy in every layer (``...attention.self.rotary_embeddings.inv_freq``), which
  :func:`convert_published_state_dict` folds into ``esm.rotary_embeddings.inv_freq`` after
  checking the copies agree. Positions are 0..L-1 as in the authors' code.
* **LM head** (``EsmLMHead``, attribute ``lm_head``): dense -> erf-GELU -> LayerNorm -> decoder
  + bias. **Classifier** (``EsmClassificationHead``, attribute ``classifier``): the ``<cls>``
  vector -> dropout -> dense -> tanh -> dropout -> out_proj, exactly the authors'
  ``EsmForSequenceClassification``.

What differs, and is written here: the **SwiGLU feed-forward** of every layer. ``intermediate``
maps hidden -> ``2 * intermediate_size`` (no bias when ``add_bias_fnn`` is false, as published);
the first half goes through SiLU and gates the second half; ``output`` maps
``intermediate_size`` -> hidden (same bias rule) and adds the residual. ``intermediate_size``
therefore means the *gated* width (the published 500M model: 4096, with an 8192-wide
projection), as in the authors' code.

Position limit. Rotary positions have no table, but NT v2 was trained on 2,048-token inputs
(12 kb; its tokenizer's ``model_max_length`` is 2048). The published ``max_position_embeddings``
is 2050 only because ESM numbers absolute positions from ``pad_token_id + 1``; in
:class:`NTv2Config` the field is the longest input in tokens, ``<cls>`` included:
``convert_published_config`` stores 2050 - (pad_token_id + 1) = 2048. The model does not refuse
longer inputs (nor does the authors' code); callers should window at this limit.

Not reproduced: ESM's contact-prediction head (``esm.contact_head``, protein-specific, used
by neither the masked LM nor the classifier; dropped on conversion), ``head_mask``,
``output_attentions``, cross-attention/decoder use and key/value caching (NT v2 is an encoder).

Directories are read by :mod:`dnalm.models.directory`: it recognises a published NT v2
(``auto_map`` to ``modeling_esm`` / ``add_bias_fnn``), converts it with
:func:`convert_published_config` and :func:`convert_published_state_dict` and loads the weights
strictly. A native copy (``save_pretrained``) reloads through ``AutoModelForMaskedLM`` /
``AutoModelForSequenceClassification`` once this module is imported (``model_type``
``dnalm_ntv2``, registered at import), without ``trust_remote_code``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from huggingface_hub.errors import StrictDataclassError
from torch import nn
from transformers import EsmConfig, PreTrainedModel
from transformers import initialization as init
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    MaskedLMOutput,
    SequenceClassifierOutput,
)
from transformers.models.esm.modeling_esm import (
    EsmAttention,
    EsmClassificationHead,
    EsmEmbeddings,
    EsmLMHead,
    EsmRotaryEmbedding,
)

from dnalm.errors import ConfigError
from dnalm.models.directory import register_auto

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


class NTv2Config(EsmConfig):
    """Nucleotide Transformer v2: an ESM encoder with rotary positions and a SwiGLU feed-forward.

    Every ``EsmConfig`` field keeps its meaning; the defaults are those of the published NT v2
    models (vocabulary of 4,107 tokens with ``<pad>`` = 1 and ``<mask>`` = 2, no dropout,
    untied LM decoder, no embedding LayerNorm, no token dropout; sizes of the 50M model).
    Fields NT v2 adds or redefines:

    add_bias_fnn (`bool`, defaults to `False`):
        Whether the two feed-forward projections have biases (published: false).
    intermediate_size (`int`):
        Width of the *gated* feed-forward: the first projection is ``2 * intermediate_size``
        wide, split into SiLU gate and value.
    max_position_embeddings (`int`, defaults to 2048):
        Longest input in tokens (``<cls>`` included) the model was trained for. Rotary
        positions have no table, so it is not enforced; it is the windowing limit. (The
        published config says 2050, ESM's table size, which reserves ``pad_token_id + 1`` rows.)
    position_embedding_type (`str`, defaults to `"rotary"`):
        Must be ``"rotary"``; NT v1 (absolute positions, GELU feed-forward) is transformers'
        own ``EsmForMaskedLM``.

    Construction checks everything the model relies on and raises
    :class:`dnalm.errors.ConfigError` with one line.
    """

    model_type = "dnalm_ntv2"

    vocab_size: int | None = 4107
    mask_token_id: int | None = 2
    pad_token_id: int | None = 1
    hidden_size: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 16
    intermediate_size: int = 2048
    hidden_dropout_prob: float | None = 0.0
    attention_probs_dropout_prob: float | None = 0.0
    max_position_embeddings: int = 2048
    position_embedding_type: str | None = "rotary"
    emb_layer_norm_before: bool | None = False
    token_dropout: bool | None = False
    tie_word_embeddings: bool = False
    use_cache: bool = False
    add_bias_fnn: bool = False
    #: NT's tokenizers append no <eos>; EsmConfig's default (2) is ``<mask>`` in NT's vocabulary
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        problem = self._problem()
        if problem:
            raise ConfigError(f"ntv2 config: {problem}")
        super().__post_init__(**kwargs)

    def _problem(self) -> str | None:
        """The first setting the model cannot honour, as a phrase; None when all are fine."""
        sizes = {"vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                 "num_hidden_layers": self.num_hidden_layers,
                 "num_attention_heads": self.num_attention_heads,
                 "intermediate_size": self.intermediate_size,
                 "max_position_embeddings": self.max_position_embeddings}
        for name, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                return f"{name} must be a positive integer, got {value!r}"
        if self.hidden_size % self.num_attention_heads:
            return (f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                    f"{self.num_attention_heads}")
        if (self.hidden_size // self.num_attention_heads) % 2:
            return "rotary positions need an even head size (hidden_size / num_attention_heads)"
        if self.position_embedding_type != "rotary":
            return (f"position_embedding_type {self.position_embedding_type!r} is not NT v2's "
                    "'rotary' (absolute positions are NT v1: transformers' EsmForMaskedLM)")
        for name in ("pad_token_id", "mask_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                return f"{name} {value} is outside the vocabulary of {self.vocab_size}"
        if self.pad_token_id is None:
            return "pad_token_id must be set (the word-embedding padding row)"
        if self.token_dropout and self.mask_token_id is None:
            return "token_dropout needs mask_token_id"
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if value is None or not 0.0 <= value < 1.0:
                return f"{name} must be in [0, 1), got {value!r}"
        if self.layer_norm_eps is None or self.layer_norm_eps <= 0:
            return f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}"
        for name in ("is_folding_model", "is_decoder", "add_cross_attention"):
            if getattr(self, name):
                return f"{name} is not supported (NT v2 is a masked-LM encoder)"
        if self.esmfold_config is not None:
            return "esmfold_config is not supported (NT v2 is not a folding model)"
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            return f"problem_type {self.problem_type!r} is not one of {', '.join(PROBLEM_TYPES)}"
        return None


# -- what NT v2 changes: the SwiGLU feed-forward ----------------------------------------------


class NTv2Intermediate(nn.Module):
    """hidden -> 2 x intermediate, then SiLU(first half) * second half (SwiGLU)."""

    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, 2 * config.intermediate_size,
                               bias=config.add_bias_fnn)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gate, value = self.dense(hidden_states).chunk(2, dim=-1)
        return nn.functional.silu(gate) * value


class NTv2Output(nn.Module):
    """intermediate -> hidden, dropout, plus the residual (the attention output)."""

    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size,
                               bias=config.add_bias_fnn)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(hidden_states)) + residual


class NTv2Layer(nn.Module):
    """Pre-LayerNorm block: ESM's attention (reused as is), then LayerNorm -> SwiGLU -> residual.

    Submodule names (``attention``, ``intermediate``, ``output``, ``LayerNorm``) are the
    published ones, so checkpoint keys load unchanged.
    """

    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.attention = EsmAttention(config)
        self.intermediate = NTv2Intermediate(config)
        self.output = NTv2Output(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                position_embeddings: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        attention_output = self.attention(hidden_states, attention_mask=attention_mask,
                                          position_embeddings=position_embeddings)
        return self.output(self.intermediate(self.LayerNorm(attention_output)), attention_output)


class NTv2Encoder(nn.Module):
    """The layers, then the final LayerNorm (ESM's ``emb_layer_norm_after``)."""

    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.layer = nn.ModuleList(NTv2Layer(config) for _ in range(config.num_hidden_layers))
        self.emb_layer_norm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                position_embeddings: tuple[torch.Tensor, torch.Tensor],
                output_hidden_states: bool = False,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Last hidden state and, when asked, the hidden states as the authors' code returns
        them: the embedding output, the output of every layer but the last, and the final
        (LayerNorm-ed) state, ``num_hidden_layers + 1`` tensors in all."""
        states: list[torch.Tensor] = []
        for layer in self.layer:
            if output_hidden_states:
                states.append(hidden_states)
            hidden_states = layer(hidden_states, attention_mask, position_embeddings)
        hidden_states = self.emb_layer_norm_after(hidden_states)
        if not output_hidden_states:
            return hidden_states, None
        return hidden_states, (*states, hidden_states)


# -- models ------------------------------------------------------------------------------------


class NTv2PreTrainedModel(PreTrainedModel):
    """Config class, weight initialisation and attention-kernel support shared by NT v2 models."""

    config_class = NTv2Config
    base_model_prefix = "esm"
    supports_gradient_checkpointing = False
    _no_split_modules: ClassVar[list[str]] = ["NTv2Layer", "EsmEmbeddings"]
    _supports_sdpa = True
    _supports_attention_backend = True
    #: the rotary table is a function of the config: a checkpoint without it gets it computed
    _keys_to_ignore_on_load_missing: ClassVar[list[str]] = [r"rotary_embeddings\.inv_freq"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) weights, zero biases, unit LayerNorms (BERT/ESM)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(
                    module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, EsmLMHead):
            init.zeros_(module.bias)
        elif isinstance(module, EsmEmbeddings):
            init.copy_(module.position_ids,
                       torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
        elif isinstance(module, EsmRotaryEmbedding):
            inv_freq, _ = module.compute_default_rope_parameters(module.config)
            init.copy_(module.inv_freq, inv_freq)


class NTv2Model(NTv2PreTrainedModel):
    """The NT v2 encoder: embeddings -> layers -> final LayerNorm (no pooler, as published)."""

    def __init__(self, config: NTv2Config) -> None:
        super().__init__(config)
        self.embeddings = EsmEmbeddings(config)
        self.rotary_embeddings = EsmRotaryEmbedding(config=config)
        self.encoder = NTv2Encoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions | tuple:
        """Hidden states for ``input_ids`` or ``inputs_embeds`` (the word-embedding output).

        ``attention_mask``: 1 for real tokens, 0 for (right) padding. ``position_ids``: rotary
        positions, default 0..L-1 as in the authors' code. Attention weights are not returned
        (``output_attentions`` must be off: SDPA never forms them). Other keyword arguments
        (passed by peft or ``transformers`` utilities) are accepted and ignored.
        """
        if kwargs.get("output_attentions"):
            raise ValueError("NTv2Model does not return attention weights (output_attentions)")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("NTv2Model needs exactly one of input_ids or inputs_embeds")
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else self.config.output_hidden_states)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        embedding_output = self.embeddings(input_ids=input_ids, attention_mask=attention_mask,
                                           inputs_embeds=inputs_embeds)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=embedding_output,
                                         attention_mask=attention_mask)
        if position_ids is None:
            position_ids = torch.arange(embedding_output.shape[1],
                                        device=embedding_output.device).unsqueeze(0)
        rotary = self.rotary_embeddings(embedding_output, position_ids)
        last, hidden_states = self.encoder(embedding_output, mask, rotary,
                                           output_hidden_states=bool(output_hidden_states))
        if not return_dict:
            return (last,) if hidden_states is None else (last, hidden_states)
        return BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=last,
                                                            hidden_states=hidden_states)


class NTv2ForMaskedLM(NTv2PreTrainedModel):
    """NT v2 masked LM: ``esm`` (the encoder, also ``base_model``) and ``lm_head`` (hidden ->
    logits over the 4,107 tokens). The published models do not tie the decoder to the word
    embeddings (``tie_word_embeddings: false``); a config that asks for tying gets it."""

    _tied_weights_keys: ClassVar[dict[str, str]] = {
        "lm_head.decoder.weight": "esm.embeddings.word_embeddings.weight"}

    def __init__(self, config: NTv2Config) -> None:
        super().__init__(config)
        self.esm = NTv2Model(config)
        self.lm_head = EsmLMHead(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.esm.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.esm.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput | tuple:
        """Logits at every position; cross-entropy over ``labels`` != -100 when given."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.esm(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           inputs_embeds=inputs_embeds,
                           output_hidden_states=output_hidden_states, return_dict=True,
                           **kwargs)
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.config.vocab_size),
                                               labels.to(logits.device).view(-1))
        if not return_dict:
            rest = (logits,) if outputs.hidden_states is None else (logits, outputs.hidden_states)
            return rest if loss is None else (loss, *rest)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class NTv2ForSequenceClassification(NTv2PreTrainedModel):
    """NT v2 with the authors' sequence head: ``classifier`` reads the ``<cls>`` (first) vector
    through dense -> tanh -> out_proj. Loss as transformers' BERT: MSE for ``regression``
    (``num_labels == 1``), cross-entropy for ``single_label_classification``, BCE-with-logits
    for ``multi_label_classification``."""

    def __init__(self, config: NTv2Config) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.esm = NTv2Model(config)
        self.classifier = EsmClassificationHead(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.esm.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.esm.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.esm(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           inputs_embeds=inputs_embeds,
                           output_hidden_states=output_hidden_states, return_dict=True,
                           **kwargs)
        logits = self.classifier(outputs.last_hidden_state)
        loss = (None if labels is None
                else ForSequenceClassificationLoss(labels, logits, self.config))
        if not return_dict:
            rest = (logits,) if outputs.hidden_states is None else (logits, outputs.hidden_states)
            return rest if loss is None else (loss, *rest)
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=outputs.hidden_states)


# -- published checkpoints ---------------------------------------------------------------------

#: Keys of a published config.json that say nothing about the computation (Hub, auto-class and
#: transformers 4.x bookkeeping); dropped on conversion.
_BOOKKEEPING_KEYS = ("auto_map", "architectures", "transformers_version", "_name_or_path",
                     "_commit_hash", "model_type", "torch_dtype", "dtype", "tokenizer_class",
                     "finetuning_task", "torchscript", "use_bfloat16", "tf_legacy_loss",
                     "sep_token_id")
#: Bookkeeping keys honoured only at their default (the model cannot do anything else).
_MUST_BE_OFF = ("output_attentions", "pruned_heads")
#: ``PretrainedConfig`` fields a published config may carry; passed through unchanged.
_GENERIC_KEYS = ("output_hidden_states", "return_dict", "chunk_size_feed_forward",
                 "is_encoder_decoder", "id2label", "label2id", "num_labels", "problem_type",
                 "bos_token_id", "eos_token_id", "initializer_range", "rope_theta")


def _config_fields() -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(NTv2Config)}


def convert_published_config(raw: Mapping[str, Any]) -> NTv2Config:
    """An :class:`NTv2Config` from a published NT v2 ``config.json`` (as a dict).

    The published file has no ``model_type`` and an ``auto_map`` to the authors' code; both
    and the other bookkeeping keys are dropped. ``max_position_embeddings`` (ESM's table size,
    2050) becomes the input limit in tokens, 2050 - (pad_token_id + 1) = 2048. A dict already
    written by dnalm (``model_type: dnalm_ntv2``) is taken as it is. Anything the model cannot
    honour (an unknown key, absolute positions, a folding model, ...) raises ConfigError.
    """
    values = dict(raw)
    model_type = values.get("model_type")
    if model_type not in (None, "esm", NTv2Config.model_type):
        raise ConfigError(f"ntv2 config: model_type {model_type!r} is not an NT v2 (ESM) model")
    native = model_type == NTv2Config.model_type
    if model_type == "esm" and "auto_map" not in values:
        raise ConfigError("ntv2 config: model_type 'esm' without auto_map is transformers' own "
                          "ESM (NT v1): load it with EsmForMaskedLM")
    for key in _BOOKKEEPING_KEYS:
        values.pop(key, None)
    for key in _MUST_BE_OFF:
        if values.pop(key, None):
            raise ConfigError(f"ntv2 config: {key} is not supported")
    known = _config_fields() | set(_GENERIC_KEYS)
    for key in values:
        if key not in known:
            raise ConfigError(f"ntv2 config: unknown field {key!r} (not an NT v2 setting)")
    if "position_embedding_type" not in values:
        raise ConfigError("ntv2 config: position_embedding_type missing (NT v2 is 'rotary')")
    if not native:
        pad = values.get("pad_token_id")
        limit = values.get("max_position_embeddings")
        if not isinstance(pad, int) or not isinstance(limit, int):
            raise ConfigError("ntv2 config: pad_token_id and max_position_embeddings must be "
                              "integers")
        values["max_position_embeddings"] = limit - (pad + 1)
    try:
        return NTv2Config(**values)
    except ConfigError:
        raise
    except (StrictDataclassError, TypeError, ValueError) as err:
        line = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"ntv2 config: {line}") from err


#: Published weights the native model does not have, each known to be unused:
#: - ``esm.embeddings.position_embeddings.weight``: ESM's learned absolute-position table; the
#:   authors' embeddings create it whatever ``position_embedding_type`` says, but with rotary
#:   positions it is never read.
#: - ``esm.contact_head.regression.*``: ESM's protein contact-prediction head (attention maps ->
#:   logistic regression), created by ``EsmModel`` but outside NT's masked-LM objective and
#:   used by neither the masked LM nor the classifier.
#: - ``esm.embeddings.position_ids``: an index buffer some transformers versions saved.
_UNUSED = re.compile(r"^esm\.(embeddings\.position_embeddings\.weight|embeddings\.position_ids"
                     r"|contact_head\.regression\.(weight|bias))$")
_LAYER_INV_FREQ = re.compile(r"^esm\.encoder\.layer\.\d+\.attention\.self\.rotary_embeddings"
                             r"\.inv_freq$")
INV_FREQ_KEY = "esm.rotary_embeddings.inv_freq"
_KNOWN = re.compile(
    r"^(esm\.(embeddings\.(word_embeddings\.weight|layer_norm\.(weight|bias))"
    r"|encoder\.layer\.\d+\.(attention\.(self\.(query|key|value)|output\.dense)\.(weight|bias)"
    r"|attention\.LayerNorm\.(weight|bias)|(intermediate|output)\.dense\.(weight|bias)"
    r"|LayerNorm\.(weight|bias))"
    r"|encoder\.emb_layer_norm_after\.(weight|bias)|rotary_embeddings\.inv_freq)"
    r"|lm_head\.(dense\.(weight|bias)|layer_norm\.(weight|bias)|decoder\.weight|bias)"
    r"|classifier\.(dense|out_proj)\.(weight|bias))$")


def convert_published_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Published NT v2 weights under the native names (identity for all parameters).

    Drops only the weights listed in ``_UNUSED`` (see there why each is unused), folds the
    per-layer rotary ``inv_freq`` copies into the model's single ``esm.rotary_embeddings.
    inv_freq`` (they must agree: one table cannot honour different ones), and raises
    ConfigError naming the first key that is not an NT v2 weight.
    """
    out: dict[str, torch.Tensor] = {}
    inv_freqs: list[tuple[str, torch.Tensor]] = []
    for key, value in state.items():
        if _UNUSED.match(key):
            continue
        if _LAYER_INV_FREQ.match(key):
            inv_freqs.append((key, value))
            continue
        if not _KNOWN.match(key):
            raise ConfigError(f"ntv2 checkpoint: unknown weight {key!r}")
        out[key] = value
    if inv_freqs:
        first_key, first = inv_freqs[0]
        for key, value in inv_freqs[1:]:
            if value.shape != first.shape or not torch.equal(value, first):
                raise ConfigError(f"ntv2 checkpoint: rotary inv_freq of {key!r} differs from "
                                  f"{first_key!r}")
        out.setdefault(INV_FREQ_KEY, first)
    return out


register_auto(NTv2Config, base=NTv2Model, masked_lm=NTv2ForMaskedLM,
              classifier=NTv2ForSequenceClassification)
