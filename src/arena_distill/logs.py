"""Logging for workflow scripts: one log file per job, errors included.

Snakemake shows a failing job's log path; the traceback must be in that file, not only on
the terminal of whoever launched the run (on SLURM nobody watches that terminal).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm


@contextlib.contextmanager
def script_logging(log_path: str, name: str = "arena_distill") -> Iterator[logging.Logger]:
    """Send log records to `log_path` and stderr; log any exception before re-raising it."""
    handlers: list[logging.Handler] = [logging.FileHandler(log_path, mode="w"), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logger = logging.getLogger(name)
    try:
        yield logger
    except Exception:
        logger.exception("job failed")
        raise
    finally:
        for handler in handlers:
            handler.flush()


class ProgressLines(io.TextIOBase):
    """A file for tqdm that logs each refresh as one plain line: in a log file a redrawn
    bar is a run of carriage returns and control codes, not a readable record."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def write(self, text: str) -> int:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self.logger.info(line)
        return len(text)


def progress(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A progress bar on a terminal; elsewhere (a SLURM log, a redirected stderr) a logged
    line a minute."""
    if sys.stderr.isatty():
        return tqdm(iterable, disable=not enabled, mininterval=5, **kwargs)
    return tqdm(
        iterable, disable=not enabled, file=ProgressLines(logging.getLogger("arena_distill.progress")), mininterval=60, ascii=True, **kwargs
    )
