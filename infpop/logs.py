"""One logging setup for every Snakemake job: Python's `logging` and any uncaught exception go to
the job's `log:` file and to stderr, so each rule's log holds what happened.

Every library module logs through `logging.getLogger(__name__)`; every workflow script starts
with `log = setup(snakemake)`. A job's engine processes (the sweep's worker and what it starts)
write to the same log file (`job_log_stream()`), so the log also holds what the engines print.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_stream = None


class _Formatter(logging.Formatter):
    """Time and message; the level too when it is not plain information."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno == logging.INFO else text.replace(" ", f" {record.levelname}: ", 1)


def setup(snakemake=None, *, log_path: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Route logging to the job's log file (appended: a re-run keeps the earlier run's lines) and
    to stderr, and log uncaught exceptions there too. Returns the job's logger."""
    global _stream
    if log_path is None and snakemake is not None and len(snakemake.log):
        log_path = snakemake.log[0]
    formatter = _Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        _stream = open(log_path, "a", buffering=1)
        handlers.append(logging.StreamHandler(_stream))
    for handler in handlers:
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)

    def excepthook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, traceback)
            return
        logging.getLogger("infpop").critical("uncaught %s", kind.__name__, exc_info=(kind, value, traceback))

    sys.excepthook = excepthook
    name = getattr(snakemake, "rule", None) or "infpop"
    return logging.getLogger(f"infpop.job.{name}")


def job_log_stream():
    """The job's log file, for child processes to write into (None outside a job: they inherit
    stderr)."""
    return _stream
