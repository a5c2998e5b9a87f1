"""Trial records (schema, atomic write, corrupt files), the grid, the plan and aggregation."""

from __future__ import annotations

import json

import pytest
from conftest import make_config

from infpop.config import load_config
from infpop.measure import records
from infpop.measure.aggregate import collect_rows, write_csv
from infpop.measure.grid import Sweep, TrialKey, plan, trial_keys
from infpop.trials import TIDY_COLUMNS


def a_record(**overrides) -> dict:
    record = {
        "schema_version": 1,
        "hardware": "cpu",
        "engine": "hf",
        "model": "tiny",
        "model_source": "/m",
        "n_gpus": 1,
        "max_new_tokens": 5,
        "batch_size": 2,
        "rep": 0,
        "status": "ok",
        "counts": {"prompts": 4, "batches": 2, "batches_completed": 2, "generated_tokens": 20, "prompt_tokens": 90},
        "timings": {
            "load_seconds": 1.5,
            "generation_seconds": 0.5,
            "batch_latencies_s": [0.1, 0.4],
            "started_at": "2026-11-26T10:00:00.000+00:00",
            "finished_at": "2026-11-26T10:00:01.000+00:00",
        },
        "throughput_tokens_per_s": 40.0,
        "peak_memory": {"bytes": 1000, "kind": "rss"},
        "error": None,
        "environment": {"gpus": [], "libraries": {"transformers": "5.19.0"}, "git_commit": "abc"},
        "config": {},
    }
    record.update(overrides)
    return record


def test_write_and_read_round_trip(tmp_path):
    path = tmp_path / "a" / "b1_r0.json"
    records.write_atomic(path, a_record())
    assert records.read(path) == a_record()
    assert [p.name for p in path.parent.iterdir()] == ["b1_r0.json"]  # no temp file left


def test_schema_rejects_bad_records(tmp_path):
    with pytest.raises(records.RecordError, match="status"):
        records.write_atomic(tmp_path / "x.json", a_record(status="finished"))
    with pytest.raises(records.RecordError, match="counts"):
        records.write_atomic(tmp_path / "x.json", a_record(counts={}))
    assert not (tmp_path / "x.json").exists()


def test_corrupt_and_truncated_files_name_the_path(tmp_path):
    path = tmp_path / "t5" / "b2_r0.json"
    records.write_atomic(path, a_record())
    path.write_text(path.read_text()[:200])  # truncated
    with pytest.raises(records.RecordError, match=rf"{path}: corrupt or truncated trial JSON"):
        records.read(path)
    path.write_text("[1, 2]")
    with pytest.raises(records.RecordError, match="must be a JSON object"):
        records.read(path)


def test_percentile_matches_numpy_linear():
    import numpy as np

    values = [0.3, 0.1, 0.9, 0.5, 0.2]
    for q in (0, 50, 95, 100):
        assert records.percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert records.percentile([], 50) is None


def test_tidy_row():
    row = records.tidy_row(a_record(), path="p.json")
    assert set(row) == set(TIDY_COLUMNS)
    assert row["throughput_tokens_per_s"] == 40.0 and row["generated_tokens"] == 20
    assert row["latency_p50_s"] == pytest.approx(0.25) and row["engine_version"] == "5.19.0"
    assert row["model_revision"] is None  # a record made before the snapshot commit was recorded


def test_a_hub_model_record_carries_its_snapshot_commit(tmp_path):
    commit = "0a5326441f9d47c1ccd8a416fa24fda5c72ade09"
    path = tmp_path / "b2_r0.json"
    records.write_atomic(path, a_record(model_source="org/model", model_revision=commit))
    assert records.tidy_row(records.read(path))["model_revision"] == commit
    with pytest.raises(records.RecordError, match="model_revision"):
        records.write_atomic(path, a_record(model_revision=7))


def test_trial_keys_run_batch_sizes_ascending_with_repetitions_interleaved(tiny_model):
    config = load_config(
        make_config(
            tiny_model, batch_sizes=[8, 1, 4], max_new_tokens=[10, 5], repetitions=2, analysis={"max_new_tokens": 5}
        )
    )
    keys = trial_keys(config)
    # every configuration's r0 (tokens, then batch size ascending), then every r1
    assert keys[:4] == [TrialKey(5, 1, 0), TrialKey(5, 4, 0), TrialKey(5, 8, 0), TrialKey(10, 1, 0)]
    assert keys[6] == TrialKey(5, 1, 1)
    assert len(keys) == 12 and keys[-1] == TrialKey(10, 8, 1)
    adaptive = load_config(make_config(tiny_model, repetitions={"min": 2, "max": 5}))
    assert len(trial_keys(adaptive)) == 2 * 5  # the most an adaptive policy may run
    path = f"{Sweep('a100', 'vllm', 'm', 4).relpath}/{TrialKey(10, 8, 1).relpath}"
    assert path == "a100/vllm/m/g4/t10/b8_r1.json"


def test_plan_leaves_out_what_hardware_cannot_run(tiny_model):
    # a CPU node of 8 cores holds 8 ranks; an A100 node of 4 GPUs does not
    hardware = {"cpu": {"kind": "cpu", "cores": 8}, "a100": {"kind": "gpu", "gpus_per_node": 4}}
    config = load_config(make_config(tiny_model, engines=["hf", "vllm"], hardware=hardware, n_gpus=[1, 2, 8]))
    sweeps, excluded = plan(config)
    assert Sweep("cpu", "vllm", "tiny", 2) in sweeps and Sweep("a100", "hf", "tiny", 2) in sweeps
    reasons = {(r["hardware"], r["engine"], r["n_gpus"]): r["reason"] for r in excluded}
    assert set(reasons) == {
        ("cpu", "hf", 2),
        ("cpu", "hf", 8),
        ("a100", "hf", 8),
        ("a100", "vllm", 8),
        ("cpu", "vllm", 8),
    }
    assert "a 'a100' node has 4" in reasons[("a100", "vllm", 8)]
    # the tiny model's config is on disk: its 2 heads do not split into 8 tensor-parallel ranks
    assert reasons[("cpu", "vllm", 8)] == "2 attention heads are not divisible by 8 tensor-parallel ranks"


def test_aggregate_reads_the_manifests_and_stops_on_a_corrupt_trial(tmp_path):
    root = tmp_path / "trials" / "cpu/hf/tiny/g1"
    for batch in (1, 2):
        records.write_atomic(root / f"t5/b{batch}_r0.json", a_record(batch_size=batch))
    manifest = root / "sweep.json"
    manifest.write_text(json.dumps({"trials": {"t5/b2_r0.json": "ok", "t5/b1_r0.json": "ok"}}))
    rows = collect_rows([manifest])
    assert [r["batch_size"] for r in rows] == [1, 2]
    write_csv(rows, tmp_path / "out" / "trials.csv")
    assert (tmp_path / "out" / "trials.csv").read_text().splitlines()[0].startswith("hardware,engine,model")
    (root / "t5/b2_r0.json").write_text('{"schema_version": 1, "hard')
    with pytest.raises(records.RecordError, match="b2_r0.json: corrupt or truncated"):
        collect_rows([manifest])
