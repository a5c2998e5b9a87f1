"""One writer per sweep folder, and no supervisor outliving the Snakemake run that started it.

Two processes measuring into the same sweep folder (a sweep and live tuning, or a sweep re-run
while an orphan of a killed run still measures) would interleave trials on the same devices and
could write the same trial JSON. `FolderLock` holds an exclusive lock on `<folder>/.lock` for a
supervisor's lifetime: a second writer waits for it, saying who holds it, and gives up with a
clear error after `wait_s`. The lock is flock'd, so a killed holder releases it at once.

`SnakemakeWatch` finds the Snakemake processes this job runs under (the ancestors whose command
line runs snakemake). If one of them dies (SIGKILL), the job is no longer supervised:
the sweep stops its worker and exits instead of measuring on unseen, and the trial in flight is
measured again by the next run (`--rerun-incomplete`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = ".lock"
logger = logging.getLogger(__name__)


class FolderBusy(RuntimeError):
    """Another process holds the sweep folder's lock."""


class SnakemakeGone(RuntimeError):
    """The Snakemake process that started this job has died."""


class FolderLock:
    def __init__(self, folder: Path, *, wait_s: float = 3600.0, poll_s: float = 1.0, owner: str = ""):
        self.path = Path(folder) / LOCK_NAME
        self.wait_s, self.poll_s = wait_s, poll_s
        self.prefix = f"[{owner}] " if owner else ""
        self.handle = None

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return "another process"
        return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}"

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        started, announced = time.monotonic(), 0.0
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= self.wait_s:
                    holder = self._holder()
                    handle.close()
                    raise FolderBusy(
                        f"{self.path.parent} is being measured by {holder}; waited {waited:.0f} s "
                        f"(a second writer never interleaves with it)"
                    ) from None
                if waited - announced >= 60 or announced == 0:
                    logger.info(
                        f"{self.prefix}waiting for {self.path.parent}: it is being measured by {self._holder()}"
                    )
                    announced = waited or 1e-9
                time.sleep(self.poll_s)
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
        )
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class SnakemakeWatch:
    """Raises SnakemakeGone from `check()` once a Snakemake ancestor of this process is gone: the
    run's own process, or the Snakemake process it spawned for this job (local jobs run under one).
    Without such an ancestor (the library called from a test or a script) it never raises."""

    def __init__(self):
        import psutil

        self.processes = []
        for ancestor in psutil.Process().parents():
            try:
                if _runs_snakemake(ancestor.cmdline()):
                    self.processes.append(ancestor)
            except psutil.Error:
                continue

    def check(self) -> None:
        import psutil

        for process in self.processes:
            try:
                # killed but not yet reaped by its parent is gone too
                alive = process.is_running() and process.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                alive = False
            if not alive:
                raise SnakemakeGone(f"the Snakemake process {process.pid} that runs this job is gone")


def _runs_snakemake(command: list[str]) -> bool:
    """`snakemake ...` or `python -m snakemake ...` (not a shell running a script that merely
    lives under .snakemake/)."""
    if any(os.path.basename(arg) == "snakemake" for arg in command[:2]):
        return True
    return any(a == "-m" and b == "snakemake" for a, b in zip(command, command[1:], strict=False))
