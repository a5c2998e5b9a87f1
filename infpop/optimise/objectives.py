"""Objectives, and the landscapes they make of a trials table.

- throughput: maximise throughput (tokens/s); the default and the paper's;
- latency_constrained: maximise throughput among the configurations whose p95 batch latency is
  at most a limit (a configuration over the limit is infeasible, status `latency_limit`);
- pareto: the configurations that no other beats on both throughput and p95 latency (live tuning
  searches on throughput, under the limit if one is set, and reports the front of what it measured).

A configuration is feasible when its trial finished (`ok`) with a throughput: one that ran out of
memory part-way is not a configuration anyone can deploy, whatever the RQ1-RQ4 statistics count.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from infpop.analysis.selection import AnalysisSettings, cells, select
from infpop.optimise.space import Outcome, Point, Space

OBJECTIVES = ("throughput", "latency_constrained", "pareto")


@dataclass(frozen=True)
class Objective:
    kind: str = "throughput"
    latency_p95_limit_s: float | None = None

    def __post_init__(self):
        if self.kind not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.kind!r} (known: {', '.join(OBJECTIVES)})")
        if self.kind == "latency_constrained" and not self.latency_p95_limit_s:
            raise ValueError("the latency_constrained objective needs latency_p95_limit_s")

    @property
    def needs_latency(self) -> bool:
        return self.latency_p95_limit_s is not None or self.kind != "throughput"

    def outcome(self, status: str, throughput, latency_p95_s, reused: bool = False) -> Outcome:
        throughput = None if throughput is None or pd.isna(throughput) else float(throughput)
        latency = None if latency_p95_s is None or pd.isna(latency_p95_s) else float(latency_p95_s)
        value = throughput if status == "ok" else None
        if value is not None and self.latency_p95_limit_s is not None:
            if latency is None:
                value, status = None, "no_latency"
            elif latency > self.latency_p95_limit_s:
                value, status = None, "latency_limit"
        return Outcome(value, status, throughput, latency, reused)


@dataclass
class Landscape:
    """One (hardware, engine, model): the outcome of each measured point; a point never measured
    is infeasible (`missing`)."""

    hardware: str
    engine: str
    model: str
    outcomes: dict[Point, Outcome]

    def evaluate(self, point: Point) -> Outcome:
        return self.outcomes.get(point) or Outcome(None, "missing")

    def best(self, space: Space) -> Point | None:
        """The point of the space with the highest value (None if none is feasible)."""
        feasible = [p for p in space.points if self.evaluate(p).value is not None]
        return max(feasible, key=lambda p: self.evaluate(p).value) if feasible else None

    def optimum(self, space: Space) -> float | None:
        best = self.best(space)
        return None if best is None else self.evaluate(best).value

    def values(self) -> dict[Point, float | None]:
        return {p: o.value for p, o in self.outcomes.items()}


def landscapes(trials: pd.DataFrame, settings: AnalysisSettings, objective: Objective) -> dict[tuple, Landscape]:
    """Every (hardware, engine, model) landscape of a trials table at settings.max_new_tokens,
    repetitions resolved as the analysis resolves them (replicates: their mean)."""
    if objective.needs_latency and trials["latency_p95_s"].isna().all():
        raise ValueError(
            f"objective '{objective.kind}' needs the p95 batch latency, which this trials table "
            f"does not have (the paper's published trials have throughput only)"
        )
    chosen = cells(select(trials, settings))
    result = {}
    for (hardware, engine, model), rows in chosen.groupby(["hardware", "engine", "model"], sort=True):
        outcomes = {
            (int(r.n_gpus), int(r.batch_size)): objective.outcome(r.status, r.throughput_tokens_per_s, r.latency_p95_s)
            for r in rows.itertuples()
        }
        result[(hardware, engine, model)] = Landscape(hardware, engine, model, outcomes)
    return result


def pareto_front(outcomes: list[tuple[Point, Outcome]]) -> list[tuple[Point, Outcome]]:
    """The feasible points that no other feasible point beats on both throughput (higher) and p95
    latency (lower), by throughput descending."""
    usable = [(p, o) for p, o in outcomes if o.value is not None and o.latency_p95_s is not None]
    front = [
        (p, o)
        for p, o in usable
        if not any(
            q.throughput >= o.throughput
            and q.latency_p95_s <= o.latency_p95_s
            and (q.throughput > o.throughput or q.latency_p95_s < o.latency_p95_s)
            for _, q in usable
        )
    ]
    unique = {p: o for p, o in front}
    return sorted(unique.items(), key=lambda item: -item[1].throughput)
