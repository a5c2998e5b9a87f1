"""Figures of a finished serving run (results/serve/): each server's start and job time, each load
point's measures, and the harness cross-check.

    python bench/serve_figures.py [results]

A load point's figures are the mean over its repetitions (summary.csv); `sat` marks an
over-saturated one (fewer requests completed per second than the tolerance allows of the offered
rate). The cross-check gives, per measure, the median over load points and repetitions of the ratio
InfPop's client / vLLM's benchmark on the same vLLM server and stream, and our measures of vLLM's
own per-request results against its printed summary.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def number(value: str, digits: int = 1) -> str:
    return "-" if value in ("", None) else f"{float(value):,.{digits}f}"


def main(results: Path) -> None:
    serve = results / "serve"
    print(f"{'server':<62} {'starts s':>10} {'job wall s':>10} {'records':>7}")
    for manifest in sorted(serve.rglob("serve.json")):
        summary = json.loads(manifest.read_text())
        name = "/".join(str(summary[k]) for k in ("hardware", "engine", "model")) + f"/g{summary['n_gpus']}"
        name += f"/{summary['settings']}"
        bench = results / "benchmarks" / "serve" / f"{name}.tsv"
        wall = "-"
        if bench.exists():
            with open(bench) as handle:
                seconds = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
            wall = f"{seconds:.1f}"
        starts = ", ".join(f"{s:.1f}" for s in summary["server_starts_s"]) or "-"
        print(f"{name:<62} {starts:>10} {wall:>10} {len(summary['records']):>7}")

    with open(serve / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    print(
        f"\n{'engine':<6} {'model':<13} {'settings':<16} {'rate':>5} {'conc':>4} {'harness':<10} {'req/s':>6} "
        f"{'tok/s':>7} {'TTFT50':>7} {'TTFT99':>7} {'TPOT50':>7} {'E2EL50':>7} {'good/s':>6} sat"
    )
    for r in sorted(
        rows,
        key=lambda r: (
            r["engine"],
            r["model"],
            r["settings"],
            r["harness"],
            r["max_concurrency"],
            float(r["request_rate"]),
        ),
    ):
        print(
            f"{r['engine']:<6} {r['model'][:13]:<13} {r['settings'][:16]:<16} {r['request_rate']:>5} "
            f"{r['max_concurrency'] or '-':>4} {r['harness']:<10} {number(r['request_throughput'], 2):>6} "
            f"{number(r['output_throughput']):>7} {number(r['ttft_p50_ms'], 0):>7} {number(r['ttft_p99_ms'], 0):>7} "
            f"{number(r['tpot_p50_ms']):>7} {number(r['e2el_p50_ms'], 0):>7} {number(r['request_goodput'], 2):>6} "
            f"{'x' if r['over_saturated'] == 'True' else ''}"
        )

    with open(serve / "harness_crosscheck.csv") as handle:
        crosscheck = list(csv.DictReader(handle))
    ratios = defaultdict(list)
    for r in crosscheck:
        if r["ratio_median"]:
            ratios[(r["comparison"], r["measure"])].append(float(r["ratio_median"]))
    print(f"\n{'comparison':<54} {'measure':<20} {'points':>6} {'median':>7} {'min':>7} {'max':>7}")
    for (comparison, measure), values in sorted(ratios.items()):
        print(
            f"{comparison:<54} {measure:<20} {len(values):>6} {statistics.median(values):>7.3f} "
            f"{min(values):>7.3f} {max(values):>7.3f}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
