"""DNABERT-2 (Zhou et al. 2023), native: the published checkpoints under transformers 5.

DNABERT-2-117M is published with its own modelling code (``bert_layers.py``, MosaicBERT,
loaded with ``trust_remote_code``) written for transformers 4.28; its ``config.json`` has no
``model_type``. This module is dnalm's own implementation of that architecture, written from
the description of the model, so a published directory loads without remote code and gives the
authors' logits (``tests/test_published_dnabert2.py`` checks this against a checkpoint written
by the authors' code).

This module holds the architecture and the two converters of the published layout,
:func:`convert_published_config` and :func:`convert_published_state_dict`. Directories are read
by :mod:`dnalm.models.directory`, which recognises a published DNABERT-2, calls the converters
and loads the weights strictly; importing this module registers ``dnalm_dnabert2`` with the
transformers Auto classes, so a native copy (``save_pretrained``) reloads without
``trust_remote_code``.

Architecture (MosaicBERT, post-LayerNorm BERT):

* embeddings: word + token-type, LayerNorm, dropout; **no position embeddings**;
* attention: fused ``Wqkv`` projection (q, k, v stacked in that order, then heads), scores plus
  an **ALiBi** bias ``-slope_h * |i - j|`` per head, ``attention.output.dense`` + residual +
  LayerNorm;
* feed-forward: gated GELU, ``gated_layers`` (no bias) gives ``[gate | value]``,
  ``gelu(gate) * value``, ``wo``, residual, ``layernorm``;
* heads: BERT's MLM head (dense, activation, LayerNorm, decoder tied to the word embeddings with
  its own bias); the classifier reads BERT's pooler (tanh dense on [CLS]) through dropout.

Differences from the authors' code, none of which changes a result at real positions:

* The authors unpad the batch and pad it back around attention; here attention runs on the
  padded batch with PyTorch SDPA, the ALiBi bias and a padding mask (padded keys get the
  dtype's minimum), so real positions see exactly the same keys. Padded positions hold
  finite values of no meaning (the authors' code returns zeros there).
* The authors keep an ALiBi table of ``alibi_starting_size`` and rebuild it larger whenever a
  longer batch arrives; the bias here is computed for each input's length from the same slopes
  (same float32 arithmetic), so there is no table and no length limit.
* Their Triton kernel (GPU, casts to fp16) is not used; their PyTorch fallback is what this
  reproduces.
* Their MLM forward with ``labels`` treats ``labels > 0`` as masked and returns logits only
  there; here the loss is transformers' BERT loss (``-100`` ignored) and logits are returned
  everywhere. Their BertModel ignores ``inputs_embeds``; here it replaces the word embeddings
  (token-type embeddings and LayerNorm still apply), which dnalm's recurrent memory needs.

**Positions.** ALiBi has no position table: ``max_position_embeddings`` is ``None``
(unbounded) in :class:`DnaBert2Config`. The published ``max_position_embeddings: 512`` only
sized an unused token-type buffer, and ``alibi_starting_size: 512`` only the initial ALiBi table
that the authors' code grows on demand; neither limits the input. (The model was pretrained on
short sequences, so quality far beyond that is not guaranteed; a window is the caller's choice.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
)

from dnalm.errors import ConfigError
from dnalm.models.directory import register_auto

#: The authors' MLM head LayerNorm uses this epsilon whatever ``layer_norm_eps`` says.
HEAD_LAYER_NORM_EPS = 1e-12


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi slopes per head, as the authors compute them (Press et al. 2022).

    For a power of two ``n``: the geometric sequence starting at ``2 ** (-8 / n)``. Otherwise
    the slopes of the largest power of two ``p < n`` followed by every other slope of ``2p``
    (the first ``n - p`` of them): the rule the ALiBi authors give for other head counts.
    """

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


def alibi_bias(slopes: torch.Tensor, length: int) -> torch.Tensor:
    """The symmetric ALiBi bias ``-slope * |i - j|``: ``(1, heads, length, length)``, float32.

    Same arithmetic as the authors' table (float32 slopes times the negated int64 distance), so
    the values are bit-identical to the slice of their table they would use.
    """
    pos = torch.arange(length, device=slopes.device)
    distance = (pos[None, :] - pos[:, None]).abs()
    return (slopes[:, None, None] * -distance).unsqueeze(0)


class DnaBert2Config(PretrainedConfig):
    """Configuration of a DNABERT-2 (MosaicBERT) encoder.

    Fields (checked on construction, one-line :class:`ConfigError`):

    * ``vocab_size``, ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``
      (dividing ``hidden_size``), ``intermediate_size`` (the gated feed-forward's width; its
      ``gated_layers`` projects to twice that), ``type_vocab_size``: sizes, >= 1.
    * ``hidden_act``: activation of the MLM head's transform only; the feed-forward always
      uses exact (erf) GELU, as the authors' code does.
    * ``hidden_dropout_prob``, ``attention_probs_dropout_prob``, ``classifier_dropout``
      (``None``: ``hidden_dropout_prob``): in [0, 1].
    * ``layer_norm_eps``: of every LayerNorm but the MLM head's (fixed at 1e-12 by the authors).
    * ``alibi_starting_size``: kept from the published config for the record; the authors'
      initial ALiBi table size. It changes no result (the bias is computed per input length).
    * ``max_position_embeddings``: ``None``, i.e. no position limit (ALiBi). The model does not
      read it; an integer only declares a cap for callers that window inputs by it.
    * ``pad_token_id``: ``padding_idx`` of the word embeddings (the published config has none,
      so the authors' embedding has no padding row; the tokenizer's [PAD] is id 3).
    """

    model_type = "dnalm_dnabert2"

    vocab_size: int = 4096
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.0
    classifier_dropout: float | int | None = None
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    alibi_starting_size: int = 512
    max_position_embeddings: int | None = None
    pad_token_id: int | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        sizes = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "type_vocab_size", "alibi_starting_size")
        for name in sizes:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"dnabert2 config: {name} must be an integer >= 1, "
                                  f"got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"dnabert2 config: hidden_size {self.hidden_size} is not a "
                              f"multiple of num_attention_heads {self.num_attention_heads}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is None and name == "classifier_dropout":
                continue
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"dnabert2 config: {name} must be in [0, 1], got {value!r}")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACT2FN:
            raise ConfigError(f"dnabert2 config: unknown hidden_act {self.hidden_act!r}")
        if not self.layer_norm_eps > 0:
            raise ConfigError("dnabert2 config: layer_norm_eps must be > 0")
        limit = self.max_position_embeddings
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"dnabert2 config: max_position_embeddings must be None "
                              f"(unbounded) or >= 1, got {limit!r}")
        pad = self.pad_token_id
        if pad is not None and not 0 <= pad < self.vocab_size:
            raise ConfigError(f"dnabert2 config: pad_token_id {pad} outside the vocabulary")
        if not self.tie_word_embeddings:
            raise ConfigError("dnabert2 config: tie_word_embeddings must be true (the MLM "
                              "decoder is the word embedding matrix)")
        super().__post_init__(**kwargs)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


# -- modules -----------------------------------------------------------------------------------


class DnaBert2Embeddings(nn.Module):
    """Word + token-type embeddings, LayerNorm, dropout (positions come from ALiBi)."""

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long,
                                         device=inputs_embeds.device)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


class DnaBert2SelfAttention(nn.Module):
    """Fused q/k/v projection and SDPA with the ALiBi + padding bias."""

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout_prob = float(config.attention_probs_dropout_prob)
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        # (b, s, 3 * h * d) laid out as [q | k | v], each head-major: (b, s, 3, h, d)
        qkv = self.Wqkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (b, h, s, d)
        if bias.dtype != q.dtype:  # the model builds it in the compute dtype; a fallback
            bias = bias.to(q.dtype).clamp_min(torch.finfo(q.dtype).min)
        out = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout_prob if self.training else 0.0)
        return out.transpose(1, 2).reshape(batch, length, -1)


class DnaBert2SelfOutput(nn.Module):
    """Output projection, dropout, residual and post-LayerNorm."""

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class DnaBert2Attention(nn.Module):
    """``attention.self`` (Wqkv) + ``attention.output`` (dense, LayerNorm), published names."""

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.self = DnaBert2SelfAttention(config)
        self.output = DnaBert2SelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden_states, bias), hidden_states)


class DnaBert2GatedMLP(nn.Module):
    """Gated-GELU feed-forward with residual and post-LayerNorm.

    ``gated_layers`` maps to ``2 * intermediate_size`` without bias: the first half is the gate
    (through exact GELU), the second the value they multiply.
    """

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size,
                                      bias=False)
        self.act = nn.GELU(approximate="none")
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gate, value = self.gated_layers(hidden_states).split(self.intermediate_size, dim=-1)
        out = self.wo(self.dropout(self.act(gate) * value))
        return self.layernorm(out + hidden_states)


class DnaBert2Layer(nn.Module):
    """One encoder block: attention then the gated feed-forward."""

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.attention = DnaBert2Attention(config)
        self.mlp = DnaBert2GatedMLP(config)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attention(hidden_states, bias))


class DnaBert2Encoder(nn.Module):
    """The stack of layers (``encoder.layer.<i>``, the published names)."""

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.layer = nn.ModuleList(DnaBert2Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor,
                output_hidden_states: bool = False
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        states = [hidden_states] if output_hidden_states else None
        for layer in self.layer:
            hidden_states = layer(hidden_states, bias)
            if states is not None:
                states.append(hidden_states)
        return hidden_states, tuple(states) if states is not None else None


class DnaBert2Pooler(nn.Module):
    """BERT's pooler: tanh(dense(hidden at [CLS]))."""

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class DnaBert2PredictionHeadTransform(nn.Module):
    """dense -> activation (``hidden_act``) -> LayerNorm (eps 1e-12, as published)."""

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=HEAD_LAYER_NORM_EPS)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class DnaBert2LMPredictionHead(nn.Module):
    """Transform, then the decoder (weight tied to the word embeddings, its own bias)."""

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.transform = DnaBert2PredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class DnaBert2OnlyMLMHead(nn.Module):
    """``cls``: hidden states -> vocabulary logits (``cls.predictions.*`` as published)."""

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__()
        self.predictions = DnaBert2LMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


# -- models ------------------------------------------------------------------------------------


class DnaBert2PreTrainedModel(PreTrainedModel):
    """Config class, weight initialisation (BERT's: normal(0, initializer_range) for Linear and
    Embedding, LayerNorm 1/0, biases 0) and the published ``bert`` prefix."""

    config_class = DnaBert2Config
    config: DnaBert2Config
    base_model_prefix = "bert"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _no_split_modules: ClassVar[list[str]] = ["DnaBert2Layer"]


class DnaBert2Model(DnaBert2PreTrainedModel):
    """The encoder: embeddings, layers and (optionally) BERT's pooler.

    ``forward`` returns ``last_hidden_state`` ``(batch, length, hidden)``, ``pooler_output``
    (``None`` without a pooler) and, with ``output_hidden_states``, the embeddings output
    followed by every layer's output (the last equals ``last_hidden_state``).
    """

    def __init__(self, config: DnaBert2Config, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = DnaBert2Embeddings(config)
        self.encoder = DnaBert2Encoder(config)
        self.pooler = DnaBert2Pooler(config) if add_pooling_layer else None
        self.slopes: list[float] = alibi_slopes(config.num_attention_heads)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def attention_bias(self, attention_mask: torch.Tensor | None, batch: int, length: int,
                       device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """ALiBi plus padding: ``(batch, heads, length, length)``, or ``(1, heads, length,
        length)`` (broadcast by SDPA) when nothing is padded, in the compute dtype.

        The compute dtype is the autocast dtype when autocast is on (the attention then runs in
        it), else ``dtype``. Padded keys get that dtype's minimum, not -inf, so a row without
        any real key (an all-padding row) stays finite instead of turning into NaN.
        """
        if torch.is_autocast_enabled(device.type):
            dtype = torch.get_autocast_dtype(device.type)
        slopes = torch.tensor(self.slopes, dtype=torch.float32, device=device)
        bias = alibi_bias(slopes, length).to(dtype)
        if attention_mask is None:
            return bias
        if attention_mask.shape != (batch, length):
            raise ValueError(f"attention_mask of shape {tuple(attention_mask.shape)} does not "
                             f"match the input ({batch}, {length})")
        keep = attention_mask.to(device=device, dtype=torch.bool)
        if bool(keep.all()):
            return bias
        return bias.masked_fill(~keep[:, None, None, :], torch.finfo(dtype).min)

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
    ) -> BaseModelOutputWithPooling | tuple[torch.Tensor, ...]:
        """Encode ``input_ids`` (or ``inputs_embeds``) with ``attention_mask`` (1 = token).

        ``position_ids`` is refused when given (ALiBi has none to take); attention weights are
        not returned (``output_attentions`` must be off: SDPA never forms them). Other keyword
        arguments (from peft or the Trainer) are ignored.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        if position_ids is not None:
            raise ValueError("DNABERT-2 has no position ids (ALiBi attention bias)")
        if output_attentions:
            raise ValueError("DNABERT-2 attention runs in SDPA and returns no attention weights")
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        if return_dict is None:
            return_dict = self.config.return_dict
        embedding_output = self.embeddings(input_ids, token_type_ids, inputs_embeds)
        batch, length = embedding_output.shape[:2]
        bias = self.attention_bias(attention_mask, batch, length, embedding_output.device,
                                   embedding_output.dtype)
        sequence_output, hidden_states = self.encoder(embedding_output, bias,
                                                      output_hidden_states)
        pooled = self.pooler(sequence_output) if self.pooler is not None else None
        if not return_dict:
            return tuple(v for v in (sequence_output, pooled, hidden_states) if v is not None)
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output,
                                          pooler_output=pooled, hidden_states=hidden_states)


class DnaBert2ForMaskedLM(DnaBert2PreTrainedModel):
    """DNABERT-2 with its MLM head: ``bert`` (no pooler, as published) and ``cls``.

    ``model.cls`` maps hidden states to vocabulary logits, so callers can run it only at the
    positions they read: ``model.cls(model.base_model(ids, mask).last_hidden_state[rows,
    cols])``.
    """

    _tied_weights_keys: ClassVar[dict[str, str]] = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__(config)
        self.bert = DnaBert2Model(config, add_pooling_layer=False)
        self.cls = DnaBert2OnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings

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
    ) -> MaskedLMOutput | tuple[torch.Tensor, ...]:
        """Logits at every position; with ``labels`` (``-100`` = not predicted) the mean
        cross-entropy over the predicted positions, as transformers' BERT."""
        if return_dict is None:
            return_dict = self.config.return_dict
        outputs = self.bert(input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids, position_ids=position_ids,
                            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.cls(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.config.vocab_size).float(),
                                               labels.view(-1).to(logits.device))
        if not return_dict:
            out = tuple(v for v in (logits, outputs.hidden_states) if v is not None)
            return (loss, *out) if loss is not None else out
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class DnaBert2ForSequenceClassification(DnaBert2PreTrainedModel):
    """The authors' classifier: pooler (tanh dense on [CLS]) -> dropout -> ``classifier``.

    ``classifier_dropout`` (``None``: ``hidden_dropout_prob``) is the dropout before the
    linear layer. Built from a masked-LM checkpoint, ``bert.pooler`` and ``classifier`` are new.
    """

    def __init__(self, config: DnaBert2Config) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = DnaBert2Model(config)
        dropout = (config.classifier_dropout if config.classifier_dropout is not None
                   else config.hidden_dropout_prob)
        self.dropout = nn.Dropout(float(dropout))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

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
    ) -> SequenceClassifierOutput | tuple[torch.Tensor, ...]:
        """Logits ``(batch, num_labels)``; the loss follows transformers' BERT
        (``problem_type`` regression: MSE; single_label_classification: cross-entropy;
        multi_label_classification: BCE with logits; inferred when unset)."""
        if return_dict is None:
            return_dict = self.config.return_dict
        outputs = self.bert(input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids, position_ids=position_ids,
                            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None
        if labels is not None:
            loss = ForSequenceClassificationLoss(labels, logits, self.config)
        if not return_dict:
            out = tuple(v for v in (logits, outputs.hidden_states) if v is not None)
            return (loss, *out) if loss is not None else out
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=outputs.hidden_states)


# -- published checkpoints ---------------------------------------------------------------------

#: Published config keys taken as they are.
_CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "hidden_act", "hidden_dropout_prob",
                  "attention_probs_dropout_prob", "classifier_dropout", "type_vocab_size",
                  "initializer_range", "layer_norm_eps", "alibi_starting_size", "pad_token_id",
                  "id2label", "label2id", "num_labels", "problem_type")
#: Published config keys that change nothing here, and why.
_CONFIG_IGNORED = {
    "_name_or_path": "where the authors loaded it from",
    "auto_map": "pointers to the authors' remote code, replaced by these classes",
    "architectures": "class names of the authors' code",
    "transformers_version": "the version that wrote the file",
    "torch_dtype": "storage dtype; weights load into the dtype asked for",
    "dtype": "storage dtype; weights load into the dtype asked for",
    "gradient_checkpointing": "a training switch of transformers 4",
    "use_cache": "an encoder has no cache",
    "position_embedding_type": "unused by the authors' code: positions are the ALiBi bias",
    "max_position_embeddings": "sized an unused token-type buffer; ALiBi has no limit (None)",
    "tie_word_embeddings": "the authors' code ties the decoder whatever it says",
    "bos_token_id": "generation setting, unused by an encoder",
    "eos_token_id": "generation setting, unused by an encoder",
}


def convert_published_config(raw: Mapping[str, Any]) -> DnaBert2Config:
    """A :class:`DnaBert2Config` from a published DNABERT-2 ``config.json`` (as a dict).

    Keys of :data:`_CONFIG_FIELDS` are taken, those of :data:`_CONFIG_IGNORED` dropped (each
    with its reason); ``model_type`` must be absent (as published) or ``bert`` or
    ``dnalm_dnabert2``; ``is_decoder`` must be false. Anything else raises :class:`ConfigError`
    naming the first such key, so a config the native model would silently misread (e.g. a
    different attention variant) is refused rather than approximated.
    """
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _CONFIG_FIELDS:
            values[key] = value
        elif key in _CONFIG_IGNORED:
            continue
        elif key == "model_type":
            if value not in ("bert", DnaBert2Config.model_type):
                raise ConfigError(f"dnabert2 config: model_type {value!r} is not a DNABERT-2 "
                                  "config")
        elif key == "is_decoder":
            if value:
                raise ConfigError("dnabert2 config: is_decoder true is not supported (the "
                                  "encoder is bidirectional)")
        else:
            raise ConfigError(f"dnabert2 config: unknown field {key!r}")
    if "id2label" in values and "num_labels" in values:
        values.pop("num_labels")  # id2label decides, as transformers does
    return DnaBert2Config(**values)


#: Parameter names of a published checkpoint (after the ``bert.`` prefix), by module.
_LAYER_KEY = re.compile(
    r"bert\.encoder\.layer\.\d+\.(attention\.self\.Wqkv\.(weight|bias)"
    r"|attention\.output\.dense\.(weight|bias)|attention\.output\.LayerNorm\.(weight|bias)"
    r"|mlp\.gated_layers\.weight|mlp\.wo\.(weight|bias)|mlp\.layernorm\.(weight|bias))")
_FIXED_KEYS = frozenset({
    "bert.embeddings.word_embeddings.weight", "bert.embeddings.token_type_embeddings.weight",
    "bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias",
    "bert.pooler.dense.weight", "bert.pooler.dense.bias",
    "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
    "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
    "cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
    "classifier.weight", "classifier.bias",
})
#: Decoder weight: tied to the word embeddings (checked equal, then dropped; the model re-ties).
TIED_KEY = "cls.predictions.decoder.weight"


def convert_published_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Published DNABERT-2 weights under this module's parameter names.

    The names are the published ones, so the mapping is the identity except for what the
    authors' transformers 4 loader also did: a checkpoint of a bare ``BertModel`` (keys without
    the ``bert.`` prefix) gets the prefix, and TF-era ``LayerNorm.gamma``/``beta`` become
    ``weight``/``bias``. One key is dropped: ``cls.predictions.decoder.weight``, the tied copy of
    the word embeddings (checked equal to them; the model re-ties). Pooler, classifier and MLM
    head keys are kept; :mod:`dnalm.models.directory` decides which of them the model it loads
    may leave out. Any other key raises :class:`ConfigError` naming the first one.
    """
    has_prefix = any(k.startswith(("bert.", "cls.", "classifier.")) for k in state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key if has_prefix else f"bert.{key}"
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        if name not in _FIXED_KEYS and not _LAYER_KEY.fullmatch(name):
            raise ConfigError(f"dnabert2 checkpoint: unknown weight {key!r}")
        out[name] = value
    tied = out.pop(TIED_KEY, None)
    embeddings = out.get("bert.embeddings.word_embeddings.weight")
    if tied is not None and (embeddings is None or tied.shape != embeddings.shape
                             or not torch.equal(tied, embeddings)):
        raise ConfigError(f"dnabert2 checkpoint: {TIED_KEY} differs from the word embeddings "
                          "(an untied decoder is not supported)")
    return out


register_auto(DnaBert2Config, base=DnaBert2Model, masked_lm=DnaBert2ForMaskedLM,
              classifier=DnaBert2ForSequenceClassification)

__all__: Sequence[str] = [
    "DnaBert2Config",
    "DnaBert2ForMaskedLM",
    "DnaBert2ForSequenceClassification",
    "DnaBert2Model",
    "DnaBert2PreTrainedModel",
    "alibi_slopes",
    "convert_published_config",
    "convert_published_state_dict",
]
