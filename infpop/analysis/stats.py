"""Statistical primitives for the research questions, tolerant of too little data.

Each function returns a small frozen dataclass (`as_dict()` gives a plain dict). When the data
cannot support the statistic (an empty sample, fewer than two groups, no paired values, no
variation) the statistics are NaN and `note` reads "insufficient data: <reason>" instead of an
exception: a partly measured landscape is a normal state of this pipeline, not an error.
Input values that are NaN are dropped first (a failed trial has no throughput).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats as _stats

from infpop.analysis.selection import INSUFFICIENT

NAN = float("nan")


def insufficient(reason: str) -> str:
    """The note of a statistic that could not be computed: 'insufficient data: <reason>'."""
    return f"{INSUFFICIENT}: {reason}"


def _clean(values: Iterable) -> np.ndarray:
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    return array[~np.isnan(array)]


def _labelled(groups: Mapping | Sequence) -> dict:
    """Groups as {label: clean values}; a sequence of groups is labelled 0, 1, ..."""
    items = groups.items() if isinstance(groups, Mapping) else enumerate(groups)
    return {label: _clean(values) for label, values in items}


class _Result:
    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- one-way ANOVA


@dataclass(frozen=True)
class AnovaResult(_Result):
    F: float
    p: float
    n_groups: int  # groups that entered the test
    n: int  # observations that entered the test
    note: str = ""


def anova(groups: Mapping | Sequence, min_group_size: int = 1) -> AnovaResult:
    """One-way ANOVA (scipy.stats.f_oneway) of the groups' means.

    groups: {label: values} or a sequence of value lists; NaN values are dropped, then groups with
    fewer than `min_group_size` values are left out. The default keeps single-value groups, as
    the paper did (its RQ3 ANOVAs include batch sizes that only one model reached; they add to
    the between-group sum of squares and cost a degree of freedom). The test needs at least two
    groups and at least one group with two values (within-group degrees of freedom N - k >= 1).
    """
    kept = {k: v for k, v in _labelled(groups).items() if len(v) >= max(min_group_size, 1)}
    n = int(sum(len(v) for v in kept.values()))
    if len(kept) < 2:
        return AnovaResult(NAN, NAN, len(kept), n, insufficient(f"{len(kept)} group(s) with values, need two"))
    if n - len(kept) < 1:
        return AnovaResult(NAN, NAN, len(kept), n, insufficient("every group has a single value"))
    values = list(kept.values())
    if np.ptp(np.concatenate(values)) == 0:
        return AnovaResult(NAN, NAN, len(kept), n, insufficient("every value is the same"))
    result = _stats.f_oneway(*values)
    return AnovaResult(float(result.statistic), float(result.pvalue), len(kept), n)


# --------------------------------------------------------------------------- Kruskal-Wallis


@dataclass(frozen=True)
class KruskalResult(_Result):
    H: float
    p: float
    n_groups: int
    n: int
    note: str = ""


def kruskal(groups: Mapping | Sequence) -> KruskalResult:
    """Kruskal-Wallis H test (scipy.stats.kruskal), the rank-based counterpart of `anova` for
    groups whose values are not normal: at least two groups with values, and not every value equal."""
    kept = {k: v for k, v in _labelled(groups).items() if len(v) >= 1}
    n = int(sum(len(v) for v in kept.values()))
    if len(kept) < 2:
        return KruskalResult(NAN, NAN, len(kept), n, insufficient(f"{len(kept)} group(s) with values, need two"))
    values = list(kept.values())
    if np.ptp(np.concatenate(values)) == 0:
        return KruskalResult(NAN, NAN, len(kept), n, insufficient("every value is the same"))
    result = _stats.kruskal(*values)
    return KruskalResult(float(result.statistic), float(result.pvalue), len(kept), n)


# --------------------------------------------------------------------------- Tukey HSD


@dataclass(frozen=True)
class TukeyResult(_Result):
    """Pairwise comparisons; each row: group_a, group_b, mean_diff, p, ci_low, ci_high, reject."""

    pairs: list = field(default_factory=list)
    alpha: float = 0.05
    note: str = ""


def tukey_hsd(groups: Mapping | Sequence, alpha: float = 0.05) -> TukeyResult:
    """Tukey's honestly significant difference test (Tukey-Kramer for unequal group sizes).

    For every pair of groups a < b (in the order given), mean_diff = mean(b) - mean(a) (the
    convention of statsmodels' pairwise_tukeyhsd, which the paper's appendix printed), its
    (1 - alpha) simultaneous confidence interval and the adjusted p-value, both from the
    studentized range distribution with k groups and N - k degrees of freedom, using the pooled
    within-group variance (MSE): se = sqrt(MSE / 2 * (1/n_a + 1/n_b)), p = P(Q > |diff| / se),
    CI = diff -/+ q_crit * se. This equals scipy.stats.tukey_hsd, but like ANOVA above it accepts
    single-value groups (scipy refuses them) as long as N - k >= 1. Empty groups are left out.
    """
    kept = {k: v for k, v in _labelled(groups).items() if len(v) >= 1}
    k, n = len(kept), int(sum(len(v) for v in kept.values()))
    if k < 2:
        return TukeyResult([], alpha, insufficient(f"{k} group(s) with values, need two"))
    dof = n - k
    if dof < 1:
        return TukeyResult([], alpha, insufficient("every group has a single value"))
    mse = sum(float(((v - v.mean()) ** 2).sum()) for v in kept.values()) / dof
    if mse == 0:
        return TukeyResult([], alpha, insufficient("no variation within groups"))
    q_crit = float(_stats.studentized_range.ppf(1 - alpha, k, dof))
    pairs = []
    for (label_a, a), (label_b, b) in combinations(kept.items(), 2):
        diff = float(b.mean() - a.mean())
        se = math.sqrt(mse / 2 * (1 / len(a) + 1 / len(b)))
        p = float(_stats.studentized_range.sf(abs(diff) / se, k, dof))
        p = min(max(p, 0.0), 1.0)
        pairs.append(
            {
                "group_a": label_a,
                "group_b": label_b,
                "mean_diff": diff,
                "p": p,
                "ci_low": diff - q_crit * se,
                "ci_high": diff + q_crit * se,
                "reject": bool(p < alpha),
            }
        )
    return TukeyResult(pairs, alpha)


# --------------------------------------------------------------------------- Wilcoxon


@dataclass(frozen=True)
class WilcoxonResult(_Result):
    W: float
    p: float
    n: int  # complete pairs
    note: str = ""


def _complete_pairs(x: Sequence, y: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """x and y as float arrays of the same length, without the pairs that have a NaN."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape} vs {y.shape}")
    complete = ~(np.isnan(x) | np.isnan(y))
    return x[complete], y[complete]


def wilcoxon_paired(x: Sequence, y: Sequence) -> WilcoxonResult:
    """Paired Wilcoxon signed-rank test of x - y (scipy.stats.wilcoxon, two-sided, its defaults).

    x[i] and y[i] are a pair; a pair with a NaN on either side is dropped. W is scipy's statistic
    (the smaller of the positive and negative rank sums); zero differences are dropped by the
    test ('wilcox'); the p-value is exact for small samples without ties, else normal.
    """
    x, y = _complete_pairs(x, y)
    n = int(len(x))
    if n == 0:
        return WilcoxonResult(NAN, NAN, 0, insufficient("no paired values"))
    if np.all(x == y):
        return WilcoxonResult(NAN, NAN, n, insufficient("every paired difference is zero"))
    result = _stats.wilcoxon(x, y)
    return WilcoxonResult(float(result.statistic), float(result.pvalue), n)


# --------------------------------------------------------------------------- Cliff's delta


@dataclass(frozen=True)
class CliffsDeltaResult(_Result):
    delta: float
    ci_low: float
    ci_high: float
    n_x: int
    n_y: int
    note: str = ""


def cliffs_delta(x: Sequence, y: Sequence, confidence: float = 0.95) -> CliffsDeltaResult:
    """Cliff's delta of x against y with a normal-approximation confidence interval.

    delta = P(X > Y) - P(X < Y), estimated over all len(x) * len(y) pairs (x_i, y_j) as the mean
    of d_ij = sign(x_i - y_j). The samples are treated as independent even when they come from
    paired trials (that is how the paper computed its deltas).

    Confidence interval: delta -/+ z * s, z the standard normal quantile, s^2 Cliff's (1993)
    consistent variance estimate (Long, Feng & Cliff 2003), with m = len(x), n = len(y),
    row means d_i. and column means d_.j of the dominance matrix d_ij:

        s^2 = (n^2 * sum_i (d_i. - delta)^2 + m^2 * sum_j (d_.j - delta)^2
               - sum_ij (d_ij - delta)^2) / (m * n * (m - 1) * (n - 1))

    A negative estimate (possible in small samples) is taken as 0, and the bounds are clipped to
    [-1, 1]. This reproduces the intervals in the paper's appendix. When one sample dominates
    the other completely the interval degenerates to a point. The CI needs two values per sample;
    with fewer it is NaN (delta is still given when both samples have a value).
    """
    x, y = _clean(x), _clean(y)
    m, n = len(x), len(y)
    if m == 0 or n == 0:
        return CliffsDeltaResult(NAN, NAN, NAN, m, n, insufficient("an empty sample"))
    d = np.sign(x[:, None] - y[None, :])
    delta = float(d.mean())
    if m < 2 or n < 2:
        return CliffsDeltaResult(delta, NAN, NAN, m, n, insufficient("the interval needs two values per sample"))
    rows, cols = d.mean(axis=1), d.mean(axis=0)
    variance = (n**2 * ((rows - delta) ** 2).sum() + m**2 * ((cols - delta) ** 2).sum() - ((d - delta) ** 2).sum()) / (
        m * n * (m - 1) * (n - 1)
    )
    half = float(_stats.norm.ppf(0.5 + confidence / 2)) * math.sqrt(max(float(variance), 0.0))
    return CliffsDeltaResult(delta, max(delta - half, -1.0), min(delta + half, 1.0), m, n)


# --------------------------------------------------------------------------- Pearson


@dataclass(frozen=True)
class PearsonResult(_Result):
    r: float
    p: float
    n: int
    note: str = ""


def pearson(x: Sequence, y: Sequence) -> PearsonResult:
    """Pearson's r and its two-sided p-value (scipy.stats.pearsonr) over the complete pairs.

    Needs three complete pairs (with two, r is always +-1) and variation in both variables.
    """
    x, y = _complete_pairs(x, y)
    n = int(len(x))
    if n < 3:
        return PearsonResult(NAN, NAN, n, insufficient(f"{n} complete pair(s), need three"))
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return PearsonResult(NAN, NAN, n, insufficient("a variable does not vary"))
    result = _stats.pearsonr(x, y)
    return PearsonResult(float(result.statistic), float(result.pvalue), n)
