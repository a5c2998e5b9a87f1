"""One set of trials through two paths must give one set of analyses.

The replay analyses a trials table directly (results/paper/, duplicates resolved by keeping the
last); a rehearsal of that table (infpop.measure.engines.rehearsal) runs every trial through the
whole workflow, sweeps, records and aggregation, and its analyses take the measured path
(results/rehearsal/, repetitions as replicates). With one repetition answered by the row the
replay keeps, the two see the same throughputs, so every RQ table must agree: a difference is a bug
in one of the paths. `compare` says, per table, where they differ.

Left out of the comparison: the columns that state how duplicates were resolved (`last` and
`replicates` by design), and the modes of the RQ5 replay only one side runs (the faithful replay of
the appendix script runs on the paper's data only). Numbers agree within a relative tolerance:
the rehearsal's throughput is recomputed from its batches' tokens and seconds, equal to the
table's up to rounding in the last bits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

#: The RQ tables of a dataset, relative to its folder ({hardware}: one per hardware label).
TABLES = (
    "rq1/landscape_features.csv",
    "rq2/anova.csv",
    "rq2/tukey.csv",
    "rq2/table2_{hardware}.csv",
    "rq3/anova.csv",
    "rq3/wilcoxon_engines.csv",
    "rq4/wilcoxon_hardware.csv",
    "rq4/improvement.csv",
    "discussion/correlations.csv",
    "rq5/summary.csv",
    "rq5/efficiency.csv",
    "rq5/efficiency_curves.csv",
)
#: Columns saying how duplicates were resolved: the replay keeps the last, the measured path
#: treats repetitions as replicates.
CHOICE_COLUMNS = ("analysis_duplicates", "duplicates")
RELATIVE_TOLERANCE = 1e-9
#: Differences listed per table at most (the count is given).
SHOWN = 5


def _close(a, b, rtol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rtol, abs_tol=rtol * 1e-3)
    return a == b


def compare_tables(left: pd.DataFrame, right: pd.DataFrame, rtol: float = RELATIVE_TOLERANCE) -> list[str]:
    """Where two versions of one table differ (empty: they agree): shape, columns, then cell by
    cell, numbers within `rtol`."""
    left = left.drop(columns=[c for c in CHOICE_COLUMNS if c in left])
    right = right.drop(columns=[c for c in CHOICE_COLUMNS if c in right])
    if list(left.columns) != list(right.columns):
        return [f"columns differ: {list(left.columns)} against {list(right.columns)}"]
    if len(left) != len(right):
        return [f"{len(left)} rows against {len(right)}"]
    differences = []
    for column in left.columns:
        for row, (a, b) in enumerate(zip(left[column].tolist(), right[column].tolist(), strict=True)):
            a, b = (float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in (a, b))
            if not _close(a, b, rtol) and not (pd.isna(a) and pd.isna(b)):
                differences.append(f"row {row + 1}, {column}: {a!r} against {b!r}")
    return differences


def _flat(value, path: str = "") -> dict:
    """A JSON document as {key path: leaf value}."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{path}[{i}]").items()}
    return {path: float(value) if isinstance(value, int) and not isinstance(value, bool) else value}


def compare_documents(left, right, rtol: float = RELATIVE_TOLERANCE) -> list[str]:
    """Where two JSON documents differ (empty: they agree), leaf by leaf, numbers within `rtol`."""
    left, right = _flat(left), _flat(right)
    if set(left) != set(right):
        return [f"keys differ: {sorted(set(left) ^ set(right))[:SHOWN]}"]
    return [f"{key}: {left[key]!r} against {right[key]!r}" for key in left if not _close(left[key], right[key], rtol)]


def table_names(hardware: list[str]) -> list[str]:
    return [name.format(hardware=h) for name in TABLES for h in (hardware if "{hardware}" in name else [None])]


def compare(left_dir: Path, right_dir: Path, hardware: list[str], rtol: float = RELATIVE_TOLERANCE) -> dict:
    """Per RQ table (relative path): the differences between the two datasets' versions (empty:
    they agree), or why it could not be compared."""
    found = {}
    for name in table_names(hardware):
        paths = [Path(left_dir) / name, Path(right_dir) / name]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            found[name] = [f"missing: {', '.join(missing)}"]
            continue
        left, right = (pd.read_csv(p) for p in paths)
        if name == "rq5/summary.csv":  # the modes both ran
            modes = set(left["mode"]) & set(right["mode"])
            left, right = (t[t["mode"].isin(modes)].reset_index(drop=True) for t in (left, right))
        found[name] = compare_tables(left, right, rtol)
    # the RQ5 replay's details per model, of the modes both ran
    left_models, right_models = (
        sorted(p.name for p in (Path(d) / "rq5/models").glob("*.json")) for d in (left_dir, right_dir)
    )
    if left_models != right_models:
        found["rq5/models"] = [f"models differ: {left_models} against {right_models}"]
    for name in left_models:
        left, right = (json.loads((Path(d) / "rq5/models" / name).read_text()) for d in (left_dir, right_dir))
        modes = {r["mode"] for r in left} & {r["mode"] for r in right}
        found[f"rq5/models/{name}"] = compare_documents(
            [r for r in left if r["mode"] in modes], [r for r in right if r["mode"] in modes], rtol
        )
    return found


def describe(found: dict) -> str:
    """One line per table: equal, or its differences (the first few)."""
    lines = []
    for name, differences in found.items():
        if not differences:
            lines.append(f"{name}: equal")
        else:
            shown = "; ".join(differences[:SHOWN]) + (
                f"; ... ({len(differences)} in all)" if len(differences) > SHOWN else ""
            )
            lines.append(f"{name}: DIFFERS: {shown}")
    return "\n".join(lines)
