"""Repetitions of a configuration: how many to run, when to stop, and what they say together.

A configuration (one max_new_tokens and batch size of a sweep) is measured several times. With a
fixed count (`repetitions: 3`) every configuration runs that often. With an adaptive policy
(`repetitions: {min: 3, max: 6, ci_half_width_pct: 3}`) a configuration is repeated until the
95% confidence interval of its mean throughput is at most that share of the mean on either side,
or the maximum is reached. Repetitions are interleaved by the supervisor (every configuration's
first, then every second, ...), so drift over time does not line up with batch size.

The statistics here are used both while measuring (in the sweep's environment, which has no
scipy) and by the analysis: one implementation of the t quantile serves both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: Two-sided 95% quantiles of Student's t, t(0.975; df), for df = 1..30.
_T975 = [
    12.7062,
    4.3027,
    3.1824,
    2.7764,
    2.5706,
    2.4469,
    2.3646,
    2.3060,
    2.2622,
    2.2281,
    2.2010,
    2.1788,
    2.1604,
    2.1448,
    2.1314,
    2.1199,
    2.1098,
    2.1009,
    2.0930,
    2.0860,
    2.0796,
    2.0739,
    2.0687,
    2.0639,
    2.0595,
    2.0555,
    2.0518,
    2.0484,
    2.0452,
    2.0423,
]
_Z975 = 1.959964


def t975(df: int) -> float:
    """t(0.975; df): the table above, and past it the Cornish-Fisher expansion around the normal
    quantile (error below 1e-4 from df 30 on)."""
    if df < 1:
        raise ValueError("a t quantile needs at least one degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Summary:
    """n, mean, sample standard deviation, coefficient of variation (std / mean) and the 95%
    t confidence interval of the mean; the spread is None below two values."""

    n: int
    mean: float | None
    std: float | None
    cv: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def ci_half_width_pct(self) -> float | None:
        """Half the CI's width as a percentage of the mean."""
        if self.ci_low is None or not self.mean:
            return None
        return (self.ci_high - self.ci_low) / 2 / abs(self.mean) * 100

    def to_dict(self) -> dict:
        return {**asdict(self), "ci_half_width_pct": self.ci_half_width_pct}


def summarise(values) -> Summary:
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Summary(0, None, None, None, None, None)
    mean = sum(values) / n
    if n < 2:
        return Summary(n, mean, None, None, None, None)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, std / mean if mean else None, mean - half, mean + half)


@dataclass(frozen=True)
class Policy:
    """How often each configuration runs: `minimum` to `maximum` times, stopping early once the
    CI half-width is at most `ci_half_width_pct` of the mean (None: a fixed count)."""

    minimum: int
    maximum: int
    ci_half_width_pct: float | None = None

    @property
    def adaptive(self) -> bool:
        return self.ci_half_width_pct is not None

    @classmethod
    def from_config(cls, config: dict) -> Policy:
        value = config["repetitions"]
        if isinstance(value, int):
            return cls(value, value)
        return cls(value["min"], value["max"], value["ci_half_width_pct"])

    def describe(self) -> dict:
        return {"min": self.minimum, "max": self.maximum, "ci_half_width_pct": self.ci_half_width_pct}

    def stop_reason(self, records: list[dict]) -> str | None:
        """Why a configuration needs no further repetition after `records` (its repetitions so
        far, in order), or None to run another."""
        n = len(records)
        if not self.adaptive:
            return f"fixed count of {self.maximum} reached" if n >= self.maximum else None
        failed = [r["status"] for r in records if r["status"] != "ok"]
        if failed:  # out of memory, an error or a crash repeats itself; nothing to average
            return f"trial did not finish ({failed[-1]})"
        if n < self.minimum:
            return None
        width = summarise(r["throughput_tokens_per_s"] for r in records).ci_half_width_pct
        if width is not None and width <= self.ci_half_width_pct:
            return f"95% CI half-width {width:.1f}% <= {self.ci_half_width_pct:g}% after {n}"
        if n >= self.maximum:
            shown = "n/a" if width is None else f"{width:.1f}%"
            return f"maximum of {self.maximum} reached (95% CI half-width {shown} > {self.ci_half_width_pct:g}%)"
        return None
