"""What a tokenizer directory holds: dnalm's own tokenizers and the published DNA-LM layouts.

This module is the one reader of tokenizer files. Everything that tokenizes DNA (shards,
scoring, fine-tuning, tracks, embeddings) gets its tokenizer through
:func:`dnalm.tokenizers.load_tokenizer`, which builds on :func:`read_format`. It recognises:

==================================  =========================================================
layout                              how dnalm tokenizes it
==================================  =========================================================
``dnalm_tokenizer.json`` + HF files  the recorded kind (``bpe``, ``kmer``, ``nt_kmer``, ``char``)
``tokenizer.json``, BPE model       ``bpe`` (DNABERT-2, GENA-LM): the ``tokenizers`` library,
                                    its normalizer included (GENA-LM turns runs of N into ``-``)
``vocab.txt`` of all 4**k k-mers     ``kmer``: overlapping k-mers, stride 1 (DNABERT's
  (BertTokenizer)                   ``bert-config-k``), computed directly: the published
                                    ``do_lower_case: true`` would turn every k-mer into [UNK]
                                    under transformers' BertTokenizer
``vocab.txt`` of 4**k k-mers plus    ``nt_kmer``: Nucleotide Transformer's rule (6-mers from the
  single bases (EsmTokenizer)       left of each ACGT run, leftovers and N as single tokens)
``vocab.txt`` of single bases       ``char``
==================================  =========================================================

k-mer and single-base vocabularies are not in dnalm's id order (DNABERT and NT list k-mers in
``product("ATCG")`` order, after their own special tokens), so :attr:`TokenizerFormat.id_map`
maps dnalm's canonical ids (specials 0-4, then k-mers in ACGT order, then A C G T N) onto the
directory's ids; the vectorised encoders compute canonical ids and look them up.

Special tokens are found by role, never through tokenizer methods (transformers 5 removed
``build_inputs_with_special_tokens`` from its tokenizer classes): an explicit entry in
``special_tokens_map.json`` or ``tokenizer_config.json`` wins (``"eos_token": null`` means none,
as in NT v2), then the defaults of the declared tokenizer class, then conventional names. The
layout around a sequence (``prefix`` + content + ``suffix``) comes from ``tokenizer.json``'s own
post-processor when it has one, else from the tokenizer class (ESM: ``<cls>`` and ``<eos>`` if
there is one; BERT: ``[CLS]`` and ``[SEP]``).

Nothing here imports torch or transformers: reading a tokenizer is data code.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dnalm.errors import InputFormatError
from dnalm.tokenizers.spec import ALPHABET, METADATA_FILE, N_SPECIAL, NUCLEOTIDES, SPECIAL_TOKENS

ROLES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")

#: Files that make up a tokenizer directory (copied as they are when a tokenizer is saved).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "added_tokens.json", METADATA_FILE)

#: Defaults of the tokenizer classes published DNA models declare, by role.
_CLASS_DEFAULTS: dict[str, dict[str, str]] = {
    "EsmTokenizer": {"unk": "<unk>", "cls": "<cls>", "pad": "<pad>", "mask": "<mask>",
                     "eos": "<eos>"},
    "BertTokenizer": {"unk": "[UNK]", "sep": "[SEP]", "pad": "[PAD]", "cls": "[CLS]",
                      "mask": "[MASK]"},
}
#: Conventional spellings, tried when nothing declares a role.
_CONVENTIONAL: dict[str, tuple[str, ...]] = {
    "pad": ("[PAD]", "<pad>"), "unk": ("[UNK]", "<unk>"), "cls": ("[CLS]", "<cls>"),
    "sep": ("[SEP]",), "mask": ("[MASK]", "<mask>"), "bos": ("<bos>",), "eos": ("<eos>",),
}


@dataclass(frozen=True)
class TokenizerFormat:
    """A recognised tokenizer directory (see the module docstring).

    ``kind`` is how dnalm tokenizes (``bpe``, ``kmer``, ``nt_kmer``, ``char``); ``origin`` says in
    words what the directory is; ``vocab`` lists the tokens of vocabulary-file layouts (id order);
    ``prefix``/``suffix`` are the special ids around a sequence; ``id_map`` maps canonical ids to
    this directory's (``None`` when they are the same, as for dnalm's own k-mer tokenizers).
    ``library_file`` is the ``tokenizer.json`` the ``tokenizers`` library reads (BPE), and
    ``normalized`` whether that file's normalizer does more than upper-case (then its own
    offsets are used rather than token lengths).
    """

    directory: Path
    kind: str
    origin: str
    vocab_size: int
    special_ids: dict[str, int | None]
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    k: int | None = None
    vocab: tuple[str, ...] | None = None
    id_map: np.ndarray | None = field(default=None, compare=False)
    library_file: Path | None = None
    normalized: bool = False
    dnalm_built: bool = False
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token text → id (what token statistics leave out)."""
        if self.vocab is not None:
            names = self.vocab
            return {names[i]: i for i in sorted({i for i in self.special_ids.values()
                                                 if i is not None})}
        return dict(self.metadata.get("special_tokens", {}))

    def describe(self) -> str:
        """One line for logs: what was recognised."""
        k = f", k={self.k}" if self.k else ""
        return f"{self.origin} ({self.kind}{k}, {self.vocab_size} tokens)"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise InputFormatError(f"not valid JSON ({reason})", where=str(path)) from None
    if not isinstance(data, dict):
        raise InputFormatError("expected a JSON object", where=str(path))
    return data


def _token_text(value: Any) -> str | None:
    """A special-token entry as text (entries may be strings or AddedToken dicts)."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _declared_roles(directory: Path) -> tuple[dict[str, str | None], str | None]:
    """Roles declared by ``special_tokens_map.json`` / ``tokenizer_config.json``, and the class.

    A role given as ``null`` is recorded as ``None`` (explicitly absent).
    """
    declared: dict[str, str | None] = {}
    tokenizer_class = None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = directory / name
        if not path.is_file():
            continue
        data = _read_json(path)
        if name == "tokenizer_config.json":
            tokenizer_class = data.get("tokenizer_class")
        for role in ROLES:
            key = f"{role}_token"
            if key in data:
                declared[role] = _token_text(data[key])
    return declared, tokenizer_class


def _resolve_roles(vocab_ids: Mapping[str, int], declared: Mapping[str, str | None],
                   tokenizer_class: str | None, where: Path) -> dict[str, int | None]:
    defaults = _CLASS_DEFAULTS.get(tokenizer_class or "", {})
    roles: dict[str, int | None] = {}
    for role in ROLES:
        if role in declared:
            text = declared[role]
            if text is None:
                roles[role] = None
                continue
            if text not in vocab_ids:
                raise InputFormatError(f"the {role} token {text!r} is not in the vocabulary",
                                       where=str(where))
            roles[role] = vocab_ids[text]
            continue
        candidates = ((defaults[role],) if role in defaults else ()) + _CONVENTIONAL[role]
        roles[role] = next((vocab_ids[c] for c in candidates if c in vocab_ids), None)
    return roles


def _class_layout(roles: Mapping[str, int | None], tokenizer_class: str | None
                  ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Specials around a sequence for tokenizer classes without a post-processor file."""
    cls = roles.get("cls")
    if tokenizer_class == "EsmTokenizer":
        # transformers' EsmTokenizer: <cls> ids <eos>, or <cls> ids when eos is None (NT v2)
        end = roles.get("eos")
        return ((cls,) if cls is not None else ()), ((end,) if end is not None else ())
    sep = roles.get("sep")
    return ((cls,) if cls is not None else ()), ((sep,) if sep is not None else ())


def _classify_vocab(tokens: list[str], special: set[str]) -> tuple[str, int | None] | None:
    """``("kmer", k)``, ``("nt_kmer", k)`` or ``("char", None)`` for a nucleotide vocabulary."""
    content = [t for t in tokens if t not in special]
    singles = {t for t in content if len(t) == 1}
    longer = [t for t in content if len(t) > 1]
    if not longer:
        return ("char", None) if set(NUCLEOTIDES) <= singles else None
    k = len(longer[0])
    kmers = {"".join(p) for p in itertools.product(NUCLEOTIDES, repeat=k)}
    if len(longer) != len(kmers) or set(longer) != kmers:
        return None
    if not singles:
        return "kmer", k
    return ("nt_kmer", k) if set(NUCLEOTIDES) <= singles else None


def canonical_tokens(kind: str, k: int | None) -> list[str]:
    """Tokens of dnalm's canonical id order for a nucleotide kind (specials, k-mers, bases)."""
    kmers = ["".join(p) for p in itertools.product(NUCLEOTIDES, repeat=k)] if k else []
    if kind == "kmer":
        return [*SPECIAL_TOKENS, *kmers]
    if kind == "nt_kmer":
        return [*SPECIAL_TOKENS, *kmers, *ALPHABET]
    return [*SPECIAL_TOKENS, *ALPHABET]


def _id_map(kind: str, k: int | None, vocab_ids: Mapping[str, int],
            roles: Mapping[str, int | None], where: Path) -> np.ndarray:
    """Canonical id → directory id; tokens the vocabulary lacks map to its unknown token."""
    unk = roles.get("unk")
    canonical = canonical_tokens(kind, k)
    out = np.full(len(canonical), -1, dtype=np.int32)
    role_of = dict(zip(SPECIAL_TOKENS, ("pad", "unk", "cls", "sep", "mask"), strict=True))
    for i, token in enumerate(canonical):
        if i < N_SPECIAL:
            value = roles.get(role_of[token])
            out[i] = -1 if value is None else value
        else:
            out[i] = vocab_ids.get(token, -1)
    missing = out[N_SPECIAL:] < 0
    if missing.any():
        if unk is None:
            raise InputFormatError("the vocabulary lacks bases and has no unknown token",
                                   where=str(where))
        out[N_SPECIAL:][missing] = unk
    if out[1] < 0:  # dnalm's [UNK] id: characters outside the vocabulary
        if unk is None:
            raise InputFormatError("the tokenizer has no unknown token", where=str(where))
        out[1] = unk
    return out


def _vocab_txt_format(directory: Path) -> TokenizerFormat:
    path = directory / "vocab.txt"
    try:
        tokens = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"cannot read the vocabulary ({type(exc).__name__})",
                               where=str(path)) from None
    tokens = [t.strip() for t in tokens]
    if not tokens or len(set(tokens)) != len(tokens):
        raise InputFormatError("empty vocabulary or duplicate tokens", where=str(path))
    vocab_ids = {t: i for i, t in enumerate(tokens)}
    declared, tokenizer_class = _declared_roles(directory)
    roles = _resolve_roles(vocab_ids, declared, tokenizer_class, directory)
    special = {tokens[i] for i in roles.values() if i is not None}
    special |= {t for t in tokens if t.startswith(("[", "<")) and t.endswith(("]", ">"))}
    classified = _classify_vocab(tokens, special)
    if classified is None:
        raise InputFormatError("vocab.txt is not a nucleotide vocabulary dnalm knows (all "
                               "4**k k-mers, optionally with single bases, or single bases)",
                               where=str(path))
    kind, k = classified
    prefix, suffix = _class_layout(roles, tokenizer_class)
    name = tokenizer_class or "vocab.txt"
    origin = {"kmer": f"{name} with overlapping {k}-mers (DNABERT layout)",
              "nt_kmer": f"{name} with {k}-mers and single bases (Nucleotide Transformer layout)",
              "char": f"{name} with single bases"}[kind]
    return TokenizerFormat(
        directory=directory, kind=kind, origin=origin, vocab_size=len(tokens),
        special_ids=roles, prefix=prefix, suffix=suffix, k=k, vocab=tuple(tokens),
        id_map=_id_map(kind, k, vocab_ids, roles, directory),
    )


def _library_layout(path: Path, roles: Mapping[str, int | None], tokenizer_class: str | None
                    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Specials the file's post-processor puts around a sequence (class defaults without one)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    if tokenizer.post_processor is None:
        return _class_layout(roles, tokenizer_class)
    plain = tokenizer.encode("A", add_special_tokens=False).ids
    full = tokenizer.encode("A", add_special_tokens=True).ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return tuple(full[:start]), tuple(full[start + len(plain) :])
    raise InputFormatError("the post-processor changes the sequence tokens", where=str(path))


def _library_format(directory: Path, *, dnalm_meta: Mapping[str, Any] | None = None
                    ) -> TokenizerFormat:
    path = directory / "tokenizer.json"
    data = _read_json(path)
    model = data.get("model") or {}
    model_type = model.get("type")
    vocab = model.get("vocab")
    if isinstance(vocab, Mapping):
        vocab_ids = {str(t): int(i) for t, i in vocab.items()}
    elif isinstance(vocab, list):  # Unigram: [token, score] pairs in id order
        vocab_ids = {str(entry[0]): i for i, entry in enumerate(vocab)}
    else:
        raise InputFormatError(f"tokenizer.json model {model_type!r} has no vocabulary",
                               where=str(path))
    for added in data.get("added_tokens") or []:
        vocab_ids.setdefault(added["content"], int(added["id"]))
    declared, tokenizer_class = _declared_roles(directory)
    roles = _resolve_roles(vocab_ids, declared, tokenizer_class, directory)
    vocab_size = max(vocab_ids.values()) + 1
    tokens = [""] * vocab_size
    for token, index in vocab_ids.items():
        tokens[index] = token
    special = {t for t in tokens if t.startswith(("[", "<")) and t.endswith(("]", ">"))}
    classified = (_classify_vocab([t for t in tokens if t], special)
                  if model_type in ("WordLevel", "WordPiece") else None)
    if classified is not None:
        # a nucleotide vocabulary saved by the tokenizers library: tokenize it directly
        kind, k = classified
        prefix, suffix = _library_layout(path, roles, tokenizer_class)
        return TokenizerFormat(
            directory=directory, kind=kind, origin=f"tokenizer.json {model_type}",
            vocab_size=vocab_size, special_ids=roles, prefix=prefix, suffix=suffix, k=k,
            vocab=tuple(tokens), id_map=_id_map(kind, k, vocab_ids, roles, directory),
        )
    prefix, suffix = _library_layout(path, roles, tokenizer_class)
    normalizer = data.get("normalizer")
    kind = "bpe" if model_type == "BPE" else "pretrained"
    return TokenizerFormat(
        directory=directory, kind=kind, origin=f"tokenizer.json {model_type}",
        vocab_size=vocab_size,
        special_ids=roles, prefix=prefix, suffix=suffix, library_file=path,
        normalized=normalizer is not None and dnalm_meta is None,
        metadata={"special_tokens": {t: i for t, i in vocab_ids.items()
                                     if i in {v for v in roles.values() if v is not None}}},
    )


def _dnalm_format(directory: Path, meta: dict[str, Any]) -> TokenizerFormat:
    """A tokenizer dnalm built: fixed special ids, canonical token order."""
    kind = meta.get("kind")
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise InputFormatError(f"{METADATA_FILE} without tokenizer.json", where=str(directory))
    data = _read_json(path)
    vocab = (data.get("model") or {}).get("vocab") or {}
    ids = set(vocab.values()) if isinstance(vocab, Mapping) else set(range(len(vocab)))
    ids |= {int(a["id"]) for a in data.get("added_tokens") or []}
    if meta.get("vocab_size") is not None and int(meta["vocab_size"]) != len(ids):
        raise InputFormatError(f"{METADATA_FILE} says vocab_size={meta['vocab_size']} but the "
                               f"tokenizer has {len(ids)} tokens: the directory mixes two "
                               "tokenizers", where=str(directory))
    fixed = dict(zip(("pad", "unk", "cls", "sep", "mask"), range(N_SPECIAL), strict=True))
    special = {str(r): (None if v is None else int(v))
           for r, v in (meta.get("special_ids") or fixed).items()}
    roles = {role: special.get(role) for role in ROLES}
    meta = {"special_tokens": {t: i for i, t in enumerate(SPECIAL_TOKENS)}, **meta}
    prefix = () if roles["cls"] is None else (roles["cls"],)
    suffix = () if roles["sep"] is None else (roles["sep"],)
    return TokenizerFormat(
        directory=directory, kind=kind, origin=f"dnalm {kind} tokenizer",
        vocab_size=int(meta.get("vocab_size") or len(ids)),
        special_ids=roles, prefix=prefix, suffix=suffix,
        k=meta.get("k"), library_file=path, dnalm_built=True, metadata=meta,
    )


def read_format(directory: str | Path) -> TokenizerFormat:
    """Recognise the tokenizer in ``directory`` (see the module docstring) or refuse in one line.

    A directory written by ``build-tokenizer pretrained`` (``dnalm_tokenizer.json`` of kind
    ``pretrained``) is read as the layout it copied.
    """
    directory = Path(directory)
    meta_path = directory / METADATA_FILE
    meta = _read_json(meta_path) if meta_path.is_file() else None
    if meta is not None and meta.get("kind") not in (None, "pretrained"):
        from dnalm.tokenizers.spec import KINDS

        if meta["kind"] not in KINDS:
            raise InputFormatError(f"unknown tokenizer kind {meta['kind']!r}",
                                   where=str(meta_path))
        return _dnalm_format(directory, meta)
    if (directory / "tokenizer.json").is_file():
        fmt = _library_format(directory, dnalm_meta=None)
    elif (directory / "vocab.txt").is_file():
        fmt = _vocab_txt_format(directory)
    else:
        raise InputFormatError("no tokenizer found (tokenizer.json or vocab.txt)",
                               where=str(directory))
    if meta is not None:
        fmt = TokenizerFormat(**{**fmt.__dict__, "metadata": {**fmt.metadata, **meta}})
    return fmt


def write_tokenizer_copy(fmt: TokenizerFormat, out_dir: str | Path) -> None:
    """Copy a recognised tokenizer's files into ``out_dir`` so the copy reads the same.

    A published layout gets a ``dnalm_tokenizer.json`` of kind ``pretrained`` that records what
    was recognised (the files stay as published, so :func:`read_format` reads the same layout
    back). DNABERT's ``do_lower_case: true`` is switched off in the copy's
    ``tokenizer_config.json`` so that transformers' own BertTokenizer, given the k-mer text,
    finds the upper-case k-mers instead of ``[UNK]``.
    """
    import shutil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        source = fmt.directory / name
        if source.is_file() and name != METADATA_FILE:
            shutil.copyfile(source, out / name)
    if fmt.dnalm_built:
        shutil.copyfile(fmt.directory / METADATA_FILE, out / METADATA_FILE)
        return
    config_path = out / "tokenizer_config.json"
    if fmt.kind == "kmer" and config_path.is_file():
        config = _read_json(config_path)
        if config.get("do_lower_case"):
            config["do_lower_case"] = False
            config_path.write_text(json.dumps(config, indent=2) + "\n")
    record = {"kind": "pretrained", "format": {"kind": fmt.kind, "k": fmt.k,
                                               "origin": fmt.origin},
              "input": "kmer_text" if fmt.kind == "kmer" else "sequence",
              "vocab_size": fmt.vocab_size, "special_ids": fmt.special_ids,
              "k": fmt.k, "source": str(fmt.directory.resolve())}
    (out / METADATA_FILE).write_text(json.dumps(record, indent=1) + "\n")
