"""Variant-scoring throughput: dnalm's batched scorer against a naive dnallm-style loop.

Run by hand (results go to benchmarks/RESULTS.md):

    .venv/bin/python benchmarks/bench_scoring.py \\
        --genome ../shared/data/human_chr20_grch37/20.fa.gz \\
        --vcf ../shared/data/human_chr20_grch37/pysam_tabix_chr20_4.vcf.gz \\
        --vcf ../shared/data/human_chr20_grch37/clinvar_pathogenic_vs_gnomad_common_chr20.vcf

Same model, same windows, same variants for every scorer, in one run:

* ``naive``: one variant at a time, unbatched, two masked forward passes (reference, then
  alternate) with the full LM head over the window — what dnallm 1.2.1's ``score_variant`` does.
* ``dnalm``: :func:`dnalm.score.vep.score_variants` (one masked pass per position shared by its
  alleles, batched, LM head only at masked positions, vectorised tokenization).
* ``floor``: the encoder alone, one batched pass per distinct position (no tokenization, no
  head): the compute floor for masked-marginal scoring.

Also saturation mutagenesis of a region: dnalm wt-marginal (tiled windows, one pass per window)
against naive masked-marginal (one unbatched masked pass per position).

On a GPU (``--device cuda``) every scorer runs on the card in bf16 autocast (dnalm's
``MaskedLM`` does this itself; the naive loop and the floor use the same autocast), a short
untimed warm-up runs first, and timings synchronise the device. ``--repeats`` times the dnalm
scorer and the floor several times and reports the median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from dnalm.genome import Genome
from dnalm.score.lm import MaskedLM
from dnalm.score.vep import ScoreConfig, place_windows, score_variants
from dnalm.tokenizers import build_tokenizer, load_tokenizer
from dnalm.variants import check_against_genome, read_variants

SIZES = {
    # ~0.5M parameters (the issue's "0.5M model")
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 512},
    # the peers' test bed: hidden 256, 4 layers, 4 heads, intermediate 1024 (3.5M parameters)
    "small": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
              "intermediate_size": 1024},
    # BERT-base shape (hidden 768, 12 layers, 12 heads, intermediate 3072; ~86M parameters)
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072},
}


def _sync(lm: MaskedLM) -> None:
    if lm.device.type == "cuda":
        torch.cuda.synchronize(lm.device)


def _autocast(lm: MaskedLM) -> contextlib.AbstractContextManager:
    """The same autocast MaskedLM uses (bf16 on CUDA, none on the CPU)."""
    return lm._autocast()


def make_model(out: Path, size: str, tokenizer_dir: Path, max_positions: int) -> Path:
    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, max_position_embeddings=max_positions,
                        pad_token_id=0, initializer_range=0.1, **SIZES[size])
    BertForMaskedLM(config).save_pretrained(out)
    for item in tokenizer_dir.iterdir():
        (out / item.name).write_bytes(item.read_bytes())
    return out


def naive_scores(lm: MaskedLM, genome: Genome, variants: pd.DataFrame, window: int,
                 hf_tokenizer) -> np.ndarray:
    """dnallm-style: per variant and allele, tokenize the window with the Hugging Face tokenizer,
    mask the variant's token, one unbatched forward pass with the LM head over the whole window
    (two passes per variant: alternate, then reference). Single-nucleotide tokens: the variant's
    token is at index p + 1 (after [CLS])."""
    model = lm.model
    scores = []
    lengths = np.array([genome.lengths[c] for c in variants["genome_contig"]])
    win = place_windows(variants["start"].to_numpy(), variants["ref"].str.len().to_numpy(),
                        lengths, window)
    for row, ws, we in zip(variants.itertuples(index=False), win.starts, win.ends, strict=True):
        seq = genome.fetch(row.genome_contig, int(ws), int(we)).upper()
        p = int(row.start - ws)
        total = 0.0
        for allele, sign in ((row.alt, 1.0), (row.ref, -1.0)):
            x = hf_tokenizer(seq, return_tensors="pt")["input_ids"].to(lm.device)
            slot = p + 1
            target = hf_tokenizer.convert_tokens_to_ids(allele)
            x[0, slot] = hf_tokenizer.mask_token_id
            with torch.inference_mode(), _autocast(lm):
                logits = model(input_ids=x).logits[0]
            total += sign * float(torch.log_softmax(logits.float(), -1)[slot, int(target)])
        scores.append(total)
    return np.array(scores)


def floor_seconds(lm: MaskedLM, n_windows: int, length: int, batch_size: int) -> float:
    """Encoder only, batched, for n windows of ``length`` tokens: the compute floor."""
    encoder = lm._split[0]
    x = torch.randint(5, 9, (batch_size, length), device=lm.device)
    mask = torch.ones_like(x)
    _sync(lm)
    t0 = time.perf_counter()
    with torch.inference_mode(), _autocast(lm):
        for _ in range(0, n_windows, batch_size):
            encoder(input_ids=x, attention_mask=mask)
    _sync(lm)
    return time.perf_counter() - t0


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_scoring_"))
    tokenizer_dir = tmp / "char"
    build_tokenizer({"kind": "char"}, tokenizer_dir)
    frames = [read_variants(v) for v in args.vcf]
    results: dict = {"machine": platform.processor() or platform.machine(),
                     "threads": args.threads, "torch": torch.__version__,
                     "device": args.device, "batch_size": args.batch_size, "runs": []}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    with Genome(args.genome) as genome:
        variants = pd.concat(frames, ignore_index=True)
        variants = check_against_genome(variants, genome)
        variants = variants[variants["reason"] == ""]
        variants = variants[(variants["ref"].str.len() == 1) & (variants["alt"].str.len() == 1)]
        variants = variants.drop_duplicates(["genome_contig", "pos", "ref", "alt"])
        variants = variants.reset_index(drop=True).iloc[: args.max_variants]
        window = args.window
        for size in args.sizes:
            model_dir = make_model(tmp / size, size, tokenizer_dir, max_positions=window + 2)
            lm = MaskedLM(model_dir, device=args.device)
            n_params = sum(p.numel() for p in lm.model.parameters())
            cfg = ScoreConfig(window_bp=window, batch_size=args.batch_size)
            subset = variants.iloc[: args.naive_variants]
            hf_tok = AutoTokenizer.from_pretrained(model_dir)
            if lm.device.type == "cuda":  # untimed warm-up: CUDA context, kernels, allocator
                score_variants(lm, genome, variants.iloc[: 2 * args.batch_size], cfg)
                naive_scores(lm, genome, subset.iloc[:2], window, hf_tok)
                floor_seconds(lm, args.batch_size, window + 2, args.batch_size)
                torch.cuda.reset_peak_memory_stats(lm.device)
            t_ours_all = []
            for _ in range(args.repeats):
                ours, t = timed(score_variants, lm, genome, variants, cfg)
                t_ours_all.append(t)
            t_ours = statistics.median(t_ours_all)
            naive, t_naive = timed(naive_scores, lm, genome, subset, window, hf_tok)
            diff = float(np.max(np.abs(ours["score"].to_numpy()[: len(subset)] - naive)))
            t_floor = statistics.median(
                floor_seconds(lm, len(variants), window + 2, args.batch_size)
                for _ in range(args.repeats))
            run_ = {
                "size": size, "parameters": n_params, "variants": len(variants),
                "dnalm_variants_per_s": len(variants) / t_ours,
                "naive_variants_per_s": len(subset) / t_naive,
                "floor_variants_per_s": len(variants) / t_floor,
                "max_abs_diff_vs_naive": diff,
                "dnalm_seconds_all": t_ours_all,
            }
            run_["speedup"] = run_["dnalm_variants_per_s"] / run_["naive_variants_per_s"]
            run_["fraction_of_floor"] = run_["dnalm_variants_per_s"] / run_[
                "floor_variants_per_s"]
            # saturation mutagenesis: wt-marginal tiled vs naive masked per position
            contig = variants["genome_contig"].iloc[0]
            start = int(variants["start"].iloc[0])
            n_pos = args.saturation_bp
            sat = pd.DataFrame({
                "record": 0, "contig": contig, "pos": np.arange(start, start + n_pos) + 1,
                "ref": list(genome.fetch(contig, start, start + n_pos).upper()), "id": ".",
            })
            sat["alt"] = sat["ref"].map({"A": "C", "C": "G", "G": "T", "T": "A"}).fillna("A")
            sat = check_against_genome(sat, genome)
            _, t_wt = timed(score_variants, lm, genome, sat,
                            ScoreConfig(mode="wt-marginal", window_bp=window, windows="tiled",
                                        batch_size=args.batch_size))
            per_pos = sat.iloc[: args.naive_saturation_positions]
            _, t_naive_sat = timed(naive_scores, lm, genome, per_pos, window, hf_tok)
            # naive_scores does 2 passes per substitution; one pass per position serves all 3
            # alternatives, so the naive masked-marginal cost per position is half of that
            naive_pos_per_s = 2 * len(per_pos) / t_naive_sat
            run_["saturation_wt_positions_per_s"] = n_pos / t_wt
            run_["saturation_naive_masked_positions_per_s"] = naive_pos_per_s
            run_["saturation_speedup"] = (n_pos / t_wt) / naive_pos_per_s
            if lm.device.type == "cuda":
                run_["peak_cuda_mib"] = torch.cuda.max_memory_allocated(lm.device) / 2**20
            results["runs"].append(run_)
            print(json.dumps(run_, indent=1))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genome", required=True, type=Path)
    parser.add_argument("--vcf", action="append", required=True, type=Path)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-variants", type=int, default=400)
    parser.add_argument("--naive-variants", type=int, default=100)
    parser.add_argument("--saturation-bp", type=int, default=2000)
    parser.add_argument("--naive-saturation-positions", type=int, default=50)
    parser.add_argument("--device", default="cpu",
                        help="cpu (default, as in RESULTS.md's CPU runs) or cuda")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed repeats of the dnalm scorer and the floor (median)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/bench_scoring.json"))
    args = parser.parse_args()
    results = run(args)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
