"""Serving mode's pieces without an engine: the request stream (against vLLM's own schedule), the
measures (against hand-computed values and vLLM's calculate_metrics), the plan and the config
checks, the records, the tables, InfPop's client against a scripted SSE server (aiohttp's test
server standing in for an OpenAI-compatible one: it isolates the client's parsing and timing), and
the server manager against scripted server processes (what a server does when it starts, fails to
start or dies). Real servers: tests/test_serve_live.py."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import VLLM_TEST_ARGS, make_config

from infpop.config import ConfigError, load_config
from infpop.measure.records import RecordError
from infpop.serve import records, steps, tables
from infpop.serve.harness import (
    HarnessError,
    OpenAiClient,
    Target,
    VllmBench,
    payload,
    results_from_vllm,
    vllm_bench_arguments,
)
from infpop.serve.metrics import RequestResult, Slo, peak_in_flight, summarise
from infpop.serve.plan import LoadPoint, ServeJob, load_points, plan, plan_rows
from infpop.serve.requests import arrival_offsets, build_stream, custom_dataset
from infpop.serve.server import Server, ServerFailed, free_port


@pytest.fixture
def model_folder(tmp_path) -> Path:
    """A model folder the config accepts (no weights: nothing here loads it)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"num_attention_heads": 4, "max_position_embeddings": 512}))
    return folder


def serve_config(model_folder, **serve):
    return load_config(make_config(model_folder, engines=["hf", "vllm"], serve=serve))


# -- the request stream ----------------------------------------------------------------------------


def vllm_schedule(n: int, rate: float, burstiness: float, seed: int) -> list[float]:
    """The arrival offsets vLLM's own get_request waits for, on a fake clock: its sleeps recorded."""
    from vllm.benchmarks import serve as vllm_serve

    clock = {"now": 1000.0}
    sent = []

    async def sleep(seconds):
        clock["now"] += seconds

    async def collect():
        np.random.seed(seed)  # what vLLM's main does first
        async for _request, _ in vllm_serve.get_request(list(range(n)), rate, burstiness):
            sent.append(clock["now"] - 1000.0)

    original_sleep, original_time = vllm_serve.asyncio.sleep, vllm_serve.time.time
    vllm_serve.asyncio.sleep, vllm_serve.time.time = sleep, lambda: clock["now"]
    try:
        asyncio.run(collect())
    finally:
        vllm_serve.asyncio.sleep, vllm_serve.time.time = original_sleep, original_time
    return sent


@pytest.mark.parametrize("rate, burstiness, seed", [(4.0, 1.0, 0), (2.5, 0.5, 7), (10.0, float("inf"), 0)])
def test_arrivals_are_vllms_schedule_for_the_same_seed(rate, burstiness, seed):
    ours = arrival_offsets(40, rate, burstiness, seed)
    assert ours == pytest.approx(vllm_schedule(40, rate, burstiness, seed), abs=1e-9)
    assert ours[-1] == pytest.approx(40 / rate)  # rescaled: the last arrives at n / rate
    assert ours == sorted(ours)


def test_an_infinite_rate_sends_everything_at_once_and_seeds_differ():
    assert arrival_offsets(5, math.inf) == [0.0] * 5
    assert arrival_offsets(20, 2.0, 1.0, 0) != arrival_offsets(20, 2.0, 1.0, 1)
    with pytest.raises(ValueError):
        arrival_offsets(5, 0.0)


def test_the_stream_goes_to_vllms_benchmark_as_its_custom_dataset():
    stream = build_stream(["a", "b\nc"], 16, 2.0, 1.0, 0, warmup=3)
    lines = [json.loads(line) for line in custom_dataset(stream).splitlines()]
    assert lines == [{"prompt": "a", "output_tokens": 16}, {"prompt": "b\nc", "output_tokens": 16}]
    target = Target("http://127.0.0.1:9", "/m", "/m")
    arguments = vllm_bench_arguments(target, stream, 4, Slo(ttft_ms=500, tpot_ms=50), Path("/d"), Path("/r/x.json"))
    value = {flag: arguments[arguments.index(flag) + 1] for flag in ("--request-rate", "--seed", "--num-warmups")}
    assert value == {"--request-rate": "2.0", "--seed": "0", "--num-warmups": "3"}
    assert {"--disable-shuffle", "--skip-chat-template", "--save-detailed"} <= set(arguments)
    assert arguments[arguments.index("--custom-output-len") + 1] == "-1"
    assert arguments[arguments.index("--max-concurrency") + 1] == "4"
    assert arguments[-3:] == ["--goodput", "ttft:500", "tpot:50"]
    assert "--ignore-eos" not in arguments  # transformers' server has none: neither engine gets one


def test_our_client_sends_standard_fields_only():
    body = payload(Target("u", "m", "m", stream_options=False), "p", 8)
    assert body == {"model": "m", "prompt": "p", "max_tokens": 8, "stream": True, "temperature": 0.0}
    assert set(payload(Target("u", "m", "m"), "p", 8)) == {*body, "stream_options"}


# -- the measures ----------------------------------------------------------------------------------


def request(i, ttft, e2el, tokens, itl=(), start=0.0, success=True):
    return RequestResult(i, success, start, ttft, e2el, list(itl), tokens, 10, 0.0, None if success else "boom")


def test_measures_follow_vllms_definitions():
    results = [
        request(0, 0.1, 0.5, 5, [0.1, 0.1, 0.1, 0.1], start=0.0),
        request(1, 0.3, 1.1, 9, [0.1] * 8, start=0.5),
        request(2, 0.2, 0.2, 1, [], start=1.0),  # one token: no TPOT, TPOT 0 for goodput
        request(3, None, None, 0, success=False, start=1.5),
    ]
    m = summarise(
        results, duration_s=2.0, offered_rate=2.0, slo=Slo(ttft_ms=250, tpot_ms=100), saturation_tolerance=0.1
    )
    assert (m["completed"], m["failed"], m["output_tokens"]) == (3, 1, 15)
    assert m["request_throughput"] == pytest.approx(1.5) and m["output_throughput"] == pytest.approx(7.5)
    assert m["ttft_ms"]["mean"] == pytest.approx(200) and m["ttft_ms"]["p50"] == pytest.approx(200)
    # TPOT over the requests of more than one token: (0.5-0.1)/4 = 0.1, (1.1-0.3)/8 = 0.1
    assert m["tpot_ms"]["mean"] == pytest.approx(100) and m["tpot_ms"]["p99"] == pytest.approx(100)
    assert m["itl_ms"]["p50"] == pytest.approx(100)  # 12 gaps pooled
    assert m["e2el_ms"]["p90"] == pytest.approx(np.percentile([500, 1100, 200], 90))
    # good: request 0 (ttft 100, tpot 100) and 2 (ttft 200, one token); 1 misses ttft; 3 failed
    assert m["good_requests"] == 2 and m["request_goodput"] == pytest.approx(1.0)
    assert m["slo_attainment"] == pytest.approx(0.5)
    assert m["achieved_to_offered"] == pytest.approx(0.75) and m["over_saturated"] is True


def test_a_server_that_falls_behind_is_over_saturated_and_one_that_keeps_up_is_not():
    """Arrivals every 0.25 s for 20 s (the first after one gap, as vLLM's schedule); a server that
    serves one request at a time in 0.5 s completes one every 0.5 s (its queue grows); one that
    serves them side by side in 1 s keeps pace, less the last request's latency over the point."""

    def point(service_s, queueing, n=80):
        results, free = [], 0.0
        for i in range(n):
            arrival = (i + 1) * 0.25
            begin = max(arrival, free) if queueing else arrival
            free = begin + service_s
            results.append(request(i, begin - arrival + 0.05, free - arrival, 5, [0.01] * 4, start=arrival))
        return summarise(results, max(r.start_s + r.e2el_s for r in results), 4.0, Slo(), 0.1)

    behind, keeping_up = point(0.5, True), point(1.0, False)
    assert behind["achieved_to_offered"] == pytest.approx(0.5, abs=0.01) and behind["over_saturated"] is True
    assert behind["ttft_ms"]["p99"] > 15_000  # the queue's length, not the server's speed
    assert keeping_up["achieved_to_offered"] == pytest.approx(20 / 21) and keeping_up["over_saturated"] is False
    # the same server on a point as short as its latency: the ratio is 1 / (1 + E2EL x rate / n)
    assert point(1.0, False, n=8)["achieved_to_offered"] == pytest.approx(2 / 3)


def test_no_slo_no_goodput_and_an_open_loop_point_has_no_offered_rate():
    m = summarise([request(0, 0.1, 0.2, 2, [0.1])], 1.0, math.inf, Slo(), 0.1)
    assert m["request_goodput"] is None and m["offered_rate"] is None and m["over_saturated"] is None


def test_our_measures_equal_vllms_calculate_metrics_on_the_same_requests():
    """metrics.summarise against vLLM's own calculate_metrics (code we did not write)."""
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncOutput
    from vllm.benchmarks.serve import calculate_metrics

    generator = np.random.RandomState(3)
    outputs, results = [], []
    for i in range(30):
        tokens = int(generator.randint(1, 20))
        ttft = float(generator.uniform(0.05, 0.5))
        itl = [float(x) for x in generator.uniform(0.01, 0.05, size=tokens - 1)]
        failed = i % 11 == 5
        output = RequestFuncOutput(
            success=not failed, ttft=ttft, itl=itl, latency=ttft + sum(itl), output_tokens=tokens
        )
        output.prompt_len = 12
        outputs.append(output)
        results.append(request(i, ttft, ttft + sum(itl), tokens, itl, success=not failed))
    theirs, _ = calculate_metrics(
        [None] * 30, outputs, 7.0, None, [50.0, 90.0, 99.0], {"ttft": 300.0, "tpot": 35.0, "e2el": 900.0}
    )
    ours = summarise(results, 7.0, 4.0, Slo(ttft_ms=300, tpot_ms=35, e2el_ms=900), 0.1)
    assert ours["completed"] == theirs.completed and ours["output_tokens"] == theirs.total_output
    assert ours["request_goodput"] == pytest.approx(theirs.request_goodput)
    assert ours["output_throughput"] == pytest.approx(theirs.output_throughput)
    for name in ("ttft", "tpot", "itl", "e2el"):
        assert ours[f"{name}_ms"]["mean"] == pytest.approx(getattr(theirs, f"mean_{name}_ms"))
        assert ours[f"{name}_ms"]["p50"] == pytest.approx(getattr(theirs, f"median_{name}_ms"))
        assert ours[f"{name}_ms"]["std"] == pytest.approx(getattr(theirs, f"std_{name}_ms"))
        theirs_p = dict(getattr(theirs, f"percentiles_{name}_ms"))
        assert ours[f"{name}_ms"]["p99"] == pytest.approx(theirs_p[99.0])


def test_vllms_detailed_result_becomes_request_results():
    stream = build_stream(["a", "b", "c"], 4, 2.0, 1.0, 0, warmup=0)
    first = stream.requests[0].arrival_s
    saved = {
        "latencies": [0.5, 0.0, 0.7],
        "ttfts": [0.1, 0.0, 0.2],
        "itls": [[0.1, 0.1], [], [0.25, 0.25]],
        "output_lens": [3, 0, 3],
        "input_lens": [5, 6, 7],
        "start_times": [100.0 + first, 100.7, 101.4],
        "queue_times": [0.0, 0.0, 0.0],
        "errors": ["", "Bad Request", ""],
    }
    results = results_from_vllm(saved, stream)
    assert [r.success for r in results] == [True, False, True]
    assert results[0].start_s == pytest.approx(first) and results[2].start_s == pytest.approx(1.4)
    assert results[1].error == "Bad Request" and results[1].e2el_s is None
    assert results[2].tpot_s == pytest.approx(0.25)


# -- InfPop's client against a scripted server -----------------------------------------------------


def sse(data: dict) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


async def scripted_server(handler):
    """aiohttp's test server on a free port with `handler` at /v1/completions."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    app = web.Application()
    app.router.add_post("/v1/completions", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def run_client(handler, stream, max_concurrency=None, stream_options=True, from_arrival=False):
    """Our client against the scripted server, in a thread of its own (the client runs its own loop)."""
    import threading

    from aiohttp import web  # noqa: F401 - the server's loop needs it imported

    ready, stop, box = threading.Event(), threading.Event(), {}

    def serve():
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(scripted_server(handler))
        box["url"] = f"http://127.0.0.1:{server.port}"
        ready.set()
        while not stop.is_set():
            loop.run_until_complete(asyncio.sleep(0.02))
        loop.run_until_complete(server.close())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        target = Target(box["url"], "m", "m", stream_options=stream_options)
        return OpenAiClient().run(target, stream, max_concurrency, Slo(), Path("."), 60, from_arrival=from_arrival)
    finally:
        stop.set()
        thread.join(10)


def transformers_like(bodies: list):
    """Streams as transformers' server does: a chunk per piece of text, then a final chunk with empty
    text, finish_reason and usage; no [DONE]. Keeps the bodies it got."""
    from aiohttp import web

    async def handler(request):
        body = await request.json()
        bodies.append(body)
        unknown = set(body) - {"model", "prompt", "max_tokens", "stream", "temperature", "stream_options", "seed"}
        if unknown:
            return web.json_response({"detail": f"Unexpected fields in the request: {unknown}"}, status=422)
        response = web.StreamResponse()
        await response.prepare(request)
        for piece in ["a", "", "b", "c"]:  # an empty piece (an incomplete character) is no token
            await asyncio.sleep(0.02)
            await response.write(sse({"choices": [{"text": piece, "index": 0}]}))
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        await response.write(sse({"choices": [{"text": "", "finish_reason": "length"}], "usage": usage}))
        return response

    return handler


def test_client_times_text_chunks_and_reads_usage_from_the_last_chunk():
    bodies = []
    stream = build_stream(["p0", "p1", "p2"], 3, math.inf, 1.0, 0, warmup=2)
    run = run_client(transformers_like(bodies), stream)
    assert len(bodies) == 5  # 2 warm-up copies of the first prompt, then the 3 requests
    assert [b["prompt"] for b in bodies[:2]] == ["p0", "p0"] and sorted(b["prompt"] for b in bodies[2:]) == [
        "p0",
        "p1",
        "p2",
    ]
    assert all(set(b) <= {"model", "prompt", "max_tokens", "stream", "temperature", "stream_options"} for b in bodies)
    assert all(r.success for r in run.results) and [r.output_tokens for r in run.results] == [3, 3, 3]
    for r in run.results:
        assert len(r.itl_s) == 2  # three text chunks; the empty ones are not counted
        assert r.ttft_s >= 0.02 and r.e2el_s >= r.ttft_s + sum(r.itl_s) - 1e-6
        assert r.prompt_tokens == 7
    assert run.warmup_s is not None and run.duration_s >= max(r.e2el_s for r in run.results)


def test_a_refused_request_is_a_failed_result_with_the_servers_answer():
    from aiohttp import web

    async def refuse(request):
        return web.json_response({"detail": "Unexpected fields in the request: {'ignore_eos'}"}, status=422)

    run = run_client(refuse, build_stream(["p"], 3, math.inf, 1.0, 0, warmup=0))
    (result,) = run.results
    assert not result.success and result.error.startswith("HTTP 422") and "ignore_eos" in result.error


def test_the_concurrency_limit_holds_and_arrivals_follow_the_schedule():
    from aiohttp import web

    state = {"now": 0, "most": 0, "starts": []}

    async def slow(request):
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        state["starts"].append(time.perf_counter())
        response = web.StreamResponse()
        await response.prepare(request)
        await asyncio.sleep(0.1)
        await response.write(sse({"choices": [{"text": "x"}]}))
        await response.write(sse({"choices": [], "usage": {"completion_tokens": 1, "prompt_tokens": 1}}))
        await response.write(b"data: [DONE]\n\n")
        state["now"] -= 1
        return response

    run = run_client(slow, build_stream([f"p{i}" for i in range(6)], 1, math.inf, 1.0, 0, warmup=0), max_concurrency=2)
    assert state["most"] == 2 and all(r.success for r in run.results)
    assert max(r.client_queue_s for r in run.results) >= 0.15  # the last waited for two rounds
    assert peak_in_flight(run.results, run.duration_s) == 2
    state.update(starts=[])
    stream = build_stream([f"p{i}" for i in range(5)], 1, 10.0, 1.0, 0, warmup=0)
    run = run_client(slow, stream)
    sent = [r.start_s for r in run.results]
    assert sent == pytest.approx([r.arrival_s for r in stream.requests], abs=0.05)


def test_an_emulated_max_num_seqs_holds_requests_and_times_them_from_their_arrival():
    """LoadPoint.emulated_max_num_seqs: at most that many in flight, and a request's wait for a
    slot counts in its latencies (as the server's queue would)."""
    from aiohttp import web

    state = {"now": 0, "most": 0}

    async def slow(request):
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        response = web.StreamResponse()
        await response.prepare(request)
        await asyncio.sleep(0.1)
        await response.write(sse({"choices": [{"text": "x"}]}))
        await response.write(sse({"choices": [], "usage": {"completion_tokens": 1, "prompt_tokens": 1}}))
        state["now"] -= 1
        return response

    point = LoadPoint(math.inf, None, 2)
    assert point.label == "rinf_s2" and point.client_limit == 2 and LoadPoint.from_json(point.to_json()) == point
    with pytest.raises(ValueError, match="not both"):
        LoadPoint(4.0, 2, 2)
    stream = build_stream([f"p{i}" for i in range(6)], 1, math.inf, 1.0, 0, warmup=0)
    sent = run_client(slow, stream, max_concurrency=2).results
    arrived = run_client(slow, stream, max_concurrency=2, from_arrival=True).results
    assert state["most"] == 2
    # six at once, two at a time: the last two wait about two rounds of 0.1 s before their send
    assert max(r.e2el_s for r in sent) < 0.2 and max(r.e2el_s for r in arrived) >= 0.28
    assert all(r.from_arrival and r.start_s == pytest.approx(0.0, abs=0.05) for r in arrived)
    assert max(r.client_queue_s for r in arrived) >= 0.18
    assert peak_in_flight(arrived, 1.0) == peak_in_flight(sent, 1.0) == 2
    with pytest.raises(HarnessError, match="arrival"):
        VllmBench().run(Target("http://x", "m", "m"), stream, 2, Slo(), Path("."), 60, from_arrival=True)


def test_the_peak_in_flight_counts_sends_against_ends():
    def done(start, e2el, queue=0.0, from_arrival=False):
        return RequestResult(0, True, start, e2el / 2, e2el, [], 1, 1, queue, None, from_arrival)

    # [0, 1], [0.5, 1.5], [1, 2]: the third is sent as the first ends (a slot handed on), so 2
    assert peak_in_flight([done(0, 1), done(0.5, 1), done(1, 1)], 2.0) == 2
    # from its arrival: arrived at 0, waited 1 s, so in flight over [1, 2] only
    assert peak_in_flight([done(0, 1), done(0, 2, queue=1.0, from_arrival=True)], 2.0) == 1
    # a failed request is held until the load point's end: over [1.2, 3], beside [1.5, 2.5]
    assert peak_in_flight([done(0, 1), RequestResult(1, False, 1.2), done(1.5, 1)], 3.0) == 2
    assert peak_in_flight([done(0, 1), RequestResult(1, False, None)], 3.0) is None
    assert peak_in_flight([], 1.0) is None


def test_the_kv_tokens_held_round_each_request_to_whole_blocks():
    def done(start, e2el, prompt, output):
        return RequestResult(0, True, start, e2el / 2, e2el, [], output, prompt, 0.0, None)

    # 100 + 20 tokens take one block of 128, 200 + 20 two; both held over [0.5, 1]
    assert steps.kv_tokens_held([done(0, 1, 100, 20), done(0.5, 1, 200, 20)], 2.0, 128, 2048) == 384
    assert steps.kv_tokens_held([done(0, 1, 100, 20), done(1, 1, 200, 20)], 2.0, 128, 2048) == 256  # one ends
    # a failed request may have held the whole context (2048 tokens) until the load point's end
    assert steps.kv_tokens_held([done(0, 1, 100, 20), RequestResult(1, False, 0.5)], 2.0, 128, 2000) == 128 + 2048
    assert steps.kv_tokens_held([RequestResult(1, False, None)], 2.0, 128, 2048) is None


# A page of vLLM's /metrics in Prometheus' text format, as vLLM 0.32 writes it (two engines, to
# check the sum; written for this test)
METRICS_PAGE = """# HELP vllm:iteration_tokens_total Histogram of number of tokens per engine_step.
# TYPE vllm:iteration_tokens_total histogram
vllm:iteration_tokens_total_bucket{engine="0",le="1.0",model_name="m"} 5.0
vllm:iteration_tokens_total_bucket{engine="0",le="512.0",model_name="m"} 9.0
vllm:iteration_tokens_total_bucket{engine="0",le="1024.0",model_name="m"} 10.0
vllm:iteration_tokens_total_bucket{engine="0",le="+Inf",model_name="m"} 10.0
vllm:iteration_tokens_total_count{engine="0",model_name="m"} 10.0
vllm:iteration_tokens_total_sum{engine="0",model_name="m"} 1500.0
vllm:iteration_tokens_total_bucket{engine="1",le="1.0",model_name="m"} 1.0
vllm:iteration_tokens_total_bucket{engine="1",le="512.0",model_name="m"} 2.0
vllm:iteration_tokens_total_bucket{engine="1",le="1024.0",model_name="m"} 2.0
vllm:iteration_tokens_total_bucket{engine="1",le="+Inf",model_name="m"} 2.0
vllm:iteration_tokens_total_count{engine="1",model_name="m"} 2.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 1.0
"""


def test_the_step_counts_of_a_load_point_are_the_difference_of_two_metrics_pages():
    before = steps.parse(METRICS_PAGE)
    assert before.steps == 12 and dict(before.at_most) == {1: 6, 512: 11, 1024: 12, math.inf: 12}
    assert before.preemptions == 1
    after = steps.parse(
        METRICS_PAGE.replace('le="512.0",model_name="m"} 9.0', 'le="512.0",model_name="m"} 19.0')
        .replace('le="1024.0",model_name="m"} 10.0', 'le="1024.0",model_name="m"} 20.0')
        .replace('le="+Inf",model_name="m"} 10.0', 'le="+Inf",model_name="m"} 20.0')
        .replace('_count{engine="0",model_name="m"} 10.0', '_count{engine="0",model_name="m"} 20.0')
    )
    counted = after.minus(before).to_json()
    assert counted == {
        "steps": 10,
        "steps_at_most": {"1": 0, "512": 10, "1024": 10, "inf": 10},
        "preemptions": 0,
    }
    assert steps.largest_step(counted) == 512  # every step of the load point held at most 512 tokens
    assert steps.largest_step({**counted, "steps_at_most": {"512": 9, "inf": 10}}) == math.inf
    assert steps.largest_step({"steps": 0, "steps_at_most": {}, "preemptions": 0}) == 0
    assert steps.largest_step(None) is None
    assert steps.parse("# transformers' server has no such metrics\n") is None


@pytest.mark.parametrize(
    ("largest", "preemptions", "kv_needed", "budget", "server_budget", "stands"),
    [
        (512, 0, 1000, 512, 2048, True),  # every step within the smaller budget, none full
        (512, 0, 1000, 1024, 2048, True),
        (1024, 0, 1000, 512, 2048, False),  # a step needed more than 512
        (1024, 0, 1000, 1024, 1536, False),  # within 1024, but a full step of 1536 could hide in it
        (1024, 0, 1000, 1024, 2048, True),  # the edge: a full step of 2048 shows above 1024
        (512, 1, 1000, 512, 2048, False),  # a preemption: the KV cache ran short
        (512, 0, 9000, 512, 2048, False),  # the requests in flight could need more than the cache
        (None, 0, 1000, 512, 2048, False),  # no step counts (vLLM's benchmark, an old record)
    ],
)
def test_a_load_point_stands_for_a_smaller_token_budget_only_where_no_step_reached_it(
    largest, preemptions, kv_needed, budget, server_budget, stands
):
    assert steps.budget_never_reached(largest, preemptions, kv_needed, 8192, budget, server_budget) is stands


def test_the_step_counts_bound_the_steps_only_under_vllms_plain_scheduler():
    plain = {"max_num_seqs": 4, "max_num_batched_tokens": 512, "enable_prefix_caching": False}
    assert steps.counts_bound_steps(plain)
    assert steps.counts_bound_steps({**plain, "long_prefill_token_threshold": None, "data_parallel_size": 1})
    assert not steps.counts_bound_steps({**plain, "long_prefill_token_threshold": 64})  # splits without a full step
    assert not steps.counts_bound_steps({**plain, "speculative_config": {"num_speculative_tokens": 2}})
    assert not steps.counts_bound_steps({**plain, "enable_prefix_caching": True})
    assert not steps.counts_bound_steps({"max_num_seqs": 4})  # vLLM's default: the prefix cache on
    assert not steps.counts_bound_steps({**plain, "data_parallel_size": 2})


# -- the plan and the config -----------------------------------------------------------------------


def test_no_serve_section_no_servers(model_folder):
    config = load_config(make_config(model_folder))
    assert config["serve"] is None and plan(config) == ([], [])


def test_plan_expands_the_axes_and_leaves_out_what_the_engine_refuses(model_folder):
    config = serve_config(
        model_folder,
        request_rates=[4, float("inf")],
        max_concurrency=[None, 8],
        engine_arg_axes={"vllm": {"max_num_seqs": [8, 64], "max_num_batched_tokens": [32, 512]}},
        engine_args={"hf": {"cb_num_blocks": 32}},
        n_gpus=[1, 2],
        harnesses={"vllm": ["vllm_bench", "infpop"]},
    )
    assert config["serve"]["request_rates"] == [4, "inf"]  # .inf spelt as the records spell it
    assert config["serve"]["engine_args"]["vllm"] == {**VLLM_TEST_ARGS, "enable_prefix_caching": False}
    jobs, excluded = plan(config)
    vllm = sorted(j.settings for j in jobs if j.engine == "vllm" and j.n_gpus == 1)
    assert vllm == [
        "max_num_seqs=64,max_num_batched_tokens=512",
        "max_num_seqs=8,max_num_batched_tokens=32",
        "max_num_seqs=8,max_num_batched_tokens=512",
    ]
    reasons = {(row["engine"], row["n_gpus"], row["settings"]): row["reason"] for row in excluded}
    assert "must be >= max_num_seqs (64)" in reasons[("vllm", 1, "max_num_seqs=64,max_num_batched_tokens=32")]
    assert reasons[("hf", 2, "*")].startswith("hf runs on one device on the CPU")
    assert [p.label for p in load_points(config["serve"])] == ["r4_c8", "r4_cinf", "rinf_c8", "rinf_cinf"]
    counts = {(r["engine"], r["planned"]): r["n_load_points"] for r in plan_rows(config)}
    assert counts[("vllm", "run")] == 8 and counts[("hf", "run")] == 4  # two load generators on vLLM


@pytest.mark.parametrize(
    "serve, expected",
    [
        ({"engine_args": {"hf": {"port": 8}}}, "'serve.engine_args.hf.port': is set by InfPop"),
        ({"engine_args": {"hf": {"cb_num_block": 8}}}, "did you mean 'cb_num_blocks'?"),
        (
            {"engine_arg_axes": {"vllm": {"max_num_seqs": [0]}}},
            "'serve.engine_arg_axes.vllm.max_num_seqs[0]': 0 is less",
        ),
        ({"engine_arg_axes": {"vllm": {"block_size": [16, 16]}}}, "block_size[1]': 16 is given twice"),
        ({"engine_arg_axes": {"vllm": {"kv_cache_dtype": ["fp9"]}}}, "kv_cache_dtype[0]': 'fp9' is not one of"),
        (
            {"engine_args": {"vllm": {"max_num_seqs": 8}}, "engine_arg_axes": {"vllm": {"max_num_seqs": [4]}}},
            "give it once",
        ),
        ({"request_rates": [0]}, "'serve.request_rates[0]': 0 is less than or equal to the minimum of 0"),
        ({"request_rates": ["fast"]}, "a rate is a positive number of requests per second, or inf"),
        ({"harnesses": {"hf": ["vllm_bench"]}}, "'serve.harnesses.hf[0]': 'vllm_bench' is not one of ['infpop']"),
        ({"models": ["other"]}, "'serve.models': 'other' is not a model of the config"),
        ({"slo": {"ttft": 500}}, "unknown key 'ttft' under 'serve.slo' (did you mean 'ttft_ms'?)"),
        ({"n_gpus": [64]}, "no server can run: 64 tensor-parallel ranks requested"),
    ],
)
def test_bad_serving_config_names_the_key(model_folder, serve, expected):
    with pytest.raises(ConfigError) as caught:
        serve_config(model_folder, **serve)
    assert expected in str(caught.value)


# -- records and tables ----------------------------------------------------------------------------


def context(model_folder, **serve) -> records.ServeContext:
    config = serve_config(model_folder, slo={"ttft_ms": 250}, **serve)
    return records.ServeContext(
        job=ServeJob("cpu", "hf", "tiny", 1, "default"),
        model_source=str(model_folder),
        model_revision=None,
        settings_axes={},
        server_arguments={},
        measured_with={"dtype": "float32", "stream": {"requests": 3}},
        slo=Slo.from_config(config["serve"]["slo"]),
        saturation_tolerance=0.1,
        devices=1,
        retry_failed=False,
        limits={"server_timeout_s": 900, "load_point_timeout_s": 600},
    )


def a_record(ctx, status="ok", harness="infpop", rep=0, scale=1.0):
    stream = build_stream(["a", "b", "c"], 4, 2.0, 1.0, 0, warmup=1)
    described = {**stream.describe(), "arrival_offsets_s": [r.arrival_s for r in stream.requests]}
    results = [
        request(i, 0.1 * scale * (i + 1), 0.4 * scale * (i + 1), 4, [0.1 * scale * (i + 1)] * 3) for i in range(3)
    ]
    run = records.LoadPointRun(
        started_at="2026-12-04T00:00:00.000+00:00",
        server_start_s=9.0,
        sequence=0,
        results=results if status == "ok" else None,
        duration_s=1.6 if status == "ok" else None,
        energy={"joules": None, "reason": "no NVIDIA GPU"},
    )
    return records.load_point_record(
        ctx, LoadPoint(2.0), harness, rep, status, described, run, None if status == "ok" else "x"
    )


def test_a_record_validates_round_trips_and_is_reused_while_it_holds(model_folder, tmp_path):
    ctx = context(model_folder)
    record = a_record(ctx)
    path = tmp_path / LoadPoint(2.0).record_name("infpop", 0)
    records.write_atomic(path, record)
    assert records.read(path) == json.loads(path.read_text())
    assert path.name == "r2_cinf_infpop_rep0.json"
    assert record["measures"]["good_requests"] == 2  # ttft 100 and 200 ms within 250
    assert records.outdated(ctx, record) is None
    changed = records.ServeContext(**{**vars(ctx), "measured_with": {"dtype": "float16", "stream": {"requests": 3}}})
    assert records.outdated(changed, record) == "was measured with other settings (dtype)"
    failed = a_record(ctx, status="crashed")
    retry = records.ServeContext(**{**vars(ctx), "retry_failed": True})
    assert records.outdated(ctx, failed) is None and "retry_failed is on" in records.outdated(retry, failed)
    path.write_text(path.read_text()[:50])
    with pytest.raises(RecordError, match="corrupt or truncated"):
        records.read(path)


def test_tables_derive_goodput_under_the_runs_slo_and_give_cis(model_folder):
    ctx = context(model_folder)
    collected = [(a_record(ctx, rep=r, scale=1 + r / 10), f"p{r}") for r in range(3)]
    collected.append((a_record(ctx, harness="vllm_bench", scale=1.0), "v"))
    strict = tables.rows(collected, Slo(ttft_ms=150), 0.1)
    loose = tables.rows(collected, Slo(ttft_ms=1000), 0.1)
    assert [r["good_requests"] for r in strict if r["harness"] == "infpop"] == [1, 1, 1]
    assert [r["good_requests"] for r in loose if r["harness"] == "infpop"] == [3, 3, 3]
    (summary,) = [r for r in tables.summary(strict) if r["harness"] == "infpop"]
    assert summary["repetitions"] == 3 and summary["ok"] == 3
    assert summary["ttft_mean_ms_ci_low"] < summary["ttft_mean_ms"] < summary["ttft_mean_ms_ci_high"]
    crosscheck = tables.harness_crosscheck(strict, collected)
    clients = {r["measure"]: r for r in crosscheck if r["comparison"].startswith("infpop client")}
    assert clients["ttft_mean_ms"]["rounds"] == 1 and clients["ttft_mean_ms"]["ratio_median"] == pytest.approx(1.0)


# -- the server manager ----------------------------------------------------------------------------


SCRIPTED = textwrap.dedent(
    """
    import http.server, os, sys, time, subprocess
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "oom":
        print("ERROR 12-04 10:00:00 [core.py:1] ValueError: No available memory for the cache blocks.", flush=True)
        sys.exit(1)
    if mode == "child":  # a child of the server's, as vLLM's engine core is
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(0.5 if mode != "slow" else 600)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


def scripted(tmp_path, mode, timeout=30.0) -> Server:
    script = tmp_path / "server.py"
    script.write_text(SCRIPTED)
    port = free_port()
    return Server(
        "vllm", [sys.executable, str(script), mode, str(port)], dict(os.environ), port, tmp_path / "s.log", timeout
    )


def test_a_server_is_waited_for_and_stopped_with_its_children(tmp_path):
    server = scripted(tmp_path, "child")
    with server:
        assert server.healthy() and server.start_seconds >= 0.5
        group = [p for p in psutil.process_iter() if _in_group(p, server.process.pid)]
        assert len(group) >= 2  # the server and its child
    time.sleep(0.2)
    assert not [p for p in group if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _in_group(process, pgid) -> bool:
    try:
        return os.getpgid(process.pid) == pgid
    except (ProcessLookupError, psutil.Error):
        return False


def test_a_server_that_exits_at_start_is_classified_from_what_it_printed(tmp_path):
    with pytest.raises(ServerFailed) as caught:
        scripted(tmp_path, "oom").start()
    assert caught.value.status == "oom" and "No available memory for the cache blocks" in caught.value.reason
    assert "exited (exit code 1) before it was healthy" in caught.value.reason


def test_a_server_not_healthy_in_time_is_a_timeout_and_is_stopped(tmp_path):
    server = scripted(tmp_path, "slow", timeout=2.0)
    with pytest.raises(ServerFailed) as caught:
        server.start()
    assert caught.value.status == "timeout" and "not healthy after 2 s" in caught.value.reason
    assert not server.alive()


def test_the_figure_draws_the_load_points_and_says_when_there_are_none(model_folder, tmp_path):
    ctx = context(model_folder)
    table = tables.rows([(a_record(ctx, rep=r), f"p{r}") for r in range(2)], Slo(), 0.1)
    drawn = tables.latency_throughput_png(table, tmp_path / "a.png")
    empty = tables.latency_throughput_png([], tmp_path / "b.png")
    assert drawn.stat().st_size > 10_000 and empty.stat().st_size > 1_000
