"""Selection of the trials the statistics use, and the comparison's agreement rule."""

from __future__ import annotations

import pandas as pd
import pytest

from infpop.analysis.comparison import agreement
from infpop.analysis.selection import AnalysisSettings, EmptyTrialsError, load_selected, select, write_table
from infpop.trials import TRIAL_COLUMNS


def trials(rows):
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


TABLE = trials(
    [
        ("a100", "hf", "m", 1, 5, 1, 0, "ok", 10.0),
        ("a100", "hf", "m", 1, 5, 1, 1, "ok", 14.0),  # a duplicate: the last is kept
        ("a100", "hf", "m", 1, 5, 2, 0, "oom", 20.0),  # ran out of memory part-way
        ("a100", "hf", "m", 1, 5, 4, 0, "skipped_oom", None),
        ("a100", "hf", "m", 1, 10, 1, 0, "ok", 99.0),  # other max_new_tokens
    ]
)


def test_select_follows_the_papers_choices_by_default():
    chosen = select(TABLE, AnalysisSettings())
    assert list(chosen["batch_size"]) == [1, 2, 4]
    assert list(chosen["throughput_tokens_per_s"].fillna(-1)) == [14.0, 20.0, -1]
    assert list(chosen["counted"]) == [True, True, False]


def test_select_leaves_out_unsupported_configurations_as_the_plan_leaves_out_exclusions():
    table = pd.concat(
        [
            TABLE,
            trials(
                [("a100", "vllm", "m", 8, 5, 1, 0, "unsupported", None), ("a100", "vllm", "m", 1, 5, 1, 0, "ok", 30.0)]
            ),
        ],
        ignore_index=True,
    )
    chosen = select(table, AnalysisSettings())
    assert "unsupported" not in set(chosen["status"]) and list(chosen.loc[chosen["engine"] == "vllm", "n_gpus"]) == [1]


def test_select_switches():
    assert list(select(TABLE, AnalysisSettings(include_partial_oom=False))["counted"]) == [True, False, False]
    mean = select(TABLE, AnalysisSettings(duplicates="mean"))
    assert mean.loc[mean["batch_size"] == 1, "throughput_tokens_per_s"].item() == 12.0
    assert list(select(TABLE, AnalysisSettings(max_new_tokens=10))["throughput_tokens_per_s"]) == [99.0]
    with pytest.raises(ValueError, match="duplicates"):
        select(TABLE, AnalysisSettings(duplicates="first"))


def test_replicates_keep_every_repetition_and_give_the_statistics_their_spread():
    from infpop.analysis.rq2 import rq2_anova
    from infpop.analysis.rq3 import rq3_anova

    replicates = select(TABLE, AnalysisSettings(duplicates="replicates"))
    assert list(replicates["throughput_tokens_per_s"].fillna(-1)) == [10.0, 14.0, 20.0, -1]
    # one model, three repetitions of three batch sizes: the ANOVA has its F and p (with "last" a
    # single value per group says "insufficient data")
    rows = [
        ("cpu", "vllm", "m", g, 5, b, r, "ok", 100.0 * b + 10 * r + g)
        for g in (1, 2)
        for b in (1, 2, 4)
        for r in range(3)
    ]
    chosen = select(trials(rows), AnalysisSettings(duplicates="replicates"))
    anova = rq3_anova(chosen)
    assert anova["F"].notna().all() and anova["p"].notna().all() and (anova["n"] == 9).all()
    assert rq2_anova(chosen)["F"].notna().all()
    last = rq3_anova(select(trials(rows), AnalysisSettings(duplicates="last")))
    assert last["F"].isna().all() and last["note"].str.startswith("insufficient data").all()


def test_empty_tables_stop_with_the_file_named(tmp_path):
    empty = tmp_path / "trials.csv"
    TABLE.iloc[:0].to_csv(empty, index=False)
    with pytest.raises(EmptyTrialsError, match=f"{empty}: the trials table is empty"):
        load_selected(empty, {})
    full = tmp_path / "full.csv"
    TABLE.to_csv(full, index=False)
    with pytest.raises(EmptyTrialsError, match=r"no trial at max_new_tokens=20 .*analysis.max_new_tokens"):
        load_selected(full, {"max_new_tokens": 20})


def test_tables_record_the_choices(tmp_path):
    write_table(pd.DataFrame({"x": [1]}), tmp_path / "t.csv", AnalysisSettings())
    written = pd.read_csv(tmp_path / "t.csv")
    assert written.iloc[0].to_dict() == {
        "x": 1,
        "analysis_max_new_tokens": 5,
        "analysis_include_partial_oom": True,
        "analysis_duplicates": "last",
    }


@pytest.mark.parametrize(
    "paper, ours, expected",
    [
        ("37.6", 37.62, "exact"),
        ("37.6", 37.66, "within rounding"),
        ("5.44", 5.4459, "within rounding"),
        ("4", 4.0, "exact"),
        ("4", 8.0, "differs"),
        ("4.0", 4.4, "differs"),
        ("4.80", 4.8097, "within rounding"),
        ("0.8762", 0.87618, "exact"),
        ("2.01", 2.02e-116, "differs"),
        ("1.9", None, "not computed"),
    ],
)
def test_agreement_at_the_printed_precision(paper, ours, expected):
    assert agreement(paper, ours) == expected
