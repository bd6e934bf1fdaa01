"""Fine-tuned variant effects and mutation maps (DNABERT's functional-variant analysis).

A fine-tuned run (LoRA adapter on its base model, full or merged; :func:`load_finetuned`)
predicts a window around each variant twice, with the reference and with the alternate allele;
the effect is the change alt − ref. As DNABERT's paper (and gReLU, Enformer-style tools) do,
this finds the variants that change what the run has learnt to see (an enhancer, a promoter).

* **Window**: ``window_bp`` (default: the run's own input length as its tokenizer reads the
  genome, :func:`dnalm.score.vep.window_bases`) centred on the variant, shifted and flagged
  (``window_shifted``) at contig ends, as zero-shot scoring places its windows; ``tiled``
  windows (saturation) let nearby variants share the reference window. When the tokens of a
  window exceed the run's input, they are cropped around the variant (``tiled``: around the
  window's middle, never losing the variant's tokens).
* **Outputs** per class ``c``: ``ref_prob_c``, ``alt_prob_c``, ``delta_prob_c`` (alt − ref)
  and ``delta_logodds_c`` = logit(alt) − logit(ref); ``score`` is ``delta_logodds`` of
  ``class_index``. Regression runs: ``ref_value``, ``alt_value`` and ``score`` = alt − ref on
  the scale of the training labels. ``average_strands``: each allele's outputs are the mean of
  the forward and the reverse-complement window (``score_fwd``/``score_rev`` per strand).
* **No variant dropped**: every input row comes out; ``reason`` says why one has no score
  (checks of :func:`dnalm.variants.check_against_genome`, a variant longer than half the
  window, the rule zero-shot scores share: :func:`dnalm.score.vep.too_long_for_window`,
  alleles whose changed tokens exceed the run's input).

Every distinct input is run once (alleles and strands de-duplicated by content), length-sorted
in batches with :func:`dnalm.finetune.train.predict_outputs`, the function that computed the
run's own test predictions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dnalm.errors import ConfigError
from dnalm.finetune.settings import EffectSettings
from dnalm.genome import Genome
from dnalm.io import atomic_file, write_table
from dnalm.score.vep import (
    place_windows,
    reverse_complement,
    too_long_for_window,
    window_bases,
    window_sequences,
)

log = logging.getLogger(__name__)

#: Key columns every effects table starts with (those of zero-shot score tables).
KEY_COLUMNS = ["record", "contig", "pos", "ref", "alt", "id", "reason", "window",
               "window_shifted"]
#: INFO keys of the annotated VCF (zero-shot scoring writes DNALM / DNALM_SKIP).
INFO_SCORE, INFO_PROB, INFO_SKIP = "DNALM_FT", "DNALM_FT_DP", "DNALM_FT_SKIP"
_EPS = 1e-12


@dataclass
class _Inputs:
    """Distinct model inputs (token id rows) and, per (strand, variant, allele), which row."""

    rows: list[list[int]]
    index: dict[bytes, int]

    def add(self, row: np.ndarray) -> int:
        key = row.astype(np.int64).tobytes()
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self.rows)
            self.rows.append(row.tolist())
        return found


def _crop(starts: np.ndarray, ends: np.ndarray, lo_bp: int, hi_bp: int, room: int,
          focus_bp: int) -> tuple[int, int] | None:
    """Token slice ``[a, a + room)`` (or all) that holds the tokens overlapping bases
    ``[lo_bp, hi_bp)``, centred on base ``focus_bp``; None if those tokens exceed ``room``."""
    n = len(starts)
    first = int(np.searchsorted(ends, lo_bp, side="right"))
    last = max(first, int(np.searchsorted(starts, max(hi_bp, lo_bp + 1), side="left")))
    if last - first > room:
        return None
    if n <= room:
        return 0, n
    focus = int(np.searchsorted(ends, focus_bp, side="right"))
    a = min(max(focus - room // 2, 0), n - room)
    a = max(min(a, first), last - room)
    return a, a + room


def effect_table(run: Any, genome: Genome, variants: pd.DataFrame,
                 settings: EffectSettings) -> pd.DataFrame:
    """Effects of checked variants (:func:`dnalm.variants.check_against_genome`) under a loaded
    run (:class:`dnalm.finetune.train.FinetunedModel`); every input row comes out."""
    began = time.perf_counter()
    meta, encoder = run.meta, run.encoder
    tok = encoder.tokenizer
    room = encoder.max_length - encoder.n_special
    classification = meta["problem"] != "regression"
    n_classes = int(meta.get("num_labels", 1)) if classification else 1
    if classification and not 0 <= settings.class_index < n_classes:
        raise ConfigError(f"class_index {settings.class_index} is out of range for the run's "
                          f"{n_classes} classes")
    window = settings.window_bp or window_bases(tok, genome, room)
    out = variants.copy().reset_index(drop=True)
    out["window"], out["window_shifted"] = "", False
    ref_len = out["ref"].astype(str).str.len().to_numpy()
    alt_len = out["alt"].astype(str).str.len().to_numpy()
    too_long, why = too_long_for_window(out["ref"], out["alt"], window)
    out.loc[too_long & (out["reason"].to_numpy() == ""), "reason"] = why
    ok = np.flatnonzero(out["reason"].to_numpy() == "")
    strands = ("fwd", "rev") if settings.average_strands else ("fwd",)
    outputs = np.full((len(strands), 2, len(out), n_classes), np.nan)
    if len(ok):
        sub = out.iloc[ok]
        lengths = np.array([genome.lengths[c] for c in sub["genome_contig"]], dtype=np.int64)
        win = place_windows(sub["start"].to_numpy(), ref_len[ok], lengths, window,
                            settings.windows)
        out.loc[ok, "window"] = [f"{c}:{s}-{e}" for c, s, e in
                                 zip(sub["genome_contig"], win.starts, win.ends, strict=True)]
        out.loc[ok, "window_shifted"] = win.shifted
        refs, alts = window_sequences(genome, sub, win)
        offsets = (sub["start"].to_numpy() - win.starts).astype(np.int64)
        inputs = _Inputs([], {})
        slots = np.full((len(strands), 2, len(ok)), -1, dtype=np.int64)
        for s, strand in enumerate(strands):
            for a, (seqs, lens) in enumerate(((refs, ref_len[ok]), (alts, alt_len[ok]))):
                _plan_allele(tok, inputs, slots[s, a], seqs, lens, offsets, room,
                             reverse=strand == "rev", tiled=settings.windows == "tiled")
        unfit = (slots < 0).any(axis=(0, 1))
        out.loc[ok[unfit], "reason"] = "changed tokens longer than the run's input"
        predicted = run.outputs(inputs.rows, settings.batch_size)
        if len(predicted):
            predicted = predicted.reshape(len(inputs.rows), n_classes)
            fit = np.flatnonzero(~unfit)
            outputs[:, :, ok[fit]] = predicted[slots[:, :, fit]]
    _effect_columns(out, outputs, meta, settings.class_index, classification)
    elapsed = time.perf_counter() - began
    scored = int(out["score"].notna().sum())
    log.info("fine-tuned effects of %d of %d variants in %.1f s (%.1f variants/s, window %d bp"
             "%s)", scored, len(out), elapsed, scored / max(elapsed, 1e-9), window,
             ", both strands" if settings.average_strands else "")
    return out


def _plan_allele(tok: Any, inputs: _Inputs, slots: np.ndarray, seqs: list[str],
                 lens: np.ndarray, offsets: np.ndarray, room: int, *, reverse: bool,
                 tiled: bool) -> None:
    """Token rows of one allele's windows (one strand) into ``inputs``; ``slots`` their rows."""
    if reverse:
        seqs = [reverse_complement(s) for s in seqs]
    unique = list(dict.fromkeys(seqs))
    where = {s: i for i, s in enumerate(unique)}
    batch = tok.encode_batch(unique)
    for i, seq in enumerate(seqs):
        ids, starts, ends = batch.row(where[seq])
        lo = int(len(seq) - offsets[i] - lens[i]) if reverse else int(offsets[i])
        hi = lo + int(lens[i])
        focus = len(seq) // 2 if tiled else (lo + hi) // 2
        span = _crop(starts, ends, lo, hi, room, focus)
        if span is not None:
            slots[i] = inputs.add(tok.wrap(ids[span[0]:span[1]]))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _effect_columns(out: pd.DataFrame, outputs: np.ndarray, meta: dict, class_index: int,
                    classification: bool) -> None:
    """Per-class columns and ``score`` from outputs[strand, allele, variant, class]."""
    mean = outputs.mean(axis=0)  # strands averaged per allele
    ref, alt = mean[0], mean[1]
    if classification:
        for c in range(ref.shape[1]):
            out[f"ref_prob_{c}"] = ref[:, c]
            out[f"alt_prob_{c}"] = alt[:, c]
            out[f"delta_prob_{c}"] = alt[:, c] - ref[:, c]
            out[f"delta_logodds_{c}"] = _logit(alt[:, c]) - _logit(ref[:, c])
        per_strand = _logit(outputs[:, 1, :, class_index]) - _logit(outputs[:, 0, :, class_index])
        out["score"] = out[f"delta_logodds_{class_index}"]
    else:
        out["ref_value"], out["alt_value"] = ref[:, 0], alt[:, 0]
        per_strand = outputs[:, 1, :, 0] - outputs[:, 0, :, 0]
        out["score"] = alt[:, 0] - ref[:, 0]
    out["score_fwd"] = per_strand[0]
    out["score_rev"] = per_strand[1] if len(per_strand) > 1 else np.nan


def _metadata(run_dir: str | Path, run: Any, settings: EffectSettings) -> dict[str, Any]:
    meta = run.meta
    names = meta.get("label_names") or None
    cls = settings.class_index
    return {"run": str(run_dir), "base_model": meta.get("base_model"),
            "method": meta.get("method"), "problem": meta["problem"], "label_names": names,
            "class_index": cls if meta["problem"] != "regression" else None,
            "class_name": (names[cls] if names and cls < len(names) else str(cls))
            if meta["problem"] != "regression" else None,
            "settings": dataclasses.asdict(settings)}


def _write(frame: pd.DataFrame, meta: dict[str, Any], path: str | Path) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({b"dnalm": json.dumps(meta).encode()})
    write_table(table, path, row_group_size=65_536)  # the gather holds one row group at a time
    return table


def _columns(frame: pd.DataFrame) -> list[str]:
    extra = [c for c in frame.columns if c.startswith(("ref_prob_", "alt_prob_", "delta_prob_",
                                                       "delta_logodds_", "ref_value",
                                                       "alt_value"))]
    return [*KEY_COLUMNS, "score", "score_fwd", "score_rev", *extra]


def effects_region(run_dir: str | Path, genome_path: str | Path,
                   variants_path: str | Path | None, out_parquet: str | Path, *,
                   settings: EffectSettings, partition: str | Path | None = None, job: int = 0,
                   match_chr_prefix: bool = True, gpus: int | None = None) -> pd.DataFrame:
    """Effects of one job's variants: job ``job`` of a partition (:mod:`dnalm.partition`, the
    workflow's region jobs, shared with zero-shot scoring), or every variant of
    ``variants_path`` (``dnalm variant-effects``)."""
    from dnalm.finetune.predict import require_finetuned_run
    from dnalm.finetune.train import load_finetuned
    from dnalm.partition import job_variants

    require_finetuned_run(run_dir)
    run = load_finetuned(run_dir, gpus=gpus)
    with Genome(genome_path, match_chr_prefix=match_chr_prefix) as genome:
        subset = job_variants(genome, variants_path=variants_path, partition=partition, job=job)
        table = effect_table(run, genome, subset, settings)
    table = table[_columns(table)]
    _write(table, _metadata(run_dir, run, settings), out_parquet)
    log.info("job %d: %d variants, %d with an effect", job, len(table),
             int(table["score"].notna().sum()))
    return table


def gather_effects(parts: list[str | Path], out_parquet: str | Path) -> int:
    """Region tables merged in order (streamed, :func:`dnalm.score.run.gather_scores`), with
    the run's metadata kept."""
    from dnalm.score.run import gather_scores

    count = gather_scores(parts, out_parquet)
    meta = (pq.read_schema(parts[0]).metadata or {}).get(b"dnalm")
    if meta is not None:
        table = pq.read_table(out_parquet)
        write_table(table.replace_schema_metadata({b"dnalm": meta}), out_parquet)
    return count


def effects_vcf(table_path: str | Path, vcf_in: str | Path, vcf_out: str | Path) -> Path:
    """The input VCF with ``DNALM_FT`` (log-odds change of the chosen class, or the value's
    change), ``DNALM_FT_DP`` (probability change) and ``DNALM_FT_SKIP`` per ALT allele."""
    from dnalm.variants import annotate_vcf_streaming

    meta = json.loads((pq.read_schema(table_path).metadata or {}).get(b"dnalm", b"{}"))
    run = Path(str(meta.get("run", "?"))).name
    if meta.get("problem") == "regression":
        fields = ((INFO_SCORE, f"dnalm fine-tuned run {run}: predicted value alt - ref", "score"),)
    else:
        c, name = meta.get("class_index", 1), meta.get("class_name")
        fields = (
            (INFO_SCORE, f"dnalm fine-tuned run {run}: log-odds of class {name} alt - ref",
             "score"),
            (INFO_PROB, f"dnalm fine-tuned run {run}: probability of class {name} alt - ref",
             f"delta_prob_{c}"),
        )
    return annotate_vcf_streaming(vcf_in, table_path, vcf_out, fields=fields,
                                  reason_field=INFO_SKIP)


# --------------------------------------------------------------------------------------------
# Saturation mutagenesis with a fine-tuned run: mutation maps


def saturate_effects(run_dir: str | Path, genome_path: str | Path, bed_path: str | Path,
                     out_parquet: str | Path, out_bigwig: str | Path,
                     out_png: str | Path | None = None, *, settings: EffectSettings,
                     match_chr_prefix: bool = True, gpus: int | None = None) -> pd.DataFrame:
    """Every position of the BED regions × its three alternatives under a fine-tuned run:
    Parquet (a row per substitution), a bigWig of the per-position maximum |score| and a
    mutation-map picture of the regions up to ``settings.map_max_bp`` long."""
    from dnalm.finetune.predict import require_finetuned_run
    from dnalm.finetune.train import load_finetuned
    from dnalm.score.saturation import read_bed, saturation_variants, write_position_bigwig

    require_finetuned_run(run_dir)
    tiled = dataclasses.replace(settings, windows="tiled")
    with Genome(genome_path, match_chr_prefix=match_chr_prefix) as genome:
        variants = saturation_variants(genome, read_bed(bed_path, genome))
        run = load_finetuned(run_dir, gpus=gpus)  # after the regions are known to be good
        table = effect_table(run, genome, variants, tiled)
        write_position_bigwig(table.assign(score=table["score"].abs()), genome, out_bigwig,
                              reduce="max")
    columns = ["id"] + [c for c in _columns(table) if c not in ("id", "record")]
    frame = table[columns].rename(columns={"id": "region"})
    meta = _metadata(run_dir, run, tiled)
    _write(frame, meta, out_parquet)
    if out_png is not None:
        plot_mutation_map(frame, out_png, max_bp=settings.map_max_bp,
                          label=f"{meta['class_name'] or 'value'}")
    return frame


def mutation_matrix(frame: pd.DataFrame) -> tuple[str, np.ndarray]:
    """One region's reference sequence and its 4 × L matrix of ``score`` (rows A, C, G, T;
    the reference base's own cell is 0)."""
    positions = np.sort(frame["pos"].unique())
    index = {p: i for i, p in enumerate(positions)}
    ref = frame.drop_duplicates("pos").set_index("pos")["ref"].reindex(positions)
    matrix = np.zeros((4, len(positions)))
    rows = {b: i for i, b in enumerate("ACGT")}
    for pos, alt, score in zip(frame["pos"], frame["alt"], frame["score"], strict=True):
        if alt in rows:
            matrix[rows[alt], index[pos]] = score
    return "".join(ref.astype(str)), matrix


def plot_mutation_map(frame: pd.DataFrame, path: str | Path, *, max_bp: int = 600,
                      label: str = "class", per_line: int = 100, max_regions: int = 6) -> None:
    """Position × base heatmaps (reference bases along the axis) of the regions up to
    ``max_bp`` long, ``per_line`` bases a row; longer regions are named, not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regions = [(name, g) for name, g in frame.groupby("region", sort=False)]
    drawn = [(n, g) for n, g in regions if g["pos"].nunique() <= max_bp][:max_regions]
    lines = []
    for name, group in drawn:
        seq, matrix = mutation_matrix(group)
        first = int(group["pos"].min())
        for a in range(0, len(seq), per_line):
            lines.append((name, first + a, seq[a:a + per_line], matrix[:, a:a + per_line]))
    scale = max((np.nanmax(np.abs(m)) for *_, m in lines), default=1.0) or 1.0
    fig, axes = plt.subplots(max(1, len(lines)), 1, figsize=(16, 1.1 * max(1, len(lines)) + 0.8),
                             squeeze=False)
    for ax, (name, start, seq, matrix) in zip(axes[:, 0], lines, strict=False):
        image = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", vmin=-scale, vmax=scale,
                          interpolation="nearest")
        cols = [j for j, b in enumerate(seq) if b in "ACGT"]
        ax.scatter(cols, ["ACGT".index(seq[j]) for j in cols], s=3, c="k", marker="o")
        ax.set_yticks(range(4), list("ACGT"), fontsize=6)
        ax.set_xticks(range(len(seq)), list(seq), fontsize=4.5, family="monospace")
        ax.set_ylabel(f"{name}\n{start:,}", fontsize=6, rotation=0, ha="right", va="center")
    if not lines:
        axes[0, 0].text(0.5, 0.5, f"no region of at most {max_bp} bp to draw", ha="center")
        axes[0, 0].set_axis_off()
    else:
        fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.02, pad=0.01,
                     label=f"log-odds change ({label})")
    skipped = len(regions) - len(drawn)
    fig.suptitle("Mutation map of the fine-tuned run (alt − ref; reference base 0)"
                 + (f"; {skipped} region(s) not drawn" if skipped else ""), fontsize=9)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def effects_report(table_path: str | Path, out_html: str | Path, *, title: str,
                   top: int = 50) -> None:
    """The variants with the largest |effect| as an HTML table for ``snakemake --report``."""
    from dnalm.report import table_html

    meta = json.loads((pq.read_schema(table_path).metadata or {}).get(b"dnalm", b"{}"))
    frame = pd.read_parquet(table_path)
    skipped = int(frame["score"].isna().sum())
    shown = frame.dropna(subset=["score"]).reindex(
        frame["score"].abs().dropna().sort_values(ascending=False).index)
    what = ("predicted value" if meta.get("problem") == "regression"
            else f"log-odds of class {meta.get('class_name')}")
    note = (f"Fine-tuned run {meta.get('run')} ({meta.get('method')}): change alt − ref in the "
            f"{what} over a window centred on each variant; the {top} largest |changes| of "
            f"{len(frame) - skipped} scored variants ({skipped} not scored, reason in the table).")
    keep = [c for c in ("contig", "pos", "ref", "alt", "id", "score", "window") if c in shown]
    keep += [c for c in shown.columns if c.startswith("delta_prob_")]
    table_html(shown[keep].head(top), out_html, title=title, note=note)
