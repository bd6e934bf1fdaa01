"""A masked language model for scoring: loading, batching, log-probabilities at masked positions.

:class:`MaskedLM` loads any Hugging Face masked-LM directory (one pretrained by dnalm, or an
external checkpoint such as Nucleotide Transformer's) with its tokenizer, and evaluates batches of
token sequences. The expensive part of a small model with a large vocabulary is the LM head
(hidden × vocab per position): :meth:`MaskedLM.log_probs_at` runs the encoder on the whole input
but the head only at the positions whose probabilities are read.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel

from dnalm.errors import ConfigError, InputFormatError
from dnalm.models.rmt import RMTForMaskedLM, encoder_position_limit, masked_lm_head
from dnalm.tokenizers import METADATA_FILE, DnaTokenizer, TokenizedBatch, load_tokenizer

log = logging.getLogger(__name__)

#: Memories kept for reuse (m x hidden floats each): enough for the windows of one batch run.
_MEMORY_CACHE_SIZE = 4096


class _HFTokenizer:
    """Adapter giving an external Hugging Face tokenizer dnalm's ``encode_batch`` interface."""

    kind = "pretrained"
    k = None

    def __init__(self, directory: Path) -> None:
        self.hf_auto = AutoTokenizer.from_pretrained(str(directory))
        backend = getattr(self.hf_auto, "backend_tokenizer", None)
        if backend is None:
            raise InputFormatError("tokenizer has no fast (tokenizers) backend",
                                   where=str(directory))
        self.hf = backend

    def encode_batch(self, sequences: Iterable[str]) -> TokenizedBatch:
        encodings = self.hf.encode_batch([s.upper() for s in sequences], add_special_tokens=False)
        counts = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        row_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        ids = np.array([i for e in encodings for i in e.ids], dtype=np.int32)
        spans = np.array([o for e in encodings for o in e.offsets], dtype=np.int32).reshape(-1, 2)
        return TokenizedBatch(ids, spans[:, 0].copy(), spans[:, 1].copy(), row_offsets)


@dataclass(frozen=True)
class SpecialLayout:
    """Special tokens around the content: ``prefix + content + suffix``; ``mask``, ``pad`` ids."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    mask: int
    pad: int


def _layout(tokenizer_dir: Path, tokenizer: DnaTokenizer | _HFTokenizer) -> SpecialLayout:
    if isinstance(tokenizer, DnaTokenizer):
        ids = tokenizer.special_ids
        if ids.get("mask") is None:
            raise InputFormatError("tokenizer has no mask token: not a masked-LM tokenizer",
                                   where=str(tokenizer_dir))
        prefix = () if ids.get("cls") is None else (ids["cls"],)
        suffix = () if ids.get("sep") is None else (ids["sep"],)
        return SpecialLayout(prefix, suffix, ids["mask"], ids.get("pad") or 0)
    auto = tokenizer.hf_auto
    probe = auto.build_inputs_with_special_tokens([-1])
    cut = probe.index(-1)
    if auto.mask_token_id is None:
        raise InputFormatError("tokenizer has no mask token: not a masked-LM tokenizer",
                               where=str(tokenizer_dir))
    pad = auto.pad_token_id if auto.pad_token_id is not None else 0
    return SpecialLayout(tuple(probe[:cut]), tuple(probe[cut + 1 :]), auto.mask_token_id, pad)


def load_scoring_tokenizer(directory: str | Path) -> DnaTokenizer | _HFTokenizer:
    """dnalm's fast tokenizer when the directory has ``dnalm_tokenizer.json``, else the HF one."""
    directory = Path(directory)
    if (directory / METADATA_FILE).is_file():
        return load_tokenizer(directory)
    if not (directory / "tokenizer.json").is_file() and not (
        directory / "tokenizer_config.json"
    ).is_file():
        raise InputFormatError("no tokenizer found (tokenizer.json)", where=str(directory))
    return _HFTokenizer(directory)


def max_input_tokens(config) -> int:
    """Longest input (special tokens included) the model's positions allow (512 if unbounded)."""
    return encoder_position_limit(config) or 512


def _encoder_and_head(model: PreTrainedModel) -> tuple[torch.nn.Module, Callable] | None:
    """The encoder and the LM head of the transformers classes dnalm builds (None otherwise)."""
    try:
        return model.base_model, masked_lm_head(model)
    except ConfigError:
        return None


def pick_device(gpus: int | None = None) -> torch.device:
    """CUDA when the job was given a GPU (or by default when one is visible), else CPU."""
    if torch.cuda.is_available() and (gpus is None or gpus > 0):
        return torch.device("cuda")
    return torch.device("cpu")


class MaskedLM:
    """A masked LM ready for scoring (eval mode, no gradients).

    ``head_at_masked_only`` can be switched off to evaluate the head everywhere (the naive path,
    used by benchmarks for comparison). On CUDA the encoder runs in bf16 autocast.
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
        if not (model_dir / "config.json").is_file():
            raise InputFormatError("not a Hugging Face model directory (no config.json)",
                                   where=str(model_dir))
        self.device = torch.device(device) if device is not None else pick_device()
        self.model = AutoModelForMaskedLM.from_pretrained(
            str(model_dir), trust_remote_code=trust_remote_code
        ).to(self.device)
        self.model.eval()
        self.tokenizer = load_scoring_tokenizer(tokenizer_dir or model_dir)
        self.special = _layout(Path(tokenizer_dir or model_dir), self.tokenizer)
        self.max_tokens = max_input_tokens(self.model.config)
        self.vocab_size = int(getattr(self.model.config, "vocab_size", 0) or 0)
        self._split = _encoder_and_head(self.model) if head_at_masked_only else None
        #: a model pretrained with recurrent memory: windows read upstream context through it
        self.rmt: RMTForMaskedLM | None = None
        self.context_tokens = 0
        if isinstance(self.model, RMTForMaskedLM):
            self._use_memory(self.model)
        self.max_content = self.max_tokens - len(self.special.prefix) - len(self.special.suffix)
        self._memory_cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        meta = model_dir / METADATA_FILE
        self.metadata = json.loads(meta.read_text()) if meta.is_file() else {}

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
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

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
