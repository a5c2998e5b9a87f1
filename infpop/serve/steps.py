"""vLLM's scheduler steps over one load point, from its server's own Prometheus metrics (`/metrics`):
how many engine steps ran, how many of them processed at most each bucket's number of tokens
(`vllm:iteration_tokens_total`, cumulative buckets 1, 8, 16, ..., 16384 in vLLM 0.32,
vllm/v1/metrics/buckets.py), and how many requests were preempted (`vllm:num_preemptions_total`).
Read before the load point (after its warm-up) and after it; the difference is the load point's.

What a step's count is (vllm/v1/metrics/stats.py, IterationStats.update_from_output): the tokens
generated in that step plus the prompt tokens of every request whose prefill completed in it, the
whole prompt at once (computed, not cached). So a step that completes prefills counts at least as
many tokens as it ran; only a step holding the chunk of a prefill that goes on into the next step
counts fewer, and with vLLM's default scheduler settings a prefill is split only where the step is
full (its token budget, max_num_batched_tokens, reached). `budget_never_reached` turns that into
the test of SharedServers (serve/autotune.py): a server with a larger budget whose every step stayed
within a smaller one scheduled as a server started with the smaller would have.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from infpop.serve.metrics import RequestResult, peak_held

ITERATION_TOKENS = "vllm:iteration_tokens_total"
PREEMPTIONS = "vllm:num_preemptions_total"
#: Scheduler arguments under which a prefill is split in a step that is not full (a cap on one
#: chunk, a budget other than max_num_batched_tokens): the step counts then say nothing of the
#: budget.
SPLITTING_ARGUMENTS = ("long_prefill_token_threshold", "max_num_scheduled_tokens")


def counts_bound_steps(arguments: dict) -> bool:
    """Whether a vLLM server run with these arguments counts every step at least as large as it
    ran, but for the chunk of a prefill split because the step was full (the module's docstring).
    Not where:
    - an argument splits prefills in steps that are not full (SPLITTING_ARGUMENTS);
    - speculative decoding runs draft tokens that a step counts only where they are accepted;
    - the prefix cache is on (vLLM's default): a step counts a prompt's computed tokens, and which
      are cached depends on evictions, which differ between caches of different sizes;
    - several API servers (data parallelism) each count their own clients' share of a step."""
    if any(arguments.get(name) is not None for name in SPLITTING_ARGUMENTS):
        return False
    if arguments.get("speculative_config") is not None or arguments.get("enable_prefix_caching") is not False:
        return False
    return all((arguments.get(name) or 1) == 1 for name in ("data_parallel_size", "api_server_count"))


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LE = re.compile(r'le="([^"]+)"')


@dataclass(frozen=True)
class StepCounts:
    """Engine steps, per token bound the steps of at most that many tokens (cumulative, as
    Prometheus' buckets; the last bound is inf), and preempted requests."""

    steps: int
    at_most: tuple[tuple[float, int], ...]
    preemptions: int

    def minus(self, before: StepCounts) -> StepCounts:
        earlier = dict(before.at_most)
        return StepCounts(
            self.steps - before.steps,
            tuple((bound, count - earlier.get(bound, 0)) for bound, count in self.at_most),
            self.preemptions - before.preemptions,
        )

    def to_json(self) -> dict:
        return {
            "steps": self.steps,
            "steps_at_most": {_bound_text(bound): count for bound, count in self.at_most},
            "preemptions": self.preemptions,
        }


def _bound_text(bound: float) -> str:
    return "inf" if math.isinf(bound) else f"{bound:g}"


def parse(text: str) -> StepCounts | None:
    """The step counts in a /metrics page, summed over engines (None where it has none: not a
    vLLM server, or one that does not log its stats)."""
    buckets: dict[float, float] = {}
    steps = preemptions = None
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is None:
            continue
        name, labels, value = found["name"], found["labels"] or "", float(found["value"])
        if name == ITERATION_TOKENS + "_bucket":
            bound = float(_LE.search(labels).group(1))
            buckets[bound] = buckets.get(bound, 0.0) + value
        elif name == ITERATION_TOKENS + "_count":
            steps = (steps or 0.0) + value
        elif name == PREEMPTIONS:
            preemptions = (preemptions or 0.0) + value
    if steps is None or not buckets:
        return None
    return StepCounts(int(steps), tuple((b, int(c)) for b, c in sorted(buckets.items())), int(preemptions or 0))


def largest_step(record_steps: dict | None) -> float | None:
    """The least bucket bound that holds every step of a load point (its record's `scheduler_steps`):
    its largest step counted at most this many tokens. None where unknown; 0 for no step."""
    if not record_steps:
        return None
    if record_steps["steps"] == 0:
        return 0.0
    holding = [float(b) for b, count in record_steps["steps_at_most"].items() if count >= record_steps["steps"]]
    return min(holding) if holding else None


def kv_tokens_held(
    results: Sequence[RequestResult], duration_s: float, block_size: int, max_model_len: int
) -> int | None:
    """The most KV-cache tokens the requests in flight could have needed at once: each request's
    prompt and output tokens rounded up to whole blocks (a request whose counts are not known, a
    failed one: the model's whole context), from its send to its end (more than the server held:
    it frees a request's blocks before the client sees its last chunk). None where a send time is
    not known."""

    def tokens(result: RequestResult) -> int:
        if result.prompt_tokens is None or result.output_tokens is None:
            return math.ceil(max_model_len / block_size) * block_size
        return math.ceil((result.prompt_tokens + result.output_tokens) / block_size) * block_size

    return peak_held(results, duration_s, tokens)


def budget_never_reached(
    largest: float | None,
    preemptions: int | None,
    kv_needed: int | None,
    kv_cache_tokens: int | None,
    budget: int,
    server_budget: int,
) -> bool:
    """Whether a load point that ran on a server with `server_budget` tokens a step (its
    max_num_batched_tokens) ran as a server with `budget` would have run it. Its steps counted at
    most `largest` tokens; it preempted `preemptions` requests; its requests in flight needed at most
    `kv_needed` tokens of the server's KV cache of `kv_cache_tokens`.

    - No step needed more than `budget`, and none was full: a full step (it reached
      `server_budget`) split one prefill and counted the rest, at least server_budget - chunk
      tokens, and the step completing that prefill counts its whole prompt, more than the chunk.
      Both stay within `largest` only if server_budget < 2 x largest + 1; so `largest` <= budget
      with 2 x largest <= server_budget rules a full step out.
    - The KV cache never ran short: a request that finds too few free blocks waits or is preempted,
      which the other server, with a cache of another size, would not have done alike. On the CPU
      every server has the same cache (VLLM_CPU_KVCACHE_SPACE); on a GPU vLLM sizes it from the
      memory left after a step of max_num_batched_tokens tokens, so a smaller budget leaves it no
      smaller."""
    if largest is None or preemptions is None or preemptions > 0:
        return False
    if kv_needed is None or kv_cache_tokens is None or kv_needed > kv_cache_tokens:
        return False
    return largest <= budget and 2 * largest <= server_budget
