"""Repetitions as data: each configuration's mean, spread and 95% confidence interval, and how
noisy each sweep is, so a reader knows which differences between configurations are real.

A configuration is one (hardware, engine, model, n_gpus, max_new_tokens, batch_size); its
repetitions are the trials that finished (`ok`). Two neighbouring configurations of a sweep (the
next batch size up) whose confidence intervals overlap cannot be told apart by these
measurements.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from infpop.figures import batch_size_axis, save, say
from infpop.measure.repetitions import summarise

SWEEP_KEYS = ["hardware", "engine", "model", "n_gpus", "max_new_tokens"]
CONFIGURATION_KEYS = [*SWEEP_KEYS, "batch_size"]
CONFIGURATION_COLUMNS = [
    *CONFIGURATION_KEYS,
    "repetitions",
    "n_ok",
    "mean_tokens_per_s",
    "std",
    "cv",
    "ci_low",
    "ci_high",
    "ci_half_width_pct",
    "stop_reason",
]
NOISE_COLUMNS = [
    *SWEEP_KEYS,
    "configurations",
    "median_cv",
    "max_cv",
    "median_ci_half_width_pct",
    "neighbour_pairs",
    "overlapping_pairs",
    "overlapping",
    "distinct",
]


def stop_reasons(manifests: list[dict]) -> dict[tuple, str]:
    """{configuration key: why its repetitions stopped}, from the sweeps' manifests."""
    reasons = {}
    for manifest in manifests:
        for c in manifest.get("configurations", []):
            key = (
                manifest["hardware"],
                manifest["engine"],
                manifest["model"],
                manifest["n_gpus"],
                c["max_new_tokens"],
                c["batch_size"],
            )
            reasons[key] = c["stop_reason"]
    return reasons


def configuration_table(trials: pd.DataFrame, reasons: dict[tuple, str] | None = None) -> pd.DataFrame:
    """One row per configuration: its repetitions, those that finished, and their mean, sample
    standard deviation, coefficient of variation and 95% t confidence interval."""
    rows = []
    for key, group in trials.groupby(CONFIGURATION_KEYS, sort=True):
        ok = group.loc[group["status"] == "ok", "throughput_tokens_per_s"].dropna()
        summary = summarise(ok)
        rows.append(
            {
                **dict(zip(CONFIGURATION_KEYS, key, strict=False)),
                "repetitions": len(group),
                "n_ok": summary.n,
                "mean_tokens_per_s": summary.mean,
                "std": summary.std,
                "cv": summary.cv,
                "ci_low": summary.ci_low,
                "ci_high": summary.ci_high,
                "ci_half_width_pct": summary.ci_half_width_pct,
                "stop_reason": (reasons or {}).get(tuple(int(k) if isinstance(k, np.integer) else k for k in key)),
            }
        )
    return pd.DataFrame(rows, columns=CONFIGURATION_COLUMNS)


def noise_table(configurations: pd.DataFrame) -> pd.DataFrame:
    """Per sweep and max_new_tokens: the median and largest CV, the median CI half-width, and the
    neighbouring batch sizes whose confidence intervals overlap (differences the noise hides)."""
    rows = []
    for key, group in configurations.groupby(SWEEP_KEYS, sort=True):
        group = group.sort_values("batch_size")
        with_ci = group.dropna(subset=["ci_low", "ci_high"])
        pairs = list(zip(with_ci.itertuples(), with_ci.iloc[1:].itertuples(), strict=False))
        overlapping = [
            f"b{a.batch_size}-b{b.batch_size}" for a, b in pairs if a.ci_low <= b.ci_high and b.ci_low <= a.ci_high
        ]
        rows.append(
            {
                **dict(zip(SWEEP_KEYS, key, strict=False)),
                "configurations": len(group),
                "median_cv": group["cv"].median(),
                "max_cv": group["cv"].max(),
                "median_ci_half_width_pct": group["ci_half_width_pct"].median(),
                "neighbour_pairs": len(pairs),
                "overlapping_pairs": len(overlapping),
                "overlapping": "; ".join(overlapping),
                "distinct": len(pairs) - len(overlapping),
            }
        )
    return pd.DataFrame(rows, columns=NOISE_COLUMNS)


def noise_png(configurations: pd.DataFrame, path) -> None:
    """The coefficient of variation of each configuration against batch size, a line per sweep."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    usable = configurations.dropna(subset=["cv"])
    for key, group in usable.groupby(SWEEP_KEYS, sort=True):
        hardware, engine, model, n_gpus, tokens = key
        group = group.sort_values("batch_size")
        ax.plot(
            group["batch_size"],
            group["cv"] * 100,
            marker="o",
            ms=4,
            label=f"{hardware} {engine} g{n_gpus} t{tokens} {model}",
        )
    if usable.empty:
        say(ax, "insufficient data: no configuration with two finished repetitions")
    else:
        batch_size_axis(ax, usable["batch_size"].unique())
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_ylabel("coefficient of variation (%)")
    ax.set_ylim(bottom=0)
    ax.set_title("Repetition noise: std / mean of each configuration's throughput", fontsize=10)
    save(fig, path)
