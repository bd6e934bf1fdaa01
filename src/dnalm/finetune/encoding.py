"""DNA strings → model input ids, for any model directory's own tokenizer.

Fine-tuning must feed a model exactly what it saw in pre-training, so the tokenizer always comes
from the model directory (pipeline models carry theirs; DNABERT, DNABERT-2, Nucleotide
Transformer and GENA-LM directories ship theirs). It is read by
:func:`dnalm.models.directory.load_model_tokenizer`, the same tokenizer scoring uses: dnalm's
vectorised encoders for k-mer and single-base vocabularies (DNABERT's overlapping k-mers are
computed from the sequence, so no k-mer text and no lower-casing ``BertTokenizer`` is involved),
the ``tokenizers`` library for BPE. Sequences are upper-cased first: published vocabularies have
no lowercase tokens, so soft-masked bases would otherwise all become ``[UNK]``.

Sequences longer than ``max_length`` tokens (special tokens included) keep their first
``max_length`` minus the special tokens content tokens (the transformers truncation rule), and
how many were truncated is counted so that the log and ``metrics.json`` say how much input the
model never saw.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnalm.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """Token ids of a list of sequences (unpadded) and which of them were truncated."""

    ids: list[list[int]]
    truncated: np.ndarray  # bool, one per sequence

    def __len__(self) -> int:
        return len(self.ids)


class SequenceEncoder:
    """A model directory's tokenizer plus the length limit the model allows."""

    def __init__(self, tokenizer: Any, *, max_length: int,
                 source_dir: str | Path | None = None) -> None:
        self.tokenizer = tokenizer
        self.source_dir = Path(source_dir) if source_dir is not None else None
        self.max_length = int(max_length)
        self.k = tokenizer.k if tokenizer.kind == "kmer" else None
        pad = tokenizer.special_ids.get("pad")
        if pad is None:
            raise ConfigError("the model's tokenizer has no padding token",
                              where=str(self.source_dir or "tokenizer"))
        self.pad_id = int(pad)
        self.n_special = len(tokenizer.prefix) + len(tokenizer.suffix)
        if self.max_length <= self.n_special:
            raise ConfigError(f"max_length {self.max_length} leaves no room for the sequence "
                              f"beside {self.n_special} special token(s)")

    @classmethod
    def from_dir(cls, model_dir: str | Path, *, max_length: int,
                 model_config: Any = None) -> SequenceEncoder:
        """Load the tokenizer of ``model_dir``; ``max_length`` is capped at the position limit."""
        from dnalm.models.directory import load_model_tokenizer
        from dnalm.runtime import position_limit

        tokenizer = load_model_tokenizer(model_dir, config=model_config)
        limit = position_limit(model_config) if model_config is not None else None
        if limit is not None and max_length > limit:
            log.info("max_length %d exceeds the model's %d positions: using %d", max_length,
                     limit, limit)
            max_length = limit
        return cls(tokenizer, max_length=max_length, source_dir=model_dir)

    def encode(self, sequences: Sequence[str]) -> Encoded:
        """Token ids with special tokens, truncated to ``max_length`` (truncations counted)."""
        batch = self.tokenizer.encode_batch(list(sequences))
        room = self.max_length - self.n_special
        counts = np.diff(batch.row_offsets)
        ids = []
        for row in range(len(batch)):
            lo = int(batch.row_offsets[row])
            content = batch.ids[lo : lo + min(int(counts[row]), room)]
            ids.append(self.tokenizer.wrap(content).tolist())
        return Encoded(ids, counts > room)

    def save(self, out_dir: str | Path) -> None:
        """Copy the tokenizer files so a saved model is self-contained."""
        from dnalm.tokenizers.formats import write_tokenizer_copy

        write_tokenizer_copy(self.tokenizer.format, out_dir)


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into ``input_ids`` and ``attention_mask`` tensors."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask
