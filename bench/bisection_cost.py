"""What InfPop's capacity search costs in device-seconds, plain bisection against the split of least
expected cost (infpop/serve/analysis.py: capacity_bisection, cheapest_splits), on a synthetic server
whose load points pass up to its capacity and fail above it. A load point of `requests` requests at
a rate lasts requests / rate seconds plus its warm-up, as on a live server. For each bracket 1-N
(N: the rate-inf throughput's bound), every capacity 0-N in turn (uniform: the plan's assumption):
the mean and the worst device-seconds and probes of each, and the capacities where the plan costs
more than bisection.

    python bench/bisection_cost.py [--brackets 20 62 96 200] [--requests 300] [--warmup 1]
                                   [--resolution 0.05]

Pure arithmetic over the search's decisions: no server, a few seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infpop.serve.analysis import Probe, capacity_bisection  # noqa: E402


def search(capacity: int, bracket: int, cost, resolution: float, planned: bool) -> tuple[float, int, float | None]:
    """Device-seconds, probes and the rate found, on a server passing every rate up to `capacity`."""
    asked: list[float] = []

    def probe(rate: float) -> Probe:
        asked.append(rate)
        good = 100 if rate <= capacity else 50
        return Probe(rate, "ok", 100, good, 100 / rate, request_throughput=rate)

    found = capacity_bisection(probe, range(1, bracket + 1), 0.9, resolution=resolution, cost=cost if planned else None)
    return sum(cost(r) for r in asked), len(asked), found.rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brackets", type=int, nargs="+", default=[20, 62, 96, 200])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--resolution", type=float, default=0.05)
    args = parser.parse_args()

    def cost(rate: float) -> float:
        return args.requests / rate + args.warmup

    print(
        f"{args.requests} requests a load point, {args.warmup:g} s warm-up, resolution {args.resolution:g}; "
        "every capacity 0-N of the bracket 1-N"
    )
    print(
        "| bracket | plain s (mean, worst) | planned s (mean, worst) | planned/plain "
        "| probes plain, planned (mean, worst) | capacities dearer | plan s |"
    )
    print("| --- | --- | --- | ---: | --- | ---: | ---: |")
    for bracket in args.brackets:
        started = time.perf_counter()
        plain = [search(c, bracket, cost, args.resolution, False) for c in range(bracket + 1)]
        planned = [search(c, bracket, cost, args.resolution, True) for c in range(bracket + 1)]
        seconds = (time.perf_counter() - started) / (bracket + 1)
        for c, (_, _, rate) in enumerate(planned):
            assert (rate is None) == (c == 0) and (c == 0 or c / (1 + args.resolution) <= rate <= c), (c, rate)
        dearer = sum(b[0] > a[0] + 1e-9 for a, b in zip(plain, planned, strict=True))
        mean = [statistics.mean(s for s, _, _ in runs) for runs in (plain, planned)]
        print(
            f"| 1-{bracket} | {mean[0]:.1f}, {max(s for s, _, _ in plain):.1f} "
            f"| {mean[1]:.1f}, {max(s for s, _, _ in planned):.1f} | {mean[1] / mean[0]:.3f} "
            f"| {statistics.mean(n for _, n, _ in plain):.2f}, {statistics.mean(n for _, n, _ in planned):.2f} "
            f"({max(n for _, n, _ in plain)}, {max(n for _, n, _ in planned)}) "
            f"| {dearer} of {bracket + 1} | {seconds:.3f} |"
        )


if __name__ == "__main__":
    main()
