"""Both real engines on the tiny model, through the production worker process.

vLLM starts its own processes with spawn, so (like the pipeline) the engines run inside
`python -m infpop.measure.worker`, driven by the supervisor, never inside the pytest process.
"""

from __future__ import annotations

import os
import uuid

import pytest
from conftest import VLLM_TEST_ARGS, describe, marked

from infpop.measure import records
from infpop.measure.grid import Sweep, TrialKey
from infpop.measure.sweep import run_sweep

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("engine", ["hf", "vllm"])
def test_engine_generates_exactly_max_new_tokens(engine, tmp_path, config_for, benchmark_file, monkeypatch):
    """Each engine as the repository's configs run it: vLLM without the tests' eager mode (its
    compilation included, the one test that loads it so), and a sweep that ends leaves none of
    its processes behind."""
    marker = uuid.uuid4().hex
    monkeypatch.setenv("INFPOP_TEST_MARKER", marker)
    config = config_for(
        engines=[engine],
        batch_sizes=[1, 3, 8],
        max_new_tokens=[2, 7],
        benchmark={"limit": 10},
        analysis={"max_new_tokens": 2},
        engine_args={"vllm": {key: v for key, v in VLLM_TEST_ARGS.items() if key != "enforce_eager"}},
    )
    sweep = Sweep("cpu", engine, "tiny", 1)
    summary = run_sweep(config, sweep, tmp_path, benchmark_file)
    assert summary["model_loads"] == 1 and set(summary["trials"].values()) == {"ok"}
    assert not marked(marker), describe(marked(marker))
    for tokens in (2, 7):
        for batch in (1, 3, 8):
            record = records.read(tmp_path / TrialKey(tokens, batch, 0).relpath)
            counts = record["counts"]
            # 10 prompts in ceil(10 / batch) engine calls, each prompt exactly `tokens` new tokens
            assert counts["prompts"] == 10 and counts["batches"] == counts["batches_completed"] == -(-10 // batch)
            assert counts["generated_tokens"] == 10 * tokens
            assert counts["prompt_tokens"] > 10 * 20  # HumanEval prefixes are long
            assert len(record["timings"]["batch_latencies_s"]) == counts["batches"]
            assert record["throughput_tokens_per_s"] == pytest.approx(
                10 * tokens / record["timings"]["generation_seconds"]
            )
            assert record["peak_memory"]["kind"] == "rss" and record["peak_memory"]["bytes"] > 0
            assert len(record["output_digests"]) == 10
    libraries = record["environment"]["libraries"]
    assert ("vllm" in libraries) == (engine == "vllm") and "transformers" in libraries
    settings = record["engine_settings"]
    if engine == "vllm":  # engines on equal terms: vLLM's prefix cache is off, and it served nothing
        # vLLM as its users run it: the statistics logger is off in a timed trial, and it compiled
        assert settings["log_stats"] is False and settings["enforce_eager"] is False
        # the cores its one rank's threads were bound to: every core this process may use
        assert settings["cpu_threads_bind"] == ",".join(map(str, sorted(os.sched_getaffinity(0))))
        assert settings["enable_prefix_caching"] is False and settings["tensor_parallel_size"] == 1
        assert settings["kv_cache_tokens"] > 0 and settings["max_num_seqs"] > 0 and settings["attention_backends"]
        assert (
            record["engine_metrics"]["prefix_cache_hits"] == 0
            and record["engine_metrics"]["prefix_cache_hit_rate"] == 0
        )
    else:
        assert settings["torch_threads"] >= 1 and settings["offloaded"] is False
    assert record["environment"]["cpu_count"] >= 1 and record["environment"]["gpus"] == []


def test_vllm_prefix_cache_when_turned_on_serves_the_repeated_prompts(tmp_path, config_for, benchmark_file):
    """The setting stays a user's choice; the record then shows the cache at work."""
    config = config_for(
        engines=["vllm"],
        batch_sizes=[4],
        repetitions=2,
        benchmark={"limit": 8},
        engine_args={"vllm": {**VLLM_TEST_ARGS, "enable_prefix_caching": True}},
    )
    run_sweep(config, Sweep("cpu", "vllm", "tiny", 1), tmp_path, benchmark_file)
    second = records.read(tmp_path / TrialKey(3, 4, 1).relpath)
    assert second["engine_settings"]["enable_prefix_caching"] is True
    assert second["engine_settings"]["log_stats"] is False  # the hits come from the requests' outputs
    assert second["engine_metrics"]["prefix_cache_hits"] > 0
    assert 0.5 < second["engine_metrics"]["prefix_cache_hit_rate"] <= 1


def test_vllm_kv_cache_too_small_at_load_is_an_oom(tmp_path, config_for, benchmark_file, log_lines):
    """A real vLLM load failure, not a fake: a KV-cache budget (kv_cache_memory_bytes, 1 MB) below
    what one request of the model's length needs (about 4 MB for the tiny model's 2,048 tokens in
    float32). vLLM's engine core raises it in its own process and prints it; the frontend raises
    only "Engine core initialization failed". The worker reads the engine core's line from its
    captured stderr: the trial is `oom`, with that line first in `error`, and the job log still
    holds everything the engine printed."""
    config = config_for(
        engines=["vllm"],
        batch_sizes=[1, 2],
        engine_args={"vllm": {**VLLM_TEST_ARGS, "kv_cache_memory_bytes": 1_000_000}},
    )
    log_file = tmp_path / "sweep.log"
    with open(log_file, "w") as log:
        summary = run_sweep(
            config, Sweep("cpu", "vllm", "tiny", 1), tmp_path / "trials", benchmark_file, worker_stderr=log
        )
    assert list(summary["trials"].values()) == ["oom", "oom"] and summary["model_loads"] == 1
    record = records.read(tmp_path / "trials" / TrialKey(3, 1, 0).relpath)
    first, rest = record["error"].split("\n", 1)
    assert first.startswith("ValueError: To serve at least one request with the model's max seq len (2048)")
    assert "KV cache is needed, which is larger than the available KV cache memory" in first
    assert "Engine core initialization failed" in rest  # what the frontend raised, kept after it
    assert any("model load failed (oom): ValueError: To serve at least one request" in line for line in log_lines)
    logged = log_file.read_text()
    assert "EngineCore failed to start" in logged and logged.count("KV cache is needed") >= 2
    assert "infpop-output-sync" not in logged


def test_vllm_tensor_parallel_size_the_heads_do_not_divide_is_unsupported(
    tmp_path, config_for, benchmark_file, tiny_model
):
    """A real vLLM refusal on the CPU: the tiny model rebuilt as one attention head (head_dim 128,
    the same weights) at tensor_parallel_size 2. vLLM checks the head count before loading
    anything; the trials are `unsupported` with vLLM's reason, and not retried."""
    import json
    import shutil

    one_head = tmp_path / "one-head"
    shutil.copytree(tiny_model, one_head)
    settings = json.loads((one_head / "config.json").read_text())
    settings.update(num_attention_heads=1, num_key_value_heads=1, head_dim=settings["hidden_size"])
    (one_head / "config.json").write_text(json.dumps(settings))
    config = config_for(engines=["vllm"], n_gpus=[2], batch_sizes=[1, 2], retry_failed=True)
    config["models"]["tiny"]["path"] = str(one_head)
    sweep = Sweep("cpu", "vllm", "tiny", 2)
    summary = run_sweep(config, sweep, tmp_path / "trials", benchmark_file)
    assert list(summary["trials"].values()) == ["unsupported", "unsupported"]
    record = records.read(tmp_path / "trials" / TrialKey(3, 2, 0).relpath)
    assert record["error"].startswith(
        "Total number of attention heads (1) must be divisible by tensor parallel size (2).\n"
    )
    assert record["throughput_tokens_per_s"] is None
    # not a failure to retry: even with retry_failed the records are kept
    again = run_sweep(config, sweep, tmp_path / "trials", benchmark_file)
    assert again["reused_trials"] == 2 and again["model_loads"] == 0
