"""Analysis of a tidy trials table (results/<dataset>/trials.csv): the paper's RQ1-RQ4.

Every analysis starts from `select`: the trials at one max_new_tokens, duplicates resolved, and a
boolean column `counted` saying whether a trial's throughput enters the statistics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

IDENTITY = ["hardware", "engine", "model", "n_gpus", "max_new_tokens", "batch_size"]
INSUFFICIENT = "insufficient data"
#: The status of a configuration the engine cannot run (e.g. a tensor-parallel size the model's
#: heads do not divide): treated as excluded from the grid, never drawn or counted.
UNSUPPORTED = "unsupported"


class EmptyTrialsError(ValueError):
    """A trials table with no rows (nothing measured yet, or a wrong file)."""


@dataclass(frozen=True)
class AnalysisSettings:
    """The analysis choices; the defaults are the paper's."""

    max_new_tokens: int = 5  # the paper's analyses use 5 new tokens
    include_partial_oom: bool = True  # the paper counted trials that ran out of memory part-way
    duplicates: str = "last"  # a trial measured more than once: keep the last (paper) or "mean"

    def describe(self) -> dict:
        return asdict(self)


def read_trials(path) -> pd.DataFrame:
    trials = pd.read_csv(path)
    if trials.empty:
        raise EmptyTrialsError(f"{path}: the trials table is empty (no trial measured or imported)")
    return trials


def select(trials: pd.DataFrame, settings: AnalysisSettings) -> pd.DataFrame:
    """Trials at settings.max_new_tokens with duplicates resolved, plus `counted`.

    A trial is counted when it has a throughput and finished (`ok`), or ran out of memory
    part-way (`oom`) and settings.include_partial_oom is set. With duplicates="last" the last
    repetition of each identity is kept (rows in file order; `rep` ascending); with "mean" the
    counted repetitions are averaged. An `unsupported` trial (a configuration the engine cannot
    run at all) is left out, as the plan leaves out what it knows cannot run: it is no failure of
    a configuration, there is none.
    """
    if trials.empty:
        raise EmptyTrialsError("the trials table is empty")
    chosen = trials[(trials["max_new_tokens"] == settings.max_new_tokens)
                    & (trials["status"] != UNSUPPORTED)].copy()
    usable = {"ok", "oom"} if settings.include_partial_oom else {"ok"}
    chosen["counted"] = chosen["status"].isin(usable) & chosen["throughput_tokens_per_s"].notna()
    if settings.duplicates == "last":
        chosen = chosen.sort_values("rep", kind="stable").drop_duplicates(IDENTITY, keep="last")
    elif settings.duplicates == "mean":
        counted = chosen[chosen["counted"]].groupby(IDENTITY, as_index=False)["throughput_tokens_per_s"].mean()
        rest = chosen.sort_values("rep", kind="stable").drop_duplicates(IDENTITY, keep="last")
        rest = rest.drop(columns="throughput_tokens_per_s").merge(counted, on=IDENTITY, how="left")
        rest["counted"] = rest["throughput_tokens_per_s"].notna()
        chosen = rest
    else:
        raise ValueError(f"duplicates must be 'last' or 'mean', got {settings.duplicates!r}")
    return chosen.sort_values(IDENTITY, kind="stable").reset_index(drop=True)


def write_table(table: pd.DataFrame, path, settings: AnalysisSettings) -> None:
    """Write an analysis table as CSV, each row carrying the analysis choices it was made with."""
    from pathlib import Path

    table = table.copy()
    for key, value in settings.describe().items():
        table[f"analysis_{key}"] = value
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


def settings_note(settings: AnalysisSettings) -> str:
    """One line stating the analysis choices, for Markdown outputs."""
    oom = "counted" if settings.include_partial_oom else "excluded"
    return (f"Analysis choices: {settings.max_new_tokens} new tokens; throughput of trials that ran out of "
            f"memory part-way {oom}; duplicate trials resolved by keeping the {settings.duplicates}"
            f"{' value' if settings.duplicates == 'last' else ''}.")


def load_selected(path, settings: dict) -> tuple[AnalysisSettings, pd.DataFrame]:
    """What every analysis step starts from: (settings, selected trials of the table at path).
    An empty table raises EmptyTrialsError naming the file."""
    chosen = AnalysisSettings(**settings)
    trials = read_trials(path)
    selected = select(trials, chosen)
    if selected.empty:
        raise EmptyTrialsError(
            f"{path}: no trial at max_new_tokens={chosen.max_new_tokens} (config key analysis.max_new_tokens; "
            f"the table has {sorted(set(trials['max_new_tokens']))})")
    return chosen, selected
