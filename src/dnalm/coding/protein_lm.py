"""Zero-shot protein scores with ESM masked language models (ESM-1v, ESM-2), as in ESM-1v.

For a set ``T`` of mutated residues the masked-marginal score is

    sum_{t in T} log p(x_t = mt | x_{-T}) - log p(x_t = wt | x_{-T})

with all of ``T`` masked together in one pass; mutants that change the same residue set (the 19
alternatives at one residue) share that pass. The wt-marginal score reads the same sums from one
unmasked pass per protein (per window), so it is exactly additive over residues. Proteins longer
than the model's limit (1,022 residues for ESM-1v) are scored in a window of that size centred on
the mutated residues. Passes are de-duplicated, sorted by length and batched; the LM head is run
only at the residues that are read. Several checkpoints are averaged as an ensemble (ESM-1v
averaged five).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dnalm.coding.settings import MODES, CodingSettings
from dnalm.errors import ConfigError, DnalmError
from dnalm.logs import progress
from dnalm.runtime import autocast

log = logging.getLogger(__name__)

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
#: The ESM protein vocabulary (fair-esm's Alphabet, as in facebook/esm1v_* and esm2_*).
ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I",
             "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".",
             "-", "<null_1>", "<mask>"]
PLACEHOLDER_FILE = "DNALM_RANDOM_PLACEHOLDER.json"
_MUTATION = re.compile(r"^([A-Z*])(\d+)([A-Z*])$")


class ProteinModelError(DnalmError):
    """A protein model directory cannot be used (not ESM, not a protein vocabulary)."""


class MutantError(DnalmError):
    """A mutant entry is malformed or does not match its protein sequence."""


@dataclass(frozen=True)
class Mutation:
    """One residue change; ``pos`` is 0-based."""

    wt: str
    pos: int
    mt: str


def parse_mutant(text: str, sequence: str) -> list[Mutation]:
    """``A24G`` or ``A24G:K30R`` (1-based, ESM's tables) checked against ``sequence``."""
    out = []
    for part in str(text).strip().split(":"):
        m = _MUTATION.match(part.strip())
        if not m:
            raise MutantError(f"mutant {text!r}: {part!r} is not like A24G")
        wt, pos, mt = m.group(1), int(m.group(2)) - 1, m.group(3)
        if not 0 <= pos < len(sequence):
            raise MutantError(f"mutant {text!r}: residue {pos + 1} is outside the protein "
                              f"(length {len(sequence)})")
        if sequence[pos] != wt:
            raise MutantError(f"mutant {text!r}: wild type {wt}{pos + 1} does not match the "
                              f"sequence, which has {sequence[pos]} there")
        if mt not in AMINO_ACIDS:
            raise MutantError(f"mutant {text!r}: {mt} is not one of the 20 amino acids")
        out.append(Mutation(wt, pos, mt))
    if len({m.pos for m in out}) != len(out):
        raise MutantError(f"mutant {text!r} changes one residue twice")
    return sorted(out, key=lambda m: m.pos)


def saturation_mutants(sequence: str) -> list[str]:
    """Every residue × the 19 other amino acids, in ``A1C`` notation (residue order)."""
    return [f"{wt}{i + 1}{mt}" for i, wt in enumerate(sequence) for mt in AMINO_ACIDS
            if mt != wt and wt in AMINO_ACIDS]


def build_random_esm(out_dir: str | Path, *, hidden_size: int = 64, layers: int = 2,
                     heads: int = 4, max_residues: int = 1022, seed: int = 0) -> Path:
    """Save a tiny randomly initialised ``EsmForMaskedLM`` with the standard ESM vocabulary.

    It has no knowledge of proteins: its scores are meaningless. It exists so tests, the demo
    and benchmarks exercise the real code path without downloading a checkpoint; a file named
    ``DNALM_RANDOM_PLACEHOLDER.json`` marks it, and loading it logs a warning.
    """
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    from dnalm.io import atomic_dir

    config = EsmConfig(
        vocab_size=len(ESM_VOCAB), hidden_size=hidden_size, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=hidden_size * 4,
        max_position_embeddings=max_residues + 4, position_embedding_type="absolute",
        pad_token_id=ESM_VOCAB.index("<pad>"), mask_token_id=ESM_VOCAB.index("<mask>"),
        token_dropout=True, emb_layer_norm_before=False,
    )
    torch.manual_seed(seed)
    model = EsmForMaskedLM(config).eval()
    with atomic_dir(out_dir) as tmp:
        vocab = tmp / "vocab.txt"
        vocab.write_text("\n".join(ESM_VOCAB) + "\n")
        EsmTokenizer(vocab_file=str(vocab)).save_pretrained(tmp)
        model.save_pretrained(tmp)
        (tmp / PLACEHOLDER_FILE).write_text(json.dumps({
            "warning": "random, untrained placeholder protein model: scores are meaningless",
            "hidden_size": hidden_size, "layers": layers, "seed": seed}, indent=1) + "\n")
    return Path(out_dir)


class ProteinLM:
    """An ``EsmForMaskedLM`` checkpoint directory with its tokenizer, checked to be a protein LM."""

    def __init__(self, directory: str | Path, *, device: torch.device | str = "cpu") -> None:
        from transformers import EsmTokenizer

        from dnalm.models.directory import inspect_model_dir, load_masked_lm, model_config

        self.directory = Path(directory)
        if not (self.directory / "config.json").is_file():
            raise ProteinModelError("not a model directory (no config.json)",
                                    where=str(directory))
        md = inspect_model_dir(self.directory)
        config = model_config(md)
        if config.model_type != "esm":
            raise ProteinModelError(f"model type is {config.model_type!r}, not an ESM protein "
                                    "model (EsmForMaskedLM)", where=str(directory))
        try:
            tokenizer = EsmTokenizer.from_pretrained(self.directory)
        except (OSError, ValueError, TypeError) as exc:
            raise ProteinModelError(f"cannot load its tokenizer ({exc})",
                                    where=str(directory)) from exc
        self._check_vocab(tokenizer.get_vocab(), tokenizer.mask_token)
        vocab = tokenizer.get_vocab()
        self.aa_ids = {aa: vocab[aa] for aa in AMINO_ACIDS}
        self.unk = vocab.get(tokenizer.unk_token or "<unk>", vocab.get("X", 0))
        self.cls, self.eos = tokenizer.cls_token_id, tokenizer.eos_token_id
        self.pad, self.mask = tokenizer.pad_token_id, tokenizer.mask_token_id
        self.model = load_masked_lm(md).eval().to(device)
        self.device = torch.device(device)
        limit = int(config.max_position_embeddings) - 2  # positions offset by the padding idx
        self.max_residues = limit - 2 if config.position_embedding_type == "absolute" else \
            max(limit - 2, 1022)
        if (self.directory / PLACEHOLDER_FILE).exists():
            log.warning("protein model %s is a RANDOM, UNTRAINED placeholder: its scores are "
                        "meaningless", directory)

    def _check_vocab(self, vocab: dict[str, int], mask_token: str | None) -> None:
        missing = [aa for aa in AMINO_ACIDS if aa not in vocab]
        if missing or mask_token is None or mask_token not in vocab:
            what = f"no amino-acid tokens {''.join(missing)}" if missing else "no mask token"
            raise ProteinModelError(f"not a protein vocabulary ({what})",
                                    where=str(self.directory))

    def encode(self, sequence: str) -> np.ndarray:
        """Residue token ids (no special tokens); non-standard residues become ``<unk>``."""
        return np.array([self.aa_ids.get(a, self.unk) for a in sequence], dtype=np.int64)

    @torch.inference_mode()
    def log_probs(self, inputs: Sequence[np.ndarray], reads: Sequence[np.ndarray]) -> list:
        """Per input (residue ids with masks placed), log-softmax rows at residue ``reads``."""
        width = max(len(x) for x in inputs) + 2
        ids = torch.full((len(inputs), width), self.pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, x in enumerate(inputs):
            ids[row, : len(x) + 2] = torch.from_numpy(np.concatenate([[self.cls], x, [self.eos]]))
            attention[row, : len(x) + 2] = 1
        rows = torch.cat([torch.full((len(r),), i) for i, r in enumerate(reads)])
        cols = torch.from_numpy(np.concatenate(reads) + 1)
        with autocast(self.device):
            hidden = self.model.esm(input_ids=ids.to(self.device),
                                    attention_mask=attention.to(self.device)).last_hidden_state
            logits = self.model.lm_head(hidden[rows.to(self.device), cols.to(self.device)])
        flat = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
        return np.split(flat, np.cumsum([len(r) for r in reads])[:-1])


@dataclass
class _Pass:
    protein: int
    window: tuple[int, int]
    masked: tuple[int, ...]
    reads: set[int]


def _window(length: int, positions: list[int], limit: int) -> tuple[int, int] | None:
    """Residue window ``[a, b)`` of at most ``limit`` residues centred on ``positions``."""
    if length <= limit:
        return 0, length
    lo, hi = min(positions), max(positions)
    if hi - lo + 1 > limit:
        return None
    start = min(max((lo + hi + 1) // 2 - limit // 2, 0), length - limit)
    return start, start + limit


def _plan(lm: ProteinLM, proteins: Sequence[str], mutants: Sequence[tuple[int, list[Mutation]]],
          mode: str) -> tuple[dict[tuple, _Pass], list[tuple | None]]:
    passes: dict[tuple, _Pass] = {}
    keys: list[tuple | None] = []
    for protein, mutations in mutants:
        positions = [m.pos for m in mutations]
        window = _window(len(proteins[protein]), positions, lm.max_residues)
        if window is None:
            keys.append(None)
            continue
        masked = tuple(positions) if mode == "masked-marginal" else ()
        key = (protein, window, masked)
        passes.setdefault(key, _Pass(protein, window, masked, set())).reads.update(positions)
        keys.append(key)
    return passes, keys


def _run_passes(lm: ProteinLM, proteins: Sequence[str], passes: dict[tuple, _Pass],
                batch_size: int) -> dict[tuple, dict[int, np.ndarray]]:
    encoded = {i: lm.encode(p) for i, p in enumerate(proteins)}
    keys = sorted(passes, key=lambda k: passes[k].window[1] - passes[k].window[0])
    out: dict[tuple, dict[int, np.ndarray]] = {}
    batches = range(0, len(keys), batch_size)
    for b in progress(batches, desc="protein model passes", logger=log, unit="batch"):
        chunk = keys[b : b + batch_size]
        inputs, reads = [], []
        for key in chunk:
            p = passes[key]
            a, z = p.window
            x = encoded[p.protein][a:z].copy()
            x[[m - a for m in p.masked]] = lm.mask
            inputs.append(x)
            reads.append(np.array(sorted(p.reads)) - a)
        for key, r, lp in zip(chunk, reads, lm.log_probs(inputs, reads), strict=True):
            a = passes[key].window[0]
            out[key] = {int(pos) + a: row for pos, row in zip(r, lp, strict=True)}
    return out


def score_mutations(
    lms: Sequence[ProteinLM],
    proteins: Sequence[str],
    mutants: Sequence[tuple[int, list[Mutation]]],
    *,
    mode: str = CodingSettings.mode,
    batch_size: int = CodingSettings.batch_size,
) -> tuple[np.ndarray, list[str]]:
    """Scores (ensemble mean) and reasons for ``(protein index, mutations)`` requests."""
    if mode not in MODES:
        raise ConfigError(f"unknown protein scoring mode {mode!r}; choose one of {MODES}")
    if batch_size < 1:
        raise ConfigError("batch_size must be >= 1")
    total = np.zeros(len(mutants))
    reasons = [""] * len(mutants)
    for lm in lms:
        passes, keys = _plan(lm, proteins, mutants, mode)
        results = _run_passes(lm, proteins, passes, batch_size)
        log.info("%s: %d mutants, %d passes (%s)", lm.directory, len(mutants), len(passes), mode)
        for i, ((_, mutations), key) in enumerate(zip(mutants, keys, strict=True)):
            if key is None:
                total[i] = np.nan
                reasons[i] = f"mutated residues span more than the model's {lm.max_residues}"
                continue
            rows = results[key]
            total[i] += sum(rows[m.pos][lm.aa_ids[m.mt]] - rows[m.pos][lm.aa_ids[m.wt]]
                            for m in mutations)
    return total / max(len(lms), 1), reasons


def load_models(model_dirs: Sequence[str | Path], *, device: str = "cpu") -> list[ProteinLM]:
    """One :class:`ProteinLM` per directory (an ensemble when several)."""
    if not model_dirs:
        raise ConfigError("no protein model directory given")
    return [ProteinLM(d, device=device) for d in model_dirs]
