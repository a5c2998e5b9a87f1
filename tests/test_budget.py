"""The budget strategies on a synthetic grid with a known out-of-memory edge and optimum (the
rehearsal's trials given as table rows, no file), the budget section's config checks, and the
study's table on a two-seed slice of the paper's grid."""

from __future__ import annotations

import dataclasses
import math

import pytest
from conftest import REPO, SHARED_DATA, needs_shared
from test_workflow import job_counts, snakemake

from infpop.budget import strategies as st
from infpop.budget import study
from infpop.config import ConfigError, load_config
from infpop.measure import sequential
from infpop.measure.engines.rehearsal import Row
from infpop.measure.repetitions import Policy

BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
EDGE = 7  # batch 128 and above run out of memory
OPTIMUM = 3  # batch 8 (odd index: off the coarse grid) has the best throughput
PROMPTS = 256
SWEEP = ("gpu", "hf", "m", 1)
WHERE = (*SWEEP, 5)


def throughput(index: int) -> float:
    return 100.0 * (1 + index) if index <= OPTIMUM else 400.0 - 20.0 * (index - OPTIMUM)


def table(sweeps=(SWEEP,), tokens=(5,)) -> dict:
    """Each sweep's rows: ok below the edge (a single peak), out of memory from it."""
    found = {}
    for sweep in sweeps:
        found[sweep] = {
            (t, b): [Row(0, "ok", throughput(i), None, None) if i < EDGE else Row(0, "oom", None, None, None)]
            for t in tokens
            for i, b in enumerate(BATCHES)
        }
    return found


def source(seed: int = 0, sweeps=(SWEEP,), tokens=(5,), cv: float = 0.0) -> st.Rehearsal:
    return st.Rehearsal(table(sweeps, tokens), seed, {"hf": cv, "vllm": cv}, PROMPTS, lambda sweep: 10.0)


def trial_cost(trial) -> float:
    """A trial's exact device-seconds here (ok: prompts x tokens / throughput; out of memory: 0)."""
    index = BATCHES.index(trial[5])
    return PROMPTS * trial[4] / throughput(index) * trial[3] if index < EDGE else 0.0


def test_the_ledger_charges_each_trial_once_and_its_load_once():
    ledger = st.Ledger(source())
    first = ledger.measure((*WHERE, 1))
    assert first.status == "ok" and first.throughput == pytest.approx(throughput(0))
    assert first.device_seconds == pytest.approx(trial_cost((*WHERE, 1)))
    assert ledger.spent == pytest.approx(10.0 + trial_cost((*WHERE, 1)))
    assert ledger.measure((*WHERE, 1)) is first and ledger.spent == pytest.approx(10.0 + trial_cost((*WHERE, 1)))
    assert ledger.measure((*WHERE, 256)).out_of_memory
    assert ledger.measure(("gpu", "hf", "absent", 1, 5, 1)).status == "unsupported"


def test_bisection_finds_the_edge_in_log2_probes_and_measures_nothing_above_it():
    ledger = st.Ledger(source())
    assert st.oom_edge(ledger, WHERE, BATCHES) == EDGE
    assert len(ledger.measured) <= 2 + math.ceil(math.log2(len(BATCHES)))
    st.oom_bisection(ledger, WHERE, BATCHES)
    measured = {t[5] for t in ledger.measured}
    assert set(BATCHES[:EDGE]) <= measured
    above = measured - set(BATCHES[: EDGE + 1])
    assert len(above) <= 1  # the largest batch size, probed first
    # every batch size fails: the edge is the first
    assert st.oom_edge(st.Ledger(source()), ("gpu", "hf", "m", 1, 5), [256, 512, 1024]) == 0


def test_the_coarse_grid_finds_the_optimum_off_its_grid_and_the_edge_for_fewer_trials():
    ledger = st.Ledger(source())
    st.coarse_grid(ledger, WHERE, BATCHES)
    counted = {t: m for t, m in ledger.measured.items() if m.counted}
    best = max(counted, key=lambda t: counted[t].throughput)
    assert best[5] == BATCHES[OPTIMUM]
    assert (*WHERE, BATCHES[EDGE - 1]) in ledger.measured and (*WHERE, BATCHES[EDGE]) in ledger.measured
    assert len(ledger.measured) < len(BATCHES)
    # with the edge known (bisection), nothing at or above it is measured again
    known = st.Ledger(source())
    st.coarse_grid(known, WHERE, BATCHES, edge=EDGE)
    assert max(BATCHES.index(t[5]) for t in known.measured) == EDGE - 1


@pytest.mark.parametrize("budget", [50.0, 200.0, 1000.0])
def test_the_optimiser_stays_within_its_budget(budget):
    sweeps = [("gpu", "hf", "m", g) for g in (1, 2, 4)]
    grid = study.Grid(tuple(sweeps), tuple(BATCHES), (5,))
    ledger = study.run(source(sweeps=sweeps), grid, study.Plan(frozenset({"optimiser"}), budget), trial_cost)
    assert 0 < ledger.spent <= budget + 1e-9
    assert {t[4] for t in ledger.measured} == {5}
    full = study.run(source(sweeps=sweeps), grid, study.Plan(frozenset()), trial_cost)
    assert len(full.measured) == len(sweeps) * len(BATCHES)
    assert ledger.spent < full.spent or budget >= full.spent  # a budget above the full grid buys all of it


def test_sequential_strategy_runs_the_real_stopping_rule_on_the_rehearsed_batches():
    """The study's sequential strategy is budget.sequential's code (infpop.measure.sequential) on
    the rehearsal's per-batch times: fewer device-seconds, the throughput within the target."""
    stopping = sequential.Settings(ci_half_width_pct=5.0, min_batches=4, strata=8)
    full = st.Ledger(source(cv=0.3)).measure((*WHERE, 1))
    sampled = st.Ledger(source(cv=0.3), stopping=stopping).measure((*WHERE, 1))
    assert sampled.device_seconds < full.device_seconds
    assert sampled.throughput == pytest.approx(full.throughput, rel=0.10)
    # the same trial asked of a second ledger times the same batches: the order is seeded
    again = st.Ledger(source(cv=0.3), stopping=stopping).measure((*WHERE, 1))
    assert (again.throughput, again.device_seconds) == (sampled.throughput, sampled.device_seconds)
    # the strategy needs its settings
    with pytest.raises(ValueError, match="budget.sequential"):
        study.run(
            source(cv=0.3),
            study.Grid((SWEEP,), tuple(BATCHES), (5,)),
            study.Plan(frozenset({"sequential"})),
            trial_cost,
        )


def test_adaptive_repetitions_come_after_the_first_runs_and_stop_by_the_policy():
    grid = study.Grid((SWEEP,), tuple(BATCHES), (5,))
    plan = study.Plan(
        frozenset({"adaptive_repetitions", "sequential"}),
        stopping=sequential.Settings(5.0, 4, 8),
        repetitions=Policy(2, 4, 1.0),
    )
    ledger = study.run(source(cv=0.3), grid, plan, trial_cost)
    counts = {t[5]: m.repetitions for t, m in ledger.measured.items()}
    assert all(2 <= counts[b] <= 4 for b in BATCHES[:EDGE]) and all(counts[b] == 1 for b in BATCHES[EDGE:])
    # on a budget the first runs come first: one that covers them leaves no repetition
    once = study.run(source(cv=0.3), grid, study.Plan(frozenset()), trial_cost)
    tight = study.run(source(cv=0.3), grid, dataclasses.replace(plan, budget_seconds=once.spent + 1e-6), trial_cost)
    assert len(tight.measured) == len(BATCHES)


def test_unknown_strategies_are_refused():
    grid = study.Grid((SWEEP,), tuple(BATCHES), (5,))
    with pytest.raises(ValueError, match="unknown budget strategies"):
        study.run(source(), grid, study.Plan(frozenset({"bisect"})), trial_cost)


# -- the config section ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "budget, repetitions, message",
    [
        ({"fraction": 0.1, "device_hours": 5}, None, "'budget.fraction': a budget is budget.device_hours or"),
        ({"strategies": ["optimiser"]}, None, "'budget.strategies': the optimiser spends a budget"),
        ({"strategies": ["adaptive_repetitions"]}, 1, "'budget.strategies': adaptive_repetitions needs the adaptive"),
        ({"strategies": ["bisect"]}, None, "'budget.strategies[0]': 'bisect' is not one of"),
        ({"fraction": 1.5}, None, "'budget.fraction': 1.5 is greater than the maximum of 1"),
        ({"study": {"seeds": 0}}, None, "'budget.study.seeds'"),
    ],
)
def test_bad_budget_values_are_named(budget, repetitions, message):
    overrides = {"budget": budget, **({"repetitions": repetitions} if repetitions is not None else {})}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("config.yaml", overrides=overrides)


def test_a_fraction_needs_the_cost_model():
    with pytest.raises(ConfigError, match="'budget.fraction': a fraction of the full grid's device-hours needs"):
        load_config("config.yaml", overrides={"budget": {"fraction": 0.1}, "runtime_estimate": {"calibration": None}})
    config = load_config("config.yaml", overrides={"budget": {"fraction": 0.1, "strategies": ["optimiser"]}})
    assert config["budget"]["study"] == {"seeds": 20}


# -- the study on a slice of the paper's grid -------------------------------------------------------

APPENDIX = SHARED_DATA / "infpop-appendix"


@pytest.mark.slow  # the CI slice of the study: 16 conclusion evaluations, about 20 s on a quiet core
@needs_shared(APPENDIX / "allData.csv")
def test_the_study_table_on_two_seeds_of_a_slice_of_the_papers_grid(tmp_path):
    from infpop import conclusions
    from infpop.analysis.selection import AnalysisSettings
    from infpop.data.paper import import_paper, write_trials

    models = ("Phi-2", "Bloom-1b7")  # the CI slice: two models, both engines and GPU models
    trials = import_paper(APPENDIX)
    table_path = tmp_path / "trials.csv"
    write_trials(trials[trials["model"].isin(models)], table_path)
    config = load_config("configs/paper.yaml", overrides={"paper_data": {"local_dir": str(APPENDIX)}})
    config["models"] = {m: config["models"][m] for m in models}
    settings = AnalysisSettings(duplicates="last")
    found, tables, full_hours = study.run_study(
        config, table_path, settings, conclusions.read_statements(), seeds=[0, 1]
    )
    assert list(found.columns) == study.COLUMNS
    runs = list(study.strategy_sets())
    assert sorted(found["strategy"].unique()) == sorted(runs) and len(found) == 2 * len(runs)
    full = found[found["strategy"] == study.FULL]
    assert (full["fraction_of_full"] == 1.0).all() and (full["checks_passed"] > 0).all()
    assert full_hours == pytest.approx(full["device_hours"].median())
    budgeted = found[found["strategy"] != study.FULL]
    assert (budgeted["fraction_of_full"] < 0.2).all()
    assert (found["checks_passed"] <= found["checks_total"]).all()
    summary = study.summary(found)
    assert list(summary["strategy"]) == runs
    text = study.to_markdown(summary, study.failing_families(tables), full_hours)
    assert "| combined |" in text
    assert study.study_png(found, tmp_path / "study.png").stat().st_size > 0


def test_the_budget_target_plans_the_study_on_the_papers_data(tmp_path):
    """The paper's config produces the study: its dry run plans the import of the paper's trials
    and the study, whose params are the config's keys it reads."""
    done = snakemake("-n", "budget", "--configfile", str(REPO / "configs/paper.yaml"), "--directory", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout) == {"import_paper": 1, "budget_study": 1, "budget": 1, "total": 3}
    assert "input: results/paper/trials.csv" in done.stdout
    assert "results/budget/study.csv, results/budget/study.md, results/budget/study.png" in done.stdout


def test_a_trial_starts_only_if_its_estimate_with_the_margin_fits():
    trial = (*WHERE, 1)
    cost = 10.0 + trial_cost(trial)  # the load and the trial
    assert st.Ledger(source(), cost, estimate=trial_cost).measure(trial).status == "ok"
    with pytest.raises(st.BudgetSpent):
        st.Ledger(source(), cost, estimate=trial_cost, margin=2.0).measure(trial)
    spent = st.Ledger(source(), cost - 1.0)
    spent.measure(trial)  # no estimate: starts while anything is left, then stops
    with pytest.raises(st.BudgetSpent):
        spent.measure((*WHERE, 2))


# -- a budgeted run (budget.run): the study's run, measuring through the sweeps' supervisors ----------


def budgeted_config(tmp_path, **budget):
    from test_rehearsal import rehearsal_config, write_table

    table = write_table(tmp_path / "table.csv")
    section = {"run": True, "fraction": 0.5, "strategies": ["oom_bisection", "coarse_grid"], **budget}
    return rehearsal_config(tmp_path, table, budget=section), table


def test_a_budgeted_run_measures_what_the_studys_run_chooses_and_a_re_run_measures_nothing(tmp_path, benchmark_file):
    """Through the real worker and supervisor (the rehearsal engine answering): the same trials in
    the same order for the same device-seconds as the study's own run on the same table and seed,
    each trial's record written as a sweep writes it, and a second run keeps every record and
    takes the same path without loading a model."""
    from infpop.budget import spend

    config, table = budgeted_config(tmp_path)
    share = spend.share_of(config, "a100", "hf")
    assert share.seconds == pytest.approx(0.5 * share.full_seconds)
    manifests, summary = spend.spend(config, share, tmp_path / "trials", benchmark_file)

    built = study.ConfigStudy(config, table)
    grid = study.Grid((("a100", "hf", "m", 1),), built.grid.batch_sizes, built.grid.max_new_tokens)
    plan = dataclasses.replace(
        built.plan(), strategies=frozenset(config["budget"]["strategies"]), budget_seconds=share.seconds
    )
    ledger = study.run(built.source(config["rehearsal"]["seed"]), grid, plan, built.estimate)
    expected = [(list(t[4:]), m.status, m.device_seconds) for t, m in ledger.measured.items()]
    found = [
        ([x["trial"]["max_new_tokens"], x["trial"]["batch_size"]], x["status"], x["device_seconds"])
        for x in summary["trials"]
    ]
    assert [f[:2] for f in found] == [e[:2] for e in expected]
    assert [f[2] for f in found] == pytest.approx([e[2] for e in expected])
    assert summary["spent_device_hours"] == pytest.approx(ledger.spent / 3600)
    assert summary["stopped"] == "every chosen trial measured" and summary["refused"] is None
    # bisection found the edge at b8 and measured nothing above it but its probe of b16
    assert [x for x in found if x[0][0] == 5][:2] == [([5, 1], "ok", found[0][2]), ([5, 16], "oom", 0.0)]
    (manifest,) = manifests.values()
    assert sorted(manifest["trials"]) == sorted(f"t{t}/b{b}_r0.json" for (t, b), _, _ in found)
    assert summary["job_device_hours"] >= summary["spent_device_hours"]  # loads after failures, warm-ups

    again, resummary = spend.spend(config, share, tmp_path / "trials", benchmark_file)
    (remanifest,) = again.values()
    assert remanifest["reused_trials"] == len(found) and remanifest["model_loads"] == 0
    assert resummary["trials"] == summary["trials"] and resummary["spent_device_hours"] == summary["spent_device_hours"]


def test_a_small_budget_stops_at_the_first_trial_it_cannot_afford(tmp_path, benchmark_file):
    from infpop.budget import spend

    # 5% of the grid's estimate (54 s) affords the first trial (estimated 23 s x the safety
    # factor 1.5), not the second with it
    config, _ = budgeted_config(tmp_path, fraction=0.05, strategies=[])
    manifests, summary = spend.spend(config, spend.share_of(config, "a100", "hf"), tmp_path / "trials", benchmark_file)
    assert summary["stopped"] == "budget spent" and summary["refused"][4:] == [5, 2]
    assert summary["spent_device_hours"] <= summary["budget_device_hours"]
    assert [(t["trial"]["max_new_tokens"], t["trial"]["batch_size"]) for t in summary["trials"]] == [(5, 1)]


@pytest.mark.parametrize(
    "budget, message",
    [
        ({"run": True}, "'budget.run': a budgeted run spends a budget: set budget.device_hours or budget.fraction"),
        (
            {"run": True, "device_hours": 1, "strategies": ["sequential"]},
            "'budget.strategies': a budgeted run samples within trials with budget.sequential's settings",
        ),
        (
            # hf's figures unset and no cost model for the CPU: the fallback's 1,800 s a trial,
            # which made a SmolLM2 budgeted run measure no hf trial at all
            {"run": True, "device_hours": 1, "estimate": {"hf": {"trial_s": None, "load_s": None}}},
            "'budget.run': a budgeted run spends by its trials' estimates, and cpu/hf would get the fallback",
        ),
    ],
)
def test_a_budgeted_run_needs_its_budget_and_its_sampling_settings(budget, message):
    estimate = budget.pop("estimate", None)
    overrides = {"budget": budget, **({"runtime_estimate": estimate} if estimate else {})}
    with pytest.raises(ConfigError) as raised:
        load_config("config.yaml", overrides=overrides)
    assert message in str(raised.value)


def test_a_budgeted_rehearsal_runs_through_the_workflow_and_a_larger_budget_measures_only_the_new_trials(
    tmp_path,
):
    """budget.run through Snakemake (the rehearsal engine answering): one budgeted job in place of
    the sweep job, the sweep's manifest and the ledger written, the trials table of what it chose;
    a larger budget re-runs the job, which keeps every trial it had and measures only the new ones."""
    import csv
    import json

    import yaml

    config, _ = budgeted_config(tmp_path, fraction=0.05, strategies=[])
    path = tmp_path / "budgeted.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    target = str(tmp_path / "results/rehearsal/trials.csv")  # results_dir is absolute
    done = snakemake("--cores", "1", "--configfile", str(path), "--directory", str(tmp_path), target)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    log = done.stdout + done.stderr
    assert "InfPop budgeted run:" in log and "rule sweep:" not in log and "budget_a100_hf" in log
    ledger_path = tmp_path / "results/rehearsal/trials/a100/hf/budget.json"
    first = json.loads(ledger_path.read_text())
    assert first["stopped"] == "budget spent"
    with open(target) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(first["trials"]) > 0

    config["budget"]["fraction"] = 0.5
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = snakemake("--cores", "1", "--configfile", str(path), "--directory", str(tmp_path), target)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    second = json.loads(ledger_path.read_text())
    manifest = json.loads((tmp_path / "results/rehearsal/trials/a100/hf/m/g1/sweep.json").read_text())
    assert second["trials"][: len(first["trials"])] == first["trials"]
    assert len(second["trials"]) > len(first["trials"])
    assert manifest["reused_trials"] == len(first["trials"])
    assert len(manifest["trials"]) == len(second["trials"])


def test_the_budget_is_shared_between_jobs_as_the_studys_order_would_spend_it():
    """The default config's grid on runtime_estimate's figures: hf's sweep (one load of 30 s and 7
    trials of 5 s) is the cheapest at the analyses' max_new_tokens and gets its whole estimate;
    vLLM's job, where the order stops, gets the rest of the 40%."""
    from infpop.budget import spend

    config = load_config("config.yaml", overrides={"budget": {"run": True, "fraction": 0.4}})
    found = {(s.hardware, s.engine): s for s in spend.shares(config)}
    budget = 0.4 * sum(s.full_seconds for s in found.values())
    assert found[("cpu", "hf")].seconds == pytest.approx(30 + 7 * 5) == found[("cpu", "hf")].full_seconds
    assert found[("cpu", "vllm")].seconds == pytest.approx(budget - 65)
    assert "InfPop budgeted run: 0.05 device-hours (40% of the 0.11" in spend.describe(config, list(found.values()))
