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


class _NoTraceback(logging.Formatter):
    """Format a record without its traceback: the terminal gets one line per error, the log
    file (formatted by a plain formatter) keeps the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None,
                                            "exc_text": None})
        return super().format(record)


def setup_logging(log_files: Sequence[str] = (), *, verbose: bool = False) -> None:
    """Send ``dnalm`` log records to stderr and to each file in ``log_files``.

    With log files, stderr leaves tracebacks out (they go to the files only).
    """
    stderr = logging.StreamHandler(sys.stderr)
    if log_files:
        stderr.setFormatter(_NoTraceback(FORMAT))
    handlers: list[logging.Handler] = [stderr]
    handlers += [logging.FileHandler(path, mode="w") for path in log_files]
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, handlers=handlers,
        force=True,
    )
    for noisy in ("urllib3", "filelock", "fsspec", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_script(sm: object, main: Callable[[object], object]) -> None:
    """Run a Snakemake ``script:`` body with logging to the rule's log file.

    Every failure is one line ``dnalm: error: <file or record>: <reason>`` in the log and on
    stderr, and the job exits with status 1 (Snakemake then deletes its outputs). A user error
    (``DnalmError``) or a system one (``OSError``: a full disk, a read-only directory) needs
    nothing more; anything else is a bug, whose traceback goes to the rule's log file (not to
    the terminal, where Snakemake's own report follows).
    """
    from dnalm.errors import DnalmError, describe_error

    log_files = list(getattr(sm, "log", []))
    setup_logging(log_files)
    logger = logging.getLogger("dnalm")
    try:
        main(sm)
    except (DnalmError, OSError) as exc:
        logger.error("dnalm: error: %s", describe_error(exc))
        sys.exit(1)
    except Exception as exc:
        where = f"; traceback in {log_files[0]}" if log_files else ""
        logger.error("dnalm: error: %s (a bug: please report it with the log%s)",
                     describe_error(exc), where, exc_info=True)
        sys.exit(1)


class Progress:
    """Progress of a long step counted in units (shards, batches, bytes): a tqdm bar on an
    interactive terminal, and a log line at every 10 % of ``total`` (or every ``interval``
    seconds when the total is unknown), so that Snakemake logs, which are files, and ``dnalm``
    commands on any terminal show how far a long step got and how fast. Lines closer than
    ``min_gap`` seconds are left out, except the last one (100 %), so a loop that takes a second
    writes one line, not ten.

    Use as a context manager and call :meth:`update` with the units just done.
    """

    def __init__(
        self, total: int | None, *, desc: str, logger: logging.Logger, unit: str = "it",
        unit_scale: bool = False, interval: float = 30.0, min_gap: float = 1.0,
    ) -> None:
        from tqdm import tqdm

        self.total = total or None
        self.desc, self.logger, self.unit = desc, logger, unit
        self.unit_scale, self.interval, self.min_gap = unit_scale, interval, min_gap
        self.done = 0
        self.began = self.last_line = time.perf_counter()
        self.next_mark = 0.1
        self.bar = tqdm(total=self.total, desc=desc, unit=unit, unit_scale=unit_scale,
                        disable=not sys.stderr.isatty(), mininterval=1.0, leave=False)

    def _scaled(self, value: float) -> str:
        for prefix in ("", "k", "M", "G", "T"):
            if abs(value) < 1000 or prefix == "T":
                return f"{value:.1f} {prefix}{self.unit}" if prefix else f"{value:.0f} {self.unit}"
            value /= 1000
        raise AssertionError("unreachable")

    def _line(self) -> None:
        now = time.perf_counter()
        self.last_line = now
        rate = self.done / max(now - self.began, 1e-9)
        if self.unit_scale:
            done, speed = self._scaled(self.done), f"{self._scaled(rate)}/s"
            total = f"/{self._scaled(self.total)}" if self.total else ""
        else:
            done, speed = f"{self.done:,}", f"{rate:,.1f} {self.unit}/s"
            total = f"/{self.total:,} {self.unit}" if self.total else f" {self.unit}"
        share = f"{100 * self.done / self.total:.0f}%, " if self.total else ""
        self.logger.info("%s: %s%s (%s%s)", self.desc, done, total, share, speed)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.done += n
        self.bar.update(n)
        if self.total:
            if self.done / self.total >= self.next_mark:
                finished = self.done >= self.total
                if finished or time.perf_counter() - self.last_line >= self.min_gap:
                    self._line()
                while self.next_mark <= self.done / self.total:
                    self.next_mark += 0.1
        elif time.perf_counter() - self.last_line >= self.interval:
            self._line()

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    items: Iterable[T], *, total: int | None = None, desc: str, logger: logging.Logger,
    unit: str = "it",
) -> Iterator[T]:
    """Iterate with progress (see :class:`Progress`): a tqdm bar on an interactive terminal, and
    a log line at every 10 %."""
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    with Progress(total, desc=desc, logger=logger, unit=unit) as bar:
        for item in items:
            yield item
            bar.update()
