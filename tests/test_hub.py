"""hf_id models: downloaded once by a local rule, loaded offline from the snapshot, the commit in
every trial. The real hub cannot be reached here: a local server (tests/fake_hub.py) answers
huggingface_hub as the hub does, and HF_ENDPOINT points at it."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, make_config
from fake_hub import GRANTED_TOKEN, FakeHub

from infpop.config import load_config
from infpop.data import hub, models
from infpop.measure import records
from infpop.measure.grid import Sweep
from infpop.measure.sweep import SweepError, run_sweep

TINY = "test-org/tiny-llama"
GATED = "test-org/gated-llama"


@pytest.fixture
def fake_hub(tiny_model):
    """The tiny model as TINY (with a tag v1) and as a gated repository, GATED."""
    with FakeHub() as server:
        repo = server.add(TINY, tiny_model)
        repo.revisions["v1"] = repo.commit
        server.add(GATED, tiny_model, gated=True)
        yield server


@pytest.fixture
def online(monkeypatch, tmp_path):
    """This process as the machine that runs Snakemake: the hub reachable (the test session is
    offline, and huggingface_hub reads that once, at import), and no token anywhere."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)


def hub_config(tiny_model, models_dir, revision=None):
    spec = {"hf_id": TINY, **({"revision": revision} if revision else {})}
    return load_config(make_config(tiny_model, models={"tiny": spec}, models_dir=str(models_dir)))


def test_download_writes_the_manifest_and_fetches_nothing_twice(fake_hub, online, tmp_path, tiny_model, log_lines):
    models_dir = tmp_path / "hub"
    repo = fake_hub.repos[TINY]
    repo.files["pytorch_model.bin"] = b"a second copy of the weights"  # beside model.safetensors
    manifest = hub.download("tiny", TINY, None, models_dir, endpoint=fake_hub.url)
    assert manifest["commit"] == repo.commit and manifest["revision"] == "main" and manifest["repo_id"] == TINY
    assert json.loads((models_dir / "tiny.json").read_text()) == manifest
    snapshot = models_dir / manifest["snapshot"]
    assert snapshot.name == repo.commit and (snapshot / "model.safetensors").is_file()
    expected = sorted(name for name in repo.files if name != "pytorch_model.bin")
    assert [f["path"] for f in manifest["files"]] == expected
    assert manifest["skipped_files"] == ["pytorch_model.bin"] and not (snapshot / "pytorch_model.bin").exists()
    assert manifest["total_bytes"] == sum(len(repo.files[name]) for name in expected)
    assert sorted(p.rsplit("/", 1)[1] for p in fake_hub.file_requests("GET")) == expected
    assert any(line.startswith("downloaded: ") and "(100%)" in line for line in log_lines)  # progress in the log

    # A second download finds every file in place: one look-up of the revision, no file fetched.
    before = len(fake_hub.requests)
    log_lines.clear()
    again = hub.download("tiny", TINY, None, models_dir, endpoint=fake_hub.url)
    assert again["commit"] == repo.commit and again["files"] == manifest["files"]
    assert [r["path"] for r in fake_hub.requests[before:]] == [f"/api/models/{TINY}/revision/main"]
    assert any("nothing to download" in line for line in log_lines)

    # What a sweep loads: the snapshot folder, and the commit its trials record.
    assert models.model_files(hub_config(tiny_model, models_dir), "tiny") == (str(snapshot.resolve()), repo.commit)


@pytest.mark.parametrize("revision", ["v1", "commit"])
def test_a_pinned_revision_is_resolved_to_its_commit(fake_hub, online, tmp_path, tiny_model, revision):
    commit = fake_hub.repos[TINY].commit
    revision = commit if revision == "commit" else revision
    manifest = hub.download("tiny", TINY, revision, tmp_path, endpoint=fake_hub.url)
    assert (manifest["revision"], manifest["commit"]) == (revision, commit)
    assert models.model_files(hub_config(tiny_model, tmp_path, revision), "tiny")[1] == commit
    # the manifest of another revision is not taken for this one
    with pytest.raises(hub.SnapshotMissing, match="delete it and download again"):
        models.model_files(hub_config(tiny_model, tmp_path, "main"), "tiny")


def _failure(fake_hub, repo_id, revision=None, endpoint=None, **kwargs) -> str:
    with pytest.raises(hub.HubError) as caught:
        hub.download("m", repo_id, revision, "unused", endpoint=endpoint or fake_hub.url, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("model 'm'")
    return message


def test_gated_missing_and_unknown_revision_fail_in_one_line(fake_hub, online, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    licence = f"{fake_hub.url}/{GATED}"
    message = _failure(fake_hub, GATED, config_file="my.yaml")
    assert message == (
        f"model 'm' ({GATED}) is gated: accept its licence at {licence}, then set HF_TOKEN to a "
        f"token of that account (or run `hf auth login`) on the machine that runs Snakemake"
    )
    monkeypatch.setenv("HF_TOKEN", "hf_not_accepted")
    assert f"your token (HF_TOKEN or `hf auth login`) has no access to it: accept its licence at {licence}" in _failure(
        fake_hub, GATED
    )
    monkeypatch.setenv("HF_TOKEN", GRANTED_TOKEN)  # licence accepted: the download goes through
    assert hub.download("m", GATED, None, tmp_path, endpoint=fake_hub.url)["commit"]
    monkeypatch.delenv("HF_TOKEN")

    assert _failure(fake_hub, "test-org/no-such-model", config_file="my.yaml") == (
        f"model 'm' (test-org/no-such-model) was not found on {fake_hub.url}: check models.m.hf_id in my.yaml "
        f"(or it is private: set HF_TOKEN or run `hf auth login`)"
    )
    assert _failure(fake_hub, TINY, "v9", config_file="my.yaml") == (
        f"model 'm' ({TINY}) has no revision 'v9': check models.m.revision in my.yaml (a branch, tag or commit "
        f"of {fake_hub.url}/{TINY})"
    )
    assert "cannot reach the hub at http://127.0.0.1:9" in _failure(fake_hub, TINY, endpoint="http://127.0.0.1:9")
    assert not (tmp_path / "unused" / "m.json").exists()


def test_a_sweep_of_a_model_not_downloaded_stops_with_the_command(tmp_path, tiny_model, benchmark_file):
    config = hub_config(tiny_model, tmp_path / "hub")
    with pytest.raises(SweepError, match=r"model 'tiny' has not been downloaded .*: run `snakemake .*tiny.json`"):
        run_sweep(config, Sweep("cpu", "hf", "tiny", 1), tmp_path / "trials", benchmark_file)


@pytest.mark.slow
def test_a_trial_of_another_snapshot_is_measured_again(
    fake_hub, online, tmp_path, tiny_model, benchmark_file, log_lines
):
    hub.download("tiny", TINY, None, tmp_path / "hub", endpoint=fake_hub.url)
    config = dict(hub_config(tiny_model, tmp_path / "hub"), batch_sizes=[1])
    sweep, trials = Sweep("cpu", "hf", "tiny", 1), tmp_path / "trials"
    run_sweep(config, sweep, trials, benchmark_file)
    path = next(trials.rglob("b1_r0.json"))
    record = records.read(path)
    assert (record["status"], record["model_source"], record["model_revision"]) == (
        "ok",
        TINY,
        fake_hub.repos[TINY].commit,
    )
    records.write_atomic(path, dict(record, model_revision="an older commit"))
    summary = run_sweep(config, sweep, trials, benchmark_file)
    assert summary["reused_trials"] == 0 and records.read(path)["model_revision"] == record["model_revision"]
    assert any("measured with other settings (model revision)" in line for line in log_lines)


def _snakemake(args, cwd, env):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _hub_env(fake_hub, tmp_path) -> dict:
    """The environment of the machine that runs Snakemake: online, the hub at HF_ENDPOINT, no token."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    }
    return {**env, "HF_ENDPOINT": fake_hub.url, "HF_HOME": str(tmp_path / "hf-home")}


def _write_config(tmp_path, models) -> str:
    config = make_config(
        "unused",
        models=models,
        batch_sizes=[1],
        max_new_tokens=[5],
        analysis={"max_new_tokens": 5},
        benchmark={"limit": 8},
    )
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def test_download_rule_fails_gated_and_missing_models_alone_in_one_line(fake_hub, tmp_path):
    config = _write_config(
        tmp_path, {"tiny": {"hf_id": TINY}, "gated": {"hf_id": GATED}, "missing": {"hf_id": "test-org/no-such-model"}}
    )
    targets = [f"resources/hub/{key}.json" for key in ("tiny", "gated", "missing")]
    done = _snakemake(
        ["--cores", "1", "--keep-going", "--configfile", config, "--directory", str(tmp_path), *targets],
        tmp_path,
        _hub_env(fake_hub, tmp_path),
    )
    assert done.returncode != 0
    assert json.loads((tmp_path / "resources/hub/tiny.json").read_text())["commit"] == fake_hub.repos[TINY].commit
    assert not (tmp_path / "resources/hub/gated.json").exists()
    gated = f"InfPop: model 'gated' ({GATED}) is gated: accept its licence at {fake_hub.url}/{GATED}, then set HF_TOKEN"
    missing = (
        f"InfPop: model 'missing' (test-org/no-such-model) was not found on {fake_hub.url}: "
        f"check models.missing.hf_id in {config}"
    )
    for key, line in (("gated", gated), ("missing", missing)):
        assert line in done.stderr
        log = (tmp_path / f"results/logs/download_model/{key}.log").read_text()
        assert line in log and "Traceback" not in log
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_end_to_end_hub_model_downloaded_once_and_measured_offline(fake_hub, tmp_path):
    """A model given as hf_id through the pipeline: the download rule fetches it once from the
    (local) hub, the sweep loads the snapshot with the hub offline, and every trial and the
    trials table carry the snapshot's commit. With the hub gone the sweep still runs."""
    commit = fake_hub.repos[TINY].commit
    config = _write_config(tmp_path, {"tiny-llama": {"hf_id": TINY}})
    target = "results/measured/trials.csv"
    args = ["--cores", "2", "--configfile", config, "--directory", str(tmp_path), target]
    env = _hub_env(fake_hub, tmp_path)
    done = _snakemake(args, tmp_path, env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert re.search(r"^download_model\s+1$", done.stderr, re.M)  # the job stats
    manifest = json.loads((tmp_path / "resources/hub/tiny-llama.json").read_text())
    assert manifest["commit"] == commit
    assert "downloaded: " in (tmp_path / "results/logs/download_model/tiny-llama.log").read_text()
    # Only the download reached the hub: one look-up of the revision, no request from the engine.
    assert [r["path"] for r in fake_hub.requests if "/revision/" in r["path"]] == [f"/api/models/{TINY}/revision/main"]
    assert not [r for r in fake_hub.requests if "transformers" in r["user_agent"]]

    sweep_dir = tmp_path / "results/trials/cpu/hf/tiny-llama/g1"
    record = records.read(sweep_dir / "t5/b1_r0.json")
    assert record["status"] == "ok" and record["model_source"] == TINY and record["model_revision"] == commit
    with open(tmp_path / target) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], r["model_revision"], r["status"]) for r in rows] == [("tiny-llama", commit, "ok")]

    # The hub gone (a compute node without internet): the trial is measured again from the
    # snapshot, and nothing is downloaded again.
    fake_hub.stop()
    (sweep_dir / "t5/b1_r0.json").unlink()
    (sweep_dir / "sweep.json").unlink()
    again = _snakemake([*args[:-1], str((sweep_dir / "sweep.json").relative_to(tmp_path))], tmp_path, env)
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    assert "download_model" not in again.stderr and re.search(r"^sweep\s+1$", again.stderr, re.M)
    assert records.read(sweep_dir / "t5/b1_r0.json")["model_revision"] == commit
    assert f"loading {TINY} at {commit}" in (tmp_path / "results/logs/sweep/cpu/hf/tiny-llama/g1.log").read_text()
