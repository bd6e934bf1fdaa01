"""Tiny models and a brute-force ESM-1v reference for the scoring tests."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertForMaskedLM

from dnalm.chunks import ChunkConfig, SplitConfig, chunk_genome
from dnalm.io import list_parts
from dnalm.tokenizers import build_tokenizer, load_tokenizer

COMPLEMENT = str.maketrans("ACGTN", "TGCAN")

TOKENIZER_SPECS = {
    "char": {"kind": "char"},
    "kmer3": {"kind": "kmer", "k": 3},
    "nt3": {"kind": "nt_kmer", "k": 3},
    "bpe": {"kind": "bpe", "vocab_size": 60, "min_frequency": 2, "sample_bp": 20_000},
}


def make_tokenizer(kind: str, workdir: Path, genome_fa: Path) -> Path:
    out = workdir / f"tok_{kind}"
    if not out.exists():
        parts: list[Path] = []
        if TOKENIZER_SPECS[kind]["kind"] == "bpe":
            chunks = workdir / "chunks"
            if not chunks.exists():
                chunk_genome(genome_fa, chunks, genome_id="g", chunk_cfg=ChunkConfig(length=500),
                             split_cfg=SplitConfig(region_size=2000))
            parts = list_parts(chunks / "train")
        build_tokenizer(TOKENIZER_SPECS[kind], out, train_parts=parts, seed=0)
    return out


def make_model(tokenizer_dir: Path, out: Path, *, max_positions: int = 64, seed: int = 0) -> Path:
    """A random tiny BERT masked LM saved with its tokenizer (what scoring loads)."""
    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=max_positions, pad_token_id=0,
                        initializer_range=0.5)
    model = BertForMaskedLM(config)
    model.save_pretrained(out)
    for item in tokenizer_dir.iterdir():
        shutil.copy(item, out / item.name)
    return out


def brute_force(model_dir: Path, ref_window: str, alt_window: str, mode: str) -> float:
    """ESM-1v score of one variant from first principles: tokenize both windows, find the
    differing token spans with plain loops, build the masked input(s), one full forward each."""
    tok, model = _load(model_dir)

    def tokens(seq: str) -> list[tuple[int, int, int]]:
        b = tok.encode(seq)
        return list(zip(b.ids.tolist(), b.starts.tolist(), b.ends.tolist(), strict=True))

    r, a = tokens(ref_window), tokens(alt_window)
    delta = len(alt_window) - len(ref_window)
    p = 0
    while p < min(len(r), len(a)) and r[p][:2] == a[p][:2]:
        p += 1
    s = 0
    while (s < min(len(r), len(a)) - p and r[-1 - s][0] == a[-1 - s][0]
           and r[-1 - s][2] + delta == a[-1 - s][2]):
        s += 1
    r_span = [t[0] for t in r[p : len(r) - s]]
    a_span = [t[0] for t in a[p : len(a) - s]]

    def logp(ids: list[int], masked: list[int]) -> torch.Tensor:
        full = [2, *ids, 3]
        x = torch.tensor([full])
        if masked:
            x[0, [m + 1 for m in masked]] = 4
        with torch.no_grad():
            return torch.log_softmax(model(input_ids=x).logits[0], -1)

    ref_ids, alt_ids = [t[0] for t in r], [t[0] for t in a]
    if mode == "pll":
        total = 0.0
        for ids, sign in ((ref_ids, -1), (alt_ids, 1)):
            for j in range(len(ids)):
                total += sign * float(logp(ids, [j])[j + 1, ids[j]])
        return total
    if mode == "wt-marginal":
        lp = logp(ref_ids, [])
        return sum(float(lp[p + i + 1, a_span[i]] - lp[p + i + 1, r_span[i]])
                   for i in range(len(r_span)))
    positions_r = list(range(p, p + len(r_span)))
    positions_a = list(range(p, p + len(a_span)))
    lp_r = logp(ref_ids, positions_r)
    lp_a = logp(alt_ids, positions_a)
    return float(sum(lp_a[j + 1, t] for j, t in zip(positions_a, a_span, strict=True))
                 - sum(lp_r[j + 1, t] for j, t in zip(positions_r, r_span, strict=True)))


@cache
def _load(model_dir: Path):
    return load_tokenizer(model_dir), BertForMaskedLM.from_pretrained(model_dir).eval()


def windows(genome_seq: str, start: int, ref: str, alt: str, window: int) -> tuple[str, str]:
    """Reference/alternate windows placed as the scorer documents (centred, shifted at ends)."""
    centre = start + len(ref) // 2
    ws = min(max(centre - window // 2, 0), max(len(genome_seq) - window, 0))
    ref_w = genome_seq[ws : ws + window]
    p = start - ws
    return ref_w, ref_w[:p] + alt + ref_w[p + len(ref) :]


def rc(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


def random_genome(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    seq = "".join(rng.choice(list("ACGT"), size=n))
    return seq[:1500] + "N" * 30 + seq[1530:]


def brute_force_masked_marginal(lm, ref_window: str, alt_window: str) -> float:
    """Masked-marginal score of one variant from first principles, for any tokenizer layout:
    plain loops find the differing token spans, each allele's window is masked there and run
    through the model's full forward (head everywhere, no batching), special tokens by role.
    Windows longer than the model's input are cut around the change as the scorer documents."""
    tok = lm.tokenizer

    def tokens(seq: str) -> list[tuple[int, int, int]]:
        b = tok.encode(seq)
        return list(zip(b.ids.tolist(), b.starts.tolist(), b.ends.tolist(), strict=True))

    r, a = tokens(ref_window), tokens(alt_window)
    p = 0
    while p < min(len(r), len(a)) and r[p][:2] == a[p][:2]:
        p += 1
    s = 0
    while s < min(len(r), len(a)) - p and r[-1 - s][0] == a[-1 - s][0] and \
            r[-1 - s][2] == a[-1 - s][2]:
        s += 1

    def logp(ids: list[int], span: range) -> torch.Tensor:
        x = torch.tensor([tok.wrap(ids).tolist()])
        offset = len(tok.prefix)
        for j in span:
            x[0, offset + j] = tok.special_ids["mask"]
        with torch.no_grad():
            return torch.log_softmax(lm.model(input_ids=x).logits[0].double(), -1)[offset:]

    ref_ids, alt_ids = [t[0] for t in r], [t[0] for t in a]
    # a window longer than the model input keeps the changed span and, around it, as many
    # context tokens as fit: one at a time, right side first, a side that runs out yields
    room = lm.max_content - max(len(r) - s - p, len(a) - s - p)
    left = right = 0
    while room > 0 and (left < p or right < s):
        if right < s and (right <= left or left >= p):
            right += 1
        else:
            left += 1
        room -= 1
    ref_ids = ref_ids[p - left : len(ref_ids) - s + right]
    alt_ids = alt_ids[p - left : len(alt_ids) - s + right]
    p, s = left, right
    span_r, span_a = range(p, len(ref_ids) - s), range(p, len(alt_ids) - s)
    lp_r, lp_a = logp(ref_ids, span_r), logp(alt_ids, span_a)
    return float(sum(lp_a[j, alt_ids[j]] for j in span_a)
                 - sum(lp_r[j, ref_ids[j]] for j in span_r))


def windows_of(table_row, genome_seq: str) -> tuple[str, str]:
    """The reference and alternate windows of a scored row, from its ``window`` column."""
    start, end = (int(x) for x in table_row.window.split(":")[1].split("-"))
    ref_w = genome_seq[start:end].upper()
    p = int(table_row.start) - start
    return ref_w, ref_w[:p] + table_row.alt + ref_w[p + len(table_row.ref):]
