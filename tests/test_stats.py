"""The statistical primitives against small hand-computed examples, and too little data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from infpop.analysis.selection import INSUFFICIENT
from infpop.analysis.stats import anova, cliffs_delta, pearson, tukey_hsd, wilcoxon_paired

Z95 = scipy_stats.norm.ppf(0.975)  # 1.959964...


def is_insufficient(result) -> bool:
    return result.note.startswith(INSUFFICIENT)


# --------------------------------------------------------------------------- ANOVA


def test_anova_two_groups_by_hand():
    # A = 1,2,3 (mean 2), B = 4,5,6 (mean 5), grand mean 3.5
    # SSB = 3*(2-3.5)^2 + 3*(5-3.5)^2 = 13.5, df 1;  SSW = (1+0+1) + (1+0+1) = 4, df 4, MSW = 1
    # F = 13.5 / 1 = 13.5; p = P(F(1, 4) > 13.5)
    result = anova({"A": [1, 2, 3], "B": [4, 5, 6]})
    assert result.F == pytest.approx(13.5)
    assert result.p == pytest.approx(scipy_stats.f.sf(13.5, 1, 4))
    assert (result.n_groups, result.n, result.note) == (2, 6, "")


def test_anova_keeps_single_value_groups():
    # groups 1,2,3 | 5 | 7,8.5: means 2, 5, 7.75; N = 6, grand mean 26.5/6 = 4.41667
    # SSB = 3*(2-4.41667)^2 + (5-4.41667)^2 + 2*(7.75-4.41667)^2 = 17.52083 + 0.34028 + 22.22222 = 40.08333
    # SSW = 2 + 0 + 2*0.75^2 = 3.125;  F = (40.08333 / 2) / (3.125 / 3) = 19.24
    result = anova([[1, 2, 3], [5], [7, 8.5]])
    assert result.F == pytest.approx(19.24)
    assert result.p == pytest.approx(scipy_stats.f.sf(19.24, 2, 3))
    assert result.n_groups == 3
    # with min_group_size=2 the single-value group is left out: 1,2,3 vs 7,8.5
    assert anova([[1, 2, 3], [5], [7, 8.5]], min_group_size=2).n_groups == 2


def test_anova_drops_nan_and_empty_groups():
    result = anova({"A": [1, 2, 3, float("nan")], "B": [4, 5, 6], "C": [], "D": [float("nan")]})
    assert result.F == pytest.approx(13.5)
    assert result.n_groups == 2


@pytest.mark.parametrize(
    "groups, reason",
    [
        ({"A": [1, 2, 3]}, "group"),  # one group
        ({}, "group"),  # no group
        ({"A": [1.0], "B": [2.0]}, "single value"),  # no within-group degrees of freedom
        ({"A": [float("nan")], "B": [1, 2]}, "group"),  # NaN only: one group left
        ({"A": [3, 3], "B": [3, 3]}, "same"),  # no variation at all
    ],
)
def test_anova_insufficient(groups, reason):
    result = anova(groups)
    assert math.isnan(result.F) and math.isnan(result.p)
    assert is_insufficient(result) and reason in result.note


# --------------------------------------------------------------------------- Tukey HSD


def test_tukey_by_hand_and_against_scipy():
    # groups 1,2,3 | 4,5,6 | 7,8,9: within sums of squares 2 + 2 + 2 = 6, df = 9 - 3 = 6, MSE = 1
    # se = sqrt(MSE / 2 * (1/3 + 1/3)) = sqrt(1/3); mean differences 3, 6, 3
    groups = {1: [1, 2, 3], 2: [4, 5, 6], 4: [7, 8, 9]}
    result = tukey_hsd(groups)
    assert result.note == ""
    table = {(row["group_a"], row["group_b"]): row for row in result.pairs}
    assert list(table) == [(1, 2), (1, 4), (2, 4)]
    se = math.sqrt(1 / 3)
    assert table[(1, 2)]["mean_diff"] == pytest.approx(3.0)
    assert table[(1, 4)]["mean_diff"] == pytest.approx(6.0)
    assert table[(1, 2)]["p"] == pytest.approx(scipy_stats.studentized_range.sf(3 / se, 3, 6))
    q_crit = scipy_stats.studentized_range.ppf(0.95, 3, 6)
    assert table[(1, 4)]["ci_low"] == pytest.approx(6 - q_crit * se)
    # scipy's tukey_hsd reports mean(i) - mean(j); ours is mean(b) - mean(a)
    reference = scipy_stats.tukey_hsd(*groups.values())
    ci = reference.confidence_interval()
    for i, j, (a, b) in [(0, 1, (1, 2)), (0, 2, (1, 4)), (1, 2, (2, 4))]:
        assert table[(a, b)]["mean_diff"] == pytest.approx(-reference.statistic[i, j])
        assert table[(a, b)]["p"] == pytest.approx(reference.pvalue[i, j], abs=1e-6)
        assert table[(a, b)]["ci_low"] == pytest.approx(-ci.high[i, j], abs=1e-6)
        assert table[(a, b)]["ci_high"] == pytest.approx(-ci.low[i, j], abs=1e-6)
        assert table[(a, b)]["reject"] == bool(reference.pvalue[i, j] < 0.05)


def test_tukey_accepts_a_single_value_group():
    # 1,2,3 | 5 | 7,8.5: MSE = 3.125 / 3; pair (0, 1): diff 3, se = sqrt(MSE / 2 * (1/3 + 1))
    result = tukey_hsd([[1, 2, 3], [5], [7, 8.5]])
    first = result.pairs[0]
    se = math.sqrt(3.125 / 3 / 2 * (1 / 3 + 1))
    assert first["mean_diff"] == pytest.approx(3.0)
    assert first["p"] == pytest.approx(scipy_stats.studentized_range.sf(3 / se, 3, 3))


@pytest.mark.parametrize("groups", [{"A": [1, 2]}, {"A": [1.0], "B": [2.0]}, {"A": [1, 1], "B": [2, 2]}, {}])
def test_tukey_insufficient(groups):
    result = tukey_hsd(groups)
    assert result.pairs == [] and is_insufficient(result)


# --------------------------------------------------------------------------- Wilcoxon


def test_wilcoxon_all_positive_by_hand():
    # differences 1..5, all positive: W+ = 15, W- = 0, W = min = 0
    # exact two-sided p = 2 * P(W <= 0) = 2 * 1/32 = 0.0625
    result = wilcoxon_paired([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
    assert (result.W, result.n, result.note) == (0.0, 5, "")
    assert result.p == pytest.approx(0.0625)


def test_wilcoxon_mixed_signs_by_hand():
    # differences 1, 2, 3, 4, -5 (ranks 1..5): W+ = 10, W- = 5, W = 5
    # subsets of {1..5} with sum <= 5: sums 0,1,2,3,3(1+2),4,4(1+3),5,5(1+4),5(2+3) -> 10 of 32
    # exact two-sided p = 2 * 10/32 = 0.625
    result = wilcoxon_paired([1, 2, 3, 4, 0], [0, 0, 0, 0, 5])
    assert result.W == 5.0
    assert result.p == pytest.approx(0.625)


def test_wilcoxon_drops_incomplete_pairs():
    result = wilcoxon_paired([1, 2, 3, 4, 5, float("nan"), 7], [0, 0, 0, 0, 0, 1, float("nan")])
    assert result.n == 5 and result.p == pytest.approx(0.0625)


@pytest.mark.parametrize(
    "x, y, reason",
    [([], [], "no paired values"), ([float("nan")], [1.0], "no paired values"), ([1, 2], [1, 2], "zero")],
)
def test_wilcoxon_insufficient(x, y, reason):
    result = wilcoxon_paired(x, y)
    assert math.isnan(result.W) and math.isnan(result.p)
    assert is_insufficient(result) and reason in result.note


def test_wilcoxon_rejects_unequal_lengths():
    with pytest.raises(ValueError):
        wilcoxon_paired([1, 2], [1])


# --------------------------------------------------------------------------- Cliff's delta


def test_cliffs_delta_by_hand():
    # x = 2,4,6; y = 1,3. d_ij = sign(x_i - y_j):
    #   x=2: +1 -1   row mean 0
    #   x=4: +1 +1   row mean 1
    #   x=6: +1 +1   row mean 1
    # column means 1 and 1/3; delta = 4/6 = 2/3
    # sum_i (d_i. - d)^2 = 4/9 + 1/9 + 1/9 = 2/3;  sum_j (d_.j - d)^2 = 1/9 + 1/9 = 2/9
    # sum_ij (d_ij - d)^2 = 5 * (1/3)^2 + (5/3)^2 = 30/9 = 10/3
    # m = 3, n = 2: var = (n^2 * 2/3 + m^2 * 2/9 - 10/3) / (m n (m-1)(n-1)) = (8/3 + 2 - 10/3) / 12 = 1/9
    # CI = 2/3 -/+ 1.96 * 1/3 = (0.0133, 1.3200), the upper bound clipped to 1
    result = cliffs_delta([2, 4, 6], [1, 3])
    assert result.delta == pytest.approx(2 / 3)
    assert result.ci_low == pytest.approx(2 / 3 - Z95 / 3)
    assert result.ci_high == 1.0
    assert (result.n_x, result.n_y, result.note) == (3, 2, "")


def test_cliffs_delta_ties_and_direction():
    # x = 1,2 vs y = 1,2: d = [0, -1; +1, 0], delta 0; swapping the samples flips the sign
    assert cliffs_delta([1, 2], [1, 2]).delta == 0.0
    assert cliffs_delta([1, 3, 5], [2, 2]).delta == pytest.approx(1 / 3)  # (-1-1+1+1+1+1)/6
    assert cliffs_delta([2, 2], [1, 3, 5]).delta == pytest.approx(-1 / 3)


def test_cliffs_delta_confidence_level():
    # the same variance 1/9 with a 90% interval: 2/3 -/+ 1.645/3
    result = cliffs_delta([2, 4, 6], [1, 3], confidence=0.90)
    assert result.ci_low == pytest.approx(2 / 3 - scipy_stats.norm.ppf(0.95) / 3)


def test_cliffs_delta_insufficient():
    empty = cliffs_delta([], [1, 2])
    assert math.isnan(empty.delta) and is_insufficient(empty)
    single = cliffs_delta([5.0], [1, 2, float("nan")])  # delta defined, interval not
    assert single.delta == 1.0 and math.isnan(single.ci_low) and is_insufficient(single)
    assert (single.n_x, single.n_y) == (1, 2)


# --------------------------------------------------------------------------- Pearson


def test_pearson_by_hand():
    # x = 1,2,3, y = 1,3,2: deviations (-1,0,1) and (-1,1,0); r = 1 / sqrt(2 * 2) = 0.5
    # t = r sqrt(n-2) / sqrt(1 - r^2) = 0.5 / sqrt(0.75) = 1/sqrt(3), 1 df (Cauchy):
    # p = 1 - (2/pi) atan(1/sqrt(3)) = 1 - (2/pi)(pi/6) = 2/3
    result = pearson([1, 2, 3], [1, 3, 2])
    assert result.r == pytest.approx(0.5)
    assert result.p == pytest.approx(2 / 3)
    assert (result.n, result.note) == (3, "")


def test_pearson_drops_incomplete_pairs():
    result = pearson([1, 2, 3, np.nan, 9], [1, 3, 2, 4, np.nan])
    assert result.n == 3 and result.r == pytest.approx(0.5)


@pytest.mark.parametrize("x, y", [([1, 2], [2, 1]), ([], []), ([1, 2, 3], [4, 4, 4]), ([1, np.nan, 3], [1, 2, np.nan])])
def test_pearson_insufficient(x, y):
    result = pearson(x, y)
    assert math.isnan(result.r) and math.isnan(result.p) and is_insufficient(result)


def test_results_are_plain_dicts():
    assert anova({"A": [1, 2, 3], "B": [4, 5, 6]}).as_dict()["F"] == pytest.approx(13.5)
    assert set(tukey_hsd([[1, 2], [3, 4]]).as_dict()) == {"pairs", "alpha", "note"}
