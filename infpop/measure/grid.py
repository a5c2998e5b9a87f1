"""The trial grid and its plan: which sweeps (hardware, engine, model, n_gpus) run, which are left
out and why (results/plan.csv).

A sweep loads its model once and runs every (max_new_tokens, batch_size, rep) trial of its group.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Sweep:
    hardware: str
    engine: str
    model: str
    n_gpus: int

    @property
    def relpath(self) -> str:
        """Folder of this sweep's trial JSONs, relative to the trials root."""
        return f"{self.hardware}/{self.engine}/{self.model}/g{self.n_gpus}"


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


def exclusion_reason(config: dict, hardware: str, engine: str, n_gpus: int, model: str | None = None) -> str | None:
    """Why a (hardware, engine, n_gpus) combination (of `model`, where given) cannot run, or None
    if it can. A model's own limits are checked where its config is on disk already (a local
    model, or a downloaded snapshot); otherwise the run itself finds them (status unsupported)."""
    spec = config["hardware"][hardware]
    if spec["kind"] == "gpu" and n_gpus > spec["gpus_per_node"]:
        return f"{n_gpus} GPUs requested but a '{hardware}' node has {spec['gpus_per_node']}"
    if spec["kind"] == "cpu" and engine == "hf" and n_gpus > 1:
        return "hf runs on one device on the CPU (device_map='auto' has no CPUs to split over)"
    if model is not None and engine in TENSOR_PARALLEL_ENGINES and n_gpus > 1:
        from infpop.data.hub import known_model_config  # hub imports config, which imports this module

        heads = attention_heads(known_model_config(config, model))
        if heads is not None and heads % n_gpus:
            return f"{heads} attention heads are not divisible by {n_gpus} tensor-parallel ranks"
    return None


def plan(config: dict) -> tuple[list[Sweep], list[dict]]:
    """(sweeps to run, rows describing every combination left out with its reason)."""
    sweeps, excluded = [], []
    for hardware in config["hardware"]:
        for engine in config["engines"]:
            for model in config["models"]:
                for n_gpus in sorted(config["n_gpus"][engine]):
                    reason = exclusion_reason(config, hardware, engine, n_gpus, model)
                    if reason is None:
                        sweeps.append(Sweep(hardware, engine, model, n_gpus))
                    else:
                        excluded.append(
                            dict(hardware=hardware, engine=engine, model=model, n_gpus=n_gpus, reason=reason)
                        )
    return sweeps, excluded


PLAN_COLUMNS = ["hardware", "engine", "model", "n_gpus", "planned", "n_trials", "reason"]


def plan_rows(config: dict) -> list[dict]:
    """Every (hardware, engine, model, n_gpus) combination, run or left out, and why."""
    sweeps, excluded = plan(config)
    n_trials = len(trial_keys(config))
    rows = [dict(vars(s), planned="run", n_trials=n_trials, reason="") for s in sweeps]
    rows += [dict(row, planned="excluded", n_trials=0) for row in excluded]
    return sorted(rows, key=lambda r: (r["hardware"], r["engine"], r["model"], r["n_gpus"]))


def write_plan(config: dict, path: Path) -> list[dict]:
    rows = plan_rows(config)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PLAN_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows
