"""Live tuning: an optimiser drives real trials through the sweep machinery.

Each evaluation is one configuration of the sweep folder it belongs to, repeated as the config's
`repetitions` say (results/trials/<hardware>/<engine>/<model>/g<n>/t<tokens>/b<batch>_r<rep>.json,
r0, r1, ...): its value is the mean throughput of its repetitions, not one lucky run. An existing
record is reused (a sweep may have measured it, or an earlier tuning run), anything else is
measured by a supervised worker, which loads the model once per GPU count. The result is the search history
(every evaluation, its status, and why the search stopped), the recommended configuration and
the throughput / p95-latency Pareto front of what was measured, also drawn as a figure.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pandas as pd

from infpop.measure import records
from infpop.measure.grid import Sweep, exclusion_reason
from infpop.measure.repetitions import summarise
from infpop.measure.sweep import Supervisor
from infpop.optimise.objectives import Objective, pareto_front
from infpop.optimise.optimisers import make
from infpop.optimise.search import search
from infpop.optimise.space import Outcome, Point, Space

logger = logging.getLogger(__name__)


def tune_space(config: dict, engine: str) -> Space:
    """The GPU counts (those the plan allows on the tuned hardware) x batch sizes to search."""
    tune = config["optimise"]["tune"]
    counts = tune["n_gpus"] or config["n_gpus"][engine]
    usable = [g for g in counts if exclusion_reason(config, tune["hardware"], engine, g, tune["model"]) is None]
    return Space(tuple(usable), tuple(tune["batch_sizes"]))


def _outcome(repetitions: list[dict], objective: Objective, reused: bool = False) -> Outcome:
    """A configuration's repetitions as the objective sees them: finished only if every one did,
    its throughput their mean, its p95 over all their batch latencies."""
    failed = [r["status"] for r in repetitions if r["status"] != "ok"]
    latencies = [s for r in repetitions for s in r["timings"]["batch_latencies_s"]]
    throughput = summarise(
        r["throughput_tokens_per_s"] for r in repetitions if r["throughput_tokens_per_s"] is not None
    ).mean
    return objective.outcome(
        failed[0] if failed else "ok", throughput, records.percentile(latencies, 95) if latencies else None, reused
    )


def prior_landscape(
    trials_dir: Path, hardware: str, engine: str, model: str, tokens: int, objective: Objective
) -> dict[Point, float | None]:
    """The values of the configurations measured on `hardware` (each the mean of its repetitions)."""
    repetitions: dict[Point, list[dict]] = {}
    for path in sorted(Path(trials_dir).glob(f"{hardware}/{engine}/{model}/g*/t{tokens}/b*_r*.json")):
        record = records.read(path)
        repetitions.setdefault((record["n_gpus"], record["batch_size"]), []).append(record)
    return {point: _outcome(reps, objective).value for point, reps in repetitions.items()}


def tune(config: dict, engine: str, trials_dir: Path, benchmark_file: Path, worker_stderr=None) -> dict:
    settings = config["optimise"]["tune"]
    hardware, model, tokens = settings["hardware"], settings["model"], settings["max_new_tokens"]
    objective = Objective(settings["objective"], settings["latency_p95_limit_s"])
    space = tune_space(config, engine)
    # The workers warm up at the tuned max_new_tokens (a sweep warms up at its largest).
    measuring = copy.deepcopy(config)
    measuring["max_new_tokens"] = [tokens]
    supervisors: dict[int, Supervisor] = {}

    def evaluate(point: Point) -> Outcome:
        n_gpus, batch_size = point
        if n_gpus not in supervisors:
            sweep = Sweep(hardware, engine, model, n_gpus)
            supervisors[n_gpus] = Supervisor(
                measuring, sweep, Path(trials_dir) / sweep.relpath, benchmark_file, worker_stderr=worker_stderr
            )
        done = supervisors[n_gpus].measure_repeated(tokens, batch_size)
        return _outcome([record for record, _ in done], objective, all(reused for _, reused in done))

    logger.info(
        f"tuning {engine} on {hardware}, model {model}: {settings['optimiser']}, budget {settings['budget']}, "
        f"objective {objective.kind}, space n_gpus {list(space.n_gpus)} x batch sizes {list(space.batch_sizes)}"
    )
    prior = None
    if settings["prior_hardware"]:
        prior = prior_landscape(trials_dir, settings["prior_hardware"], engine, model, tokens, objective)
        logger.info(
            f"prior: {len(prior)} trial(s) of {model} on {settings['prior_hardware']}"
            + ("" if any(v is not None for v in prior.values()) else " with no feasible one: a cold start")
        )
    try:
        history = search(
            make(settings["optimiser"], space, settings["seed"], prior), evaluate, settings["budget"], announce=True
        )
    finally:
        for supervisor in supervisors.values():
            supervisor.close()
    best = history.best
    measured = [
        ((e.n_gpus, e.batch_size), Outcome(e.value, e.status, e.throughput, e.latency_p95_s))
        for e in history.evaluations
    ]
    front = pareto_front(measured)
    logger.info(
        f"{engine}: stopped ({history.stop_reason}) after {len(history.evaluations)} evaluation(s), "
        f"{sum(not e.reused for e in history.evaluations)} measured now; "
        + (
            f"recommended n_gpus={best.n_gpus} batch_size={best.batch_size} ({best.throughput:,.1f} tok/s)"
            if best
            else "no feasible configuration found"
        )
    )
    return {
        "hardware": hardware,
        "engine": engine,
        "model": model,
        "max_new_tokens": tokens,
        "space": {"n_gpus": list(space.n_gpus), "batch_sizes": list(space.batch_sizes)},
        "objective": {"kind": objective.kind, "latency_p95_limit_s": objective.latency_p95_limit_s},
        "prior_hardware": settings["prior_hardware"],
        "prior_points": len(prior or {}),
        **history.to_json(),
        "recommended": None
        if best is None
        else {
            "n_gpus": best.n_gpus,
            "batch_size": best.batch_size,
            "throughput_tokens_per_s": best.throughput,
            "latency_p95_s": best.latency_p95_s,
        },
        "pareto_front": [
            {
                "n_gpus": p[0],
                "batch_size": p[1],
                "throughput_tokens_per_s": o.throughput,
                "latency_p95_s": o.latency_p95_s,
            }
            for p, o in front
        ],
    }


def recommendations(results: list[dict]):
    """One row per tuned engine: the recommended configuration and how the search went."""
    rows = []
    for r in results:
        best = r["recommended"] or {}
        rows.append(
            {
                "hardware": r["hardware"],
                "engine": r["engine"],
                "model": r["model"],
                "max_new_tokens": r["max_new_tokens"],
                "objective": r["objective"]["kind"],
                "latency_p95_limit_s": r["objective"]["latency_p95_limit_s"],
                "optimiser": r["optimiser"],
                "budget": r["budget"],
                "evaluations": len(r["evaluations"]),
                "measured_now": sum(not e["reused"] for e in r["evaluations"]),
                "stop_reason": r["stop_reason"],
                "n_gpus": best.get("n_gpus"),
                "batch_size": best.get("batch_size"),
                "throughput_tokens_per_s": best.get("throughput_tokens_per_s"),
                "latency_p95_s": best.get("latency_p95_s"),
                "pareto_front": "; ".join(f"g{p['n_gpus']} b{p['batch_size']}" for p in r["pareto_front"]),
            }
        )
    return pd.DataFrame(rows)


def pareto_png(result: dict, path) -> Path:
    """Every evaluated configuration of a tuning run in (p95 batch latency, throughput), the
    Pareto front joined, the recommendation circled."""
    # matplotlib only where a figure is drawn: the workflow's parse imports this module
    import matplotlib.pyplot as plt

    from infpop.figures import save, say

    fig, ax = plt.subplots(figsize=(7, 5))
    points = [e for e in result["evaluations"] if e["throughput"] is not None and e["latency_p95_s"] is not None]
    title = f"Tuning {result['engine']} on {result['hardware']} ({result['model']}): throughput vs p95 batch latency"
    if not points:
        say(ax, "no evaluation with a throughput and a latency")
    else:
        feasible = [e for e in points if e["value"] is not None]
        other = [e for e in points if e["value"] is None]
        ax.scatter([e["latency_p95_s"] for e in feasible], [e["throughput"] for e in feasible], label="evaluated")
        if other:
            ax.scatter(
                [e["latency_p95_s"] for e in other],
                [e["throughput"] for e in other],
                marker="x",
                color="red",
                label="infeasible (limit or failure)",
            )
        for e in points:
            ax.annotate(
                f"g{e['n_gpus']} b{e['batch_size']}",
                (e["latency_p95_s"], e["throughput"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        front = sorted(result["pareto_front"], key=lambda f: f["latency_p95_s"])
        if front:
            ax.plot(
                [f["latency_p95_s"] for f in front],
                [f["throughput_tokens_per_s"] for f in front],
                "k--",
                lw=1,
                label="Pareto front",
            )
        best = result.get("recommended")
        if best:
            ax.scatter(
                [best["latency_p95_s"]],
                [best["throughput_tokens_per_s"]],
                s=200,
                facecolors="none",
                edgecolors="green",
                linewidths=2,
                label="recommended",
            )
        limit = result["objective"].get("latency_p95_limit_s")
        if limit:
            ax.axvline(limit, color="red", ls=":", label=f"p95 limit {limit:g} s")
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("p95 batch latency (s)")
    ax.set_ylabel("throughput (tokens/s)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return save(fig, path)
