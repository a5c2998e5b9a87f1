"""The budget study: each budget strategy alone and all of them combined, on the rehearsal of a
grid, over several seeds of the rehearsal's noise; the dataset each produces checked against the
paper's conclusions (infpop.conclusions), against the device-hours it took
(results/budget/study.csv, docs/budget.md).

A run measures in this order, every trial through one Ledger (infpop.budget.strategies), which
stops it once the budget is spent: first the max_new_tokens the analyses read (analysis
settings: the paper's 5), each (model, GPUs) cheapest first by the cost model's estimate, by the
batch-size strategy chosen (bisection on the out-of-memory edge, the coarse grid, both, or every
batch size); then the optimiser, each landscape (cheapest first) with an equal share of what is
left; then the other max_new_tokens while budget remains. The optimiser alone
leaves the first step to the optimiser. `full` is the paper's plan, every trial, no budget: the
reference the fractions are of, and whose findings the relative checks compare with.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from infpop import conclusions
from infpop.analysis.selection import AnalysisSettings
from infpop.budget.strategies import (
    STRATEGIES,
    BudgetSpent,
    Ledger,
    Rehearsal,
    Slice,
    Trial,
    adaptive_repetitions,
    coarse_grid,
    every_batch,
    oom_edge,
    optimise_landscape,
)
from infpop.config.schema import defaults
from infpop.measure import sequential
from infpop.measure.repetitions import Policy
from infpop.optimise.space import Space

logger = logging.getLogger(__name__)

FULL = "full"
COMBINED = "combined"
COLUMNS = ["strategy", "seed", "device_hours", "fraction_of_full", "checks_passed", "checks_total"]
#: The checks a dataset reproduces: passed, or failing as the paper's own data fails them
#: (explained: a number the paper misprinted).
REPRODUCED = ("passed", "explained")
#: The goal: this share of the checks at no more than this fraction of the full run's device-hours.
GOAL_SHARE, GOAL_FRACTION = 0.95, 0.10


@dataclass(frozen=True)
class Grid:
    """The grid a run chooses from: its sweeps (hardware, engine, model, n_gpus) x batch sizes x
    max_new_tokens."""

    sweeps: tuple[tuple[str, str, str, int], ...]
    batch_sizes: tuple[int, ...]
    max_new_tokens: tuple[int, ...]

    @property
    def landscapes(self) -> list[tuple[str, str, str]]:
        return sorted({sweep[:3] for sweep in self.sweeps})

    def gpus(self, landscape) -> tuple[int, ...]:
        return tuple(sorted(sweep[3] for sweep in self.sweeps if sweep[:3] == landscape))

    def slices(self, tokens) -> list[Slice]:
        return [(*sweep, t) for sweep in self.sweeps for t in tokens]

    @property
    def trials(self) -> int:
        return len(self.sweeps) * len(self.batch_sizes) * len(self.max_new_tokens)


@dataclass(frozen=True)
class Plan:
    """What a run does: its strategies, its budget, the analyses' max_new_tokens, and how the
    sequential and repetition strategies go when chosen."""

    strategies: frozenset[str]
    budget_seconds: float = math.inf
    analysis_tokens: int = 5
    stopping: sequential.Settings | None = None  # the sequential strategy's settings (budget.sequential)
    repetitions: Policy = Policy(2, 3, 3.0)
    margin: float = 1.0  # a trial starts if margin x its estimate fits in what is left


def run(source: Rehearsal, grid: Grid, plan: Plan, estimate: Callable[[Trial], float], seed: int = 0) -> Ledger:
    """One run of the grid under the plan (the module docstring's order); `estimate(trial)`: a
    trial's estimated device-seconds (the cost model's), which orders the work and shares the
    optimiser's budget."""
    chosen = plan.strategies
    unknown = chosen - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown budget strategies {sorted(unknown)} (known: {', '.join(STRATEGIES)})")
    if "sequential" in chosen and plan.stopping is None:
        raise ValueError("the sequential strategy needs its settings (budget.sequential)")
    stopping = plan.stopping if "sequential" in chosen else None
    ledger = Ledger(source, plan.budget_seconds, stopping, estimate, plan.margin)
    batches = list(grid.batch_sizes)

    def slice_cost(where: Slice) -> float:
        return sum(estimate((*where, b)) for b in batches)

    def measure_slices(tokens) -> None:
        for where in sorted(grid.slices(tokens), key=slice_cost):
            edge = oom_edge(ledger, where, batches) if "oom_bisection" in chosen else None
            if "coarse_grid" in chosen:
                coarse_grid(ledger, where, batches, edge)
            else:
                every_batch(ledger, where, batches[: len(batches) if edge is None else edge])

    analysed = [plan.analysis_tokens] if plan.analysis_tokens in grid.max_new_tokens else []
    others = [t for t in grid.max_new_tokens if t != plan.analysis_tokens]
    try:
        if chosen & {"oom_bisection", "coarse_grid"} or "optimiser" not in chosen:
            measure_slices(analysed)
        if "optimiser" in chosen and analysed:
            # each landscape, cheapest first, an equal share of what is left: what a cheap one
            # does not use passes on to the dearer ones
            cost = {
                landscape: sum(slice_cost((*landscape, g, plan.analysis_tokens)) for g in grid.gpus(landscape))
                for landscape in grid.landscapes
            }
            ordered = sorted(grid.landscapes, key=cost.get)
            for i, landscape in enumerate(ordered):
                share = ledger.left / (len(ordered) - i)
                space = Space(grid.gpus(landscape), grid.batch_sizes)
                optimise_landscape(ledger, landscape, plan.analysis_tokens, space, share, seed)
        measure_slices(others)
        if "adaptive_repetitions" in chosen:
            adaptive_repetitions(ledger, plan.repetitions)
    except BudgetSpent:
        pass
    return ledger


def dataset(ledger: Ledger) -> pd.DataFrame:
    """What a run measured as a tidy trials table (infpop.trials' identity and status columns):
    one row per configuration, its throughput the mean of its counted repetitions."""
    rows = [
        {
            "hardware": t[0],
            "engine": t[1],
            "model": t[2],
            "n_gpus": t[3],
            "max_new_tokens": t[4],
            "batch_size": t[5],
            "rep": 0,
            "status": m.status,
            "throughput_tokens_per_s": m.throughput,
            "repetitions": m.repetitions,
            "device_seconds": m.device_seconds,
            "latency_p95_s": np.nan,
        }
        for t, m in ledger.measured.items()
    ]
    return pd.DataFrame(rows)


@dataclass
class Checker:
    """The conclusion checks of a run's dataset as the conclusions rule makes them: the paper's
    statements, and the relative checks of each landscape's optimum (family rq1) against the full
    run's findings; a stated check the paper's own data fails for a stated reason is explained."""

    settings: AnalysisSettings
    statements: list
    reference: conclusions.Findings
    paper: conclusions.Findings

    def table(self, trials: pd.DataFrame) -> pd.DataFrame:
        found = conclusions.findings(trials, self.settings) if len(trials) else conclusions.Findings()
        return conclusions.check(
            found, self.statements, self.reference, "full", relative_families=["rq1"], paper=self.paper
        )

    @staticmethod
    def reproduced(table: pd.DataFrame) -> int:
        return int(table["status"].isin(REPRODUCED).sum())


def strategy_sets(strategies=STRATEGIES) -> dict[str, frozenset[str]]:
    """The runs of the study: the full plan, each strategy alone, and all combined."""
    return {FULL: frozenset(), **{s: frozenset([s]) for s in strategies}, COMBINED: frozenset(strategies)}


def study(
    make_source: Callable[[int], Rehearsal],
    grid: Grid,
    checker_for: Callable[[pd.DataFrame], Checker],
    estimate: Callable[[Trial], float],
    seeds: list[int],
    budget_of: Callable[[float], float],
    plan: Plan,
    strategies=STRATEGIES,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The study's table (COLUMNS, one row per run and seed) and each run's check table of the
    first seed. `make_source(seed)`: the rehearsal of a seed; `checker_for(full dataset)`: the
    checks, whose relative reference is the full run's findings; `budget_of(full run's
    device-seconds)`: the budget of every other run."""
    rows, tables = [], {}
    checker = None
    for seed in seeds:
        source = make_source(seed)
        full_seconds = None
        for name, chosen in strategy_sets(strategies).items():
            budget = math.inf if name == FULL else budget_of(full_seconds)
            ledger = run(
                source, grid, dataclasses.replace(plan, strategies=chosen, budget_seconds=budget), estimate, seed
            )
            trials = dataset(ledger)
            if name == FULL:
                full_seconds = ledger.spent
                if checker is None:
                    checker = checker_for(trials)
            # the full run's throughputs are the table's whatever the seed (a whole trial's batches
            # sum to its recorded time): its checks are those of the first seed
            table = tables[FULL] if name == FULL and FULL in tables else checker.table(trials)
            tables.setdefault(name, table)
            passed = Checker.reproduced(table)
            rows.append(
                {
                    "strategy": name,
                    "seed": seed,
                    "device_hours": ledger.spent / 3600,
                    "fraction_of_full": ledger.spent / full_seconds if full_seconds else np.nan,
                    "checks_passed": passed,
                    "checks_total": len(table),
                }
            )
            logger.info(
                f"seed {seed}, {name}: {len(ledger.measured)} trials, {ledger.spent / 3600:,.1f} device-hours "
                f"({rows[-1]['fraction_of_full']:.1%} of the full run), {passed}/{len(table)} checks reproduced"
            )
    return pd.DataFrame(rows, columns=COLUMNS), tables


def summary(study_table: pd.DataFrame) -> pd.DataFrame:
    """The median over seeds per strategy: device-hours, fraction of the full run, share of the
    checks reproduced, and whether that meets the goal."""
    frame = study_table.assign(share=study_table["checks_passed"] / study_table["checks_total"])
    order = {name: i for i, name in enumerate(strategy_sets())}
    table = (
        frame.groupby("strategy", sort=False)
        .agg(
            seeds=("seed", "nunique"),
            device_hours=("device_hours", "median"),
            fraction_of_full=("fraction_of_full", "median"),
            share_reproduced=("share", "median"),
            share_min=("share", "min"),
            share_max=("share", "max"),
        )
        .reset_index()
    )
    table["goal_met"] = (table["fraction_of_full"] <= GOAL_FRACTION + 1e-12) & (
        table["share_reproduced"] >= GOAL_SHARE - 1e-12
    )
    return table.sort_values("strategy", key=lambda s: s.map(order).fillna(len(order))).reset_index(drop=True)


def failing_families(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per run (first seed) and family, the checks not reproduced: where a strategy falls short."""
    rows = []
    for name, table in tables.items():
        missed = table[~table["status"].isin(REPRODUCED)]
        for (kind, family), group in missed.groupby(["kind", "family"]):
            rows.append(
                {
                    "strategy": name,
                    "kind": kind,
                    "family": family,
                    "not_reproduced": len(group),
                    "not_computable": int((group["status"] == "not computable").sum()),
                }
            )
    return pd.DataFrame(rows, columns=["strategy", "kind", "family", "not_reproduced", "not_computable"])


def to_markdown(summary_table: pd.DataFrame, misses: pd.DataFrame, full_hours: float) -> str:
    lines = [
        "# The budget study",
        "",
        f"The full run (the paper's plan on the rehearsal): {full_hours:,.0f} device-hours. Goal: at least "
        f"{GOAL_SHARE:.0%} of the checks at no more than {GOAL_FRACTION:.0%} of them (medians over seeds).",
        "",
        "| strategy | seeds | device-hours | fraction of full | checks reproduced (median) | min | max | goal |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in summary_table.itertuples():
        lines.append(
            f"| {row.strategy} | {row.seeds} | {row.device_hours:,.0f} | {row.fraction_of_full:.1%} | "
            f"{row.share_reproduced:.1%} | {row.share_min:.1%} | {row.share_max:.1%} | "
            f"{'reference' if row.strategy == FULL else 'met' if row.goal_met else 'not met'} |"
        )
    if len(misses):
        lines += [
            "",
            "## Checks not reproduced (first seed), by family",
            "",
            "| strategy | kind | family | not reproduced | of which not computable |",
            "| --- | --- | --- | ---: | ---: |",
        ]
        for row in misses.itertuples():
            lines.append(
                f"| {row.strategy} | {row.kind} | {row.family} | {row.not_reproduced} | {row.not_computable} |"
            )
    return "\n".join(lines) + "\n"


MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*"]


def study_png(study_table: pd.DataFrame, path) -> Path:
    """The share of checks reproduced against the fraction of the full run's device-hours: one
    point per run and seed, a marker per strategy, the goal's corner shaded."""
    import matplotlib.pyplot as plt

    from infpop.figures import save

    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.fill_between([0, GOAL_FRACTION], GOAL_SHARE, 1.005, color="tab:green", alpha=0.15, label="goal")
    ax.axvline(GOAL_FRACTION, color="tab:green", lw=1, ls="--")
    ax.axhline(GOAL_SHARE, color="tab:green", lw=1, ls="--")
    rng = np.random.default_rng(0)
    for i, (name, rows) in enumerate(study_table.groupby("strategy", sort=False)):
        share = rows["checks_passed"] / rows["checks_total"]
        jitter = rng.uniform(0.99, 1.01, len(rows))  # seeds that agree would hide each other (log axis)
        ax.scatter(
            rows["fraction_of_full"] * jitter, share, marker=MARKERS[i % len(MARKERS)], s=28, alpha=0.7, label=name
        )
    ax.set_xscale("log")
    ax.set_xlabel("fraction of the full run's device-hours (log)")
    ax.set_ylabel("share of the conclusion checks reproduced")
    lowest = float((study_table["checks_passed"] / study_table["checks_total"]).min())
    ax.set_ylim(max(0.0, min(lowest, GOAL_SHARE) - 0.03), 1.01)  # the seeds' spread, not the empty range below
    ax.set_title(f"Budget strategies on the rehearsal ({study_table['seed'].nunique()} seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)


# -- a config's study ---------------------------------------------------------------------------------


def rehearsal_section(config: dict) -> dict:
    """The config's rehearsal section, or (none: the paper's plan studied on its rehearsal) the
    schema's defaults of one, filled by the config's own validator."""
    if config.get("rehearsal"):
        return config["rehearsal"]
    from infpop.config.schema import validate

    filled = {**copy.deepcopy(config), "rehearsal": {}}
    validate(filled)
    return filled["rehearsal"]


@dataclass
class ConfigStudy:
    """A config's study, built from its grid, its budget section and its cost model
    (infpop.cluster.sizing's estimates of a trial and of a model load)."""

    config: dict
    table_path: Path | None = None  # the trials table the rehearsal answers from (a study's)

    def __post_init__(self):
        from infpop.cluster import sizing
        from infpop.measure.grid import plan

        config = self.config
        self.sizing = sizing
        sweeps, _ = plan(config)
        self.grid = Grid(
            tuple((s.hardware, s.engine, s.model, s.n_gpus) for s in sweeps),
            tuple(config["batch_sizes"]),
            tuple(config["max_new_tokens"]),
        )
        self.prompts = sizing.prompts(config)
        self.rehearsal = {**config, "rehearsal": rehearsal_section(config)}
        self.uncut = {**config, "trial_timeout_s": math.inf}

    def estimate(self, trial: Trial) -> float:
        """A trial's estimated device-seconds: the cost model's, as the plan sizes it, but not cut
        at trial_timeout_s (the rehearsal answers a trial as the table recorded it, and the
        paper's longest ran 3.2 hours: cut at the paper's one hour, the budget's guard would start
        them as if they cost a third)."""
        return self._device_seconds(self.uncut, trial)

    def load_estimate(self, sweep) -> float:
        """A model load's seconds on the rehearsal's virtual clock (its estimate from the size)."""
        from infpop.measure.engines.rehearsal import load_estimate

        _, engine, model, _ = sweep
        return load_estimate(self.rehearsal, engine, model)

    def full_estimate_seconds(self, sweeps=None) -> float:
        """The full grid's estimated device-seconds (of `sweeps` only, where given) as the plan
        prints them: every trial, each at most trial_timeout_s, and each sweep's load. (Uncut, the
        paper's grid comes to 33,421 device-hours against the 10,386 its trials took: the trials
        that ran out of memory at once are estimated as if they ran.)"""
        grid = self.grid if sweeps is None else Grid(tuple(sweeps), self.grid.batch_sizes, self.grid.max_new_tokens)
        loads = sum(self.sizing.load_seconds(self.config, *sweep[:3]) * sweep[3] for sweep in grid.sweeps)
        trials = sum(self.planned((*where, b)) for where in grid.slices(grid.max_new_tokens) for b in grid.batch_sizes)
        return loads + trials

    def planned(self, trial: Trial) -> float:
        """A trial's estimated device-seconds as the plan sizes it: at most trial_timeout_s."""
        return self._device_seconds(self.config, trial)

    def _device_seconds(self, config: dict, trial: Trial) -> float:
        hardware, engine, model, n_gpus, tokens, batch_size = trial
        return self.sizing.trial_seconds(config, hardware, engine, model, n_gpus, batch_size, tokens) * n_gpus

    def budget_seconds(self, full_seconds: float | None = None) -> float:
        """budget.device_hours, or budget.fraction (unset: the goal's) of the full grid's
        device-seconds: `full_seconds` where known (the study knows what its full run took), else
        the cost model's estimate (what a run knows before it starts)."""
        section = self.config["budget"]
        if section["device_hours"] is not None:
            return section["device_hours"] * 3600
        full = self.full_estimate_seconds() if full_seconds is None else full_seconds
        return (section["fraction"] or GOAL_FRACTION) * full

    @functools.cached_property
    def table(self):
        from infpop.measure.engines.rehearsal import read_table

        return read_table(self.table_path)

    def source(self, seed: int) -> Rehearsal:
        from infpop.measure.engines.rehearsal import duplicates

        return Rehearsal(
            self.table,
            seed,
            self.rehearsal["rehearsal"]["batch_noise_cv"],
            self.prompts,
            self.load_estimate,
            duplicates(self.rehearsal),
            self.config["trial_timeout_s"],
        )

    def plan(self) -> Plan:
        repetitions = self.config["repetitions"]
        policy = Policy.from_config(self.config) if isinstance(repetitions, dict) else Plan.repetitions
        return Plan(
            frozenset(),
            analysis_tokens=self.config["analysis"]["max_new_tokens"],
            # what budget.sequential does in a real run; where it is off, its defaults
            stopping=sequential.Settings.from_config(self.config)
            or sequential.Settings(**defaults("budget", "sequential")),
            repetitions=policy,
            margin=self.config["runtime_estimate"]["safety_factor"],
        )


#: The config's top-level keys the study reads: its grid, prompts, the cost model's inputs, the
#: rehearsal's noise and loads, the repetitions policy, the budget and the analysis choices.
STUDY_KEYS = (
    "hardware",
    "engines",
    "models",
    "n_gpus",
    "batch_sizes",
    "max_new_tokens",
    "benchmark",
    "trial_timeout_s",
    "load_timeout_s",
    "runtime_estimate",
    "rehearsal",
    "repetitions",
    "budget",
    "analysis",
)


def run_study(
    config: dict,
    table_path: Path,
    settings: AnalysisSettings,
    statements: list,
    seeds: list[int] | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], float]:
    """A config's study on the rehearsal of its grid from the trials table at `table_path`: the
    study table, the first seed's check tables, and the full run's device-hours. `seeds`: default
    budget.study.seeds seeds from the rehearsal's seed."""
    from infpop.analysis.selection import read_trials

    built = ConfigStudy(config, table_path)
    if seeds is None:
        first = built.rehearsal["rehearsal"]["seed"]
        seeds = list(range(first, first + config["budget"]["study"]["seeds"]))
    paper = conclusions.findings(read_trials(table_path), settings)

    def checker_for(full: pd.DataFrame) -> Checker:
        return Checker(settings, statements, conclusions.findings(full, settings), paper)

    logger.info(
        f"budget study: {len(built.grid.sweeps)} sweeps, {built.grid.trials:,} trials, {len(seeds)} seeds; the "
        f"cost model estimates the full grid at {built.full_estimate_seconds() / 3600:,.0f} device-hours"
    )
    table, tables = study(
        built.source, built.grid, checker_for, built.estimate, seeds, built.budget_seconds, built.plan()
    )
    full_hours = float(table.loc[table["strategy"] == FULL, "device_hours"].median())
    return table, tables, full_hours
