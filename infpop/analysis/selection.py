"""The trial selection every analysis of a tidy trials table (results/<dataset>/trials.csv) starts from.

Every analysis starts from `select`: the trials at one max_new_tokens, duplicates resolved, and a
boolean column `counted` saying whether a trial's throughput enters the statistics. Repetitions of
our own measurements are replicates (`duplicates="replicates"`): every one stays a row, the
statistics see them all, and `cells` gives one row per configuration (the mean and its 95%
confidence interval) where a figure or a landscape needs one value. The paper's published
duplicates are not repetitions (re-runs of a sweep); its replay keeps the last, as the paper did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

IDENTITY = ["hardware", "engine", "model", "n_gpus", "max_new_tokens", "batch_size"]
INSUFFICIENT = "insufficient data"
DUPLICATES = ("last", "mean", "replicates")
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
    duplicates: str = "last"  # a trial measured more than once: keep the last (paper), "mean", or "replicates"
    #: engine -> the engine settings whose trials the statistics use (engine_arg_axes; absent: `default`)
    engine_settings: dict = field(default_factory=dict)

    def describe(self) -> dict:
        """The choices as the tables record them (the engine settings where axes made several)."""
        described = asdict(self)
        if not self.engine_settings or set(self.engine_settings.values()) == {"default"}:
            del described["engine_settings"]
        else:
            described["engine_settings"] = ", ".join(f"{e}: {s}" for e, s in sorted(self.engine_settings.items()))
        return described


def read_trials(path) -> pd.DataFrame:
    trials = pd.read_csv(path)
    if trials.empty:
        raise EmptyTrialsError(f"{path}: the trials table is empty (no trial measured or imported)")
    return trials


def of_engine_settings(trials: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    """The trials of each engine's chosen engine settings (engine_arg_axes make several sweeps of one
    engine; the statistics are of one of them). A table without a settings column (the paper's, or
    records made before it) is all default."""
    if "settings" not in trials:
        return trials
    labels = trials["settings"].fillna("default").replace("", "default")
    wanted = trials["engine"].map(lambda engine: chosen.get(engine, "default"))
    return trials[labels == wanted]


def select(trials: pd.DataFrame, settings: AnalysisSettings) -> pd.DataFrame:
    """Trials at settings.max_new_tokens with duplicates resolved, plus `counted`.

    A trial is counted when it has a throughput and finished (`ok`), or ran out of memory
    part-way (`oom`) and settings.include_partial_oom is set. With duplicates="last" the last
    repetition of each identity is kept (rows in file order; `rep` ascending); with "mean" the
    counted repetitions are averaged; with "replicates" every repetition stays a row. An
    `unsupported` trial (a configuration the engine cannot run at all) is left out, as the plan
    leaves out what it knows cannot run: it is no failure of a configuration, there is none.
    """
    if trials.empty:
        raise EmptyTrialsError("the trials table is empty")
    trials = of_engine_settings(trials, settings.engine_settings)
    chosen = trials[(trials["max_new_tokens"] == settings.max_new_tokens) & (trials["status"] != UNSUPPORTED)].copy()
    usable = {"ok", "oom"} if settings.include_partial_oom else {"ok"}
    chosen["counted"] = chosen["status"].isin(usable) & chosen["throughput_tokens_per_s"].notna()
    if settings.duplicates == "replicates":
        pass
    elif settings.duplicates == "last":
        chosen = chosen.sort_values("rep", kind="stable").drop_duplicates(IDENTITY, keep="last")
    elif settings.duplicates == "mean":
        counted = chosen[chosen["counted"]].groupby(IDENTITY, as_index=False)["throughput_tokens_per_s"].mean()
        rest = chosen.sort_values("rep", kind="stable").drop_duplicates(IDENTITY, keep="last")
        rest = rest.drop(columns="throughput_tokens_per_s").merge(counted, on=IDENTITY, how="left")
        rest["counted"] = rest["throughput_tokens_per_s"].notna()
        chosen = rest
    else:
        raise ValueError(f"duplicates must be one of {list(DUPLICATES)}, got {settings.duplicates!r}")
    return chosen.sort_values([*IDENTITY, "rep"] if "rep" in chosen else IDENTITY, kind="stable").reset_index(drop=True)


def cells(selected: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (IDENTITY) of a selected table: its throughput the mean of its
    counted repetitions, with `n_counted`, `std`, `ci_low` and `ci_high` (the 95% t interval of
    the mean, NaN below two values). A configuration is counted when any repetition is; its other
    columns (status, latency, ...) are those of its last counted repetition, or of its last one.
    A table with one row per configuration comes back with n_counted 0 or 1 and no interval."""
    from infpop.measure.repetitions import summarise

    rows = []
    for _, group in selected.groupby(IDENTITY, sort=True):
        counted = group[group["counted"].astype(bool)]
        row = (counted if len(counted) else group).iloc[-1].to_dict()
        summary = summarise(counted["throughput_tokens_per_s"])
        row.update(
            throughput_tokens_per_s=summary.mean if summary.n else row["throughput_tokens_per_s"],
            counted=summary.n > 0,
            n_counted=summary.n,
            std=summary.std,
            ci_low=summary.ci_low,
            ci_high=summary.ci_high,
        )
        if "latency_p95_s" in group and len(counted):
            row["latency_p95_s"] = counted["latency_p95_s"].mean()
        rows.append(row)
    columns = [*selected.columns, *[c for c in ("n_counted", "std", "ci_low", "ci_high") if c not in selected]]
    table = pd.DataFrame(rows, columns=columns)
    for column in ("std", "ci_low", "ci_high"):
        table[column] = table[column].astype(float)
    return table.reset_index(drop=True)


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
    return (
        f"Analysis choices: {settings.max_new_tokens} new tokens; throughput of trials that ran out of "
        f"memory part-way {oom}; duplicate trials resolved by keeping the {settings.duplicates}"
        f"{' value' if settings.duplicates == 'last' else ''}."
    )


def load_selected(path, settings: dict) -> tuple[AnalysisSettings, pd.DataFrame]:
    """What every analysis step starts from: (settings, selected trials of the table at path).
    An empty table raises EmptyTrialsError naming the file."""
    chosen = AnalysisSettings(**settings)
    trials = read_trials(path)
    selected = select(trials, chosen)
    if selected.empty:
        raise EmptyTrialsError(
            f"{path}: no trial at max_new_tokens={chosen.max_new_tokens} (config key analysis.max_new_tokens; "
            f"the table has {sorted(set(trials['max_new_tokens']))})"
        )
    return chosen, selected
