"""The trial grid: which sweeps (hardware, engine, model, n_gpus) run, which are left out and why.

A sweep loads its model once and runs every (max_new_tokens, batch_size, rep) trial of its group.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    from infpop.repetitions import Policy

    return [TrialKey(tokens, batch, rep) for rep in range(Policy.from_config(config).maximum)
            for tokens, batch in configurations(config)]


def exclusion_reason(config: dict, hardware: str, engine: str, n_gpus: int) -> str | None:
    """Why a (hardware, engine, n_gpus) combination cannot run, or None if it can."""
    spec = config["hardware"][hardware]
    if spec["kind"] == "gpu" and n_gpus > spec["gpus_per_node"]:
        return f"{n_gpus} GPUs requested but a '{hardware}' node has {spec['gpus_per_node']}"
    if spec["kind"] == "cpu" and engine == "hf" and n_gpus > 1:
        return "hf runs on one device on the CPU (device_map='auto' has no CPUs to split over)"
    return None


def plan(config: dict) -> tuple[list[Sweep], list[dict]]:
    """(sweeps to run, rows describing every combination left out with its reason)."""
    sweeps, excluded = [], []
    for hardware in config["hardware"]:
        for engine in config["engines"]:
            for model in config["models"]:
                for n_gpus in sorted(config["n_gpus"][engine]):
                    reason = exclusion_reason(config, hardware, engine, n_gpus)
                    if reason is None:
                        sweeps.append(Sweep(hardware, engine, model, n_gpus))
                    else:
                        excluded.append(dict(hardware=hardware, engine=engine, model=model,
                                             n_gpus=n_gpus, reason=reason))
    return sweeps, excluded
