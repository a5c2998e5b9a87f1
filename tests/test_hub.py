"""hf_id models: downloaded once by a local rule, loaded offline from the snapshot, the commit in
every trial. The real hub cannot be reached here: a local server (tests/fake_hub.py) answers
huggingface_hub as the hub does, and HF_ENDPOINT points at it."""

from __future__ import annotations

import json

import pytest

from conftest import make_config
from fake_hub import GRANTED_TOKEN, FakeHub
from infpop import hub, records
from infpop.config import load_config
from infpop.grid import Sweep
from infpop.sweep import SweepError, run_sweep

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


def test_download_writes_the_manifest_and_fetches_nothing_twice(fake_hub, online, tmp_path, tiny_model):
    models_dir = tmp_path / "hub"
    repo = fake_hub.repos[TINY]
    repo.files["pytorch_model.bin"] = b"a second copy of the weights"  # beside model.safetensors
    lines = []
    manifest = hub.download("tiny", TINY, None, models_dir, log=lines.append, endpoint=fake_hub.url)
    assert manifest["commit"] == repo.commit and manifest["revision"] == "main" and manifest["repo_id"] == TINY
    assert json.loads((models_dir / "tiny.json").read_text()) == manifest
    snapshot = models_dir / manifest["snapshot"]
    assert snapshot.name == repo.commit and (snapshot / "model.safetensors").is_file()
    expected = sorted(name for name in repo.files if name != "pytorch_model.bin")
    assert [f["path"] for f in manifest["files"]] == expected
    assert manifest["skipped_files"] == ["pytorch_model.bin"] and not (snapshot / "pytorch_model.bin").exists()
    assert manifest["total_bytes"] == sum(len(repo.files[name]) for name in expected)
    assert sorted(p.rsplit("/", 1)[1] for p in fake_hub.file_requests("GET")) == expected
    assert any(line.startswith("downloaded: ") and "(100%)" in line for line in lines)  # progress in the log

    # A second download finds every file in place: one look-up of the revision, no file fetched.
    before = len(fake_hub.requests)
    lines.clear()
    again = hub.download("tiny", TINY, None, models_dir, log=lines.append, endpoint=fake_hub.url)
    assert again["commit"] == repo.commit and again["files"] == manifest["files"]
    assert [r["path"] for r in fake_hub.requests[before:]] == [f"/api/models/{TINY}/revision/main"]
    assert any("nothing to download" in line for line in lines)

    # What a sweep loads: the snapshot folder, and the commit its trials record.
    assert hub.model_files(hub_config(tiny_model, models_dir), "tiny") == (str(snapshot.resolve()), repo.commit)


@pytest.mark.parametrize("revision", ["v1", "commit"])
def test_a_pinned_revision_is_resolved_to_its_commit(fake_hub, online, tmp_path, tiny_model, revision):
    commit = fake_hub.repos[TINY].commit
    revision = commit if revision == "commit" else revision
    manifest = hub.download("tiny", TINY, revision, tmp_path, log=lambda line: None, endpoint=fake_hub.url)
    assert (manifest["revision"], manifest["commit"]) == (revision, commit)
    assert hub.model_files(hub_config(tiny_model, tmp_path, revision), "tiny")[1] == commit
    # the manifest of another revision is not taken for this one
    with pytest.raises(hub.SnapshotMissing, match="delete it and download again"):
        hub.model_files(hub_config(tiny_model, tmp_path, "main"), "tiny")


def _failure(fake_hub, repo_id, revision=None, endpoint=None, **kwargs) -> str:
    with pytest.raises(hub.HubError) as caught:
        hub.download("m", repo_id, revision, "unused", log=lambda line: None,
                     endpoint=endpoint or fake_hub.url, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("model 'm'")
    return message


def test_gated_missing_and_unknown_revision_fail_in_one_line(fake_hub, online, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    licence = f"{fake_hub.url}/{GATED}"
    message = _failure(fake_hub, GATED, config_file="my.yaml")
    assert message == (f"model 'm' ({GATED}) is gated: accept its licence at {licence}, then set HF_TOKEN to a "
                       f"token of that account (or run `hf auth login`) on the machine that runs Snakemake")
    monkeypatch.setenv("HF_TOKEN", "hf_not_accepted")
    assert f"your token (HF_TOKEN or `hf auth login`) has no access to it: accept its licence at {licence}" in \
        _failure(fake_hub, GATED)
    monkeypatch.setenv("HF_TOKEN", GRANTED_TOKEN)  # licence accepted: the download goes through
    assert hub.download("m", GATED, None, tmp_path, log=lambda line: None, endpoint=fake_hub.url)["commit"]
    monkeypatch.delenv("HF_TOKEN")

    assert _failure(fake_hub, "test-org/no-such-model", config_file="my.yaml") == (
        f"model 'm' (test-org/no-such-model) was not found on {fake_hub.url}: check models.m.hf_id in my.yaml "
        f"(or it is private: set HF_TOKEN or run `hf auth login`)")
    assert _failure(fake_hub, TINY, "v9", config_file="my.yaml") == (
        f"model 'm' ({TINY}) has no revision 'v9': check models.m.revision in my.yaml (a branch, tag or commit "
        f"of {fake_hub.url}/{TINY})")
    assert "cannot reach the hub at http://127.0.0.1:9" in _failure(fake_hub, TINY, endpoint="http://127.0.0.1:9")
    assert not (tmp_path / "unused" / "m.json").exists()


def test_a_sweep_of_a_model_not_downloaded_stops_with_the_command(tmp_path, tiny_model, benchmark_file):
    config = hub_config(tiny_model, tmp_path / "hub")
    with pytest.raises(SweepError, match=r"model 'tiny' has not been downloaded .*: run `snakemake .*tiny.json`"):
        run_sweep(config, Sweep("cpu", "hf", "tiny", 1), tmp_path / "trials", benchmark_file)


@pytest.mark.slow
def test_a_trial_of_another_snapshot_is_measured_again(fake_hub, online, tmp_path, tiny_model, benchmark_file):
    hub.download("tiny", TINY, None, tmp_path / "hub", log=lambda line: None, endpoint=fake_hub.url)
    config = dict(hub_config(tiny_model, tmp_path / "hub"), batch_sizes=[1])
    sweep, trials = Sweep("cpu", "hf", "tiny", 1), tmp_path / "trials"
    run_sweep(config, sweep, trials, benchmark_file, log=lambda line: None)
    path = next(trials.rglob("b1_r0.json"))
    record = records.read(path)
    assert (record["status"], record["model_source"], record["model_revision"]) == ("ok", TINY, fake_hub.repos[TINY].commit)
    records.write_atomic(path, dict(record, model_revision="an older commit"))
    lines = []
    summary = run_sweep(config, sweep, trials, benchmark_file, log=lines.append)
    assert summary["reused_trials"] == 0 and records.read(path)["model_revision"] == record["model_revision"]
    assert any("measured with other settings (model revision)" in line for line in lines)