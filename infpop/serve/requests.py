"""The request stream of a load point: which prompts are sent, how many tokens each asks for, and
when each arrives.

One stream is built per load point from the config and the seed, and the same stream goes to both
engines and both load generators. The arrival process is vLLM's (vllm/benchmarks/serve.py,
`get_request`, vLLM 0.32): gaps drawn from a gamma distribution with shape `burstiness` and mean
1/rate (burstiness 1 is a Poisson process, below 1 burstier, infinite evenly spaced), summed, and
the whole schedule rescaled so that the last request arrives at exactly n/rate seconds; at an
infinite rate every request arrives at 0. vLLM's benchmark seeds numpy's global generator with its
--seed and draws nothing else before the schedule when its dataset is `custom` and unshuffled, so
`arrival_offsets(n, rate, burstiness, seed)` is the schedule it sends (tests/test_serve.py checks it
against vLLM's own generator).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from infpop.data.benchmark import load_prompts


@dataclass(frozen=True)
class Request:
    """One request of a stream: its place, the prompt, the most tokens it may generate, and when it
    arrives (seconds after the load point starts)."""

    index: int
    prompt: str
    max_tokens: int
    arrival_s: float


@dataclass(frozen=True)
class RequestStream:
    """What a load point sends: its requests in arrival order and the warm-up before them
    (`warmup` copies of the first prompt, as vLLM's --num-warmups sends)."""

    requests: tuple[Request, ...]
    request_rate: float
    burstiness: float
    seed: int
    warmup: int

    @property
    def warmup_prompt(self) -> str:
        return self.requests[0].prompt

    def describe(self) -> dict:
        """What a record keeps of the stream (the prompts are the benchmark's, named by the seed)."""
        return {
            "requests": len(self.requests),
            "max_tokens": sorted({r.max_tokens for r in self.requests}),
            "burstiness": self.burstiness,
            "seed": self.seed,
            "warmup_requests": self.warmup,
            "prompt_characters": sum(len(r.prompt) for r in self.requests),
            "last_arrival_s": self.requests[-1].arrival_s,
        }


def arrival_offsets(n: int, rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """When each of `n` requests arrives, in seconds from the start: vLLM's `get_request` schedule
    (see the module's docstring) for the same seed."""
    if n < 1:
        raise ValueError("a stream has at least one request")
    if not rate > 0 or not burstiness > 0:
        raise ValueError(f"the rate and the burstiness must be positive, got {rate} and {burstiness}")
    if math.isinf(rate):
        return [0.0] * n
    if math.isinf(burstiness):
        gaps = [1.0 / rate] * n
    else:
        generator = np.random.RandomState(seed)  # what np.random.seed(seed) makes the global generator
        theta = 1.0 / (rate * burstiness)
        gaps = [float(generator.gamma(shape=burstiness, scale=theta)) for _ in range(n)]
    offsets = list(running_sums(gaps))
    if offsets[-1] != 0:
        factor = (n / rate) / offsets[-1]
        offsets = [offset * factor for offset in offsets]
    return offsets


def running_sums(values: list[float]) -> list[float]:
    """Running sums, added in the order vLLM adds them (a float sum depends on its order)."""
    sums = list(values)
    for i in range(1, len(sums)):
        sums[i] += sums[i - 1]
    return sums


def stream_prompts(benchmark_file, count: int, seed: int) -> list[str]:
    """`count` prompts of the benchmark, shuffled with the seed: a load point's prompts are a mix of
    lengths over its whole duration (the benchmark's own order puts the short ones first)."""
    prompts = load_prompts(benchmark_file, "random", seed)
    if count > len(prompts):
        raise ValueError(f"{count} requests asked for, the benchmark has {len(prompts)} prompts")
    return prompts[:count]


def build_stream(
    prompts: list[str], max_tokens: int, rate: float, burstiness: float, seed: int, warmup: int
) -> RequestStream:
    offsets = arrival_offsets(len(prompts), rate, burstiness, seed)
    requests = tuple(Request(i, p, max_tokens, t) for i, (p, t) in enumerate(zip(prompts, offsets, strict=True)))
    return RequestStream(requests, rate, burstiness, seed, warmup)


def custom_dataset(stream: RequestStream) -> str:
    """The stream's requests as the JSONL of vLLM's `custom` dataset (one prompt and its output
    length a line), in arrival order: read with --disable-shuffle and --custom-output-len -1 it
    sends exactly these."""
    return "".join(json.dumps({"prompt": r.prompt, "output_tokens": r.max_tokens}) + "\n" for r in stream.requests)
