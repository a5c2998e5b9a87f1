"""vLLM's auto_tune against InfPop's tuning of the same server knobs (issue 17, item 6).

vLLM's algorithm, reimplemented from `benchmarks/auto_tune/auto_tune.sh` of vLLM 0.32.0 (upstream
commit 5df63a720, https://github.com/vllm-project/vllm/blob/5df63a720/benchmarks/auto_tune/auto_tune.sh,
lines 139-278; the same algorithm in its older versions 3ed2c21a and 01277f9c):

- every combination of max_num_seqs x max_num_batched_tokens, in the lists' order, a fresh server
  each;
- a load point at rate inf; if its P99 E2EL is within the latency limit the setting passes at inf;
- otherwise the rate starts at int(request throughput at inf) + 1 and goes down by 1 req/s, one
  load point each, until the P99 E2EL is within the limit (the setting passes at that rate) or the
  rate reaches 0 (it fails);
- the best setting is the passing one with the highest request throughput, measured at the rate it
  passed at (strictly higher: the earlier wins a tie).

What is not copied: its search for gpu_memory_utilization (a start test, meaningless on the CPU),
`pkill`, the profiling run at the end, its sleeps; a combination vLLM refuses as a whole is left out
(the serving plan's rule) rather than run to fail. Its 1000 prompts at rate inf and 100 below are
`serve.requests` for every load point here: that leaves auto_tune's rate-inf probes shorter than
vLLM's, which favours auto_tune in device-minutes.

InfPop's tuning searches the same settings on integer rates for the highest rate that holds the
SLO, to `resolution` (serve.tuning.resolution: rates closer than that share are not told apart; 0:
to 1 req/s, auto_tune's step), and the setting whose capacity (then goodput) is highest:

- the settings most likely to serve most first (max_num_seqs x max_num_batched_tokens descending);
- the first setting: a load point at rate inf bounds its capacity (int(throughput) + 1, as
  auto_tune's), then capacity_bisection over the rates below it, each probe at the split of least
  expected device-seconds (a load point of a fixed number of requests lasts requests / rate: the
  search leans towards the cheaper, higher rates; analysis.cheapest_splits);
- the incumbent's capacity is the rate it held the SLO at, or at rate inf its goodput (a server
  that holds the SLO when everything arrives at once sustains its completion rate, not more);
- every later setting first gets one load point at the incumbent's capacity raised by the
  resolution (at least + 1 req/s): only a setting that holds the SLO there beats it by more, so
  one that does not costs a single load point; one that does is searched upward (rates + 1, + 2,
  + 4, ... until one fails, then bisection between the two);
- with `line_search` (serve.tuning.line_search): the settings sharing the other knobs are a run of
  max_num_seqs, walked from the most down; a setting that fails the bar with its SLO attainment's
  interval below that of the setting before it (at the nearest rate at or above) ends its run, and
  the rest of the run is skipped (capacity taken as unimodal in max_num_seqs);
- with an incumbent that held the SLO at rate inf, a later setting is tried at inf first (one
  load point where every setting holds it there, as auto_tune's);
- a probe passes when the lower bound of its goodput's 95% interval reaches `target` x its rate
  (at inf: its SLO attainment's lower bound reaches `target`; analysis.Probe.passes), so neither
  one lucky load point nor a server falling behind carries a setting.

- with shared servers (serve.tuning.share_servers, SharedServers): one server per value of the
  other knobs, the largest max_num_seqs; a smaller one is emulated on it by the client, and a
  setting is answered without a load point where a load point of its server at the same rate
  never held as many requests as its limit or more than the setting's max_num_seqs; a smaller
  max_num_batched_tokens is measured on the server with the largest where that server's steps
  never came near it (steps.py), else on its own.

Both query load points through a Ledger, which counts invocations (load points run or reused) and
device-seconds (each load point's duration and warm-up, every server start a load point caused, and
the start of a server it found already up once): on
a live server (LiveSource: ServeSession, records kept and reused) or on a table of measured load
points (ReplaySource: the records of a run, queried instead of a server; a rate the table lacks is
`missing` and fails the probe, counted in the result).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from infpop.measure.repetitions import Summary, summarise
from infpop.serve import steps
from infpop.serve.analysis import Capacity, Probe, capacity_bisection, session_prober
from infpop.serve.metrics import Slo
from infpop.serve.plan import ServeJob, plan, rate_text, settings_of
from infpop.serve.session import ServeSession

AUTO_TUNE_SOURCE = (
    "vLLM 0.32.0 benchmarks/auto_tune/auto_tune.sh (commit 5df63a720), "
    "https://github.com/vllm-project/vllm/blob/5df63a720/benchmarks/auto_tune/auto_tune.sh"
)
INF = math.inf
#: Doublings above the incumbent's capacity before InfPop's tuning tries a setting at rate inf.
GALLOP_STEPS = 6
BUDGET = "max_num_batched_tokens"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """One server setting of the grid: its label (the plan's) and the knobs' values;
    `counts_steps`: its server's step counts bound its steps (steps.counts_bound_steps), without
    which no other budget's server stands for it."""

    label: str
    knobs: tuple[tuple[str, object], ...]
    counts_steps: bool = field(default=True, compare=False)

    @property
    def size(self) -> float:
        """max_num_seqs x max_num_batched_tokens (the product of the numeric knobs): how much the
        scheduler may batch."""
        return math.prod(v for _, v in self.knobs if isinstance(v, (int, float)) and not isinstance(v, bool))


class Source(Protocol):
    def probe(self, setting: Setting, rate: float, emulated_max_num_seqs: int | None = None) -> Probe:
        """A load point at `rate` on the server of `setting` (`emulated_max_num_seqs`: LoadPoint's)."""


@dataclass
class Ledger:
    """A source with the cost of what one algorithm asked of it: invocations (load points run or
    reused, SharedServers' detours too; not those it inferred without one), those measured now rather
    than reused, the device-seconds (load points' durations and warm-ups, every server start a probe
    caused, the start of a server it found up once) and every probe."""

    source: Source
    probes: list[tuple[Setting, Probe]] = field(default_factory=list)
    started: set = field(default_factory=set)
    device_s: float = 0.0

    def probe(self, setting: Setting, rate: float) -> Probe:
        result = self.source.probe(setting, rate)
        for detour in getattr(self.source, "take_detours", list)():
            self._count(setting, detour)
        self._count(setting, result)
        return result

    def _count(self, setting: Setting, result: Probe) -> None:
        self.probes.append((setting, result))
        server = result.server or setting.label
        ran = not result.inferred and result.status != "missing"
        if ran and (result.server_started or server not in self.started):
            self.started.add(server)  # every start it caused, else the start of the server it used once
            self.device_s += result.server_start_s
        if not result.inferred:
            self.device_s += result.duration_s + result.warmup_s
        how = " (inferred)" if result.inferred else " (detour)" if result.detour else " (kept)" if result.reused else ""
        on = f" on {result.server}" if result.server and result.server != setting.label else ""
        logger.info(
            f"  {setting.label} rate {rate_text(result.rate)}{on}: {result.status}, P99 E2EL "
            f"{_number(result.e2el_p99_ms)} ms, attainment {_number(result.attainment)}, "
            f"{_number(result.request_throughput)} req/s, at most {_number(result.peak_in_flight)} in flight{how}"
        )

    @property
    def invocations(self) -> int:
        return sum(not p.inferred for _, p in self.probes)

    @property
    def inferred(self) -> int:
        return sum(p.inferred for _, p in self.probes)

    @property
    def servers(self) -> int:
        """The servers this algorithm's load points were measured on."""
        return len(self.started)

    @property
    def measured_now(self) -> int:
        return sum(not p.reused and not p.inferred and p.status != "missing" for _, p in self.probes)

    @property
    def missing(self) -> int:
        return sum(p.status == "missing" for _, p in self.probes)


@dataclass
class Choice:
    """An algorithm's best setting and the load point it was judged by (None: no setting passed)."""

    algorithm: str
    setting: Setting | None
    probe: Probe | None
    ledger: Ledger
    #: settings left without a load point, and why (InfPop's line search)
    skipped: dict[Setting, str] = field(default_factory=dict)


def _number(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def _holds_latency(probe: Probe, latency_ms: float) -> bool:
    """auto_tune's test: the load point ran and its P99 E2EL is within the limit."""
    return probe.status == "ok" and probe.e2el_p99_ms is not None and probe.e2el_p99_ms <= latency_ms


def auto_tune(source: Source, grid: Sequence[Setting], latency_ms: float) -> Choice:
    """vLLM's auto_tune (the module's docstring) on `grid`, in its order."""
    ledger = Ledger(source)
    best: tuple[float, Setting, Probe] | None = None
    for setting in grid:
        at_inf = ledger.probe(setting, INF)
        passed = at_inf if _holds_latency(at_inf, latency_ms) else None
        if passed is None:
            rate = int(at_inf.request_throughput or 0) + 1  # bash's ${throughput%.*} + 1
            while rate > 0:
                result = ledger.probe(setting, float(rate))
                if _holds_latency(result, latency_ms):
                    passed = result
                    break
                rate -= 1
        if passed is not None:
            throughput = passed.request_throughput or 0.0
            if best is None or throughput > best[0]:
                best = (throughput, setting, passed)
    return Choice("auto_tune", best[1] if best else None, best[2] if best else None, ledger)


def _level(probe: Probe) -> float:
    """The requests per second a setting sustains within the SLO, by the load point it passed: its
    rate, or at rate inf (no offered rate) its goodput."""
    return probe.goodput or 0.0 if math.isinf(probe.rate) else probe.rate


def _better(a: Probe, b: Probe | None) -> bool:
    """A higher sustained rate, then a higher goodput."""
    if b is None:
        return True
    return (_level(a), a.goodput or 0.0) > (_level(b), b.goodput or 0.0)


def infpop_tune(
    source: Source, grid: Sequence[Setting], target_share: float, resolution: float = 0.0, line_search: bool = False
) -> Choice:
    """InfPop's tuning (the module's docstring): capacity under the SLO per setting by bisection,
    each later setting first tested just above the incumbent's capacity (`resolution`: by that
    share, at least 1 req/s); with `line_search`, a run of max_num_seqs ends at the first setting
    that does significantly worse than the one before it (_worse)."""
    ledger = Ledger(source)
    # the settings most likely to serve most first; with shared servers, one server's at a time
    placed = source.placed if isinstance(source, SharedServers) else {s: (s, None) for s in grid}
    order = sorted(grid, key=lambda s: (-placed[s][0].size, placed[s][0].label, -s.size))
    best_setting, best = None, None
    last_of_run: dict[tuple, Setting] = {}  # per value of the other knobs, the last setting searched
    stopped: dict[tuple, str] = {}  # the runs the line search ended, and why
    skipped: dict[Setting, str] = {}
    for setting in order:
        run = _other_knobs(setting)
        if run in stopped:
            skipped[setting] = stopped[run]
            logger.info(f"  {setting.label}: skipped, {skipped[setting]}")
            continue
        before, last_of_run[run] = last_of_run.get(run), setting
        if best is None:
            at_inf = ledger.probe(setting, INF)
            if at_inf.passes(target_share):
                best_setting, best = setting, at_inf
                continue
            bound = int(at_inf.request_throughput or 0) + 1
            found = capacity_bisection(
                lambda r, s=setting: ledger.probe(s, r),
                range(1, bound + 1),
                target_share,
                resolution=resolution,
                cost=_load_point_cost(at_inf),
            )
        else:
            if math.isinf(best.rate):  # another setting that holds the SLO at inf competes on goodput
                at_inf = ledger.probe(setting, INF)
                if at_inf.passes(target_share):
                    if _better(at_inf, best):
                        best_setting, best = setting, at_inf
                    continue
            bar = _above(_level(best), resolution)
            first = ledger.probe(setting, float(bar))
            if not first.passes(target_share):
                if line_search and before is not None and _worse(ledger, first, before):
                    stopped[run] = (
                        f"{setting.label} did significantly worse at {bar} req/s than {before.label} "
                        "(capacity taken as unimodal in max_num_seqs)"
                    )
                continue
            found = _gallop(ledger, setting, first, target_share, resolution=resolution)
        if found.best is not None and _better(found.best, best):
            best_setting, best = setting, found.best
    return Choice("infpop", best_setting, best, ledger, skipped)


def _above(level: float, resolution: float) -> int:
    """The lowest integer rate a setting must hold to beat a capacity of `level` by more than the
    resolution (and by at least 1 req/s)."""
    return max(int(level) + 1, math.ceil(level * (1 + resolution)))


def _worse(ledger: Ledger, failed: Probe, before: Setting) -> bool:
    """A setting failed `failed`; the setting before it in its run of max_num_seqs did
    significantly better at that rate or the nearest above it that it was measured at: its SLO
    attainment's 95% interval lies above this one's. Attainment falls as the rate rises, so `before`
    does better at `failed`'s rate too. (The nearest rate, not any: on a noisy machine the best of
    several load points would end runs by luck.)"""
    if failed.status != "ok" or not failed.requests:
        return False
    above = [
        p
        for judged, p in ledger.probes
        if judged == before and not p.detour and p.status == "ok" and p.requests and p.rate >= failed.rate
    ]
    if not above:
        return False
    nearest = min(above, key=lambda p: p.rate)
    return nearest.attainment_ci[0] > failed.attainment_ci[1]


def _load_point_cost(measured: Probe):
    """What a load point at a rate costs in device-seconds, by one measured on the same setting: its
    requests (a fixed number) arrive over requests / rate seconds, and it warms up as `measured`
    did. None where `measured` did not run (the bisection then halves)."""
    if measured.status != "ok" or not measured.requests:
        return None
    return lambda rate: measured.requests / rate + measured.warmup_s


def _gallop(
    ledger: Ledger, setting: Setting, passed: Probe, target: float, steps: int = GALLOP_STEPS, resolution: float = 0.0
) -> Capacity:
    """Capacity above a rate that passed: rates passed + 1, + 2, + 4, ... until one fails, then
    bisection between the last that passed and it. A setting still passing after `steps`
    doublings is tried at rate inf: its capacity is inf if it passes there, else it is bisected
    below its rate-inf throughput (as the first setting is)."""
    low, step, probes = int(passed.rate), 1, [passed]
    for _ in range(steps):
        result = ledger.probe(setting, float(low + step))
        probes.append(result)
        if not result.passes(target):
            found = capacity_bisection(
                lambda r: ledger.probe(setting, r),
                range(low, low + step + 1),
                target,
                known_pass=low,
                known_fail=low + step,
                resolution=resolution,
                cost=_load_point_cost(passed),
            )
            found.probes = probes + found.probes
            if found.best is None:
                found.rate = low
                found.probes.append(next(p for p in probes if p.rate == low))
            return found
        low, step = low + step, step * 2
    at_inf = ledger.probe(setting, INF)
    if at_inf.passes(target):
        return Capacity(INF, [*probes, at_inf], "passes at inf")
    bound = max(int(at_inf.request_throughput or 0) + 1, low)
    found = capacity_bisection(
        lambda r: ledger.probe(setting, r),
        range(low, bound + 1),
        target,
        known_pass=low,
        resolution=resolution,
        cost=_load_point_cost(at_inf),
    )
    found.probes = probes + [at_inf] + found.probes
    if found.best is None:
        found.rate = low
        found.probes.append(next(p for p in probes if p.rate == low))
    return found


# --------------------------------------------------------------------------- sources


def _seqs(setting: Setting) -> int | None:
    return dict(setting.knobs).get("max_num_seqs")


def _budget(setting: Setting) -> int | None:
    return dict(setting.knobs).get(BUDGET)


def _other_knobs(setting: Setting, but: tuple[str, ...] = ("max_num_seqs",)) -> tuple:
    """The knobs other than `but`; by default other than max_num_seqs: a shared server's, and a run
    of the line search's."""
    return tuple((k, v) for k, v in setting.knobs if k not in but)


def shared_servers(grid: Sequence[Setting]) -> dict[Setting, tuple[Setting, int | None]]:
    """Per setting, the server InfPop's tuning measures it on and the max_num_seqs its client
    emulates there (None: the server's own setting): one server per value of the other knobs, the
    setting with the most max_num_seqs. A grid without max_num_seqs: every setting its own."""
    groups: dict[tuple, list[Setting]] = defaultdict(list)
    for setting in grid:
        groups[_other_knobs(setting)].append(setting)
    placed = {}
    for members in groups.values():
        if any(_seqs(s) is None for s in members):
            placed.update({s: (s, None) for s in members})
            continue
        server = max(members, key=_seqs)
        placed.update({s: (server, None if s == server else _seqs(s)) for s in members})
    return placed


def budget_hosts(grid: Sequence[Setting]) -> dict[Setting, Setting]:
    """Per setting with a smaller max_num_batched_tokens than others of its knobs, the server
    with the largest (and the most max_num_seqs) that may stand for it (SharedServers). None for
    settings without both knobs, or whose servers' step counts do not bound their steps
    (steps.counts_bound_steps)."""
    groups: dict[tuple, list[Setting]] = defaultdict(list)
    for setting in grid:
        if _seqs(setting) is not None and _budget(setting) is not None and setting.counts_steps:
            groups[_other_knobs(setting, ("max_num_seqs", BUDGET))].append(setting)
    hosts = {}
    for members in groups.values():
        host = max(members, key=lambda s: (_budget(s), _seqs(s)))
        if all(_seqs(s) <= _seqs(host) for s in members):
            hosts.update({s: host for s in members if _budget(s) < _budget(host)})
    return hosts


class SharedServers:
    """InfPop's tuning on fewer servers (serve.tuning.share_servers).

    - Each setting has its server (shared_servers): one per value of the knobs other than
      max_num_seqs, the largest; a smaller max_num_seqs is emulated by the client
      (LoadPoint.emulated_max_num_seqs).
    - A setting with a smaller max_num_batched_tokens is first measured on the server with the
      largest (budget_hosts), the client emulating its max_num_seqs. That load point stands for the
      setting where the server's step counts show its token budget never came into play
      (Probe.within_budget): a server with the setting's own budget would have scheduled
      every step alike. Where it did come into play, the load point is a detour (its cost counts,
      its measures do not). The host is tried only where its load points have step counts and none
      at the same rate or a lower one reached the budget (a prompt longer than the budget always
      does). Once a setting is not tried on the host, or its load point there does not stand for
      it, the settings of that budget or a smaller one go to their own servers (so that, with
      nothing but max_num_seqs and max_num_batched_tokens as knobs, the host is not started again).
    - A setting is answered without a load point when a server that may stand for it already ran
      the same stream (the same rate) with fewer requests in flight at its peak than that load
      point's limit (so the limit never bound; or with the setting's own limit, on the host) and no
      more than the setting's max_num_seqs, and, on the host, within the setting's budget: a server
      limited to that setting would have scheduled every request of that run as it was scheduled."""

    def __init__(self, source: Source, grid: Sequence[Setting]):
        self.source = source
        self.placed = shared_servers(grid)
        self.hosts = budget_hosts(grid)
        self.measured: dict[tuple[str, float], list[tuple[Probe, int | None]]] = defaultdict(list)
        #: the settings measured on their own servers only, since the host's steps reached a budget
        #: at least as large as theirs
        self.own_server: set[Setting] = set()
        self._detours: list[Probe] = []

    def take_detours(self) -> list[Probe]:
        """The detours of the last probe (Ledger counts them)."""
        taken, self._detours = self._detours, []
        return taken

    def _stands_for(self, earlier: Probe, limit: int | None, setting: Setting, host: Setting | None) -> bool:
        seqs = _seqs(setting)
        if earlier.status != "ok" or seqs is None or limit is None:
            return False
        same_limit = host is not None and limit == seqs
        never_bound = earlier.peak_in_flight is not None and earlier.peak_in_flight < limit
        if not same_limit and not (never_bound and earlier.peak_in_flight <= seqs):
            return False
        return host is None or earlier.within_budget(_budget(setting), _budget(host))

    def _worth_trying(self, host: Setting, setting: Setting, rate: float) -> bool:
        """Whether the host's load point at this rate may stand for the setting: the host reports
        its steps (one of its load points has step counts), and none of its load points at this rate
        or a lower one reached the setting's budget (more requests arrive per step at a higher
        rate, so its steps would reach it too)."""
        measured = [
            (at, earlier)
            for (label, at), points in self.measured.items()
            if label == host.label
            for earlier, _ in points
        ]
        return any(earlier.largest_step is not None for _, earlier in measured) and not any(
            at <= rate and earlier.status == "ok" and not earlier.within_budget(_budget(setting), _budget(host))
            for at, earlier in measured
        )

    def _run(self, server: Setting, rate: float, emulated: int | None) -> Probe:
        result = replace(self.source.probe(server, rate, emulated), server=server.label)
        self.measured[(server.label, float(rate))].append((result, emulated or _seqs(server)))
        return result

    def probe(self, setting: Setting, rate: float) -> Probe:
        server, emulated = self.placed[setting]
        host = self.hosts.get(setting)
        for on, over in ((server, None), (host, host)):
            if on is None:
                continue
            for earlier, limit in self.measured[(on.label, float(rate))]:
                if self._stands_for(earlier, limit, setting, over):
                    return replace(earlier, inferred=True, reused=True, server=on.label, server_started=False)
        if host is not None and setting not in self.own_server:
            if self._worth_trying(host, setting, rate):
                seqs = _seqs(setting)
                result = self._run(host, rate, seqs if seqs < _seqs(host) else None)
                if result.status == "missing" or result.within_budget(_budget(setting), _budget(host)):
                    return result  # past the deadline nothing more is measured
                self._detours.append(replace(result, detour=True))
                why = (
                    f"the steps reached its token budget (largest step <= {_number(result.largest_step)} tokens, "
                    f"{_number(result.preemptions)} preempted, KV {_number(result.kv_needed)} of "
                    f"{_number(result.kv_cache_tokens)} tokens)"
                    if result.status == "ok"
                    else f"the load point ended in {result.status}"
                )
                logger.info(f"  {setting.label} rate {rate_text(rate)} on {host.label}: a detour, {why}")
            # the host was not worth trying, or its load point did not stand for the setting: this
            # budget's settings and the smaller ones' go to their own servers from now on (a budget
            # reached by these steps is reached by the same steps at a smaller one), so the host is
            # not started again
            for other, its_host in self.hosts.items():
                if its_host == host and _budget(other) <= _budget(setting):
                    self.own_server.add(other)
            logger.info(f"  max_num_batched_tokens <= {_budget(setting)}: each on its own server from now on")
        return self._run(server, rate, emulated)


class ReplaySource:
    """Measured load points instead of a server: {(setting label, rate): Probe}; a load point the
    table lacks is `missing`. Every probe is marked as not measured now. One server is up at a
    time, as on LiveSource: a probe on a server other than the last one's starts it again
    (server_started, its recorded start)."""

    def __init__(self, table: dict[tuple[str, float, int | None], Probe]):
        self.table = table
        self.up: str | None = None

    def probe(self, setting: Setting, rate: float, emulated_max_num_seqs: int | None = None) -> Probe:
        found = self.table.get((setting.label, float(rate), emulated_max_num_seqs))
        if found is None:
            return Probe(rate=rate, status="missing")
        restarted = self.up is not None and self.up != setting.label
        self.up = setting.label
        return Probe(**{**vars(found), "reused": True, "server_started": restarted})


def replay_tables(collected: list[tuple[dict, str]], slo: Slo, tolerance: float, harness: str | None = None) -> dict:
    """Per case (hardware, engine, model, n_gpus) its settings and load-point table from a run's
    records (without a concurrency limit; `harness`: one load generator's, default the first
    seen): {case: (settings in the plan's order, {(label, rate, emulated max_num_seqs): Probe})}."""
    grouped: dict[tuple, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    settings: dict[tuple, dict[str, Setting]] = defaultdict(dict)
    for record, _ in collected:
        if record["load_point"]["max_concurrency"] is not None:
            continue
        harness = harness or record["harness"]
        if record["harness"] != harness:
            continue
        case = (record["hardware"], record["engine"], record["model"], record["n_gpus"])
        rate = float(record["load_point"]["request_rate"])
        grouped[case][(record["settings"], rate, record["load_point"].get("emulated_max_num_seqs"))].append(record)
        settings[case].setdefault(
            record["settings"],
            Setting(
                record["settings"],
                tuple(record["settings_axes"].items()),
                steps.counts_bound_steps(record["server_arguments"]),
            ),
        )
    return {
        case: (
            list(settings[case].values()),
            {key: Probe.from_records(key[1], recs, slo, tolerance, reused=True) for key, recs in points.items()},
        )
        for case, points in grouped.items()
    }


class LiveSource:
    """A live server per setting (ServeSession), one at a time: a probe at a setting other than
    the open session's closes it (its server stops) and opens that setting's. Records are kept in
    each setting's folder, so a load point asked for again is reused, not measured again. Past
    `deadline` (time.monotonic()) nothing more is measured: every probe is `missing`, so both
    algorithms finish and their rows say how much they lacked."""

    def __init__(
        self, open_session, harness: str, repetitions: int, slo: Slo, tolerance: float, deadline: float | None = None
    ):
        self.open_session, self.harness, self.repetitions = open_session, harness, repetitions
        self.slo, self.tolerance, self.deadline = slo, tolerance, deadline
        self.label: str | None = None
        self.session = None
        self.server_starts: list[float] = []

    def probe(self, setting: Setting, rate: float, emulated_max_num_seqs: int | None = None, rep: int = 0) -> Probe:
        """`rep`: the first repetition's index (a load point asked for again with a later one is
        measured again, not reused)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.close()
            return Probe(rate=rate, status="missing")
        if self.label != setting.label:
            self.close()
            self.session, self.label = self.open_session(setting.label), setting.label
        before = len(self.session.server_starts)
        probe = session_prober(
            self.session, self.harness, self.repetitions, self.slo, self.tolerance, None, emulated_max_num_seqs, rep
        )(rate)
        started = self.session.server_starts[before:]
        self.server_starts += started
        # the server started for this probe counts its start; a kept record carries its own
        return Probe(
            **{
                **vars(probe),
                "server_start_s": sum(started) if started else probe.server_start_s,
                "server_started": bool(started),
            }
        )

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session, self.label = None, None


# --------------------------------------------------------------------------- the confirmation


@dataclass
class Confirmation:
    """Each side's best load point measured again after both searches (serve.tuning.confirm), on
    a server started with its setting (no emulation), in rounds whose order alternates: A B, B A,
    A B, ... (one server at a time, so each change of setting starts its server again). These are
    the repetitions the comparison judges the two answers by: one load point's interval counts its
    requests as independent, and a stall that makes every later request late is not. Its cost
    (`device_s`: the load points and every server start) is the judge's, counted in neither side's.

    `probes`: per algorithm, one probe per round (the same record for both sides where they chose
    the same setting and rate)."""

    rounds: int
    probes: dict[str, list[Probe]] = field(default_factory=dict)
    device_s: float = 0.0

    def goodput(self, algorithm: str) -> Summary:
        """The mean goodput over the rounds and its 95% t interval (a round that failed counts 0;
        the comparison cuts the interval's lower bound at 0)."""
        return summarise(p.goodput or 0.0 for p in self.probes.get(algorithm, []))


def confirm_live(open_session, choices: Sequence[Choice], rounds: int, harness: str, slo: Slo, tolerance: float):
    """Confirmation's rounds on live servers, one at a time (a LiveSource): `open_session(label)`
    gives a setting's ServeSession (records in a folder of their own, so a search's replay never
    meets them)."""
    chosen = [c for c in choices if c.probe is not None]
    confirmation = Confirmation(rounds, {c.algorithm: [] for c in chosen})
    order = [c for r in range(rounds) for c in (chosen if r % 2 == 0 else chosen[::-1])]
    source = LiveSource(open_session, harness, 1, slo, tolerance)
    try:
        for choice in order:
            rep = len(confirmation.probes[choice.algorithm])
            probe = source.probe(choice.setting, choice.probe.rate, rep=rep)
            confirmation.probes[choice.algorithm].append(probe)
            if not probe.reused:
                confirmation.device_s += probe.duration_s + probe.warmup_s
            logger.info(
                f"  confirming {choice.algorithm}'s {choice.setting.label} at {rate_text(probe.rate)} (round "
                f"{rep + 1} of {rounds}): {probe.status}, goodput {_number(probe.goodput)} req/s, P99 E2EL "
                f"{_number(probe.e2el_p99_ms)} ms"
            )
    finally:
        source.close()
    confirmation.device_s += sum(source.server_starts)
    return confirmation


# --------------------------------------------------------------------------- the comparison


COLUMNS = [
    "mode",
    "hardware",
    "engine",
    "model",
    "n_gpus",
    "slo_e2el_ms",
    "target_share",
    "settings_in_grid",
    "auto_tune_setting",
    "auto_tune_rate",
    "auto_tune_goodput",
    "auto_tune_goodput_ci_low",
    "auto_tune_goodput_ci_high",
    "auto_tune_invocations",
    "auto_tune_measured_now",
    "auto_tune_missing",
    "auto_tune_servers",
    "auto_tune_device_minutes",
    "auto_tune_confirmed_goodput",
    "auto_tune_confirmed_ci_low",
    "auto_tune_confirmed_ci_high",
    "auto_tune_confirmed_holds",
    "infpop_setting",
    "infpop_rate",
    "infpop_goodput",
    "infpop_goodput_ci_low",
    "infpop_goodput_ci_high",
    "infpop_invocations",
    "infpop_measured_now",
    "infpop_missing",
    "infpop_inferred",
    "infpop_skipped",
    "infpop_servers",
    "infpop_device_minutes",
    "infpop_confirmed_goodput",
    "infpop_confirmed_ci_low",
    "infpop_confirmed_ci_high",
    "infpop_confirmed_holds",
    "confirm_rounds",
    "confirm_device_minutes",
    "same_setting",
    "within_load_point_ci",
    "within_ci",
    "invocation_ratio",
    "device_minutes_ratio",
    "goal_met",
]


def _holds(choice: Choice, probe: Probe, latency_ms: float, target: float) -> bool:
    """Whether a load point holds by the algorithm's own rule: auto_tune's P99 E2EL within the
    limit, InfPop's goodput's lower bound at its share of the rate."""
    return _holds_latency(probe, latency_ms) if choice.algorithm == "auto_tune" else probe.passes(target)


def _side(choice: Choice, confirmation: Confirmation | None, latency_ms: float, target: float) -> dict:
    probe, ledger = choice.probe, choice.ledger
    low, high = probe.goodput_ci if probe else (None, None)
    name = choice.algorithm
    again = confirmation.probes.get(name, []) if confirmation else []
    confirmed = confirmation.goodput(name) if again else None
    return {
        f"{name}_setting": choice.setting.label if choice.setting else None,
        f"{name}_rate": rate_text(probe.rate) if probe else None,
        f"{name}_goodput": probe.goodput if probe else None,
        f"{name}_goodput_ci_low": low,
        f"{name}_goodput_ci_high": high,
        f"{name}_invocations": ledger.invocations,
        f"{name}_measured_now": ledger.measured_now,
        f"{name}_missing": ledger.missing,
        **({f"{name}_inferred": ledger.inferred, f"{name}_skipped": len(choice.skipped)} if name == "infpop" else {}),
        f"{name}_servers": ledger.servers,
        f"{name}_device_minutes": ledger.device_s / 60,
        f"{name}_confirmed_goodput": confirmed.mean if confirmed else None,
        f"{name}_confirmed_ci_low": max(0.0, confirmed.ci_low) if confirmed else None,
        f"{name}_confirmed_ci_high": confirmed.ci_high if confirmed else None,
        f"{name}_confirmed_holds": sum(_holds(choice, p, latency_ms, target) for p in again) if again else None,
    }


def comparison_row(
    mode: str,
    case: dict,
    grid: Sequence[Setting],
    theirs: Choice,
    ours: Choice,
    slo_e2el_ms,
    target,
    confirmation: Confirmation | None = None,
):
    """One case of results/serve/autotune_comparison.csv. `within_load_point_ci`: our best's
    goodput lies in auto_tune's best load point's 95% interval or above it. `within_ci`: with a
    confirmation, our best's mean goodput over its rounds lies in the 95% interval of auto_tune's
    best's over its rounds or above it (the interval from repetitions); without one, the load
    point's. The goal: the same setting or within_ci, in at most a third of auto_tune's
    invocations and device-minutes."""
    row = {"mode": mode, **case, "slo_e2el_ms": slo_e2el_ms, "target_share": target}
    row["settings_in_grid"] = len(grid)
    row.update(_side(theirs, confirmation, slo_e2el_ms, target))
    row.update(_side(ours, confirmation, slo_e2el_ms, target))
    row["confirm_rounds"] = confirmation.rounds if confirmation else 0
    row["confirm_device_minutes"] = confirmation.device_s / 60 if confirmation else None
    row["same_setting"] = theirs.setting is not None and theirs.setting == ours.setting
    low = row["auto_tune_goodput_ci_low"]
    row["within_load_point_ci"] = row["infpop_goodput"] is not None and low is not None and row["infpop_goodput"] >= low
    low = row["auto_tune_confirmed_ci_low"]
    if low is None:
        row["within_ci"] = row["within_load_point_ci"]
    else:
        row["within_ci"] = row["infpop_confirmed_goodput"] is not None and row["infpop_confirmed_goodput"] >= low
    row["invocation_ratio"] = ours.ledger.invocations / theirs.ledger.invocations if theirs.ledger.invocations else None
    row["device_minutes_ratio"] = ours.ledger.device_s / theirs.ledger.device_s if theirs.ledger.device_s else None
    row["goal_met"] = bool(
        (row["same_setting"] or row["within_ci"])
        and row["invocation_ratio"] is not None
        and row["invocation_ratio"] <= 1 / 3
        and row["device_minutes_ratio"] is not None
        and row["device_minutes_ratio"] <= 1 / 3
    )
    return row


PROBE_COLUMNS = [
    "mode",
    "hardware",
    "engine",
    "model",
    "n_gpus",
    "algorithm",
    "order",
    "settings",
    "request_rate",
    "status",
    "server",
    "inferred",
    "detour",
    "peak_in_flight",
    "largest_step_tokens",
    "requests",
    "good_requests",
    "attainment",
    "attainment_ci_low",
    "attainment_ci_high",
    "passes",
    "e2el_p99_ms",
    "request_throughput",
    "goodput",
    "duration_s",
    "measured_now",
]


def probe_rows(mode: str, case: dict, choice: Choice, target: float) -> list[dict]:
    """Every load point an algorithm asked for, in order, with its SLO attainment's interval and
    whether it passed (InfPop's rule; auto_tune's is the P99 E2EL beside it)."""
    out = []
    for order, (setting, probe) in enumerate(choice.ledger.probes):
        low, high = probe.attainment_ci if probe.requests else (None, None)
        out.append(
            {
                "mode": mode,
                **case,
                "algorithm": choice.algorithm,
                "order": order,
                "settings": setting.label,
                "request_rate": rate_text(probe.rate),
                "status": probe.status,
                "server": probe.server or setting.label,
                "inferred": probe.inferred,
                "detour": probe.detour,
                "peak_in_flight": probe.peak_in_flight,
                "largest_step_tokens": probe.largest_step,
                "requests": probe.requests,
                "good_requests": probe.good,
                "attainment": probe.attainment,
                "attainment_ci_low": low,
                "attainment_ci_high": high,
                "passes": probe.passes(target),
                "e2el_p99_ms": probe.e2el_p99_ms,
                "request_throughput": probe.request_throughput,
                "goodput": probe.goodput,
                "duration_s": probe.duration_s,
                "measured_now": not probe.reused and not probe.inferred and probe.status != "missing",
            }
        )
    return out


CAPACITY_COLUMNS = [
    "mode",
    "hardware",
    "engine",
    "model",
    "n_gpus",
    "settings",
    "probes",
    "capacity_at_least",
    "fails_at",
    "capacity_goodput",
    "capacity_goodput_ci_low",
    "capacity_goodput_ci_high",
    "skipped_because",
]


def capacity_rows(mode: str, case: dict, choice: Choice, target: float) -> list[dict]:
    """Per setting, what InfPop's tuning learnt of its capacity under the SLO: the highest rate
    that passed (capacity_at_least; None: none did), the lowest rate above it that failed
    (fails_at; None: none was tried), the probes it took and the goodput (with its 95% interval) at
    the highest passing rate. A setting dropped after one failed probe has only `fails_at`; one the
    line search skipped has no probe and says why."""
    by_setting: dict[Setting, list[Probe]] = defaultdict(list)
    for setting, probe in choice.ledger.probes:
        by_setting[setting].append(probe)
    out = []
    for setting, probes in by_setting.items():
        measured = [p for p in probes if not p.detour]  # a detour measured another budget
        passed = [p for p in measured if p.passes(target)]
        top = max(passed, key=lambda p: p.rate) if passed else None
        failed = [p.rate for p in measured if not p.passes(target) and (top is None or p.rate > top.rate)]
        low, high = top.goodput_ci if top else (None, None)
        out.append(
            {
                "mode": mode,
                **case,
                "settings": setting.label,
                "probes": len(probes),
                "capacity_at_least": rate_text(top.rate) if top else None,
                "fails_at": rate_text(min(failed)) if failed else None,
                "capacity_goodput": top.goodput if top else None,
                "capacity_goodput_ci_low": low,
                "capacity_goodput_ci_high": high,
                "skipped_because": None,
            }
        )
    for setting, why in choice.skipped.items():
        out.append({"mode": mode, **case, "settings": setting.label, "probes": 0, "skipped_because": why})
    return out


def _case(hardware: str, engine: str, model: str, n_gpus: int) -> dict:
    return {"hardware": hardware, "engine": engine, "model": model, "n_gpus": n_gpus}


def _run_case(
    mode: str, case: dict, source: Source, grid: list[Setting], tuning: dict, confirm=None
) -> tuple[dict, list, list]:
    """Both algorithms on one case: (comparison row, every probe, InfPop's capacity per setting);
    `confirm`: (auto_tune's choice, ours) -> Confirmation, after both searches (None: none)."""
    latency, target = tuning["e2el_ms"], tuning["target_share"]

    def run_theirs() -> Choice:
        logger.info(f"auto_tune ({AUTO_TUNE_SOURCE}) on {case}: {len(grid)} settings, P99 E2EL <= {latency:g} ms")
        return auto_tune(source, grid, latency)

    def run_ours() -> Choice:
        logger.info(f"InfPop's tuning on {case}: E2EL <= {latency:g} ms, attainment's lower bound >= {target:g}")
        shared = SharedServers(source, grid) if tuning["share_servers"] else source
        return infpop_tune(shared, grid, target, tuning["resolution"], tuning["line_search"])

    if tuning["first"] == "infpop":  # the second reuses the first's load points where they are the same
        ours = run_ours()
        theirs = run_theirs()
    else:
        theirs = run_theirs()
        ours = run_ours()
    confirmation = confirm(theirs, ours) if confirm is not None else None
    row = comparison_row(mode, case, grid, theirs, ours, latency, target, confirmation)
    logger.info(
        f"{case}: auto_tune {row['auto_tune_setting']} at {row['auto_tune_rate']} "
        f"({row['auto_tune_invocations']} load points, {row['auto_tune_device_minutes']:.1f} device-min); "
        f"InfPop {row['infpop_setting']} at {row['infpop_rate']} ({row['infpop_invocations']} load points, "
        f"{row['infpop_device_minutes']:.1f} device-min)"
    )
    if confirmation is not None:
        logger.info(
            f"{case}: measured again over {confirmation.rounds} rounds, auto_tune's goodput "
            f"{_number(row['auto_tune_confirmed_goodput'])} req/s (held {row['auto_tune_confirmed_holds']}), "
            f"InfPop's {_number(row['infpop_confirmed_goodput'])} (held {row['infpop_confirmed_holds']}); "
            f"within CI {row['within_ci']}, goal met {row['goal_met']}"
        )
    probes = probe_rows(mode, case, theirs, target) + probe_rows(mode, case, ours, target)
    return row, probes, capacity_rows(mode, case, ours, target)


def run_replay(config: dict, collected: list[tuple[dict, str]]) -> tuple[list, list, list]:
    """Both algorithms on every vLLM case of a run's records (serve.tuning's harness, no
    concurrency limit): (comparison rows, probe rows, capacity rows)."""
    section, tuning = config["serve"], config["serve"]["tuning"]
    tables = replay_tables(
        collected, Slo(e2el_ms=tuning["e2el_ms"]), section["saturation_tolerance"], tuning["harness"]
    )
    rows, probes, capacities = [], [], []
    for (hardware, engine, model, n_gpus), (grid, table) in sorted(tables.items()):
        if engine != "vllm":
            continue
        case = _case(hardware, engine, model, n_gpus)
        row, asked, found = _run_case("replay", case, ReplaySource(table), grid, tuning)
        rows.append(row)
        probes += asked
        capacities += found
    return rows, probes, capacities


def live_cases(config: dict) -> dict[tuple, list[Setting]]:
    """Per vLLM server case of the serving plan, (hardware, engine, model, n_gpus), its settings
    (serve.engine_arg_axes.vllm) in the plan's order."""
    jobs, _ = plan(config)
    cases: dict[tuple, list[Setting]] = defaultdict(list)
    for job in jobs:
        if job.engine == "vllm":
            settings = settings_of(config, job)
            cases[(job.hardware, job.engine, job.model, job.n_gpus)].append(
                Setting(job.settings, tuple(settings.axes.items()), steps.counts_bound_steps(settings.arguments))
            )
    return cases


def session_opener(config: dict, case: tuple, out_root: Path, benchmark_file: Path):
    """LiveSource's open_session for a case: a setting's label -> its ServeSession, records under
    out_root/<server>/."""

    def open_session(label: str) -> ServeSession:
        job = ServeJob(*case, label)
        return ServeSession(config, job, Path(out_root) / job.relpath, benchmark_file)

    return open_session


def run_live(
    config: dict, out_root: Path, benchmark_file: Path, confirm_root: Path, deadline: float | None = None
) -> tuple[list, list, list]:
    """Both algorithms on live vLLM servers, per (hardware, model, n_gpus) of the serving plan:
    the settings of serve.engine_arg_axes.vllm, records under out_root/<server>/ (the algorithm that
    runs second, serve.tuning.first, reuses the load points the first measured, as a shared cache);
    then serve.tuning.confirm rounds of each side's best, records under confirm_root/<server>/
    (past `deadline` the searches measure nothing more; the confirmation still runs)."""
    section, tuning = config["serve"], config["serve"]["tuning"]
    slo, tolerance = Slo(e2el_ms=tuning["e2el_ms"]), section["saturation_tolerance"]
    rows, probes, capacities = [], [], []
    for case, grid in sorted(live_cases(config).items()):
        source = LiveSource(
            session_opener(config, case, out_root, benchmark_file),
            tuning["harness"],
            tuning["repetitions"],
            slo,
            tolerance,
            deadline,
        )

        def confirm(theirs: Choice, ours: Choice, case=case, source=source) -> Confirmation:
            source.close()  # one server at a time
            logger.info(f"confirming both answers on {case}: {tuning['confirm']} rounds each")
            opener = session_opener(config, case, confirm_root, benchmark_file)
            return confirm_live(opener, (theirs, ours), tuning["confirm"], tuning["harness"], slo, tolerance)

        try:
            row, asked, found = _run_case(
                "live", _case(*case), source, grid, tuning, confirm if tuning["confirm"] else None
            )
        finally:
            source.close()
        rows.append(row)
        probes += asked
        capacities += found
    return rows, probes, capacities


def write_csv(rows: list[dict], path: Path, columns: list[str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def probes_png(probes: list[dict], path) -> Path:
    """Per case, the load points each algorithm asked for in order (the request rate; inf drawn at
    the top), coloured by setting, filled where InfPop's rule passes them, a diamond where shared
    servers answered without a load point, a square for a detour (a load point on a larger budget's
    server that did not stand for the setting): how auto_tune walks down 1 req/s at a time where
    InfPop's tuning bisects and drops settings after one load point."""
    from infpop.figures import message_png, plt, save

    title = "auto_tune against InfPop's tuning: the load points each asked for"
    if not probes:
        return message_png(path, title, "no case was compared")
    cases: dict[tuple, list[dict]] = defaultdict(list)
    for row in probes:
        cases[(row["mode"], row["hardware"], row["model"], row["n_gpus"])].append(row)
    fig, axes = plt.subplots(len(cases), 2, figsize=(13, 4 * len(cases)), squeeze=False)
    for line, (case, rows) in zip(axes, sorted(cases.items(), key=lambda i: str(i[0])), strict=True):
        finite = [float(r["request_rate"]) for r in rows if r["request_rate"] != "inf"]
        top = (max(finite) if finite else 1.0) * 1.15
        labels = sorted({r["settings"] for r in rows})
        colours = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}
        for ax, algorithm in zip(line, ("auto_tune", "infpop"), strict=True):
            asked = [r for r in rows if r["algorithm"] == algorithm]
            for r in asked:
                y = top if r["request_rate"] == "inf" else float(r["request_rate"])
                colour = colours[r["settings"]]
                face = colour if r["passes"] in (True, "True") else "white"
                # answered without a load point; a detour measured another budget
                marker = (
                    "D" if r.get("inferred") in (True, "True") else "s" if r.get("detour") in (True, "True") else "o"
                )
                ax.scatter([r["order"]], [y], facecolors=[face], edgecolors=[colour], s=40, marker=marker, zorder=3)
            ax.axhline(top, color="grey", linewidth=0.5, linestyle=":")
            ax.set_title(f"{algorithm} ({case[0]}, {case[2]}): {len(asked)} load points")
            ax.set_xlabel("load point asked for, in order")
            ax.set_ylabel("request rate (req/s; dotted line: inf)")
            ax.grid(True, alpha=0.3)
        for label, colour in colours.items():
            line[1].scatter([], [], color=colour, label=label)
        line[1].legend(
            fontsize=7, loc="best", title="filled: holds the SLO; diamond: inferred; square: detour", title_fontsize=7
        )
    fig.suptitle(title)
    return save(fig, path)
