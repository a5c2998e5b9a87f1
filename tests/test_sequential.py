"""Within-trial sequential stopping (infpop/measure/sequential.py): the stratified, seeded sampler;
the combined ratio estimator and its interval on synthetic batch times with a known answer (its
coverage over many seeds); the stopping rule; the budget.sequential config checks; a sequential
rehearsal through the real worker and supervisor (the rehearsal engine answers by batch position
and loads no model); and, marked slow, a real tiny-model hf trial in sequential mode."""

from __future__ import annotations

import math
import random

import pytest
from test_rehearsal import rehearsal_config, write_table

from infpop.config import ConfigError, load_config
from infpop.measure import records, sequential
from infpop.measure.engines import rehearsal as rh
from infpop.measure.grid import Sweep
from infpop.measure.sweep import run_sweep

SETTINGS = sequential.Settings(ci_half_width_pct=5, min_batches=4, strata=8)


# -- the sampler --------------------------------------------------------------------------------------


def test_strata_are_contiguous_blocks_of_at_least_two_batches():
    blocks = sequential.strata(23, 8)
    assert [len(b) for b in blocks] == [3, 3, 3, 3, 3, 3, 3, 2]
    assert [i for b in blocks for i in b] == list(range(23))  # contiguous, in order, each once
    assert len(sequential.strata(9, 8)) == 4  # fewer blocks where one would hold a single batch
    assert [len(b) for b in sequential.strata(1, 8)] == [1]  # one batch: one block
    assert len(sequential.strata(1033, 8)) == 8


def test_the_order_is_a_seeded_permutation_that_covers_every_stratum_before_repeating():
    blocks = sequential.strata(103, 8)
    order = sequential.sample_order(blocks, seed=7)
    assert sorted(order) == list(range(103))
    assert order == sequential.sample_order(blocks, seed=7)  # the same seed: the same batches
    assert order != sequential.sample_order(blocks, seed=8)
    where = {i: h for h, block in enumerate(blocks) for i in block}
    for rounds in range(1, 13):  # after r rounds every stratum has exactly r batches
        counts = [0] * len(blocks)
        for i in order[: rounds * len(blocks)]:
            counts[where[i]] += 1
        assert counts == [rounds] * len(blocks)
    # random within a round: over seeds, each stratum is sometimes first, not always the shortest
    firsts = {where[sequential.sample_order(blocks, seed)[0]] for seed in range(50)}
    assert firsts == set(range(len(blocks)))


def test_the_trial_seed_follows_the_trials_identity():
    assert sequential.trial_seed(0, "cpu/hf/tiny/g1", 3, 1, 0) == sequential.trial_seed(0, "cpu/hf/tiny/g1", 3, 1, 0)
    assert sequential.trial_seed(0, "cpu/hf/tiny/g1", 3, 1, 0) != sequential.trial_seed(0, "cpu/hf/tiny/g1", 3, 1, 1)
    assert sequential.trial_seed(0, "x") != sequential.trial_seed(1, "x")


# -- the estimator, on synthetic batches with a known answer -----------------------------------------


def population(n: int, cv: float, seed: int) -> list[tuple[float, float]]:
    """Synthetic (tokens, seconds) of n batches in length-ascending order: the seconds per token
    grow with position (longer prompts), times lognormal noise of spread cv."""
    rng = random.Random(seed)
    sigma = math.sqrt(math.log1p(cv * cv))
    batches = []
    for i in range(n):
        tokens = 8 * 20 if i < n - 1 else 3 * 20  # the last batch holds fewer prompts
        per_token = 0.01 * (1 + 2 * i / n)
        batches.append((tokens, tokens * per_token * math.exp(sigma * rng.gauss(0, 1) - sigma**2 / 2)))
    return batches


def true_throughput(batches) -> float:
    return sum(x for x, _ in batches) / sum(y for _, y in batches)


def test_a_constant_throughput_is_found_exactly_with_a_zero_width_interval():
    batches = [(8 * 20.0, 8 * 20 / 250.0) for _ in range(40)]
    blocks = sequential.strata(40, 4)
    timed = {i: batches[i] for i in sequential.sample_order(blocks, 1)[:8]}
    result = sequential.estimate(blocks, timed)
    assert math.isclose(result.tokens_per_s, 250.0) and result.half_width_pct == 0.0
    assert math.isclose(result.full_seconds, 40 * 8 * 20 / 250.0)


def test_every_batch_timed_gives_the_full_trials_throughput_exactly():
    batches = population(37, cv=0.3, seed=1)
    blocks = sequential.strata(37, 8)
    result = sequential.estimate(blocks, dict(enumerate(batches)))
    assert math.isclose(result.tokens_per_s, true_throughput(batches), rel_tol=1e-12)
    assert result.half_width_pct == 0.0 and result.ci_low == pytest.approx(result.ci_high)


def test_the_interval_is_unknown_until_every_stratum_has_two_batches():
    batches = population(40, cv=0.3, seed=2)
    blocks = sequential.strata(40, 4)
    order = sequential.sample_order(blocks, 3)
    assert sequential.estimate(blocks, {i: batches[i] for i in order[:3]}).tokens_per_s is None  # a stratum unseen
    one_each = sequential.estimate(blocks, {i: batches[i] for i in order[:4]})
    assert one_each.tokens_per_s is not None and one_each.half_width_pct is None
    two_each = sequential.estimate(blocks, {i: batches[i] for i in order[:8]})
    assert two_each.half_width_pct > 0 and two_each.ci_low < two_each.tokens_per_s < two_each.ci_high


def test_the_interval_covers_the_known_throughput_about_95_percent_of_the_time_and_is_unbiased():
    """Fixed sample sizes (no stopping): the nominal coverage holds; the first batches (the
    shortest, in a length-ascending order) would be far off."""
    batches = population(200, cv=0.4, seed=4)
    truth = true_throughput(batches)
    blocks = sequential.strata(200, 8)
    covered, estimates = 0, []
    draws = 400
    for seed in range(draws):
        timed = {i: batches[i] for i in sequential.sample_order(blocks, seed)[:32]}
        result = sequential.estimate(blocks, timed)
        covered += result.ci_low <= truth <= result.ci_high
        estimates.append(result.tokens_per_s)
    assert 0.88 <= covered / draws <= 0.99  # 0.915 here: a ratio's linearised interval runs a little short at small n
    assert abs(sum(estimates) / draws / truth - 1) < 0.01
    first = true_throughput(batches[:32])
    assert first / truth > 1.4  # why a sample of the first k is biased


def test_the_interval_holds_when_the_machine_drifts_during_the_trial(monkeypatch):
    """Batch times correlated in time (the machine's speed drifting during the trial, as on a
    shared CPU: here a lognormal AR(1) factor, 0.8 from one batch to the next, spread 0.15): the
    continued trial's whole throughput against the interval after 6 of its 25 rounds. The
    within-block variance alone treats the batches as independent and runs short (0.68 here); with
    the random groups' (the order's rounds) the interval holds (0.915). Without drift both hold."""
    batches = population(200, cv=0.1, seed=5)
    blocks = sequential.strata(200, 8)

    def coverage(phi: float) -> float:
        covered = 0
        for seed in range(200):
            rng = random.Random(seed)
            speed, timed = 0.0, {}
            for i in sequential.sample_order(blocks, seed):
                speed = phi * speed + rng.gauss(0, 0.15 * math.sqrt(1 - phi * phi))
                x, y = batches[i]
                timed[i] = (x, y * math.exp(speed))
            whole = true_throughput(timed.values())
            result = sequential.estimate(blocks, dict(list(timed.items())[:48]))
            covered += result.ci_low <= whole <= result.ci_high
        return covered / 200

    drifting, steady = coverage(0.8), coverage(0.0)
    monkeypatch.setattr(sequential, "_rounds_half_width", lambda *args: 0.0)
    within_blocks_only = coverage(0.8)
    assert drifting >= 0.88 and steady >= 0.93, (drifting, steady)
    assert within_blocks_only < 0.75 and drifting > within_blocks_only + 0.15, within_blocks_only


# -- the stopping rule ---------------------------------------------------------------------------------


def test_the_stopping_rule():
    estimate = sequential.Estimate(100.0, 97.0, 103.0, 3.0, batches_timed=6, batches_total=50, full_seconds=1.0)
    assert sequential.stop_reason(estimate, SETTINGS) == sequential.CI_MET
    wide = sequential.Estimate(100.0, 80.0, 120.0, 20.0, 6, 50, 1.0)
    assert sequential.stop_reason(wide, SETTINGS) is None
    few = sequential.Estimate(100.0, 99.0, 101.0, 1.0, 3, 50, 1.0)
    assert sequential.stop_reason(few, SETTINGS) is None  # below min_batches
    unknown = sequential.Estimate(100.0, None, None, None, 10, 50, 1.0)
    assert sequential.stop_reason(unknown, SETTINGS) is None
    every = sequential.Estimate(100.0, None, None, None, 50, 50, 1.0)
    assert sequential.stop_reason(every, SETTINGS) == sequential.ALL_BATCHES


def test_a_sequential_trial_stops_as_soon_as_the_interval_is_met_or_at_the_last_batch():
    steady = sequential.SequentialTrial(SETTINGS, 100, seed=5)
    stops = (steady.add(index, 160.0, 160 / 300.0) for index in steady.order)
    assert next(reason for reason in stops if reason) == sequential.CI_MET  # and no batch after it
    # two batches in each of the 8 strata: the first interval that can be estimated (width 0)
    assert steady.summary("ci_met")["batches_timed"] == 16
    noisy = sequential.SequentialTrial(sequential.Settings(0.01, 4, 4), 30, seed=5)
    batches = population(30, cv=0.5, seed=6)
    reasons = [noisy.add(i, *batches[i]) for i in noisy.order]
    assert reasons[:-1] == [None] * 29 and reasons[-1] == sequential.ALL_BATCHES
    block = noisy.summary(reasons[-1])
    assert block["tokens_per_s"] == pytest.approx(true_throughput(batches)) and block["batches_total"] == 30
    assert block["batch_indices"] == noisy.order and block["target_ci_half_width_pct"] == 0.01


# -- the config -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sequential_section, expected",
    [
        ({"ci_half_width_pct": 150}, "'budget.sequential.ci_half_width_pct': 150 is not a target"),
        ({"ci_half_width_pct": 0}, "'budget.sequential.ci_half_width_pct': 0 is less than or equal to the minimum"),
        ({"min_batches": 1}, "'budget.sequential.min_batches': 1 is less than the minimum of 2"),
        ({"strata": 0}, "'budget.sequential.strata': 0 is less than the minimum of 1"),
        ({"strata": "many"}, "'budget.sequential.strata': 'many' is not an integer"),
        ({"stratas": 3}, "budget.sequential"),
    ],
)
def test_bad_sequential_settings_name_the_key(tiny_model, sequential_section, expected):
    from conftest import make_config

    with pytest.raises(ConfigError) as caught:
        load_config(make_config(tiny_model, budget={"sequential": sequential_section}))
    assert expected in str(caught.value)


def test_sequential_is_off_by_default_and_its_defaults_fill_in(tiny_model):
    from conftest import make_config

    assert load_config(make_config(tiny_model))["budget"]["sequential"] is None
    config = load_config(make_config(tiny_model, budget={"sequential": {"strata": 4}}))
    assert sequential.Settings.from_config(config) == sequential.Settings(2.5, 4, 4, 0)


# -- a sequential rehearsal through the real worker and supervisor ----------------------------------


def test_the_rehearsal_answers_a_batch_by_its_position(tmp_path):
    from test_rehearsal import engine

    table = write_table(tmp_path / "trials.csv")
    in_order, shuffled = engine(table), engine(table)
    in_order.load(), shuffled.load()
    sizes = [1] * 23
    in_order.begin_trial(5, 1, 0, sizes)
    seconds = [in_order.generate(["p"], 5).simulated_seconds for _ in sizes]
    shuffled.begin_trial(5, 1, 0, sizes)
    for index in (7, 0, 22, 3):
        shuffled.begin_batch(index)
        assert shuffled.generate(["p"], 5).simulated_seconds == seconds[index]


def test_a_sequential_rehearsal_times_a_sample_and_records_its_estimate(tmp_path, benchmark_file):
    table = write_table(tmp_path / "trials.csv")
    budget = {"sequential": {"ci_half_width_pct": 10, "min_batches": 4, "strata": 2}}
    rehearsal = {"trials": str(table), "duplicates": "last", "batch_noise_cv": {"hf": 0.05}}
    config = rehearsal_config(tmp_path, table, budget=budget, rehearsal=rehearsal)
    folder = tmp_path / "results/rehearsal/trials/a100/hf/m/g1"
    summary = run_sweep(config, Sweep("a100", "hf", "m", 1), folder, benchmark_file)
    record = records.read(folder / "t5/b1_r0.json")  # 23 batches, recorded at 10 tokens/s
    block = record["sequential"]
    assert record["status"] == "ok" and block["stopped"] == "ci_met"
    assert 4 <= block["batches_timed"] < 23 and block["batches_total"] == 23
    assert record["counts"]["batches_completed"] == block["batches_timed"] == len(block["batch_indices"])
    assert block["ci_half_width_pct"] <= 10 and block["ci_low"] <= 10.0 <= block["ci_high"]
    assert record["throughput_tokens_per_s"] == block["tokens_per_s"] == pytest.approx(10.0, rel=0.1)
    # its cost is the timed batches' only
    assert record["cost"]["wall_seconds"] == pytest.approx(sum(record["timings"]["batch_latencies_s"]))
    assert record["cost"]["wall_seconds"] < 0.9 * 23 * 5 / 10.0
    assert record["output_digests"] == []
    # a partial out-of-memory trial stops where the table's failure falls in its sample
    oom = records.read(folder / "t5/b8_r0.json")
    assert oom["status"] == "oom" and oom["sequential"]["stopped"] == "oom"
    crashed = records.read(folder / "t10/b4_r0.json")  # the worker died: what was timed, no estimate
    assert crashed["status"] == "crashed" and crashed["sequential"]["tokens_per_s"] is None
    row = records.tidy_row(record)
    assert row["sequential"] is True and row["throughput_ci_low"] == block["ci_low"]
    assert summary["trials"]["t5/b1_r0.json"] == "ok"
    # the same settings keep the records; turning sequential off measures them again
    again = run_sweep(config, Sweep("a100", "hf", "m", 1), folder, benchmark_file)
    assert again["reused_trials"] == 10
    full = rehearsal_config(tmp_path, table, rehearsal=rehearsal)
    assert run_sweep(full, Sweep("a100", "hf", "m", 1), folder, benchmark_file)["reused_trials"] == 0
    whole = records.read(folder / "t5/b1_r0.json")
    assert whole["sequential"] is None and whole["counts"]["batches_completed"] == 23
    assert whole["output_digests"] and rh.TOKEN_ID == 0


# -- a real engine ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sequential_tiny_model_hf_trial(tmp_path, config_for, benchmark_file):
    budget = {"sequential": {"ci_half_width_pct": 50, "min_batches": 4, "strata": 2}}
    config = config_for(batch_sizes=[1], benchmark={"limit": 24}, budget=budget, warmup={"batches": 1})
    folder = tmp_path / "trials/cpu/hf/tiny/g1"
    run_sweep(config, Sweep("cpu", "hf", "tiny", 1), folder, benchmark_file)
    record = records.read(folder / "t3/b1_r0.json")
    block = record["sequential"]
    assert record["status"] == "ok" and block["batches_total"] == 24
    assert block["stopped"] in ("ci_met", "all_batches") and block["batches_timed"] >= 4
    assert record["counts"]["generated_tokens"] == 3 * block["batches_timed"]
    assert record["throughput_tokens_per_s"] == block["tokens_per_s"] > 0
    if block["stopped"] == "ci_met":
        assert block["ci_half_width_pct"] <= 50 and block["batches_timed"] < 24
        assert block["ci_low"] <= block["tokens_per_s"] <= block["ci_high"]


def test_the_bench_compares_the_sequential_estimate_with_the_full_trials_own_interval():
    """bench/sequential.py's comparison, on synthetic events (no engine): the full trial's own
    interval is its per-batch times' (no population correction), so it has a width even though
    every batch was timed."""
    import runpy

    from conftest import REPO

    from infpop.measure.channel import Batch, TrialEnd

    compare = runpy.run_path(str(REPO / "bench/sequential.py"), run_name="bench")["compare"]
    batches = population(64, cv=0.2, seed=9)
    full = [Batch(i, y, int(x), 0, None, [], None) for i, (x, y) in enumerate(batches)]
    full_end = TrialEnd("ok", None, None, None, wall_seconds=sum(y for _, y in batches))
    trial = sequential.SequentialTrial(SETTINGS, 64, seed=1)
    reason = next(r for r in (trial.add(i, *batches[i]) for i in trial.order) if r)
    seq_end = TrialEnd("ok", None, None, None, wall_seconds=1.0, sequential=trial.summary(reason))
    # the continued trial: every batch, in the sequential order (here with the same batch times)
    continued = [full[i] for i in trial.order]
    row = compare(full, full_end, seq_end, continued, SETTINGS.strata)
    assert row["full_tokens_per_s"] == pytest.approx(true_throughput(batches))
    assert row["full_ci_low"] < row["full_tokens_per_s"] < row["full_ci_high"]
    assert row["within_full_ci"] == (row["full_ci_low"] <= row["sequential_tokens_per_s"] <= row["full_ci_high"])
    assert row["batches_timed"] == len(trial.timed) and row["sequential_device_s"] == 1.0
    # side by side: where the rule stops on the continued trial's batches it estimates what the
    # stopped trial did; the run's whole throughput is every batch's
    assert row["continued_tokens_per_s"] == pytest.approx(row["sequential_tokens_per_s"])
    assert row["continued_batches_timed"] == row["batches_timed"]
    assert row["continued_full_tokens_per_s"] == pytest.approx(true_throughput(batches))
    inside = row["continued_ci_low"] <= row["continued_full_tokens_per_s"] <= row["continued_ci_high"]
    assert row["continued_full_within_ci"] == inside
    with pytest.raises(RuntimeError, match="sequential order"):  # a continued trial in another order
        compare(full, full_end, seq_end, full, SETTINGS.strata)
