"""What every figure of the pipeline shares: the headless backend, saving (the folder made, the
figure closed), a figure that only states why it has nothing to draw, and a batch-size axis."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on compute nodes or in CI

import matplotlib.pyplot as plt  # noqa: E402

DPI = 100


def save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def message_png(path, title: str, message: str) -> Path:
    """A figure that says why there is nothing to draw (e.g. "insufficient data: ...")."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.set_axis_off()
    ax.set_title(title)
    say(ax, message, fontsize=13)
    return save(fig, path)


def say(ax, message: str, **text) -> None:
    """A message in the middle of the axes, where a plot has nothing to draw."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, **text)


def batch_size_axis(ax, batch_sizes) -> None:
    """A log2 x axis labelled with the batch sizes themselves, and the legend outside the axes."""
    batches = sorted(int(b) for b in batch_sizes)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.grid(alpha=0.3)
