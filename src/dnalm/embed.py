"""Sequence embeddings from any model dnalm reads: ``dnalm embed`` and the ``embeddings:`` rules.

The encoder comes from a model directory (a pipeline model, a published DNABERT / DNABERT-2 /
Nucleotide Transformer / GENA-LM checkpoint, read by :mod:`dnalm.models.directory`) or from a
fine-tuned run (:func:`dnalm.finetune.load_finetuned`: the run's encoder with its LoRA adapter
applied, or the fully fine-tuned encoder). Its tokenizer is the directory's own.

What a vector is:

* **pooling** ``mean``: the mean of the hidden states of the content tokens (the special tokens
  around the sequence, ``[CLS]``/``[SEP]``/``<cls>``, are left out; padding never counts);
  ``cls``: the hidden state at the first special token (``[CLS]``; refused for a tokenizer that
  puts none before the sequence); ``tokens``: one row per content token, with its token id and
  its base offsets ``[token_start, token_end)`` in the sequence (on a BED row of strand ``-``
  the sequence is the reverse complement, so a token covers ``[end - token_end, end -
  token_start)`` of the contig; otherwise ``[start + token_start, start + token_end)``).
* **layer**: an index into the model's hidden states as transformers numbers them (``0``: the
  embedding output, ``i``: the output of block ``i``, ``num_hidden_layers``: the last one, the
  encoder output its heads read); negative counts from the end (``-1``, the default, is the
  last). The output records the non-negative index.
* **long inputs**: a sequence is tokenized whole, then cut into consecutive windows of at most
  ``window_tokens`` content tokens (default: the model's input length, special tokens
  included, minus those specials; a fine-tuned run's own ``max_length``); each window is wrapped
  in the special tokens and encoded on its own. Policy ``mean`` (default) gives one row per
  sequence, the mean of its windows' vectors weighted by their token counts — for ``mean``
  pooling exactly the mean over every content token of the sequence; policy ``windows`` gives
  one row per window with ``window`` (0-based), ``window_start``/``window_end`` (base offsets in
  the sequence) and the window's own ``n_tokens``. Token rows carry their ``window``.

Output (Parquet, one file): ``record`` (0-based input position), ``id``, the interval of BED
input (``contig``, ``start``, ``end``, ``strand``), the window or token columns above,
``pooling``, ``layer``, ``n_tokens``, (``n_windows`` for policy ``mean``), and ``embedding``,
a fixed-size list of float32 (``pa.list_(pa.float32(), dim)``). The schema metadata key
``dnalm`` holds the model, dimension and settings as JSON. Reading it::

    import numpy as np, pandas as pd, polars as pl, duckdb
    from dnalm.embed import embedding_matrix

    X = embedding_matrix("emb.parquet")                      # (n, dim) float32, one call
    X = pl.read_parquet("emb.parquet")["embedding"].to_numpy()  # polars: (n, dim) too
    frame = pd.read_parquet("emb.parquet")                   # one array per row
    X = np.stack(frame["embedding"].to_numpy())
    duckdb.sql("SELECT id, embedding FROM 'emb.parquet'")    # FLOAT[dim] array column

Speed: all sequences are tokenized in one call (dnalm's vectorised tokenizers), windows are
sorted by length and batched, so padding is small; on CUDA the encoder runs under bf16 autocast
(the vectors are pooled and written in float32). Progress is logged every 10 %. Token rows of
the whole input are held in memory (``tokens`` pooling of many megabases needs a lot of it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dnalm.errors import ConfigError, InputFormatError
from dnalm.inputs import SequenceRecords, read_sequences
from dnalm.logs import progress

log = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "tokens")
LONG_POLICIES = ("mean", "windows")
EMBEDDING_COLUMN = "embedding"
METADATA_KEY = b"dnalm"


@dataclass(frozen=True)
class EmbedSettings:
    """How vectors are made (see the module docstring); checked on construction."""

    pooling: str = "mean"
    layer: int = -1
    long: str = "mean"
    batch_size: int = 16
    #: content tokens per window (None: the model's input minus its special tokens)
    window_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.long not in LONG_POLICIES:
            raise ConfigError(f"long-input policy {self.long!r} is not one of "
                              f"{', '.join(LONG_POLICIES)}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.window_tokens is not None and int(self.window_tokens) < 1:
            raise ConfigError(f"window_tokens must be >= 1, got {self.window_tokens}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> EmbedSettings:
        """Settings from the ``embeddings`` config section (inputs, models, runs wire the
        workflow)."""
        from dnalm.config import settings_from

        return settings_from(cls, section, where="embeddings",
                             ignore=("inputs", "models", "runs"))


# --------------------------------------------------------------------------------------------
# The encoder


class EmbeddingEncoder:
    """An encoder (no heads) with its tokenizer, returning hidden states for token windows.

    Build with :meth:`load`. ``max_tokens`` is the longest input (special tokens included) a
    window may have; ``num_layers`` the number of blocks (hidden-state indices ``0..num_layers``).
    """

    def __init__(self, module: Any, tokenizer: Any, *, device: Any, max_tokens: int,
                 source: str, description: str) -> None:
        self.module = module.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.max_tokens = int(max_tokens)
        self.source = source
        self.description = description
        config = getattr(module, "config", None)
        self.num_layers = int(getattr(config, "num_hidden_layers", 0) or 0)
        self.hidden_size = int(getattr(config, "hidden_size", 0) or 0)
        pad = tokenizer.special_ids.get("pad")
        self.pad_id = int(pad) if pad is not None else 0
        self.n_special = len(tokenizer.prefix) + len(tokenizer.suffix)
        if self.max_tokens <= self.n_special:
            raise ConfigError(f"an input of {self.max_tokens} tokens leaves no room beside "
                              f"{self.n_special} special token(s)", where=source)

    @classmethod
    def load(cls, path: str | Path, *, gpus: int | None = None,
             trust_remote_code: bool = False) -> EmbeddingEncoder:
        """The encoder of a model directory or of a fine-tuned run directory."""
        from dnalm.finetune.predict import is_finetuned_run

        path = Path(path)
        if not path.exists():
            raise InputFormatError("not found", where=str(path))
        if is_finetuned_run(path):
            return cls._from_run(path, gpus)
        return cls._from_model_dir(path, gpus, trust_remote_code)

    @classmethod
    def _from_model_dir(cls, path: Path, gpus: int | None,
                        trust_remote_code: bool) -> EmbeddingEncoder:
        from dnalm.models.directory import (
            inspect_model_dir,
            load_encoder,
            load_model_tokenizer,
            model_config,
        )
        from dnalm.runtime import pick_device
        from dnalm.score.lm import max_input_tokens

        md = inspect_model_dir(path, trust_remote_code=trust_remote_code)
        if md.family.name == "rmt":
            raise ConfigError("embeddings of a recurrent-memory (RMT) model are not supported: "
                              "its encoder alone, without the memory it was trained with, is "
                              "not what the model learnt", where=str(path))
        impl = None
        if md.meta.get("preset"):
            from dnalm.models.presets import get_preset

            impl = get_preset(md.meta["preset"]).attn_implementation
        config = model_config(md, trust_remote_code=trust_remote_code)
        module = load_encoder(md, attn_implementation=impl, trust_remote_code=trust_remote_code)
        tokenizer = load_model_tokenizer(path, config=config)
        device = pick_device(gpus)
        module.to(device)
        return cls(module, tokenizer, device=device, max_tokens=max_input_tokens(config),
                   source=str(path), description=md.describe())

    @classmethod
    def _from_run(cls, path: Path, gpus: int | None) -> EmbeddingEncoder:
        from dnalm.finetune import load_finetuned
        from dnalm.models.rmt import RMTForSequenceClassification

        run = load_finetuned(path, gpus=gpus)
        classifier = run.model
        adapted = hasattr(classifier, "get_base_model")
        if adapted:  # a peft model: the classifier with its LoRA layers in place
            classifier = classifier.get_base_model()
        if isinstance(classifier, RMTForSequenceClassification):
            raise ConfigError("embeddings of a recurrent-memory (RMT) run are not supported; "
                              "`dnalm predict` reads long inputs through its memory",
                              where=str(path))
        module = classifier.base_model
        if module is classifier:
            raise ConfigError(f"cannot find the encoder inside {type(classifier).__name__}",
                              where=str(path))
        how = "LoRA adapter applied" if adapted else "fine-tuned weights"
        return cls(module, run.encoder.tokenizer, device=run.device,
                   max_tokens=run.encoder.max_length, source=str(path),
                   description=f"fine-tuned run ({how}) on {run.meta.get('base_model', '?')}")

    def resolve_layer(self, layer: int) -> int:
        """A hidden-state index as a non-negative number (``-1`` → ``num_layers``)."""
        count = self.num_layers + 1
        if not -count <= int(layer) < count:
            raise ConfigError(f"layer {layer} does not exist: the model has hidden states "
                              f"0..{self.num_layers} (or -{count}..-1)", where=self.source)
        return int(layer) % count

    def hidden(self, rows: list[np.ndarray], layer: int) -> Any:
        """Hidden states of index ``layer`` (non-negative) for token rows (specials included),
        right-padded: a float32 CPU tensor ``(len(rows), longest, hidden)``."""
        import torch

        from dnalm.finetune.encoding import pad_batch
        from dnalm.runtime import autocast

        ids, mask = pad_batch(rows, self.pad_id)
        last = layer == self.num_layers
        with torch.inference_mode(), autocast(self.device):
            out = self.module(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                              output_hidden_states=not last)
        if last:
            states = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        else:
            every = getattr(out, "hidden_states", None)
            if every is None:
                raise ConfigError("the model does not return hidden states of every layer; "
                                  "use the last layer", where=self.source)
            states = every[layer]
        return states.float().cpu()


# --------------------------------------------------------------------------------------------
# Windows and pooling


@dataclass
class _Windows:
    """Token windows over a tokenized batch of records (token indices within each record)."""

    record: np.ndarray  # int64, record of each window
    index: np.ndarray  # int64, window number within its record
    lo: np.ndarray  # int64, first content token
    hi: np.ndarray  # int64, one past the last

    @property
    def sizes(self) -> np.ndarray:
        return self.hi - self.lo


def plan_windows(counts: np.ndarray, room: int) -> _Windows:
    """Consecutive windows of at most ``room`` tokens over records of ``counts`` tokens."""
    per_record = np.maximum(-(-counts // room), 1)
    record = np.repeat(np.arange(len(counts), dtype=np.int64), per_record)
    first = np.concatenate([[0], np.cumsum(per_record)[:-1]])
    index = np.arange(len(record), dtype=np.int64) - np.repeat(first, per_record)
    lo = index * room
    hi = np.minimum(lo + room, counts[record])
    return _Windows(record, index, lo, hi)


def check_tokens(records: SequenceRecords, counts: np.ndarray) -> None:
    """A record without tokens (shorter than a k-mer) has no vector: one line naming it, rather
    than a NaN row."""
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        r = int(empty[0])
        raise InputFormatError(f"record {r + 1} (id {records.ids[r]}, {len(records.sequences[r])}"
                               " bp) gives no tokens (shorter than one token of the model's "
                               "tokenizer)", where=records.source)


def embed_records(encoder: EmbeddingEncoder, records: SequenceRecords,
                  settings: EmbedSettings | None = None) -> pa.Table:
    """Embed every record (see the module docstring); returns the output table."""
    settings = settings or EmbedSettings()
    tok = encoder.tokenizer
    if settings.pooling == "cls" and not tok.prefix:
        raise ConfigError("pooling 'cls' needs a token before the sequence, and this "
                          "tokenizer adds none; use pooling 'mean'", where=encoder.source)
    layer = encoder.resolve_layer(settings.layer)
    room = encoder.max_tokens - encoder.n_special
    if settings.window_tokens is not None:
        if settings.window_tokens > room:
            log.info("window_tokens %d exceeds the model's %d content tokens: using %d",
                     settings.window_tokens, room, room)
        room = min(room, int(settings.window_tokens))
    began = time.perf_counter()
    batch = tok.encode_batch(records.sequences)
    counts = np.diff(batch.row_offsets)
    check_tokens(records, counts)
    windows = plan_windows(counts, room)
    width = len(tok.prefix)
    dim = encoder.hidden_size
    if not dim:
        raise ConfigError("the model's config does not say its hidden size", where=encoder.source)
    per_token = settings.pooling == "tokens"
    vectors = np.zeros((batch.num_tokens if per_token else len(windows.record), dim), np.float32)
    order = np.argsort(-windows.sizes, kind="stable")
    starts = range(0, len(order), settings.batch_size)
    for start in progress(starts, desc="embedding batches", logger=log, unit="batch"):
        chosen = order[start : start + settings.batch_size]
        rows = []
        for w in chosen:
            offset = int(batch.row_offsets[windows.record[w]])
            rows.append(tok.wrap(batch.ids[offset + windows.lo[w] : offset + windows.hi[w]]))
        states = encoder.hidden(rows, layer).numpy()
        for i, w in enumerate(chosen):
            n = int(windows.sizes[w])
            content = states[i, width : width + n]
            if per_token:
                offset = int(batch.row_offsets[windows.record[w]])
                vectors[offset + windows.lo[w] : offset + windows.hi[w]] = content
            elif settings.pooling == "mean":
                vectors[w] = content.mean(axis=0, dtype=np.float64)
            else:
                vectors[w] = states[i, 0]
    table = _output_table(records, batch, counts, windows, vectors, settings, layer)
    seconds = time.perf_counter() - began
    bases = int(records.lengths.sum())
    log.info("embedded %d sequences (%d bp, %d windows, %d tokens) in %.1f s: %.1f sequences/s, "
             "%.0f bp/s; %s pooling, layer %d, %d-dimensional", len(records), bases,
             len(windows.record), batch.num_tokens, seconds, len(records) / max(seconds, 1e-9),
             bases / max(seconds, 1e-9), settings.pooling, layer, dim)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps({
        **asdict(settings), "model": encoder.source, "model_description": encoder.description,
        "dimension": dim, "layer": layer, "window_tokens": room,
        "input": records.source}).encode()})


def _embedding_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def _output_table(records: SequenceRecords, batch: Any, counts: np.ndarray, windows: _Windows,
                  vectors: np.ndarray, settings: EmbedSettings, layer: int) -> pa.Table:
    keys = records.keys()
    if settings.pooling == "tokens":
        token_record = np.repeat(np.arange(len(records)), counts)
        frame = keys.iloc[token_record].reset_index(drop=True)
        within = np.arange(batch.num_tokens) - np.repeat(batch.row_offsets[:-1], counts)
        frame["window"] = _token_windows(windows, counts)
        frame["token"] = within.astype(np.int64)
        frame["token_id"] = batch.ids.astype(np.int64)
        frame["token_start"] = batch.starts.astype(np.int64)
        frame["token_end"] = batch.ends.astype(np.int64)
        frame["n_tokens"] = counts[token_record].astype(np.int64)
    elif settings.long == "windows":
        frame = keys.iloc[windows.record].reset_index(drop=True)
        offsets = batch.row_offsets[windows.record]
        frame["window"] = windows.index
        frame["window_start"] = batch.starts[offsets + windows.lo].astype(np.int64)
        frame["window_end"] = batch.ends[offsets + windows.hi - 1].astype(np.int64)
        frame["n_tokens"] = windows.sizes.astype(np.int64)
    else:
        weights = windows.sizes.astype(np.float64)
        sums = np.zeros((len(records), vectors.shape[1]), np.float64)
        np.add.at(sums, windows.record, vectors.astype(np.float64) * weights[:, None])
        vectors = (sums / counts[:, None]).astype(np.float32)
        frame = keys
        frame["n_tokens"] = counts.astype(np.int64)
        frame["n_windows"] = np.bincount(windows.record, minlength=len(records)).astype(np.int64)
    frame.insert(frame.columns.get_loc("n_tokens"), "pooling", settings.pooling)
    frame.insert(frame.columns.get_loc("n_tokens"), "layer", np.int64(layer))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.append_column(EMBEDDING_COLUMN, _embedding_array(vectors))


def _token_windows(windows: _Windows, counts: np.ndarray) -> np.ndarray:
    """The window of every token (records in order, tokens in order)."""
    out = np.zeros(int(counts.sum()), np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for record, index, lo, hi in zip(windows.record, windows.index, windows.lo, windows.hi,
                                     strict=True):
        out[starts[record] + lo : starts[record] + hi] = index
    return out


# --------------------------------------------------------------------------------------------
# Entry points


def embed_file(model: str | Path, input_path: str | Path, out: str | Path, *,
               settings: EmbedSettings | None = None, fmt: str | None = None,
               genome: str | Path | None = None, sequence_column: str = "sequence",
               id_column: str = "id", match_chr_prefix: bool = True, gpus: int | None = None,
               trust_remote_code: bool = False) -> pa.Table:
    """Read the input (:func:`dnalm.inputs.read_sequences`), embed it with ``model`` (a model
    or fine-tuned run directory) and write Parquet atomically. What ``dnalm embed`` and the
    ``embed`` rule run."""
    records = read_sequences(input_path, fmt=fmt, genome=genome,
                             sequence_column=sequence_column, id_column=id_column,
                             match_chr_prefix=match_chr_prefix)
    return _embed_and_write(model, records, out, settings, gpus, trust_remote_code)


def embed_set(model: str | Path, spec: Mapping[str, Any], out: str | Path, *,
              settings: EmbedSettings | None = None, match_chr_prefix: bool = True,
              gpus: int | None = None, trust_remote_code: bool = False,
              name: str = "sequence set") -> pa.Table:
    """:func:`embed_file` for a named set of the ``embeddings.inputs`` config section (what the
    workflow's rules run)."""
    from dnalm.inputs import read_spec

    records = read_spec(dict(spec), match_chr_prefix=match_chr_prefix, where=name)
    return _embed_and_write(model, records, out, settings, gpus, trust_remote_code)


def _embed_and_write(model: str | Path, records: SequenceRecords, out: str | Path,
                     settings: EmbedSettings | None, gpus: int | None,
                     trust_remote_code: bool) -> pa.Table:
    from dnalm.io import write_table

    encoder = EmbeddingEncoder.load(model, gpus=gpus, trust_remote_code=trust_remote_code)
    log.info("encoder %s: %s, %d layers, %d dimensions, %d-token inputs", model,
             encoder.description, encoder.num_layers, encoder.hidden_size, encoder.max_tokens)
    table = embed_records(encoder, records, settings)
    write_table(table, out)
    return table


def embedding_matrix(path: str | Path) -> np.ndarray:
    """The ``embedding`` column of an embeddings file as one ``(rows, dim)`` float32 array."""
    column = pq.read_table(path, columns=[EMBEDDING_COLUMN]).column(EMBEDDING_COLUMN)
    array = column.combine_chunks()
    if not pa.types.is_fixed_size_list(array.type):
        raise InputFormatError("not a dnalm embeddings file (no fixed-size embedding column)",
                               where=str(path))
    return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array),
                                                                  array.type.list_size)


def embeddings_metadata(path: str | Path) -> dict[str, Any]:
    """The settings an embeddings file was written with (its ``dnalm`` schema metadata)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else {}


# --------------------------------------------------------------------------------------------
# Report


def embeddings_report(path: str | Path, out_html: str | Path, out_png: str | Path, *,
                      title: str) -> None:
    """A table (per row: id, interval, tokens, norm, first two principal components) and a
    picture of the rows on those components, for ``snakemake --report``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dnalm.io import atomic_file
    from dnalm.report import table_html

    frame = pq.read_table(path).drop_columns([EMBEDDING_COLUMN]).to_pandas()
    matrix = embedding_matrix(path).astype(np.float64)
    meta = embeddings_metadata(path)
    centred = matrix - matrix.mean(axis=0)
    if len(matrix) > 1:
        _, singular, components = np.linalg.svd(centred, full_matrices=False)
        pcs = centred @ components[:2].T
        share = singular[:2] ** 2 / max(float((singular**2).sum()), 1e-30)
    else:
        pcs, share = np.zeros((len(matrix), 2)), np.zeros(2)
    if pcs.shape[1] < 2:
        pcs = np.column_stack([pcs, np.zeros(len(pcs))])
        share = np.append(share, 0.0)
    shown = frame.drop(columns=[c for c in ("pooling", "layer") if c in frame]).copy()
    shown["norm"] = np.linalg.norm(matrix, axis=1)
    shown["pc1"], shown["pc2"] = pcs[:, 0], pcs[:, 1]
    note = (f"{len(frame)} rows of {meta.get('dimension')}-dimensional {meta.get('pooling')} "
            f"embeddings (layer {meta.get('layer')}, long inputs: {meta.get('long')}) from "
            f"{meta.get('model')}; pc1/pc2: principal components "
            f"({100 * share[0]:.0f} % and {100 * share[1]:.0f} % of the variance).")
    table_html(shown.head(500), out_html, title=title, note=note)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(pcs[:, 0], pcs[:, 1], s=18, color="#4477aa")
    if len(frame) <= 60:
        for label, x, y in zip(frame["id"], pcs[:, 0], pcs[:, 1], strict=True):
            ax.annotate(str(label), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"PC1 ({100 * share[0]:.0f} %)")
    ax.set_ylabel(f"PC2 ({100 * share[1]:.0f} %)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_file(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

