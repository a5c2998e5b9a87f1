"""The supervisor's decisions on a scripted worker: which trials start a fresh worker, what a
crashed, hung, out-of-memory or dead-engine trial records, a model that does not load, and which
records a second run keeps. The worker here is a stand-in speaking the channel's typed messages
(no process, no engine); tests/test_sweep.py runs the same faults through the real worker."""

from __future__ import annotations

import pytest

from infpop.measure import channel, records, sweep
from infpop.measure.energy import CPU_REASON, unavailable
from infpop.measure.grid import Sweep, TrialKey

SWEEP = Sweep("cpu", "hf", "tiny", 1)
ENERGY = unavailable(CPU_REASON)
SETTINGS = {"dtype": "float32", "device_map": {"cpu": 1}, "offloaded": False}


class ScriptedWorker:
    """Answers like infpop.measure.worker, each batch of a trial making one new token a prompt;
    a trial's `fault` (the supervisor's test hook) decides how it ends after `after_batches`."""

    started: list[ScriptedWorker] = []
    load_answer: channel.Event | None = None  # None: the model loads

    def __init__(self, env, stderr=None, check=None):
        self.queue: list = []
        self.sent: list = []
        self.ended = None
        ScriptedWorker.started.append(self)

    def send(self, command: channel.Command) -> None:
        self.sent.append(command)
        if isinstance(command, channel.Load):
            self.prompts = len(command.prompts)
            self.queue.append(self.load_answer or channel.Loaded(2.0 + len(self.started), SETTINGS, {"host": "h"}))
        elif isinstance(command, channel.Warmup):
            self.queue.append(channel.Warmed(0.5, None))
        elif isinstance(command, channel.Trial):
            self.queue += self._trial(command)

    def _trial(self, command: channel.Trial) -> list:
        fault = command.fault or {}
        sizes = [min(command.batch_size, self.prompts - i) for i in range(0, self.prompts, command.batch_size)]
        done = sizes[: fault["after_batches"]] if fault else sizes
        events = [
            channel.Batch(i, 0.1 * (i + 1), n, 10 * n, None, [f"{i:012x}"] * n, 100 * (i + 1))
            for i, n in enumerate(done)
        ]
        end = {
            None: channel.TrialEnd("ok", None, 999, "rss", energy=ENERGY, wall_seconds=14.5),
            "oom": channel.TrialEnd("oom", "CUDA out of memory", 5000, "rss"),
            "engine_dead": channel.TrialEnd("error", "EngineDeadError: dead", 700, "rss", usable=False),
            "crash": channel.WorkerGone,
            "hang": channel.WorkerTimeout,
        }[fault.get("kind")]
        return [*events, end]

    def receive(self, deadline: float, *expected: type[channel.Event]) -> channel.Event:
        item = self.queue.pop(0)
        if isinstance(item, type):
            raise item()
        assert not expected or isinstance(item, expected), (item, expected)
        return item

    def exit_description(self) -> str:
        return "the worker was killed by signal SIGKILL"

    def kill(self) -> None:
        self.ended = self.ended or "killed"

    def stop(self) -> None:
        self.ended = self.ended or "stopped"


@pytest.fixture
def workers(monkeypatch):
    ScriptedWorker.started = []
    ScriptedWorker.load_answer = None
    monkeypatch.setattr(sweep, "WorkerProcess", ScriptedWorker)
    return ScriptedWorker


def _records(root, batches=(1, 2, 4, 8, 16)) -> dict[int, dict]:
    return {b: records.read(root / TrialKey(3, b, 0).relpath) for b in batches}


def test_faults_get_a_fresh_worker_and_keep_the_figures_before_them(tmp_path, config_for, benchmark_file, workers):
    config = config_for(batch_sizes=[1, 2, 4, 8, 16], trial_timeout_s=15, benchmark={"limit": 16})
    faults = {
        TrialKey(3, 2, 0): {"kind": "crash", "after_batches": 1},
        TrialKey(3, 4, 0): {"kind": "hang", "after_batches": 1},
        TrialKey(3, 8, 0): {"kind": "oom", "after_batches": 1},
    }
    summary = sweep.run_sweep(config, SWEEP, tmp_path, benchmark_file, faults=faults)
    got = _records(tmp_path)
    statuses = {b: r["status"] for b, r in got.items()}
    assert statuses == {1: "ok", 2: "crashed", 4: "timeout", 8: "oom", 16: "skipped_oom"}
    assert summary["model_loads"] == 3 and summary["load_seconds"] == [3.0, 4.0, 5.0]
    assert [w.ended for w in workers.started] == ["killed", "killed", "stopped"]  # the last one closed gracefully
    assert [type(c) for c in workers.started[0].sent] == [channel.Load, channel.Warmup, channel.Trial, channel.Trial]
    assert workers.started[0].sent[-1] == channel.Trial(3, 2, "engine", faults[TrialKey(3, 2, 0)])

    ok = got[1]
    assert ok["counts"] == {
        "prompts": 16,
        "batches": 16,
        "batches_completed": 16,
        "generated_tokens": 16,
        "prompt_tokens": 160,
    }
    assert ok["timings"]["load_seconds"] == 3.0 and ok["timings"]["generation_seconds"] == pytest.approx(13.6)
    assert ok["peak_memory"] == {"bytes": 999, "kind": "rss"} and ok["energy"] == ENERGY
    assert ok["engine_settings"] == SETTINGS and ok["environment"] == {"host": "h"} and ok["engine_metrics"] is None
    assert ok["sequence"] == 0 and ok["engine_call"] == "engine" and ok["error"] is None
    assert ok["config"]["oom_pruning"] is True and ok["config"]["hf_offload"] == "forbid"
    # its cost: the worker's wall time x the devices (on the CPU, the node); measured, not simulated
    assert ok["cost"] == {"device_seconds": 14.5, "wall_seconds": 14.5, "devices": 1}
    assert ok["simulated"] is False and ok["rehearsal"] is None and ok["schema_version"] == 3

    crashed, hung, oom, skipped = got[2], got[4], got[8], got[16]
    assert crashed["error"] == "the worker was killed by signal SIGKILL after 1 batch(es)"
    assert crashed["peak_memory"] == {"bytes": 100, "kind": None} and crashed["energy"] is None
    assert hung["error"] == "trial exceeded trial_timeout_s=15 after 1 batch(es); the worker was killed"
    assert hung["timings"]["load_seconds"] == 4.0 and hung["sequence"] == 2
    assert oom["counts"]["batches_completed"] == 1 and oom["peak_memory"] == {"bytes": 5000, "kind": "rss"}
    assert skipped["error"] == "not run: batch size 8 ran out of memory" and skipped["sequence"] is None
    assert skipped["timings"]["started_at"] is None and skipped["timings"]["load_seconds"] is None
    assert skipped["engine_settings"] is None and skipped["environment"] == {"host": "h"}
    assert skipped["cost"] == {"device_seconds": 0.0, "wall_seconds": 0.0, "devices": 1}  # it held nothing
    # a trial that did not end in the worker: until the supervisor gave up on it
    assert (
        0 < crashed["cost"]["wall_seconds"] < 5 and crashed["cost"]["device_seconds"] == crashed["cost"]["wall_seconds"]
    )
    assert summary["order"] == [f"t3/b{b}_r0.json" for b in (1, 2, 4, 8)]
    # the job's cost: its real wall time (loads included) x its devices
    assert summary["cost"] == {
        "device_seconds": summary["wall_seconds"],
        "wall_seconds": summary["wall_seconds"],
        "devices": 1,
        "load_seconds": 12.0,
    }
    assert summary["simulated"] is False and summary["harness_overhead"] > 0

    # kept on the next run (no worker); retry_failed measures the crashed and the hung again
    again = sweep.run_sweep(config, SWEEP, tmp_path, benchmark_file)
    assert again["reused_trials"] == 5 and again["model_loads"] == 0
    third = sweep.run_sweep(dict(config, retry_failed=True), SWEEP, tmp_path, benchmark_file)
    assert third["reused_trials"] == 3 and sorted(third["order"]) == ["t3/b2_r0.json", "t3/b4_r0.json"]


def test_a_dead_engine_gets_a_fresh_worker_an_oom_does_not(tmp_path, config_for, benchmark_file, workers, log_lines):
    config = config_for(batch_sizes=[1, 2, 4], oom_pruning=False)
    faults = {
        TrialKey(3, 1, 0): {"kind": "oom", "after_batches": 0},
        TrialKey(3, 2, 0): {"kind": "engine_dead", "after_batches": 1},
    }
    summary = sweep.run_sweep(config, SWEEP, tmp_path, benchmark_file, faults=faults)
    assert summary["trials"] == {"t3/b1_r0.json": "oom", "t3/b2_r0.json": "error", "t3/b4_r0.json": "ok"}
    assert summary["model_loads"] == 2
    assert any("ended in error and the engine is dead: the next trial gets a fresh worker" in m for m in log_lines)
    assert records.read(tmp_path / TrialKey(3, 4, 0).relpath)["timings"]["load_seconds"] == 4.0


def test_a_model_that_does_not_load_is_every_trials_result(tmp_path, config_for, benchmark_file, workers):
    workers.load_answer = channel.LoadFailed("oom", "does not fit\nmore", {"offloaded": True})
    summary = sweep.run_sweep(config_for(batch_sizes=[1, 2]), SWEEP, tmp_path, benchmark_file)
    assert summary["trials"] == {"t3/b1_r0.json": "oom", "t3/b2_r0.json": "oom"} and summary["model_loads"] == 1
    record = records.read(tmp_path / TrialKey(3, 2, 0).relpath)
    assert record["error"] == "does not fit\nmore" and record["engine_settings"] == {"offloaded": True}
    assert record["timings"]["started_at"] is None and record["environment"] is None and record["sequence"] is None
    assert workers.started[0].ended == "stopped"


def test_a_sweep_that_cannot_run_here_stops(tmp_path, config_for, benchmark_file, workers):
    workers.load_answer = channel.SetupFailed("hardware 'cpu' needs 1 GPU(s) but this worker sees 0")
    with pytest.raises(sweep.SweepError, match="needs 1 GPU"):
        sweep.run_sweep(config_for(), SWEEP, tmp_path, benchmark_file)
    assert workers.started[0].ended == "killed" and not list(tmp_path.rglob("*.json"))
