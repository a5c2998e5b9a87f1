"""What a job asks of a cluster, estimated from the config before anything runs: its time limit
(Snakemake's `runtime` resource, minutes) and host memory (`mem_mb`); and the jobs a sweep becomes
when one job would outlast the partition that takes it.

Runtime: safety_factor x (one model load + the job's trials x one trial), the per-engine figures of
the config's `runtime_estimate`, each at most its time limit (load_timeout_s, trial_timeout_s: the
supervisor stops a load or a trial there). A retry asks for attempt x that. Neither ever exceeds the
partition's max_runtime: a request above it would make the SLURM plugin pass over that partition.

Host memory: the weights (2 bytes a parameter, 4 in float32) plus what the processes hold beside
them. hf runs in one worker process. vLLM runs an engine-core process and one worker process per
tensor-parallel rank, each with its own CUDA context, PyTorch and host buffers, so its memory grows
with n_gpus.

A sweep whose estimate exceeds the partition's max_runtime becomes one job per max_new_tokens
(`SweepJob`): each loads the model once, runs that token count's batch sizes and repetitions, and
writes its own manifest beside the sweep's trial JSONs, which keep their paths. Out-of-memory pruning
works within one (n_gpus, max_new_tokens), so it is the same in a part as in the whole sweep.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from infpop.measure.grid import Sweep, TrialKey, trial_keys

#: Host memory of the processes of any sweep, beside the weights: the supervisor, the worker (Python,
#: torch, the engine's libraries), the tokenizer and the prompts.
HOST_BASE_MB = 4096
#: Each further vLLM process that holds a CUDA context and host buffers: the engine core, and one
#: worker per tensor-parallel rank. An estimate, not measured on a GPU here.
VLLM_PROCESS_MB = 3072

#: A part's label in its manifest, log and benchmark names: sweep_t<max_new_tokens>.json.
PART_PATTERN = r"(_t\d+)?"


@dataclass(frozen=True, order=True)
class SweepJob:
    """One Snakemake job of a sweep: the whole sweep, or (split) its trials at one max_new_tokens."""

    sweep: Sweep
    max_new_tokens: int | None = None

    @property
    def part(self) -> str:
        """The `part` wildcard: '' for the whole sweep, '_t<max_new_tokens>' for a part."""
        return "" if self.max_new_tokens is None else f"_t{self.max_new_tokens}"

    @property
    def name(self) -> str:
        return self.sweep.relpath + ("" if self.max_new_tokens is None else f" (t{self.max_new_tokens})")

    def trial_keys(self, config: dict) -> list[TrialKey]:
        if self.max_new_tokens is not None and self.max_new_tokens not in config["max_new_tokens"]:
            raise ValueError(
                f"{self.name}: max_new_tokens {self.max_new_tokens} is not one of the config's "
                f"{sorted(config['max_new_tokens'])}"
            )
        return [k for k in trial_keys(config) if self.max_new_tokens in (None, k.max_new_tokens)]


def part_tokens(part: str) -> int | None:
    """The max_new_tokens of a `part` wildcard ('' -> None, the whole sweep)."""
    match = re.fullmatch(r"_t(\d+)", part)
    if part and not match:
        raise ValueError(f"not a sweep part: {part!r} (expected '' or '_t<max_new_tokens>')")
    return int(match.group(1)) if match else None


def load_seconds(config: dict, engine: str) -> float:
    return min(config["runtime_estimate"][engine]["load_s"], config["load_timeout_s"])


def trial_seconds(config: dict, engine: str) -> float:
    return min(config["runtime_estimate"][engine]["trial_s"], config["trial_timeout_s"])


def describe(config: dict, engine: str, loads: int, trials: int) -> str:
    """How an estimate is made up, for messages: 'a 900 s load + 33 trials x 1800 s, x 1.5'."""
    load = (
        f"{loads} loads x {load_seconds(config, engine):g} s"
        if loads != 1
        else f"a {load_seconds(config, engine):g} s load"
    )
    factor = config["runtime_estimate"]["safety_factor"]
    return f"{load} + {trials} trials x {trial_seconds(config, engine):g} s, x {factor:g}"


def sweep_minutes(config: dict, job: SweepJob) -> float:
    """The estimated wall time of one sweep job (first attempt), in minutes."""
    engine = job.sweep.engine
    seconds = load_seconds(config, engine) + len(job.trial_keys(config)) * trial_seconds(config, engine)
    return config["runtime_estimate"]["safety_factor"] * seconds / 60


def tune_minutes(config: dict, gpu_counts: dict[str, list[int]]) -> float:
    """Live tuning: a load per engine and GPU count it searches, and `budget` evaluations per
    engine, each repeated as `repetitions` allows at most."""
    from infpop.measure.repetitions import Policy

    tune = config["optimise"]["tune"]
    trials = tune["budget"] * Policy.from_config(config).maximum
    seconds = sum(
        len(gpu_counts[engine]) * load_seconds(config, engine) + trials * trial_seconds(config, engine)
        for engine in gpu_counts
    )
    return config["runtime_estimate"]["safety_factor"] * seconds / 60


def crosscheck_minutes(config: dict) -> float:
    """The cross-check: vLLM loads once for our trials and once per `vllm bench` run, each side
    running `repeats` trials; hf loads once and runs the pipeline and the bare call `repeats`
    times at each of its batch sizes."""
    section = config["crosscheck"]
    repeats, seconds = section["repeats"], 0.0
    if "vllm" in section["engines"]:
        seconds += (1 + repeats) * load_seconds(config, "vllm") + 2 * repeats * trial_seconds(config, "vllm")
    if "hf" in section["engines"]:
        seconds += load_seconds(config, "hf") + 2 * repeats * len(section["hf_batch_sizes"]) * trial_seconds(
            config, "hf"
        )
    return config["runtime_estimate"]["safety_factor"] * seconds / 60


def request(estimate: float, attempt: int, cap: float = math.inf) -> int:
    """What a job asks for on its `attempt` (1, 2, ...): attempt x the estimate, rounded up, never
    above the cap (a partition's limit; inf when none is known)."""
    wanted = math.ceil(estimate * attempt)
    return max(1, min(wanted, math.floor(cap)) if math.isfinite(cap) else wanted)


def host_memory_mb(config: dict, model: str, engine: str, n_gpus: int) -> int:
    """The host memory (MB) of a job running `model` through `engine` on n_gpus (first attempt)."""
    bytes_per_param = 4 if config["dtype"] == "float32" else 2
    weights = (config["models"][model].get("params_billion") or 0) * bytes_per_param * 1024
    processes = 1 + n_gpus if engine == "vllm" else 0  # the engine core + one worker per rank
    return math.ceil(HOST_BASE_MB + processes * VLLM_PROCESS_MB + weights)


def tune_memory_mb(config: dict, gpu_counts: dict[str, list[int]]) -> int:
    """Live tuning runs one engine at a time, each up to the largest GPU count it searches."""
    model = config["optimise"]["tune"]["model"]
    return max(host_memory_mb(config, model, engine, max(counts)) for engine, counts in gpu_counts.items())


def split(config: dict, sweep: Sweep, max_minutes: float = math.inf) -> list[SweepJob]:
    """The jobs of a sweep: the whole sweep when its estimate fits max_minutes (or it has a single
    max_new_tokens), else one job per max_new_tokens."""
    whole = SweepJob(sweep)
    if math.ceil(sweep_minutes(config, whole)) <= max_minutes or len(config["max_new_tokens"]) == 1:
        return [whole]
    return [SweepJob(sweep, tokens) for tokens in sorted(config["max_new_tokens"])]
