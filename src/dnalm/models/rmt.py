"""Recurrent Memory Transformer (RMT): model sequences far longer than an encoder's window.

Two models share the segmentation and the recurrence: :class:`RMTForSequenceClassification`
(fine-tuning on long sequences) and :class:`RMTForMaskedLM` (pretraining with memory, and
zero-shot variant scores whose window reads the segments upstream of it through memory).

GENA-LM reaches 36 kb with BigBird at 4,096 tokens and goes further with RMT (Bulatov et al.
2022; GENA-LM 2023): the long input is cut into segments, each segment carries ``m`` memory
tokens, and the encoder's outputs at those slots become the next segment's memory. The whole
pretrained encoder is thus one recurrent cell; attention cost grows linearly with the number of
segments instead of quadratically with the length.

Segment layout, as in GENA-LM's ``RMTEncoderForSequenceClassification``::

    [CLS] [MEM] x m [SEP] content (<= segment_length tokens) [SEP] [PAD] ...

padded to ``segment_length + m + 3`` tokens. Before cutting, [CLS]/[SEP]/[PAD] of the tokenized
input are stripped; at most ``max_n_segments`` segments are kept (the *first* tokens, as the
tokenizer's own truncation keeps them). Segments are right-aligned over the batch: a shorter row
starts later, so every row's last segment is non-empty and the head reads the same step for all;
while a row has no segment yet its memory passes through unchanged.

Design choices (and why):

* **Memory through ``inputs_embeds``, not new vocabulary rows.** GENA-LM adds ``m`` rows to the
  embedding table and new token ids. Here the initial memory is an ``(m, hidden)`` parameter and
  the memory slots are written into the embedding output, then the encoder runs on
  ``inputs_embeds``. The tokenizer, embedding table and base checkpoint stay untouched, so the
  same base directory serves plain fine-tuning, scoring and RMT, LoRA adapters apply to pristine
  weights, and it works for BERT, ModernBERT, BigBird and dnalm's native classes (they add
  position and type embeddings to ``inputs_embeds``) and for ESM, whose transformers 5 model
  skips its embedding module for ``inputs_embeds``, so :meth:`run_segment` runs it first.
* **Head on the mean of the last memory outputs** (``pooling="memory"``, the default): memory is
  by construction the running summary of every segment, so the head reads it directly. On the
  synthetic long-range task of ``tests/test_rmt.py`` (tiny BERT from scratch, 2 memory tokens,
  lr 3e-3, 150 steps) it reached 100 % held-out accuracy on 3 of 3 seeds, where the last
  segment's [CLS] (``pooling="cls"``, GENA-LM's choice, one attention hop further from the
  memory) reached 70 / 49 / 54 %. ``cls`` remains available, and is required when memory is
  disabled.
* **Truncated BPTT**: with ``bptt_depth = k`` the memory leaving a segment is detached when more
  than ``k`` segments remain after it, so gradients reach at most ``k`` segments back from the
  loss; ``-1`` back-propagates through all of them (GENA-LM's shipped setting).
* ``num_mem_tokens = 0`` disables memory: segments are then independent and only the last one is
  classified, the control in which long-range information cannot be used.

The model is an ordinary ``PreTrainedModel``: ``save_pretrained`` writes the encoder's config
nested in ``config.json`` (``model_type: dnalm_rmt``), and importing :mod:`dnalm.models`
registers the classes with ``AutoConfig`` / ``AutoModelForSequenceClassification``, so the
directory loads without ``trust_remote_code``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import MaskedLMOutput, SequenceClassifierOutput

from dnalm.errors import ConfigError
from dnalm.model_settings import (
    POOLINGS,
    SPECIAL_PER_SEGMENT,
    RMTSettings,
    segment_length_for,
)
from dnalm.model_settings import input_length as _input_length
from dnalm.models.directory import register_auto
from dnalm.runtime import position_limit

#: The settings' defaults are the model config's (one owner: :class:`RMTSettings`).
_DEFAULTS = RMTSettings()
#: Label of positions the masked-LM loss ignores (the ``transformers`` convention).
IGNORE_INDEX = -100


def _encoder_config(value: Mapping[str, Any] | PretrainedConfig) -> PretrainedConfig:
    if isinstance(value, PretrainedConfig):
        return value
    from dnalm.models.directory import register_native_classes

    register_native_classes()  # the encoder may be one of dnalm's native classes
    values = dict(value)
    model_type = values.pop("model_type", None)
    if not model_type:
        raise ConfigError("rmt encoder config has no model_type")
    return AutoConfig.for_model(model_type, **values)


class RMTConfig(PretrainedConfig):
    """RMT settings plus the nested encoder config (a dict with ``model_type``).

    ``segment_length`` counts content tokens per segment; a segment holds
    ``segment_length + num_mem_tokens + 3`` tokens, which must fit the encoder's positions.
    ``None`` takes the largest length that fits. Everything is checked on construction and
    reported as a one-line :class:`ConfigError`.
    """

    model_type = "dnalm_rmt"

    encoder: dict[str, Any] | None = None
    num_mem_tokens: int = _DEFAULTS.num_mem_tokens
    segment_length: int | None = _DEFAULTS.segment_length
    max_n_segments: int = _DEFAULTS.max_n_segments
    bptt_depth: int = _DEFAULTS.bptt_depth
    pooling: str = _DEFAULTS.pooling
    classifier_dropout: float | int = 0.1
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    cls_token_id: int | None = None
    sep_token_id: int | None = None
    #: attention kernel the nested encoder is built with (None: the class default)
    encoder_attn_implementation: str | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.encoder, PretrainedConfig):
            self.encoder = self.encoder.to_dict()
        checks = {"num_mem_tokens >= 0": self.num_mem_tokens >= 0,
                  "max_n_segments >= 1": self.max_n_segments >= 1,
                  "bptt_depth = -1 or >= 1": self.bptt_depth == -1 or self.bptt_depth >= 1,
                  "segment_length >= 1": self.segment_length is None or self.segment_length >= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"rmt setting(s) out of range, need {', '.join(bad)}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"rmt pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.pooling == "memory" and self.num_mem_tokens == 0:
            raise ConfigError("rmt pooling 'memory' needs num_mem_tokens >= 1; use pooling "
                              "'cls' to run without memory")
        if self.encoder is not None:
            self._fit_segment(_encoder_config(self.encoder))
        super().__post_init__(**kwargs)

    def _fit_segment(self, encoder: PretrainedConfig) -> None:
        limit = position_limit(encoder)
        if self.segment_length is None:
            if limit is None:
                raise ConfigError("rmt segment_length must be set: the encoder has no "
                                  "position limit to derive it from")
            self.segment_length = segment_length_for(limit, self.num_mem_tokens)
        if limit is not None and self.segment_length > segment_length_for(limit,
                                                                          self.num_mem_tokens):
            raise ConfigError(
                f"rmt segment of {self.segment_length} content + {self.num_mem_tokens} memory "
                f"+ 3 special tokens exceeds the encoder's {limit} positions; lower "
                f"segment_length to {segment_length_for(limit, self.num_mem_tokens)}")
        if self.segment_length < 1:
            raise ConfigError(f"rmt: {self.num_mem_tokens} memory tokens leave no room for "
                              f"content in the encoder's {limit} positions")

    @property
    def encoder_config(self) -> PretrainedConfig:
        """The nested encoder config as a ``transformers`` config object."""
        if self.encoder is None:
            raise ConfigError("rmt config has no encoder config")
        return _encoder_config(self.encoder)

    @property
    def segment_size(self) -> int:
        """Tokens per segment fed to the encoder (content + memory + 3 specials)."""
        return int(self.segment_length or 0) + self.num_mem_tokens + SPECIAL_PER_SEGMENT

    @property
    def max_content_tokens(self) -> int:
        """Longest content (tokens, specials excluded) classified; the rest is cut."""
        return int(self.segment_length or 0) * self.max_n_segments

    @property
    def input_length(self) -> int:
        """Tokens of one whole input: ``max_n_segments`` segments of content plus [CLS]/[SEP]."""
        return _input_length(int(self.segment_length or 0), self.max_n_segments)


class RMTMemory(nn.Module):
    """The learned initial memory; a module (not a bare parameter) so that peft's
    ``modules_to_save`` can train it in full next to the LoRA adapters."""

    def __init__(self, num_tokens: int, hidden_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_tokens, hidden_size))

    def forward(self, batch_size: int) -> torch.Tensor:
        """The initial memory for a batch: ``(batch, m, hidden)``."""
        return self.weight.unsqueeze(0).expand(batch_size, -1, -1)


class RMTClassificationHead(nn.Module):
    """dense -> tanh -> dropout -> out_proj, the RoBERTa/ESM head (the pooler of MLM
    checkpoints is missing, so the head brings its own projection)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(pooled)))))


@dataclass
class Segments:
    """A batch cut into segments: ``ids``/``mask`` are ``(n_segments, batch, segment_size)``;
    ``active[s, b]`` says whether row ``b`` has content in segment ``s``."""

    ids: torch.Tensor
    mask: torch.Tensor
    active: torch.Tensor
    truncated: torch.Tensor  # (batch,) bool: content beyond max_n_segments was dropped
    labels: torch.Tensor | None = None  # masked-LM targets laid out like ids (-100 elsewhere)


@dataclass
class RMTState:
    """What one pass over the segments produced: pooled vector and per-segment memories."""

    pooled: torch.Tensor  # (batch, hidden)
    last_hidden_state: torch.Tensor  # (batch, segment_size, hidden) of the last segment
    memories: list[torch.Tensor]  # n_segments x (batch, m, hidden), memory after each segment
    segments: Segments


class RMTPreTrainedModel(PreTrainedModel):
    """Config, weight initialisation, segmentation and the recurrence shared by the RMT models.

    Subclasses say which module is the encoder run on each segment (:attr:`backbone`).
    """

    config_class = RMTConfig
    base_model_prefix = "rmt"
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, RMTMemory):
            module.weight.normal_(0.0, std)
        elif isinstance(module, RMTClassificationHead):
            for linear in (module.dense, module.out_proj):
                linear.weight.normal_(0.0, std)
                linear.bias.zero_()

    @property
    def backbone(self) -> nn.Module:
        """The encoder (a ``transformers`` base model) that runs each segment."""
        raise NotImplementedError

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    # -- segmentation --------------------------------------------------------------------------

    def _content(self, row: list[int], mask: list[int]) -> list[int]:
        """Indices of a row's tokens without padding and its leading [CLS] / trailing [SEP]."""
        c = self.config
        keep = [i for i, k in enumerate(mask) if k]
        if keep and c.cls_token_id is not None and row[keep[0]] == c.cls_token_id:
            keep = keep[1:]
        if keep and c.sep_token_id is not None and row[keep[-1]] == c.sep_token_id:
            keep = keep[:-1]
        return keep

    def segment(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> Segments:
        """Cut a ``(batch, length)`` batch into right-aligned segments (see the module doc).

        ``labels`` (masked-LM targets, ``-100`` where nothing is predicted) are cut the same way;
        the special and memory slots of every segment get ``-100``.
        """
        c = self.config
        length, m = int(c.segment_length), c.num_mem_tokens
        pad = int(c.pad_token_id if c.pad_token_id is not None else 0)
        cls_id = int(c.cls_token_id if c.cls_token_id is not None else pad)
        sep_id = int(c.sep_token_id if c.sep_token_id is not None else pad)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        id_rows, mask_rows = input_ids.tolist(), attention_mask.tolist()
        label_rows = labels.tolist() if labels is not None else None
        kept = [self._content(r, k) for r, k in zip(id_rows, mask_rows, strict=True)]
        truncated = [len(k) > c.max_content_tokens for k in kept]
        kept = [k[: c.max_content_tokens] for k in kept]
        counts = [max(1, math.ceil(len(k) / length)) for k in kept]
        n_seg, batch = max(counts), len(kept)
        ids = torch.full((n_seg, batch, c.segment_size), pad, dtype=torch.long)
        mask = torch.zeros((n_seg, batch, c.segment_size), dtype=torch.long)
        seg_labels = (torch.full((n_seg, batch, c.segment_size), IGNORE_INDEX, dtype=torch.long)
                      if label_rows is not None else None)
        active = torch.zeros((n_seg, batch), dtype=torch.bool)
        start = 2 + m  # content follows [CLS], the memory slots and [SEP]
        for b, (keep, count) in enumerate(zip(kept, counts, strict=True)):
            for j in range(count):
                chunk = keep[j * length : (j + 1) * length]
                tokens = [cls_id] + [pad] * m + [sep_id] + [id_rows[b][i] for i in chunk] + [sep_id]
                s = n_seg - count + j
                ids[s, b, : len(tokens)] = torch.tensor(tokens)
                mask[s, b, : len(tokens)] = 1
                active[s, b] = True
                if seg_labels is not None and chunk:
                    seg_labels[s, b, start : start + len(chunk)] = torch.tensor(
                        [label_rows[b][i] for i in chunk])
        device = input_ids.device
        return Segments(ids.to(device), mask.to(device), active.to(device),
                        torch.tensor(truncated, device=device),
                        None if seg_labels is None else seg_labels.to(device))

    # -- the recurrence ------------------------------------------------------------------------

    def run_segment(self, ids: torch.Tensor, mask: torch.Tensor,
                    memory: torch.Tensor) -> torch.Tensor:
        """One segment through the encoder with ``memory`` written into its memory slots.

        ``ids``: ``(batch, segment)`` laid out as by :meth:`segment`; ``memory``: ``(batch, m,
        hidden)``. Returns the last hidden state; its slots ``1 : 1 + m`` are the new memory.
        """
        m = self.config.num_mem_tokens
        tokens = self.backbone.get_input_embeddings()(ids)
        if m:
            tokens = torch.cat([tokens[:, :1], memory.to(tokens.dtype), tokens[:, 1 + m:]], dim=1)
        if getattr(self.backbone.config, "model_type", "") == "esm":
            # transformers 5's EsmModel skips its embedding module when given inputs_embeds (no
            # positions, no layer norm, padding not zeroed): run it here
            tokens = self.backbone.embeddings(inputs_embeds=tokens, attention_mask=mask)
        return self.backbone(inputs_embeds=tokens, attention_mask=mask).last_hidden_state

    def _next_memory(self, hidden: torch.Tensor, memory: torch.Tensor, active: torch.Tensor,
                     remaining: int) -> torch.Tensor:
        """Memory leaving a segment: rows without content keep theirs; truncated BPTT detaches."""
        m = self.config.num_mem_tokens
        if not m:
            return memory
        memory = torch.where(active[:, None, None], hidden[:, 1 : 1 + m], memory)
        depth = self.config.bptt_depth
        if depth != -1 and remaining >= depth:
            memory = memory.detach()
        return memory

    def recur(self, seg: Segments) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run every segment, carrying memory: hidden states and memory after each segment."""
        n_seg, batch = seg.active.shape
        memory = self.memory(batch)
        hiddens: list[torch.Tensor] = []
        memories: list[torch.Tensor] = []
        for s in range(n_seg):
            hidden = self.run_segment(seg.ids[s], seg.mask[s], memory)
            memory = self._next_memory(hidden, memory, seg.active[s], n_seg - 1 - s)
            hiddens.append(hidden)
            memories.append(memory)
        return hiddens, memories


class RMTForSequenceClassification(RMTPreTrainedModel):
    """An encoder run recurrently over segments with memory tokens, plus a classifier.

    ``forward(input_ids, attention_mask, labels)`` takes the tokenized long sequence (with or
    without [CLS]/[SEP]) exactly as a plain classifier would, so fine-tuning code need not know
    it is an RMT. Build one around a model directory with :meth:`from_encoder`.
    """

    def __init__(self, config: RMTConfig, encoder: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        if config.encoder is None:
            raise ConfigError("rmt config has no encoder config")
        self.num_labels = config.num_labels
        self.encoder = encoder if encoder is not None else AutoModel.from_config(
            config.encoder_config, attn_implementation=config.encoder_attn_implementation)
        hidden = int(self.encoder.config.hidden_size)
        self.memory = RMTMemory(config.num_mem_tokens, hidden)
        self.classifier = RMTClassificationHead(hidden, config.num_labels,
                                                float(config.classifier_dropout))
        self.post_init()

    @property
    def backbone(self) -> nn.Module:
        return self.encoder

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_encoder(
        cls,
        model_dir: str | Path,
        *,
        num_labels: int = 2,
        problem_type: str | None = None,
        num_mem_tokens: int = _DEFAULTS.num_mem_tokens,
        segment_length: int | None = _DEFAULTS.segment_length,
        max_n_segments: int = _DEFAULTS.max_n_segments,
        bptt_depth: int = _DEFAULTS.bptt_depth,
        pooling: str = _DEFAULTS.pooling,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
    ) -> RMTForSequenceClassification:
        """Wrap the encoder of a model directory (pipeline-pretrained or a local HF checkpoint).

        The encoder weights are loaded by :mod:`dnalm.models.directory` (the MLM head of a
        masked-LM directory is dropped); memory and classifier are freshly initialised.
        Special-token ids come from the directory's tokenizer. The attention kernel defaults to
        the dnalm preset's. A directory pretrained with memory (:class:`RMTForMaskedLM`) keeps
        its learned memory and its memory size (``num_mem_tokens`` must then match it).
        """
        from dnalm.models.directory import (
            inspect_model_dir,
            load_encoder,
            load_model_tokenizer,
            model_config,
        )

        path = Path(model_dir)
        settings = {"num_labels": num_labels, "problem_type": problem_type,
                    "segment_length": segment_length, "max_n_segments": max_n_segments,
                    "bptt_depth": bptt_depth, "pooling": pooling}
        md = inspect_model_dir(path, trust_remote_code=trust_remote_code)
        if md.family.name == "rmt" and is_rmt_masked_lm(path):
            return cls.from_rmt_masked_lm(path, num_mem_tokens=num_mem_tokens, **settings)
        if attn_implementation is None and md.meta.get("preset"):
            from dnalm.models.presets import get_preset

            attn_implementation = get_preset(md.meta["preset"]).attn_implementation
        encoder_config = model_config(md, trust_remote_code=trust_remote_code)
        tokenizer = load_model_tokenizer(path, config=encoder_config)
        config = RMTConfig(
            encoder=encoder_config.to_dict(), num_mem_tokens=num_mem_tokens,
            initializer_range=float(getattr(encoder_config, "initializer_range", 0.02)),
            encoder_attn_implementation=attn_implementation,
            **special_token_ids(tokenizer, where=str(path)), **settings)
        encoder = load_encoder(md, attn_implementation=attn_implementation,
                               trust_remote_code=trust_remote_code)
        return cls(config, encoder=encoder)

    @classmethod
    def from_rmt_masked_lm(cls, model_dir: str | Path, *, num_mem_tokens: int | None = None,
                           **settings: Any) -> RMTForSequenceClassification:
        """A classifier from a memory-pretrained directory: its encoder and learned memory
        (loaded strictly by :mod:`dnalm.models.directory`, so a broken or partial checkpoint is
        refused in one line, not fine-tuned from random weights)."""
        from dnalm.models.directory import load_masked_lm

        source = load_masked_lm(model_dir)
        if not isinstance(source, RMTForMaskedLM):
            raise ConfigError(f"expected a recurrent-memory masked LM, found "
                              f"{type(source).__name__}", where=str(model_dir))
        have = source.config.num_mem_tokens
        if num_mem_tokens is not None and num_mem_tokens != have:
            raise ConfigError(f"rmt num_mem_tokens {num_mem_tokens} differs from the {have} "
                              "memory tokens this model was pretrained with", where=str(model_dir))
        values = source.config.to_dict()
        for key in ("architectures", "model_type", "transformers_version", "id2label",
                    "label2id", "dtype", "torch_dtype"):
            values.pop(key, None)
        values.update({k: v for k, v in settings.items() if v is not None or k == "problem_type"})
        if settings.get("segment_length") is None:
            values["segment_length"] = source.config.segment_length
        config = RMTConfig(**values)
        model = cls(config, encoder=source.backbone)
        with torch.no_grad():
            model.memory.weight.copy_(source.memory.weight)
        return model

    # -- the recurrence ------------------------------------------------------------------------

    def run_segments(self, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor | None = None) -> RMTState:
        """Run the encoder over every segment, carrying memory; return the pooled state."""
        seg = self.segment(input_ids, attention_mask)
        hiddens, memories = self.recur(seg)
        hidden = hiddens[-1]
        pooled = hidden[:, 0] if self.config.pooling == "cls" else memories[-1].mean(dim=1)
        if not self.config.num_mem_tokens:
            memories = []
        return RMTState(pooled=pooled, last_hidden_state=hidden, memories=memories, segments=seg)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        """Logits for long token sequences (and the loss when ``labels`` are given).

        ``inputs_embeds`` is refused: segmentation works on token ids (it must find and place
        the special tokens). The other keyword arguments exist for peft's wrapper and are ignored.
        """
        if input_ids is None or inputs_embeds is not None:
            raise ValueError("RMTForSequenceClassification needs input_ids (not inputs_embeds)")
        state = self.run_segments(input_ids, attention_mask)
        logits = self.classifier(state.pooled)
        loss = None
        if labels is not None:
            if self.config.problem_type == "regression" or self.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits.float(), labels.long())
        hidden_states = (state.last_hidden_state,) if output_hidden_states else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)


class RMTForMaskedLM(RMTPreTrainedModel):
    """A masked LM run recurrently over segments with memory: long-context pretraining and scoring.

    Pretraining (``pretraining.models.<name>.rmt`` in the config) feeds rows of
    ``max_n_segments`` segments; the masked-LM loss is the mean over the masked tokens of *all*
    segments, each predicted from its own segment plus the memory of the segments before it, so
    the memory learns to carry context forward. The LM head runs only at masked positions.

    Scoring (:class:`dnalm.score.lm.MaskedLM`) reads the variant's window as the last segment
    and the ``max_n_segments - 1`` segments upstream of it as context through memory
    (:meth:`memory_after`, :meth:`log_probs_in_segment`).

    ``self.mlm`` is the whole ``transformers`` masked-LM (so weight tying and loading work as
    for the plain model); its base model is the encoder of every segment.
    """

    def __init__(self, config: RMTConfig, mlm: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        if config.encoder is None:
            raise ConfigError("rmt config has no encoder config")
        self.mlm = mlm if mlm is not None else AutoModelForMaskedLM.from_config(
            config.encoder_config, attn_implementation=config.encoder_attn_implementation)
        # a tuple, so the head (owned by ``self.mlm``) is not registered a second time
        self._head_ref = (masked_lm_head(self.mlm),)
        self.memory = RMTMemory(config.num_mem_tokens, int(self.mlm.config.hidden_size))
        self.post_init()

    @classmethod
    def wrap(cls, mlm: PreTrainedModel, *, num_mem_tokens: int, max_n_segments: int,
             bptt_depth: int = -1, cls_token_id: int | None, sep_token_id: int | None,
             pad_token_id: int | None, attn_implementation: str | None = None,
             seed: int | None = None) -> RMTForMaskedLM:
        """Add memory to a masked LM (freshly built or pretrained); segments fill its positions.

        ``seed`` draws the initial memory from its own generator, so a run does not depend on
        what the global random state was (a segmented run must equal an uncut one).
        """
        config = RMTConfig(
            encoder=mlm.config.to_dict(), num_mem_tokens=num_mem_tokens,
            max_n_segments=max_n_segments, bptt_depth=bptt_depth, pooling="cls",
            cls_token_id=cls_token_id, sep_token_id=sep_token_id, pad_token_id=pad_token_id,
            initializer_range=float(getattr(mlm.config, "initializer_range", 0.02)),
            encoder_attn_implementation=attn_implementation)
        model = cls(config, mlm=mlm)
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                weight = model.memory.weight
                weight.copy_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
                             * config.initializer_range)
        return model

    @property
    def backbone(self) -> nn.Module:
        return self.mlm.base_model

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._head_ref[0](hidden)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput:
        """Masked-LM loss over every segment of long rows (``labels``: -100 where unmasked).

        Without ``labels`` the logits of the last segment's positions are returned.
        """
        if input_ids is None:
            raise ValueError("RMTForMaskedLM needs input_ids")
        seg = self.segment(input_ids, attention_mask, labels)
        hiddens, _ = self.recur(seg)
        if seg.labels is None:
            return MaskedLMOutput(logits=self._head(hiddens[-1]))
        total = hiddens[0].new_zeros((), dtype=torch.float32)
        count = 0
        for hidden, target in zip(hiddens, seg.labels, strict=True):
            picked = target != IGNORE_INDEX
            n = int(picked.sum())
            if n:
                logits = self._head(hidden[picked]).float()
                total = total + nn.functional.cross_entropy(logits, target[picked],
                                                            reduction="sum")
                count += n
        return MaskedLMOutput(loss=total / max(count, 1))

    # -- scoring -------------------------------------------------------------------------------

    @torch.no_grad()
    def memory_after(self, contexts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Memory after reading each context (content token ids, no specials): ``(n, m, hidden)``.

        An empty context leaves the learned initial memory; contexts longer than
        ``max_n_segments`` segments keep their first tokens (callers pass the last ones).
        """
        device = self.memory.weight.device
        out = self.memory(len(contexts)).clone()
        rows = [i for i, c in enumerate(contexts) if len(c)]
        if not rows or not self.config.num_mem_tokens:
            return out
        width = max(len(contexts[i]) for i in rows)
        pad = int(self.config.pad_token_id or 0)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(rows):
            ids[r, width - len(contexts[i]):] = torch.as_tensor(list(contexts[i]))
            mask[r, width - len(contexts[i]):] = 1
        _, memories = self.recur(self.segment(ids.to(device), mask.to(device)))
        out[rows] = memories[-1]
        return out

    @torch.no_grad()
    def log_probs_in_segment(self, ids: torch.Tensor, mask: torch.Tensor, memory: torch.Tensor,
                             rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Log-softmax at ``(rows, cols)`` of segments laid out as by :meth:`segment`, each
        reading ``memory`` (``(batch, m, hidden)``) in its memory slots."""
        hidden = self.run_segment(ids, mask, memory)
        return torch.log_softmax(self._head(hidden[rows, cols]).float(), dim=-1)


def special_token_ids(tokenizer: Any, *, where: str = "tokenizer") -> dict[str, int | None]:
    """[CLS]/[SEP]/[PAD] ids of a :class:`~dnalm.tokenizers.DnaTokenizer` for segment layout.

    ESM/NT tokenizers start with <cls> and may end a sequence with <eos> and have no [SEP];
    a tokenizer with neither cannot mark where a segment's memory ends.
    """
    ids = tokenizer.special_ids
    out = {"pad_token_id": ids.get("pad"),
           "cls_token_id": ids["cls"] if ids.get("cls") is not None else ids.get("bos"),
           "sep_token_id": ids["sep"] if ids.get("sep") is not None else ids.get("eos")}
    missing = [k.removesuffix("_token_id") for k, v in out.items() if v is None]
    if missing:
        raise ConfigError(f"recurrent memory needs {', '.join(missing)} token(s), which the "
                          "tokenizer does not have", where=where)
    return out


def masked_lm_head(model: PreTrainedModel) -> nn.Module:
    """The LM head of a ``transformers`` masked LM as one module (hidden -> vocabulary logits).

    Lets callers run the head on the few positions they read instead of every position.
    """
    kind = model.config.model_type
    if kind in ("bert", "big_bird", "dnalm_dnabert2", "dnalm_gena_bert") and hasattr(model, "cls"):
        return model.cls
    if kind in ("esm", "roberta", "xlm-roberta", "dnalm_ntv2") and hasattr(model, "lm_head"):
        return model.lm_head
    if kind == "modernbert" and hasattr(model, "head"):
        return _Chain(model.head, model.decoder)
    raise ConfigError(f"no known masked-LM head for model type {kind!r}")


class _Chain(nn.Module):
    """``second(first(x))`` without registering the modules (they stay owned by the model)."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self._parts = (first, second)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        first, second = self._parts
        return second(first(hidden))


def encoder_config(model: nn.Module) -> PretrainedConfig:
    """The config of the encoder that does the work (the nested one of an RMT model).

    Shape-dependent code (memory estimates, FLOPs, vocabulary checks) reads this, so it works
    the same for a plain masked LM and for one wrapped with memory.
    """
    if isinstance(model, RMTForMaskedLM):
        return model.mlm.config
    if isinstance(model, RMTForSequenceClassification):
        return model.encoder.config
    return model.config


def is_rmt_masked_lm(model_dir: str | Path) -> bool:
    """Whether a model directory holds an :class:`RMTForMaskedLM` (memory-pretrained)."""
    import json

    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return False
    config = json.loads(path.read_text())
    return config.get("model_type") == RMTConfig.model_type and "RMTForMaskedLM" in (
        config.get("architectures") or [])


def rmt_head_modules() -> list[str]:
    """Modules an RMT classifier trains in full under LoRA: initial memory and classifier."""
    return ["classifier", "memory"]


register_auto(RMTConfig, masked_lm=RMTForMaskedLM, classifier=RMTForSequenceClassification)

__all__: Sequence[str] = [
    "RMTConfig",
    "RMTForMaskedLM",
    "RMTForSequenceClassification",
    "RMTState",
    "Segments",
    "encoder_config",
    "is_rmt_masked_lm",
    "masked_lm_head",
    "rmt_head_modules",
]
