"""What a job asks a cluster for: the runtime estimate (trials x a trial + a load, x the safety
factor, capped), host memory (vLLM's processes grow with n_gpus), and the split of a sweep into one
job per max_new_tokens."""

from __future__ import annotations

import math

import pytest
from conftest import REPO

from infpop.cluster import sizing
from infpop.cluster.sizing import SweepJob
from infpop.config import load_config
from infpop.measure.grid import Sweep, TrialKey

PAPER = REPO / "configs" / "paper.yaml"


@pytest.fixture(scope="module")
def paper():
    return load_config(PAPER)


def test_defaults_are_documented_and_filled(paper):
    assert paper["runtime_estimate"] == {
        "safety_factor": 1.5,
        "hf": {"load_s": 900, "trial_s": 1800},
        "vllm": {"load_s": 900, "trial_s": 300},
    }


def test_a_sweep_of_n_trials_is_a_load_plus_n_trials_times_the_safety_factor(paper):
    hf = SweepJob(Sweep("a100", "hf", "Bloom-1b7", 1))
    vllm = SweepJob(Sweep("a100", "vllm", "Bloom-1b7", 1))
    assert len(hf.trial_keys(paper)) == 33  # 3 max_new_tokens x 11 batch sizes x 1 repetition
    assert sizing.sweep_minutes(paper, hf) == 1.5 * (900 + 33 * 1800) / 60  # 1507.5
    assert sizing.sweep_minutes(paper, vllm) == 1.5 * (900 + 33 * 300) / 60  # 270
    # each figure is at most its time limit: the supervisor stops a trial (or a load) there
    short = dict(paper, trial_timeout_s=600, load_timeout_s=300)
    assert sizing.sweep_minutes(short, hf) == 1.5 * (300 + 33 * 600) / 60
    assert sizing.describe(paper, "hf", 1, 33) == "a 900 s load + 33 trials x 1800 s, x 1.5"


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
    paper = load_config(PAPER)  # tune's defaults are filled by load_config
    counts = {"hf": [1, 2, 4, 8], "vllm": [1, 2, 4, 8]}
    budget = paper["optimise"]["tune"]["budget"]
    assert sizing.tune_minutes(paper, counts) == 1.5 * (8 * 900 + budget * (1800 + 300)) / 60
    model = paper["optimise"]["tune"]["model"]
    assert sizing.tune_memory_mb(paper, counts) == sizing.host_memory_mb(paper, model, "vllm", 8)
