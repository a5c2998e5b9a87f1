"""results/provenance.json: versions and hardware from the trial records, a trial whose
environment differs from the rest of its sweep flagged."""

from __future__ import annotations

import copy
import csv
import json

from infpop.measure import provenance

ENVIRONMENT = {
    "host": "node1",
    "platform": "Linux",
    "cpu": "Xeon",
    "cpu_count": 64,
    "memory_bytes": 1,
    "gpus": [{"name": "NVIDIA A100-SXM4-40GB", "memory_bytes": 42_000_000_000}],
    "cuda_visible_devices": "0",
    "driver": "550.54",
    "cuda": "12.8",
    "python": "3.11.7",
    "libraries": {"torch": "2.13.0", "vllm": "0.32.0"},
    "git_commit": "abc",
}


def _trial(env, batch_size):
    return {
        "schema_version": 1,
        "hardware": "a100",
        "engine": "vllm",
        "model": "m",
        "n_gpus": 1,
        "max_new_tokens": 5,
        "batch_size": batch_size,
        "rep": 0,
        "environment": env,
    }


def _sweep(tmp_path, envs):
    folder = tmp_path / "trials/a100/vllm/m/g1"
    (folder / "t5").mkdir(parents=True)
    names = []
    for i, env in enumerate(envs):
        name = f"t5/b{2**i}_r0.json"
        (folder / name).write_text(json.dumps(_trial(env, 2**i)))
        names.append(name)
    (folder / "sweep.json").write_text(json.dumps({"trials": names}))
    return folder / "sweep.json"


def test_a_trial_from_another_environment_is_flagged(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance.records, "read", lambda path: json.loads(open(path).read()))
    other = copy.deepcopy(ENVIRONMENT)
    other["libraries"]["vllm"] = "0.31.0"
    other["host"] = "node7"
    other["cuda_visible_devices"] = "3"  # not part of the comparison
    same = copy.deepcopy(ENVIRONMENT)
    same["cuda_visible_devices"] = "5"
    manifest = _sweep(tmp_path, [ENVIRONMENT, same, other])
    built = provenance.build([manifest], {"n_gpus": [1]}, "def")

    assert built["workflow"] == {"git_commit": "def", "config_sha256": provenance.config_hash({"n_gpus": [1]})}
    assert built["engines"]["vllm"]["libraries"] == {"torch": ["2.13.0"], "vllm": ["0.31.0", "0.32.0"]}
    assert built["hardware"]["a100"]["hosts"] == ["node1", "node7"]
    assert built["hardware"]["a100"]["gpus"] == ["NVIDIA A100-SXM4-40GB (42000000000 B)"]
    assert built["trial_git_commits"] == {"abc": 3}
    [sweep] = built["sweeps"]
    assert sweep["environment"]["host"] == "node1" and sweep["trials"] == 3
    [flagged] = sweep["differing_trials"]
    assert flagged["trial"].endswith("t5/b4_r0.json")
    assert flagged["differences"] == {
        "host": {"trial": "node7", "sweep": "node1"},
        "libraries.vllm": {"trial": "0.31.0", "sweep": "0.32.0"},
    }
    assert built["flagged_trials"] == [flagged["trial"]]

    provenance.write(built, tmp_path / "p.json", tmp_path / "p.csv")
    with open(tmp_path / "p.csv") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["differing_trials"] == "1" and row["differences"] == "host, libraries.vllm"
    assert row["libraries"] == "torch==2.13.0 vllm==0.32.0" and json.loads((tmp_path / "p.json").read_text())


def test_one_environment_flags_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance.records, "read", lambda path: json.loads(open(path).read()))
    built = provenance.build([_sweep(tmp_path, [ENVIRONMENT, ENVIRONMENT])], {}, None)
    assert built["flagged_trials"] == [] and built["sweeps"][0]["differing_trials"] == []
