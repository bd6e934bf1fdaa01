"""Tokenizer specifications: the validated form of a ``tokenizers:`` entry of the configuration.

A spec is a plain dict (as it comes from YAML) with a ``kind`` and kind-specific keys. It is
checked here once, with one-line :class:`~dnalm.errors.ConfigError` messages, so that the builders
can trust their input. Unknown keys are rejected because a misspelt key (``vocab_sise``) would
otherwise silently fall back to a default and train a different tokenizer than the user asked for.

Constants shared by every dnalm-built tokenizer live here too: the special tokens and their fixed
ids, and the nucleotide order that defines k-mer ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dnalm.errors import ConfigError

#: Special tokens of every dnalm-built tokenizer, in id order: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3
#: [MASK]=4. Fixed ids let the trainer and the scorer hard-code nothing but still agree.
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)
N_SPECIAL = len(SPECIAL_TOKENS)

#: Nucleotide order of k-mer ids: the k-mer ``b_0..b_{k-1}`` has id
#: ``N_SPECIAL + sum(index(b_j) * 4 ** (k - 1 - j))`` (lexicographic order of ACGT strings).
NUCLEOTIDES = "ACGT"
#: Single-nucleotide alphabet (char tokenizer, NT leftover bases, BPE initial alphabet).
ALPHABET = "ACGTN"

KINDS = ("bpe", "kmer", "nt_kmer", "char", "pretrained")

#: File in every tokenizer directory that tells the rest of dnalm how to tokenize fast.
METADATA_FILE = "dnalm_tokenizer.json"

KMER_K_RANGE = (3, 6)  # DNABERT's k values: 4^6 + 5 = 4101 tokens at most
NT_K_RANGE = (2, 8)  # 4^8 = 65,536 k-mers is the largest vocabulary we allow

_COMMON_KEYS = {"kind", "model_max_length", "seed"}
_KIND_KEYS: dict[str, set[str]] = {
    "bpe": {"vocab_size", "min_frequency", "sample_bp", "max_piece_length", "max_token_length"},
    "kmer": {"k"},
    "nt_kmer": {"k"},
    "char": set(),
    "pretrained": {"path"},
}


@dataclass(frozen=True)
class TokenizerSpec:
    """A validated tokenizer specification (see :func:`parse_spec` for the keys and defaults).

    ``model_max_length`` is only written into the Hugging Face config (it makes ``tokenizer(seq,
    truncation=True)`` crop); ``None`` means no limit. dnalm's own shard tokenization never crops.
    """

    kind: str
    seed: int
    k: int | None = None
    vocab_size: int | None = None
    min_frequency: int | None = None
    sample_bp: int | None = None
    max_piece_length: int | None = None
    max_token_length: int | None = None
    path: str | None = None
    model_max_length: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready dict, without the keys that do not apply to its kind."""
        return {key: value for key, value in asdict(self).items() if value is not None}


def _int(spec: Mapping[str, Any], key: str, default: int | None, lo: int, hi: int | None = None,
         ) -> int | None:
    """``spec[key]`` as an int within ``[lo, hi]`` (``default`` when absent)."""
    value = spec.get(key, default)
    if value is None:
        return None
    # bool is an int subclass, and floats such as 4096.0 would hide a typo like 4.096e3
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"tokenizer {key} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"tokenizer {key} must be {bounds}, not {value}")
    return value


def parse_spec(spec: Mapping[str, Any], *, seed: int = 42) -> TokenizerSpec:
    """Validate a tokenizer spec dict and fill in defaults.

    Keys by ``kind``:

    * ``bpe``: ``vocab_size`` (4096, specials included), ``min_frequency`` (2), ``sample_bp``
      (3,000,000 bases of training chunks), ``max_piece_length`` (1000: chunks are cut into
      pieces of at most this many bases for training, which bounds the trainer's memory),
      ``max_token_length`` (optional cap on the bases in one learned token).
    * ``kmer``: ``k`` in 3..6 (overlapping, stride 1, as DNABERT).
    * ``nt_kmer``: ``k`` in 2..8, default 6 (non-overlapping, as Nucleotide Transformer).
    * ``char``: no keys.
    * ``pretrained``: ``path`` to a local Hugging Face tokenizer directory.

    Every kind also accepts ``model_max_length`` and ``seed`` (the ``seed`` argument is the
    default; only BPE sampling uses it).
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"tokenizer spec must be a mapping, not {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; expected one of {', '.join(KINDS)}")
    unknown = sorted(set(spec) - _COMMON_KEYS - _KIND_KEYS[kind])
    if unknown:
        allowed = ", ".join(sorted(_COMMON_KEYS | _KIND_KEYS[kind]))
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} for a {kind} tokenizer "
                          f"(allowed: {allowed})")
    common = {
        "kind": kind,
        "seed": _int(spec, "seed", seed, 0),
        "model_max_length": _int(spec, "model_max_length", None, 1),
    }
    if kind == "bpe":
        return TokenizerSpec(
            **common,
            # specials + the ACGTN alphabet must fit, or there is nothing to learn
            vocab_size=_int(spec, "vocab_size", 4096, N_SPECIAL + len(ALPHABET) + 1, 1_000_000),
            min_frequency=_int(spec, "min_frequency", 2, 1),
            sample_bp=_int(spec, "sample_bp", 3_000_000, 1),
            max_piece_length=_int(spec, "max_piece_length", 1000, 2),
            max_token_length=_int(spec, "max_token_length", None, 1),
        )
    if kind == "kmer":
        if "k" not in spec:
            raise ConfigError("a kmer tokenizer needs k (3 to 6)")
        return TokenizerSpec(**common, k=_int(spec, "k", None, *KMER_K_RANGE))
    if kind == "nt_kmer":
        return TokenizerSpec(**common, k=_int(spec, "k", 6, *NT_K_RANGE))
    if kind == "char":
        return TokenizerSpec(**common)
    path = spec.get("path")
    if not isinstance(path, str | Path) or not str(path):
        raise ConfigError("a pretrained tokenizer needs path: a local Hugging Face tokenizer "
                          "directory")
    return TokenizerSpec(**common, path=str(path))
