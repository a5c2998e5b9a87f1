"""What a job asks a cluster for: the runtime estimate (trials x a trial + a load, x the safety
factor, capped), host memory (vLLM's processes grow with n_gpus), and the split of a sweep into one
job per max_new_tokens."""

from __future__ import annotations

import math

import pytest
from conftest import REPO

from infpop.cluster import cost_model, sizing
from infpop.cluster.sizing import SweepJob
from infpop.config import load_config
from infpop.measure.grid import Sweep, TrialKey

PAPER = REPO / "configs" / "paper.yaml"


@pytest.fixture(scope="module")
def paper():
    return load_config(PAPER)


def guessed(config: dict) -> dict:
    """The config with the per-engine figures set (the user's override of the cost model): the
    guesses this project used before the cost model, a large model on a GPU."""
    return dict(
        config,
        runtime_estimate={
            **config["runtime_estimate"],
            "hf": {"load_s": 900, "trial_s": 1800},
            "vllm": {"load_s": 900, "trial_s": 300},
        },
    )


def test_defaults_are_documented_and_filled(paper):
    assert paper["runtime_estimate"] == {
        "calibration": "paper",
        "safety_factor": 1.5,
        "hf": {"load_s": None, "trial_s": None},
        "vllm": {"load_s": None, "trial_s": None},
    }
    assert sizing.FALLBACK == {"hf": {"load_s": 900, "trial_s": 1800}, "vllm": {"load_s": 900, "trial_s": 300}}


def test_a_sweep_of_n_trials_is_a_load_plus_n_trials_times_the_safety_factor(paper):
    given = guessed(paper)
    hf = SweepJob(Sweep("a100", "hf", "Bloom-1b7", 1))
    vllm = SweepJob(Sweep("a100", "vllm", "Bloom-1b7", 1))
    assert len(hf.trial_keys(given)) == 33  # 3 max_new_tokens x 11 batch sizes x 1 repetition
    assert sizing.sweep_minutes(given, hf) == 1.5 * (900 + 33 * 1800) / 60  # 1507.5
    assert sizing.sweep_minutes(given, vllm) == 1.5 * (900 + 33 * 300) / 60  # 270
    # each figure is at most its time limit: the supervisor stops a trial (or a load) there
    short = dict(given, trial_timeout_s=600, load_timeout_s=300)
    assert sizing.sweep_minutes(short, hf) == 1.5 * (300 + 33 * 600) / 60
    assert sizing.describe_sweep(given, hf) == "a 900 s load + 33 trials x 1800 s, x 1.5"
    # without a calibration, the fallback guesses are the same figures
    none = dict(paper, runtime_estimate={**paper["runtime_estimate"], "calibration": None})
    assert sizing.sweep_minutes(none, hf) == 1.5 * (900 + 33 * 1800) / 60
    assert sizing.source(none, "a100", "hf") == sizing.GUESSED and sizing.source(given, "a100", "hf") == sizing.GIVEN


def test_the_cost_model_estimates_each_trial_where_its_calibration_covers_the_hardware(paper):
    """configs/paper.yaml's defaults: the cost model calibrated on the paper's trials estimates each
    trial (1,033 prompts), capped at trial_timeout_s; the load is the fallback's (the paper
    published no load times)."""
    fit = cost_model.for_config(paper).fit("a100", "a100", "hf")
    assert sizing.source(paper, "a100", "hf") == sizing.MODELLED
    seconds = sizing.trial_seconds(paper, "a100", "hf", "Bloom-1b7", 1, 64, 5)
    assert seconds == pytest.approx(fit.seconds_per_prompt("Bloom-1b7", 1.7, 1, 64, 5) * 1033)
    # the paper's trial there ran at 94.3 tok/s: 1,033 x 5 tokens in 55 s; at batch size 1, 37.6
    # tok/s: 137 s; the model is within 2x of both
    assert 55 / 2 < seconds < 55 * 2
    assert 137 / 2 < sizing.trial_seconds(paper, "a100", "hf", "Bloom-1b7", 1, 1, 5) < 137 * 2
    # more new tokens take longer, an offloaded model far longer (here up to the trial time limit)
    assert sizing.trial_seconds(paper, "a100", "hf", "Bloom-1b7", 1, 64, 20) > 2 * seconds
    assert sizing.trial_seconds(paper, "v100", "hf", "Codellama-70b-hf", 1, 1, 20) == paper["trial_timeout_s"]
    job = SweepJob(Sweep("a100", "hf", "Bloom-1b7", 1))
    load, trials = sizing.sweep_estimate(paper, job)
    assert load == 900 and len(trials) == 33 and len(set(trials)) > 1
    assert sizing.sweep_minutes(paper, job) == pytest.approx(1.5 * (900 + sum(trials)) / 60)
    assert sizing.describe_sweep(paper, job) == f"a 900 s load + 33 trials of {sum(trials):,.0f} s in all, x 1.5"
    # a model the paper did not measure is placed by its parameter count; without one, the fallback
    config = dict(paper, models={**paper["models"], "new": {"hf_id": "x/y", "params_billion": 13}})
    new = sizing.trial_seconds(config, "a100", "hf", "new", 2, 16, 10)
    assert new == pytest.approx(fit.seconds_per_prompt("new", 13, 2, 16, 10) * 1033)
    config["models"]["new"] = {"hf_id": "x/y", "params_billion": None}
    assert sizing.trial_seconds(config, "a100", "hf", "new", 2, 16, 10) == 1800
    # fewer prompts (benchmark.limit), a shorter trial
    half = dict(paper, benchmark={**paper["benchmark"], "limit": 516})
    assert sizing.trial_seconds(half, "a100", "hf", "Bloom-1b7", 1, 64, 5) == pytest.approx(seconds * 516 / 1033)


def test_the_users_figures_override_the_cost_model(paper):
    config = dict(paper, runtime_estimate={**paper["runtime_estimate"], "hf": {"load_s": 60, "trial_s": 45}})
    assert sizing.trial_seconds(config, "a100", "hf", "Bloom-1b7", 1, 64, 5) == 45
    assert sizing.load_seconds(config, "a100", "hf", "Bloom-1b7") == 60
    assert (
        sizing.source(config, "a100", "hf") == sizing.GIVEN and sizing.source(config, "a100", "vllm") == sizing.MODELLED
    )
    # hardware the calibration does not cover (matched by label, else gpu_model) gets the fallback
    h100 = dict(paper, hardware={**paper["hardware"], "h100": {"kind": "gpu", "gpu_model": "h100", "gpus_per_node": 8}})
    assert sizing.source(h100, "h100", "vllm") == sizing.GUESSED
    assert sizing.trial_seconds(h100, "h100", "vllm", "Bloom-1b7", 1, 64, 5) == 300
    renamed = dict(
        paper, hardware={**paper["hardware"], "big": {"kind": "gpu", "gpu_model": "a100", "gpus_per_node": 8}}
    )
    assert sizing.trial_seconds(renamed, "big", "hf", "Bloom-1b7", 1, 64, 5) == sizing.trial_seconds(
        paper, "a100", "hf", "Bloom-1b7", 1, 64, 5
    )


def test_the_plan_says_its_device_hours_and_where_they_come_from(paper):
    sweeps = [Sweep("a100", "hf", "Bloom-1b7", 1), Sweep("v100", "vllm", "Phi-2", 4)]
    jobs = [SweepJob(s) for s in sweeps]
    hours = sum(sizing.devices(paper, s) * (sizing.sweep_minutes(paper, SweepJob(s)) / 1.5 * 60) for s in sweeps) / 3600
    assert sizing.device_hours(paper, jobs) == pytest.approx(hours)
    text = sizing.plan_summary(paper, jobs, 0)
    assert f"66 trials; about {hours:,.1f} device-hours (the cost model calibrated on the paper's published" in text
    assert text.endswith("for a100/hf, v100/vllm)")
    mixed = dict(paper, runtime_estimate={**paper["runtime_estimate"], "hf": {"load_s": 60, "trial_s": 45}})
    text = sizing.plan_summary(mixed, jobs, 0)
    assert "(runtime_estimate for a100/hf; the cost model calibrated on" in text and text.endswith("for v100/vllm)")
    # without budget.run a budget and its strategies are the study's: the plan says this run does
    # not spend by them; with it, the budgeted run's own line (infpop.budget.spend.describe) says it
    budgeted = dict(paper, budget={**paper["budget"], "fraction": 0.1, "strategies": ["oom_bisection"]})
    assert sizing.plan_summary(budgeted, jobs, 0).endswith(
        "\nInfPop: budget.fraction, budget.strategies shape the budget study (rule budget, docs/budget.md), not "
        "this run: it measures every planned trial (within-trial sampling is budget.sequential; budget.run: true "
        "spends the budget)"
    )
    spending = dict(paper, budget={**budgeted["budget"], "run": True})
    assert "budget." not in text and "budget." not in sizing.plan_summary(spending, jobs, 0)


def test_the_request_grows_with_the_attempt_but_never_beyond_the_cap():
    assert sizing.request(270, 1) == 270
    assert sizing.request(269.2, 1) == 270  # rounded up
    assert sizing.request(270, 2) == 540
    assert sizing.request(1507.5, 1, cap=2880) == 1508
    assert sizing.request(1507.5, 2, cap=2880) == 2880  # the retry is capped
    assert sizing.request(518, 2, cap=1440) == 1036
    assert sizing.request(0.01, 1) == 1
    assert sizing.request(100, 3, cap=math.inf) == 300


def test_host_memory_grows_with_n_gpus_for_vllm_only(paper):
    weights = 70 * 2 * 1024  # Codellama-70b-hf in float16
    hf = [sizing.host_memory_mb(paper, "Codellama-70b-hf", "hf", n) for n in (1, 2, 4, 8)]
    vllm = [sizing.host_memory_mb(paper, "Codellama-70b-hf", "vllm", n) for n in (1, 2, 4, 8)]
    assert hf == [4096 + weights] * 4  # one process whatever the GPU count
    # the engine core and one worker per rank, each with a CUDA context and host buffers
    assert vllm == [4096 + (1 + n) * sizing.VLLM_PROCESS_MB + weights for n in (1, 2, 4, 8)]
    assert vllm[3] - vllm[0] == 7 * sizing.VLLM_PROCESS_MB
    assert sizing.host_memory_mb(dict(paper, dtype="float32"), "Codellama-70b-hf", "hf", 1) == 4096 + 2 * weights


def test_a_sweep_outlasting_its_partition_is_split_by_max_new_tokens(paper):
    paper = guessed(paper)
    sweep = Sweep("a100", "hf", "Bloom-1b7", 1)
    assert sizing.split(paper, sweep) == [SweepJob(sweep)]  # no partition limit
    assert sizing.split(paper, sweep, 2880) == [SweepJob(sweep)]
    parts = sizing.split(paper, sweep, 1440)
    assert parts == [SweepJob(sweep, 5), SweepJob(sweep, 10), SweepJob(sweep, 20)]
    assert [p.part for p in parts] == ["_t5", "_t10", "_t20"]
    # the parts hold every trial of the sweep exactly once, in the sweep's order
    assert [k for p in parts for k in p.trial_keys(paper)] == SweepJob(sweep).trial_keys(paper)
    assert parts[0].trial_keys(paper)[0] == TrialKey(5, 1, 0) and len(parts[0].trial_keys(paper)) == 11
    assert sizing.sweep_minutes(paper, parts[0]) == 1.5 * (900 + 11 * 1800) / 60  # 517.5
    # one max_new_tokens cannot be split further (the planning check reports what does not fit)
    assert sizing.split(dict(paper, max_new_tokens=[5]), sweep, 10) == [SweepJob(sweep)]


def test_the_part_wildcard(paper):
    sweep = Sweep("a100", "hf", "Bloom-1b7", 1)
    assert sizing.part_tokens("") is None and sizing.part_tokens("_t20") == 20
    for job in (SweepJob(sweep), SweepJob(sweep, 10)):
        assert SweepJob(sweep, sizing.part_tokens(job.part)) == job
    assert SweepJob(sweep, 10).name == "a100/hf/Bloom-1b7/g1 (t10)"
    with pytest.raises(ValueError, match="not a sweep part"):
        sizing.part_tokens("_x5")
    with pytest.raises(ValueError, match="max_new_tokens 7 is not one of the config's"):
        SweepJob(sweep, 7).trial_keys(paper)


def test_live_tuning_estimate(paper):
    counts = {"hf": [1, 2, 4, 8], "vllm": [1, 2, 4, 8]}
    budget = paper["optimise"]["tune"]["budget"]
    assert sizing.tune_minutes(guessed(paper), counts) == 1.5 * (8 * 900 + budget * (1800 + 300)) / 60
    # with the cost model: each evaluation the mean trial of the space searched
    tune = paper["optimise"]["tune"]
    space = [
        sizing.trial_seconds(paper, tune["hardware"], "hf", tune["model"], g, b, tune["max_new_tokens"])
        for g in counts["hf"]
        for b in tune["batch_sizes"]
    ]
    loads, trials = sizing.tune_estimate(paper, counts, "hf")
    assert loads == [900] * 4 and trials == [pytest.approx(sum(space) / len(space))] * budget
    model = paper["optimise"]["tune"]["model"]
    assert sizing.tune_memory_mb(paper, counts) == sizing.host_memory_mb(paper, model, "vllm", 8)


def test_the_cross_check_estimate_is_of_the_prompts_it_sends(paper):
    """crosscheck.prompts (default: the benchmark's): both sides' trials send that many prompts."""
    section = paper["crosscheck"]
    assert section["prompts"] is None and sizing.prompts(paper) == 1033
    hf = sum(
        sizing.trial_seconds(paper, "a100", "hf", section["model"], 1, b, section["max_new_tokens"])
        for b in section["hf_batch_sizes"]
    )
    vllm = sizing.trial_seconds(paper, "a100", "vllm", section["model"], 1, 1033, section["max_new_tokens"])
    repeats = section["repeats"]
    expected = 3 * repeats * (900 + vllm) + 900 + 2 * repeats * hf  # vLLM's three sides, hf's two
    assert sizing.crosscheck_minutes(paper) == pytest.approx(1.5 * expected / 60)
    fewer = dict(paper, crosscheck={**section, "prompts": 100})
    assert sizing.crosscheck_minutes(fewer) < sizing.crosscheck_minutes(paper)
