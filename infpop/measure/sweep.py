"""The sweep supervisor: runs every trial of one (hardware, engine, model, n_gpus) group.

It starts a worker process (infpop.measure.worker) that loads the model once and runs the trials it is
sent, and writes one trial JSON the moment each trial ends. A worker that dies is recorded as
`crashed`, a trial past its time limit as `timeout` (the worker is killed), and a trial that ends
in `error` may have left its engine unusable (vLLM's EngineDeadError): in each case a fresh worker
carries on with the rest. An out-of-memory trial is recorded as `oom` with the figures of the batches
before it and, with pruning on, the larger batch sizes as `skipped_oom`. Trials whose JSON exists
are reused, so re-running a sweep never repeats or loses a finished trial.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from infpop import atomic
from infpop.config import model_source
from infpop.data import hub
from infpop.data.benchmark import load_prompts
from infpop.measure import records
from infpop.measure.grid import Sweep, TrialKey, configurations
from infpop.measure.locks import FolderLock, SnakemakeWatch
from infpop.measure.repetitions import Policy, summarise

MANIFEST_NAME = "sweep.json"
logger = logging.getLogger(__name__)

#: Thread-count variables Snakemake sets for a job's threads (see worker_environment).
THREAD_COUNT_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

#: Statuses re-run on the next invocation only when the config says retry_failed. (`unsupported`,
#: a configuration the engine cannot run at all, is not: it would fail the same way again.)
FAILED_STATUSES = {"error", "crashed", "timeout"}
#: Trial outcomes after which the worker carries on; after any other (an error) it is replaced.
#: An OOM is recovered in place (the failed batch's memory returned to the allocator).
RECOVERED_IN_PLACE = {"ok", "oom"}


class SweepError(RuntimeError):
    """The sweep cannot run here at all (e.g. the GPUs it needs are not visible)."""


class WorkerGone(Exception):
    """The worker process exited or closed its event channel."""


class WorkerTimeout(Exception):
    """No answer from the worker before the deadline."""


#: The folder that holds the infpop package.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def worker_environment(config: dict, sweep: Sweep, base: dict | None = None) -> dict:
    """Environment of a worker: the hub offline, the devices it may use, and on the CPU how vLLM
    ranks share cores."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    # `python -m infpop.measure.worker` finds this package, from whatever folder the run is in
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    # Workers load local folders only (hf_id models from the snapshot download_model fetched):
    # compute nodes often have no internet, and a load must never fetch or re-resolve weights.
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    hardware = config["hardware"][sweep.hardware]
    if hardware["kind"] == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU trial on a GPU box stays on the CPU
        if sweep.engine == "vllm" and "VLLM_CPU_OMP_THREADS_BIND" not in env:
            cores = sorted(os.sched_getaffinity(0))
            per_rank = max(1, len(cores) // sweep.n_gpus)
            groups = [cores[i * per_rank : (i + 1) * per_rank] or cores[-1:] for i in range(sweep.n_gpus)]
            env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(",".join(map(str, g)) for g in groups)
        if sweep.engine == "vllm":
            # vLLM sizes each rank's thread pools from its core binding. The *_NUM_THREADS that
            # Snakemake exports for the whole job make the ranks oversubscribe their cores:
            # measured here, model load 26 s -> 218 s and batch 1 about 50x slower.
            for name in THREAD_COUNT_VARIABLES:
                env.pop(name, None)
    else:
        # Devices given to this job (by SLURM or the local profile) come first; else 0..n-1.
        given = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        devices = given[: sweep.n_gpus] if given else [str(i) for i in range(sweep.n_gpus)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    return env


class WorkerProcess:
    """A running infpop.measure.worker with a line-based JSON channel and deadlines on every answer."""

    def __init__(self, env: dict, stderr, watch: SnakemakeWatch | None = None):
        self.watch = watch
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infpop.measure.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,  # own process group: kill it whole
        )
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.buffer = b""

    def send(self, msg: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerGone() from None

    def receive(self, deadline: float) -> dict:
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerTimeout()
            if self.watch is not None:
                self.watch.check()  # the Snakemake run that started us is gone: stop, don't carry on
            if not self.selector.select(timeout=min(remaining, 1.0)):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise WorkerGone()
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def exit_description(self) -> str:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "the worker closed its channel but did not exit"
        if code < 0:
            return f"the worker was killed by signal {signal.Signals(-code).name}"
        return f"the worker exited with code {code}"

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.selector.close()

    def stop(self, timeout: float = 60) -> None:
        try:
            self.send({"cmd": "exit"})
            self.proc.wait(timeout=timeout)
        except (WorkerGone, subprocess.TimeoutExpired):
            pass
        self.kill()  # the engine's own children (vLLM) go with the group


@dataclass
class SweepSummary:
    sweep: Sweep
    trials: dict = field(default_factory=dict)  # trial relpath -> status
    reused: int = 0
    model_loads: int = 0
    load_seconds: list = field(default_factory=list)
    warmup_seconds: list = field(default_factory=list)
    generation_seconds: float = 0.0
    wall_seconds: float = 0.0
    order: list = field(default_factory=list)  # trial relpaths measured now, in the order they ran
    repetitions: dict = field(default_factory=dict)  # the policy
    configurations: list = field(default_factory=list)  # per configuration: its repetitions and why they stopped

    def to_json(self) -> dict:
        measured = sum(self.load_seconds) + self.generation_seconds
        return {
            "hardware": self.sweep.hardware,
            "engine": self.sweep.engine,
            "model": self.sweep.model,
            "n_gpus": self.sweep.n_gpus,
            "trials": self.trials,
            "reused_trials": self.reused,
            "order": self.order,
            "repetitions": self.repetitions,
            "configurations": self.configurations,
            "model_loads": self.model_loads,
            "load_seconds": self.load_seconds,
            "warmup_seconds": self.warmup_seconds,
            "generation_seconds": self.generation_seconds,
            "wall_seconds": self.wall_seconds,
            # wall time over the work that must be done: one load per worker + timed generation
            "harness_overhead": self.wall_seconds / measured if measured > 0 else None,
        }


class Supervisor:
    """Measures the trials of one sweep folder through a worker process. It holds the folder's
    lock from construction to `close()`: one writer per folder."""

    def __init__(
        self,
        config: dict,
        sweep: Sweep,
        sweep_dir: Path,
        benchmark_file: Path,
        *,
        tokens: int | None = None,
        faults: dict | None = None,
        worker_stderr=None,
        lock_wait_s: float = 3600.0,
    ):
        self.config, self.sweep, self.sweep_dir = config, sweep, Path(sweep_dir)
        self.faults = faults or {}  # TrialKey -> fault, for tests of the fault handling only
        self.worker_stderr = worker_stderr
        hardware = config["hardware"][sweep.hardware]
        self.device = "cpu" if hardware["kind"] == "cpu" else "cuda"
        self.source = model_source(config["models"][sweep.model])  # what the records name: the hub id or folder
        try:  # what the engines load, and the hub commit that is (None for a local model)
            self.model_path, self.revision = hub.model_files(config, sweep.model)
        except hub.SnapshotMissing as exc:
            raise SweepError(str(exc)) from None
        bench = config["benchmark"]
        self.prompts = load_prompts(benchmark_file, bench["order"], bench["seed"], bench["limit"])
        self.policy = Policy.from_config(config)
        self.worker: WorkerProcess | None = None
        self.worker_info: dict = {}
        self.load_failure: dict | None = None
        self.summary = SweepSummary(sweep, repetitions=self.policy.describe())
        # What a trial's figures depend on: a record made with other settings is measured again.
        self.measurement_settings = {k: config[k] for k in ("dtype", "benchmark", "warmup")}
        self.measurement_settings["engine_args"] = config["engine_args"].get(sweep.engine, {})
        # The max_new_tokens this supervisor measures: all of the sweep's, or one (a job of a split
        # sweep, live tuning). It is the one writer of their trial folders (t<tokens>/) while it lives.
        self.tokens = sorted(config["max_new_tokens"]) if tokens is None else [tokens]
        self.watch = SnakemakeWatch()
        self.locks = []
        try:
            for t in self.tokens:
                self.locks.append(
                    FolderLock(self.sweep_dir / f"t{t}", wait_s=lock_wait_s, owner=self._name()).acquire()
                )
        except BaseException:
            self._release_locks()
            raise

    def _release_locks(self) -> None:
        for lock in self.locks:
            lock.release()
        self.locks = []

    # -- the worker ----------------------------------------------------------------------------
    def _start_worker(self) -> None:
        """Start a worker, load the model and warm up; sets load_failure if that fails."""
        started = time.monotonic()
        deadline = started + self.config["load_timeout_s"]
        logger.info(
            f"[{self._name()}] loading {self.source}"
            + (f" at {self.revision}" if self.revision else "")
            + f" ({self.sweep.engine}, {self.sweep.n_gpus} "
            f"{'GPU' if self.device == 'cuda' else 'rank'}(s), {self.config['dtype']})"
        )
        worker = WorkerProcess(worker_environment(self.config, self.sweep), self.worker_stderr, self.watch)
        self.summary.model_loads += 1
        try:
            worker.send(
                {
                    "cmd": "load",
                    "engine": self.sweep.engine,
                    "hardware": self.sweep.hardware,
                    "environment": self.config["hardware"][self.sweep.hardware].get("environment"),
                    "model_path": self.model_path,
                    "n_gpus": self.sweep.n_gpus,
                    "dtype": self.config["dtype"],
                    "device": self.device,
                    "engine_args": self.config["engine_args"].get(self.sweep.engine, {}),
                    "offload": self.config["hf_offload"],
                    "prompts": self.prompts,
                }
            )
            answer = worker.receive(deadline)
            if answer["event"] == "setup_failed":
                worker.kill()
                raise SweepError(answer["error"])
            if answer["event"] == "load_failed":
                worker.stop()
                self.load_failure = {
                    "status": answer["status"],
                    "error": answer["error"],
                    "engine_settings": answer.get("engine_settings"),
                }
                logger.info(
                    f"[{self._name()}] model load failed ({answer['status']}): {answer['error'].splitlines()[0]}"
                )
                return
            self.worker_info = {
                "load_seconds": answer["load_seconds"],
                "environment": answer["environment"],
                "engine_settings": answer["engine_settings"],
            }
            self.summary.load_seconds.append(answer["load_seconds"])
            warmup = self.config["warmup"]
            if warmup["batches"]:
                worker.send(
                    {
                        "cmd": "warmup",
                        "batches": warmup["batches"],
                        "batch_size": warmup["batch_size"],
                        "max_new_tokens": max(self.config["max_new_tokens"]),
                    }
                )
                warmed = worker.receive(deadline)
                self.summary.warmup_seconds.append(warmed["seconds"])
                if warmed["error"]:
                    logger.info(
                        f"[{self._name()}] warm-up failed (untimed, carrying on): {warmed['error'].splitlines()[0]}"
                    )
        except WorkerTimeout:
            worker.kill()
            self.load_failure = {
                "status": "timeout",
                "error": f"model load and warm-up exceeded load_timeout_s={self.config['load_timeout_s']}",
            }
            logger.info(f"[{self._name()}] {self.load_failure['error']}")
            return
        except WorkerGone:
            self.load_failure = {"status": "crashed", "error": f"during model load: {worker.exit_description()}"}
            worker.kill()
            logger.info(f"[{self._name()}] {self.load_failure['error']}")
            return
        except BaseException:
            worker.kill()  # never leave a worker (and the devices it holds) behind
            raise
        settings = self.worker_info["engine_settings"]
        logger.info(
            f"[{self._name()}] loaded in {self.worker_info['load_seconds']:.1f} s"
            + (f", warm-up {self.summary.warmup_seconds[-1]:.1f} s" if warmup["batches"] else "")
            + f"; engine settings: {json.dumps(settings, sort_keys=True)}"
        )
        self.worker = worker

    def _drop_worker(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker = None

    # -- trials ----------------------------------------------------------------------------------
    def _name(self) -> str:
        return self.sweep.relpath

    def _record(
        self,
        key: TrialKey,
        status: str,
        *,
        batches: list[dict] = (),
        error: str | None = None,
        peak: tuple = (None, None),
        started_at: str | None = None,
        counters: dict | None = None,
        call: str = "engine",
        energy: dict | None = None,
    ) -> dict:
        batch_size = key.batch_size
        n_batches = -(-len(self.prompts) // batch_size)
        generated = sum(b["new_tokens"] for b in batches)
        seconds = sum(b["latency_s"] for b in batches)
        prompt_tokens = sum(b["prompt_tokens"] for b in batches)
        ran = started_at is not None
        return {
            "schema_version": records.SCHEMA_VERSION,
            "hardware": self.sweep.hardware,
            "engine": self.sweep.engine,
            "model": self.sweep.model,
            "model_source": self.source,
            "model_revision": self.revision,
            "n_gpus": self.sweep.n_gpus,
            "max_new_tokens": key.max_new_tokens,
            "batch_size": batch_size,
            "rep": key.rep,
            "status": status,
            "counts": {
                "prompts": len(self.prompts),
                "batches": n_batches,
                "batches_completed": len(batches),
                "generated_tokens": generated,
                "prompt_tokens": prompt_tokens,
            },
            "timings": {
                "load_seconds": self.worker_info.get("load_seconds") if ran else None,
                "generation_seconds": seconds,
                "batch_latencies_s": [b["latency_s"] for b in batches],
                "started_at": started_at,
                "finished_at": _now() if ran else None,
            },
            "throughput_tokens_per_s": records.throughput(generated, seconds),
            "peak_memory": {"bytes": peak[0], "kind": peak[1]},
            "energy": energy,  # null where the trial did not end in the worker (or did not run)
            "error": error,
            "sequence": len(self.summary.order) if ran else None,
            "engine_call": call,
            # a trial not run after a failed load: what the load would have run with, if known
            "engine_settings": (
                self.worker_info.get("engine_settings") if ran else (self.load_failure or {}).get("engine_settings")
            ),
            "engine_metrics": records.engine_metrics(counters, prompt_tokens) if ran else None,
            "output_digests": [d for b in batches for d in b["output_digests"]],
            "environment": self.worker_info.get("environment"),
            "config": {
                **self.measurement_settings,
                **{k: self.config[k] for k in ("trial_timeout_s", "load_timeout_s", "oom_pruning")},
                **({"hf_offload": self.config["hf_offload"]} if self.sweep.engine == "hf" else {}),
            },
        }

    def _run_trial(self, key: TrialKey, call: str = "engine") -> dict:
        """Run one trial on the worker (starting one if needed) and return its record."""
        if self.worker is None and self.load_failure is None:
            self._start_worker()
        if self.load_failure is not None:
            return self._record(key, self.load_failure["status"], error=self.load_failure["error"])
        started_at = _now()
        deadline = time.monotonic() + self.config["trial_timeout_s"]
        msg = {
            "cmd": "trial",
            "max_new_tokens": key.max_new_tokens,
            "batch_size": key.batch_size,
            "call": call,
            "fault": self.faults.get(key),
        }
        batches, peak = [], (None, None)
        try:
            self.worker.send(msg)
            while True:
                event = self.worker.receive(deadline)
                if event["event"] == "batch":
                    batches.append(event)
                    peak = (event["peak_memory_bytes"], peak[1])
                    continue
                peak = (event["peak_memory_bytes"], event["peak_memory_kind"])
                record = self._record(
                    key,
                    event["status"],
                    batches=batches,
                    error=event["error"],
                    peak=peak,
                    started_at=started_at,
                    counters=event["engine_counters"],
                    call=call,
                    energy=event.get("energy"),
                )
                if event["status"] not in RECOVERED_IN_PLACE or not event.get("usable", True):
                    # After an error the engine may be unusable (vLLM's EngineDeadError): every
                    # later trial would fail with it. The next trial starts a fresh worker.
                    logger.info(
                        f"[{self._name()}] the trial ended in {event['status']}"
                        + ("" if event.get("usable", True) else " and the engine is dead")
                        + ": the next trial gets a fresh worker"
                    )
                    self._drop_worker()
                return record
        except WorkerTimeout:
            self._drop_worker()
            return self._record(
                key,
                "timeout",
                batches=batches,
                started_at=started_at,
                peak=peak,
                call=call,
                error=f"trial exceeded trial_timeout_s={self.config['trial_timeout_s']} "
                f"after {len(batches)} batch(es); the worker was killed",
            )
        except WorkerGone:
            description = self.worker.exit_description()
            self._drop_worker()
            return self._record(
                key,
                "crashed",
                batches=batches,
                started_at=started_at,
                peak=peak,
                call=call,
                error=f"{description} after {len(batches)} batch(es)",
            )

    def _existing(self, path: Path, pruned_by: int | None) -> dict | None:
        """The record to keep for a trial, or None to (re-)run it."""
        if not path.exists():
            return None
        try:
            record = records.read(path)
        except records.RecordError as exc:
            logger.warning(f"[{self._name()}] {exc}; re-running that trial")
            return None
        changed = [k for k, v in self.measurement_settings.items() if record["config"].get(k) != v]
        if record["model_source"] != self.source:
            changed.append("model")
        elif record.get("model_revision") != self.revision:  # other weights, or weights not recorded
            changed.append("model revision")
        changed += self._offload_changed(record)
        if changed:
            logger.info(
                f"[{self._name()}] {path.name} was measured with other settings ({', '.join(changed)}); "
                f"measuring it again"
            )
            return None
        if record["status"] in FAILED_STATUSES and self.config["retry_failed"]:
            return None
        if record["status"] == "skipped_oom" and not (
            self.config["oom_pruning"] and pruned_by is not None and record["batch_size"] > pruned_by
        ):
            return None  # the OOM that pruned it is gone (re-measured) or pruning is now off
        return record

    def _offload_changed(self, record: dict) -> list[str]:
        """hf only: whether the record's outcome depended on an hf_offload other than the config's
        (a trial that ran offloaded, now forbidden; a load refused for offloading, now allowed).
        A record whose weights all fitted on the GPUs holds under either policy: it is kept, and
        so are records made before hf_offload existed (offloading was allowed then)."""
        if self.sweep.engine != "hf" or not (record.get("engine_settings") or {}).get("offloaded"):
            return []
        refused = record["status"] == "oom" and record["timings"]["started_at"] is None
        policy = self.config["hf_offload"]
        if (policy == "forbid" and not refused) or (policy == "allow" and refused):
            return ["hf_offload"]
        return []

    def measure(
        self, key: TrialKey, pruned_by: int | None = None, prefix: str = "", call: str = "engine"
    ) -> tuple[dict, bool]:
        """(record, reused): the trial's existing record if it still holds, else the trial is run
        (or, below an out-of-memory batch size `pruned_by`, recorded as skipped_oom) and its JSON
        written at once. Trials of another `call` (the hf cross-check's bare generate) are kept
        in a folder of their own under the sweep's, <call>/t<tokens>/..."""
        relpath = key.relpath if call == "engine" else f"{call}/{key.relpath}"
        path = self.sweep_dir / relpath
        prefix = prefix or f"[{self._name()}] t{key.max_new_tokens} b{key.batch_size} r{key.rep}"
        record = self._existing(path, pruned_by)
        if record is not None:
            self.summary.reused += 1
            logger.info(f"{prefix}: {record['status']} (kept from an earlier run)")
            self.summary.trials[relpath] = record["status"]
            return record, True
        if self.config["oom_pruning"] and pruned_by is not None and key.batch_size > pruned_by:
            record = self._record(key, "skipped_oom", error=f"not run: batch size {pruned_by} ran out of memory")
        else:
            record = self._run_trial(key, call)
            self.summary.generation_seconds += record["timings"]["generation_seconds"]
        records.write_atomic(path, record)
        if record["sequence"] is not None:
            self.summary.order.append(relpath)
        rate = record["throughput_tokens_per_s"]
        logger.info(
            f"{prefix}: {record['status']}"
            + (f" {rate:,.1f} tok/s in {record['timings']['generation_seconds']:.2f} s" if rate else "")
        )
        self.summary.trials[relpath] = record["status"]
        return record, False

    def measure_repeated(self, tokens: int, batch_size: int, pruned_by: int | None = None) -> list[tuple[dict, bool]]:
        """One configuration, repeated as the policy says (r0, r1, ... until it stops): live
        tuning's evaluations, which must rest on the mean, not on one lucky run."""
        done: list[tuple[dict, bool]] = []
        while self.policy.stop_reason([record for record, _ in done]) is None:
            done.append(self.measure(TrialKey(tokens, batch_size, len(done)), pruned_by))
        return done

    def close(self, graceful: bool = True) -> None:
        """Stop the worker (and free the devices it holds), then the trial folders' locks."""
        if self.worker is not None:
            if graceful:
                self.worker.stop()
            else:
                self.worker.kill()
            self.worker = None
        self._release_locks()

    def run(self) -> SweepSummary:
        """Every configuration in rounds: round r runs repetition r of each configuration whose
        repetitions have not stopped (a fixed count, or the adaptive policy's confidence target)."""
        started = time.monotonic()
        plan = [c for c in configurations(self.config) if c[0] in self.tokens]
        done: dict[tuple[int, int], list[dict]] = {c: [] for c in plan}
        stopped: dict[tuple[int, int], str] = {}
        oom_at: dict[int, int] = {}  # max_new_tokens -> smallest batch size that ran out of memory
        most = self.policy.maximum * len(plan)
        number = 0
        graceful = False
        try:
            for rep in range(self.policy.maximum):
                for tokens, batch in plan:
                    if (tokens, batch) in stopped:
                        continue
                    number += 1
                    key = TrialKey(tokens, batch, rep)
                    prefix = (
                        f"[{self._name()}] trial {number}/{'up to ' if self.policy.adaptive else ''}{most} "
                        f"t{tokens} b{batch} r{rep}"
                    )
                    record, _ = self.measure(key, oom_at.get(tokens), prefix)
                    done[(tokens, batch)].append(record)
                    # Only a trial that ran can prune (a model that does not load at all is not an
                    # out-of-memory batch size: every trial keeps the load's status).
                    if record["status"] == "oom" and record["timings"]["started_at"]:
                        oom_at[tokens] = min(batch, oom_at.get(tokens, batch))
                for configuration in plan:
                    if configuration not in stopped:
                        reason = self.policy.stop_reason(done[configuration])
                        if reason:
                            stopped[configuration] = reason
            graceful = True
        finally:
            self.close(graceful)
            self.summary.wall_seconds = time.monotonic() - started
        for (tokens, batch), reps in done.items():
            ok = summarise(r["throughput_tokens_per_s"] for r in reps if r["status"] == "ok")
            self.summary.configurations.append(
                {
                    "max_new_tokens": tokens,
                    "batch_size": batch,
                    "repetitions": len(reps),
                    "n_ok": ok.n,
                    "mean_tokens_per_s": ok.mean,
                    "ci_half_width_pct": ok.ci_half_width_pct,
                    "stop_reason": stopped.get((tokens, batch)),
                }
            )
        return self.summary


def run_sweep(
    config: dict,
    sweep: Sweep,
    sweep_dir: Path,
    benchmark_file: Path,
    *,
    tokens: int | None = None,
    manifest: Path | None = None,
    **kwargs,
) -> dict:
    """Run one sweep (or, one job of a split sweep, its trials at max_new_tokens `tokens`) into
    `sweep_dir` (one JSON per trial) and write its manifest (the Snakemake output; default
    `sweep_dir/sweep.json`), listing every trial it ran or kept relative to that folder."""
    summary = Supervisor(config, sweep, sweep_dir, benchmark_file, tokens=tokens, **kwargs).run().to_json()
    manifest = Path(sweep_dir) / MANIFEST_NAME if manifest is None else Path(manifest)
    atomic.write_text(manifest, json.dumps(summary, indent=1) + "\n")
    return summary
