"""RQ5: re-tuning when the GPU model changes (the paper's section III-F), replayed on a trials table.

For each engine, model and direction (upgrade: old V100 -> new A100; downgrade: the reverse):
take the best configuration on the old GPU that runs on the new one, measure it there (the
baseline), then let an optimiser search the new GPU's landscape, `repeats` times with different
seeds; the improvement is (best found - baseline) / baseline in %.

Two modes:
- faithful: what the appendix's script (scripts/hpo_infpop.py) did, quirks included: its search
  space lists batch size 1024 where the data has 1028 (so 1028 is never reachable); a
  configuration's value is its first row in the file; a trial that ran out of memory part-way
  counts (it has a throughput); the summary leaves out negative medians. Every best-on-old and
  baseline throughput in the appendix's RQ5 results equals the published 5-token row, so the
  script ran on those rows: the faithful mode reads the analysis's max_new_tokens too.
- corrected: the space is the data's (1028 included), every value comes from the analysis's
  max_new_tokens with repetitions resolved as the analysis does, only trials that finished count,
  and no model or median is dropped.

The replay knows each landscape's optimum, so a search stops once it has found it: no later
evaluation could change its best, and the result is the same as running every evaluation.

Its figure: the RQ5 violin (the paper's Fig. 5).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from infpop.analysis.selection import AnalysisSettings
from infpop.optimise.objectives import Landscape, Objective, landscapes
from infpop.optimise.optimisers import make
from infpop.optimise.parallel import map_in_processes
from infpop.optimise.search import search
from infpop.optimise.space import Outcome, Point, Space

logger = logging.getLogger(__name__)

MODES = ("faithful", "corrected")
#: The appendix script's search space: batch size 1024 where the data has 1028.
FAITHFUL_SPACE = Space((1, 2, 4, 8), (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
#: The paper's figure and its means leave out improvements of 300% and more (plotAll in the script).
PAPER_OUTLIER_PCT = 300.0


@dataclass(frozen=True)
class Direction:
    name: str
    old: str  # hardware the configuration was tuned on
    new: str  # hardware it moves to


def applicable_directions(configured: list[dict], hardware) -> list[Direction]:
    """The configured hardware changes ({name, old, new}) whose two hardware labels are present."""
    return [
        Direction(d["name"], d["old"], d["new"]) for d in configured if d["old"] in hardware and d["new"] in hardware
    ]


@dataclass(frozen=True)
class ReplaySettings:
    optimiser: str = "hyperopt_tpe"
    evaluations: int = 100
    repeats: int = 10
    seed: int = 0


@dataclass
class Experiment:
    mode: str
    engine: str
    direction: Direction
    model: str
    space: Space
    ranking: list[tuple[Point, float]]  # the old GPU's configurations, best first
    new: Landscape | None
    positive_baseline_only: bool = False  # faithful: the script required the baseline to be > 0
    note: str = ""

    def label(self) -> str:
        return f"{self.mode}/{self.engine}/{self.direction.name}/{self.model}"


# -- building the experiments ---------------------------------------------------------------------


def _faithful_landscape(rows: pd.DataFrame, hardware: str, engine: str, model: str) -> Landscape:
    """A configuration's value is its first row in file order, feasible when it has a throughput."""
    outcomes = {}
    for r in rows.itertuples():
        point = (int(r.n_gpus), int(r.batch_size))
        if point not in outcomes:
            value = None if pd.isna(r.throughput_tokens_per_s) else float(r.throughput_tokens_per_s)
            outcomes[point] = Outcome(value, r.status, value)
    return Landscape(hardware, engine, model, outcomes)


def faithful_experiments(trials: pd.DataFrame, directions: list[Direction], max_new_tokens: int) -> list[Experiment]:
    trials = trials[trials["max_new_tokens"] == max_new_tokens]
    experiments = []
    for engine in sorted(trials["engine"].unique()):
        of_engine = trials[trials["engine"] == engine]
        for direction in directions:
            for model in sorted(of_engine["model"].unique()):
                rows = of_engine[of_engine["model"] == model]
                old = rows[rows["hardware"] == direction.old].sort_values(
                    "throughput_tokens_per_s", ascending=False, kind="stable", na_position="last"
                )
                new_rows = rows[rows["hardware"] == direction.new]
                ranking = [
                    ((int(r.n_gpus), int(r.batch_size)), float(r.throughput_tokens_per_s))
                    for r in old.itertuples()
                    if not pd.isna(r.throughput_tokens_per_s)
                ]
                new = _faithful_landscape(new_rows, direction.new, engine, model) if len(new_rows) else None
                experiments.append(
                    Experiment(
                        "faithful", engine, direction, model, FAITHFUL_SPACE, ranking, new, positive_baseline_only=True
                    )
                )
    return experiments


def data_space(trials: pd.DataFrame, engine: str) -> Space:
    """The space a dataset measured for an engine: its GPU counts x its batch sizes."""
    rows = trials[trials["engine"] == engine]
    return Space(tuple(rows["n_gpus"].unique()), tuple(rows["batch_size"].unique()))


def corrected_experiments(
    trials: pd.DataFrame, directions: list[Direction], settings: AnalysisSettings, objective: Objective
) -> list[Experiment]:
    lands = landscapes(trials, settings, objective)
    experiments = []
    for engine in sorted(trials["engine"].unique()):
        space = data_space(trials[trials["max_new_tokens"] == settings.max_new_tokens], engine)
        models = sorted(trials.loc[trials["engine"] == engine, "model"].unique())
        for direction in directions:
            for model in models:
                old, new = lands.get((direction.old, engine, model)), lands.get((direction.new, engine, model))
                ranking = (
                    []
                    if old is None
                    else sorted(
                        ((p, o.value) for p, o in old.outcomes.items() if o.value is not None),
                        key=lambda item: -item[1],
                    )
                )
                experiments.append(Experiment("corrected", engine, direction, model, space, ranking, new))
    return experiments


# -- running them ---------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict:
    if not values:
        return {k: None for k in ("median", "mean", "std", "min", "max")}
    return {
        "median": float(np.median(values)),
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
    }


def _point(point: Point, throughput: float | None) -> dict:
    return {"n_gpus": point[0], "batch_size": point[1], "throughput": throughput}


def run_experiment(experiment: Experiment, settings: ReplaySettings) -> dict:
    result = {
        "mode": experiment.mode,
        "engine": experiment.engine,
        "direction": experiment.direction.name,
        "old_hardware": experiment.direction.old,
        "new_hardware": experiment.direction.new,
        "model": experiment.model,
        "optimiser": settings.optimiser,
        "evaluations": settings.evaluations,
    }
    if not experiment.ranking:
        return {**result, "status": f"no feasible trial on the old GPU ({experiment.direction.old})"}
    if experiment.new is None:
        return {**result, "status": f"no trial on the new GPU ({experiment.direction.new})"}
    baseline = None
    for point, old_value in experiment.ranking:
        on_new = experiment.new.evaluate(point).value
        if on_new is not None and (on_new > 0 or not experiment.positive_baseline_only):
            baseline = (point, old_value, on_new)
            break
    if baseline is None:
        return {**result, "status": "no configuration that runs on the old GPU runs on the new one"}
    point, old_value, base_value = baseline
    best_point = experiment.new.best(experiment.space)
    if best_point is None:  # the baseline lies outside the space (faithful: 1028, its space 1024) and nothing in it ran
        return {**result, "status": "no point of the search space runs on the new GPU"}
    optimum = experiment.new.evaluate(best_point).value
    repeats = []
    for repeat in range(settings.repeats):
        seed = settings.seed + repeat
        history = search(
            make(settings.optimiser, experiment.space, seed),
            experiment.new.evaluate,
            settings.evaluations,
            stop_value=optimum,
        )
        best = history.best
        found = None if best is None else best.value
        repeats.append(
            {
                "repeat": repeat,
                "seed": seed,
                "n_gpus": None if best is None else best.n_gpus,
                "batch_size": None if best is None else best.batch_size,
                "throughput": found,
                "improvement_pct": None if found is None else (found - base_value) / base_value * 100,
                "evaluations_used": len(history.evaluations),
                "stop_reason": history.stop_reason,
            }
        )
    improvements = [r["improvement_pct"] for r in repeats if r["improvement_pct"] is not None]
    return {
        **result,
        "status": "ok",
        "best_on_old": _point(point, old_value),
        "baseline_on_new": _point(point, base_value),
        "optimum_on_new": _point(best_point, optimum),
        **_stats(improvements),
        "repeats": repeats,
    }


def _run_packed(args):
    return run_experiment(*args)


def run_all(
    experiments: list[Experiment], settings: ReplaySettings, threads: int = 1, progress: bool = True
) -> list[dict]:
    """Every experiment, on `threads` processes; results in the experiments' order (with
    `progress`, a line each in the log)."""
    results = []
    work = [(e, settings) for e in experiments]
    for number, result in enumerate(map_in_processes(_run_packed, work, threads), 1):
        results.append(result)
        if not progress:
            continue
        median = result.get("median")
        shown = f"median improvement {median:.2f}%" if median is not None else result["status"]
        logger.info(
            f"[{number}/{len(work)}] {result['mode']} {result['engine']} {result['direction']} "
            f"{result['model']}: {shown}"
        )
    return results


# -- the summary ----------------------------------------------------------------------------------


def summary(results: list[dict]) -> pd.DataFrame:
    """One row per (mode, engine, direction): the paper's summaries of the per-model medians,
    with and without the paper's exclusion of improvements of 300% and more."""
    rows = []
    keys = sorted(
        {(r["mode"], r["engine"], r["direction"]) for r in results},
        key=lambda k: (MODES.index(k[0]) if k[0] in MODES else 9, k[1], k[2] != "upgrade", k[2]),
    )
    for mode, engine, direction in keys:
        group = [r for r in results if (r["mode"], r["engine"], r["direction"]) == (mode, engine, direction)]
        medians = [r["median"] for r in group if r.get("median") is not None and not math.isnan(r["median"])]
        dropped_negative = 0
        if mode == "faithful":  # the script kept medians >= 0 only
            dropped_negative = sum(m < 0 for m in medians)
            medians = [m for m in medians if m >= 0]
        below = [m for m in medians if m < PAPER_OUTLIER_PCT]
        first = group[0]
        rows.append(
            {
                "mode": mode,
                "engine": engine,
                "direction": direction,
                "old_hardware": first["old_hardware"],
                "new_hardware": first["new_hardware"],
                "optimiser": first["optimiser"],
                "evaluations": first["evaluations"],
                "n_models": len(medians),
                "n_without_result": len(group) - len(medians) - dropped_negative,
                "n_negative_dropped": dropped_negative,
                "mean_of_medians": float(np.mean(medians)) if medians else None,
                "median_of_medians": float(np.median(medians)) if medians else None,
                "n_positive": sum(m > 0 for m in medians),
                "n_models_below_300": len(below),
                "mean_of_medians_below_300": float(np.mean(below)) if below else None,
                "median_of_medians_below_300": float(np.median(below)) if below else None,
                "median_evaluations_used": float(
                    np.median([r["evaluations_used"] for g in group for r in g.get("repeats", [])] or [np.nan])
                ),
            }
        )
    return pd.DataFrame(rows)


def rq5_violin_png(results: list[dict], path) -> Path:
    """Per-model median improvements per (mode, engine, direction), one violin each; medians of
    300% and more are left out as in the paper's figure (their number is in the label)."""
    # matplotlib only where a figure is drawn: the workflow's parse imports this module
    import matplotlib.pyplot as plt

    from infpop.figures import save, say

    groups = {}
    for r in results:
        if r.get("median") is not None:
            groups.setdefault((r["mode"], r["engine"], r["direction"]), []).append(r["median"])
    keys = sorted(groups, key=lambda k: (k[0] != "faithful", k[1], k[2] != "upgrade"))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(keys)), 5))
    if not keys:
        say(ax, "no RQ5 result")
        return save(fig, path)
    data, labels = [], []
    for key in keys:
        kept = [m for m in groups[key] if m < PAPER_OUTLIER_PCT] or [0.0]
        dropped = len(groups[key]) - sum(m < PAPER_OUTLIER_PCT for m in groups[key])
        data.append(kept)
        labels.append(
            f"{key[0]}\n{'HF' if key[1] == 'hf' else 'vLLM' if key[1] == 'vllm' else key[1]} {key[2]}"
            + (f"\n({dropped} >= {PAPER_OUTLIER_PCT:.0f}% left out)" if dropped else "")
        )
    parts = ax.violinplot(data, showmeans=True, showmedians=True)
    for body, key in zip(parts["bodies"], keys, strict=False):
        body.set_facecolor("skyblue" if key[2] == "upgrade" else "lightgreen")
        body.set_edgecolor("black")
    for name in ("cmeans", "cmedians", "cbars", "cmins", "cmaxes"):
        parts[name].set_edgecolor("black")
    parts["cmeans"].set_linestyle("--")
    ax.set_xticks(range(1, len(keys) + 1), labels, fontsize=8)
    ax.set_ylabel("throughput improvement (%)\nmedian of the repeats, per model")
    ax.set_title("RQ5: re-tuning after a GPU change (solid: median, dashed: mean)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)
