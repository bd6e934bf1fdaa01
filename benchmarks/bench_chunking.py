"""Benchmark the genome → Parquet chunking stage (``dnalm.chunks.chunk_genome``).

Run by hand, e.g.::

    .venv/bin/python benchmarks/bench_chunking.py --fasta 20.fa.gz --threads 1 2 --repeats 7 \
        --out /tmp/bench_chunking.json

Variants, each timed in a fresh subprocess (``--one VARIANT``) so that its memory is its own:

* ``decompress``: reading the whole file through ``gzip.open`` in 4 MiB blocks (the ceiling for
  any single-core reader of a gzip FASTA);
* ``baseline``: Biopython ``SeqIO.parse`` + a pandas DataFrame of fixed-length non-overlapping
  chunks per contig (chunks with more than 10% N and tails shorter than 50 bp dropped, as in dnalm),
  written with ``DataFrame.to_parquet`` (pandas defaults: pyarrow engine, snappy);
* ``dnalm``: ``chunk_genome`` with ``ChunkConfig(length=L, max_n_fraction=0.1)`` and the default
  ``SplitConfig``, at each requested thread count;
* ``scaling``: ``chunk_genome`` on the first 16 and 32 Mbp of the genome (temporary bgzipped and
  faidx'd FASTAs built with pysam) and on the whole file, to show that peak memory does not grow
  with the genome.

Seconds are measured inside the child around the work only (imports and interpreter start-up
excluded). Memory is measured two ways:

* ``tree_rss_mib`` / ``tree_pss_mib``: the parent polls the child and all its descendants (the
  ``ProcessPoolExecutor`` workers) with psutil every 20 ms and records the highest *sum* of RSS and
  of PSS. Summed RSS counts pages shared between the forked workers (Python, numpy, pyarrow, pysam
  libraries) once per process, so it over-states the real footprint; summed PSS splits shared
  pages between their users and is the better estimate of total memory. Polling can miss spikes
  shorter than 20 ms.
* ``maxrss_mib``: the exact high-water mark of the *largest single process*, not a sum: the
  child's own ``VmHWM`` (``/proc/self/status``) and ``getrusage(RUSAGE_CHILDREN).ru_maxrss``,
  read after the pool has been shut down (its workers have then been joined, i.e. waited for, so
  they are included). The child's own ``RUSAGE_SELF.ru_maxrss`` is *not* used: Linux carries the
  high-water mark of the pre-``exec`` memory image over ``execve``, so it would report at least
  the benchmark parent's own RSS. For a one-process variant ``maxrss_mib`` is exact.

Every configuration is run ``--repeats`` times, round-robin (all configurations once, then all
again, ...), so that load from other processes hits them alike; the reported time is the best run,
the median is reported too, and memory is the highest over the runs. ``cpu_seconds`` (user +
system of the child and its reaped workers) is less sensitive to contention than wall time. The
whole-genome row of the memory-vs-size table reuses the main dnalm measurements.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_FASTA = "/work/shared/data/human_chr20_grch37/20.fa.gz"
MAX_N_FRACTION = 0.1
MIN_LENGTH = 50  # dnalm's ChunkConfig.min_length default: shorter contig tails are dropped
POLL_SECONDS = 0.02
READ_BLOCK = 4 << 20
MIB = 1 << 20


# --------------------------------------------------------------------------------------------
# Variants (run in the child process)
# --------------------------------------------------------------------------------------------


def run_decompress(fasta: Path) -> dict[str, Any]:
    """Read the whole file through ``gzip.open`` in 4 MiB blocks; return the bytes read."""
    total = 0
    with gzip.open(fasta, "rb") as handle:
        while block := handle.read(READ_BLOCK):
            total += len(block)
    return {"decompressed_bytes": total}


def run_baseline(fasta: Path, out_dir: Path, chunk_length: int) -> dict[str, Any]:
    """Biopython + pandas: fixed-length chunks per contig, N filter, one Parquet file."""
    import pandas as pd
    from Bio import SeqIO

    contigs: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    seqs: list[str] = []
    dropped_n = 0
    with gzip.open(fasta, "rt") as handle:
        for record in SeqIO.parse(handle, "fasta"):
            seq = str(record.seq)
            for start in range(0, len(seq), chunk_length):
                chunk = seq[start : start + chunk_length]
                if len(chunk) < MIN_LENGTH:
                    continue
                if chunk.count("N") + chunk.count("n") > MAX_N_FRACTION * len(chunk):
                    dropped_n += 1
                    continue
                contigs.append(record.id)
                starts.append(start)
                ends.append(start + len(chunk))
                seqs.append(chunk)
    frame = pd.DataFrame({"contig": contigs, "start": starts, "end": ends, "sequence": seqs})
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out_dir / "chunks.parquet", index=False)
    return {"chunks": len(frame), "dropped_n": dropped_n}


def run_dnalm(fasta: Path, out_dir: Path, chunk_length: int, threads: int) -> dict[str, Any]:
    """``dnalm.chunks.chunk_genome`` with the benchmark's chunk settings; counts from summary."""
    from dnalm.chunks import ChunkConfig, SplitConfig, chunk_genome

    chunk_genome(
        fasta,
        out_dir,
        genome_id="bench",
        chunk_cfg=ChunkConfig(length=chunk_length, max_n_fraction=MAX_N_FRACTION),
        split_cfg=SplitConfig(),
        threads=threads,
    )
    summary = json.loads((out_dir / "summary.json").read_text())
    splits = summary["splits"]
    return {
        "chunks": sum(s["chunks"] for s in splits.values()),
        "chunks_by_split": {k: s["chunks"] for k, s in splits.items()},
        "shards": sum(s["shards"] for s in splits.values()),
        "dropped_n": sum(s["dropped_n"] for s in splits.values()),
        "dropped_short": sum(s["dropped_short"] for s in splits.values()),
    }


def own_hwm_kib() -> int:
    """This process's peak RSS since its last ``exec`` (``VmHWM``), in KiB."""
    with open("/proc/self/status") as handle:
        return int(next(line for line in handle if line.startswith("VmHWM")).split()[1])


def child_main(args: argparse.Namespace) -> None:
    """Run one variant once and print one JSON line: seconds, CPU seconds, peak RSS, results."""
    fasta = Path(args.fasta)
    out_dir = Path(args.workdir) / "out"
    if args.one in {"baseline", "dnalm"}:  # import outside the timed region
        if args.one == "baseline":
            import pandas  # noqa: F401
            from Bio import SeqIO  # noqa: F401
        else:
            import dnalm.chunks  # noqa: F401
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    if args.one == "decompress":
        result = run_decompress(fasta)
    elif args.one == "baseline":
        result = run_baseline(fasta, out_dir, args.chunk_length)
    elif args.one == "dnalm":
        result = run_dnalm(fasta, out_dir, args.chunk_length, args.threads[0])
    else:
        raise SystemExit(f"unknown variant {args.one!r}")
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_before
    maxrss_kib = max(own_hwm_kib(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "maxrss_mib": maxrss_kib / 1024,
                **result,
            }
        )
    )


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the pool workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# --------------------------------------------------------------------------------------------
# Parent: subprocesses, memory polling, inputs, report
# --------------------------------------------------------------------------------------------


def _tree_memory(proc: Any) -> tuple[int, int]:
    """Summed RSS and PSS (bytes) of ``proc`` and all its live descendants."""
    import psutil

    rss = pss = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for member in members:
        try:
            info = member.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += info.pss
    return rss, pss


def run_child(
    variant: str, fasta: Path, chunk_length: int, threads: int, workdir: Path
) -> dict[str, Any]:
    """Run ``--one variant`` in a fresh interpreter, polling its process tree's memory."""
    import psutil

    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--one",
        variant,
        "--fasta",
        str(fasta),
        "--chunk-length",
        str(chunk_length),
        "--threads",
        str(threads),
        "--workdir",
        str(workdir),
    ]
    peak_rss = peak_pss = 0
    with psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        while proc.poll() is None:
            rss, pss = _tree_memory(proc)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(POLL_SECONDS)
        stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["tree_rss_mib"] = peak_rss / MIB
    result["tree_pss_mib"] = peak_pss / MIB
    return result


@dataclass
class Case:
    """One configuration to measure: a variant on one input at one thread count."""

    variant: str
    fasta: Path
    threads: int
    genome_bp: int
    keep: Path | None = None  # move the first run's output here (for the correctness check)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Best time, median time and highest memory over the runs."""
        seconds = [r["seconds"] for r in self.runs]
        per_run = {
            "seconds",
            "cpu_seconds",
            "maxrss_mib",
            "tree_rss_mib",
            "tree_pss_mib",
            "load_1min",
        }
        out = {k: v for k, v in self.runs[0].items() if k not in per_run}
        best = self.runs[seconds.index(min(seconds))]
        out.update(
            variant=self.variant,
            threads=self.threads,
            genome_bp=self.genome_bp,
            seconds=min(seconds),
            seconds_median=statistics.median(seconds),
            cpu_seconds_of_best=best["cpu_seconds"],
            maxrss_mib=max(r["maxrss_mib"] for r in self.runs),
            tree_rss_mib=max(r["tree_rss_mib"] for r in self.runs),
            tree_pss_mib=max(r["tree_pss_mib"] for r in self.runs),
            runs=self.runs,
        )
        return out


def measure_all(cases: list[Case], chunk_length: int, repeats: int, workdir: Path) -> None:
    """Run every case ``repeats`` times, round-robin, so that load changes hit all cases alike."""
    for rep in range(repeats):
        for case in cases:
            run_dir = Path(tempfile.mkdtemp(dir=workdir, prefix=f"{case.variant}-"))
            load = os.getloadavg()[0]
            run = run_child(case.variant, case.fasta, chunk_length, case.threads, run_dir)
            run["load_1min"] = load
            case.runs.append(run)
            if case.keep is not None and rep == 0:
                (run_dir / "out").rename(case.keep)
            shutil.rmtree(run_dir, ignore_errors=True)
            print(
                f"  [{rep + 1}/{repeats}] {case.variant} {case.genome_bp / 1e6:.0f} Mbp "
                f"threads={case.threads}: {run['seconds']:.2f} s ({run['cpu_seconds']:.2f} s "
                f"CPU), tree RSS {run['tree_rss_mib']:.0f} MiB, PSS "
                f"{run['tree_pss_mib']:.0f} MiB, max process {run['maxrss_mib']:.0f} MiB, "
                f"load {load:.2f}",
                file=sys.stderr,
                flush=True,
            )


def genome_length(fasta: Path) -> int:
    """Total bases from the ``.fai`` index."""
    with open(f"{fasta}.fai") as handle:
        return sum(int(line.split("\t")[1]) for line in handle if line.strip())


def truncated_fasta(fasta: Path, n_bases: int, workdir: Path) -> Path:
    """The first ``n_bases`` of the genome (whole contigs, then a prefix of one) as bgzip + fai."""
    import pysam

    plain = workdir / f"first_{n_bases}.fa"
    remaining = n_bases
    with pysam.FastaFile(str(fasta)) as src, open(plain, "w") as out:
        for name, length in zip(src.references, src.lengths, strict=True):
            if remaining <= 0:
                break
            take = min(length, remaining)
            seq = src.fetch(name, 0, take)
            out.write(f">{name}\n")
            out.writelines(seq[i : i + 60] + "\n" for i in range(0, take, 60))
            remaining -= take
    bgz = workdir / f"first_{n_bases}.fa.gz"
    pysam.tabix_compress(str(plain), str(bgz), force=True)
    plain.unlink()
    pysam.faidx(str(bgz))
    return bgz


def check_outputs(baseline_dir: Path, dnalm_dir: Path) -> dict[str, Any]:
    """Compare dnalm's chunks with the baseline's: each dnalm chunk should be one of them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    base = pq.read_table(baseline_dir / "chunks.parquet", columns=["contig", "start", "sequence"])
    parts = [
        pq.read_table(p, columns=["contig", "start", "end", "sequence"])
        for p in sorted(dnalm_dir.glob("*/part-*.parquet"))
    ]
    ours = pa.concat_tables(parts)
    ours = ours.set_column(0, "contig", ours["contig"].cast(pa.string()))
    base = pa.table(
        {
            "contig": base["contig"].cast(pa.string()),
            "start": base["start"],
            "base_sequence": base["sequence"].cast(pa.string()),
        }
    )
    joined = ours.join(base, keys=["contig", "start"], join_type="left outer")
    missing = joined.filter(pc.is_null(joined["base_sequence"])).num_rows
    present = joined.filter(pc.is_valid(joined["base_sequence"]))
    mismatched = int(
        pc.sum(pc.not_equal(present["sequence"], present["base_sequence"])).as_py() or 0
    )
    return {
        "baseline_rows": base.num_rows,
        "dnalm_rows": ours.num_rows,
        "dnalm_rows_not_in_baseline": missing,
        "dnalm_rows_with_different_sequence": mismatched,
        "baseline_rows_not_in_dnalm": base.num_rows - present.num_rows,
    }


def machine_info() -> dict[str, Any]:
    """CPU, memory and library versions of this machine."""
    from importlib.metadata import version  # no imports: keep the parent process small

    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kib = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024**2, 1),
        "load_avg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        **{name: version(name) for name in ("pyarrow", "pysam", "biopython", "pandas", "numpy")},
    }


def markdown(results: dict[str, Any]) -> str:
    """The two result tables as Markdown."""
    mbp = results["genome_bp"] / 1e6
    base_s = next(r["seconds"] for r in results["variants"] if r["variant"] == "baseline")
    lines = [
        "| variant | threads | seconds (best) | seconds (median) | CPU s (best run) | Mbp/s "
        "| peak tree RSS MiB | peak tree PSS MiB | largest process MiB | speed vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["variants"]:
        lines.append(
            f"| {r['variant']} | {r['threads']} | {r['seconds']:.2f} | {r['seconds_median']:.2f} "
            f"| {r['cpu_seconds_of_best']:.2f} | {mbp / r['seconds']:.1f} "
            f"| {r['tree_rss_mib']:.0f} | {r['tree_pss_mib']:.0f} | {r['maxrss_mib']:.0f} "
            f"| {base_s / r['seconds']:.2f}x |"
        )
    lines += [
        "",
        "| genome size | threads | seconds (best) | Mbp/s | peak tree RSS MiB | "
        "peak tree PSS MiB | largest process MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results["scaling"], key=lambda r: (r["threads"], r["genome_bp"])):
        lines.append(
            f"| {r['genome_bp'] / 1e6:.1f} Mbp | {r['threads']} | {r['seconds']:.2f} "
            f"| {r['genome_bp'] / 1e6 / r['seconds']:.1f} | {r['tree_rss_mib']:.0f} "
            f"| {r['tree_pss_mib']:.0f} | {r['maxrss_mib']:.0f} |"
        )
    return "\n".join(lines)


def parent_main(args: argparse.Namespace) -> None:
    """Measure every variant, check dnalm's chunks against the baseline's, write the JSON."""
    fasta = Path(args.fasta).resolve()
    for suffix in (".fai", ".gzi"):
        if not Path(f"{fasta}{suffix}").exists():
            raise SystemExit(f"{fasta}{suffix} missing: the FASTA must be bgzipped and faidx'd")
    total_bp = genome_length(fasta)
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "fasta": str(fasta),
        "genome_bp": total_bp,
        "chunk_length": args.chunk_length,
        "max_n_fraction": MAX_N_FRACTION,
        "repeats": args.repeats,
        "machine": machine_info(),
    }
    with tempfile.TemporaryDirectory(prefix="bench_chunking_") as tmp:
        work = Path(tmp)
        main_cases = [
            Case("decompress", fasta, 1, total_bp),
            Case("baseline", fasta, 1, total_bp, keep=work / "baseline_out"),
        ]
        main_cases += [
            Case("dnalm", fasta, t, total_bp, keep=work / "dnalm_out" if i == 0 else None)
            for i, t in enumerate(args.threads)
        ]
        sizes = [n for n in (16_000_000, 32_000_000) if n < total_bp]
        prefixes = [(n, truncated_fasta(fasta, n, work)) for n in sizes]
        scaling_cases = [Case("dnalm", path, t, n) for n, path in prefixes for t in args.threads]
        measure_all(main_cases + scaling_cases, args.chunk_length, args.repeats, work)
        results["correctness"] = check_outputs(work / "baseline_out", work / "dnalm_out")
    results["variants"] = [c.summary() for c in main_cases]
    # the whole genome's row of the memory-vs-size table is the main dnalm measurement
    results["scaling"] = [c.summary() for c in scaling_cases] + [
        r for r in results["variants"] if r["variant"] == "dnalm"
    ]
    results["machine"]["load_avg_at_end"] = os.getloadavg()

    text = json.dumps(results, indent=1) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(markdown(results))
    print()
    print(json.dumps(results["correctness"], indent=1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fasta",
        default=DEFAULT_FASTA,
        help="bgzipped FASTA with .fai and .gzi (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="thread counts for dnalm (default: 1 2)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per variant; the best time is reported (default: 3)",
    )
    parser.add_argument("--chunk-length", type=int, default=1000, help="bases per chunk")
    parser.add_argument("--out", help="write all results as JSON here")
    parser.add_argument(
        "--one", choices=["decompress", "baseline", "dnalm"], help=argparse.SUPPRESS
    )  # internal: run one variant once (child mode)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.threads) < 1:
        parser.error("--repeats and --threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Entry point: child mode with ``--one``, else the whole benchmark."""
    args = parse_args(argv)
    if args.one:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
