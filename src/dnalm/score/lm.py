"""A masked language model for scoring: loading, batching, log-probabilities at masked positions.

:class:`MaskedLM` loads any Hugging Face masked-LM directory (one pretrained by dnalm, or an
external checkpoint such as Nucleotide Transformer's) with its tokenizer, and evaluates batches of
token sequences. The expensive part of a small model with a large vocabulary is the LM head
(hidden × vocab per position): :meth:`MaskedLM.log_probs_at` runs the encoder on the whole input
but the head only at the positions whose probabilities are read.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from dnalm.errors import ConfigError
from dnalm.models.directory import inspect_model_dir, load_masked_lm, load_model_tokenizer
from dnalm.models.rmt import RMTForMaskedLM, encoder_config, masked_lm_head
from dnalm.runtime import autocast, pick_device, position_limit
from dnalm.tokenizers import DnaTokenizer

log = logging.getLogger(__name__)

#: Memories kept for reuse (m x hidden floats each): enough for the windows of one batch run.
_MEMORY_CACHE_SIZE = 4096


@dataclass(frozen=True)
class SpecialLayout:
    """Special tokens around the content: ``prefix + content + suffix``; ``mask``, ``pad`` ids."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    mask: int
    pad: int


def _layout(tokenizer: DnaTokenizer) -> SpecialLayout:
    ids = tokenizer.special_ids
    pad = ids.get("pad")
    return SpecialLayout(tuple(tokenizer.prefix), tuple(tokenizer.suffix), int(ids["mask"]),
                         int(pad) if pad is not None else 0)


def max_input_tokens(config) -> int:
    """Longest input (special tokens included) the model's positions allow (512 if unbounded)."""
    return position_limit(config) or 512


def _encoder_and_head(model: PreTrainedModel) -> tuple[torch.nn.Module, Callable] | None:
    """The encoder and the LM head of the transformers classes dnalm builds (None otherwise)."""
    try:
        return model.base_model, masked_lm_head(model)
    except ConfigError:
        return None


class MaskedLM:
    """A masked LM ready for scoring (eval mode, no gradients).

    ``head_at_masked_only`` can be switched off to evaluate the head everywhere (the naive path,
    used by benchmarks for comparison). On CUDA the encoder runs in bf16 autocast
    (:func:`dnalm.runtime.autocast`).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        tokenizer_dir: str | Path | None = None,
        device: torch.device | str | None = None,
        trust_remote_code: bool = False,
        head_at_masked_only: bool = True,
    ) -> None:
        model_dir = Path(model_dir)
        self.directory = inspect_model_dir(model_dir, trust_remote_code=trust_remote_code)
        self.device = torch.device(device) if device is not None else pick_device()
        self.model = load_masked_lm(self.directory, trust_remote_code=trust_remote_code)
        self.model.to(self.device).eval()
        self.tokenizer = load_model_tokenizer(tokenizer_dir or model_dir,
                                              config=encoder_config(self.model))
        log.info("tokenizer: %s", self.tokenizer.describe())
        self.special = _layout(self.tokenizer)
        self.max_tokens = max_input_tokens(encoder_config(self.model))
        self.vocab_size = int(getattr(self.model.config, "vocab_size", 0) or 0)
        self._split = _encoder_and_head(self.model) if head_at_masked_only else None
        #: a model pretrained with recurrent memory: windows read upstream context through it
        self.rmt: RMTForMaskedLM | None = None
        self.context_tokens = 0
        if isinstance(self.model, RMTForMaskedLM):
            self._use_memory(self.model)
        self.max_content = self.max_tokens - len(self.special.prefix) - len(self.special.suffix)
        self._memory_cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.metadata = self.tokenizer.metadata

    def _use_memory(self, model: RMTForMaskedLM) -> None:
        """Score each window as the last segment of an RMT: ``[CLS] [MEM] x m [SEP] content
        [SEP]`` whose memory has read the ``max_n_segments - 1`` segments before it."""
        c = model.config
        self.rmt = model
        self.special = SpecialLayout(
            prefix=(int(c.cls_token_id),) + (int(c.pad_token_id or 0),) * c.num_mem_tokens
            + (int(c.sep_token_id),),
            suffix=(int(c.sep_token_id),), mask=self.special.mask, pad=int(c.pad_token_id or 0))
        self.max_tokens = c.segment_size
        self.context_tokens = int(c.segment_length) * (c.max_n_segments - 1)
        self.vocab_size = int(model.mlm.config.vocab_size)
        self._split = None

    def _memories(self, contexts: Sequence[np.ndarray]) -> torch.Tensor:
        """Memory after each context (cached: windows and alleles share their upstream)."""
        keys = [np.asarray(c, dtype=np.int64).tobytes() for c in contexts]
        missing = {k: c for k, c in zip(keys, contexts, strict=True) if k not in self._memory_cache}
        if missing:
            with self._autocast():
                fresh = self.rmt.memory_after([np.asarray(c).tolist() for c in missing.values()])
            for key, memory in zip(missing, fresh, strict=True):
                self._memory_cache[key] = memory
        out = torch.stack([self._memory_cache[k] for k in keys])
        for key in keys:
            self._memory_cache.move_to_end(key)
        while len(self._memory_cache) > _MEMORY_CACHE_SIZE:
            self._memory_cache.popitem(last=False)
        return out

    def wrap(self, content: Sequence[int]) -> np.ndarray:
        """Content token ids with the model's special tokens around them."""
        return np.concatenate(
            [np.asarray(self.special.prefix, np.int64), np.asarray(content, np.int64),
             np.asarray(self.special.suffix, np.int64)]
        )

    def _autocast(self):
        return autocast(self.device)

    @torch.inference_mode()
    def log_probs_at(
        self, inputs: Sequence[np.ndarray], positions: Sequence[np.ndarray],
        contexts: Sequence[np.ndarray] | None = None,
    ) -> list[torch.Tensor]:
        """For each input, log-softmax over the vocabulary at the given positions: (n_i, vocab).

        Inputs of different lengths are padded to the longest (callers sort by length to keep
        padding small). With memory (:attr:`rmt`), ``contexts`` are the content tokens upstream
        of each input, read through memory first; inputs are padded to the full segment as in
        training (BigBird would otherwise fall back to full attention on short inputs).
        """
        lengths = [len(x) for x in inputs]
        width = max(lengths) if self.rmt is None else self.max_tokens
        ids = torch.full((len(inputs), width), self.special.pad, dtype=torch.long)
        mask = torch.zeros((len(inputs), width), dtype=torch.long)
        for row, x in enumerate(inputs):
            ids[row, : len(x)] = torch.from_numpy(np.asarray(x, dtype=np.int64))
            mask[row, : len(x)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        rows = torch.cat([torch.full((len(p),), r, dtype=torch.long) for r, p in
                          enumerate(positions)]).to(self.device)
        cols = torch.cat([torch.as_tensor(np.asarray(p, dtype=np.int64)) for p in positions]).to(
            self.device)
        if self.rmt is not None:
            memory = self._memories(contexts if contexts is not None else
                                    [np.zeros(0, np.int64)] * len(inputs))
            with self._autocast():
                logp = self.rmt.log_probs_in_segment(ids, mask, memory, rows, cols).cpu()
            return list(torch.split(logp, [len(p) for p in positions]))
        with self._autocast():
            if self._split is not None:
                encoder, head = self._split
                hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
                logits = head(hidden[rows, cols])
            else:
                logits = self.model(input_ids=ids, attention_mask=mask).logits[rows, cols]
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        sizes = [len(p) for p in positions]
        return list(torch.split(logp, sizes))
