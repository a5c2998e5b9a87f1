"""RQ4: the GPU model: the throughput improvement of newer over older hardware (A100 over V100)
per engine and model and per engine, with paired Wilcoxon tests and Cliff's delta.

How it reproduces the paper (checked against its published data, see tests/test_rq.py):
- RQ4: A100 vs V100 paired on (model, n_gpus, batch size); an engine's mean and median
  improvement are over all its pairs (not a mean of per-model means).

What its tables assume and say of missing data: analysis/common.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from infpop.analysis import stats
from infpop.analysis.common import NAN, _check, _counted, _join_notes, _keys, _paired

RQ4_STAT_COLUMNS = [
    "n_pairs",
    "mean_improvement_pct",
    "median_improvement_pct",
    "W",
    "p",
    "cliffs_delta",
    "ci_low",
    "ci_high",
    "note",
]


def _improvement_pct(newer: np.ndarray, older: np.ndarray) -> np.ndarray:
    """100 * (newer - older) / older; NaN where the older throughput is not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(older > 0, (newer - older) / older * 100.0, np.nan)


def _hardware_pairs(data: pd.DataFrame, newer: str, older: str) -> pd.DataFrame:
    """Counted (newer, older) throughputs matched on (engine, model, n_gpus, batch_size)."""
    frame = data[data["hardware"].isin([newer, older])]
    return _paired(frame, ["engine", "model", "n_gpus", "batch_size"], "hardware", newer, older).reset_index()


def _compare(pairs: pd.DataFrame, newer: str, older: str) -> dict:
    newer_values, older_values = pairs[newer].to_numpy(float), pairs[older].to_numpy(float)
    improvement = _improvement_pct(newer_values, older_values)
    improvement = improvement[~np.isnan(improvement)]
    test = stats.wilcoxon_paired(newer_values, older_values)
    delta = stats.cliffs_delta(newer_values, older_values)
    if len(pairs) == 0:
        notes = [stats.insufficient(f"no pair of counted trials on {newer} and {older}")]
    else:
        notes = [test.note, delta.note]
    return {
        "n_pairs": len(pairs),
        "mean_improvement_pct": float(improvement.mean()) if len(improvement) else NAN,
        "median_improvement_pct": float(np.median(improvement)) if len(improvement) else NAN,
        "W": test.W,
        "p": test.p,
        "cliffs_delta": delta.delta,
        "ci_low": delta.ci_low,
        "ci_high": delta.ci_high,
        "note": _join_notes(*notes),
    }


def rq4_improvement(df: pd.DataFrame, newer: str = "a100", older: str = "v100") -> pd.DataFrame:
    """Per engine and model: % throughput improvement of `newer` over `older` hardware.

    Pairs are counted trials with the same (model, n_gpus, batch_size) on both; improvement =
    100 * (newer - older) / older per pair; mean and median over the model's pairs, plus the
    model's paired Wilcoxon test and Cliff's delta (newer against older), as in the paper's
    appendix. Columns: engine, model, n_pairs, mean_improvement_pct, median_improvement_pct,
    W, p, cliffs_delta, ci_low, ci_high, note.
    """
    df = _check(df)
    pairs = _hardware_pairs(_counted(df), newer, older)
    rows = []
    for engine, model in _keys(df, ["engine", "model"]):
        model_pairs = pairs[(pairs["engine"] == engine) & (pairs["model"] == model)]
        rows.append({"engine": engine, "model": model, **_compare(model_pairs, newer, older)})
    return pd.DataFrame(rows, columns=["engine", "model", *RQ4_STAT_COLUMNS])


def rq4_wilcoxon(df: pd.DataFrame, newer: str = "a100", older: str = "v100") -> pd.DataFrame:
    """Per engine: paired Wilcoxon of `newer` vs `older` hardware, Cliff's delta, improvements.

    Over all the engine's pairs (same model, n_gpus, batch_size): the mean and median of the
    per-pair % improvements are taken over all pairs, not over per-model means; this is what
    reproduces the paper (vLLM 83.5% / 77.6%, HF 47% / 23.3%). Columns: engine, n_pairs,
    mean_improvement_pct, median_improvement_pct, W, p, cliffs_delta, ci_low, ci_high, note.
    """
    df = _check(df)
    pairs = _hardware_pairs(_counted(df), newer, older)
    rows = []
    for (engine,) in _keys(df, ["engine"]):
        engine_pairs = pairs[pairs["engine"] == engine]
        rows.append({"engine": engine, **_compare(engine_pairs, newer, older)})
    return pd.DataFrame(rows, columns=["engine", *RQ4_STAT_COLUMNS])
