"""What the statistics of RQ2-RQ4 share (analysis/rq2.py, rq3.py, rq4.py): the check that a table
is a selected one, its counted trials, the combinations it holds, groups and pairs of throughputs,
notes joined.

Every statistics function takes the output of `infpop.analysis.selection.select` (one
max_new_tokens, duplicates resolved, a boolean `counted` column) and returns a pandas DataFrame;
only counted trials enter the statistics. Writing files and recording the analysis settings is the
caller's job.

A combination the data cannot support (an engine or hardware not measured, a group with one
value, a landscape where every trial failed) yields a row whose statistics are NaN and whose
`note` starts with "insufficient data"; an empty table raises EmptyTrialsError.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from infpop.analysis.selection import EmptyTrialsError

THROUGHPUT = "throughput_tokens_per_s"
NAN = float("nan")


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


def _paired(frame: pd.DataFrame, on: list[str], column: str, first: str, second: str) -> pd.DataFrame:
    """Counted throughputs of `first` and `second` (values of `column`) matched on `on`."""
    wide = frame.pivot_table(index=on, columns=column, values=THROUGHPUT, aggfunc="mean")
    for side in (first, second):
        if side not in wide.columns:
            wide[side] = np.nan
    return wide[[first, second]].dropna()
