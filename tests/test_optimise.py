"""Optimisers, objectives, the RQ5 replay and the optimiser study, on small landscapes whose
answers are known (no Snakemake, no engine)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from infpop.analysis.selection import AnalysisSettings
from infpop.optimise import rq5, study
from infpop.optimise.objectives import Landscape, Objective, landscapes, pareto_front
from infpop.optimise.optimisers import OPTIMISERS, make
from infpop.optimise.search import search
from infpop.optimise.space import Outcome, Space

SPACE = Space((1, 2, 4), (1, 2, 4, 8, 16, 32))


def synthetic(point):
    """Throughput rises with the batch and with GPUs up to 2; a batch above 8 x GPUs runs out of
    memory. The optimum is (2, 16)."""
    g, b = point
    if b > 8 * g:
        return Outcome(None, "oom")
    value = b / (b + 4) * (1.0 + 0.5 * min(g, 2) - 0.2 * (g == 4))
    return Outcome(value, "ok", value)


OPTIMUM = max(synthetic(p).value or 0 for p in SPACE.points)


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_each_optimiser_finds_the_known_optimum(name):
    assert OPTIMUM == synthetic((2, 16)).value
    history = search(make(name, SPACE, seed=0), synthetic, budget=60)
    assert history.best is not None and (history.best.n_gpus, history.best.batch_size) == (2, 16)
    assert len(history.evaluations) <= 60
    # the best-so-far column never goes down and ends at the best
    bests = [e.best_value for e in history.evaluations if e.best_value is not None]
    assert bests == sorted(bests) and bests[-1] == OPTIMUM


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_budget_and_stop_reasons(name):
    history = search(make(name, SPACE, seed=1), synthetic, budget=3)
    assert len(history.evaluations) == 3 and history.stop_reason == "budget spent"
    history = search(make(name, SPACE, seed=1), synthetic, budget=100, stop_value=OPTIMUM)
    assert history.stop_reason == "reached the optimum"
    assert history.evaluations[-1].value == OPTIMUM


def test_grid_goes_in_ascending_order_and_ends_when_the_space_is_done():
    history = search(make("grid", SPACE, seed=0), synthetic, budget=100)
    assert [(e.n_gpus, e.batch_size) for e in history.evaluations] == SPACE.points
    assert history.stop_reason == "every point of the space evaluated or ruled out"


def test_landscape_ei_never_pays_twice_and_skips_what_an_oom_rules_out():
    history = search(make("landscape_ei", SPACE, seed=0), synthetic, budget=100)
    points = [(e.n_gpus, e.batch_size) for e in history.evaluations]
    assert len(points) == len(set(points))
    for e in history.evaluations:
        if e.status == "oom":  # nothing larger at the same GPU count is tried after it
            later = points[e.number :]
            assert not [p for p in later if p[0] == e.n_gpus and p[1] > e.batch_size]
    assert len(points) < len(SPACE)  # the ruled-out points were never paid for


def test_landscape_ei_skips_every_batch_size_of_an_unsupported_gpu_count():
    def heads_do_not_divide_by_4(point):
        return Outcome(None, "unsupported") if point[0] == 4 else synthetic(point)

    history = search(make("landscape_ei", SPACE, seed=0), heads_do_not_divide_by_4, budget=100)
    at_four = [e for e in history.evaluations if e.n_gpus == 4]
    assert len(at_four) <= 1 and all(e.status == "unsupported" for e in at_four)
    assert max(e.value or 0 for e in history.evaluations) == pytest.approx(OPTIMUM)


def test_landscape_ei_starts_at_the_priors_best_and_uses_it():
    prior = {p: synthetic(p).value for p in SPACE.points}
    history = search(make("landscape_ei", SPACE, seed=0, prior=prior), synthetic, budget=10, stop_value=OPTIMUM)
    assert (history.evaluations[0].n_gpus, history.evaluations[0].batch_size) == (2, 16)
    assert len(history.evaluations) == 1
    cold = search(make("landscape_ei", SPACE, seed=0), synthetic, budget=10)
    assert (cold.evaluations[0].n_gpus, cold.evaluations[0].batch_size) == (2, 4)  # the centre of the space


def test_bad_search_settings():
    with pytest.raises(ValueError, match="empty search space"):
        Space((), (1, 2))
    with pytest.raises(ValueError, match="budget must be at least 1"):
        search(make("grid", SPACE, 0), synthetic, budget=0)
    with pytest.raises(ValueError, match="unknown optimiser 'smac'"):
        make("smac", SPACE, 0)
    with pytest.raises(ValueError, match="needs latency_p95_limit_s"):
        Objective("latency_constrained")


# -- objectives ------------------------------------------------------------------------------------


def test_latency_limit_makes_slow_configurations_infeasible():
    objective = Objective("latency_constrained", latency_p95_limit_s=0.5)
    assert objective.outcome("ok", 100.0, 0.4).value == 100.0
    over = objective.outcome("ok", 200.0, 0.6)
    assert over.value is None and over.status == "latency_limit" and over.throughput == 200.0
    assert Objective().outcome("oom", 50.0, 0.1).value is None  # a partial OOM is no configuration


def test_pareto_front():
    def o(throughput, latency):
        return Outcome(throughput, "ok", throughput, latency)

    points = [
        ((1, 1), o(10, 0.1)),
        ((1, 2), o(15, 0.2)),
        ((1, 4), o(12, 0.3)),
        ((1, 8), o(30, 0.5)),
        ((2, 8), Outcome(None, "oom", None, None)),
    ]
    assert [p for p, _ in pareto_front(points)] == [(1, 8), (1, 2), (1, 1)]


def test_latency_objective_on_data_without_latency_is_refused():
    trials = _fixture()
    with pytest.raises(ValueError, match="needs the p95 batch latency"):
        landscapes(trials, AnalysisSettings(), Objective("latency_constrained", 1.0))


# -- RQ5 replay ------------------------------------------------------------------------------------

# Two models, GPUs 1-2 x batch 1, 2, 1028 (1028 stands for the appendix's unreachable batch size).
V100 = {
    "A": {(1, 1): 10, (1, 2): 20, (1, 1028): None, (2, 1): 8, (2, 2): 12, (2, 1028): 14},
    "B": {(1, 1): 5, (1, 2): 9, (1, 1028): None, (2, 1): 4, (2, 2): 6, (2, 1028): 7},
}
A100 = {
    "A": {(1, 1): 15, (1, 2): 25, (1, 1028): None, (2, 1): 20, (2, 2): 30, (2, 1028): 40},
    "B": {(1, 1): 6, (1, 2): None, (1, 1028): None, (2, 1): 5, (2, 2): 11, (2, 1028): 12},
}


def _fixture() -> pd.DataFrame:
    rows = []
    for hardware, table in (("v100", V100), ("a100", A100)):
        for model, points in table.items():
            for (g, b), value in points.items():
                rows.append(
                    dict(
                        hardware=hardware,
                        engine="hf",
                        model=model,
                        n_gpus=g,
                        batch_size=b,
                        max_new_tokens=5,
                        rep=0,
                        status="ok" if value else "oom",
                        throughput_tokens_per_s=value,
                        latency_p95_s=np.nan,
                    )
                )
    return pd.DataFrame(rows)


DIRECTIONS = [rq5.Direction("upgrade", "v100", "a100"), rq5.Direction("downgrade", "a100", "v100")]


def _by_key(results):
    return {(r["mode"], r["direction"], r["model"]): r for r in results}


@pytest.mark.parametrize("optimiser", ["grid", "hyperopt_tpe", "landscape_ei"])
def test_corrected_replay_against_hand_computed_improvements(optimiser):
    settings = rq5.ReplaySettings(optimiser=optimiser, evaluations=50, repeats=3)
    results = _by_key(
        rq5.run_all(rq5.corrected_experiments(_fixture(), DIRECTIONS, AnalysisSettings(), Objective()), settings)
    )
    # A upgrade: V100 best (1, 2) = 20 -> 25 on the A100, whose optimum is (2, 1028) = 40: +60%.
    a_up = results[("corrected", "upgrade", "A")]
    assert a_up["best_on_old"] == {"n_gpus": 1, "batch_size": 2, "throughput": 20}
    assert a_up["baseline_on_new"]["throughput"] == 25
    assert a_up["median"] == pytest.approx(60.0) and len(a_up["repeats"]) == 3
    # B upgrade: V100 best (1, 2) = 9 fails on the A100; the next, (2, 1028) = 7, runs: 12, the
    # A100 optimum: 0%.
    b_up = results[("corrected", "upgrade", "B")]
    assert (b_up["best_on_old"]["n_gpus"], b_up["best_on_old"]["batch_size"]) == (2, 1028)
    assert b_up["median"] == pytest.approx(0.0)
    # A downgrade: A100 best (2, 1028) = 40 -> 14 on the V100, optimum (1, 2) = 20: +42.857%.
    assert results[("corrected", "downgrade", "A")]["median"] == pytest.approx(100 * 6 / 14)
    # B downgrade: A100 best (2, 1028) = 12 -> 7, V100 optimum (1, 2) = 9: +28.571%.
    assert results[("corrected", "downgrade", "B")]["median"] == pytest.approx(100 * 2 / 7)
    summary = rq5.summary(list(results.values())).set_index("direction")
    assert summary.loc["upgrade", "mean_of_medians"] == pytest.approx(30.0)
    assert summary.loc["upgrade", "median_of_medians"] == pytest.approx(30.0)
    assert summary.loc["upgrade", "n_positive"] == 1 and summary.loc["upgrade", "n_models"] == 2
    assert summary.loc["downgrade", "mean_of_medians"] == pytest.approx((600 / 14 + 200 / 7) / 2)


def test_faithful_replay_cannot_reach_1028_and_drops_negative_medians():
    trials = _fixture().replace({"batch_size": {2: 1024}})  # so the appendix space holds (g, 1024)
    results = _by_key(
        rq5.run_all(rq5.faithful_experiments(trials, DIRECTIONS, 5), rq5.ReplaySettings(optimiser="grid", repeats=2))
    )
    # A upgrade: the A100 optimum (2, 1028) = 40 is out of reach; the best reachable is (2, 1024)
    # = 30: +20% over (1, 1024) = 25.
    assert results[("faithful", "upgrade", "A")]["median"] == pytest.approx(20.0)
    # A downgrade: the A100 best (2, 1028) -> 14 on the V100; the reachable optimum is (1, 1024)
    # = 20: +42.857%. B downgrade: baseline (2, 1028) = 7 on the V100 but the reachable best is
    # (1, 1024) = 9: +28.6%.
    assert results[("faithful", "downgrade", "A")]["median"] == pytest.approx(100 * 6 / 14)
    # B upgrade: V100 best (1, 1024) = 9 fails on the A100; next (2, 1028) = 7 -> 12 on the A100,
    # but the search cannot reach 1028: best reachable (2, 1024) = 11, -8.3%, left out of the
    # summary as the script left out negative medians.
    assert results[("faithful", "upgrade", "B")]["median"] == pytest.approx(100 * (11 - 12) / 12)
    summary = rq5.summary(list(results.values())).set_index("direction")
    assert summary.loc["upgrade", "n_models"] == 1 and summary.loc["upgrade", "n_negative_dropped"] == 1
    assert summary.loc["upgrade", "mean_of_medians"] == pytest.approx(20.0)


def test_replay_reports_models_it_cannot_replay():
    trials = _fixture()
    trials = trials[~((trials["model"] == "B") & (trials["hardware"] == "a100"))]
    results = _by_key(
        rq5.run_all(
            rq5.corrected_experiments(trials, DIRECTIONS, AnalysisSettings(), Objective()),
            rq5.ReplaySettings(optimiser="grid", repeats=1),
        )
    )
    assert results[("corrected", "upgrade", "B")]["status"] == "no trial on the new GPU (a100)"
    assert results[("corrected", "downgrade", "B")]["status"].startswith("no feasible trial on the old GPU")
    summary = rq5.summary(list(results.values())).set_index("direction")
    assert summary.loc["upgrade", "n_models"] == 1 and summary.loc["upgrade", "n_without_result"] == 1


# -- optimiser study -------------------------------------------------------------------------------


def test_study_counts_evaluations_to_the_optimum():
    land = Landscape("x", "hf", "m", {p: synthetic(p) for p in SPACE.points})
    prior = Landscape("y", "hf", "m", {p: synthetic(p) for p in SPACE.points})
    todo = study.tasks(
        {("x", "hf", "m"): land, ("y", "hf", "m"): prior},
        {"hf": SPACE},
        ["grid", "landscape_ei"],
        seeds=2,
        prior_hardware={"x": "y"},
    )
    assert [t.label for t in todo] == ["grid", "landscape_ei", "landscape_ei+prior", "grid", "landscape_ei"]
    rows = study.run(todo)
    table = study.efficiency(rows).set_index("optimiser")
    # the ascending grid meets (2, 16), the optimum, at the 11th point; 95% of it first at (2, 8)
    position = SPACE.points.index((2, 16)) + 1
    grid_runs = [r for r in rows if r["optimiser"] == "grid"]
    assert all(study.evaluations_to_reach(r["ratios"], 0.99) == position for r in grid_runs)
    assert table.loc["grid", "median_evaluations_to_99pct"] == position
    assert table.loc["landscape_ei+prior", "median_evaluations_to_95pct"] == 1
    assert table.loc["landscape_ei+prior", "fraction_95pct_within_8"] == 1.0
    assert math.isinf(study.evaluations_to_reach([0.5, 0.9], 0.95))
    curves = study.curves(rows)
    assert set(curves["evaluations"]) == set(range(1, len(SPACE) + 1))
    # landscapes of spaces of different sizes (engines measured at other GPU counts) share the curves
    small = Space((1,), (1, 2, 4))
    rows += study.run(
        study.tasks(
            {("x", "vllm", "m"): Landscape("x", "vllm", "m", {p: synthetic(p) for p in small.points})},
            {"vllm": small},
            ["grid"],
            seeds=1,
            prior_hardware={},
        )
    )
    curves = study.curves(rows)
    grid = curves[curves["optimiser"] == "grid"]
    assert len(grid) == len(SPACE) and grid["mean_ratio"].iloc[-1] == 1.0
