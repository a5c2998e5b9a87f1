"""What the figures of RQ1-RQ3 share (analysis/rq1.py, rq2.py, rq3.py): engine labels, model
styles, error bars and their note, the markers of failed and offloaded trials. They are
analysis-specific, hence here and not in infpop/figures.py: they read the columns of a selected
trials table (counted, status, offloaded, ci_low, ci_high).

Every figure takes trials as returned by `infpop.analysis.selection.select` (one max_new_tokens,
boolean column `counted`). Repetitions kept as replicates are drawn as their mean with its 95%
confidence interval (`infpop.analysis.selection.cells`). A configuration is drawn on a surface or
curve only when it is counted; every other one (oom without a throughput, skipped_oom, error,
crashed, timeout) is drawn as a failure marker. A combination that was never run is left blank.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

ENGINE_LABELS = {"hf": "HF pipelines", "vllm": "vLLM"}
ALL_FAILED = "insufficient data: every trial failed"
NO_TRIALS = "insufficient data: no trial"


def engine_label(engine: str) -> str:
    return ENGINE_LABELS.get(engine, str(engine))


def _counted(df: pd.DataFrame) -> pd.Series:
    """Which trials count: the `counted` column of infpop.analysis.selection.select (its one rule)."""
    return df["counted"].astype(bool)


def _offloaded(df: pd.DataFrame) -> pd.Series:
    """Trials that ran with weights offloaded to the host or disk (hf_offload: allow), from
    trials.csv's `offloaded` (absent or empty, e.g. vLLM or the paper's data: not offloaded)."""
    if "offloaded" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["offloaded"].map(lambda value: str(value).strip().lower() in ("true", "1", "1.0"))


OFFLOADED_LABEL = "weights offloaded to CPU/disk (counted)"
OFFLOADED_STYLE = dict(marker="s", facecolors="none", edgecolors="magenta", linewidths=1.5)


def _failed_label(failed: pd.DataFrame) -> str:
    statuses = sorted(set(failed["status"].astype(str)))
    return f"failed ({'/'.join(statuses)}), not counted"


def _yerr(rows: pd.DataFrame):
    """Error bars of the 95% CI of each mean (none for a single value)."""
    if rows["ci_low"].isna().all():
        return None
    mean = rows["throughput_tokens_per_s"]
    return np.vstack(
        [(mean - rows["ci_low"]).fillna(0).clip(lower=0), (rows["ci_high"] - mean).fillna(0).clip(lower=0)]
    )


def _ci_note(part: pd.DataFrame) -> str:
    return "\nmeans of repetitions, error bars: 95% CI" if part["ci_low"].notna().any() else ""


def _model_styles(models):
    cmap = plt.get_cmap("tab20")
    markers = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
    return {m: dict(color=cmap(i % 20), marker=markers[i % len(markers)]) for i, m in enumerate(models)}


def _subset(df, hardware, engine, exclude=()):
    part = df[(df["hardware"] == hardware) & (df["engine"] == engine) & ~df["model"].isin(list(exclude))].copy()
    part["counted"] = _counted(part)
    return part
