"""Repetitions: the t quantile and confidence interval against scipy, and the adaptive policy's
stopping rule on hand-made records (no engine)."""

from __future__ import annotations

import pytest
from scipy import stats

from infpop.measure.repetitions import Policy, summarise, t975


@pytest.mark.parametrize("df", [1, 2, 5, 10, 29, 30, 31, 45, 100, 1000])
def test_t_quantile_matches_scipy(df):
    assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-4)


def test_summary_matches_scipy():
    values = [1302.0, 1503.0, 1108.0, 1410.0]
    summary = summarise(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=stats.tmean(values), scale=stats.sem(values))
    assert summary.n == 4 and summary.mean == pytest.approx(stats.tmean(values))
    assert summary.std == pytest.approx(stats.tstd(values))
    assert (summary.ci_low, summary.ci_high) == (pytest.approx(low, rel=1e-4), pytest.approx(high, rel=1e-4))
    assert summary.cv == pytest.approx(stats.tstd(values) / stats.tmean(values))
    assert summary.ci_half_width_pct == pytest.approx((high - low) / 2 / stats.tmean(values) * 100, rel=1e-4)
    assert summarise([5.0]).ci_low is None and summarise([]).mean is None


def trials(*values, status="ok"):
    return [{"status": status, "throughput_tokens_per_s": v} for v in values]


def test_fixed_count_stops_at_its_count_whatever_the_spread():
    policy = Policy.from_config({"repetitions": 3})
    assert not policy.adaptive
    assert policy.stop_reason(trials(100, 300)) is None
    assert policy.stop_reason(trials(100, 300, 50)) == "fixed count of 3 reached"
    assert policy.stop_reason(trials(None, status="oom")) is None  # a fixed count repeats failures too


def test_adaptive_stops_at_the_ci_target_or_the_maximum_or_a_failure():
    policy = Policy.from_config({"repetitions": {"min": 3, "max": 5, "ci_half_width_pct": 3}})
    assert policy.stop_reason(trials(100, 100.5)) is None  # below the minimum
    assert policy.stop_reason(trials(100, 100.5, 100.2)).startswith("95% CI half-width 0.6% <= 3% after 3")
    assert policy.stop_reason(trials(100, 120, 90)) is None  # too wide, room left
    assert policy.stop_reason(trials(100, 120, 90, 110, 95)).startswith("maximum of 5 reached (95% CI half-width")
    assert policy.stop_reason(trials(100) + trials(None, status="oom")) == "trial did not finish (oom)"
    assert policy.stop_reason(trials(None, status="skipped_oom")) == "trial did not finish (skipped_oom)"
