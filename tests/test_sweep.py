"""The sweep supervisor on the real hf engine and tiny model, under injected faults.

The faults (an OOM at one batch size, the worker killed mid-trial, a trial that hangs) are
injected inside the real worker process through the supervisor's `faults` test hook; everything
else (worker processes, engine, records) is the production path.
"""

from __future__ import annotations

import os

import pytest

from infpop import records
from infpop.grid import Sweep, TrialKey
from infpop.sweep import SweepError, run_sweep, worker_environment

pytestmark = pytest.mark.slow

SWEEP = Sweep("cpu", "hf", "tiny", 1)


def statuses(root):
    return {key: records.read(root / key.relpath)["status"] for key in [
        TrialKey(3, b, 0) for b in (1, 2, 4, 8, 16)]}


def test_faults_are_recorded_and_nothing_is_lost_or_rerun(tmp_path, config_for, benchmark_file):
    config = config_for(batch_sizes=[1, 2, 4, 8, 16], trial_timeout_s=15, benchmark={"limit": 16})
    root = tmp_path / "trials"
    faults = {
        TrialKey(3, 2, 0): {"kind": "crash", "after_batches": 1},  # worker SIGKILLed mid-trial
        TrialKey(3, 4, 0): {"kind": "hang", "after_batches": 1},  # passes trial_timeout_s
        TrialKey(3, 8, 0): {"kind": "oom", "after_batches": 1},  # out of memory at batch size 8
    }
    lines = []
    summary = run_sweep(config, SWEEP, root, benchmark_file,
                        faults=faults, log=lines.append)

    by_batch = {key.batch_size: records.read(root / key.relpath) for key in
                [TrialKey(3, b, 0) for b in (1, 2, 4, 8, 16)]}
    assert {b: r["status"] for b, r in by_batch.items()} == {
        1: "ok", 2: "crashed", 4: "timeout", 8: "oom", 16: "skipped_oom"}
    ok = by_batch[1]
    assert ok["counts"]["generated_tokens"] == 16 * 3 and ok["counts"]["batches_completed"] == 16
    assert ok["throughput_tokens_per_s"] == pytest.approx(48 / ok["timings"]["generation_seconds"])
    # partial figures: each fault struck after the first batch
    for batch in (2, 4, 8):
        record = by_batch[batch]
        assert record["counts"]["batches_completed"] == 1
        assert record["counts"]["generated_tokens"] == batch * 3
        assert record["throughput_tokens_per_s"] > 0
    assert "killed by signal SIGKILL" in by_batch[2]["error"]
    assert "trial_timeout_s=15" in by_batch[4]["error"]
    assert "out of memory" in by_batch[8]["error"].lower()
    assert by_batch[16]["counts"]["batches_completed"] == 0 and "batch size 8 ran out of memory" in by_batch[16]["error"]
    # a fresh worker after the crash and after the timeout; the OOM kept its worker
    assert summary["model_loads"] == 3
    assert len(summary["trials"]) == 5 and summary["reused_trials"] == 0
    assert any("trial 5/5 t3 b16 r0: skipped_oom" in line for line in lines)

    # The next invocation keeps every recorded trial: no worker, no model load, files untouched.
    before = {p: p.read_bytes() for p in root.rglob("t*/*.json")}
    again = run_sweep(config, SWEEP, root, benchmark_file, log=lines.append)
    assert again["model_loads"] == 0 and again["reused_trials"] == 5
    assert {p: p.read_bytes() for p in root.rglob("t*/*.json")} == before and len(before) == 5

    # retry_failed re-runs only the failed ones (now without faults), keeping ok/oom/skipped_oom
    retry = dict(config, retry_failed=True)
    third = run_sweep(retry, SWEEP, root, benchmark_file, log=lines.append)
    assert third["reused_trials"] == 3 and third["model_loads"] == 1
    assert statuses(root) == {TrialKey(3, 1, 0): "ok", TrialKey(3, 2, 0): "ok", TrialKey(3, 4, 0): "ok",
                              TrialKey(3, 8, 0): "oom", TrialKey(3, 16, 0): "skipped_oom"}


def test_pruning_off_runs_every_batch_size(tmp_path, config_for, benchmark_file):
    config = config_for(batch_sizes=[1, 2, 4], oom_pruning=False)
    faults = {TrialKey(3, 2, 0): {"kind": "oom", "after_batches": 0}}
    summary = run_sweep(config, SWEEP, tmp_path, benchmark_file, faults=faults, log=lambda line: None)
    assert sorted(summary["trials"].values()) == ["ok", "ok", "oom"]
    oom = records.read(tmp_path / TrialKey(3, 2, 0).relpath)
    assert oom["counts"]["batches_completed"] == 0 and oom["throughput_tokens_per_s"] is None


def test_interrupted_sweep_resumes_where_it_stopped(tmp_path, config_for, benchmark_file):
    """A sweep killed part-way (here: its first trial written, the rest not) runs only the rest."""
    config = config_for(batch_sizes=[1, 4])
    run_sweep(dict(config, batch_sizes=[1]), SWEEP, tmp_path, benchmark_file, log=lambda line: None)
    first = (tmp_path / TrialKey(3, 1, 0).relpath).read_bytes()
    summary = run_sweep(config, SWEEP, tmp_path, benchmark_file, log=lambda line: None)
    assert summary["reused_trials"] == 1 and summary["model_loads"] == 1
    assert (tmp_path / TrialKey(3, 1, 0).relpath).read_bytes() == first


def test_corrupt_trial_file_is_rerun_with_a_warning(tmp_path, config_for, benchmark_file):
    config = config_for(batch_sizes=[1])
    path = (tmp_path / TrialKey(3, 1, 0).relpath)
    path.parent.mkdir(parents=True)
    path.write_text('{"schema_version": 1, "hard')
    lines = []
    run_sweep(config, SWEEP, tmp_path, benchmark_file, log=lines.append)
    assert records.read(path)["status"] == "ok"
    assert any("corrupt or truncated" in line and "re-running" in line for line in lines)


def test_model_that_fails_to_load_is_recorded_for_every_trial(tmp_path, config_for, benchmark_file, tiny_model):
    config = config_for(batch_sizes=[1, 2])
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    config["models"]["tiny"]["path"] = str(broken)
    summary = run_sweep(config, SWEEP, tmp_path / "trials", benchmark_file, log=lambda line: None)
    assert list(summary["trials"].values()) == ["error", "error"] and summary["model_loads"] == 1
    record = records.read(tmp_path / "trials" / TrialKey(3, 2, 0).relpath)
    assert record["error"] and record["throughput_tokens_per_s"] is None


def test_gpu_hardware_without_gpus_stops_before_any_trial(tmp_path, config_for, benchmark_file):
    config = config_for(hardware={"a100": {"kind": "gpu", "gpus_per_node": 8}})
    with pytest.raises(SweepError, match="hardware 'a100' needs 1 GPU"):
        run_sweep(config, Sweep("a100", "hf", "tiny", 1), tmp_path, benchmark_file, log=lambda line: None)
    assert not list(tmp_path.rglob("*.json"))


def test_worker_environment(config_for):
    """Device visibility and CPU core binding given to workers (no engine needed)."""
    cpu = config_for(engines=["hf", "vllm"])
    base = {"CUDA_VISIBLE_DEVICES": "3,5,6", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    env = worker_environment(cpu, Sweep("cpu", "vllm", "tiny", 2), base)
    assert env["CUDA_VISIBLE_DEVICES"] == "" and "OMP_NUM_THREADS" not in env and "MKL_NUM_THREADS" not in env
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"  # workers never reach the hub
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        assert len(env["VLLM_CPU_OMP_THREADS_BIND"].split("|")) == 2
    assert worker_environment(cpu, Sweep("cpu", "hf", "tiny", 1), base)["OMP_NUM_THREADS"] == "2"
    gpu = config_for(hardware={"a100": {"kind": "gpu", "gpus_per_node": 8}}, engines=["hf", "vllm"])
    assert worker_environment(gpu, Sweep("a100", "hf", "tiny", 2), base)["CUDA_VISIBLE_DEVICES"] == "3,5"
    assert worker_environment(gpu, Sweep("a100", "vllm", "tiny", 4), {})["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
