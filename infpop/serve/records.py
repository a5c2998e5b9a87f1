"""Load-point records: build one (load_point_record, from a server's ServeContext and what the
load generator saw), validate it against workflow/schemas/serve.schema.yaml, write it atomically,
read it back, decide whether an existing one still holds under the current settings (outdated),
and flatten each into one row of results/serve/loadpoints.csv.

A record keeps every request's result, so the table derives the measures again under the run's SLO
and saturation tolerance: changing those re-measures nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from infpop import SCHEMA_DIR, atomic
from infpop.measure.records import FAILED_STATUSES, RecordError, read_object, timestamp
from infpop.serve import steps
from infpop.serve.metrics import RequestResult, Slo, flatten, summarise
from infpop.serve.plan import LoadPoint, ServeJob

SCHEMA_VERSION = 1
KIND = "serve_load_point"


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft7Validator:
    with open(SCHEMA_DIR / "serve.schema.yaml") as handle:
        return jsonschema.Draft7Validator(yaml.safe_load(handle))


def validate(record: dict, where: str = "load-point record") -> None:
    errors = sorted(_validator().iter_errors(record), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        details = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors[:5])
        raise RecordError(f"{where}: does not match the serving schema: {details}")


@dataclass(frozen=True)
class ServeContext:
    """What every record of one server shares, and what decides whether a record made earlier
    still holds (`measured_with`: the model, dtype, server arguments and the request stream's
    settings; not the SLO, the tolerance or the time limits, which change no measurement)."""

    job: ServeJob
    model_source: str
    model_revision: str | None
    settings_axes: dict
    server_arguments: dict
    measured_with: dict
    slo: Slo
    saturation_tolerance: float
    devices: int  # what the server runs on: its GPUs, or 1 (the CPU)
    retry_failed: bool
    limits: dict  # server_timeout_s, load_point_timeout_s

    def recorded_config(self) -> dict:
        return {
            "measured_with": self.measured_with,
            "slo": {"ttft_ms": self.slo.ttft_ms, "tpot_ms": self.slo.tpot_ms, "e2el_ms": self.slo.e2el_ms},
            "saturation_tolerance": self.saturation_tolerance,
            "devices": self.devices,
            **self.limits,
        }


@dataclass
class LoadPointRun:
    """What one load point gave, however it ended."""

    started_at: str | None = None
    server_start_s: float | None = None
    sequence: int | None = None
    engine_settings: dict | None = None
    results: list[RequestResult] | None = None
    duration_s: float | None = None
    warmup_s: float | None = None
    harness_summary: dict | None = None
    peak_memory_bytes: int | None = None
    peak_memory_kind: str | None = None
    energy: dict | None = None
    environment: dict | None = None
    scheduler_steps: dict | None = None


def load_point_record(
    context: ServeContext,
    point: LoadPoint,
    harness: str,
    rep: int,
    status: str,
    stream: dict,
    run: LoadPointRun,
    error: str | None = None,
) -> dict:
    """The record of one load point: one that ran (`run.results`), or one that did not (a server
    that did not start: its status for every load point)."""
    measures = None
    if run.results is not None and run.duration_s is not None:
        measures = summarise(
            run.results,
            run.duration_s,
            point.request_rate,
            context.slo,
            context.saturation_tolerance,
            context.devices,
        )
    job = context.job
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "hardware": job.hardware,
        "engine": job.engine,
        "model": job.model,
        "model_source": context.model_source,
        "model_revision": context.model_revision,
        "n_gpus": job.n_gpus,
        "settings": job.settings,
        "settings_axes": context.settings_axes,
        "server_arguments": context.server_arguments,
        "engine_settings": run.engine_settings,
        "load_point": point.to_json(),
        "harness": harness,
        "rep": rep,
        "status": status,
        "error": error,
        "stream": stream,
        "timings": {
            "server_start_s": run.server_start_s,
            "warmup_s": run.warmup_s,
            "duration_s": run.duration_s,
            "started_at": run.started_at,
            "finished_at": timestamp() if run.started_at else None,
        },
        "measures": measures,
        "harness_summary": run.harness_summary,
        "requests": [r.to_json() for r in run.results or []],
        "peak_memory": {"bytes": run.peak_memory_bytes, "kind": run.peak_memory_kind},
        "energy": run.energy,
        "scheduler_steps": run.scheduler_steps,
        "environment": run.environment,
        "config": context.recorded_config(),
        "sequence": run.sequence,
    }


def outdated(context: ServeContext, record: dict) -> str | None:
    """Why an existing record no longer holds and its load point is measured again, or None."""
    was = record["config"].get("measured_with", {})
    changed = sorted(k for k in set(was) | set(context.measured_with) if was.get(k) != context.measured_with.get(k))
    if record["model_source"] != context.model_source:
        changed.append("model")
    elif record.get("model_revision") != context.model_revision:
        changed.append("model revision")
    if changed:
        return f"was measured with other settings ({', '.join(changed)})"
    if record["status"] in FAILED_STATUSES and context.retry_failed:
        return f"ended in {record['status']} and retry_failed is on"
    return None


def write_atomic(path: Path, record: dict) -> None:
    validate(record, str(path))
    atomic.write_text(path, json.dumps(record, indent=1, allow_nan=False) + "\n")


def read(path: Path) -> dict:
    """Read and validate one load-point JSON; RecordError names the file on any problem."""
    record = read_object(path, "load-point", "measure again")
    validate(record, str(path))
    return record


#: The first columns of results/serve/loadpoints.csv; the measures' flat names and the settings'
#: axes (arg_<name>) follow.
IDENTITY = [
    "hardware",
    "engine",
    "model",
    "n_gpus",
    "settings",
    "request_rate",
    "max_concurrency",
    "harness",
    "rep",
    "status",
]


def tidy_row(record: dict, slo: Slo, saturation_tolerance: float, path: str | None = None) -> dict:
    """One flat row: the record's identity, its measures derived again under `slo` and
    `saturation_tolerance` (from its per-request results), the server's settings (arg_<name>), and
    its provenance."""
    point = LoadPoint.from_json(record["load_point"])
    measures = None
    if record["measures"] is not None:
        results = [RequestResult.from_json(r) for r in record["requests"]]
        devices = record["config"].get("devices", 1)
        measures = summarise(
            results, record["timings"]["duration_s"], point.request_rate, slo, saturation_tolerance, devices
        )
    env = record["environment"] or {}
    libraries = env.get("libraries") or {}
    energy = record.get("energy") or {}
    return {
        **{key: record[key] for key in IDENTITY if key in record},
        "request_rate": record["load_point"]["request_rate"],
        "max_concurrency": record["load_point"]["max_concurrency"],
        "emulated_max_num_seqs": record["load_point"].get("emulated_max_num_seqs"),
        **flatten(measures or {}),
        **{f"arg_{name}": value for name, value in record["settings_axes"].items()},
        "server_start_s": record["timings"]["server_start_s"],
        "peak_memory_bytes": record["peak_memory"]["bytes"],
        "peak_memory_kind": record["peak_memory"]["kind"],
        "energy_joules": energy.get("joules"),
        # did the token budget bind: the largest scheduler step's bucket (vLLM with InfPop's client)
        "largest_step_tokens": steps.largest_step(record.get("scheduler_steps")),
        "preemptions": (record.get("scheduler_steps") or {}).get("preemptions"),
        "engine_version": libraries.get(record["engine"]) or libraries.get("transformers"),
        "git_commit": env.get("git_commit"),
        "error": record["error"],
        "path": path,
    }
