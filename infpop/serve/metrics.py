"""A load point's measures from its per-request results, by vLLM's definitions (its serving
benchmark, vllm/benchmarks/serve.py `calculate_metrics`, vLLM 0.32), whichever load generator sent
the requests:

- TTFT: from sending a request to its first streamed chunk that carries text;
- TPOT (per request): (E2EL - TTFT) / (output tokens - 1), for requests of more than one token;
  its statistics are over those requests (GuideLLM calls it inter_token_latency, AIPerf ITL);
- ITL: every gap between successive text chunks, of all requests pooled into one list (per chunk,
  not per token; AIPerf's inter_chunk_latency);
- E2EL: from sending a request to its last text chunk;
- mean, p50, p90, p99 (numpy's linear interpolation) over the requests that succeeded;
- request throughput = completed requests / duration, output-token throughput = their output
  tokens / duration, the duration running from the load point's start (before its first arrival)
  to its last completion;
- goodput = requests that met every objective of the SLO (ttft, tpot, e2el; each inclusive; a
  request of one token has TPOT 0) / duration, as vLLM's --goodput (DistServe's); a failed request
  is never good. SLO attainment = good / all requests sent (failures count against it, as in
  GuideLLM and AIPerf);
- achieved against offered rate (vLLM's request throughput against its request rate): at a finite
  rate a server that keeps up completes about as many requests per second as arrive;
  `over_saturated` says it completed fewer than (1 - tolerance) x the offered rate, so its queue
  grew during the load point and its latencies describe the queue rather than the server. The
  duration holds the last request's whole latency, so the ratio is at most 1 / (1 + E2EL x rate /
  requests): a load point must last long against the latency (requests / rate >> E2EL) for a
  low ratio to mean saturation. A load point at an infinite rate has no offered rate: None.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from infpop.measure.records import percentile

#: The percentiles every latency gets.
PERCENTILES = (50, 90, 99)
LATENCIES = ("ttft", "tpot", "itl", "e2el")


#: The error of a request whose stream the server ended normally without text (the model's first
#: token ended it): the server finished it, it did not abort it.
NO_TEXT = "the stream ended without a chunk of text"


@dataclass
class RequestResult:
    """One request of a load point, as a load generator saw it. Times in seconds; `start_s` from
    the load point's start, the rest from the request's send (`from_arrival`: `start_s` is its
    arrival and the rest are from it, `client_queue_s` the wait before its send)."""

    index: int
    success: bool
    start_s: float | None = None
    ttft_s: float | None = None
    e2el_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    client_queue_s: float | None = None  # waiting for the client's concurrency limit before sending
    error: str | None = None
    from_arrival: bool = False

    def in_flight(self, end_s: float) -> tuple[float, float] | None:
        """(send, end) from the load point's start: while the server had it. A failed request
        counts until `end_s` (the load point's end: when it let go is not known); None when its
        send is not known."""
        if self.start_s is None:
            return None
        send = self.start_s + ((self.client_queue_s or 0.0) if self.from_arrival else 0.0)
        return send, self.start_s + self.e2el_s if self.success else end_s

    @property
    def tpot_s(self) -> float | None:
        """(E2EL - TTFT) / (tokens - 1); None for a failed request or one of a single token."""
        if not self.success or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.e2el_s - self.ttft_s) / (self.output_tokens - 1)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RequestResult:
        return cls(**data)


@dataclass(frozen=True)
class Slo:
    """A service-level objective per request, in milliseconds (None: no objective on that measure)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    @classmethod
    def from_config(cls, section: dict) -> Slo:
        return cls(section.get("ttft_ms"), section.get("tpot_ms"), section.get("e2el_ms"))

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2el_ms))

    def met_by(self, result: RequestResult) -> bool:
        """Whether a request met every objective given (vLLM's rule: a request of one token has
        TPOT 0; a failed request meets none)."""
        if not result.success:
            return False
        tpot = result.tpot_s or 0.0
        pairs = ((self.ttft_ms, result.ttft_s), (self.tpot_ms, tpot), (self.e2el_ms, result.e2el_s))
        return all(limit / 1000 >= value for limit, value in pairs if limit is not None)

    def goodput_arguments(self) -> list[str]:
        """The SLO as vLLM's --goodput takes it: `ttft:500 tpot:50`."""
        pairs = (("ttft", self.ttft_ms), ("tpot", self.tpot_ms), ("e2el", self.e2el_ms))
        return [f"{name}:{limit:g}" for name, limit in pairs if limit is not None]


def distribution_ms(values: Sequence[float]) -> dict:
    """mean, std (population, as numpy's), p50, p90, p99 in milliseconds of values in seconds; every
    figure None without values."""
    if not values:
        return {"mean": None, "std": None, **{f"p{p}": None for p in PERCENTILES}}
    return {
        "mean": statistics.fmean(values) * 1000,
        "std": statistics.pstdev(values) * 1000,
        **{f"p{p}": percentile(list(values), p) * 1000 for p in PERCENTILES},
    }


def summarise(
    results: Sequence[RequestResult],
    duration_s: float,
    offered_rate: float,
    slo: Slo,
    saturation_tolerance: float,
    devices: int = 1,
) -> dict:
    """The measures of one load point (see the module's docstring). `devices`: what it ran on (its
    GPUs; 1 on the CPU), for the throughput per device."""
    done = [r for r in results if r.success]
    output_tokens = sum(r.output_tokens or 0 for r in done)
    prompt_tokens = sum(r.prompt_tokens or 0 for r in done)
    per_second = (lambda count: count / duration_s) if duration_s > 0 else (lambda count: None)
    tpots = [r.tpot_s for r in done if r.tpot_s is not None]
    good = sum(slo.met_by(r) for r in results) if slo.given else None
    finite = not math.isinf(offered_rate)
    achieved = per_second(len(done))
    ratio = achieved / offered_rate if finite and achieved is not None else None
    measures = {
        "requests": len(results),
        "completed": len(done),
        "failed": len(results) - len(done),
        "duration_s": duration_s,
        "output_tokens": output_tokens,
        "prompt_tokens": prompt_tokens,
        "request_throughput": achieved,
        "output_throughput": per_second(output_tokens),
        "total_token_throughput": per_second(output_tokens + prompt_tokens),
        "output_throughput_per_device": per_second(output_tokens / devices),
        # what one user sees while its request decodes: 1 / TPOT, over the requests
        "user_output_tokens_per_s": _rate_distribution(tpots),
        "good_requests": good,
        "request_goodput": per_second(good) if good is not None else None,
        "slo_attainment": good / len(results) if good is not None and results else None,
        "offered_rate": offered_rate if finite else None,
        "achieved_to_offered": ratio,
        "over_saturated": ratio < 1 - saturation_tolerance if ratio is not None else None,
        "max_client_queue_s": max((r.client_queue_s or 0.0 for r in results), default=None),
        "peak_in_flight": peak_in_flight(results, duration_s),
    }
    measures["ttft_ms"] = distribution_ms([r.ttft_s for r in done])
    measures["tpot_ms"] = distribution_ms(tpots)
    measures["itl_ms"] = distribution_ms([gap for r in done for gap in r.itl_s])
    measures["e2el_ms"] = distribution_ms([r.e2el_s for r in done])
    return measures


def peak_in_flight(results: Sequence[RequestResult], duration_s: float) -> int | None:
    """The most requests the server held at once (sent, not yet finished; a failed one until the
    load point's end, so never fewer than it held); None when a send time is not known. At most
    the client's concurrency limit."""
    return peak_held(results, duration_s, lambda r: 1)


def peak_held(
    results: Sequence[RequestResult], duration_s: float, weight: Callable[[RequestResult], int | None]
) -> int | None:
    """The most of `weight` (per request) the server held at once, each request from its send to
    its end as in_flight gives them; None when a send or a weight is not known."""
    spans = [r.in_flight(duration_s) for r in results]
    weights = [weight(r) for r in results]
    if not spans or any(span is None for span in spans) or any(w is None for w in weights):
        return None
    # an end before a send at the same instant: a slot freed is taken by the next request
    held_by = list(zip(spans, weights, strict=True))
    events = sorted([(send, 1, w) for (send, _), w in held_by] + [(end, -1, w) for (_, end), w in held_by])
    peak = held = 0
    for _, change, w in events:
        held += change * w
        peak = max(peak, held)
    return peak


def _rate_distribution(tpots: list[float]) -> dict:
    rates = [1 / t for t in tpots if t > 0]
    if not rates:
        return {"mean": None, "p50": None}
    return {"mean": statistics.fmean(rates), "p50": percentile(rates, 50)}


def flatten(measures: dict) -> dict:
    """The measures as flat names (tables, an optimiser's objectives): a distribution's statistics
    as <measure>_<statistic>[_ms] (ttft_p99_ms, user_output_tokens_per_s_mean), the rest as they are."""
    flat = {}
    for name, value in measures.items():
        if isinstance(value, dict):
            flat.update(
                {
                    f"{name.removesuffix('_ms')}_{stat}{'_ms' if name.endswith('_ms') else ''}": v
                    for stat, v in value.items()
                }
            )
        else:
            flat[name] = value
    return flat
