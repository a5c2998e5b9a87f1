"""What a dataset's trials cost: device-hours per hardware, engine and model
(results/<dataset>/cost.csv), with a figure and a summary.

A trial's cost is the tidy table's `device_seconds`: its wall time x the devices it held (our
records' `cost.device_seconds`; the paper's trials: from their published throughput, finished trials
only, infpop.data.paper.device_seconds). A model load costs its `load_seconds` x the devices of its
sweep (the GPUs, or one node on the CPU); each load is counted once (the trials a worker ran share
its load's figure). What neither holds, a sweep's warm-up and its harness, is in the sweep's manifest
(sweep.json), not here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = [
    "hardware",
    "engine",
    "model",
    "trials",
    "trials_costed",
    "trial_device_hours",
    "loads",
    "load_device_hours",
    "device_hours",
]


def _devices(frame: pd.DataFrame, cpu_hardware) -> pd.Series:
    return pd.Series(np.where(frame["hardware"].isin(list(cpu_hardware)), 1, frame["n_gpus"]), index=frame.index)


def cost_table(trials: pd.DataFrame, cpu_hardware=()) -> pd.DataFrame:
    """One row per (hardware, engine, model): its trials, those with a cost, their device-hours,
    its model loads and theirs, and the sum. `cpu_hardware`: the hardware labels whose sweeps hold
    one device whatever their n_gpus (tensor-parallel ranks on one CPU node)."""
    if trials.empty:
        return pd.DataFrame(columns=COLUMNS)
    frame = trials.copy()
    frame["device_seconds"] = pd.to_numeric(frame.get("device_seconds"), errors="coerce")
    frame["load_seconds"] = pd.to_numeric(frame.get("load_seconds"), errors="coerce")
    loads = frame.dropna(subset=["load_seconds"]).drop_duplicates(
        ["hardware", "engine", "model", "n_gpus", "load_seconds"]
    )
    loads = loads.assign(load_device_seconds=loads["load_seconds"] * _devices(loads, cpu_hardware))
    keys = ["hardware", "engine", "model"]
    table = frame.groupby(keys, sort=True).agg(
        trials=("status", "size"),
        trials_costed=("device_seconds", "count"),
        trial_device_seconds=("device_seconds", "sum"),
    )
    load_sums = loads.groupby(keys).agg(
        loads=("load_seconds", "size"), load_device_seconds=("load_device_seconds", "sum")
    )
    table = table.join(load_sums, how="left").reset_index()
    table["loads"] = table["loads"].fillna(0).astype(int)
    table["trial_device_hours"] = table["trial_device_seconds"] / 3600
    table["load_device_hours"] = table["load_device_seconds"].fillna(0) / 3600
    table["device_hours"] = table["trial_device_hours"] + table["load_device_hours"]
    return table[COLUMNS]


def cost_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The cost table summed per hardware and engine, and a last row `all`."""
    numbers = [c for c in COLUMNS if c not in ("hardware", "engine", "model")]
    per = table.groupby(["hardware", "engine"], sort=True)[numbers].sum().reset_index()
    total = pd.DataFrame([{"hardware": "all", "engine": "all", **table[numbers].sum().to_dict()}])
    return pd.concat([per, total], ignore_index=True)


def cost_markdown(table: pd.DataFrame, dataset: str, how: str) -> str:
    """The device-hours per hardware and engine, then per model; `how`: where the costs come from."""
    lines = [
        f"# What the {dataset} dataset's trials cost",
        "",
        how,
        "",
        "| hardware | engine | trials | with a cost | trial device-hours | loads | load device-hours | device-hours |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in cost_summary(table).itertuples(index=False):
        lines.append(
            f"| {r.hardware} | {r.engine} | {r.trials:,.0f} | {r.trials_costed:,.0f} | {r.trial_device_hours:,.1f} "
            f"| {r.loads:,.0f} | {r.load_device_hours:,.1f} | {r.device_hours:,.1f} |"
        )
    lines += [
        "",
        "| hardware | engine | model | trials | with a cost | device-hours |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in table.itertuples(index=False):
        counts = f"{r.trials:,.0f} | {r.trials_costed:,.0f}"
        lines.append(f"| {r.hardware} | {r.engine} | {r.model} | {counts} | {r.device_hours:,.1f} |")
    return "\n".join(lines) + "\n"


def cost_png(table: pd.DataFrame, path, dataset: str) -> Path:
    """Device-hours per hardware and engine, one bar each, stacked by model (the largest labelled)."""
    import matplotlib.pyplot as plt

    from infpop.figures import message_png, save

    title = f"Device-hours of the {dataset} dataset's trials"
    if table.empty or not table["device_hours"].sum():
        return message_png(path, title, "no trial with a cost (device_seconds)")
    groups = sorted({(r.hardware, r.engine) for r in table.itertuples()})
    models = sorted(table["model"].unique())
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 3), 5))
    bottom = np.zeros(len(groups))
    for i, model in enumerate(models):
        heights = np.array(
            [
                table.loc[
                    (table["hardware"] == h) & (table["engine"] == e) & (table["model"] == model), "device_hours"
                ].sum()
                for h, e in groups
            ]
        )
        ax.bar(range(len(groups)), heights, bottom=bottom, color=cmap(i % 20), label=model, edgecolor="white", lw=0.5)
        bottom += heights
    for x, total in enumerate(bottom):
        ax.text(x, total, f"{total:,.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(groups)), [f"{h}\n{e}" for h, e in groups])
    ax.set_ylabel("device-hours (trials and loads)")
    ax.set_title(f"{title}: {bottom.sum():,.1f} in all", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title="model", ncol=1 + len(models) // 25)
    return save(fig, path)
