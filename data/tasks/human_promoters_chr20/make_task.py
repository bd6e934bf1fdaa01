"""Make train.csv/test.csv of the promoter-vs-background task on human GRCh37 chr20.

    python data/tasks/human_promoters_chr20/make_task.py path/to/20.fa.gz path/to/tss_chr20.bed

(the bgzipped, ``.fai``-indexed GRCh37 chr20 of the Debian package vt-examples and the TSS table
derived from the GENCODE gene table of PyPI spliceai 1.3.1; both are in the project's reference
data, ``human_chr20_grch37/``). Running it again gives the same bytes.

Positives: 300 bp on the gene's strand from 249 bp upstream to 50 bp downstream of each TSS (the
window of GUE's ``prom_300`` tasks), one per distinct TSS position. Negatives: as many windows per
split, drawn (seeded) uniformly from chr20 at least 5 kb from every TSS, with no N, on a random
strand; NOT matched for GC content, so the CpG islands of promoters make the task an easy one
(a k-mer baseline reads it well). Nothing is taken within 10 kb of the demo slice
(chr20:42,000,001-44,000,000), so that the demo's track over the slice is a held-out test.
Split by position, so no window of one split overlaps one of the other: test = windows starting
at or after 50 Mb, train = windows ending before 49.99 Mb.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pysam

HERE = Path(__file__).resolve().parent
CONTIG = "20"
UPSTREAM, DOWNSTREAM = 249, 50          # window [TSS - 249, TSS + 50] on the gene's strand: 300 bp
LENGTH = UPSTREAM + 1 + DOWNSTREAM
MIN_TSS_DISTANCE = 5000
SLICE = (42_000_000, 44_000_000)        # the demo slice, 0-based half-open
SLICE_MARGIN = 10_000
TEST_FROM = 50_000_000                  # test windows start here or later
TRAIN_BEFORE = TEST_FROM - 10_000       # train windows end before this
SEED = 20
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def revcomp(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


def split_of(start: int, end: int) -> str | None:
    if start < SLICE[1] + SLICE_MARGIN and end > SLICE[0] - SLICE_MARGIN:
        return None
    if start >= TEST_FROM:
        return "test"
    if end <= TRAIN_BEFORE:
        return "train"
    return None


def main(fasta_path: str, tss_path: str) -> None:
    tss = []
    with open(tss_path) as handle:
        for line in handle:
            chrom, start, _end, name, _score, strand = line.rstrip("\n").split("\t")[:6]
            if chrom.removeprefix("chr") == CONTIG:
                tss.append((int(start), strand, name))
    tss.sort()
    rows: dict[str, list[dict]] = {"train": [], "test": []}
    with pysam.FastaFile(fasta_path) as fasta:
        length = fasta.get_reference_length(CONTIG)
        seen = set()
        for pos, strand, name in tss:
            if (pos, strand) in seen:
                continue
            seen.add((pos, strand))
            if strand == "+":
                start, end = pos - UPSTREAM, pos + DOWNSTREAM + 1
            else:
                start, end = pos - DOWNSTREAM, pos + UPSTREAM + 1
            split = split_of(start, end)
            if split is None or start < 0 or end > length:
                continue
            seq = fasta.fetch(CONTIG, start, end).upper()
            if "N" in seq:
                continue
            seq = seq if strand == "+" else revcomp(seq)
            rows[split].append({"id": f"{split}_positive_{name}_{pos}", "chrom": CONTIG,
                                "start": start, "end": end, "strand": strand,
                                "label": "positive", "sequence": seq})
        positions = np.array([p for p, _, _ in tss])
        rng = np.random.default_rng(SEED)
        for split in ("train", "test"):
            wanted, drawn = len(rows[split]), 0
            lo, hi = (TEST_FROM, length - LENGTH) if split == "test" else (0, TRAIN_BEFORE - LENGTH)
            while drawn < wanted:
                start = int(rng.integers(lo, hi))
                end = start + LENGTH
                strand = "+" if rng.random() < 0.5 else "-"
                near = np.abs(positions - (start + end) // 2).min() < MIN_TSS_DISTANCE + LENGTH
                if near or split_of(start, end) != split:
                    continue
                seq = fasta.fetch(CONTIG, start, end).upper()
                if "N" in seq:
                    continue
                seq = seq if strand == "+" else revcomp(seq)
                drawn += 1
                rows[split].append({"id": f"{split}_negative_{drawn}", "chrom": CONTIG,
                                    "start": start, "end": end, "strand": strand,
                                    "label": "negative", "sequence": seq})
    for split, table in rows.items():
        path = HERE / f"{split}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(table)
        n_pos = sum(r["label"] == "positive" for r in table)
        gc = {lab: np.mean([(r["sequence"].count("G") + r["sequence"].count("C")) / LENGTH
                            for r in table if r["label"] == lab])
              for lab in ("positive", "negative")}
        print(f"{path}: {len(table)} rows ({n_pos} positive), mean GC positive "
              f"{gc['positive']:.3f}, negative {gc['negative']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
