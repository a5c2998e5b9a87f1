"""The evaluation loop every search shares: it counts evaluations against the budget, keeps the
history, and says why the search stopped."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from infpop.optimise.optimisers import Optimiser
from infpop.optimise.space import Outcome, Point

logger = logging.getLogger(__name__)


class StopSearch(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Evaluation:
    number: int
    n_gpus: int
    batch_size: int
    status: str
    value: float | None
    throughput: float | None
    latency_p95_s: float | None
    reused: bool
    best_value: float | None  # best feasible value so far, this evaluation included


@dataclass
class History:
    optimiser: str
    seed: int
    budget: int
    evaluations: list[Evaluation] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def best(self) -> Evaluation | None:
        feasible = [e for e in self.evaluations if e.value is not None]
        return max(feasible, key=lambda e: e.value) if feasible else None

    def best_after(self, k: int) -> float | None:
        """Best value within the first k evaluations (the last best if the search stopped sooner)."""
        done = self.evaluations[:k]
        return done[-1].best_value if done else None

    def to_json(self) -> dict:
        return {
            "optimiser": self.optimiser,
            "seed": self.seed,
            "budget": self.budget,
            "stop_reason": self.stop_reason,
            "evaluations": [asdict(e) for e in self.evaluations],
        }


def search(
    optimiser: Optimiser,
    evaluate: Callable[[Point], Outcome],
    budget: int,
    stop_value: float | None = None,
    announce: bool = False,
) -> History:
    """Run `optimiser` on `evaluate` for at most `budget` evaluations.

    stop_value: stop as soon as a value at least this good is found. A replay knows the optimum of
    its landscape; once found, no later evaluation can change the best, so stopping there gives
    the same result for less work. announce: log each evaluation (live tuning's, which take time).
    """
    if budget < 1:
        raise ValueError(f"the evaluation budget must be at least 1, got {budget}")
    history = History(optimiser.name, optimiser.seed, budget)

    def counted(point: Point) -> Outcome:
        outcome = evaluate(point)
        best = history.evaluations[-1].best_value if history.evaluations else None
        if outcome.value is not None and (best is None or outcome.value > best):
            best = outcome.value
        history.evaluations.append(
            Evaluation(
                len(history.evaluations) + 1,
                int(point[0]),
                int(point[1]),
                outcome.status,
                outcome.value,
                outcome.throughput,
                outcome.latency_p95_s,
                outcome.reused,
                best,
            )
        )
        if announce:
            shown = "infeasible" if outcome.value is None else f"{outcome.value:,.4g}"
            logger.info(
                f"  evaluation {len(history.evaluations)}/{budget}: n_gpus={point[0]} batch_size={point[1]} "
                f"-> {outcome.status}, {shown}{' (reused)' if outcome.reused else ''}"
            )
        if stop_value is not None and best is not None and best >= stop_value:
            raise StopSearch("reached the optimum")
        if len(history.evaluations) >= budget:
            raise StopSearch("budget spent")
        return outcome

    try:
        optimiser.drive(counted)
        history.stop_reason = "every point of the space evaluated or ruled out"
    except StopSearch as stop:
        history.stop_reason = stop.reason
    return history
