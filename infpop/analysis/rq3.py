"""RQ3: throughput against batch size: the ANOVA across batch sizes, vLLM against HF (paired
Wilcoxon test, Cliff's delta), and the batch-size curves (the paper's Figs. 3-4).

How it reproduces the paper (checked against its published data, see tests/test_rq.py):
- RQ3 ANOVA: per hardware, engine and GPU count, one observation per model and batch size,
  batch sizes that only one model reached included.
- RQ3 Wilcoxon: vLLM vs HF paired on (model, batch size); Cliff's delta over the two paired
  vectors taken as independent samples.

What its tables assume and say of missing data: analysis/common.py.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from infpop.analysis import stats
from infpop.analysis.common import _check, _counted, _groups, _join_notes, _keys, _paired
from infpop.analysis.plots import (
    ALL_FAILED,
    NO_TRIALS,
    OFFLOADED_LABEL,
    OFFLOADED_STYLE,
    _ci_note,
    _failed_label,
    _model_styles,
    _offloaded,
    _subset,
    _yerr,
    engine_label,
)
from infpop.analysis.selection import cells
from infpop.figures import batch_size_axis, message_png, save


def rq3_anova(df: pd.DataFrame) -> pd.DataFrame:
    """One-way ANOVA of throughput across batch sizes, per (hardware, engine, n_gpus).

    Each group is a batch size; its observations are the counted trials, one per model. Batch
    sizes that only one model reached are kept (as in the paper).
    Columns: hardware, engine, n_gpus, F, p, n_groups, n, note.
    """
    df = _check(df)
    data = _counted(df)
    rows = []
    for hardware, engine, n_gpus in _keys(df, ["hardware", "engine", "n_gpus"]):
        frame = data[(data["hardware"] == hardware) & (data["engine"] == engine) & (data["n_gpus"] == n_gpus)]
        result = stats.anova(_groups(frame, "batch_size"))
        rows.append(
            {
                "hardware": hardware,
                "engine": engine,
                "n_gpus": int(n_gpus),
                "F": result.F,
                "p": result.p,
                "n_groups": result.n_groups,
                "n": result.n,
                "note": result.note,
            }
        )
    return pd.DataFrame(rows, columns=["hardware", "engine", "n_gpus", "F", "p", "n_groups", "n", "note"])


def rq3_wilcoxon_engines(df: pd.DataFrame) -> pd.DataFrame:
    """vLLM vs HF per (hardware, n_gpus): paired Wilcoxon and Cliff's delta (vLLM against HF).

    Pairs are the counted trials of both engines with the same (model, batch_size). Cliff's
    delta compares the two paired vectors as independent samples, which reproduces the paper's
    deltas (their mean over hardware and GPU counts is 0.8762).
    Columns: hardware, n_gpus, W, p, cliffs_delta, ci_low, ci_high, n_pairs, note.
    """
    df = _check(df)
    data = _counted(df)
    rows = []
    for hardware, n_gpus in _keys(df, ["hardware", "n_gpus"]):
        frame = data[(data["hardware"] == hardware) & (data["n_gpus"] == n_gpus)]
        pairs = _paired(frame, ["model", "batch_size"], "engine", "vllm", "hf")
        test = stats.wilcoxon_paired(pairs["vllm"], pairs["hf"])
        delta = stats.cliffs_delta(pairs["vllm"], pairs["hf"])
        rows.append(
            {
                "hardware": hardware,
                "n_gpus": int(n_gpus),
                "W": test.W,
                "p": test.p,
                "cliffs_delta": delta.delta,
                "ci_low": delta.ci_low,
                "ci_high": delta.ci_high,
                "n_pairs": test.n,
                "note": _join_notes(test.note, delta.note)
                if len(pairs)
                else stats.insufficient("no (model, batch size) with counted trials of both engines"),
            }
        )
    columns = ["hardware", "n_gpus", "W", "p", "cliffs_delta", "ci_low", "ci_high", "n_pairs", "note"]
    return pd.DataFrame(rows, columns=columns)


def batch_curves_png(df: pd.DataFrame, hardware: str, engine: str, n_gpus: int, path, exclude=()) -> Path:
    """RQ3 (the paper's Figs. 3-4): throughput against batch size (log2 axis) at one n_gpus, one
    line per model. Counted partial OOMs are circled in red, trials run with weights offloaded
    to the host boxed in magenta; failed trials (not counted) are x markers in the model's colour
    at zero."""
    part = _subset(cells(df), hardware, engine, exclude)
    part = part[part["n_gpus"] == n_gpus]
    title = f"Throughput vs batch size - {engine_label(engine)} - {n_gpus} x {str(hardware).upper()}"
    if not part["counted"].any():
        message = ALL_FAILED if not part.empty else NO_TRIALS
        return message_png(path, title, message)
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = _model_styles(sorted(part["model"].unique()))
    any_partial = any_failed = any_offloaded = False
    for model, rows in part.groupby("model", sort=True):
        rows = rows.sort_values("batch_size")
        ok = rows[rows["counted"]]
        style = styles[model]
        ax.errorbar(
            ok["batch_size"], ok["throughput_tokens_per_s"], yerr=_yerr(ok), label=model, ms=5, capsize=3, **style
        )
        partial = ok[ok["status"] == "oom"]
        if not partial.empty:
            any_partial = True
            ax.scatter(
                partial["batch_size"],
                partial["throughput_tokens_per_s"],
                s=110,
                facecolors="none",
                edgecolors="red",
                linewidths=1.5,
                zorder=5,
            )
        offloaded = ok[_offloaded(ok)]
        if not offloaded.empty:
            any_offloaded = True
            ax.scatter(offloaded["batch_size"], offloaded["throughput_tokens_per_s"], s=90, zorder=5, **OFFLOADED_STYLE)
        failed = rows[~rows["counted"]]
        if not failed.empty:
            any_failed = True
            ax.scatter(
                failed["batch_size"],
                np.zeros(len(failed)),
                marker="x",
                s=30,
                color=style["color"],
                zorder=4,
                clip_on=False,
            )
    batch_size_axis(ax, part["batch_size"].unique())
    ax.set_ylabel("throughput (tokens/s)")
    ax.set_ylim(bottom=0)
    ax.set_title(title + _ci_note(part), fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    if any_partial:
        handles.append(Line2D([], [], ls="", marker="o", ms=10, mfc="none", mec="red", mew=1.5))
        labels.append("out of memory part-way (counted)")
    if any_offloaded:
        handles.append(Line2D([], [], ls="", marker="s", ms=9, mfc="none", mec="magenta", mew=1.5))
        labels.append(OFFLOADED_LABEL)
    if any_failed:
        handles.append(Line2D([], [], ls="", marker="x", ms=7, color="grey"))
        labels.append(_failed_label(part[~part["counted"]]) + ", at 0")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="model")
    return save(fig, path)
