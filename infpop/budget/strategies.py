"""The budget strategies: which trials of a grid to measure, and how much of each, for a fraction
of the full grid's device-hours (docs/budget.md).

Everything here measures through a `Ledger`: it answers a trial (its status, its throughput, its
device-seconds), remembers what it answered (a trial asked for twice is charged once) and what it
cost, and refuses to start a trial once the budget is spent (`BudgetSpent`). The study answers
trials from the rehearsal (`Rehearsal`: the rehearsal engine's table lookup, per-batch noise and
virtual clock, infpop.measure.engines.rehearsal), so the strategies run on the paper's grid in
seconds.

The strategies:

- `oom_bisection`: the out-of-memory edge of a (model, GPUs, max_new_tokens) by bisection over
  its batch sizes (out of memory is monotone in the batch size: one that fails rules out every
  larger one, one that runs proves every smaller one does), in about log2(batch sizes) probes,
  then the batch sizes below the edge; none above it;
- `coarse_grid`: every other batch size (and the largest), then the neighbours of the best and
  the batch sizes between the last that ran and the first that did not (the edge): the optimum
  and the edge at full resolution, the rest at half;
- `optimiser`: the optimiser of infpop.optimise (landscape_ei) choosing which (GPUs, batch size)
  of a landscape to measure next, until its share of the budget is spent;
- `adaptive_repetitions`: each measured configuration repeated by the repetitions policy
  (infpop.measure.repetitions.Policy) until its confidence interval meets the target, after every
  configuration's first run and while the budget lasts;
- `sequential`: within-trial sequential stopping as a real trial does it (budget.sequential,
  infpop.measure.sequential: the same seeded stratified order, estimator and stopping rule) on
  the rehearsal's per-batch times; the trial is charged the batches it timed and its throughput is
  the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from infpop.measure import sequential
from infpop.measure.engines.rehearsal import (
    RehearsedFailure,
    Row,
    answering_row,
    plan_trial,
    recorded_load_seconds,
    trial_rng,
)
from infpop.measure.repetitions import Policy
from infpop.optimise.optimisers import make
from infpop.optimise.search import StopSearch
from infpop.optimise.space import OUT_OF_MEMORY, Outcome, Space

STRATEGIES = ("oom_bisection", "coarse_grid", "optimiser", "adaptive_repetitions", "sequential")
#: The optimiser that chooses what to measure next: ours, which knows that out of memory is
#: monotone in the batch size and never proposes a point twice.
OPTIMISER = "landscape_ei"
#: Statuses whose throughput the paper's analyses count (a trial that ran out of memory part-way
#: keeps the throughput of the part that ran, AnalysisSettings.include_partial_oom).
COUNTED = ("ok", "oom")

Sweep = tuple[str, str, str, int]  # (hardware, engine, model, n_gpus)
Slice = tuple[str, str, str, int, int]  # a sweep and its max_new_tokens: one batch-size axis
Trial = tuple[str, str, str, int, int, int]  # a slice and its batch size


class BudgetSpent(Exception):
    """The budget is spent: no further trial starts."""


@dataclass(frozen=True)
class Measured:
    """One measured trial (all its repetitions): its status, its throughput (the mean of its
    counted repetitions; None: none counted) and what it cost."""

    trial: Trial
    status: str
    throughput: float | None
    repetitions: int
    device_seconds: float

    @property
    def counted(self) -> bool:
        return self.status in COUNTED and self.throughput is not None

    @property
    def out_of_memory(self) -> bool:
        return self.status in OUT_OF_MEMORY


def batch_sizes_of(prompts: int, batch_size: int) -> list[int]:
    """The batches a trial of `prompts` prompts sends at `batch_size` (the last one smaller)."""
    full, rest = divmod(prompts, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


@dataclass
class Rehearsal:
    """Trials answered as the rehearsal engine answers them: the row of the trials table
    (infpop.measure.engines.rehearsal.read_table) for each repetition, its batches' seconds with
    the per-batch noise `batch_noise_cv` (per engine) seeded by `seed` and the trial, on the
    virtual clock; a sweep's model load once, the first time one of its trials runs
    (`load_seconds(sweep)`: the table's, else an estimate)."""

    table: dict[Sweep, dict[tuple[int, int], list[Row]]]
    seed: int
    batch_noise_cv: dict[str, float]
    prompts: int
    load_estimate: Callable[[Sweep], float]
    duplicates: str = "last"
    trial_timeout_s: float = 3600.0

    def load_seconds(self, sweep: Sweep) -> float:
        return recorded_load_seconds(self.table.get(sweep, {})) or self.load_estimate(sweep)

    def answer(self, trial: Trial, rep: int, stopping: sequential.Settings | None) -> tuple[str, float | None, float]:
        """One repetition of a trial: (status, throughput, seconds on the virtual clock)."""
        hardware, engine, model, n_gpus, tokens, batch_size = trial
        row = answering_row(self.table.get(trial[:4], {}).get((tokens, batch_size), []), rep, self.duplicates)
        if row is None:
            return "unsupported", None, 0.0
        batches = batch_sizes_of(self.prompts, batch_size)
        where = f"{hardware}/{engine}/{model}/g{n_gpus}"
        rng = trial_rng(self.seed, where, tokens, batch_size, rep)
        plan = plan_trial(row, tokens, batches, self.batch_noise_cv[engine], rng, self.trial_timeout_s)
        failure = plan.failure
        waited = getattr(failure, "simulated_seconds", 0.0) if failure is not None else 0.0
        if plan.crash:
            status = "crashed"
        elif failure is None:
            status = "ok"
        else:
            status = failure.status if isinstance(failure, RehearsedFailure) else "oom"
        if not plan.seconds:
            return status, None, waited
        if stopping is None or status != "ok":
            seconds = sum(plan.seconds)
            return status, sum(batches[: len(plan.seconds)]) * tokens / seconds, seconds + waited
        identity = (where, tokens, batch_size, rep)
        sample = sequential.SequentialTrial(stopping, len(batches), sequential.trial_seed(stopping.seed, *identity))
        for index in sample.order:
            if sample.add(index, batches[index] * tokens, plan.seconds[index]):
                break
        seconds = sum(plan.seconds[i] for i in sample.timed)
        return status, sample.estimate().tokens_per_s, seconds + waited


@dataclass
class Ledger:
    """What a run measured and spent. `measure(trial)` runs a trial once (a second ask returns the
    first answer, free) and charges its device-seconds (seconds x GPUs) and its sweep's load the
    first time; `repeat(trial, policy)` runs further repetitions until the policy stops. Neither
    starts a trial that would take the spending past `budget_seconds` by `margin` x
    `estimate(trial)` (the cost model's, with the plan's safety factor; None: once it is past): it
    raises BudgetSpent instead."""

    source: Rehearsal
    budget_seconds: float = math.inf
    stopping: sequential.Settings | None = None  # within-trial sequential stopping, None: off
    estimate: Callable[[Trial], float] | None = None
    margin: float = 1.0
    measured: dict[Trial, Measured] = field(default_factory=dict)
    records: dict[Trial, list[dict]] = field(default_factory=dict)
    loaded: set[Sweep] = field(default_factory=set)
    spent: float = 0.0
    refused: Trial | None = None  # the trial the budget could not afford (None: it never ran out)

    @property
    def left(self) -> float:
        return self.budget_seconds - self.spent

    def _afford(self, trial: Trial) -> None:
        expected = self.margin * self.estimate(trial) if self.estimate is not None else 0.0
        if self.spent >= self.budget_seconds or self.spent + expected > self.budget_seconds:
            self.refused = trial
            raise BudgetSpent(f"budget of {self.budget_seconds / 3600:,.1f} device-hours spent")

    def measure(self, trial: Trial) -> Measured:
        if trial in self.measured:
            return self.measured[trial]
        self._afford(trial)
        self.records[trial] = []
        measured = self._run(trial, 0.0)
        sweep = trial[:4]
        if sweep not in self.loaded:  # charged after its first trial: a real load is known then
            self.loaded.add(sweep)
            self.spent += self.source.load_seconds(sweep) * trial[3]
        return measured

    def repeat(self, trial: Trial, policy: Policy) -> Measured:
        """Repetitions of a measured trial until `policy` stops (a failed or unsupported trial
        is not repeated)."""
        records = self.records[trial]
        while records[-1]["status"] != "unsupported" and policy.stop_reason(records) is None:
            self._afford(trial)
            self._run(trial, self.measured[trial].device_seconds)
        return self.measured[trial]

    def _run(self, trial: Trial, cost_so_far: float) -> Measured:
        records = self.records[trial]
        status, throughput, seconds = self.source.answer(trial, len(records), self.stopping)
        cost = seconds * trial[3]
        self.spent += cost
        records.append({"status": status, "throughput_tokens_per_s": throughput})
        values = [r["throughput_tokens_per_s"] for r in records if r["status"] in COUNTED]
        values = [v for v in values if v is not None]
        self.measured[trial] = Measured(
            trial, status, sum(values) / len(values) if values else None, len(records), cost_so_far + cost
        )
        return self.measured[trial]


def adaptive_repetitions(ledger: Ledger, policy: Policy) -> None:
    """Every measured trial repeated by the policy, in the order they were measured, while the
    budget lasts: on a budget, repetitions come after every configuration's first run."""
    for trial in list(ledger.measured):
        ledger.repeat(trial, policy)


# -- one batch-size axis: a (model, GPUs, max_new_tokens) ---------------------------------------------


def every_batch(ledger: Ledger, where: Slice, batch_sizes: list[int]) -> None:
    """The full grid's way: every batch size."""
    for batch_size in batch_sizes:
        ledger.measure((*where, batch_size))


def oom_edge(ledger: Ledger, where: Slice, batch_sizes: list[int]) -> int:
    """The index of the first batch size that runs out of memory (len(batch_sizes): none does),
    by bisection: the smallest first (a slice where it fails has no edge to look for), the largest
    next, then halving the interval between the last that ran and the first that did not."""
    low, high = -1, len(batch_sizes)  # batch_sizes[low] fits (or none tried), batch_sizes[high] fails
    probes = [0, len(batch_sizes) - 1]
    while probes or high - low > 1:
        index = probes.pop(0) if probes else (low + high) // 2
        if not low < index < high:
            continue
        if ledger.measure((*where, batch_sizes[index])).out_of_memory:
            high = index
        else:
            low = index
    return high


def oom_bisection(ledger: Ledger, where: Slice, batch_sizes: list[int]) -> None:
    """The edge by bisection, then every batch size below it."""
    edge = oom_edge(ledger, where, batch_sizes)
    every_batch(ledger, where, batch_sizes[:edge])


def coarse_grid(ledger: Ledger, where: Slice, batch_sizes: list[int], edge: int | None = None) -> None:
    """Every other batch size (and the largest) below the edge (`edge`: known already, e.g. by
    bisection; None: found on the way, ascending, a failure stopping the ascent), then the
    neighbours of the best and every batch size between the last that ran and the edge."""
    top = len(batch_sizes) if edge is None else edge
    coarse = sorted(set(range(0, top, 2)) | ({top - 1} if top else set()))
    ran = []
    for index in coarse:
        result = ledger.measure((*where, batch_sizes[index]))
        if result.out_of_memory:
            top = index
            break
        ran.append(index)
    refine = set()
    counted = [i for i in ran if ledger.measured[(*where, batch_sizes[i])].counted]
    if counted:
        best = max(counted, key=lambda i: ledger.measured[(*where, batch_sizes[i])].throughput)
        refine |= {best - 1, best + 1}
    if ran:
        refine |= set(range(ran[-1] + 1, top))  # up to the edge, at full resolution
    for index in sorted(i for i in refine if 0 <= i < top):
        ledger.measure((*where, batch_sizes[index]))


# -- a landscape: (hardware, engine, model) over GPUs and batch sizes ---------------------------------


def optimise_landscape(
    ledger: Ledger,
    landscape: tuple[str, str, str],
    tokens: int,
    space: Space,
    budget_seconds: float,
    seed: int,
) -> None:
    """The optimiser chooses which (GPUs, batch size) to measure next, told first what the
    landscape has measured already, until `budget_seconds` of the ledger's spending is used or
    nothing is left to propose."""
    optimiser = make(OPTIMISER, space, seed)
    until = ledger.spent + budget_seconds

    def outcome(result: Measured) -> Outcome:
        value = result.throughput if result.counted else None
        return Outcome(value, result.status, result.throughput)

    for point in space.points:
        known = ledger.measured.get((*landscape, point[0], tokens, point[1]))
        if known is not None:
            optimiser.tell(point, outcome(known))

    def evaluate(point) -> Outcome:
        if ledger.spent >= until:
            raise StopSearch("the landscape's share of the budget is spent")
        try:
            return outcome(ledger.measure((*landscape, point[0], tokens, point[1])))
        except BudgetSpent:
            raise StopSearch("the next trial does not fit in the budget") from None

    try:
        optimiser.drive(evaluate)
    except StopSearch:
        pass


def slices(landscapes: Iterable[tuple[str, str, str]], n_gpus: list[int], tokens: list[int]) -> list[Slice]:
    return [(*landscape, g, t) for landscape in landscapes for g in n_gpus for t in tokens]
