"""RQ2: throughput against the number of GPUs: the paper's Table II (HF and vLLM at batch size 1,
with the energy of those configurations where measured) and its summary, the ANOVA and Tukey HSD
across GPU counts, and the GPU-scaling figure (the paper's Fig. 2).

How it reproduces the paper (checked against its published data, see tests/test_rq.py):
- RQ2 ANOVA: per hardware and engine, one observation per model and GPU count (batch size 1);
  the paper's F=5.44/p=0.002 (vLLM) and F=0.37/p=0.77 (HF) are the A100 results.
- Table II: improvements are ratios of the throughputs, the paper's from throughputs rounded to
  one decimal (`round_throughput=1`).

What its tables assume and say of missing data: analysis/common.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from infpop.analysis import stats
from infpop.analysis.common import NAN, THROUGHPUT, _check, _counted, _groups, _join_notes, _keys
from infpop.analysis.plots import _ci_note, _model_styles, _subset, _yerr, engine_label
from infpop.analysis.selection import cells
from infpop.figures import message_png, save

ONLINE_BATCH_SIZE = 1  # RQ2 and Table II: online inference, one prompt at a time
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


def gpu_scaling_png(df: pd.DataFrame, hardware: str, engine: str, path, exclude=()) -> Path:
    """RQ2 (the paper's Fig. 2): throughput at batch size 1 against the number of GPUs, one line
    per model (counted trials only), legend outside the axes."""
    part = _subset(cells(df), hardware, engine, exclude)
    part = part[(part["batch_size"] == 1) & part["counted"]]
    title = f"Throughput vs number of GPUs (batch size 1) - {engine_label(engine)} - {str(hardware).upper()}"
    if part.empty:
        return message_png(path, title, "insufficient data: no counted trial at batch size 1")
    gpus = sorted(int(g) for g in part["n_gpus"].unique())
    pos = {g: i for i, g in enumerate(gpus)}
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = _model_styles(sorted(part["model"].unique()))
    for model, rows in part.groupby("model", sort=True):
        rows = rows.sort_values("n_gpus")
        ax.errorbar(
            [pos[int(g)] for g in rows["n_gpus"]],
            rows["throughput_tokens_per_s"],
            yerr=_yerr(rows),
            label=model,
            ms=5,
            capsize=3,
            **styles[model],
        )
    ax.set_xticks(range(len(gpus)), [str(g) for g in gpus])
    ax.set_xlabel("number of GPUs")
    ax.set_ylabel("throughput (tokens/s)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title + _ci_note(part), fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="model")
    return save(fig, path)
