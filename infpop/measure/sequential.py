"""Within-trial sequential stopping (config `budget.sequential`): a trial times a random,
stratified sample of its prompt batches, in a seeded order, and stops once its throughput
estimate's 95% confidence interval is narrow enough, or when every batch was timed.

Why stratified: the paper's prompt order is length-ascending, so a batch's position says how long
its prompts are, and the first k batches are the shortest (taking them is biased). The batches are
cut into `strata` contiguous blocks of positions (sizes differing by at most one, at least two
batches each, so each block's spread can be estimated); the order visits the blocks round by round,
each round in a random order, taking a random untimed batch of each: after r rounds every block has
r batches timed, and no block gets a second before every block has its first. The order is seeded
by the config's seed and the trial's identity, so a re-run times the same batches.

The estimator: the combined ratio estimator of stratified sampling (Cochran, Sampling Techniques,
3rd ed., section 6.11). With N_h batches in block h, n_h of them timed, x the new tokens and y the
seconds of a batch, each block's sample means are expanded to its whole size, X = sum_h N_h mean(x)_h
and Y = sum_h N_h mean(y)_h: the estimated tokens and seconds of the whole benchmark, whose ratio
X / Y is the estimated throughput (with every batch timed it is exactly total tokens / total time,
the full trial's figure). A ratio rather than a mean of per-batch throughputs because throughput is
a ratio of sums (a long batch weighs more); combined rather than separate because one block has too
few batches for a ratio of its own.

Its confidence interval: the ratio's linearised (delta-method) variance, from the residuals
d = y - R x around the estimated seconds per token R = Y / X, within each block, with the finite
population correction (1 - n_h / N_h), which makes a block timed whole contribute nothing:
var(R) = sum_h N_h^2 (1 - n_h/N_h) s_d,h^2 / n_h / X^2. The interval of R is R +- t se(R) with
Student's t at n - H degrees of freedom (n batches timed, H blocks: a small sample's interval is
wider than the normal's); the throughput's is its inverse, [1 / (R + t se), 1 / (R - t se)]
(asymmetric), and its half-width is quoted relative, 100 t se / R percent (to first order the same
for the throughput).

That variance assumes the batches' times independent. On a shared machine they are not: the
machine's speed drifts within a trial, so batches timed close together are alike, and the
interval ran short (bench/README.md: in one run, the whole trial's throughput fell outside the
interval at the stop in half of the trials). So the half-width is the larger of that one and the
random groups' (Wolter, Introduction to Variance Estimation, chapter 2): the order's rounds are
groups timed close together, each a stratified sample of one batch per block, and the spread of
their ratio estimates holds the drift between rounds (_rounds_half_width). There is no interval
before two whole rounds. Stopping on the interval's own width (optional stopping) makes its
coverage a little below the nominal 95% at small samples: min_batches and the two rounds guard
against stopping on a lucky few; bench/sequential.py measures the coverage on real engines.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import random
from dataclasses import dataclass, field

#: The interval's confidence level.
CONFIDENCE = 0.95
#: Why a sequential trial stopped timing batches (a failed trial stops with its status instead).
CI_MET, ALL_BATCHES = "ci_met", "all_batches"


@dataclass(frozen=True)
class Settings:
    """The config's `budget.sequential`: the target half-width (percent of the estimate), the
    fewest batches timed before stopping, the number of blocks of positions, the order's seed."""

    ci_half_width_pct: float
    min_batches: int
    strata: int
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict) -> Settings | None:
        """The config's settings; None where sequential stopping is off (absent or null)."""
        section = (config.get("budget") or {}).get("sequential")
        return cls(**section) if section else None

    def as_dict(self) -> dict:
        return {
            "ci_half_width_pct": self.ci_half_width_pct,
            "min_batches": self.min_batches,
            "strata": self.strata,
            "seed": self.seed,
        }


def trial_seed(seed: int, *identity) -> int:
    """A seed from the config's seed and a trial's identity (not Python's hash, which changes
    between processes)."""
    text = "|".join(map(str, (seed, *identity)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def strata(n_batches: int, wanted: int) -> list[range]:
    """Contiguous blocks of batch positions: `wanted` of them, fewer where a block would hold
    fewer than two batches (one is needed for the estimate, a second for its spread), at least one;
    sizes differ by at most one, the larger first."""
    count = max(1, min(wanted, n_batches // 2))
    size, extra = divmod(n_batches, count)
    blocks, start = [], 0
    for h in range(count):
        end = start + size + (1 if h < extra else 0)
        blocks.append(range(start, end))
        start = end
    return blocks


def sample_order(blocks: list[range], seed: int) -> list[int]:
    """Every batch position once, in the order a sequential trial times them (module docstring):
    round by round over the blocks, each round in a random order, a random untimed batch of each."""
    rng = random.Random(seed)
    remaining = [rng.sample(list(block), len(block)) for block in blocks]
    order = []
    while any(remaining):
        visit = [h for h in range(len(blocks)) if remaining[h]]
        rng.shuffle(visit)
        order.extend(remaining[h].pop() for h in visit)
    return order


@functools.lru_cache(maxsize=4096)  # asked after every batch timed, for a few degrees of freedom
def _t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


@dataclass(frozen=True)
class Estimate:
    """A throughput estimate from the batches timed so far (module docstring). The interval and
    its half-width are None while they cannot be estimated (a block with fewer than two batches
    timed and some untimed; too few degrees of freedom)."""

    tokens_per_s: float | None
    ci_low: float | None
    ci_high: float | None
    half_width_pct: float | None
    batches_timed: int
    batches_total: int
    #: the whole benchmark's estimated seconds (all batches), the sum of those timed once all are
    full_seconds: float | None


def estimate(
    blocks: list[range], timed: dict[int, tuple[float, float]], confidence: float = CONFIDENCE, finite: bool = True
) -> Estimate:
    """The combined ratio estimate of the throughput and its interval from `timed`: batch position
    -> (new tokens, seconds). `finite`: the interval of the whole benchmark's throughput in this
    run (a block timed whole has no sampling error); False: of the throughput such runs have, the
    batches' times being a draw of their noise (no finite population correction), which is a full
    trial's own interval from its per-batch times."""
    total = sum(len(block) for block in blocks)
    samples = [[timed[i] for i in block if i in timed] for block in blocks]
    if any(not s for s in samples):  # a block without a timed batch: nothing to expand it from
        return Estimate(None, None, None, None, len(timed), total, None)
    tokens = sum(len(block) * sum(x for x, _ in s) / len(s) for block, s in zip(blocks, samples, strict=True))
    seconds = sum(len(block) * sum(y for _, y in s) / len(s) for block, s in zip(blocks, samples, strict=True))
    if tokens <= 0 or seconds <= 0:
        return Estimate(None, None, None, None, len(timed), total, None)
    per_token = seconds / tokens  # R: seconds per token
    variance, estimable = 0.0, True
    for block, s in zip(blocks, samples, strict=True):
        n, size = len(s), len(block)
        correction = 1 - n / size if finite else 1.0
        if correction == 0:
            continue  # timed whole: no sampling error
        if n < 2:
            estimable = False
            break
        residuals = [y - per_token * x for x, y in s]
        mean = sum(residuals) / n
        spread = sum((d - mean) ** 2 for d in residuals) / (n - 1)
        variance += size * size * correction * spread / n
    df = len(timed) - len(blocks)
    throughput = 1 / per_token
    if not estimable or (variance > 0 and df < 1):
        return Estimate(throughput, None, None, None, len(timed), total, seconds)
    half = (_t_quantile(df, confidence) if variance > 0 else 0.0) * math.sqrt(variance) / tokens
    if finite and len(timed) < total:
        drift = _rounds_half_width(blocks, timed, confidence)
        if drift is None:  # fewer than two whole rounds: drift between rounds cannot be bounded yet
            return Estimate(throughput, None, None, None, len(timed), total, seconds)
        half = max(half, drift * per_token)
    low = 1 / (per_token + half)
    high = 1 / (per_token - half) if per_token > half else math.inf
    return Estimate(throughput, low, high, 100 * half / per_token, len(timed), total, seconds)


def _rounds_half_width(blocks: list[range], timed: dict[int, tuple[float, float]], confidence: float) -> float | None:
    """The interval's relative half-width by random groups (Wolter, Introduction to Variance
    Estimation, 2nd ed., chapter 2): round g of the order holds the g-th batch timed in each block,
    a stratified sample of one batch per block, timed close together; each whole round's ratio
    estimate R_g, and var(R) = s^2(R_g) / G (1 - n / N) over the G whole rounds, Student's t at
    G - 1 degrees of freedom. Unlike the within-block variance, it holds when the machine's speed
    drifts during the trial (batch times correlated in time): the drift between rounds is in the
    spread of the R_g. None before two whole rounds. `timed` is in the order timed."""
    starts = [block.start for block in blocks]
    seen = [0] * len(blocks)  # batches timed so far per block
    rounds: list[list[float]] = []  # per round: expanded tokens, expanded seconds, blocks in it
    for i, (x, y) in timed.items():  # one pass, in the order timed
        h = bisect.bisect_right(starts, i) - 1
        g, seen[h] = seen[h], seen[h] + 1
        if g == len(rounds):
            rounds.append([0.0, 0.0, 0])
        size = len(blocks[h])
        rounds[g][0] += size * x
        rounds[g][1] += size * y
        rounds[g][2] += 1
    ratios = [seconds / tokens for tokens, seconds, count in rounds if count == len(blocks)]
    if len(ratios) < 2:
        return None
    mean = sum(ratios) / len(ratios)
    spread = sum((r - mean) ** 2 for r in ratios) / (len(ratios) - 1)
    fraction = len(timed) / sum(len(block) for block in blocks)
    se = math.sqrt(spread / len(ratios) * (1 - fraction))
    return _t_quantile(len(ratios) - 1, confidence) * se / mean if se > 0 else 0.0


def stop_reason(current: Estimate, settings: Settings) -> str | None:
    """Why to stop timing batches now (CI_MET, ALL_BATCHES), or None to time the next."""
    if current.batches_timed >= current.batches_total:
        return ALL_BATCHES
    if current.batches_timed < settings.min_batches or current.half_width_pct is None:
        return None
    return CI_MET if current.half_width_pct <= settings.ci_half_width_pct else None


@dataclass
class SequentialTrial:
    """One trial's sample: the order its batches are timed in, what each gave, when to stop."""

    settings: Settings
    n_batches: int
    seed: int  # the trial's own (trial_seed)
    blocks: list[range] = field(init=False)
    order: list[int] = field(init=False)
    timed: dict[int, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.blocks = strata(self.n_batches, self.settings.strata)
        self.order = sample_order(self.blocks, self.seed)

    def add(self, index: int, new_tokens: float, seconds: float) -> str | None:
        """Record one timed batch; why to stop now, or None to go on."""
        self.timed[index] = (new_tokens, seconds)
        return stop_reason(self.estimate(), self.settings)

    def estimate(self) -> Estimate:
        return estimate(self.blocks, self.timed)

    def summary(self, stopped: str) -> dict:
        """The record's `sequential` block (workflow/schemas/trial.schema.yaml)."""
        current = self.estimate()
        return summary(self.settings, stopped, current, list(self.timed), len(self.blocks), self.seed)


def summary(
    settings: Settings, stopped: str, current: Estimate | None, indices: list[int], blocks: int, seed: int | None
) -> dict:
    """A trial record's `sequential` block: its settings (the target half-width as
    target_ci_half_width_pct), why it stopped (ci_met, all_batches, or
    the failed trial's status), the batches timed (positions, in the order timed) of how many, and
    the estimate with its interval (null where there is none)."""
    return {
        "target_ci_half_width_pct": settings.ci_half_width_pct,
        "min_batches": settings.min_batches,
        "strata": settings.strata,
        "seed": settings.seed,
        "trial_seed": seed,
        "stopped": stopped,
        "strata_used": blocks,
        "batches_timed": len(indices),
        "batches_total": current.batches_total if current else None,
        "batch_indices": indices,
        "estimator": "stratified combined ratio, t interval of its linearised variance",
        "tokens_per_s": current.tokens_per_s if current else None,
        "ci_low": current.ci_low if current else None,
        "ci_high": None if current is None or current.ci_high in (None, math.inf) else current.ci_high,
        "ci_half_width_pct": current.half_width_pct if current else None,
        "full_seconds_estimate": current.full_seconds if current else None,
    }
