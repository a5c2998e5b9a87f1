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

SCHEMA_VERSION = 1

#: Columns of the tidy trials table (results/<dataset>/trials.csv), in order.
TIDY_COLUMNS = [
    "hardware", "engine", "model", "n_gpus", "max_new_tokens", "batch_size", "rep", "status",
    "throughput_tokens_per_s", "generated_tokens", "prompt_tokens", "prompts", "batches",
    "batches_completed", "generation_seconds", "load_seconds", "latency_p50_s", "latency_p95_s",
    "peak_memory_bytes", "peak_memory_kind", "gpu_name", "n_gpus_seen", "engine_version",
    "model_revision", "git_commit", "error", "path",
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
        raise RecordError(f"{path}: corrupt or truncated trial JSON (line {exc.lineno}, "
                          f"column {exc.colno}: {exc.msg}); delete it to re-run that trial") from None
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
    return {
        **{k: record[k] for k in ("hardware", "engine", "model", "n_gpus", "max_new_tokens",
                                   "batch_size", "rep", "status", "throughput_tokens_per_s")},
        **record["counts"],
        "generation_seconds": record["timings"]["generation_seconds"],
        "load_seconds": record["timings"]["load_seconds"],
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "peak_memory_bytes": record["peak_memory"]["bytes"],
        "peak_memory_kind": record["peak_memory"]["kind"],
        "gpu_name": gpus[0]["name"] if gpus else None,
        "n_gpus_seen": len(gpus),
        "engine_version": libraries.get(record["engine"]) or libraries.get("transformers"),
        "model_revision": record.get("model_revision"),  # absent from records made before it existed
        "git_commit": env.get("git_commit"),
        "error": record["error"],
        "path": path,
    }
