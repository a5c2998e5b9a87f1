"""The paper's stated numbers beside the values our replay of its published data computes.

The paper's numbers are typed once in configs/paper_reference.csv (quantity, hardware, engine,
model, paper_value, source, explanation, tolerance). Each quantity names where our value comes
from; the agreement is judged at the paper's printed precision. (A row with a `tolerance` is also
one of the paper's conclusions checked on every dataset: infpop/conclusions.py.)
"""

from __future__ import annotations

import math
from decimal import Decimal

import pandas as pd

from infpop.analysis.discussion import CORRELATION_PAIRS

#: The paper's correlation statements (V-B), each a set of (x, y) pairs of rq.CORRELATION_PAIRS.
CORRELATIONS = {
    "params_vs_throughput": [
        pair for pair in CORRELATION_PAIRS if pair[0] == "params_billion" and pair[1].endswith("_throughput")
    ],
    "humaneval_vs_params": [("humaneval_pass1", "params_billion")],
    "hf_throughput_vs_humaneval": [("humaneval_pass1", "hf_best_throughput")],
    "vllm_best_throughput_vs_humaneval": [("humaneval_pass1", "vllm_best_throughput")],
}
assert all(pair in CORRELATION_PAIRS for pairs in CORRELATIONS.values() for pair in pairs)

COLUMNS = [
    "quantity",
    "hardware",
    "engine",
    "model",
    "paper_value",
    "our_value",
    "difference",
    "agreement",
    "explanation",
    "source",
]


def _decimals(text: str) -> int:
    """Digits printed after the decimal point ("4.0" -> 1, "4" -> 0, "0.8762" -> 4)."""
    return max(0, -Decimal(text).as_tuple().exponent)


def agreement(paper_text: str, ours: float | None) -> str:
    """'exact' when ours, rounded to the paper's printed digits, is the paper's number; 'within
    rounding' when it is one unit of the last printed digit away; otherwise 'differs'."""
    if ours is None or (isinstance(ours, float) and math.isnan(ours)):
        return "not computed"
    decimals = _decimals(paper_text)
    paper = float(paper_text)
    if round(ours, decimals) == round(paper, decimals):
        return "exact"
    if abs(ours - paper) <= 10**-decimals + 1e-9:
        return "within rounding"
    return "differs"


def _one(frame: pd.DataFrame, column: str, **where) -> float | None:
    rows = frame
    for key, value in where.items():
        if value not in ("", None) and key in rows.columns:
            rows = rows[rows[key].astype(str) == str(value)]
    if len(rows) != 1 or column not in rows.columns:
        return None
    value = rows.iloc[0][column]
    return None if pd.isna(value) else float(value)


def our_value(row: pd.Series, outputs: dict[str, pd.DataFrame]) -> float | None:
    """Our value of one reference quantity, from the replay's output tables."""
    quantity, hardware, engine, model = row["quantity"], row["hardware"], row["engine"], row["model"]
    kind, _, rest = quantity.partition(".")
    if kind == "table2":
        return _one(outputs["table2"], rest, model=model)
    if kind == "rq2":
        return _one(outputs["rq2_anova"], rest.split(".")[-1], hardware=hardware, engine=engine)
    if quantity == "rq3.cliffs_delta.mean":
        values = outputs["rq3_wilcoxon"]["cliffs_delta"].dropna()
        return float(values.mean()) if len(values) else None
    if quantity == "rq4.model_improvement_pct":
        return _one(outputs["rq4_improvement"], "mean_improvement_pct", engine=engine, model=model)
    if kind == "rq4":
        return _one(outputs["rq4_wilcoxon"], rest, engine=engine)
    if quantity == "rq1.peak_throughput":
        features = outputs["rq1_features"]
        return _one(
            features[features["kind"] == "global_max"], "throughput", hardware=hardware, engine=engine, model=model
        )
    if kind == "rq5":  # rq5.<mode>.<direction>.<summary column>
        if "rq5_summary" not in outputs:
            return None
        mode, direction, column = rest.split(".")
        return _one(outputs["rq5_summary"], column, mode=mode, engine=engine, direction=direction)
    if kind == "discussion":
        measure, _, name = rest.partition(".")  # pearson_r.<name>[.min|.max]
        table = outputs["correlations"]
        column = "r" if measure == "pearson_r" else "p"
        base, _, bound = name.partition(".")
        pairs = CORRELATIONS[base]
        selected = table[[(x, y) in pairs for x, y in zip(table["x"], table["y"], strict=False)]]
        if selected.empty:
            return None
        values = selected[column].dropna()
        if bound == "min":
            return float(values.min()) if len(values) else None
        if bound == "max":
            return float(values.max()) if len(values) else None
        return float(values.iloc[0]) if len(values) == 1 else None
    raise ValueError(f"unknown reference quantity {quantity!r}")


def compare(reference: pd.DataFrame, outputs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for _, row in reference.fillna("").iterrows():
        ours = our_value(row, outputs)
        paper = float(row["paper_value"])
        rows.append(
            {
                **{k: row[k] for k in ("quantity", "hardware", "engine", "model", "paper_value", "source")},
                "our_value": ours,
                "difference": None if ours is None else ours - paper,
                "agreement": agreement(str(row["paper_value"]), ours),
                "explanation": row.get("explanation", ""),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(table: pd.DataFrame) -> dict[str, int]:
    return table["agreement"].value_counts().to_dict()


def to_markdown(table: pd.DataFrame) -> str:
    counts = summary(table)
    lines = [
        "# The paper's numbers against this replay of its published data",
        "",
        "Agreement at the paper's printed precision: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
        "",
        "| quantity | hardware | engine | model | paper | ours | agreement | explanation |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, row in table.iterrows():
        ours = "" if row["our_value"] is None or pd.isna(row["our_value"]) else f"{row['our_value']:.4g}"
        lines.append(
            f"| {row['quantity']} | {row['hardware']} | {row['engine']} | {row['model']} | "
            f"{row['paper_value']} | {ours} | {row['agreement']} | {row['explanation']} |"
        )
    return "\n".join(lines) + "\n"
