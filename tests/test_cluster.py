"""Cluster profiles: the SLURM plan of the paper's grid, planning-time checks of what a profile asks
for, and the device slots that keep local GPU sweeps apart."""

from __future__ import annotations

import math
import re
import threading

import pytest
import yaml
from conftest import REPO
from test_workflow import job_counts, snakemake

from infpop.cluster import partitions as cluster
from infpop.cluster import sizing
from infpop.cluster.sizing import SweepJob
from infpop.config import load_config
from infpop.measure import devices
from infpop.measure.grid import plan

PAPER = REPO / "configs" / "paper.yaml"


@pytest.fixture(scope="module")
def paper():
    config = load_config(PAPER)
    return config, plan(config)[0]


def test_partition_file_from_command_line_profile_or_environment(tmp_path):
    profile = tmp_path / "prof"
    profile.mkdir()
    (profile / "config.yaml").write_text("executor: slurm\nslurm-partition-config: parts.yaml\n")
    (profile / "parts.yaml").write_text("partitions: {}\n")
    assert cluster.partition_file(["snakemake", "--profile", str(profile)], {}) == profile / "parts.yaml"
    assert cluster.partition_file(
        ["snakemake", f"--profile={profile}", "--slurm-partition-config", "x.yaml"], {}
    ) == REPO.__class__("x.yaml")
    assert cluster.partition_file(["snakemake"], {"SNAKEMAKE_SLURM_PARTITIONS": "/p.yaml"}) == REPO.__class__("/p.yaml")
    assert cluster.partition_file(["snakemake", "--cores", "2"], {}) is None
    assert (
        cluster.partition_file(["snakemake", "--profile", str(REPO / "profiles/slurm")], {})
        == REPO / "profiles/slurm/partitions.yaml"
    )


def test_relative_paths_are_found_from_where_snakemake_was_started(tmp_path, monkeypatch):
    """With --directory, Snakemake has changed the working directory before the workflow is read."""
    started = tmp_path / "started"
    (started / "prof").mkdir(parents=True)
    (started / "prof" / "config.yaml").write_text("slurm-partition-config: parts.yaml\n")
    (started / "prof" / "parts.yaml").write_text("partitions: {}\n")
    (started / "mine.yaml").write_text("partitions: {}\n")
    monkeypatch.chdir(tmp_path)
    assert cluster.partition_file(["snakemake", "--profile", "prof"], {}) is None
    assert (
        cluster.partition_file(["snakemake", "--profile", "prof"], {}, [None, started])
        == started / "prof" / "parts.yaml"
    )
    assert (
        cluster.partition_file(["snakemake", "--slurm-partition-config", "mine.yaml"], {}, [started])
        == started / "mine.yaml"
    )


def test_the_slurm_profile_partitions_take_every_paper_sweep(paper):
    config, sweeps = paper
    partitions = cluster.load_partitions(REPO / "profiles/slurm/partitions.yaml")
    assert cluster.check_partitions(config, sweeps, partitions, "p.yaml") == []


def test_too_many_gpus_or_an_unknown_gpu_model_for_the_partitions(paper):
    config, sweeps = paper
    partitions = {
        "cpu": {"max_gpu": 0},
        "a": {"max_gpu": 4, "available_gpu_models": ["a100"]},
        "h": {"max_gpu": 8, "available_gpu_models": ["h100"]},
    }
    problems = cluster.check_partitions(config, sweeps, partitions, "p.yaml")
    assert problems == [
        "40 sweep(s) need 8 a100 GPU(s) on one node (e.g. a100/hf/Bloom-1b7/g8); the SLURM partitions in p.yaml "
        "offer at most 4 GPUs in partition a",
        *[
            f"40 sweep(s) need {n} v100 GPU(s) on one node (e.g. v100/hf/Bloom-1b7/g{n}); the SLURM partitions "
            f"in p.yaml offer no partition offers that GPU model"
            for n in (1, 2, 4, 8)
        ],
    ]


def test_resources_a_profile_sets_on_the_sweeps_are_checked(paper):
    config, _ = paper
    assert cluster.check_sweep_overrides(config, {"gpu_model": "a100", "gpu": 8}) == []
    problems = cluster.check_sweep_overrides(config, {"gpu_model": "h100", "gpu": 16})
    assert problems == [
        "the sweeps are given gpu_model=h100 (set-resources), a GPU model the config's hardware does not define "
        "(defined: a100, v100)",
        "the sweeps are given gpu=16 (set-resources), more GPUs than a node of the config's hardware has "
        "(gpus_per_node at most 8)",
    ]


@pytest.mark.parametrize(
    "value",
    [
        90,
        90.4,
        "90",
        "1:30",
        "1:30:00",
        "0-90",
        "1-00:00:00",
        "2-12",
        "2-12:30",
        "2-12:30:45",
        "2d12h30m",
        "36h",
        "90s",
    ],
)
def test_max_runtime_is_read_as_the_slurm_plugin_reads_it(value):
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm.utils")
    assert cluster.parse_minutes(value) == plugin.parse_time_to_minutes(value)


def test_a_job_is_capped_by_the_partition_with_the_most_room():
    partitions = cluster.Partitions(
        {
            "cpu": {"max_gpu": 0, "max_runtime": "4:00:00"},
            "short": {"max_gpu": 8, "available_gpu_models": ["a100"], "max_runtime": 120, "max_mem_mb": 900000},
            "long": {"max_gpu": 4, "available_gpu_models": ["a100"], "max_runtime": "2-00:00:00", "max_mem_mb": 500000},
            "v100": {"max_gpu": 8, "available_gpu_models": ["v100"]},
        },
        "p.yaml",
    )
    assert partitions.room("a100", 4) == cluster.Room("long", 2880, 500000)
    assert partitions.room("a100", 8) == cluster.Room("short", 120, 900000)  # only it has 8 GPUs
    assert partitions.room("v100", 1) == cluster.Room("v100", math.inf, math.inf)  # no limits given
    assert partitions.room("h100", 1) is None
    assert partitions.room(None, 0).partition == "v100"  # the plugin lets a CPU job go anywhere
    with pytest.raises(ValueError, match="partition x in p.yaml: max_runtime 'soon' is not a time"):
        cluster.Partitions({"x": {"max_runtime": "soon"}}, "p.yaml")


def _plan(config, sweeps, tmp_path, partitions, overrides=None, tune=None):
    path = tmp_path / "parts.yaml"
    path.write_text(yaml.safe_dump({"partitions": partitions}))
    planned = cluster.plan_cluster(config, sweeps, tune, partitions_file=path, overrides=overrides)
    return planned, [p.replace(str(path), "parts.yaml") for p in planned.problems]


def test_the_profile_splits_the_a100_hf_sweeps_by_max_new_tokens(paper):
    """A100s for 24 h, V100s for 48 h: an hf sweep (33 trials x 1800 s + a load, x 1.5: 1508 min)
    fits a V100 job but becomes three A100 jobs of 518 min; vLLM sweeps (270 min) stay whole."""
    config, sweeps = paper
    profile = cluster.partition_file(["snakemake", "--profile", str(REPO / "profiles/slurm")], {})
    planned = cluster.plan_cluster(config, sweeps, partitions_file=profile)
    assert planned.problems == []
    split = [s for s in sweeps if s.hardware == "a100" and s.engine == "hf"]
    assert len(split) == 80
    expected = []
    for sweep in sweeps:
        expected += [SweepJob(sweep, t) for t in (5, 10, 20)] if sweep in split else [SweepJob(sweep)]
    assert planned.jobs == expected and len(expected) == 480
    room = planned.room(config, "a100", 1)
    assert (room.partition, room.max_runtime, room.max_mem_mb) == ("gpu-a100", 1440, 491520)


def test_a_job_that_does_not_fit_even_split_stops_at_planning_with_the_numbers(paper, tmp_path):
    config, sweeps = paper
    both = {"max_gpu": 8, "available_gpu_models": ["a100", "v100"]}
    planned, problems = _plan(config, sweeps, tmp_path, {"gpu": {**both, "max_runtime": "8:00:00"}})
    assert len(planned.jobs) == 160 * 3 + 160  # every hf sweep split, to no avail; vLLM's fit whole
    assert problems == [
        "480 job(s) are estimated to run up to 518 min (e.g. a100/hf/Bloom-1b7/g1 (t5): a 900 s load + 11 trials "
        "x 1800 s, x 1.5), longer than partition gpu allows (max_runtime 480 min in parts.yaml); lower "
        "trial_timeout_s (a trial is estimated at most that), set runtime_estimate.hf.trial_s to what a trial "
        "takes on this hardware, or measure fewer batch_sizes or repetitions (each max_new_tokens is a job of "
        "its own already), or give max_runtime the partition's real limit"
    ]
    # what it says to change does change it: hf trials of at most 20 minutes fit whole sweeps again
    faster = dict(config, runtime_estimate={**config["runtime_estimate"], "hf": {"load_s": 900, "trial_s": 450}})
    assert _plan(faster, sweeps, tmp_path, {"gpu": {**both, "max_runtime": "8:00:00"}})[1] == []


def test_host_memory_and_live_tuning_are_checked_too(paper, tmp_path):
    config, sweeps = paper
    both = {"max_gpu": 8, "available_gpu_models": ["a100", "v100"]}
    _, problems = _plan(config, sweeps, tmp_path, {"gpu": {**both, "max_mem_mb": 150000}})
    assert problems == [
        "8 job(s) need up to 175104 MB of host memory (e.g. a100/vllm/Codellama-70b-hf/g8), more than partition "
        "gpu allows (max_mem_mb 150000 in parts.yaml); give max_mem_mb the memory of the partition's nodes, or "
        "set the rule's mem_mb (set-resources) if less will do"
    ]
    # mem_mb set on the sweeps from outside replaces the estimate: it is not checked
    assert _plan(config, sweeps, tmp_path, {"gpu": {**both, "max_mem_mb": 150000}}, {"mem_mb": 100000})[1] == []
    tune = {"hf": [1, 2, 4, 8], "vllm": [1, 2, 4, 8]}
    _, problems = _plan(config, sweeps, tmp_path, {"gpu": {**both, "max_runtime": 300}}, tune=tune)
    assert problems[-1].startswith(
        "1 job(s) are estimated to run up to 495 min (e.g. tune: hf: 4 loads x 900 s + 6 trials x 1800 s, x 1.5; "
        "vllm: 4 loads x 900 s + 6 trials x 300 s, x 1.5), longer than partition gpu allows (max_runtime 300 min"
    )
    assert "lower optimise.tune.budget" in problems[-1]


def test_a_runtime_set_on_the_sweeps_from_outside_is_neither_split_nor_checked(paper, tmp_path):
    config, sweeps = paper
    part = {"gpu": {"max_gpu": 8, "available_gpu_models": ["a100", "v100"], "max_runtime": 60}}
    planned, problems = _plan(config, sweeps, tmp_path, part, {"runtime": 60})
    assert problems == [] and planned.jobs == [SweepJob(s) for s in sweeps]


def test_without_a_partitions_file_nothing_is_split_or_capped(paper):
    config, sweeps = paper
    planned = cluster.plan_cluster(
        config, sweeps, partitions_file=cluster.partition_file(["snakemake", "--cores", "8"], {})
    )
    assert planned.jobs == [SweepJob(s) for s in sweeps] and planned.problems == []
    assert planned.room(config, "a100", 8) is None


def test_slurm_dry_run_of_the_paper_grid(tmp_path):
    """`snakemake -n --profile profiles/slurm --configfile configs/paper.yaml`: the 320 sweeps, each job
    asking for its GPUs and GPU model, a runtime within its partition's max_runtime and host memory
    that grows with n_gpus for vLLM; the A100 hf sweeps, too long for 24 h, are three jobs each (one
    per max_new_tokens). Nothing else is submitted (every other rule is local)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    done = snakemake(
        "-n", "--profile", str(REPO / "profiles/slurm"), "--configfile", str(PAPER), "--directory", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout)["sweep"] == 480
    jobs = re.findall(
        r"output: results/trials/\S+/sweep(\S*)\.json\n(?:\s+.*\n)*?\s+wildcards: hardware=(\w+), "
        r"engine=(\w+), model=(\S+), n_gpus=(\d+), part=(\S*)\n\s+resources: (.*)",
        done.stdout,
    )
    assert len(jobs) == 480
    requests = {}
    for suffix, hardware, engine, model, n_gpus, part, resources in jobs:
        assert suffix == part
        assert f"gpu={n_gpus}, gpu_model={hardware}," in resources
        runtime = int(re.search(r"runtime=(\d+)", resources).group(1))
        mem_mb = int(re.search(r"mem_mb=(\d+)", resources).group(1))
        requests[(hardware, engine, model, int(n_gpus), part)] = (runtime, mem_mb)
    # every sweep once: whole, or (A100 hf only) as its three max_new_tokens
    for hardware, engine, _model, _n_gpus, part in requests:
        assert part == "" or (hardware, engine) == ("a100", "hf")
    assert {k[:4] for k in requests} == {(s.hardware, s.engine, s.model, s.n_gpus) for s in plan(load_config(PAPER))[0]}
    assert {k[4] for k in requests if k[:2] == ("a100", "hf")} == {"_t5", "_t10", "_t20"}
    # realistic runtimes (minutes), within the partitions' 24 h (A100) and 48 h (V100)
    assert requests[("a100", "hf", "Bloom-1b7", 1, "_t5")][0] == 518
    assert requests[("v100", "hf", "Bloom-1b7", 1, "")][0] == 1508
    assert requests[("a100", "vllm", "Codellama-70b-hf", 8, "")][0] == 270
    assert all(runtime <= (1440 if k[0] == "a100" else 2880) for k, (runtime, _) in requests.items())
    # host memory: one process for hf whatever the GPU count; vLLM adds a process per GPU
    hf = [requests[("a100", "hf", "Codellama-70b-hf", n, "_t5")][1] for n in (1, 2, 4, 8)]
    vllm = [requests[("v100", "vllm", "Phi-2", n, "")][1] for n in (1, 2, 4, 8)]
    assert hf == [147456] * 4
    assert vllm == sorted(vllm) and vllm[3] - vllm[0] == 7 * sizing.VLLM_PROCESS_MB
    assert requests[("a100", "vllm", "Codellama-70b-hf", 8, "")][1] == 175104
    # only the rules that run trials go to SLURM: those that declare their GPUs (the Snakefile makes
    # every other rule local), the sweeps, live tuning and the cross-check (tests/test_slurm.py
    # checks on a real SLURM that nothing else is submitted)
    jobs = re.findall(r"^rule (\w+):\n((?:    .*\n)+)", done.stdout, re.M)
    assert {name for name, lines in jobs if "gpu=" in lines} == {"sweep", "optimise_tune", "crosscheck"}
    tune = re.search(r"rule optimise_tune:(?:\n\s+.*)*?\n\s+resources: (.*)", done.stdout).group(1)
    assert "gpu=8, gpu_model=a100, runtime=495, mem_mb=35226," in tune


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {
                "partitions": {
                    "a100": {"max_gpu": 4, "available_gpu_models": ["a100"]},
                    "v100": {"max_gpu": 8, "available_gpu_models": ["v100"]},
                }
            },
            "40 sweep(s) need 8 a100 GPU(s) on one node",
        ),
        (
            {"partitions": {"gpu": {"max_gpu": 8, "available_gpu_models": ["a100"]}}},
            "need 1 v100 GPU(s) on one node (e.g. v100/hf/Bloom-1b7/g1); the SLURM partitions in",
        ),
        (
            {"partitions": {"gpu": {"max_gpu": 8, "available_gpu_models": ["a100", "v100"], "max_runtime": "4:00:00"}}},
            "480 job(s) are estimated to run up to 518 min (e.g. a100/hf/Bloom-1b7/g1 (t5): a 900 s load + 11 trials "
            "x 1800 s, x 1.5), longer than partition gpu allows (max_runtime 240 min in",
        ),
    ],
)
def test_a_plan_the_partitions_cannot_take_stops_at_planning(tmp_path, bad, message):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    path = tmp_path / "partitions.yaml"
    path.write_text(yaml.safe_dump(bad))
    done = snakemake(
        "-n",
        "--profile",
        str(REPO / "profiles/slurm"),
        "--configfile",
        str(PAPER),
        "--slurm-partition-config",
        str(path),
        "--directory",
        str(tmp_path),
    )
    assert done.returncode != 0
    assert "InfPop: the cluster cannot run this plan:" in done.stderr and message in done.stderr
    assert "rule sweep" not in done.stdout


def test_cores_set_for_a_rule_that_does_not_run_on_a_node_stop_at_planning(tmp_path):
    """A profile written before a rule was renamed (tune, now optimise_tune) would leave the
    renamed rule's jobs with 1 core."""
    done = snakemake("-n", "--cores", "1", "--set-threads", "tune=8", "--directory", str(tmp_path))
    assert done.returncode != 0
    assert "set-threads names tune: cores are set for the rules that run on compute nodes, crosscheck, " in done.stderr


def test_a_gpu_model_the_config_does_not_define_stops_at_planning(tmp_path):
    done = snakemake(
        "-n",
        "--cores",
        "1",
        "--configfile",
        str(PAPER),
        "--set-resources",
        "sweep:gpu_model=h100",
        "--directory",
        str(tmp_path),
    )
    assert done.returncode != 0
    assert "gpu_model=h100 (set-resources), a GPU model the config's hardware does not define" in done.stderr


def test_device_slots_never_share_a_gpu(tmp_path):
    with devices.claim(2, 4, tmp_path) as first, devices.claim(2, 4, tmp_path) as second:
        assert sorted(first + second) == [0, 1, 2, 3]
        with pytest.raises(devices.NoFreeDevices, match="no 1 free GPU"):
            with devices.claim(1, 4, tmp_path, wait_s=0):
                pass
    released = threading.Event()
    with devices.claim(3, 4, tmp_path):
        pass
    with devices.claim(4, 4, tmp_path) as all_of_them:  # freed on leaving the block
        assert all_of_them == [0, 1, 2, 3]
        released.set()
    with pytest.raises(devices.NoFreeDevices, match="5 GPUs asked for, this machine has 4"):
        with devices.claim(5, 4, tmp_path):
            pass
