"""Can this environment's torch run on the visible GPUs? Checked before a sweep loads its model.

torch.cuda.device_count() counts a GPU whatever the build: PyPI's torch 2.13.0 (CUDA 13) counts a
V100 it has no kernels for, and every trial of the sweep would then fail one by one. So each
visible device is checked: its compute capability against the build's architectures
(torch.cuda.get_arch_list()), then one tiny kernel, run and synchronised. The probe runs in a
child process (`python -m infpop.measure.device_check`, one JSON line out) so that the worker holds no
CUDA context on the devices while vLLM's own processes size their memory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

#: The oldest compute capability an InfPop environment has kernels for (the volta environments'
#: torch 2.10.0 and vLLM 0.19.1 start at sm_70; envs/VOLTA.md).
VOLTA_CAPABILITY = (7, 0)
#: Importing torch and starting CUDA on every device takes seconds; a hung driver must not hang the sweep.
PROBE_TIMEOUT_S = 600


def conda_env_name(hardware: dict, role: str) -> str:
    """The conda environment (envs/<name>.yaml) with kernels for a job on this hardware: `role` is
    the engine of a sweep, or 'tune' for the jobs that run both engines. A hardware's
    `environment` picks its builds (volta: hf-volta, vllm-volta, tune-volta); without one, the
    standard builds."""
    variant = hardware.get("environment")
    return f"{role}-{variant}" if variant else role


def _arch(entry: str) -> tuple[str, int, int, str] | None:
    """('sm' | 'compute', major, minor, suffix) of an entry like sm_80, sm_90a, compute_120f."""
    match = re.fullmatch(r"(sm|compute)_(\d+)(\d)([af]?)", entry.strip())
    if not match:
        return None
    return match[1], int(match[2]), int(match[3]), match[4]


def arch_support(capability: tuple[int, int], arch_list: list[str]) -> str | None:
    """The entry of a torch build's arch list that runs on a GPU of this compute capability, or None.

    A cubin (sm_XY) runs on devices of its major version with a minor of at least Y (sm_80 on an
    8.6 GPU); an arch-specific one (sm_90a) on exactly X.Y only. PTX (compute_XY) is compiled by
    the driver at load time for any device of X.Y or newer (arch-specific PTX, again, only X.Y).
    """
    major, minor = capability
    for entry in arch_list:
        parsed = _arch(entry)
        if parsed is None:
            continue
        kind, arch_major, arch_minor, suffix = parsed
        if suffix == "a":
            fits = (arch_major, arch_minor) == (major, minor)
        elif kind == "sm" or suffix == "f":
            fits = arch_major == major and arch_minor <= minor
        else:
            fits = (arch_major, arch_minor) <= (major, minor)
        if fits:
            return entry
    return None


def device_problem(
    device: dict, arch_list: list[str], torch_version: str, hardware: str, environment: str | None
) -> str | None:
    """What stops a sweep on this device, or None.

    device: {"index", "name", "capability": [major, minor], "kernel_error": text or None}, as the probe
    reports it; hardware: the config's label; environment: the hardware's `environment` (None: standard).
    """
    capability = tuple(device["capability"])
    where = f"GPU {device['index']} ({device['name']}, compute capability {capability[0]}.{capability[1]})"
    support = arch_support(capability, arch_list)
    if support is None:
        problem = (
            f"{where} cannot run this environment's torch {torch_version}: its kernels are built for "
            f"{' '.join(arch_list) or 'no GPU architecture'}, none for sm_{capability[0]}{capability[1]} "
            f"(a cubin sm_{capability[0]}x at or below it, or PTX at or below compute_{capability[0]}{capability[1]})."
        )
    elif device.get("kernel_error"):
        problem = (
            f"{where}: a test kernel failed with this environment's torch {torch_version} "
            f"(architecture {support} fits): {device['kernel_error'].strip().splitlines()[-1]}. "
            f"Check that the driver supports this torch's CUDA (nvidia-smi)."
        )
    else:
        return None
    if support is None and environment != "volta" and capability >= VOLTA_CAPABILITY:
        advice = (
            f"Set `environment: volta` under hardware.{hardware} in the config: the volta environments "
            f"(envs/hf-volta.yaml, envs/vllm-volta.yaml, envs/tune-volta.yaml) carry kernels from sm_70 on "
            f"(envs/VOLTA.md)."
        )
    elif support is None:
        advice = (
            f"No InfPop environment has kernels for it (the oldest, volta, starts at sm_70): leave hardware "
            f"'{hardware}' out of the config."
        )
    else:
        advice = ""
    return f"{problem} No trial was run. {advice}".strip()


def probe() -> dict:
    """This process's torch and every visible device (run in the child process)."""
    import torch

    report = {"torch_version": torch.__version__, "arch_list": [], "devices": []}
    if not torch.cuda.is_available():
        return report
    report["arch_list"] = list(torch.cuda.get_arch_list())
    for index in range(torch.cuda.device_count()):
        device = {
            "index": index,
            "name": torch.cuda.get_device_name(index),
            "capability": list(torch.cuda.get_device_capability(index)),
            "kernel_error": None,
        }
        if arch_support(tuple(device["capability"]), report["arch_list"]) is not None:
            try:
                # one elementwise kernel and a reduction, synchronised: fails here, not mid-sweep
                values = torch.arange(8, dtype=torch.float32, device=f"cuda:{index}")
                total = (values + values).sum()
                torch.cuda.synchronize(index)
                if total.item() != 56.0:
                    device["kernel_error"] = f"the test kernel computed {total.item()}, not 56.0"
            except Exception as exc:  # "no kernel image is available", a driver too old, ...
                device["kernel_error"] = f"{type(exc).__name__}: {exc}"
        report["devices"].append(device)
    return report


def check_visible_devices(hardware: str, environment: str | None, python: str = sys.executable) -> str | None:
    """Probe the devices this process sees (CUDA_VISIBLE_DEVICES) in a child process; the first
    problem found, or None."""
    try:
        done = subprocess.run(
            [python, "-m", "infpop.measure.device_check"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return f"the GPU check (python -m infpop.measure.device_check) did not finish within {PROBE_TIMEOUT_S} s"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        return f"the GPU check (python -m infpop.measure.device_check) failed (exit {done.returncode}):\n{tail}"
    report = json.loads(lines[-1])
    for device in report["devices"]:
        problem = device_problem(device, report["arch_list"], report["torch_version"], hardware, environment)
        if problem:
            return problem
    return None


if __name__ == "__main__":
    print(json.dumps(probe()))
