"""The GPU check before a model loads: a device torch counts but has no kernels for stops the sweep
with one message (no GPU needed: the check's logic takes a capability and an arch list)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from infpop.measure import channel, device_check, worker
from infpop.measure.device_check import arch_support, device_problem

# torch.cuda.get_arch_list() of PyPI's torch 2.13.0 (CUDA 13) and of the volta environments' 2.10.0
TORCH_2_13 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
TORCH_2_10 = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]


@pytest.mark.parametrize(
    "capability, arch_list, expected",
    [
        ((7, 0), TORCH_2_13, None),  # V100 on the CUDA 13 build: nothing runs
        ((7, 0), TORCH_2_10, "sm_70"),
        ((8, 0), TORCH_2_13, "sm_80"),
        ((8, 9), TORCH_2_13, "sm_80"),  # L40: sm_80 cubins run on 8.9 (same major, lower minor)
        ((6, 1), TORCH_2_10, None),  # Pascal: no sm_6x cubin, no PTX
        ((7, 5), ["sm_80", "compute_70"], "compute_70"),  # PTX of an older architecture is compiled at load
        ((7, 0), ["sm_75", "compute_75"], None),  # ... but not PTX of a newer one
        ((9, 0), ["sm_80"], None),  # cubins never cross a major version
        ((9, 0), ["sm_80", "sm_90a"], "sm_90a"),
        ((10, 3), ["sm_90a", "sm_100a"], None),  # arch-specific cubins run on their exact capability only
        ((10, 0), ["sm_100a"], "sm_100a"),
        ((10, 3), ["sm_100f"], "sm_100f"),  # family cubins on the family's later minors
        ((12, 1), ["sm_120", "compute_120"], "sm_120"),
        ((7, 0), [], None),
    ],
)
def test_arch_support(capability, arch_list, expected):
    assert arch_support(capability, arch_list) == expected


def _v100(kernel_error=None):
    return {"index": 0, "name": "Tesla V100-SXM2-32GB", "capability": [7, 0], "kernel_error": kernel_error}


def test_a_v100_under_the_standard_build_names_the_gpu_the_build_and_the_fix():
    problem = device_problem(_v100(), TORCH_2_13, "2.13.0+cu130", "v100", None)
    assert "GPU 0 (Tesla V100-SXM2-32GB, compute capability 7.0)" in problem
    assert "torch 2.13.0+cu130" in problem and "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120" in problem
    assert "Set `environment: volta` under hardware.v100" in problem and "No trial was run" in problem


def test_a_v100_under_the_volta_build_passes():
    assert device_problem(_v100(), TORCH_2_10, "2.10.0+cu128", "v100", "volta") is None


def test_a_gpu_older_than_volta_has_no_environment():
    pascal = {"index": 1, "name": "Tesla P100-PCIE-16GB", "capability": [6, 0], "kernel_error": None}
    problem = device_problem(pascal, TORCH_2_10, "2.10.0+cu128", "p100", "volta")
    assert "GPU 1 (Tesla P100-PCIE-16GB, compute capability 6.0)" in problem
    assert "No InfPop environment has kernels for it" in problem and "environment: volta" not in problem


def test_a_failing_test_kernel_is_a_problem_even_when_the_architecture_fits():
    error = "RuntimeError: CUDA error: the provided PTX was compiled with an unsupported toolchain."
    problem = device_problem(_v100(error), TORCH_2_10, "2.10.0+cu128", "v100", "volta")
    assert "a test kernel failed" in problem and "unsupported toolchain" in problem and "nvidia-smi" in problem


def test_the_worker_stops_before_loading_when_the_check_fails(monkeypatch):
    """The same path as too few GPUs: a setup_failed event (the supervisor's SweepError), no engine."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    seen = {}

    def check(hardware, environment):
        seen.update(hardware=hardware, environment=environment)
        return "GPU 0 (Tesla V100-SXM2-32GB, compute capability 7.0) cannot run ..."

    monkeypatch.setattr(device_check, "check_visible_devices", check)
    events = []
    w = worker.Worker(events.append)
    w.load(
        channel.Load(
            engine="hf",
            hardware="v100",
            environment=None,
            model_path="unused",
            n_gpus=1,
            dtype="float16",
            device="cuda",
            engine_args={},
            prompts=[],
        )
    )
    assert seen == {"hardware": "v100", "environment": None}
    assert [type(e) for e in events] == [channel.SetupFailed] and w.engine is None
    assert events[0].error.startswith("hardware 'v100': GPU 0 (Tesla V100-SXM2-32GB")


def test_the_probe_runs_in_a_child_process_and_passes_without_gpus():
    done = subprocess.run(
        [sys.executable, "-m", "infpop.measure.device_check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert '"devices": []' in done.stdout
    assert device_check.check_visible_devices("cpu", None) is None
