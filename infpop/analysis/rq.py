"""The paper's RQ2-RQ4 analyses and the discussion's correlations, as tables.

Every function takes the output of `infpop.analysis.select` (one max_new_tokens, duplicates
resolved, a boolean `counted` column) and returns a pandas DataFrame; only counted trials enter
the statistics. Writing files and recording the analysis settings is the caller's job.

A combination the data cannot support (an engine or hardware not measured, a group with one
value, a landscape where every trial failed) yields a row whose statistics are NaN and whose
`note` starts with "insufficient data"; an empty table raises EmptyTrialsError.

How each analysis reproduces the paper (checked against its published data, see tests/test_rq.py):
- RQ2 ANOVA: per hardware and engine, one observation per model and GPU count (batch size 1);
  the paper's F=5.44/p=0.002 (vLLM) and F=0.37/p=0.77 (HF) are the A100 results.
- RQ3 ANOVA: per hardware, engine and GPU count, one observation per model and batch size,
  batch sizes that only one model reached included.
- RQ3 Wilcoxon: vLLM vs HF paired on (model, batch size); Cliff's delta over the two paired
  vectors taken as independent samples.
- RQ4: A100 vs V100 paired on (model, n_gpus, batch size); an engine's mean and median
  improvement are over all its pairs (not a mean of per-model means).
- Table II: improvements are ratios of the throughputs, the paper's from throughputs rounded to
  one decimal (`round_throughput=1`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from . import INSUFFICIENT, EmptyTrialsError, stats

THROUGHPUT = "throughput_tokens_per_s"
ONLINE_BATCH_SIZE = 1  # RQ2 and Table II: online inference, one prompt at a time
NAN = float("nan")

TABLE2_COLUMNS = [
    "hardware",
    "model",
    "hf_best_gpus",
    "hf_best_throughput",
    "vllm_same_gpus_throughput",
    "vllm_same_improvement",
    "vllm_best_gpus",
    "vllm_best_throughput",
    "vllm_best_improvement",
    "note",
    # energy (NVML on NVIDIA GPUs) at the same configurations: generated tokens per joule
    "hf_best_tokens_per_joule",
    "vllm_same_gpus_tokens_per_joule",
    "vllm_best_tokens_per_joule",
    "energy_note",
]
TOKENS_PER_JOULE = "tokens_per_joule"
ENERGY_NOT_MEASURED = "energy not measured (NVML energy counters, on NVIDIA GPUs only)"

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


# --------------------------------------------------------------------------- helpers


def _check(df: pd.DataFrame, columns: Iterable[str] = ()) -> pd.DataFrame:
    """The input as given, after checking it is a selected, non-empty trials table."""
    if df is None or len(df) == 0:
        raise EmptyTrialsError("the trials table is empty")
    needed = {"hardware", "engine", "model", "n_gpus", "batch_size", THROUGHPUT, "counted", *columns}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise ValueError(f"trials table lacks columns {missing} (pass the output of select())")
    return df


def _counted(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["counted"].astype(bool) & df[THROUGHPUT].notna()]


def _keys(df: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """The combinations present in the table (counted or not), sorted."""
    return sorted(df[columns].drop_duplicates().itertuples(index=False, name=None))


def _join_notes(*notes: str) -> str:
    seen = []
    for note in notes:
        if note and note not in seen:
            seen.append(note)
    return "; ".join(seen)


def _groups(frame: pd.DataFrame, by: str) -> dict:
    return {key: group[THROUGHPUT].to_numpy(dtype=float) for key, group in frame.groupby(by, sort=True)}


def _improvement_pct(newer: np.ndarray, older: np.ndarray) -> np.ndarray:
    """100 * (newer - older) / older; NaN where the older throughput is not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(older > 0, (newer - older) / older * 100.0, np.nan)


# --------------------------------------------------------------------------- Table II (RQ2)


def table2(df: pd.DataFrame, hardware: str, round_throughput: int | None = None) -> pd.DataFrame:
    """The paper's Table II for one hardware: HF and vLLM at batch size 1, per model.

    hf_best_gpus: the GPU count maximising HF throughput (ties: the fewest GPUs);
    vllm_same_gpus_throughput: vLLM at that GPU count; vllm_best_*: vLLM's own best GPU count.
    Improvements are vLLM / HF throughput ratios (3.5 means "3.5X"). With round_throughput=d the
    ratios are computed from throughputs rounded to d decimals, as the paper did (d=1); the
    throughput columns themselves stay unrounded. One row per model in the table; a model
    lacking a counted trial for an engine gets NaN cells and an "insufficient data" note.
    """
    df = _check(df)
    data = _counted(df)
    data = data[(data["hardware"] == hardware) & (data["batch_size"] == ONLINE_BATCH_SIZE)]

    def ratio(numerator: float, denominator: float) -> float:
        if round_throughput is not None:
            numerator, denominator = round(numerator, round_throughput), round(denominator, round_throughput)
        if math.isnan(numerator) or math.isnan(denominator) or denominator <= 0:
            return NAN
        return numerator / denominator

    def per_gpus(model: str, engine: str) -> pd.Series:
        rows = data[(data["model"] == model) & (data["engine"] == engine)]
        return rows.groupby("n_gpus")[THROUGHPUT].mean().sort_index()

    def per_joule(model: str, engine: str, gpus) -> float:
        """Tokens per joule of the engine at `gpus` (the mean of its readings), NaN without one."""
        if TOKENS_PER_JOULE not in data.columns or pd.isna(gpus):  # the paper's data has no energy
            return NAN
        rows = data[(data["model"] == model) & (data["engine"] == engine) & (data["n_gpus"] == gpus)]
        return float(pd.to_numeric(rows[TOKENS_PER_JOULE], errors="coerce").mean())

    rows = []
    for model in sorted(df["model"].unique()):
        hf, vllm = per_gpus(model, "hf"), per_gpus(model, "vllm")
        notes = []
        row = {"hardware": hardware, "model": model}
        if hf.empty:
            notes.append(stats.insufficient(f"no counted HF trial at batch size 1 on {hardware}"))
            hf_gpus, hf_best = NAN, NAN
        else:
            hf_gpus, hf_best = int(hf.idxmax()), float(hf.max())
        if vllm.empty:
            notes.append(stats.insufficient(f"no counted vLLM trial at batch size 1 on {hardware}"))
            vllm_gpus, vllm_best = NAN, NAN
        else:
            vllm_gpus, vllm_best = int(vllm.idxmax()), float(vllm.max())
        same = NAN
        if not hf.empty and not vllm.empty:
            if hf_gpus in vllm.index:
                same = float(vllm[hf_gpus])
            else:
                notes.append(stats.insufficient(f"no counted vLLM trial with {hf_gpus} GPU(s)"))
        row.update(
            hf_best_gpus=hf_gpus,
            hf_best_throughput=hf_best,
            vllm_same_gpus_throughput=same,
            vllm_same_improvement=ratio(same, hf_best),
            vllm_best_gpus=vllm_gpus,
            vllm_best_throughput=vllm_best,
            vllm_best_improvement=ratio(vllm_best, hf_best),
            note=_join_notes(*notes),
            hf_best_tokens_per_joule=per_joule(model, "hf", hf_gpus),
            vllm_same_gpus_tokens_per_joule=per_joule(model, "vllm", hf_gpus if not math.isnan(same) else NAN),
            vllm_best_tokens_per_joule=per_joule(model, "vllm", vllm_gpus),
        )
        missing = [
            label
            for label, energy, throughput in (
                ("HF best", "hf_best_tokens_per_joule", "hf_best_throughput"),
                ("vLLM same GPUs", "vllm_same_gpus_tokens_per_joule", "vllm_same_gpus_throughput"),
                ("vLLM best", "vllm_best_tokens_per_joule", "vllm_best_throughput"),
            )
            if math.isnan(row[energy]) and not math.isnan(row[throughput])
        ]
        measured = any(not math.isnan(row[c]) for c in TABLE2_COLUMNS if c.endswith("_tokens_per_joule"))
        row["energy_note"] = (
            ENERGY_NOT_MEASURED if not measured else f"no energy reading for {', '.join(missing)}" if missing else ""
        )
        rows.append(row)
    table = pd.DataFrame(rows, columns=TABLE2_COLUMNS)
    for column in ("hf_best_gpus", "vllm_best_gpus"):
        table[column] = table[column].astype("Int64")
    return table


def table2_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and median of Table II's improvements, and how often vLLM's best GPU count differs.

    Long format: columns quantity, value, n (models contributing). The paper (IV-B3) reports
    mean 6.47X / median 4.3X for "same GPUs" (its text swaps the two), 7.26X / 4.80X for "best",
    and 12 models where vLLM's best GPU count differs (9 more GPUs, 3 fewer).
    """
    rows = []
    for column, label in (("vllm_same_improvement", "same"), ("vllm_best_improvement", "best")):
        values = table[column].dropna()
        for statistic in ("mean", "median"):
            value = float(getattr(values, statistic)()) if len(values) else NAN
            rows.append({"quantity": f"{statistic}_{label}_improvement", "value": value, "n": len(values)})
    both = table.dropna(subset=["hf_best_gpus", "vllm_best_gpus"])
    hf_gpus, vllm_gpus = both["hf_best_gpus"].astype(int), both["vllm_best_gpus"].astype(int)
    for quantity, count in (
        ("n_vllm_best_gpus_differ", int((vllm_gpus != hf_gpus).sum())),
        ("n_vllm_best_more_gpus", int((vllm_gpus > hf_gpus).sum())),
        ("n_vllm_best_fewer_gpus", int((vllm_gpus < hf_gpus).sum())),
    ):
        rows.append({"quantity": quantity, "value": float(count) if len(both) else NAN, "n": len(both)})
    return pd.DataFrame(rows, columns=["quantity", "value", "n"])


def table2_markdown(table: pd.DataFrame) -> str:
    """Table II as a Markdown table laid out like the paper's (throughputs to 1 decimal, "3.5X")."""

    def gpus(value) -> str:
        return "–" if pd.isna(value) else str(int(value))

    def thp(value) -> str:
        return "–" if pd.isna(value) else f"{value:.1f}"

    def impr(value) -> str:
        return "–" if pd.isna(value) else f"{value:.1f}X"

    lines = [
        "| LLM | HF best: GPUs | HF best: Thp | vLLM same GPUs: Thp | Impr. "
        "| vLLM best: GPUs | vLLM best: Thp | Impr. |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.model} | {gpus(row.hf_best_gpus)} | {thp(row.hf_best_throughput)} "
            f"| {thp(row.vllm_same_gpus_throughput)} | {impr(row.vllm_same_improvement)} "
            f"| {gpus(row.vllm_best_gpus)} | {thp(row.vllm_best_throughput)} | {impr(row.vllm_best_improvement)} |"
        )
    notes = [f"- {row.model}: {row.note}" for row in table.itertuples(index=False) if row.note]
    if notes:
        lines += ["", *notes]
    lines += ["", *_energy_markdown(table)]
    return "\n".join(lines) + "\n"


def _energy_markdown(table: pd.DataFrame) -> list[str]:
    """Table II's energy at the same configurations (tokens per joule), or one line saying it
    was not measured."""
    columns = ["hf_best_tokens_per_joule", "vllm_same_gpus_tokens_per_joule", "vllm_best_tokens_per_joule"]
    if not set(columns) <= set(table.columns) or table[columns].isna().all().all():
        return [f"Tokens per joule: {ENERGY_NOT_MEASURED}."]

    def tpj(value) -> str:
        return "–" if pd.isna(value) else f"{value:.3f}"

    lines = [
        "Energy at the same configurations (tokens per joule):",
        "",
        "| LLM | HF best: tok/J | vLLM same GPUs: tok/J | vLLM best: tok/J |",
        "|---|---:|---:|---:|",
    ]
    for row in table.itertuples(index=False):
        if pd.isna(row.hf_best_throughput) and pd.isna(row.vllm_best_throughput):
            continue  # the summary rows (mean, median of the improvements)
        lines.append(
            f"| {row.model} | {tpj(row.hf_best_tokens_per_joule)} "
            f"| {tpj(row.vllm_same_gpus_tokens_per_joule)} | {tpj(row.vllm_best_tokens_per_joule)} |"
        )
    return lines


# --------------------------------------------------------------------------- RQ2


def rq2_anova(df: pd.DataFrame, gpu_counts: Iterable[int] | None = None) -> pd.DataFrame:
    """One-way ANOVA of batch-size-1 throughput across GPU counts, per (hardware, engine).

    Each group is a GPU count; its observations are the counted trials at batch size 1, one per
    model. gpu_counts restricts the groups (the paper's follow-up test used 2, 4 and 8).
    Columns: hardware, engine, F, p, n_groups, n, gpu_counts, note.
    """
    df = _check(df)
    data = _counted(df)
    data = data[data["batch_size"] == ONLINE_BATCH_SIZE]
    if gpu_counts is not None:
        data = data[data["n_gpus"].isin(list(gpu_counts))]
    rows = []
    for hardware, engine in _keys(df, ["hardware", "engine"]):
        frame = data[(data["hardware"] == hardware) & (data["engine"] == engine)]
        result = stats.anova(_groups(frame, "n_gpus"))
        rows.append(
            {
                "hardware": hardware,
                "engine": engine,
                "F": result.F,
                "p": result.p,
                "n_groups": result.n_groups,
                "n": result.n,
                "gpu_counts": ",".join(str(int(g)) for g in sorted(frame["n_gpus"].unique())),
                "note": result.note,
            }
        )
    return pd.DataFrame(rows, columns=["hardware", "engine", "F", "p", "n_groups", "n", "gpu_counts", "note"])


TUKEY_COLUMNS = ["group_a", "group_b", "mean_diff", "p", "ci_low", "ci_high", "reject"]


def rq2_tukey(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Tukey HSD across GPU counts at batch size 1, per (hardware, engine).

    One row per pair of GPU counts (group_a < group_b, mean_diff = mean(b) - mean(a)); a
    combination without enough data gives one row with NaN statistics and a note.
    """
    df = _check(df)
    data = _counted(df)
    data = data[data["batch_size"] == ONLINE_BATCH_SIZE]
    rows = []
    for hardware, engine in _keys(df, ["hardware", "engine"]):
        frame = data[(data["hardware"] == hardware) & (data["engine"] == engine)]
        result = stats.tukey_hsd(_groups(frame, "n_gpus"), alpha=alpha)
        if not result.pairs:
            empty = dict.fromkeys(TUKEY_COLUMNS, NAN)
            rows.append({"hardware": hardware, "engine": engine, **empty, "note": result.note})
        for pair in result.pairs:
            rows.append({"hardware": hardware, "engine": engine, **pair, "note": ""})
    table = pd.DataFrame(rows, columns=["hardware", "engine", *TUKEY_COLUMNS, "note"])
    for column in ("group_a", "group_b"):
        table[column] = table[column].astype("Int64")
    return table


# --------------------------------------------------------------------------- RQ3


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


def _paired(frame: pd.DataFrame, on: list[str], column: str, first: str, second: str) -> pd.DataFrame:
    """Counted throughputs of `first` and `second` (values of `column`) matched on `on`."""
    wide = frame.pivot_table(index=on, columns=column, values=THROUGHPUT, aggfunc="mean")
    for side in (first, second):
        if side not in wide.columns:
            wide[side] = np.nan
    return wide[[first, second]].dropna()


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


# --------------------------------------------------------------------------- RQ4

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


# --------------------------------------------------------------------------- V-B correlations


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


__all__ = [
    "INSUFFICIENT",
    "table2",
    "table2_summary",
    "table2_markdown",
    "rq2_anova",
    "rq2_tukey",
    "rq3_anova",
    "rq3_wilcoxon_engines",
    "rq4_improvement",
    "rq4_wilcoxon",
    "correlations",
]
