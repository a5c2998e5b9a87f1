"""Cluster profiles: the SLURM plan of the paper's grid, planning-time checks of what a profile asks
for, and the device slots that keep local GPU sweeps apart."""

from __future__ import annotations

import re
import threading

import pytest
import yaml

from conftest import REPO
from infpop import cluster, devices
from infpop.config import load_config
from infpop.grid import plan
from test_workflow import job_counts, snakemake

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
    assert cluster.partition_file(["snakemake", f"--profile={profile}", "--slurm-partition-config", "x.yaml"],
                                  {}) == REPO.__class__("x.yaml")
    assert cluster.partition_file(["snakemake"], {"SNAKEMAKE_SLURM_PARTITIONS": "/p.yaml"}) == REPO.__class__("/p.yaml")
    assert cluster.partition_file(["snakemake", "--cores", "2"], {}) is None
    assert cluster.partition_file(["snakemake", "--profile", str(REPO / "profiles/slurm")], {}) == \
        REPO / "profiles/slurm/partitions.yaml"


def test_the_slurm_profile_partitions_take_every_paper_sweep(paper):
    config, sweeps = paper
    partitions = cluster.load_partitions(REPO / "profiles/slurm/partitions.yaml")
    assert cluster.check_partitions(config, sweeps, partitions, "p.yaml") == []


def test_too_many_gpus_or_an_unknown_gpu_model_for_the_partitions(paper):
    config, sweeps = paper
    partitions = {"cpu": {"max_gpu": 0}, "a": {"max_gpu": 4, "available_gpu_models": ["a100"]},
                  "h": {"max_gpu": 8, "available_gpu_models": ["h100"]}}
    problems = cluster.check_partitions(config, sweeps, partitions, "p.yaml")
    assert problems == [
        "40 sweep(s) need 8 a100 GPU(s) on one node (e.g. a100/hf/Bloom-1b7/g8); the SLURM partitions in p.yaml "
        "offer at most 4 GPUs in partition a",
        *[f"40 sweep(s) need {n} v100 GPU(s) on one node (e.g. v100/hf/Bloom-1b7/g{n}); the SLURM partitions "
          f"in p.yaml offer no partition offers that GPU model" for n in (1, 2, 4, 8)],
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


def test_slurm_dry_run_of_the_paper_grid(tmp_path):
    """`snakemake -n --profile profiles/slurm --configfile configs/paper.yaml`: 320 sweep jobs, each
    asking for its GPUs and GPU model; nothing else is submitted (every other rule is local)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    done = snakemake("-n", "--profile", str(REPO / "profiles/slurm"), "--configfile", str(PAPER),
                     "--directory", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout)["sweep"] == 320
    sweeps = re.findall(r"wildcards: hardware=(\w+), engine=\w+, model=\S+, n_gpus=(\d+)\n\s+resources: (.*)",
                        done.stdout)
    assert len(sweeps) == 320
    for hardware, n_gpus, resources in sweeps:
        assert f"gpu={n_gpus}, gpu_model={hardware}," in resources
        assert re.search(r"runtime=\d+", resources) and re.search(r"mem_mb=\d+", resources)
    assert {(h, int(n)) for h, n, _ in sweeps} == {(h, n) for h in ("a100", "v100") for n in (1, 2, 4, 8)}
    # the local rules are not sweeps: only the sweeps and live tuning (real trials) go to SLURM
    localrules = set(re.findall(r"^\s+(\w+),$", (REPO / "Snakefile").read_text().split("localrules:")[1]
                                .split("\n\n")[0], re.M))
    assert set(job_counts(done.stdout)) - {"total"} - localrules == {"sweep", "tune"}
    tune = re.search(r"rule tune:(?:\n\s+.*)*?\n\s+resources: (.*)", done.stdout).group(1)
    assert "gpu=8, gpu_model=a100," in tune and "mem_mb=" in tune and "runtime=" in tune


@pytest.mark.parametrize("bad, message", [
    ({"partitions": {"a100": {"max_gpu": 4, "available_gpu_models": ["a100"]},
                     "v100": {"max_gpu": 8, "available_gpu_models": ["v100"]}}},
     "40 sweep(s) need 8 a100 GPU(s) on one node"),
    ({"partitions": {"gpu": {"max_gpu": 8, "available_gpu_models": ["a100"]}}},
     "need 1 v100 GPU(s) on one node (e.g. v100/hf/Bloom-1b7/g1); the SLURM partitions in"),
])
def test_a_plan_the_partitions_cannot_take_stops_at_planning(tmp_path, bad, message):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    path = tmp_path / "partitions.yaml"
    path.write_text(yaml.safe_dump(bad))
    done = snakemake("-n", "--profile", str(REPO / "profiles/slurm"), "--configfile", str(PAPER),
                     "--slurm-partition-config", str(path), "--directory", str(tmp_path))
    assert done.returncode != 0
    assert "InfPop: the cluster cannot run this plan:" in done.stderr and message in done.stderr
    assert "rule sweep" not in done.stdout


def test_a_gpu_model_the_config_does_not_define_stops_at_planning(tmp_path):
    done = snakemake("-n", "--cores", "1", "--configfile", str(PAPER), "--set-resources", "sweep:gpu_model=h100",
                     "--directory", str(tmp_path))
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
