"""Cluster profiles: the SLURM plan of the paper's grid, planning-time checks of what a profile asks
for, and the device slots that keep local GPU sweeps apart."""

from __future__ import annotations

import math
import os
import re
import threading

import pytest
import yaml
from conftest import REPO
from test_workflow import job_counts, snakemake

from infpop.cluster import partitions as cluster
from infpop.cluster import sizing
from infpop.cluster.sizing import SweepJob
from infpop.config import ConfigError, load_config
from infpop.measure import devices
from infpop.measure.grid import Sweep, plan
from infpop.serve.plan import plan as serve_plan

PAPER = REPO / "configs" / "paper.yaml"


@pytest.fixture(scope="module")
def paper():
    config = load_config(PAPER)
    return config, plan(config)[0]


def test_the_partitions_file_is_a_config_key_read_before_any_job(tmp_path):
    """A partition without max_runtime would be read as unlimited, and a job sized to it would ask
    SLURM for any time at all: refused with the partition's line."""
    path = tmp_path / "parts.yaml"
    path.write_text("partitions:\n  cpu:\n    max_runtime: 60\n  gpu:\n    max_gpu: 8\n")
    with pytest.raises(cluster.PartitionsError, match=rf"{path}:4: partition gpu has no max_runtime"):
        cluster.read_partitions(path)
    with pytest.raises(cluster.PartitionsError, match="does not exist"):
        cluster.read_partitions(tmp_path / "none.yaml")
    config = yaml.safe_load(PAPER.read_text())
    assert load_config(config)["cluster"]["partitions"] == str(REPO / "profiles/slurm/partitions.yaml")
    config["cluster"] = {"partitions": str(path)}
    with pytest.raises(
        ConfigError, match=rf"config key 'cluster.partitions': {path}:4: partition gpu has no max_runtime"
    ):
        load_config(config)


def test_the_slurm_profile_partitions_take_every_paper_sweep(paper):
    config, sweeps = paper
    partitions = cluster.read_partitions(REPO / "profiles/slurm/partitions.yaml")
    assert cluster.check_partitions(config, sweeps, partitions.limits, "p.yaml") == []


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
            "v100": {"max_gpu": 8, "available_gpu_models": ["v100"], "max_runtime": 600},
        },
        "p.yaml",
    )
    assert partitions.room("a100", 4) == cluster.Room("long", 2880, 500000)
    assert partitions.room("a100", 8) == cluster.Room("short", 120, 900000)  # only it has 8 GPUs
    assert partitions.room("v100", 1) == cluster.Room("v100", 600, math.inf)  # no memory limit given
    assert partitions.room("h100", 1) is None
    # a CPU job goes to a partition without GPUs where there is one (the plugin marks GPU ones down)
    assert partitions.room(None, 0).partition == "cpu"
    assert cluster.Partitions({"g": {"max_gpu": 8, "max_runtime": 60}}, "p.yaml").room(None, 0).partition == "g"
    with pytest.raises(ValueError, match="partition x in p.yaml: max_runtime 'soon' is not a time"):
        cluster.Partitions({"x": {"max_runtime": "soon"}}, "p.yaml")


def _plan(config, sweeps, tmp_path, partitions, overrides=None, tune=None):
    path = tmp_path / "parts.yaml"
    limits = {name: {"max_runtime": "10-00:00:00", **spec} for name, spec in partitions.items()}
    path.write_text(yaml.safe_dump({"partitions": limits}))
    planned = cluster.plan_cluster(config, sweeps, tune, cluster.read_partitions(path), overrides=overrides)
    return planned, [p.replace(str(path), "parts.yaml") for p in planned.problems]


def test_the_profile_splits_the_sweeps_that_would_outlast_their_partition(paper):
    """A100s for 24 h, V100s for 48 h, and each trial as the cost model (calibrated on the paper's
    trials) estimates it: Bloom-1b7's hf sweep on one A100 is estimated at 151 min and stays whole;
    an hf sweep whose model does not fit its GPUs (offloaded, each trial estimated past the 3,600 s
    trial limit: Codellama-70b on 1 to 4 A100s) would take 1.5 x (900 + 33 x 3600) s = 3,038 min and
    becomes three jobs of 1,013 min, one per max_new_tokens. 35 hf sweeps are split (21 on the A100,
    14 on the V100); no vLLM sweep is."""
    config, sweeps = paper
    planned = cluster.plan_cluster(config, sweeps, partitions=cluster.read_partitions(config["cluster"]["partitions"]))
    assert planned.problems == []
    split = sorted({job.sweep for job in planned.jobs if job.max_new_tokens is not None})
    assert len(split) == 35 and {s.engine for s in split} == {"hf"}
    assert sum(s.hardware == "a100" for s in split) == 21
    expected = []
    for sweep in sweeps:
        expected += [SweepJob(sweep, t) for t in (5, 10, 20)] if sweep in split else [SweepJob(sweep)]
    assert planned.jobs == expected and len(expected) == 320 + 2 * 35 == 390
    limit = {"a100": 1440, "v100": 2880}
    for sweep in sweeps:  # split exactly when the whole sweep would not fit
        assert (sweep in split) == (math.ceil(sizing.sweep_minutes(config, SweepJob(sweep))) > limit[sweep.hardware])
    assert all(math.ceil(sizing.sweep_minutes(config, job)) <= limit[job.sweep.hardware] for job in planned.jobs)
    assert round(sizing.sweep_minutes(config, SweepJob(Sweep("a100", "hf", "Bloom-1b7", 1)))) == 151
    big = Sweep("a100", "hf", "Codellama-70b-hf", 1)
    assert sizing.sweep_minutes(config, SweepJob(big, 5)) == 1.5 * (900 + 11 * 3600) / 60  # 1012.5
    room = planned.room(config, "a100", 1)
    assert (room.partition, room.max_runtime, room.max_mem_mb) == ("gpu-a100", 1440, 491520)


def test_a_job_that_does_not_fit_even_split_stops_at_planning_with_the_numbers(paper, tmp_path):
    """Partitions of 8 hours: the sweeps of models that do not fit their GPUs (each trial estimated
    at the 3,600 s limit) outlast them even one max_new_tokens at a time."""
    config, sweeps = paper
    both = {"max_gpu": 8, "available_gpu_models": ["a100", "v100"]}
    planned, problems = _plan(config, sweeps, tmp_path, {"gpu": {**both, "max_runtime": "8:00:00"}})
    assert problems == [
        "144 job(s) are estimated to run up to 1013 min (e.g. a100/hf/Codellama-34b-hf/g1 (t5): a 900 s load + 11 "
        "trials x 3600 s, x 1.5), longer than partition gpu allows (max_runtime 480 min in parts.yaml); lower "
        "trial_timeout_s (a trial is estimated at most that), set runtime_estimate.hf.trial_s to what a trial "
        "takes on this hardware, or measure fewer batch_sizes or repetitions (each max_new_tokens is a job of "
        "its own already), or give max_runtime the partition's real limit"
    ]
    # what it says to change does change it: hf trials of at most 450 s fit whole sweeps again
    faster = dict(config, runtime_estimate={**config["runtime_estimate"], "hf": {"load_s": 900, "trial_s": 450}})
    assert _plan(faster, sweeps, tmp_path, {"gpu": {**both, "max_runtime": "8:00:00"}})[1] == []
    faster = dict(config, trial_timeout_s=450)
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
    # live tuning (Bloom-1b7 on the A100): each evaluation the cost model's mean trial of its space
    tune = {"hf": [1, 2, 4, 8], "vllm": [1, 2, 4, 8]}
    _, problems = _plan(config, sweeps, tmp_path, {"gpu": {**both, "max_runtime": 150}}, {"runtime": 60}, tune=tune)
    assert problems == [
        "1 job(s) are estimated to run up to 196 min (e.g. tune: hf: 4 loads x 900 s + 6 trials x 87 s, x 1.5; "
        "vllm: 4 loads x 900 s + 6 trials x 17 s, x 1.5), longer than partition gpu allows (max_runtime 150 min in "
        "parts.yaml); lower optimise.tune.budget or trial_timeout_s, or set runtime_estimate.<engine>.trial_s to "
        "what a trial takes on this hardware, or give max_runtime the partition's real limit"
    ]


def test_a_runtime_set_on_the_sweeps_from_outside_is_neither_split_nor_checked(paper, tmp_path):
    config, sweeps = paper
    part = {"gpu": {"max_gpu": 8, "available_gpu_models": ["a100", "v100"], "max_runtime": 60}}
    planned, problems = _plan(config, sweeps, tmp_path, part, {"runtime": 60})
    assert problems == [] and planned.jobs == [SweepJob(s) for s in sweeps]


def test_without_a_partitions_file_nothing_is_split_or_capped(paper):
    config, sweeps = paper
    planned = cluster.plan_cluster(config, sweeps)
    assert planned.jobs == [SweepJob(s) for s in sweeps] and planned.problems == []
    assert planned.room(config, "a100", 8) is None


def test_slurm_dry_run_of_the_paper_grid(tmp_path):
    """`snakemake -n --profile profiles/slurm --configfile configs/paper.yaml`: the 320 sweeps, each job
    asking for its GPUs and GPU model, a runtime (the cost model's estimate, x 1.5) within its
    partition's max_runtime and host memory that grows with n_gpus for vLLM; the 35 hf sweeps too
    long for their partition (24 h on the A100, 48 h on the V100) are three jobs each (one per
    max_new_tokens). Nothing else is submitted (every other rule is local)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    done = snakemake(
        "-n", "--profile", str(REPO / "profiles/slurm"), "--configfile", str(PAPER), "--directory", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout)["sweep"] == 390
    jobs = re.findall(
        r"output: results/trials/\S+/sweep(\S*)\.json\n(?:\s+.*\n)*?\s+wildcards: hardware=(\w+), "
        r"engine=(\w+), model=(\S+), n_gpus=(\d+), variant=, part=(\S*)\n\s+resources: (.*)",
        done.stdout,
    )
    assert len(jobs) == 390
    requests = {}
    for suffix, hardware, engine, model, n_gpus, part, resources in jobs:
        assert suffix == part
        assert f"gpu={n_gpus}, gpu_model={hardware}," in resources
        runtime = int(re.search(r"runtime=(\d+)", resources).group(1))
        mem_mb = int(re.search(r"mem_mb=(\d+)", resources).group(1))
        requests[(hardware, engine, model, int(n_gpus), part)] = (runtime, mem_mb)
    # every sweep once: whole, or (hf only) as its three max_new_tokens
    parts = {}
    for hardware, engine, model, n_gpus, part in requests:
        assert part == "" or engine == "hf"
        parts.setdefault((hardware, engine, model, n_gpus), set()).add(part)
    assert set(parts) == {(s.hardware, s.engine, s.model, s.n_gpus) for s in plan(load_config(PAPER))[0]}
    assert {frozenset(p) for p in parts.values()} == {frozenset({""}), frozenset({"_t5", "_t10", "_t20"})}
    assert sum(len(p) == 3 for p in parts.values()) == 35
    # realistic runtimes (minutes; the cost model's), within the partitions' 24 h (A100) and 48 h (V100)
    assert requests[("a100", "hf", "Bloom-1b7", 1, "")][0] == 152
    assert requests[("v100", "hf", "Bloom-1b7", 1, "")][0] == 187
    assert requests[("a100", "hf", "Codellama-70b-hf", 1, "_t5")][0] == 1013  # offloaded: 11 trials at the 1 h limit
    assert requests[("a100", "vllm", "Codellama-70b-hf", 8, "")][0] == 105
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
    assert {name for name, lines in jobs if "gpu=" in lines} == {"sweep", "optimise_tune", "crosscheck", "serve"}
    # the paper-scale serving section: 60 vLLM servers (5 models x 1, 2, 4 GPUs x 4 scheduler settings)
    # and 5 of transformers' (one GPU each), each a job with its GPUs and a runtime within 24 h
    servers = re.findall(
        r"wildcards: hardware=a100, engine=(\w+), model=\S+, n_gpus=(\d+), settings=\S+\n\s+resources: (.*)",
        done.stdout,
    )
    assert job_counts(done.stdout)["serve"] == 65 == len(servers)
    assert sorted({(engine, int(n)) for engine, n, _ in servers}) == [("hf", 1), ("vllm", 1), ("vllm", 2), ("vllm", 4)]
    assert all(f"gpu={n}, gpu_model=a100, runtime=160," in resources for _, n, resources in servers)
    tune = re.search(r"rule optimise_tune:(?:\n\s+.*)*?\n\s+resources: (.*)", done.stdout).group(1)
    assert "gpu=8, gpu_model=a100, runtime=196, mem_mb=35226," in tune


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
            "202 job(s) are estimated to run up to 1013 min (e.g. a100/hf/Codellama-34b-hf/g1 (t5): a 900 s load + 11 "
            "trials x 3600 s, x 1.5), longer than partition gpu allows (max_runtime 240 min in",
        ),
    ],
)
def test_a_plan_the_partitions_cannot_take_stops_at_planning(tmp_path, bad, message):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    path = tmp_path / "partitions.yaml"
    for spec in bad["partitions"].values():
        spec.setdefault("max_runtime", "10-00:00:00")
    path.write_text(yaml.safe_dump(bad))
    done = snakemake(
        "-n",
        "--profile",
        str(REPO / "profiles/slurm"),
        "--configfile",
        str(PAPER),
        "--config",
        f'cluster={{"partitions": "{path}"}}',
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


def test_a_job_on_gpus_claims_free_slots_unless_devices_were_given(tmp_path, monkeypatch):
    """What a sweep's and a server's job do first (devices.for_job)."""
    gpu = {"kind": "gpu", "gpus_per_node": 2}
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with devices.for_job({"kind": "cpu"}, 1, lock_dir=tmp_path) as claimed:
        assert claimed is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    with devices.for_job(gpu, 1, lock_dir=tmp_path) as first:
        assert first == [0] and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        with devices.for_job(gpu, 1, lock_dir=tmp_path) as second:
            assert second == [1] and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # given by SLURM: kept
    with devices.for_job(gpu, 1, lock_dir=tmp_path) as claimed:
        assert claimed is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"


@pytest.mark.parametrize("mode", ["live", "replay"])
def test_live_serving_tuning_runs_on_a_compute_node_and_replayed_is_a_local_rule(tmp_path, mode):
    """Live, serve_autotune starts vLLM's servers one after another: it claims the GPUs, memory and
    time a compute node must give it (and goes to one on a cluster); replayed, it only reads the
    serving jobs' records and claims nothing (a local rule)."""
    tuning = f'serve={{"tuning": {{"mode": "{mode}", "e2el_ms": 300}}}}'
    target = "results/serve/autotune_comparison.csv"
    args = ("-n", "--cores", "2", "--configfile", str(REPO / "configs/serve.yaml"), "--config", tuning)
    done = snakemake(*args, "--directory", str(tmp_path), "--", target)
    assert done.returncode == 0, done.stderr[-3000:]
    # the Snakefile makes every rule without a `gpu` resource a local rule
    job = re.search(r"^rule serve_autotune:\n((?:    .*\n)+)", done.stdout, re.M)
    assert job, done.stdout[-3000:]
    if mode == "replay":
        assert "gpu=" not in job.group(1) and "runtime=" not in job.group(1)
        return
    resources = re.search(r"resources: (.*)", job.group(1)).group(1)
    assert "gpu=0," in resources  # the CPU: no GPU to claim, but a measuring job's memory and time
    runtime = int(re.search(r"runtime=(\d+)", resources).group(1))
    config = load_config(REPO / "configs/serve.yaml", overrides={"serve": {"tuning": {"mode": mode, "e2el_ms": 300}}})
    servers = [job for job in serve_plan(config)[0] if job.engine == "vllm"]
    assert len(servers) == 4 and runtime == math.ceil(sizing.serve_tuning_minutes(config, servers))
    assert re.search(r"mem_mb=\d+", resources)
