"""The default CPU pipeline (reduced grid, both engines) through `--profile profiles/slurm` on a
real one-node SLURM (.ci/slurm-up.sh starts it in CI): every sweep must run as a SLURM job, every
other rule locally, and the trials, manifests, provenance and report must be complete."""

from __future__ import annotations

import csv
import json
import re
import shutil
import signal
import subprocess

import pytest
import yaml
from conftest import REPO, SHARED_DATA, needs_shared, repo_config
from test_workflow import SNAKEMAKE

#: The CI cluster's settings on top of the profile: no accounting database (squeue for status, no
#: account), two CPUs a sweep so the sweeps run one at a time. Its one partition is the config's
#: cluster.partitions (CI_PARTITIONS), which the workflow hands to the plugin.
CI_PARTITIONS = str(REPO / "tests/slurm/partitions.yaml")
CI_OVERRIDES = [
    "--slurm-no-account",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "5",
    "--slurm-keep-successful-logs",
    "--set-threads",
    "sweep=2",
    "optimise_tune=2",
    "crosscheck=2",
]
#: The reduced pipeline's sweeps: one GPU count. vLLM at two tensor-parallel ranks (a minute more
#: here) runs in the end-to-end test (tests/test_workflow.py), not inside a SLURM allocation; on
#: the CPU it asks SLURM for no GPU, and its memory request and core binding are unit tests'
#: (tests/test_sizing.py, tests/test_sweep.py).
SWEEPS = [("hf", 1), ("vllm", 1)]


def _node_state() -> str:
    if shutil.which("sinfo") is None:
        return "no sinfo on PATH (SLURM is not installed)"
    done = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or done.stderr.strip() or "nothing"


def _require_idle_node():
    state = _node_state()
    if state != "idle":
        pytest.skip(f"no idle SLURM node (sinfo: {state}); start one with 'sudo .ci/slurm-up.sh'")


def _run(
    config: dict, tmp_path, *args, timeout: int, overrides: list[str] = CI_OVERRIDES, partitions: str = CI_PARTITIONS
):
    """Run Snakemake on `config` in tmp_path through the SLURM profile with the CI cluster's
    overrides and its partitions as the config's cluster.partitions (which the workflow hands to
    the plugin, unless `overrides` name another file); a run that hangs is stopped with SIGINT
    (SIGTERM leaves the SLURM jobs)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**config, "cluster": {"partitions": partitions}}, sort_keys=False))
    command = [*SNAKEMAKE, "--profile", str(REPO / "profiles/slurm"), *overrides, "--configfile", str(path)]
    process = subprocess.Popen(
        [*command, "--directory", str(tmp_path), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
        pytest.fail(f"the SLURM run passed {timeout} s:\n{output[-5000:]}")
    return process.returncode, output


@pytest.mark.slow
@pytest.mark.slurm
def test_reduced_pipeline_through_the_slurm_profile(tmp_path):
    _require_idle_node()
    config = repo_config()
    config.update(n_gpus=[1], batch_sizes=[1, 8], repetitions=1, benchmark={"limit": 64}, paper_data={"replay": False})
    # live tuning runs real trials too: a SLURM job like a sweep (batch sizes the sweeps do not have),
    # of hf alone (a load of seconds, not vLLM's; the e2e test tunes both engines)
    config["optimise"] = {"tune": {"budget": 2, "batch_sizes": [16, 32], "engines": ["hf"]}, "study": {"seeds": 2}}
    # and so does the cross-check, a SLURM job like a sweep: hf's side only, since vLLM's three
    # sides cost three engine loads and tests/test_workflow.py's end-to-end run checks them
    config["crosscheck"] = {"repeats": 1, "engines": ["hf"]}

    code, output = _run(config, tmp_path, timeout=1500)
    assert code == 0, output[-5000:]

    # Every sweep, the live tuning and the cross-check, and nothing else, were submitted to SLURM,
    # and each SLURM job completed.
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", output)
    assert len(submitted) == len(SWEEPS) + 2, output[-5000:]
    sweeps = [(jobid, log) for jobid, log in submitted if "/rule_sweep/" in log]
    # the log folders are named by the wildcards, the last two (variant, part) empty: whole sweeps
    # of the default engine settings
    assert sorted(log.split("/rule_sweep/")[1].split("/")[0] for _, log in sweeps) == sorted(
        f"cpu_{engine}_tiny-llama_{n}__" for engine, n in SWEEPS
    )
    for jobid, log in submitted:
        job = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
        assert "JobState=COMPLETED" in job and "Partition=ci" in job and "NumCPUs=2" in job, job
        text = open(log.rstrip(")")).read()
        if (jobid, log) in sweeps:
            assert "Comment=rule_sweep_wildcards_cpu_" in job, job
            assert "rule sweep:" in text and "done:" in text
        elif "/rule_optimise_tune/" in log:
            assert "rule optimise_tune:" in text and "recommended n_gpus=" in text
        else:
            assert "rule crosscheck:" in text and "vs bare model.generate" in text

    results = tmp_path / "results"
    trials = sorted(str(p.relative_to(results / "trials")) for p in (results / "trials").rglob("b*_r*.json"))
    swept = [f"cpu/{engine}/tiny-llama/g{n}/t5/b{b}_r0.json" for engine, n in SWEEPS for b in (1, 8)]
    tuned = [t for t in trials if t not in swept]
    assert set(swept) <= set(trials) and len(tuned) == 2
    assert all(re.search(r"^cpu/hf/tiny-llama/g1/t5/b(16|32)_r0.json$", t) for t in tuned)
    tune = json.loads((results / "tune" / "hf.json").read_text())
    assert len(tune["evaluations"]) == 2 and tune["recommended"]["throughput_tokens_per_s"] > 0
    for engine, n in SWEEPS:
        manifest = json.loads((results / f"trials/cpu/{engine}/tiny-llama/g{n}/sweep.json").read_text())
        assert manifest["model_loads"] == 1 and len(manifest["trials"]) == 2
    for trial in (results / "trials").rglob("b*_r*.json"):
        record = json.loads(trial.read_text())
        assert record["status"] == "ok" and record["counts"]["generated_tokens"] == 64 * 5

    provenance = json.loads((results / "provenance.json").read_text())
    assert len(provenance["sweeps"]) == len(SWEEPS) and provenance["flagged_trials"] == []
    assert set(provenance["engines"]) == {"hf", "vllm"}
    assert provenance["engines"]["vllm"]["libraries"]["vllm"]
    report = (results / "report.html").read_text()
    for category in ("RQ1 landscapes", "RQ3 batch size", "Provenance"):
        assert category in report


@pytest.mark.slurm
def test_a_gpu_sweep_is_submitted_with_its_gpu_model_and_count(tmp_path):
    """The GPU path on the CI cluster, whose node declares one GPU of type testgpu backed by
    /dev/null: a sweep of gpu_model testgpu is accepted by sbatch with --gpus=testgpu:1 and runs
    on the node, where it finds no real GPU and stops with its clear error (nothing runs on a GPU)."""
    _require_idle_node()
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(
        hardware={"testgpu": {"kind": "gpu", "gpu_model": "testgpu", "gpus_per_node": 1}},
        engines=["hf"],
        n_gpus=[1],
        batch_sizes=[1],
        repetitions=1,
        benchmark={"limit": 8},
        paper_data={"replay": False},
    )
    code, output = _run(
        config, tmp_path, "--retries", "0", "results/trials/testgpu/hf/tiny-llama/g1/sweep.json", timeout=600
    )
    assert code != 0, output[-3000:]
    [(jobid, _)] = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", output)
    job = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
    assert "gpu:testgpu:1" in job and "JobState=FAILED" in job, job
    log = (tmp_path / "results/logs/sweep/testgpu/hf/tiny-llama/g1.log").read_text()
    assert "cannot run here" in log
    assert not list((tmp_path / "results/trials").rglob("b*_r*.json"))


@pytest.mark.slow
@pytest.mark.slurm
@needs_shared(SHARED_DATA / "infpop-appendix")
def test_a_rehearsal_slice_runs_its_sweeps_as_slurm_jobs_without_a_gpu(tmp_path):
    """The paper's rehearsal (configs/paper.yaml + configs/rehearsal.yaml) for one model at 1 and
    2 GPUs, both engines and GPU generations, through the SLURM profile: planned and split against
    the paper's GPU partitions (its hf sweeps there are estimated past 24 h: one job per
    max_new_tokens), every sweep job submitted to the real slurmd asking for no GPU (the CI
    cluster's one partition, given to the plugin on the command line, takes it) and one core, and
    completed, the trials the paper's table records as crashed and failed too; the records are
    simulated and aggregated into the rehearsal's own dataset."""
    _require_idle_node()
    config = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    config.update(yaml.safe_load((REPO / "configs/rehearsal.yaml").read_text()))
    config.update(
        models={"Wizardcoder-33b": config["models"]["Wizardcoder-33b"]},
        n_gpus=[1, 2],
        paper_data={"local_dir": str(SHARED_DATA / "infpop-appendix")},
    )
    # one core a rehearsing job (one Python process): two run at once on a 2-CPU node
    overrides = [*CI_OVERRIDES[: CI_OVERRIDES.index("--set-threads")], "--set-threads", "sweep=1", "optimise_tune=1"]
    overrides += ["--slurm-partition-config", CI_PARTITIONS]
    code, output = _run(
        config,
        tmp_path,
        "measure",
        timeout=1500,
        overrides=overrides,
        partitions=str(REPO / "profiles/slurm/partitions.yaml"),
    )
    assert code == 0, output[-5000:]

    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", output)
    # 8 sweeps; the 4 hf ones in 3 jobs each
    assert len(submitted) == 4 + 4 * 3 and all("/rule_sweep/" in log for _, log in submitted), output[-5000:]
    for jobid, log in submitted:
        job = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
        assert "JobState=COMPLETED" in job and "Partition=ci" in job and "NumCPUs=1" in job, job
        assert "gres/gpu" not in job and "gpu:testgpu" not in job, job  # a rehearsal holds no GPU
        assert "done:" in open(log.rstrip(")")).read()

    own = tmp_path / "results/rehearsal"
    for hardware in ("a100", "v100"):
        assert sorted(p.name for p in (own / f"trials/{hardware}/hf/Wizardcoder-33b/g2").glob("sweep*.json")) == [
            "sweep_t10.json",
            "sweep_t20.json",
            "sweep_t5.json",
        ]
    with open(own / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 * 33 and {"ok", "oom", "crashed", "error"} <= {r["status"] for r in rows}
    for row in rows:
        record = json.loads((tmp_path / row["path"]).read_text())
        # a sweep the table lacks loads no worker: its trials are unsupported, with no environment
        assert record["simulated"] and (
            record["environment"]["cuda_visible_devices"] == ""
            if record["environment"]
            else record["status"] == "unsupported"
        )
    assert (own / "provenance.json").exists() and not (tmp_path / "results/trials").exists()
