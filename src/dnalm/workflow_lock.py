"""Clear the Snakemake lock that a killed run leaves behind, when no run holds it.

Snakemake locks its working directory (``.snakemake/locks/``) for the length of a run and
removes the lock when it ends. Killed with ``kill -9`` (or with its SSH session), it cannot, and
the next plain run stops with "Directory cannot be locked" until someone runs
``snakemake --unlock``. ``make run`` calls :func:`clear_stale_lock` first, which unlocks only
when no process in the directory is a Snakemake run (or one of its jobs): a lock held by a live
run protects that run's outputs and is left alone.

Run as ``python -m dnalm.workflow_lock [SNAKEMAKE OPTIONS]`` in the working directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PROC = Path("/proc")


def _ancestors() -> set[int]:
    """This process and its parents (``make`` and its shell mention no Snakemake run, but a
    wrapper script might)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            status = (PROC / str(pid) / "status").read_text()
        except OSError:
            break
        ppid = [line.split()[1] for line in status.splitlines() if line.startswith("PPid:")]
        pid = int(ppid[0]) if ppid else 0
    return pids


def snakemake_processes(directory: str | Path) -> list[int] | None:
    """Processes whose command line mentions snakemake and whose working directory is
    ``directory`` (a run, or a job of one); None where processes cannot be listed (no
    ``/proc``), so the caller must not assume there are none."""
    if not PROC.is_dir():
        return None
    here = Path(directory).resolve()
    own = _ancestors()
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"snakemake" not in cmdline:
                continue
            if Path(os.readlink(entry / "cwd")).resolve() == here:
                found.append(int(entry.name))
        except OSError:  # gone, or another user's
            continue
    return found


def clear_stale_lock(directory: str | Path = ".", *, snakemake: str | None = None,
                     snakemake_args: Sequence[str] = ()) -> bool:
    """Run ``snakemake --unlock`` in ``directory`` if it is locked and no Snakemake process runs
    there; returns whether it did. Prints one line saying what it did or why not.

    ``snakemake_args`` are the run's own options that the unlock needs to parse the workflow
    (``--snakefile``, ``--configfile``); ``make run`` needs none."""
    directory = Path(directory)
    locks = directory / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return False
    running = snakemake_processes(directory)
    if running is None:
        print("dnalm: .snakemake/locks is not empty and running processes cannot be listed "
              "here: if no snakemake runs in this directory, run `snakemake --unlock`",
              file=sys.stderr)
        return False
    if running:
        print(f"dnalm: the Snakemake lock is kept: snakemake runs in this directory "
              f"(pid {', '.join(map(str, running))})", file=sys.stderr)
        return False
    program = snakemake or str(Path(sys.executable).with_name("snakemake"))
    proc = subprocess.run([program, "--unlock", "--cores", "1", *snakemake_args], cwd=directory,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"dnalm: `snakemake --unlock` failed: {tail}", file=sys.stderr)
        return False
    print("dnalm: removed a stale Snakemake lock (left by a killed run; no snakemake runs in "
          "this directory)", file=sys.stderr)
    return True


if __name__ == "__main__":
    clear_stale_lock(".", snakemake_args=sys.argv[1:])
