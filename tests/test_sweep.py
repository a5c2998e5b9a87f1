"""The sweep supervisor on the real hf engine and tiny model, under injected faults.

The faults (an OOM at one batch size, the worker killed mid-trial, a trial that hangs) are
injected inside the real worker process through the supervisor's `faults` test hook; everything
else (worker processes, engine, records) is the production path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infpop.measure import records
from infpop.measure.grid import Sweep, TrialKey
from infpop.measure.sweep import SweepError, run_sweep, worker_environment

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

SWEEP = Sweep("cpu", "hf", "tiny", 1)


def statuses(root):
    return {key: records.read(root / key.relpath)["status"] for key in [TrialKey(3, b, 0) for b in (1, 2, 4, 8, 16)]}


def test_faults_are_recorded_and_nothing_is_lost_or_rerun(tmp_path, config_for, benchmark_file, log_lines):
    config = config_for(batch_sizes=[1, 2, 4, 8, 16], trial_timeout_s=15, benchmark={"limit": 16})
    root = tmp_path / "trials"
    faults = {
        TrialKey(3, 2, 0): {"kind": "crash", "after_batches": 1},  # worker SIGKILLed mid-trial
        TrialKey(3, 4, 0): {"kind": "hang", "after_batches": 1},  # passes trial_timeout_s
        TrialKey(3, 8, 0): {"kind": "oom", "after_batches": 1},  # out of memory at batch size 8
    }
    summary = run_sweep(config, SWEEP, root, benchmark_file, faults=faults)

    by_batch = {
        key.batch_size: records.read(root / key.relpath) for key in [TrialKey(3, b, 0) for b in (1, 2, 4, 8, 16)]
    }
    assert {b: r["status"] for b, r in by_batch.items()} == {
        1: "ok",
        2: "crashed",
        4: "timeout",
        8: "oom",
        16: "skipped_oom",
    }
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
    assert (
        by_batch[16]["counts"]["batches_completed"] == 0 and "batch size 8 ran out of memory" in by_batch[16]["error"]
    )
    # a fresh worker after the crash and after the timeout; the OOM kept its worker
    assert summary["model_loads"] == 3
    assert len(summary["trials"]) == 5 and summary["reused_trials"] == 0
    assert any("trial 5/5 t3 b16 r0: skipped_oom" in line for line in log_lines)

    # The next invocation keeps every recorded trial: no worker, no model load, files untouched.
    before = {p: p.read_bytes() for p in root.rglob("t*/*.json")}
    again = run_sweep(config, SWEEP, root, benchmark_file)
    assert again["model_loads"] == 0 and again["reused_trials"] == 5
    assert {p: p.read_bytes() for p in root.rglob("t*/*.json")} == before and len(before) == 5

    # retry_failed re-runs only the failed ones (now without faults), keeping ok/oom/skipped_oom
    retry = dict(config, retry_failed=True)
    third = run_sweep(retry, SWEEP, root, benchmark_file)
    assert third["reused_trials"] == 3 and third["model_loads"] == 1
    assert statuses(root) == {
        TrialKey(3, 1, 0): "ok",
        TrialKey(3, 2, 0): "ok",
        TrialKey(3, 4, 0): "ok",
        TrialKey(3, 8, 0): "oom",
        TrialKey(3, 16, 0): "skipped_oom",
    }


def test_after_an_error_the_next_trial_gets_a_fresh_worker(tmp_path, config_for, benchmark_file, log_lines):
    """vLLM's EngineDeadError leaves the worker unusable: without a fresh worker every later trial
    of the sweep would be an error too. Injected here in the real hf worker (vLLM's own exception
    class, the engine then refusing every call), the next trial runs on a new worker."""
    config = config_for(batch_sizes=[1, 2, 4])
    faults = {TrialKey(3, 2, 0): {"kind": "engine_dead", "after_batches": 1}}
    summary = run_sweep(config, SWEEP, tmp_path, benchmark_file, faults=faults)
    assert summary["trials"] == {"t3/b1_r0.json": "ok", "t3/b2_r0.json": "error", "t3/b4_r0.json": "ok"}
    dead = records.read(tmp_path / TrialKey(3, 2, 0).relpath)
    first_line = dead["error"].splitlines()[0]
    assert "EngineDeadError" in first_line or first_line.startswith("RuntimeError")  # vLLM's, where installed
    assert "the engine died (injected" in first_line
    assert dead["counts"]["batches_completed"] == 1
    assert summary["model_loads"] == 2 and len(summary["load_seconds"]) == 2  # the reload is counted
    assert any("ended in error" in line and "fresh worker" in line for line in log_lines)
    after = records.read(tmp_path / TrialKey(3, 4, 0).relpath)
    assert after["timings"]["load_seconds"] == summary["load_seconds"][1]  # measured on the new worker


def test_pruning_off_runs_every_batch_size(tmp_path, config_for, benchmark_file):
    config = config_for(batch_sizes=[1, 2, 4], oom_pruning=False)
    faults = {TrialKey(3, 2, 0): {"kind": "oom", "after_batches": 0}}
    summary = run_sweep(config, SWEEP, tmp_path, benchmark_file, faults=faults)
    assert sorted(summary["trials"].values()) == ["ok", "ok", "oom"]
    oom = records.read(tmp_path / TrialKey(3, 2, 0).relpath)
    assert oom["counts"]["batches_completed"] == 0 and oom["throughput_tokens_per_s"] is None


def test_interrupted_sweep_resumes_where_it_stopped(tmp_path, config_for, benchmark_file):
    """A sweep killed part-way (here: its first trial written, the rest not) runs only the rest."""
    config = config_for(batch_sizes=[1, 4])
    run_sweep(dict(config, batch_sizes=[1]), SWEEP, tmp_path, benchmark_file)
    first = (tmp_path / TrialKey(3, 1, 0).relpath).read_bytes()
    summary = run_sweep(config, SWEEP, tmp_path, benchmark_file)
    assert summary["reused_trials"] == 1 and summary["model_loads"] == 1
    assert (tmp_path / TrialKey(3, 1, 0).relpath).read_bytes() == first


def test_a_split_sweep_writes_the_same_trials_and_a_manifest_per_job(tmp_path, config_for, benchmark_file):
    """The jobs of a sweep split by max_new_tokens (infpop/cluster/sizing.py) each run their own trials into
    the sweep's folder and list them in their own manifest; the whole sweep then has nothing to run."""
    from infpop.cluster.sizing import SweepJob
    from infpop.measure.aggregate import collect_rows

    config = config_for(batch_sizes=[1, 4], max_new_tokens=[2, 3], analysis={"max_new_tokens": 3})
    manifests = []
    for tokens in (2, 3):
        job = SweepJob(SWEEP, tokens)
        manifest = tmp_path / f"sweep{job.part}.json"
        summary = run_sweep(config, SWEEP, tmp_path, benchmark_file, tokens=job.max_new_tokens, manifest=manifest)
        assert sorted(summary["trials"]) == [f"t{tokens}/b1_r0.json", f"t{tokens}/b4_r0.json"]
        assert summary["model_loads"] == 1 and manifest.is_file()
        manifests.append(manifest)
    assert not (tmp_path / "sweep.json").exists()
    assert sorted((r["max_new_tokens"], r["batch_size"]) for r in collect_rows(manifests)) == [
        (2, 1),
        (2, 4),
        (3, 1),
        (3, 4),
    ]
    whole = run_sweep(config, SWEEP, tmp_path, benchmark_file)
    assert whole["reused_trials"] == 4 and whole["model_loads"] == 0


def test_corrupt_trial_file_is_rerun_with_a_warning(tmp_path, config_for, benchmark_file, log_lines):
    config = config_for(batch_sizes=[1])
    path = tmp_path / TrialKey(3, 1, 0).relpath
    path.parent.mkdir(parents=True)
    path.write_text('{"schema_version": 1, "hard')
    run_sweep(config, SWEEP, tmp_path, benchmark_file)
    assert records.read(path)["status"] == "ok"
    assert any("corrupt or truncated" in line and "re-running" in line for line in log_lines)


def test_model_that_fails_to_load_is_recorded_for_every_trial(tmp_path, config_for, benchmark_file, tiny_model):
    config = config_for(batch_sizes=[1, 2])
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    config["models"]["tiny"]["path"] = str(broken)
    summary = run_sweep(config, SWEEP, tmp_path / "trials", benchmark_file)
    assert list(summary["trials"].values()) == ["error", "error"] and summary["model_loads"] == 1
    record = records.read(tmp_path / "trials" / TrialKey(3, 2, 0).relpath)
    assert record["error"] and record["throughput_tokens_per_s"] is None


def test_gpu_hardware_without_gpus_stops_before_any_trial(tmp_path, config_for, benchmark_file):
    config = config_for(hardware={"a100": {"kind": "gpu", "gpus_per_node": 8}})
    with pytest.raises(SweepError, match="hardware 'a100' needs 1 GPU"):
        run_sweep(config, Sweep("a100", "hf", "tiny", 1), tmp_path, benchmark_file)
    assert not list(tmp_path.rglob("*.json"))


def test_worker_environment(config_for):
    """Device visibility and CPU core binding given to workers (no engine needed)."""
    cpu = config_for(engines=["hf", "vllm"])
    base = {"CUDA_VISIBLE_DEVICES": "3,5,6", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    env = worker_environment(cpu, Sweep("cpu", "vllm", "tiny", 2), base)
    assert env["CUDA_VISIBLE_DEVICES"] == "" and "OMP_NUM_THREADS" not in env and "MKL_NUM_THREADS" not in env
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"  # workers never reach the hub
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)  # they import infpop from any folder
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        assert len(env["VLLM_CPU_OMP_THREADS_BIND"].split("|")) == 2
    assert worker_environment(cpu, Sweep("cpu", "hf", "tiny", 1), base)["OMP_NUM_THREADS"] == "2"
    gpu = config_for(hardware={"a100": {"kind": "gpu", "gpus_per_node": 8}}, engines=["hf", "vllm"])
    assert worker_environment(gpu, Sweep("a100", "hf", "tiny", 2), base)["CUDA_VISIBLE_DEVICES"] == "3,5"
    assert worker_environment(gpu, Sweep("a100", "vllm", "tiny", 4), {})["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"


def test_repetitions_are_interleaved_adaptive_and_recorded(tmp_path, config_for, benchmark_file):
    """Every configuration's r0 before any r1; the adaptive policy stops each configuration once
    its CI is narrow enough (a wide target here: after the minimum) and says why in the manifest."""
    config = config_for(batch_sizes=[1, 4], repetitions={"min": 2, "max": 4, "ci_half_width_pct": 1000})
    summary = run_sweep(config, SWEEP, tmp_path, benchmark_file)
    assert summary["order"] == ["t3/b1_r0.json", "t3/b4_r0.json", "t3/b1_r1.json", "t3/b4_r1.json"]
    assert summary["repetitions"] == {"min": 2, "max": 4, "ci_half_width_pct": 1000}
    for configuration in summary["configurations"]:
        assert configuration["repetitions"] == configuration["n_ok"] == 2
        assert (
            configuration["stop_reason"].startswith("95% CI half-width")
            and "<= 1000% after 2" in configuration["stop_reason"]
        )
        assert configuration["mean_tokens_per_s"] > 0
    sequences = [records.read(tmp_path / relpath)["sequence"] for relpath in summary["order"]]
    assert sequences == [0, 1, 2, 3]
    # a target no run can meet: every configuration runs to the maximum
    tight = config_for(batch_sizes=[1], repetitions={"min": 2, "max": 3, "ci_half_width_pct": 1e-9})
    summary = run_sweep(tight, SWEEP, tmp_path / "tight", benchmark_file)
    assert summary["configurations"][0]["repetitions"] == 3
    assert summary["configurations"][0]["stop_reason"].startswith("maximum of 3 reached")


def test_the_record_says_what_the_engine_did(tmp_path, config_for, benchmark_file):
    config = config_for(batch_sizes=[2])
    run_sweep(config, SWEEP, tmp_path, benchmark_file)
    record = records.read(tmp_path / TrialKey(3, 2, 0).relpath)
    assert record["schema_version"] == 3 and record["engine_call"] == "engine" and record["simulated"] is False
    # its cost: the worker's wall time from the first batch's start to the end, a little more than
    # the batches' own seconds, on one device (the CPU node)
    cost = record["cost"]
    assert cost["devices"] == 1 and cost["device_seconds"] == cost["wall_seconds"]
    assert record["timings"]["generation_seconds"] <= cost["wall_seconds"] < record["timings"]["generation_seconds"] + 5
    assert record["engine_settings"].pop("torch_threads") >= 1
    assert record["engine_settings"] == {
        "dtype": "float32",
        "device_map": {"cpu": 1},
        "offloaded": False,
        "pipeline_device": "cpu",
    }
    assert len(record["output_digests"]) == 8 and all(len(d) == 12 for d in record["output_digests"])
    assert record["engine_metrics"] is None  # hf reports nothing of its own (no prefix cache)
    # no energy counter on the CPU: the record says why, and trials.csv has no figure
    assert record["energy"]["joules"] is None and record["energy"]["tokens_per_joule"] is None
    assert record["energy"]["reason"] == "no NVIDIA GPU: NVML energy counters are not available on the CPU"
    row = records.tidy_row(record)
    assert row["energy_joules"] is None and row["tokens_per_joule"] is None
    assert row["device_seconds"] == cost["device_seconds"]


def test_a_trial_recorded_with_other_settings_is_measured_again(tmp_path, config_for, benchmark_file, log_lines):
    config = config_for(batch_sizes=[1, 2])
    run_sweep(config, SWEEP, tmp_path, benchmark_file)
    before = {key: (tmp_path / key.relpath).read_bytes() for key in (TrialKey(3, 1, 0), TrialKey(3, 2, 0))}
    changed = dict(config, warmup={"batches": 1, "batch_size": 2})
    summary = run_sweep(changed, SWEEP, tmp_path, benchmark_file)
    assert summary["reused_trials"] == 0 and summary["model_loads"] == 1
    assert sum("was measured with other settings (warmup); measuring it again" in line for line in log_lines) == 2
    for key, old in before.items():
        assert (tmp_path / key.relpath).read_bytes() != old
        assert records.read(tmp_path / key.relpath)["config"]["warmup"] == {"batches": 1, "batch_size": 2}
    # the same settings again: nothing is measured
    again = run_sweep(changed, SWEEP, tmp_path, benchmark_file)
    assert again["reused_trials"] == 2 and again["model_loads"] == 0


def test_a_second_writer_waits_for_the_folder_then_fails_clearly(tmp_path, config_for, benchmark_file, log_lines):
    import threading

    from infpop.measure.locks import FolderBusy, FolderLock
    from infpop.measure.sweep import Supervisor

    config = config_for(batch_sizes=[1])
    holder = FolderLock(tmp_path / "t3").acquire()  # the trial folder the sweep writes
    with pytest.raises(FolderBusy, match=rf"is being measured by pid {os.getpid()} on .*; waited \d+ s"):
        Supervisor(config, SWEEP, tmp_path, benchmark_file, lock_wait_s=1)
    assert any("waiting for" in line and f"pid {os.getpid()}" in line for line in log_lines)
    # released while the second one waits: it goes on
    threading.Timer(0.5, holder.release).start()
    supervisor = Supervisor(config, SWEEP, tmp_path, benchmark_file, lock_wait_s=30)
    supervisor.close()
