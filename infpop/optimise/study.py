"""How fast each optimiser finds the best configuration, on every landscape of a dataset.

Each optimiser searches each (hardware, engine, model) landscape once per seed, with a budget of
as many evaluations as the space has points; after k evaluations we note best found / optimum.
landscape_ei also runs with a prior, the same engine and model on the other GPU model (the RQ5
situation), where the dataset has one. Its figure: the optimisers' efficiency curves.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from infpop.optimise.objectives import Landscape
from infpop.optimise.optimisers import LandscapeEI, make
from infpop.optimise.parallel import map_in_processes
from infpop.optimise.search import search
from infpop.optimise.space import Space

logger = logging.getLogger(__name__)

PRIOR_SUFFIX = "+prior"


@dataclass(frozen=True)
class Task:
    optimiser: str
    with_prior: bool
    landscape: Landscape
    prior: Landscape | None
    space: Space
    seeds: tuple[int, ...]

    @property
    def label(self) -> str:
        return self.optimiser + (PRIOR_SUFFIX if self.with_prior else "")


def tasks(
    lands: dict[tuple, Landscape],
    spaces: dict[str, Space],
    optimisers: list[str],
    seeds: int,
    prior_hardware: dict[str, str],
) -> list[Task]:
    """One task per (optimiser, landscape with a feasible point); landscape_ei once more with the
    landscape of prior_hardware[hardware] as its prior, where that exists."""
    todo = []
    for (hardware, engine, model), land in sorted(lands.items()):
        space = spaces[engine]
        if land.optimum(space) is None:
            continue
        for name in optimisers:
            todo.append(Task(name, False, land, None, space, tuple(range(seeds))))
        prior = lands.get((prior_hardware.get(hardware), engine, model))
        if LandscapeEI.name in optimisers and prior is not None and prior.optimum(space) is not None:
            todo.append(Task(LandscapeEI.name, True, land, prior, space, tuple(range(seeds))))
    return todo


def run_seed(land: Landscape, seed: int) -> int:
    """The seed of one run: the study's seed combined with the landscape, so that the runs on
    different landscapes are independent (one seed everywhere would give random search the same
    order of points on every landscape)."""
    return zlib.crc32(f"{land.hardware}/{land.engine}/{land.model}".encode()) % 100_000 * 1_000 + seed


def run_task(task: Task) -> list[dict]:
    """best/optimum after each k = 1..len(space), one row per seed."""
    optimum = task.landscape.optimum(task.space)
    budget = len(task.space)
    prior = task.prior.values() if task.prior is not None else None
    rows = []
    for seed in task.seeds:
        optimiser = make(task.optimiser, task.space, run_seed(task.landscape, seed), prior)
        history = search(optimiser, task.landscape.evaluate, budget, stop_value=optimum)
        ratios = [(history.best_after(k) or 0.0) / optimum for k in range(1, budget + 1)]
        rows.append(
            {
                "optimiser": task.label,
                "hardware": task.landscape.hardware,
                "engine": task.landscape.engine,
                "model": task.landscape.model,
                "seed": seed,
                "ratios": ratios,
            }
        )
    return rows


def run(todo: list[Task], threads: int = 1) -> list[dict]:
    rows = []
    for number, result in enumerate(map_in_processes(run_task, todo, threads), 1):
        rows += result
        task = todo[number - 1]
        if number % 20 == 0 or number == len(todo):
            logger.info(
                f"[{number}/{len(todo)}] {task.label} on {task.landscape.hardware}/{task.landscape.engine}/"
                f"{task.landscape.model}"
            )
    return rows


def evaluations_to_reach(ratios: list[float], level: float) -> float:
    """Evaluations until best/optimum >= level (inf if never within the budget)."""
    return next((k for k, r in enumerate(ratios, 1) if r >= level - 1e-12), float("inf"))


def efficiency(rows: list[dict], levels=(0.95, 0.99), within=(8, 12)) -> pd.DataFrame:
    """Per optimiser: median evaluations to reach each level of the optimum, and the fraction of
    (landscape, seed) runs at the first level within each number of evaluations."""
    table = []
    for label in dict.fromkeys(r["optimiser"] for r in rows):
        runs = [r for r in rows if r["optimiser"] == label]
        entry = {
            "optimiser": label,
            "prior": label.endswith(PRIOR_SUFFIX),
            "n_landscapes": len({(r["hardware"], r["engine"], r["model"]) for r in runs}),
            "n_runs": len(runs),
        }
        needed = {level: [evaluations_to_reach(r["ratios"], level) for r in runs] for level in levels}
        for level in levels:
            entry[f"median_evaluations_to_{round(level * 100)}pct"] = float(np.median(needed[level]))
        for k in within:
            entry[f"fraction_{round(levels[0] * 100)}pct_within_{k}"] = float(
                np.mean([n <= k for n in needed[levels[0]]])
            )
        table.append(entry)
    return pd.DataFrame(table)


def curves(rows: list[dict], level: float = 0.95) -> pd.DataFrame:
    """Per optimiser and k: the median and mean of best/optimum, and the fraction of runs at `level`.
    Landscapes whose space is smaller (an engine measured at fewer GPU counts) keep their last
    value after their space is spent."""
    table = []
    longest = max(len(r["ratios"]) for r in rows)
    for label in dict.fromkeys(r["optimiser"] for r in rows):
        ratios = np.array(
            [r["ratios"] + r["ratios"][-1:] * (longest - len(r["ratios"])) for r in rows if r["optimiser"] == label]
        )
        for k in range(ratios.shape[1]):
            table.append(
                {
                    "optimiser": label,
                    "evaluations": k + 1,
                    "median_ratio": float(np.median(ratios[:, k])),
                    "mean_ratio": float(ratios[:, k].mean()),
                    f"fraction_at_{round(level * 100)}pct": float((ratios[:, k] >= level - 1e-12).mean()),
                }
            )
    return pd.DataFrame(table)


def efficiency_png(curves: pd.DataFrame, path, level_column: str = "fraction_at_95pct") -> Path:
    """Left: mean best/optimum after k evaluations; right: fraction of runs at 95% of the optimum."""
    # matplotlib only where a figure is drawn, as in rq5.py and tune.py (the workflow's parse imports those)
    import matplotlib.pyplot as plt

    from infpop.figures import save

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, rows in curves.groupby("optimiser", sort=False):
        line = "--" if label.endswith("+prior") else "-"
        left.plot(rows["evaluations"], rows["mean_ratio"], line, label=label)
        right.plot(rows["evaluations"], rows[level_column], line, label=label)
    for ax, ylabel in ((left, "mean best found / optimum"), (right, "fraction of runs at >= 95% of the optimum")):
        ax.set_xlabel("evaluations")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1.02)
        ax.axvline(8, color="grey", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle("Optimiser efficiency on every landscape of the dataset (dotted: 8 evaluations)", fontsize=10)
    return save(fig, path)
