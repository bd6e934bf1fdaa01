"""DNA strings → model input ids, for any model directory's own tokenizer.

Fine-tuning must feed a model exactly what it saw in pre-training, so the tokenizer always comes
from the model directory (pipeline models carry theirs; DNABERT-2, Nucleotide Transformer and
GENA-LM directories ship theirs). Two details differ between tokenizers and are handled here:

* dnalm's overlapping k-mer tokenizers (``kind: kmer``, DNABERT) expect the sequence written as
  space-separated k-mers; ``dnalm_tokenizer.json`` says so (``"input": "kmer_text"``) and
  :func:`dnalm.tokenizers.kmer_text` writes that text. Other tokenizers read the raw sequence.
* Sequences are upper-cased first: external vocabularies (DNABERT-2's BPE, NT's 6-mers) have no
  lowercase tokens, so soft-masked bases would otherwise all become ``[UNK]``.

Sequences longer than ``max_length`` tokens (special tokens included) are truncated by the
tokenizer's own rule; how many were truncated is counted so that the log and ``metrics.json``
say how much input the model never saw.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnalm.errors import ConfigError

log = logging.getLogger(__name__)

TOKENIZER_META = "dnalm_tokenizer.json"


@dataclass
class Encoded:
    """Token ids of a list of sequences (unpadded) and which of them were truncated."""

    ids: list[list[int]]
    truncated: np.ndarray  # bool, one per sequence

    def __len__(self) -> int:
        return len(self.ids)


def kmer_k(model_dir: str | Path) -> int | None:
    """k when the directory's tokenizer wants space-separated overlapping k-mers, else None."""
    path = Path(model_dir) / TOKENIZER_META
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    if meta.get("input") == "kmer_text" or meta.get("kind") == "kmer":
        return int(meta["k"])
    return None


def _kmer_text(sequence: str, k: int) -> str:
    from dnalm.tokenizers import kmer_text

    return kmer_text(sequence, k)


def position_limit(config: Any) -> int | None:
    """Longest input (tokens) the model's position table allows; None when unbounded/unknown.

    ESM reserves ``pad_token_id + 1`` rows of its learned position table, so its limit is lower
    than ``max_position_embeddings``.
    """
    from dnalm.models.rmt import encoder_position_limit

    return encoder_position_limit(config)


class SequenceEncoder:
    """A model directory's tokenizer plus the text conversion and length limit it needs."""

    def __init__(self, tokenizer: Any, *, max_length: int, k: int | None = None,
                 source_dir: str | Path | None = None) -> None:
        self.tokenizer = tokenizer
        self.source_dir = Path(source_dir) if source_dir is not None else None
        self.max_length = int(max_length)
        self.k = k
        pad = tokenizer.pad_token_id
        if pad is None:
            raise ConfigError("the model's tokenizer has no padding token",
                              where=str(getattr(tokenizer, "name_or_path", "tokenizer")))
        self.pad_id = int(pad)

    @classmethod
    def from_dir(cls, model_dir: str | Path, *, max_length: int, model_config: Any = None,
                 trust_remote_code: bool = False) -> SequenceEncoder:
        """Load the tokenizer of ``model_dir``; ``max_length`` is capped at the position limit."""
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(
                str(model_dir), trust_remote_code=trust_remote_code, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot load the model's tokenizer: {first}",
                              where=str(model_dir)) from exc
        limit = position_limit(model_config) if model_config is not None else None
        if limit is not None and max_length > limit:
            log.info("max_length %d exceeds the model's %d positions: using %d", max_length,
                     limit, limit)
            max_length = limit
        return cls(tokenizer, max_length=max_length, k=kmer_k(model_dir), source_dir=model_dir)

    def text(self, sequence: str) -> str:
        """What the tokenizer reads for ``sequence``."""
        upper = sequence.upper()
        return _kmer_text(upper, self.k) if self.k else upper

    def encode(self, sequences: Sequence[str]) -> Encoded:
        """Token ids with special tokens, truncated to ``max_length`` (truncations counted)."""
        texts = [self.text(s) for s in sequences]
        full = self.tokenizer(texts, add_special_tokens=True, truncation=False,
                              verbose=False)["input_ids"]
        too_long = np.array([len(ids) > self.max_length for ids in full], dtype=bool)
        ids = [list(x) for x in full]
        long_rows = np.flatnonzero(too_long)
        if long_rows.size:
            cut = self.tokenizer([texts[i] for i in long_rows], add_special_tokens=True,
                                 truncation=True, max_length=self.max_length)["input_ids"]
            for row, row_ids in zip(long_rows, cut, strict=True):
                ids[row] = list(row_ids)
        return Encoded(ids, too_long)

    def save(self, out_dir: str | Path) -> None:
        """Save the tokenizer (and the k-mer convention) so a saved model is self-contained."""
        self.tokenizer.save_pretrained(str(out_dir))
        source_meta = self.source_dir / TOKENIZER_META if self.source_dir else None
        if source_meta is not None and source_meta.is_file():
            shutil.copyfile(source_meta, Path(out_dir) / TOKENIZER_META)
        elif self.k:
            meta = {"kind": "kmer", "k": self.k, "input": "kmer_text"}
            (Path(out_dir) / TOKENIZER_META).write_text(json.dumps(meta, indent=1) + "\n")


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into ``input_ids`` and ``attention_mask`` tensors."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask
