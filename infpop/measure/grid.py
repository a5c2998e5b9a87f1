"""The trial grid and its plan: which sweeps (hardware, engine, model, n_gpus) run, which are left
out and why (results/plan.csv).

A sweep loads its model once and runs every (max_new_tokens, batch_size, rep) trial of its group.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from infpop.data.models import known_model_config
from infpop.measure.engines import load_engine_class

#: The settings label of a grid without engine-argument axes.
DEFAULT_SETTINGS = "default"


@dataclass(frozen=True, order=True)
class Sweep:
    hardware: str
    engine: str
    model: str
    n_gpus: int
    #: the engine settings' label (engine_arg_axes' values), `default` without axes
    settings: str = DEFAULT_SETTINGS

    @property
    def variant(self) -> str:
        """The settings' part of the sweep's folder: '' for the default settings, else /<label>."""
        return "" if self.settings == DEFAULT_SETTINGS else f"/{self.settings}"

    @property
    def relpath(self) -> str:
        """Folder of this sweep's trial JSONs, relative to the trials root."""
        return f"{self.hardware}/{self.engine}/{self.model}/g{self.n_gpus}{self.variant}"


@dataclass(frozen=True, order=True)
class TrialKey:
    max_new_tokens: int
    batch_size: int
    rep: int

    @property
    def relpath(self) -> str:
        """File of this trial, relative to its sweep's folder."""
        return f"t{self.max_new_tokens}/b{self.batch_size}_r{self.rep}.json"


def configurations(config: dict) -> list[tuple[int, int]]:
    """The (max_new_tokens, batch_size) configurations of one sweep, in the order a round runs
    them: tokens, then batch size ascending (so one out-of-memory batch size can prune the larger
    ones, see sweep.py)."""
    return [(tokens, batch) for tokens in sorted(config["max_new_tokens"]) for batch in sorted(config["batch_sizes"])]


def trial_keys(config: dict) -> list[TrialKey]:
    """Every trial one sweep may run, in the order it runs them: repetitions interleaved (every
    configuration's r0, then every r1, ...), so drift over time (background load, heat) does not
    line up with batch size. An adaptive repetition policy may stop a configuration early; this
    is the most it runs."""
    from infpop.measure.repetitions import Policy

    return [
        TrialKey(tokens, batch, rep)
        for rep in range(Policy.from_config(config).maximum)
        for tokens, batch in configurations(config)
    ]


#: Engines whose n_gpus is a tensor-parallel size: each rank holds a share of every layer's
#: attention heads, so the head count must divide by it (hf's device_map splits whole layers).
TENSOR_PARALLEL_ENGINES = {"vllm"}
#: Where model configs keep their attention-head count (Llama, Mistral, Gemma...; GPT-2,
#: BLOOM, StarCoder...; others), at the top or in the text model's part.
HEAD_COUNT_KEYS = ("num_attention_heads", "n_head", "num_heads", "n_heads")


def attention_heads(model_config: dict | None) -> int | None:
    """The attention-head count of a model's config.json, or None if it does not say."""
    for section in (model_config or {}, (model_config or {}).get("text_config") or {}):
        for key in HEAD_COUNT_KEYS:
            if isinstance(section.get(key), int) and section[key] > 0:
                return section[key]
    return None


def cpu_cores(hardware: dict) -> int:
    """The cores a CPU hardware's node has: its `cores`, or (unset) those this process may use."""
    return hardware.get("cores") or len(os.sched_getaffinity(0))


def exclusion_reason(config: dict, hardware: str, engine: str, n_gpus: int, model: str | None = None) -> str | None:
    """Why a (hardware, engine, n_gpus) combination (of `model`, where given) cannot run, or None
    if it can. A model's own limits are checked where its config is on disk already (a local
    model, or a downloaded snapshot); otherwise the run itself finds them (status unsupported)."""
    spec = config["hardware"][hardware]
    if spec["kind"] == "gpu" and n_gpus > spec["gpus_per_node"]:
        return f"{n_gpus} GPUs requested but a '{hardware}' node has {spec['gpus_per_node']}"
    if spec["kind"] == "cpu" and n_gpus > cpu_cores(spec):
        return f"{n_gpus} tensor-parallel ranks requested but a '{hardware}' node has {cpu_cores(spec)} cores"
    if spec["kind"] == "cpu" and engine == "hf" and n_gpus > 1:
        return "hf runs on one device on the CPU (device_map='auto' has no CPUs to split over)"
    if model is not None and engine in TENSOR_PARALLEL_ENGINES and n_gpus > 1:
        heads = attention_heads(known_model_config(config, model))
        if heads is not None and heads % n_gpus:
            return f"{heads} attention heads are not divisible by {n_gpus} tensor-parallel ranks"
    return None


#: What a settings label may hold (it names a folder and a Snakemake wildcard's value).
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


@dataclass(frozen=True, order=True)
class EngineSettings:
    """One combination of the engine arguments given as grid axes: its label (the axes' values,
    `max_num_seqs=8,enable_chunked_prefill=false`; `default` without axes), the values of the
    axes, and every argument the engine gets (the fixed ones and the axes')."""

    label: str
    axes: dict = field(compare=False, hash=False)
    arguments: dict = field(compare=False, hash=False)


def _value_text(value) -> str:
    return json.dumps(value) if isinstance(value, (bool, type(None))) else str(value)


def settings_label(axes: dict) -> str:
    """The label of a combination of axis values, in the axes' order (names and values, no spaces)."""
    if not axes:
        return DEFAULT_SETTINGS
    return _LABEL_UNSAFE.sub("-", ",".join(f"{name}={_value_text(value)}" for name, value in axes.items()))


def engine_settings(
    engine: str, fixed: dict, axes: dict, model_config: dict | None = None
) -> tuple[list[EngineSettings], list[tuple[EngineSettings, str]]]:
    """Every combination of an engine's argument axes (the cartesian product, in the order the axes
    and their values are given) with its fixed arguments: (the combinations that can run, those the
    engine refuses as a whole with the reason, its Engine.refused_combination). One mechanism for the
    offline sweeps' engine arguments and the servers'."""
    refused_combination = load_engine_class(engine).refused_combination
    names = list(axes)
    runnable, refused = [], []
    for values in itertools.product(*(axes[name] for name in names)):
        combination = dict(zip(names, values, strict=True))
        settings = EngineSettings(settings_label(combination), combination, {**fixed, **combination})
        reason = refused_combination(settings.arguments, model_config)
        if reason is None:
            runnable.append(settings)
        else:
            refused.append((settings, reason))
    return runnable, refused


def sweep_settings(config: dict, engine: str, model: str) -> tuple[list[EngineSettings], list[tuple]]:
    """An engine's settings for a model's offline sweeps: engine_args with every combination of
    engine_arg_axes (one `default` without axes), and the combinations the engine refuses."""
    return engine_settings(
        engine,
        config["engine_args"].get(engine, {}),
        config["engine_arg_axes"].get(engine, {}),
        known_model_config(config, model),
    )


def sweep_engine_args(config: dict, sweep: Sweep) -> dict:
    """The engine arguments a sweep's engine loads with: its settings' (engine_args for the default)."""
    if sweep.settings == DEFAULT_SETTINGS:
        return config["engine_args"].get(sweep.engine, {})
    runnable, _ = sweep_settings(config, sweep.engine, sweep.model)
    for settings in runnable:
        if settings.label == sweep.settings:
            return settings.arguments
    raise ValueError(f"'{sweep.settings}' is not a setting of the plan for {sweep.engine} and {sweep.model}")


def plan(config: dict) -> tuple[list[Sweep], list[dict]]:
    """(sweeps to run, rows describing every combination left out with its reason): one sweep per
    (hardware, engine, model, n_gpus) and engine settings."""
    sweeps, excluded = [], []
    for hardware in config["hardware"]:
        for engine in config["engines"]:
            for model in config["models"]:
                for n_gpus in sorted(config["n_gpus"][engine]):
                    where = dict(hardware=hardware, engine=engine, model=model, n_gpus=n_gpus)
                    reason = exclusion_reason(config, hardware, engine, n_gpus, model)
                    if reason is not None:
                        excluded.append(dict(where, settings="*", reason=reason))
                        continue
                    runnable, refused = sweep_settings(config, engine, model)
                    sweeps += [Sweep(hardware, engine, model, n_gpus, s.label) for s in runnable]
                    excluded += [dict(where, settings=s.label, reason=why) for s, why in refused]
    return sweeps, excluded


def devices(config: dict, sweep: Sweep) -> int:
    """The devices a sweep holds: its GPUs, or on the CPU the node (one, whatever its ranks). A
    rehearsal of a GPU sweep counts the GPUs the sweep it stands in for would hold."""
    return sweep.n_gpus if config["hardware"][sweep.hardware]["kind"] == "gpu" else 1


PLAN_COLUMNS = ["hardware", "engine", "model", "n_gpus", "settings", "planned", "n_trials", "reason"]


def plan_rows(config: dict) -> list[dict]:
    """Every (hardware, engine, model, n_gpus) combination, run or left out, and why."""
    sweeps, excluded = plan(config)
    n_trials = len(trial_keys(config))
    rows = [dict(vars(s), planned="run", n_trials=n_trials, reason="") for s in sweeps]
    rows += [dict(row, planned="excluded", n_trials=0) for row in excluded]
    return sorted(rows, key=lambda r: (r["hardware"], r["engine"], r["model"], r["n_gpus"], r["settings"]))


def write_plan_rows(rows: list[dict], columns: list[str], path: Path) -> list[dict]:
    """A plan table (the sweeps' or the servers') as CSV; the rows, for the caller's summary."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_plan(config: dict, path: Path) -> list[dict]:
    return write_plan_rows(plan_rows(config), PLAN_COLUMNS, path)
