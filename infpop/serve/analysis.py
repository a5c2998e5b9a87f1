"""Analysis of serving load points (issue 17, item 5): pure functions over the tidy rows of
results/serve/loadpoints.csv (records.tidy_row) and over probes of a live server.

- latency-throughput curves and their knee. The knee is Kneedle's (Satopaa, Albrecht, Irwin and
  Raghavan, "Finding a 'Kneedle' in a Haystack: Detecting Knee Points in System Behavior",
  ICDCS Workshops 2011, doi:10.1109/ICDCSW.2011.20) for an increasing convex curve, offline and
  without smoothing: both axes scaled to [0, 1], the knee is the measured point furthest below the
  diagonal (the largest x_n - y_n), where latency stops growing slower than throughput;
- the Pareto front of tokens per second per user (1 / TPOT, its mean over the requests) against
  output tokens per second per device: the load points no other beats on both;
- goodput landscapes over two server knobs (per engine and model, the best goodput each setting
  reached over its load points) and each knob's effect on goodput (one-way ANOVA and
  Kruskal-Wallis over the knob's values, as RQ2-RQ3 test the batch size: infpop.analysis.stats);
- capacity under the SLO: the highest sustainable request rate, found by bisection over a rate
  grid (given what a probe at each rate costs, at the split of least expected cost rather than the
  middle), each probe judged by its goodput's interval (the Wilson interval of its SLO attainment x
  its requests per second): it passes when the lower bound reaches the target share of the offered
  rate; `session_prober` makes the probes through ServeSession, so the search runs on a real
  server.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infpop.analysis import stats
from infpop.serve import records, steps
from infpop.serve.metrics import NO_TEXT, RequestResult, Slo
from infpop.serve.plan import LoadPoint

#: Two-sided 95% normal quantile of the Wilson intervals.
Z95 = 1.959963984540054
#: What a latency-throughput curve is drawn for (one line each).
CURVE = ["hardware", "engine", "model", "n_gpus", "settings", "harness", "max_concurrency"]


# --------------------------------------------------------------------------- knees


def kneedle(xs: Sequence[float], ys: Sequence[float]) -> int | None:
    """The index of the knee of an increasing convex curve (Kneedle, offline, no smoothing): the
    point furthest below the diagonal of the curve scaled to the unit square. None with fewer than
    three points or a flat curve (no knee to speak of)."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values against {len(ys)} y values")
    if len(xs) < 3:
        return None
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    x = [xs[i] for i in order]
    y = [ys[i] for i in order]
    x_span, y_span = x[-1] - x[0], max(y) - min(y)
    if x_span <= 0 or y_span <= 0:
        return None
    below = [(xi - x[0]) / x_span - (yi - min(y)) / y_span for xi, yi in zip(x, y, strict=True)]
    best = max(range(len(below)), key=lambda i: below[i])
    return order[best] if below[best] > 0 else None


def _key(row: dict, names: list[str]) -> tuple:
    return tuple(row.get(n) for n in names)


def latency_knees(rows: list[dict], latency: str = "e2el_p99_ms") -> list[dict]:
    """Per latency-throughput curve (CURVE: one server and load generator at one concurrency
    limit), its points that ran (achieved request rate, `latency`) and the Kneedle knee."""
    curves: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("status") == "ok" and row.get("request_throughput") and row.get(latency) is not None:
            curves[_key(row, CURVE)].append(row)
    out = []
    for key, members in sorted(curves.items(), key=lambda item: str(item[0])):
        members = sorted(members, key=lambda r: r["request_throughput"])
        xs = [m["request_throughput"] for m in members]
        ys = [m[latency] for m in members]
        knee = kneedle(xs, ys)
        out.append(
            {
                **dict(zip(CURVE, key, strict=True)),
                "latency": latency,
                "points": len(members),
                "knee_request_rate": members[knee]["request_rate"] if knee is not None else None,
                "knee_request_throughput": xs[knee] if knee is not None else None,
                "knee_latency_ms": ys[knee] if knee is not None else None,
                "max_request_throughput": xs[-1],
            }
        )
    return out


# --------------------------------------------------------------------------- Pareto front


def pareto_rows(
    rows: list[dict],
    user: str = "user_output_tokens_per_s_mean",
    device: str = "output_throughput_per_device",
) -> list[dict]:
    """The load points that ran which no other of the same engine and model beats on both tokens/s
    per user and tokens/s per device (at least as good on both, better on one), per (hardware,
    engine, model), by tokens/s per device descending; each row marked `pareto` True."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("status") == "ok" and row.get(user) is not None and row.get(device) is not None:
            groups[_key(row, ["hardware", "engine", "model"])].append(row)
    front = []
    for _, members in sorted(groups.items(), key=lambda item: str(item[0])):
        kept = [
            r
            for r in members
            if not any(
                q[user] >= r[user] and q[device] >= r[device] and (q[user] > r[user] or q[device] > r[device])
                for q in members
            )
        ]
        front += [dict(r, pareto=True) for r in sorted(kept, key=lambda r: -r[device])]
    return front


# --------------------------------------------------------------------------- knobs and goodput


def knob_columns(rows: list[dict]) -> list[str]:
    """The server settings' axes present in the rows (arg_<name> columns), in first-seen order."""
    names: list[str] = []
    for row in rows:
        names += [k for k in row if k.startswith("arg_") and k not in names]
    return names


def best_goodput_per_setting(rows: list[dict], measure: str = "request_goodput") -> list[dict]:
    """Per server (hardware, engine, model, n_gpus, settings): the highest `measure` any of its load
    points that ran reached, with that load point's rate and the server's knob values."""
    best: dict[tuple, dict] = {}
    for row in rows:
        if row.get("status") != "ok" or row.get(measure) is None:
            continue
        key = _key(row, ["hardware", "engine", "model", "n_gpus", "settings"])
        if key not in best or row[measure] > best[key][measure]:
            best[key] = row
    knobs = knob_columns(rows)
    return [
        {
            **dict(zip(["hardware", "engine", "model", "n_gpus", "settings"], key, strict=True)),
            **{k: row.get(k) for k in knobs},
            "request_rate": row["request_rate"],
            "max_concurrency": row.get("max_concurrency"),
            measure: row[measure],
        }
        for key, row in sorted(best.items(), key=lambda item: str(item[0]))
    ]


def knob_effects(rows: list[dict], measure: str = "request_goodput") -> list[dict]:
    """Per (hardware, engine, model, load generator, request rate, concurrency limit) and knob: does the knob's
    value change `measure`? One-way ANOVA and Kruskal-Wallis over the load points grouped by the
    knob's value (each repetition one observation), with the groups' means. A statistic the data
    cannot support is NaN with its note (infpop.analysis.stats)."""
    knobs = knob_columns(rows)
    scopes: dict[tuple, list[dict]] = defaultdict(list)
    where = ["hardware", "engine", "model", "harness", "request_rate", "max_concurrency"]
    for row in rows:
        if row.get("status") == "ok" and row.get(measure) is not None:
            scopes[_key(row, where)].append(row)
    out = []
    for key, members in sorted(scopes.items(), key=lambda item: str(item[0])):
        for knob in knobs:
            groups: dict = defaultdict(list)
            for m in members:
                if m.get(knob) is not None:
                    groups[m[knob]].append(m[measure])
            if len(groups) < 2:
                continue
            anova = stats.anova(groups)
            kruskal = stats.kruskal(groups)
            out.append(
                {
                    **dict(zip(where, key, strict=True)),
                    "knob": knob.removeprefix("arg_"),
                    "measure": measure,
                    "levels": len(groups),
                    "n": anova.n,
                    "group_means": "; ".join(
                        f"{value}: {sum(v) / len(v):.4g}"
                        for value, v in sorted(groups.items(), key=lambda i: str(i[0]))
                    ),
                    "anova_F": anova.F,
                    "anova_p": anova.p,
                    "kruskal_H": kruskal.H,
                    "kruskal_p": kruskal.p,
                    "note": anova.note or kruskal.note,
                }
            )
    return out


def goodput_landscape_png(rows: list[dict], path, measure: str = "request_goodput") -> Path:
    """Per engine and model, a heat map of the best goodput each server setting reached over two
    knob axes (the first two knobs; one knob: a single row), the value written in each cell."""
    from infpop.figures import message_png, plt, save

    best = best_goodput_per_setting(rows, measure)
    knobs = knob_columns(rows)
    title = "Serving: goodput over the server's knobs"
    if not best or not knobs:
        return message_png(path, title, "no load point ran at more than one server setting")
    x_knob, y_knob = knobs[0], knobs[1] if len(knobs) > 1 else None
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for row in best:
        if row.get(x_knob) is not None:  # an engine without these knobs has no landscape over them
            panels[(row["hardware"], row["engine"], row["model"])].append(row)
    if not panels:
        return message_png(path, title, f"no server setting has a value of {x_knob.removeprefix('arg_')}")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, ((hardware, engine, model), members) in zip(axes[0], sorted(panels.items()), strict=True):
        xs = sorted({m.get(x_knob) for m in members}, key=_order)
        ys = sorted({m.get(y_knob) for m in members}, key=_order) if y_knob else [None]
        grid = [[math.nan] * len(xs) for _ in ys]
        for m in members:
            grid[ys.index(m.get(y_knob) if y_knob else None)][xs.index(m.get(x_knob))] = m[measure]
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        for j, row in enumerate(grid):
            for i, value in enumerate(row):
                text = "-" if math.isnan(value) else f"{value:.2f}"
                ax.text(i, j, text, ha="center", va="center", color="white", fontsize=9)
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
        ax.set_yticks(range(len(ys)), [str(y) for y in ys])
        ax.set_xlabel(x_knob.removeprefix("arg_"))
        ax.set_ylabel(y_knob.removeprefix("arg_") if y_knob else "")
        ax.set_title(f"{engine} {model} ({hardware})")
        fig.colorbar(image, ax=ax, label=f"best {measure} (req/s)")
    fig.suptitle(f"{title}: the best goodput over each setting's load points")
    return save(fig, path)


def _order(value):
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


# --------------------------------------------------------------------------- capacity under the SLO


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion (two-sided, 95% by default); (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Probe:
    """One load point as a search sees it: its SLO attainment over its requests (every repetition
    pooled), goodput, P99 E2EL and what it cost (load-point and warm-up seconds, the server's
    start). `status` is `ok` when every repetition ran."""

    rate: float
    status: str
    requests: int = 0
    good: int = 0
    duration_s: float = 0.0
    warmup_s: float = 0.0
    server_start_s: float = 0.0
    request_throughput: float | None = None
    e2el_p99_ms: float | None = None
    reused: bool = False
    #: the most requests the server held at once in any repetition (None: unknown)
    peak_in_flight: int | None = None
    #: the label of the server it ran on, where that is not the setting's own
    server: str | None = None
    #: answered by a load point already measured, without running one (autotune.SharedServers)
    inferred: bool = False
    #: the vLLM scheduler over its repetitions (steps.py; None: unknown): the least bucket bound
    #: holding its largest step's tokens, the requests it preempted, the most KV-cache tokens its
    #: requests in flight could need at once, and the server's KV cache in tokens
    largest_step: float | None = None
    preemptions: int | None = None
    kv_needed: int | None = None
    kv_cache_tokens: int | None = None
    #: run on a shared server for a setting it then did not stand for (autotune.SharedServers):
    #: what it cost counts, what it measured says nothing of that setting
    detour: bool = False
    #: a server was started to measure it (server_start_s is that start; else the server's start)
    server_started: bool = False

    @property
    def attainment(self) -> float | None:
        return self.good / self.requests if self.requests else None

    @property
    def attainment_ci(self) -> tuple[float, float]:
        return wilson(self.good, self.requests)

    @property
    def goodput(self) -> float | None:
        return self.good / self.duration_s if self.status == "ok" and self.duration_s > 0 else None

    @property
    def goodput_ci(self) -> tuple[float | None, float | None]:
        """Goodput's 95% interval: the attainment's Wilson interval x requests per second."""
        if self.goodput is None:
            return None, None
        low, high = self.attainment_ci
        per_second = self.requests / self.duration_s
        return low * per_second, high * per_second

    def within_budget(self, budget: int, server_budget: int) -> bool:
        """This load point, run on a server with `server_budget` tokens a step, ran as a server with
        `budget` would have (steps.budget_never_reached)."""
        return self.status == "ok" and steps.budget_never_reached(
            self.largest_step, self.preemptions, self.kv_needed, self.kv_cache_tokens, budget, server_budget
        )

    def passes(self, target: float) -> bool:
        """The server sustains the probe's rate within the SLO: the load point ran and the lower
        bound of its goodput's interval reaches `target` x the offered rate (a server that falls
        behind completes fewer requests per second than arrive, however fast each one is). At rate
        inf, with no offered rate, the lower bound of its SLO attainment reaches `target`."""
        if self.status != "ok" or not self.requests:
            return False
        if math.isinf(self.rate):
            return self.attainment_ci[0] >= target
        low, _ = self.goodput_ci
        return low is not None and low >= target * self.rate

    @classmethod
    def from_records(cls, rate: float, recs: list[dict], slo: Slo, tolerance: float, reused: bool = False) -> Probe:
        """The probe of a load point's records (its repetitions), measured under `slo`."""
        rows = [records.tidy_row(r, slo, tolerance) for r in recs]
        failed = [r["status"] for r in rows if r["status"] != "ok"]
        status = "missing" if not rows else failed[0] if failed else "ok"
        timings = [r["timings"] for r in recs]
        ran = [r for r in rows if r["status"] == "ok"]
        return cls(
            rate=rate,
            status=status,
            requests=sum(r["requests"] for r in ran),
            good=sum(r["good_requests"] or 0 for r in ran),
            duration_s=sum(r["duration_s"] for r in ran),
            warmup_s=sum(t.get("warmup_s") or 0.0 for t in timings),
            server_start_s=max((t.get("server_start_s") or 0.0 for t in timings), default=0.0),
            request_throughput=(sum(r["request_throughput"] for r in ran) / len(ran)) if ran else None,
            e2el_p99_ms=max((r["e2el_p99_ms"] for r in ran if r["e2el_p99_ms"] is not None), default=None),
            reused=reused,
            peak_in_flight=_peak([r.get("peak_in_flight") for r in ran]) if ran and len(ran) == len(rows) else None,
            **_scheduler(recs, rows) if ran and len(ran) == len(rows) else {},
        )


def _peak(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else max(values)


def _scheduler(recs: list[dict], rows: list[dict]) -> dict:
    """Probe's scheduler fields over the repetitions that all ran (steps.py), from the records and
    their tidy rows. The largest step is not known where a request failed otherwise than by ending
    without text: vLLM drops the stats of a request it aborted, so the step that completes its split
    prefill may go uncounted. The KV cache is the server's less the block vLLM keeps back (its null
    block)."""
    kv_needed, kv_cache, largest = [], [], []
    for rec, row in zip(recs, rows, strict=True):
        engine = rec.get("engine_settings") or {}
        block, context = engine.get("block_size"), engine.get("max_model_len")
        results = [RequestResult.from_json(r) for r in rec["requests"]]
        kv_needed.append(
            steps.kv_tokens_held(results, row["duration_s"], block, context) if block and context else None
        )
        tokens = engine.get("kv_cache_tokens")
        kv_cache.append(tokens - block if tokens is not None and block else None)
        aborted = any(not r.success and r.error != NO_TEXT for r in results)
        largest.append(None if aborted else row["largest_step_tokens"])
    preempted = [row["preemptions"] for row in rows]
    return {
        "largest_step": _peak(largest),
        "preemptions": None if any(p is None for p in preempted) else sum(preempted),
        "kv_needed": _peak(kv_needed),
        "kv_cache_tokens": None if any(k is None for k in kv_cache) else min(kv_cache),
    }


@dataclass
class Capacity:
    """What a capacity search found: the highest rate that passed (None: none did), every probe in
    order, and why it stopped."""

    rate: float | None
    probes: list[Probe] = field(default_factory=list)
    reason: str = ""

    @property
    def best(self) -> Probe | None:
        passing = [p for p in self.probes if p.rate == self.rate]
        return passing[-1] if passing else None


def capacity_bisection(
    probe: Callable[[float], Probe],
    rates: Sequence[float],
    target: float,
    *,
    known_pass: float | None = None,
    known_fail: float | None = None,
    max_probes: int | None = None,
    resolution: float = 0.0,
    cost: Callable[[float], float] | None = None,
) -> Capacity:
    """The highest rate of the sorted grid `rates` whose probe passes (Probe.passes: goodput's lower
    bound >= target x rate), by bisection: passing is taken as monotone in the rate (a server that holds the SLO at
    a rate holds it at every lower one). `known_pass` / `known_fail`: rates already judged (a
    search across settings passes what it knows), which narrow the bracket without a probe.
    `resolution`: stop once the rate known to fail is within this share above the rate known to
    pass (0.05: rates 5% apart are not told apart; 0: to the grid's step). `cost`: what a probe at
    a rate costs (seconds); with it, each probe is at the split of least expected cost
    (cheapest_splits) rather than the middle."""
    grid = sorted(set(rates))
    if not grid:
        raise ValueError("a capacity search needs at least one rate")
    low, high = -1, len(grid)  # indices: the highest known to pass, the lowest known to fail
    if known_pass is not None:
        low = max((i for i, r in enumerate(grid) if r <= known_pass), default=-1)
    if known_fail is not None:
        high = min((i for i, r in enumerate(grid) if r >= known_fail), default=len(grid))
    split: dict[tuple[int, int], int] = {}
    found = Capacity(None)
    while high - low > 1:
        if max_probes is not None and len(found.probes) >= max_probes:
            found.reason = f"stopped after {max_probes} probes"
            break
        if _bracketed(grid, low, high, resolution):
            found.reason = f"bracketed within {resolution:.0%}"
            break
        if cost is not None and (low, high) not in split and high - low - 1 <= SPLIT_PLAN_RATES:
            split |= cheapest_splits(grid, cost, resolution, low, high)
        middle = split.get((low, high), (low + high) // 2)  # a wider bracket is halved
        result = probe(grid[middle])
        found.probes.append(result)
        if result.passes(target):
            low = middle
        else:
            high = middle
    found.rate = grid[low] if low >= 0 else None
    found.reason = found.reason or ("bracketed" if low >= 0 else "no rate of the grid passes")
    return found


def _bracketed(grid: Sequence[float], low: int, high: int, resolution: float) -> bool:
    """The rate known to fail is within `resolution` above the rate known to pass."""
    return 0 <= low and high < len(grid) and grid[high] - grid[low] <= resolution * grid[low]


#: The widest bracket (in rates) capacity_bisection plans with cheapest_splits, whose work grows
#: with the cube of the width.
SPLIT_PLAN_RATES = 160


def cheapest_splits(
    grid: Sequence[float], cost: Callable[[float], float], resolution: float, low: int, high: int
) -> dict[tuple[int, int], int]:
    """For each bracket (low, high) of grid indices within the given one (low: the highest known to
    pass, -1 for none; high: the lowest known to fail, len(grid) for none), the index to probe next
    so that the search's expected cost to the end is least: every rate from low to high - 1 equally
    likely to be the capacity (with equal costs as few probes as bisection takes), each probe costing
    `cost(rate)` (on a live server a load point of a fixed number of requests lasts longer the lower
    its rate, so the split leans towards the cheaper, higher rates). Dynamic programming over the
    brackets, exact and cubic in their width (capacity_bisection halves a bracket wider than
    SPLIT_PLAN_RATES rates before it plans)."""
    price = {i: cost(grid[i]) for i in range(low + 1, high)}
    expected: dict[tuple[int, int], float] = {}
    split: dict[tuple[int, int], int] = {}
    for width in range(1, high - low + 1):
        for a in range(low, high - width + 1):
            b = a + width
            if width == 1 or _bracketed(grid, a, b, resolution):
                expected[a, b] = 0.0
                continue
            # the least expected cost, and the lowest index of those that reach it
            expected[a, b], split[a, b] = min(
                (price[m] + ((b - m) * expected[m, b] + (m - a) * expected[a, m]) / width, m) for m in range(a + 1, b)
            )
    return split


def session_prober(
    session,
    harness: str,
    repetitions: int,
    slo: Slo,
    tolerance: float,
    max_concurrency: int | None = None,
    emulated_max_num_seqs: int | None = None,
    first_rep: int = 0,
):
    """A probe function for capacity_bisection on a live server: each rate is a load point
    measured (or reused) `repetitions` times through `session` (a ServeSession), as repetitions
    first_rep, first_rep + 1, ..."""

    def probe(rate: float) -> Probe:
        point = LoadPoint(float(rate), max_concurrency, emulated_max_num_seqs)
        reps = range(first_rep, first_rep + repetitions)
        measured = [session.measure(point, rep, harness) for rep in reps]
        return Probe.from_records(
            rate, [record for record, _ in measured], slo, tolerance, reused=all(r for _, r in measured)
        )

    return probe
