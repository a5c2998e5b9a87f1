"""Nothing lost, nothing left behind: the real pipeline killed mid-trial, then resumed.

Snakemake runs the default pipeline's sweep on the tiny model in a subprocess whose environment
carries a unique marker, so every process it starts (the sweep script, the worker, vLLM's engine
processes) can be found again by that marker, whoever its parent is by then.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import REPO, describe, marked, repo_config, wait_until

pytestmark = pytest.mark.slow

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def small_config(tmp_path: Path, engine: str) -> Path:
    config = repo_config()
    # four trials of a few seconds each, so a kill lands inside one
    config.update(
        engines=[engine],
        n_gpus=[1],
        batch_sizes=[1, 2, 4, 8],
        max_new_tokens=[20],
        repetitions=1,
        benchmark={"limit": 96, "order": "length_ascending"},
        paper_data={"replay": False},
        analysis={"max_new_tokens": 20},
        crosscheck={"enabled": False},
    )
    config["optimise"] = {"tune": {"budget": 1}}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start(tmp_path: Path, config: Path, marker: str, *args) -> tuple[subprocess.Popen, Path]:
    """Snakemake in a session of its own, its output to a file (a pipe would be held open by
    whatever it leaves behind, and its parent would not reap it while reading)."""
    env = dict(os.environ, INFPOP_TEST_MARKER=marker)
    output = tmp_path / f"snakemake-{marker}.out"
    with open(output, "w") as handle:
        run = subprocess.Popen(
            [
                *SNAKEMAKE,
                "--cores",
                "2",
                "--configfile",
                str(config),
                "--directory",
                str(tmp_path),
                *args,
                "results/measured/trials.csv",
            ],
            cwd=REPO,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return run, output


def trials_dir(tmp_path: Path, engine: str) -> Path:
    return tmp_path / "results" / "trials" / "cpu" / engine / "tiny-llama" / "g1" / "t20"


def interrupt_mid_trial(tmp_path: Path, engine: str, kill) -> tuple[dict[str, bytes], str]:
    """Start the run, wait for the first two trials, kill it inside the third; the trial files
    then on disk and the run's output."""
    marker = uuid.uuid4().hex
    config = small_config(tmp_path, engine)
    run, output = start(tmp_path, config, marker)
    folder = trials_dir(tmp_path, engine)
    wait_until(lambda: (folder / "b2_r0.json").exists(), 600, "the first two trials")
    time.sleep(0.5)  # inside the third trial (b4), which takes seconds
    assert not (folder / "b4_r0.json").exists()
    kill(run)
    run.wait(timeout=120)
    # nothing measures on unseen: the sweep script, its worker and vLLM's processes are all gone
    wait_until(lambda: not marked(marker), 60, "every process of the run to end:\n" + describe(marked(marker)))
    kept = {p.name: p.read_bytes() for p in folder.glob("b*_r*.json")}
    return kept, output.read_text()


def resume(tmp_path: Path, engine: str, kept: dict[str, bytes]) -> None:
    config = small_config(tmp_path, engine)
    subprocess.run(
        [*SNAKEMAKE, "--unlock", "--configfile", str(config), "--directory", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    marker = uuid.uuid4().hex
    again, output = start(tmp_path, config, marker, "--rerun-incomplete")
    assert again.wait(timeout=900) == 0, output.read_text()[-5000:]
    folder = trials_dir(tmp_path, engine)
    # the finished trials are kept byte for byte; the interrupted one and the one after are measured now
    assert {name: (folder / name).read_bytes() for name in kept} == kept
    assert sorted(p.name for p in folder.glob("b*_r*.json")) == ["b1_r0.json", "b2_r0.json", "b4_r0.json", "b8_r0.json"]
    log = (tmp_path / "results" / "logs" / "sweep" / "cpu" / engine / "tiny-llama" / "g1.log").read_text()
    resumed = log[log.rindex("] trial 1/") :]  # the resumed run's part of the job log
    assert resumed.count("(kept from an earlier run)") == 2
    assert "t20 b4 r0: ok" in resumed and "t20 b8 r0: ok" in resumed
    assert not marked(marker)


def test_sigkill_to_snakemake_mid_trial_loses_nothing_and_leaves_nothing(tmp_path):
    kept, _ = interrupt_mid_trial(tmp_path, "hf", lambda run: run.send_signal(signal.SIGKILL))
    assert sorted(kept) == ["b1_r0.json", "b2_r0.json"]  # the interrupted trial was not written
    resume(tmp_path, "hf", kept)


def test_sigterm_to_the_run_mid_trial_stops_vllm_and_its_children(tmp_path):
    """SIGTERM to Snakemake's process group (a terminal closing, systemd stopping the run): the
    sweep stops its worker's whole process group (vLLM's engine core and workers included), and
    keeps the finished trials. (The resume is the sweep's, whatever the engine: the SIGKILL test
    above checks it on hf, without another minute of vLLM loading.)"""
    kept, _ = interrupt_mid_trial(tmp_path, "vllm", lambda run: os.killpg(run.pid, signal.SIGTERM))
    assert sorted(kept) == ["b1_r0.json", "b2_r0.json"]
    assert all(json.loads(data)["status"] == "ok" for data in kept.values())


def test_a_timed_out_vllm_trial_leaves_no_engine_process(tmp_path, config_for, benchmark_file, monkeypatch):
    """A trial past trial_timeout_s kills the worker and every vLLM process under it before the
    sweep goes on with a fresh worker, which loads vLLM again and measures the next trial (to its
    end or to its own timeout)."""
    from infpop.measure import records
    from infpop.measure.grid import Sweep, TrialKey
    from infpop.measure.sweep import run_sweep

    marker = uuid.uuid4().hex
    monkeypatch.setenv("INFPOP_TEST_MARKER", marker)
    config = config_for(
        engines=["vllm"],
        batch_sizes=[1, 8],
        max_new_tokens=[64],
        benchmark={"limit": 64},
        analysis={"max_new_tokens": 64},
        trial_timeout_s=3,
    )
    left = {}

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # logged after the worker was killed, before the next one starts
            if "b1 r0: timeout" in record.getMessage():
                left["after_timeout"] = describe(marked(marker))

    watch, library = Watch(), logging.getLogger("infpop")
    level = library.level
    library.addHandler(watch)
    library.setLevel(logging.INFO)
    try:
        run_sweep(config, Sweep("cpu", "vllm", "tiny", 1), tmp_path, benchmark_file)
    finally:
        library.removeHandler(watch)
        library.setLevel(level)
    assert records.read(tmp_path / TrialKey(64, 1, 0).relpath)["status"] == "timeout"
    assert records.read(tmp_path / TrialKey(64, 8, 0).relpath)["status"] in ("ok", "timeout")
    assert left == {"after_timeout": ""}
    assert not marked(marker)
