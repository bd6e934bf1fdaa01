"""Build tokenizers and save them as Hugging Face tokenizer directories.

Every tokenizer dnalm builds is a ``tokenizers.Tokenizer`` wrapped in
``transformers.PreTrainedTokenizerFast`` and saved with ``save_pretrained``, so
``AutoTokenizer.from_pretrained(out_dir)`` loads it with no custom code, and a model trained with
it can be shared on the Hugging Face hub as usual. Beside the Hugging Face files, the directory
holds ``dnalm_tokenizer.json`` (kind, k, vocabulary size, special ids, training sample) so that
dnalm's own vectorised tokenizer (:mod:`dnalm.tokenizers.encode`) knows what to do.

What the saved Hugging Face tokenizer does, per kind (``tokenizer(seq)`` adds ``[CLS]`` ...
``[SEP]`` like BERT; special ids are always [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4):

* all kinds: a normalizer upper-cases ``acgtn`` (soft-masked bases), so models never see case.
  ``tokenizers`` 0.23 has no upper-case normalizer; five ``Replace`` normalizers do the job and
  keep character offsets.
* ``bpe``: byte-pair encoding learned on a sample of training chunks; the whole sequence is one
  "word" (no pre-tokenizer), so merges may span any bases; N is an ordinary symbol (runs of N
  become tokens of their own when frequent). ``decode(encode(s)) == s.upper()`` for any ACGTN
  string ``s``.
* ``char``: one token per base, A C G T N = ids 5..9. ``decode(encode(s)) == s.upper()``.
* ``nt_kmer`` (Nucleotide Transformer): each maximal run of ACGT is cut into k-mers from its left
  end, the leftover (fewer than k) bases become single-base tokens, and every N is its own token.
  ``decode(encode(s)) == s.upper()``.
* ``kmer`` (DNABERT, overlapping, stride 1): a ``tokenizers`` pre-tokenizer can only *partition*
  the text (pre-tokens never overlap) and normalizers replace fixed strings, so no
  ``tokenizers``/``transformers`` component turns ``ACGTA`` into ``ACG CGT GTA``. The saved
  tokenizer therefore follows DNABERT's own convention: its input is the sequence written as
  space-separated k-mers, built by :func:`dnalm.tokenizers.kmer_text`. The vocabulary is the
  ``4**k`` ACGT k-mers in lexicographic order (id = 5 + base-4 value); a k-mer containing N or
  any other character is ``[UNK]``. A sequence shorter than k has no tokens.

Characters other than ACGTN (either case) are ``[UNK]``, one per character, in every kind (a
k-mer containing one is ``[UNK]``). Chunk shards hold only ACGTN, so this concerns user strings.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import logging
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer

from dnalm.errors import ConfigError, InputFormatError
from dnalm.io import atomic_dir
from dnalm.tokenizers.sample import sample_training_sequences
from dnalm.tokenizers.spec import (
    ALPHABET,
    CLS_ID,
    METADATA_FILE,
    NUCLEOTIDES,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    TokenizerSpec,
    parse_spec,
)

log = logging.getLogger(__name__)

#: Written into ``dnalm_tokenizer.json``; bump when its meaning changes.
FORMAT_VERSION = 1
#: The class name written into ``tokenizer_config.json``. transformers 5 maps it to its
#: ``TokenizersBackend``; transformers 4 knows it directly, so saved models load in both.
HF_TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def kmer_vocabulary(k: int) -> list[str]:
    """All ``4**k`` ACGT k-mers in lexicographic order (their id is 5 + position)."""
    return ["".join(p) for p in itertools.product(NUCLEOTIDES, repeat=k)]


def _uppercase() -> normalizers.Normalizer:
    return normalizers.Sequence([normalizers.Replace(c, c.upper()) for c in ALPHABET.lower()])


def _bert_template() -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)],
    )


def _word_level(tokens: Sequence[str]) -> Tokenizer:
    """A WordLevel tokenizer over the special tokens followed by ``tokens``."""
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *tokens])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS[UNK_ID]))
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def kmer_tokenizer(k: int) -> Tokenizer:
    """Overlapping k-mers (DNABERT): input is space-separated k-mers, see :func:`kmer_text`."""
    tokenizer = _word_level(kmer_vocabulary(k))
    tokenizer.normalizer = _uppercase()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # no decoder: decoding joins tokens with spaces, giving back the k-mer text
    return tokenizer


def nt_kmer_tokenizer(k: int) -> Tokenizer:
    """Non-overlapping k-mers (Nucleotide Transformer) on the raw sequence.

    The regex alternatives are tried left to right at each position, which is exactly the NT
    rule: a k-mer while k ACGT bases follow, else one base, else N, else any other character.
    """
    tokenizer = _word_level([*kmer_vocabulary(k), *ALPHABET])
    tokenizer.normalizer = _uppercase()
    pattern = Regex(rf"[ACGT]{{{k}}}|[ACGT]|N|[\s\S]")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(pattern, behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


def char_tokenizer() -> Tokenizer:
    """One token per base: A C G T N (ids 5..9)."""
    tokenizer = _word_level(list(ALPHABET))
    tokenizer.normalizer = _uppercase()
    tokenizer.pre_tokenizer = pre_tokenizers.FixedLength(length=1)
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


def bpe_tokenizer() -> Tokenizer:
    """An untrained BPE tokenizer: whole sequence as one word, upper-cased, fused on decode."""
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS[UNK_ID]))
    tokenizer.normalizer = _uppercase()
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


def train_bpe(spec: TokenizerSpec, train_parts: Sequence[str | Path]) -> tuple[Tokenizer, dict]:
    """Train BPE on a seeded sample of training chunks; return it and a record of the training."""
    sample = sample_training_sequences(
        train_parts, sample_bp=spec.sample_bp, seed=spec.seed,
        max_piece_length=spec.max_piece_length,
    )
    tokenizer = bpe_tokenizer()
    trainer = BpeTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # N is always in the vocabulary, even when the sample has none
        initial_alphabet=list(ALPHABET),
        max_token_length=spec.max_token_length,
        # the library's own bar, on an interactive terminal only (it does not go to logs)
        show_progress=sys.stderr.isatty(),
    )
    log.info("BPE: learning %d tokens from %d bp in %d pieces", spec.vocab_size, sample.bases,
             len(sample.pieces))
    began = time.perf_counter()
    tokenizer.train_from_iterator(sample.pieces, trainer=trainer, length=len(sample.pieces))
    seconds = time.perf_counter() - began
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab_size < spec.vocab_size:
        log.warning("BPE: the %d-base sample allowed only %d of the %d tokens asked for",
                    sample.bases, vocab_size, spec.vocab_size)
    record = {
        "sample_bases": sample.bases,
        "sample_chunks": sample.chunks,
        "sample_pieces": len(sample.pieces),
        "available_bases": sample.available_bases,
        "train_parts": sample.parts,
        "train_seconds": round(seconds, 3),
    }
    return tokenizer, record


def _save_hf(tokenizer: Tokenizer, out_dir: Path, model_max_length: int | None) -> None:
    """Wrap as ``PreTrainedTokenizerFast`` with BERT-style specials and ``save_pretrained``."""
    from transformers import PreTrainedTokenizerFast

    tokenizer.post_processor = _bert_template()
    extra = {"model_max_length": model_max_length} if model_max_length else {}
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", clean_up_tokenization_spaces=False, **extra,
    )
    hf.save_pretrained(str(out_dir))
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = HF_TOKENIZER_CLASS
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def _copy_pretrained(path: str, out_dir: Path, model_max_length: int | None) -> dict[str, Any]:
    """Copy a local tokenizer directory that dnalm recognises into ``out_dir``.

    Any layout :func:`dnalm.tokenizers.formats.read_format` reads (published DNABERT k-mer and
    Nucleotide Transformer vocabularies, BPE and other ``tokenizers`` files). The files are
    copied as they are — nothing is loaded through transformers, so a directory whose
    ``config.json`` names remote code never prompts — and ``model_max_length`` is written into
    the copy's ``tokenizer_config.json``.
    """
    from dnalm.tokenizers.formats import read_format

    source = Path(path)
    if not source.is_dir():
        raise ConfigError("pretrained tokenizer path is not a directory", where=str(source))
    try:
        fmt = read_format(source)
    except InputFormatError as exc:
        raise ConfigError(f"not a tokenizer dnalm reads: {exc.reason}",
                          where=exc.where or str(source)) from None
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt", "added_tokens.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, out_dir / name)
    if model_max_length:
        config_path = out_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        config["model_max_length"] = model_max_length
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    roles = ("pad", "unk", "cls", "sep", "mask")
    names = {i: t for t, i in fmt.special_tokens.items()}
    if fmt.vocab is not None:
        names = dict(enumerate(fmt.vocab))
    return {
        "source": str(source.resolve()),
        "format": {"kind": fmt.kind, "k": fmt.k, "origin": fmt.origin},
        "special_tokens": {names[fmt.special_ids[r]]: fmt.special_ids[r] for r in roles
                           if fmt.special_ids.get(r) is not None},
        "special_ids": {r: fmt.special_ids.get(r) for r in roles},
        "vocab_size": fmt.vocab_size,
        "k_format": fmt.k,
    }


def _versions() -> dict[str, str]:
    out = {}
    for package in ("dnalm", "tokenizers", "transformers"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


def build_tokenizer(
    spec: Mapping[str, Any],
    out_dir: str | Path,
    *,
    train_parts: Sequence[str | Path] = (),
    seed: int = 42,
) -> dict[str, Any]:
    """Build the tokenizer described by ``spec`` and save it as a directory ``out_dir``.

    ``spec`` is a dict as in the configuration (see :func:`dnalm.tokenizers.parse_spec` for the
    keys of each kind: ``bpe``, ``kmer``, ``nt_kmer``, ``char``, ``pretrained``). ``train_parts``
    are the training-split chunk shards BPE samples from (of one or several genomes; ignored by
    the other kinds); ``seed`` makes the sample reproducible unless ``spec`` has its own seed.

    ``out_dir`` appears only when complete and holds the Hugging Face files
    (``tokenizer.json``, ``tokenizer_config.json``...) and ``dnalm_tokenizer.json``, whose
    content is also returned. Bad specs raise :class:`~dnalm.errors.ConfigError`.
    """
    parsed = parse_spec(spec, seed=seed)
    out = Path(out_dir)
    metadata: dict[str, Any] = {"format_version": FORMAT_VERSION, "kind": parsed.kind,
                                "spec": parsed.to_dict(), "versions": _versions()}
    with atomic_dir(out) as tmp:
        if parsed.kind == "pretrained":
            metadata.update(_copy_pretrained(parsed.path, tmp, parsed.model_max_length))
            kind = metadata["format"]["kind"]
            metadata["input"] = "kmer_text" if kind == "kmer" else "sequence"
        else:
            tokenizer = _build_kind(parsed, train_parts, metadata)
            _save_hf(tokenizer, tmp, parsed.model_max_length)
            metadata["vocab_size"] = tokenizer.get_vocab_size(with_added_tokens=True)
            metadata["special_tokens"] = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
            metadata["special_ids"] = dict(zip(("pad", "unk", "cls", "sep", "mask"),
                                               range(len(SPECIAL_TOKENS)), strict=True))
            metadata["input"] = "kmer_text" if parsed.kind == "kmer" else "sequence"
        metadata["k"] = metadata.pop("k_format", parsed.k)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=1) + "\n")
    log.info("tokenizer %s (%s, %d tokens) written", out, parsed.kind, metadata["vocab_size"])
    return metadata


def _build_kind(spec: TokenizerSpec, train_parts: Sequence[str | Path],
                metadata: dict[str, Any]) -> Tokenizer:
    if spec.kind == "bpe":
        tokenizer, metadata["training"] = train_bpe(spec, train_parts)
        return tokenizer
    if spec.kind == "kmer":
        return kmer_tokenizer(spec.k)
    if spec.kind == "nt_kmer":
        return nt_kmer_tokenizer(spec.k)
    return char_tokenizer()

