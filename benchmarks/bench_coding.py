"""Benchmark (issue 10): saturation mutagenesis of AXIN1 (NM_003502, 862 residues × 19) in
mutants/s with masked-marginal and wt-marginal, against a naive loop of two unbatched passes per
mutant (masked wild type, then masked mutant sequence), all in the same run on a tiny random ESM.

The naive loop is timed on a subset (``--naive-mutants``) and extrapolated; the output says so.
Usage: .venv/bin/python benchmarks/bench_coding.py [--threads 2] [--naive-mutants 40]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from dnalm.coding.annotation import load_transcripts
from dnalm.coding.protein_lm import (
    ProteinLM,
    build_random_esm,
    parse_mutant,
    saturation_mutants,
    score_mutations,
)
from dnalm.genome import Genome

SLICE = Path(__file__).resolve().parents[1] / "data" / "hg38_chr16_axin1_slice"


def naive(lm: ProteinLM, seq: str, mutants: list[str]) -> np.ndarray:
    """Two unbatched full passes per mutant: log p(mt | masked) - log p(wt | masked)."""
    out = []
    with torch.inference_mode():
        for text in mutants:
            (m,) = parse_mutant(text, seq)
            total = 0.0
            for residue, sign in ((m.wt, -1.0), (m.mt, 1.0)):
                x = lm.encode(seq[: m.pos] + residue + seq[m.pos + 1:])
                x[m.pos] = lm.mask
                ids = torch.tensor([[lm.cls, *x.tolist(), lm.eos]])
                lp = torch.log_softmax(lm.model(input_ids=ids).logits[0, m.pos + 1], -1)
                total += sign * float(lp[lm.aa_ids[residue]])
            out.append(total)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--naive-mutants", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with Genome(SLICE / "chr16_186964_397118.fa") as genome:
        transcripts = load_transcripts(SLICE / "refseq_chr16_slice.gtf", genome)
    seq = next(t.protein for t in transcripts if t.transcript_id == "NM_003502")
    mutants = saturation_mutants(seq)
    requests = [(0, parse_mutant(m, seq)) for m in mutants]
    with tempfile.TemporaryDirectory() as tmp:
        lm = ProteinLM(build_random_esm(Path(tmp) / "esm", hidden_size=64, layers=2, heads=4))
        print(f"AXIN1 {len(seq)} residues, {len(mutants)} mutants; tiny random ESM (hidden 64, "
              f"2 layers); torch {torch.__version__}, transformers {transformers.__version__}, "
              f"{args.threads} threads, {platform.processor() or platform.machine()}")
        rows = []
        results = {}
        for mode in ("masked-marginal", "wt-marginal"):
            t0 = time.perf_counter()
            results[mode], _ = score_mutations([lm], [seq], requests, mode=mode,
                                               batch_size=args.batch_size)
            rows.append((mode, len(mutants), time.perf_counter() - t0, "measured"))
        subset = mutants[:: max(len(mutants) // args.naive_mutants, 1)][: args.naive_mutants]
        t0 = time.perf_counter()
        naive_scores = naive(lm, seq, subset)
        elapsed = time.perf_counter() - t0
        index = [mutants.index(m) for m in subset]
        err = float(np.abs(naive_scores - results["masked-marginal"][index]).max())
        rows.append(("naive (2 unbatched passes/mutant)", len(subset), elapsed,
                     f"extrapolated from {len(subset)}; max |diff| vs masked-marginal {err:.1e}"))
    print("| method | mutants timed | seconds | mutants/s | time for 862x19 (s) | note |")
    print("|---|---|---|---|---|---|")
    for name, n, sec, note in rows:
        print(f"| {name} | {n} | {sec:.2f} | {n / sec:.1f} | {len(mutants) * sec / n:.1f} | "
              f"{note} |")


if __name__ == "__main__":
    main()
