"""Trial records: build, validate against workflow/schemas/trial.schema.yaml, write atomically,
read back, and flatten into one tidy row each."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from infpop import SCHEMA_DIR, atomic

#: 2 added the trial's run order, the engine's effective settings and counters, and the output
#: digests; records of version 1 stay readable.
SCHEMA_VERSION = 2

#: The fields of a trial that name it and say how it went: the first columns of the tidy table.
TRIAL_COLUMNS = [
    "hardware",
    "engine",
    "model",
    "n_gpus",
    "max_new_tokens",
    "batch_size",
    "rep",
    "status",
    "throughput_tokens_per_s",
]

#: Columns of the tidy trials table (results/<dataset>/trials.csv), in order.
TIDY_COLUMNS = [
    *TRIAL_COLUMNS,
    "generated_tokens",
    "prompt_tokens",
    "prompts",
    "batches",
    "batches_completed",
    "generation_seconds",
    "load_seconds",
    "latency_p50_s",
    "latency_p95_s",
    "peak_memory_bytes",
    "peak_memory_kind",
    "energy_joules",
    "tokens_per_joule",
    "gpu_name",
    "n_gpus_seen",
    "engine_version",
    "sequence",
    "prefix_caching",
    "prefix_cache_hit_rate",
    "offloaded",
    "model_revision",
    "git_commit",
    "error",
    "path",
]


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


def engine_metrics(counters: dict | None, prompt_tokens: int) -> dict | None:
    """What the engine's own counters say about one trial (their change over it). For vLLM: the
    prefix cache's lookups and hits, in tokens, and the hit rate: the share of the trial's prompt
    tokens served from the cache (0 with the cache off, which then looks nothing up)."""
    if not counters:
        return None
    metrics = {name: int(value) for name, value in counters.items()}
    if "prefix_cache_hits" in metrics:
        metrics["prefix_cache_hit_rate"] = metrics["prefix_cache_hits"] / prompt_tokens if prompt_tokens else None
    return metrics


def write_atomic(path: Path, record: dict) -> None:
    """Validate and write `record` to `path` through a temp file and a rename, so a reader never
    sees half a record and a crash mid-write leaves the old file (or none)."""
    validate(record, str(path))
    atomic.write_text(path, json.dumps(record, indent=1) + "\n")


def read(path: Path) -> dict:
    """Read and validate one trial JSON; RecordError names the file on any problem."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RecordError(f"{path}: cannot read trial record: {exc}") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"{path}: corrupt or truncated trial JSON (line {exc.lineno}, "
            f"column {exc.colno}: {exc.msg}); delete it to re-run that trial"
        ) from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: a trial record must be a JSON object")
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
    return {
        **{k: record[k] for k in TRIAL_COLUMNS},
        **record["counts"],
        "generation_seconds": record["timings"]["generation_seconds"],
        "load_seconds": record["timings"]["load_seconds"],
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
        "git_commit": env.get("git_commit"),
        "error": record["error"],
        "path": path,
    }
