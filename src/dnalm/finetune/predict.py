"""A fine-tuned run applied to the user's sequences: ``dnalm predict`` and ``predictions:``.

Tracks (:mod:`dnalm.score.tracks`) slide a run over a whole genome; this serves candidate lists:
FASTA, a ``sequence`` table or BED intervals on a genome, read by
:func:`dnalm.inputs.read_sequences` (strand-aware, ids kept). The run is reloaded with
:func:`dnalm.finetune.load_finetuned` (a LoRA adapter on its base model with peft, a fully
fine-tuned ``model/``, or ``merged/``) and computes what it computed on its own test split:
class probabilities (softmax) or, for regression, values on the scale of the training labels.

Sequences longer than the run's input (``max_length`` tokens, special tokens included; for a
run with recurrent memory, all its segments): the sequence is tokenized whole and

* ``mean`` (default): cut into consecutive windows of the run's input, each predicted on its
  own, the outputs (probabilities or values) averaged weighted by the windows' token counts.
  A run with recurrent memory (RMT) reads each window as its segments, through its memory, so
  a sequence up to ``max_n_segments`` segments long is one window, read whole.
* ``truncate``: only the first window is read, as fine-tuning itself did; ``truncated`` says
  which sequences lost tokens and the log counts them.

Output (Parquet): ``record``, ``id`` and, for BED input, ``contig``/``start``/``end``/``strand``
(the input's id columns), ``n_tokens``, ``n_windows`` (windows read), ``truncated``, then as in
the run's ``predictions.parquet``: ``prediction`` (class id, or the value), ``prediction_name``
and ``prob_<class id>`` per class for classification. The schema metadata key ``dnalm`` names
the run, its labels and the policy.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dnalm.errors import ConfigError
from dnalm.finetune.settings import PredictSettings
from dnalm.inputs import SequenceRecords, read_sequences

log = logging.getLogger(__name__)

#: Where a run directory keeps its weights and ``dnalm_finetune.json``.
WEIGHT_DIRS = ("adapter", "model", "merged")


def is_finetuned_run(path: str | Path) -> bool:
    """Whether ``path`` is a fine-tuning run directory (or one of its weight folders)."""
    from dnalm.finetune.train import RUN_META

    path = Path(path)
    return (path / RUN_META).is_file() or any((path / d / RUN_META).is_file()
                                              for d in WEIGHT_DIRS)


def predict_records(run: Any, records: SequenceRecords, *, long: str = PredictSettings.long,
                    batch_size: int | None = None) -> pa.Table:
    """Predictions of a loaded run (:class:`~dnalm.finetune.FinetunedModel`) for every record."""
    from dnalm.embed import check_tokens, plan_windows

    PredictSettings(long=long)  # the one check of the policy
    began = time.perf_counter()
    encoder, meta = run.encoder, run.meta
    tok = encoder.tokenizer
    room = encoder.max_length - encoder.n_special
    batch = tok.encode_batch(records.sequences)
    counts = np.diff(batch.row_offsets)
    check_tokens(records, counts)
    windows = plan_windows(counts, room)
    if long == "truncate":
        keep = windows.index == 0
        windows.record, windows.index = windows.record[keep], windows.index[keep]
        windows.lo, windows.hi = windows.lo[keep], windows.hi[keep]
    sizes = windows.sizes
    rows = []
    for w in range(len(sizes)):
        offset = int(batch.row_offsets[windows.record[w]])
        rows.append(tok.wrap(batch.ids[offset + windows.lo[w] : offset + windows.hi[w]]).tolist())
    outputs = run.outputs(rows, batch_size)
    if outputs.ndim == 1:
        outputs = outputs[:, None]
    sums = np.zeros((len(records), outputs.shape[1]), np.float64)
    np.add.at(sums, windows.record, outputs * sizes[:, None])
    read = np.bincount(windows.record, weights=sizes, minlength=len(records))
    per_record = sums / read[:, None]
    frame = records.keys()
    frame["n_tokens"] = counts.astype(np.int64)
    frame["n_windows"] = np.bincount(windows.record, minlength=len(records)).astype(np.int64)
    frame["truncated"] = read < counts
    if meta["problem"] == "regression":
        frame["prediction"] = per_record[:, 0]
    else:
        names = np.array(meta.get("label_names") or [str(i) for i in range(outputs.shape[1])],
                         dtype=object)
        frame["prediction"] = per_record.argmax(axis=1).astype(np.int64)
        frame["prediction_name"] = names[frame["prediction"].to_numpy()]
        for c in range(per_record.shape[1]):
            frame[f"prob_{c}"] = per_record[:, c]
    n_cut = int(frame["truncated"].sum())
    if n_cut:
        log.warning("%d of %d sequences are longer than the run's %d-token input and were "
                    "truncated (policy 'truncate')", n_cut, len(records), encoder.max_length)
    seconds = time.perf_counter() - began
    log.info("predicted %d sequences (%d windows, policy %s) in %.1f s: %.1f sequences/s",
             len(records), len(sizes), long, seconds, len(records) / max(seconds, 1e-9))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.replace_schema_metadata({b"dnalm": json.dumps({
        "base_model": meta.get("base_model"), "method": meta.get("method"),
        "problem": meta["problem"], "label_names": meta.get("label_names"), "long": long,
        "input_tokens": encoder.max_length, "input": records.source}).encode()})


def predict_file(run_dir: str | Path, input_path: str | Path, out: str | Path, *,
                 long: str = PredictSettings.long, batch_size: int | None = None,
                 fmt: str | None = None,
                 genome: str | Path | None = None, sequence_column: str = "sequence",
                 id_column: str = "id", match_chr_prefix: bool = True,
                 gpus: int | None = None) -> pa.Table:
    """Read the input, predict it with the run in ``run_dir`` and write Parquet atomically.
    What ``dnalm predict`` and the ``predict`` rule run."""
    _check(run_dir, long)
    records = read_sequences(input_path, fmt=fmt, genome=genome,
                             sequence_column=sequence_column, id_column=id_column,
                             match_chr_prefix=match_chr_prefix)
    return _predict_and_write(run_dir, records, out, long, batch_size, gpus)


def predict_set(run_dir: str | Path, spec: Mapping[str, Any], out: str | Path, *,
                settings: PredictSettings, match_chr_prefix: bool = True,
                gpus: int | None = None, name: str = "sequence set") -> pa.Table:
    """:func:`predict_file` for a named set of the ``predictions.inputs`` config section (what
    the workflow's rule runs)."""
    from dnalm.inputs import read_spec

    _check(run_dir, settings.long)
    records = read_spec(dict(spec), match_chr_prefix=match_chr_prefix, where=name)
    return _predict_and_write(run_dir, records, out, settings.long, settings.batch_size, gpus)


def _check(run_dir: str | Path, long: str) -> None:
    PredictSettings(long=long)
    require_finetuned_run(run_dir)


def require_finetuned_run(run_dir: str | Path) -> None:
    """Refuse, in one line, a directory that is not a fine-tuning run (every command that
    applies a run checks this before loading anything)."""
    if not is_finetuned_run(run_dir):
        raise ConfigError("not a fine-tuning run (no adapter/, model/ or merged/ with "
                          "dnalm_finetune.json)", where=str(run_dir))


def _predict_and_write(run_dir: str | Path, records: SequenceRecords, out: str | Path,
                       long: str, batch_size: int | None, gpus: int | None) -> pa.Table:
    from dnalm.finetune.train import load_finetuned
    from dnalm.io import write_table

    run = load_finetuned(run_dir, gpus=gpus)
    table = predict_records(run, records, long=long, batch_size=batch_size)
    table = table.replace_schema_metadata({b"dnalm": json.dumps(
        {**json.loads(table.schema.metadata[b"dnalm"]), "run": str(run_dir)}).encode()})
    write_table(table, out)
    return table


def predictions_report(path: str | Path, out_html: str | Path, *, title: str) -> None:
    """The predictions as an HTML table for ``snakemake --report``."""
    from dnalm.report import table_html

    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"dnalm", b"{}"))
    names = meta.get("label_names")
    labels = (", ".join(f"prob_{i} = {n}" for i, n in enumerate(names)) if names
              else "predicted value")
    note = (f"Fine-tuned run {meta.get('run', '?')} ({meta.get('method')}) on "
            f"{meta.get('input')}: {labels}. Inputs longer than {meta.get('input_tokens')} "
            f"tokens: {meta.get('long')} policy (n_windows, truncated).")
    table_html(table.to_pandas().head(500), out_html, title=title, note=note)
