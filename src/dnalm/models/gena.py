"""GENA-LM (AIRI, Fishman et al. 2023), native: the published checkpoints under transformers 5.

Two model families are published by AIRI-Institute:

**GENA-LM BERT** (``gena-lm-bert-base-t2t``, ``-base-t2t-multi``, ``-base-lastln-t2t``,
``-large-t2t``, ``-base-fly`` / ``-yeast`` / ``-athaliana``) ships ``config.json`` with
``model_type: bert`` plus ``pre_layer_norm`` / ``last_layer_norm`` and an ``auto_map`` to the
authors' ``modeling_bert.py`` (a transformers 4.17 BERT with extra options). Under transformers
5 that directory loads *silently* as transformers' post-LayerNorm ``BertForMaskedLM``, with the
pre-LayerNorm weights unexpected and the post-LayerNorm ones missing: wrong numbers. This module
is dnalm's own implementation of the architecture those checkpoints use:

* embeddings: word + learned absolute position (0..L-1) + token type, LayerNorm, dropout;
* pre-LayerNorm layers: ``h = h + dropout(attention.output.dense(attn(pre_attention_ln(h))))``,
  then ``h = h + dropout(output.dense(act(intermediate.dense(post_attention_ln(h)))))``;
* ``last_layer_norm``: an optional final LayerNorm (``encoder.last_layer_ln``); when the config
  omits the field it defaults to ``pre_layer_norm`` (true), as in the authors' code: the base
  and lastln configs differ only by ``"last_layer_norm": false`` being written;
* heads as BERT: the MLM head ``cls`` (dense, activation, LayerNorm, decoder tied to the word
  embeddings, with its own bias) and, for classification, the pooler (tanh dense on [CLS]) ->
  dropout -> ``classifier``, as the authors' ``BertForSequenceClassification``.

Why not transformers' ``RobertaPreLayerNorm``: it is not the same function. It numbers
positions from ``pad_token_id + 1`` (4 for GENA's pad id 3) and gives padding tokens the
padding row, always applies a final LayerNorm (GENA's base models have none), and normalises
inside ``attention``/``intermediate`` under other names. Emulating GENA with it would need a
shifted position table, an identity LayerNorm and renamed keys, and would still lose 4 usable
positions; a native module is shorter and exact.

Options of the authors' ``modeling_bert.py`` that no published ``gena-lm-bert-*-t2t`` config
uses are **not** implemented, and :func:`convert_published_config` refuses them with a one-line
:class:`~dnalm.errors.ConfigError` naming the field: DeepSpeed block-sparse attention
(``sparse_config_cls`` / ``sparse_attention``: the ``gena-lm-bigbird-base-sparse*`` models),
rotary and relative position types, decoder/cross-attention use, and ``pre_layer_norm: false``
(a post-LayerNorm GENA model is plain BERT: load it with transformers' ``BertForMaskedLM``).
Attention runs through PyTorch SDPA (eager softmax only when attention weights are asked for);
``head_mask`` and key/value caching are not supported.

**GENA-LM BigBird** (``gena-lm-bigbird-base-t2t``) is transformers' own ``big_bird`` model, trained
as ``BigBirdForPreTraining``, and stays transformers' ``BigBirdForMaskedLM``:
:func:`convert_bigbird_config` / :func:`convert_bigbird_state_dict` (which drops the next-sentence
head) make a published directory load there with no missing or unexpected weight. The architecture
is numerically identical under transformers 5 (full attention: max |logit difference| 0 against
transformers 4.28 on the same weights), with one difference in *eval mode* for block-sparse inputs:
up to transformers 4.29 (GENA's authors used 4.4) block-sparse attention seeds numpy with the layer
index and draws its "random" key blocks in training and in eval alike, so the model was trained and
evaluated with those blocks; transformers 4.30+ and 5 draw none in eval (every random block becomes
block 0), which moved logits by up to 0.26 on the test fixture. Training mode in transformers 5
still draws exactly the old blocks, and the block-sparse attention module has no dropout, so
:func:`use_published_block_sparse` (forward hooks, no new class) runs only that module in training
mode and gives 4.28's numbers exactly. The same hooks undo a transformers behaviour that is not
GENA's doing: ``BigBirdModel.forward`` switches the whole model to full attention for an input too
short for block-sparse attention, and never back.

Directories are read by :mod:`dnalm.models.directory`: it recognises both families, calls
:func:`convert_published_config` / :func:`convert_published_state_dict` (BERT) or
:func:`convert_bigbird_config` / :func:`convert_bigbird_state_dict` (BigBird), loads the weights
strictly and applies :func:`use_published_block_sparse` to every BigBird it loads. A native BERT
copy (``save_pretrained``, ``model_type`` ``dnalm_gena_bert``, registered at import) reloads
through ``AutoModel`` / ``AutoModelForMaskedLM`` / ``AutoModelForSequenceClassification`` once
this module is imported, without ``trust_remote_code``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from huggingface_hub.errors import StrictDataclassError
from torch import nn
from transformers import (
    BigBirdConfig,
    BigBirdForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    MaskedLMOutput,
    SequenceClassifierOutput,
)
from transformers.models.big_bird.modeling_big_bird import (
    BigBirdAttention,
    BigBirdBlockSparseAttention,
    BigBirdModel,
)

from dnalm.errors import ConfigError
from dnalm.models.directory import register_auto

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


class GenaBertConfig(PretrainedConfig):
    """GENA-LM BERT: a pre-LayerNorm BERT with learned absolute positions.

    Every BERT field keeps its meaning; defaults are those of ``gena-lm-bert-base-t2t``
    (32,000-token BPE vocabulary, ``[PAD]`` = 3, 512 positions). GENA's own fields:

    pre_layer_norm (`bool`, defaults to `True`):
        LayerNorm before attention and feed-forward (``pre_attention_ln`` /
        ``post_attention_ln``). Must be true: a post-LayerNorm GENA model is plain BERT.
    last_layer_norm (`bool`, defaults to `False`):
        A final LayerNorm after the last layer (``encoder.last_layer_ln``): true for
        ``gena-lm-bert-large-t2t`` and ``-base-lastln-t2t``, false for ``-base-t2t``.
    position_embedding_type (`str`, defaults to `"absolute"`):
        Must be ``"absolute"`` (positions 0..L-1, at most ``max_position_embeddings``).

    Construction checks everything the model relies on and raises
    :class:`dnalm.errors.ConfigError` with one line.
    """

    model_type = "dnalm_gena_bert"

    vocab_size: int = 32000
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 3
    pre_layer_norm: bool = True
    last_layer_norm: bool = False
    position_embedding_type: str = "absolute"
    classifier_dropout: float | int | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        problem = self._problem()
        if problem:
            raise ConfigError(f"gena_bert config: {problem}")
        super().__post_init__(**kwargs)

    def _problem(self) -> str | None:
        """The first setting the model cannot honour, as a phrase; None when all are fine."""
        sizes = {"vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                 "num_hidden_layers": self.num_hidden_layers,
                 "num_attention_heads": self.num_attention_heads,
                 "intermediate_size": self.intermediate_size,
                 "max_position_embeddings": self.max_position_embeddings,
                 "type_vocab_size": self.type_vocab_size}
        for name, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                return f"{name} must be a positive integer, got {value!r}"
        if self.hidden_size % self.num_attention_heads:
            return (f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                    f"{self.num_attention_heads}")
        if self.pre_layer_norm is not True:
            return ("pre_layer_norm false is a post-LayerNorm BERT: load it with transformers' "
                    "BertForMaskedLM")
        if not isinstance(self.last_layer_norm, bool):
            return f"last_layer_norm must be true or false, got {self.last_layer_norm!r}"
        if self.position_embedding_type != "absolute":
            return (f"position_embedding_type {self.position_embedding_type!r} is not "
                    "implemented (only 'absolute')")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACT2FN:
            return f"hidden_act {self.hidden_act!r} is not a transformers activation"
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            return (f"pad_token_id {self.pad_token_id} is outside the vocabulary of "
                    f"{self.vocab_size}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is None and name == "classifier_dropout":
                continue
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                return f"{name} must be in [0, 1), got {value!r}"
        if not isinstance(self.layer_norm_eps, (int, float)) or self.layer_norm_eps <= 0:
            return f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}"
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            return f"problem_type {self.problem_type!r} is not one of {', '.join(PROBLEM_TYPES)}"
        return None


# -- modules -----------------------------------------------------------------------------------


class GenaBertEmbeddings(nn.Module):
    """word + absolute position (0..L-1) + token type, LayerNorm, dropout (BERT's)."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # not saved: the authors' code saved it, but it is always 0..max-1 (checked on conversion)
        self.register_buffer("position_ids", torch.arange(config.max_position_embeddings)
                             .unsqueeze(0), persistent=False)

    def forward(self, input_ids: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        length = inputs_embeds.shape[1]
        if position_ids is None:
            limit = self.position_ids.shape[1]
            if length > limit:
                raise ValueError(f"input of {length} tokens exceeds the model's {limit} positions")
            position_ids = self.position_ids[:, :length]
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long,
                                         device=inputs_embeds.device)
        embeddings = (inputs_embeds + self.token_type_embeddings(token_type_ids)
                      + self.position_embeddings(position_ids))
        return self.dropout(self.LayerNorm(embeddings))


class GenaBertSelfAttention(nn.Module):
    """Multi-head self-attention (``query``/``key``/``value``, the published names) via SDPA."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = float(config.attention_probs_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_attention_heads,
                      self.attention_head_size).transpose(1, 2)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                output_attentions: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``attention_mask``: boolean ``(batch, 1, 1, keys)``, True where a key may be read."""
        q = self._heads(self.query(hidden_states))
        k = self._heads(self.key(hidden_states))
        v = self._heads(self.value(hidden_states))
        dropout = self.dropout_prob if self.training else 0.0
        weights = None
        if output_attentions:
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
            if attention_mask is not None:
                scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
            weights = scores.softmax(dim=-1)
            context = torch.matmul(nn.functional.dropout(weights, dropout, self.training), v)
        else:
            context = nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=attention_mask, dropout_p=dropout)
        batch, _, length, _ = context.shape
        return context.transpose(1, 2).reshape(batch, length, -1), weights


class GenaBertSelfOutput(nn.Module):
    """``dense`` + dropout; pre-LayerNorm, so no LayerNorm here (the layer adds the residual)."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(hidden_states))


class GenaBertAttention(nn.Module):
    """``self`` (attention) and ``output`` (projection), BERT's names: ``attention.output.dense``
    is where LoRA's output target is found."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.self = GenaBertSelfAttention(config)
        self.output = GenaBertSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                output_attentions: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, weights = self.self(hidden_states, attention_mask, output_attentions)
        return self.output(context), weights


class GenaBertIntermediate(nn.Module):
    """hidden -> intermediate, activation."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class GenaBertOutput(nn.Module):
    """intermediate -> hidden, dropout (no LayerNorm: pre-LayerNorm)."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(hidden_states))


class GenaBertLayer(nn.Module):
    """Pre-LayerNorm block: ``x + attn(pre_attention_ln(x))``, then ``+ ffn(post_attention_ln)``."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.pre_attention_ln = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_attention_ln = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = GenaBertAttention(config)
        self.intermediate = GenaBertIntermediate(config)
        self.output = GenaBertOutput(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                output_attentions: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attention(self.pre_attention_ln(hidden_states), attention_mask,
                                           output_attentions)
        hidden_states = hidden_states + attended
        ffn = self.output(self.intermediate(self.post_attention_ln(hidden_states)))
        return hidden_states + ffn, weights


class GenaBertEncoder(nn.Module):
    """The layers, then ``last_layer_ln`` when the config has ``last_layer_norm``."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(GenaBertLayer(config) for _ in range(config.num_hidden_layers))
        self.last_layer_ln = (nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
                              if config.last_layer_norm else None)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                output_hidden_states: bool = False, output_attentions: bool = False,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None,
                           tuple[torch.Tensor, ...] | None]:
        """Last hidden state, and when asked the hidden states as the authors' code returns
        them (the embedding output, every layer's output but the last, then the final state,
        after ``last_layer_ln``: ``num_hidden_layers + 1`` in all) and attention weights."""
        states: list[torch.Tensor] = []
        attentions: list[torch.Tensor] = []
        for layer in self.layer:
            if output_hidden_states:
                states.append(hidden_states)
            hidden_states, weights = layer(hidden_states, attention_mask, output_attentions)
            if weights is not None:
                attentions.append(weights)
        if self.last_layer_ln is not None:
            hidden_states = self.last_layer_ln(hidden_states)
        all_states = (*states, hidden_states) if output_hidden_states else None
        return hidden_states, all_states, tuple(attentions) if output_attentions else None


class GenaBertPooler(nn.Module):
    """tanh(dense(first token)): BERT's pooler, read by the sequence classifier."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class GenaBertPredictionHeadTransform(nn.Module):
    """dense -> activation -> LayerNorm."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class GenaBertLMPredictionHead(nn.Module):
    """transform -> ``decoder`` (tied to the word embeddings) whose bias is ``bias``."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.transform = GenaBertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class GenaBertOnlyMLMHead(nn.Module):
    """The MLM head, as ``cls.predictions`` (the published key prefix)."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__()
        self.predictions = GenaBertLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


# -- models ------------------------------------------------------------------------------------


class GenaBertPreTrainedModel(PreTrainedModel):
    """Config class, weight initialisation and attention-kernel flags of the GENA BERT models."""

    config_class = GenaBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = False
    _no_split_modules: ClassVar[list[str]] = ["GenaBertLayer", "GenaBertEmbeddings"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) weights, zero biases, unit LayerNorms, zero pad row.

        (The authors' code meant to shrink the output projections' std by sqrt(2 x layers)
        for pre-LayerNorm, but tests the marker on the Linear instead of its parent module, so
        it never applies; plain BERT initialisation is what their models started from.)
        """
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
        elif isinstance(module, GenaBertLMPredictionHead):
            init.zeros_(module.bias)
        elif isinstance(module, GenaBertEmbeddings):
            init.copy_(module.position_ids,
                       torch.arange(module.position_ids.shape[-1]).unsqueeze(0))


class GenaBertModel(GenaBertPreTrainedModel):
    """The GENA BERT encoder: embeddings -> pre-LayerNorm layers (-> last_layer_ln) [-> pooler].

    ``last_hidden_state`` is what the MLM head reads; ``pooler_output`` (when built with the
    pooler) is what the sequence classifier reads.
    """

    def __init__(self, config: GenaBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = GenaBertEmbeddings(config)
        self.encoder = GenaBertEncoder(config)
        self.pooler = GenaBertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions | tuple:
        """Hidden states for ``input_ids`` or ``inputs_embeds`` (the word-embedding output;
        position and token-type embeddings and the LayerNorm are still applied).

        ``attention_mask``: 1 for real tokens, 0 for (right) padding. Other keyword arguments
        (passed by peft or ``transformers`` utilities) are accepted and ignored.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("GenaBertModel needs exactly one of input_ids or inputs_embeds")
        config = self.config
        output_hidden_states = bool(output_hidden_states if output_hidden_states is not None
                                    else config.output_hidden_states)
        output_attentions = bool(output_attentions if output_attentions is not None
                                 else config.output_attentions)
        return_dict = return_dict if return_dict is not None else config.return_dict
        hidden = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids,
                                 position_ids=position_ids, inputs_embeds=inputs_embeds)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.to(device=hidden.device, dtype=torch.bool)[:, None, None, :]
        last, states, attentions = self.encoder(hidden, mask, output_hidden_states,
                                                output_attentions)
        pooled = self.pooler(last) if self.pooler is not None else None
        if not return_dict:
            return tuple(v for v in (last, pooled, states, attentions) if v is not None)
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=last, pooler_output=pooled, hidden_states=states,
            attentions=attentions)


class GenaBertForMaskedLM(GenaBertPreTrainedModel):
    """GENA BERT masked LM: ``bert`` (the encoder, also ``base_model``; no pooler, as published)
    and ``cls`` (hidden -> logits over the vocabulary; its decoder is tied to the word
    embeddings and its bias is ``cls.predictions.bias``)."""

    _tied_weights_keys: ClassVar[dict[str, str]] = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__(config)
        self.bert = GenaBertModel(config, add_pooling_layer=False)
        self.cls = GenaBertOnlyMLMHead(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.bert.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput | tuple:
        """Logits at every position; cross-entropy over ``labels`` != -100 when given."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.bert(input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids, position_ids=position_ids,
                            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.cls(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.config.vocab_size),
                                               labels.to(logits.device).view(-1))
        if not return_dict:
            rest = tuple(v for v in (logits, outputs.hidden_states, outputs.attentions)
                         if v is not None)
            return rest if loss is None else (loss, *rest)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)


class GenaBertForSequenceClassification(GenaBertPreTrainedModel):
    """GENA BERT with the authors' sequence head: pooler (tanh dense on [CLS]) -> dropout
    (``classifier_dropout``, else ``hidden_dropout_prob``) -> ``classifier``. Loss as
    transformers' BERT: MSE for ``regression`` (``num_labels == 1``), cross-entropy for
    ``single_label_classification``, BCE-with-logits for ``multi_label_classification``."""

    def __init__(self, config: GenaBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = GenaBertModel(config, add_pooling_layer=True)
        dropout = (config.classifier_dropout if config.classifier_dropout is not None
                   else config.hidden_dropout_prob)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.bert.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.bert(input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids, position_ids=position_ids,
                            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = (None if labels is None
                else ForSequenceClassificationLoss(labels, logits, self.config))
        if not return_dict:
            rest = tuple(v for v in (logits, outputs.hidden_states, outputs.attentions)
                         if v is not None)
            return rest if loss is None else (loss, *rest)
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


# -- published GENA BERT checkpoints -----------------------------------------------------------

#: Keys of a published config.json that say nothing about the weights (hub / auto-class
#: bookkeeping, or switches of transformers 4 that change no number) and are dropped.
_BOOKKEEPING_KEYS = ("auto_map", "architectures", "transformers_version", "_name_or_path",
                     "model_type", "torch_dtype", "dtype", "gradient_checkpointing", "use_cache",
                     "chunk_size_feed_forward", "output_attentions", "tokenizer_class")
#: ``PretrainedConfig`` fields a published (or fine-tuned) config may carry; passed through.
_GENERIC_KEYS = ("output_hidden_states", "return_dict", "id2label", "label2id", "num_labels",
                 "problem_type", "is_encoder_decoder")
#: Options of the authors' code that are not implemented, with why (refused by name).
_REFUSED = {
    "sparse_config_cls": "DeepSpeed block-sparse attention (gena-lm-bigbird-base-sparse*) is "
                         "not implemented",
    "sparse_attention": "DeepSpeed block-sparse attention (gena-lm-bigbird-base-sparse*) is "
                        "not implemented",
    "is_decoder": "a decoder is not supported (GENA-LM is a masked-LM encoder)",
    "add_cross_attention": "cross-attention is not supported (GENA-LM is an encoder)",
}
#: Settings of the authors' code that only matter for a position type refused anyway (rotary,
#: relative_attention_bias); with absolute positions their code never reads them (dropped).
_POSITION_ONLY_KEYS = ("rotary_base", "rotary_dim", "relative_attention_num_buckets",
                       "relative_last_bucket_distance")


def convert_published_config(raw: Mapping[str, Any]) -> GenaBertConfig:
    """A :class:`GenaBertConfig` from a published GENA-LM BERT ``config.json`` (as a dict).

    ``model_type`` must be ``bert`` (or dnalm's own ``dnalm_gena_bert``). ``last_layer_norm``
    missing means ``pre_layer_norm``'s value, as in the authors' code; ``pre_layer_norm``
    missing means false there, which is refused (plain BERT). Bookkeeping keys are dropped;
    every other key must be a setting the model honours, else ConfigError names it.
    """
    values = dict(raw)
    model_type = values.get("model_type")
    if model_type not in ("bert", GenaBertConfig.model_type):
        raise ConfigError(f"gena_bert config: model_type {model_type!r} is not a GENA-LM BERT "
                          "('bert')")
    for key, why in _REFUSED.items():
        if key in values and values[key] not in (None, False):
            raise ConfigError(f"gena_bert config: {key}: {why}")
        values.pop(key, None)
    for key in _BOOKKEEPING_KEYS:
        values.pop(key, None)
    values.setdefault("pre_layer_norm", False)
    values.setdefault("last_layer_norm", values["pre_layer_norm"])
    values.setdefault("position_embedding_type", "absolute")
    if values["position_embedding_type"] != "absolute":
        raise ConfigError(f"gena_bert config: position_embedding_type "
                          f"{values['position_embedding_type']!r} is not implemented (only "
                          "'absolute', as in the published gena-lm-bert-*-t2t models)")
    for key in _POSITION_ONLY_KEYS:
        values.pop(key, None)
    known = {f.name for f in dataclasses.fields(GenaBertConfig)} | set(_GENERIC_KEYS)
    for key in values:
        if key not in known:
            raise ConfigError(f"gena_bert config: unknown field {key!r} (not a GENA-LM BERT "
                              "setting)")
    try:
        return GenaBertConfig(**values)
    except ConfigError:
        raise
    except (StrictDataclassError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"gena_bert config: {first}") from err


#: Published weights the native model does not keep, each known to be unused:
#: - ``bert.embeddings.position_ids``: an index buffer (0..max-1) the authors' code saves with
#:   the weights; checked to be exactly that, then recomputed.
#: - ``cls.seq_relationship.*``: the next-sentence head of a checkpoint saved from
#:   ``BertForPreTraining`` (the authors' fine-tuning scripts default to that class); neither
#:   the masked LM nor the classifier reads it.
_POSITION_IDS = "bert.embeddings.position_ids"
_NSP = re.compile(r"^cls\.seq_relationship\.(weight|bias)$")
_KNOWN = re.compile(
    r"^(bert\.(embeddings\.((word|position|token_type)_embeddings\.weight|LayerNorm\.(weight|bias))"
    r"|encoder\.(layer\.\d+\.((pre|post)_attention_ln\.(weight|bias)"
    r"|attention\.(self\.(query|key|value)|output\.dense)\.(weight|bias)"
    r"|(intermediate|output)\.dense\.(weight|bias))|last_layer_ln\.(weight|bias))"
    r"|pooler\.dense\.(weight|bias))"
    r"|cls\.predictions\.(bias|decoder\.(weight|bias)|transform\.(dense|LayerNorm)\.(weight|bias))"
    r"|classifier\.(weight|bias))$")
#: tied pairs (target -> source) of the MLM head, as in ``GenaBertForMaskedLM``
_TIED = dict(GenaBertForMaskedLM._tied_weights_keys)


def _check_position_ids(value: torch.Tensor, what: str) -> None:
    flat = value.reshape(-1)
    if not torch.equal(flat.long(), torch.arange(flat.numel())):
        raise ConfigError(f"{what}: position_ids buffer is not 0..{flat.numel() - 1}; a "
                          "permuted position table is not supported")


def convert_published_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Published GENA-LM BERT weights under the native names (identity for every parameter).

    Drops only ``bert.embeddings.position_ids`` (after checking it is 0..max-1) and the
    next-sentence head (``_NSP``); fills a tied MLM-head key that a deduplicating writer left
    out (``cls.predictions.decoder.weight`` / ``.bias`` from the word embeddings / the head
    bias). Raises ConfigError naming the first key that is not a GENA-LM BERT weight, e.g. a
    post-LayerNorm ``attention.output.LayerNorm``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == _POSITION_IDS:
            _check_position_ids(value, "gena_bert checkpoint")
            continue
        if _NSP.match(key):
            continue
        if not _KNOWN.match(key):
            raise ConfigError(f"gena_bert checkpoint: unknown weight {key!r}")
        out[key] = value
    if any(k.startswith("cls.predictions.") for k in out):
        for target, source in _TIED.items():
            if target not in out and source in out:
                out[target] = out[source]
    return out


# -- GENA-LM BigBird: transformers' BigBirdForMaskedLM -----------------------------------------

#: Weights of a published ``BigBirdForPreTraining`` checkpoint that ``BigBirdForMaskedLM`` has
#: no place for, each known to be unused by masked-LM scoring and fine-tuning:
#: - ``cls.seq_relationship.*``: the next-sentence-prediction head (pooler -> 2 logits).
#: ``bert.embeddings.position_ids`` is no weight but an index buffer transformers <= 4.30 saved
#: (transformers 5 keeps it unsaved); it is checked to be 0..max-1 and dropped.
_BIGBIRD_NSP = re.compile(r"^cls\.seq_relationship\.(weight|bias)$")
_BIGBIRD_KNOWN = re.compile(
    r"^(bert\.(embeddings\.((word|position|token_type)_embeddings\.weight|LayerNorm\.(weight|bias))"
    r"|encoder\.layer\.\d+\.(attention\.(self\.(query|key|value)\.(weight|bias)"
    r"|output\.(dense|LayerNorm)\.(weight|bias))|intermediate\.dense\.(weight|bias)"
    r"|output\.(dense|LayerNorm)\.(weight|bias))"
    r"|pooler\.(weight|bias))"
    r"|cls\.predictions\.(bias|decoder\.(weight|bias)|transform\.(dense|LayerNorm)\.(weight|bias)))$")
_BIGBIRD_TIED = dict(BigBirdForMaskedLM._tied_weights_keys)


def convert_bigbird_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A published GENA-LM BigBird (``BigBirdForPreTraining``) state dict for transformers'
    ``BigBirdForMaskedLM`` (identity names).

    Drops exactly the next-sentence head ``cls.seq_relationship.weight`` / ``.bias`` (and the
    ``bert.embeddings.position_ids`` buffer, checked to be 0..max-1); fills a tied MLM-head key
    that a deduplicating writer left out; raises ConfigError naming the first unknown key.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == _POSITION_IDS:
            _check_position_ids(value, "gena_bigbird checkpoint")
            continue
        if _BIGBIRD_NSP.match(key):
            continue
        if not _BIGBIRD_KNOWN.match(key):
            raise ConfigError(f"gena_bigbird checkpoint: unknown weight {key!r}")
        out[key] = value
    for target, source in _BIGBIRD_TIED.items():
        if target not in out and source in out:
            out[target] = out[source]
    return out


def convert_bigbird_config(raw: Mapping[str, Any]) -> BigBirdConfig:
    """transformers' ``BigBirdConfig`` from a published GENA-LM BigBird ``config.json`` dict.

    ``model_type`` must be ``big_bird``; ``transformers_version`` and the transformers 4
    training switch ``gradient_checkpointing`` are dropped (``architectures`` is kept: it says
    ``BigBirdForPreTraining``, what the checkpoint holds). Everything else is BigBird's own.
    """
    values = dict(raw)
    if values.get("model_type") != "big_bird":
        raise ConfigError(f"gena_bigbird config: model_type {values.get('model_type')!r} is "
                          "not 'big_bird'")
    for key in ("model_type", "transformers_version", "gradient_checkpointing"):
        values.pop(key, None)
    attention = values.get("attention_type", "block_sparse")
    if attention not in ("block_sparse", "original_full"):
        raise ConfigError(f"gena_bigbird config: attention_type {attention!r} is not "
                          "'block_sparse' or 'original_full'")
    try:
        return BigBirdConfig(**values)
    except (StrictDataclassError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"gena_bigbird config: {first}") from err


def _draw_published_blocks(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook of a ``BigBirdAttention``: run its block-sparse kernel in training mode
    (it has no dropout; training mode only makes it draw the seeded random blocks), and keep
    numpy's global random state, which that kernel reseeds, for the post-hook."""
    inner = module.self
    if isinstance(inner, BigBirdBlockSparseAttention):
        module._dnalm_saved = (inner, inner.training, np.random.get_state())
        inner.training = True


def _restore_after_blocks(module: nn.Module, args: tuple, output: Any) -> None:
    saved = getattr(module, "_dnalm_saved", None)
    if saved is not None:
        inner, training, state = saved
        inner.training = training
        np.random.set_state(state)
        module._dnalm_saved = None


def _restore_attention_type(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook of ``BigBirdModel``: undo a previous short input's switch to full
    attention (transformers makes it permanent), so each call uses the configured type."""
    wanted = getattr(module.config, "attention_type", None)
    if wanted and module.attention_type != wanted:
        module.set_attention_type(wanted)


def use_published_block_sparse(model: PreTrainedModel) -> PreTrainedModel:
    """Make a transformers BigBird model compute what GENA-LM's authors computed.

    Two forward hooks (idempotent; not saved with the model, so apply after every load):

    * every call starts in the configured ``attention_type`` (transformers switches the model
      to ``original_full`` for a short input and never back);
    * block-sparse attention draws the seeded random blocks in eval mode as in training, as
      transformers <= 4.29 did (GENA was trained with them; 4.30+ and 5 draw none in eval).
      numpy's global random state is restored after each layer.

    Full-attention inputs are unaffected; training-mode behaviour is unchanged.
    """
    base = model.base_model
    if not isinstance(base, BigBirdModel):
        raise ConfigError(f"use_published_block_sparse needs a BigBird model, not "
                          f"{type(model).__name__}")
    if getattr(base, "_dnalm_published_hooks", False):
        return model
    base.register_forward_pre_hook(_restore_attention_type)
    for layer in base.encoder.layer:
        attention: BigBirdAttention = layer.attention
        attention.register_forward_pre_hook(_draw_published_blocks)
        attention.register_forward_hook(_restore_after_blocks)
    base._dnalm_published_hooks = True
    return model


register_auto(GenaBertConfig, base=GenaBertModel, masked_lm=GenaBertForMaskedLM,
              classifier=GenaBertForSequenceClassification)

__all__: Sequence[str] = [
    "GenaBertConfig",
    "GenaBertForMaskedLM",
    "GenaBertForSequenceClassification",
    "GenaBertModel",
    "convert_bigbird_config",
    "convert_bigbird_state_dict",
    "convert_published_config",
    "convert_published_state_dict",
    "use_published_block_sparse",
]
