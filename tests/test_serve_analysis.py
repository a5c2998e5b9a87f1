"""The serving analysis (infpop/serve/analysis.py) and the auto_tune comparison
(infpop/serve/autotune.py) on synthetic load points whose answer is known: knees of curves built
with one, Pareto fronts with a dominated point, a knob that changes goodput and one that does not,
capacity searches and both tuners on tables whose capacities are set by hand. A fake session (a
dict of records) isolates the adapter to ServeSession; real servers: bench/serve_autotune.py."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from test_serve import a_record, context, model_folder  # noqa: F401 - the fixture

from infpop.analysis import stats
from infpop.serve import analysis, autotune, records
from infpop.serve.analysis import Probe, capacity_bisection, kneedle, wilson
from infpop.serve.autotune import Ledger, ReplaySource, Setting, auto_tune, infpop_tune
from infpop.serve.metrics import Slo
from infpop.serve.plan import ServeJob

# -- knees, fronts, knobs --------------------------------------------------------------------------


def test_kneedle_finds_the_knee_of_a_hockey_stick_and_none_without_one():
    xs = [1, 2, 3, 4, 5, 6, 7, 8]
    ys = [10, 10.5, 11, 11.5, 12, 60, 150, 300]  # flat, then steep after x = 5
    assert xs[kneedle(xs, ys)] == 5
    assert kneedle(list(reversed(xs)), list(reversed(ys))) == 3  # index in the order given
    assert kneedle([1, 2], [1, 5]) is None
    assert kneedle([1, 2, 3], [4, 4, 4]) is None
    assert kneedle([1, 2, 3], [1, 2, 3]) is None  # a straight line has no knee
    with pytest.raises(ValueError):
        kneedle([1, 2, 3], [1, 2])


def row(settings="a", rate=1, **values):
    base = dict(hardware="cpu", engine="vllm", model="m", n_gpus=1, settings=settings, harness="infpop")
    return {**base, "max_concurrency": None, "request_rate": rate, "status": "ok", **values}


def test_latency_knees_per_curve():
    rows = [
        row(rate=r, request_throughput=r * 0.98, e2el_p99_ms=ms)
        for r, ms in zip(range(1, 9), [10, 11, 12, 13, 14, 80, 150, 300], strict=True)
    ]
    rows.append(row(rate=9, request_throughput=None, e2el_p99_ms=None, status="timeout"))
    (curve,) = analysis.latency_knees(rows)
    assert curve["points"] == 8 and curve["knee_request_rate"] == 5
    assert curve["knee_latency_ms"] == 14


def test_the_pareto_front_drops_dominated_load_points():
    rows = [
        row(rate=1, user_output_tokens_per_s_mean=50, output_throughput_per_device=100),
        row(rate=2, user_output_tokens_per_s_mean=40, output_throughput_per_device=180),
        row(rate=4, user_output_tokens_per_s_mean=30, output_throughput_per_device=170),  # beaten by rate 2
        row(rate=8, user_output_tokens_per_s_mean=20, output_throughput_per_device=250),
    ]
    front = analysis.pareto_rows(rows)
    assert [r["request_rate"] for r in front] == [8, 2, 1]
    assert all(r["pareto"] for r in front)


def knob_rows():
    """Goodput doubles with max_num_seqs and does not depend on block_size (three repetitions)."""
    out = []
    for seqs in (4, 8, 16):
        for block in (16, 32):
            for rep in range(3):
                out.append(
                    row(
                        settings=f"s{seqs}b{block}",
                        rate=8,
                        request_goodput=seqs / 4 + 0.01 * rep + 0.001 * (block == 32),
                        arg_max_num_seqs=seqs,
                        arg_block_size=block,
                    )
                )
    return out


def test_a_knob_that_changes_goodput_is_significant_and_one_that_does_not_is_not():
    effects = {e["knob"]: e for e in analysis.knob_effects(knob_rows())}
    assert effects["max_num_seqs"]["levels"] == 3 and effects["max_num_seqs"]["n"] == 18
    assert effects["max_num_seqs"]["anova_p"] < 1e-6 and effects["max_num_seqs"]["kruskal_p"] < 0.01
    assert effects["block_size"]["anova_p"] > 0.5 and effects["block_size"]["kruskal_p"] > 0.5
    assert "4: 1.01" in effects["max_num_seqs"]["group_means"]


def test_kruskal_needs_two_groups_and_variation():
    assert math.isnan(stats.kruskal({"a": [1, 2]}).H)
    assert "same" in stats.kruskal({"a": [1, 1], "b": [1, 1]}).note
    assert stats.kruskal({"a": [1, 2, 3], "b": [7, 8, 9]}).p < 0.1


def test_the_goodput_landscape_holds_each_settings_best(tmp_path):
    best = analysis.best_goodput_per_setting(knob_rows())
    assert len(best) == 6
    assert {(b["arg_max_num_seqs"], round(b["request_goodput"], 2)) for b in best} >= {(16, 4.02), (4, 1.02)}
    path = analysis.goodput_landscape_png(knob_rows(), tmp_path / "landscape.png")
    assert path.stat().st_size > 10_000
    empty = analysis.goodput_landscape_png([], tmp_path / "none.png")
    assert empty.exists()


# -- capacity --------------------------------------------------------------------------------------


def test_wilson_interval_matches_its_textbook_values():
    low, high = wilson(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == pytest.approx(1.0)
    low, high = wilson(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson(0, 0) == (0.0, 1.0)


def synthetic(capacity: float, requests: int = 100):
    """A server that holds E2EL within the SLO for every request up to `capacity` req/s and for
    half of them above."""

    calls = []

    def probe(rate: float) -> Probe:
        calls.append(rate)
        good = requests if rate <= capacity else requests // 2
        return Probe(rate, "ok", requests, good, requests / rate, request_throughput=rate)

    return probe, calls


@pytest.mark.parametrize("capacity", [1, 7, 13, 39, 40])
def test_capacity_bisection_finds_the_highest_passing_rate_in_log_probes(capacity):
    probe, calls = synthetic(capacity)
    found = capacity_bisection(probe, range(1, 41), 0.9)
    assert found.rate == capacity and found.best.rate == capacity
    assert len(found.probes) == len(calls) <= math.ceil(math.log2(41))


def test_capacity_bisection_uses_what_is_known_and_reports_no_capacity():
    probe, calls = synthetic(0.5)
    assert capacity_bisection(probe, range(1, 9), 0.9).rate is None
    probe, calls = synthetic(6)
    found = capacity_bisection(probe, range(1, 9), 0.9, known_pass=5, known_fail=7)
    assert found.rate == 6 and calls == [6]
    few = capacity_bisection(synthetic(6)[0], range(1, 1000), 0.9, max_probes=2)
    assert len(few.probes) == 2 and "2 probes" in few.reason


def test_capacity_bisection_stops_within_its_resolution():
    """Capacity 78 in 1..96 (the quiet live run's bracket, bench/README.md): to 1 req/s takes 6
    probes; with rates 5% apart not told apart, 5, and the capacity found is within 5% under the
    true one."""
    exact = capacity_bisection(synthetic(78)[0], range(1, 97), 0.9)
    coarse = capacity_bisection(synthetic(78)[0], range(1, 97), 0.9, resolution=0.05)
    assert exact.rate == 78 and len(exact.probes) == 6
    assert 78 / 1.05 <= coarse.rate <= 78 and len(coarse.probes) == 5 and "5%" in coarse.reason
    failed = min(p.rate for p in coarse.probes if not p.passes(0.9))
    assert failed - coarse.rate <= 0.05 * coarse.rate


def searched(capacity: float, rates, cost=None, resolution: float = 0.05) -> tuple[float | None, list[float]]:
    """What a capacity search found on a synthetic server, and the rates it probed in order."""
    probe, calls = synthetic(capacity)
    return capacity_bisection(probe, rates, 0.9, resolution=resolution, cost=cost).rate, calls


def test_with_equal_costs_the_cheapest_splits_take_as_few_probes_as_bisection():
    rates = range(1, 41)
    plain = [searched(c, rates, resolution=0.0) for c in range(41)]
    planned = [searched(c, rates, cost=lambda r: 5.0, resolution=0.0) for c in range(41)]
    assert [r for r, _ in planned] == [r for r, _ in plain] == [None, *range(1, 41)]
    assert sum(len(calls) for _, calls in planned) == sum(len(calls) for _, calls in plain)
    assert max(len(calls) for _, calls in planned) <= math.ceil(math.log2(41))


def test_the_cheapest_splits_spend_less_where_low_rates_cost_more():
    """A load point of 300 requests lasts 300 / rate seconds (1 s of warm-up): over a bracket of
    1-62 req/s (the stalled live run's, bench/README.md) every capacity is found to 5% as plain
    bisection finds it, for less device time on average (the plan's expectation, every capacity
    equally likely, is least), and for the capacity of 14 req/s that run had, 13% less."""
    rates, cost = range(1, 63), lambda rate: 300 / rate + 1.0
    planned = {c: searched(c, rates, cost=cost) for c in range(63)}
    assert planned[0][0] is None
    assert all(c / 1.05 <= planned[c][0] <= c for c in range(1, 63))
    planned_s = {c: sum(map(cost, calls)) for c, (_, calls) in planned.items()}
    plain_s = {c: sum(map(cost, searched(c, rates)[1])) for c in range(63)}
    assert sum(planned_s.values()) < sum(plain_s.values())
    assert planned_s[14] < 0.88 * plain_s[14]


def test_a_bracket_wider_than_the_plan_is_halved_first():
    probe, calls = synthetic(700)
    found = capacity_bisection(probe, range(1, 1001), 0.9, resolution=0.05, cost=lambda r: 1000 / r)
    assert calls[:3] == [500, 750, 625]  # then 125 rates, within SPLIT_PLAN_RATES: planned
    assert 700 / 1.05 <= found.rate <= 700 and len(calls) <= 12


def test_a_probe_passes_on_its_goodputs_lower_bound_against_the_offered_rate():
    sure = Probe(4, "ok", 100, 100, 25.0)
    assert sure.passes(0.95) and not sure.passes(0.97)
    assert not Probe(4, "ok", 12, 12, 3.0).passes(0.9)  # 12 of 12: the bound is 0.76
    assert not Probe(4, "crashed", 100, 100, 25.0).passes(0.5)
    behind = Probe(4, "ok", 100, 100, 50.0)  # every request good, but 2 req/s completed of 4 offered
    assert not behind.passes(0.6) and behind.passes(0.45)
    at_inf = Probe(math.inf, "ok", 100, 100, 50.0)  # no offered rate: the attainment's bound alone
    assert at_inf.passes(0.95)
    low, high = sure.goodput_ci
    assert low == pytest.approx(0.963 * 4, abs=0.01) and high == pytest.approx(4.0)


class FakeSession:
    """Stands in for ServeSession: records made by test_serve.a_record, counted, none reused."""

    def __init__(self, ctx):
        self.ctx, self.calls, self.server_starts = ctx, [], [9.0]

    def measure(self, point, rep, harness):
        self.calls.append((point.request_rate, rep, harness))
        return a_record(self.ctx, rep=rep), False

    def close(self):
        self.closed = True


def test_session_prober_pools_the_repetitions_records(model_folder):  # noqa: F811
    session = FakeSession(context(model_folder))
    probe = analysis.session_prober(session, "infpop", 2, Slo(ttft_ms=250), 0.1)(2.0)
    assert session.calls == [(2.0, 0, "infpop"), (2.0, 1, "infpop")]
    assert probe.requests == 6 and probe.good == 4  # two of each record's three within 250 ms
    assert probe.duration_s == pytest.approx(3.2) and probe.server_start_s == 9.0 and not probe.reused
    ctx = context(model_folder)
    crashed = Probe.from_records(2.0, [a_record(ctx), a_record(ctx, status="crashed", rep=1)], Slo(ttft_ms=250), 0.1)
    assert crashed.status == "crashed" and not crashed.passes(0.1) and crashed.requests == 3


# -- auto_tune and InfPop's tuning -----------------------------------------------------------------

SEQS, TOKENS = (4, 8, 16, 32), (256, 512)


def grid() -> list[Setting]:
    """auto_tune's order: max_num_seqs outer, max_num_batched_tokens inner."""
    return [
        Setting(f"max_num_seqs={s},max_num_batched_tokens={b}", (("max_num_seqs", s), ("max_num_batched_tokens", b)))
        for s in SEQS
        for b in TOKENS
    ]


def table(capacity, limit_ms=1000.0, requests=100, start_s=60.0, pass_at_inf=False, graded=False):
    """Every setting at rate inf and every integer rate up to 40: within `limit_ms` for every
    request up to the setting's capacity, a tenth of them above (graded: 15% fewer for each req/s
    above it, at least 5%); at inf the throughput is the capacity + 3 (and the latency over the
    limit unless pass_at_inf); 2 s of warm-up each."""
    out = {}
    for setting in grid():
        cap = capacity(setting)
        for rate in [math.inf, *map(float, range(1, 41))]:
            holds = pass_at_inf if math.isinf(rate) else rate <= cap + 3 * pass_at_inf  # up to its throughput
            throughput = cap + 3 if math.isinf(rate) else min(rate, cap + 3) * 0.99
            above = int(requests * max(0.05, 1 - 0.15 * (rate - cap))) if graded and not math.isinf(rate) else None
            out[(setting.label, rate, None)] = Probe(
                rate,
                "ok",
                requests,
                requests if holds else above or requests // 10,
                requests / throughput,
                2.0,
                start_s,
                request_throughput=throughput,
                e2el_p99_ms=limit_ms * (0.5 if holds else 4),
            )
    return out


def capacity_by_seqs(setting: Setting) -> float:
    knobs = dict(setting.knobs)
    return {4: 6, 8: 11, 16: 17, 32: 15}[knobs["max_num_seqs"]] + (1 if knobs["max_num_batched_tokens"] == 512 else 0)


def test_auto_tune_walks_down_from_the_rate_inf_throughput_and_keeps_the_best():
    choice = auto_tune(ReplaySource(table(capacity_by_seqs)), grid(), 1000.0)
    assert choice.setting.label == "max_num_seqs=16,max_num_batched_tokens=512"
    assert choice.probe.rate == 18
    # per setting: rate inf, then int(cap + 3) + 1 down to cap: 5 load points below inf
    assert choice.ledger.invocations == len(grid()) * 6
    asked = [(s.label, p.rate) for s, p in choice.ledger.probes]
    assert asked[:6] == [(grid()[0].label, r) for r in (math.inf, 10, 9, 8, 7, 6)]
    spent = sum(p.duration_s + p.warmup_s for _, p in choice.ledger.probes) + 60 * len(grid())
    assert choice.ledger.device_s == pytest.approx(spent)


@pytest.mark.parametrize("start_s", [0.0, 60.0])
def test_infpop_tuning_finds_the_same_setting_in_a_third_of_the_load_points(start_s):
    source = ReplaySource(table(capacity_by_seqs, start_s=start_s))
    theirs = auto_tune(source, grid(), 1000.0)
    ours = infpop_tune(source, grid(), 0.9)
    assert ours.setting == theirs.setting and ours.probe.rate == theirs.probe.rate
    row = autotune.comparison_row("replay", {"model": "m"}, grid(), theirs, ours, 1000.0, 0.9)
    assert row["same_setting"] and row["within_ci"]
    assert row["invocation_ratio"] <= 1 / 3
    assert row["auto_tune_measured_now"] == 0 and row["auto_tune_missing"] == 0
    # every setting costs each side a server start: with a minute's start the device time is not
    # cut to a third, only the load points are
    assert row["goal_met"] == (start_s == 0.0) == (row["device_minutes_ratio"] <= 1 / 3)


def test_infpops_first_bisection_leans_to_the_cheaper_higher_rates():
    """Below the first setting's rate-inf bound (20 req/s), plain bisection would ask 10 req/s
    first; a load point of 100 requests lasts 100 / rate seconds, and the cheapest split is 13."""
    ours = infpop_tune(ReplaySource(table(capacity_by_seqs)), grid(), 0.9)
    first = ours.ledger.probes[0][0]
    assert [p.rate for s, p in ours.ledger.probes if s == first] == [math.inf, 13, 17, 15, 16]


def test_when_every_setting_holds_the_slo_at_rate_inf_both_measure_each_once():
    theirs = auto_tune(ReplaySource(table(capacity_by_seqs, pass_at_inf=True)), grid(), 1000.0)
    ours = infpop_tune(ReplaySource(table(capacity_by_seqs, pass_at_inf=True)), grid(), 0.9)
    assert theirs.setting == ours.setting and theirs.probe.rate == ours.probe.rate == math.inf
    assert theirs.ledger.invocations == ours.ledger.invocations == len(grid())  # no saving here


def test_a_rate_the_replay_table_lacks_is_missing_and_fails():
    thin = {k: v for k, v in table(capacity_by_seqs).items() if k[1] in (math.inf, 1.0, 4.0)}
    choice = auto_tune(ReplaySource(thin), grid(), 1000.0)
    assert choice.ledger.missing > 0
    assert choice.probe.rate in (1.0, 4.0)
    assert choice.ledger.measured_now == 0


def test_replay_tables_come_from_a_runs_records(model_folder):  # noqa: F811
    ctx = context(model_folder)
    collected = [(a_record(ctx, rep=r), f"p{r}") for r in range(2)]
    collected.append((a_record(ctx, harness="vllm_bench"), "v"))
    ((case, (settings, points)),) = autotune.replay_tables(collected, Slo(e2el_ms=1500), 0.1, "infpop").items()
    assert case == ("cpu", "hf", "tiny", 1) and [s.label for s in settings] == ["default"]
    probe = points[("default", 2.0, None)]
    assert probe.requests == 6 and probe.good == 6 and probe.reused


def test_a_runs_records_replayed_give_the_comparison_and_every_probe(model_folder, tmp_path):  # noqa: F811
    ctx = context(model_folder)
    collected = []
    for seqs, scale in ((4, 2.0), (8, 1.0)):  # max_num_seqs=8 answers twice as fast
        job = ServeJob("cpu", "vllm", "tiny", 1, f"max_num_seqs={seqs}")
        server = records.ServeContext(**{**vars(ctx), "job": job, "settings_axes": {"max_num_seqs": seqs}})
        collected.append((a_record(server, scale=scale), "p"))
    config = {
        "serve": {
            "saturation_tolerance": 0.1,
            "tuning": {
                "e2el_ms": 1000,
                "target_share": 0.1,
                "harness": "infpop",
                "share_servers": False,
                "resolution": 0.05,
                "line_search": True,
                "first": "auto_tune",
            },
        }
    }
    rows, probes, capacities = autotune.run_replay(config, collected)
    (row,) = rows
    assert row["mode"] == "replay" and row["settings_in_grid"] == 2
    # only rate 2 was measured: rate inf and rates 1 and 3 are missing, so neither side passes
    assert row["auto_tune_missing"] > 0 and row["auto_tune_setting"] is None
    assert {p["algorithm"] for p in probes} == {"auto_tune", "infpop"}
    autotune.write_csv(rows, tmp_path / "c.csv", autotune.COLUMNS)
    autotune.write_csv(probes, tmp_path / "p.csv", autotune.PROBE_COLUMNS)
    assert (tmp_path / "c.csv").read_text().splitlines()[0].split(",") == autotune.COLUMNS
    assert "5df63a720" in autotune.AUTO_TUNE_SOURCE


def test_the_tuning_section_fills_its_defaults_and_names_its_problems(model_folder):  # noqa: F811
    from conftest import make_config

    from infpop.config import ConfigError, load_config

    config = load_config(make_config(model_folder, engines=["hf", "vllm"], serve={"tuning": {"e2el_ms": 500}}))
    assert config["serve"]["tuning"] == {
        "mode": "replay",
        "e2el_ms": 500,
        "target_share": 0.9,
        "repetitions": 1,
        "harness": "vllm_bench",
        "share_servers": False,
        "resolution": 0.05,
        "line_search": True,
        "first": "auto_tune",
        "confirm": 0,
    }
    assert load_config(make_config(model_folder, engines=["hf", "vllm"]))["serve"] is None
    with pytest.raises(ConfigError, match=r"serve\.tuning.*needs vllm"):
        load_config(make_config(model_folder, engines=["hf"], serve={"tuning": {"e2el_ms": 500}}))
    with pytest.raises(ConfigError, match=r"serve\.tuning\.harness"):
        load_config(
            make_config(model_folder, engines=["vllm"], serve={"tuning": {"e2el_ms": 500, "harness": "infpop"}})
        )
    with pytest.raises(ConfigError, match="e2el_ms"):
        load_config(make_config(model_folder, engines=["vllm"], serve={"tuning": {}}))
    with pytest.raises(ConfigError, match=r"serve\.tuning\.first"):
        load_config(make_config(model_folder, engines=["vllm"], serve={"tuning": {"e2el_ms": 500, "first": "both"}}))
    with pytest.raises(ConfigError, match=r"serve\.tuning\.resolution"):
        load_config(make_config(model_folder, engines=["vllm"], serve={"tuning": {"e2el_ms": 500, "resolution": 2}}))
    with pytest.raises(ConfigError, match=r"serve\.tuning\.share_servers.*vllm_bench"):
        load_config(
            make_config(model_folder, engines=["vllm"], serve={"tuning": {"e2el_ms": 500, "share_servers": True}})
        )
    live = {"tuning": {"e2el_ms": 500, "mode": "live", "harness": "infpop"}}
    tuning = load_config(make_config(model_folder, engines=["vllm"], serve=live))["serve"]["tuning"]
    assert tuning["share_servers"] and tuning["confirm"] == 3
    once = {"tuning": {**live["tuning"], "confirm": 1}}
    with pytest.raises(ConfigError, match=r"serve\.tuning\.confirm.*2 rounds"):
        load_config(make_config(model_folder, engines=["vllm"], serve=once))
    with pytest.raises(ConfigError, match=r"serve\.tuning\.confirm.*live servers"):
        load_config(make_config(model_folder, engines=["vllm"], serve={"tuning": {"e2el_ms": 500, "confirm": 2}}))
    replayed = {"tuning": {"e2el_ms": 500, "harness": "infpop"}, "harnesses": {"vllm": ["infpop"]}}
    config = load_config(make_config(model_folder, engines=["vllm"], serve=replayed))
    assert not config["serve"]["tuning"]["share_servers"]


def test_the_live_source_keeps_one_session_open_and_counts_its_start(model_folder):  # noqa: F811
    ctx, opened = context(model_folder), []

    def open_session(label):
        opened.append(FakeSession(ctx))
        return opened[-1]

    source = autotune.LiveSource(open_session, "infpop", 1, Slo(e2el_ms=1500), 0.1)
    a, b = grid()[:2]
    source.probe(a, 2.0)
    source.probe(a, 3.0)
    assert len(opened) == 1
    probe = source.probe(b, 2.0)
    assert len(opened) == 2 and opened[0].closed and probe.good == 3
    source.close()
    assert opened[1].closed


class ConfirmSession:
    """Stands in for ServeSession in the confirmation: a_record scaled per repetition by
    `scales[label]` (its requests' latencies), the calls in `calls`, a record asked for again reused."""

    def __init__(self, ctx, label, scales, calls):
        self.ctx, self.label, self.scales, self.calls = ctx, label, scales, calls
        self.server_starts, self.kept = [], {}

    def measure(self, point, rep, harness):
        key = (point.request_rate, rep)
        if key in self.kept:
            return self.kept[key], True
        if not self.server_starts:
            self.server_starts.append(30.0)
        self.calls.append((self.label, point.request_rate, rep))
        self.kept[key] = a_record(self.ctx, rep=rep, scale=self.scales[self.label][rep])
        return self.kept[key], False

    def close(self):
        self.calls.append((self.label, "closed"))


def chose(algorithm, setting, probe):
    return autotune.Choice(algorithm, setting, probe, Ledger(ReplaySource({})))


def test_the_confirmation_alternates_the_sides_and_judges_by_its_rounds(model_folder):  # noqa: F811
    """Fakes the server sessions (ConfirmSession) to isolate the confirmation's order, cost and
    judgement. auto_tune's answer looks better on its one load point; measured again, its
    goodput spreads (latencies x 0.5, 2 and 1 in its three rounds), and ours holds inside its interval."""
    ctx, calls = context(model_folder), []
    a, b = grid()[:2]
    scales = {a.label: [0.5, 2.0, 1.0], b.label: [1.0, 1.0, 1.0]}
    theirs = chose("auto_tune", a, Probe(2.0, "ok", 300, 300, 150.0, request_throughput=2.0, e2el_p99_ms=400))
    ours = chose("infpop", b, Probe(2.0, "ok", 300, 240, 150.0, request_throughput=2.0, e2el_p99_ms=900))
    confirmation = autotune.confirm_live(
        lambda label: ConfirmSession(ctx, label, scales, calls), (theirs, ours), 3, "infpop", Slo(e2el_ms=1000), 0.1
    )
    # rounds A B, B A, A B: a server each time the setting changes, each closed
    assert [c for c in calls if c[1] != "closed"] == [
        (a.label, 2.0, 0), (b.label, 2.0, 0), (b.label, 2.0, 1), (a.label, 2.0, 1), (a.label, 2.0, 2), (b.label, 2.0, 2)
    ]  # fmt: skip
    assert sum(c[1] == "closed" for c in calls) == 4
    # a_record: 3 requests with E2EL 400, 800 and 1200 ms x the scale, in 1.6 s; within 1000 ms: 3, 1 and 2 of them
    theirs_goodput = [3 / 1.6, 1 / 1.6, 2 / 1.6]
    assert [p.goodput for p in confirmation.probes["auto_tune"]] == pytest.approx(theirs_goodput)
    assert [p.goodput for p in confirmation.probes["infpop"]] == pytest.approx([2 / 1.6] * 3)
    assert confirmation.device_s == pytest.approx(4 * 30.0 + 6 * 1.6)
    row = autotune.comparison_row("live", {"model": "m"}, grid(), theirs, ours, 1000.0, 0.8, confirmation)
    # on the load points alone ours (1.6 req/s) is below auto_tune's interval (about 1.98-2.0)
    assert not row["within_load_point_ci"] and row["auto_tune_goodput_ci_low"] > row["infpop_goodput"]
    summary = stats_t_interval(theirs_goodput)
    assert row["auto_tune_confirmed_goodput"] == pytest.approx(summary[0])
    # the t interval's lower bound, below 0 here over three rounds this far apart, is cut at 0
    assert summary[1] < 0 and row["auto_tune_confirmed_ci_low"] == 0.0
    assert row["infpop_confirmed_goodput"] == pytest.approx(2 / 1.6) and row["within_ci"]
    # auto_tune's own rule (P99 E2EL within 1000 ms) holds in the round with latencies x 0.5 only;
    # InfPop's (goodput's lower bound >= 0.8 x 2 req/s) in none
    assert row["auto_tune_confirmed_holds"] == 1 and row["infpop_confirmed_holds"] == 0
    assert row["confirm_rounds"] == 3 and row["confirm_device_minutes"] == pytest.approx(confirmation.device_s / 60)
    assert row["goal_met"] == (row["invocation_ratio"] is not None and row["invocation_ratio"] <= 1 / 3)


def stats_t_interval(values):
    """The mean and the lower bound of its 95% t interval, computed here from scipy."""
    from scipy import stats as scipy_stats

    mean, sem = sum(values) / len(values), scipy_stats.sem(values)
    return mean, mean - scipy_stats.t.ppf(0.975, len(values) - 1) * sem


def test_one_answer_for_both_sides_is_confirmed_on_one_server_once_a_round(model_folder):  # noqa: F811
    ctx, calls = context(model_folder), []
    a = grid()[0]
    probe = Probe(2.0, "ok", 300, 300, 150.0, request_throughput=2.0, e2el_p99_ms=400)
    confirmation = autotune.confirm_live(
        lambda label: ConfirmSession(ctx, label, {a.label: [1.0, 1.0]}, calls),
        (chose("auto_tune", a, probe), chose("infpop", a, probe)),
        2,
        "infpop",
        Slo(e2el_ms=1000),
        0.1,
    )
    assert calls == [(a.label, 2.0, 0), (a.label, 2.0, 1), (a.label, "closed")]
    assert confirmation.device_s == pytest.approx(30.0 + 2 * 1.6)
    assert confirmation.goodput("auto_tune") == confirmation.goodput("infpop")


def test_without_a_confirmation_the_load_points_interval_judges():
    source = ReplaySource(table(capacity_by_seqs))
    theirs, ours = auto_tune(source, grid(), 1000.0), infpop_tune(source, grid(), 0.9)
    row = autotune.comparison_row("replay", {"model": "m"}, grid(), theirs, ours, 1000.0, 0.9)
    assert row["confirm_rounds"] == 0 and row["auto_tune_confirmed_goodput"] is None
    assert row["within_ci"] == row["within_load_point_ci"]


def test_capacity_rows_say_what_infpops_tuning_learnt_of_each_setting():
    choice = infpop_tune(ReplaySource(table(capacity_by_seqs)), grid(), 0.9)
    found = {r["settings"]: r for r in autotune.capacity_rows("replay", {}, choice, 0.9)}
    assert len(found) == len(grid())
    best = found["max_num_seqs=16,max_num_batched_tokens=512"]
    assert (best["capacity_at_least"], best["fails_at"]) == ("18", "19")
    dropped = found["max_num_seqs=4,max_num_batched_tokens=256"]
    assert dropped["probes"] == 1 and dropped["capacity_at_least"] is None and dropped["fails_at"] == "19"


def test_the_probes_figure_draws_both_algorithms(tmp_path):
    source = ReplaySource(table(capacity_by_seqs))
    theirs, ours = auto_tune(source, grid(), 1000.0), infpop_tune(source, grid(), 0.9)
    probes = autotune.probe_rows(
        "replay", {"hardware": "cpu", "engine": "vllm", "model": "m", "n_gpus": 1}, theirs, 0.9
    )
    probes += autotune.probe_rows("replay", {"hardware": "cpu", "engine": "vllm", "model": "m", "n_gpus": 1}, ours, 0.9)
    assert autotune.probes_png(probes, tmp_path / "p.png").stat().st_size > 10_000
    assert autotune.probes_png([], tmp_path / "none.png").exists()


def test_past_its_deadline_the_live_source_measures_nothing(model_folder):  # noqa: F811
    opened = []
    source = autotune.LiveSource(lambda label: opened.append(label), "infpop", 1, Slo(e2el_ms=1500), 0.1, deadline=0.0)
    assert source.probe(grid()[0], 2.0).status == "missing" and not opened


def test_a_setting_holding_the_slo_at_rate_inf_is_worth_its_goodput_not_more():
    """The smallest setting never queues (it holds the SLO at every rate and at inf) but completes
    only 9 req/s at inf: both algorithms prefer the setting that holds 18 req/s."""
    rows = table(capacity_by_seqs)
    small = grid()[0].label  # max_num_seqs=4, tried last by InfPop's tuning
    for (label, rate, emulated), probe in list(rows.items()):
        if label == small:
            rows[(label, rate, emulated)] = Probe(**{**vars(probe), "good": probe.requests, "e2el_p99_ms": 500.0})
    theirs = auto_tune(ReplaySource(rows), grid(), 1000.0)
    ours = infpop_tune(ReplaySource(rows), grid(), 0.9)
    assert theirs.setting.label == ours.setting.label == "max_num_seqs=16,max_num_batched_tokens=512"
    assert [p.rate for s, p in theirs.ledger.probes if s.label == small] == [math.inf]
    # InfPop's tuning: one load point above the incumbent's 18 req/s; it holds there (the table's
    # rates are capped at capacity + 3), so it is searched upward until its completions fall short
    asked = [p.rate for s, p in ours.ledger.probes if s.label == small]
    assert asked[0] == 19


def test_a_first_setting_holding_the_slo_at_rate_inf_sets_the_bar_at_its_goodput():
    rows = table(capacity_by_seqs)
    big = "max_num_seqs=32,max_num_batched_tokens=512"  # tried first by InfPop's tuning
    rows[(big, math.inf, None)] = Probe(**{**vars(rows[(big, math.inf, None)]), "good": 100, "e2el_p99_ms": 500.0})
    theirs = auto_tune(ReplaySource(rows), grid(), 1000.0)
    ours = infpop_tune(ReplaySource(rows), grid(), 0.9)
    assert theirs.setting.label == ours.setting.label == big and ours.probe.rate == math.inf
    # its goodput at inf is 19 req/s: every other setting is tried at inf, then at 20 req/s, and fails
    assert ours.ledger.invocations == 1 + 2 * 7
    assert [p.rate for s, p in ours.ledger.probes[1:3]] == [math.inf, 20.0]


# -- shared servers: smaller max_num_seqs emulated on the largest --------------------------------


def shared_table(capacity, start_s=60.0, peak=lambda rate: 40, graded=False):
    """table() with, on each max_num_seqs=32 server, every smaller max_num_seqs emulated at every
    rate (the emulation's premise: the same load point as the setting's own server), and the
    peak requests in flight `peak(rate)` on every load point."""
    rows = {
        key: replace(probe, peak_in_flight=peak(key[1]))
        for key, probe in table(capacity, start_s=start_s, graded=graded).items()
    }
    for setting in grid():
        seqs, tokens = (value for _, value in setting.knobs)
        server = f"max_num_seqs=32,max_num_batched_tokens={tokens}"
        if seqs != 32:
            for (label, rate, _), probe in list(rows.items()):
                if label == setting.label:
                    rows[(server, rate, seqs)] = replace(probe, peak_in_flight=min(seqs, peak(rate)))
    return rows


def test_shared_servers_put_each_max_num_seqs_on_the_largest_of_its_other_knobs():
    placed = autotune.shared_servers(grid())
    for setting, (server, emulated) in placed.items():
        knobs = dict(setting.knobs)
        assert dict(server.knobs) == {**knobs, "max_num_seqs": 32}
        assert emulated == (None if knobs["max_num_seqs"] == 32 else knobs["max_num_seqs"])
    lone = [Setting("a", (("max_num_batched_tokens", 256),)), Setting("b", (("max_num_batched_tokens", 512),))]
    assert autotune.shared_servers(lone) == {s: (s, None) for s in lone}


def test_infpop_on_shared_servers_finds_the_same_setting_in_a_third_of_the_device_minutes():
    """With a minute's server start, a server per setting keeps InfPop's device time above a third
    of auto_tune's (test_infpop_tuning_finds_the_same_setting_in_a_third_of_the_load_points);
    two servers for eight settings bring it under."""
    rows = shared_table(capacity_by_seqs)
    theirs = auto_tune(ReplaySource(rows), grid(), 1000.0)
    ours = infpop_tune(autotune.SharedServers(ReplaySource(rows), grid()), grid(), 0.9)
    assert ours.setting == theirs.setting and ours.probe.rate == theirs.probe.rate
    assert theirs.ledger.servers == 8 and ours.ledger.servers == 2
    row = autotune.comparison_row("replay", {"model": "m"}, grid(), theirs, ours, 1000.0, 0.9)
    assert row["goal_met"] and row["device_minutes_ratio"] <= 1 / 3 and row["infpop_servers"] == 2
    # one server's settings at a time, the largest first: no server is left and started again
    servers = [p.server for _, p in ours.ledger.probes]
    assert servers == sorted(servers, key=servers.index) and len(set(servers)) == 2
    assert sum(p.server_start_s for _, p in ours.ledger.probes if not p.reused) == 0  # a replay starts nothing
    assert ours.ledger.device_s == pytest.approx(
        120 + sum(p.duration_s + p.warmup_s for _, p in ours.ledger.probes if not p.inferred)
    )


def test_a_load_point_whose_limit_never_bound_answers_for_a_smaller_max_num_seqs():
    """At rate 5 the big server never held more than 3 requests: max_num_seqs=4 would have run
    that stream as it ran, so it is answered without a load point; at rate 10 it held 12, so
    max_num_seqs=4 is measured (emulated); a peak at the limit itself proves nothing."""
    rows = shared_table(capacity_by_seqs, peak=lambda rate: 3 if rate <= 5 else 12)
    source = autotune.SharedServers(ReplaySource(rows), grid())
    ledger = Ledger(source)
    big, small = grid()[6], grid()[0]  # max_num_seqs 32 and 4, both at 256 batched tokens
    measured = ledger.probe(big, 5.0)
    inferred = ledger.probe(small, 5.0)
    assert inferred.inferred and not measured.inferred and inferred.good == measured.good
    emulated = ledger.probe(small, 10.0)
    assert not emulated.inferred and emulated.server == big.label
    assert ledger.invocations == 2 and ledger.inferred == 1
    eight = grid()[2]  # max_num_seqs=8: held at most 4 when emulating max_num_seqs=4 at rate 10
    assert ledger.probe(eight, 10.0).inferred is False  # 4 in flight under a limit of 4: it may have bound


# -- shared servers: a smaller max_num_batched_tokens answered on the largest ---------------------


def with_steps(probe: Probe, largest: float) -> Probe:
    """A probe whose server reported its steps: the largest held at most `largest` tokens, nothing
    preempted, the KV cache never short."""
    return replace(probe, largest_step=largest, preemptions=0, kv_needed=1_000, kv_cache_tokens=100_000)


def test_budget_hosts_are_the_largest_budget_with_the_most_max_num_seqs():
    hosts = autotune.budget_hosts(grid())
    host = "max_num_seqs=32,max_num_batched_tokens=512"
    assert {s.label for s in hosts} == {s.label for s in grid() if dict(s.knobs)["max_num_batched_tokens"] == 256}
    assert {h.label for h in hosts.values()} == {host}
    uncounted = [Setting(s.label, s.knobs, counts_steps=dict(s.knobs)["max_num_batched_tokens"] != 256) for s in grid()]
    assert autotune.budget_hosts(uncounted) == {}  # their servers' step counts say nothing of their steps
    assert autotune.budget_hosts([Setting("a", (("max_num_seqs", 4),))]) == {}


def test_a_smaller_budget_is_answered_on_the_largest_where_no_step_reached_it():
    """Capacity by max_num_seqs alone (the premise: a budget that never binds changes nothing) and
    steps of at most 128 tokens at every finite rate: every max_num_batched_tokens=256 setting is
    measured (or answered) on the 512 server, so InfPop starts one server where auto_tune starts
    eight, and finds auto_tune's capacity."""
    rows = shared_table(lambda setting: {4: 6, 8: 11, 16: 17, 32: 15}[dict(setting.knobs)["max_num_seqs"]])
    rows = {key: with_steps(p, 4096 if math.isinf(key[1]) else 128) for key, p in rows.items()}
    theirs = auto_tune(ReplaySource(rows), grid(), 1000.0)
    ours = infpop_tune(autotune.SharedServers(ReplaySource(rows), grid()), grid(), 0.9)
    host = "max_num_seqs=32,max_num_batched_tokens=512"
    assert ours.probe.rate == theirs.probe.rate == 17
    assert theirs.ledger.servers == 8 and ours.ledger.servers == 1
    assert {p.server for _, p in ours.ledger.probes} == {host}
    assert not any(p.detour for _, p in ours.ledger.probes)
    small = [s for s, p in ours.ledger.probes if dict(s.knobs)["max_num_batched_tokens"] == 256]
    assert small  # they were asked, and answered on the host


def test_a_budget_the_steps_reached_costs_a_detour_then_gets_its_own_server():
    """The host's steps held 128 tokens at 5 req/s and 1024 above: at 5 req/s its load point stands
    for max_num_batched_tokens=256 (without a new one); at 16 the load point run on the host reaches
    the budget, so it is a detour (counted, not used: the host held 16 req/s, the setting's own
    server does not) and the setting is measured on its own server, as is every 256 setting after it."""
    rows = {key: with_steps(p, 128 if key[1] <= 5 else 1024) for key, p in shared_table(capacity_by_seqs).items()}
    shared = autotune.SharedServers(ReplaySource(rows), grid())
    ledger = Ledger(shared)
    host, own, eight = grid()[7], grid()[6], grid()[2]  # 32/512, 32/256, 8/256
    assert ledger.probe(host, 5.0).server == host.label
    inferred = ledger.probe(own, 5.0)
    assert inferred.inferred and inferred.server == host.label
    measured = ledger.probe(own, 16.0)
    assert measured.server == own.label and not measured.detour and not measured.passes(0.9)
    detours = [p for _, p in ledger.probes if p.detour]
    assert len(detours) == 1 and detours[0].server == host.label and detours[0].rate == 16.0
    assert detours[0].passes(0.9)  # the host holds 16 req/s
    assert ledger.invocations == 3 and ledger.inferred == 1 and ledger.servers == 2
    spent = sum(p.duration_s + p.warmup_s for p in (rows[(host.label, 5.0, None)], *detours, measured))
    assert ledger.device_s == pytest.approx(2 * 60 + spent)
    # from now on the 256 settings go to their own server, even at a rate the host would have held
    assert ledger.probe(eight, 4.0).server == own.label
    # a detour says nothing of the setting's capacity: 5 req/s held, 16 failed on its own server
    found = autotune.capacity_rows("replay", {}, autotune.Choice("infpop", None, None, ledger), 0.9)
    row = next(r for r in found if r["settings"] == own.label)
    assert (row["probes"], row["capacity_at_least"], row["fails_at"]) == (3, "5", "16")


def test_the_host_is_not_tried_without_step_counts_and_a_failed_host_load_point_is_a_detour():
    """Without step counts (an older record, vLLM's benchmark) the host is never tried: the
    setting goes to its own server at once. A host load point that did not run is a detour too."""
    rows = shared_table(capacity_by_seqs)
    ledger = Ledger(autotune.SharedServers(ReplaySource(rows), grid()))
    host, own = grid()[7], grid()[6]
    ledger.probe(host, 5.0)
    assert ledger.probe(own, 10.0).server == own.label and not any(p.detour for _, p in ledger.probes)
    rows = {key: with_steps(p, 128) for key, p in rows.items()}
    rows[(host.label, 10.0, None)] = replace(rows[(host.label, 10.0, None)], status="crashed")
    ledger = Ledger(autotune.SharedServers(ReplaySource(rows), grid()))
    ledger.probe(host, 5.0)
    assert ledger.probe(own, 10.0).server == own.label
    assert [p.status for _, p in ledger.probes if p.detour] == ["crashed"]


def test_an_answer_without_a_load_point_never_counts_a_server_start():
    class Starting:
        """A live server started by the first load point, then up."""

        def __init__(self):
            self.first = True

        def probe(self, setting, rate, emulated_max_num_seqs=None):
            started, self.first = self.first, False
            return Probe(rate, "ok", 10, 10, 1.0, 0.0, 30.0, peak_in_flight=2, server_started=started)

    ledger = Ledger(autotune.SharedServers(Starting(), grid()))
    ledger.probe(grid()[6], 5.0)  # max_num_seqs=32, 256 tokens: starts its server
    assert ledger.probe(grid()[0], 5.0).inferred  # max_num_seqs=4: 2 in flight at the peak
    assert ledger.device_s == pytest.approx(30 + 1.0)


def test_the_ledger_counts_every_server_start_a_probe_caused():
    class Restarting:
        def probe(self, setting, rate, emulated_max_num_seqs=None):
            return Probe(rate, "ok", 10, 10, 1.0, 0.0, 30.0, server_started=rate > 1)

    ledger = Ledger(Restarting())
    for rate in (1.0, 2.0, 3.0):  # the first on a server already up, then two fresh starts
        ledger.probe(grid()[0], rate)
    assert ledger.device_s == pytest.approx(3 * 30 + 3 * 1.0) and ledger.servers == 1


# -- InfPop's line search over max_num_seqs -------------------------------------------------------


@pytest.mark.parametrize("shared", [False, True])
def test_the_line_search_skips_the_max_num_seqs_below_one_significantly_worse(shared, tmp_path):
    """Capacities 15, 17, 11, 6 req/s for max_num_seqs 32, 16, 8, 4 (unimodal): at the incumbent's
    bar of 19 req/s, max_num_seqs=8 keeps 5% of its requests within the SLO where 16 kept 85% at
    that rate, so 4 is skipped in both runs of max_num_seqs; the same setting and rate as
    auto_tune and without the line search, with two load points fewer."""
    rows = shared_table(capacity_by_seqs, graded=True) if shared else table(capacity_by_seqs, graded=True)

    def source():
        return autotune.SharedServers(ReplaySource(rows), grid()) if shared else ReplaySource(rows)

    theirs = auto_tune(ReplaySource(rows), grid(), 1000.0)
    walked = infpop_tune(source(), grid(), 0.9)
    ours = infpop_tune(source(), grid(), 0.9, line_search=True)
    assert ours.setting == walked.setting == theirs.setting and ours.probe.rate == theirs.probe.rate == 18
    assert ours.ledger.invocations == walked.ledger.invocations - 2
    assert sorted(s.label for s in ours.skipped) == [grid()[0].label, grid()[1].label]  # max_num_seqs=4
    assert all("max_num_seqs=8" in why and "19 req/s" in why for why in ours.skipped.values())
    asked = {s for s, _ in ours.ledger.probes}
    assert not asked & set(ours.skipped)
    row = autotune.comparison_row("replay", {"model": "m"}, grid(), theirs, ours, 1000.0, 0.9)
    assert row["infpop_skipped"] == 2 and row["same_setting"] and row["invocation_ratio"] <= 1 / 3
    found = autotune.capacity_rows("replay", {"model": "m"}, ours, 0.9)
    skipped = [r for r in found if r["skipped_because"]]
    assert len(found) == len(grid()) and [r["probes"] for r in skipped] == [0, 0]
    autotune.write_csv(found, tmp_path / "capacity.csv", autotune.CAPACITY_COLUMNS)


def test_the_line_search_goes_on_where_the_difference_is_not_significant():
    """table() without grading: every failing load point keeps a tenth of its requests, so no
    setting does significantly worse than the one before it and none is skipped."""
    rows = table(capacity_by_seqs)
    ours = infpop_tune(ReplaySource(rows), grid(), 0.9, line_search=True)
    assert not ours.skipped
    assert ours.ledger.invocations == infpop_tune(ReplaySource(rows), grid(), 0.9).ledger.invocations


@pytest.mark.parametrize("first", ["auto_tune", "infpop"])
def test_serve_tuning_first_says_which_algorithm_asks_first(first):
    asked = []

    class Recording(ReplaySource):
        def probe(self, setting, rate, emulated_max_num_seqs=None):
            asked.append(setting.label)
            return super().probe(setting, rate, emulated_max_num_seqs)

    tuning = {"e2el_ms": 1000.0, "target_share": 0.9, "share_servers": False, "resolution": 0.05}
    row, probes, _ = autotune._run_case(
        "replay",
        {"model": "m"},
        Recording(table(capacity_by_seqs)),
        grid(),
        {**tuning, "line_search": True, "first": first},
    )
    # auto_tune starts with the grid's first setting, InfPop's tuning with its largest
    assert asked[0] == (grid()[0].label if first == "auto_tune" else "max_num_seqs=32,max_num_batched_tokens=512")
    assert row["same_setting"]  # the order changes nothing in a replay


def test_the_line_search_judges_by_the_nearest_rate_above_not_the_luckiest():
    """The setting before held 95 of 100 at 30 req/s but 40 of 100 at 21: against a failure with
    45 of 100 at 20 req/s, the nearest load point above (21) decides, and it is not significantly
    better; a failure with 10 of 100 is significantly worse than it."""
    before = grid()[4]  # max_num_seqs 16, 256 batched tokens; the failures are max_num_seqs=8's
    ledger = Ledger(ReplaySource({}))
    ledger.probes += [(before, Probe(30.0, "ok", 100, 95, 4.0)), (before, Probe(21.0, "ok", 100, 40, 5.0))]
    assert not autotune._worse(ledger, Probe(20.0, "ok", 100, 45, 5.0), before)
    assert autotune._worse(ledger, Probe(20.0, "ok", 100, 10, 5.0), before)
    assert not autotune._worse(ledger, Probe(31.0, "ok", 100, 10, 5.0), before)  # nothing at 31 or above
