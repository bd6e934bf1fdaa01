"""Scale (issue 17): partition once, region jobs read their part, streaming gather and annotation.

Run by hand (results go to benchmarks/RESULTS.md):

    nice -n 5 .venv/bin/python benchmarks/bench_scale.py \\
        --fasta ../shared/data/human_chr20_grch37/20.fa.gz --work /work/scale_bench \\
        --out /work/scale_bench/bench_scale.json

Synthetic data (made once, outside every measurement): every possible SNV of a stretch of
GRCh37 chr20 starting at its first non-N base, as **three records per position** (one per
alternative base, ALT order A, C, G, T), written as a bgzipped, tabix-indexed sites-only VCF.
``--sizes`` gives the row counts (default 1 M and 10 M; 10 M rows = 3.33 Mbp); the smaller
file is the first rows of the larger one. Each file is read with a genome that is chr20 cut
after the file's last position (real coordinates, bgzipped + faidx), because region jobs split
the genome's length: with the whole 63 Mbp of chr20, every job but the first would be empty.

Every measurement runs in a fresh subprocess (its peak RSS, ``VmHWM``, is its own; the RSS
after its imports is reported too, since some steps import torch through ``dnalm.score``):

1. ``today``: one region job of the code before issue 17 (commit 63b1cd1, its
   ``dnalm/variants.py`` imported from ``git show``): ``read_vcf`` (a pysam loop over records)
   and ``check_against_genome`` (one genome fetch per variant) on the **whole** file, then
   ``plan_regions`` + ``in_region`` to keep region 0 of 10.
2. ``partition``: :func:`dnalm.partition.partition_variants` with ``regions=R``.
3. ``job``: a region job's model-free overhead for job ``j`` of ``R``:
   :func:`dnalm.partition.read_job`, then what :func:`dnalm.score.vep.score_variants` does
   before its first forward pass (``unscored``, ``place_windows``, ``window_sequences``, the
   window labels, and ``_encode`` of the reference and alternate windows with a
   single-nucleotide tokenizer, ``--window-bp`` bases); no model.
4. ``annotate``: :func:`dnalm.variants.annotate_vcf_streaming` (what the workflow's annotation
   rule runs) of the VCF with the gathered synthetic scores; ``annotate_old``: the 63b1cd1
   ``annotate_from_table`` (the whole table read, sorted, a dict of every record's entries).
5. ``gather``: :func:`dnalm.score.run.gather_scores` of the ``R = 10`` region tables.

``--repeats`` runs today's path, the ``R = 10`` partition and both annotations at the smallest
size that many times, round-robin (the machine is shared); the tables give the best and median.

Synthetic scores: for each job of the ``R = 10`` partition, its rows as a region job writes
them (``unscored`` + ``SCORE_COLUMNS``) with a random score for every scorable row, written by
``DataFrame.to_parquet`` as ``score_vcf_region`` does (outside the measurements).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "63b1cd1"
ALTS = "ACGT"
REGIONS = (1, 10, 100)


# --- measurement helpers --------------------------------------------------------------------

def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _old_module(path: str):
    spec = importlib.util.spec_from_file_location("dnalm_old_variants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- data -----------------------------------------------------------------------------------

def make_data(fasta: Path, work: Path, sizes: list[int]) -> dict[str, dict[str, str]]:
    """The VCFs (3 records per position) and the chr20 prefixes they are read with."""
    import numpy as np
    import pysam

    work.mkdir(parents=True, exist_ok=True)
    largest = max(sizes)
    positions_needed = -(-largest // 3)
    with pysam.FastaFile(str(fasta)) as fa:
        contig, length = fa.references[0], fa.lengths[0]
        seq = fa.fetch(contig, 0, min(length, 60_000 + 2 * positions_needed + 1_000_000)).upper()
    bases = np.frombuffer(seq.encode("ascii"), dtype="S1")
    first = int(np.flatnonzero(bases != b"N")[0])
    ok = np.flatnonzero(np.isin(bases, [b"A", b"C", b"G", b"T"]))
    ok = ok[ok >= first][:positions_needed]
    if len(ok) < positions_needed:
        raise SystemExit("the FASTA's first contig is too short for the largest size")
    out: dict[str, dict[str, str]] = {}
    for size in sorted(sizes):
        tag = label(size)
        vcf = work / f"snv_{tag}.vcf.gz"
        genome = work / f"chr20_{tag}.fa.gz"
        n_pos = -(-size // 3)
        last = int(ok[n_pos - 1]) + 1  # 1-based position of the last record
        out[tag] = {"vcf": str(vcf), "genome": str(genome), "rows": size,
                    "first_pos": int(ok[0]) + 1, "last_pos": last, "genome_bp": last}
        if vcf.exists() and genome.exists() and Path(f"{vcf}.tbi").exists():
            continue
        t0 = time.perf_counter()
        plain = work / f"snv_{tag}.vcf"
        with open(plain, "w") as handle:
            handle.write("##fileformat=VCFv4.2\n"
                         f"##contig=<ID={contig},length={last}>\n"
                         "##source=dnalm benchmarks/bench_scale.py: every SNV, 3 records per "
                         "position\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
            written, step = 0, 200_000
            for lo in range(0, n_pos, step):
                lines = []
                for p in ok[lo:min(lo + step, n_pos)]:
                    ref = seq[p]
                    for alt in ALTS:
                        if alt != ref and written < size:
                            lines.append(f"{contig}\t{p + 1}\t.\t{ref}\t{alt}\t.\t.\t.\n")
                            written += 1
                handle.write("".join(lines))
        pysam.tabix_compress(str(plain), str(vcf), force=True)
        plain.unlink()
        pysam.tabix_index(str(vcf), preset="vcf", force=True)
        plain_fa = work / f"chr20_{tag}.fa"
        with open(plain_fa, "w") as handle:
            handle.write(f">{contig}\n")
            for lo in range(0, last, 60):
                handle.write(seq[lo:min(lo + 60, last)] + "\n")
        pysam.tabix_compress(str(plain_fa), str(genome), force=True)
        plain_fa.unlink()
        pysam.faidx(str(genome))
        print(f"made {vcf.name} ({size:,} rows, positions {ok[0] + 1:,}-{last:,}) in "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size % 1_000_000 == 0 else f"{size // 1000}k"


def write_region_scores(part: Path, out_dir: Path, seed: int = 0) -> list[str]:
    """Region tables as ``score_vcf_region`` writes them, with random scores."""
    import numpy as np

    from dnalm.partition import n_jobs, read_job
    from dnalm.score.run import SCORE_COLUMNS
    from dnalm.score.vep import unscored

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for job in range(n_jobs(part)):
        path = out_dir / f"{job}.parquet"
        paths.append(str(path))
        if path.exists():
            continue
        table = unscored(read_job(part, job), "masked-marginal")
        ok = table["reason"].to_numpy() == ""
        table.loc[ok, "score"] = rng.normal(size=int(ok.sum()))
        table.reindex(columns=SCORE_COLUMNS).to_parquet(path, index=False)
    return paths


# --- workers (one measurement each, in a fresh process) -------------------------------------

def work_today(a: dict) -> dict:
    import numpy as np  # noqa: F401

    from dnalm.genome import Genome, read_fai
    from dnalm.regions import in_region, plan_regions

    old = _old_module(a["old_module"])
    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    frame = old.read_variants(a["vcf"])
    t1 = time.perf_counter()
    with Genome(a["genome"]) as genome:
        checked = old.check_against_genome(frame, genome)
    t2 = time.perf_counter()
    pieces = plan_regions(read_fai(a["genome"]), a["regions"])[a["job"]]
    unplaced = ~checked["genome_contig"].apply(lambda c: isinstance(c, str))
    mine = in_region(checked, pieces) | (unplaced.to_numpy() & (a["job"] == 0))
    subset = checked[mine]
    t3 = time.perf_counter()
    return {"rows": len(checked), "kept": len(subset),
            "scorable": int(checked["reason"].eq("").sum()), "read_s": t1 - t0,
            "check_s": t2 - t1, "select_s": t3 - t2, "seconds": t3 - t0, "rss_base_mb": base}


def work_partition(a: dict) -> dict:
    from dnalm.partition import partition_variants
    from dnalm.score.settings import PartitionSettings

    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    manifest = partition_variants(a["vcf"], a["genome"], a["part"],
                                  settings=PartitionSettings(regions=a["regions"]))
    seconds = time.perf_counter() - t0
    rows = manifest["rows_per_bin"]
    return {"rows": manifest["n_rows"], "scorable": manifest["n_scorable"],
            "records": manifest["n_records"], "jobs": len(manifest["jobs"]),
            "rows_per_job_max": max(rows), "empty_jobs": sum(r == 0 for r in rows),
            "seconds": seconds, "rss_base_mb": base}


def work_job(a: dict) -> dict:
    import types

    import numpy as np

    from dnalm.genome import Genome
    from dnalm.partition import read_job
    from dnalm.score.vep import _encode, place_windows, unscored, window_sequences
    from dnalm.tokenizers import load_tokenizer

    lm = types.SimpleNamespace(tokenizer=load_tokenizer(a["tokenizer"]))
    window = a["window_bp"]
    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    subset = read_job(a["part"], a["job"])
    t1 = time.perf_counter()
    tokens = 0
    with Genome(a["genome"]) as genome:
        # score_variants up to its first forward pass (dnalm/score/vep.py)
        out = unscored(subset, "masked-marginal")
        ok = np.flatnonzero(out["reason"].to_numpy() == "")
        sub = out.iloc[ok]
        lengths = np.array([genome.lengths[c] for c in sub["genome_contig"]], dtype=np.int64)
        ref_len = sub["ref"].str.len().to_numpy()
        win = place_windows(sub["start"].to_numpy(), ref_len, lengths, window, "centred")
        ref_windows, alt_windows = window_sequences(genome, sub, win)
        out.loc[ok, "window"] = [f"{c}:{s}-{e}" for c, s, e in
                                 zip(sub["genome_contig"], win.starts, win.ends, strict=True)]
        out.loc[ok, "window_shifted"] = win.shifted
        t2 = time.perf_counter()
        for seqs in (ref_windows, alt_windows):
            encoded = _encode(lm, seqs)
            tokens += sum(len(v[0]) for v in encoded.values())
            del encoded
        t3 = time.perf_counter()
    return {"rows": len(subset), "scorable": len(ok), "read_s": t1 - t0, "windows_s": t2 - t1,
            "tokenize_s": t3 - t2, "seconds": t3 - t0, "tokens": tokens, "rss_base_mb": base}


def work_annotate(a: dict) -> dict:
    from dnalm.variants import annotate_vcf_streaming

    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    annotate_vcf_streaming(a["vcf"], a["scores"], a["annotated"])
    return {"seconds": time.perf_counter() - t0, "rss_base_mb": base}


def work_annotate_old(a: dict) -> dict:
    import pandas as pd

    old = _old_module(a["old_module"])
    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    # 63b1cd1 dnalm.score.run.annotate_from_table
    small = pd.read_parquet(a["scores"], columns=["record", "alt", "score", "reason"])
    old.annotate_vcf(a["vcf"], small.sort_values("record", kind="stable"), a["annotated"])
    return {"seconds": time.perf_counter() - t0, "rss_base_mb": base}


def work_gather(a: dict) -> dict:
    from dnalm.score.run import gather_scores

    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    rows = gather_scores(a["parts"], a["scores"])
    return {"rows": rows, "seconds": time.perf_counter() - t0, "rss_base_mb": base}


WORKERS = {"today": work_today, "partition": work_partition, "job": work_job,
           "annotate": work_annotate, "annotate_old": work_annotate_old, "gather": work_gather}


def worker(kind: str, args_path: str) -> None:
    a = json.loads(Path(args_path).read_text())
    result = WORKERS[kind](a)
    result["peak_rss_mb"] = _status_mb("VmHWM")
    print(json.dumps(result))


def measure(kind: str, work: Path, **a) -> dict:
    path = work / f"args_{kind}.json"
    path.write_text(json.dumps(a))
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--args", str(path)],
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        return {"kind": kind, **a, "error": proc.stderr.strip().splitlines()[-1]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(kind=kind, process_s=time.perf_counter() - t0, load_before=load_before,
                  load_after=os.getloadavg()[0])
    result.update({k: v for k, v in a.items() if k in ("size", "regions", "job")})
    print(f"{kind} {json.dumps({k: v for k, v in a.items() if k in ('size', 'regions', 'job')})}"
          f": {result['seconds']:.1f} s, peak {result['peak_rss_mb']:.0f} MiB", file=sys.stderr)
    return result


# --- the run --------------------------------------------------------------------------------

def _digest(path: str) -> str:
    """MD5 of the decompressed VCF body (header lines other than INFO declarations differ)."""
    digest = hashlib.md5()
    with gzip.open(path, "rb") as handle:
        for line in handle:
            if not line.startswith(b"##") or line.startswith(b"##INFO"):
                digest.update(line)
    return digest.hexdigest()


def run(args: argparse.Namespace) -> dict:
    import pyarrow
    import pysam

    import dnalm
    from dnalm.partition import read_manifest
    from dnalm.tokenizers import build_tokenizer

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    old_module = work / f"old_variants_{OLD_COMMIT}.py"
    old_module.write_text(subprocess.run(
        ["git", "-C", str(REPO), "show", f"{OLD_COMMIT}:src/dnalm/variants.py"],
        capture_output=True, text=True, check=True).stdout)
    t0 = time.perf_counter()
    data = make_data(args.fasta, work / "data", args.sizes)
    print(f"data ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    tokenizer = work / "tok_char"
    if not tokenizer.exists():
        build_tokenizer({"kind": "char"}, tokenizer)
    small, large = label(min(args.sizes)), label(max(args.sizes))
    results: dict[str, list[dict]] = {k: [] for k in ("today", "partition", "job", "annotate",
                                                      "gather")}
    # 1. today's path
    for tag in args.today_sizes or [small, large]:
        d = data[tag]
        results["today"].append(measure("today", work, size=tag, vcf=d["vcf"],
                                        genome=d["genome"], regions=10, job=0,
                                        old_module=str(old_module)))
    # 2. partition
    parts: dict[tuple[str, int], Path] = {}
    for tag in data:
        for regions in (REGIONS if tag == small else args.large_regions):
            part = work / "parts" / f"{tag}_R{regions}"
            if part.exists():
                subprocess.run(["rm", "-rf", str(part)], check=True)
            part.parent.mkdir(parents=True, exist_ok=True)
            d = data[tag]
            results["partition"].append(measure("partition", work, size=tag, vcf=d["vcf"],
                                                genome=d["genome"], part=str(part),
                                                regions=regions))
            parts[(tag, regions)] = part
    # 3. region job overhead, from the smaller file's partitions
    for regions in REGIONS:
        part = parts[(small, regions)]
        rows = read_manifest(part)["rows_per_bin"]
        busy = [j for j, r in enumerate(rows) if r]
        chosen = sorted({busy[int(q * (len(busy) - 1))] for q in (0.25, 0.5, 0.75)})
        for job in chosen[: args.jobs_per_r]:
            results["job"].append(measure("job", work, size=small, regions=regions, job=job,
                                          part=str(part), genome=data[small]["genome"],
                                          tokenizer=str(tokenizer), window_bp=args.window_bp))
    # 5. gather, 4. annotation
    digests = {}
    for tag in data:
        d = data[tag]
        region_tables = write_region_scores(parts[(tag, 10)], work / "scores" / f"{tag}_R10")
        scores = work / "scores" / f"{tag}_gathered.parquet"
        results["gather"].append(measure("gather", work, size=tag, parts=region_tables,
                                         scores=str(scores), regions=10))
        annotated = work / "annotated" / f"{tag}.vcf.gz"
        annotated.parent.mkdir(parents=True, exist_ok=True)
        results["annotate"].append(measure("annotate", work, size=tag, vcf=d["vcf"],
                                           scores=str(scores), annotated=str(annotated)))
        results["annotate"][-1]["variant"] = "streaming"
        if tag == small:
            old_out = work / "annotated" / f"{tag}_old.vcf.gz"
            results["annotate"].append(measure("annotate_old", work, size=tag, vcf=d["vcf"],
                                               scores=str(scores), annotated=str(old_out),
                                               old_module=str(old_module)))
            results["annotate"][-1]["variant"] = f"old ({OLD_COMMIT}, in memory)"
            digests = {"streaming": _digest(str(annotated)), "old": _digest(str(old_out))}
    # the head-to-head comparisons at the smallest size again, round-robin (shared machine)
    d, scores = data[small], work / "scores" / f"{small}_gathered.parquet"
    for repeat in range(1, args.repeats):
        results["today"].append(measure("today", work, size=small, vcf=d["vcf"],
                                        genome=d["genome"], regions=10, job=0,
                                        old_module=str(old_module)))
        part = work / "parts" / f"{small}_R10_repeat"
        subprocess.run(["rm", "-rf", str(part)], check=True)
        results["partition"].append(measure("partition", work, size=small, vcf=d["vcf"],
                                            genome=d["genome"], part=str(part), regions=10))
        for kind, variant in (("annotate", "streaming"),
                              ("annotate_old", f"old ({OLD_COMMIT}, in memory)")):
            results["annotate"].append(measure(kind, work, size=small, vcf=d["vcf"],
                                               scores=str(scores), old_module=str(old_module),
                                               annotated=str(work / "annotated" / "repeat.vcf.gz")))
            results["annotate"][-1]["variant"] = variant
        for step in ("today", "partition", "annotate"):
            results[step][-1 if step != "annotate" else -2]["repeat"] = repeat
            results["annotate"][-1]["repeat"] = repeat
    uname = os.uname()
    return {"data": data, "results": results, "window_bp": args.window_bp,
            "repeats": args.repeats,
            "annotated_vcf_md5_body": digests,
            "annotated_identical": len(set(digests.values())) == 1 if digests else None,
            "machine": {"cpus": os.cpu_count(), "kernel": f"{uname.sysname} {uname.release}",
                        "loadavg_end": os.getloadavg()},
            "versions": {"python": platform.python_version(), "pyarrow": pyarrow.__version__,
                         "pysam": pysam.__version__, "pandas": _version("pandas"),
                         "numpy": _version("numpy"),
                         "dnalm": getattr(dnalm, "__version__", "?")},
            "sizes": {"small": small, "large": large}}


def _version(name: str) -> str:
    return importlib.import_module(name).__version__


def _mib(x: float) -> str:
    return f"{x:,.0f}"


def markdown(report: dict) -> str:
    """The step table (best of the repeats), the per-job table and the ratios."""
    import statistics

    r = report["results"]
    rows = {t: d["rows"] for t, d in report["data"].items()}
    names = {"today": "today: old read_vcf + per-variant check, whole file (63b1cd1)",
             "partition": "partition_variants", "gather": "gather_scores (R=10 tables)"}
    groups: dict[tuple, list[dict]] = {}
    for step in ("today", "partition", "gather", "annotate"):
        for x in r[step]:
            name = f"annotate: {x['variant']}" if step == "annotate" else names[step]
            regions = "" if step in ("today", "annotate") else x.get("regions", "")
            groups.setdefault((name, x["size"], regions), []).append(x)
    lines = ["| step | size | R | runs | best s | median s | variants/s (best) | peak RSS MiB | "
             "RSS after imports MiB |", "|---|---|---|---|---|---|---|---|---|"]
    best: dict[tuple, float] = {}
    for (name, size, regions), xs in groups.items():
        ok = [x for x in xs if "error" not in x]
        if not ok:
            lines.append(f"| {name} | {size} | {regions} | {len(xs)} | error: "
                         f"{xs[0]['error']} |||||")
            continue
        seconds = [x["seconds"] for x in ok]
        best[(name, size, regions)] = min(seconds)
        lines.append(f"| {name} | {size} | {regions} | {len(ok)} | {min(seconds):.1f} | "
                     f"{statistics.median(seconds):.1f} | {rows[size] / min(seconds):,.0f} | "
                     f"{_mib(max(x['peak_rss_mb'] for x in ok))} | "
                     f"{_mib(max(x['rss_base_mb'] for x in ok))} |")
    lines += ["", "| size | today s (best) | partition R=10 s (best) | partition vs today, "
              "per variant |", "|---|---|---|---|"]
    for size in rows:
        today = best.get((names["today"], size, ""))
        part = best.get((names["partition"], size, 10))
        if today and part:
            lines.append(f"| {size} | {today:.1f} | {part:.1f} | **{today / part:.1f}x** |")
    small = report["sizes"]["small"]
    today = best.get((names["today"], small, ""))
    lines += ["", "| R | job | rows in job | read_job s | windows s | tokenize s | total s | "
              "µs per variant | peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|"]
    per_r: dict[int, list[dict]] = {}
    for x in r["job"]:
        if "error" in x:
            lines.append(f"| {x['regions']} | {x['job']} | error: {x['error']} |||||||")
            continue
        per_r.setdefault(x["regions"], []).append(x)
        lines.append(f"| {x['regions']} | {x['job']} | {x['rows']:,} | {x['read_s']:.2f} | "
                     f"{x['windows_s']:.2f} | {x['tokenize_s']:.2f} | {x['seconds']:.2f} | "
                     f"{1e6 * x['seconds'] / max(x['rows'], 1):.1f} | "
                     f"{_mib(x['peak_rss_mb'])} |")
    if today:
        lines += ["", f"| R | rows per job | new: s per job (mean) | new: µs per variant | "
                  f"today: s per job ({today:.1f} s whole-file read + check, plus the same "
                  "windows and tokenization) | today / new |", "|---|---|---|---|---|---|"]
        for regions, xs in sorted(per_r.items()):
            n = statistics.mean(x["rows"] for x in xs)
            new = statistics.mean(x["seconds"] for x in xs)
            old = today + statistics.mean(x["windows_s"] + x["tokenize_s"] for x in xs)
            lines.append(f"| {regions} | {n:,.0f} | {new:.2f} | {1e6 * new / n:.1f} | "
                         f"{old:.2f} | {old / new:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fasta", type=Path,
                        default=REPO.parent / "shared/data/human_chr20_grch37/20.fa.gz")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_scale"),
                        help="data and outputs (several GB at 10 M rows); reused if present")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--today-sizes", nargs="+",
                        help="sizes (labels, e.g. 1M) at which to run today's path "
                             "(default: smallest and largest)")
    parser.add_argument("--large-regions", type=int, nargs="+", default=[10, 100],
                        help="region counts partitioned at the largest size")
    parser.add_argument("--jobs-per-r", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3,
                        help="times today's path, partition (R=10) and both annotations run at "
                             "the smallest size, round-robin; tables give the best")
    parser.add_argument("--window-bp", type=int, default=128)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.args)
        return
    report = run(args)
    text = json.dumps(report, indent=1)
    print(text)
    print(markdown(report))
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
