"""Trial records: build one (trial_record, from a sweep's SweepContext and what the trial gave),
validate it against workflow/schemas/trial.schema.yaml, write it atomically, read it back, decide
whether an existing one still holds under the current settings (outdated), keep measured and
simulated records apart (check_dataset), and flatten each into one tidy row."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import jsonschema
import yaml

from infpop import SCHEMA_DIR, atomic
from infpop.measure.grid import devices
from infpop.trials import TRIAL_COLUMNS

#: 2 added the trial's run order, the engine's effective settings and metrics, and the output
#: digests; 3 its cost (device-seconds) and whether it was simulated (a rehearsal). Records of
#: versions 1 and 2 stay readable.
SCHEMA_VERSION = 3

#: The datasets of trial records a run makes: our measurements, or a rehearsal's simulated trials.
MEASURED, REHEARSAL = "measured", "rehearsal"

#: Statuses re-run on the next invocation only when the config says retry_failed. (`unsupported`,
#: a configuration the engine cannot run at all, is not: it would fail the same way again.)
FAILED_STATUSES = {"error", "crashed", "timeout"}


class RecordError(ValueError):
    """A trial JSON that is missing, corrupt, truncated or does not match the schema."""


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft7Validator:
    with open(SCHEMA_DIR / "trial.schema.yaml") as handle:
        return jsonschema.Draft7Validator(yaml.safe_load(handle))


def validate(record: dict, where: str = "trial record") -> None:
    errors = sorted(_validator().iter_errors(record), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        details = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors[:5])
        raise RecordError(f"{where}: does not match the trial schema: {details}")


def throughput(generated_tokens: int, generation_seconds: float) -> float | None:
    return generated_tokens / generation_seconds if generation_seconds > 0 else None


# What records read of the types of the modules that build them (which import this one, as the
# config does through the paper's tidy columns): grid's Sweep and TrialKey, the channel's Batch.
class SweepName(Protocol):
    """A sweep, as its records name it (grid.Sweep)."""

    hardware: str
    engine: str
    model: str
    n_gpus: int
    settings: str


class TrialName(Protocol):
    """A trial within its sweep (grid.TrialKey)."""

    max_new_tokens: int
    batch_size: int
    rep: int


class BatchFigures(Protocol):
    """What a trial record takes from each batch the worker ran (the channel's Batch event)."""

    latency_s: float
    new_tokens: int
    prompt_tokens: int
    cached_prompt_tokens: int | None
    output_digests: list[str]


def engine_metrics(batches: Sequence[BatchFigures]) -> dict | None:
    """What the engine itself reported over one trial's batches, or None where it reports nothing
    (hf). vLLM: the prompt tokens each request found in its prefix cache (`num_cached_tokens` of
    its outputs), summed, and the hit rate, their share of the trial's prompt tokens (0 with the
    cache off)."""
    cached = [b.cached_prompt_tokens for b in batches]
    if not batches or any(c is None for c in cached):
        return None
    prompt_tokens = sum(b.prompt_tokens for b in batches)
    return {
        "prefix_cache_hits": sum(cached),
        "prefix_cache_hit_rate": sum(cached) / prompt_tokens if prompt_tokens else None,
    }


def output_digest(token_ids: list[int]) -> str:
    """A short fingerprint of one prompt's generated token ids: two outputs are equal exactly
    when their digests are (12 hex digits: a collision between two outputs of one prompt is
    out of reach), so output agreement is checked without storing every token."""
    data = b"".join(int(t).to_bytes(4, "little", signed=True) for t in token_ids)
    return hashlib.blake2b(data, digest_size=6).hexdigest()


def timestamp() -> str:
    """Now, as a record's started_at and finished_at say it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class SweepContext:
    """What every trial record of one sweep shares, fixed when its supervisor starts, and what
    decides whether a record made earlier still holds."""

    sweep: SweepName
    model_source: str  # what the records name: the hub id or the folder
    model_revision: str | None  # the hub commit of the weights (None for a local model)
    prompts: int  # the benchmark's prompts, all of which every trial generates for
    settings: dict  # what a trial's figures depend on: dtype, benchmark, warmup, engine_args
    trial_timeout_s: float
    load_timeout_s: float
    oom_pruning: bool
    retry_failed: bool
    hf_offload: str
    devices: int = 1  # what the sweep holds: its GPUs, or on the CPU the node
    #: a rehearsal's trials: the table they answer from (path, sha256) and how (seed, noise, ...);
    #: None for measured trials
    rehearsal: dict | None = None

    @classmethod
    def from_config(
        cls,
        config: dict,
        sweep: SweepName,
        model_source: str,
        model_revision: str | None,
        prompts: int,
        rehearsal: dict | None = None,
        engine_args: dict | None = None,
    ) -> SweepContext:
        """`engine_args`: what the sweep's engine settings give (default: the config's engine_args)."""
        settings = {k: config[k] for k in ("dtype", "benchmark", "warmup")}
        settings["engine_args"] = config["engine_args"].get(sweep.engine, {}) if engine_args is None else engine_args
        # a sequential trial's figures are a sample's: turning it on or off measures again
        settings["sequential"] = (config.get("budget") or {}).get("sequential")
        limits = {k: config[k] for k in ("trial_timeout_s", "load_timeout_s", "oom_pruning", "retry_failed")}
        return cls(
            sweep,
            model_source,
            model_revision,
            prompts,
            settings,
            **limits,
            hf_offload=config["hf_offload"],
            devices=devices(config, sweep),
            rehearsal=rehearsal,
        )

    def recorded_config(self) -> dict:
        """The config as each record keeps it."""
        return {
            **self.settings,
            "trial_timeout_s": self.trial_timeout_s,
            "load_timeout_s": self.load_timeout_s,
            "oom_pruning": self.oom_pruning,
            **({"hf_offload": self.hf_offload} if self.sweep.engine == "hf" else {}),
        }


@dataclass(frozen=True)
class TrialRun:
    """What a trial that ran on a worker gave, however it ended."""

    started_at: str
    sequence: int  # its place in the order the sweep's trials ran
    load_seconds: float  # the load of the worker it ran on
    call: str = "engine"  # "bare": the hf cross-check's model.generate
    batches: Sequence[BatchFigures] = ()  # the batches it completed
    peak_memory_bytes: int | None = None
    peak_memory_kind: str | None = None
    energy: dict | None = None  # null where the trial did not end in the worker
    wall_seconds: float = 0.0  # from its first batch's start to its end (simulated: the virtual clock's)
    sequential: dict | None = None  # a sequential trial's block (infpop.measure.sequential.summary)


def trial_record(
    context: SweepContext,
    key: TrialName,
    status: str,
    *,
    error: str | None = None,
    run: TrialRun | None = None,
    environment: dict | None = None,
    engine_settings: dict | None = None,
) -> dict:
    """The record of one trial: one that ran (`run`), or one that did not (a failed load's status
    for every trial, skipped_oom). `environment` is that of the last worker loaded (None if none
    was); `engine_settings`, what the engine ran with or, for a trial not run after a failed load,
    what the load would have run with, if known. finished_at is now."""
    batches = run.batches if run else ()
    generated = sum(b.new_tokens for b in batches)
    seconds = sum(b.latency_s for b in batches)
    wall = run.wall_seconds if run else 0.0  # a trial that did not run held the devices for nothing
    sample = run.sequential if run else None
    rate = throughput(generated, seconds)
    if sample and status == "ok":  # the sample's estimate of the whole benchmark's throughput
        rate = sample["tokens_per_s"]
    return {
        "schema_version": SCHEMA_VERSION,
        "hardware": context.sweep.hardware,
        "engine": context.sweep.engine,
        "model": context.sweep.model,
        "model_source": context.model_source,
        "model_revision": context.model_revision,
        "n_gpus": context.sweep.n_gpus,
        "settings": context.sweep.settings,
        "max_new_tokens": key.max_new_tokens,
        "batch_size": key.batch_size,
        "rep": key.rep,
        "status": status,
        "counts": {
            "prompts": context.prompts,
            "batches": -(-context.prompts // key.batch_size),
            "batches_completed": len(batches),
            "generated_tokens": generated,
            "prompt_tokens": sum(b.prompt_tokens for b in batches),
        },
        "timings": {
            "load_seconds": run.load_seconds if run else None,
            "generation_seconds": seconds,
            "batch_latencies_s": [b.latency_s for b in batches],
            "started_at": run.started_at if run else None,
            "finished_at": timestamp() if run else None,
        },
        "throughput_tokens_per_s": rate,
        "peak_memory": {"bytes": run.peak_memory_bytes if run else None, "kind": run.peak_memory_kind if run else None},
        "energy": run.energy if run else None,
        "error": error,
        "sequence": run.sequence if run else None,
        "engine_call": run.call if run else "engine",
        "engine_settings": engine_settings,
        "engine_metrics": engine_metrics(batches) if run else None,
        # by prompt, in the benchmark's order: a sequential trial's sample would not line up
        "output_digests": [] if sample else [d for b in batches for d in b.output_digests],
        "environment": environment,
        "config": context.recorded_config(),
        # what the trial cost: its wall time x the devices its sweep holds (the load is timings')
        "cost": {"device_seconds": wall * context.devices, "wall_seconds": wall, "devices": context.devices},
        "simulated": context.rehearsal is not None,
        "rehearsal": context.rehearsal,
        "sequential": sample,
    }


def outdated(context: SweepContext, record: dict, pruned_by: int | None) -> str | None:
    """Why an existing record no longer holds and its trial is measured again, or None where it
    is kept. `pruned_by`: the smallest batch size of the sweep that ran out of memory at the
    record's max_new_tokens, if any."""
    simulated = record.get("simulated", False)
    if simulated != (context.rehearsal is not None):
        return "was simulated (a rehearsal), this sweep measures" if simulated else "was measured, this sweep rehearses"
    changed = [k for k, v in context.settings.items() if record["config"].get(k) != v]
    if record.get("rehearsal") != context.rehearsal:
        changed.append("rehearsal")
    if record["model_source"] != context.model_source:
        changed.append("model")
    elif record.get("model_revision") != context.model_revision:  # other weights, or weights not recorded
        changed.append("model revision")
    if offload_changed(context, record):
        changed.append("hf_offload")
    if changed:
        return f"was measured with other settings ({', '.join(changed)})"
    if record["status"] in FAILED_STATUSES and context.retry_failed:
        return f"ended in {record['status']} and retry_failed is on"
    if record["status"] == "skipped_oom" and not pruned(context, record["batch_size"], pruned_by):
        return "was skipped_oom, and no out-of-memory batch size prunes it now"  # re-measured, or pruning off
    return None


def pruned(context: SweepContext, batch_size: int, pruned_by: int | None) -> bool:
    """Whether a trial is not run but recorded as skipped_oom: with oom_pruning on, a smaller batch
    size at its max_new_tokens (`pruned_by`, the smallest) ran out of memory."""
    return context.oom_pruning and pruned_by is not None and batch_size > pruned_by


def offload_changed(context: SweepContext, record: dict) -> bool:
    """hf only: whether the record's outcome depended on an hf_offload other than the config's
    (a trial that ran offloaded, now forbidden; a load refused for offloading, now allowed).
    A record whose weights all fitted on the GPUs holds under either policy: it is kept, and
    so are records made before hf_offload existed (offloading was allowed then)."""
    if context.sweep.engine != "hf" or not (record.get("engine_settings") or {}).get("offloaded"):
        return False
    refused = record["status"] == "oom" and record["timings"]["started_at"] is None
    return (context.hf_offload == "forbid" and not refused) or (context.hf_offload == "allow" and refused)


def check_dataset(record: dict, dataset: str, where: str) -> None:
    """A simulated record (a rehearsal) never enters a measured dataset, nor a measured one a
    rehearsal's: RecordError naming the file and what it is."""
    simulated = record.get("simulated", False)
    if simulated and dataset != REHEARSAL:
        table = (record.get("rehearsal") or {}).get("trials")
        raise RecordError(
            f"{where}: a simulated trial (rehearsed from {table}) cannot enter the {dataset} dataset: "
            f"a rehearsal's records live in its own (results/{REHEARSAL}/), never mixed with measurements"
        )
    if not simulated and dataset == REHEARSAL:
        raise RecordError(
            f"{where}: a measured trial cannot enter the {REHEARSAL} dataset: it holds simulated trials only "
            f"(a rehearsal's sweeps write them under results/{REHEARSAL}/trials/)"
        )


def write_atomic(path: Path, record: dict) -> None:
    """Validate and write `record` to `path` through a temp file and a rename, so a reader never
    sees half a record and a crash mid-write leaves the old file (or none)."""
    validate(record, str(path))
    atomic.write_text(path, json.dumps(record, indent=1) + "\n")


def read_object(path: Path, kind: str, remedy: str) -> dict:
    """One record file's JSON object, unvalidated; RecordError names the file, the `kind` of
    record and, where it is corrupt, the `remedy` (what deleting it does)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RecordError(f"{path}: cannot read {kind} record: {exc}") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"{path}: corrupt or truncated {kind} JSON (line {exc.lineno}, "
            f"column {exc.colno}: {exc.msg}); delete it to {remedy}"
        ) from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: a {kind} record must be a JSON object")
    return record


def read(path: Path) -> dict:
    """Read and validate one trial JSON; RecordError names the file on any problem."""
    record = read_object(path, "trial", "re-run that trial")
    validate(record, str(path))
    return record


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default) without numpy."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def tidy_row(record: dict, path: str | None = None) -> dict:
    """One flat row of the trials table."""
    latencies = record["timings"]["batch_latencies_s"]
    env = record["environment"] or {}
    gpus = env.get("gpus") or []
    libraries = env.get("libraries") or {}
    settings = record.get("engine_settings") or {}
    sample = record.get("sequential")
    return {
        **{k: record[k] for k in TRIAL_COLUMNS},
        **record["counts"],
        "generation_seconds": record["timings"]["generation_seconds"],
        "load_seconds": record["timings"]["load_seconds"],
        # what the trial cost: its time x the devices it held (records since 2026-12; the paper's
        # trials: from their published throughput)
        "device_seconds": (record.get("cost") or {}).get("device_seconds"),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "peak_memory_bytes": record["peak_memory"]["bytes"],
        "peak_memory_kind": record["peak_memory"]["kind"],
        # NVML's reading over the trial (GPUs only; absent from records made before it existed)
        "energy_joules": (record.get("energy") or {}).get("joules"),
        "tokens_per_joule": (record.get("energy") or {}).get("tokens_per_joule"),
        "gpu_name": gpus[0]["name"] if gpus else None,
        "n_gpus_seen": len(gpus),
        "engine_version": libraries.get(record["engine"]) or libraries.get("transformers"),
        "sequence": record.get("sequence"),
        "prefix_caching": settings.get("enable_prefix_caching"),
        "prefix_cache_hit_rate": (record.get("engine_metrics") or {}).get("prefix_cache_hit_rate"),
        "offloaded": settings.get("offloaded"),
        "model_revision": record.get("model_revision"),  # absent from records made before it existed
        "settings": record.get("settings", "default"),  # the engine settings (engine_arg_axes)
        # a sequential trial (a stratified sample of its batches): its estimate's 95% interval
        "sequential": sample is not None,
        "throughput_ci_low": (sample or {}).get("ci_low"),
        "throughput_ci_high": (sample or {}).get("ci_high"),
        "ci_half_width_pct": (sample or {}).get("ci_half_width_pct"),
        "git_commit": env.get("git_commit"),
        "error": record["error"],
        "path": path,
    }
