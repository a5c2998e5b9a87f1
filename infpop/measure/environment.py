"""What a trial ran on: host, CPU, GPUs, driver, CUDA, Python and library versions, git commit."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache

from infpop import REPO_ROOT


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The workflow's commit, with '-dirty' when tracked files differ from it."""
    commit = _run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"])
    if commit is None:
        return None
    dirty = _run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"])
    return commit + ("-dirty" if dirty else "")


def gpus() -> list[dict]:
    """The GPUs this process sees (after CUDA_VISIBLE_DEVICES), with total memory."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [
        {"name": torch.cuda.get_device_name(i), "memory_bytes": torch.cuda.get_device_properties(i).total_memory}
        for i in range(torch.cuda.device_count())
    ]


def driver_version() -> str | None:
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.splitlines()[0].strip() if out else None


def collect(library_versions: dict[str, str], accelerators: bool = True) -> dict:
    """The environment block of a trial record. `accelerators` False: the trial used none (a
    simulated one), so no GPU or CUDA is looked for (nor torch imported)."""
    import psutil

    cuda, seen = None, []
    if accelerators:
        try:
            import torch

            cuda = torch.version.cuda
        except ImportError:
            pass
        seen = gpus()
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "gpus": seen,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "driver": driver_version() if seen else None,
        "cuda": cuda,
        "python": platform.python_version(),
        "libraries": library_versions,
        "git_commit": git_commit(),
    }
