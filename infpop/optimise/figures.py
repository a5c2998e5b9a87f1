"""Figures of the optimisation: the RQ5 violin (the paper's Fig. 5), the optimisers' efficiency
curves, and the throughput / p95-latency Pareto front of a tuning run."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from infpop.figures import save, say
from infpop.optimise.rq5 import PAPER_OUTLIER_PCT


def rq5_violin_png(results: list[dict], path) -> Path:
    """Per-model median improvements per (mode, engine, direction), one violin each; medians of
    300% and more are left out as in the paper's figure (their number is in the label)."""
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


def efficiency_png(curves: pd.DataFrame, path, level_column: str = "fraction_at_95pct") -> Path:
    """Left: mean best/optimum after k evaluations; right: fraction of runs at 95% of the optimum."""
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


def pareto_png(result: dict, path) -> Path:
    """Every evaluated configuration of a tuning run in (p95 batch latency, throughput), the
    Pareto front joined, the recommendation circled."""
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
