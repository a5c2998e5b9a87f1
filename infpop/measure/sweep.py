"""The sweep supervisor: runs every trial of one (hardware, engine, model, n_gpus) group.

It starts a worker process (infpop.measure.worker, through infpop.measure.channel) that loads the
model once and runs the trials it is sent, and writes one trial JSON (infpop.measure.records) the
moment each trial ends. A worker that dies is recorded as
`crashed`, a trial past its time limit as `timeout` (the worker is killed), and a trial that ends
in `error` may have left its engine unusable (vLLM's EngineDeadError): in each case a fresh worker
carries on with the rest. An out-of-memory trial is recorded as `oom` with the figures of the batches
before it and, with pruning on, the larger batch sizes as `skipped_oom`. Trials whose JSON exists
are reused while it still holds (records.outdated), so re-running a sweep never repeats or loses a
finished trial. The trials run in rounds: every configuration's first repetition, then every
second, as the repetition policy says.

A config with a `rehearsal` section runs the same sweep with the rehearsal engine in the worker
(infpop.measure.engines.rehearsal): on the CPU, no model file, each trial answered from a trials
table on a virtual clock, its records marked simulated.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path

from infpop import atomic
from infpop.data import hub
from infpop.data.benchmark import load_prompts
from infpop.data.models import model_files, model_source
from infpop.measure import records, sequential
from infpop.measure.channel import (
    Batch,
    Load,
    Loaded,
    LoadFailed,
    SetupFailed,
    Trial,
    TrialEnd,
    Warmed,
    Warmup,
    WorkerGone,
    WorkerProcess,
    WorkerTimeout,
)
from infpop.measure.engines import rehearsal as rehearsal_engine
from infpop.measure.grid import Sweep, TrialKey, configurations, devices, sweep_engine_args
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

#: Statuses re-run on the next invocation only when the config says retry_failed (the rule is
#: records.outdated's).
FAILED_STATUSES = records.FAILED_STATUSES
#: Trial outcomes after which the worker carries on; after any other (an error) it is replaced.
#: An OOM is recovered in place (the failed batch's memory returned to the allocator); an
#: unsupported configuration was refused before anything ran.
RECOVERED_IN_PLACE = {"ok", "oom", "unsupported"}


class SweepError(RuntimeError):
    """The sweep cannot run here at all (e.g. the GPUs it needs are not visible)."""


#: The folder that holds the infpop package.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


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
    if config.get("rehearsal"):
        env["CUDA_VISIBLE_DEVICES"] = ""  # a rehearsal simulates its GPUs: it holds none
    elif hardware["kind"] == "cpu":
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
    devices: int = 1  # what the sweep holds (GPUs; the node on the CPU)
    simulated: bool = False  # a rehearsal: the seconds are the virtual clock's
    trial_wall_seconds: float = 0.0  # the wall time of the trials run now (their records' cost)

    def job_wall_seconds(self) -> float:
        """The job's wall time, loads included: the real one, or a rehearsal's on its virtual clock
        (its loads, warm-ups and trials; the harness between them costs it nothing)."""
        if self.simulated:
            return sum(self.load_seconds) + sum(self.warmup_seconds) + self.trial_wall_seconds
        return self.wall_seconds

    def to_json(self) -> dict:
        measured = sum(self.load_seconds) + self.generation_seconds
        wall = self.job_wall_seconds()
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
            # (none for a rehearsal, whose work is simulated)
            "harness_overhead": self.wall_seconds / measured if measured > 0 and not self.simulated else None,
            "simulated": self.simulated,
            # what the job cost: its wall time, loads included, x the devices it holds
            "cost": {
                "device_seconds": wall * self.devices,
                "wall_seconds": wall,
                "devices": self.devices,
                "load_seconds": sum(self.load_seconds),
            },
        }


class Supervisor:
    """Measures the trials of one sweep folder through a worker process: starts the worker, loads
    the model and warms it up, replaces the worker after a trial that leaves it unusable, and
    writes each trial's record. It holds the folder's lock from construction to `close()`: one
    writer per folder."""

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
        self.device = "cpu" if config["hardware"][sweep.hardware]["kind"] == "cpu" else "cuda"
        # what the records name (the hub id or folder)
        source = model_source(config["models"][sweep.model])
        rehearsal = self._rehearsal(config, sweep)
        if rehearsal is None:
            self.engine, self.engine_args = sweep.engine, sweep_engine_args(config, sweep)
            try:  # what the engines load, and the hub commit that is (None for a local model)
                self.model_path, revision = model_files(config, sweep.model)
            except hub.SnapshotMissing as exc:
                raise SweepError(str(exc)) from None
        else:  # the rehearsal engine, on the CPU, loads no model: nothing is downloaded for it
            self.device, self.model_path, revision = "cpu", source, None
        bench = config["benchmark"]
        self.prompts = load_prompts(benchmark_file, bench["order"], bench["seed"], bench["limit"])
        # what decides whether a record made earlier still holds
        self.context = records.SweepContext.from_config(
            config,
            sweep,
            source,
            revision,
            len(self.prompts),
            engine_args=sweep_engine_args(config, sweep),
            rehearsal=rehearsal,
        )
        self.policy = Policy.from_config(config)
        self.sequential = sequential.Settings.from_config(config)  # None: every batch is timed
        self.worker: WorkerProcess | None = None
        self.loaded: Loaded | None = None  # the last worker's load (kept after the worker is gone)
        self.load_failure: LoadFailed | None = None  # a model that did not load: every trial's result
        self.summary = SweepSummary(
            sweep, repetitions=self.policy.describe(), devices=devices(config, sweep), simulated=rehearsal is not None
        )
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

    def _rehearsal(self, config: dict, sweep: Sweep) -> dict | None:
        """A rehearsal's block of the records (None: the sweep measures), and the rehearsal
        engine's arguments (self.engine, self.engine_args)."""
        if not config.get("rehearsal"):
            return None
        table = rehearsal_engine.table_path(config)
        try:
            sha256 = rehearsal_engine.file_sha256(table)
        except OSError as exc:
            raise SweepError(f"the rehearsal's trials table {table} cannot be read: {exc.strerror}") from None
        self.engine = rehearsal_engine.Engine.name
        self.engine_args = rehearsal_engine.engine_arguments(config, sweep, table, sha256)
        return {
            "trials": str(table),
            "sha256": sha256,
            "seed": config["rehearsal"]["seed"],
            "duplicates": self.engine_args["duplicates"],
            "batch_noise_cv": self.engine_args["batch_noise_cv"],
            "load_s": config["rehearsal"]["load_s"][sweep.engine],
        }

    def _name(self) -> str:
        return self.sweep.relpath

    def _release_locks(self) -> None:
        for lock in self.locks:
            lock.release()
        self.locks = []

    # -- the worker ----------------------------------------------------------------------------
    def _start_worker(self) -> None:
        """Start a worker, load the model and warm up; where that fails, load_failure says why and
        no worker is kept."""
        revision = self.context.model_revision
        if self.context.rehearsal:
            logger.info(
                f"[{self._name()}] rehearsing {self.context.model_source} ({self.sweep.engine}, {self.sweep.n_gpus} "
                f"device(s)) from {self.context.rehearsal['trials']} on a virtual clock"
            )
        else:
            logger.info(
                f"[{self._name()}] loading {self.context.model_source}"
                + (f" at {revision}" if revision else "")
                + f" ({self.sweep.engine}, {self.sweep.n_gpus} "
                f"{'GPU' if self.device == 'cuda' else 'rank'}(s), {self.config['dtype']})"
            )
        deadline = time.monotonic() + self.config["load_timeout_s"]
        worker = WorkerProcess(worker_environment(self.config, self.sweep), self.worker_stderr, self.watch.check)
        self.summary.model_loads += 1
        try:
            self.load_failure = self._load(worker, deadline)
            if self.load_failure is not None:
                worker.stop()
                return
            self._warm_up(worker, deadline)
        except WorkerTimeout:
            worker.kill()
            self._load_failed(
                LoadFailed("timeout", f"model load and warm-up exceeded load_timeout_s={self.config['load_timeout_s']}")
            )
            return
        except WorkerGone:
            self._load_failed(LoadFailed("crashed", f"during model load: {worker.exit_description()}"))
            worker.kill()
            return
        except BaseException:
            worker.kill()  # never leave a worker (and the devices it holds) behind
            raise
        logger.info(
            f"[{self._name()}] loaded in {self.loaded.load_seconds:.1f} s"
            + (f", warm-up {self.summary.warmup_seconds[-1]:.1f} s" if self.config["warmup"]["batches"] else "")
            + f"; engine settings: {json.dumps(self.loaded.engine_settings, sort_keys=True)}"
        )
        self.worker = worker

    def _load(self, worker: WorkerProcess, deadline: float) -> LoadFailed | None:
        """Load the model on a new worker: None where it loaded (self.loaded), else why not."""
        worker.send(
            Load(
                engine=self.engine,
                hardware=self.sweep.hardware,
                environment=self.config["hardware"][self.sweep.hardware].get("environment"),
                model_path=self.model_path,
                n_gpus=self.sweep.n_gpus,
                dtype=self.config["dtype"],
                device=self.device,
                engine_args=self.engine_args,
                offload=self.config["hf_offload"],
                prompts=self.prompts,
            )
        )
        answer = worker.receive(deadline, Loaded, LoadFailed, SetupFailed)
        if isinstance(answer, SetupFailed):
            raise SweepError(answer.error)
        if isinstance(answer, LoadFailed):
            logger.info(f"[{self._name()}] model load failed ({answer.status}): {answer.error.splitlines()[0]}")
            return answer
        self.loaded = answer
        self.summary.load_seconds.append(answer.load_seconds)
        return None

    def _warm_up(self, worker: WorkerProcess, deadline: float) -> None:
        """The config's untimed warm-up batches; one that fails is logged, not fatal."""
        warmup = self.config["warmup"]
        if not warmup["batches"]:
            return
        worker.send(Warmup(warmup["batches"], warmup["batch_size"], max(self.config["max_new_tokens"])))
        warmed = worker.receive(deadline, Warmed)
        self.summary.warmup_seconds.append(warmed.seconds)
        if warmed.error:
            logger.info(f"[{self._name()}] warm-up failed (untimed, carrying on): {warmed.error.splitlines()[0]}")

    def _load_failed(self, failure: LoadFailed) -> None:
        self.load_failure = failure
        logger.info(f"[{self._name()}] {failure.error}")

    def _drop_worker(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker = None

    # -- trials ----------------------------------------------------------------------------------
    def _run_trial(self, key: TrialKey, call: str = "engine") -> dict:
        """Run one trial on the worker (starting one if needed) and return its record."""
        if self.worker is None and self.load_failure is None:
            self._start_worker()
        if self.load_failure is not None:
            return self._not_run(key, self.load_failure.status, self.load_failure.error)
        started_at = records.timestamp()
        batches, end = self._trial_events(key, call)
        run = records.TrialRun(
            started_at,
            sequence=len(self.summary.order),
            load_seconds=self.loaded.load_seconds,
            call=call,
            batches=batches,
            peak_memory_bytes=end.peak_memory_bytes,
            peak_memory_kind=end.peak_memory_kind,
            energy=end.energy,
            wall_seconds=end.wall_seconds or 0.0,
            sequential=end.sequential,
        )
        record = records.trial_record(
            self.context,
            key,
            end.status,
            error=end.error,
            run=run,
            environment=self.loaded.environment,
            engine_settings=self.loaded.engine_settings,
        )
        if self.worker is not None and (end.status not in RECOVERED_IN_PLACE or not end.usable):
            # After an error the engine may be unusable (vLLM's EngineDeadError): every later
            # trial would fail with it. The next trial starts a fresh worker.
            logger.info(
                f"[{self._name()}] the trial ended in {end.status}"
                + ("" if end.usable else " and the engine is dead")
                + ": the next trial gets a fresh worker"
            )
            self._drop_worker()
        return record

    def _trial_events(self, key: TrialKey, call: str) -> tuple[list[Batch], TrialEnd]:
        """Send one trial to the worker and collect its batches until it ends. A worker that dies
        or passes trial_timeout_s is dropped, and the trial's end is then `crashed` or `timeout`
        (the peak memory that of its last batch)."""
        sent = time.monotonic()
        deadline = sent + self.config["trial_timeout_s"]
        batches: list[Batch] = []
        # the hf cross-check's bare call compares every batch with the engine's: never sampled
        sample = None
        if self.sequential and call == "engine":
            seed = sequential.trial_seed(self.sequential.seed, self._name(), *astuple(key))
            sample = {**self.sequential.as_dict(), "trial_seed": seed}
        try:
            trial = Trial(
                key.max_new_tokens, key.batch_size, call, self.faults.get(key), rep=key.rep, sequential=sample
            )
            self.worker.send(trial)
            while isinstance(event := self.worker.receive(deadline, Batch, TrialEnd), Batch):
                batches.append(event)
            return batches, event
        except WorkerTimeout:
            self._drop_worker()
            status = "timeout"
            error = (
                f"trial exceeded trial_timeout_s={self.config['trial_timeout_s']} "
                f"after {len(batches)} batch(es); the worker was killed"
            )
        except WorkerGone:
            description = self.worker.exit_description()
            self._drop_worker()
            status, error = "crashed", f"{description} after {len(batches)} batch(es)"
        peak = batches[-1].peak_memory_bytes if batches else None
        # until the supervisor gave up on it (a rehearsal's: its batches', on the virtual clock)
        wall = sum(b.latency_s for b in batches) if self.context.rehearsal else time.monotonic() - sent
        if sample:  # the worker died before it could say: what was timed, without an estimate
            indices = [b.index for b in batches]
            sample = sequential.summary(self.sequential, status, None, indices, None, sample["trial_seed"])
        return batches, TrialEnd(
            status,
            error,
            peak_memory_bytes=peak,
            peak_memory_kind=None,
            energy=None,
            wall_seconds=wall,
            sequential=sample,
        )

    def _not_run(self, key: TrialKey, status: str, error: str) -> dict:
        """The record of a trial that did not run: after a failed load, or skipped_oom."""
        return records.trial_record(
            self.context,
            key,
            status,
            error=error,
            environment=self.loaded.environment if self.loaded else None,
            # after a failed load: what the load would have run with, if known
            engine_settings=self.load_failure.engine_settings if self.load_failure else None,
        )

    def _kept(self, path: Path, pruned_by: int | None) -> dict | None:
        """The trial's existing record if it still holds (records.outdated), else None: run it."""
        if not path.exists():
            return None
        try:
            record = records.read(path)
        except records.RecordError as exc:
            logger.warning(f"[{self._name()}] {exc}; re-running that trial")
            return None
        reason = records.outdated(self.context, record, pruned_by)
        if reason is None:
            return record
        logger.info(f"[{self._name()}] {path.name} {reason}; measuring it again")
        return None

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
        record = self._kept(path, pruned_by)
        reused = record is not None
        if reused:
            self.summary.reused += 1
            logger.info(f"{prefix}: {record['status']} (kept from an earlier run)")
        else:
            if records.pruned(self.context, key.batch_size, pruned_by):
                record = self._not_run(key, "skipped_oom", f"not run: batch size {pruned_by} ran out of memory")
            else:
                record = self._run_trial(key, call)
                self.summary.generation_seconds += record["timings"]["generation_seconds"]
                self.summary.trial_wall_seconds += record["cost"]["wall_seconds"]
            records.write_atomic(path, record)
            if record["sequence"] is not None:
                self.summary.order.append(relpath)
            rate = record["throughput_tokens_per_s"]
            logger.info(
                f"{prefix}: {record['status']}"
                + (f" {rate:,.1f} tok/s in {record['timings']['generation_seconds']:.2f} s" if rate else "")
            )
        self.summary.trials[relpath] = record["status"]
        return record, reused

    def measure_repeated(self, tokens: int, batch_size: int, pruned_by: int | None = None) -> list[tuple[dict, bool]]:
        """One configuration, repeated as the policy says (r0, r1, ... until it stops): live
        tuning's evaluations, which must rest on the mean, not on one lucky run."""
        done: list[tuple[dict, bool]] = []
        while self.policy.stop_reason([record for record, _ in done]) is None:
            done.append(self.measure(TrialKey(tokens, batch_size, len(done)), pruned_by))
        return done

    def stop_worker(self, graceful: bool = True) -> None:
        """Stop the worker and free the devices it holds (the folders stay this supervisor's); the
        next trial starts a new one."""
        if self.worker is not None:
            if graceful:
                self.worker.stop()
            else:
                self.worker.kill()
            self.worker = None

    def close(self, graceful: bool = True) -> None:
        """Stop the worker (and free the devices it holds), then the trial folders' locks."""
        self.stop_worker(graceful)
        self._release_locks()

    def run(self) -> SweepSummary:
        """Every configuration of this supervisor's max_new_tokens, in rounds (run_rounds); then
        the worker is stopped (killed, after an exception) and the folders released."""
        started = time.monotonic()
        plan = [c for c in configurations(self.config) if c[0] in self.tokens]
        graceful = False
        try:
            done, stopped = run_rounds(plan, self.policy, self.measure, self._name())
            graceful = True
        finally:
            self.close(graceful)
            self.summary.wall_seconds = time.monotonic() - started
        self.summary.configurations += [configuration_summary(c, done[c], stopped.get(c)) for c in plan]
        return self.summary


Configuration = tuple[int, int]  # (max_new_tokens, batch_size)


def run_rounds(
    plan: list[Configuration], policy: Policy, measure: Callable, name: str
) -> tuple[dict[Configuration, list[dict]], dict[Configuration, str]]:
    """Round r runs repetition r of each configuration whose repetitions have not stopped (a fixed
    count, or the adaptive policy's confidence target). A trial that ran out of memory prunes the
    larger batch sizes of its max_new_tokens (`measure`'s pruned_by). Returns each configuration's
    records and why each that stopped did."""
    done: dict[Configuration, list[dict]] = {c: [] for c in plan}
    stopped: dict[Configuration, str] = {}
    oom_at: dict[int, int] = {}  # max_new_tokens -> smallest batch size that ran out of memory
    most = policy.maximum * len(plan)
    number = 0
    for rep in range(policy.maximum):
        for tokens, batch in [c for c in plan if c not in stopped]:
            number += 1
            prefix = f"[{name}] trial {number}/{'up to ' if policy.adaptive else ''}{most} t{tokens} b{batch} r{rep}"
            record, _ = measure(TrialKey(tokens, batch, rep), oom_at.get(tokens), prefix)
            done[(tokens, batch)].append(record)
            # Only a trial that ran can prune (a model that does not load at all is not an
            # out-of-memory batch size: every trial keeps the load's status).
            if record["status"] == "oom" and record["timings"]["started_at"]:
                oom_at[tokens] = min(batch, oom_at.get(tokens, batch))
        for configuration in plan:
            if configuration not in stopped and (reason := policy.stop_reason(done[configuration])):
                stopped[configuration] = reason
    return done, stopped


def configuration_summary(configuration: Configuration, repetitions: list[dict], stop_reason: str | None) -> dict:
    """One configuration in the manifest: its repetitions, their mean and why they stopped."""
    tokens, batch = configuration
    ok = summarise(r["throughput_tokens_per_s"] for r in repetitions if r["status"] == "ok")
    return {
        "max_new_tokens": tokens,
        "batch_size": batch,
        "repetitions": len(repetitions),
        "n_ok": ok.n,
        "mean_tokens_per_s": ok.mean,
        "ci_half_width_pct": ok.ci_half_width_pct,
        "stop_reason": stop_reason,
    }


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
