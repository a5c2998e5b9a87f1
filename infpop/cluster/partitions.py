"""Planning-time checks of what a run asks of the cluster: a sweep that no node can take is an
error before any job is submitted, not a SLURM job pending forever.

Two sources are checked against the config's plan:
- resources set on the sweeps from the command line or a profile (`set-resources: sweep:
  gpu_model: ...` or `gpu: ...`), which the workflow reads and hands in: the GPU model must be
  one the config's hardware defines, the GPU count within a node of that hardware;
- the partitions file of snakemake-executor-plugin-slurm, the config's `cluster.partitions` (the
  workflow hands it to the plugin), in a run that submits jobs: every planned GPU sweep needs a
  partition offering its GPU model and GPU count, and every job (the sweeps and live tuning) one
  whose max_runtime and max_mem_mb hold its estimated runtime and host memory (infpop.cluster.sizing).
  A sweep estimated to run longer than that is split into one job per max_new_tokens first.

The plugin gives a job the best-fitting partition among those whose limits hold all its requests,
and falls back to the cluster's default partition when none does. So the requests are capped at
the limits of the partition with the most room for the job, and what does not fit there is an
error here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from infpop.cluster import sizing
from infpop.cluster.sizing import SweepJob
from infpop.measure.grid import Sweep


class PartitionsError(ValueError):
    """A partitions file that cannot be read, or a partition whose limits the plan cannot use."""


def read_partitions(path: str | Path) -> Partitions:
    """The plugin's partitions file as the limits a job is placed by. Every partition must give
    max_runtime: a partition without one would be read as unlimited, and a job sized to it would
    ask SLURM for any time at all."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PartitionsError(f"the SLURM partitions file {path} does not exist") from None
    except OSError as exc:
        raise PartitionsError(f"cannot read the SLURM partitions file {path}: {exc.strerror}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PartitionsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("partitions"), dict) or not data["partitions"]:
        raise PartitionsError(f"{path} needs a 'partitions' mapping of partition names to their limits")
    partitions_node = _child(node, "partitions")
    lines = {key.value: key.start_mark.line + 1 for key, _ in getattr(partitions_node, "value", [])}
    problems = []
    limits = {}
    for name, spec in data["partitions"].items():
        spec = dict(spec or {})
        where = f"{path}:{lines.get(name, '?')}"
        if "max_runtime" not in spec:
            problems.append(
                f"{where}: partition {name} has no max_runtime: give its time limit (the MaxTime of "
                f"`scontrol show partition {name}`, in minutes or days-hours:minutes:seconds)"
            )
        limits[name] = spec
    if problems:
        raise PartitionsError("; ".join(problems))
    try:
        return Partitions(limits, str(path))
    except ValueError as exc:
        raise PartitionsError(str(exc)) from None


def _child(node, key: str):
    """The value node of `key` in a composed YAML mapping node (None where there is none)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for k, value in node.value if k.value == key), None)


def gpu_models(config: dict) -> dict[str, list[str]]:
    """{gpu_model: [hardware names]} of the config's GPU hardware."""
    models: dict[str, list[str]] = {}
    for name, hardware in config["hardware"].items():
        if hardware["kind"] == "gpu":
            models.setdefault(hardware["gpu_model"], []).append(name)
    return models


def check_sweep_overrides(config: dict, overrides: Mapping[str, object]) -> list[str]:
    """Problems with resources set on the sweep rule from outside (a profile, --set-resources)."""
    problems = []
    models = gpu_models(config)
    model = overrides.get("gpu_model")
    if model is not None and not callable(model):
        if str(model) not in models:
            defined = ", ".join(sorted(models)) or "none: the config has no GPU hardware"
            problems.append(
                f"the sweeps are given gpu_model={model} (set-resources), a GPU model the "
                f"config's hardware does not define (defined: {defined})"
            )
    count = overrides.get("gpu")
    if count is not None and str(count).isdigit():
        limits = [h.get("gpus_per_node") for h in config["hardware"].values() if h["kind"] == "gpu"]
        if limits and all(limit is not None for limit in limits) and int(count) > max(limits):
            problems.append(
                f"the sweeps are given gpu={count} (set-resources), more GPUs than a node "
                f"of the config's hardware has (gpus_per_node at most {max(limits)})"
            )
    return problems


def check_partitions(config: dict, sweeps: Iterable, partitions: dict[str, dict], source: str) -> list[str]:
    """Problems: planned GPU sweeps that no partition can take (GPU model or count)."""
    needs: dict[tuple[str, int], list[str]] = {}
    for sweep in sweeps:
        hardware = config["hardware"][sweep.hardware]
        if hardware["kind"] == "gpu":
            needs.setdefault((hardware["gpu_model"], sweep.n_gpus), []).append(sweep.relpath)
    problems = []
    for (model, count), relpaths in sorted(needs.items()):
        offering = {
            name: int(limits.get("max_gpu", 0))
            for name, limits in partitions.items()
            if int(limits.get("max_gpu", 0)) > 0
            and (not limits.get("available_gpu_models") or model in limits["available_gpu_models"])
        }
        if any(limit >= count for limit in offering.values()):
            continue
        if offering:
            why = "at most " + ", ".join(f"{n} GPUs in partition {p}" for p, n in sorted(offering.items()))
        else:
            why = "no partition offers that GPU model"
        problems.append(
            f"{len(relpaths)} sweep(s) need {count} {model} GPU(s) on one node (e.g. {relpaths[0]}); "
            f"the SLURM partitions in {source} offer {why}"
        )
    return problems


def parse_minutes(value) -> float:
    """A partition's max_runtime in minutes, read as the SLURM plugin reads it: a number of minutes;
    SLURM's 'minutes', 'hours:minutes' (the plugin's reading of two fields), 'hours:minutes:seconds',
    'days-hours', 'days-hours:minutes', 'days-hours:minutes:seconds'; or Snakemake's '2d12h30m'.
    Rounded to whole minutes, half up, as the plugin does."""
    if isinstance(value, bool):
        raise ValueError(f"max_runtime {value!r} is not a time")
    if isinstance(value, (int, float)):
        return math.floor(value + 0.5)
    text = str(value).strip()
    try:
        return math.floor(float(text) + 0.5)
    except ValueError:
        pass
    slurm = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if slurm and ("-" in text or ":" in text):
        days, first, second, third = (int(g) if g else 0 for g in slurm.groups())
        if slurm.group(3) is None and not days:  # 'minutes', and (the plugin's reading) '0-minutes'
            minutes = first
        else:  # [days-]hours[:minutes[:seconds]]
            minutes = days * 1440 + first * 60 + second + third / 60
        return math.floor(minutes + 0.5)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", text.lower())
    if not parts:
        raise ValueError(
            f"max_runtime {value!r} is not a time the SLURM plugin reads (minutes, "
            f"'days-hours:minutes:seconds' or '2d12h')"
        )
    per_unit = {"d": 1440, "h": 60, "m": 1, "s": 1 / 60}
    return math.floor(sum(float(number) * per_unit[unit] for number, unit in parts) + 0.5)


@dataclass(frozen=True)
class Room:
    """What one partition allows a job: minutes and host memory (inf where it sets no limit)."""

    partition: str
    max_runtime: float
    max_mem_mb: float


class Partitions:
    """The plugin's partitions file of this run, as the limits a job is placed by."""

    def __init__(self, limits: dict[str, dict], source: str):
        self.limits, self.source = limits, source
        self.rooms = {}
        for name, spec in limits.items():
            try:
                runtime = parse_minutes(spec["max_runtime"]) if "max_runtime" in spec else math.inf
            except ValueError as exc:
                raise ValueError(f"partition {name} in {source}: {exc}") from None
            memory = spec.get("max_mem_mb", math.inf)
            if isinstance(memory, bool) or not isinstance(memory, (int, float)):
                raise ValueError(f"partition {name} in {source}: max_mem_mb {memory!r} is not a number of MB")
            self.rooms[name] = Room(name, runtime, memory)

    def room(self, gpu_model: str | None, n_gpus: int) -> Room | None:
        """The partition with the most room (the longest max_runtime, then the most memory) among
        those the plugin may give a job of n_gpus GPUs of gpu_model; any partition takes a job
        without GPUs. None when no partition offers the GPUs (check_partitions says so)."""
        eligible = []
        for name, spec in self.limits.items():
            max_gpu = int(spec.get("max_gpu", 0))
            models = spec.get("available_gpu_models")
            if n_gpus and (max_gpu < n_gpus or (gpu_model and models and gpu_model not in models)):
                continue
            eligible.append(self.rooms[name])
        if not n_gpus:  # the plugin places a job without GPUs on a partition without GPUs where one exists
            cpu_only = [room for room in eligible if not int(self.limits[room.partition].get("max_gpu", 0))]
            eligible = cpu_only or eligible
        return max(eligible, key=lambda r: (r.max_runtime, r.max_mem_mb), default=None)


@dataclass(frozen=True)
class Need:
    """What one job asks for on its first attempt, with what to change if that does not fit."""

    name: str
    gpu_model: str | None
    n_gpus: int
    minutes: float
    mem_mb: int
    how: str  # how the runtime estimate is made up
    advice: str  # what to change when the runtime does not fit


def _job_gpus(config: dict, hardware: str, n_gpus: int) -> tuple[str | None, int]:
    """(gpu_model, GPUs) a job on `hardware` asks SLURM for (None, 0 on the CPU)."""
    spec = config["hardware"][hardware]
    return (spec["gpu_model"], n_gpus) if spec["kind"] == "gpu" else (None, 0)


def sweep_need(config: dict, job: SweepJob) -> Need:
    sweep = job.sweep
    model, gpus = _job_gpus(config, sweep.hardware, sweep.n_gpus)
    what = (
        "max_new_tokens"
        if job.max_new_tokens is None
        else "batch_sizes or repetitions (each max_new_tokens is a job of its own already)"
    )
    return Need(
        job.name,
        model,
        gpus,
        sizing.sweep_minutes(config, job),
        sizing.host_memory_mb(config, sweep.model, sweep.engine, sweep.n_gpus),
        sizing.describe_sweep(config, job),
        f"lower trial_timeout_s (a trial is estimated at most that), set runtime_estimate."
        f"{sweep.engine}.trial_s to what a trial takes on this hardware, or measure fewer {what}",
    )


def tune_need(config: dict, gpu_counts: dict[str, list[int]]) -> Need:
    """Live tuning's job: every engine on the tuned hardware, up to the largest GPU count it searches."""
    tune = config["optimise"]["tune"]
    model, gpus = _job_gpus(config, tune["hardware"], max(max(c) for c in gpu_counts.values()))
    factor = config["runtime_estimate"]["safety_factor"]
    how = "; ".join(
        f"{engine}: " + sizing.describe(*sizing.tune_estimate(config, gpu_counts, engine), factor)
        for engine in gpu_counts
    )
    return Need(
        "tune",
        model,
        gpus,
        sizing.tune_minutes(config, gpu_counts),
        sizing.tune_memory_mb(config, gpu_counts),
        how,
        "lower optimise.tune.budget or trial_timeout_s, or set runtime_estimate.<engine>.trial_s "
        "to what a trial takes on this hardware",
    )


def serve_need(config: dict, job) -> Need:
    """A serving job's (infpop.serve.plan.ServeJob): its server and every load point."""
    model, gpus = _job_gpus(config, job.hardware, job.n_gpus)
    return Need(
        job.name,
        model,
        gpus,
        sizing.serve_minutes(config, job),
        sizing.host_memory_mb(config, job.model, job.engine, job.n_gpus),
        f"a {sizing.load_seconds(config, job.hardware, job.engine, job.model):g} s server start + its load points",
        "lower serve.requests, serve.repetitions or the load points (the lowest request rates take longest), "
        "or set serve.load_point_estimate_s to what a load point takes on this hardware",
    )


def check_sizes(needs: Iterable[Need], partitions: Partitions, runtime: bool = True, memory: bool = True) -> list[str]:
    """Problems: jobs whose estimated runtime or host memory (first attempt) exceeds every partition
    that could take them, grouped by partition and remedy, with the largest job as the example."""
    over: dict[tuple, list[tuple[float, Need, float]]] = {}
    for need in needs:
        room = partitions.room(need.gpu_model, need.n_gpus)
        if room is None:
            continue  # no partition offers its GPUs: check_partitions reports that
        if runtime and math.ceil(need.minutes) > room.max_runtime:
            over.setdefault((room.partition, "runtime", need.advice), []).append((need.minutes, need, room.max_runtime))
        if memory and need.mem_mb > room.max_mem_mb:
            over.setdefault((room.partition, "memory", ""), []).append((need.mem_mb, need, room.max_mem_mb))
    problems = []
    for (partition, kind, advice), items in sorted(over.items()):
        value, need, cap = max(items, key=lambda item: item[0])  # the first of the largest, in plan order
        if kind == "runtime":
            problems.append(
                f"{len(items)} job(s) are estimated to run up to {math.ceil(value)} min (e.g. {need.name}: "
                f"{need.how}), longer than partition {partition} allows (max_runtime {int(cap)} min in "
                f"{partitions.source}); {advice}, or give max_runtime the partition's real limit"
            )
        else:
            problems.append(
                f"{len(items)} job(s) need up to {value} MB of host memory (e.g. {need.name}), more than "
                f"partition {partition} allows (max_mem_mb {int(cap)} in {partitions.source}); give max_mem_mb "
                f"the memory of the partition's nodes, or set the rule's mem_mb (set-resources) if "
                f"less will do"
            )
    return problems


@dataclass
class ClusterPlan:
    """The jobs of a run's sweeps, the partitions they go to (None: no partitions file, so nothing is
    capped or split), and every problem found before submission."""

    jobs: list[SweepJob]
    partitions: Partitions | None
    problems: list[str]

    def room(self, config: dict, hardware: str, n_gpus: int) -> Room | None:
        """The partition a job on `hardware` with n_gpus GPUs is capped by (None: no cap)."""
        return self.partitions.room(*_job_gpus(config, hardware, n_gpus)) if self.partitions else None


def plan_cluster(
    config: dict,
    sweeps: Iterable[Sweep],
    tune_gpu_counts: dict[str, list[int]] | None = None,
    partitions: Partitions | None = None,
    overrides: Mapping[str, object] | None = None,
    serve_jobs: Iterable = (),
) -> ClusterPlan:
    """The sweep jobs of this run and every cluster problem, before any job is submitted, against
    the cluster's `partitions` (None: a run on one machine, nothing is capped or split).
    `overrides`: the resources set on the sweep rule from outside (a profile's or the command
    line's set-resources). A runtime or mem_mb set so replaces the estimate: then the sweeps are
    neither split nor checked on it. `serve_jobs`: the serving plan's servers (infpop.serve.plan),
    checked as the sweeps are (their GPUs, runtime and memory); a server is never split."""
    sweeps, overrides = list(sweeps), overrides or {}
    problems = check_sweep_overrides(config, overrides)
    jobs = []
    for sweep in sweeps:
        room = partitions.room(*_job_gpus(config, sweep.hardware, sweep.n_gpus)) if partitions else None
        cap = room.max_runtime if room is not None and "runtime" not in overrides else math.inf
        jobs += sizing.split(config, sweep, cap)
    if partitions is not None:
        problems += check_partitions(config, sweeps, partitions.limits, partitions.source)
        problems += check_sizes(
            [sweep_need(config, job) for job in jobs],
            partitions,
            runtime="runtime" not in overrides,
            memory="mem_mb" not in overrides,
        )
        if tune_gpu_counts:
            problems += check_sizes([tune_need(config, tune_gpu_counts)], partitions)
        serve_jobs = list(serve_jobs)
        if serve_jobs:
            servers = [job.sweep for job in serve_jobs]
            problems += check_partitions(config, servers, partitions.limits, partitions.source)
            problems += check_sizes([serve_need(config, job) for job in serve_jobs], partitions)
    return ClusterPlan(jobs, partitions, problems)
