"""Distinct GPUs for concurrent sweeps on one machine.

Snakemake's global `gpu` resource (profiles/local) keeps the GPUs in use at or under the machine's
count, but does not say which devices a job gets. A GPU sweep that was given no devices (no
CUDA_VISIBLE_DEVICES: not under SLURM) claims free device slots here: one lock file per device
under the workflow's .snakemake folder, held (flock) for the sweep's lifetime, so two sweeps never
pin the same device and a killed sweep's devices are free again at once.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_LOCK_DIR = Path(".snakemake") / "infpop-gpu-slots"


class NoFreeDevices(RuntimeError):
    """Not enough free GPUs (or more asked for than the machine has)."""


@contextmanager
def claim(
    n_devices: int, total: int, lock_dir: Path = DEFAULT_LOCK_DIR, *, wait_s: float = 0.0, poll_s: float = 1.0
) -> Iterator[list[int]]:
    """Hold `n_devices` free device indices out of 0..total-1 while the block runs.

    Waits up to `wait_s` seconds for enough free devices, then raises NoFreeDevices.
    """
    if n_devices > total:
        raise NoFreeDevices(f"{n_devices} GPUs asked for, this machine has {total}")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        held: list[tuple[int, int]] = []
        for index in range(total):
            fd = os.open(lock_dir / f"gpu{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held.append((index, fd))
            if len(held) == n_devices:
                break
        if len(held) == n_devices:
            break
        for _, fd in held:
            os.close(fd)  # closing drops the lock
        if time.monotonic() >= deadline:
            raise NoFreeDevices(f"no {n_devices} free GPU(s) of {total} (device slots in {lock_dir})")
        time.sleep(poll_s)
    try:
        yield [index for index, _ in held]
    finally:
        for _, fd in held:
            os.close(fd)


@contextmanager
def for_job(
    hardware: dict, n_gpus: int, wait_s: float = 3600, lock_dir: Path = DEFAULT_LOCK_DIR
) -> Iterator[list[int] | None]:
    """The GPUs of a job that measures on `hardware` (a sweep, a server): those given to it
    (CUDA_VISIBLE_DEVICES, set by SLURM or the local profile), or free device slots claimed for
    its lifetime and put into CUDA_VISIBLE_DEVICES (yielded), so concurrent local jobs never share
    a GPU; None on the CPU or where devices were given."""
    if hardware["kind"] != "gpu" or os.environ.get("CUDA_VISIBLE_DEVICES"):
        yield None
        return
    total = hardware.get("gpus_per_node") or visible_device_count()
    if not total:
        yield None
        return
    with claim(n_gpus, total, lock_dir, wait_s=wait_s) as claimed:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, claimed))
        yield claimed


def visible_device_count() -> int:
    """GPUs on this machine, from nvidia-smi (0 when there is none)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))
