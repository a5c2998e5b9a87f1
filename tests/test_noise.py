"""Repetitions as data on known throughputs: each configuration's mean, spread and CI, and how
many neighbouring batch sizes the noise leaves apart, checked against values computed by hand
(and scipy's t quantile)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from infpop.analysis.noise import configuration_table, noise_table, stop_reasons


def trials(values: dict[int, list[float]], statuses: dict[int, list[str]] | None = None) -> pd.DataFrame:
    rows = []
    for batch, throughputs in values.items():
        for rep, value in enumerate(throughputs):
            status = (statuses or {}).get(batch, ["ok"] * len(throughputs))[rep]
            rows.append(
                dict(
                    hardware="cpu",
                    engine="hf",
                    model="m",
                    n_gpus=1,
                    max_new_tokens=5,
                    batch_size=batch,
                    rep=rep,
                    status=status,
                    throughput_tokens_per_s=value,
                )
            )
    return pd.DataFrame(rows)


def test_configuration_mean_std_cv_and_t_interval():
    table = configuration_table(trials({1: [100.0, 110.0, 120.0]}))
    row = table.iloc[0]
    assert row["repetitions"] == row["n_ok"] == 3
    assert row["mean_tokens_per_s"] == pytest.approx(110.0)
    assert row["std"] == pytest.approx(10.0)  # sample standard deviation
    assert row["cv"] == pytest.approx(10 / 110)
    half = stats.t.ppf(0.975, 2) * 10 / math.sqrt(3)  # 24.84
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((110 - half, 110 + half), rel=1e-4)
    assert row["ci_half_width_pct"] == pytest.approx(100 * half / 110, rel=1e-4)


def test_only_finished_repetitions_count_and_one_has_no_interval():
    table = configuration_table(
        trials({1: [100.0, 50.0, 120.0], 2: [80.0, 90.0]}, {1: ["ok", "oom", "ok"], 2: ["ok", "timeout"]})
    )
    first, second = table.iloc[0], table.iloc[1]
    assert first["repetitions"] == 3 and first["n_ok"] == 2 and first["mean_tokens_per_s"] == pytest.approx(110.0)
    assert second["n_ok"] == 1 and math.isnan(second["ci_low"]) and math.isnan(second["cv"])


def test_stop_reasons_come_from_the_manifests():
    manifest = {
        "hardware": "cpu",
        "engine": "hf",
        "model": "m",
        "n_gpus": 1,
        "configurations": [{"max_new_tokens": 5, "batch_size": 1, "stop_reason": "CI within 5%"}],
    }
    reasons = stop_reasons([manifest])
    table = configuration_table(trials({1: [1.0, 1.0, 1.0], 2: [1.0, 1.0]}), reasons)
    assert table["stop_reason"].iloc[0] == "CI within 5%" and pd.isna(table["stop_reason"].iloc[1])


def test_noise_counts_the_neighbours_whose_intervals_overlap():
    # b1 and b2 overlap (means 100 and 104, spread 10); b4 (mean 200, spread 1) stands apart
    table = configuration_table(trials({1: [90.0, 100.0, 110.0], 2: [94.0, 104.0, 114.0], 4: [199.0, 200.0, 201.0]}))
    noise = noise_table(table).iloc[0]
    assert noise["configurations"] == 3 and noise["neighbour_pairs"] == 2
    assert noise["overlapping_pairs"] == 1 and noise["overlapping"] == "b1-b2" and noise["distinct"] == 1
    cvs = [10 / 100, 10 / 104, 1 / 200]
    assert noise["median_cv"] == pytest.approx(sorted(cvs)[1]) and noise["max_cv"] == pytest.approx(0.1)


def test_a_configuration_without_an_interval_is_not_a_neighbour():
    table = configuration_table(trials({1: [90.0, 110.0], 2: [100.0], 4: [95.0, 105.0]}))
    noise = noise_table(table).iloc[0]
    # b2 has one finished run: the pair compared is b1-b4, whose intervals overlap
    assert noise["neighbour_pairs"] == 1 and noise["overlapping"] == "b1-b4"
