"""Zero-shot variant effect scores with a masked language model, as ESM-1v.

For a variant changing positions ``T`` (all masked together) the masked-marginal score is

    sum_{t in T} log p(x_t = alt | x_{-T}) - log p(x_t = ref | x_{-T})

How ``T`` is found for any tokenizer: the reference and alternate windows are tokenized, and the
smallest token spans that differ (longest common prefix of (id, start) and suffix of (id, end))
are the changed spans ``R`` (reference) and ``A`` (alternate).

* Single nucleotides: ``R``/``A`` are exactly the changed bases (exact ESM-1v).
* Overlapping k-mers: every token that overlaps a changed base differs, so all of them are masked.
* BPE / non-overlapping k-mers: a change can re-segment its neighbourhood; the differing spans
  are masked each in its own sequence and ``sum log p(A | alt with A masked) - sum log p(R | ref
  with R masked)`` is the score. When ``R`` and ``A`` have the same length, the two masked
  sequences are identical and one pass serves both.

Modes: ``masked-marginal`` (above), ``wt-marginal`` (one unmasked pass over the reference window;
needs ``|R| == |A|``, otherwise that variant falls back to masked-marginal and its ``reason``
says so) and ``pll`` (pseudo-log-likelihood of the alternate window minus that of the reference
window, each position masked in turn; ``pll_flank`` limits it to tokens near the change).

A variant longer than half the window (REF or ALT) is not scored, and its ``reason`` names the
window (:func:`too_long_for_window`, the rule fine-tuned effects share).

Every masked input is built once: alleles at one position, and variants whose masked reference
spans coincide, share passes (inputs are de-duplicated by content). Passes are sorted by length,
batched, and the LM head is evaluated only at the positions that are read.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dnalm.genome import Genome
from dnalm.score.lm import MaskedLM
from dnalm.score.settings import ScoreConfig

log = logging.getLogger(__name__)

_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


#: Genome sample on which a tokenizer's bases per token are measured: pieces x bases.
_SAMPLE_PIECES, _SAMPLE_PIECE_BP = 16, 4_000


#: Bases per token measured per tokenizer object and genome (weak keys: dropped with the model).
_BASES_PER_TOKEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def bases_per_token(tokenizer: Any, genome: Genome) -> float:
    """Mean bases per content token of a model's tokenizer on this genome (measured once).

    Evenly spaced pieces of the genome's contigs (N-only pieces skipped) are tokenized with the
    model's own tokenizer: GENA-LM's 32k BPE averages about 9 bp per token, DNABERT-2's about
    5, NT's 6-mers just under 6 (leftovers and N are single tokens), single bases 1. Zero-shot
    scoring and fine-tuned effects size their windows with it.
    """
    cache = _BASES_PER_TOKEN.setdefault(tokenizer, {})
    key = getattr(genome, "path", id(genome))
    if key in cache:
        return cache[key]
    if tokenizer.kind in ("char", "kmer"):  # every token adds exactly one base
        cache[key] = 1.0
        return 1.0
    pieces = []
    contigs = sorted(genome.lengths.items(), key=lambda kv: -kv[1])
    per_contig = max(1, _SAMPLE_PIECES // len(contigs))
    for contig, length in contigs:
        for j in range(per_contig):
            start = int(length * (j + 0.5) / per_contig)
            seq = genome.fetch(contig, start, min(length, start + _SAMPLE_PIECE_BP)).upper()
            if seq and seq.count("N") < len(seq) // 2:
                pieces.append(seq)
        if len(pieces) >= _SAMPLE_PIECES:
            break
    if not pieces:
        cache[key] = 4.0  # an all-N genome: nothing to measure, nothing to score either
        return 4.0
    batch = tokenizer.encode_batch(pieces)
    value = sum(map(len, pieces)) / max(1, batch.num_tokens)
    cache[key] = value
    log.info("tokenizer reads %.2f bases per token on this genome", value)
    return value


def window_bases(tokenizer: Any, genome: Genome, tokens: int, *, margin: float = 1.1) -> int:
    """Bases that give at least ``tokens`` content tokens with a model's tokenizer.

    Exact for single bases (``tokens``) and overlapping k-mers (``tokens + k - 1``); measured
    for BPE and NT k-mers, with ``margin`` to spare: tokens beyond the input are cropped around
    the variant, so a window that is a little too long still fills the model's input.
    """
    if tokenizer.kind == "char":
        return tokens
    if tokenizer.kind == "kmer":
        return tokens + (tokenizer.k or 1) - 1
    return int(np.ceil(tokens * bases_per_token(tokenizer, genome) * margin))


@dataclass
class _Plan:
    """De-duplicated forward passes and the log-probabilities each variant reads from them."""

    inputs: list[np.ndarray] = field(default_factory=list)
    contexts: list[np.ndarray | None] = field(default_factory=list)
    positions: list[list[int]] = field(default_factory=list)
    _index: dict[bytes, int] = field(default_factory=dict)
    _pos_index: list[dict[int, int]] = field(default_factory=list)
    read_pass: list[int] = field(default_factory=list)
    read_pos: list[int] = field(default_factory=list)
    read_token: list[int] = field(default_factory=list)
    read_target: list[int] = field(default_factory=list)
    read_sign: list[float] = field(default_factory=list)

    def add_pass(self, ids: np.ndarray, context: np.ndarray | None = None) -> int:
        """The index of the pass over ``ids`` (read after ``context`` through memory, if any)."""
        key = ids.tobytes() if context is None else ids.tobytes() + b"|" + context.tobytes()
        index = self._index.get(key)
        if index is None:
            index = len(self.inputs)
            self._index[key] = index
            self.inputs.append(ids)
            self.contexts.append(context)
            self.positions.append([])
            self._pos_index.append({})
        return index

    def read(self, pass_index: int, position: int, token: int, target: int, sign: float) -> None:
        slots = self._pos_index[pass_index]
        slot = slots.get(position)
        if slot is None:
            slot = slots[position] = len(self.positions[pass_index])
            self.positions[pass_index].append(position)
        self.read_pass.append(pass_index)
        self.read_pos.append(slot)
        self.read_token.append(token)
        self.read_target.append(target)
        self.read_sign.append(sign)


def _diff_spans(ref_ids, ref_starts, ref_ends, alt_ids, alt_starts, alt_ends, delta):
    """Lengths of the common token prefix and suffix of two tokenized windows."""
    n_ref, n_alt = len(ref_ids), len(alt_ids)
    limit = min(n_ref, n_alt)
    same = (ref_ids[:limit] == alt_ids[:limit]) & (ref_starts[:limit] == alt_starts[:limit])
    prefix = limit if same.all() else int(np.argmin(same))
    limit_suffix = limit - prefix
    if limit_suffix == 0:
        return prefix, 0
    r = slice(n_ref - limit_suffix, n_ref)
    a = slice(n_alt - limit_suffix, n_alt)
    same_tail = (ref_ids[r] == alt_ids[a]) & (ref_ends[r] + delta == alt_ends[a])
    same_tail = same_tail[::-1]
    suffix = limit_suffix if same_tail.all() else int(np.argmin(same_tail))
    return prefix, suffix


def _crop(prefix: int, suffix: int, span: int, budget: int) -> tuple[int, int]:
    """How many prefix/suffix tokens to keep so that prefix + span + suffix fits ``budget``."""
    room = budget - span
    keep_left = min(prefix, max(room // 2, room - suffix))
    keep_right = min(suffix, room - keep_left)
    keep_left = min(prefix, room - keep_right)
    return keep_left, keep_right


def too_long_for_window(ref: pd.Series, alt: pd.Series, window: int) -> tuple[np.ndarray, str]:
    """Which variants are too long for a ``window``-bp window, and the reason they get.

    One rule for zero-shot scores and fine-tuned effects: a variant whose REF or ALT is longer
    than half the window is not scored. Windows are centred on the change, so a longer one
    leaves less than a quarter of the window as context on each side, and one longer than the
    whole window is not in it at all (a 2-kb deletion "scored" from a 62-bp window beside it).
    Skipping says so in the row; a wider window (``window_bp``) scores such variants, as far as
    the model's input holds their changed tokens.
    """
    longest = np.maximum(ref.astype(str).str.len().to_numpy(), alt.astype(str).str.len().to_numpy())
    return longest > window // 2, (f"variant longer than half the {window}-bp window (REF or ALT "
                                   f"over {window // 2} bp): the window cannot hold it with its "
                                   "context")


@dataclass
class _Windows:
    starts: np.ndarray
    ends: np.ndarray
    shifted: np.ndarray


def place_windows(
    starts: np.ndarray, ref_lengths: np.ndarray, contig_lengths: np.ndarray, window: int,
    strategy: str = "centred",
) -> _Windows:
    """Windows of ``window`` bp around each variant, shifted (and flagged) at contig ends.

    ``centred``: each variant in the middle of its own window. ``tiled``: windows tile the contig
    with a stride of half a window and each variant takes the one where it is most central, so
    nearby variants share a window, its tokenization and (in wt-marginal mode) its forward pass.
    """
    centre = starts + ref_lengths // 2
    if strategy == "tiled":
        stride = max(1, window // 2)
        ws = (centre - window // 4) // stride * stride
        shifted_ref = np.clip(ws, 0, np.maximum(contig_lengths - window, 0))
        we = np.minimum(shifted_ref + window, contig_lengths)
        return _Windows(shifted_ref, we, np.zeros(len(ws), dtype=bool))
    ws = centre - window // 2
    clipped = np.clip(ws, 0, np.maximum(contig_lengths - window, 0))
    we = np.minimum(clipped + window, contig_lengths)
    return _Windows(clipped, we, clipped != ws)


def unscored(variants: pd.DataFrame, mode: str) -> pd.DataFrame:
    """The variant rows with empty score columns (what a variant with a skip reason gets)."""
    out = variants.copy().reset_index(drop=True)
    for column in ("score", "score_fwd", "score_rev"):
        out[column] = np.nan
    out["mode"] = mode
    out["window"] = ""
    out["window_shifted"] = False
    out["masked_ref_tokens"] = 0
    out["masked_alt_tokens"] = 0
    return out


def score_variants(
    lm: MaskedLM, genome: Genome, variants: pd.DataFrame, cfg: ScoreConfig
) -> pd.DataFrame:
    """Score checked variants (see :func:`dnalm.variants.check_against_genome`).

    Returns the input rows with ``score``, ``mode``, ``reason``, ``window`` and diagnostics.
    """
    t0 = time.perf_counter()
    out = unscored(variants, cfg.mode)
    if not (out["reason"].to_numpy() == "").any():
        return out
    window = cfg.window_bp or window_bases(lm.tokenizer, genome, lm.max_content)
    too_long, why = too_long_for_window(out["ref"], out["alt"], window)
    out.loc[too_long & (out["reason"].to_numpy() == ""), "reason"] = why
    ok = np.flatnonzero(out["reason"].to_numpy() == "")
    if len(ok) == 0:
        return out
    sub = out.iloc[ok]
    lengths = np.array([genome.lengths[c] for c in sub["genome_contig"]], dtype=np.int64)
    ref_len = sub["ref"].str.len().to_numpy()
    win = place_windows(sub["start"].to_numpy(), ref_len, lengths, window, cfg.windows)
    ref_windows, alt_windows = window_sequences(genome, sub, win)
    out.loc[ok, "window"] = [
        f"{c}:{s}-{e}" for c, s, e in zip(sub["genome_contig"], win.starts, win.ends, strict=True)
    ]
    out.loc[ok, "window_shifted"] = win.shifted
    strands = [("fwd", ref_windows, alt_windows)]
    if cfg.average_strands:
        strands.append(("rev", [reverse_complement(s) for s in ref_windows],
                        [reverse_complement(s) for s in alt_windows]))
    plan = _Plan()
    notes: dict[int, str] = {}
    modes: dict[int, str] = {}
    spans: dict[int, tuple[int, int]] = {}
    n_targets = len(ok) * len(strands)
    if lm.context_tokens:
        log.info("memory model: each window also reads up to %d upstream tokens through its "
                 "recurrent memory", lm.context_tokens)
    for strand_index, (name, refs, alts) in enumerate(strands):
        deltas = (sub["alt"].str.len() - sub["ref"].str.len()).to_numpy()
        contexts = (_upstream_contexts(lm, genome, sub["genome_contig"], win, lengths,
                                       reverse=name == "rev") if lm.context_tokens else None)
        _plan_strand(lm, plan, refs, alts, deltas, cfg, strand_index, len(ok), notes, modes, spans,
                     contexts)
    totals = _execute(lm, plan, n_targets, cfg.batch_size)
    per_strand = totals.reshape(len(strands), len(ok))
    failed = np.zeros(len(ok), dtype=bool)
    for i, note in notes.items():
        if note.startswith("skip:"):
            failed[i] = True
    fwd = per_strand[0]
    out.loc[ok, "score_fwd"] = np.where(failed, np.nan, fwd)
    if cfg.average_strands:
        rev = per_strand[1]
        out.loc[ok, "score_rev"] = np.where(failed, np.nan, rev)
        out.loc[ok, "score"] = np.where(failed, np.nan, (fwd + rev) / 2)
    else:
        out.loc[ok, "score"] = np.where(failed, np.nan, fwd)
    # one vectorised assignment per column: a .loc per variant cost ~40 % of GPU scoring time
    if notes:
        out.loc[ok[list(notes)], "reason"] = [n.removeprefix("skip:") for n in notes.values()]
    if modes:
        out.loc[ok[list(modes)], "mode"] = list(modes.values())
    if spans:
        counts = np.array(list(spans.values()), dtype=np.int64).reshape(-1, 2)
        out.loc[ok[list(spans)], "masked_ref_tokens"] = counts[:, 0]
        out.loc[ok[list(spans)], "masked_alt_tokens"] = counts[:, 1]
    elapsed = time.perf_counter() - t0
    scored = int(out["score"].notna().sum())
    log.info("scored %d of %d variants in %.1fs (%.1f variants/s, %d forward passes, mode %s)",
             scored, len(out), elapsed, scored / max(elapsed, 1e-9), len(plan.inputs), cfg.mode)
    return out


def window_sequences(genome: Genome, sub: pd.DataFrame, win: _Windows) -> tuple[list, list]:
    """Reference and alternate sequences of each variant's window (upper case)."""
    refs, alts = [], []
    cache: dict[tuple[str, int, int], str] = {}
    for contig, start, ref, alt, ws, we in zip(
        sub["genome_contig"], sub["start"], sub["ref"], sub["alt"], win.starts, win.ends,
        strict=True,
    ):
        key = (contig, int(ws), int(we))
        seq = cache.get(key)
        if seq is None:
            seq = cache[key] = genome.fetch(contig, int(ws), int(we)).upper()
        p = int(start - ws)
        if p < 0 or p + len(ref) > len(seq):  # guarded by too_long_for_window: never silent
            raise ValueError(f"variant at {contig}:{start + 1} is not inside its window "
                             f"{contig}:{ws}-{we}")
        refs.append(seq)
        alts.append(seq[:p] + alt + seq[p + len(ref) :])
    return refs, alts


def _upstream_contexts(lm: MaskedLM, genome: Genome, contigs, win: _Windows,
                       contig_lengths: np.ndarray, *, reverse: bool) -> list[np.ndarray]:
    """Token ids of the sequence read before each window (``lm.context_tokens`` at most).

    Forward strand: the bases left of the window. Reverse strand (``average_strands``): the
    window is read reverse-complemented, so its upstream is the reverse complement of the bases
    right of it. Reference alleles (the variant lies in the window itself).
    """
    span = window_bases(lm.tokenizer, genome, lm.context_tokens, margin=1.5)
    spans = []
    for contig, ws, we, n in zip(contigs, win.starts, win.ends, contig_lengths, strict=True):
        lo, hi = (int(we), min(int(n), int(we) + span)) if reverse else (max(0, int(ws) - span),
                                                                         int(ws))
        spans.append((contig, lo, hi))
    sequences = {}
    for contig, lo, hi in dict.fromkeys(spans):
        seq = genome.fetch(contig, lo, hi).upper() if hi > lo else ""
        sequences[(contig, lo, hi)] = reverse_complement(seq) if reverse else seq
    tokens = _encode(lm, list(sequences.values()))  # _encode de-duplicates
    empty = np.zeros(0, dtype=np.int64)
    out = []
    for key in spans:
        seq = sequences[key]
        ids = np.asarray(tokens[seq][0], dtype=np.int64) if seq else empty
        out.append(ids[len(ids) - lm.context_tokens :] if len(ids) > lm.context_tokens else ids)
    return out


def _encode(lm: MaskedLM, sequences: Sequence[str]):
    unique = list(dict.fromkeys(sequences))
    batch = lm.tokenizer.encode_batch(unique)
    rows = {}
    for i, seq in enumerate(unique):
        a, b = batch.row_offsets[i], batch.row_offsets[i + 1]
        rows[seq] = (batch.ids[a:b], batch.starts[a:b], batch.ends[a:b])
    return rows


def _plan_strand(lm, plan, refs, alts, deltas, cfg, strand, n, notes, modes, spans,
                 contexts=None) -> None:
    ref_tokens = _encode(lm, refs)
    alt_tokens = _encode(lm, alts)
    mask = lm.special.mask
    budget = lm.max_content
    offset = len(lm.special.prefix)
    for i in range(n):
        target = strand * n + i
        r_ids, r_st, r_en = ref_tokens[refs[i]]
        a_ids, a_st, a_en = alt_tokens[alts[i]]
        prefix, suffix = _diff_spans(r_ids, r_st, r_en, a_ids, a_st, a_en, int(deltas[i]))
        n_r, n_a = len(r_ids) - prefix - suffix, len(a_ids) - prefix - suffix
        if n_r == 0 and n_a == 0:
            notes[i] = "skip:alleles tokenize identically"
            continue
        if max(n_r, n_a) > budget:
            notes[i] = "skip:changed token span longer than the model input"
            continue
        keep_l, keep_r = _crop(prefix, suffix, max(n_r, n_a), budget)
        ref_in = r_ids[prefix - keep_l : len(r_ids) - suffix + keep_r]
        alt_in = a_ids[prefix - keep_l : len(a_ids) - suffix + keep_r]
        r_pos = np.arange(keep_l, keep_l + n_r) + offset
        a_pos = np.arange(keep_l, keep_l + n_a) + offset
        r_tok = r_ids[prefix : prefix + n_r]
        a_tok = a_ids[prefix : prefix + n_a]
        if strand == 0:
            spans[i] = (n_r, n_a)
        context = None if contexts is None else contexts[i]
        mode = cfg.mode
        if mode == "wt-marginal" and n_r != n_a:
            mode = "masked-marginal"
            notes.setdefault(i, "wt-marginal needs equal token spans: scored masked-marginal")
            modes[i] = mode
        if mode == "pll":
            _plan_pll(lm, plan, ref_in, alt_in, keep_l, n_r, n_a, cfg.pll_flank, target,
                      context)
        elif mode == "wt-marginal":
            p = plan.add_pass(lm.wrap(ref_in), context)
            for pos, rt, at in zip(r_pos, r_tok, a_tok, strict=True):
                plan.read(p, int(pos), int(at), target, 1.0)
                plan.read(p, int(pos), int(rt), target, -1.0)
        elif n_r == n_a:
            masked = lm.wrap(ref_in)
            masked[r_pos] = mask
            p = plan.add_pass(masked, context)
            for pos, rt, at in zip(r_pos, r_tok, a_tok, strict=True):
                plan.read(p, int(pos), int(at), target, 1.0)
                plan.read(p, int(pos), int(rt), target, -1.0)
        else:
            masked_ref = lm.wrap(ref_in)
            masked_ref[r_pos] = mask
            p_ref = plan.add_pass(masked_ref, context)
            for pos, rt in zip(r_pos, r_tok, strict=True):
                plan.read(p_ref, int(pos), int(rt), target, -1.0)
            masked_alt = lm.wrap(alt_in)
            masked_alt[a_pos] = mask
            p_alt = plan.add_pass(masked_alt, context)
            for pos, at in zip(a_pos, a_tok, strict=True):
                plan.read(p_alt, int(pos), int(at), target, 1.0)


def _plan_pll(lm, plan, ref_in, alt_in, keep_l, n_r, n_a, flank, target, context=None) -> None:
    """PLL(alt) - PLL(ref): mask each (nearby) content token in turn, read its own id."""
    offset = len(lm.special.prefix)
    mask = lm.special.mask
    for tokens, n_span, sign in ((ref_in, n_r, -1.0), (alt_in, n_a, 1.0)):
        lo, hi = 0, len(tokens)
        if flank is not None:
            lo, hi = max(0, keep_l - flank), min(len(tokens), keep_l + n_span + flank)
        wrapped = lm.wrap(tokens)
        for j in range(lo, hi):
            masked = wrapped.copy()
            masked[offset + j] = mask
            p = plan.add_pass(masked, context)
            plan.read(p, offset + j, int(tokens[j]), target, sign)


def _execute(lm: MaskedLM, plan: _Plan, n_targets: int, batch_size: int) -> np.ndarray:
    """Run the planned passes in length-sorted batches; sum each target's signed reads."""
    from dnalm.logs import progress

    order = sorted(range(len(plan.inputs)), key=lambda i: len(plan.inputs[i]))
    logps: list = [None] * len(plan.inputs)
    batches = range(0, len(order), batch_size)
    for b in progress(batches, desc="forward passes", logger=log, unit="batch"):
        chunk = order[b : b + batch_size]
        contexts = [plan.contexts[i] for i in chunk] if lm.rmt is not None else None
        results = lm.log_probs_at([plan.inputs[i] for i in chunk],
                                  [plan.positions[i] for i in chunk], contexts)
        for i, res in zip(chunk, results, strict=True):
            logps[i] = res.numpy()
    totals = np.zeros(n_targets, dtype=np.float64)
    for p, slot, tok, target, sign in zip(plan.read_pass, plan.read_pos, plan.read_token,
                                          plan.read_target, plan.read_sign, strict=True):
        totals[target] += sign * float(logps[p][slot, tok])
    return totals
