"""The discussion (V-B): Pearson correlations between model size, HumanEval score and Table II's
throughputs (analysis/rq2.py), as a table."""

from __future__ import annotations

import pandas as pd

from infpop.analysis import stats

# Discussion V-B: (x, y) pairs, x and y columns of Table II merged with the models' metadata.
CORRELATION_PAIRS = [
    ("params_billion", "hf_best_throughput"),
    ("params_billion", "vllm_same_gpus_throughput"),
    ("params_billion", "vllm_best_throughput"),
    ("humaneval_pass1", "params_billion"),
    ("humaneval_pass1", "hf_best_throughput"),
    ("humaneval_pass1", "vllm_same_gpus_throughput"),
    ("humaneval_pass1", "vllm_best_throughput"),
]


def correlations(table2_a100: pd.DataFrame, metadata: pd.DataFrame) -> pd.DataFrame:
    """Pearson correlations between model size, HumanEval score and Table II's throughputs.

    metadata: columns model, params_billion, humaneval_pass1 (the paper's Table I); it is
    matched to Table II on `model`, models missing from either side are left out. One row per
    pair in CORRELATION_PAIRS: x, y, r, p, n, note.
    """
    missing = sorted({"model", "params_billion", "humaneval_pass1"} - set(metadata.columns))
    if missing:
        raise ValueError(f"metadata lacks columns {missing}")
    merged = table2_a100.drop(columns=["params_billion", "humaneval_pass1"], errors="ignore").merge(
        metadata[["model", "params_billion", "humaneval_pass1"]], on="model", how="inner"
    )
    rows = []
    for x, y in CORRELATION_PAIRS:
        xs = pd.to_numeric(merged[x], errors="coerce") if x in merged else pd.Series(dtype=float)
        ys = pd.to_numeric(merged[y], errors="coerce") if y in merged else pd.Series(dtype=float)
        result = stats.pearson(xs.to_numpy(float), ys.to_numpy(float))
        rows.append({"x": x, "y": y, "r": result.r, "p": result.p, "n": result.n, "note": result.note})
    return pd.DataFrame(rows, columns=["x", "y", "r", "p", "n", "note"])
