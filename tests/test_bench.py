"""The benchmark scripts still run against the library they time (they are not run by the
pipeline, so a changed interface would otherwise break them unnoticed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "bench").glob("*.py")))
def test_each_script_imports(script):
    done = subprocess.run(
        [sys.executable, "-c", f"import runpy; runpy.run_path({str(REPO / 'bench' / script)!r}, run_name='bench')"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_the_gpu_oom_script_runs_its_code_path_on_the_cpu(tmp_path):
    """bench/gpu_oom.py is what a device session runs; --cpu-smoke takes the same path, tiny."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench/gpu_oom.py"), "--out", str(tmp_path), "--cpu-smoke"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout.split("batch  status")[1].splitlines()[1:7]
    assert [line.split()[:2] for line in table] == [[b, "ok"] for b in ("1", "8", "32", "128", "512", "1028")]
    assert "model loads: 1" in done.stdout
