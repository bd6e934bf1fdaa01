"""Logging set-up shared by Snakemake scripts and the command line.

Scripts log to the rule's ``log:`` file (and stderr) so every step states what it did in numbers;
the command line logs to stderr only.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_files: Sequence[str] = (), *, verbose: bool = False) -> None:
    """Send ``dnalm`` log records to stderr and to each file in ``log_files``."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers += [logging.FileHandler(path, mode="w") for path in log_files]
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, handlers=handlers,
        force=True,
    )
    for noisy in ("urllib3", "filelock", "fsspec", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_script(sm: object, main: Callable[[object], object]) -> None:
    """Run a Snakemake ``script:`` body with logging to the rule's log file.

    A user error (``DnalmError``) is written to the log and stderr as one line and the job exits
    with status 1 (Snakemake then deletes its outputs); anything else is a bug and keeps its
    traceback, in the log too.
    """
    from dnalm.errors import DnalmError

    setup_logging(list(getattr(sm, "log", [])))
    logger = logging.getLogger("dnalm")
    try:
        main(sm)
    except DnalmError as exc:
        logger.error("dnalm: error: %s", exc)
        sys.exit(1)
    except Exception:
        logger.exception("unexpected failure (a bug: please report it with this log)")
        raise


def progress(
    items: Iterable[T], *, total: int | None = None, desc: str, logger: logging.Logger,
    unit: str = "it",
) -> Iterator[T]:
    """Iterate with progress: a tqdm bar on an interactive terminal, and a log line at every
    10 % (so Snakemake logs, which are files, show how far a long step got and how fast)."""
    from tqdm import tqdm

    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    bar = tqdm(items, total=total, desc=desc, unit=unit, disable=not sys.stderr.isatty(),
               mininterval=1.0, leave=False)
    began = time.perf_counter()
    next_mark = 0.1
    for done, item in enumerate(bar, start=1):
        yield item
        if total and done / total >= next_mark:
            rate = done / max(time.perf_counter() - began, 1e-9)
            logger.info("%s: %d/%d %s (%.0f%%, %.1f %s/s)", desc, done, total, unit,
                        100 * done / total, rate, unit)
            while next_mark <= done / total:
                next_mark += 0.1
