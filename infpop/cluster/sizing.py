"""What a job asks of a cluster, estimated from the config before anything runs: its time limit
(Snakemake's `runtime` resource, minutes) and host memory (`mem_mb`); and the jobs a sweep becomes
when one job would outlast the partition that takes it.

Runtime: safety_factor x (one model load + each of the job's trials), each at most its time limit
(load_timeout_s, trial_timeout_s: the supervisor stops a load or a trial there). A trial's time, and
a load's: the config's `runtime_estimate` where it sets them (the user's override), else the cost
model's estimate where its calibration covers the hardware and engine (infpop/cluster/cost_model.py:
by default the paper's published trials), else a fallback guess (FALLBACK). A retry asks for
attempt x that. Neither ever exceeds the partition's max_runtime: a request above it would make the
SLURM plugin pass over that partition. The plan's device-hours (printed before a run) are the same
estimate, devices x (load + trials), without the safety factor.

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

from infpop.cluster import cost_model
from infpop.data.benchmark import PROMPTS
from infpop.measure.grid import Sweep, TrialKey, devices, trial_keys
from infpop.measure.repetitions import Policy
from infpop.serve.plan import load_points, records_per_job

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


#: What a load and a trial take where neither runtime_estimate nor the cost model says: guesses
#: for a large model on a GPU (a 70B model read from a local disk; an hf trial of every prompt).
FALLBACK = {"hf": {"load_s": 900.0, "trial_s": 1800.0}, "vllm": {"load_s": 900.0, "trial_s": 300.0}}
#: Where an estimate comes from, as messages name it.
GIVEN, MODELLED, GUESSED = "runtime_estimate", "cost model", "fallback"


def prompts(config: dict) -> int:
    """The prompts a trial sends: the benchmark's, or its first benchmark.limit."""
    total = PROMPTS[config["benchmark"]["name"]]
    return min(config["benchmark"]["limit"] or total, total)


def _fit(config: dict, hardware: str, engine: str):
    model = cost_model.for_config(config)
    spec = config["hardware"][hardware]
    return None if model is None else model.fit(hardware, spec.get("gpu_model"), engine)


def source(config: dict, hardware: str, engine: str) -> str:
    """Where a trial's estimate on this hardware and engine comes from: the config's
    runtime_estimate (set there, it overrides), the cost model (where its calibration covers them),
    or the fallback guess."""
    if config["runtime_estimate"][engine]["trial_s"] is not None:
        return GIVEN
    return MODELLED if _fit(config, hardware, engine) is not None else GUESSED


def trial_seconds(
    config: dict, hardware: str, engine: str, model: str, n_gpus: int, batch_size: int, tokens: int
) -> float:
    """One trial's wall time: runtime_estimate's trial_s if set, else the cost model's estimate,
    else the fallback; at most trial_timeout_s (the supervisor stops a trial there)."""
    seconds = config["runtime_estimate"][engine]["trial_s"]
    if seconds is None:
        fit = _fit(config, hardware, engine)
        params = config["models"][model].get("params_billion")
        per_prompt = None if fit is None else fit.seconds_per_prompt(model, params, n_gpus, batch_size, tokens)
        seconds = FALLBACK[engine]["trial_s"] if per_prompt is None else per_prompt * prompts(config)
    return min(seconds, config["trial_timeout_s"])


def load_seconds(config: dict, hardware: str, engine: str, model: str) -> float:
    """One model load with its warm-up, as trial_seconds, at most load_timeout_s."""
    seconds = config["runtime_estimate"][engine]["load_s"]
    if seconds is None:
        fit = _fit(config, hardware, engine)
        seconds = None if fit is None else fit.load(model, config["models"][model].get("params_billion"))
        seconds = FALLBACK[engine]["load_s"] if seconds is None else seconds
    return min(seconds, config["load_timeout_s"])


def describe(loads: list[float], trials: list[float], factor: float) -> str:
    """How an estimate is made up, for messages: 'a 900 s load + 33 trials x 1800 s, x 1.5', or
    with the cost model's estimates, which differ by trial, 'a 900 s load + 33 trials of 4,620 s
    in all, x 1.5'."""

    def seconds(value: float) -> str:
        return f"{value:g}" if float(value).is_integer() else f"{value:,.0f}"

    if len(loads) == 1:
        load = f"a {seconds(loads[0])} s load"
    elif len(set(loads)) == 1:
        load = f"{len(loads)} loads x {seconds(loads[0])} s"
    else:
        load = f"{len(loads)} loads of {sum(loads):,.0f} s in all"
    if len(set(trials)) <= 1:
        trial = f"{len(trials)} trials x {seconds(trials[0] if trials else 0)} s"
    else:
        trial = f"{len(trials)} trials of {sum(trials):,.0f} s in all"
    return f"{load} + {trial}, x {factor:g}"


def sweep_estimate(config: dict, job: SweepJob) -> tuple[float, list[float]]:
    """(load seconds, each trial's seconds) of one sweep job."""
    sweep = job.sweep
    trials = [
        trial_seconds(config, sweep.hardware, sweep.engine, sweep.model, sweep.n_gpus, k.batch_size, k.max_new_tokens)
        for k in job.trial_keys(config)
    ]
    return load_seconds(config, sweep.hardware, sweep.engine, sweep.model), trials


def sweep_minutes(config: dict, job: SweepJob) -> float:
    """The estimated wall time of one sweep job (first attempt), in minutes."""
    load, trials = sweep_estimate(config, job)
    return config["runtime_estimate"]["safety_factor"] * (load + sum(trials)) / 60


def describe_sweep(config: dict, job: SweepJob) -> str:
    load, trials = sweep_estimate(config, job)
    return describe([load], trials, config["runtime_estimate"]["safety_factor"])


def tune_estimate(config: dict, gpu_counts: dict[str, list[int]], engine: str) -> tuple[list[float], list[float]]:
    """(each load's seconds, each trial's seconds) of live tuning's search with one engine: a load
    per GPU count, and `budget` evaluations, each repeated as `repetitions` allows at most, each
    the mean trial of the space it searches."""
    tune = config["optimise"]["tune"]
    hardware, model, tokens = tune["hardware"], tune["model"], tune["max_new_tokens"]
    space = [
        trial_seconds(config, hardware, engine, model, g, b, tokens)
        for g in gpu_counts[engine]
        for b in tune["batch_sizes"]
    ]
    loads = [load_seconds(config, hardware, engine, model) for _ in gpu_counts[engine]]
    return loads, [sum(space) / len(space)] * (tune["budget"] * Policy.from_config(config).maximum)


def tune_minutes(config: dict, gpu_counts: dict[str, list[int]]) -> float:
    """Live tuning: every engine's search (tune_estimate), one after the other."""
    seconds = 0.0
    for engine in gpu_counts:
        loads, trials = tune_estimate(config, gpu_counts, engine)
        seconds += sum(loads) + sum(trials)
    return config["runtime_estimate"]["safety_factor"] * seconds / 60


def crosscheck_minutes(config: dict) -> float:
    """The cross-check: vLLM's three sides (our trial, a bare LLM.generate, `vllm bench`) each
    load a fresh engine and run one all-prompts trial per round (every prompt in one call); hf
    loads once and runs the pipeline and the bare call `repeats` times at each of its batch sizes;
    every side on crosscheck.prompts prompts."""
    section = config["crosscheck"]
    hardware, model, n_gpus, tokens = (
        section["hardware"],
        section["model"],
        section["n_gpus"],
        section["max_new_tokens"],
    )
    config = dict(config, benchmark={**config["benchmark"], "limit": section["prompts"]})
    repeats, seconds = section["repeats"], 0.0
    if "vllm" in section["engines"]:
        trial = trial_seconds(config, hardware, "vllm", model, n_gpus, prompts(config), tokens)
        seconds += 3 * repeats * (load_seconds(config, hardware, "vllm", model) + trial)
    if "hf" in section["engines"]:
        seconds += load_seconds(config, hardware, "hf", model) + 2 * repeats * sum(
            trial_seconds(config, hardware, "hf", model, n_gpus, batch, tokens) for batch in section["hf_batch_sizes"]
        )
    return config["runtime_estimate"]["safety_factor"] * seconds / 60


def _load_point_seconds(section: dict) -> list[float]:
    """Each load point of the serving plan: its requests at its rate (none at an unbounded one)
    plus serve.load_point_estimate_s."""
    return [
        (section["requests"] / p.request_rate if math.isfinite(p.request_rate) else 0)
        + section["load_point_estimate_s"]
        for p in load_points(section)
    ]


def serve_minutes(config: dict, job) -> float:
    """A serving job (infpop.serve.plan.ServeJob): a server start (the engine's load_s), then every
    load point (_load_point_seconds) for each repetition and load generator."""
    per_point = _load_point_seconds(config["serve"])
    rounds = records_per_job(config, job.engine) / len(per_point)
    seconds = load_seconds(config, job.hardware, job.engine, job.model) + rounds * sum(per_point)
    return config["runtime_estimate"]["safety_factor"] * seconds / 60


def serve_tuning_minutes(config: dict, jobs: list) -> float:
    """Live serve.tuning: auto_tune, then InfPop's tuning, over the vLLM servers `jobs` of the
    serving plan, one server at a time: each algorithm starts each server once and asks for about
    as many load points as its serving job measures (auto_tune's walk down from the rate-inf
    throughput can ask for more; a job over its runtime is retried with twice as much). Then per
    case (hardware, model, GPUs) serve.tuning.confirm rounds of both answers, alternating: at most
    rounds + 1 server starts and two of the plan's longest load points a round."""
    searches = 2 * sum(serve_minutes(config, job) for job in jobs)
    rounds = config["serve"]["tuning"]["confirm"]
    if not rounds:
        return searches
    longest = max(_load_point_seconds(config["serve"]))
    cases = {(job.hardware, job.model, job.n_gpus) for job in jobs}
    seconds = sum((rounds + 1) * load_seconds(config, h, "vllm", m) + 2 * rounds * longest for h, m, _ in cases)
    return searches + config["runtime_estimate"]["safety_factor"] * seconds / 60


def serve_summary(config: dict, jobs: list, excluded: int) -> str:
    """What the serving plan will run, said before it runs."""
    count = sum(records_per_job(config, job.engine) for job in jobs)
    hours = sum(serve_minutes(config, job) for job in jobs) / config["runtime_estimate"]["safety_factor"] / 60
    return (
        f"InfPop serving plan: {len(jobs):,} server(s) ({excluded:,} left out, results/serve/plan.csv says why), "
        f"{count:,} load-point records; at most about {hours:,.1f} job-hours by runtime_estimate"
    )


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


def device_hours(config: dict, jobs: list[SweepJob]) -> float:
    """The device-hours of the jobs (each trial at most trial_timeout_s, a load per job; without
    the safety factor): devices x (load + trials)."""
    seconds = 0.0
    for job in jobs:
        load, trials = sweep_estimate(config, job)
        seconds += devices(config, job.sweep) * (load + sum(trials))
    return seconds / 3600


def plan_summary(config: dict, jobs: list[SweepJob], excluded: int, plan_file: str = "results/plan.csv") -> str:
    """What a plan will run, said before it runs: sweeps, jobs, trials, and the device-hours they
    are estimated to take, with where each estimate comes from (the cost model, where calibrated;
    runtime_estimate where set; the fallback guess otherwise)."""
    policy = Policy.from_config(config)
    sweeps = {job.sweep for job in jobs}
    most = sum(len(job.trial_keys(config)) for job in jobs)
    least = most // policy.maximum * policy.minimum
    trials = f"{least:,} to {most:,}" if policy.adaptive else f"{most:,}"
    origins: dict[str, list[str]] = {}
    for hardware, engine in sorted({(job.sweep.hardware, job.sweep.engine) for job in jobs}):
        origins.setdefault(source(config, hardware, engine), []).append(f"{hardware}/{engine}")
    said = {
        MODELLED: f"the cost model calibrated on {getattr(cost_model.for_config(config), 'source', '')}",
        GIVEN: "runtime_estimate",
        GUESSED: "fallback guesses",
    }
    where = "; ".join(f"{said[name]} for {', '.join(pairs)}" for name, pairs in origins.items())
    text = (
        f"InfPop plan: {len(sweeps):,} sweep(s) in {len(jobs):,} job(s) ({excluded:,} combination(s) left out, "
        f"{plan_file} says why), {trials} trials; about {device_hours(config, jobs):,.1f} "
        f"device-hours ({where})"
    )
    if most > 10_000:
        text += f"\nInfPop: {most:,} trials is a large grid: check the plan (snakemake -n, {plan_file}) before it runs"
    budget = config.get("budget") or {}
    chosen = [key for key in ("device_hours", "fraction", "strategies") if budget.get(key)]
    if chosen and not budget.get("run"):
        text += (
            f"\nInfPop: budget.{', budget.'.join(chosen)} shape the budget study (rule budget, docs/budget.md), not "
            "this run: it measures every planned trial (within-trial sampling is budget.sequential; "
            "budget.run: true spends the budget)"
        )
    return text
