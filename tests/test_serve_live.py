"""Serving mode with real servers on the CPU (marked slow): a slice of configs/serve.yaml through
Snakemake (the tiny model, both engines, two load points, vLLM's server through both load
generators), the failures classified (a vLLM server whose KV cache cannot hold one request is `oom`;
a server killed under load is `crashed`, and the next load point gets a fresh one), and nothing left
behind when Snakemake is SIGKILLed mid-load (every process of the run found again by a marker in
its environment, as tests/test_interrupt.py does)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import REPO, VLLM_TEST_ARGS, describe, make_config, marked, repo_config, wait_until

from infpop.serve import records, steps
from infpop.serve.plan import LoadPoint, ServeJob
from infpop.serve.session import ServeError, ServeSession

pytestmark = pytest.mark.slow

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def serve_slice(tmp_path: Path, engines=("hf", "vllm"), **serve) -> Path:
    """configs/serve.yaml on the tiny model only: no engine-argument axes, two load points, one
    repetition, 12 requests of 8 tokens."""
    config = repo_config("configs/serve.yaml")
    del config["models"]["smollm2-135m"]
    config["engines"] = list(engines)
    config["serve"].update(
        {
            "engine_arg_axes": {},
            "request_rates": [4, "inf"],
            "max_concurrency": [None],
            "requests": 12,
            "output_tokens": 8,
            **serve,
        }
    )
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_serving_slice_through_snakemake(tmp_path):
    config = serve_slice(tmp_path)
    done = subprocess.run(
        [*SNAKEMAKE, "--cores", "2", "--configfile", str(config), "--directory", str(tmp_path), "serving"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    results = tmp_path / "results" / "serve"
    with open(results / "loadpoints.csv") as handle:
        rows = list(csv.DictReader(handle))
    got = sorted((r["engine"], r["request_rate"], r["harness"]) for r in rows)
    assert got == sorted(
        [("hf", rate, "infpop") for rate in ("4", "inf")]
        + [("vllm", rate, h) for rate in ("4", "inf") for h in ("infpop", "vllm_bench")]
    )
    assert {r["status"] for r in rows} == {"ok"} and {r["failed"] for r in rows} == {"0"}
    for row in rows:
        assert int(row["completed"]) == 12 and float(row["ttft_p50_ms"]) > 0 and float(row["e2el_p99_ms"]) > 0
        assert float(row["output_throughput"]) > 0 and row["request_goodput"] != ""
    record = records.read(next((results / "cpu" / "hf" / "tiny-llama" / "g1" / "default").glob("r4_*.json")))
    assert record["measures"]["offered_rate"] == 4 and record["energy"]["reason"].startswith("no NVIDIA GPU")
    assert record["peak_memory"]["kind"] == "process_rss" and record["peak_memory"]["bytes"] > 10**7
    vllm = records.read(next((results / "cpu" / "vllm" / "tiny-llama" / "g1" / "default").glob("r4_*vllm_bench*")))
    assert vllm["engine_settings"]["enable_prefix_caching"] is False  # read back from the server
    # our measures of vLLM's benchmark's own requests are its summary's
    with open(results / "harness_crosscheck.csv") as handle:
        crosscheck = list(csv.DictReader(handle))
    same = [r for r in crosscheck if r["comparison"].startswith("our measures") and r["ratio_median"]]
    assert same and all(abs(float(r["ratio_median"]) - 1) < 1e-6 for r in same)
    clients = {
        (r["request_rate"], r["measure"]): float(r["ratio_median"])
        for r in crosscheck
        if r["comparison"].startswith("infpop")
    }
    assert 0.8 < clients[("4", "request_throughput")] < 1.25  # both keep up with 4 requests a second
    assert (results / "latency_throughput.png").stat().st_size > 10_000
    # a second run keeps every record and starts no server
    again = subprocess.run(
        [
            *SNAKEMAKE,
            "--cores",
            "2",
            "--configfile",
            str(config),
            "--directory",
            str(tmp_path),
            "serving",
            "--forcerun",
            "serve",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    manifests = [json.loads(p.read_text()) for p in results.glob("cpu/*/tiny-llama/g1/default/serve.json")]
    assert [m["server_starts_s"] for m in manifests] == [[], []]
    assert sum(m["reused_records"] for m in manifests) == 6


def session_config(tmp_path, tiny_model, engine, **serve):
    from infpop.config import load_config

    section = {
        "request_rates": [2],
        "requests": 12,
        "output_tokens": 8,
        "warmup_requests": 1,
        "engine_args": {"hf": {"cb_num_blocks": 16, "cb_max_batch_tokens": 256}},
        **serve,
    }
    return load_config(make_config(tiny_model, engines=[engine], serve=section))


def test_a_vllm_server_whose_kv_cache_holds_no_request_is_oom(tmp_path, tiny_model, benchmark_file):
    config = session_config(
        tmp_path,
        tiny_model,
        "vllm",
        engine_args={"vllm": {**VLLM_TEST_ARGS, "kv_cache_memory_bytes": 1_000_000}},
    )
    with ServeSession(config, ServeJob("cpu", "vllm", "tiny", 1, "default"), tmp_path, benchmark_file) as session:
        # refused before any server starts: a smaller max_num_seqs needs a server started with more
        with pytest.raises(ServeError, match="max_num_seqs=4 on a server started with max_num_seqs=its default"):
            session.measure(LoadPoint(2.0, None, 4), harness="infpop")
        with pytest.raises(ServeError, match="only InfPop's client"):
            session.measure(LoadPoint(2.0, None, 4), harness="vllm_bench")
        assert session.start_attempts == 0
        record, reused = session.measure(LoadPoint(2.0))
        again, _ = session.measure(LoadPoint(4.0))
    assert not reused and record["status"] == again["status"] == "oom"
    assert "KV cache is needed, which is larger than the available KV cache memory" in record["error"]
    assert record["measures"] is None and session.start_attempts == 1  # one start, failed, not tried again


def test_tuning_on_a_shared_server_starts_one_vllm_server_for_two_max_num_seqs(tmp_path, tiny_model, benchmark_file):
    """serve.tuning.share_servers, live: max_num_seqs 2 and 4 are searched on one vLLM server
    started with 4, the 2 emulated by the client (at most 2 in flight, each request timed from its
    arrival); the records are valid serving records."""
    from infpop.serve import autotune
    from infpop.serve.metrics import Slo

    config = session_config(
        tmp_path,
        tiny_model,
        "vllm",
        engine_args={"vllm": VLLM_TEST_ARGS},
        engine_arg_axes={"vllm": {"max_num_seqs": [2, 4]}},
        harnesses={"vllm": ["infpop"], "hf": ["infpop"]},
    )
    ((case, grid),) = autotune.live_cases(config).items()
    assert [dict(s.knobs)["max_num_seqs"] for s in grid] == [2, 4]
    source = autotune.LiveSource(
        autotune.session_opener(config, case, tmp_path, benchmark_file), "infpop", 1, Slo(e2el_ms=60_000), 0.5
    )
    try:  # a limit every load point holds: each setting is tried at rate inf, once
        ours = autotune.infpop_tune(autotune.SharedServers(source, grid), grid, 0.5)
    finally:
        source.close()
    assert [(s.label, p.rate, p.server) for s, p in ours.ledger.probes] == [
        (grid[1].label, math.inf, grid[1].label),
        (grid[0].label, math.inf, grid[1].label),
    ]
    assert len(source.server_starts) == 1 and ours.ledger.servers == 1 and ours.setting is not None
    folder = tmp_path / ServeJob(*case, grid[1].label).relpath
    emulated = records.read(folder / "rinf_s2_infpop_rep0.json")
    assert emulated["load_point"]["emulated_max_num_seqs"] == 2 and emulated["status"] == "ok"
    failed = emulated["measures"]["failed"]
    assert 2 <= emulated["measures"]["peak_in_flight"] <= 2 + failed  # a failed request is held to the end
    assert all(r["from_arrival"] for r in emulated["requests"])
    assert max(r["client_queue_s"] for r in emulated["requests"]) > 0  # twelve at once, two at a time
    own = records.read(folder / "rinf_cinf_infpop_rep0.json")
    assert own["measures"]["peak_in_flight"] > 2 and not any(r.get("from_arrival") for r in own["requests"])
    # the server's steps over each load point, from its /metrics after the warm-up and after the load
    for record in (emulated, own):
        assert record["engine_settings"]["enforce_eager"] is True  # VLLM_TEST_ARGS, read back
        counted = record["scheduler_steps"]
        assert counted["steps"] >= max(r["output_tokens"] or 0 for r in record["requests"])  # a step a token
        assert counted["preemptions"] == 0
        # a step counts the whole prompt it completes (what steps.budget_never_reached rests on), but
        # for what the prefix cache held: it is on here (vLLM's default), and the warm-up sent the
        # first request's prompt (so these servers' step counts are not taken to bound their steps)
        others = [r["prompt_tokens"] for r in record["requests"] if r["index"] != 0]
        assert steps.largest_step(counted) >= max(others)
    assert not any(s.counts_steps for s in grid)
    probe = next(p for _, p in ours.ledger.probes)
    assert probe.largest_step is not None and probe.kv_needed <= probe.kv_cache_tokens
    # serve.tuning.confirm: the answer measured again, twice, on a server started with its own
    # setting (no emulation), records in a folder of their own
    confirmation = autotune.confirm_live(
        autotune.session_opener(config, case, tmp_path / "confirm", benchmark_file),
        (ours,),
        2,
        "infpop",
        Slo(e2el_ms=60_000),
        0.5,
    )
    assert [p.status for p in confirmation.probes["infpop"]] == ["ok", "ok"]
    assert confirmation.goodput("infpop").n == 2 and confirmation.device_s > 0
    confirmed = tmp_path / "confirm" / ServeJob(*case, ours.setting.label).relpath
    again = [records.read(confirmed / f"rinf_cinf_infpop_rep{rep}.json") for rep in (0, 1)]
    assert all("emulated_max_num_seqs" not in r["load_point"] and r["status"] == "ok" for r in again)


def test_a_server_killed_under_load_is_crashed_and_the_next_load_point_gets_a_fresh_one(
    tmp_path, tiny_model, benchmark_file
):
    config = session_config(tmp_path, tiny_model, "hf", request_rates=[1])
    job = ServeJob("cpu", "hf", "tiny", 1, "default")
    with ServeSession(config, job, tmp_path, benchmark_file) as session:
        session.measure(LoadPoint(4.0))  # a server up and warm

        def kill_soon():
            time.sleep(4)
            os.killpg(session.server.process.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_soon)
        killer.start()
        crashed, _ = session.measure(LoadPoint(1.0))  # 12 s of arrivals
        killer.join()
        after, _ = session.measure(LoadPoint(2.0))
    assert crashed["status"] == "crashed" and "the server died under load" in crashed["error"]
    assert 0 < crashed["measures"]["completed"] < 12 and crashed["measures"]["failed"] > 0
    assert after["status"] == "ok" and after["measures"]["completed"] == 12
    assert len(session.server_starts) == session.start_attempts == 2


@pytest.mark.parametrize("engine", ["hf", "vllm"])
def test_sigkill_to_snakemake_mid_load_leaves_no_server(tmp_path, engine):
    """SIGKILL to Snakemake while a load point runs: the job's watchdog sees its Snakemake gone,
    kills the server's process group (vLLM's engine core with it) and the load generator's, and exits."""
    config = serve_slice(tmp_path, engines=(engine,), request_rates=[0.5], requests=40)
    marker = uuid.uuid4().hex
    output = tmp_path / "snakemake.out"
    with open(output, "w") as handle:
        run = subprocess.Popen(
            [*SNAKEMAKE, "--cores", "2", "--configfile", str(config), "--directory", str(tmp_path), "serving"],
            cwd=REPO,
            env=dict(os.environ, INFPOP_TEST_MARKER=marker),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    work = tmp_path / "results" / "serve" / "cpu" / engine / "tiny-llama" / "g1" / "default" / "work"
    wait_until(lambda: work.exists() and any(work.iterdir()), 900, "the first load point to start")
    time.sleep(5)  # inside it: 40 requests over 80 s
    module = "transformers.cli.transformers" if engine == "hf" else "vllm.entrypoints.openai.api_server"
    servers = [p for p in marked(marker) if module in p.cmdline()]
    assert servers, describe(marked(marker))
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    wait_until(lambda: not marked(marker), 90, "every process of the run to end:\n" + describe(marked(marker)))
    assert not list(work.parent.glob("r0.5_*.json"))  # the interrupted load point was not recorded
