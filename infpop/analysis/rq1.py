"""RQ1: the throughput landscapes (n_gpus x batch size) of every hardware, engine and model: their
features (global maximum, peaks, plateau) as a table, static 3D PNGs (throughput, and tokens per
joule where measured) and interactive HTML.

Landscape features, computed on the grid of the n_gpus and batch-size values present in the
landscape (failed trials included, so adjacency is adjacency in the experimental grid):

* peak: a counted cell whose throughput is strictly greater than that of every *counted*
  4-neighbour (previous/next n_gpus at the same batch size, previous/next batch size at the same
  n_gpus). Failed or missing neighbours are ignored, so a cell next to an OOM wall can be a peak,
  and a counted cell with no counted neighbour is a (trivial) peak.
* global_max: the counted cell with the highest throughput (listed even when a tie with a
  neighbour stops it being a strict peak).
* plateau: the counted cells with throughput >= (1 - plateau_tolerance) * global maximum;
  default tolerance 0.10, i.e. within 10 % of the maximum.

How the figures draw trials (counted, failed, offloaded, repetitions): analysis/plots.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from infpop.analysis.plots import (
    ALL_FAILED,
    NO_TRIALS,
    OFFLOADED_LABEL,
    OFFLOADED_STYLE,
    _counted,
    _failed_label,
    _offloaded,
    engine_label,
)
from infpop.analysis.selection import INSUFFICIENT, cells
from infpop.figures import message_png, save

PLATEAU_TOLERANCE = 0.10  # plateau = counted cells within 10 % of the global maximum
LANDSCAPE_KEYS = ["hardware", "engine", "model"]
TABLE_COLUMNS = [
    "hardware",
    "engine",
    "model",
    "kind",
    "n_gpus",
    "batch_size",
    "throughput",
    "plateau_cells",
    "plateau_n_gpus",
    "plateau_batch_sizes",
    "note",
]
VIEW = (25.0, -135.0)  # (elevation, azimuth) of the static 3D landscapes
# (axis label, unit) of a landscape's height
THROUGHPUT_QUANTITY = ("throughput (tokens/s)", "t/s")
ENERGY_QUANTITY = ("energy efficiency (tokens/J)", "tokens/J")
_DIGITS = {"t/s": 1}  # decimals of the maximum in the legend (tokens per joule: 3)


def landscape_title(hardware: str, engine: str, model: str) -> str:
    return f"{model} - {engine_label(engine)} - {str(hardware).upper()}"


def landscape_stem(hardware: str, engine: str, model: str) -> str:
    """A file-name stem for one landscape, e.g. 'a100_hf_Bloom-1b7'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{hardware}_{engine}_{model}")


def _batch_label(batch_size) -> str:
    return str(int(batch_size))


class _Grid:
    """One landscape on its grid: rows = batch sizes, columns = n_gpus (values present)."""

    def __init__(self, df_one: pd.DataFrame):
        df = cells(df_one)  # one row per (n_gpus, batch_size): the mean of its repetitions
        df["counted"] = _counted(df)
        if df.duplicated(["n_gpus", "batch_size"]).any():
            raise ValueError(
                "a landscape must hold one configuration per (n_gpus, batch_size): pass one "
                "(hardware, engine, model) from select() (one max_new_tokens)"
            )
        self.df = df
        self.gpus = sorted(int(g) for g in df["n_gpus"].unique())
        self.batches = sorted(int(b) for b in df["batch_size"].unique())
        self.z = np.full((len(self.batches), len(self.gpus)), np.nan)
        gi = {g: i for i, g in enumerate(self.gpus)}
        bi = {b: i for i, b in enumerate(self.batches)}
        self.counted = df[df["counted"]]
        self.failed = df[~df["counted"]]
        for g, b, t in zip(
            self.counted["n_gpus"], self.counted["batch_size"], self.counted["throughput_tokens_per_s"], strict=False
        ):
            self.z[bi[int(b)], gi[int(g)]] = float(t)
        self.gx = np.arange(len(self.gpus), dtype=float)  # categorical positions of n_gpus
        self.by = np.log2(np.asarray(self.batches, dtype=float))  # log2 positions of batches
        self.gpos = {g: float(i) for i, g in enumerate(self.gpus)}
        self.bpos = {b: float(np.log2(b)) for b in self.batches}

    @property
    def empty(self) -> bool:
        return self.counted.empty


def landscape_features(df_one: pd.DataFrame, plateau_tolerance: float = PLATEAU_TOLERANCE) -> list[dict]:
    """Peaks, global maximum and plateau of one landscape (see the module docstring).

    Returns a list of dicts with the keys kind, n_gpus, batch_size, throughput, plateau_cells,
    plateau_n_gpus, plateau_batch_sizes, note. First the global maximum (kind 'global_max'),
    then the other strict peaks by descending throughput (kind 'peak'), then one 'plateau' dict
    whose plateau_n_gpus / plateau_batch_sizes are (min, max) tuples and which also carries
    `cells` (the (n_gpus, batch_size) pairs) and `threshold`. With no counted trial the list is
    one dict with kind None and note 'insufficient data'.
    """
    if not 0 <= plateau_tolerance < 1:
        raise ValueError(f"plateau_tolerance must be in [0, 1), got {plateau_tolerance}")
    blank = dict.fromkeys(
        ("kind", "n_gpus", "batch_size", "throughput", "plateau_cells", "plateau_n_gpus", "plateau_batch_sizes", "note")
    )
    grid = _Grid(df_one)
    if grid.empty:
        return [{**blank, "note": INSUFFICIENT}]
    z = grid.z
    nb, ng = z.shape
    peaks = []
    for i in range(nb):
        for j in range(ng):
            value = z[i, j]
            if np.isnan(value):
                continue
            neighbours = [
                z[a, b]
                for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
                if 0 <= a < nb and 0 <= b < ng and not np.isnan(z[a, b])
            ]
            if all(value > other for other in neighbours):
                peaks.append((value, grid.gpus[j], grid.batches[i]))
    flat = np.where(np.isnan(z), -np.inf, z)
    i_max, j_max = np.unravel_index(int(np.argmax(flat)), z.shape)  # first in (batch, gpu) order
    top = (float(z[i_max, j_max]), grid.gpus[j_max], grid.batches[i_max])

    rows = [{**blank, "kind": "global_max", "n_gpus": top[1], "batch_size": top[2], "throughput": top[0]}]
    for value, g, b in sorted(peaks, key=lambda p: (-p[0], p[1], p[2])):
        if (g, b) != (top[1], top[2]):
            rows.append({**blank, "kind": "peak", "n_gpus": g, "batch_size": b, "throughput": float(value)})

    threshold = (1.0 - plateau_tolerance) * top[0]
    cells = [
        (grid.gpus[j], grid.batches[i])
        for j in range(ng)
        for i in range(nb)
        if not np.isnan(z[i, j]) and z[i, j] >= threshold
    ]
    gs = [c[0] for c in cells]
    bs = [c[1] for c in cells]
    rows.append(
        {
            **blank,
            "kind": "plateau",
            "plateau_cells": len(cells),
            "plateau_n_gpus": (min(gs), max(gs)),
            "plateau_batch_sizes": (min(bs), max(bs)),
            "cells": cells,
            "threshold": threshold,
        }
    )
    return rows


def _span(pair) -> str | None:
    if pair is None:
        return None
    lo, hi = pair
    return str(lo) if lo == hi else f"{lo}-{hi}"


def landscape_table(df: pd.DataFrame, plateau_tolerance: float = PLATEAU_TOLERANCE) -> pd.DataFrame:
    """Features of every (hardware, engine, model) landscape: one row per global maximum, peak
    and plateau (plateau ranges written 'lo-hi'); one row noted 'insufficient data' for a
    landscape with no counted trial."""
    rows = []
    for (hardware, engine, model), one in df.groupby(LANDSCAPE_KEYS, sort=True):
        for feature in landscape_features(one, plateau_tolerance):
            rows.append(
                {
                    "hardware": hardware,
                    "engine": engine,
                    "model": model,
                    "kind": feature["kind"],
                    "n_gpus": feature["n_gpus"],
                    "batch_size": feature["batch_size"],
                    "throughput": feature["throughput"],
                    "plateau_cells": feature["plateau_cells"],
                    "plateau_n_gpus": _span(feature["plateau_n_gpus"]),
                    "plateau_batch_sizes": _span(feature["plateau_batch_sizes"]),
                    "note": feature["note"],
                }
            )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    for column in ("n_gpus", "batch_size", "plateau_cells"):
        table[column] = table[column].astype("Int64")
    table["throughput"] = table["throughput"].astype(float)
    return table


def landscape_png(
    df_one: pd.DataFrame,
    path,
    title: str,
    view: tuple[float, float] = VIEW,
    quantity: tuple[str, str] = THROUGHPUT_QUANTITY,
) -> Path:
    """A static 3D surface of throughput over n_gpus (categorical) x batch size (log2).

    Failed trials are red x markers at zero height, counted partial OOMs orange triangles,
    trials run with weights offloaded to the host hollow magenta squares, the global maximum a
    star; never-run combinations stay blank. With no counted trial the PNG only
    says "insufficient data: every trial failed"."""
    grid = _Grid(df_one)
    if grid.df.empty:
        return message_png(path, title, NO_TRIALS)
    if grid.empty:
        return message_png(path, title, f"{ALL_FAILED}\n({_failed_label(grid.failed)})")

    fig = plt.figure(figsize=(8, 6))
    ax = fig.add_subplot(projection="3d")
    X, Y = np.meshgrid(grid.gx, grid.by)
    vmax = float(np.nanmax(grid.z))
    handles = []
    if len(grid.gx) > 1 and len(grid.by) > 1:
        surface = ax.plot_surface(
            X, Y, grid.z, cmap="viridis", vmin=0, vmax=vmax, edgecolor="k", linewidth=0.3, alpha=0.9, antialiased=True
        )
        fig.colorbar(surface, ax=ax, shrink=0.55, pad=0.1, label=quantity[0])
    counted = grid.counted
    full = counted[counted["status"] != "oom"]
    partial = counted[counted["status"] == "oom"]
    xs = [grid.gpos[int(g)] for g in full["n_gpus"]]
    ys = [grid.bpos[int(b)] for b in full["batch_size"]]
    ax.scatter(xs, ys, full["throughput_tokens_per_s"], color="k", s=8, depthshade=False)
    handles.append(Line2D([], [], color="k", marker="o", ls="", ms=4, label="measured (ok)"))
    intervals = counted[counted["ci_low"].notna()]
    for g, b, low, high in zip(
        intervals["n_gpus"], intervals["batch_size"], intervals["ci_low"], intervals["ci_high"], strict=False
    ):
        x, y = grid.gpos[int(g)], grid.bpos[int(b)]
        ax.plot([x, x], [y, y], [max(low, 0), high], color="crimson", lw=1.5, zorder=9)
    if not intervals.empty:
        reps = sorted(set(intervals["n_counted"].astype(int)))
        handles.append(
            Line2D(
                [], [], color="crimson", lw=1.5, label=f"95% CI of the mean ({'/'.join(map(str, reps))} repetitions)"
            )
        )
    if not partial.empty:
        ax.scatter(
            [grid.gpos[int(g)] for g in partial["n_gpus"]],
            [grid.bpos[int(b)] for b in partial["batch_size"]],
            partial["throughput_tokens_per_s"],
            color="darkorange",
            marker="^",
            s=40,
            edgecolor="k",
            depthshade=False,
        )
        handles.append(
            Line2D(
                [], [], color="darkorange", marker="^", ls="", ms=7, mec="k", label="out of memory part-way (counted)"
            )
        )
    offloaded = counted[_offloaded(counted)]
    if not offloaded.empty:  # a very slow configuration measured, not the GPUs': say so
        ax.scatter(
            [grid.gpos[int(g)] for g in offloaded["n_gpus"]],
            [grid.bpos[int(b)] for b in offloaded["batch_size"]],
            offloaded["throughput_tokens_per_s"],
            s=90,
            depthshade=False,
            **OFFLOADED_STYLE,
        )
        handles.append(
            Line2D([], [], ls="", marker="s", ms=9, mfc="none", mec="magenta", mew=1.5, label=OFFLOADED_LABEL)
        )
    if not grid.failed.empty:
        ax.scatter(
            [grid.gpos[int(g)] for g in grid.failed["n_gpus"]],
            [grid.bpos[int(b)] for b in grid.failed["batch_size"]],
            np.zeros(len(grid.failed)),
            color="red",
            marker="x",
            s=30,
            depthshade=False,
        )
        handles.append(
            Line2D([], [], color="red", marker="x", ls="", ms=7, label=_failed_label(grid.failed) + ", at 0")
        )
    top = landscape_features(df_one)[0]
    ax.scatter(
        [grid.gpos[top["n_gpus"]]],
        [grid.bpos[top["batch_size"]]],
        [top["throughput"]],
        color="gold",
        marker="*",
        s=180,
        edgecolor="k",
        depthshade=False,
        zorder=10,
    )
    handles.append(
        Line2D(
            [],
            [],
            color="gold",
            marker="*",
            ls="",
            ms=12,
            mec="k",
            label=f"max {top['throughput']:.{_DIGITS.get(quantity[1], 3)}f} {quantity[1]} "
            f"({top['n_gpus']} GPU, "
            f"batch {top['batch_size']})",
        )
    )

    ax.set_xticks(grid.gx, [str(g) for g in grid.gpus])
    ax.set_yticks(grid.by, [_batch_label(b) for b in grid.batches], fontsize=8)
    ax.set_xlabel("number of GPUs")
    ax.set_ylabel("batch size", labelpad=8)
    ax.set_zlabel(quantity[0])
    top_of_intervals = float(np.nanmax(grid.df["ci_high"])) if grid.df["ci_high"].notna().any() else vmax
    ax.set_zlim(0, max(vmax, top_of_intervals) * 1.05)
    ax.view_init(elev=view[0], azim=view[1])
    ax.set_title(title)
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.12)
    return save(fig, path)


def has_energy(df: pd.DataFrame) -> bool:
    """Whether any trial has an energy reading (NVML, on NVIDIA GPUs; never on the CPU)."""
    return "tokens_per_joule" in df.columns and pd.to_numeric(df["tokens_per_joule"], errors="coerce").notna().any()


def energy_landscape_png(df_one: pd.DataFrame, path, title: str) -> Path:
    """Tokens per joule over (n_gpus, batch size), drawn as the throughput landscape is. A trial
    counted for throughput but without an energy reading is a marker at zero ("no energy
    reading"), never a height."""
    df = df_one.copy()
    per_joule = pd.to_numeric(df["tokens_per_joule"], errors="coerce")
    counted = _counted(df)
    df["status"] = df["status"].where(per_joule.notna() | ~counted, "no energy reading")
    df["counted"] = counted & per_joule.notna()
    df["throughput_tokens_per_s"] = per_joule
    return landscape_png(df, path, f"{title} - tokens per joule", quantity=ENERGY_QUANTITY)


def landscape_html(df_one: pd.DataFrame, path, title: str) -> Path:
    """An interactive plotly 3D surface; failed trials are red x markers at zero height; hover
    shows n_gpus, batch size, throughput and status. The HTML references plotly.min.js in its own
    folder (written there once), so many landscapes share one copy and open offline."""
    import plotly.graph_objects as go

    grid = _Grid(df_one)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = go.Figure()
    hover = (
        "GPUs: %{customdata[0]}<br>batch size: %{customdata[1]}<br>"
        "throughput: %{customdata[2]:.2f} t/s<br>status: %{customdata[3]}<extra></extra>"
    )
    if not grid.empty and len(grid.gx) > 1 and len(grid.by) > 1:
        status = {
            (int(g), int(b)): s
            for g, b, s in zip(grid.df["n_gpus"], grid.df["batch_size"], grid.df["status"], strict=False)
        }
        custom = [
            [[g, b, grid.z[i, j], status.get((g, b), "not run")] for j, g in enumerate(grid.gpus)]
            for i, b in enumerate(grid.batches)
        ]
        fig.add_trace(
            go.Surface(
                x=grid.gx,
                y=grid.by,
                z=grid.z,
                customdata=custom,
                hovertemplate=hover,
                colorscale="Viridis",
                cmin=0,
                colorbar=dict(title="throughput (t/s)"),
                name="throughput",
            )
        )
    for label, part, style in (
        ("measured (counted)", grid.counted, dict(size=3, color="black")),
        (
            _failed_label(grid.failed) if not grid.failed.empty else "failed",
            grid.failed,
            dict(size=4, color="red", symbol="x"),
        ),
    ):
        if part.empty:
            continue
        z = part["throughput_tokens_per_s"].where(part["counted"], 0.0).fillna(0.0)
        error = None
        if part["counted"].any() and part["ci_high"].notna().any():  # the repetitions' 95% CI
            error = dict(
                type="data",
                array=(part["ci_high"] - z).fillna(0).tolist(),
                arrayminus=(z - part["ci_low"]).fillna(0).tolist(),
                color="crimson",
            )
        fig.add_trace(
            go.Scatter3d(
                x=[grid.gpos[int(g)] for g in part["n_gpus"]],
                y=[grid.bpos[int(b)] for b in part["batch_size"]],
                z=z,
                mode="markers",
                name=label,
                marker=style,
                hovertemplate=hover,
                error_z=error,
                customdata=np.column_stack(
                    [
                        part["n_gpus"].astype(int),
                        part["batch_size"].astype(int),
                        part["throughput_tokens_per_s"].astype(float),
                        part["status"].astype(str),
                    ]
                ).tolist(),
            )
        )
    note = ""
    if grid.df.empty:
        note = NO_TRIALS
    elif grid.empty:
        note = ALL_FAILED
    fig.update_layout(
        title=title + (f" ({note})" if note else ""),
        scene=dict(
            xaxis=dict(title="number of GPUs", tickvals=list(grid.gx), ticktext=[str(g) for g in grid.gpus]),
            yaxis=dict(title="batch size", tickvals=list(grid.by), ticktext=[_batch_label(b) for b in grid.batches]),
            zaxis=dict(title="throughput (tokens/s)"),
        ),
        legend=dict(x=0, y=1),
        margin=dict(l=0, r=0, t=40, b=0),
    )
    fig.write_html(path, include_plotlyjs="directory", full_html=True)
    return path


def write_landscapes(df: pd.DataFrame, outdir, formats=("png", "html")) -> list[Path]:
    """PNG and/or HTML landscapes of every (hardware, engine, model) in `df` into outdir,
    named <hardware>_<engine>_<model>.<ext>, and beside a PNG the tokens-per-joule landscape,
    <stem>_tokens_per_joule.png, where any of its trials has an energy reading (none where none
    has); returns the paths written."""
    outdir = Path(outdir)
    written = []
    for (hardware, engine, model), one in df.groupby(LANDSCAPE_KEYS, sort=True):
        stem = landscape_stem(hardware, engine, model)
        title = landscape_title(hardware, engine, model)
        if "png" in formats:
            written.append(landscape_png(one, outdir / f"{stem}.png", title))
            if has_energy(one):
                written.append(energy_landscape_png(one, outdir / f"{stem}_tokens_per_joule.png", title))
        if "html" in formats:
            written.append(landscape_html(one, outdir / f"{stem}.html", title))
    return written
