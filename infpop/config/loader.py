"""Load and validate an experiment config before any job runs.

The config comes from YAML files and the command line's `--config` overrides, merged as
Snakemake merges them (infpop.config.sources). One schema (workflow/schemas/config.schema.yaml)
validates it and fills defaults (infpop.config.schema); the checks a schema cannot express follow,
one function per section (infpop.config.checks). Every problem found is reported in one
ConfigError, each with its key and where it was set: the file and line of the entry itself, or
the `--config` argument; a problem with a value the user never set says it is a default and
where the value it conflicts with was set.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

from infpop.config import checks, schema
from infpop.config.checks import Problem
from infpop.config.sources import Origin, SourceError, Sources

#: Keys of earlier versions of the config and what they are called now.
RENAMED_KEYS = {"optimisation": "optimise"}


class ConfigError(ValueError):
    """A config that cannot run; the message names every offending key and where it was set."""


def load_config(*sources: Mapping | str | Path, overrides: Mapping | None = None) -> dict:
    """Merge `sources` (YAML files, or mappings) in order, then the command line's `overrides`
    (as Snakemake parsed `--config`), validate the result and return it with defaults filled in.
    The inputs are not modified. Raises ConfigError listing every problem."""
    merged = Sources()
    try:
        for source in sources:
            if isinstance(source, Mapping):
                merged.add_mapping(source, lambda path: Origin())
            else:
                merged.add_file(source)
        merged.add_overrides(overrides or {})
    except SourceError as exc:
        raise ConfigError(
            "invalid config:\n" + "\n".join(f"  {where}: {message}" for where, message in exc.problems)
        ) from None
    config = copy.deepcopy(merged.raw)
    problems = [
        Problem((old,), f"renamed to '{new}' (the stage's one name): rename the key")
        for old, new in RENAMED_KEYS.items()
        if old in config
    ]
    for old in RENAMED_KEYS:  # said before the schema's "unknown key", which would not say what to do
        config.pop(old, None)
    problems += [Problem(path, message) for path, message in schema.validate(config)]
    if "rehearsal" in merged.raw and "models" not in merged.raw:
        problems.insert(
            0,
            Problem(
                ("rehearsal",),
                "a rehearsal adds to the experiment it rehearses: give that experiment's config first, "
                "e.g. --configfile configs/paper.yaml configs/rehearsal.yaml",
            ),
        )
    broken = {problem.path[0] if problem.path else "" for problem in problems}
    # every required key missing (the schema's message names the first only)
    broken |= {key for key in schema.load_schema()["required"] if key not in config}
    _normalise(config, broken)
    for check, keys in checks.SECTIONS:
        if not keys & broken:
            problems += check(config)
    for check in checks.DEPENDENT:  # each reads the plan the one before it found sound
        if not problems:
            problems += check(config)
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(_line(problem, merged, config) for problem in problems))
    return config


def _normalise(config: dict, broken: set[str]) -> None:
    """Fill derived fields so later code reads one shape (of the sections the schema found sound)."""
    if not {"n_gpus", "engines"} & broken and isinstance(config["n_gpus"], list):
        config["n_gpus"] = {engine: list(config["n_gpus"]) for engine in config["engines"]}
    if "hardware" not in broken:
        for label, hardware in config["hardware"].items():
            if hardware["kind"] == "gpu":
                hardware.setdefault("gpu_model", label)
    if "engine_args" not in broken:
        # Engines on equal terms: vLLM 0.32 caches prompt prefixes by default, so every trial after
        # the first would skip most of its prefill. Off unless the config sets it; written into the
        # config, so the trial records say so and a change re-measures them.
        config["engine_args"].setdefault("vllm", {}).setdefault("enable_prefix_caching", False)
    if "serve" not in broken and config["serve"] is not None:
        # an infinite rate as one spelling ("inf"): YAML's .inf is a float no JSON record can hold
        config["serve"]["request_rates"] = [
            "inf" if rate == "inf" or rate == float("inf") else rate for rate in config["serve"]["request_rates"]
        ]
    if "cluster" not in broken and config["cluster"]["partitions"] is not None:
        config["cluster"]["partitions"] = str(checks.find_file(config["cluster"]["partitions"]))
    if "runtime_estimate" not in broken and config["runtime_estimate"]["calibration"] not in (None, "paper"):
        config["runtime_estimate"]["calibration"] = str(checks.find_file(config["runtime_estimate"]["calibration"]))


def _user_path(path: tuple, sources: Sources) -> tuple:
    """The key path as the user wrote it: n_gpus given as one list is n_gpus[i], not n_gpus.<engine>[i]."""
    if len(path) == 3 and path[0] == "n_gpus" and isinstance(sources.raw.get("n_gpus"), list):
        return ("n_gpus", path[2])
    return path


def _value(config: dict, path: tuple):
    node = config
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _line(problem: Problem, sources: Sources, config: dict) -> str:
    path = _user_path(problem.path, sources)
    origin = sources.origin(path)
    key = f"config key '{schema.key_text(path)}'" if path else "config"
    note = ""
    given = [(schema.key_text(r), sources.origin(r)) for r in problem.related if sources.given(r)]
    if path and not sources.given(path) and not problem.message.startswith("is required"):
        value = _value(config, problem.path)
        note = " (not set)" if value is None else f" (not set: its default, {value!r})"
        note += "".join(f"; {name} is set at {o.describe()}" for name, o in given if o is not None and o.describe())
    if (origin is None or not sources.given(path)) and given:  # placed where the user wrote the other value
        origin = next((o for _, o in given if o is not None), origin)
    where = origin.describe() if origin is not None else ""
    return f"  {where + ': ' if where else ''}{key}{note}: {problem.message}"
