"""Planning-time checks of what a run asks of the cluster: a sweep that no node can take is an
error before any job is submitted, not a SLURM job pending forever.

Two sources are checked against the config's plan:
- resources set on the sweeps from the command line or a profile (`set-resources: sweep:
  gpu_model: ...` or `gpu: ...`): the GPU model must be one the config's hardware defines, the
  GPU count within a node of that hardware;
- the partitions file of snakemake-executor-plugin-slurm (`slurm-partition-config` in the profile
  or on the command line, or SNAKEMAKE_SLURM_PARTITIONS): every planned GPU sweep needs a
  partition offering its GPU model and GPU count.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import yaml

PARTITIONS_ENV = "SNAKEMAKE_SLURM_PARTITIONS"


def _option(argv: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the last of `names` in argv (`--name value` or `--name=value`)."""
    value = None
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(name + "="):
                value = arg[len(name) + 1:]
    return value


def _profile_dir(profile: str) -> Path | None:
    """A profile given as a directory, or by name under Snakemake's profile folders."""
    candidates = [Path(profile)]
    if not os.path.isabs(profile) and os.sep not in profile:
        candidates += [Path("profiles") / profile, Path.home() / ".config" / "snakemake" / profile,
                       Path("/etc/xdg/snakemake") / profile]
    return next((c for c in candidates if (c / "config.yaml").is_file()), None)


def partition_file(argv: list[str], environ: Mapping[str, str] | None = None) -> Path | None:
    """The plugin's partitions file this run uses, as the plugin resolves it: the command line,
    then the profile, then the environment variable. None when there is none."""
    environ = os.environ if environ is None else environ
    given = _option(argv, ("--slurm-partition-config",))
    if given:
        return Path(given)
    for profile in filter(None, [_option(argv, ("--profile",)), _option(argv, ("--workflow-profile",)),
                                 environ.get("SNAKEMAKE_PROFILE")]):
        directory = _profile_dir(profile)
        if directory is None:
            continue
        settings = yaml.safe_load((directory / "config.yaml").read_text()) or {}
        value = settings.get("slurm-partition-config")
        if value:
            value = os.path.expanduser(os.path.expandvars(str(value)))
            return directory / value if (directory / value).exists() else Path(value)
    return Path(environ[PARTITIONS_ENV]) if environ.get(PARTITIONS_ENV) else None


def load_partitions(path: Path) -> dict[str, dict]:
    """{partition: limits} from the plugin's partitions file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"the SLURM partitions file {path} does not exist") from None
    if not isinstance(data, dict) or not isinstance(data.get("partitions"), dict):
        raise ValueError(f"the SLURM partitions file {path} needs a 'partitions' mapping")
    return {name: dict(limits or {}) for name, limits in data["partitions"].items()}


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
            problems.append(f"the sweeps are given gpu_model={model} (set-resources), a GPU model the "
                            f"config's hardware does not define (defined: {defined})")
    count = overrides.get("gpu")
    if count is not None and str(count).isdigit():
        limits = [h.get("gpus_per_node") for h in config["hardware"].values() if h["kind"] == "gpu"]
        if limits and all(limit is not None for limit in limits) and int(count) > max(limits):
            problems.append(f"the sweeps are given gpu={count} (set-resources), more GPUs than a node "
                            f"of the config's hardware has (gpus_per_node at most {max(limits)})")
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
        offering = {name: int(limits.get("max_gpu", 0)) for name, limits in partitions.items()
                    if int(limits.get("max_gpu", 0)) > 0
                    and (not limits.get("available_gpu_models") or model in limits["available_gpu_models"])}
        if any(limit >= count for limit in offering.values()):
            continue
        if offering:
            why = "at most " + ", ".join(f"{n} GPUs in partition {p}" for p, n in sorted(offering.items()))
        else:
            why = "no partition offers that GPU model"
        problems.append(f"{len(relpaths)} sweep(s) need {count} {model} GPU(s) on one node (e.g. {relpaths[0]}); "
                        f"the SLURM partitions in {source} offer {why}")
    return problems


def planning_problems(config: dict, sweeps: Iterable, argv: list[str], overrides: Mapping[str, object],
                      environ: Mapping[str, str] | None = None) -> list[str]:
    """Every cluster problem of this run, checked before any job is submitted."""
    problems = check_sweep_overrides(config, overrides)
    path = partition_file(argv, environ)
    if path is not None:
        try:
            problems += check_partitions(config, sweeps, load_partitions(path), str(path))
        except ValueError as exc:
            problems.append(str(exc))
    return problems
