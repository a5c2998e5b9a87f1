"""The Snakemake workflow: lint, dry runs (the paper's grid) and an end-to-end run of both engines."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def snakemake(*args, cwd=REPO, timeout=1800):
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_lint_is_clean():
    done = snakemake("--lint")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations" in done.stdout + done.stderr


def test_paper_dry_run_plans_320_sweeps_and_10560_trials(tmp_path):
    done = snakemake("-n", "--cores", "8", "--configfile", str(REPO / "configs/paper.yaml"),
                     "--directory", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout)["sweep"] == 320
    # every sweep asks for its GPUs and GPU model as resources
    resources = re.findall(r"resources: .*?gpu=(\d+), gpu_model=(\w+)", done.stdout)
    assert len(resources) == 320
    assert {(int(n), model) for n, model in resources} == {(n, m) for n in (1, 2, 4, 8) for m in ("a100", "v100")}
    # the plan file (written by the first rule) counts the trials
    assert snakemake("--cores", "1", "--configfile", str(REPO / "configs/paper.yaml"), "--directory",
                     str(tmp_path), "results/plan.csv").returncode == 0
    with open(tmp_path / "results" / "plan.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(int(r["n_trials"]) for r in rows if r["planned"] == "run") == 10_560


def test_bad_config_stops_before_any_job(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["batch_sizes"] = [1, 0]
    config["engines"] = ["hf", "tgi"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = snakemake("--cores", "1", "--configfile", str(path), "--directory", str(tmp_path))
    assert done.returncode != 0
    assert "config key 'batch_sizes[1]': 0 is less than the minimum of 1" in done.stderr
    assert "config key 'engines[1]': 'tgi' is not one of" in done.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_end_to_end_both_engines(tmp_path):
    """A small config through the real pipeline: tiny model built by its rule, hf and vLLM
    (vLLM at 1 and 2 tensor-parallel ranks), one JSON per trial, the tidy table."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(batch_sizes=[1, 8], max_new_tokens=[2], benchmark={"limit": 24}, repetitions=1)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = snakemake("--cores", "2", "--configfile", str(path), "--directory", str(tmp_path))
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    results = tmp_path / "results"
    trials = sorted(p.relative_to(results / "trials") for p in (results / "trials").rglob("b*_r*.json"))
    assert [str(p) for p in trials] == [f"cpu/{e}/tiny-llama/g{g}/t2/b{b}_r0.json"
                                        for e, g in (("hf", 1), ("vllm", 1), ("vllm", 2)) for b in (1, 8)]
    with open(results / "measured" / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    assert all(int(r["generated_tokens"]) == 24 * 2 and float(r["throughput_tokens_per_s"]) > 0 for r in rows)
    for manifest in (results / "trials").rglob("sweep.json"):
        assert json.loads(manifest.read_text())["model_loads"] == 1
    assert "[cpu/vllm/tiny-llama/g2] trial 2/2 t2 b8 r0: ok" in done.stdout
    plan = (results / "plan.csv").read_text()
    assert "cpu,hf,tiny-llama,2,excluded" in plan

    # Nothing measured is re-run or lost: a second run has nothing to do.
    again = snakemake("--cores", "2", "--configfile", str(path), "--directory", str(tmp_path))
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
