"""Labelled fine-tuning tasks: table, interval (BED) and per-class FASTA inputs → train/dev/test.

A task is declared by a plain dict (one entry of the ``finetune.tasks`` config section)::

    {"format": "table", "train": "train.csv", "dev": None, "test": "test.csv",
     "sequence_column": "sequence", "label_column": "label", "problem": "classification",
     "dev_fraction": 0.1}

Formats:

* ``table``: CSV, TSV or Parquet files with a sequence and a label column (the GUE/DNABERT-2
  ``sequence,label`` files, and genomic_benchmarks' ``id,...,label,sequence`` files). An ``id``
  column, when present, names each row in predictions and error messages.
* ``bed``: interval tables (``chrom,start,end[,strand],label``; 0-based half-open, as BED) on a
  prepared genome; sequences are cut from the genome and reverse-complemented on ``-`` strands.
  A headerless ``.bed`` file reads as ``chrom start end label [score] [strand]``.
* ``fasta``: one FASTA per class, either ``fasta: {label: path}`` (all records pooled, then
  split into train/dev/test by ``dev_fraction``/``test_fraction``) or ``train``/``dev``/``test``
  each a ``{label: path}`` mapping.

When a task has no dev file (genomic_benchmarks ships only train/test), a dev split is carved from
train with the seed, stratified by class, because early stopping must never look at test data.
Classification labels may be strings ("positive"/"negative"); they are mapped to ids in sorted
order (integer labels keep their values) and the mapping is returned so that every report can say
which id is which class. Every user mistake (missing column, empty split, a test label never seen
in training, an interval off its contig...) raises a one-line :class:`~dnalm.errors.DnalmError`
naming the file and, where it applies, the row.

Rows are checked before training because a bad row does not fail later, it trains wrongly: a
``NaN``/``NA``/``null`` label (as spreadsheets and pandas write a missing value) would become a
class of its own, and a sequence with a character that is not a nucleotide code (a protein, a
number, a gap ``-``) would be read as ``[UNK]`` tokens. Such a row (or one with no sequence, no
label, or a non-finite regression target) is refused, naming the file, row, id and value; with
``drop_invalid: true`` on the task it is dropped instead, and a warning says how many rows of
which file were dropped and why the first one was.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from dnalm.errors import ConfigError, InputFormatError

log = logging.getLogger(__name__)

FORMATS = ("table", "bed", "fasta")
PROBLEMS = ("classification", "regression")
SPLITS = ("train", "dev", "test")

_SPEC_KEYS = {
    "name", "format", "train", "dev", "test", "sequence_column", "label_column", "id_column",
    "problem", "dev_fraction", "test_fraction", "genome", "fasta", "drop_invalid",
}
#: Label texts that mean "missing" (pandas', R's and spreadsheets' markers), never a class name.
MISSING_LABELS = frozenset({"nan", "-nan", "+nan", "na", "n/a", "#n/a", "<na>", "null"})
#: Any character that is not an IUPAC nucleotide code (either case): not a DNA sequence.
_NOT_NUCLEOTIDE = r"[^ACGTUNRYKMSWBDHVacgtunrykmswbdhv]"
_COMPLEMENT = str.maketrans("ACGTNacgtnRYKMSWBDHVrykmswbdhv", "TGCANtgcanYRMKSWVHDByrmkswvhdb")


@dataclass
class TaskData:
    """A loaded task: three splits, each a DataFrame with columns ``id``, ``sequence``, ``label``.

    ``label`` holds class ids (int) for classification and floats for regression;
    ``label_names[i]`` is the original label of class id ``i`` (``None`` for regression).
    ``dev_source`` says where the dev split came from (a file, or carved from train).
    """

    name: str
    problem: str
    train: pd.DataFrame
    dev: pd.DataFrame
    test: pd.DataFrame
    label_names: list[str] | None = None
    dev_source: str = "file"
    sources: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        """Output width of the model head: classes, or 1 for regression."""
        return len(self.label_names) if self.label_names is not None else 1

    @property
    def label_mapping(self) -> dict[str, int] | None:
        """Original label → class id (what ``metrics.json`` records)."""
        if self.label_names is None:
            return None
        return {name: i for i, name in enumerate(self.label_names)}

    def split(self, name: str) -> pd.DataFrame:
        """One split by name (``train``, ``dev`` or ``test``)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        """Number of sequences per split."""
        return {s: len(self.split(s)) for s in SPLITS}


# --------------------------------------------------------------------------------------------
# Spec validation


def _where(spec: Mapping[str, Any]) -> str:
    return f"finetune task {spec.get('name', '?')}"


def check_spec(spec: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """Validate a task spec and fill its defaults (one-line ConfigError on the first problem).

    Unknown keys are rejected: a misspelt ``label_colum`` would otherwise silently fall back to
    ``label`` and train on the wrong column.
    """
    out: dict[str, Any] = {
        "name": name or spec.get("name") or "task", "format": "table", "dev": None,
        "sequence_column": "sequence", "label_column": "label", "id_column": "id",
        "problem": "classification", "dev_fraction": 0.1, "test_fraction": 0.1,
        "drop_invalid": False,
    }
    out.update({k: v for k, v in spec.items() if v is not None or k == "dev"})
    where = _where(out)
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(sorted(_SPEC_KEYS))}", where=where)
    if out["format"] not in FORMATS:
        raise ConfigError(f"format {out['format']!r} is not one of {', '.join(FORMATS)}",
                          where=where)
    if out["problem"] not in PROBLEMS:
        raise ConfigError(f"problem {out['problem']!r} is not one of {', '.join(PROBLEMS)}",
                          where=where)
    for key in ("dev_fraction", "test_fraction"):
        value = out[key]
        if not isinstance(value, int | float) or not 0 < float(value) < 1:
            raise ConfigError(f"{key} must be a number between 0 and 1, got {value!r}",
                              where=where)
    if not isinstance(out["drop_invalid"], bool):
        raise ConfigError(f"drop_invalid must be true or false, got {out['drop_invalid']!r}",
                          where=where)
    if out["format"] == "fasta" and out["problem"] == "regression":
        raise ConfigError("a fasta task labels sequences by file, so it cannot be regression",
                          where=where)
    _check_sources(out, where)
    return out


def _check_sources(spec: Mapping[str, Any], where: str) -> None:
    """The split files each format needs are named (existence is checked when reading)."""
    fmt = spec["format"]
    if fmt == "fasta":
        pooled = spec.get("fasta")
        per_split = isinstance(spec.get("train"), Mapping)
        if not pooled and not per_split:
            raise ConfigError("a fasta task needs 'fasta: {label: path}' or train/test as "
                              "{label: path} mappings", where=where)
        if pooled and not isinstance(pooled, Mapping):
            raise ConfigError("'fasta' must map each label to a FASTA path", where=where)
        if per_split and not isinstance(spec.get("test"), Mapping):
            raise ConfigError("'test' must map each label to a FASTA path like 'train'",
                              where=where)
        return
    for key in ("train", "test"):
        if not spec.get(key):
            raise ConfigError(f"'{key}' (a file path) is required for a {fmt} task", where=where)
    if fmt == "bed" and not spec.get("genome"):
        raise ConfigError("a bed task needs 'genome' (the genome its intervals are on)",
                          where=where)


# --------------------------------------------------------------------------------------------
# Readers


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, TSV (``.tsv``/``.txt``/``.bed``) or Parquet file, gzip allowed for text."""
    p = Path(path)
    if not p.is_file():
        raise InputFormatError("file not found", where=str(p))
    name = p.name.lower()
    for compression in (".gz", ".bz2", ".zst"):
        name = name.removesuffix(compression)
    base = Path(name).suffix
    try:
        if base in (".parquet", ".pq"):
            frame = pd.read_parquet(p)
        elif base == ".csv":
            frame = pd.read_csv(p, dtype_backend="numpy_nullable", keep_default_na=False,
                                na_values=[""])
        elif base in (".tsv", ".txt", ".bed"):
            frame = pd.read_csv(p, sep="\t", dtype_backend="numpy_nullable",
                                keep_default_na=False, na_values=[""])
        else:
            raise InputFormatError(f"unknown table format {base or '(no suffix)'!r}; use .csv, "
                                   ".tsv or .parquet", where=str(p))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError,
            ValueError) as exc:
        if isinstance(exc, InputFormatError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFormatError(f"cannot read table ({first})", where=str(p)) from exc
    return frame


_BED_COLUMNS = ["chrom", "start", "end", "label", "score", "strand"]


def read_intervals(path: str | Path) -> pd.DataFrame:
    """An interval table: a headed CSV/TSV/Parquet, or a headerless BED (label = name column)."""
    p = Path(path)
    if p.suffix.lower() != ".bed" and not p.name.lower().endswith(".bed.gz"):
        return read_table(p)
    if not p.is_file():
        raise InputFormatError("file not found", where=str(p))
    rows = []
    header: list[str] | None = None
    with open(p) as handle:
        for line in handle:
            if line.startswith(("track", "browser")) or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if line.startswith("#"):
                names = [f.lstrip("#").strip() for f in fields]
                header = names if "chrom" in names else header
                continue
            rows.append(fields)
    if not rows:
        raise InputFormatError("no intervals", where=str(p))
    width = max(len(r) for r in rows)
    names = header if header and len(header) == width else _BED_COLUMNS[:width]
    if len(names) < width:
        names = names + [f"column{i + 1}" for i in range(len(names), width)]
    return pd.DataFrame([r + [""] * (width - len(r)) for r in rows], columns=names)


def read_fasta_classes(mapping: Mapping[str, str | Path], where: str) -> pd.DataFrame:
    """Records of one FASTA per class → ``id, sequence, label`` (label = the mapping's key)."""
    from dnalm.fasta import iter_records

    frames = []
    for label, path in mapping.items():
        if not Path(path).is_file():
            raise InputFormatError("file not found", where=str(path))
        ids, seqs = [], []
        for name, pieces in iter_records(path):
            ids.append(name.split()[0] if name.strip() else f"{label}_{len(ids)}")
            seqs.append(b"".join(pieces).decode("ascii", errors="replace"))
        if not seqs:
            raise InputFormatError(f"no records for class {label!r}", where=str(path))
        frames.append(pd.DataFrame({"id": ids, "sequence": seqs, "label": str(label)}))
    if not frames:
        raise ConfigError("no FASTA files given", where=where)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Per-format split loading


def _standard_columns(frame: pd.DataFrame, spec: Mapping[str, Any], path: str,
                      split: str) -> pd.DataFrame:
    """Rename the configured columns to ``id, sequence, label`` and check they exist."""
    seq_col, label_col, id_col = spec["sequence_column"], spec["label_column"], spec["id_column"]
    missing = [c for c in (seq_col, label_col) if c not in frame.columns]
    if missing:
        raise InputFormatError(
            f"missing column(s) {', '.join(missing)} (columns are: "
            f"{', '.join(map(str, frame.columns))}); set sequence_column/label_column",
            where=path)
    ids = (frame[id_col].astype(str) if id_col in frame.columns
           else pd.Series([f"{split}_{i}" for i in range(len(frame))], index=frame.index))
    return pd.DataFrame({"id": ids.to_numpy(dtype=object),
                         "sequence": frame[seq_col].to_numpy(dtype=object),
                         "label": frame[label_col].to_numpy(dtype=object)})


def _load_table_split(spec: Mapping[str, Any], split: str) -> pd.DataFrame:
    path = str(spec[split])
    return _standard_columns(read_table(path), spec, path, split)


def _load_bed_split(spec: Mapping[str, Any], split: str, genome: Any) -> pd.DataFrame:
    """Cut each interval's sequence from the genome (reverse complement on ``-``)."""
    path = str(spec[split])
    frame = read_intervals(path)
    need = ["chrom", "start", "end", spec["label_column"]]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise InputFormatError(f"missing column(s) {', '.join(missing)} (columns are: "
                               f"{', '.join(map(str, frame.columns))})", where=path)
    sequences = [_fetch_interval(genome, row, path, i) for i, row in
                 enumerate(frame.itertuples(index=False))]
    frame = frame.assign(**{spec["sequence_column"]: sequences})
    if spec["id_column"] not in frame.columns:
        frame[spec["id_column"]] = [f"{c}:{s}-{e}" for c, s, e in
                                    zip(frame["chrom"], frame["start"], frame["end"], strict=True)]
    return _standard_columns(frame, spec, path, split)


def _fetch_interval(genome: Any, row: Any, path: str, index: int) -> str:
    where = f"{path} row {index + 1}"
    contig = genome.contigs.resolve(str(row.chrom))
    if contig is None:
        raise InputFormatError(f"contig {row.chrom!r} is not in genome {genome.path}",
                               where=where)
    try:
        start, end = int(row.start), int(row.end)
    except (TypeError, ValueError):
        raise InputFormatError(f"start/end {row.start!r}/{row.end!r} are not integers",
                               where=where) from None
    if not 0 <= start < end <= genome.lengths[contig]:
        raise InputFormatError(f"interval {start}-{end} is outside {contig} (length "
                               f"{genome.lengths[contig]}) or empty", where=where)
    seq = genome.fetch(contig, start, end)
    strand = str(getattr(row, "strand", "+") or "+")
    return seq.translate(_COMPLEMENT)[::-1] if strand == "-" else seq


# --------------------------------------------------------------------------------------------
# Label handling and checks


def _check_rows(frame: pd.DataFrame, where: str, split: str, problem: str,
                drop_invalid: bool = False) -> pd.DataFrame:
    """Non-empty split, a nucleotide sequence and a valid label on every row (see the module
    docstring); strips whitespace in sequences. ``drop_invalid`` drops bad rows with a warning
    instead of refusing the first."""
    if frame.empty:
        raise InputFormatError(f"the {split} split is empty", where=where)
    frame = frame.copy()
    seqs = frame["sequence"]
    text = seqs.astype(str).str.replace(r"\s+", "", regex=True)
    frame["sequence"] = text.to_numpy(dtype=object)
    labels = frame["label"]
    label_text = labels.astype(str).str.strip()
    numeric = pd.to_numeric(labels, errors="coerce") if problem == "regression" else None
    checks = [  # (rows failing, why), in the order a row is judged
        ((seqs.isna() | (text == "")).to_numpy(), lambda r: "has no sequence"),
        (text.str.contains(_NOT_NUCLEOTIDE, regex=True).to_numpy(),
         lambda r: _bad_sequence(frame["sequence"].iloc[r])),
        ((labels.isna() | (label_text == "")).to_numpy(), lambda r: "has no label"),
        (label_text.str.lower().isin(MISSING_LABELS).to_numpy(),
         lambda r: f"label {label_text.iloc[r]!r} marks a missing value, not a class"),
    ]
    if numeric is not None:
        finite = np.isfinite(numeric.to_numpy(dtype=float, na_value=np.nan))
        checks.append((~finite, lambda r: f"label {labels.iloc[r]!r} is not a number "
                                          "(a finite one; problem is regression)"))
    bad = np.zeros(len(frame), dtype=bool)
    first, why = len(frame), ""
    for failing, reason in checks:
        rows = np.flatnonzero(failing & ~bad)
        if rows.size and rows[0] < first:
            first, why = int(rows[0]), reason(int(rows[0]))
        bad |= failing
    if bad.any():
        shown = f"row {first + 1} (id {frame['id'].iloc[first]}) {why}"
        if not drop_invalid:
            raise InputFormatError(f"{shown}; fix the row, or drop such rows with drop_invalid: "
                                   "true (dnalm finetune --drop-invalid)",
                                   where=where)
        log.warning("%s: dropped %d of %d rows (drop_invalid: true); first: %s", where,
                    int(bad.sum()), len(frame), shown)
        frame = frame.loc[~bad].reset_index(drop=True)
        if numeric is not None:
            numeric = numeric.loc[~bad].reset_index(drop=True)
        if frame.empty:
            raise InputFormatError(f"the {split} split is empty once invalid rows are dropped",
                                   where=where)
    if numeric is not None:
        frame["label"] = numeric.astype(float).to_numpy()
    else:
        frame["label"] = frame["label"].map(_label_text).to_numpy(dtype=object)
    return frame


def _bad_sequence(seq: str) -> str:
    """Why a sequence is not DNA: its first character that is not a nucleotide code."""
    found = re.search(_NOT_NUCLEOTIDE, seq)
    shown = seq if len(seq) <= 20 else seq[:17] + "..."
    where = f"character {found.group()!r} at position {found.start() + 1}" if found else "it"
    return f"sequence {shown!r}: {where} is not a nucleotide code"


def _label_text(value: Any) -> str:
    """A label as text; ``1.0`` from a float column reads as ``1``."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _label_names(train: pd.DataFrame, where: str) -> list[str]:
    """Class names in id order: integer labels keep their value as id, text labels sort."""
    names = sorted(set(train["label"]))
    if len(names) < 2:
        raise InputFormatError(f"the train split has only one class ({names[0]!r}); "
                               "classification needs at least two", where=where)
    if all(n.lstrip("-").isdigit() for n in names):
        values = sorted(int(n) for n in names)
        if values == list(range(len(values))):
            return [str(v) for v in values]
    return names


def _encode_labels(frame: pd.DataFrame, mapping: dict[str, int], where: str,
                   split: str) -> pd.DataFrame:
    unseen = sorted(set(frame["label"]) - set(mapping))
    if unseen:
        raise InputFormatError(f"{split} label(s) {', '.join(map(repr, unseen[:5]))} never "
                               "occur in the train split", where=where)
    frame = frame.copy()
    frame["label"] = frame["label"].map(mapping).astype(np.int64)
    return frame


def carve_split(frame: pd.DataFrame, fraction: float, seed: int, *, stratify: bool,
                what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into (rest, held-out ``fraction``), stratified by label when possible.

    Stratification keeps rare classes in both parts; it is skipped (with a log line) when a class
    has a single member, which sklearn cannot stratify.
    """
    n_out = max(1, round(len(frame) * fraction))
    if len(frame) - n_out < 1:
        raise InputFormatError(f"too few sequences ({len(frame)}) to carve a {what} split")
    strata = frame["label"] if stratify else None
    if strata is not None:
        counts = strata.value_counts()
        if counts.min() < 2 or n_out < counts.size or len(frame) - n_out < counts.size:
            log.info("%s split: not stratified (a class is too rare)", what)
            strata = None
    rest, held = train_test_split(frame, test_size=n_out, random_state=seed, shuffle=True,
                                  stratify=strata)
    return rest.reset_index(drop=True), held.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Entry point


def _raw_splits(spec: Mapping[str, Any], genome_fasta: str | Path | None,
                seed: int) -> tuple[dict[str, pd.DataFrame | None], dict[str, str], str]:
    """Read the splits a spec names, as text labels, before any carving of dev/test."""
    fmt = spec["format"]
    where = _where(spec)
    sources: dict[str, str] = {}
    if fmt == "fasta":
        if spec.get("fasta"):
            pool = read_fasta_classes(spec["fasta"], where)
            sources = {str(k): str(v) for k, v in spec["fasta"].items()}
            pool = _check_rows(pool, where, "fasta", spec["problem"], spec["drop_invalid"])
            train, test = carve_split(pool, spec["test_fraction"], seed, stratify=True,
                                      what="test")
            return {"train": train, "dev": None, "test": test}, sources, "fasta"
        splits = {s: (read_fasta_classes(spec[s], where) if isinstance(spec.get(s), Mapping)
                      else None) for s in SPLITS}
        return splits, {s: str(spec[s]) for s in SPLITS if spec.get(s)}, "fasta"
    if fmt == "bed":
        from dnalm.genome import Genome

        path = genome_fasta or spec["genome"]
        if not Path(str(path)).is_file():
            raise ConfigError(f"genome {spec['genome']!r}: no prepared genome at {path} (give "
                              "the path of a bgzipped, indexed genome.fa.gz)", where=where)
        with Genome(path) as genome:
            splits = {s: (_load_bed_split(spec, s, genome) if spec.get(s) else None)
                      for s in SPLITS}
        sources = {s: str(spec[s]) for s in SPLITS if spec.get(s)} | {"genome": str(path)}
        return splits, sources, "bed"
    splits = {s: (_load_table_split(spec, s) if spec.get(s) else None) for s in SPLITS}
    return splits, {s: str(spec[s]) for s in SPLITS if spec.get(s)}, "table"


def load_task(spec: Mapping[str, Any], *, name: str | None = None,
              genome_fasta: str | Path | None = None, seed: int = 42) -> TaskData:
    """Load a task from its spec (see the module docstring) into a :class:`TaskData`.

    ``genome_fasta`` is the prepared genome of a ``bed`` task (the workflow passes
    ``results/genomes/{genome}/genome.fa.gz``); without it ``spec["genome"]`` must be that path.
    ``seed`` drives every carved split, so reruns see the same dev set.
    """
    spec = check_spec(spec, name)
    where = _where(spec)
    raw, sources, _ = _raw_splits(spec, genome_fasta, seed)
    checked = {s: (_check_rows(f, str(sources.get(s, where)), s, spec["problem"],
                               spec["drop_invalid"]) if f is not None else None)
               for s, f in raw.items()}
    dev_source = "file"
    if checked["dev"] is None:
        checked["train"], checked["dev"] = carve_split(
            checked["train"], spec["dev_fraction"], seed,
            stratify=spec["problem"] == "classification", what="dev")
        dev_source = f"carved from train (fraction {spec['dev_fraction']}, seed {seed})"
    label_names = None
    if spec["problem"] == "classification":
        label_names = _label_names(checked["train"], str(sources.get("train", where)))
        mapping = {n: i for i, n in enumerate(label_names)}
        checked = {s: _encode_labels(f, mapping, str(sources.get(s, where)), s)
                   for s, f in checked.items()}
    task = TaskData(name=spec["name"], problem=spec["problem"], train=checked["train"],
                    dev=checked["dev"], test=checked["test"], label_names=label_names,
                    dev_source=dev_source, sources=sources)
    log.info("task %s (%s): %s sequences (train/dev/test), dev %s%s", task.name, task.problem,
             "/".join(str(n) for n in task.sizes().values()), dev_source,
             f", labels {task.label_mapping}" if label_names else "")
    return task


_SPLIT_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")


def task_spec_from_dir(task_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """A ``table`` spec for a folder holding ``train``/``test`` (and optionally ``dev``) files.

    This is the GUE layout (``train.csv``, ``dev.csv``, ``test.csv``) and the genomic_benchmarks
    one (no ``dev``); ``.tsv`` and ``.parquet`` work too. ``overrides`` set other spec keys.
    """
    folder = Path(task_dir)
    if not folder.is_dir():
        raise ConfigError("task folder not found", where=str(folder))
    spec: dict[str, Any] = {"name": folder.name, "format": "table"}
    for split in SPLITS:
        found = [folder / f"{split}{suffix}" for suffix in _SPLIT_SUFFIXES
                 if (folder / f"{split}{suffix}").is_file()]
        if len(found) > 1:
            raise ConfigError(f"several {split} files ({', '.join(p.name for p in found)})",
                              where=str(folder))
        spec[split] = str(found[0]) if found else None
    for split in ("train", "test"):
        if spec[split] is None:
            raise ConfigError(f"no {split}.csv/.tsv/.parquet in the task folder",
                              where=str(folder))
    spec.update(overrides)
    return spec
